"""Online RL policy losses: one small function each, registered in :data:`RL_LOSSES` as
:class:`RLLoss` entries of the shared contract (:class:`~prefkit.losses.LossSpec`).

    spec = get_rl_loss("dapo")                       # TRL 1.16's GRPO default
    out = spec(TokenLogps(policy, mask, advantages, old=old, reference=ref), beta=0.04)
    loss = out.losses.sum() / out.normaliser          # LossOutput: the caller reduces

With ``rho_t = exp(log pi_theta - log pi_old)`` per token (token-level importance
sampling), ``A`` the advantage, ``eps_lo = epsilon``, ``eps_hi = epsilon_high`` (None:
``epsilon``; DAPO's clip-higher uses 0.28) and the k3 estimate of KL(pi_theta || pi_ref)
``k_t = exp(log pi_ref - log pi_theta) - (log pi_ref - log pi_theta) - 1`` (>= 0), every
token of a completion has

    l_t = -min(rho_t A, clip(rho_t, 1 - eps_lo, 1 + eps_hi) A) + beta k_t

(``delta``: INTELLECT-2's two-sided clip, ``rho_t`` capped at ``delta`` in the first term)
and the variants differ only in how the tokens are summed -- the ``normaliser`` of the
:class:`~prefkit.losses.LossOutput`:

=============  ===============================================  ===================  ========
name           element of ``losses`` ``(B, T)``                  ``normaliser``       TRL 1.16
=============  ===============================================  ===================  ========
``grpo``       ``l_t / |o_i|`` (the completion's token mean)    ``B`` completions    grpo
``bnpo``       ``l_t``                                          this batch's tokens  bnpo
``dr_grpo``    ``l_t``                                          ``B * max_tokens``   dr_grpo
``dapo``       ``l_t``                                          active tokens        dapo
``rloo``       per completion: ``-min(R A, clip(R) A)``,        ``B``                RLOO
               ``R = exp(sum_t log pi_theta - log pi_old)``
``reinforce_pp``  ``dapo`` with per-token advantages ``(B, T)``  active tokens        --
``ppo``        ``l_t + vf_coef v_t`` (GAE advantages ``(B, T)``)  active tokens        --
=============  ===============================================  ===================  ========

PPO's value term per token (Schulman et al. 2017, with the value clipping of OpenAI's
baselines that Secrets of RLHF I keeps): with ``V`` the value head now, ``V_old`` at
sampling and ``R`` the GAE returns, ``v_t = 0.5 max((V - R)^2, (V_old + clip(V - V_old,
-value_clip, value_clip) - R)^2)``; the policy and value parts are in the diagnostics
(``policy``, ``value``, summed per completion) and ``value_clipped`` counts the tokens
where the clipped term was the larger.

Normalisers are additive (``prefkit.losses``): a step's loss is the sum of its
micro-batches' ``losses`` over the sum of their normalisers, so ``dapo`` divides by the
active tokens of the whole step (TRL's ``num_items_in_batch``) and ``grpo`` by its
completions. ``bnpo`` is the exception TRL defines: each micro-batch's token mean, then the
mean over micro-batches (:attr:`RLLoss.reduction` ``"micro_batch"``); with one micro-batch
per step it equals ``dapo``.

Where the KL goes: GRPO's variants put ``beta k_t`` in the loss (:attr:`RLLoss.kl_in`
``"loss"``); RLOO and REINFORCE++ put ``beta (log pi_old - log pi_ref)`` in the reward
(``"reward"``, :mod:`prefkit.rl.advantages`), so their losses take no ``beta``.
:attr:`RLLoss.advantage` names the advantage estimator the loss is meant for. The tests
call TRL 1.16's ``GRPOTrainer._compute_loss`` / ``RLOOTrainer._compute_loss`` on identical
inputs.

Diagnostics (detached, per completion, summed over its tokens so a loop can pool them by
token): ``tokens``, ``kl`` (sum of ``k_t``; with a reference), ``clipped_low`` (tokens with
``rho_t < 1 - eps_lo`` and ``A < 0``), ``clipped_high`` (``rho_t > 1 + eps_hi`` and
``A > 0``), ``ratio`` (sum of ``rho_t``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from prefkit.losses import LossOutput, LossSpec, keyword_defaults
from prefkit.rl.types import TokenLogps

__all__ = [
    "AGGREGATIONS",
    "RL_LOSSES",
    "RLLoss",
    "clipped_token_loss",
    "get_rl_loss",
    "k3_kl",
    "ppo_loss",
    "rloo_loss",
]

#: how :func:`clipped_token_loss` sums its tokens (TRL 1.16's ``loss_type``)
AGGREGATIONS = ("grpo", "bnpo", "dr_grpo", "dapo")


def k3_kl(policy: Tensor, reference: Tensor) -> Tensor:
    """Per-token ``exp(q - p) - (q - p) - 1`` with ``p = log pi_theta``, ``q = log pi_ref``:
    Schulman's unbiased, non-negative estimate of KL(pi_theta || pi_ref) on samples of
    pi_theta."""
    d = reference.detach() - policy
    return torch.exp(d) - d - 1


def _clip_counts(coef: Tensor, adv: Tensor, m: Tensor, lo: float, hi: float
                 ) -> dict[str, Tensor]:
    low = ((coef < 1 - lo) & (adv < 0)).to(m.dtype) * m
    high = ((coef > 1 + hi) & (adv > 0)).to(m.dtype) * m
    return {"clipped_low": low.sum(1), "clipped_high": high.sum(1)}


def clipped_token_loss(x: TokenLogps, *, aggregation: str = "dapo", epsilon: float = 0.2,
                       epsilon_high: float | None = None, delta: float | None = None,
                       beta: float = 0.0, max_tokens: int | None = None) -> LossOutput:
    """The clipped surrogate of PPO per token with GRPO's aggregations (module docstring).

    ``x.advantages`` ``(B,)`` or ``(B, T)``; ``beta > 0`` needs ``x.reference``.
    ``max_tokens`` is Dr. GRPO's constant (TRL: ``max_completion_length``; None: ``T``).
    Returns per-token ``losses`` ``(B, T)`` (0 outside the mask) and the ``normaliser``.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
    hi = epsilon if epsilon_high is None else epsilon_high
    m = x.float_mask()
    adv = x.advantages.detach().to(x.policy.dtype)
    adv = adv[:, None] if adv.ndim == 1 else adv  # (B, 1) or (B, T)
    coef_1 = torch.exp(x.policy - x.old_logps())  # (B, T) token-level importance ratio
    coef_2 = torch.clamp(coef_1, 1 - epsilon, 1 + hi)
    if delta is not None:
        coef_1 = torch.clamp(coef_1, max=delta)
    per_token = -torch.min(coef_1 * adv, coef_2 * adv)  # (B, T)
    diag: dict[str, Tensor] = {"tokens": m.sum(1), "ratio": (coef_1.detach() * m).sum(1)}
    if x.reference is not None:
        kl = k3_kl(x.policy, x.reference)
        diag["kl"] = (kl.detach() * m).sum(1)
        if beta:
            per_token = per_token + beta * kl
    elif beta:
        raise ValueError("beta > 0 needs the reference's log-probs (TokenLogps.reference); "
                         "give them or set beta=0")
    diag.update(_clip_counts(coef_1.detach(), adv, m, epsilon, hi))
    losses = per_token * m
    b = x.batch_size
    normaliser: float | Tensor
    if aggregation == "grpo":
        losses = losses / m.sum(1, keepdim=True).clamp(min=1.0)
        normaliser = float(b)
    elif aggregation == "dr_grpo":
        normaliser = float(b * (max_tokens if max_tokens is not None else m.shape[1]))
    else:  # bnpo: this batch's tokens; dapo: additive over the step's batches
        normaliser = m.sum().detach()
    return LossOutput(losses, normaliser=normaliser, diagnostics=diag)


