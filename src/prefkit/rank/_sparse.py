"""Sparse Newton steps, for comparison graphs of thousands of items.

The driver (:func:`prefkit.rank._newton.newton`) with dense steps holds the ``k x k``
Hessian and solves it by LU: ``O(n^2)`` memory and ``O(n^3)`` time per iteration, 5 GB
and 100 s at 10,000 items. Yet the score block of a pairwise Hessian is a weighted graph
Laplacian: item ``i`` meets only the items it was compared with, so it has
``n + 2 * pairs`` non-zeros. :class:`~prefkit.rank._newton.PairObjective` gives it as

    H = [[L, B],      L: n x n, scipy CSR (one entry per compared pair, both ways, + diagonal)
         [B^T, C]]    B: n x q dense border, C: q x q, for the q = style + tie parameters

(:class:`SparseHessian`), and :class:`SparseSteps` solves each Newton step ``H step = g``
by conjugate gradients preconditioned by the diagonal (Jacobi), to a relative residual
that shrinks with the gradient (a forcing term proportional to ``max |g|``, so the outer
iteration keeps Newton's quadratic convergence). Memory is ``O(rows + pairs + n q)``, and
an iteration costs a few dozen sparse products.

The objective, the line search, the sum-to-zero handling and the convergence test are the
driver's, the same as with dense steps, so both reach the same optimum (to ~1e-6 Elo on
the benchmark graphs; on badly conditioned graphs to what the shared gradient tolerance
allows). Without a prior the Laplacian is singular along ``e = [1, ..., 1, 0, ...]``; as
with dense steps a rank-one term ``c e e^T`` is added (here with ``c`` = mean diagonal /
n, which keeps that direction inside the spectrum CG sees; any ``c > 0`` gives the same
step because ``e^T g = 0``), and the driver re-centres the scores after every step.
Negative curvature (possible for Rao-Kupper away from its optimum) stops CG at the last
descent direction, as truncated Newton does.

Jacobi-preconditioned CG is fast on the graphs votes make (random or matchmaking pairs:
expanders, a few dozen iterations per step), slow on long thin ones (a chain of items,
a ladder of divisions: the condition number grows like ``n^2``). Those have small vertex
separators, so when CG needs more than ``CG_SLOW`` iterations on a graph with at most
``THIN_PAIRS_PER_ITEM`` pairs per item, the step is solved by a sparse LU factorisation
instead (SuperLU, minimum-degree ordering, one item pinned to remove the null space),
whose fill-in on such graphs stays near linear.

Covers every pairwise link (Bradley-Terry, Thurstone, Davidson, Rao-Kupper), priors,
weights and style covariates. Intervals need more: the Hessian covariance is the dense
inverse (``O(n^2)`` memory, ``O(n^3)`` time), see :meth:`SparseHessian.toarray`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

TYPE_CHECKING = False
if TYPE_CHECKING:
    import scipy.sparse as sp

Array = NDArray[np.float64]

#: ``solver="auto"`` fits with the sparse Hessian above this many items (below, the dense
#: LU solve of a few MB is as fast and exact to the last digit).
SPARSE_MIN_ITEMS = 1000
#: Upper bound on CG iterations per Newton step (a truncated step is still a descent
#: direction; the line search and the next Newton step take it from there).
CG_MAX_ITER = 5000
#: On graphs with at most this many compared pairs per item (chains, trees, grids), a
#: Newton step that needs more than ``CG_SLOW`` CG iterations switches the fit to sparse
#: LU steps (their fill-in stays small there; on dense-ish random graphs it would not,
#: but CG converges fast on those).
THIN_PAIRS_PER_ITEM = 3.0
CG_SLOW = 300


class Pattern:
    """The Laplacian's sparsity pattern, built once per set of rows.

    ``pair[r]`` is the unordered pair of row ``r`` (``None`` when the rows are already
    unique sorted pairs; self-pairs, which contribute nothing, are left out); CSR
    position ``t`` holds entry ``perm[t]`` of ``[-w (lo, hi), -w (hi, lo), degree]``.
    """

    def __init__(self, i: NDArray[np.int64], j: NDArray[np.int64], n: int) -> None:
        i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
        self.n = n
        self.keep = None if bool(np.all(i != j)) else i != j
        if self.keep is not None:
            i, j = i[self.keep], j[self.keep]
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        key = lo * n + hi
        if key.size and bool(np.all(key[1:] > key[:-1])):  # aggregated rows: already unique
            uniq, self.pair = key, None
        else:
            uniq, inv = np.unique(key, return_inverse=True)
            self.pair = inv.ravel()
        self.n_pairs = int(uniq.size)
        self.lo, self.hi = uniq // n, uniq % n
        diag = np.arange(n)
        r = np.concatenate([self.lo, self.hi, diag])
        c = np.concatenate([self.hi, self.lo, diag])
        tag = np.arange(r.size, dtype=np.float64)  # exact integers: which entry went where
        import scipy.sparse as sp  # only above SPARSE_MIN_ITEMS: a short run skips its import

        m = sp.csr_matrix((tag, (r, c)), shape=(n, n))
        self.perm = m.data.astype(np.int64)
        self.indices, self.indptr = m.indices, m.indptr

    def laplacian(self, d2: Array, extra_diag: Array | float = 0.0) -> sp.csr_matrix:
        """``sum_r d2_r (e_i - e_j)(e_i - e_j)^T`` (+ ``extra_diag`` on the diagonal)."""
        if self.keep is not None:
            d2 = d2[self.keep]
        w = d2 if self.pair is None else np.bincount(self.pair, d2, self.n_pairs)
        deg = np.bincount(self.lo, w, self.n) + np.bincount(self.hi, w, self.n) + extra_diag
        vals = np.concatenate([-w, -w, deg])
        import scipy.sparse as sp

        return sp.csr_matrix((vals[self.perm], self.indices, self.indptr), shape=(self.n, self.n))


@dataclass(frozen=True)
class SparseHessian:
    """``[[L, B], [B^T, C]]`` (see the module docstring); ``k = n + q``."""

    L: sp.csr_matrix
    B: Array  # (n, q)
    C: Array  # (q, q)

    @property
    def n(self) -> int:
        return int(self.L.shape[0])

    @property
    def k(self) -> int:
        return self.n + self.C.shape[0]

    def matvec(self, x: Array) -> Array:
        n = self.n
        xs, xb = x[:n], x[n:]
        y = np.empty_like(x)
        y[:n] = self.L @ xs
        if xb.size:
            y[:n] += self.B @ xb
            y[n:] = self.B.T @ xs + self.C @ xb
        return y

    def diagonal(self) -> Array:
        return np.concatenate([self.L.diagonal(), np.diag(self.C)])

    def tosparse(self) -> sp.csc_matrix:
        """The whole ``k x k`` matrix, sparse (the border as dense rows and columns)."""
        if not self.C.shape[0]:
            return self.L.tocsc()
        import scipy.sparse as sp

        return sp.bmat([[self.L, sp.csr_matrix(self.B)],
                        [sp.csr_matrix(self.B.T), sp.csr_matrix(self.C)]], format="csc")

    def toarray(self) -> Array:
        """The dense ``k x k`` matrix (for the covariance: ``O(k^2)`` memory)."""
        n, k = self.n, self.k
        H = np.zeros((k, k))
        H[:n, :n] = self.L.toarray()
        H[:n, n:] = self.B
        H[n:, :n] = self.B.T
        H[n:, n:] = self.C
        return H


def pcg(
    matvec, b: Array, diag: Array, *, rtol: float, maxiter: int,  # type: ignore[no-untyped-def]
) -> tuple[Array, int]:
    """Jacobi-preconditioned conjugate gradients for ``A x = b`` from ``x = 0``; stops at
    ``||b - A x|| <= rtol ||b||``, after ``maxiter`` iterations, or at a direction of
    non-positive curvature (returning the last iterate, or the preconditioned gradient
    when that happens at once: a descent direction either way)."""
    dinv = 1.0 / np.maximum(np.abs(diag), 1e-300)
    x = np.zeros_like(b)
    r = b.copy()
    bnorm = float(np.linalg.norm(b))
    if bnorm == 0.0:
        return x, 0
    z = dinv * r
    p = z.copy()
    rz = float(r @ z)
    for it in range(1, maxiter + 1):
        Ap = matvec(p)
        pAp = float(p @ Ap)
        if not pAp > 0.0:
            return (z if it == 1 else x), it
        alpha = rz / pAp
        x += alpha * p
        r -= alpha * Ap
        if float(np.linalg.norm(r)) <= rtol * bnorm:
            return x, it
        z = dinv * r
        rz_new = float(r @ z)
        p *= rz_new / rz
        p += z
        rz = rz_new
    return x, maxiter


def direct_step(H: SparseHessian, g: Array, constrained: bool) -> Array | None:
    """Solve ``H x = g`` by sparse LU; with ``constrained`` the item with the largest
    diagonal is pinned to 0 (``H`` is singular along the scores' ``e``; ``e^T g = 0``, so
    the pinned solution is the solution up to a shift, removed by the re-centring).
    ``None`` if the factorisation fails (a zero pivot: ``H`` not positive definite)."""
    from scipy.sparse.linalg import splu

    A = H.tosparse()
    rhs = g
    pin = -1
    if constrained:
        pin = int(np.argmax(H.L.diagonal()))
        keep = np.flatnonzero(np.arange(H.k) != pin)
        A = A[keep][:, keep].tocsc()
        rhs = g[keep]
    try:
        lu = splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                  options={"SymmetricMode": True})
        x = lu.solve(rhs)
    except RuntimeError:
        return None
    if not np.all(np.isfinite(x)):
        return None
    return x if pin < 0 else np.insert(x, pin, 0.0)


class SparseSteps:
    """Newton steps ``H step = g`` on a :class:`SparseHessian` for the driver
    (:func:`prefkit.rank._newton.newton`): Jacobi-preconditioned CG with a forcing term,
    switching for good to sparse LU when CG stalls on a thin graph (module docstring).
    ``constrain``: the scores (the first ``n_scores`` parameters) sum to zero."""

    def __init__(self, n_scores: int, constrain: bool) -> None:
        self.n, self.constrain = n_scores, constrain
        self.cg_iter = self.lu_steps = 0
        self.use_lu = False
        self.thin: bool | None = None
        self.maxiter_cg = 0

    def __call__(self, H: SparseHessian, g: Array, rel_grad: float) -> Array:
        """The step at relative gradient ``rel_grad`` (``max |g|`` / total weight)."""
        n = self.n
        if self.thin is None:  # the Laplacian holds the diagonal and each pair twice
            self.thin = (H.L.nnz - H.n) / 2 <= THIN_PAIRS_PER_ITEM * H.n
            self.maxiter_cg = max(50, min(H.k, CG_SLOW if self.thin else CG_MAX_ITER))
        diag = H.diagonal()
        if self.constrain:
            c = max(float(diag[:n].mean()), 1e-300) / n
            diag[:n] += c

            def matvec(x: Array) -> Array:
                y = H.matvec(x)
                y[:n] += c * x[:n].sum()
                return y
        else:
            matvec = H.matvec
        # forcing term proportional to the gradient: quadratic convergence near the optimum
        rtol = min(0.1, max(1e2 * rel_grad, 1e-12))
        step = None
        if not self.use_lu:
            step, used = pcg(matvec, g, diag, rtol=rtol, maxiter=self.maxiter_cg)
            self.cg_iter += used
            self.use_lu = self.thin and used >= self.maxiter_cg
        if self.use_lu:
            lu = direct_step(H, g, self.constrain)
            if lu is not None:
                step = lu
                self.lu_steps += 1
            elif step is None:  # not positive definite here: back to CG for this step
                step, used = pcg(matvec, g, diag, rtol=rtol, maxiter=CG_MAX_ITER)
                self.cg_iter += used
        return step

    def info(self) -> dict:
        out = {"cg_iter": self.cg_iter}
        if self.lu_steps:
            out["lu_steps"] = self.lu_steps
        return out


def border_covariance(H: SparseHessian, constrained: bool, *, rtol: float = 1e-10) -> Array:
    """Covariance ``(H^-1)[n:, n:]`` of the style and tie parameters without the dense
    inverse: the inverse Schur complement ``(C - B^T L^+ B)^-1``, from ``q`` CG solves
    with ``L`` (``L^+`` on the plane ``sum = 0`` when ``constrained``: the columns of
    ``B`` sum to zero, so the rank-one term does not change the solutions)."""
    n, q = H.n, H.C.shape[0]
    if not q:
        return np.zeros((0, 0))
    diag = H.L.diagonal().copy()
    c = max(float(diag.mean()), 1e-300) / n if constrained else 0.0
    diag += c

    def matvec(x: Array) -> Array:
        y = H.L @ x
        if c:
            y += c * x.sum()
        return y

    Y = np.column_stack([
        pcg(matvec, H.B[:, a], diag, rtol=rtol, maxiter=max(50, min(n, CG_MAX_ITER)))[0]
        for a in range(q)
    ])
    S = H.C - H.B.T @ Y
    return np.linalg.inv(S)
