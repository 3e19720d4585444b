"""The fine-tuned PRM's data: solutions as token ids with a marker after each step, cut into
windows (:mod:`prefkit.process.finetune` describes both), and the batches of windows the
training loop and the scorer read (host tensors; the caller moves them to its device).

Each window is a tuple ``(ids, marker positions in it, their labels, solution index, step
indices)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from prefkit.data.steps import StepSolutions

__all__ = ["encode_solution", "windows"]


def _marker(tokenizer: Any) -> int:
    for tok in (tokenizer.sep_token_id, tokenizer.eos_token_id):
        if tok is not None:
            return int(tok)
    raise ValueError("the tokenizer has neither a sep_token nor an eos_token to mark steps; "
                     "set one (tokenizer.sep_token = ...)")


def encode_solution(tokenizer: Any, prompt: str, steps: Sequence[str]
                    ) -> tuple[list[int], list[int]]:
    """Token ids of ``[CLS/BOS] prompt step_1 marker ... step_n marker`` (each step read as
    ``"\\n" + step``) and the position of each step's marker (the problem is followed by no
    marker)."""
    return _encode_many(tokenizer, [prompt], [steps])[0]


def _encode_many(tokenizer: Any, prompts: Sequence[str], steps: Sequence[Sequence[str]], *,
                 chunk: int = 256) -> list[tuple[list[int], list[int]]]:
    """:func:`encode_solution` of each solution, the texts of ``chunk`` solutions tokenized
    in one call (a fast tokenizer encodes them in parallel: the same ids, ~10x sooner than
    one call a step)."""
    marker = _marker(tokenizer)
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else \
        tokenizer.bos_token_id
    out = []
    for c in range(0, len(prompts), chunk):
        texts: list[str] = []
        for p, st in zip(prompts[c:c + chunk], steps[c:c + chunk]):
            texts += [p, *("\n" + s for s in st)]
        # verbose=False: a long solution is cut into windows later, the length warning is moot
        enc = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] \
            if texts else []
        at = 0
        for st in steps[c:c + chunk]:
            ids = ([] if start is None else [int(start)]) + list(enc[at])
            where = []
            for k in range(len(st)):
                ids += enc[at + 1 + k]
                ids.append(marker)
                where.append(len(ids) - 1)
            at += len(st) + 1
            out.append((ids, where))
    return out


def windows(n_tokens: int, markers: Sequence[int], max_length: int
            ) -> list[tuple[int, list[int]]]:
    """``(start, indices of the markers scored in it)`` per window (module docstring).

    >>> windows(10, [3, 9], 16)
    [(0, [0, 1])]
    >>> windows(20, [3, 9, 14, 19], 8)
    [(0, [0]), (4, [1]), (8, [2]), (12, [3])]
    """
    if n_tokens <= max_length:
        return [(0, list(range(len(markers))))]
    stride = max(1, max_length // 2)
    last = n_tokens - max_length
    out: dict[int, list[int]] = {}
    for k, p in enumerate(markers):
        s = 0 if p < max_length else ((p - max_length) // stride + 1) * stride
        out.setdefault(min(s, last), []).append(k)
    return sorted(out.items())


def _examples(tokenizer: Any, data: StepSolutions, idx: Sequence[int], max_length: int
              ) -> list[tuple[list[int], list[int], list[float], int, list[int]]]:
    """Per window: (ids, marker positions in it, their labels, solution, step indices)."""
    out = []
    idx = [int(i) for i in idx]
    encoded = _encode_many(tokenizer, [data.prompts[i] for i in idx],
                           [data.steps[i] for i in idx])
    for i, (ids, where) in zip(idx, encoded):
        for s, ks in windows(len(ids), where, max_length):
            out.append((ids[s:s + max_length], [where[k] - s for k in ks],
                        [data.labels[i][k] for k in ks], int(i), ks))
    return out


def _trim(items: Sequence[Any], *, labelled: bool, causal: bool) -> list[Any]:
    """Windows with only what changes the result: with ``labelled`` the labelled markers
    (windows without one dropped; an unlabelled step adds nothing to the loss), with
    ``causal`` no token after the last marker kept (a causal model computes the earlier
    positions without them)."""
    out = []
    for ids, pos, lab, i, ks in items:
        if labelled:
            keep = [j for j, y in enumerate(lab) if not math.isnan(y)]
            if not keep:
                continue
            pos, lab, ks = [pos[j] for j in keep], [lab[j] for j in keep], [ks[j] for j in keep]
        out.append((ids[:max(pos) + 1] if causal and pos else ids, pos, lab, i, ks))
    return out


def _batch(items: Sequence[Any], pad: int) -> tuple[Tensor, ...]:
    width = max(len(x[0]) for x in items)
    ids = torch.full((len(items), width), pad, dtype=torch.long)
    attn = torch.zeros((len(items), width), dtype=torch.long)
    rows, cols, ys = [], [], []
    for b, (tok, pos, lab, *_rest) in enumerate(items):
        ids[b, :len(tok)] = torch.tensor(tok)
        attn[b, :len(tok)] = 1
        rows += [b] * len(pos)
        cols += pos
        ys += lab
    return (ids, attn, torch.tensor(rows), torch.tensor(cols),
            torch.tensor(ys, dtype=torch.float32))


def _epoch_batches(items: Sequence[Any], size: int, gen: torch.Generator, group: bool
                   ) -> list[list[int]]:
    """One epoch's batches of indices: shuffled, and with ``group`` sorted by length within
    chunks of 32 batches, the batches then shuffled (``gen`` draws everything)."""
    perm = torch.randperm(len(items), generator=gen).tolist()
    if group:
        chunk = size * 32
        perm = [j for c in range(0, len(perm), chunk)
                for j in sorted(perm[c:c + chunk], key=lambda j: len(items[j][0]))]
    batches = [perm[b:b + size] for b in range(0, len(perm), size)]
    if group:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
    return batches
