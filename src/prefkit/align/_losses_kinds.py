"""Losses for the other two kinds of data: listwise (``K >= 2`` responses ranked best
first, Plackett-Luce) and unpaired (``K = 1`` completions labelled desirable or not: KTO,
unpaired APO-zero).

Private: :mod:`prefkit.align.losses` re-exports these, and documents the notation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from prefkit.align._losses_base import _check_k, _log_ratios
from prefkit.align.types import LossOutput, SequenceLogps
from prefkit.choice.torch_pairwise import log_plackett_luce

__all__ = ["listwise_loss", "kto_loss", "apo_zero_unpaired_loss"]


# -- listwise (K >= 2, ranked best first) ----------------------------------------------
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
    (PRO's objective with DPO's scorer): ``-`` :func:`prefkit.choice.log_plackett_luce`
    of ``u`` with ``scale=beta``. Padding responses (``valid`` False) are left out wherever
    they sit. Each term is computed from the margins as
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
    losses = -log_plackett_luce(u, mask=valid, scale=beta)
    rewards = torch.where(valid, beta * u, torch.full_like(u, -math.inf))
    return LossOutput(losses, rewards)


# -- unpaired (K = 1) -------------------------------------------------------------------
def _labels(logps: SequenceLogps, loss: str) -> Tensor:
    if logps.label is None:
        raise ValueError(f"the {loss!r} loss needs SequenceLogps.label (True = desirable, "
                         "False = undesirable) for each completion")
    return logps.label.to(torch.bool)


def kto_loss(logps: SequenceLogps, *, beta: float = 0.1, desirable_weight: float = 1.0,
             undesirable_weight: float = 1.0,
             kl_estimate: float | Tensor | None = None) -> LossOutput:
    """Kahneman-Tversky Optimization: unpaired completions labelled desirable or not, each
    valued against a reference point ``z0``,

    ``loss = w_D (1 - sig(beta (u - z0)))`` if desirable, ``w_U (1 - sig(beta (z0 - u)))``
    otherwise,

    ``z0 = max(0, kl_estimate)`` (detached), an estimate of ``KL(pi_theta || pi_ref)``. By
    default (``kl_estimate=None``) it is this batch's ``mean(kl_policy - kl_reference)``
    over mismatched (prompt, completion) pairs. A number or 0-dim tensor gives an estimate
    made elsewhere, and ``kl_policy`` / ``kl_reference`` are then not needed (nor read):
    the trainer passes the mean over the whole optimizer step's mismatched pairs, so
    micro-batches share one reference point; a constant fixes it (``0``: no KL term).
    Rewards ``(B, 1)``: ``beta u``. TRL 1.16: ``KTOTrainer`` ``loss_type="kto"`` (across
    devices TRL averages the per-device means).

    References: Ethayarajh et al. (2024) "KTO: Model Alignment as Prospect Theoretic
    Optimization", eq. 7.
    """
    _check_k(logps, "unpaired", "kto")
    label = _labels(logps, "kto")
    u = _log_ratios(logps, "kto")[:, 0]
    if kl_estimate is None:
        if logps.kl_policy is None or logps.kl_reference is None:
            raise ValueError("the 'kto' loss needs kl_policy and kl_reference (log-probs of "
                             "mismatched prompt/completion pairs) for its KL estimate, or "
                             "kl_estimate=; the trainer computes it when "
                             "AlignLoss.needs_kl_estimate, and collate builds the pairs from "
                             "examples that carry a kl_completion (add_kl_completions)")
        kl_estimate = (logps.kl_policy - logps.kl_reference.detach()).mean()
    z0 = torch.as_tensor(kl_estimate, dtype=u.dtype, device=u.device).detach()
    if z0.numel() != 1:
        raise ValueError(f"the 'kto' loss's kl_estimate is one number, got shape "
                         f"{tuple(z0.shape)}")
    z0 = z0.reshape(()).clamp(min=0)
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
