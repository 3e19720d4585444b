"""Response log-probabilities from a causal language model, without the full logits tensor.

    logps = response_logps(model, batch)                       # SequenceLogps, (B, K) fp32
    logps = response_logps(model, batch, reference=model.disable_adapter)   # + reference
    logps = response_logps(model, batch, reference=ref_model, token_kl=True)  # + TDPO's KL

``batch`` is an :class:`~prefkit.align.data.AlignBatch`: ``K * B`` right-padded rows,
response-major (row ``k * B + b`` is prompt ``b`` followed by its response ``k``), and a
``loss_mask`` that is True at the positions ``t`` holding a response token to score. The
token at ``t`` is predicted by the logits at ``t - 1``, so

    log pi(y | x) = sum_{t : loss_mask[t]} log_softmax(logits[t - 1])[input_ids[t]]

summed in float32. Prompt tokens (and, in multi-turn data, earlier turns) are never scored
because the mask is False there; nothing here depends on where BOS/EOS sit.

**All K responses in one forward pass**, and **no (rows, T, vocab) logits**: the model's
backbone (``get_decoder()`` / ``base_model``) gives the last hidden states ``(R, T, H)``; only
the ``n`` scored positions are kept (``(n, H)``) and the output embedding is applied to them
``chunk_size`` tokens at a time inside :class:`_ChunkedTokenLogps`, a custom autograd function
that keeps only ``(chunk, vocab)`` in memory: its forward takes a float32 logsumexp per chunk
and gathers the target; its backward recomputes the chunk and forms the gradient
``g * (onehot - softmax)`` in place. Logit scaling (Cohere's ``logit_scale``, Granite's
``logits_scaling``) and soft-capping (Gemma's ``final_logit_softcapping``) are honoured. The
first time a model is seen, the split backbone + head is checked against the model's own
``forward`` on one short row; a model whose structure is unknown, whose head is not a plain
``nn.Linear``, or that fails the check uses the model's logits instead (the fallback, with the
same float32 reductions). Padding columns beyond the longest row are trimmed first.

**Reference.** ``reference`` is either another causal LM or a callable returning a context
manager under which ``model`` itself *is* the reference (``peft_model.disable_adapter``: LoRA
off, the base model, no second copy). Reference passes run under ``torch.no_grad``.
``token_kl=True`` adds, per response, ``sum_t KL(pi_ref(.|ctx_t) || pi_theta(.|ctx_t))`` over
its scored tokens (token-level DPO), computed chunk by chunk from both models' hidden states
and differentiable w.r.t. the policy.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from prefkit.align.types import SequenceLogps

__all__ = ["response_logps", "sequence_logps", "packed_sequence_logps", "split_lm_head",
           "checked_lm_head", "last_hidden_state", "chunked_token_logps", "LMHead",
           "DEFAULT_CHUNK_ELEMENTS"]

#: Default chunk: about this many logits (float32: 4 bytes each) in memory at once.
DEFAULT_CHUNK_ELEMENTS = 1 << 24
_CHECK_TOKENS = 16  # length of the one-row check of the split backbone + head


# -- the model's pieces ----------------------------------------------------------------------------
@dataclass(frozen=True)
class LMHead:
    """A causal LM split as ``logits = transform(head(backbone(ids).last_hidden_state))``."""

    backbone: nn.Module
    head: nn.Linear
    scale: float = 1.0
    softcap: float | None = None

    def transform(self, y: Tensor) -> tuple[Tensor, Tensor | float]:
        """(logits, d logits / d y) from the head's output ``y`` (float32)."""
        z = y * self.scale if self.scale != 1.0 else y
        if self.softcap is None:
            return z, self.scale
        t = torch.tanh(z / self.softcap)
        return self.softcap * t, (1.0 - t * t) * self.scale


_CHECKED: weakref.WeakKeyDictionary[nn.Module, bool] = weakref.WeakKeyDictionary()


def _unwrap(model: nn.Module) -> nn.Module:
    """The transformers model inside a peft / DDP wrapper (LoRA layers stay injected)."""
    while True:
        if callable(getattr(model, "get_base_model", None)):
            model = model.get_base_model()
        elif isinstance(getattr(model, "module", None), nn.Module):  # DDP and the like
            model = model.module
        else:
            return model


