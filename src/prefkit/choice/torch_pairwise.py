"""Torch versions of the links, for training: per-example log-likelihoods on tensors.

The numpy links in :mod:`prefkit.choice.pairwise` and :mod:`prefkit.choice.plackett_luce`
serve the rankers (Newton steps need hand-written derivatives); training a network needs
the same likelihoods as differentiable torch functions. These are pure: tensors in,
tensors out, no reduction (the caller averages), no global state.

* :func:`log_bradley_terry` -- ``log P(chosen > rejected)`` for a reward margin
  ``d = r_chosen - r_rejected`` under Bradley-Terry, ``log sigmoid(d)``; with label
  smoothing ``eps`` (the label is flipped with probability ``eps``, the "conservative"
  form of Mitchell 2023 / cDPO), ``(1 - eps) log sigmoid(d) + eps log sigmoid(-d)``.
* :func:`log_plackett_luce` -- ``log P(ranking)`` for ``K`` scores listed best first,
  ``sum_t [s_t - logsumexp(s_t, ..., s_{K-1})]``; a mask allows rankings of different
  lengths in one batch. For ``K = 2`` it equals :func:`log_bradley_terry` bit for bit.

Both are computed with ``logsigmoid`` of margins, so they stay finite with finite
gradients at any margin (``|d| = 1e4`` included). The General Preference Model's link is
Bradley-Terry over its skew-symmetric logit (:func:`prefkit.choice.general.gpm_logit`).

Example:
    >>> import torch
    >>> log_bradley_terry(torch.tensor([0.0, 2.0])).exp().round(decimals=4)
    tensor([0.5000, 0.8808])
    >>> s = torch.log(torch.tensor([[3.0, 2.0, 1.0]]))
    >>> log_plackett_luce(s).exp().round(decimals=4)   # 3/6 * 2/3
    tensor([0.3333])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["log_bradley_terry", "log_plackett_luce"]


def log_bradley_terry(margin: Tensor, *, label_smoothing: float | Tensor = 0.0) -> Tensor:
    """Per-example ``log P(chosen > rejected)`` under Bradley-Terry.

    ``(1 - eps) * log sigmoid(margin) + eps * log sigmoid(-margin)`` with
    ``eps = label_smoothing`` (a float in ``[0, 0.5]`` or a per-example tensor).

    Args:
        margin: ``r_chosen - r_rejected`` (minus any required margin), shape ``(B,)`` or any
            shape; the result has the same shape.
        label_smoothing: probability that the recorded preference is flipped.

    References: Bradley & Terry (1952); the conservative (label-smoothed) form is that of
    Mitchell (2023), "A note on DPO with noisy preferences", used by TRL's ``cdpo``.
    """
    eps = label_smoothing
    if isinstance(eps, float) and not 0.0 <= eps <= 0.5:
        raise ValueError(f"label_smoothing must lie in [0, 0.5], got {eps}")
    logp = F.logsigmoid(margin)
    if isinstance(eps, float) and eps == 0.0:
        return logp
    return (1.0 - eps) * logp + eps * F.logsigmoid(-margin)


def log_plackett_luce(scores: Tensor, *, mask: Tensor | None = None,
                      scale: float = 1.0) -> Tensor:
    """Per-ranking ``log P`` of an observed order under Plackett-Luce.

    ``log P = sum_t log [exp(s_t) / sum_{j >= t} exp(s_j)]
            = sum_t log sigmoid(-logsumexp_{j > t}(s_j - s_t))``,

    computed in the second form, from score differences: each position is Bradley-Terry
    between it and the log-sum-exp of those ranked below it, so for ``K = 2`` the result
    is :func:`log_bradley_terry` of ``s_0 - s_1``, bit for bit, and it stays finite with
    finite gradients at any gap. Costs ``O(B K^2)`` (rankings are short).

    Args:
        scores: shape ``(B, K)``, each row the scores of the ranked candidates **best first**.
        mask: optional bool ``(B, K)``; ``False`` marks padding, left out wherever it sits
            (rows of different lengths in one batch). A row with one real entry has
            ``log P = 0``.
        scale: the scores are ``scale * scores``; the differences are scaled after
            subtracting (``scale * (s_j - s_t)``), as DPO scales its log-ratio margin by
            ``beta``, so listwise DPO at ``K = 2`` is DPO exactly.

    Returns:
        shape ``(B,)``. An empty batch ``(0, K)`` gives shape ``(0,)``.

    References: Plackett (1975); Luce (1959); listwise reward/DPO losses (PRO, Song et al.
    2024; LiPO, Liu et al. 2024) use this likelihood over reward or log-ratio scores.
    """
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape (B, K), got {tuple(scores.shape)}")
    k = scores.shape[1]
    # behind[b, t, j] = scale * (s_j - s_t): how far candidate j is ahead of candidate t
    behind = scores[:, None, :] - scores[:, :, None]  # (B, K, K)
    if not (isinstance(scale, float) and scale == 1.0):
        behind = scale * behind
    below = torch.ones(k, k, dtype=torch.bool, device=scores.device).triu(diagonal=1)
    if mask is not None:
        if mask.shape != scores.shape:
            raise ValueError(
                f"mask shape {tuple(mask.shape)} != scores shape {tuple(scores.shape)}")
        mask = mask.to(torch.bool)
        competes = below & mask[:, None, :]  # (B, K, K): j ranked below t and real
    else:
        competes = below.expand(scores.shape[0], k, k)
    # a finite filler (not -inf) where j does not compete, so no NaN in values or gradients
    filler = torch.finfo(behind.dtype).min / 4
    lse = torch.logsumexp(torch.where(competes, behind, torch.full_like(behind, filler)), dim=2)
    terms = F.logsigmoid(-lse)  # (B, K); exactly 0 where nothing competes (the last entry)
    if mask is not None:
        terms = torch.where(mask, terms, torch.zeros_like(terms))
    return terms.sum(dim=-1)
