"""The damped-Newton driver of every rating fit, and the objectives it is fed.

Like choix's ``_opt`` (fed by ``PairwiseFcts`` / ``Top1Fcts``), one driver,
:func:`newton`, minimises any :class:`Objective`: an object that gives, at a point
``theta`` (item scores first, then any other parameters), the value of the negative
log-likelihood (plus a Gaussian prior on the scores, if any) and then its gradient and
Hessian, dense or sparse. The objectives are

* :class:`PairObjective` here: pair rows under a pairwise link (Bradley-Terry, Thurstone,
  Davidson, Rao-Kupper; weights, style covariates), ``theta = [scores (n), beta (p),
  tau]``. Its gradient and Hessian are assembled from per-cell derivatives of the link
  (``prefkit.choice.pairwise``) with ``bincount`` scatters, so one iteration costs
  O(rows + n^2) dense, and a 129-item, 1.67M-vote arena fit takes a few milliseconds once
  the votes are aggregated; or O(rows + pairs) with the score block as a sparse
  Laplacian (:mod:`prefkit.rank._sparse`).
* ``RankingObjective`` (:mod:`prefkit.rank.plackett_luce`): Plackett-Luce rankings.

The driver owns everything else, once for all of them:

* **Identification.** Without a prior the scores are identified by ``sum(scores) = 0``:
  the Newton system gets a rank-one term along the scores' all-ones direction (the
  optimum is the unconstrained MLE shifted to mean zero), and every step is re-centred.
  With a prior (``objective.prior_var``) the prior identifies them and nothing is added.
* **The step**, ``H step = g``: dense (LU, least squares if singular) or sparse (the
  objective's :class:`~prefkit.rank._sparse.SparseHessian` by preconditioned conjugate
  gradients, sparse LU on long thin graphs: :class:`~prefkit.rank._sparse.SparseSteps`).
  A step that is not a descent direction (possible where the objective is not convex,
  e.g. Rao-Kupper far from its optimum) is replaced by the diagonally scaled gradient.
* **The line search**: halve the step until the objective does not increase (up to a
  relative ``1e-12``); below a step length of ``1e-10`` the fit fails with
  :class:`ConvergenceError` (the likelihood may have no maximum).
* **The convergence rule**: converged when ``max |gradient| <= tol * max(W, 1)``, with
  ``W`` the objective's total data weight (votes, or ranking weights); tested at every
  iterate before a step, so ``n_iter`` counts the steps taken. After ``max_iter`` steps
  the last iterate is still accepted within ten times that tolerance; beyond it, a
  :class:`ConvergenceError`. Scaled by ``W``, the rule does not depend on how many votes
  there are (the gradient is a sum over them). Dense and sparse steps stop by the same
  rule, so they reach the same optimum (to what the tolerance allows on badly
  conditioned graphs).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from prefkit.choice.pairwise import CellTerms, Link
from prefkit.rank._design import PairRows
from prefkit.rank._sparse import Pattern, SparseHessian, SparseSteps

Array = NDArray[np.float64]
Hessian = Array | SparseHessian


class ConvergenceError(RuntimeError):
    """The optimiser did not reach the requested tolerance."""


class Objective(ABC):
    """What :func:`newton` minimises: the negative log-likelihood plus the prior.

    ``theta[:n_scores]`` are item scores (centred by the driver when ``prior_var`` is
    ``None``; otherwise ``prior_var`` is the variance of a Gaussian prior on them that the
    objective includes); ``weight`` is the total data weight (the tolerance's scale).
    """

    n_scores: int
    weight: float
    prior_var: float | None

    @abstractmethod
    def evaluate(self, theta: Array) -> tuple[float, Any]:
        """The value at ``theta``, and whatever :meth:`derivatives` needs there."""

    @abstractmethod
    def derivatives(self, theta: Array, state: Any, *, sparse: bool = False) -> tuple[Array, Hessian]:
        """Gradient and Hessian at ``theta`` (``state`` from :meth:`evaluate` there); the
        Hessian as a :class:`~prefkit.rank._sparse.SparseHessian` when ``sparse``."""

    def at(self, theta: Array, *, sparse: bool = False) -> tuple[float, Array, Hessian]:
        """Value, gradient and Hessian at ``theta``."""
        f, state = self.evaluate(theta)
        g, H = self.derivatives(theta, state, sparse=sparse)
        return f, g, H


@dataclass(frozen=True)
class NewtonResult:
    theta: Array
    nll: float
    hessian: Hessian  # of the data term plus prior (without the identifiability term)
    n_iter: int
    grad_norm: float
    info: dict = field(default_factory=dict)  # the step solver's counts (sparse: cg_iter, lu_steps)


class DenseSteps:
    """Newton steps by LU on the dense Hessian (+ the rank-one term when constrained)."""

    def __init__(self, n_scores: int, constrain: bool) -> None:
        self.n, self.constrain = n_scores, constrain

    def __call__(self, H: Array, g: Array, rel_grad: float) -> Array:
        if self.constrain:
            H = H.copy()
            H[: self.n, : self.n] += 1.0
        try:
            return np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            return np.linalg.lstsq(H, g, rcond=None)[0]

    def info(self) -> dict:
        return {}


def _gmax(g: Array) -> float:
    return float(np.abs(g).max()) if g.size else 0.0


def newton(
    objective: Objective,
    theta0: Array,
    *,
    solver: Literal["dense", "sparse"] = "dense",
    tol: float = 1e-10,
    max_iter: int = 100,
) -> NewtonResult:
    """Minimise ``objective`` by damped Newton from ``theta0`` (see the module docstring
    for the step, the line search and the convergence rule). Raises
    :class:`ConvergenceError` when the line search fails or ``max_iter`` steps do not
    reach the tolerance."""
    n = objective.n_scores
    constrain = objective.prior_var is None
    theta = np.array(theta0, dtype=np.float64)
    if constrain:
        theta[:n] -= theta[:n].mean()
    if solver not in ("dense", "sparse"):
        raise ValueError(f"solver must be 'dense' or 'sparse', got {solver!r}")
    sparse = solver == "sparse"
    steps = SparseSteps(n, constrain) if sparse else DenseSteps(n, constrain)
    scale = max(float(objective.weight), 1.0)
    f, state = objective.evaluate(theta)
    g, H = objective.derivatives(theta, state, sparse=sparse)
    for it in range(1, max_iter + 1):
        gmax = _gmax(g)
        if gmax <= tol * scale:
            return NewtonResult(theta, f, H, it - 1, gmax, steps.info())
        step = steps(H, g, gmax / scale)  # type: ignore[arg-type]
        if not float(step @ g) > 0.0:  # not a descent direction: scaled gradient instead
            step = g / np.maximum(np.abs(H.diagonal()), 1e-300)
        lam = 1.0
        while True:
            cand = theta - lam * step
            if constrain:
                cand[:n] -= cand[:n].mean()
            fc, sc = objective.evaluate(cand)
            if np.isfinite(fc) and fc <= f + 1e-12 * abs(f):
                break
            lam *= 0.5
            if lam < 1e-10:
                raise ConvergenceError(
                    f"line search failed at iteration {it} (max |gradient| {gmax:.3g}); the "
                    "likelihood may have no maximum: check connectivity or add a prior"
                )
        theta, f, state = cand, fc, sc
        g, H = objective.derivatives(theta, state, sparse=sparse)
    gmax = _gmax(g)
    if gmax <= 10 * tol * scale:
        return NewtonResult(theta, f, H, max_iter, gmax, steps.info())
    raise ConvergenceError(
        f"Newton did not converge in {max_iter} iterations (max |gradient| {gmax:.3g}); "
        "raise max_iter or add a prior"
    )


# -- pair rows under a pairwise link ---------------------------------------------------


def _split(theta: Array, n: int, p: int, has_tau: bool) -> tuple[Array, Array, float]:
    return theta[:n], theta[n : n + p], float(theta[n + p]) if has_tau else 0.0


def _eta(rows: PairRows, s: Array, beta: Array) -> Array:
    eta = s[rows.i] - s[rows.j]
    if beta.size:
        eta = eta + rows.X @ beta
    return eta


def objective(
    theta: Array, rows: PairRows, link: Link, prior_var: float | None
) -> tuple[float, CellTerms]:
    """Negative log-likelihood of pair rows (plus the prior) and the per-cell terms."""
    n, p = rows.n_items, rows.n_features
    s, beta, tau = _split(theta, n, p, link.has_ties)
    t = link.terms(_eta(rows, s, beta), rows.counts, tau)
    f = float(t.nll.sum())
    if prior_var is not None:
        f += float(s @ s) / (2.0 * prior_var)
    return f, t


def _gradient_border(
    theta: Array, rows: PairRows, link: Link, prior_var: float | None, t: CellTerms
) -> tuple[Array, Array, Array]:
    """The gradient, and the Hessian but for its score block: the border ``B`` (scores x
    the ``q`` style and tie parameters) and the corner ``C`` (``q x q``)."""
    n, p = rows.n_items, rows.n_features
    q = p + int(link.has_ties)
    i, j = rows.i, rows.j
    g = np.zeros(n + q)
    g[:n] = np.bincount(i, t.d_eta, n) - np.bincount(j, t.d_eta, n)
    B = np.zeros((n, q))
    C = np.zeros((q, q))
    if p:
        X = rows.X
        g[n : n + p] = X.T @ t.d_eta
        wX = X * t.d_eta2[:, None]
        for c in range(p):
            B[:, c] = np.bincount(i, wX[:, c], n) - np.bincount(j, wX[:, c], n)
        C[:p, :p] = X.T @ wX
    if link.has_ties:
        g[n + p] = t.d_tau.sum()
        C[p, p] = t.d_tau2.sum()
        B[:, p] = np.bincount(i, t.d_eta_tau, n) - np.bincount(j, t.d_eta_tau, n)
        if p:
            C[:p, p] = C[p, :p] = rows.X.T @ t.d_eta_tau
    if prior_var is not None:
        g[:n] += theta[:n] / prior_var
    return g, B, C


def gradient_hessian(
    theta: Array, rows: PairRows, link: Link, prior_var: float | None, t: CellTerms
) -> tuple[Array, Array]:
    """Gradient and dense Hessian of :func:`objective` (``t`` its terms at ``theta``)."""
    g, B, C = _gradient_border(theta, rows, link, prior_var, t)
    n, k = rows.n_items, g.size
    i, j, d2 = rows.i, rows.j, t.d_eta2
    H = np.empty((k, k))
    off = np.bincount(i * n + j, d2, n * n).reshape(n, n)
    Hss = -(off + off.T)
    Hss[np.diag_indices(n)] = np.bincount(i, d2, n) + np.bincount(j, d2, n)
    if prior_var is not None:
        Hss[np.diag_indices(n)] += 1.0 / prior_var
    H[:n, :n] = Hss
    H[:n, n:] = B
    H[n:, :n] = B.T
    H[n:, n:] = C
    return g, H


class PairObjective(Objective):
    """Pair rows under a pairwise link: :func:`objective` and its derivatives; the sparse
    Hessian keeps the score block as a Laplacian with one entry per compared pair."""

    def __init__(self, rows: PairRows, link: Link, prior_var: float | None = None) -> None:
        self.rows, self.link, self.prior_var = rows, link, prior_var
        self.n_scores = rows.n_items
        self.n_params = rows.n_items + rows.n_features + int(link.has_ties)
        self.weight = float(rows.counts.sum())
        self._pattern: Pattern | None = None

    def start(self, init: Array | None = None) -> Array:
        """Zeros (the link's initial tie parameter), overwritten by a warm start's prefix."""
        theta = np.zeros(self.n_params)
        if self.link.has_ties:
            theta[-1] = self.link.tau_init
        if init is not None:
            init = np.asarray(init, float)
            theta[: init.size] = init[: self.n_params]
        return theta

    def evaluate(self, theta: Array) -> tuple[float, CellTerms]:
        return objective(theta, self.rows, self.link, self.prior_var)

    def derivatives(self, theta: Array, state: CellTerms, *, sparse: bool = False) -> tuple[Array, Hessian]:
        if not sparse:
            return gradient_hessian(theta, self.rows, self.link, self.prior_var, state)
        rows = self.rows
        if self._pattern is None:
            self._pattern = Pattern(rows.i, rows.j, rows.n_items)
        g, B, C = _gradient_border(theta, rows, self.link, self.prior_var, state)
        L = self._pattern.laplacian(state.d_eta2, 0.0 if self.prior_var is None else 1.0 / self.prior_var)
        return g, SparseHessian(L, B, C)


def mm_bradley_terry(
    rows: PairRows,
    *,
    init: Array | None = None,
    tol: float = 1e-10,
    max_iter: int = 10_000,
) -> tuple[Array, int]:
    """Hunter's (2004) minorise-maximise update for Bradley-Terry without covariates:
    ``pi_i <- W_i / sum_j n_ij / (pi_i + pi_j)``. Returns mean-zero log-strengths."""
    if rows.n_features:
        raise ValueError("the MM algorithm here fits plain Bradley-Terry; use Newton for style")
    n = rows.n_items
    i, j = rows.i, rows.j
    wins = np.bincount(i, rows.counts[:, 0], n) + np.bincount(j, rows.counts[:, 1], n)
    nij = rows.counts[:, 0] + rows.counts[:, 1]
    s = np.zeros(n) if init is None else np.asarray(init, float)[:n].copy()
    for it in range(1, max_iter + 1):
        pi = np.exp(s - s.max())
        r = nij / (pi[i] + pi[j])
        den = np.bincount(i, r, n) + np.bincount(j, r, n)
        new = np.log(wins) - np.log(den)
        new -= new.mean()
        if np.max(np.abs(new - s)) < tol:
            return new, it
        s = new
    raise ConvergenceError(f"MM did not converge in {max_iter} iterations")