def split_lm_head(model: nn.Module) -> LMHead | None:
    """The backbone, the output embedding and the logit transform of ``model``, or None
    when its structure is not the usual one (then callers fall back to full logits)."""
    lm = _unwrap(model)
    get_head = getattr(lm, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if type(head) is not nn.Linear:  # exact: quantised / adapted heads compute otherwise
        return None
    backbone = None
    with contextlib.suppress(Exception):
        backbone = lm.get_decoder()
    if not isinstance(backbone, nn.Module) or backbone is lm:
        backbone = getattr(lm, "base_model", None)
    if not isinstance(backbone, nn.Module) or backbone is lm:
        return None
    cfg = getattr(lm, "config", None)
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    scale = getattr(cfg, "logit_scale", None)  # Cohere multiplies the logits
    if scale is None and getattr(cfg, "logits_scaling", None):  # Granite divides them
        scale = 1.0 / float(cfg.logits_scaling)
    softcap = getattr(cfg, "final_logit_softcapping", None)  # Gemma 2/3
    return LMHead(backbone, head, float(scale if scale is not None else 1.0),
                  float(softcap) if softcap else None)


def _checked_split(model: nn.Module, inputs: _Inputs) -> LMHead | None:
    """:func:`split_lm_head`, checked once per model against its own forward on one row."""
    split = split_lm_head(model)
    lm = _unwrap(model)
    if split is None or _CHECKED.get(lm, True) is False:
        return None
    if lm not in _CHECKED:
        ids, mask = inputs.check_row()
        was_training = lm.training
        lm.eval()
        try:
            with torch.no_grad(), torch.autocast(ids.device.type, enabled=False):
                full = lm(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
                y = split.head(_last_hidden(split.backbone, ids, mask)).float()
                ours = split.transform(y)[0]
            tol = 1e-4 if split.head.weight.dtype == torch.float32 else 2e-2
            _CHECKED[lm] = bool(torch.allclose(ours, full, rtol=tol, atol=tol * (1 + float(
                full.abs().max()))))
        except Exception:  # noqa: BLE001 -- any failure means "use the model's own logits"
            _CHECKED[lm] = False
        finally:
            lm.train(was_training)
    return split if _CHECKED[lm] else None


def checked_lm_head(model: nn.Module, input_ids: Tensor, attention_mask: Tensor
                    ) -> LMHead | None:
    """:func:`split_lm_head` when that split reproduces ``model``'s own logits -- checked once
    per model, on the start of the first of these right-padded rows -- else None (use the
    model's logits). For other log-prob engines over the same split (prefkit.process's
    implicit PRM)."""
    return _checked_split(model, _Inputs(input_ids, attention_mask))


def last_hidden_state(backbone: nn.Module, input_ids: Tensor, attention_mask: Tensor,
                      **kwargs: Any) -> Tensor:
    """The backbone's last hidden states ``(B, T, H)`` (what :class:`LMHead` splits off)."""
    return _last_hidden(backbone, input_ids, attention_mask, **kwargs)


def _last_hidden(backbone: nn.Module, input_ids: Tensor, attention_mask: Tensor,
                 **kwargs: Any) -> Tensor:
    out = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


@dataclass
class _Inputs:
    """What a forward pass takes: right-padded rows with a 2D mask, or a
    :class:`~prefkit.align.packing.PackedBatch` (position ids and a 4D mask in the dtype the
    model's attention takes, or FlexAttention's BlockMask; built once per kind)."""

    input_ids: Tensor
    attention_mask: Tensor | None = None
    packed: Any = None
    _masks: dict[Any, Any] = field(default_factory=dict)

    def kwargs(self, model: nn.Module) -> dict[str, Any]:
        if self.packed is None:
            return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        from prefkit.align.packing import mask_dtype, packed_attention_mask, uses_block_mask

        lm = _unwrap(model)
        kind = "block" if uses_block_mask(lm) else mask_dtype(lm)
        if kind not in self._masks:
            self._masks[kind] = packed_attention_mask(lm, self.packed)
        return {"input_ids": self.input_ids, "attention_mask": self._masks[kind],
                "position_ids": self.packed.position_ids}

    def check_row(self) -> tuple[Tensor, Tensor]:
        """The start of row 0 as one plain sequence (ids, 2D mask) for the split check."""
        if self.packed is None:
            n = min(_CHECK_TOKENS, int(self.attention_mask[0].sum()))
            return self.input_ids[:1, :n], self.attention_mask[:1, :n]
        n = max(1, min(_CHECK_TOKENS, self.packed.check_length))
        ids = self.input_ids[:1, :n]
        return ids, torch.ones_like(ids)


# -- the chunked head ------------------------------------------------------------------------------
def _compute_dtype(weight: Tensor) -> torch.dtype:
    dev = weight.device.type
    return torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else weight.dtype


def _chunk_tokens(chunk_size: int | None, vocab: int) -> int:
    return max(1, int(chunk_size) if chunk_size else DEFAULT_CHUNK_ELEMENTS // max(vocab, 1))


class _ChunkedTokenLogps(torch.autograd.Function):
    """``log_softmax(transform(hidden @ W.T + b))[target]`` per token, ``chunk`` tokens at a
    time, plus (when ``ref_logq`` is given) ``KL(q || p)`` per token with ``q`` the
    reference's distribution. Saves only its inputs; the backward recomputes each chunk."""

    @staticmethod
    def forward(ctx: Any, hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor,
                spec: LMHead, chunk: int, dtype: torch.dtype,
                ref_logq: Callable[[int, int], Tensor] | None) -> tuple[Tensor, Tensor]:
        ctx.set_materialize_grads(False)
        n = hidden.shape[0]
        logps = torch.zeros(n, dtype=torch.float32, device=hidden.device)  # (n,)
        kl = torch.zeros(n if ref_logq is not None else 0, dtype=torch.float32,
                         device=hidden.device)
        w, h_all, tgt = weight.to(dtype), hidden.to(dtype), targets[:, None]  # once, not per chunk
        with torch.autocast(hidden.device.type, enabled=False):
            for s in range(0, n, chunk):
                e = min(s + chunk, n)
                y = _project(h_all[s:e], w, bias, dtype)  # (c, V) fp32
                z = spec.transform(y)[0]
                lse = torch.logsumexp(z, dim=-1)  # (c,)
                torch.sub(z.gather(1, tgt[s:e]).squeeze(1), lse, out=logps[s:e])
                if ref_logq is not None:
                    logq = ref_logq(s, e)  # (c, V) fp32
                    kl[s:e] = (logq.exp() * (logq - z + lse[:, None])).sum(-1)
        ctx.save_for_backward(hidden, weight, bias, targets)
        ctx.spec, ctx.chunk, ctx.dtype, ctx.ref_logq = spec, chunk, dtype, ref_logq
        return logps, kl

    @staticmethod
    def backward(ctx: Any, g_logps: Tensor | None, g_kl: Tensor | None) -> tuple[Any, ...]:
        hidden, weight, bias, targets = ctx.saved_tensors
        spec, chunk, dtype = ctx.spec, ctx.chunk, ctx.dtype
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        grad_h = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device) \
            if need_h else None  # every row is written below
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) \
            if need_w else None
        grad_b = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) \
            if need_b and bias is not None else None
        if ctx.ref_logq is None:
            g_kl = None
        if g_logps is None and g_kl is None:
            return (None,) * 8
        w, h_all, tgt = weight.to(dtype), hidden.to(dtype), targets[:, None]
        # per token, once: dz = g_logp * (onehot - p) + g_kl * (p - q) = coef * p + ...
        g_tok = None if g_logps is None else g_logps.float()[:, None]  # (n, 1)
        g_q = None if g_kl is None else g_kl.float()[:, None]  # (n, 1)
        coef = -g_tok if g_q is None else (g_q if g_tok is None else g_q - g_tok)
        with torch.autocast(hidden.device.type, enabled=False):
            for s in range(0, hidden.shape[0], chunk):
                e = min(s + chunk, hidden.shape[0])
                h = h_all[s:e]
                z, dz_dy = spec.transform(_project(h, w, bias, dtype))  # (c, V) fp32
                dz = torch.softmax(z, dim=-1)  # p; dz is built in its buffer
                del z
                dz.mul_(coef[s:e])
                if g_tok is not None:
                    dz.scatter_add_(1, tgt[s:e], g_tok[s:e])
                if g_q is not None:
                    dz.sub_(ctx.ref_logq(s, e).exp_().mul_(g_q[s:e]))
                if not (isinstance(dz_dy, float) and dz_dy == 1.0):
                    dz.mul_(dz_dy)  # through the scale / soft-cap
                dy = dz.to(dtype)  # (c, V): d loss / d (h @ W.T + b)
                if grad_h is not None and dtype == torch.float32:
                    torch.mm(dy, w, out=grad_h[s:e])
                elif grad_h is not None:
                    grad_h[s:e] = (dy @ w).float()
                if grad_w is not None and dtype == torch.float32:
                    grad_w.addmm_(dy.t(), h)
                elif grad_w is not None:
                    grad_w += (dy.t() @ h).float()
                if grad_b is not None:
                    grad_b += dy.float().sum(0)
        return (None if grad_h is None else grad_h.to(hidden.dtype),
                None if grad_w is None else grad_w.to(weight.dtype),
                None if grad_b is None else grad_b.to(bias.dtype),
                None, None, None, None, None)


