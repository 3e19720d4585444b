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
    gae,
    group_advantages,
    kl_penalised_rewards,
    masked_whiten,
    ppo_token_rewards,
    reinforce_pp_advantages,
    rloo_advantages,
)
from prefkit.rl.generate import Samples
from prefkit.rl.logprobs import (
    CompletionRows,
    completion_rows,
    shared_token_logps,
    token_logps,
)
from prefkit.rl.losses import k3_kl
from prefkit.rl.process_rewards import process_advantages, step_token_ends
from prefkit.rl.types import TokenLogps
from prefkit.runs import json_num

if TYPE_CHECKING:
    from prefkit.rl.train import RLState

__all__ = ["update"]


class _Scorer:
    """Per-token log-probs of chosen completion rows under the policy (or the reference):
    the prompt once for its completions (:func:`~prefkit.rl.logprobs.shared_token_logps`)
    when ``share_prefill`` and the model's head splits; else full prompt + completion rows
    (:func:`~prefkit.rl.logprobs.token_logps`), built on first use."""

    def __init__(self, st: RLState, samples: Samples, mask: Tensor) -> None:
        self.st, self.samples, self.mask = st, samples, mask
        self.shared = st.config.share_prefill
        self._rows: CompletionRows | None = None

    def __call__(self, idx: Tensor, reference: Any = None) -> Tensor:
        with torch.autocast(self.st.device.type, dtype=torch.bfloat16,
                            enabled=self.st.config.precision == "bf16"):
            return self._logps(idx, reference)

    def with_values(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """(log-probs, values) of rows ``idx`` under the policy and its value head (PPO)."""
        st, s, cfg = self.st, self.samples, self.st.config
        with torch.autocast(st.device.type, dtype=torch.bfloat16,
                            enabled=cfg.precision == "bf16"):
            out = shared_token_logps(
                st.model, s.prompt_ids, s.prompt_mask, s.prompt_index[idx.cpu()].to(st.device),
                s.completion_ids[idx], self.mask[idx], temperature=cfg.temperature,
                chunk_size=cfg.chunk_size, value_head=st.value_head)
        if out is None:
            raise ValueError("PPO's value head reads the LM head's input: this model's head "
                             "does not split (or soft-caps its logits); use grpo or rloo")
        return out

    def _logps(self, idx: Tensor, reference: Any) -> Tensor:
        st, s, cfg = self.st, self.samples, self.st.config
        if self.shared:
            out = shared_token_logps(
                st.model, s.prompt_ids, s.prompt_mask, s.prompt_index[idx.cpu()].to(st.device),
                s.completion_ids[idx], self.mask[idx], temperature=cfg.temperature,
                reference=reference, chunk_size=cfg.chunk_size)
            if out is not None:
                return out
            self.shared = False  # the head does not split: full rows from now on
        if self._rows is None:
            self._rows = completion_rows(s.prompt_ids, s.prompt_mask, s.prompt_index,
                                         s.completion_ids, self.mask,
                                         st.tokenizer.pad_token_id).to(st.device)
        return token_logps(st.model, _select_rows(self._rows, idx, st.device),
                           temperature=cfg.temperature, reference=reference,
                           chunk_size=cfg.chunk_size)


def _micro(st: RLState, n: int) -> list[Tensor]:
    size = st.config.micro_batch_size or n
    return list(torch.arange(n, device=st.device).split(size))


@torch.no_grad()
def _reference_logps(st: RLState, scorer: _Scorer, n: int) -> Tensor:
    """(N, T) the reference's per-token log-probs, micro-batch by micro-batch."""
    return torch.cat([scorer(mb, reference=st.reference) for mb in _micro(st, n)])


def update(st: RLState, samples: Samples, rewards: Tensor, prompts: list[str]
           ) -> dict[str, Any]:
    """Steps 4-6 of the loop: the update of one sampled batch (``prompts``: each
    completion's); returns its metrics."""
    if st.config.algo == "online_dpo":
        return _dpo_update(st, samples, rewards)
    return _policy_update(st, samples, rewards, prompts)


def _process_advantages(st: RLState, samples: Samples, prompts: list[str]
                        ) -> tuple[Tensor, float]:
    """(N, T) the process reward's per-token advantages and the mean step reward."""
    assert st.process is not None
    spans, step_rewards = st.process(prompts, samples.texts)
    ids = samples.completion_ids.tolist()
    ends = [step_token_ends(row[:n], [e for _, e in sp], st.tokenizer)
            for row, n, sp in zip(ids, samples.lengths.tolist(), spans, strict=True)]
    adv = process_advantages(step_rewards, ends, tuple(samples.mask.shape),
                             num_generations=st.config.num_generations)
    flat = [r for rs in step_rewards for r in rs if not math.isnan(r)]
    if st.procs.world == 1:
        return adv.to(st.device), float(np.mean(flat)) if flat else math.nan
    # several processes: the mean step reward over every process's steps
    total, count = st.procs.all_reduce_(torch.tensor(
        [float(sum(flat)), float(len(flat))], dtype=torch.float64, device=st.device)).tolist()
    return adv.to(st.device), total / count if count else math.nan


def _advantages(st: RLState, rewards: Tensor, mask: Tensor, old: Tensor,
                ref: Tensor | None) -> Tensor:
    config, loss, g, procs = st.config, st.loss, st.config.num_generations, st.procs
    assert loss is not None
    # several processes: formed over every process's rewards, each keeping its share
    if loss.advantage == "group":
        return procs.local(group_advantages(procs.gather_cat(rewards), g,
                                            scale=config.scale_rewards))
    if loss.advantage == "rloo":
        r = rewards if ref is None else kl_penalised_rewards(rewards, old, ref, mask,
                                                             beta=config.beta)
        return procs.local(rloo_advantages(procs.gather_cat(r), g,
                                           normalize=config.normalize_advantages))
    kl = None if ref is None else (old - ref)  # REINFORCE++: KL in the per-token reward
    return reinforce_pp_advantages(rewards, mask, token_kl=kl, beta=config.beta,
                                   baseline="group" if g > 1 else "none", num_generations=g,
                                   reduce=procs.all_reduce_ if procs.world > 1 else None)


def _policy_update(st: RLState, samples: Samples, rewards: Tensor, prompts: list[str]
                   ) -> dict[str, Any]:
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
    scorer = _Scorer(st, samples, mask)
    ref = _reference_logps(st, scorer, mask.shape[0]) if st.reference is not None else None
    old_values = returns = None
    if loss.advantage == "gae":  # PPO: values at sampling, per-token rewards, GAE
        with torch.no_grad():
            old_values = torch.cat([scorer.with_values(mb)[1] for mb in _micro(st, len(mask))])
        token_r = ppo_token_rewards(rewards, mask, old=old, reference=ref, beta=config.beta)
        adv, returns = gae(token_r, old_values, mask, gamma=config.gamma, lam=config.lam)
        adv = masked_whiten(adv, mask, reduce=st.procs.all_reduce_ if st.procs.world > 1
                            else None)  # over every process's tokens
    else:
        adv = _advantages(st, rewards, mask, old, ref)
    value_stats = torch.zeros(2, dtype=torch.float64, device=st.device)
    process_mean = None
    if st.process is not None:  # dense step rewards: per-token advantages
        p_adv, process_mean = _process_advantages(st, samples, prompts)
        adv = (adv[:, None] if adv.ndim == 1 else adv) + config.process_weight * p_adv
        adv = adv * mask.to(adv.dtype)
    hyper = config.rl_hyper()
    stats = torch.zeros(5, dtype=torch.float64, device=st.device)  # loss, norm, lo, hi, tok
    grad_norm = torch.zeros(())
    for _ in range(config.num_iterations):
        st.opt.zero_grad(set_to_none=True)
        norm_total, parts = 0.0, _micro(st, mask.shape[0])
        for mb in parts:
            values = None
            if old_values is None:
                policy = scorer(mb)
            else:
                policy, values = scorer.with_values(mb)
            x = TokenLogps(policy, mask[mb], adv[mb], old=old[mb],
                           reference=None if ref is None or loss.kl_in != "loss" else ref[mb],
                           values=values,
                           old_values=None if old_values is None else old_values[mb],
                           returns=None if returns is None else returns[mb])
            out = loss(x, **hyper)
            total = out.losses.sum()
            if loss.reduction == "micro_batch":
                total = total / max(float(out.normaliser), 1.0) / len(parts)
            else:
                norm_total += float(out.normaliser)
            if total.requires_grad:  # a micro-batch whose tokens all dropped has none
                total.backward()
            d = out.diagnostics
            if "value" in d:
                value_stats += torch.stack([d["value"].sum().double(),
                                            d["value_clipped"].sum().double()])
            stats += torch.stack([total.detach().double(), torch.tensor(
                float(out.normaliser), dtype=torch.float64, device=st.device),
                d["clipped_low"].sum().double(), d["clipped_high"].sum().double(),
                d["tokens"].sum().double()])
        # the gradients summed over processes, divided by the step's normaliser (bnpo:
        # averaged over processes)
        if loss.reduction == "step":
            norm_total = float(st.procs.all_reduce_(torch.tensor(
                norm_total, dtype=torch.float64, device=st.device)))
            st.procs.sum_grads(st.params, 1.0 / max(norm_total, 1.0))
        else:
            st.procs.sum_grads(st.params, 1.0 / st.procs.world)
        grad_norm = torch.nn.utils.clip_grad_norm_(st.params, config.grad_clip or math.inf)
        st.opt.step()
        st.sched.step()
    s = st.procs.all_reduce_(stats).tolist()
    iters = config.num_iterations
    tokens = max(s[4], 1.0)
    loss_value = s[0] / iters / st.procs.world if loss.reduction == "micro_batch" else s[0] / max(s[1], 1.0)
    row = {"loss": json_num(loss_value), "grad_norm": json_num(float(grad_norm)),
           "clip_low": s[2] / tokens, "clip_high": s[3] / tokens,
           "clip_region": (s[2] + s[3]) / tokens}
    if process_mean is not None:
        row["process_reward"] = json_num(process_mean)
    if old_values is not None:  # PPO: the value loss and clip fraction per token
        v = st.procs.all_reduce_(value_stats).tolist()
        row["value_loss"] = json_num(v[0] / tokens)
        row["value_clipped"] = v[1] / tokens
        m = mask.to(old_values.dtype)
        vm = st.procs.all_reduce_(torch.stack([(old_values * m).sum().double(),
                                               m.sum().double()])).tolist()
        row["value_mean"] = json_num(vm[0] / max(vm[1], 1.0))
    if ref is not None:  # k3 of the sampling policy against the reference, per token
        m = mask.to(old.dtype)
        kl = st.procs.all_reduce_(torch.stack([(k3_kl(old, ref) * m).sum().double(),
                                               m.sum().double()])).tolist()
        row["kl"] = json_num(kl[0] / max(kl[1], 1.0))
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
    the reference's sequence log-probs, ``num_iterations`` optimizer steps. Several
    processes: the mean over every process's pairs (gradients summed, each process's loss
    divided by the global number of pairs; a process without pairs adds zeros)."""
    config, g, procs = st.config, st.config.num_generations, st.procs
    r = torch.nan_to_num(rewards.view(-1, g), nan=-math.inf)
    best, worst = r.argmax(1), r.argmin(1)
    valid = (r.max(1).values > r.min(1).values) & torch.isfinite(r.max(1).values)
    b = int(valid.sum())
    b_all = int(procs.all_reduce_(torch.tensor(float(b), dtype=torch.float64,
                                               device=st.device)).item())
    if b_all == 0:
        return {"loss": None, "grad_norm": None, "pairs": 0}
    base = torch.arange(r.shape[0], device=r.device) * g
    chosen, rejected = (base + best)[valid], (base + worst)[valid]
    order = torch.cat([chosen, rejected])  # response-major: all chosen, then all rejected
    scorer = _Scorer(st, samples, samples.mask)
    mask = samples.mask[order]
    if b:
        with torch.no_grad():
            ref = scorer(order, reference=st.reference)
    lengths = mask.sum(1).float().view(2, b).t()
    dpo = get_align_loss("dpo")
    losses_out = []
    grad_norm = torch.zeros(())
    margin = 0.0
    for _ in range(config.num_iterations):
        st.opt.zero_grad(set_to_none=True)
        stats = torch.zeros(2, dtype=torch.float64, device=st.device)  # loss, margins
        if b:
            policy = scorer(order)
            logps = SequenceLogps(policy=policy.sum(1).view(2, b).t(), lengths=lengths,
                                  reference=ref.sum(1).view(2, b).t())
            out = dpo(logps, beta=config.dpo_beta)
            loss = out.losses.sum() / b_all  # the mean over all processes' pairs
            loss.backward()
            stats += torch.stack([loss.detach().double(), out.margins.detach().sum().double()])
        procs.sum_grads(st.params)
        procs.all_reduce_(stats)
        grad_norm = torch.nn.utils.clip_grad_norm_(st.params, config.grad_clip or math.inf)
        st.opt.step()
        st.sched.step()
        losses_out.append(float(stats[0]))
        margin = float(stats[1]) / b_all
    return {"loss": json_num(float(np.mean(losses_out))), "grad_norm": json_num(float(grad_norm)),
            "pairs": b_all, "margin": json_num(margin)}
