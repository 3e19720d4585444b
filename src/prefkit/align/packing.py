"""Padding-free batches: a step's sequences packed into a few rows, each prompt run once.

    batch = pack_examples(examples, pad_token_id, mode="prefix")   # a PackedBatch
    logps = response_logps(model, batch)        # the same numbers as collate()'s padded batch

A padded batch (:func:`~prefkit.align.data.collate`) spends its forward pass on padding (28%
of the positions on HH pairs) and runs every prompt ``K`` times, once per response. Here:

* ``mode="pack"``: each (prompt, response) sequence once, without padding, several per row;
  position ids restart at 0 for every sequence and the attention mask keeps sequences apart
  (block-diagonal and causal);
* ``mode="prefix"``: each prompt once, followed by all its ``K`` responses (a *tree*): prompt
  tokens attend causally to the prompt, the tokens of response ``k`` to the whole prompt and
  causally to response ``k`` only; every response's position ids continue from the prompt's
  end (so each response sees exactly the context it has in its own padded row). The first
  token of every response is scored from the prompt's last position, shared.

Sequences (``pack``) or trees (``prefix``) are placed whole, longest first, into rows of
``capacity`` tokens (default: the longest one's length, so a row's attention costs no more
than a padded row's), first fit; the rest of a row is filler that attends only to itself.
The mask is built on the batch's device from two ``(rows, L)`` tensors (``segment``,
``branch``) by :meth:`PackedBatch.attention_mask`: ``(rows, 1, L, L)``, boolean for SDPA,
additive (0 / the dtype's minimum) for eager attention, the 4D form transformers' models take
as is. The scoring layout (which output scores which token, in response-major order) is made
here, on the host, with the batch: the engine needs no device synchronisation to find it.

:func:`packing_supported` checks once per model that its forward with such a mask and
position ids gives the logits of separate rows (attention implementations that ignore 4D
masks, such as flash-attention kernels, fail it).

**FlexAttention.** With a 4D mask, SDPA on CUDA runs its memory-efficient kernel over the
whole ``(L, L)`` row: a masked block costs as much as an attended one. Flash varlen attention
(``torch.nn.attention.varlen``) skips them but cannot express a prompt tree (a response sees
the prompt and itself, not its sibling). A model loaded with
``attn_implementation="flex_attention"`` (``prefkit align --attention flex``; never the
default) gets :meth:`PackedBatch.block_mask` instead: FlexAttention's ``BlockMask`` of the
same rule, built on the batch's device from ``segment`` and ``branch`` one 128-token query
block at a time (no ``(rows, L, L)`` mask, no compilation), whose empty blocks the kernel
skips; transformers (5.17 and 5.23) passes a BlockMask given as ``attention_mask`` to its
flex_attention as it is (a 4D mask is "already prepared"). :func:`packing_supported` checks
such a model the same way (its plain rows given a one-sequence block mask).

What is tested, on a CPU only (tests/align/test_flex_attention.py): the block structure
equals torch's ``create_block_mask`` over the dense mask; per-response log-probs, losses and
gradients of both layouts (GQA, K = 3) equal the padded SDPA path to 1e-5 (float32; sums
over ~300 tokens to 1e-5 + 1e-6 relative, as SDPA's own packed rows), and
``prefkit align --attention flex`` the padded run's losses. torch (2.11-2.13) has no
FlexAttention backward on a CPU, so the gradients there are those of flex_attention's eager
(reference) implementation with torch's device check lifted in the test; in a real run on a
CPU, preparing a FlexAttention model to train is refused in words
(:func:`flex_backward_supported`). transformers always compiles flex_attention; torch
2.13's compiled CPU kernel, once recompiled with dynamic shapes, was wrong at some lengths
(8 and 24 tokens at head dim 8; torch 2.11 right) -- :func:`packing_supported` then refuses
the model. On a CPU flex is no gain (benchmarks/align_flex_cpu.py, one thread, rows of 449
tokens: eager forward + backward 3-6x SDPA's CPU time, compiled forward 1.0-1.1x). The fused
GPU kernel (Triton) is untested here and its speed unmeasured: no GPU was lent to this work
(benchmarks/gpu_align.sh has a leg for it; tests/align/test_flex_attention.py a CUDA test).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from prefkit.align._data_collate import DeviceBatch
from prefkit.align._flex import FLEX_BLOCK, flex_backward_supported, flex_block_mask

__all__ = ["FLEX_BLOCK", "PACKING_MODES", "PackedBatch", "flex_backward_supported",
           "pack_examples", "packed_attention_mask", "packing_supported", "uses_block_mask"]

#: The layouts of a step's sequences: padded rows, packed sequences, packed prompt trees.
PACKING_MODES = ("none", "pack", "prefix")


@dataclass
class PackedBatch(DeviceBatch):
    """``B`` prompts with ``K`` responses each, packed into ``rows`` rows of ``L`` tokens.

    input_ids, position_ids: (rows, L) long.
    segment:       (rows, L) long: which sequence (``pack``) or prompt tree (``prefix``) a
                   token belongs to; filler tokens have their own negative ids.
    branch:        (rows, L) long: -1 on tokens every response sees (a tree's prompt; every
                   token in ``pack``), ``k`` on the tokens of response ``k``.
    where:         (n,) flat positions into ``rows * L`` whose output scores a token,
                   response-major (response ``k * B + b`` after ``k * B + b - 1``), in order.
    targets:       (n,) the scored tokens.
    scored:        (K*B, S) bool: row ``k * B + b`` True at its first ``lengths`` slots.
    slot_index:    (n,) the flat slot in ``scored`` of each scored token.
    num_responses: K.   valid: (B, K) bool.   label: (B,) bool, unpaired data only.
    complete:      every ``valid`` is True (known on the host; see ``AlignBatch.complete``).
    check_length:  tokens at the start of row 0 that form one plain causal sequence from
                   position 0 (the one-row check of the split LM head uses them).
    kl:            KTO's mismatched pairs (prompt b with its ``kl_completion``), packed the
                   same way, or None.
    """

    input_ids: Tensor
    position_ids: Tensor
    segment: Tensor
    branch: Tensor
    where: Tensor
    targets: Tensor
    scored: Tensor
    slot_index: Tensor
    num_responses: int
    valid: Tensor
    label: Tensor | None = None
    mode: str = "prefix"
    check_length: int = 0
    kl: PackedBatch | None = None
    complete: bool = False

    def attention_mask(self, dtype: torch.dtype = torch.bool) -> Tensor:
        """(rows, 1, L, L): True (or 0) where a query token may attend to a key token: the
        same segment, not later in the row, and either a shared (prompt) key or the query's
        own branch. ``dtype`` bool for SDPA; a float dtype gives the additive form (0 or the
        dtype's minimum) for eager attention."""
        seg, br = self.segment, self.branch  # (rows, L)
        n = seg.shape[1]
        causal = torch.ones((n, n), dtype=torch.bool, device=seg.device).tril_()
        mask = (seg[:, :, None] == seg[:, None, :]) & causal  # (rows, L, L): query, key
        mask &= (br[:, None, :] < 0) | (br[:, :, None] == br[:, None, :])
        mask = mask[:, None]  # (rows, 1, L, L)
        if dtype == torch.bool:
            return mask
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
            ~mask, torch.finfo(dtype).min)

    def block_mask(self) -> Any:
        """The same mask as :meth:`attention_mask` as FlexAttention's ``BlockMask``, built on
        the batch's device without the ``(rows, L, L)`` whole (:func:`flex_block_mask`)."""
        return flex_block_mask(self.segment, self.branch)


