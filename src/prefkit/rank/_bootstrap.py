"""Resampling designs and batched refits: the engine behind the bootstrap, the sandwich
estimator and leave-one-cluster-out influence.

A :class:`Design` holds the fit rows plus two sparse maps into their *raw* counts
``(first wins, second wins, ties)`` (ties unsplit; the tie convention is applied after
reweighting, so fractional tie halves are never resampled):

* ``units`` (``Z``, shape ``(U, 3R)``): one unit per (row, outcome) cell of votes, with its
  number of votes ``unit_n`` and its weight per vote. Resampling votes with replacement is
  a multinomial draw of unit multiplicities, ``k ~ Multinomial(N, unit_n / N)``, and the
  reweighted raw counts are ``k @ Z``.
* ``clusters`` (``Q``, shape ``(G, 3R)``): the raw counts contributed by each annotator
  (or prompt); cluster weights ``w`` (a multinomial draw for the cluster bootstrap, or
  ``1 - e_g`` to leave cluster ``g`` out) give raw counts ``w @ Q``.

Refits are warm-started at the point estimate and batched over rounds with a chord
(simplified Newton) iteration, ``theta <- theta - g(theta) H0^-1``, which reuses the
point estimate's Hessian ``H0`` for every round: one ``(B, k) @ (k, k)`` product per
iteration instead of ``B`` factorisations. Its fixed point is the exact per-round MLE
(the gradient is driven to the same tolerance as :func:`~prefkit.rank._newton.newton`);
rounds that converge slowly, or whose MLE does not exist, are refitted one by one with
:func:`~prefkit.rank.bradley_terry.fit_rows`.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from prefkit.choice.pairwise import Link, expit
from prefkit.data.records import PairCounts, PairwiseVotes
from prefkit.rank._design import PairRows, build_rows, tie_convention
from prefkit.rank._newton import ConvergenceError

Array = NDArray[np.float64]

#: Largest number of (round x row) entries held at once while reweighting and refitting.
CHUNK_ENTRIES = 4_000_000
#: Chord iterations before a round is handed to the one-by-one Newton fallback.
CHORD_MAX_ITER = 60


@dataclass(frozen=True)
class Design:
    rows: PairRows  # fit rows, counts with the tie convention applied
    raw: Array  # (R, 3)
    ties: str
    Z: sp.csr_matrix  # (U, 3R): weight per vote of each unit
    unit_n: Array  # (U,) votes per unit
    Q: sp.csr_matrix | None = None  # (G, 3R): raw counts per cluster
    cluster: str | None = None
    group_names: tuple[str, ...] = ()

    @property
    def n_votes(self) -> float:
        return float(self.unit_n.sum())


def design(
    data: PairwiseVotes | PairCounts,
    *,
    ties: str = "half",
    style: Sequence[str] = (),
    style_transform: str = "lmarena",
    cluster: str | None = None,
) -> Design:
    """Fit rows plus the vote-level (and, with ``cluster``, cluster-level) maps."""
    soft = isinstance(data, PairwiseVotes) and data.soft is not None
    # "davidson" keeps the tie column unsplit: exactly the raw counts (a soft vote has no tie)
    raw_ties = "half" if soft else "davidson"
    tie_convention(np.zeros((1, 3)), ties)  # validate early
    base = build_rows(data, ties=raw_ties, style=style, style_transform=style_transform,
                      cluster=cluster)
    # multiplicities: the same rows built from unit-weight votes (counts are votes already)
    if isinstance(data, PairwiseVotes):
        ones = replace(data, weight=np.ones(len(data)))
        mult = build_rows(ones, ties=raw_ties, style=style, style_transform=style_transform,
                          cluster=cluster).counts
    else:
        mult = base.counts
    Rb = len(base.i)
    row_of: NDArray[np.int64]
    raw: Array
    if cluster is not None and base.n_features == 0 and not soft:
        # rows are per (cluster, pair): collapse them to one fit row per pair
        n = base.n_items
        uniq, row_of = np.unique(base.i * n + base.j, return_inverse=True)
        R = uniq.size
        raw = np.stack([np.bincount(row_of, base.counts[:, c], R) for c in range(3)], 1)
        rows = PairRows(base.items, uniq // n, uniq % n, tie_convention(raw, ties),
                        np.zeros((R, 0)))
    else:
        row_of, R, raw = np.arange(Rb), Rb, base.counts
        rows = replace(base, counts=tie_convention(raw, ties), group=None, group_names=())
    if soft:  # one unit per vote: both columns of its row move together
        u_idx, n_u = np.arange(Rb), np.ones(Rb)
        ur, uc = np.repeat(u_idx, 2), np.tile([0, 1], Rb)
        vals = base.counts[:, :2].ravel()
        Z = sp.csr_matrix((vals, (ur, 3 * row_of[ur] + uc)), shape=(Rb, 3 * R))
    else:
        r_idx, c_idx = np.nonzero(mult > 0)
        n_u = mult[r_idx, c_idx]
        per_vote = base.counts[r_idx, c_idx] / n_u
        U = r_idx.size
        Z = sp.csr_matrix((per_vote, (np.arange(U), 3 * row_of[r_idx] + c_idx)), shape=(U, 3 * R))
    Q = None
    if cluster is not None:
        assert base.group is not None
        G = len(base.group_names)
        rr, cc = np.nonzero(base.counts > 0)
        Q = sp.csr_matrix((base.counts[rr, cc], (base.group[rr], 3 * row_of[rr] + cc)),
                          shape=(G, 3 * R))
    return Design(rows, raw, ties, Z, n_u, Q, cluster, base.group_names)


# -- resampling ---------------------------------------------------------------------------
def multinomial(rng: np.random.Generator, n: int, p: Array, size: int) -> NDArray[np.int64]:
    """``size`` draws from ``Multinomial(n, p)``, exactly, as columns of a ``(len(p), size)``
    array; about twice as fast as ``rng.multinomial`` for many cells.

    Independent ``Poisson(n p_c)`` counts are, given their total ``T``, ``Multinomial(T, p)``.
    If ``T < n`` we add ``n - T`` independent categorical draws; if ``T > n`` we delete
    ``T - n`` of the ``T`` balls chosen uniformly without replacement (a uniform subset of
    i.i.d. categorical balls is again i.i.d. categorical). Either way the result is
    ``Multinomial(n, p)`` conditionally on ``T``, hence unconditionally.
    """
    p = np.asarray(p, float) / np.sum(p)
    C = p.size
    k = rng.poisson(n * p[:, None], size=(C, size))
    short = n - k.sum(axis=0)
    add = np.flatnonzero(short > 0)
    if add.size:
        draws = rng.choice(C, size=int(short[add].sum()), p=p)
        np.add.at(k.reshape(-1), draws * size + np.repeat(add, short[add]), 1)
    for b in np.flatnonzero(short < 0):
        gone = rng.choice(int(n - short[b]), size=int(-short[b]), replace=False)
        cells = np.searchsorted(np.cumsum(k[:, b]), gone, side="right")
        k[:, b] -= np.bincount(cells, minlength=C)
    return k


def vote_resample(d: Design, rng: np.random.Generator, size: int) -> Array:
    """Raw counts ``(R, 3, size)`` of ``size`` resamples of the votes (with replacement).

    With a non-integer number of votes ``N`` (fractional counts), ``round(N)`` draws are
    made and rescaled by ``N / round(N)`` so that the expected counts are unchanged. The
    rounds are drawn in two blocks from ``rng.spawn(2)`` on two threads (numpy's samplers
    release the GIL); the split does not depend on the machine, so results are
    reproducible from ``rng`` alone.
    """
    total = d.n_votes
    m = max(round(total), 1)
    factor = total / m
    U, width = d.Z.shape
    out = np.empty((width, size))
    counts = np.diff(d.Z.indptr)
    distinct = bool(np.all(counts == 1)) and np.unique(d.Z.indices).size == U
    if distinct:  # each raw cell gets one unit: a scatter, no sparse product
        out[:] = 0.0
        w = d.Z.data * factor

    def work(child: np.random.Generator, a: int, b: int) -> None:
        k = multinomial(child, m, d.unit_n, b - a)
        if distinct:
            out[d.Z.indices, a:b] = k * w[:, None]
        else:
            out[:, a:b] = np.asarray(d.Z.T @ (k * factor))

    try:
        children = rng.spawn(2) if size >= 64 else None
    except TypeError:  # a bit generator without a seed sequence cannot spawn
        children = None
    if children is None:
        work(rng, 0, size)
    else:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(work, children, [0, size // 2], [size // 2, size]))
    return out.reshape(-1, 3, size)


def cluster_reweight(d: Design, weights: Array) -> Array:
    """Raw counts ``(R, 3, B)`` with cluster ``g`` weighted by ``weights[b, g]``."""
    assert d.Q is not None
    w = np.asarray(weights, float)
    return np.asarray(d.Q.T @ w.T).reshape(-1, 3, w.shape[0])


# -- batched refit ------------------------------------------------------------------------
@dataclass(frozen=True)
class Fit:
    """A point estimate and what the refits need from it."""

    link: Link
    theta: Array
    prior_var: float | None
    hessian: Array


def incidence(rows: PairRows) -> sp.csr_matrix:
    """``(R, n)`` with +1 at ``i_r`` and -1 at ``j_r``: ``eta = inc @ s``."""
    R = len(rows.i)
    r = np.arange(R)
    return sp.csr_matrix(
        (np.r_[np.ones(R), -np.ones(R)], (np.r_[r, r], np.r_[rows.i, rows.j])),
        shape=(R, rows.n_items),
    )


def _unbounded(rows: PairRows, counts: Array) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Per item and round (counts ``(R, 3, B)``; results ``(B, n)``): ``up`` where the item
    took no loss (nor tie), ``down`` where it took no win (nor tie). Any of either means
    the round has no MLE (Hunter 2004; a necessary condition, checked cheaply): the
    item's log-strength would run off to +inf or -inf."""
    R, n = len(rows.i), rows.n_items
    r = np.arange(R)
    firstT = sp.csr_matrix((np.ones(R), (rows.i, r)), shape=(n, R))
    secondT = sp.csr_matrix((np.ones(R), (rows.j, r)), shape=(n, R))
    tie = counts[:, 2]
    took_first, took_second = counts[:, 0] + tie, counts[:, 1] + tie  # (R, B)
    wins = firstT @ took_first + secondT @ took_second  # (n, B)
    losses = firstT @ took_second + secondT @ took_first
    return (losses <= 0).T, (wins <= 0).T


