"""Batches of tokenized alignment examples, response-major, right-padded.

Row ``k * B + b`` of a batch holds prompt ``b`` followed by its response ``k``, so one
forward pass scores every response, and for pairs the first ``B`` rows are the chosen
responses and the last ``B`` the rejected ones (TRL's concatenated forward). ``loss_mask``
is True at the positions of response tokens: the log-probability of the token at position
``t`` comes from the logits at ``t - 1``, so position 0 is never scored.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Self

import torch
from torch import Tensor

from prefkit.align._data_tokenize import AlignExample, TokenizedAlignData

__all__ = ["AlignBatch", "collate", "iter_batches"]


class DeviceBatch:
    """What every batch dataclass of prefkit.align shares (:class:`AlignBatch`,
    :class:`~prefkit.align.packing.PackedBatch`): ``valid`` (B, K) gives the number of
    prompts, and :meth:`to` moves every tensor field -- and every field that is itself such
    a batch (a packed batch's KTO pairs) -- to a device."""

    valid: Tensor  # (B, K) bool; a field of the dataclasses that derive from this

    @property
    def batch_size(self) -> int:
        """B, the number of prompts."""
        return int(self.valid.shape[0])

    def to(self, device: Any) -> Self:
        """A copy with every tensor (and nested batch) moved to ``device``."""
        moved = {f.name: v.to(device) for f in fields(self)  # type: ignore[arg-type]
                 if isinstance(v := getattr(self, f.name), (Tensor, DeviceBatch))}
        return replace(self, **moved)  # type: ignore[type-var]  # (a dataclass)


@dataclass
class AlignBatch(DeviceBatch):
    """One batch of ``B`` prompts with ``K`` responses each.

    input_ids:      (K*B, T) long, right-padded; row ``k*B + b`` = prompt b + response k.
    attention_mask: (K*B, T) long, 1 on real tokens.
    loss_mask:      (K*B, T) bool, True at response tokens to score; prompt, padding, padded
                    responses and position 0 False.
    num_responses:  K.
    valid:          (B, K) bool, False for padding responses (listwise rows with fewer).
    complete:       True when every ``valid`` is (known on the host: the log-prob tables then
                    carry ``valid=None`` and no loss reads the device tensor back to check).
    label:          (B,) bool, unpaired data only (True = desirable).
    kl_input_ids, kl_attention_mask, kl_loss_mask: (B, T') unpaired examples that carry a
                    ``kl_completion`` only: prompt b with its own ``kl_completion`` (its KL
                    partner, fixed when the data was prepared), the mismatched pairs of
                    KTO's KL estimate.
    """

    input_ids: Tensor
    attention_mask: Tensor
    loss_mask: Tensor
    num_responses: int
    valid: Tensor
    label: Tensor | None = None
    kl_input_ids: Tensor | None = None
    kl_attention_mask: Tensor | None = None
    kl_loss_mask: Tensor | None = None
    complete: bool = False


def _pad(rows: list[tuple[list[int], list[int]]], pad_token_id: int,
         multiple: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """``(prompt, response)`` id lists as right-padded ids, attention and loss masks."""
    t = max((len(p) + len(r) for p, r in rows), default=0)
    t = max(t, 1)
    if multiple:
        t = -(-t // multiple) * multiple
    ids: list[int] = []
    att: list[int] = []
    loss: list[bool] = []
    for p, r in rows:  # flat lists, one tensor each: no tensor operations per row
        n = len(p) + len(r)
        start = min(max(len(p), 1), n)  # position 0 is never scored
        ids += p
        ids += r
        ids += [pad_token_id] * (t - n)
        att += [1] * n + [0] * (t - n)
        loss += [False] * start + [True] * (n - start) + [False] * (t - n)
    shape = (len(rows), t)
    return (torch.tensor(ids, dtype=torch.long).view(shape),
            torch.tensor(att, dtype=torch.long).view(shape),
            torch.tensor(loss, dtype=torch.bool).view(shape))


def collate(
    examples: Sequence[AlignExample],
    pad_token_id: int,
    *,
    pad_to_multiple_of: int | None = None,
    kl_max_length: int | None = None,
) -> AlignBatch:
    """One :class:`AlignBatch` from examples (``K`` = the largest number of responses; rows
    with fewer get empty, invalid responses).

    Unpaired examples with a ``kl_completion`` (see
    :func:`~prefkit.align.data.add_kl_completions`) also give KTO's mismatched KL rows;
    ``kl_max_length`` cuts them at their end (their prompt and completion come from
    different rows, so the tokenizer's ``max_length`` did not see them together).

    >>> b = collate([AlignExample([1, 5], [[6, 2], [7, 8, 2]]),
    ...              AlignExample([1], [[9, 2], [4, 2]])], pad_token_id=0)
    >>> b.input_ids.tolist()
    [[1, 5, 6, 2, 0], [1, 9, 2, 0, 0], [1, 5, 7, 8, 2], [1, 4, 2, 0, 0]]
    >>> b.loss_mask.int().tolist()[2]
    [0, 0, 1, 1, 1]
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    bsz = len(examples)
    k_max = max(len(e.responses) for e in examples)
    rows: list[tuple[list[int], list[int]]] = []
    ok = [[k < len(e.responses) and (e.valid is None or bool(e.valid[k])) for k in range(k_max)]
          for e in examples]  # (B, K), one tensor below: no tensor operation per prompt
    for k in range(k_max):
        for b, e in enumerate(examples):
            rows.append((list(e.prompt_ids), list(e.responses[k]) if ok[b][k] else []))
    ids, att, loss = _pad(rows, pad_token_id, pad_to_multiple_of)
    batch = AlignBatch(ids, att, loss, k_max, torch.tensor(ok, dtype=torch.bool).view(bsz, k_max),
                       complete=all(map(all, ok)))
    labels = [e.label for e in examples]
    if any(x is not None for x in labels):
        if any(x is None for x in labels) or k_max != 1:
            raise ValueError("unpaired examples (with a label) need one response each and "
                             "cannot be mixed with unlabelled ones")
        batch.label = torch.tensor(labels, dtype=torch.bool)
    if batch.label is not None and all(e.kl_completion is not None for e in examples):
        kl = []
        for e in examples:
            p, r = list(e.prompt_ids), list(e.kl_completion or [])
            if kl_max_length is not None:
                r = r[:max(kl_max_length - len(p), 0)]
                p = p[:kl_max_length]
            kl.append((p, r))
        batch.kl_input_ids, batch.kl_attention_mask, batch.kl_loss_mask = _pad(
            kl, pad_token_id, pad_to_multiple_of)
    return batch


def iter_batches(
    tokenized: TokenizedAlignData,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
    pad_to_multiple_of: int | None = None,
) -> Iterator[tuple[list[int], AlignBatch]]:
    """``(indices, batch)`` over ``tokenized``: ``indices`` are the examples' positions in
    ``tokenized.examples`` (keys for cached reference log-probabilities). The order is
    ``torch.randperm(n, generator=generator)`` when ``shuffle``, else the data's order.

    >>> data = TokenizedAlignData([AlignExample([1], [[5, 2], [6, 2]])] * 3, "pairwise",
    ...                           [0, 1, 2], [1, 2, 3], pad_token_id=0)
    >>> [(idx, b.input_ids.shape) for idx, b in iter_batches(data, 2)]
    [([0, 1], torch.Size([4, 3])), ([2], torch.Size([2, 3]))]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    n = len(tokenized)
    order = torch.randperm(n, generator=generator).tolist() if shuffle else list(range(n))
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        if drop_last and len(idx) < batch_size:
            return
        yield idx, collate([tokenized.examples[i] for i in idx], tokenized.pad_token_id,
                           pad_to_multiple_of=pad_to_multiple_of,
                           kl_max_length=tokenized.max_length)