def _layout(examples: Sequence[Any], responses: list[list[list[int]]], mode: str
            ) -> tuple[list[tuple[list[int], list[int], list[int]]],
                       list[list[tuple[int, list[int], list[int]]]]]:
    """Segments ``(ids, positions, branches)`` and, per segment, its scored responses
    ``(response row, output offsets in the segment, targets)``."""
    bsz, k_max = len(examples), len(responses[0]) if responses else 0
    segs: list[tuple[list[int], list[int], list[int]]] = []
    scores: list[list[tuple[int, list[int], list[int]]]] = []
    for b, e in enumerate(examples):
        p = list(e.prompt_ids)
        n_p = len(p)
        if mode == "prefix":
            ids, pos, br = list(p), list(range(n_p)), [-1] * n_p
            sc = []
            for k in range(k_max):
                r = responses[b][k]
                start = len(ids)
                ids += r
                pos += range(n_p, n_p + len(r))
                br += [k] * len(r)
                # r[0] from the prompt's last output (none without a prompt: position 0 is
                # never scored), r[j] from r[j - 1]'s
                outs = ([n_p - 1] if n_p and r else []) + list(range(start, start + len(r) - 1))
                sc.append((k * bsz + b, outs, r if n_p else r[1:]))
            segs.append((ids, pos, br))
            scores.append(sc)
        else:
            for k in range(k_max):
                r = responses[b][k]
                if not r:
                    continue  # an invalid (or empty) response: nothing to run or score
                seq = p + r
                first = max(n_p, 1)
                segs.append((seq, list(range(len(seq))), [-1] * len(seq)))
                scores.append([(k * bsz + b, list(range(first - 1, len(seq) - 1)),
                                seq[first:])])
    return segs, scores