def _project(h: Tensor, w: Tensor, bias: Tensor | None, dtype: torch.dtype) -> Tensor:
    y = h @ w.t()
    if bias is not None:
        y = y + bias.to(dtype)
    return y.float()  # fp32 from here on (logsumexp, softmax, gradients)


def chunked_token_logps(hidden: Tensor, head: LMHead, targets: Tensor, *,
                        chunk_size: int | None = None,
                        ref_logq: Callable[[int, int], Tensor] | None = None
                        ) -> tuple[Tensor, Tensor | None]:
    """Per-token target log-probs ``(n,)`` (and per-token ``KL(ref || policy)`` when
    ``ref_logq(start, end)`` gives the reference's ``(end - start, V)`` log-probs) from the
    hidden states ``(n, H)`` at the scoring positions, never holding more than
    ``chunk_size`` tokens' logits. Float32 results; gradients flow to ``hidden`` and the
    head's weights."""
    w = head.head.weight
    chunk = _chunk_tokens(chunk_size, w.shape[0])
    logps, kl = _ChunkedTokenLogps.apply(hidden, w, head.head.bias, targets, head, chunk,
                                         _compute_dtype(w), ref_logq)
    return logps, (kl if ref_logq is not None else None)


# -- scored positions: hidden states (fused) or logits (fallback) ----------------------------------
@dataclass
class _Scored:
    """What one model gives at the ``n`` scoring positions."""

    head: LMHead | None
    hidden: Tensor | None = None  # (n, H) when head is not None
    logits: Tensor | None = None  # (n, V) otherwise

    def log_probs(self, chunk: int) -> Callable[[int, int], Tensor]:
        """``(start, end) -> (end - start, V)`` float32 log-probs, computed on demand."""
        def fn(s: int, e: int) -> Tensor:
            with torch.no_grad():
                if self.head is None:
                    return torch.log_softmax(self.logits[s:e].float(), dim=-1)
                w = self.head.head.weight
                dtype = _compute_dtype(w)
                y = _project(self.hidden[s:e].to(dtype), w.to(dtype), self.head.head.bias, dtype)
                return torch.log_softmax(self.head.transform(y)[0], dim=-1)
        return fn


