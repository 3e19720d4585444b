"""The DPO family: a link over the implicit-reward margin ``d = u_c - u_r`` of two
log-ratios ``u = log pi_theta(y|x) - log pi_ref(y|x)`` (DPO and its f-divergence variants,
cDPO, rDPO, IPO, hinge, EXO, DiscoPOP, Cal-DPO, token-level DPO).

Private: :mod:`prefkit.align.losses` re-exports these, and documents the notation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from prefkit.align._losses_base import (
    _average,
    _check_k,
    _in_range,
    _log_ratios,
    _positive,
    _smoothed,
)
from prefkit.align.types import LossOutput, SequenceLogps

__all__ = [
    "F_DIVERGENCES",
    "f_divergence_scores",
    "dpo_loss",
    "robust_dpo_loss",
    "ipo_loss",
    "hinge_loss",
    "exo_loss",
    "discopop_loss",
    "cal_dpo_loss",
    "tdpo1_loss",
    "tdpo2_loss",
]


#: f-DPO's divergences between policy and reference (Wang et al. 2023); ``reverse_kl`` is DPO
F_DIVERGENCES = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")
#: the forward-KL and alpha-divergence scores exponentiate a log-ratio: exponents are capped
#: here (as TRL 1.16 does for the alpha-divergence), so ``exp`` stays finite in float32
_MAX_SCORE_EXPONENT = 80.0
_MAX_SCORE_EXPONENT_FP16 = 11.0


def f_divergence_scores(u: Tensor, f_divergence: str, alpha: float = 0.5) -> Tensor:
    """f-DPO's score of each log-ratio ``u = log t``, ``t = pi_theta / pi_ref``: ``f'(t)``,
    which takes the place of ``u`` in DPO's margin.

    * ``reverse_kl``: ``u`` (DPO);
    * ``forward_kl``: ``1 - exp(-u)``;
    * ``js_divergence``: ``log 2 + log sig(u)``;
    * ``alpha_divergence``: ``(exp((alpha - 1) u) - 1) / (alpha - 1)``; ``u`` in the limit
      ``alpha -> 1`` (used within 1e-6 of 1), the forward KL at ``alpha = 0``. (The paper's
      ``(1 - t^-a) / a`` with ``a = 1 - alpha``; TRL's ``f_alpha_divergence_coef`` is
      this ``alpha``.)

    Exponents are capped at 80 (11 in float16, where half precision is computed in float32
    and cast back), as TRL does for the alpha-divergence; TRL's forward KL is not capped
    and overflows to ``inf`` where the policy is ``e^80`` times less likely than the
    reference. Same formulas and branch as TRL 1.16's ``DPOTrainer._compute_loss``.
    """
    if f_divergence == "reverse_kl":
        return u
    if f_divergence == "js_divergence":
        return math.log(2) + F.logsigmoid(u)
    if f_divergence not in ("forward_kl", "alpha_divergence"):
        raise ValueError(f"f_divergence must be one of {F_DIVERGENCES}, got {f_divergence!r}")
    if f_divergence == "alpha_divergence" and abs(alpha - 1.0) < 1e-6:
        return u  # the limit: reverse KL
    a = 0.0 if f_divergence == "forward_kl" else float(alpha)
    t = (a - 1.0) * u
    half = t.dtype in (torch.float16, torch.bfloat16)
    cap = _MAX_SCORE_EXPONENT_FP16 if t.dtype == torch.float16 else _MAX_SCORE_EXPONENT
    grown = torch.exp((t.float() if half else t).clamp(max=cap))
    if f_divergence == "forward_kl":
        return (1 - grown).to(t.dtype)
    return (grown - 1.0).to(t.dtype) * (1.0 / (a - 1.0))


def dpo_loss(logps: SequenceLogps, *, beta: float = 0.1, label_smoothing: float = 0.0,
             length_normalize: bool = False, f_divergence: str = "reverse_kl",
             alpha: float = 0.5) -> LossOutput:
    """Direct Preference Optimization: Bradley-Terry over ``beta`` times the log-ratios,

    ``loss = -(1 - e) log sig(beta d) - e log sig(-beta d)``, ``d = u_c - u_r``,

    ``u = log pi_theta(y|x) - log pi_ref(y|x)``; ``e = label_smoothing`` is the probability
    that the recorded preference is flipped (conservative DPO, registered as ``cdpo``);
    ``e = 0`` is DPO. ``length_normalize`` divides each ``u`` by its response length
    (TRL's ``sigmoid_norm``, registered as ``dpo_norm``).

    ``f_divergence`` regularises the policy towards the reference by another f-divergence
    than DPO's reverse KL (f-DPO): each ``u`` is replaced by the score ``f'(e^u)`` of
    :func:`f_divergence_scores` (``"forward_kl"``, ``"js_divergence"``,
    ``"alpha_divergence"`` with ``alpha``; before the length average, as in TRL), so
    ``d = f'(e^{u_c}) - f'(e^{u_r})``. Implicit rewards: ``beta u`` (summed log-ratios, as
    TRL logs them, whatever the divergence).

    TRL 1.16: ``DPOTrainer`` ``loss_type="sigmoid"`` (``"sigmoid_norm"`` when normalised)
    with ``f_divergence_type`` and ``f_alpha_divergence_coef``; TRL 1.x has no label
    smoothing in ``sigmoid`` -- cDPO equals ``CPOTrainer``'s ``sigmoid`` loss applied to
    log-ratios instead of log-probs.

    References: Rafailov et al. (2023) "Direct Preference Optimization: Your Language Model
    is Secretly a Reward Model", eq. 7; Mitchell (2023) "A note on DPO with noisy
    preferences and relationship to IPO" (cDPO); Wang et al. (2023) "Beyond Reverse KL:
    Generalizing Direct Preference Optimization with Diverse Divergence Constraints" (f-DPO).
    """
    _check_k(logps, "pairwise", "dpo")
    _in_range(label_smoothing, "label_smoothing", "dpo", 0.0, 0.5)
    if f_divergence not in F_DIVERGENCES:
        raise ValueError(f"the 'dpo' loss's f_divergence must be one of {F_DIVERGENCES}, "
                         f"got {f_divergence!r}")
    if not math.isfinite(alpha):
        raise ValueError(f"the 'dpo' loss needs a finite alpha, got {alpha}")
    u = _log_ratios(logps, "dpo")
    s = f_divergence_scores(u, f_divergence, alpha)
    s = _average(s, logps.lengths) if length_normalize else s
    return LossOutput(_smoothed(beta * (s[:, 0] - s[:, 1]), label_smoothing), beta * u)


def robust_dpo_loss(logps: SequenceLogps, *, beta: float = 0.1,
                    label_smoothing: float = 0.1) -> LossOutput:
    """Robust DPO (rDPO): an unbiased estimate of the clean DPO loss under label noise,

    ``loss = [(1 - e) L(d) - e L(-d)] / (1 - 2e)``, ``L(x) = -log sig(beta x)``,

    where ``e = label_smoothing < 1/2`` is the flip rate (the paper suggests 0.1). Unlike
    cDPO it may be negative. Rewards: ``beta u``. TRL 1.16: ``loss_type="robust"`` (its
    ``label_smoothing`` defaults to 0, which is plain DPO).

    References: Chowdhury, Kini & Natarajan (2024) "Provably Robust DPO: Aligning Language
    Models with Noisy Feedback" (the rDPO loss).
    """
    _check_k(logps, "pairwise", "robust_dpo")
    _in_range(label_smoothing, "label_smoothing", "robust_dpo", 0.0, 0.5, open_high=True)
    u = _log_ratios(logps, "robust_dpo")
    h = beta * (u[:, 0] - u[:, 1])
    e = float(label_smoothing)
    losses = ((1 - e) * -F.logsigmoid(h) - e * -F.logsigmoid(-h)) / (1 - 2 * e)
    return LossOutput(losses, beta * u)


def ipo_loss(logps: SequenceLogps, *, beta: float = 0.1,
             length_normalize: bool = True) -> LossOutput:
    """Identity Preference Optimization: regress the log-ratio margin onto ``1/(2 beta)``,

    ``loss = (d - 1/(2 beta))^2``, ``d = u_c/|y_c| - u_r/|y_r|`` (``beta`` is the paper's
    ``tau``). With ``length_normalize=True`` (the default, as in TRL 1.16 and, per TRL, the
    IPO authors' experiments) each log-ratio is averaged over its response tokens;
    ``False`` uses the summed log-ratios of the paper's eq. 17. Rewards: ``beta u`` (summed,
    as TRL logs them). TRL 1.16: ``loss_type="ipo"``.

    References: Azar et al. (2024) "A General Theoretical Paradigm to Understand Learning
    from Human Preferences", eq. 17.
    """
    _check_k(logps, "pairwise", "ipo")
    _positive(beta, "beta", "ipo")
    u = _log_ratios(logps, "ipo")
    s = _average(u, logps.lengths) if length_normalize else u
    return LossOutput((s[:, 0] - s[:, 1] - 1 / (2 * beta)) ** 2, beta * u)


def hinge_loss(logps: SequenceLogps, *, beta: float = 0.1) -> LossOutput:
    """Hinge loss on the log-ratio margin (SLiC-HF's calibration loss; RSO's hinge),

    ``loss = max(0, 1 - beta d)``: zero once the margin exceeds ``1/beta`` (SLiC's
    ``delta``; SLiC proper uses log-probs without a reference, RSO with it). Rewards:
    ``beta u``. TRL 1.16: ``loss_type="hinge"``.

    References: Zhao et al. (2023) "SLiC-HF: Sequence Likelihood Calibration with Human
    Feedback" (the calibration loss); Liu et al. (2024) "Statistical Rejection Sampling
    Improves Preference Optimization" (RSO, its hinge loss).
    """
    _check_k(logps, "pairwise", "hinge")
    u = _log_ratios(logps, "hinge")
    return LossOutput(torch.relu(1 - beta * (u[:, 0] - u[:, 1])), beta * u)


def exo_loss(logps: SequenceLogps, *, beta: float = 0.1,
             label_smoothing: float = 1e-3) -> LossOutput:
    """EXO (efficient exact optimization), pairwise: the reverse KL from the policy's
    distribution over the pair to the smoothed label,

    ``loss = q_c (log q_c - log(1 - e)) + q_r (log q_r - log e)``,
    ``q_c = sig(beta d)``, ``q_r = sig(-beta d)``,

    with ``e = label_smoothing`` in (0, 1) (the paper's ``epsilon``, suggested 1e-3; TRL's
    default 0 makes this infinite). Minimised at ``q_c = 1 - e``. Rewards: ``beta u``. TRL
    1.16: ``loss_type="exo_pair"``.

    References: Ji et al. (2024) "Towards Efficient Exact Optimization of Language Model
    Alignment", eq. 16.
    """
    _check_k(logps, "pairwise", "exo")
    _in_range(label_smoothing, "label_smoothing", "exo", 0.0, 1.0, open_low=True,
              open_high=True)
    u = _log_ratios(logps, "exo")
    h = beta * (u[:, 0] - u[:, 1])
    e = float(label_smoothing)
    losses = (torch.sigmoid(h) * (F.logsigmoid(h) - math.log1p(-e))
              + torch.sigmoid(-h) * (F.logsigmoid(-h) - math.log(e)))
    return LossOutput(losses, beta * u)


def discopop_loss(logps: SequenceLogps, *, beta: float = 0.1, tau: float = 0.05) -> LossOutput:
    """DiscoPOP (log-ratio modulated loss), found by LLM-driven objective discovery: a blend
    of the logistic and the exponential loss, switched by the margin,

    ``loss = (1 - m) (-log sig(h)) + m exp(-h)``, ``h = beta d``, ``m = sig(h / tau)``.

    ``m exp(-h)`` is computed as ``exp(log sig(h/tau) - h)``, finite at any margin (TRL's
    direct product gives ``inf * 0 = nan`` for very negative ``h``). Rewards: ``beta u``.
    TRL 1.16: ``loss_type="discopop"`` (``discopop_tau``).

    References: Chris Lu et al. (2024) "Discovering Preference Optimization Algorithms with
    and for Large Language Models", eq. 5.
    """
    _check_k(logps, "pairwise", "discopop")
    _positive(tau, "tau", "discopop")
    u = _log_ratios(logps, "discopop")
    h = beta * (u[:, 0] - u[:, 1])
    m = torch.sigmoid(h / tau)
    losses = -F.logsigmoid(h) * (1 - m) + torch.exp(F.logsigmoid(h / tau) - h)
    return LossOutput(losses, beta * u)


def cal_dpo_loss(logps: SequenceLogps, *, beta: float = 0.1,
                 calibration_weight: float = 1.0) -> LossOutput:
    """Calibrated DPO: the contrastive term plus a calibration of each log-ratio to the
    scale of a reward of +-1/2,

    ``loss = -log sig(u_c - u_r) + w [(u_c - 1/(2 beta))^2 + (u_r + 1/(2 beta))^2]``,

    as in the paper (the contrastive term has no ``beta``; ``beta`` sets the calibration
    targets ``u = r / beta`` for ``r = +-1/2``). ``w = calibration_weight``: 1 is the paper's
    objective; the authors' released code weighs the squared terms by 0.5. Rewards:
    ``beta u`` (the calibrated reward scale). No TRL counterpart.

    References: Xiao et al. (2024) "Cal-DPO: Calibrated Direct Preference Optimization for
    Language Model Alignment" (NeurIPS 2024); authors' code: github.com/tengxiao1/Cal-DPO.
    """
    _check_k(logps, "pairwise", "cal_dpo")
    _positive(beta, "beta", "cal_dpo")
    u = _log_ratios(logps, "cal_dpo")
    target = 1.0 / (2.0 * beta)
    calibration = (u[:, 0] - target) ** 2 + (u[:, 1] + target) ** 2
    losses = -F.logsigmoid(u[:, 0] - u[:, 1]) + calibration_weight * calibration
    return LossOutput(losses, beta * u)


def _token_kl(logps: SequenceLogps, loss: str) -> Tensor:
    if logps.token_kl is None:
        raise ValueError(
            f"the {loss!r} loss needs SequenceLogps.token_kl, the per-response sum over tokens "
            "of KL(pi_ref || pi_theta); the trainer computes it when AlignLoss.needs_token_kl")
    return logps.token_kl


def tdpo1_loss(logps: SequenceLogps, *, beta: float = 0.1) -> LossOutput:
    """Token-level DPO, TDPO1: DPO with the sequential KL of each response to the reference,

    ``loss = -log sig(u - delta)``, ``u = beta (u_c - u_r)``, ``delta = beta (D_r - D_c)``,

    ``D = sum_t KL(pi_ref(.|x, y_<t) || pi_theta(.|x, y_<t))`` (``SequenceLogps.token_kl``;
    gradients flow through both KL terms). Rewards: ``beta (u + D)``, so the reward margin
    is exactly the loss's logit ``u - delta`` (as the authors' code logs them). No TRL
    counterpart.

    References: Zeng et al. (2024) "Token-level Direct Preference Optimization" (ICML 2024),
    the TDPO1 objective; authors' code: github.com/Vance0124/Token-level-Direct-Preference-
    Optimization.
    """
    _check_k(logps, "pairwise", "tdpo1")
    u = _log_ratios(logps, "tdpo1")
    kl = _token_kl(logps, "tdpo1")
    logits = beta * (u[:, 0] - u[:, 1]) - beta * (kl[:, 1] - kl[:, 0])
    return LossOutput(-F.logsigmoid(logits), beta * (u + kl))


def tdpo2_loss(logps: SequenceLogps, *, beta: float = 0.1, alpha: float = 0.5) -> LossOutput:
    """Token-level DPO, TDPO2: TDPO1 with the chosen response's KL held fixed and weighted,

    ``loss = -log sig(u - alpha delta2)``, ``u = beta (u_c - u_r)``,
    ``delta2 = beta (D_r - sg(D_c))`` (``sg`` = stop-gradient),

    ``alpha`` (default 0.5, the paper's) trades the KL control against the preference.
    Rewards: ``beta (u + D)`` as for TDPO1. No TRL counterpart.

    References: Zeng et al. (2024) "Token-level Direct Preference Optimization" (ICML 2024),
    the TDPO2 objective.
    """
    _check_k(logps, "pairwise", "tdpo2")
    u = _log_ratios(logps, "tdpo2")
    kl = _token_kl(logps, "tdpo2")
    logits = beta * (u[:, 0] - u[:, 1]) - alpha * beta * (kl[:, 1] - kl[:, 0].detach())
    return LossOutput(-F.logsigmoid(logits), beta * (u + kl))
