"""Reward-model losses: one small function each, chosen by name from :data:`REWARD_LOSSES`.

Every loss has the same call shape, so a trainer never branches on the method::

    losses, diagnostics = loss_fn(chosen_rewards, rejected_rewards, batch, **options)

* ``chosen_rewards``, ``rejected_rewards``: the model's outputs for the two responses of
  each pair, shape ``(B,)`` (a scalar reward) or ``(B, A)`` (one output per attribute, for
  ``regression``).
* ``batch``: the per-pair side information, ``str -> Tensor``: ``margin`` ``(B,)`` (a
  preference strength, e.g. Llama 2's 1-4 or HelpSteer2-Preference's 1-3),
  ``chosen_ratings`` / ``rejected_ratings`` ``(B, A)`` (absolute ratings; NaN = not rated).
  A loss that needs a key that is missing raises an error naming it.
* ``**options``: the loss's own hyper-parameters, keyword-only (``label_smoothing``,
  ``center_rewards_coefficient``, ...), stored in the training config.

Each returns **per-example** losses ``(B,)`` (the caller averages or weights them) and a
dict of **detached** per-example diagnostics (``chosen_rewards``, ``rejected_rewards``,
``margins`` = ``r_c - r_r``, ``accuracy`` = 1 if ``r_c > r_r``, 0.5 on a tie).

With ``d = r_chosen - r_rejected``:

==========================  ==============================================================
name                        per-example loss
==========================  ==============================================================
``bradley_terry``           ``-log sigmoid(d)``
``bradley_terry_margin``    ``-log sigmoid(d - m)``                 (TRL, Llama 2)
``label_smoothing``         ``-(1-eps) log sigmoid(d) - eps log sigmoid(-d)``
``reward_centering``        ``-log sigmoid(d) + c (r_c + r_r)^2``   (TRL)
``regression``              mean of ``(r - y)^2`` over both responses and rated attributes
``helpsteer2``              ``-|m| log sigmoid(d) + w/2 [(r_c - y_c)^2 + (r_r - y_r)^2]``
==========================  ==============================================================

Example:
    >>> import torch
    >>> loss, diag = REWARD_LOSSES["bradley_terry"](torch.tensor([1.0]), torch.tensor([0.0]))
    >>> round(float(loss), 4), diag["accuracy"].tolist()
    (0.3133, [1.0])
"""

from __future__ import annotations

import math

from collections.abc import Callable, Mapping
from typing import Protocol

import torch
from torch import Tensor

from prefkit.choice.torch_pairwise import log_bradley_terry

__all__ = [
    "RewardLoss",
    "REWARD_LOSSES",
    "get_reward_loss",
    "bradley_terry_loss",
    "bradley_terry_margin_loss",
    "label_smoothing_loss",
    "reward_centering_loss",
    "regression_loss",
    "helpsteer2_loss",
]

Batch = Mapping[str, Tensor]
Diagnostics = dict[str, Tensor]


class RewardLoss(Protocol):
    """The call shape every entry of :data:`REWARD_LOSSES` has."""

    def __call__(
        self, chosen_rewards: Tensor, rejected_rewards: Tensor, batch: Batch | None = None,
        **options: float,
    ) -> tuple[Tensor, Diagnostics]: ...


# -- helpers ---------------------------------------------------------------------------
def _need(batch: Batch | None, key: str, loss: str) -> Tensor:
    if batch is None or key not in batch or batch[key] is None:
        raise KeyError(
            f"the {loss!r} loss needs a {key!r} column in the batch; give the pairs a "
            f"{key.split('_')[-1]} (e.g. TextPairs.{key}) or choose another loss"
        )
    return batch[key]


def _scalar(rewards: Tensor, loss: str) -> Tensor:
    if rewards.ndim == 2 and rewards.shape[1] == 1:
        return rewards[:, 0]
    if rewards.ndim != 1:
        raise ValueError(
            f"the {loss!r} loss needs one reward per response, shape (B,); got "
            f"{tuple(rewards.shape)} (a multi-attribute head trains with 'regression')"
        )
    return rewards


