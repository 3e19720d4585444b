"""Per-token log-probabilities of sampled completions under a model, for the RL losses.

    rows = completion_rows(samples)                      # right-padded prompt + completion
    logps = token_logps(model, rows, temperature=0.7)    # (N, T) fp32, with gradients
    ref = token_logps(model, rows, reference=model.disable_adapter)   # LoRA off: the base

Each completion is placed right after its own prompt (the prompt's left padding removed),
so every row is right-padded as :mod:`prefkit.align.logprobs` expects. The log-probs are
``log_softmax(logits / temperature)`` at the completion's tokens (TRL's GRPO convention),
computed by prefkit.align's chunked output layer
(:func:`~prefkit.align.logprobs.chunked_token_logps`): the backbone gives the hidden states,
only the scored positions are kept and the head is applied a chunk at a time, so no
``(rows, T, vocab)`` logits tensor is ever built. The temperature is folded into the head's
logit scale. A model whose head cannot be split (or with a logit soft-cap, where dividing
by the temperature does not commute) uses its own logits.

**The prompt once for its G completions** (:func:`shared_token_logps`): the prompts run
through the backbone once, filling a KV cache *with gradients*; the cache is indexed out to
the completions' rows and only the completion tokens run on top of it. The token before a
completion's first one is the prompt's last, whose hidden state comes from the prompt pass.
For a prompt of ``Lp`` tokens and completions of ``T``, a batch costs ``P * Lp + N * T``
token-passes instead of ``N * (Lp + T)``; log-probs and gradients equal the full rows' to
float rounding (tested).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from prefkit.align.logprobs import LMHead, chunked_token_logps, split_lm_head

__all__ = ["CompletionRows", "completion_rows", "shared_token_logps", "token_logps"]


@dataclass
class CompletionRows:
    """Prompt + completion rows, right-padded, and where the completion tokens sit.

    input_ids / attention_mask: (N, L). where: (n,) flat indices into ``N * L`` of the
    positions whose *next* token is a completion token; targets: (n,) those tokens;
    slots: (n,) flat indices into the ``(N, T)`` completion layout; shape: ``(N, T)``.
    """

    input_ids: Tensor
    attention_mask: Tensor
    where: Tensor
    targets: Tensor
    slots: Tensor
    shape: tuple[int, int]

    def to(self, device: Any) -> CompletionRows:
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).to(device)
                                            for f in dataclasses.fields(self)
                                            if isinstance(getattr(self, f.name), Tensor)})


def completion_rows(prompt_ids: Tensor, prompt_mask: Tensor, prompt_index: Tensor,
                    completion_ids: Tensor, mask: Tensor, pad_id: int = 0) -> CompletionRows:
    """Rows ``[prompt (unpadded), completion tokens in mask]`` for ``N`` completions;
    ``prompt_index`` (N,) names each completion's row of the left-padded ``prompt_ids``."""
    n, t = completion_ids.shape
    p_len = prompt_mask.sum(1)[prompt_index].tolist()
    c_len = mask.sum(1).tolist()
    width = max((a + b for a, b in zip(p_len, c_len, strict=True)), default=1)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    attn = torch.zeros((n, width), dtype=torch.long)
    where, slots = [], []
    pids, cids = prompt_ids.cpu(), completion_ids.cpu()
    for i, (lp, lc) in enumerate(zip(p_len, c_len, strict=True)):
        p = int(prompt_index[i])
        ids[i, :lp] = pids[p, pids.shape[1] - lp:]
        ids[i, lp:lp + lc] = cids[i, :lc]
        attn[i, :lp + lc] = 1
        where.extend(i * width + lp - 1 + j for j in range(lc))
        slots.extend(i * t + j for j in range(lc))
    where_t = torch.tensor(where, dtype=torch.long)
    return CompletionRows(ids, attn, where_t, ids.flatten()[where_t + 1],
                          torch.tensor(slots, dtype=torch.long), (n, t))


def _split(model: nn.Module, temperature: float) -> LMHead | None:
    head = split_lm_head(model)
    if head is None or head.softcap is not None:
        return None
    return dataclasses.replace(head, scale=head.scale / temperature)


def _context(model: nn.Module, reference: Any
             ) -> tuple[nn.Module, Callable[[], contextlib.AbstractContextManager[Any]]]:
    if reference is None:
        return model, contextlib.nullcontext
    if isinstance(reference, nn.Module):
        return reference, contextlib.nullcontext
    if callable(reference):  # peft_model.disable_adapter: the policy is the reference
        return model, reference
    raise TypeError("reference must be a causal LM or a callable returning a context manager "
                    f"(e.g. peft_model.disable_adapter), got {type(reference).__name__}")


