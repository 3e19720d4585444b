"""Advantages from rewards: pure functions, tensors in and out, no model.

Every estimator takes the rewards of ``N = P * G`` completions laid out **prompt-major**
(row ``p * G + g`` is prompt ``p``'s ``g``-th sample, TRL's order) and returns one
advantage per completion (``(N,)``), or per token for REINFORCE++ (``(N, T)``). A reward of
NaN marks a completion no reward function could score: it is left out of every mean and
gets advantage 0 (TRL 1.16's rule).

* :func:`group_advantages` -- GRPO: ``A_i = r_i - mean(group)``, divided by the group's
  standard deviation + 1e-4 (``scale="group"``, GRPO), the batch's (``"batch"``) or not at
  all (``"none"``, Dr. GRPO). Standard deviations are unbiased (Bessel), as TRL's ``nanstd``.
* :func:`rloo_advantages` -- RLOO: ``A_i = r_i - mean of the other G - 1 rewards of its
  group`` (the leave-one-out baseline, Ahmadian et al. 2024), optionally whitened over the
  batch (TRL's ``normalize_advantages``).
* :func:`kl_penalised_rewards` -- RLOO's KL in the reward: ``r_i - beta * sum_t (log
  pi_old - log pi_ref)`` (the first-order estimate, summed over the completion).
* :func:`reinforce_pp_advantages` -- REINFORCE++ (Hu 2025, arXiv:2501.03262): per-token
  rewards ``-beta * kl_t`` with the outcome reward added at the last token, returns summed
  from each token to the end (``gamma`` discount), then **whitened over every token of the
  batch** (global batch normalisation: mean 0, unbiased variance 1, as verl's
  ``compute_reinforce_plus_plus_outcome_advantage`` and ``masked_whiten``).
  ``baseline="group"`` subtracts each group's mean reward first (REINFORCE++-baseline).
* :func:`ppo_token_rewards` and :func:`gae` -- PPO (Schulman et al. 2017; in RLHF as
  Ouyang et al. 2022 and Secrets of RLHF I, Zheng et al. 2023): per-token rewards
  ``-beta (log pi_old - log pi_ref)`` with the outcome score added at the last token, then
  generalised advantage estimation against a value head's estimates,
  ``delta_t = r_t + gamma V_{t+1} - V_t``, ``A_t = delta_t + gamma lam A_{t+1}`` (``V`` and
  ``A`` are 0 past the completion's end), returns ``A + V``; the advantages are then
  whitened over the batch's tokens (PPO-max's advantage normalisation).

>>> import torch
>>> group_advantages(torch.tensor([1.0, 0.0, 1.0, 1.0]), 2, scale="none").tolist()
[0.5, -0.5, 0.0, 0.0]
>>> rloo_advantages(torch.tensor([1.0, 0.0, 0.0]), 3).tolist()
[1.0, -0.5, -0.5]
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "SCALES",
    "gae",
    "group_advantages",
    "kl_penalised_rewards",
    "masked_whiten",
    "nanstd",
    "ppo_token_rewards",
    "reinforce_pp_advantages",
    "rloo_advantages",
]

#: how :func:`group_advantages` divides (TRL 1.16's ``scale_rewards``)
SCALES = ("group", "batch", "none")
#: added to the standard deviation before dividing (TRL 1.16)
STD_EPS = 1e-4


def nanstd(x: Tensor, dim: int | None = None) -> Tensor:
    """Unbiased standard deviation ignoring NaNs (TRL's ``trl.trainer.utils.nanstd``)."""
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    var = torch.nanmean((x - mean) ** 2, dim=dim, keepdim=True)
    count = (~torch.isnan(x)).sum(dim=dim, keepdim=True)
    correction = torch.where(count > 1, count / (count - 1), torch.full_like(var, float("nan")))
    var = var * correction
    out = var.sqrt()
    return out.squeeze(dim) if dim is not None else out.reshape(())


def _groups(rewards: Tensor, num_generations: int) -> Tensor:
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be (N,), got shape {tuple(rewards.shape)}")
    if num_generations < 1 or rewards.shape[0] % num_generations:
        raise ValueError(f"{rewards.shape[0]} rewards cannot be split into groups of "
                         f"num_generations={num_generations}")
    return rewards.view(-1, num_generations)


def group_advantages(rewards: Tensor, num_generations: int, *, scale: str = "group",
                     eps: float = STD_EPS) -> Tensor:
    """GRPO's group-relative advantages ``(N,)`` (TRL 1.16 ``sum_then_normalize``).

    ``A_i = (r_i - mean_g) / (std + eps)`` with ``std`` the unbiased standard deviation of
    the group (``scale="group"``) or of all ``N`` rewards (``"batch"``); ``"none"`` only
    centres (Dr. GRPO: no difficulty bias). A group of one has std 0.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    grouped = _groups(rewards, num_generations)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(num_generations)
    adv = rewards - mean
    if scale == "group":
        std = (nanstd(grouped, dim=1) if num_generations > 1
               else torch.zeros(grouped.shape[0], dtype=rewards.dtype, device=rewards.device))
        adv = adv / (std.repeat_interleave(num_generations) + eps)
    elif scale == "batch":
        std = nanstd(rewards) if rewards.numel() > 1 else torch.zeros((), dtype=rewards.dtype)
        adv = adv / (std + eps)
    return torch.nan_to_num(adv, nan=0.0)


def rloo_advantages(rewards: Tensor, num_generations: int, *, normalize: bool = False,
                    eps: float = STD_EPS) -> Tensor:
    """RLOO's leave-one-out advantages ``(N,)``: ``A_i = r_i - (sum_group - r_i) / (n - 1)``
    over the group's ``n`` scorable rewards (TRL 1.16 ``RLOOTrainer``); ``normalize``
    whitens them over the batch (``(A - mean) / (std + eps)``). One sample per group: 0."""
    grouped = _groups(rewards, num_generations)
    if num_generations == 1:
        adv = torch.zeros_like(rewards)
    else:
        count = (~torch.isnan(grouped)).sum(dim=1, keepdim=True)
        total = torch.nansum(grouped, dim=1, keepdim=True)
        adv = rewards - ((total - grouped) / (count - 1)).reshape(-1)
    if normalize:
        adv = (adv - torch.nanmean(adv)) / (nanstd(adv) + eps)
    return torch.nan_to_num(adv, nan=0.0)


def kl_penalised_rewards(rewards: Tensor, old: Tensor, reference: Tensor, mask: Tensor, *,
                         beta: float) -> Tensor:
    """``r_i - beta * sum_t mask (log pi_old - log pi_ref)``: RLOO's KL in the reward
    (first order; a sequence's estimate may be negative)."""
    kl = ((old - reference) * mask.to(old.dtype)).sum(dim=1)
    return rewards - beta * kl


def masked_whiten(values: Tensor, mask: Tensor, eps: float = 1e-8, *,
                  reduce: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """``(v - mean) / sqrt(var + eps)`` over the masked entries (unbiased variance; verl's
    ``masked_whiten``); entries outside the mask become 0. ``reduce`` sums a tensor over
    the processes of a multi-process run (the statistics are then the whole batch's)."""
    m = mask.to(values.dtype)
    sums = torch.stack([(values * m).sum(), m.sum()])
    if reduce is not None:
        sums = reduce(sums)
    mean, n = sums[0] / sums[1], sums[1]
    sq = (((values - mean) ** 2) * m).sum()
    if reduce is not None:
        sq = reduce(sq.reshape(1))[0]
    var = sq / n
    var = var * n / (n - 1) if n > 1 else var
    return (values - mean) * torch.rsqrt(var + eps) * m


def reinforce_pp_advantages(rewards: Tensor, mask: Tensor, *, token_kl: Tensor | None = None,
                            beta: float = 0.0, gamma: float = 1.0, baseline: str = "none",
                            num_generations: int = 1,
                            reduce: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """REINFORCE++ per-token advantages ``(N, T)`` (see the module docstring).

    rewards:  (N,) outcome rewards; token_kl: (N, T) a per-token KL estimate (e.g.
    ``log pi_old - log pi_ref``) penalised with ``beta`` in the reward; mask: (N, T)
    completion tokens. ``baseline="group"`` centres the rewards within each group of
    ``num_generations`` before the returns (REINFORCE++-baseline); NaN rewards count 0.
    ``reduce``: as :func:`masked_whiten`'s (several processes).
    """
    if baseline not in ("none", "group"):
        raise ValueError(f"baseline must be 'none' or 'group', got {baseline!r}")
    m = mask.to(torch.float32)
    r = torch.nan_to_num(rewards.float(), nan=0.0)
    if baseline == "group":
        r = r - _groups(r, num_generations).mean(dim=1).repeat_interleave(num_generations)
    token_rewards = torch.zeros_like(m)
    if token_kl is not None and beta:
        token_rewards = token_rewards - beta * token_kl.float() * m
    lengths = m.sum(dim=1).long()
    last = (lengths - 1).clamp(min=0)
    has = lengths > 0
    token_rewards[has, last[has]] += r[has]
    returns = torch.zeros_like(m)
    running = torch.zeros(m.shape[0], dtype=m.dtype, device=m.device)
    for t in range(m.shape[1] - 1, -1, -1):
        running = token_rewards[:, t] + gamma * running
        returns[:, t] = running
        running = running * m[:, t]
    return masked_whiten(returns, m, reduce=reduce)


def ppo_token_rewards(scores: Tensor, mask: Tensor, *, old: Tensor | None = None,
                      reference: Tensor | None = None, beta: float = 0.0) -> Tensor:
    """(N, T) PPO's per-token rewards: ``-beta (old - reference)`` on every completion
    token (when both are given) plus the outcome ``scores`` (N,) at the last one (NaN
    scores count 0)."""
    m = mask.to(torch.float32)
    out = torch.zeros_like(m)
    if old is not None and reference is not None and beta:
        out = out - beta * (old.float() - reference.float()) * m
    lengths = m.sum(dim=1).long()
    has = lengths > 0
    last = (lengths - 1).clamp(min=0)
    out[has, last[has]] += torch.nan_to_num(scores.float(), nan=0.0)[has]
    return out


def gae(rewards: Tensor, values: Tensor, mask: Tensor, *, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over ``(N, T)`` per-token ``rewards`` and value
    estimates ``values`` (Schulman et al. 2016, arXiv:1506.02438): returns
    ``(advantages, returns)``, both 0 outside ``mask``; ``returns = advantages + values``."""
    m = mask.to(torch.float32)
    v = values.detach().float() * m
    r = rewards.float() * m
    adv = torch.zeros_like(m)
    running = torch.zeros(m.shape[0], dtype=m.dtype, device=m.device)
    for t in range(m.shape[1] - 1, -1, -1):
        next_v = v[:, t + 1] if t + 1 < m.shape[1] else torch.zeros_like(running)
        delta = r[:, t] + gamma * next_v - v[:, t]
        running = (delta + gamma * lam * running) * m[:, t]
        adv[:, t] = running
    return adv, (adv + v) * m
