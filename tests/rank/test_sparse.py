"""The sparse Newton path (prefkit.rank._sparse): the same fits as the dense path, the same
ratings as choix, and no n x n array on large graphs."""

from __future__ import annotations

import time
import tracemalloc
import warnings

import numpy as np
import pytest

from prefkit.data import ItemIndex, PairwiseVotes
from prefkit.data.records import aggregate
from prefkit.rank import (
    ConvergenceError,
    DisconnectedGraphError,
    ELO_SCALE,
    ProvisionalWarning,
    fit_bradley_terry,
    fit_thurstone,
)
from prefkit.rank import bradley_terry as bt
from prefkit.rank._design import build_rows
from prefkit.rank._sparse import SPARSE_MIN_ITEMS, Pattern, pcg
from prefkit.rank.bradley_terry import fit_rows


def _elo_diff(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float(np.abs(ELO_SCALE * (a - b)).max())


def sparse_votes(n: int, m: int, *, seed: int = 0, ties: float = 0.2, weights: bool = True,
                 style: bool = False, near: int = 4, far: float = 0.3) -> PairwiseVotes:
    """``m`` votes on a sparse graph: each vote pairs an item with one of its ``near``
    ring neighbours, or (with probability ``far``) a random item; strengths N(0, 0.7^2)."""
    rng = np.random.default_rng(seed)
    s = 0.7 * rng.normal(size=n)
    a = rng.integers(0, n, m)
    step = np.where(rng.random(m) < far, rng.integers(1, n, m), rng.integers(1, near + 1, m))
    b = (a + step) % n
    z = s[a] - s[b]
    feats = {}
    if style:
        la, lb = rng.gamma(4.0, 100.0, m), rng.gamma(4.0, 100.0, m)
        z = z + 0.8 * (la - lb) / (la + lb + 1.0)
        feats = {"length": (la, lb)}
    u = rng.random(m)
    out = np.where(u < ties / 2, 2, np.where(u < ties, 3, np.where(rng.random(m) < 1 / (1 + np.exp(-z)), 0, 1)))
    w = rng.uniform(0.5, 2.0, m) if weights else None
    return PairwiseVotes(ItemIndex(tuple(f"m{k:05d}" for k in range(n))), a, b, out, w,
                         features=feats)


def _both(votes, **kw):
    d = fit_bradley_terry(votes, solver="dense", **kw)
    s = fit_bradley_terry(votes, solver="sparse", **kw)
    assert d.info["solver"] == "dense" and s.info["solver"] == "sparse"
    return d, s


@pytest.mark.parametrize("ties", ["half", "ignore", "davidson", "rao_kupper"])
@pytest.mark.parametrize("prior", [None, 2.0])
def test_sparse_equals_dense(ties: str, prior: float | None) -> None:
    votes = sparse_votes(400, 8000, seed=1)
    d, s = _both(votes, ties=ties, prior=prior, tol=1e-12)
    assert _elo_diff(d.scores, s.scores) < 1e-6
    assert s.tie_parameter.keys() == d.tie_parameter.keys()
    for k, v in d.tie_parameter.items():
        assert s.tie_parameter[k] == pytest.approx(v, rel=1e-8)
    # the default tolerance: both stop at max|gradient| <= 1e-10 x the total weight
    d, s = _both(votes, ties=ties, prior=prior)
    assert _elo_diff(d.scores, s.scores) < 1e-3
    assert s.covariance is not None  # 400 items: "auto" keeps the covariance
    np.testing.assert_allclose(s.covariance, d.covariance, atol=1e-8)


def test_sparse_equals_dense_from_counts_and_unweighted() -> None:
    votes = sparse_votes(300, 5000, seed=2, weights=False, ties=0.0)
    counts = aggregate(votes)
    d, s = _both(counts, tol=1e-12)
    assert _elo_diff(d.scores, s.scores) < 1e-6
    assert _elo_diff(s.scores, fit_bradley_terry(votes, solver="sparse", tol=1e-12).scores) < 1e-6


@pytest.mark.parametrize("ties", ["half", "davidson"])
def test_sparse_style(ties: str) -> None:
    votes = sparse_votes(250, 6000, seed=3, style=True)
    d, s = _both(votes, ties=ties, style=["length"], tol=1e-12)
    assert _elo_diff(d.scores, s.scores) < 1e-6
    assert s.coefficients["length"] == pytest.approx(d.coefficients["length"], abs=1e-9)
    assert s.coefficients["length"] > 0.1  # standardised: 0.8 x std of the feature
    # without the dense covariance the standard error comes from the sparse Schur complement
    s2 = fit_bradley_terry(votes, ties=ties, style=["length"], solver="sparse", covariance=False)
    assert s2.covariance is None and "covariance" in s2.info
    assert s2.info["coefficient_se"]["length"] == pytest.approx(
        d.info["coefficient_se"]["length"], rel=1e-6)


def test_sparse_thurstone_and_mm() -> None:
    votes = sparse_votes(300, 6000, seed=4)
    d = fit_thurstone(votes, solver="dense")
    s = fit_thurstone(votes, solver="sparse")
    assert s.info["solver"] == "sparse" and _elo_diff(d.scores, s.scores) < 1e-3
    mm = fit_bradley_terry(votes, method="mm", solver="sparse", covariance=False)
    nw = fit_bradley_terry(votes, solver="sparse", covariance=False)
    assert mm.covariance is None and _elo_diff(mm.scores, nw.scores) < 1e-3


def test_fit_rows_hessian_matches_dense() -> None:
    """The bootstrap reads the dense Hessian from fit_rows: the sparse path assembles
    the same matrix at its optimum (and none with hessian=False)."""
    rows = build_rows(sparse_votes(200, 4000, seed=5), ties="davidson")
    td, _, Hd, _ = fit_rows(rows, ties="davidson", solver="dense", tol=1e-12)
    ts, _, Hs, info = fit_rows(rows, ties="davidson", solver="sparse", tol=1e-12)
    assert info["solver"] == "sparse" and info["cg_iter"] > 0
    np.testing.assert_allclose(ts, td, atol=1e-8)
    np.testing.assert_allclose(Hs, Hd, rtol=1e-7, atol=1e-7)
    assert fit_rows(rows, ties="davidson", solver="sparse", hessian=False)[2] is None


def test_auto_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    votes = sparse_votes(120, 2000, seed=6)
    assert fit_bradley_terry(votes).info["solver"] == "dense"  # 120 <= SPARSE_MIN_ITEMS
    assert SPARSE_MIN_ITEMS >= 500
    monkeypatch.setattr(bt, "SPARSE_MIN_ITEMS", 100)
    monkeypatch.setattr(bt, "DENSE_COVARIANCE_MAX_ITEMS", 100)
    lb = fit_bradley_terry(votes)
    assert lb.info["solver"] == "sparse" and lb.covariance is None
    assert "covariance=True" in lb.info["covariance"]
    full = fit_bradley_terry(votes, covariance=True)
    assert full.info["solver"] == "sparse" and full.covariance is not None
    ref = fit_bradley_terry(votes, solver="dense", covariance=True)
    np.testing.assert_allclose(full.covariance, ref.covariance, atol=1e-8)
    assert fit_bradley_terry(votes, solver="dense", covariance=False).covariance is None
    with pytest.raises(ValueError, match="solver"):
        fit_bradley_terry(votes, solver="cholesky")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="covariance"):
        fit_bradley_terry(votes, covariance="yes")  # type: ignore[arg-type]


