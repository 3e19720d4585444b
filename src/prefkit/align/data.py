"""The data of preference alignment: read it (:mod:`prefkit.data.alignment`: its formats are
in the one registry of :mod:`prefkit.data.formats`), tokenize it with the right masks,
batch it.

Three steps, each checkable on its own::

    records = read_alignment_data("prefs.jsonl")            # AlignmentData (strings)
    tokens = tokenize_alignment(records, tokenizer, max_length=1024)   # TokenizedAlignData
    for indices, batch in iter_batches(tokens, 8, shuffle=True, generator=g):  # AlignBatch
        ...

Formats (``format="auto"`` tells them apart by their columns; ``columns=`` maps yours):

- **pairwise**, TRL's preference form, read by :func:`prefkit.data.read_preferences`
  (also Anthropic HH, LLMBar, RewardBench 1, generic columns):

  - standard: ``{"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}``; the
    model sees ``prompt + response`` exactly (put separators in your text). Without a
    prompt column the prompt is the responses' shared start (TRL's ``extract_prompt``).
  - conversational: ``{"prompt": [{"role": "user", "content": "Sky colour?"}], "chosen":
    [{"role": "assistant", "content": "Blue."}], "rejected": [...]}``: rendered with the
    tokenizer's chat template; multi-turn prompts keep their earlier assistant turns in
    the prompt (never scored), only the final assistant turn is.

- **unpaired** (TRL's KTO form): ``{"prompt": ..., "completion": ..., "label": true}``,
  text or messages (the completion one assistant message); ``label`` true = desirable
  (1/0 and "true"/"false" accepted). Pairwise inputs read with ``kind="unpaired"`` are
  unpaired as TRL does (chosen -> true, rejected -> false). KTO's KL partner of each row
  is stored with it (``kl_completion``), fixed when the data is prepared as TRL fixes it:
  ``tokenize_alignment(..., kl_batch_size=)`` or :func:`add_kl_completions`.

- **listwise**: ``{"prompt": ..., "completions": ["a", "b", "c"], "ranks": [2, 1, 3]}`` with
  ``ranks`` (1 = best; any distinct numbers, lower better) or ``scores`` (higher better), or
  neither when the completions are already ordered best first. ``K >= 2`` may differ from
  row to row (batches pad with invalid responses). Ties are an error for now. Completions
  may be strings or one-assistant-message lists; ``responses`` is accepted for
  ``completions``, ``ranking`` for ``ranks``, ``rewards`` for ``scores``.

- **step_dpo** (Step-DPO, Lai et al. 2024), read as pairs: ``{"prompt": "2*3+1=?", "steps":
  ["2*3 = 6.", "6+1 = 7.", "Answer: 7"], "wrong_step_index": 1, "rejected_step": "6+1 =
  8."}`` (``wrong_step_index`` 0-based, or ``error_step`` 1-based) gives prompt
  ``"2*3+1=?"``, response prefix ``"\\n2*3 = 6.\\n"``, chosen ``"6+1 = 7."``, rejected
  ``"6+1 = 8."``. The published Math-Step-DPO-10K columns (``prompt,
  initial_reason_steps, chosen, rejected``, plus the unused ``full_chosen, full_rejected,
  answer, dataset``) are read too. See :func:`step_dpo_pair`.

Every invalid row is reported with file, line, field and how to fix it
(:class:`prefkit.data.InvalidInputError`); ``skip_invalid=True`` leaves such rows out and
lists them in ``records.skipped``. Tokenization never drops or cuts a row silently: see
``tokens.report`` / ``tokens.summary()``. Reading is :mod:`prefkit.data.alignment`'s (its
docstring has a runnable example); this module re-exports it.
"""

from prefkit.align._data_collate import AlignBatch, collate, iter_batches
from prefkit.align._data_tokenize import (
    AlignExample,
    TokenizedAlignData,
    TokenNote,
    add_kl_completions,
    kl_partners,
    tokenize_alignment,
)
from prefkit.data.alignment import (
    AlignmentData,
    StepPair,
    describe_alignment_formats,
    read_alignment_data,
    split_implicit_prompt,
    step_dpo_pair,
    unpair,
)

__all__ = [
    "AlignBatch",
    "AlignExample",
    "AlignmentData",
    "StepPair",
    "TokenNote",
    "TokenizedAlignData",
    "add_kl_completions",
    "collate",
    "describe_alignment_formats",
    "iter_batches",
    "kl_partners",
    "read_alignment_data",
    "split_implicit_prompt",
    "step_dpo_pair",
    "tokenize_alignment",
    "unpair",
]
