"""Diagnostics for pairwise data before (and after) a leaderboard is trusted.

* **Connectivity** of the comparison graph (:func:`~prefkit.rank.connectivity`): items in
  different components share no scale; items outside the largest strongly connected
  component have no maximum-likelihood rating.
* **Coverage**: votes per item and per compared pair.
* **Intransitivity** (:func:`intransitivity`): the number of cyclic triads
  ``i > j > k > i`` in the majority-preference tournament over the pairs that met
  (Kendall & Babington Smith 1940), against the number a Bradley-Terry model fitted to
  the same data predicts. Bradley-Terry is transitive in expectation, but sampling noise
  alone makes some majorities cyclic; only an excess over the prediction is evidence of
  intransitive preferences (e.g. rock-paper-scissors between models).
* **Influence** (:func:`influence`): refit leaving each annotator (or prompt) out, and
  report the largest rating change and the rank changes it causes, which flags
  annotators whose votes alone move the leaderboard (spam, adversarial or very prolific
  voters). The refits are batched and warm-started like the bootstrap's.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from prefkit.choice.pairwise import get_link
from prefkit.data.records import ItemIndex, PairCounts, PairwiseVotes
from prefkit.rank._bootstrap import (
    Fit,
    chunk_size,
    cluster_reweight,
    design,
    refit,
    tie_convention,
)
from prefkit.rank._design import PairRows
from prefkit.rank.bradley_terry import (
    AUTO_PRIOR_VARIANCE,
    ProvisionalWarning,
    _link_name,
    fit_rows,
)
from prefkit.rank.connectivity import Connectivity, connectivity
from prefkit.rank.leaderboard import ELO_SCALE
from prefkit.runs import plural

__all__ = ["Diagnostics", "Influence", "Intransitivity", "diagnose", "influence", "intransitivity"]

Array = NDArray[np.float64]
Data = PairwiseVotes | PairCounts


# -- helpers ------------------------------------------------------------------------------
def _pairs(data: Data) -> tuple[ItemIndex, NDArray[np.int64], NDArray[np.int64], Array]:
    """One row per compared pair ``i < j``: raw counts (i wins, j wins, ties)."""
    soft = isinstance(data, PairwiseVotes) and data.soft is not None
    d = design(data, ties="half" if soft else "davidson")
    rows, n = d.rows, d.rows.n_items
    lo, hi = np.minimum(rows.i, rows.j), np.maximum(rows.i, rows.j)
    swap = rows.i > rows.j
    raw = d.raw.copy()
    raw[swap, 0], raw[swap, 1] = d.raw[swap, 1], d.raw[swap, 0]
    uniq, inv = np.unique(lo * n + hi, return_inverse=True)
    counts: Array = np.stack([np.bincount(inv, raw[:, c], uniq.size) for c in range(3)], 1)
    return rows.items, (uniq // n).astype(np.int64), (uniq % n).astype(np.int64), counts


def _cycles(A: NDArray) -> NDArray:
    """Directed 3-cycles of (a stack of) 0/1 or probability matrices: ``tr(A^3) / 3``."""
    return np.einsum("...ij,...ji->...", A @ A, A) / 3.0


# -- intransitivity -----------------------------------------------------------------------
@dataclass(frozen=True)
class Intransitivity:
    """Cyclic triads of the majority tournament, observed and predicted.

    ``expected`` sums, over every triad of compared pairs, the Bradley-Terry probability
    that its majorities form a cycle, ``P_ij P_jk P_ki + P_ji P_kj P_ik`` with
    ``P_ij = P(Binomial(m_ij, p_ij) > m_ij / 2)``, ``m_ij`` the (rounded) decisive votes of
    the pair and ``p_ij = sigmoid(s_i - s_j)`` from a fit to the decisive votes; in matrix
    form ``tr(P^3) / 3``. ``p_value`` is ``P(simulated >= observed)`` over data simulated
    from that fit (with the same votes per pair), when a generator was given.
    """

    cyclic_triads: int
    decided_triads: int  # triads whose three pairs each have a strict majority
    expected: float
    p_value: float | None = None
    simulations: int = 0

    @property
    def ratio(self) -> float:
        """Observed over predicted cyclic triads."""
        if self.expected > 0:
            return self.cyclic_triads / self.expected
        return float("inf") if self.cyclic_triads else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {"cyclic_triads": self.cyclic_triads, "decided_triads": self.decided_triads,
                "expected": self.expected, "ratio": self.ratio, "p_value": self.p_value,
                "simulations": self.simulations}


def intransitivity(
    data: Data, *, rng: np.random.Generator | None = None, simulations: int = 200
) -> Intransitivity:
    """Cyclic triads in the majority tournament versus the Bradley-Terry prediction.

    The data must be connected (see :func:`diagnose`, which uses the largest component).

    Example:
        >>> from prefkit.data import PairwiseVotes
        >>> v = PairwiseVotes.from_names(["r", "p", "s"] * 3, ["s", "r", "p"] * 3,
        ...                              ["a", "a", "a", "a", "a", "a", "b", "b", "b"])
        >>> intransitivity(v).cyclic_triads
        1
    """
    items, i, j, c = _pairs(data)
    n = len(items)
    wi, wj = c[:, 0], c[:, 1]
    A = np.zeros((n, n))
    A[i, j] = wi > wj
    A[j, i] = wj > wi
    U = A + A.T
    observed = int(np.rint(_cycles(A)))
    decided = int(np.rint(np.trace(U @ U @ U) / 6.0))
    # Bradley-Terry fit to the decisive votes
    rows = PairRows(items, i, j, tie_convention(c, "ignore"), np.zeros((i.size, 0)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProvisionalWarning)
        try:
            theta = fit_rows(rows, ties="ignore")[0]
        except ValueError:
            # the decisive votes alone may leave items unconnected (an item that only
            # drew): the prior keeps the prediction defined for them
            theta = fit_rows(rows, ties="ignore", prior=AUTO_PRIOR_VARIANCE, check=False)[0]
    from scipy.stats import binom  # ~0.8 s to import: only when intransitivity is asked for

    p = 1.0 / (1.0 + np.exp(-(theta[i] - theta[j])))
    m = np.rint(wi + wj).astype(np.int64)
    P = np.zeros((n, n))
    P[i, j] = binom.sf(m // 2, m, p)  # P(W > m/2)
    P[j, i] = binom.cdf((m + 1) // 2 - 1, m, p)  # P(W < m/2)
    expected = float(_cycles(P))
    p_value = None
    if rng is not None and simulations > 0:
        sims = np.empty(simulations)
        step = max(1, 4_000_000 // max(n * n, 1))
        for a in range(0, simulations, step):
            b = min(simulations, a + step) - a
            W = rng.binomial(m, p, size=(b, m.size))
            S = np.zeros((b, n, n))
            S[:, i, j] = 2 * W > m
            S[:, j, i] = 2 * W < m
            sims[a : a + b] = _cycles(S)
        p_value = float((1 + np.sum(sims >= observed - 1e-9)) / (1 + simulations))
    return Intransitivity(observed, decided, expected, p_value, simulations if p_value is not None else 0)


# -- influence ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Influence:
    """Leave-one-annotator (or prompt) out refits.

    Attributes:
        by: ``"annotator"`` or ``"prompt"``.
        names: the clusters.
        n_votes: total vote weight per cluster.
        max_elo_change: ``max_i |r_i^(-g) - r_i|`` in Elo points (ratings relative to the
            mean item) when cluster ``g`` is left out.
        items_reranked: number of items whose rank changes.
        max_rank_change: the largest rank move of any item.
        identifiable: False where leaving ``g`` out leaves some item without a
            maximum-likelihood rating (it only won, only lost, or had only ``g``'s votes);
            that refit used the ``N(0, 1)`` prior.
    """

    by: str
    names: tuple[str, ...]
    n_votes: Array
    max_elo_change: Array
    items_reranked: NDArray[np.int64]
    max_rank_change: NDArray[np.int64]
    identifiable: NDArray[np.bool_]

    def top(self, k: int = 10) -> list[dict[str, Any]]:
        """The ``k`` most influential clusters, largest rating change first."""
        order = np.argsort(-self.max_elo_change, kind="stable")[:k]
        return [{self.by: self.names[g], "votes": float(self.n_votes[g]),
                 "max_elo_change": float(self.max_elo_change[g]),
                 "items_reranked": int(self.items_reranked[g]),
                 "max_rank_change": int(self.max_rank_change[g]),
                 "identifiable": bool(self.identifiable[g])} for g in order]


def _ranks(scores: Array) -> NDArray[np.int64]:
    """Ranks of each row of ``scores`` (``(B, n)``), 1 = best, ties by index."""
    order = np.argsort(-scores, axis=-1, kind="stable")
    r = np.empty_like(order)
    np.put_along_axis(r, order, np.arange(1, scores.shape[-1] + 1)[None, :], axis=-1)
    return r


def influence(
    data: PairwiseVotes,
    *,
    by: Literal["annotator", "prompt"] = "annotator",
    ties: Literal["half", "ignore", "davidson", "rao_kupper"] = "half",
    model: Literal["bradley_terry", "thurstone"] = "bradley_terry",
) -> Influence:
    """Refit without each annotator (or prompt) in turn; see :class:`Influence`.

    The ``G`` refits reweight the per-(cluster, pair) counts by ``1 - e_g`` and run as one
    batch warm-started at the full fit, so ~100 annotators cost about as much as a
    100-round bootstrap.
    """
    d = design(data, ties=ties, cluster=by)
    assert d.Q is not None
    rows, n, G = d.rows, d.rows.n_items, len(d.group_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProvisionalWarning)
        theta, prior_var, H, _ = fit_rows(rows, model=model, ties=ties)
    assert H is not None
    fit = Fit(get_link(_link_name(model, ties)), theta, prior_var, H)
    base = theta[:n] - theta[:n].mean()
    scores = np.empty((G, n))
    with_prior = np.zeros(G, bool)
    step = chunk_size(len(rows.i))
    for a in range(0, G, step):
        g = np.arange(a, min(G, a + step))
        W = np.ones((g.size, G))
        W[np.arange(g.size), g] = 0.0
        raw = cluster_reweight(d, W)
        r = refit(rows, fit, tie_convention(raw, ties, inplace=True), model=model,
                  ties=ties, auto_prior=AUTO_PRIOR_VARIANCE)
        scores[g] = r.theta[:, :n] - r.theta[:, :n].mean(axis=1, keepdims=True)
        with_prior[g] = r.with_prior
    change = ELO_SCALE * np.abs(scores - base).max(axis=1)
    moved = np.abs(_ranks(scores) - _ranks(base[None, :]))
    votes = np.asarray(d.Q.sum(axis=1)).ravel()
    return Influence(by, tuple(str(g) for g in d.group_names), votes, change, (moved > 0).sum(axis=1),
                     moved.max(axis=1), ~with_prior)


# -- all together -------------------------------------------------------------------------
def _summary(x: Array) -> dict[str, float]:
    if x.size == 0:
        return {"min": 0.0, "median": 0.0, "max": 0.0}
    return {"min": float(x.min()), "median": float(np.median(x)), "max": float(x.max())}


@dataclass(frozen=True)
class Diagnostics:
    """What :func:`diagnose` found; ``to_dict()`` is JSON-ready, ``describe()`` is text."""

    items: ItemIndex
    n_votes: float
    connectivity: Connectivity
    votes_per_item: Array
    votes_per_pair: Array  # over compared pairs
    intransitivity: Intransitivity | None
    influence: Influence | None
    notes: tuple[str, ...] = ()

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def pairs_compared(self) -> int:
        return int(self.votes_per_pair.size)

    def to_dict(self) -> dict[str, Any]:
        n = self.n_items
        conn = self.connectivity
        return {
            "n_items": n,
            "n_votes": self.n_votes,
            "pairs_compared": self.pairs_compared,
            "pairs_possible": n * (n - 1) // 2,
            "connectivity": {
                "n_components": conn.n_components,
                "components": [list(c) for c in conn.components],
                "strongly_connected": conn.strongly_connected,
                "provisional": [self.items.names[k] for k in np.flatnonzero(conn.provisional)],
            },
            "votes_per_item": _summary(self.votes_per_item),
            "votes_per_pair": _summary(self.votes_per_pair),
            "intransitivity": None if self.intransitivity is None else self.intransitivity.to_dict(),
            "influence": None if self.influence is None else {
                "by": self.influence.by, "top": self.influence.top(10)},
            "notes": list(self.notes),
        }

    def describe(self) -> str:
        d = self.to_dict()
        vi, vp = d["votes_per_item"], d["votes_per_pair"]
        lines = [
            (f"{plural(d['n_items'], 'item')}, {_count(d['n_votes'])} "
             f"vote{'' if d['n_votes'] == 1 else 's'}, "
             f"{d['pairs_compared']:,} of {d['pairs_possible']:,} "
             f"pair{'' if d['pairs_possible'] == 1 else 's'} compared"),
            self.connectivity.describe()
            + ("" if self.connectivity.strongly_connected
               else f"; {plural(len(d['connectivity']['provisional']), 'item')} only won or "
                    "only lost"),
            f"votes per item: min {_count(vi['min'])}, median {_count(vi['median'])}, "
            f"max {_count(vi['max'])}",
            f"votes per pair: min {_count(vp['min'])}, median {_count(vp['median'])}, "
            f"max {_count(vp['max'])}",
        ]
        it = self.intransitivity
        if it is not None:
            pv = "" if it.p_value is None else f", p = {it.p_value:.3g}"
            lines.append(
                f"intransitivity: {it.cyclic_triads:,} cyclic of {it.decided_triads:,} decided triads; "
                f"Bradley-Terry predicts {it.expected:.1f} (ratio {it.ratio:.2f}{pv})"
            )
        inf = self.influence
        if inf is not None and len(inf.names):
            t = inf.top(3)
            parts = ", ".join(
                f"{r[inf.by]} ({_count(r['votes'])} vote{'' if r['votes'] == 1 else 's'}): "
                f"{r['max_elo_change']:.1f} Elo, "
                f"{plural(r['items_reranked'], 'item')} re-ranked"
                + ("" if r["identifiable"] else ", leaves items unidentified")
                for r in t
            )
            lines.append(f"most influential {inf.by}s: {parts}")
        lines += [f"note: {s}" for s in self.notes]
        return "\n".join(lines)


def diagnose(
    data: Data,
    *,
    ties: Literal["half", "ignore", "davidson", "rao_kupper"] = "half",
    influence_by: Literal["annotator", "prompt"] | None = "annotator",
    rng: np.random.Generator | None = None,
    simulations: int = 200,
) -> Diagnostics:
    """Connectivity, coverage, intransitivity and annotator influence of pairwise data.

    Intransitivity and influence need a fit, so on a disconnected comparison graph they
    are computed on the largest component (and a note says so). Influence is computed
    when the votes carry the ``influence_by`` column; ``rng`` adds a simulated p-value to
    the intransitivity check.

    Example:
        >>> from prefkit.data import PairwiseVotes
        >>> v = PairwiseVotes.from_names(["a", "b", "c", "x"], ["b", "c", "a", "y"],
        ...                              ["a", "a", "b", "a"])
        >>> diagnose(v).connectivity.n_components
        2
    """
    items, i, j, c = _pairs(data)
    n = len(items)
    total = c.sum(axis=1)
    conn = connectivity(items, i, j, c)
    per_item = (np.bincount(i, total, n) + np.bincount(j, total, n)).astype(np.float64)
    notes: list[str] = []
    sub = data
    if conn.n_components > 1:
        sub = data.restrict(sorted(conn.components[0]))
        notes.append(f"intransitivity and influence use the largest component only "
                     f"({len(conn.components[0])} of {n} items)")
    intr = None
    if len(sub.items) >= 3:
        intr = intransitivity(sub, rng=rng, simulations=simulations)
    infl = None
    if isinstance(sub, PairwiseVotes) and influence_by is not None:
        if getattr(sub, influence_by) is not None:
            infl = influence(sub, by=influence_by, ties=ties)
        else:
            notes.append(f"no per-vote {influence_by!r} column: influence not computed")
    return Diagnostics(items, float(total.sum()), conn, per_item, total[total > 0], intr, infl,
                       tuple(notes))


def _count(x: float) -> str:
    """A count of (possibly weighted) votes as people read it: '1,670,250', '12.5'."""
    return f"{round(x):,}" if float(x).is_integer() else f"{x:,.2f}".rstrip("0").rstrip(".")
