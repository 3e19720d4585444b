"""The one damped-Newton driver (prefkit.rank._newton.newton) and the objectives it is fed:
pair rows (dense and sparse Hessians) and Plackett-Luce rankings, under one convergence
rule and one line search."""

from __future__ import annotations

import numpy as np
import pytest

from prefkit.choice.pairwise import get_link
from prefkit.choice.plackett_luce import ranking_design, sample_plackett_luce
from prefkit.data.records import ItemIndex, PairwiseVotes
from prefkit.rank import ConvergenceError
from prefkit.rank._design import build_rows
from prefkit.rank._newton import Objective, PairObjective, newton
from prefkit.rank._sparse import SparseHessian
from prefkit.rank.plackett_luce import RankingObjective


class Quadratic(Objective):
    """``1/2 (x - a)^T A (x - a)`` with ``A`` singular along the scores' all-ones
    direction (as a likelihood of score differences is), weight ``w``."""

    def __init__(self, A: np.ndarray, a: np.ndarray, n: int, prior_var: float | None = None,
                 w: float = 1.0) -> None:
        self.A, self.a, self.n_scores, self.prior_var, self.weight = A, a, n, prior_var, w

    def evaluate(self, theta):  # type: ignore[no-untyped-def]
        d = theta - self.a
        f = 0.5 * float(d @ self.A @ d)
        if self.prior_var is not None:
            f += float(theta[: self.n_scores] @ theta[: self.n_scores]) / (2 * self.prior_var)
        return f, None

    def derivatives(self, theta, state, *, sparse=False):  # type: ignore[no-untyped-def]
        g, H = self.A @ (theta - self.a), self.A.copy()
        if self.prior_var is not None:
            g[: self.n_scores] += theta[: self.n_scores] / self.prior_var
            H[np.diag_indices(self.n_scores)] += 1 / self.prior_var
        return g, H


def _laplacian_quadratic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    W = rng.uniform(0.1, 1.0, (n, n))
    W = W + W.T
    np.fill_diagonal(W, 0.0)
    return np.diag(W.sum(1)) - W, rng.normal(size=n)


def test_driver_on_any_objective_centres_or_uses_the_prior() -> None:
    A, a = _laplacian_quadratic(6, seed=0)
    res = newton(Quadratic(A, a, 6), np.full(6, 3.0))
    np.testing.assert_allclose(res.theta, a - a.mean(), atol=1e-12)  # the centred minimiser
    assert res.n_iter == 1 and res.grad_norm <= 1e-10  # a quadratic: one full step
    res = newton(Quadratic(A, a, 6, prior_var=2.0), np.zeros(6))
    np.testing.assert_allclose(res.theta, np.linalg.solve(A + np.eye(6) / 2.0, A @ a), atol=1e-12)
    with pytest.raises(ValueError, match="solver"):
        newton(Quadratic(A, a, 6), np.zeros(6), solver="lu")  # type: ignore[arg-type]


def test_convergence_rule_scales_with_the_weight() -> None:
    """Converged when max |gradient| <= tol x total weight, tested before each step."""
    A, a = _laplacian_quadratic(5, seed=1)
    x0 = a - a.mean() + 1e-6 * np.array([1.0, -1.0, 0.0, 0.0, 0.0])
    g0 = float(np.abs(A @ (x0 - a)).max())
    assert newton(Quadratic(A, a, 5, w=2 * g0 / 1e-10), x0).n_iter == 0  # already within
    assert newton(Quadratic(A, a, 5, w=1.0), x0).n_iter == 1
    # after max_iter steps: within 10x the tolerance is accepted, beyond it an error
    with pytest.raises(ConvergenceError, match="did not converge in 0"):
        newton(Quadratic(A, a, 5, w=g0 / 1e-8), x0, max_iter=0)
    assert newton(Quadratic(A, a, 5, w=g0 / 5e-10), x0, max_iter=0).n_iter == 0


def _votes(n: int, m: int, seed: int) -> PairwiseVotes:
    rng = np.random.default_rng(seed)
    s = rng.normal(size=n)
    a = rng.integers(0, n, m)
    b = (a + rng.integers(1, n, m)) % n
    out = np.where(rng.random(m) < 0.15, 2, np.where(rng.random(m) < 1 / (1 + np.exp(s[b] - s[a])), 0, 1))
    return PairwiseVotes(ItemIndex(tuple(f"m{k}" for k in range(n))), a, b, out,
                         rng.uniform(0.5, 2.0, m))


@pytest.mark.parametrize("link", ["bradley_terry", "thurstone", "davidson", "rao_kupper"])
@pytest.mark.parametrize("prior", [None, 0.7])
def test_pair_objective_sparse_hessian_is_the_dense_one(link: str, prior: float | None) -> None:
    rows = build_rows(_votes(40, 600, seed=2), ties="davidson" if link in ("davidson", "rao_kupper") else "half")
    obj = PairObjective(rows, get_link(link), prior)
    theta = obj.start(np.random.default_rng(3).normal(size=obj.n_params))
    f, g, H = obj.at(theta)
    fs, gs, Hs = obj.at(theta, sparse=True)
    assert isinstance(Hs, SparseHessian) and f == fs
    np.testing.assert_array_equal(g, gs)
    np.testing.assert_allclose(Hs.toarray(), H, rtol=1e-13, atol=1e-12)
    # one driver, both steps: the same optimum, stopped by the same rule
    d = newton(obj, obj.start(), tol=1e-12)
    s = newton(obj, obj.start(), solver="sparse", tol=1e-12)
    np.testing.assert_allclose(s.theta, d.theta, atol=1e-9)
    assert "cg_iter" in s.info and d.info == {}


def test_plackett_luce_objective_in_the_same_driver() -> None:
    rng = np.random.default_rng(4)
    n, r, k = 8, 400, 4
    sets = np.argsort(rng.random((r, n)), axis=1)[:, :k]
    ranked = sample_plackett_luce(rng.normal(size=n), sets, rng)
    design = ranking_design(ranked.ravel(), np.tile(np.arange(k), r), np.arange(r + 1) * k, n_items=n)
    obj = RankingObjective(design)
    res = newton(obj, np.zeros(n))
    assert abs(res.theta.sum()) < 1e-12 and res.grad_norm <= 1e-10 * r
    # the rule is the pair fits': max_iter steps short of it is a ConvergenceError
    with pytest.raises(ConvergenceError, match="did not converge in 1 "):
        newton(obj, np.zeros(n), max_iter=1)
    with pytest.raises(ValueError, match="dense Hessian only"):
        newton(obj, np.zeros(n), solver="sparse")
    pri = newton(RankingObjective(design, prior_var=0.5), np.zeros(n))
    np.testing.assert_allclose(obj.at(pri.theta)[1] + pri.theta / 0.5, 0.0, atol=1e-10 * r)