def _check_pair(chosen: Tensor, rejected: Tensor) -> None:
    if chosen.shape != rejected.shape:
        raise ValueError(
            f"chosen and rejected rewards differ in shape: {tuple(chosen.shape)} vs "
            f"{tuple(rejected.shape)}"
        )


def _pair_diagnostics(chosen: Tensor, rejected: Tensor) -> Diagnostics:
    c, r = chosen.detach(), rejected.detach()
    d = c - r
    acc = (d > 0).to(d.dtype) + 0.5 * (d == 0).to(d.dtype)
    return {"chosen_rewards": c, "rejected_rewards": r, "margins": d, "accuracy": acc}


# -- Bradley-Terry family ----------------------------------------------------------------
def bradley_terry_loss(
    chosen_rewards: Tensor, rejected_rewards: Tensor, batch: Batch | None = None
) -> tuple[Tensor, Diagnostics]:
    """``-log sigmoid(r_c - r_r)``: the negative Bradley-Terry log-likelihood of the pair.

    Any ``margin`` in the batch is ignored (use ``bradley_terry_margin`` for it). The batch
    mean equals TRL's ``RewardTrainer`` loss without margin or centering.

    References: Bradley & Terry (1952); Ouyang et al. (2022) "Training language models to
    follow instructions with human feedback", eq. 1; TRL ``trainer/reward_trainer.py``.
    """
    _check_pair(chosen_rewards, rejected_rewards)
    c = _scalar(chosen_rewards, "bradley_terry")
    r = _scalar(rejected_rewards, "bradley_terry")
    return -log_bradley_terry(c - r), _pair_diagnostics(c, r)


def bradley_terry_margin_loss(
    chosen_rewards: Tensor, rejected_rewards: Tensor, batch: Batch | None = None
) -> tuple[Tensor, Diagnostics]:
    """``-log sigmoid(r_c - r_r - m)`` with the pair's preference strength ``m =
    batch["margin"]``: pairs marked as clearly better must be separated by at least ``m``.

    This is TRL's ``RewardTrainer`` loss when the dataset has a ``margin`` column
    (``-logsigmoid(rewards_chosen - rewards_rejected - margin)``, averaged over the batch).

    References: Touvron et al. (2023) "Llama 2", eq. 2; TRL ``trainer/reward_trainer.py``.
    """
    _check_pair(chosen_rewards, rejected_rewards)
    c = _scalar(chosen_rewards, "bradley_terry_margin")
    r = _scalar(rejected_rewards, "bradley_terry_margin")
    m = _need(batch, "margin", "bradley_terry_margin").to(c.dtype)
    return -log_bradley_terry(c - r - m), _pair_diagnostics(c, r)


def label_smoothing_loss(
    chosen_rewards: Tensor, rejected_rewards: Tensor, batch: Batch | None = None, *,
    label_smoothing: float = 0.1,
) -> tuple[Tensor, Diagnostics]:
    """Conservative Bradley-Terry: the label is assumed flipped with probability ``eps``,

    ``-(1 - eps) log sigmoid(d) - eps log sigmoid(-d)``, ``d = r_c - r_r``.

    Unlike plain BT its minimum is at a finite ``d = log((1 - eps) / eps)``, so rewards do
    not run away on separable pairs. ``eps = 0`` is ``bradley_terry``.

    References: Mitchell (2023) "A note on DPO with noisy preferences and relationship to
    IPO" (cDPO; TRL's DPO ``label_smoothing``); Wang et al. (2024) "Secrets of RLHF part II".
    """
    _check_pair(chosen_rewards, rejected_rewards)
    if not 0.0 <= float(label_smoothing) <= 0.5:
        raise ValueError(f"label_smoothing is the probability that a label is flipped: it "
                         f"must lie in [0, 0.5], got {label_smoothing!r}")
    c = _scalar(chosen_rewards, "label_smoothing")
    r = _scalar(rejected_rewards, "label_smoothing")
    loss = -log_bradley_terry(c - r, label_smoothing=float(label_smoothing))
    return loss, _pair_diagnostics(c, r)


