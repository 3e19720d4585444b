"""Bradley-Terry and its tie models, fitted by maximum likelihood (or MAP with a prior).

    P(i beats j) = sigmoid(s_i - s_j + x_ij . beta)

Ties: ``"half"`` counts a tie (and a both-bad tie) as half a win for each side, as LMArena
and FastChat do; ``"ignore"`` drops them; ``"davidson"`` and ``"rao_kupper"`` model them
with their own parameter. ``style=[...]`` adds covariates built from per-side features
(style control); the reported scores then have the style effects removed.

Large comparison graphs: above ``SPARSE_MIN_ITEMS`` (1,000) items the Newton steps are
solved with the sparse Hessian (:mod:`prefkit.rank._sparse`: memory linear in the number
of compared pairs, 10,000 items and 400,000 votes in about 0.3 s), and above
``DENSE_COVARIANCE_MAX_ITEMS`` (2,000) the dense covariance (``n^2`` memory, ``n^3`` time)
is left out unless asked for (``covariance=True``); see :func:`fit_bradley_terry`.

References: Bradley & Terry (1952); Hunter (2004) "MM algorithms for generalized
Bradley-Terry models"; Davidson (1970); Rao & Kupper (1967); Chiang et al. (2024)
"Chatbot Arena"; LMSYS (2024) "Does style matter?" (style control).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from prefkit.choice.pairwise import get_link
from prefkit.data.records import PairCounts, PairwiseVotes
from prefkit.rank._design import PairRows, build_rows
from prefkit.rank._newton import PairObjective, mm_bradley_terry, newton
from prefkit.rank._sparse import SPARSE_MIN_ITEMS, SparseHessian, border_covariance
from prefkit.rank.connectivity import AUTO_PRIOR_VARIANCE, ProvisionalWarning, resolve_prior  # noqa: F401
from prefkit.rank.leaderboard import ELO_BASE, Leaderboard

__all__ = ["fit_bradley_terry", "fit_thurstone", "fit_rows", "hessian_covariance", "ProvisionalWarning"]

Ties = Literal["half", "ignore", "davidson", "rao_kupper"]
Solver = Literal["auto", "dense", "sparse"]

#: ``covariance="auto"`` computes the dense covariance of the scores (the inverse
#: Hessian: ``n^2`` floats, ``O(n^3)`` time) up to this many items: 32 MB and well under
#: a second at 2,000; at 10,000 it would be 800 MB per copy and tens of seconds.
DENSE_COVARIANCE_MAX_ITEMS = 2000


def _use_sparse(solver: str, n_items: int) -> bool:
    if solver not in ("auto", "dense", "sparse"):
        raise ValueError(f"solver must be 'auto', 'dense' or 'sparse', got {solver!r}")
    return solver == "sparse" or (solver == "auto" and n_items > SPARSE_MIN_ITEMS)


def _want_covariance(covariance: bool | str, n_items: int) -> bool:
    if covariance == "auto":
        return n_items <= DENSE_COVARIANCE_MAX_ITEMS
    if not isinstance(covariance, bool):
        raise ValueError(f"covariance must be True, False or 'auto', got {covariance!r}")
    return covariance


def _link_name(model: str, ties: str) -> str:
    if ties in ("davidson", "rao_kupper"):
        if model != "bradley_terry":
            raise ValueError(f"ties={ties!r} is a Bradley-Terry tie model; use model='bradley_terry'")
        return ties
    return model


def fit_rows(
    rows: PairRows,
    *,
    model: str = "bradley_terry",
    ties: str = "half",
    prior: float | Literal["auto"] | None = "auto",
    method: Literal["newton", "mm"] = "newton",
    init: NDArray[np.float64] | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
    check: bool = True,
    solver: Solver = "auto",
    hessian: bool = True,
) -> tuple[NDArray[np.float64], float | None, NDArray[np.float64] | None, dict]:
    """Fit prepared rows; returns ``(theta, prior_var, hessian, info)``.

    ``theta`` = [scores, beta, tau]. The building block of the public fits and of the
    bootstrap, which refits reweighted rows warm-started from the point estimate.
    ``solver``: ``"dense"`` (Newton with the dense Hessian and an LU solve), ``"sparse"``
    (the sparse Hessian and preconditioned CG, :mod:`prefkit.rank._sparse`: the same
    optimum, memory linear in the compared pairs) or ``"auto"`` (sparse above
    ``SPARSE_MIN_ITEMS`` items). ``hessian``: return the dense Hessian at the optimum
    (``k x k``; what the covariance and the bootstrap need); ``False`` returns ``None``
    instead, so that the sparse path never holds an ``n x n`` array.
    """
    link = get_link(_link_name(model, ties))
    info: dict = {}
    prior_var: float | None
    if check:
        prior_var, info["provisional"], info["connectivity"] = resolve_prior(
            rows.items, rows.i, rows.j, rows.counts, prior)
    else:
        prior_var = None if prior in ("auto", None) else float(prior)  # type: ignore[arg-type]
    if method == "mm":
        if link.name != "bradley_terry" or prior_var is not None:
            raise ValueError("method='mm' fits plain Bradley-Terry without a prior; use 'newton'")
        s, it = mm_bradley_terry(rows, init=init, max_iter=max(max_iter, 10_000))
        info["n_iter"] = it
        # the (dense) Hessian at the MM optimum, no solve
        return s, None, PairObjective(rows, link).at(s)[2] if hessian else None, info  # type: ignore[return-value]
    if method != "newton":
        raise ValueError(f"method must be 'newton' or 'mm', got {method!r}")
    obj = PairObjective(rows, link, prior_var)
    kind = "sparse" if _use_sparse(solver, rows.n_items) else "dense"
    res = newton(obj, obj.start(init), solver=kind, tol=tol, max_iter=max_iter)
    info.update(n_iter=res.n_iter, nll=res.nll, solver=kind, **res.info)
    if not hessian:
        return res.theta, prior_var, None, info
    H = res.hessian
    return res.theta, prior_var, H.toarray() if isinstance(H, SparseHessian) else H, info


def _covariance(H: NDArray[np.float64], n: int, constrained: bool) -> NDArray[np.float64]:
    """Inverse Hessian (all parameters). With the sum-to-zero constraint, ``H`` is singular
    along ``v = [1, ..., 1, 0, ...] / sqrt(n)`` (shifting every score changes nothing), and
    the covariance of the centred scores is the pseudo-inverse ``(H + v v^T)^-1 - v v^T``.
    The inverse goes through a Cholesky factorisation (the matrix is positive definite):
    LAPACK's ``potri`` above ``_NUMPY_INVERSE_MAX`` parameters; below, numpy's Cholesky and
    a triangular solve, which spares a short run importing ``scipy.linalg`` (~0.2 s CPU,
    a fifth of ``prefkit rank --intervals none`` on the 1.67M Arena votes)."""
    k = H.shape[0]
    v = np.zeros(k)
    if constrained:
        v[:n] = 1.0 / np.sqrt(n)
    A = H + np.outer(v, v)
    if k <= _NUMPY_INVERSE_MAX:
        try:
            c = np.linalg.cholesky(A)
        except np.linalg.LinAlgError:
            raise np.linalg.LinAlgError("the Hessian is not positive definite") from None
        c_inv = np.linalg.solve(c, np.eye(k))
        inv = c_inv.T @ c_inv
        return (inv + inv.T) / 2.0 - np.outer(v, v)
    from scipy.linalg import LinAlgError as ScipyLinAlgError
    from scipy.linalg.lapack import dpotrf, dpotri

    c, info = dpotrf(A, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError("the Hessian is not positive definite")
    inv, info = dpotri(c, lower=1)
    if info != 0:
        raise ScipyLinAlgError("could not invert the Hessian")
    inv = np.tril(inv) + np.tril(inv, -1).T
    return inv - np.outer(v, v)


#: up to this many parameters :func:`_covariance` inverts with numpy (no scipy import)
_NUMPY_INVERSE_MAX = 400


def hessian_covariance(
    leaderboard: Leaderboard,
    data: PairwiseVotes | PairCounts,
    **build: object,
) -> NDArray[np.float64]:
    """The Hessian covariance of a fitted leaderboard's scores, computed now: for fits
    that left it out (``covariance=False``, the default above
    ``DENSE_COVARIANCE_MAX_ITEMS`` items). ``data`` (and ``style_transform`` in
    ``build``, if the fit used one) must be what the leaderboard was fitted on. Costs the
    dense Hessian and its inverse: ``n^2`` floats (a few copies) and ``O(n^3)`` time,
    e.g. 800 MB per copy and tens of seconds at 10,000 items."""
    lb = leaderboard
    if lb.model not in ("bradley_terry", "thurstone", "davidson", "rao_kupper"):
        raise ValueError(f"no pairwise Hessian for a {lb.model!r} leaderboard")
    rows = build_rows(data, ties=lb.ties, style=tuple(lb.coefficients), **build)  # type: ignore[arg-type]
    if rows.items.names != lb.items.names:
        raise ValueError("the data's items differ from the leaderboard's")
    link = get_link(lb.model)
    parts = [lb.scores, np.array([lb.coefficients[f] for f in rows.feature_names])]
    if link.has_ties:
        parts.append(np.array([lb.info["tau"]]))
    theta = np.concatenate(parts)  # the Hessian depends on score differences only
    prior_var = lb.info.get("prior_variance")
    H = PairObjective(rows, link, prior_var).at(theta)[2]
    return _covariance(H, rows.n_items, prior_var is None)[: rows.n_items, : rows.n_items]


def _leaderboard(
    rows: PairRows,
    theta: NDArray[np.float64],
    prior_var: float | None,
    H: NDArray[np.float64] | None,
    info: dict,
    *,
    model: str,
    ties: str,
    anchor: tuple[str, float] | None,
) -> Leaderboard:
    """``H`` is the dense Hessian, or ``None`` to leave the covariance out (the style
    coefficients' standard errors then come from the sparse Hessian's Schur complement)."""
    n, p = rows.n_items, rows.n_features
    link = get_link(_link_name(model, ties))
    scores = theta[:n].copy()
    if prior_var is not None:
        scores -= scores.mean()
    cov_all = border = None
    if H is not None:
        try:
            cov_all = _covariance(H, n, prior_var is None)
        except np.linalg.LinAlgError:
            cov_all = None
    elif p:
        try:
            Hs = PairObjective(rows, link, prior_var).at(theta, sparse=True)[2]
            border = border_covariance(Hs, prior_var is None)  # type: ignore[arg-type]
        except np.linalg.LinAlgError:
            border = None
    coefs = {}
    for c, name in enumerate(rows.feature_names):
        coefs[name] = float(theta[n + c])
    tie_par = link.describe_tau(float(theta[-1])) if link.has_ties else {}
    per_item = np.bincount(rows.i, rows.counts.sum(1), n) + np.bincount(rows.j, rows.counts.sum(1), n)
    extra = {k: v for k, v in info.items() if k not in ("connectivity", "provisional")}
    if link.has_ties:
        extra["tau"] = float(theta[-1])
    if p:
        extra["feature_center"] = rows.feature_center.tolist()  # type: ignore[union-attr]
        extra["feature_scale"] = rows.feature_scale.tolist()  # type: ignore[union-attr]
        if cov_all is not None:
            extra["coefficient_se"] = {
                name: float(np.sqrt(cov_all[n + c, n + c])) for c, name in enumerate(rows.feature_names)
            }
        elif border is not None:
            extra["coefficient_se"] = {
                name: float(np.sqrt(border[c, c])) for c, name in enumerate(rows.feature_names)
            }
    if H is None:
        extra["covariance"] = ("not computed (covariance=False, the default above "
                               f"{DENSE_COVARIANCE_MAX_ITEMS} items): the dense inverse Hessian "
                               "costs n^2 memory and n^3 time; pass covariance=True for it")
    if prior_var is not None:
        extra["prior_variance"] = prior_var
    lb = Leaderboard(
        rows.items,
        scores,
        model=link.name,
        ties=ties,
        offset=ELO_BASE,
        covariance=None if cov_all is None else cov_all[:n, :n],
        coefficients=coefs,
        tie_parameter=tie_par,
        provisional=info.get("provisional"),
        n_votes=per_item,
        info=extra,
    )
    if anchor is not None:
        lb = lb.anchored(*anchor)
    return lb


def fit_bradley_terry(
    data: PairwiseVotes | PairCounts,
    *,
    ties: Ties = "half",
    style: Sequence[str] = (),
    style_transform: Literal["lmarena", "relative", "difference"] = "lmarena",
    prior: float | Literal["auto"] | None = "auto",
    method: Literal["newton", "mm"] = "newton",
    init: NDArray[np.float64] | None = None,
    anchor: tuple[str, float] | None = None,
    tol: float = 1e-10,
    max_iter: int = 100,
    solver: Solver = "auto",
    covariance: bool | Literal["auto"] = "auto",
) -> Leaderboard:
    """Fit Bradley-Terry ratings to pairwise votes (or pre-aggregated counts).

    Args:
        data: :class:`PairwiseVotes` or :class:`PairCounts`.
        ties: ``"half"`` (LMArena), ``"ignore"``, ``"davidson"`` or ``"rao_kupper"``.
        style: names of per-side features to control for (e.g. ``["length"]``, ``["home"]``).
        style_transform: ``"lmarena"`` (default) uses ``(x_a - x_b) / (x_a + x_b + 1)``
            standardised, exactly as LMArena's style control (FastChat's
            ``construct_style_matrices``, arena-hard); ``"relative"`` the same without the
            ``+ 1``; ``"difference"`` uses ``x_a - x_b`` as is (e.g. a home-advantage
            indicator).
        prior: ``None`` for the pure MLE (an error if it does not exist), a variance for a
            Gaussian prior on log-strengths, or ``"auto"``: the MLE when it exists, else the
            prior with variance 1 and the affected items flagged ``provisional``.
        method: ``"newton"`` (default) or ``"mm"`` (Hunter's MM; plain BT only).
        init: warm start (scores, then coefficients, then tie parameter).
        anchor: ``(item, rating)`` to pin one item's Elo rating.
        solver: ``"auto"`` (default): the dense Newton solve up to ``SPARSE_MIN_ITEMS``
            (1,000) items, above it the sparse one; ``"dense"`` or ``"sparse"`` to choose.
            The dense solve holds the ``n x n`` Hessian and costs ``O(n^3)`` per iteration
            (5 GB and 100 s at 10,000 items); the sparse one holds a Laplacian with one
            entry per compared pair and solves by preconditioned conjugate gradients
            (:mod:`prefkit.rank._sparse`): memory linear in the pairs, about 0.3 s for
            10,000 items and 400,000 votes. Both stop at the same gradient tolerance and
            give the same ratings (to ~1e-6 Elo). Every tie model, prior, weight and style
            covariate is covered by both; ``method="mm"`` has its own iteration.
        covariance: keep the Hessian covariance of the scores (``Leaderboard.covariance``,
            what Hessian intervals and matchmaking read). It is the dense inverse
            Hessian: ``n^2`` floats and an ``O(n^3)`` Cholesky inversion, 800 MB per copy
            and tens of seconds at 10,000 items, whatever the solver. ``"auto"``
            (default) computes it up to ``DENSE_COVARIANCE_MAX_ITEMS`` (2,000) items and
            leaves it ``None`` above (``info["covariance"]`` says so;
            :func:`hessian_covariance` computes it later); ``True`` or ``False`` to
            choose. Style coefficients get standard errors either way.
            Interval costs: ``"hessian"`` intervals need this covariance; ``"sandwich"``
            intervals build the dense Hessian and its inverse again (the same
            ``O(n^2)`` / ``O(n^3)``); the bootstrap refits from this point estimate with a
            chord iteration on the dense Hessian's inverse (``O(n^2)`` memory, ``O(n^3)``
            once, then ``O(n^2)`` per round and iteration). Every method then derives rank
            intervals and tiers from all ``n (n - 1) / 2`` pairs (``n x n`` arrays,
            ``O(n^2)`` work per bootstrap round or Gaussian draw). So at 10,000 items the
            point estimate is linear, and intervals cost gigabytes and minutes.

    Returns:
        A :class:`Leaderboard`; ``ratings`` are on the Elo scale (mean 1000 unless anchored).

    Example:
        >>> from prefkit.data import PairwiseVotes
        >>> v = PairwiseVotes.from_names(["a", "a", "b", "c", "a"], ["b", "c", "c", "a", "b"],
        ...                              ["a", "a", "a", "a", "tie"])
        >>> lb = fit_bradley_terry(v)
        >>> [(r["item"], round(r["rating"])) for r in lb.to_records()]
        [('a', 1060), ('b', 1015), ('c', 924)]
    """
    rows = build_rows(data, ties=ties, style=style, style_transform=style_transform)
    want_cov = _want_covariance(covariance, rows.n_items)
    theta, prior_var, H, info = fit_rows(
        rows, model="bradley_terry", ties=ties, prior=prior, method=method, init=init,
        tol=tol, max_iter=max_iter, solver=solver, hessian=want_cov,
    )
    return _leaderboard(rows, theta, prior_var, H, info, model="bradley_terry", ties=ties, anchor=anchor)


def fit_thurstone(
    data: PairwiseVotes | PairCounts,
    *,
    ties: Literal["half", "ignore"] = "half",
    prior: float | Literal["auto"] | None = "auto",
    anchor: tuple[str, float] | None = None,
    solver: Solver = "auto",
    covariance: bool | Literal["auto"] = "auto",
) -> Leaderboard:
    """Thurstone-Mosteller (case V): ``P(i beats j) = Phi(s_i - s_j)``. The Elo scale
    here is nominal (the same multiplier as for Bradley-Terry). ``solver`` and
    ``covariance`` as in :func:`fit_bradley_terry`."""
    rows = build_rows(data, ties=ties)
    theta, prior_var, H, info = fit_rows(rows, model="thurstone", ties=ties, prior=prior,
                                         solver=solver,
                                         hessian=_want_covariance(covariance, rows.n_items))
    return _leaderboard(rows, theta, prior_var, H, info, model="thurstone", ties=ties, anchor=anchor)
