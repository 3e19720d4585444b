"""Reference-free pairwise losses: SimPO, CPO, ORPO and plain SFT score responses by the
policy's own (summed or length-averaged) log-probabilities; no reference model runs.

Private: :mod:`prefkit.align.losses` re-exports these, and documents the notation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from prefkit.align._losses_base import _average, _check_k, _in_range, _smoothed, sft_term
from prefkit.align.types import LossOutput, SequenceLogps

__all__ = ["simpo_loss", "cpo_loss", "orpo_loss", "sft_loss"]


#: ORPO's log(1 - p) is -inf at p = 1: average log-probs are clamped below this (a response
#: the policy is already certain of, which float32 log-softmax can produce exactly)
_MAX_AVERAGE_LOGP = -1e-7


def simpo_loss(logps: SequenceLogps, *, beta: float = 2.0, gamma: float = 1.0,
               label_smoothing: float = 0.0) -> LossOutput:
    """SimPO: Bradley-Terry over length-normalised log-probabilities with a target margin,

    ``loss = -(1-e) log sig(h) - e log sig(-h)``, ``h = beta (a_c - a_r) - gamma``,

    ``a = log pi_theta(y|x) / |y|``; no reference model. Defaults follow the SimPO paper's
    recipes (``beta`` 2, ``gamma/beta`` 1/2). Rewards: ``beta a``. TRL 1.16:
    ``CPOTrainer`` with ``loss_type="simpo"`` (``simpo_gamma`` = ``gamma``) and
    ``cpo_alpha=0``; TRL's default ``cpo_alpha=1`` adds the SFT term (CPO-SimPO), which here
    is the trainer's SFT weight.

    References: Meng, Xia & Chen (2024) "SimPO: Simple Preference Optimization with a
    Reference-Free Reward" (the SimPO objective).
    """
    _check_k(logps, "pairwise", "simpo")
    _in_range(label_smoothing, "label_smoothing", "simpo", 0.0, 0.5)
    a = _average(logps.policy, logps.lengths)
    losses = _smoothed(beta * (a[:, 0] - a[:, 1]) - gamma, label_smoothing)
    return LossOutput(losses, beta * a)


def cpo_loss(logps: SequenceLogps, *, beta: float = 0.1,
             label_smoothing: float = 0.0) -> LossOutput:
    """Contrastive Preference Optimization, preference term: DPO with a uniform reference,

    ``loss = -(1-e) log sig(h) - e log sig(-h)``, ``h = beta (log pi_c - log pi_r)``

    (summed log-probs). CPO adds the chosen NLL with weight ``cpo_alpha`` (TRL default 1):
    here that is the trainer's SFT weight. Rewards: ``beta log pi``. TRL 1.16:
    ``CPOTrainer`` ``loss_type="sigmoid"``, ``alpha=0``.

    References: Xu et al. (2024) "Contrastive Preference Optimization: Pushing the
    Boundaries of LLM Performance in Machine Translation", eq. 3.
    """
    _check_k(logps, "pairwise", "cpo")
    _in_range(label_smoothing, "label_smoothing", "cpo", 0.0, 0.5)
    p = logps.policy
    return LossOutput(_smoothed(beta * (p[:, 0] - p[:, 1]), label_smoothing), beta * p)


def _log_odds(avg_logp: Tensor) -> Tensor:
    """``log(p / (1 - p))`` for ``p = exp(a)``: ``a - log(1 - e^a)``, with ``log(1 - e^a)``
    taken from ``log1p(-e^a)`` for ``a < -log 2`` and ``log(-expm1(a))`` above (Maechler
    2012), each branch fed only inputs where it is finite, so no NaN reaches a gradient."""
    a = avg_logp.clamp(max=_MAX_AVERAGE_LOGP)
    cut = -math.log(2.0)
    far = a < cut
    log1mexp = torch.where(far, torch.log1p(-torch.exp(torch.where(far, a, cut))),
                           torch.log(-torch.expm1(torch.where(far, cut, a))))
    return a - log1mexp


def orpo_loss(logps: SequenceLogps, *, beta: float = 0.1) -> LossOutput:
    """ORPO: supervised fine-tuning plus an odds-ratio preference term, in one stage,

    ``loss = -a_c - beta log sig(log odds(a_c) - log odds(a_r))``,
    ``odds(a) = p / (1 - p)``, ``p = exp(a)``, ``a = log pi_theta(y|x) / |y|``.

    The first term is :func:`sft_term` (so keep the trainer's SFT weight at 0); ``beta`` is
    the paper's ``lambda``. No reference model. Average log-probs above -1e-7 are clamped
    (``log(1 - p)`` is ``-inf`` at ``p = 1``). Rewards: ``beta a`` (as TRL logs them). TRL
    1.16: ``ORPOTrainer`` (``odds_ratio_loss`` gives the second term; TRL's NLL averages
    over the batch's tokens and includes the prompt, see :func:`sft_term`).

    References: Hong, Lee & Thorne (2024) "ORPO: Monolithic Preference Optimization without
    Reference Model" (L_ORPO = L_SFT + lambda L_OR).
    """
    _check_k(logps, "pairwise", "orpo")
    a = _average(logps.policy, logps.lengths)
    odds = _log_odds(a)
    losses = sft_term(logps) - beta * F.logsigmoid(odds[:, 0] - odds[:, 1])
    return LossOutput(losses, beta * a)


def sft_loss(logps: SequenceLogps) -> LossOutput:
    """Supervised fine-tuning on the chosen response: ``loss = -a_0`` (:func:`sft_term`).

    Rewards: the average log-probability ``a`` of every response (so the margin says
    whether the chosen is already the likelier per token). TRL 1.16: ``loss_type="sft"``,
    which averages over tokens rather than responses (equal for equal lengths).
    """
    return LossOutput(sft_term(logps), _average(logps.policy, logps.lengths))
