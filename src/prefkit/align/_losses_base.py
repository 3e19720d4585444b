"""What every alignment loss shares: the ``K`` check, log-ratios against a frozen
reference, length averages, range checks, the smoothed Bradley-Terry link and the SFT term.

Private: :mod:`prefkit.align.losses` re-exports the public names.
"""

from __future__ import annotations

import torch
from torch import Tensor

from prefkit.align.types import SequenceLogps
from prefkit.choice.torch_pairwise import log_bradley_terry

__all__ = ["KINDS", "sft_term"]


#: what each kind of loss takes: K = 2 (chosen, rejected), K >= 2 ranked best first, K = 1
KINDS = ("pairwise", "listwise", "unpaired")
_REFERENCE_FREE_HINT = "or choose a reference-free loss ('simpo', 'orpo', 'cpo', 'sft')"


def _check_k(logps: SequenceLogps, kind: str, loss: str) -> None:
    k = logps.num_responses
    if kind == "pairwise" and k != 2:
        hint = ("for rankings of K > 2 responses use 'listwise'" if k > 2
                else "for unpaired (K = 1) data use 'kto' or 'apo_zero_unpaired'")
        raise ValueError(f"the {loss!r} loss takes pairs (K = 2: chosen, rejected) but got "
                         f"K = {k} responses per prompt; {hint}")
    if kind == "pairwise" and logps.valid is not None and not bool(logps.valid.all()):
        raise ValueError(f"the {loss!r} loss takes complete pairs, but `valid` marks padding "
                         "responses; drop those pairs or use 'listwise'")
    if kind == "listwise" and k < 2:
        raise ValueError(f"the {loss!r} loss ranks K >= 2 responses; got K = {k} (for "
                         "unpaired data use 'kto')")
    if kind == "unpaired" and k != 1:
        raise ValueError(f"the {loss!r} loss takes one response per example (K = 1, with a "
                         f"desirable/undesirable `label`); got K = {k}")


def _log_ratios(logps: SequenceLogps, loss: str) -> Tensor:
    """(B, K) ``log pi_theta - log pi_ref``; the reference is detached (it is frozen)."""
    if logps.reference is None:
        raise ValueError(f"the {loss!r} loss needs reference log-probabilities "
                         f"(SequenceLogps.reference is None); give them, {_REFERENCE_FREE_HINT}")
    return logps.policy - logps.reference.detach()


def _average(x: Tensor, lengths: Tensor) -> Tensor:
    """Per-token average of a summed quantity; empty responses count one token."""
    return x / lengths.to(x.dtype).clamp_min(1.0)


def _positive(value: float, name: str, loss: str) -> None:
    if not value > 0:
        raise ValueError(f"the {loss!r} loss needs {name} > 0, got {value}")


def _in_range(value: float, name: str, loss: str, low: float, high: float,
              *, open_low: bool = False, open_high: bool = False) -> None:
    ok_low = value > low if open_low else value >= low
    ok_high = value < high if open_high else value <= high
    if not (ok_low and ok_high):
        lo, hi = ("(" if open_low else "["), (")" if open_high else "]")
        raise ValueError(f"the {loss!r} loss needs {name} in {lo}{low}, {high}{hi}, got {value}")


def _smoothed(logits: Tensor, label_smoothing: float) -> Tensor:
    """``-(1 - e) log sig(x) - e log sig(-x)``: Bradley-Terry with labels flipped w.p. e."""
    return -log_bradley_terry(logits, label_smoothing=float(label_smoothing))


def sft_term(logps: SequenceLogps) -> Tensor:
    """(B,) the chosen response's mean negative log-likelihood per token: ``-log pi_0 / |y_0|``.

    Column 0 is the chosen (best, or the only) response; for unpaired data (``label`` set)
    undesirable completions get 0, as they are not to be imitated. Averaged per response,
    so the trainer's mean over prompts weighs prompts equally; TRL's ``sft`` loss type (and
    CPO's ``cpo_alpha``, ORPO's NLL) averages over all chosen *tokens* of the batch instead,
    which agrees when the chosen responses have equal lengths. (ORPO in TRL also counts
    prompt tokens in its NLL; here it is the response only, as in the ORPO paper.)
    """
    nll = -_average(logps.policy[:, 0], logps.lengths[:, 0])
    if logps.label is not None:
        nll = torch.where(logps.label.to(torch.bool), nll, torch.zeros_like(nll))
    return nll