def test_sparse_anchor_and_provisional() -> None:
    """prior='auto' when some item only won: the same prior, flags and ratings."""
    votes = sparse_votes(200, 3000, seed=7, ties=0.0)
    a, b, out = votes.a.copy(), votes.b.copy(), votes.outcome.copy()
    out[a == 0] = 0  # item 0 wins all
    out[b == 0] = 1
    v = PairwiseVotes(votes.items, a, b, out, votes.weight)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ProvisionalWarning)
        d, s = _both(v, anchor=("m00001", 1200.0))
    assert s.info["prior_variance"] == 1.0 and bool(s.provisional[0])
    np.testing.assert_array_equal(s.provisional, d.provisional)
    np.testing.assert_allclose(s.ratings, d.ratings, atol=1e-3)
    assert s.rating("m00001") == pytest.approx(1200.0)
    with pytest.raises(ValueError, match="do not exist"):
        fit_bradley_terry(v, solver="sparse", prior=None)


def test_sparse_disconnected_is_refused() -> None:
    v1 = sparse_votes(100, 1500, seed=8)
    a = np.concatenate([v1.a, v1.a + 100])
    b = np.concatenate([v1.b, v1.b + 100])
    out = np.concatenate([v1.outcome, v1.outcome])
    v = PairwiseVotes(ItemIndex(tuple(f"x{k}" for k in range(200))), a, b, out)
    with pytest.raises(DisconnectedGraphError):
        fit_bradley_terry(v, solver="sparse")


