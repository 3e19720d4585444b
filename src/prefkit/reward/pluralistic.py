"""Pluralistic reward model (PAL-A style): shared prototypes, per-user mixtures.

Chen, Chen, Rege & Vinayak, "PAL: Pluralistic Alignment Framework for Learning from
Heterogeneous Preferences" (arXiv:2406.08469).

One Bradley-Terry reward cannot serve users who disagree (one group wants long answers, the
other short ones: a single reward averages them to a coin flip). PAL's ideal-point model
(its "PAL-A") keeps what users share and learns only a few numbers per user::

    z(y)   = f(e_y)                           shared map of a backbone embedding, R^d -> R^d'
    p_k                                       K shared prototype ideal points in R^d'
    w_u    = softmax(theta_u)                 user u's mixture weights on the simplex
    a_u    = sum_k w_uk p_k                   user u's ideal point
    r_u(y) = -||z(y) - a_u||^2                ("distance", the ideal-point reward)
           =  <z(y), a_u>                     ("dot", a linear variant)
    P_u(y1 > y2) = sigmoid(r_u(y1) - r_u(y2))  Bradley-Terry on each user's comparisons

``f``, the prototypes and every ``theta_u`` are learnt jointly (:func:`fit_pluralistic`).
A new user is fitted from a few comparisons by learning only ``theta_u`` with ``f`` and the
prototypes frozen (:func:`adapt_new_user`): ``K`` numbers, so ten comparisons are enough.

Differences from the released code, all choices of ours: the squared distance (PAL's "dist"
uses the distance itself), no learned logit scale (the scale of ``f`` plays that role),
user logits initialised at small random values from the caller's generator, and a small L2
prior on ``theta`` when adapting a new user so that separable few-shot data stay finite.
With ``K = 1`` (or one user) the model is a single Bradley-Terry reward on ``z``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike, NDArray
from torch import Tensor, nn

from prefkit.losses import LossOutput
from prefkit.reward.general import (
    EmbeddingFitConfig,
    as_float_tensor,
    make_map,
    train_pairwise,
)
from prefkit.reward.losses import get_reward_loss
from prefkit.runs import renamed_keyword_args

__all__ = [
    "PALConfig",
    "PluralisticRewardModel",
    "adapt_new_user",
    "fit_pluralistic",
    "simulate_length_groups",
]


@dataclass(frozen=True)
class PALConfig:
    """Shape of a :class:`PluralisticRewardModel`.

    Attributes:
        dim: ``d'``, the size of the preference space.
        n_prototypes: ``K``, the number of shared prototype ideal points.
        hidden: width of the MLP hidden layer of ``f``; 0 for a linear map.
        score: ``"distance"`` (``-||z - a_u||^2``) or ``"dot"`` (``<z, a_u>``).
    """

    dim: int = 16
    n_prototypes: int = 2
    hidden: int = 0
    score: Literal["distance", "dot"] = "distance"

    def __post_init__(self) -> None:
        if self.dim < 1 or self.n_prototypes < 1:
            raise ValueError("dim and n_prototypes must be >= 1")
        if self.score not in ("distance", "dot"):
            raise ValueError(f"score must be 'distance' or 'dot', got {self.score!r}")


class PluralisticRewardModel(nn.Module):
    """Per-user rewards ``r_u(y)`` from shared prototypes and user mixture weights.

    Args:
        in_dim: size of the response embeddings.
        n_users: number of known users (ids ``0..n_users-1``).
        config: :class:`PALConfig`.
        generator: draws the initial weights, prototypes and user logits.

    >>> g = torch.Generator().manual_seed(0)
    >>> m = PluralisticRewardModel(8, n_users=3, generator=g)
    >>> m.user_weights(torch.tensor([0, 2])).sum(-1).tolist()
    [1.0, 1.0]
    """

    def __init__(
        self,
        in_dim: int,
        n_users: int,
        config: PALConfig = PALConfig(),
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.in_dim = in_dim
        k, d = config.n_prototypes, config.dim
        self.f = make_map(in_dim, config.hidden, d, generator)
        self.prototypes = nn.Parameter(torch.randn(k, d, generator=generator) / float(np.sqrt(d)))
        self.user_logits = nn.Parameter(0.01 * torch.randn(n_users, k, generator=generator))

    @property
    def n_users(self) -> int:
        """Number of known users (rows of ``user_logits``)."""
        return int(self.user_logits.shape[0])

    def user_weights(self, users: Tensor) -> Tensor:
        """``w_u = softmax(theta_u)``, shape ``(n, K)``, of user ids ``(n,)``."""
        return self.user_logits[users].softmax(-1)

    def ideal_points(self, users: Tensor) -> Tensor:
        """``a_u = sum_k w_uk p_k``, shape ``(n, d')``."""
        return self.user_weights(users) @ self.prototypes

    def _score(self, z: Tensor, a: Tensor) -> Tensor:
        if self.config.score == "dot":
            return (z * a).sum(-1)
        return -((z - a) ** 2).sum(-1)

    def reward(self, emb: Tensor, users: Tensor) -> Tensor:
        """``r_u(y)`` of responses ``(n, d)`` for users ``(n,)``: shape ``(n,)``."""
        return self._score(self.f(emb), self.ideal_points(users))

    def forward(self, chosen: Tensor, rejected: Tensor, users: Tensor | None) -> Tensor:
        """Logits ``r_u(chosen) - r_u(rejected)``, shape ``(n,)``."""
        if users is None:
            raise ValueError("a pluralistic model needs the user id of every comparison")
        a = self.ideal_points(users)  # (n, d')
        return self._score(self.f(chosen), a) - self._score(self.f(rejected), a)

    def pair_loss(self, chosen: Tensor, rejected: Tensor, users: Tensor | None, *,
                  label_smoothing: float = 0.0) -> LossOutput:
        """The ``pluralistic`` loss of :data:`~prefkit.reward.losses.REWARD_LOSSES` on these
        comparisons (what :func:`fit_pluralistic` minimises): Bradley-Terry on each user's
        rewards ``r_u(chosen)``, ``r_u(rejected)``."""
        if users is None:
            raise ValueError("a pluralistic model needs the user id of every comparison")
        a = self.ideal_points(users)  # (n, d')
        return get_reward_loss("pluralistic")(
            self._score(self.f(chosen), a), self._score(self.f(rejected), a),
            label_smoothing=label_smoothing)

    def add_users(self, logits: Tensor) -> Tensor:
        """Append users with mixture logits ``(m, K)``; returns their new ids ``(m,)``."""
        logits = logits.detach().to(self.user_logits)
        if logits.ndim != 2 or logits.shape[1] != self.config.n_prototypes:
            raise ValueError(f"logits must have shape (m, {self.config.n_prototypes})")
        start = self.n_users
        self.user_logits = nn.Parameter(torch.cat([self.user_logits.detach(), logits]))
        return torch.arange(start, start + logits.shape[0])


def fit_pluralistic(
    chosen: ArrayLike | Tensor,
    rejected: ArrayLike | Tensor,
    users: ArrayLike | Tensor,
    *,
    n_users: int | None = None,
    model_config: PALConfig = PALConfig(),
    config: EmbeddingFitConfig = EmbeddingFitConfig(),  # noqa: B008 (frozen)
    generator: torch.Generator | None = None,
) -> tuple[PluralisticRewardModel, list[float]]:
    """Learn ``f``, the prototypes and every user's weights from users' comparisons.

    Args:
        chosen, rejected: response embeddings ``(n, d)``; user ``users[i]`` preferred
            ``chosen[i]`` over ``rejected[i]``.
        users: integer user ids ``(n,)`` in ``0..n_users-1``.
        n_users: number of users (default ``max(users) + 1``).
        model_config: :class:`PALConfig`.
        config: optimisation (:class:`EmbeddingFitConfig`); the loop is
            :func:`prefkit.reward.general.train_pairwise`.
        generator: seeds the initial values and the minibatch order.

    Returns:
        The trained model (eval mode) and the per-step training loss.
    """
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    x_c = as_float_tensor(chosen)
    u = torch.as_tensor(users).long()
    if u.numel() and int(u.min()) < 0:
        raise ValueError("user ids must be >= 0")
    m = int(u.max()) + 1 if n_users is None else n_users
    if u.numel() and int(u.max()) >= m:
        raise ValueError(f"user id {int(u.max())} is out of range for n_users={m}")
    model = PluralisticRewardModel(x_c.shape[1], m, model_config, generator=g).to(x_c.dtype)
    history = train_pairwise(model, x_c, rejected, context=u, config=config, generator=g)
    return model, history


@renamed_keyword_args(lr="learning_rate")
def adapt_new_user(
    model: PluralisticRewardModel,
    chosen: ArrayLike | Tensor,
    rejected: ArrayLike | Tensor,
    *,
    steps: int = 200,
    learning_rate: float = 0.1,
    prior: float = 1e-2,
) -> tuple[int, list[float]]:
    """Fit a new user's mixture logits ``theta`` from a few comparisons, all else frozen.

    Minimises ``mean_i -log sigmoid(r(chosen_i) - r(rejected_i)) + prior * ||theta||^2``
    over ``theta`` only (full batch, Adam, starting from the uniform mixture ``theta = 0``),
    then appends the user to ``model``. Deterministic: no randomness is involved.

    Returns:
        The new user's id and the per-step loss.
    """
    x_c = as_float_tensor(chosen).to(model.user_logits.dtype)
    x_r = as_float_tensor(rejected).to(x_c.dtype)
    if x_c.shape[0] == 0 or x_r.shape != x_c.shape:
        raise ValueError(f"need n > 0 pairs of the same shape; got {x_c.shape}, {x_r.shape}")
    with torch.no_grad():  # everything but theta is frozen: compute it once
        z_c, z_r = model.f(x_c), model.f(x_r)  # (n, d')
        protos = model.prototypes.detach()  # (K, d')
    theta = torch.zeros(model.config.n_prototypes, dtype=x_c.dtype, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=learning_rate)
    history: list[float] = []
    for _ in range(steps):
        a = theta.softmax(-1) @ protos  # (d',)
        fit = get_reward_loss("pluralistic")(model._score(z_c, a), model._score(z_r, a))
        loss = fit.reduce() + prior * (theta**2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    new_id = int(model.add_users(theta.detach()[None])[0])
    return new_id, history


def simulate_length_groups(
    n_users_per_group: int,
    n_pairs_per_user: int,
    *,
    rng: np.random.Generator,
    noise_dims: int = 6,
    flip: float = 0.05,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64], NDArray[np.int64]]:
    """Two-group data like PAL's semi-synthetic tests: users of group 0 prefer the longer
    response, users of group 1 the shorter one.

    Each response is ``[length, noise_1..noise_m]`` with every entry standard normal (the
    length is a standardised length; the rest carry nothing). User ``u`` belongs to group
    ``u % 2``; each of their comparisons is between two fresh responses and follows their
    group's rule, flipped with probability ``flip`` (annotator noise).

    Returns:
        ``chosen``, ``rejected`` ``(n, 1 + noise_dims)``, ``users`` ``(n,)`` and
        ``group`` ``(n_users,)``, with ``n = 2 * n_users_per_group * n_pairs_per_user``.
    """
    n_users = 2 * n_users_per_group
    users = np.repeat(np.arange(n_users), n_pairs_per_user)
    group = np.arange(n_users) % 2
    n, d = users.size, 1 + noise_dims
    xa, xb = rng.standard_normal((n, d)), rng.standard_normal((n, d))
    a_wins = (xa[:, 0] > xb[:, 0]) == (group[users] == 0)
    a_wins ^= rng.random(n) < flip
    chosen = np.where(a_wins[:, None], xa, xb).astype(np.float32)
    rejected = np.where(a_wins[:, None], xb, xa).astype(np.float32)
    return chosen, rejected, users.astype(np.int64), group.astype(np.int64)
