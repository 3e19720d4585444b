"""The fine-tuned PRM's forward pass, computing only what the step head reads.

A PRM reads the backbone's last hidden state at the step markers only (5-10% of the tokens).
For a BERT-family encoder (``transformers``' ``BertModel``: absolute positions, post-norm
layers) :func:`bert_at_markers` gives exactly what ``backbone(ids, attention_mask)
.last_hidden_state[rows, cols]`` gives (equal up to float rounding,
tests/process/test_finetune_speed_paths.py), with less work:

* **the last layer at the markers only**: its queries, attention output, feed-forward block
  and layer norms only from the marker rows (those are 10/12 of a layer's matrix products; a
  6-layer MiniLM does ~1/7 less); its keys and values of every token are not formed either
  where that is less work (:func:`folds`: fewer than 35 markers a row for MiniLM): each
  marker's query is mapped through the key weights and attends to the hidden states
  themselves, whose weighted sum goes through the value weights once
  (:func:`_folded_attention`: exact algebra, the bias of the keys cancels in the softmax;
  its own products and softmax, whatever ``attention`` says);
  on one CPU thread the last layer's attention of a MiniLM batch of 8 windows of 256 tokens
  takes 12 ms forward and backward instead of 51 (3 ms forward only instead of 16), ~2% of
  a training step or a scoring batch;
* **no padding in the matrix products**: the hidden states are kept as ``(N, H)`` over the
  real tokens of the batch; only the attention core sees the padded ``(B, heads, T, d)``
  layout (with the padding masked out as the backbone's own forward does);
* **one matrix product for Q, K and V** (the three weights concatenated): one pass over the
  hidden states instead of three, forward and backward;
* the attention core is PyTorch's fused ``"sdpa"`` kernel (in float32 on an AVX2 CPU the
  faster: 55 vs 66 ms forward and backward for 8 x 12 heads x 256 tokens on one core) or
  ``"eager"`` (matmul, softmax, matmul, as transformers' eager attention).

It runs only without active dropout (the PRM's default, as TRL's ``PRMConfig``:
``disable_dropout=True``) and for a backbone it recognises (:func:`supports`); otherwise the
caller uses the backbone's own forward.

On a GPU nothing in it reads a device tensor back to the host (each read waits for every
queued kernel): where the real tokens and the markers lie (:class:`MarkerPlan`: the indices,
the most markers in a row) is worked out on the host from the batch (:func:`marker_plan`)
and copied to the GPU with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MarkerPlan", "bert_at_markers", "dropout_active", "folds", "marker_plan",
           "supports"]


def dropout_active(module: nn.Module) -> bool:
    """Whether a dropout of ``module`` would draw (training mode, p > 0)."""
    return module.training and any(isinstance(m, nn.Dropout) and m.p > 0
                                   for m in module.modules())


def supports(backbone: nn.Module) -> bool:
    """A BERT-family encoder whose layers :func:`bert_at_markers` reproduces exactly."""
    try:
        from transformers import BertModel
    except ImportError:  # pragma: no cover
        return False
    cfg = backbone.config
    return (type(backbone) is BertModel and not cfg.is_decoder
            and not getattr(cfg, "add_cross_attention", False)
            and not getattr(cfg, "chunk_size_feed_forward", 0)
            and getattr(cfg, "position_embedding_type", "absolute") == "absolute")


def _core(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, scale: float,
          attention: str) -> Tensor:
    """softmax(q k^T * scale + bias) v over the last two dimensions."""
    if attention == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)
    w = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, nh, Tq, T)
    if bias is not None:
        w = w + bias
    return torch.matmul(torch.softmax(w, dim=-1), v)  # (B, nh, Tq, d)


def _qkv(sa: Any, parts: str) -> tuple[Tensor, Tensor]:
    lin = [getattr(sa, {"q": "query", "k": "key", "v": "value"}[p]) for p in parts]
    return torch.cat([m.weight for m in lin]), torch.cat([m.bias for m in lin])


@dataclass(frozen=True)
class MarkerPlan:
    """Where the real tokens and the markers of a right-padded batch lie: the index tensors
    :func:`bert_at_markers` needs. Built on the host from the batch (:func:`marker_plan`)
    and moved to the device with it, so that the forward never reads a device tensor back
    (on a GPU each such read waits for every queued kernel)."""

    keep: Tensor  # (N,) flat indices of the real tokens
    at: Tensor  # (M,) each marker's row in the (N, H) hidden states
    slot: Tensor  # (M,) each marker's place among its row's markers
    padded: bool  # some token is padding
    m_max: int  # the most markers in a row

    def to(self, device: Any, non_blocking: bool = False) -> MarkerPlan:
        return MarkerPlan(*(t.to(device, non_blocking=non_blocking)
                            for t in (self.keep, self.at, self.slot)),
                          self.padded, self.m_max)


def marker_plan(attn: Tensor, rows: Tensor, cols: Tensor) -> MarkerPlan:
    """The :class:`MarkerPlan` of a batch with ``attention_mask`` ``attn`` (B, T) and markers
    at ``(rows, cols)`` (``rows`` ascending); call it on the host's tensors."""
    B, T = attn.shape
    keep = attn.reshape(-1).nonzero().squeeze(1)  # (N,)
    where = torch.full((B * T,), -1, dtype=torch.long, device=attn.device)
    where[keep] = torch.arange(len(keep), device=attn.device)
    at = where[rows * T + cols]  # (M,)
    if bool((at < 0).any()):
        raise ValueError("a marker position lies in the padding")
    counts = torch.bincount(rows, minlength=B)  # markers per row
    slot = torch.arange(len(rows), device=attn.device) - \
        (torch.cumsum(counts, 0) - counts)[rows]  # (M,)
    return MarkerPlan(keep, at, slot, len(keep) != B * T,
                      int(counts.max()) if len(rows) else 0)