def test_sparse_agrees_with_choix() -> None:
    choix = pytest.importorskip("choix")
    votes = sparse_votes(300, 9000, seed=9, ties=0.0, weights=False)
    w = np.where(votes.outcome == 0, votes.a, votes.b)
    lo = np.where(votes.outcome == 0, votes.b, votes.a)
    ref = choix.ilsr_pairwise(votes.n_items, list(zip(w.tolist(), lo.tolist())), tol=1e-10)
    lb = fit_bradley_terry(votes, solver="sparse", prior=None)
    assert lb.info["solver"] == "sparse"
    assert _elo_diff(lb.scores, ref) < 1e-4  # 3.5e-6 here


def test_large_chain_plus_random_graph_is_sparse() -> None:
    """20,000 items: the dense Hessian alone would be 3.2 GB; the fit stays within a few
    dozen MB of traced allocations and a few seconds."""
    n = 20_000
    rng = np.random.default_rng(10)
    s = rng.normal(size=n)
    chain = np.arange(n - 1)
    ra = rng.integers(0, n, 10 * n)
    rb = (ra + rng.integers(1, n, 10 * n)) % n
    a = np.concatenate([chain, chain, ra])
    b = np.concatenate([chain + 1, chain + 1, rb])
    m = a.size
    out = np.where(rng.random(m) < 1 / (1 + np.exp(s[b] - s[a])), 0, 1)
    # each chain pair gets one win each way: the win graph is strongly connected
    out[: n - 1], out[n - 1 : 2 * (n - 1)] = 0, 1
    votes = PairwiseVotes(ItemIndex(tuple(f"i{k}" for k in range(n))), a, b, out)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        lb = fit_bradley_terry(votes)  # solver and covariance "auto"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - t0
    assert lb.info["solver"] == "sparse" and lb.covariance is None
    assert peak < 150e6, f"peak traced allocation {peak / 1e6:.0f} MB"
    assert seconds < 60
    assert np.all(np.isfinite(lb.scores)) and abs(lb.scores.mean()) < 1e-9
    assert np.corrcoef(lb.scores, s)[0, 1] > 0.8


def test_pattern_and_pcg() -> None:
    """The Laplacian from duplicated, reversed and self pairs; CG on an SPD system."""
    i = np.array([0, 1, 2, 1, 3, 3])
    j = np.array([1, 0, 3, 2, 3, 0])
    d2 = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    L = Pattern(i, j, 4).laplacian(d2, 0.5).toarray()
    ref = np.zeros((4, 4))
    for a, b, w in zip(i, j, d2):
        if a != b:
            u = np.zeros(4)
            u[a], u[b] = 1, -1
            ref += w * np.outer(u, u)
    np.testing.assert_allclose(L, ref + 0.5 * np.eye(4))
    x, it = pcg(lambda v: L @ v, np.arange(4.0), np.diag(L), rtol=1e-12, maxiter=100)
    np.testing.assert_allclose(L @ x, np.arange(4.0), atol=1e-9)
    assert 1 <= it <= 4