def token_logps(model: nn.Module, rows: CompletionRows, *, temperature: float = 1.0,
                reference: Any = None, chunk_size: int | None = None) -> Tensor:
    """(N, T) float32 log-probs of the completion tokens (0 elsewhere) under ``model``, or
    under ``reference`` (a model, or a context such as ``disable_adapter``; then without
    gradients). See the module docstring."""
    lm, ctx = _context(model, reference)
    grad = reference is None and torch.is_grad_enabled()
    with torch.set_grad_enabled(grad), ctx():
        split = _split(lm, temperature)
        if split is not None:
            out = split.backbone(input_ids=rows.input_ids, attention_mask=rows.attention_mask,
                                 use_cache=False)
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            hidden = hidden.flatten(0, 1).index_select(0, rows.where)  # (n, H)
            tok, _ = chunked_token_logps(hidden, split, rows.targets, chunk_size=chunk_size)
        else:
            logits = lm(input_ids=rows.input_ids, attention_mask=rows.attention_mask,
                        use_cache=False).logits
            logits = logits.flatten(0, 1).index_select(0, rows.where).float() / temperature
            tok = torch.log_softmax(logits, dim=-1).gather(1, rows.targets[:, None]).squeeze(1)
    n, t = rows.shape
    full = torch.zeros(n * t, dtype=torch.float32, device=tok.device)
    return full.index_put((rows.slots,), tok.float()).view(n, t)


def shared_token_logps(model: nn.Module, prompt_ids: Tensor, prompt_mask: Tensor,
                       prompt_index: Tensor, completion_ids: Tensor, mask: Tensor, *,
                       temperature: float = 1.0, reference: Any = None,
                       chunk_size: int | None = None, value_head: nn.Module | None = None
                       ) -> Any:
    """(N, T) float32 log-probs of the completion tokens (0 elsewhere), each prompt run once
    for all its completions: the prompts' forward pass fills a KV cache (with gradients),
    the cache is indexed out to the completions' rows and the completions attend to it.
    None when the model's head cannot be split (then use :func:`token_logps`). With
    ``value_head`` (PPO), ``(log-probs, values)``: the head applied to the same hidden
    states (the state before each completion token), ``(N, T)`` float32, 0 elsewhere."""
    from transformers import DynamicCache

    lm, ctx = _context(model, reference)
    grad = reference is None and torch.is_grad_enabled()
    with torch.set_grad_enabled(grad), ctx():
        split = _split(lm, temperature)
        if split is None:
            return None
        uniq, rows_prompt = torch.unique(prompt_index, return_inverse=True)
        p_ids, p_mask = prompt_ids[uniq], prompt_mask[uniq]
        p_pos = (p_mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=getattr(lm, "config", None))
        out = split.backbone(input_ids=p_ids, attention_mask=p_mask, position_ids=p_pos,
                             past_key_values=cache, use_cache=True)
        p_last = out.last_hidden_state[:, -1]  # (U, H): predicts each completion's 1st token
        cache.batch_select_indices(rows_prompt.to(p_ids.device))  # (N, ...) one per row
        n, t = completion_ids.shape
        c_mask = mask.to(p_mask.dtype)
        attn = torch.cat([p_mask[rows_prompt], c_mask], dim=1)  # (N, Lp + T)
        pos = p_mask.sum(1)[rows_prompt][:, None] + torch.arange(t, device=p_ids.device)
        c_out = split.backbone(input_ids=completion_ids, attention_mask=attn,
                               position_ids=pos, past_key_values=cache, use_cache=True)
        hidden = torch.cat([p_last[rows_prompt][:, None], c_out.last_hidden_state[:, :-1]],
                           dim=1)  # (N, T, H): the state before each completion token
        keep = mask.bool()
        states = hidden[keep]  # (n, H)
        tok, _ = chunked_token_logps(states, split, completion_ids[keep],
                                     chunk_size=chunk_size)
        values = None if value_head is None else value_head(states.float()).squeeze(-1)
    full = torch.zeros((n, t), dtype=torch.float32, device=tok.device)
    logps = full.masked_scatter(keep, tok.float())
    if values is None:
        return logps
    return logps, torch.zeros_like(full).masked_scatter(keep, values.float())