def bert_at_markers(backbone: nn.Module, ids: Tensor, attn: Tensor, rows: Tensor,
                    cols: Tensor, *, attention: str = "eager",
                    plan: MarkerPlan | None = None) -> Tensor:
    """The last hidden state at ``(rows, cols)`` of a right-padded batch ``ids`` (B, T) with
    ``attention_mask`` ``attn``; ``rows`` ascending. Returns (M, H). ``plan``: the batch's
    :func:`marker_plan`, on the model's device (None: made here from ``attn``, ``rows`` and
    ``cols``, which on a GPU reads them back to the host)."""
    B, T = ids.shape
    x = backbone.embeddings(input_ids=ids)  # (B, T, H)
    H = x.shape[-1]
    if len(rows) == 0:
        return x.new_zeros(0, H)
    if plan is None:
        plan = marker_plan(attn, rows, cols)
    keep, padded = plan.keep, plan.padded
    h = x.reshape(B * T, H)
    if padded:
        h = h.index_select(0, keep)  # (N, H)
    bias = None
    if padded:  # the backbone's own additive mask: dtype minimum on padding keys
        bias = (1.0 - attn[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
    layers = backbone.encoder.layer
    for layer in layers[:-1]:
        h = _layer(layer, h, keep, B, T, bias, attention)
    # -- the last layer at the markers: queries of the markers only ---------------------------
    layer = layers[-1]
    sa = layer.attention.self
    h_m = h.index_select(0, plan.at)  # (M, H)
    q_m = sa.query(h_m)  # (M, H)
    if folds(plan.m_max, sa.num_attention_heads, H):
        o = _folded_attention(sa, q_m, _padded(h, keep, B, T), rows, plan, bias)
    else:
        o = _marker_attention(sa, q_m, h, keep, B, T, rows, plan, bias, attention)
    a = layer.attention.output(o, h_m)  # dense, residual, LayerNorm
    return layer.output(layer.intermediate(a), a)  # (M, H)


def folds(m_max: int, heads: int, hidden: int) -> bool:
    """Whether :func:`_folded_attention` does fewer multiply-adds than computing the last
    layer's keys and values: ``m_max * heads * (hidden - head_dim) < hidden**2`` per window
    (MiniLM: fewer than 35 markers in every row of the batch)."""
    return m_max * heads * (hidden - hidden // heads) < hidden * hidden


def _marker_attention(sa: Any, q_m: Tensor, h: Tensor, keep: Tensor, B: int, T: int,
                      rows: Tensor, plan: MarkerPlan, bias: Tensor | None,
                      attention: str) -> Tensor:
    """The markers' attention output (M, H): keys and values of every token ``h`` (N, H)."""
    nh, d, H = sa.num_attention_heads, sa.attention_head_size, h.shape[-1]
    w_kv, b_kv = _qkv(sa, "kv")
    kv = _padded(F.linear(h, w_kv, b_kv), keep, B, T).view(B, T, 2, nh, d)
    k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, nh, T, d) each
    Q = q_m.new_zeros(B, plan.m_max, H)
    Q = Q.index_put((rows, plan.slot), q_m).view(B, -1, nh, d).transpose(1, 2)  # (B,nh,Mmax,d)
    o = _core(Q, k, v, bias, sa.scaling, attention)  # (B, nh, Mmax, d)
    return o.transpose(1, 2).reshape(B, -1, H)[rows, plan.slot]  # (M, H)


def _folded_attention(sa: Any, q_m: Tensor, hp: Tensor, rows: Tensor, plan: MarkerPlan,
                      bias: Tensor | None) -> Tensor:
    """The markers' attention output (M, H) without the keys and values of every token:
    with ``k_t = W_k h_t + b_k`` and ``v_t = W_v h_t + b_v`` per head,
    ``q . k_t = (W_k^T q) . h_t + q . b_k``, whose second term is the same for every key
    (the softmax drops it), and ``sum_t p_t v_t = W_v (sum_t p_t h_t) + b_v`` (``p`` sums
    to 1). So each marker's query is mapped into the hidden space once per head and the
    attention runs over the hidden states ``hp`` (B, T, H, zeros at the padding)
    themselves: ``M * heads * (H + 2 T) * H`` multiply-adds instead of the ``2 T H**2`` of
    the keys and values (:func:`folds`); the same numbers up to float rounding."""
    nh, d = sa.num_attention_heads, sa.attention_head_size
    B, H = hp.shape[0], hp.shape[2]
    w_k, w_v = sa.key.weight.view(nh, d, H), sa.value.weight.view(nh, d, H)
    q = q_m.view(-1, nh, d).transpose(0, 1)  # (nh, M, d)
    qk = torch.bmm(q, w_k).transpose(0, 1)  # (M, nh, H): W_k^T q, one product per head
    # q . b_k: kept although the softmax drops it, so that the key bias gets its gradient
    # (zero up to rounding) as in the backbone's own forward, and AdamW steps it alike
    qb = torch.bmm(q, sa.key.bias.view(nh, d, 1)).transpose(0, 1)  # (M, nh, 1)
    at = (rows, plan.slot)
    Q = qk.new_zeros(B, plan.m_max, nh, H).index_put(at, qk).view(B, -1, H)
    Qb = qb.new_zeros(B, plan.m_max, nh, 1).index_put(at, qb).view(B, -1, 1)
    w = (torch.matmul(Q, hp.transpose(1, 2)) + Qb) * sa.scaling  # (B, Mmax*nh, T)
    if bias is not None:
        w = w + bias[:, 0]  # (B, 1, T): the padding keys
    ph = torch.matmul(torch.softmax(w, dim=-1), hp)  # (B, Mmax*nh, H): sum_t p_t h_t
    ph = ph.view(B, plan.m_max, nh, H)[rows, plan.slot]  # (M, nh, H)
    o = torch.bmm(ph.transpose(0, 1), w_v.transpose(1, 2))  # (nh, M, d): W_v (P h)
    return o.transpose(0, 1).reshape(-1, nh * d) + sa.value.bias  # (M, H)


def _padded(flat: Tensor, keep: Tensor, B: int, T: int) -> Tensor:
    """(N, C) rows of the real tokens -> (B, T, C) with zeros at the padding."""
    if len(keep) == B * T:
        return flat.view(B, T, -1)
    out = flat.new_zeros(B * T, flat.shape[-1])
    return out.index_copy(0, keep, flat).view(B, T, -1)


def _layer(layer: Any, h: Tensor, keep: Tensor, B: int, T: int, bias: Tensor | None,
           attention: str) -> Tensor:
    """One BertLayer on the real tokens ``h`` (N, H)."""
    sa = layer.attention.self
    nh, d = sa.num_attention_heads, sa.attention_head_size
    H = h.shape[-1]
    w, b = _qkv(sa, "qkv")
    qkv = _padded(F.linear(h, w, b), keep, B, T).view(B, T, 3, nh, d)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, nh, T, d) each
    o = _core(q, k, v, bias, sa.scaling, attention)  # (B, nh, T, d)
    o = o.transpose(1, 2).reshape(B * T, H)
    if len(keep) != B * T:
        o = o.index_select(0, keep)  # (N, H)
    a = layer.attention.output(o, h)  # dense, residual, LayerNorm
    return layer.output(layer.intermediate(a), a)  # (N, H)
