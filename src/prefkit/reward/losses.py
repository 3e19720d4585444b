"""Reward-model losses: one small function each, chosen by name from :data:`REWARD_LOSSES`.

Every loss has the same call shape, so a trainer never branches on the method::

    out = REWARD_LOSSES[name](chosen, rejected, batch, **options)   # a LossOutput
    loss = out.reduce()                                            # sum / normaliser

* ``chosen``, ``rejected``: the model's outputs for the two responses of each pair: shape
  ``(B,)`` (a scalar reward), ``(B, A)`` (one output per attribute, for ``regression``) or,
  for ``general_preference`` (GPM), preference embeddings ``(B, 2k)``
  (:attr:`RewardLoss.takes` says which).
* ``batch``: the per-pair side information, ``str -> Tensor``: ``margin`` ``(B,)`` (a
  preference strength, e.g. Llama 2's 1-4 or HelpSteer2-Preference's 1-3),
  ``chosen_ratings`` / ``rejected_ratings`` ``(B, A)`` (absolute ratings; NaN = not rated).
  A loss that needs a key that is missing raises an error naming it.
* ``**options``: the loss's own hyper-parameters, keyword-only (``label_smoothing``,
  ``center_rewards_coefficient``, ...), stored in the training config.

Each returns the :class:`~prefkit.losses.LossOutput` every prefkit loss returns (the align
losses too): **per-example** losses ``(B,)`` with gradients (the caller reduces: the mean,
or ``sum / normaliser`` over a step), and **detached** diagnostics: ``rewards`` ``(B, 2)``
(chosen, rejected), ``margins`` = ``r_c - r_r`` (GPM: its logit), ``accuracy`` by
:func:`~prefkit.losses.preference_accuracy` (1 if ``r_c > r_r``, **0.5 on a tie**, the rule
and its reason are there) and loss-specific ``diagnostics`` (``squared_error``, ...).
Unpacking it, ``losses, diagnostics = out``, still gives the earlier pair (the
diagnostics by name, :meth:`~prefkit.losses.LossOutput.as_dict`).

The links are :mod:`prefkit.choice`'s: :func:`~prefkit.choice.log_bradley_terry` and, for
GPM, Bradley-Terry over :func:`~prefkit.choice.general.gpm_logit`.

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
``general_preference``      ``-log sigmoid(<R^> v_c, v_r> / tau)``  (GPM; alias ``gpm``)
``pluralistic``             ``-log sigmoid(r_u(c) - r_u(r))``       (PAL; alias ``pal``)
==========================  ==============================================================

(``label_smoothing`` is also an option of the last two: ``-(1-eps) log sigmoid(x) - eps
log sigmoid(-x)``.)

Example:
    >>> import torch
    >>> out = REWARD_LOSSES["bradley_terry"](torch.tensor([1.0, 0.5]), torch.tensor([0.0, 0.5]))
    >>> [round(x, 4) for x in out.losses.tolist()], out.accuracy.tolist()   # a tie: ln 2, 0.5
    ([0.3133, 0.6931], [1.0, 0.5])
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from prefkit.choice.general import gpm_logit
from prefkit.choice.torch_pairwise import log_bradley_terry
from prefkit.losses import LossOutput, LossSpec, keyword_defaults

__all__ = [
    "RewardLoss",
    "REWARD_LOSSES",
    "REWARD_ALIASES",
    "get_reward_loss",
    "bradley_terry_loss",
    "bradley_terry_margin_loss",
    "label_smoothing_loss",
    "reward_centering_loss",
    "regression_loss",
    "helpsteer2_loss",
    "general_preference_loss",
    "pluralistic_loss",
]

Batch = Mapping[str, Tensor]


@dataclass(frozen=True, eq=False)
class RewardLoss(LossSpec):
    """One entry of :data:`REWARD_LOSSES`: a :class:`~prefkit.losses.LossSpec` (the registry
    type the align losses share) whose ``fn`` takes ``(chosen, rejected, batch=None,
    **options)`` and returns a :class:`~prefkit.losses.LossOutput`.

    takes: what each side is: ``"rewards"`` (the model's outputs, ``(B,)`` or ``(B, A)``)
           or ``"embeddings"`` (GPM's preference embeddings ``(B, 2k)``).

    ``needs`` lists the batch columns it requires; ``defaults`` its options. Calling it
    fills the defaults and refuses unknown option names.
    """

    takes: str = "rewards"

    def __call__(self, chosen: Tensor, rejected: Tensor,  # type: ignore[override]
                 batch: Batch | None = None, **options: Any) -> LossOutput:
        return self.fn(chosen, rejected, batch, **self.resolve(**options))


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


def _pair_output(losses: Tensor, chosen: Tensor, rejected: Tensor,
                 **diagnostics: Tensor) -> LossOutput:
    """Per-example losses with the pair's detached rewards ``(B, 2)``; margins and accuracy
    follow (:class:`~prefkit.losses.LossOutput`)."""
    rewards = torch.stack([chosen.detach(), rejected.detach()], dim=1)
    return LossOutput(losses, rewards, diagnostics=diagnostics)


# -- Bradley-Terry family ----------------------------------------------------------------
def bradley_terry_loss(
    chosen_rewards: Tensor, rejected_rewards: Tensor, batch: Batch | None = None
) -> LossOutput:
    """``-log sigmoid(r_c - r_r)``: the negative Bradley-Terry log-likelihood of the pair.

    Any ``margin`` in the batch is ignored (use ``bradley_terry_margin`` for it). The batch
    mean equals TRL's ``RewardTrainer`` loss without margin or centering.

    References: Bradley & Terry (1952); Ouyang et al. (2022) "Training language models to
    follow instructions with human feedback", eq. 1; TRL ``trainer/reward_trainer.py``.
    """
    _check_pair(chosen_rewards, rejected_rewards)
    c = _scalar(chosen_rewards, "bradley_terry")
    r = _scalar(rejected_rewards, "bradley_terry")
    return _pair_output(-log_bradley_terry(c - r), c, r)


def bradley_terry_margin_loss(
    chosen_rewards: Tensor, rejected_rewards: Tensor, batch: Batch | None = None
) -> LossOutput:
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
    return _pair_output(-log_bradley_terry(c - r - m), c, r)


def _smoothed_bradley_terry(chosen_rewards: Tensor, rejected_rewards: Tensor,
                            label_smoothing: float, loss: str) -> LossOutput:
    """``-(1 - eps) log sigmoid(d) - eps log sigmoid(-d)``, ``d = r_c - r_r``, per pair, with
    ``eps = label_smoothing`` checked to lie in [0, 0.5]; ``loss`` names the caller in errors."""
    _check_pair(chosen_rewards, rejected_rewards)
    if not 0.0 <= float(label_smoothing) <= 0.5:
        raise ValueError(f"label_smoothing is the probability that a label is flipped: it "
                         f"must lie in [0, 0.5], got {label_smoothing!r}")
    c = _scalar(chosen_rewards, loss)
    r = _scalar(rejected_rewards, loss)
    return _pair_output(-log_bradley_terry(c - r, label_smoothing=float(label_smoothing)),
                        c, r)


def label_smoothing_loss(
    chosen_rewards: Tensor, rejected_rewards: Tensor, batch: Batch | None = None, *,
    label_smoothing: float = 0.1,
) -> LossOutput:
    """Conservative Bradley-Terry: the label is assumed flipped with probability ``eps``,

    ``-(1 - eps) log sigmoid(d) - eps log sigmoid(-d)``, ``d = r_c - r_r``.

    Unlike plain BT its minimum is at a finite ``d = log((1 - eps) / eps)``, so rewards do
    not run away on separable pairs. ``eps = 0`` is ``bradley_terry``.

    References: Mitchell (2023) "A note on DPO with noisy preferences and relationship to
    IPO" (cDPO; TRL's DPO ``label_smoothing``); Wang et al. (2024) "Secrets of RLHF part II".
    """
    return _smoothed_bradley_terry(chosen_rewards, rejected_rewards, label_smoothing,
                                   "label_smoothing")


def reward_centering_loss(
    chosen_rewards: Tensor, rejected_rewards: Tensor, batch: Batch | None = None, *,
    center_rewards_coefficient: float = 0.01, use_margin: bool = False,
) -> LossOutput:
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
    return _pair_output(loss, c, r)


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
) -> LossOutput:
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
    diag = {"squared_error": loss, "n_rated": o_c.sum(-1) + o_r.sum(-1)}
    if chosen_rewards.ndim == 1 or chosen_rewards.shape[-1] == 1:
        c, r = _as_matrix(chosen_rewards)[:, 0], _as_matrix(rejected_rewards)[:, 0]
        return _pair_output(loss, c, r, **diag)
    return LossOutput(loss, diagnostics=diag)  # one output per attribute: no single margin


def helpsteer2_loss(
    chosen_rewards: Tensor, rejected_rewards: Tensor, batch: Batch | None = None, *,
    regression_weight: float = 1.0, rating_index: int = 0,
) -> LossOutput:
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
    diag: dict[str, Tensor] = {}
    if regression_weight:
        y_c = _as_matrix(_need(batch, "chosen_ratings", "helpsteer2"))[:, rating_index]
        y_r = _as_matrix(_need(batch, "rejected_ratings", "helpsteer2"))[:, rating_index]
        se_c, _ = _squared_errors(c, y_c)
        se_r, _ = _squared_errors(r, y_r)
        reg = 0.5 * (se_c[:, 0] + se_r[:, 0])
        loss = loss + regression_weight * reg
        diag["squared_error"] = reg
    return _pair_output(loss, c, r, **diag)


# -- preference models beyond one scalar reward ---------------------------------------------
def general_preference_loss(
    v_chosen: Tensor, v_rejected: Tensor, batch: Batch | None = None, *,
    tau: float = 0.1, label_smoothing: float = 0.0,
) -> LossOutput:
    """General Preference Model (GPM): Bradley-Terry over the skew-symmetric logit of two
    preference embeddings,

    ``loss = -(1 - eps) log sigmoid(s) - eps log sigmoid(-s)``,
    ``s = <R^> v_chosen, v_rejected> / tau`` (:func:`prefkit.choice.general.gpm_logit`),

    ``v`` of shape ``(B, 2k)``; ``batch["eigenvalues"]`` ``(B, k)`` (optional) are the
    prompt-dependent ``lambda`` of ``R^>``. Intransitive preferences are representable, so
    there is no per-response reward: ``rewards`` is None and ``margins`` is ``s``, the
    pair's logit (accuracy: ``s > 0``, a tie 0.5); ``diagnostics["logits"]`` is ``s`` too.

    References: Zhang, Zhang, Wu, Xu & Gu (2025) "Beyond Bradley-Terry Models: A General
    Preference Model for Language Model Alignment" (arXiv:2410.02197), eq. 3.2 and the
    released loss.
    """
    if v_chosen.ndim != 2 or v_chosen.shape != v_rejected.shape:
        raise ValueError(
            "the 'general_preference' loss takes preference embeddings (B, 2k) for both "
            f"sides; got {tuple(v_chosen.shape)} and {tuple(v_rejected.shape)}")
    if not tau > 0:
        raise ValueError(f"tau is GPM's temperature: it must be > 0 (released default 0.1), "
                         f"got {tau!r}")
    if not 0.0 <= float(label_smoothing) <= 0.5:
        raise ValueError(f"label_smoothing is the probability that a label is flipped: it "
                         f"must lie in [0, 0.5], got {label_smoothing!r}")
    eigenvalues = None if batch is None else batch.get("eigenvalues")
    logits = gpm_logit(v_chosen, v_rejected, eigenvalues) / tau  # (B,)
    losses = -log_bradley_terry(logits, label_smoothing=float(label_smoothing))
    return LossOutput(losses, margins=logits, diagnostics={"logits": logits})


def pluralistic_loss(
    chosen_rewards: Tensor, rejected_rewards: Tensor, batch: Batch | None = None, *,
    label_smoothing: float = 0.0,
) -> LossOutput:
    """Pluralistic alignment (PAL): Bradley-Terry on each user's own rewards,

    ``loss = -(1 - eps) log sigmoid(r_u(c) - r_u(r)) - eps log sigmoid(r_u(r) - r_u(c))``,

    where ``r_u(y)`` is the reward of response ``y`` for the user ``u`` who compared the
    pair (:meth:`prefkit.reward.pluralistic.PluralisticRewardModel.reward`: a mixture of
    shared prototype ideal points); the model reads the user ids, the loss only the two
    rewards. ``eps = 0`` is ``bradley_terry`` on per-user rewards.

    References: Chen, Chen, Rege & Vinayak (2024) "PAL: Pluralistic Alignment Framework for
    Learning from Heterogeneous Preferences" (arXiv:2406.08469), the ideal-point model.
    """
    return _smoothed_bradley_terry(chosen_rewards, rejected_rewards, label_smoothing,
                                   "pluralistic")


def _reward_spec(name: str, fn: Any, paper: str, needs: tuple[str, ...] = (),
                 takes: str = "rewards") -> RewardLoss:
    return RewardLoss(name, fn, "pairwise", keyword_defaults(fn), paper, frozenset(needs),
                      None, takes)


_SPECS = [
    _reward_spec("bradley_terry", bradley_terry_loss, "Bradley & Terry 1952; Ouyang et al. "
                 "2022, arXiv:2203.02155"),
    _reward_spec("bradley_terry_margin", bradley_terry_margin_loss,
                 "Touvron et al. 2023 (Llama 2), arXiv:2307.09288", needs=("margin",)),
    _reward_spec("label_smoothing", label_smoothing_loss,
                 "Mitchell 2023, 'A note on DPO with noisy preferences'"),
    _reward_spec("reward_centering", reward_centering_loss,
                 "Eisenstein et al. 2023, arXiv:2312.09244"),
    _reward_spec("regression", regression_loss, "Wang et al. 2024 (ArmoRM), "
                 "arXiv:2406.12845", needs=("chosen_ratings", "rejected_ratings")),
    _reward_spec("helpsteer2", helpsteer2_loss, "Wang et al. 2024 (HelpSteer2-Preference), "
                 "arXiv:2410.01257"),
    _reward_spec("general_preference", general_preference_loss,
                 "Zhang et al. 2025 (GPM), arXiv:2410.02197", takes="embeddings"),
    _reward_spec("pluralistic", pluralistic_loss, "Chen et al. 2024 (PAL), arXiv:2406.08469"),
]

#: every reward loss by its canonical name
REWARD_LOSSES: dict[str, RewardLoss] = {spec.name: spec for spec in _SPECS}

#: other names accepted by :func:`get_reward_loss`
REWARD_ALIASES: dict[str, str] = {"gpm": "general_preference", "pal": "pluralistic"}


def get_reward_loss(name: str) -> RewardLoss:
    """Look a loss up by name or alias; the error lists the known names."""
    key = REWARD_ALIASES.get(name, name)
    try:
        return REWARD_LOSSES[key]
    except KeyError:
        raise ValueError(
            f"unknown reward loss {name!r}; choose one of {sorted(REWARD_LOSSES)} (aliases: "
            f"{sorted(REWARD_ALIASES)})"
        ) from None
