"""One step's update of :func:`prefkit.rl.train.train_rl`, by phase: the reference's
log-probs, the advantages the loss names, the policy-gradient update (K optimizer steps
over micro-batches, gradients divided by the step's summed normalisers) and online DPO's
pairwise update. Every function takes the run's :class:`~prefkit.rl.train.RLState`.

Private to :mod:`prefkit.rl`: :mod:`prefkit.rl.train` documents the loop and its metrics.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from prefkit.align.losses import get_align_loss
from prefkit.align.types import SequenceLogps
from prefkit.rl.advantages import (
    group_advantages,
    kl_penalised_rewards,
    reinforce_pp_advantages,
    rloo_advantages,
)
from prefkit.rl.generate import Samples
from prefkit.rl.logprobs import CompletionRows, completion_rows, token_logps
from prefkit.rl.losses import k3_kl
from prefkit.rl.types import TokenLogps
from prefkit.runs import json_num

if TYPE_CHECKING:
    from prefkit.rl.train import RLState

__all__ = ["update"]


def _rows(st: RLState, samples: Samples, mask: Tensor) -> CompletionRows:
    pad = st.tokenizer.pad_token_id
    return completion_rows(samples.prompt_ids, samples.prompt_mask, samples.prompt_index,
                           samples.completion_ids, mask, pad).to(st.device)


def _micro(st: RLState, n: int) -> list[Tensor]:
    size = st.config.micro_batch_size or n
    return list(torch.arange(n, device=st.device).split(size))


@torch.no_grad()
def _reference_logps(st: RLState, rows: CompletionRows, n: int) -> Tensor:
    """(N, T) the reference's per-token log-probs, micro-batch by micro-batch."""
    parts = [token_logps(st.model, _select_rows(rows, mb, st.device),
                         temperature=st.config.temperature, reference=st.reference,
                         chunk_size=st.config.chunk_size) for mb in _micro(st, n)]
    return torch.cat(parts)


def update(st: RLState, samples: Samples, rewards: Tensor) -> dict[str, Any]:
    """Steps 4-6 of the loop: the update of one sampled batch; returns its metrics."""
    if st.config.algo == "online_dpo":
        return _dpo_update(st, samples, rewards)
    return _policy_update(st, samples, rewards)


def _advantages(st: RLState, rewards: Tensor, mask: Tensor, old: Tensor,
                ref: Tensor | None) -> Tensor:
    config, loss, g = st.config, st.loss, st.config.num_generations
    assert loss is not None
    if loss.advantage == "group":
        return group_advantages(rewards, g, scale=config.scale_rewards)
    if loss.advantage == "rloo":
        r = rewards if ref is None else kl_penalised_rewards(rewards, old, ref, mask,
                                                             beta=config.beta)
        return rloo_advantages(r, g, normalize=config.normalize_advantages)
    kl = None if ref is None else (old - ref)  # REINFORCE++: KL in the per-token reward
    return reinforce_pp_advantages(rewards, mask, token_kl=kl, beta=config.beta,
                                   baseline="group" if g > 1 else "none", num_generations=g)


def _policy_update(st: RLState, samples: Samples, rewards: Tensor) -> dict[str, Any]:
    """Advantages, then ``num_iterations`` optimizer steps of the RL loss."""
    config, loss = st.config, st.loss
    assert loss is not None
    mask = samples.mask.clone()
    g = config.num_generations
    if config.mask_truncated:
        mask &= ~samples.truncated[:, None]
    if config.drop_zero_std_groups:
        grouped = rewards.view(-1, g)
        flat = (grouped.max(1).values == grouped.min(1).values).repeat_interleave(g)
        mask &= ~flat[:, None]
    old = samples.old_logps
    rows = _rows(st, samples, mask)
    ref = _reference_logps(st, rows, mask.shape[0]) if st.reference is not None else None
    adv = _advantages(st, rewards, mask, old, ref)
    hyper = config.rl_hyper()
    stats = torch.zeros(5, dtype=torch.float64, device=st.device)  # loss, norm, lo, hi, tok
    grad_norm = torch.zeros(())
    for _ in range(config.num_iterations):
        st.opt.zero_grad(set_to_none=True)
        norm_total, parts = 0.0, _micro(st, mask.shape[0])
        for mb in parts:
            sub = _select_rows(rows, mb, st.device)
            policy = token_logps(st.model, sub, temperature=config.temperature,
                                 chunk_size=config.chunk_size)
            x = TokenLogps(policy, mask[mb], adv[mb], old=old[mb],
                           reference=None if ref is None or loss.kl_in != "loss" else ref[mb])
            out = loss(x, **hyper)
            total = out.losses.sum()
            if loss.reduction == "micro_batch":
                total = total / max(float(out.normaliser), 1.0) / len(parts)
            else:
                norm_total += float(out.normaliser)
            total.backward()
            d = out.diagnostics
            stats += torch.stack([total.detach().double(), torch.tensor(
                float(out.normaliser), dtype=torch.float64, device=st.device),
                d["clipped_low"].sum().double(), d["clipped_high"].sum().double(),
                d["tokens"].sum().double()])
        if loss.reduction == "step":
            scale = 1.0 / max(norm_total, 1.0)
            for p in st.params:
                if p.grad is not None:
                    p.grad.mul_(scale)
        grad_norm = torch.nn.utils.clip_grad_norm_(st.params, config.grad_clip or math.inf)
        st.opt.step()
        st.sched.step()
    s = stats.tolist()
    iters = config.num_iterations
    tokens = max(s[4], 1.0)
    loss_value = s[0] / iters if loss.reduction == "micro_batch" else s[0] / max(s[1], 1.0)
    row = {"loss": json_num(loss_value), "grad_norm": json_num(float(grad_norm)),
           "clip_low": s[2] / tokens, "clip_high": s[3] / tokens,
           "clip_region": (s[2] + s[3]) / tokens}
    if ref is not None:  # k3 of the sampling policy against the reference, per token
        m = mask.to(old.dtype)
        row["kl"] = json_num(float((k3_kl(old, ref) * m).sum() / m.sum().clamp(min=1.0)))
    return row