def pack_examples(
    examples: Sequence[Any],
    pad_token_id: int,
    *,
    mode: str = "prefix",
    capacity: int | None = None,
    kl_max_length: int | None = None,
    kl_pairs: bool = True,
) -> PackedBatch:
    """One :class:`PackedBatch` from :class:`~prefkit.align.data.AlignExample` s (``K`` = the
    most responses; missing or invalid ones score nothing), ``mode`` ``"pack"`` or
    ``"prefix"`` (module docstring). ``capacity``: tokens per row (at least the longest
    sequence or tree). Unpaired examples that all carry a ``kl_completion`` also give KTO's
    mismatched pairs (``kl``, cut to ``kl_max_length``) unless ``kl_pairs=False``.

    >>> from prefkit.align.data import AlignExample
    >>> b = pack_examples([AlignExample([1, 5], [[6, 2], [7, 8, 2]])], 0)
    >>> b.input_ids.tolist(), b.position_ids.tolist(), b.branch.tolist()
    ([[1, 5, 6, 2, 7, 8, 2]], [[0, 1, 2, 3, 2, 3, 4]], [[-1, -1, 0, 0, 1, 1, 1]])
    >>> b.where.tolist(), b.targets.tolist()  # response 0: 6, 2; response 1: 7, 8, 2
    ([1, 2, 1, 4, 5], [6, 2, 7, 8, 2])
    """
    if mode not in ("pack", "prefix"):
        raise ValueError(f"mode must be 'pack' or 'prefix', got {mode!r}")
    if not examples:
        raise ValueError("pack_examples needs at least one example")
    bsz = len(examples)
    k_max = max(len(e.responses) for e in examples)
    valid = [[k < len(e.responses) and (e.valid is None or bool(e.valid[k]))
              for k in range(k_max)] for e in examples]
    responses = [[list(e.responses[k]) if valid[b][k] else [] for k in range(k_max)]
                 for b, e in enumerate(examples)]
    segs, scores = _layout(examples, responses, mode)

    # -- rows: segments longest first, first fit -----------------------------------------------
    longest = max((len(s[0]) for s in segs), default=1)
    cap = max(longest, capacity or 0, 1)
    order = sorted(range(len(segs)), key=lambda i: (-len(segs[i][0]), i))
    rows: list[list[int]] = []
    used: list[int] = []
    for i in order:
        n = len(segs[i][0])
        for r, u in enumerate(used):
            if u + n <= cap:
                rows[r].append(i)
                used[r] += n
                break
        else:
            rows.append([i])
            used.append(n)
    width = max(used, default=1) or 1
    n_rows = max(len(rows), 1)
    ids, pos, seg_id, br = ([pad_token_id] * (n_rows * width), [0] * (n_rows * width),
                            [-1 - (j % width) for j in range(n_rows * width)],
                            [-1] * (n_rows * width))
    per_resp: list[tuple[list[int], list[int]]] = [([], []) for _ in range(k_max * bsz)]
    for r, members in enumerate(rows):
        at = r * width
        for i in members:
            s_ids, s_pos, s_br = segs[i]
            n = len(s_ids)
            ids[at:at + n], pos[at:at + n], br[at:at + n] = s_ids, s_pos, s_br
            seg_id[at:at + n] = [i] * n
            for resp, outs, tg in scores[i]:
                per_resp[resp][0].extend(at + o for o in outs)
                per_resp[resp][1].extend(tg)
            at += n
    where = [x for outs, _ in per_resp for x in outs]
    targets = [x for _, tg in per_resp for x in tg]
    lengths = [len(tg) for _, tg in per_resp]
    counts = torch.tensor(lengths, dtype=torch.long)
    slots = max(max(lengths, default=0), 1)
    shape = (n_rows, width)
    first = rows[0][0] if rows and rows[0] else None
    check = 0
    if first is not None:  # the segment's prompt + first response: one plain sequence
        s_br = segs[first][2]
        check = next((j for j, x in enumerate(s_br) if x > 0), len(s_br))
    batch = PackedBatch(
        input_ids=torch.tensor(ids, dtype=torch.long).view(shape),
        position_ids=torch.tensor(pos, dtype=torch.long).view(shape),
        segment=torch.tensor(seg_id, dtype=torch.long).view(shape),
        branch=torch.tensor(br, dtype=torch.long).view(shape),
        where=torch.tensor(where, dtype=torch.long), targets=torch.tensor(targets, dtype=torch.long),
        scored=torch.arange(slots)[None, :] < counts[:, None],
        slot_index=torch.tensor([i * slots + j for i, (_, tg) in enumerate(per_resp)
                                 for j in range(len(tg))], dtype=torch.long),
        num_responses=k_max, valid=torch.tensor(valid, dtype=torch.bool).view(bsz, k_max),
        complete=all(map(all, valid)),
        mode=mode, check_length=check)
    labels = [e.label for e in examples]
    if any(x is not None for x in labels):
        if any(x is None for x in labels) or k_max != 1:
            raise ValueError("unpaired examples (with a label) need one response each and "
                             "cannot be mixed with unlabelled ones")
        batch.label = torch.tensor(labels, dtype=torch.bool)
    if kl_pairs and batch.label is not None and all(e.kl_completion is not None
                                                    for e in examples):
        from prefkit.align.reference import mismatched_examples

        batch.kl = pack_examples(mismatched_examples(examples, max_length=kl_max_length),
                                 pad_token_id, mode=mode, capacity=capacity)
    return batch