def rloo_loss(x: TokenLogps, *, epsilon: float = 0.2, epsilon_high: float | None = None
              ) -> LossOutput:
    """RLOO's clipped surrogate at the sequence level (TRL 1.16 ``RLOOTrainer``): with
    ``R_i = exp(sum_t mask (log pi_theta - log pi_old))``, one loss per completion
    ``-min(R_i A_i, clip(R_i, 1 - eps_lo, 1 + eps_hi) A_i)``; normaliser ``B``.
    ``x.advantages`` ``(B,)`` (leave-one-out, KL already in the reward)."""
    if x.advantages.ndim != 1:
        raise ValueError("rloo_loss takes one advantage per completion, (B,)")
    hi = epsilon if epsilon_high is None else epsilon_high
    m = x.float_mask()
    logps = (x.policy * m).sum(1)
    old = (x.old_logps() * m).sum(1)
    adv = x.advantages.detach().to(logps.dtype)
    coef_1 = torch.exp(logps - old)  # (B,) sequence-level ratio
    coef_2 = torch.clamp(coef_1, 1 - epsilon, 1 + hi)
    losses = -torch.min(coef_1 * adv, coef_2 * adv)
    c = coef_1.detach()
    diag = {"tokens": m.sum(1), "ratio": c * m.sum(1),
            "clipped_low": ((c < 1 - epsilon) & (adv < 0)).to(m.dtype) * m.sum(1),
            "clipped_high": ((c > 1 + hi) & (adv > 0)).to(m.dtype) * m.sum(1)}
    if x.reference is not None:
        diag["kl"] = (k3_kl(x.policy, x.reference).detach() * m).sum(1)
    return LossOutput(losses, diagnostics=diag)