def _chord(rows: PairRows, fit: Fit, counts: Array, tol: float) -> tuple[Array, NDArray[np.bool_]]:
    """Chord iterations for links without a tie parameter on counts ``(R, 3, B)``; returns
    thetas ``(k, B)`` and which rounds converged. Rounds are the last axis, so every
    product is a contiguous sparse-times-dense or dense-times-dense one."""
    n, p = rows.n_items, rows.n_features
    B = counts.shape[2]
    constrained = fit.prior_var is None
    Hs = fit.hessian.copy()
    if constrained:
        Hs[:n, :n] += 1.0
    A = np.linalg.inv(Hs)
    inc = incidence(rows)
    incT = inc.T.tocsr()
    XT = np.ascontiguousarray(rows.X.T)
    bt = fit.link.name == "bradley_terry"
    wi = np.ascontiguousarray(counts[:, 0])  # (R, B)
    tot = wi + counts[:, 1] if bt else None
    flat = None if bt else np.ascontiguousarray(counts.transpose(0, 2, 1)).reshape(-1, 3)
    theta = np.repeat(fit.theta[:, None], B, axis=1)  # (k, B)
    limit = tol * np.maximum(counts.sum(axis=(0, 1)), 1.0)
    live = np.ones(B, bool)  # still iterating
    done = np.zeros(B, bool)
    best = np.full(B, np.inf)
    stall = np.zeros(B, np.int64)
    for _ in range(CHORD_MAX_ITER):
        eta = np.asarray(inc @ theta[:n])  # (R, B)
        if p:
            eta += rows.X @ theta[n : n + p]
        if bt:  # d = (w_i + w_j) sigmoid(eta) - w_i, in place
            d = expit(eta, out=eta)
            d *= tot
            d -= wi
        else:
            d = fit.link.terms(eta.ravel(), flat, 0.0).d_eta.reshape(eta.shape)  # type: ignore[arg-type]
        g = np.empty_like(theta)
        g[:n] = np.asarray(incT @ d)
        if p:
            g[n:] = XT @ d
        if fit.prior_var is not None:
            g[:n] += theta[:n] / fit.prior_var
        gmax = np.abs(g).max(axis=0)
        conv = live & (gmax <= limit)
        done |= conv
        # a round that stops improving (or blows up) is left to the fallback
        improved = gmax < 0.9 * best
        best = np.minimum(best, gmax)
        stall = np.where(improved, 0, stall + 1)
        live &= ~conv & (stall < 4) & np.isfinite(gmax)
        if not live.any():
            break
        # numpy's own loop, not BLAS: at this size a multi-threaded GEMM costs more in
        # thread wake-ups (badly so on a busy machine) than it saves
        step = np.einsum("ij,jb->ib", A, g)
        step[:, ~live] = 0.0
        theta -= step
        if constrained:
            theta[:n] -= theta[:n].mean(axis=0)
    return theta, done