# -- does a model take such a mask? ----------------------------------------------------------------
_SUPPORTED: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()
_MASK_DTYPE_IMPLS = ("eager",)  # attention that adds the mask; SDPA takes it as booleans


_BLOCK_MASK_IMPLS = ("flex_attention",)  # attention that takes a BlockMask


def _attn_impl(model: nn.Module) -> str:
    return getattr(getattr(model, "config", None), "_attn_implementation", None) or "sdpa"


def mask_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the 4D mask ``model``'s attention takes: boolean for SDPA, additive in
    the weights' dtype for eager attention (a FlexAttention model takes a BlockMask instead:
    :func:`uses_block_mask`)."""
    if _attn_impl(model) in _MASK_DTYPE_IMPLS:
        return next(model.parameters()).dtype
    return torch.bool


def uses_block_mask(model: nn.Module) -> bool:
    """Whether ``model``'s attention is FlexAttention (``attn_implementation=
    "flex_attention"``): packed rows then get :meth:`PackedBatch.block_mask`."""
    return _attn_impl(model) in _BLOCK_MASK_IMPLS


def packed_attention_mask(model: nn.Module, batch: PackedBatch) -> Any:
    """The mask ``batch``'s rows take in ``model`` (a transformers model, unwrapped): a
    BlockMask for FlexAttention, else the 4D tensor in :func:`mask_dtype`."""
    if uses_block_mask(model):
        return batch.block_mask()
    return batch.attention_mask(mask_dtype(model))


def packing_supported(model: nn.Module) -> bool:
    """Whether ``model`` (a transformers causal LM, possibly inside peft / DDP) gives, for a
    prompt tree packed with :func:`pack_examples`, the logits of its separate rows (to
    1e-4, or 8 of the dtype's eps in low precision); checked once per model, in eval mode
    without gradients."""
    from prefkit.align.logprobs import _unwrap  # the engine imports this module's batches

    lm = _unwrap(model)
    if lm in _SUPPORTED:
        return _SUPPORTED[lm]
    ok = False
    was_training = lm.training
    lm.eval()
    try:
        vocab = int(lm.get_input_embeddings().weight.shape[0])
        ids = [(3 + 7 * j) % vocab for j in range(12)]
        prompt, resp = ids[:5], [ids[5:8], ids[8:12]]

        class _Ex:  # the fields pack_examples reads
            prompt_ids, responses, label, valid, kl_completion = prompt, resp, None, None, None

        packed = pack_examples([_Ex()], 0, mode="prefix")
        dev = next(lm.parameters()).device
        with torch.no_grad(), torch.autocast(dev.type, enabled=False):
            tree = lm(input_ids=packed.input_ids.to(dev),
                      position_ids=packed.position_ids.to(dev),
                      attention_mask=packed_attention_mask(lm, packed.to(dev)),
                      use_cache=False).logits[0].float()
            want = [_plain_logits(lm, prompt + r, dev) for r in resp]
        got = [torch.cat([tree[:5], tree[5:8]]), torch.cat([tree[:5], tree[8:12]])]
        # low precision: 8 of the dtype's eps (bf16 0.0625, fp16 0.0078). bf16 SDPA noise at
        # Llama-3.2-1B's shape (16 layers, width 2048) was 0.82 of the old 2e-2 on a CPU, so a
        # GPU's kernels could tip it into padding silently (now 0.26); a model that ignores
        # the mask still misses it 4-13x (hidden 64 to 2048; tests/align/test_packing_precision)
        dtype = next(lm.parameters()).dtype
        tol = 1e-4 if dtype == torch.float32 else 8 * torch.finfo(dtype).eps
        ok = all(torch.allclose(g, w, rtol=tol, atol=tol * (1 + float(w.abs().max())))
                 for g, w in zip(got, want))
    except Exception:  # noqa: BLE001 -- a model that cannot take the mask is not packed
        ok = False
    finally:
        lm.train(was_training)
    _SUPPORTED[lm] = ok
    return ok


def _plain_logits(lm: nn.Module, ids: list[int], dev: torch.device) -> Tensor:
    """(T, V) logits of one plain causal row. A FlexAttention model gets it as a packed row
    of one sequence (a block mask of this module): transformers' own causal BlockMask gave
    NaN through the compiled CPU kernel (transformers 5.23, torch 2.13; the eager kernel is
    right), and a model that ignored the mask would still differ from the tree."""
    row = torch.tensor([ids], device=dev)
    if not uses_block_mask(lm):
        return lm(input_ids=row, use_cache=False).logits[0].float()
    one = PackedBatch(input_ids=row, position_ids=torch.arange(len(ids), device=dev)[None],
                      segment=torch.zeros_like(row), branch=torch.full_like(row, -1),
                      where=row[0, :0], targets=row[0, :0], scored=row[:0].bool(),
                      slot_index=row[0, :0], num_responses=1, valid=row[:0].bool())
    return lm(input_ids=row, position_ids=one.position_ids, attention_mask=one.block_mask(),
              use_cache=False).logits[0].float()


def resolve_packing(mode: str, model: nn.Module) -> str:
    """The layout to use for ``model``: ``"auto"`` is ``"prefix"`` where
    :func:`packing_supported`, else ``"none"``; ``"pack"`` / ``"prefix"`` on a model that
    fails the check raise a ValueError that says what to use instead."""
    if mode == "none":
        return mode
    if mode == "auto":
        return "prefix" if packing_supported(model) else "none"
    if mode not in PACKING_MODES:
        raise ValueError(f"packing must be one of auto, {', '.join(PACKING_MODES)}; got {mode!r}")
    if not packing_supported(model):
        cfg = getattr(getattr(model, "config", None), "_attn_implementation", None)
        raise ValueError(f"packing={mode!r}: this model's attention ({cfg or 'unknown'}) does "
                         "not give a packed row's logits equal to separate rows' (it needs a "
                         "4D attention mask or a BlockMask: attn_implementation 'sdpa', "
                         "'eager' or 'flex_attention'); use packing='none' or 'auto'")
    return mode