def ppo_loss(x: TokenLogps, *, epsilon: float = 0.2, epsilon_high: float | None = None,
             value_clip: float = 0.2, vf_coef: float = 0.1) -> LossOutput:
    """PPO's clipped policy loss plus ``vf_coef`` times its clipped value loss, per token
    (module docstring); ``x`` needs per-token ``advantages`` ``(B, T)``, ``values``,
    ``old_values`` and ``returns``. Normaliser: the active tokens (additive)."""
    if x.values is None or x.old_values is None or x.returns is None:
        raise ValueError("ppo_loss needs values, old_values and returns (a value head)")
    policy = clipped_token_loss(x, aggregation="dapo", epsilon=epsilon,
                                epsilon_high=epsilon_high)
    m = x.float_mask()
    ret = x.returns.detach()
    old_v = x.old_values.detach()
    v_clipped = old_v + torch.clamp(x.values - old_v, -value_clip, value_clip)
    unclipped, clipped = (x.values - ret) ** 2, (v_clipped - ret) ** 2
    value = 0.5 * torch.max(unclipped, clipped) * m  # (B, T)
    losses = policy.losses + vf_coef * value
    diag = {**policy.diagnostics, "policy": policy.losses.detach().sum(1),
            "value": value.detach().sum(1),
            "value_clipped": ((clipped > unclipped).to(m.dtype) * m).sum(1)}
    return LossOutput(losses, normaliser=policy.normaliser, diagnostics=diag)


#: where each hyper-parameter is defined: (low, high, why)
_RANGES: dict[str, tuple[float, float, str]] = {
    "epsilon": (0.0, 1.0, ("the ratio is clipped to [1 - epsilon, 1 + epsilon_high] "
                           "(typical 0.2)")),
    "epsilon_high": (0.0, math.inf, "the upper clip (DAPO's clip-higher: 0.28)"),
    "beta": (0.0, math.inf, "the KL coefficient (0: no KL term; DeepSeek-R1: 0.001)"),
    "delta": (1.0, math.inf, "INTELLECT-2's cap on the ratio, above 1 + epsilon_high"),
    "max_tokens": (1.0, math.inf, "Dr. GRPO's constant, the longest completion allowed"),
    "value_clip": (0.0, math.inf, "PPO's clip of the value change (0.2)"),
    "vf_coef": (0.0, math.inf, "the value loss's weight (0.1)"),
}