def test_sparse_convergence_error() -> None:
    votes = sparse_votes(150, 3000, seed=11)
    with pytest.raises(ConvergenceError):
        fit_bradley_terry(votes, solver="sparse", max_iter=1)


def _chain_votes(n: int, seed: int) -> PairwiseVotes:
    """Six votes between each pair of neighbours on a chain (one win each way, so the
    MLE exists): the worst conditioning for CG (``kappa ~ n^2``)."""
    rng = np.random.default_rng(seed)
    s = np.cumsum(rng.normal(0.0, 0.1, n))
    a = np.repeat(np.arange(n - 1), 6)
    b = a + 1
    out = np.where(rng.random(a.size) < 1 / (1 + np.exp(s[b] - s[a])), 0, 1)
    out[::6], out[1::6] = 0, 1
    return PairwiseVotes(ItemIndex(tuple(f"c{k}" for k in range(n))), a, b, out)


def test_thin_graph_switches_to_sparse_lu() -> None:
    """A chain: CG stalls, the fit switches to sparse LU steps and still matches the
    dense path; 20,000 chained items take about a second."""
    votes = _chain_votes(800, seed=12)
    d, s = _both(votes, covariance=False, tol=1e-12)
    assert s.info.get("lu_steps", 0) > 0
    assert _elo_diff(d.scores, s.scores) < 1e-5
    t0 = time.perf_counter()
    big = fit_bradley_terry(_chain_votes(20_000, seed=13))
    assert big.info["solver"] == "sparse" and big.info["lu_steps"] > 0
    assert time.perf_counter() - t0 < 30
    # with a prior (no pinning) as well
    withp = fit_bradley_terry(_chain_votes(800, seed=14), prior=1e4, solver="sparse")
    dense = fit_bradley_terry(_chain_votes(800, seed=14), prior=1e4, solver="dense")
    assert withp.info["lu_steps"] > 0 and _elo_diff(withp.scores, dense.scores) < 1e-4


@pytest.mark.parametrize("ties", ["half", "rao_kupper"])
def test_hessian_covariance_later(monkeypatch: pytest.MonkeyPatch, ties: str) -> None:
    """A fit without the covariance gets it afterwards, equal to the one computed in the fit."""
    votes = sparse_votes(150, 3000, seed=15, style=True)
    full = fit_bradley_terry(votes, ties=ties, style=["length"], covariance=True)
    lean = fit_bradley_terry(votes, ties=ties, style=["length"], covariance=False, solver="sparse")
    assert lean.covariance is None
    np.testing.assert_allclose(bt.hessian_covariance(lean, votes), full.covariance, atol=1e-8)
    pri = fit_bradley_terry(votes, ties=ties, prior=0.5, covariance=False)
    ref = fit_bradley_terry(votes, ties=ties, prior=0.5, covariance=True)
    np.testing.assert_allclose(bt.hessian_covariance(pri, votes), ref.covariance, atol=1e-8)


def test_hessian_intervals_and_matchmaking_above_the_dense_covariance_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # a large fit leaves the dense covariance out; Hessian intervals compute it on demand
    # from the data (they need it), and matchmaking asks for it
    from prefkit.rank.matchmaking import MatchState
    from prefkit.rank.uncertainty import with_intervals

    votes = sparse_votes(120, 2000, seed=7)
    monkeypatch.setattr(bt, "SPARSE_MIN_ITEMS", 100)
    monkeypatch.setattr(bt, "DENSE_COVARIANCE_MAX_ITEMS", 100)
    lb = fit_bradley_terry(votes)
    assert lb.covariance is None
    with pytest.raises(ValueError, match="covariance=True"):
        with_intervals(lb, method="hessian")  # without the data: says why and what to do
    got = with_intervals(lb, votes, method="hessian")
    ref = with_intervals(fit_bradley_terry(votes, covariance=True), method="hessian")
    np.testing.assert_allclose(got.intervals, ref.intervals, atol=1e-6)
    assert MatchState.fit(votes, prior=None).covariance is not None