def _score_positions(model: nn.Module, inputs: _Inputs, where: Tensor) -> _Scored:
    """Run ``model`` on all rows once; keep its output at the flat positions ``where``
    (``(n,)`` indices into ``R * T``: the positions whose next token is scored)."""
    split = _checked_split(model, inputs)
    if split is not None:
        hidden = _last_hidden(split.backbone, **inputs.kwargs(model))  # (R, T, H)
        return _Scored(split, hidden=hidden.flatten(0, 1).index_select(0, where))  # (n, H)
    logits = model(**inputs.kwargs(model), use_cache=False).logits
    return _Scored(None, logits=logits.flatten(0, 1).index_select(0, where))  # (n, V)


def _token_values(scored: _Scored, targets: Tensor, chunk_size: int | None,
                  ref: _Scored | None = None) -> tuple[Tensor, Tensor | None]:
    """(per-token log-probs (n,), per-token KL(ref || policy) (n,) or None)."""
    vocab = (scored.head.head.weight.shape[0] if scored.head is not None
             else scored.logits.shape[-1])
    chunk = _chunk_tokens(chunk_size, vocab)
    ref_logq = None if ref is None else ref.log_probs(chunk)
    if scored.head is not None:
        return chunked_token_logps(scored.hidden, scored.head, targets, chunk_size=chunk,
                                   ref_logq=ref_logq)
    logp = torch.log_softmax(scored.logits.float(), dim=-1)  # (n, V) fp32
    tok = logp.gather(1, targets[:, None]).squeeze(1)
    if ref_logq is None:
        return tok, None
    logq = ref_logq(0, targets.shape[0])
    return tok, (logq.exp() * (logq - logp)).sum(-1)