@dataclass(frozen=True, eq=False)
class RLLoss(LossSpec):
    """One entry of :data:`RL_LOSSES`: a :class:`~prefkit.losses.LossSpec` whose ``fn``
    takes a :class:`~prefkit.rl.types.TokenLogps`, plus what the loop needs to know:

    advantage: the estimator the loss is meant for (``"group"``, ``"rloo"``,
               ``"reinforce_pp"``, ``"gae"`` with a value head; :mod:`prefkit.rl.advantages`).
    kl_in:     ``"loss"`` (the loss's ``beta``) or ``"reward"`` (the loop penalises the
               reward with ``beta`` before the advantages).
    reduction: ``"step"`` (normalisers summed over the step's micro-batches) or
               ``"micro_batch"`` (each micro-batch reduced alone, then averaged: bnpo).
    """

    advantage: str = "group"
    kl_in: str = "loss"
    reduction: str = "step"

    def check(self, key: str, value: Any) -> None:
        if key not in _RANGES or value is None:
            return
        low, high, why = _RANGES[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"the {self.name!r} loss needs a number for {key}, got "  # noqa: TRY004
                             f"{value!r}")
        if not (math.isfinite(float(value)) and low <= float(value) <= high) \
                or (key == "epsilon" and not value > 0):
            raise ValueError(f"the {self.name!r} loss needs {key} in [{low:g}, {high:g}], got "
                             f"{value!r}: {why}")

    def __call__(self, x: TokenLogps, **hyper: Any) -> LossOutput:  # type: ignore[override]
        return self.fn(x, **self.resolve(**hyper))


def _spec(name: str, fn: Callable[..., LossOutput], paper: str, *, advantage: str = "group",
          kl_in: str = "loss", reduction: str = "step", **defaults: Any) -> RLLoss:
    resolved = keyword_defaults(fn)
    if not set(defaults) <= set(resolved):
        raise TypeError(f"{name}: {fn.__name__} takes no {sorted(set(defaults) - set(resolved))}")
    needs = frozenset({"old", "reference"}) if kl_in == "loss" else frozenset({"old"})
    return RLLoss(name, fn, "completions", {**resolved, **defaults}, paper, needs, None,
                  advantage=advantage, kl_in=kl_in, reduction=reduction)


_GRPO = "Shao et al. 2024, arXiv:2402.03300"
_SPECS = [
    _spec("grpo", clipped_token_loss, _GRPO, aggregation="grpo"),
    _spec("bnpo", clipped_token_loss, f"{_GRPO}; TRL's bnpo", aggregation="bnpo",
          reduction="micro_batch"),
    _spec("dr_grpo", clipped_token_loss, "Liu et al. 2025, arXiv:2503.20783",
          aggregation="dr_grpo"),
    _spec("dapo", clipped_token_loss, "Yu et al. 2025, arXiv:2503.14476", aggregation="dapo"),
    _spec("rloo", rloo_loss, "Ahmadian et al. 2024, arXiv:2402.14740", advantage="rloo",
          kl_in="reward"),
    _spec("reinforce_pp", clipped_token_loss, "Hu 2025, arXiv:2501.03262",
          advantage="reinforce_pp", kl_in="reward", aggregation="dapo"),
    _spec("ppo", ppo_loss, "Schulman et al. 2017, arXiv:1707.06347; Zheng et al. 2023 "
          "(Secrets of RLHF I), arXiv:2307.04964", advantage="gae", kl_in="reward"),
]

#: other spellings accepted
ALIASES = {"reinforce++": "reinforce_pp", "reinforce_plus_plus": "reinforce_pp",
           "drgrpo": "dr_grpo"}

#: every RL loss by name (and alias)
RL_LOSSES: dict[str, RLLoss] = {spec.name: spec for spec in _SPECS}
RL_LOSSES.update({alias: RL_LOSSES[name] for alias, name in ALIASES.items()})


def get_rl_loss(name: str) -> RLLoss:
    """Look an RL loss up by name or alias (case and ``-``/``_`` ignored)."""
    key = name.strip().lower().replace("-", "_")
    if key in RL_LOSSES:
        return RL_LOSSES[key]
    raise ValueError(f"unknown RL loss {name!r}; choose one of {[s.name for s in _SPECS]}")