def reward_centering_loss(
    chosen_rewards: Tensor, rejected_rewards: Tensor, batch: Batch | None = None, *,
    center_rewards_coefficient: float = 0.01, use_margin: bool = False,
) -> tuple[Tensor, Diagnostics]:
    """Bradley-Terry plus a pull of the rewards towards zero mean,

    ``-log sigmoid(r_c - r_r [- m]) + c * (r_c + r_r)^2``,

    with ``c = center_rewards_coefficient`` and the margin ``m`` only if ``use_margin``.
    BT only sees differences, so the reward's offset is free; the penalty pins it to 0.
    The batch mean equals TRL's ``RewardTrainer`` loss with
    ``center_rewards_coefficient`` set (TRL: ``loss += coef * mean((r_c + r_r) ** 2)``).

    References: Eisenstein et al. (2023) "Helping or herding? Reward model ensembles
    mitigate but do not eliminate reward hacking", eq. 2 (arXiv 2312.09244; TRL's
    ``RewardConfig`` recommends 0.01); TRL ``trainer/reward_trainer.py``.
    """
    _check_pair(chosen_rewards, rejected_rewards)
    if not (math.isfinite(center_rewards_coefficient) and center_rewards_coefficient >= 0):
        raise ValueError("center_rewards_coefficient weighs the pull of the rewards to 0: it "
                         f"must be a finite number >= 0 (TRL suggests 0.01), got "
                         f"{center_rewards_coefficient!r}")
    c = _scalar(chosen_rewards, "reward_centering")
    r = _scalar(rejected_rewards, "reward_centering")
    d = c - r
    if use_margin:
        d = d - _need(batch, "margin", "reward_centering").to(c.dtype)
    loss = -log_bradley_terry(d) + center_rewards_coefficient * (c + r) ** 2
    return loss, _pair_diagnostics(c, r)


# -- regression ---------------------------------------------------------------------------
def _as_matrix(x: Tensor) -> Tensor:
    return x[:, None] if x.ndim == 1 else x


