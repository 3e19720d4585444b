"""Active matchmaking: which pair (or K-set) to show next so that the *ranking* becomes
certain with the fewest votes.

Belief. The Bradley-Terry scores are summarised by the Laplace approximation of their
posterior, ``s ~ N(m, C)``: ``m`` the fitted (ML or MAP) scores and ``C`` the inverse
Hessian (``Leaderboard.covariance``). For a pair ``(i, j)`` write ``u = e_i - e_j``,
``d_ij = m_i - m_j``, ``v_ij = u' C u = Var(s_i - s_j)`` and ``sigma_ij = sqrt(v_ij)``.

One vote. A vote between ``i`` and ``j`` carries Fisher information
``w_ij = p_ij (1 - p_ij)``, ``p_ij = sigmoid(d_ij)``, about ``s_i - s_j``. The Laplace
posterior after it has the rank-one-updated covariance (Sherman-Morrison)::

    C' = C - beta g g',    g = C u,    beta = w_ij / (1 + w_ij v_ij)

so the variance of *every* difference ``s_a - s_b`` falls, by
``Delta_ab(i, j) = beta (g_a - g_b)^2``: a vote on ``(i, j)`` also sharpens the pairs that
are linked to ``i`` and ``j`` through ``C``.

Criterion ``"information"`` (the default). A ranking is uncertain where the order of a
pair is uncertain, ``P(order of a, b wrong) = Phi(-|d_ab| / sigma_ab)``. A candidate is
scored by the first-order fall of the standard deviations of all score differences,
each weighted by how uncertain its order is::

    gain(i, j) = sum_{a<b} omega_ab Delta_ab(i, j) / (2 sigma_ab),
    omega_ab   = 2 Phi(-|d_ab| / sigma_ab)          (1 for a coin flip, -> 0 when settled)

With ``L`` the graph Laplacian of the weights ``omega_ab / (2 sigma_ab)`` and
``M = C L C`` the sum collapses to ``beta u' M u``, so all candidates are scored at once::

    gain(i, j) = w_ij (M_ii + M_jj - 2 M_ij) / (1 + w_ij v_ij)

(``O(n^3)`` once, then ``O(n^2)``; 129 items take about a millisecond). Weighting by
``sigma``-reduction rather than variance reduction makes the gain of an already sharp,
near-tied pair fade like ``sqrt(v)``, as the exact one-step value of information of a
pair's order does, instead of draining votes into true ties.

Criterion ``"uncertainty"`` keeps only the pair's own term,
``omega_ij Delta_ij(i, j) / (2 sigma_ij)``. It is the greedy, posterior form of Chatbot
Arena's active sampling (Chiang et al. 2024 sample pair ``a`` with probability
proportional to ``sqrt(S_a / n_a) - sqrt(S_a / (n_a + 1))``, the shrinkage of its
interval from one more vote), weighted toward unsettled orders. ``"random"`` draws pairs
uniformly (the Arena default).

Batches. Within a batch the weights ``omega`` are held fixed and ``C`` and ``M`` are
updated after every pick (``M' = M - beta (g h' + h g') + beta^2 (u' M u) g g'`` with
``h = M u``), so later picks see the information the earlier ones will bring and a
batch spreads over the pairs that matter; ``distinct=True`` also forbids repeating a
pair within a batch.

K-sets (``k > 2``, K-Sort Arena's K-wise comparisons) are built greedily: the best pair,
then repeatedly the item whose pairs with the current members add the most gain, each
committed by rank-one updates. A K-wise ranking is treated as its ``K (K - 1) / 2``
pairwise comparisons (full rank breaking), which overstates its information a little.

References: Chiang et al. (2024) "Chatbot Arena: an open platform for evaluating LLMs by
human preference", ICML (active sampling); Li et al. (2024/2025) "K-Sort Arena: efficient
and reliable benchmarking for generative models via K-wise human preferences", CVPR
(exploration-exploitation matchmaking, ``explore`` here is its exploration share);
Chaloner & Verdinelli (1995) "Bayesian experimental design: a review" (A-optimal design).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit, ndtr

from prefkit.data.records import PairCounts, PairwiseVotes
from prefkit.rank._design import PairRows, build_rows
from prefkit.rank.bradley_terry import fit_bradley_terry, fit_rows
from prefkit.rank.leaderboard import Leaderboard

__all__ = ["MatchState", "pair_gains", "propose_pairs", "STRATEGIES"]

Array = NDArray[np.float64]
Strategy = Literal["information", "uncertainty", "random"]
STRATEGIES = ("information", "uncertainty", "random")
#: Gains within this relative distance of the best are treated as tied (broken by rng).
TIE_RTOL = 1e-9


@dataclass(frozen=True)
class MatchState:
    """A Gaussian belief ``N(scores, covariance)`` over log-strengths (Laplace approx.)."""

    scores: Array  # (n,)
    covariance: Array  # (n, n)

    def __post_init__(self) -> None:
        m = np.asarray(self.scores, float)
        C = np.asarray(self.covariance, float)
        if m.ndim != 1 or C.shape != (m.size, m.size):
            raise ValueError(f"covariance must have shape ({m.size}, {m.size}), got {C.shape}")
        if m.size < 2:
            raise ValueError("matchmaking needs at least 2 items")
        if not (np.all(np.isfinite(m)) and np.all(np.isfinite(C))):
            raise ValueError("scores and covariance must be finite")
        object.__setattr__(self, "scores", m)
        object.__setattr__(self, "covariance", 0.5 * (C + C.T))

    @property
    def n_items(self) -> int:
        return int(self.scores.size)

    @classmethod
    def prior(cls, n_items: int, variance: float = 1.0) -> MatchState:
        """No votes yet: ``N(0, variance * I)``."""
        return cls(np.zeros(n_items), variance * np.eye(n_items))

    @classmethod
    def from_leaderboard(cls, lb: Leaderboard) -> MatchState:
        if lb.covariance is None:
            raise ValueError(
                "the leaderboard has no covariance (its Hessian was singular); refit with a "
                "prior, e.g. fit_bradley_terry(data, prior=1.0)"
            )
        return cls(lb.scores, lb.covariance)

    @classmethod
    def fit(
        cls,
        data: PairCounts | PairwiseVotes,
        *,
        prior: float | None = 1.0,
        init: Array | None = None,
    ) -> MatchState:
        """Fit Bradley-Terry (ties as half wins) and keep the Laplace posterior.

        With a prior variance the MAP fit needs no connected graph, so it works from the
        first vote; ``prior=None`` fits the MLE (an error while it does not exist).
        """
        if prior is None:
            return cls.from_leaderboard(fit_bradley_terry(data, prior="auto", init=init,
                                                          covariance=True))
        return _fit_rows(build_rows(data, ties="half"), prior=prior, init=init)


def _fit_rows(rows: PairRows, *, prior: float, init: Array | None = None) -> MatchState:
    """MAP Bradley-Terry on prepared rows, skipping the connectivity check (the prior
    identifies every score); the covariance is the inverse Hessian."""
    n = rows.n_items
    if len(rows.i) == 0:
        return MatchState.prior(n, prior)
    theta, _, H, _ = fit_rows(rows, prior=prior, init=init, check=False)
    assert H is not None
    return MatchState(theta[:n], np.linalg.inv(H)[:n, :n])


def _as_state(
    source: MatchState | Leaderboard | PairCounts | PairwiseVotes, prior: float | None
) -> MatchState:
    if isinstance(source, MatchState):
        return source
    if isinstance(source, Leaderboard):
        return MatchState.from_leaderboard(source)
    if isinstance(source, (PairCounts, PairwiseVotes)):
        return MatchState.fit(source, prior=prior)
    raise TypeError(
        f"propose_pairs takes a Leaderboard, a MatchState, PairCounts or PairwiseVotes, "
        f"not {type(source).__name__}"
    )


def _pair_terms(m: Array, C: Array) -> tuple[Array, Array, Array]:
    """``(w, v, omega)``, each ``(n, n)``: Fisher information of one vote, variance of the
    difference and order-uncertainty weight ``2 Phi(-|d| / sigma)``."""
    d = m[:, None] - m[None, :]
    dC = np.diag(C)
    v = np.clip(dC[:, None] + dC[None, :] - 2.0 * C, 1e-300, None)
    p = expit(d)
    w = p * (1.0 - p)
    omega = 2.0 * ndtr(-np.abs(d) / np.sqrt(v))
    return w, v, omega


def _laplacian(weights: Array) -> Array:
    W = weights.copy()
    np.fill_diagonal(W, 0.0)
    return np.diag(W.sum(1)) - W


def pair_gains(
    state: MatchState | Leaderboard,
    *,
    strategy: Strategy = "information",
) -> Array:
    """The ``(n, n)`` matrix of gains of one vote on each pair (see the module docstring);
    the diagonal is ``-inf``. ``"random"`` gives equal gains.

    >>> s = MatchState(np.array([0.0, 0.05, 3.0]), np.diag([0.5, 0.5, 0.01]))
    >>> g = pair_gains(s)
    >>> bool(g[0, 1] > g[0, 2] and g[0, 1] > g[1, 2])   # the close, uncertain pair
    True
    """
    st = _as_state(state, None)
    G = _Gains(st, strategy).matrix()
    np.fill_diagonal(G, -np.inf)
    return G


class _Gains:
    """Mutable working copy of the belief for one batch of proposals."""

    def __init__(self, st: MatchState, strategy: str) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        self.strategy = strategy
        self.C = st.covariance.copy()
        self.w, v, omega = _pair_terms(st.scores, self.C)
        self.lw = omega / (2.0 * np.sqrt(v))  # fixed within the batch
        self.M = self.C @ _laplacian(self.lw) @ self.C if strategy == "information" else None

    def v(self) -> Array:
        dC = np.diag(self.C)
        return np.clip(dC[:, None] + dC[None, :] - 2.0 * self.C, 0.0, None)

    def matrix(self) -> Array:
        n = self.C.shape[0]
        if self.strategy == "random":
            return np.ones((n, n))
        v = self.v()
        if self.strategy == "uncertainty":
            num = self.lw * v * v
        else:
            assert self.M is not None
            dM = np.diag(self.M)
            num = dM[:, None] + dM[None, :] - 2.0 * self.M
        return self.w * num / (1.0 + self.w * v)

    def row(self, a: int) -> Array:
        """Gains of the pairs ``(a, c)`` for every ``c``."""
        if self.strategy == "random":
            return np.ones(self.C.shape[0])
        C = self.C
        v = np.clip(C[a, a] + np.diag(C) - 2.0 * C[a], 0.0, None)
        if self.strategy == "uncertainty":
            num = self.lw[a] * v * v
        else:
            assert self.M is not None
            num = self.M[a, a] + np.diag(self.M) - 2.0 * self.M[a]
        return self.w[a] * num / (1.0 + self.w[a] * v)

    def commit(self, i: int, j: int) -> None:
        """Condition on one (expected) vote between ``i`` and ``j``."""
        if self.strategy == "random":
            return
        C = self.C
        g = C[:, i] - C[:, j]
        v = max(float(g[i] - g[j]), 0.0)
        beta = self.w[i, j] / (1.0 + self.w[i, j] * v)
        if self.M is not None:
            h = self.M[:, i] - self.M[:, j]
            uMu = float(h[i] - h[j])
            self.M -= beta * (np.outer(g, h) + np.outer(h, g)) - beta * beta * uMu * np.outer(g, g)
        self.C = C - beta * np.outer(g, g)


def _pick(G: Array, rng: np.random.Generator) -> int:
    """Flat index of the best entry; ties (within ``TIE_RTOL``) broken at random; -1 if no
    gain is finite (NaN counts as unusable)."""
    G = np.where(np.isfinite(G), G, -np.inf)
    best = float(G.max())
    if not np.isfinite(best):
        return -1
    cand = np.flatnonzero(G >= best - TIE_RTOL * max(abs(best), 1e-300))
    return int(cand[0] if cand.size == 1 else rng.choice(cand))


def propose_pairs(
    source: MatchState | Leaderboard | PairCounts | PairwiseVotes,
    *,
    n: int = 1,
    k: int = 2,
    rng: np.random.Generator,
    strategy: Strategy = "information",
    explore: float = 0.0,
    distinct: bool = True,
    eligible: NDArray[np.bool_] | None = None,
    prior: float | None = 1.0,
) -> NDArray[np.int64]:
    """Propose the next ``n`` comparisons: pairs (``k=2``) or K-sets (``k>2``, greedy).

    Args:
        source: the votes so far, as a fitted :class:`Leaderboard` (its ``covariance`` is
            used), a :class:`MatchState`, or raw :class:`PairCounts`/:class:`PairwiseVotes`
            (fitted here, MAP with a ``N(0, prior)`` prior; ``prior=None`` for the MLE).
        n: number of comparisons to propose; picks within the batch are chained by
            rank-one covariance updates (module docstring).
        k: items per comparison (2: pairs; >2: K-wise sets).
        rng: breaks ties among equally good candidates and drives ``explore``/random.
        strategy: ``"information"`` (all pairs, through the covariance), ``"uncertainty"``
            (each pair on its own) or ``"random"``.
        explore: probability that a comparison is drawn uniformly at random instead
            (exploration, as in K-Sort Arena's exploration-exploitation matchmaking).
        distinct: never propose the same pair twice in one batch (while pairs remain).
        eligible: optional ``(n_items,)`` mask of the items that may be proposed.

    Returns:
        ``(n, k)`` item ids; each row holds ``k`` different items, in increasing order
        (which side is shown first is the caller's coin flip).

    Example:
        >>> s = MatchState(np.array([0.0, 0.05, 3.0]), np.diag([0.5, 0.5, 0.01]))
        >>> propose_pairs(s, rng=np.random.default_rng(0)).tolist()
        [[0, 1]]
    """
    st = _as_state(source, prior)
    N = st.n_items
    ok = np.ones(N, bool) if eligible is None else np.asarray(eligible, bool)
    if ok.shape != (N,):
        raise ValueError(f"eligible must have shape ({N},), got {ok.shape}")
    if not 2 <= k <= int(ok.sum()):
        raise ValueError(f"k must lie in [2, {int(ok.sum())}] (eligible items), got {k}")
    if n < 0 or not 0.0 <= explore <= 1.0:
        raise ValueError("n must be >= 0 and explore in [0, 1]")
    gains = _Gains(st, strategy)
    allowed = ok[:, None] & ok[None, :]
    np.fill_diagonal(allowed, False)
    used = np.zeros((N, N), bool)
    out = np.empty((n, k), np.int64)
    for r in range(n):
        free = allowed & ~used if distinct else allowed
        if not free.any():  # every pair already proposed: start over
            used[:] = False
            free = allowed
        at_random = strategy == "random" or (explore > 0 and rng.random() < explore)
        if at_random:
            G = np.where(free, 1.0, -np.inf)
        else:
            G = np.where(free, gains.matrix(), -np.inf)
        flat = _pick(G, rng)
        if flat < 0:  # degenerate belief (no finite gain): fall back to a random pair
            flat = _pick(np.where(free, 1.0, -np.inf), rng)
        i, j = divmod(flat, N)
        members = [i, j]
        gains.commit(i, j)
        while len(members) < k:
            total = sum(gains.row(a) for a in members)
            total = np.where(ok, total, -np.inf)
            total[members] = -np.inf
            c = -1 if at_random else _pick(total, rng)
            if c < 0:
                c = _pick(np.where(np.isneginf(total), -np.inf, 1.0), rng)
            for a in members:
                gains.commit(a, c)
            members.append(c)
        for a in members:
            used[a, members] = used[members, a] = True
        out[r] = sorted(members)
    return out
