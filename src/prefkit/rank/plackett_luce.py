"""Plackett-Luce ratings from rankings and K-wise votes, by maximum likelihood (or MAP).

    P(x_1 > ... > x_K) = prod_t exp(s_{x_t}) / sum_{u >= t} exp(s_{x_u})

The likelihood, its tie convention (Breslow) and the meaning of an unordered tail (top-k
rankings, top-1 choices among K) are in :mod:`prefkit.choice.plackett_luce`. Over two
items without ties this is Bradley-Terry, so the fit equals ``fit_bradley_terry(...,
ties="ignore")`` on K = 2 data, and the leaderboard's pairwise model is Bradley-Terry.

Existence: the MLE exists when the *win digraph* of the implied pairwise outcomes (an edge
from every chosen item to every item it was chosen over) is strongly connected (Hunter
2004, section 5). The same connectivity check as for Bradley-Terry runs on that graph:
a disconnected comparison graph is an error; items that were never or always chosen get
a Gaussian prior under ``prior="auto"`` and are flagged provisional.

References: Plackett (1975); Hunter (2004) "MM algorithms for generalized Bradley-Terry
models"; Maystre & Grossglauser (2015) for I-LSR, the algorithm of the reference
implementation (choix) the tests compare with.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

from prefkit.choice.plackett_luce import (
    RankingDesign,
    RankingTerms,
    plackett_luce_terms,
    ranking_design,
)
from prefkit.data.records import Rankings
from prefkit.rank._newton import ConvergenceError, Objective, newton
from prefkit.rank.bradley_terry import _covariance
from prefkit.rank.connectivity import resolve_prior
from prefkit.rank.leaderboard import ELO_BASE, Leaderboard

__all__ = ["fit_plackett_luce", "implied_pair_counts"]

Array = NDArray[np.float64]


def implied_pair_counts(
    design: RankingDesign,
) -> tuple[NDArray[np.int64], NDArray[np.int64], Array]:
    """The pairwise outcomes a set of rankings implies, aggregated per pair ``i < j``:
    ``counts[:, 0]`` weight of "i ahead of j", ``[:, 1]`` "j ahead of i", ``[:, 2]``
    ties (items of one level, both chosen against each other); pairs inside an unordered
    tail are not compared. Vectorised per ranking length."""
    n = design.n_items
    keys, cols, wts = [], [], []
    for b in design.blocks:
        k = b.members.shape[1]
        q1, q2 = np.triu_indices(k, 1)
        m1, m2 = b.members[:, q1], b.members[:, q2]
        same = b.start[:, q1] == b.start[:, q2]
        both = b.active[:, q1] & b.active[:, q2]
        keep = ~same | both
        # q1 is ahead of q2 unless they share a level (sorted best first)
        lo, hi = np.minimum(m1, m2), np.maximum(m1, m2)
        col = np.where(same, 2, np.where(m1 < m2, 0, 1))
        w = np.broadcast_to(b.weight[:, None], m1.shape)
        keys.append((lo * n + hi)[keep])
        cols.append(col[keep])
        wts.append(w[keep])
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3))
    key, col, w = np.concatenate(keys), np.concatenate(cols), np.concatenate(wts)
    uniq, inv = np.unique(key, return_inverse=True)
    counts = np.bincount(inv * 3 + col, w, 3 * uniq.size).reshape(-1, 3)
    return uniq // n, uniq % n, counts


class RankingObjective(Objective):
    """Plackett-Luce rankings for the Newton driver (:func:`prefkit.rank._newton.newton`):
    ``theta`` = the scores; the negative log-likelihood plus the prior, if any. The
    Hessian (dense) is assembled in the same pass over the rankings as the value: the line
    search nearly always accepts its first trial point, whose Hessian is then at hand."""

    def __init__(self, design: RankingDesign, prior_var: float | None = None) -> None:
        self.design, self.prior_var = design, prior_var
        self.n_scores = design.n_items
        self.weight = design.total_weight

    def evaluate(self, theta: Array) -> tuple[float, RankingTerms]:
        t = plackett_luce_terms(theta, self.design, hessian=True)
        f = float(t.nll.sum())
        if self.prior_var is not None:
            f += float(theta @ theta) / (2.0 * self.prior_var)
        return f, t

    def derivatives(self, theta: Array, state: RankingTerms, *, sparse: bool = False) -> tuple[Array, Array]:
        if sparse:
            raise ValueError("the Plackett-Luce objective has a dense Hessian only")
        g, H = state.gradient, state.hessian
        assert H is not None
        if self.prior_var is not None:
            g = g + theta / self.prior_var
            H = H.copy()
            H[np.diag_indices(theta.size)] += 1.0 / self.prior_var
        return g, H


def _mm(design: RankingDesign, init: Array, tol: float, max_iter: int) -> tuple[Array, int]:
    """Hunter's (2004) MM update for Plackett-Luce, in log form:
    ``s_i <- s_i + log(chosen_i / expected_i)``, with ``expected_i`` the model-expected
    number of times item i is chosen; converged when no score moves more than ``tol``."""
    s = init - init.mean()
    for it in range(1, max_iter + 1):
        t = plackett_luce_terms(s, design)
        new = s + np.log(t.chosen) - np.log(t.expected)
        new -= new.mean()
        if np.max(np.abs(new - s)) < tol:
            return new, it
        s = new
    raise ConvergenceError(f"MM did not converge in {max_iter} iterations; use method='newton'")


def fit_plackett_luce(
    rankings: Rankings,
    *,
    prior: float | Literal["auto"] | None = "auto",
    method: Literal["newton", "mm"] = "newton",
    init: NDArray[np.float64] | None = None,
    anchor: tuple[str, float] | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> Leaderboard:
    """Fit Plackett-Luce log-strengths to rankings, top-k rankings or K-wise choices.

    Args:
        rankings: :class:`Rankings` (ties share a level; ``unordered_tail`` marks an
            unranked last level, e.g. the losers of a top-1 choice among K).
        prior: ``None`` for the pure MLE (an error if it does not exist), a variance for a
            Gaussian prior ``N(0, prior)`` on log-strengths (MAP), or ``"auto"``: the MLE
            when it exists, else the prior with variance 1 and the affected items flagged
            ``provisional`` (with a :class:`ProvisionalWarning`).
        method: ``"newton"`` (analytic Hessian; default) or ``"mm"`` (Hunter's MM; MLE only).
        init: warm-start scores, shape ``(n_items,)``.
        anchor: ``(item, rating)`` to pin one item's Elo rating.
        tol: Newton stops when max |gradient| <= tol * total weight (the driver's rule,
            :mod:`prefkit.rank._newton`); MM when no score moves more than ``tol``.

    Returns:
        A :class:`Leaderboard` with mean-zero ``scores``, Elo-scale ``ratings`` (mean 1000
        unless anchored) and the inverse-Hessian covariance. Its pairwise model is
        ``"bradley_terry"`` (the two-item marginal of Plackett-Luce); ``info`` holds
        ``likelihood="plackett_luce"``, ``n_iter``, ``nll``.

    Example:
        >>> from prefkit.data import Rankings
        >>> r = Rankings.from_lists([["a", "b", "c"], ["a", "b", "c"], ["a", "c", "b"],
        ...                          ["b", "a", "c"], ["c", "b", "a"]])
        >>> lb = fit_plackett_luce(r)
        >>> [(row["item"], round(row["rating"], 1)) for row in lb.to_records()]
        [('a', 1097.9), ('b', 1013.2), ('c', 888.9)]
    """
    n = rankings.n_items
    design = ranking_design(
        rankings.members, rankings.levels, rankings.offsets, n_items=n,
        weight=rankings.weight, unordered_tail=rankings.unordered_tail,
    )
    i, j, counts = implied_pair_counts(design)
    prior_var, provisional, _ = resolve_prior(
        rankings.items, i, j, counts, prior,
        lopsided="were only ever chosen or never chosen", more_data="collect rankings that mix them")
    s0 = np.zeros(n) if init is None else np.asarray(init, np.float64).copy()
    if s0.shape != (n,):
        raise ValueError(f"init must have shape ({n},), got {s0.shape}")
    info: dict = {"likelihood": "plackett_luce"}
    if method == "mm":
        if prior_var is not None:
            raise ValueError("method='mm' fits the plain MLE without a prior; use 'newton'")
        s, it = _mm(design, s0, tol, max(max_iter, 10_000))
        f, _, H = RankingObjective(design).at(s)
    elif method == "newton":
        res = newton(RankingObjective(design, prior_var), s0, tol=tol, max_iter=max_iter)
        s, f, H, it = res.theta, res.nll, res.hessian, res.n_iter
    else:
        raise ValueError(f"method must be 'newton' or 'mm', got {method!r}")
    info.update(n_iter=it, nll=f)
    if prior_var is not None:
        s = s - s.mean()
        info["prior_variance"] = prior_var
    try:
        cov = _covariance(H, n, prior_var is None)
    except np.linalg.LinAlgError:
        cov = None
    assert rankings.weight is not None
    per_ranking = np.repeat(rankings.weight, np.diff(rankings.offsets))
    per_item = np.bincount(rankings.members, per_ranking, n)
    lb = Leaderboard(
        rankings.items,
        s,
        model="plackett_luce",
        ties="breslow",
        offset=ELO_BASE,
        covariance=cov,
        provisional=provisional,
        n_votes=per_item,
        info=info,
    )
    return lb.anchored(*anchor) if anchor is not None else lb