def _squared_errors(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Squared errors and the 0/1 mask of rated entries (NaN target = not rated). NaNs are
    replaced before subtracting so that no NaN reaches the gradient."""
    pred, target = _as_matrix(pred), _as_matrix(target).to(pred.dtype)
    if pred.shape != target.shape:
        raise ValueError(
            f"predictions {tuple(pred.shape)} and ratings {tuple(target.shape)} differ in shape"
        )
    seen = ~torch.isnan(target)
    err = pred - torch.where(seen, target, torch.zeros_like(target))
    return torch.where(seen, err * err, torch.zeros_like(err)), seen.to(pred.dtype)


def regression_loss(
    chosen_rewards: Tensor, rejected_rewards: Tensor, batch: Batch | None = None
) -> tuple[Tensor, Diagnostics]:
    """Mean squared error on absolute ratings, one output per attribute.

    ``loss_i = sum_{s in {c, r}} sum_a o_{s,a} (r_{s,a} - y_{s,a})^2 / sum o_{s,a}``,

    where ``y = batch["chosen_ratings"]`` / ``batch["rejected_ratings"]`` ``(B, A)`` and
    ``o`` marks the rated entries (NaN = not rated; a pair with nothing rated costs 0). The
    model's outputs ``(B, A)`` (``(B,)`` when ``A = 1``) are the per-attribute rewards.

    References: Wang et al. (2023) "HelpSteer" / SteerLM regression reward models; stage 1
    of ArmoRM, Wang et al. (2024) "Interpretable Preferences via Multi-Objective Reward
    Modeling and Mixture-of-Experts" (there a ridge-regression probe).
    """
    _check_pair(chosen_rewards, rejected_rewards)
    se_c, o_c = _squared_errors(chosen_rewards, _need(batch, "chosen_ratings", "regression"))
    se_r, o_r = _squared_errors(rejected_rewards, _need(batch, "rejected_ratings", "regression"))
    n = (o_c.sum(-1) + o_r.sum(-1)).clamp_min(1.0)
    loss = (se_c.sum(-1) + se_r.sum(-1)) / n
    diag = {"squared_error": loss.detach(), "n_rated": (o_c.sum(-1) + o_r.sum(-1)).detach()}
    if chosen_rewards.ndim == 1 or chosen_rewards.shape[-1] == 1:
        c, r = _as_matrix(chosen_rewards)[:, 0], _as_matrix(rejected_rewards)[:, 0]
        diag |= _pair_diagnostics(c, r)
    return loss, diag


def helpsteer2_loss(
    chosen_rewards: Tensor, rejected_rewards: Tensor, batch: Batch | None = None, *,
    regression_weight: float = 1.0, rating_index: int = 0,
) -> tuple[Tensor, Diagnostics]:
    """Scaled Bradley-Terry plus regression on a rating, on one scalar reward:

    ``loss_i = -|m_i| log sigmoid(r_c - r_r) + w/2 [(r_c - y_c)^2 + (r_r - y_r)^2]``

    * ``m = batch["margin"]`` is the preference strength (HelpSteer2-Preference: 1 =
      slightly, 2 = better, 3 = much better); pairs without a margin column get ``m = 1``.
      Scaling the loss by the strength (not subtracting it, as ``bradley_terry_margin``
      does) is the paper's "Scaled BT", its best BT variant.
    * ``y = batch[*_ratings][:, rating_index]`` is the rating the paper regresses on
      (HelpSteer2 helpfulness, 0-4); ``w = regression_weight``; unrated (NaN) entries and
      ``w = 0`` drop the term (then ``chosen_ratings`` may be absent).

    The paper combines the two **in sequence**: a helpfulness-only regression model
    initialises Scaled-BT training. Here that is ``regression`` (or this loss with
    ``w > 0``) first, then this loss with ``regression_weight=0`` and the trainer's
    ``init_from`` pointing at the first run. With ``w > 0`` the joint loss also anchors
    the reward's scale and offset to the rating scale, which plain BT leaves free.
    (The paper's final ExPO weight extrapolation is not implemented.)

    References: Wang et al. (2024) "HelpSteer2-Preference: Complementing Ratings with
    Preferences", section 3 (Regular / Margin / Scaled BT) and section 4 (Regression then
    Scaled BT).
    """
    _check_pair(chosen_rewards, rejected_rewards)
    c = _scalar(chosen_rewards, "helpsteer2")
    r = _scalar(rejected_rewards, "helpsteer2")
    if batch is not None and batch.get("margin") is not None:
        strength = batch["margin"].to(c.dtype).abs()
    else:
        strength = torch.ones_like(c)
    loss = -strength * log_bradley_terry(c - r)
    diag = _pair_diagnostics(c, r)
    if regression_weight:
        y_c = _as_matrix(_need(batch, "chosen_ratings", "helpsteer2"))[:, rating_index]
        y_r = _as_matrix(_need(batch, "rejected_ratings", "helpsteer2"))[:, rating_index]
        se_c, _ = _squared_errors(c, y_c)
        se_r, _ = _squared_errors(r, y_r)
        reg = 0.5 * (se_c[:, 0] + se_r[:, 0])
        loss = loss + regression_weight * reg
        diag["squared_error"] = reg.detach()
    return loss, diag


REWARD_LOSSES: dict[str, Callable[..., tuple[Tensor, Diagnostics]]] = {
    "bradley_terry": bradley_terry_loss,
    "bradley_terry_margin": bradley_terry_margin_loss,
    "label_smoothing": label_smoothing_loss,
    "reward_centering": reward_centering_loss,
    "regression": regression_loss,
    "helpsteer2": helpsteer2_loss,
}


def get_reward_loss(name: str) -> Callable[..., tuple[Tensor, Diagnostics]]:
    """Look a loss up by name; the error lists the known names."""
    try:
        return REWARD_LOSSES[name]
    except KeyError:
        raise ValueError(
            f"unknown reward loss {name!r}; choose one of {sorted(REWARD_LOSSES)}"
        ) from None