def _select_rows(rows: CompletionRows, mb: Tensor, device: torch.device) -> CompletionRows:
    """The rows ``mb`` of ``rows``, re-indexed (only the rows' own positions kept)."""
    n, t = rows.shape
    width = rows.input_ids.shape[1]
    keep_rows = mb.to(rows.where.device)
    row_of_where = rows.where // width
    sel = torch.isin(row_of_where, keep_rows)
    new_index = torch.full((n,), -1, dtype=torch.long, device=rows.where.device)
    new_index[keep_rows] = torch.arange(len(keep_rows), device=rows.where.device)
    w = rows.where[sel]
    s = rows.slots[sel]
    where = new_index[w // width] * width + w % width
    slots = new_index[s // t] * t + s % t
    return CompletionRows(rows.input_ids[keep_rows], rows.attention_mask[keep_rows],
                          where, rows.targets[sel], slots, (len(keep_rows), t)).to(device)


def _dpo_update(st: RLState, samples: Samples, rewards: Tensor) -> dict[str, Any]:
    """Online DPO: each prompt's best and worst sample by the reward as (chosen, rejected)
    (ties and unscorable groups skipped), prefkit.align's ``dpo`` loss on the policy's and
    the reference's sequence log-probs, ``num_iterations`` optimizer steps."""
    config, g = st.config, st.config.num_generations
    r = torch.nan_to_num(rewards.view(-1, g), nan=-math.inf)
    best, worst = r.argmax(1), r.argmin(1)
    valid = (r.max(1).values > r.min(1).values) & torch.isfinite(r.max(1).values)
    if not bool(valid.any()):
        return {"loss": None, "grad_norm": None, "pairs": 0}
    base = torch.arange(r.shape[0], device=r.device) * g
    chosen, rejected = (base + best)[valid], (base + worst)[valid]
    order = torch.cat([chosen, rejected])  # response-major: all chosen, then all rejected
    rows = _select_rows(_rows(st, samples, samples.mask), order, st.device)
    mask = samples.mask[order]
    with torch.no_grad():
        ref = token_logps(st.model, rows, temperature=config.temperature,
                          reference=st.reference, chunk_size=config.chunk_size)
    b = int(valid.sum())
    lengths = mask.sum(1).float().view(2, b).t()
    dpo = get_align_loss("dpo")
    losses_out = []
    grad_norm = torch.zeros(())
    for _ in range(config.num_iterations):
        st.opt.zero_grad(set_to_none=True)
        policy = token_logps(st.model, rows, temperature=config.temperature,
                             chunk_size=config.chunk_size)
        logps = SequenceLogps(policy=policy.sum(1).view(2, b).t(), lengths=lengths,
                              reference=ref.sum(1).view(2, b).t())
        out = dpo(logps, beta=config.dpo_beta)
        loss = out.losses.mean()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(st.params, config.grad_clip or math.inf)
        st.opt.step()
        st.sched.step()
        losses_out.append(float(loss.detach()))
    return {"loss": json_num(float(np.mean(losses_out))), "grad_norm": json_num(float(grad_norm)),
            "pairs": b, "margin": json_num(float(out.margins.mean()))}
