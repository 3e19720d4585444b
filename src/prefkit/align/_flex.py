"""FlexAttention's BlockMask of a packed batch's mask, and whether FlexAttention trains here
(the FlexAttention half of :mod:`prefkit.align.packing`; its docstring says what is tested).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

__all__ = ["FLEX_BLOCK", "flex_backward_supported", "flex_block_mask"]

#: FlexAttention's block (tokens per side) in :func:`flex_block_mask`: torch's default
FLEX_BLOCK = 128


def flex_block_mask(segment: Tensor, branch: Tensor) -> Any:
    """The mask of :meth:`~prefkit.align.packing.PackedBatch.attention_mask` -- a query token
    may attend to a key token of its segment, not later in the row, that is shared
    (``branch`` -1) or of its own branch -- as FlexAttention's ``BlockMask`` (blocks of
    :data:`FLEX_BLOCK` x :data:`FLEX_BLOCK` tokens), from the ``(rows, L)`` ``segment`` and
    ``branch`` on their device, one query block at a time: never more than a
    ``(rows, FLEX_BLOCK, L)`` slice of the mask exists, never the ``(rows, L, L)`` whole, and
    nothing is compiled. A block pair none of whose tokens may attend is left out (the kernel
    skips it), one all of whose may is *full* (no ``mask_mod`` call in it), the rest are
    *partial* (``mask_mod``, the same rule, per token): the blocks and their order are those
    torch's ``create_block_mask`` gives for the dense mask. Segment ids are at least -L (as
    :func:`~prefkit.align.packing.pack_examples` makes them: fillers -1 to -L)."""
    from torch.nn.attention.flex_attention import BlockMask

    rows, n = segment.shape
    dev = segment.device
    nb = -(-n // FLEX_BLOCK)
    # whole blocks: the padding tokens are each their own segment (never attended to);
    # mask_mod may be asked about them inside the last partial block
    pad = nb * FLEX_BLOCK - n
    tail = -(n + 1) - torch.arange(pad, device=dev)  # below every filler id (>= -n)
    seg = torch.cat([segment, tail.expand(rows, pad)], 1)  # (rows, nb * BLOCK)
    br = torch.nn.functional.pad(branch, (0, pad), value=-1)

    def mask_mod(b: Tensor, h: Tensor, q: Tensor, kv: Tensor) -> Tensor:
        return (seg[b, q] == seg[b, kv]) & (kv <= q) & (
            (br[b, kv] < 0) | (br[b, q] == br[b, kv]))

    pos = torch.arange(nb * FLEX_BLOCK, device=dev)
    counts = []  # (rows, nb) per query block: allowed pairs in each key block
    for i in range(nb):
        q = slice(i * FLEX_BLOCK, (i + 1) * FLEX_BLOCK)
        m = (seg[:, q, None] == seg[:, None, :]) & (pos[None, :] <= pos[q, None])
        m &= (br[:, None, :] < 0) | (br[:, q, None] == br[:, None, :])
        m &= (pos[q] < n)[None, :, None] & (pos < n)[None, None, :]  # (rows, BLOCK, nb*BLOCK)
        counts.append(m.view(rows, FLEX_BLOCK, nb, FLEX_BLOCK).sum(dim=(1, 3)))
    c = torch.stack(counts, 1)[:, None]  # (rows, 1, nb, nb): query block, key block
    partial, full = (c > 0) & (c < FLEX_BLOCK * FLEX_BLOCK), c == FLEX_BLOCK * FLEX_BLOCK

    def sparse(blocks: Tensor) -> tuple[Tensor, Tensor]:  # as torch's create_block_mask
        return (blocks.sum(-1).to(torch.int32),
                torch.argsort(blocks.to(torch.int8), dim=-1, descending=True,
                              stable=True).to(torch.int32))

    return BlockMask.from_kv_blocks(*sparse(partial), *sparse(full), FLEX_BLOCK, mask_mod,
                                    (n, n))


def flex_backward_supported(device: torch.device | str) -> bool:
    """Whether FlexAttention can be differentiated on ``device``: one call of torch's
    ``flex_attention`` on a (1, 1, 4, 8) input that needs gradients, and its backward. Not on
    a CPU in torch 2.11-2.13 ("FlexAttention does not support backward on CPU"): a model
    with ``attn_implementation="flex_attention"`` cannot be trained there."""
    from torch.nn.attention.flex_attention import flex_attention

    dev = torch.device(device)
    if dev.type == "meta":
        return True  # nothing runs on the meta device
    q = torch.ones((1, 1, 4, 8), device=dev, requires_grad=True)
    try:
        with warnings.catch_warnings():  # eager flex_attention warns that it is unfused
            warnings.simplefilter("ignore")
            flex_attention(q, q, q).sum().backward()
    except (NotImplementedError, RuntimeError):
        return False
    return True
