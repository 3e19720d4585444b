"""Bradley-Terry and its tie models, fitted by maximum likelihood (or MAP with a prior).

    P(i beats j) = sigmoid(s_i - s_j + x_ij . beta)

Ties: ``"half"`` counts a tie (and a both-bad tie) as half a win for each side, as LMArena
and FastChat do; ``"ignore"`` drops them; ``"davidson"`` and ``"rao_kupper"`` model them
with their own parameter. ``style=[...]`` adds covariates built from per-side features
(style control); the reported scores then have the style effects removed.

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
from prefkit.rank._newton import mm_bradley_terry, newton
from prefkit.rank.connectivity import AUTO_PRIOR_VARIANCE, ProvisionalWarning, resolve_prior  # noqa: F401
from prefkit.rank.leaderboard import ELO_BASE, Leaderboard

__all__ = ["fit_bradley_terry", "fit_thurstone", "fit_rows", "ProvisionalWarning"]

Ties = Literal["half", "ignore", "davidson", "rao_kupper"]

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
) -> tuple[NDArray[np.float64], float | None, NDArray[np.float64] | None, dict]:
    """Fit prepared rows; returns ``(theta, prior_var, hessian, info)``.

    ``theta`` = [scores, beta, tau]. The building block of the public fits and of the
    bootstrap, which refits reweighted rows warm-started from the point estimate.
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
        res = newton(rows, link, init=s, tol=tol, max_iter=3)  # Hessian at the MM optimum
        info["n_iter"] = it
        return s, None, res.hessian, info
    if method != "newton":
        raise ValueError(f"method must be 'newton' or 'mm', got {method!r}")
    res = newton(rows, link, prior_var=prior_var, init=init, tol=tol, max_iter=max_iter)
    info["n_iter"] = res.n_iter
    info["nll"] = res.nll
    return res.theta, prior_var, res.hessian, info


def _covariance(H: NDArray[np.float64], n: int, constrained: bool) -> NDArray[np.float64]:
    """Inverse Hessian (all parameters). With the sum-to-zero constraint, ``H`` is singular
    along ``v = [1, ..., 1, 0, ...] / sqrt(n)`` (shifting every score changes nothing), and
    the covariance of the centred scores is the pseudo-inverse ``(H + v v^T)^-1 - v v^T``.
    The inverse goes through a Cholesky factorisation (the matrix is positive definite)."""
    from scipy.linalg import LinAlgError as ScipyLinAlgError
    from scipy.linalg.lapack import dpotrf, dpotri

    k = H.shape[0]
    v = np.zeros(k)
    if constrained:
        v[:n] = 1.0 / np.sqrt(n)
    A = H + np.outer(v, v)
    c, info = dpotrf(A, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError("the Hessian is not positive definite")
    inv, info = dpotri(c, lower=1)
    if info != 0:
        raise ScipyLinAlgError("could not invert the Hessian")
    inv = np.tril(inv) + np.tril(inv, -1).T
    return inv - np.outer(v, v)


def _leaderboard(
    rows: PairRows,
    theta: NDArray[np.float64],
    prior_var: float | None,
    H: NDArray[np.float64],
    info: dict,
    *,
    model: str,
    ties: str,
    anchor: tuple[str, float] | None,
) -> Leaderboard:
    n, p = rows.n_items, rows.n_features
    link = get_link(_link_name(model, ties))
    scores = theta[:n].copy()
    if prior_var is not None:
        scores -= scores.mean()
    try:
        cov_all = _covariance(H, n, prior_var is None)
    except np.linalg.LinAlgError:
        cov_all = None
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
    theta, prior_var, H, info = fit_rows(
        rows, model="bradley_terry", ties=ties, prior=prior, method=method, init=init,
        tol=tol, max_iter=max_iter,
    )
    return _leaderboard(rows, theta, prior_var, H, info, model="bradley_terry", ties=ties, anchor=anchor)


def fit_thurstone(
    data: PairwiseVotes | PairCounts,
    *,
    ties: Literal["half", "ignore"] = "half",
    prior: float | Literal["auto"] | None = "auto",
    anchor: tuple[str, float] | None = None,
) -> Leaderboard:
    """Thurstone-Mosteller (case V): ``P(i beats j) = Phi(s_i - s_j)``. The Elo scale
    here is nominal (the same multiplier as for Bradley-Terry)."""
    rows = build_rows(data, ties=ties)
    theta, prior_var, H, info = fit_rows(rows, model="thurstone", ties=ties, prior=prior)
    return _leaderboard(rows, theta, prior_var, H, info, model="thurstone", ties=ties, anchor=anchor)
