"""Alignment losses: one small function each, chosen by name from :data:`ALIGN_LOSSES`.

Every loss has the same call shape, so a trainer never branches on the method::

    spec = get_align_loss("dpo")                  # TRL's names work too: "sigmoid", ...
    out = spec(logps, beta=0.1)                   # LossOutput: losses (B,), rewards (B, K)

* ``logps``: a :class:`~prefkit.align.types.SequenceLogps` -- summed response
  log-probabilities of the policy (and of the frozen reference), ``(B, K)``, plus what a
  loss needs besides: ``lengths`` (length-normalised losses), ``token_kl`` (TDPO),
  ``label`` / ``kl_policy`` / ``kl_reference`` (KTO).
* ``**hyper``: the loss's keyword-only hyper-parameters; :attr:`AlignLoss.defaults` lists
  them, and calling the spec fills the defaults and rejects unknown names.

Each loss returns **per-example** losses (the trainer averages) and **detached** implicit
rewards in the loss's own scale; :class:`~prefkit.align.types.LossOutput` derives margins
and accuracy. The reference log-probabilities never receive gradients (they are detached
here even if the caller forgot ``torch.no_grad``). The SFT term (:func:`sft_term`) mixes
with any loss by a trainer weight.

With ``u = log pi_theta(y|x) - log pi_ref(y|x)`` (``_c`` chosen, ``_r`` rejected),
``d = u_c - u_r``, ``r = beta u``, ``a = log pi_theta(y|x) / |y|`` (average log-prob),
``sig`` the logistic function and ``e = label_smoothing``:

=====================  =================================================  =====================
name                   per-example loss                                   TRL 1.16
=====================  =================================================  =====================
``dpo``                ``-log sig(beta d)``                               sigmoid
``cdpo``               ``-(1-e) log sig(beta d) - e log sig(-beta d)``    CPO sigmoid (on u)
``robust_dpo``         ``[(1-e) L(d) - e L(-d)] / (1 - 2e)``              robust
``dpo_norm``           ``dpo`` on length-averaged log-ratios              sigmoid_norm
``ipo``                ``(d/len - 1/(2 beta))^2`` (length-averaged d)     ipo
``hinge``              ``max(0, 1 - beta d)``                             hinge
``exo``                ``KL(softmax(beta u) || [1-e, e])``                exo_pair
``nca``                ``-log sig(r_c) - log[sig(-r_c) sig(-r_r)] / 2``   nca_pair
``bco_pair``           ``-log sig(r_c - delta) - log sig(delta - r_r)``   bco_pair
``sppo_hard``          ``(u_c - 1/(2 beta))^2 + (u_r + 1/(2 beta))^2``    sppo_hard
``aot``                ``dpo`` on sorted policy vs reference margins      aot
``aot_unpaired``       ``dpo`` on sorted ``u_c`` vs sorted ``u_r``        aot_unpaired
``apo_zero``           ``1 - sig(r_c) + sig(r_r)``                        apo_zero
``apo_down``           ``sig(r_c) + 1 - sig(beta d)``                     apo_down
``discopop``           ``(1-m) (-log sig(beta d)) + m exp(-beta d)``      discopop
``cal_dpo``            ``-log sig(d) + (u_c - 1/2b)^2 + (u_r + 1/2b)^2``  --
``tdpo1/2``            ``-log sig(beta d - delta)``, delta: token KL      --
``simpo``              ``-log sig(beta (a_c - a_r) - gamma)``             CPO simpo
``cpo``                ``-log sig(beta (log pi_c - log pi_r))``           CPO sigmoid
``orpo``               ``-a_c - beta log sig(lodds(a_c) - lodds(a_r))``   ORPO
``sft``                ``-a_0``                                           sft
``listwise``           ``-log PL(beta u_0 > ... > beta u_{K-1})``         --
``kto``                ``w (1 - sig(+-beta (u - z0)))``                   KTO kto
``apo_zero_unpaired``  ``1 - sig(r)`` or ``sig(r)``                       KTO apo_zero_unpaired
=====================  =================================================  =====================

(``L(x) = -log sig(beta x)``, ``b = beta``, ``lodds(a) = a - log(1 - e^a)``.) Where TRL
implements the same loss, the tests call TRL's own code on identical inputs and check the
batch losses (TRL reduces) and the per-example rewards to 1e-6 (most agree bit for bit).
``AlignLoss.paper`` and each function's docstring give the source and the implicit reward.

Example:
    >>> import torch
    >>> from prefkit.align.types import SequenceLogps
    >>> logps = SequenceLogps(policy=torch.tensor([[-4.0, -9.0]]),
    ...                       lengths=torch.tensor([[2.0, 3.0]]),
    ...                       reference=torch.tensor([[-5.0, -8.0]]))
    >>> out = get_align_loss("dpo")(logps, beta=0.5)   # beta d = 0.5 * (1 - (-1)) = 1
    >>> round(float(out.losses), 4), out.rewards.tolist(), out.margins.tolist()
    (0.3133, [[0.5, -0.5]], [1.0])
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from prefkit.align.types import LossOutput, SequenceLogps
from prefkit.choice.torch_pairwise import log_bradley_terry

__all__ = [
    "AlignLoss",
    "ALIGN_LOSSES",
    "ALIASES",
    "KINDS",
    "get_align_loss",
    "combine_losses",
    "sft_term",
    "dpo_loss",
    "robust_dpo_loss",
    "ipo_loss",
    "hinge_loss",
    "exo_loss",
    "nca_loss",
    "bco_pair_loss",
    "sppo_hard_loss",
    "aot_loss",
    "aot_unpaired_loss",
    "apo_zero_loss",
    "apo_down_loss",
    "discopop_loss",
    "cal_dpo_loss",
    "tdpo1_loss",
    "tdpo2_loss",
    "simpo_loss",
    "cpo_loss",
    "orpo_loss",
    "sft_loss",
    "listwise_loss",
    "kto_loss",
    "apo_zero_unpaired_loss",
]

#: what each kind of loss takes: K = 2 (chosen, rejected), K >= 2 ranked best first, K = 1
KINDS = ("pairwise", "listwise", "unpaired")
_REFERENCE_FREE_HINT = "or choose a reference-free loss ('simpo', 'orpo', 'cpo', 'sft')"
#: ORPO's log(1 - p) is -inf at p = 1: average log-probs are clamped below this (a response
#: the policy is already certain of, which float32 log-softmax can produce exactly)
_MAX_AVERAGE_LOGP = -1e-7


# -- checks and small pieces ------------------------------------------------------------
def _check_k(logps: SequenceLogps, kind: str, loss: str) -> None:
    k = logps.num_responses
    if kind == "pairwise" and k != 2:
        hint = ("for rankings of K > 2 responses use 'listwise'" if k > 2
                else "for unpaired (K = 1) data use 'kto' or 'apo_zero_unpaired'")
        raise ValueError(f"the {loss!r} loss takes pairs (K = 2: chosen, rejected) but got "
                         f"K = {k} responses per prompt; {hint}")
    if kind == "pairwise" and logps.valid is not None and not bool(logps.valid.all()):
        raise ValueError(f"the {loss!r} loss takes complete pairs, but `valid` marks padding "
                         "responses; drop those pairs or use 'listwise'")
    if kind == "listwise" and k < 2:
        raise ValueError(f"the {loss!r} loss ranks K >= 2 responses; got K = {k} (for "
                         "unpaired data use 'kto')")
    if kind == "unpaired" and k != 1:
        raise ValueError(f"the {loss!r} loss takes one response per example (K = 1, with a "
                         f"desirable/undesirable `label`); got K = {k}")


def _log_ratios(logps: SequenceLogps, loss: str) -> Tensor:
    """(B, K) ``log pi_theta - log pi_ref``; the reference is detached (it is frozen)."""
    if logps.reference is None:
        raise ValueError(f"the {loss!r} loss needs reference log-probabilities "
                         f"(SequenceLogps.reference is None); give them, {_REFERENCE_FREE_HINT}")
    return logps.policy - logps.reference.detach()


def _average(x: Tensor, lengths: Tensor) -> Tensor:
    """Per-token average of a summed quantity; empty responses count one token."""
    return x / lengths.to(x.dtype).clamp_min(1.0)


def _positive(value: float, name: str, loss: str) -> None:
    if not value > 0:
        raise ValueError(f"the {loss!r} loss needs {name} > 0, got {value}")


def _in_range(value: float, name: str, loss: str, low: float, high: float,
              *, open_low: bool = False, open_high: bool = False) -> None:
    ok_low = value > low if open_low else value >= low
    ok_high = value < high if open_high else value <= high
    if not (ok_low and ok_high):
        lo, hi = ("(" if open_low else "["), (")" if open_high else "]")
        raise ValueError(f"the {loss!r} loss needs {name} in {lo}{low}, {high}{hi}, got {value}")


def _smoothed(logits: Tensor, label_smoothing: float) -> Tensor:
    """``-(1 - e) log sig(x) - e log sig(-x)``: Bradley-Terry with labels flipped w.p. e."""
    return -log_bradley_terry(logits, label_smoothing=float(label_smoothing))


def sft_term(logps: SequenceLogps) -> Tensor:
    """(B,) the chosen response's mean negative log-likelihood per token: ``-log pi_0 / |y_0|``.

    Column 0 is the chosen (best, or the only) response; for unpaired data (``label`` set)
    undesirable completions get 0, as they are not to be imitated. Averaged per response,
    so the trainer's mean over prompts weighs prompts equally; TRL's ``sft`` loss type (and
    CPO's ``cpo_alpha``, ORPO's NLL) averages over all chosen *tokens* of the batch instead,
    which agrees when the chosen responses have equal lengths. (ORPO in TRL also counts
    prompt tokens in its NLL; here it is the response only, as in the ORPO paper.)
    """
    nll = -_average(logps.policy[:, 0], logps.lengths[:, 0])
    if logps.label is not None:
        nll = torch.where(logps.label.to(torch.bool), nll, torch.zeros_like(nll))
    return nll


# -- the DPO family: a link over the implicit-reward margin ------------------------------
def dpo_loss(logps: SequenceLogps, *, beta: float = 0.1, label_smoothing: float = 0.0,
             length_normalize: bool = False) -> LossOutput:
    """Direct Preference Optimization: Bradley-Terry over ``beta`` times the log-ratios,

    ``loss = -(1 - e) log sig(beta d) - e log sig(-beta d)``, ``d = u_c - u_r``,

    ``u = log pi_theta(y|x) - log pi_ref(y|x)``; ``e = label_smoothing`` is the probability
    that the recorded preference is flipped (conservative DPO, registered as ``cdpo``);
    ``e = 0`` is DPO. ``length_normalize`` divides each ``u`` by its response length
    (TRL's ``sigmoid_norm``, registered as ``dpo_norm``). Implicit rewards: ``beta u``
    (summed log-ratios, as TRL logs them).

    TRL 1.16: ``DPOTrainer`` ``loss_type="sigmoid"`` (``"sigmoid_norm"`` when normalised);
    TRL 1.x has no label smoothing in ``sigmoid`` -- cDPO equals ``CPOTrainer``'s
    ``sigmoid`` loss applied to log-ratios instead of log-probs.

    References: Rafailov et al. (2023) "Direct Preference Optimization: Your Language Model
    is Secretly a Reward Model", eq. 7; Mitchell (2023) "A note on DPO with noisy
    preferences and relationship to IPO" (cDPO).
    """
    _check_k(logps, "pairwise", "dpo")
    _in_range(label_smoothing, "label_smoothing", "dpo", 0.0, 0.5)
    u = _log_ratios(logps, "dpo")
    s = _average(u, logps.lengths) if length_normalize else u
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


# -- reference-free ---------------------------------------------------------------------
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


# -- listwise -----------------------------------------------------------------------------
def _valid(logps: SequenceLogps, loss: str) -> Tensor:
    b, k = logps.policy.shape
    if logps.valid is None:
        return torch.ones(b, k, dtype=torch.bool, device=logps.policy.device)
    valid = logps.valid.to(torch.bool)
    if b and not bool(valid[:, 0].all()):
        raise ValueError(f"the {loss!r} loss needs the best response (column 0) of every "
                         "prompt to be real; `valid` marks it as padding in some rows")
    return valid


def listwise_loss(logps: SequenceLogps, *, beta: float = 0.1) -> LossOutput:
    """Listwise DPO: Plackett-Luce over ``beta`` times the log-ratios of ``K`` ranked
    responses (column 0 best),

    ``loss = -sum_k log [exp(s_k) / sum_{j >= k} exp(s_j)]``, ``s = beta u``,

    i.e. for each position, ``-log softmax`` of its response among those ranked below it
    (PRO's objective with DPO's scorer). Padding responses (``valid`` False) are left out
    wherever they sit. Each term is computed from the margins as
    ``log sig(-logsumexp_{j > k}(s_j - s_k))``, so for ``K = 2`` the loss is DPO's, bit for
    bit. Rewards: ``beta u``, ``-inf`` for padding (so ``LossOutput.rejected_rewards`` is
    the best real non-chosen response). No TRL counterpart.

    PRO proper scores responses by the policy's average log-prob without a reference and
    adds an SFT term; this is the reference-anchored "Plackett-Luce DPO" of the DPO paper's
    appendix A.3 (and LiPO's list-MLE).

    References: Rafailov et al. (2023), appendix A.3; Song et al. (2024) "Preference
    Ranking Optimization for Human Alignment" (PRO); Liu et al. (2024) "LiPO: Listwise
    Preference Optimization through Learning-to-Rank".
    """
    _check_k(logps, "listwise", "listwise")
    u = _log_ratios(logps, "listwise")  # (B, K)
    valid = _valid(logps, "listwise")
    k = u.shape[1]
    # behind[b, i, j] = s_j - s_i: how far response j (ranked below i) is ahead of i
    behind = beta * (u[:, None, :] - u[:, :, None])  # (B, K, K)
    below = torch.ones(k, k, dtype=torch.bool, device=u.device).triu(diagonal=1)
    competes = below & valid[:, None, :]  # (B, K, K): j ranked below i and real
    filler = torch.finfo(u.dtype).min / 4  # finite, so no NaN in values or gradients
    lse = torch.logsumexp(torch.where(competes, behind, torch.full_like(behind, filler)), dim=2)
    terms = torch.where(valid, F.logsigmoid(-lse), torch.zeros_like(lse))  # (B, K)
    rewards = torch.where(valid, beta * u, torch.full_like(u, -math.inf))
    return LossOutput(-terms.sum(dim=1), rewards)


# -- unpaired (K = 1) -------------------------------------------------------------------
def _labels(logps: SequenceLogps, loss: str) -> Tensor:
    if logps.label is None:
        raise ValueError(f"the {loss!r} loss needs SequenceLogps.label (True = desirable, "
                         "False = undesirable) for each completion")
    return logps.label.to(torch.bool)


def kto_loss(logps: SequenceLogps, *, beta: float = 0.1, desirable_weight: float = 1.0,
             undesirable_weight: float = 1.0) -> LossOutput:
    """Kahneman-Tversky Optimization: unpaired completions labelled desirable or not, each
    valued against a reference point ``z0``,

    ``loss = w_D (1 - sig(beta (u - z0)))`` if desirable, ``w_U (1 - sig(beta (z0 - u)))``
    otherwise,

    ``z0 = max(0, mean_batch(kl_policy - kl_reference))`` (detached): the batch estimate of
    ``KL(pi_theta || pi_ref)`` from mismatched (prompt, completion) pairs. Rewards
    ``(B, 1)``: ``beta u``. TRL 1.16: ``KTOTrainer`` ``loss_type="kto"`` (across devices TRL
    averages the per-device means).

    References: Ethayarajh et al. (2024) "KTO: Model Alignment as Prospect Theoretic
    Optimization", eq. 7.
    """
    _check_k(logps, "unpaired", "kto")
    label = _labels(logps, "kto")
    u = _log_ratios(logps, "kto")[:, 0]
    if logps.kl_policy is None or logps.kl_reference is None:
        raise ValueError("the 'kto' loss needs kl_policy and kl_reference (log-probs of "
                         "mismatched prompt/completion pairs) for its KL estimate; the "
                         "trainer computes them when AlignLoss.needs_kl_estimate")
    z0 = (logps.kl_policy - logps.kl_reference.detach()).mean().detach().clamp(min=0)
    desirable = desirable_weight * (1 - torch.sigmoid(beta * (u - z0)))
    undesirable = undesirable_weight * (1 - torch.sigmoid(beta * (z0 - u)))
    return LossOutput(torch.where(label, desirable, undesirable), beta * u[:, None])


def apo_zero_unpaired_loss(logps: SequenceLogps, *, beta: float = 0.1,
                           desirable_weight: float = 1.0,
                           undesirable_weight: float = 1.0) -> LossOutput:
    """Anchored Preference Optimization, APO-zero for unpaired data: raise desirable and
    lower undesirable likelihoods, no KL estimate,

    ``loss = w_D (1 - sig(beta u))`` if desirable, ``w_U sig(beta u)`` otherwise.

    Rewards ``(B, 1)``: ``beta u``. TRL 1.16: ``KTOTrainer`` ``loss_type="apo_zero_unpaired"``.

    References: D'Oosterlinck et al. (2024) "Anchored Preference Optimization and
    Contrastive Revisions", eq. 7 (unpaired form).
    """
    _check_k(logps, "unpaired", "apo_zero_unpaired")
    label = _labels(logps, "apo_zero_unpaired")
    r = beta * _log_ratios(logps, "apo_zero_unpaired")[:, 0]
    losses = torch.where(label, desirable_weight * (1 - torch.sigmoid(r)),
                         undesirable_weight * torch.sigmoid(r))
    return LossOutput(losses, r[:, None])


# -- the registry ---------------------------------------------------------------------
def _keyword_defaults(fn: Callable[..., LossOutput]) -> dict[str, Any]:
    return {p.name: p.default for p in inspect.signature(fn).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one spec per loss
class AlignLoss:
    """One entry of :data:`ALIGN_LOSSES`: a loss function and what its input must hold.

    name:              the canonical registry name.
    fn:                ``fn(logps, **hyper) -> LossOutput``.
    kind:              ``"pairwise"`` (K = 2: chosen, rejected), ``"listwise"`` (K >= 2,
                       ranked best first, ``valid`` for padding) or ``"unpaired"`` (K = 1,
                       with ``label``).
    needs_reference:   needs ``SequenceLogps.reference`` (the frozen reference model).
    needs_token_kl:    needs ``SequenceLogps.token_kl`` (TDPO).
    needs_kl_estimate: needs ``kl_policy`` / ``kl_reference`` (KTO).
    defaults:          the hyper-parameters the loss takes, with their defaults.
    paper:             the citation.

    Calling it fills the defaults, rejects unknown hyper-parameter names, checks ``K``
    against ``kind`` and calls ``fn``.
    """

    name: str
    fn: Callable[..., LossOutput]
    kind: str
    needs_reference: bool
    needs_token_kl: bool = False
    needs_kl_estimate: bool = False
    defaults: Mapping[str, Any] = field(default_factory=dict)
    paper: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"AlignLoss kind must be one of {KINDS}, got {self.kind!r}")
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    def resolve(self, **hyper: Any) -> dict[str, Any]:
        """The full hyper-parameters: defaults overridden by ``hyper`` (names checked)."""
        unknown = sorted(set(hyper) - set(self.defaults))
        if unknown:
            known = ", ".join(self.defaults) or "none"
            raise ValueError(f"unknown hyper-parameter(s) {unknown} for the {self.name!r} "
                             f"loss; it takes: {known}")
        return {**self.defaults, **hyper}

    def __call__(self, logps: SequenceLogps, **hyper: Any) -> LossOutput:
        resolved = self.resolve(**hyper)
        _check_k(logps, self.kind, self.name)
        return self.fn(logps, **resolved)


def _spec(name: str, fn: Callable[..., LossOutput], kind: str, paper: str, *,
          needs_reference: bool = True, needs_token_kl: bool = False,
          needs_kl_estimate: bool = False, **defaults: Any) -> AlignLoss:
    resolved = _keyword_defaults(fn)
    if not set(defaults) <= set(resolved):
        raise TypeError(f"{name}: {fn.__name__} takes no {sorted(set(defaults) - set(resolved))}")
    return AlignLoss(name, fn, kind, needs_reference, needs_token_kl, needs_kl_estimate,
                     {**resolved, **defaults}, paper)


_SPECS = [
    _spec("dpo", dpo_loss, "pairwise", "Rafailov et al. 2023, arXiv:2305.18290"),
    _spec("cdpo", dpo_loss, "pairwise", "Mitchell 2023, 'A note on DPO with noisy preferences'",
          label_smoothing=0.1),
    _spec("robust_dpo", robust_dpo_loss, "pairwise", "Chowdhury et al. 2024, arXiv:2403.00409"),
    _spec("dpo_norm", dpo_loss, "pairwise", "Rafailov et al. 2023 (length-normalised, TRL)",
          length_normalize=True),
    _spec("ipo", ipo_loss, "pairwise", "Azar et al. 2024, arXiv:2310.12036"),
    _spec("hinge", hinge_loss, "pairwise", "Zhao et al. 2023, arXiv:2305.10425; Liu et al. "
          "2024, arXiv:2309.06657"),
    _spec("exo", exo_loss, "pairwise", "Ji et al. 2024, arXiv:2402.00856"),
    _spec("nca", nca_loss, "pairwise", "Chen et al. 2024, arXiv:2402.05369"),
    _spec("bco_pair", bco_pair_loss, "pairwise", "Jung et al. 2024, arXiv:2404.04656"),
    _spec("sppo_hard", sppo_hard_loss, "pairwise", "Wu et al. 2024, arXiv:2405.00675"),
    _spec("aot", aot_loss, "pairwise", "Melnyk et al. 2024, arXiv:2406.05882"),
    _spec("aot_unpaired", aot_unpaired_loss, "pairwise", "Melnyk et al. 2024, arXiv:2406.05882"),
    _spec("apo_zero", apo_zero_loss, "pairwise", "D'Oosterlinck et al. 2024, arXiv:2408.06266"),
    _spec("apo_down", apo_down_loss, "pairwise", "D'Oosterlinck et al. 2024, arXiv:2408.06266"),
    _spec("discopop", discopop_loss, "pairwise", "Chris Lu et al. 2024, arXiv:2406.08414"),
    _spec("cal_dpo", cal_dpo_loss, "pairwise", "Xiao et al. 2024, arXiv:2412.14516"),
    _spec("tdpo1", tdpo1_loss, "pairwise", "Zeng et al. 2024, arXiv:2404.11999",
          needs_token_kl=True),
    _spec("tdpo2", tdpo2_loss, "pairwise", "Zeng et al. 2024, arXiv:2404.11999",
          needs_token_kl=True),
    _spec("simpo", simpo_loss, "pairwise", "Meng et al. 2024, arXiv:2405.14734",
          needs_reference=False),
    _spec("cpo", cpo_loss, "pairwise", "Xu et al. 2024, arXiv:2401.08417",
          needs_reference=False),
    _spec("orpo", orpo_loss, "pairwise", "Hong et al. 2024, arXiv:2403.07691",
          needs_reference=False),
    _spec("sft", sft_loss, "pairwise", "supervised fine-tuning on the chosen response",
          needs_reference=False),
    _spec("listwise", listwise_loss, "listwise", "Rafailov et al. 2023 app. A.3; Song et al. "
          "2024, arXiv:2306.17492; Liu et al. 2024, arXiv:2402.01878"),
    _spec("kto", kto_loss, "unpaired", "Ethayarajh et al. 2024, arXiv:2402.01306",
          needs_kl_estimate=True),
    _spec("apo_zero_unpaired", apo_zero_unpaired_loss, "unpaired",
          "D'Oosterlinck et al. 2024, arXiv:2408.06266"),
]

#: other names accepted for a loss (TRL's ``loss_type`` values and common spellings)
ALIASES: dict[str, str] = {
    "sigmoid": "dpo",
    "conservative_dpo": "cdpo",
    "robust": "robust_dpo",
    "rdpo": "robust_dpo",
    "sigmoid_norm": "dpo_norm",
    "slic": "hinge",
    "rso": "hinge",
    "exo_pair": "exo",
    "nca_pair": "nca",
    "aot_pair": "aot",
    "caldpo": "cal_dpo",
    "tdpo": "tdpo2",
    "plackett_luce": "listwise",
    "pl_dpo": "listwise",
    "pro": "listwise",
}

#: every loss by its canonical name and by each alias (an alias maps to the same spec,
#: whose ``name`` is canonical)
ALIGN_LOSSES: dict[str, AlignLoss] = {spec.name: spec for spec in _SPECS}
ALIGN_LOSSES.update({alias: ALIGN_LOSSES[name] for alias, name in ALIASES.items()})


def get_align_loss(name: str) -> AlignLoss:
    """Look a loss up by its name or an alias (case and ``-``/``_`` ignored); the error
    lists the known names."""
    key = name.strip().lower().replace("-", "_")
    if key in ALIGN_LOSSES:
        return ALIGN_LOSSES[key]
    canonical = [spec.name for spec in _SPECS]
    raise ValueError(f"unknown alignment loss {name!r}; choose one of {canonical} (aliases: "
                     f"{sorted(ALIASES)})")


def combine_losses(weights: Mapping[str, float],
                   hyper: Mapping[str, Mapping[str, Any]] | None = None) -> AlignLoss:
    """A weighted sum of registry losses as one :class:`AlignLoss` (TRL's
    ``loss_type=[...]`` with ``loss_weights``, e.g. MPO = ``{"dpo": 0.8, "bco_pair": 0.2,
    "sft": 1.0}``): ``loss_i = sum_n w_n loss_n(logps, **hyper[n])_i``.

    The parts' hyper-parameters are fixed here (``hyper`` by loss name, checked now), so
    the result takes none. Its rewards are those of the first part; it needs what any part
    needs; all parts must take the same kind of data.
    """
    if not weights:
        raise ValueError("combine_losses needs at least one {loss name: weight}")
    hyper = dict(hyper or {})
    stray = sorted(set(hyper) - set(weights))
    if stray:
        raise ValueError(f"hyper-parameters given for {stray}, which are not combined")
    parts = [(get_align_loss(n), float(w), get_align_loss(n).resolve(**hyper.get(n, {})))
             for n, w in weights.items()]
    kinds = {spec.kind for spec, _, _ in parts}
    if len(kinds) > 1:
        raise ValueError(f"cannot combine losses over different data: "
                         f"{ {spec.name: spec.kind for spec, _, _ in parts} }")

    def combined(logps: SequenceLogps) -> LossOutput:
        outs = [spec.fn(logps, **h) for spec, _, h in parts]
        total = parts[0][1] * outs[0].losses
        for (_, w, _), out in zip(parts[1:], outs[1:], strict=True):
            total = total + w * out.losses
        return LossOutput(total, outs[0].rewards)

    combined.__doc__ = "Weighted sum: " + " + ".join(f"{w} * {n}" for n, w in weights.items())
    return AlignLoss(
        name="+".join(f"{w}*{n}" for n, w in weights.items()), fn=combined, kind=kinds.pop(),
        needs_reference=any(s.needs_reference for s, _, _ in parts),
        needs_token_kl=any(s.needs_token_kl for s, _, _ in parts),
        needs_kl_estimate=any(s.needs_kl_estimate for s, _, _ in parts),
        paper="; ".join(s.paper for s, _, _ in parts))
