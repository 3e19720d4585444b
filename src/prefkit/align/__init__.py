"""Align language models directly from preferences: the DPO family, listwise and
token-level losses, in one trainer (needs torch: ``pip install prefkit[align]``). Every
name is imported from its submodule on first use (PEP 562), torch with it.

    from prefkit.align import AlignConfig, align
    result = align("models/my-llama", "prefs.jsonl", output_dir="runs/dpo",
                   config=AlignConfig(loss="dpo", loss_kwargs={"beta": 0.1}, learning_rate=5e-7))

* :mod:`prefkit.align.data` -- read pairwise / unpaired / listwise / Step-DPO data
  (TRL's columns), tokenize it with the right masks (TRL-identical ids), batch it;
* :mod:`prefkit.align.types` -- what every loss takes (:class:`SequenceLogps`) and returns
  (:class:`LossOutput`);
* :mod:`prefkit.align.losses` -- the losses, chosen by name from :data:`ALIGN_LOSSES`;
* :mod:`prefkit.align.logprobs` -- response log-probabilities without the full logits;
* :mod:`prefkit.align.reference` -- reference log-probabilities, computed once and cached;
* :mod:`prefkit.align.model` -- the model a loop starts from (seeded loading, LoRA,
  dropout off), shared with prefkit.rl;
* :mod:`prefkit.align.trainer` -- :func:`align`, the loop; :class:`AlignConfig`;
* :mod:`prefkit.align.tiny` -- tiny offline models for tests and examples.
"""

from __future__ import annotations

from prefkit import _lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:
    from prefkit.align.data import (
        AlignBatch,
        AlignExample,
        AlignmentData,
        TokenizedAlignData,
        collate,
        read_alignment_data,
        step_dpo_pair,
        tokenize_alignment,
    )
    from prefkit.align.load import load_aligned
    from prefkit.align.logprobs import response_logps
    from prefkit.align.losses import (
        ALIGN_LOSSES,
        AlignLoss,
        combine_losses,
        get_align_loss,
        sft_term,
    )
    from prefkit.align.model import load_causal_lm, prepare_causal_lm
    from prefkit.align.trainer import AlignConfig, AlignResult, align
    from prefkit.align.types import LossOutput, SequenceLogps

__getattr__, __dir__ = _lazy_exports(__name__, {
    "prefkit.align.data": ["AlignBatch", "AlignExample", "AlignmentData", "TokenizedAlignData",
                           "collate", "read_alignment_data", "step_dpo_pair",
                           "tokenize_alignment"],
    "prefkit.align.load": ["load_aligned"],
    "prefkit.align.logprobs": ["response_logps"],
    "prefkit.align.losses": ["ALIGN_LOSSES", "AlignLoss", "combine_losses", "get_align_loss",
                             "sft_term"],
    "prefkit.align.model": ["load_causal_lm", "prepare_causal_lm"],
    "prefkit.align.trainer": ["AlignConfig", "AlignResult", "align"],
    "prefkit.align.types": ["LossOutput", "SequenceLogps"],
})

__all__ = [
    "ALIGN_LOSSES",
    "AlignBatch",
    "AlignConfig",
    "AlignExample",
    "AlignLoss",
    "AlignResult",
    "AlignmentData",
    "LossOutput",
    "SequenceLogps",
    "TokenizedAlignData",
    "align",
    "collate",
    "combine_losses",
    "get_align_loss",
    "load_aligned",
    "load_causal_lm",
    "prepare_causal_lm",
    "read_alignment_data",
    "response_logps",
    "sft_term",
    "step_dpo_pair",
    "tokenize_alignment",
]