# -- the public entry points -----------------------------------------------------------------------
def _rows(values: Tensor, shape: tuple[int, int], index: Tensor) -> Tensor:
    """Per-token values (n,) -> per-row sums (R,), in float32, deterministic order: value
    ``i`` goes to the flat slot ``index[i]`` of an ``(R, S)`` table (an index, not a mask:
    neither way needs the device to say how many there are)."""
    full = torch.zeros(shape[0] * shape[1], dtype=torch.float32, device=values.device)
    return full.index_put((index,), values.float()).view(shape).sum(dim=1)


def _trim(input_ids: Tensor, attention_mask: Tensor, loss_mask: Tensor
          ) -> tuple[Tensor, Tensor, Tensor]:
    """Check right padding and masks (one device sync); drop the columns past the longest
    row."""
    attn, mask = attention_mask.bool(), loss_mask.bool()
    if input_ids.ndim != 2 or attn.shape != input_ids.shape or mask.shape != input_ids.shape:
        raise ValueError("input_ids, attention_mask and loss_mask must all be (rows, T); got "
                         f"{tuple(input_ids.shape)}, {tuple(attention_mask.shape)}, "
                         f"{tuple(loss_mask.shape)}")
    if not attn.numel():
        return input_ids, attention_mask, mask
    left, outside, first, t = torch.stack([
        (attn[:, 1:] & ~attn[:, :-1]).any(), (mask & ~attn).any(), mask[:, 0].any(),
        attn.sum(dim=1).max()]).tolist()
    if left:
        raise ValueError("rows must be right-padded (attention_mask ones, then zeros)")
    if outside:
        raise ValueError("loss_mask marks padding positions (loss_mask must lie inside "
                         "attention_mask)")
    if first:
        raise ValueError("loss_mask is True at position 0: the first token has no context to "
                         "be predicted from (is the prompt, or BOS, missing?)")
    return input_ids[:, :t], attention_mask[:, :t], mask[:, :t]


def _as_reference(model: nn.Module, reference: Any
                  ) -> tuple[nn.Module, Callable[[], contextlib.AbstractContextManager[Any]]]:
    if isinstance(reference, nn.Module):
        return reference, contextlib.nullcontext
    if callable(reference):  # e.g. peft_model.disable_adapter: the policy is the reference
        return model, reference
    raise TypeError("reference must be a causal LM or a callable returning a context manager "
                    f"(e.g. peft_model.disable_adapter), got {type(reference).__name__}")


def sequence_logps(model: nn.Module, input_ids: Tensor, attention_mask: Tensor,
                   loss_mask: Tensor, *, chunk_size: int | None = None, reference: Any = None,
                   token_kl: bool = False) -> dict[str, Tensor]:
    """Per-row sums over scored tokens for ``(R, T)`` rows: ``{"policy": (R,) fp32 with
    grad, "lengths": (R,), "reference": (R,) (with ``reference``), "token_kl": (R,)
    (with ``token_kl``)}``. See the module docstring for the conventions."""
    ids, attn, mask = _trim(input_ids, attention_mask, loss_mask)
    prev = torch.zeros_like(mask)
    prev[:, :-1] = mask[:, 1:]  # (R, T): the output at t - 1 scores the token at t
    where = prev.flatten().nonzero().squeeze(1)  # (n,) flat positions
    targets = ids.flatten().index_select(0, where + 1)  # (n,) the next tokens
    return _sums(model, _Inputs(ids, attn), where, targets, prev, where,
                 chunk_size=chunk_size, reference=reference, token_kl=token_kl)


def packed_sequence_logps(model: nn.Module, batch: Any, *, chunk_size: int | None = None,
                          reference: Any = None, token_kl: bool = False) -> dict[str, Tensor]:
    """:func:`sequence_logps` of a :class:`~prefkit.align.packing.PackedBatch`: per response
    (``(K*B,)``, response-major) sums over its scored tokens; one forward pass over the
    packed rows, no device synchronisation to find the scored positions."""
    return _sums(model, _Inputs(batch.input_ids, packed=batch), batch.where, batch.targets,
                 batch.scored, batch.slot_index, chunk_size=chunk_size, reference=reference,
                 token_kl=token_kl)


