"""Pairwise losses on each response's own log-ratio ``u`` rather than only on the margin
(NCA, BCO, SPPO, APO), and the distributional AOT losses, which sort margins over the batch.

Private: :mod:`prefkit.align.losses` re-exports these, and documents the notation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prefkit.align._losses_base import (
    _check_k,
    _in_range,
    _log_ratios,
    _positive,
    _smoothed,
)
from prefkit.align.types import LossOutput, SequenceLogps

__all__ = [
    "nca_loss",
    "bco_pair_loss",
    "sppo_hard_loss",
    "aot_loss",
    "aot_unpaired_loss",
    "apo_zero_loss",
    "apo_down_loss",
]


def nca_loss(logps: SequenceLogps, *, beta: float = 0.1) -> LossOutput:
    """Noise Contrastive Alignment (NCA), pairwise: absolute rather than relative rewards,

    ``loss = -log sig(r_c) - 1/2 log sig(-r_c) - 1/2 log sig(-r_r)``, ``r = beta u``,

    which (unlike DPO) keeps the chosen likelihood from falling. Rewards: ``beta u``. TRL
    1.16: ``loss_type="nca_pair"``.

    References: Chen et al. (2024) "Noise Contrastive Alignment of Language Models with
    Explicit Rewards" (NCA with K = 2 responses).
    """
    _check_k(logps, "pairwise", "nca")
    r = beta * _log_ratios(logps, "nca")
    losses = (-F.logsigmoid(r[:, 0]) - 0.5 * F.logsigmoid(-r[:, 0])
              - 0.5 * F.logsigmoid(-r[:, 1]))
    return LossOutput(losses, r)


def bco_pair_loss(logps: SequenceLogps, *, beta: float = 0.1,
                  delta: float = 0.0) -> LossOutput:
    """Binary Classifier Optimization on pairs: chosen = class 1, rejected = class 0,

    ``loss = -log sig(r_c - delta) - log sig(-(r_r - delta))``, ``r = beta u``.

    BCO's ``delta`` is a running mean of the rewards (state the caller keeps and passes);
    TRL 1.16's ``bco_pair`` has no such state, i.e. ``delta = 0`` (the default here).
    Rewards: ``beta u``. TRL 1.16: ``loss_type="bco_pair"``.

    References: Jung et al. (2024) "Binary Classifier Optimization for Large Language Model
    Alignment".
    """
    _check_k(logps, "pairwise", "bco_pair")
    r = beta * _log_ratios(logps, "bco_pair")
    losses = -F.logsigmoid(r[:, 0] - delta) - F.logsigmoid(-(r[:, 1] - delta))
    return LossOutput(losses, r)


def sppo_hard_loss(logps: SequenceLogps, *, beta: float = 0.1) -> LossOutput:
    """Self-Play Preference Optimization with hard win probabilities (1 for the chosen, 0
    for the rejected): each log-ratio is regressed onto ``+-1/(2 beta)``,

    ``loss = (u_c - 1/(2 beta))^2 + (u_r + 1/(2 beta))^2``

    (``1/beta`` is the paper's ``eta``; SPPO proper uses soft win rates from a preference
    model). Rewards: ``beta u``. TRL 1.16: ``loss_type="sppo_hard"``.

    References: Wu et al. (2024) "Self-Play Preference Optimization for Language Model
    Alignment", eq. 4.7 of Algorithm 1 with ``P = 1`` / ``0``.
    """
    _check_k(logps, "pairwise", "sppo_hard")
    _positive(beta, "beta", "sppo_hard")
    u = _log_ratios(logps, "sppo_hard")
    losses = (u[:, 0] - 0.5 / beta) ** 2 + (u[:, 1] + 0.5 / beta) ** 2
    return LossOutput(losses, beta * u)


def aot_loss(logps: SequenceLogps, *, beta: float = 0.1,
             label_smoothing: float = 0.0) -> LossOutput:
    """Alignment via Optimal Transport, paired: first-order stochastic dominance of the
    policy's log-prob margins over the reference's, across the batch,

    ``loss_i = -(1-e) log sig(beta t_i) - e log sig(-beta t_i)``,
    ``t = sort(log pi_c - log pi_r) - sort(log ref_c - log ref_r)`` (sorted over the batch).

    Loss ``i`` belongs to the ``i``-th smallest margin, not to example ``i``; only the
    batch mean is meaningful, and it depends on the batch (so micro-batches sort
    separately). Rewards: ``beta u``. TRL 1.16: ``loss_type="aot"``.

    References: Melnyk et al. (2024) "Distributional Preference Alignment of LLMs via
    Optimal Transport" (AOT paired, logistic relaxation).
    """
    _check_k(logps, "pairwise", "aot")
    _in_range(label_smoothing, "label_smoothing", "aot", 0.0, 0.5)
    u = _log_ratios(logps, "aot")
    reference = logps.reference.detach()  # present: _log_ratios checked
    policy_margin = torch.sort(logps.policy[:, 0] - logps.policy[:, 1]).values
    reference_margin = torch.sort(reference[:, 0] - reference[:, 1]).values
    losses = _smoothed(beta * (policy_margin - reference_margin), label_smoothing)
    return LossOutput(losses, beta * u)


def aot_unpaired_loss(logps: SequenceLogps, *, beta: float = 0.1,
                      label_smoothing: float = 0.0) -> LossOutput:
    """Alignment via Optimal Transport, unpaired: the chosen log-ratios should dominate the
    rejected ones as distributions,

    ``loss_i = -(1-e) log sig(beta t_i) - e log sig(-beta t_i)``, ``t = sort(u_c) - sort(u_r)``.

    As for ``aot``, only the batch mean is meaningful. Rewards: ``beta u``. TRL 1.16:
    ``loss_type="aot_unpaired"``.

    References: Melnyk et al. (2024) "Distributional Preference Alignment of LLMs via
    Optimal Transport" (AOT unpaired, logistic relaxation).
    """
    _check_k(logps, "pairwise", "aot_unpaired")
    _in_range(label_smoothing, "label_smoothing", "aot_unpaired", 0.0, 0.5)
    u = _log_ratios(logps, "aot_unpaired")
    t = torch.sort(u[:, 0]).values - torch.sort(u[:, 1]).values
    return LossOutput(_smoothed(beta * t, label_smoothing), beta * u)


def apo_zero_loss(logps: SequenceLogps, *, beta: float = 0.1) -> LossOutput:
    """Anchored Preference Optimization, APO-zero: raise the chosen and lower the rejected
    likelihood (for chosen outputs better than the model's own),

    ``loss = 1 - sig(r_c) + sig(r_r)``, ``r = beta u``. Rewards: ``r``. TRL 1.16:
    ``loss_type="apo_zero"``.

    References: D'Oosterlinck et al. (2024) "Anchored Preference Optimization and
    Contrastive Revisions", eq. 7.
    """
    _check_k(logps, "pairwise", "apo_zero")
    r = beta * _log_ratios(logps, "apo_zero")
    return LossOutput((1 - torch.sigmoid(r[:, 0])) + torch.sigmoid(r[:, 1]), r)


def apo_down_loss(logps: SequenceLogps, *, beta: float = 0.1) -> LossOutput:
    """Anchored Preference Optimization, APO-down: lower both likelihoods, the rejected
    more (for chosen outputs worse than the model's own),

    ``loss = sig(r_c) + 1 - sig(beta d)``, ``r = beta u``. Rewards: ``r``. TRL 1.16:
    ``loss_type="apo_down"``.

    References: D'Oosterlinck et al. (2024) "Anchored Preference Optimization and
    Contrastive Revisions", eq. 8.
    """
    _check_k(logps, "pairwise", "apo_down")
    u = _log_ratios(logps, "apo_down")
    r = beta * u
    losses = torch.sigmoid(r[:, 0]) + (1 - torch.sigmoid(beta * (u[:, 0] - u[:, 1])))
    return LossOutput(losses, r)