@dataclass(frozen=True)
class Refit:
    """Refitted rounds: ``theta`` ``(B, k)``; ``with_prior`` ``(B,)`` marks rounds without
    an MLE, fitted with the prior instead; ``up``/``down`` ``(B, n)`` mark the items whose
    MLE in that round would be +inf/-inf (only won / only lost)."""

    theta: Array
    with_prior: NDArray[np.bool_]
    up: NDArray[np.bool_]
    down: NDArray[np.bool_]


def refit(
    rows: PairRows,
    fit: Fit,
    counts: Array,
    *,
    model: str,
    ties: str,
    auto_prior: float,
    tol: float = 1e-10,
) -> Refit:
    """Refit ``counts`` (``(R, 3, B)``, tie convention applied) warm-started at ``fit``.

    A round whose MLE does not exist (some item only won or only lost) is fitted with a
    ``N(0, auto_prior)`` prior, as ``prior="auto"`` does for the point estimate, and
    flagged; with a prior in the point fit every round uses it and none is flagged.
    """
    from prefkit.rank.bradley_terry import fit_rows  # late import: avoids an import cycle

    B, n = counts.shape[2], rows.n_items
    if fit.prior_var is None:
        up, down = _unbounded(rows, counts)
    else:
        up = down = np.zeros((B, n), bool)
    estimable = np.asarray(~(up | down).any(axis=1), dtype=bool)
    thetas = np.repeat(fit.theta[:, None], B, axis=1)
    done = np.zeros(B, bool)
    if not fit.link.has_ties and estimable.any():
        if estimable.all():
            thetas, done = _chord(rows, fit, counts, tol)
        else:
            idx = np.flatnonzero(estimable)
            thetas[:, idx], done[idx] = _chord(rows, fit, counts[:, :, idx], tol)
    for b in np.flatnonzero(~done):
        prior_var = fit.prior_var if estimable[b] else auto_prior
        rb = rows.with_counts(np.ascontiguousarray(counts[:, :, b]))
        try:
            th = fit_rows(rb, model=model, ties=ties, prior=prior_var, init=fit.theta,
                          tol=tol, check=False)[0]
        except ConvergenceError:
            prior_var = auto_prior if prior_var is None else prior_var
            estimable[b] = False
            th = fit_rows(rb, model=model, ties=ties, prior=prior_var, init=fit.theta,
                          tol=tol, check=False)[0]
        thetas[:, b] = th
    return Refit(np.ascontiguousarray(thetas.T), ~estimable, up, down)


def chunk_size(n_rows: int) -> int:
    return max(1, CHUNK_ENTRIES // max(n_rows, 1))