def _sums(model: nn.Module, inputs: _Inputs, where: Tensor, targets: Tensor, slots: Tensor,
          index: Tensor, *, chunk_size: int | None, reference: Any, token_kl: bool
          ) -> dict[str, Tensor]:
    """The per-row sums of :func:`sequence_logps`: outputs at ``where`` (n,) score
    ``targets`` (n,); ``slots`` (R, S) bool marks the table slots they fill, ``index``
    (n,) names each one's flat slot."""
    out: dict[str, Tensor] = {"lengths": slots.sum(dim=1).to(torch.float32)}
    shape = (slots.shape[0], slots.shape[1])

    def rows(values: Tensor) -> Tensor:
        return _rows(values, shape, index)

    ref_scored = None
    if reference is not None:
        ref_model, ref_context = _as_reference(model, reference)
        with torch.no_grad(), ref_context():
            ref_scored = _score_positions(ref_model, inputs, where)
            out["reference"] = rows(_token_values(ref_scored, targets, chunk_size)[0])
    elif token_kl:
        raise ValueError("token_kl=True needs a reference (a model, or a callable such as "
                         "peft_model.disable_adapter)")
    scored = _score_positions(model, inputs, where)
    tok, kl = _token_values(scored, targets, chunk_size, ref_scored if token_kl else None)
    out["policy"] = rows(tok)
    if kl is not None:
        out["token_kl"] = rows(kl)
    return out


def response_logps(model: nn.Module, batch: Any, *, chunk_size: int | None = None,
                   reference: Any = None, token_kl: bool = False) -> SequenceLogps:
    """Sequence log-probabilities of every response of an ``AlignBatch`` in one forward pass.

    Returns a :class:`SequenceLogps` with ``policy`` ``(B, K)`` (float32, differentiable),
    ``lengths`` (scored tokens per response), ``valid`` and ``label`` from the batch;
    ``reference`` ``(B, K)`` when ``reference`` is given (no gradients); ``token_kl`` when
    asked; and, when the batch carries KTO's mismatched rows (``kl_input_ids``),
    ``kl_policy`` (no gradients, as KTO detaches its KL estimate) and ``kl_reference``.
    ``chunk_size`` is tokens per chunk of the output layer (None: about
    :data:`DEFAULT_CHUNK_ELEMENTS` logits).
    """
    k = int(batch.num_responses)
    packed = getattr(batch, "position_ids", None) is not None  # a PackedBatch
    rows = batch.scored.shape[0] if packed else batch.input_ids.shape[0]
    if k < 1 or rows % k:
        raise ValueError(f"{rows} rows cannot hold {k} responses per prompt")
    b = rows // k
    if packed:
        got = packed_sequence_logps(model, batch, chunk_size=chunk_size, reference=reference,
                                    token_kl=token_kl)
    else:
        got = sequence_logps(model, batch.input_ids, batch.attention_mask, batch.loss_mask,
                             chunk_size=chunk_size, reference=reference, token_kl=token_kl)

    def table(x: Tensor | None) -> Tensor | None:  # (K*B,) response-major -> (B, K)
        return None if x is None else x.view(k, b).t()

    extra: dict[str, Tensor | None] = {}
    kl_ids = getattr(batch, "kl_input_ids", None)
    kl_packed = getattr(batch, "kl", None) if packed else None
    if kl_ids is not None or kl_packed is not None:  # KTO: mismatched pairs, no gradients
        with torch.no_grad():
            kl = packed_sequence_logps(model, kl_packed, chunk_size=chunk_size,
                                       reference=reference) if packed else \
                sequence_logps(model, kl_ids, batch.kl_attention_mask, batch.kl_loss_mask,
                               chunk_size=chunk_size, reference=reference)
        extra = {"kl_policy": kl["policy"], "kl_reference": kl.get("reference")}
    return SequenceLogps(
        policy=table(got["policy"]), lengths=table(got["lengths"]),
        reference=table(got.get("reference")), token_kl=table(got.get("token_kl")),
        # all responses valid (known on the host): no mask, so no loss syncs to check it
        valid=None if getattr(batch, "complete", False) else getattr(batch, "valid", None),
        label=getattr(batch, "label", None), **extra)
