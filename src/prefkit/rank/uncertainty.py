"""Uncertainty for pairwise leaderboards: bootstrap, model-based and sandwich intervals,
rank intervals and tiers.

Three ways to put intervals on fitted ratings (all on the Elo scale, relative to the mean
item unless the leaderboard is anchored):

* ``bootstrap`` (Efron & Tibshirani 1993, ch. 6 and 13; as LMArena does, Chiang et al.
  2024 "Chatbot Arena", sec. 5): resample the votes with replacement, refit, and take
  percentile intervals of the refitted ratings. With ``cluster="annotator"`` (or
  ``"prompt"``) whole clusters are resampled instead, which keeps the dependence between
  the votes of one annotator (Davison & Hinkley 1997, sec. 3.8; Field & Welsh 2007).
* ``"hessian"``: ``Cov = H^-1`` (the inverse observed information), the textbook
  model-based standard errors.
* ``"sandwich"`` (Huber 1967; White 1980; Liang & Zeger 1986 for clusters):
  ``Cov = H^-1 M H^-1`` with ``M = sum_v u_v u_v^T`` over the score contribution ``u_v``
  of each vote ``v`` (or of each cluster: ``u_g = sum_{v in g} u_v``). It stays valid
  when the model is wrong. Note that ``ties="half"`` *is* a misspecification: a tie is
  not half a Bernoulli win, and its score contribution ``(p - 1/2)`` varies less than a
  decisive vote's, so with many ties (a third of Chatbot Arena's votes) the Hessian
  overstates the variance and the sandwich and the bootstrap agree with each other, not
  with it.

Every method then derives rank intervals and tiers from simultaneous pairwise separation
(:func:`~prefkit.rank._rank_inference.rank_inference`), never from overlapping intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from prefkit.choice.pairwise import get_link
from prefkit.data.records import PairCounts, PairwiseVotes
from prefkit.rank._bootstrap import (
    Design,
    Fit,
    chunk_size,
    cluster_reweight,
    design,
    refit,
    tie_convention,
    vote_resample,
)
from prefkit.rank._newton import gradient_hessian, objective
from prefkit.rank._rank_inference import RankInference, rank_inference
from prefkit.rank.bradley_terry import AUTO_PRIOR_VARIANCE, _leaderboard, _link_name, fit_rows
from prefkit.rank.leaderboard import ELO_SCALE, Leaderboard
from prefkit.runs import plural

__all__ = ["RankInference", "bootstrap", "rank_inference", "sandwich_covariance", "with_intervals"]

Array = NDArray[np.float64]
Cluster = Literal["annotator", "prompt"]

#: Largest max |gradient| / total weight at which a leaderboard is taken to be the fit of
#: the data passed with it (the fits stop at 1e-10).
FIT_MISMATCH_TOL = 1e-6
#: Largest score difference at which a passed leaderboard counts as the fit of the data.
FIT_SCORES_TOL = 1e-6


_TIED_LINKS = ("davidson", "rao_kupper")


def _options(
    lb: Leaderboard | None, model: str | None, ties: str | None, style: Sequence[str] | None,
    prior: float | str | None,
) -> tuple[str, str, tuple[str, ...], float | str | None]:
    """Fit options, taken from ``lb`` when given (explicit ones must agree with it)."""
    if lb is None:
        return model or "bradley_terry", ties or "half", tuple(style or ()), prior
    if lb.model not in ("bradley_terry", "thurstone", *_TIED_LINKS):
        raise ValueError(f"bootstrap refits pairwise Bradley-Terry-type models; the leaderboard "
                         f"is a {lb.model!r} fit")
    own = {"model": "thurstone" if lb.model == "thurstone" else "bradley_terry",
           "ties": lb.ties, "style": tuple(lb.coefficients)}
    given = {"model": model, "ties": ties, "style": None if style is None else tuple(style)}
    for key, value in given.items():
        if value is not None and value != own[key]:
            raise ValueError(f"{key}={value!r} disagrees with the leaderboard's {own[key]!r}")
    if prior == "auto":
        prior = lb.info.get("prior_variance", "auto")
    return own["model"], own["ties"], own["style"], prior  # type: ignore[return-value]


def bootstrap(
    data: PairwiseVotes | PairCounts,
    *,
    rng: np.random.Generator,
    rounds: int = 1000,
    cluster: Cluster | None = None,
    confidence: float = 0.95,
    leaderboard: Leaderboard | None = None,
    ties: Literal["half", "ignore", "davidson", "rao_kupper"] | None = None,
    style: Sequence[str] | None = None,
    style_transform: Literal["lmarena", "relative", "difference"] = "lmarena",
    model: Literal["bradley_terry", "thurstone"] | None = None,
    prior: float | Literal["auto"] | None = "auto",
    anchor: tuple[str, float] | None = None,
) -> Leaderboard:
    """Fit a leaderboard and bootstrap it: percentile intervals, rank intervals, tiers.

    The point estimate is the fit on all the data (it does not depend on ``rng``); the
    rounds only give the intervals. Round ``b`` reweights the raw (pair x outcome) cells
    by a draw ``k_b ~ Multinomial(N, n_c / N)`` over the ``N`` votes, which is exactly
    resampling the votes with replacement; the tie convention is applied afterwards, so
    ties are resampled as whole votes, not as fractional halves. With ``cluster``, round
    ``b`` draws cluster weights ``w_b ~ Multinomial(G, 1/G)`` over the ``G`` annotators
    (or prompts) and rebuilds the cells from the per-(cluster, pair) counts; with few
    clusters (say under 30) such intervals are themselves noisy. Each round is refitted
    warm-started at the point estimate (a batched chord-Newton iteration to the fit's own
    tolerance). A round in which some item only won or only lost has no MLE: it is
    fitted with the ``N(0, 1)`` prior of ``prior="auto"`` (counted in
    ``info["bootstrap"]["rounds_with_prior"]``), and for the percentile intervals that
    item's rating in that round counts as +inf (or -inf), so an interval end can be
    infinite when more than ``(1 - confidence) / 2`` of the rounds are like that. Rank
    intervals and tiers use the finite stand-ins.

    Args:
        data: votes, or counts (no ``cluster`` or ``style`` then).
        rng: the source of randomness.
        rounds: bootstrap rounds ``B``.
        cluster: resample whole annotators or prompts instead of votes.
        confidence: level of the percentile intervals and the family-wise level of the
            rank intervals and tiers.
        leaderboard: a fit of ``data`` to add intervals to; the model, ties and style are
            then taken from it (and a ``ValueError`` says so if it is not that fit). The
            result keeps its fields, anchor included.
        ties, style, style_transform, prior, anchor: as in
            :func:`~prefkit.rank.fit_bradley_terry` (defaults ``"half"`` and no style).
        model: ``"bradley_terry"`` (default) or ``"thurstone"``.

    Returns:
        A :class:`Leaderboard` with ``intervals`` (percentile, Elo scale), ``samples``
        (``(B, n)`` bootstrap scores), ``rank_intervals`` and ``tiers``.

    Example:
        >>> from prefkit.data import PairwiseVotes
        >>> v = PairwiseVotes.from_names(["a"] * 30 + ["b"] * 30, ["b"] * 30 + ["c"] * 30,
        ...                              ["a"] * 20 + ["b"] * 10 + ["a"] * 25 + ["b"] * 5)
        >>> lb = bootstrap(v, rounds=200, rng=np.random.default_rng(0))
        >>> lb.samples.shape, [r["rank_lower"] for r in lb.to_records()]
        ((200, 3), [1, 1, 3])
    """
    if rounds < 2:
        raise ValueError(f"rounds must be at least 2, got {rounds}")
    mdl, tie, sty, pri = _options(leaderboard, model, ties, style, prior)
    d = design(data, ties=tie, style=sty, style_transform=style_transform, cluster=cluster)
    rows, n = d.rows, d.rows.n_items
    theta, prior_var, H, info = fit_rows(rows, model=mdl, ties=tie, prior=pri)  # type: ignore[arg-type]
    assert H is not None
    lb = _leaderboard(rows, theta, prior_var, H, info, model=mdl, ties=tie, anchor=None)
    if leaderboard is not None:
        gap = float(np.abs(lb.scores - leaderboard.scores).max()) if n else 0.0
        if leaderboard.items.names != rows.items.names or gap > FIT_SCORES_TOL:
            raise ValueError("the leaderboard is not the fit of these data (scores differ by "
                             f"{gap:.3g}); pass the data and style_transform it was fitted with")
        lb = leaderboard
    fit = Fit(get_link(_link_name(mdl, tie)), theta, prior_var, H)
    samples = np.empty((rounds, n))
    unbounded = np.zeros((2, rounds, n), bool)  # items whose round MLE is +inf / -inf
    with_prior = 0
    step = chunk_size(len(rows.i))
    for a in range(0, rounds, step):
        b = min(rounds, a + step) - a
        if cluster is None:
            raw = vote_resample(d, rng, b)
        else:
            G = len(d.group_names)
            w = rng.multinomial(G, np.full(G, 1.0 / G), size=b).astype(float)
            raw = cluster_reweight(d, w)
        r = refit(rows, fit, tie_convention(raw, tie, inplace=True), model=mdl, ties=tie,
                  auto_prior=AUTO_PRIOR_VARIANCE)
        samples[a : a + b] = r.theta[:, :n] - r.theta[:, :n].mean(axis=1, keepdims=True)
        unbounded[0, a : a + b], unbounded[1, a : a + b] = r.up, r.down
        with_prior += int(r.with_prior.sum())
    boot: dict[str, object] = {"rounds": rounds, "cluster": cluster,
                               "rounds_with_prior": with_prior}
    if cluster is not None:
        boot["clusters"] = len(d.group_names)
    info = {**lb.info, "bootstrap": boot}
    if unbounded.any():
        info["bootstrap_unbounded"] = unbounded
    lb = replace(lb, samples=samples, interval_method=None, info=info)
    lb = with_intervals(lb, method="bootstrap", confidence=confidence)
    if cluster is not None:
        lb = replace(lb, interval_method=f"bootstrap(cluster={cluster})")
    return lb if anchor is None else lb.anchored(*anchor)


def _theta(lb: Leaderboard, d: Design) -> tuple[Array, float | None]:
    """The parameter vector ``[scores, coefficients, tau]`` the leaderboard was fitted at."""
    rows = d.rows
    missing = [f for f in rows.feature_names if f not in lb.coefficients]
    if missing or len(lb.coefficients) != rows.n_features:
        raise ValueError("the leaderboard's style coefficients do not match the data's features")
    parts = [lb.scores, np.array([lb.coefficients[f] for f in rows.feature_names])]
    if get_link(lb.model).has_ties:
        parts.append(np.array([lb.info["tau"]]))
    return np.concatenate(parts), lb.info.get("prior_variance")


def _unit_gradients(d: Design, link_name: str, theta: Array) -> sp.csr_matrix:
    """``J`` (``(3R, k)``): row ``3r + c`` is the gradient of the negative log-likelihood
    contributed by one unit of raw count in column ``c`` of row ``r`` (linear in counts)."""
    rows = d.rows
    link = get_link(link_name)
    n, p, R = rows.n_items, rows.n_features, len(rows.i)
    s, beta = theta[:n], theta[n : n + p]
    tau = float(theta[-1]) if link.has_ties else 0.0
    eta = s[rows.i] - s[rows.j] + (rows.X @ beta if p else 0.0)
    r_l, c_l, v_l = [], [], []
    for c in range(3):
        unit = np.zeros((1, 3))
        unit[0, c] = 1.0
        t = link.terms(eta, np.repeat(tie_convention(unit, d.ties), R, axis=0), tau)
        rid = 3 * np.arange(R) + c
        cols = [rows.i, rows.j] + [np.full(R, n + q) for q in range(p)]
        vals = [t.d_eta, -t.d_eta] + [t.d_eta * rows.X[:, q] for q in range(p)]
        if link.has_ties:
            cols.append(np.full(R, n + p))
            vals.append(t.d_tau)
        r_l += [rid] * len(cols)
        c_l += cols
        v_l += vals
    k = theta.size
    return sp.csr_matrix((np.concatenate(v_l), (np.concatenate(r_l), np.concatenate(c_l))),
                         shape=(3 * R, k))


def sandwich_covariance(
    leaderboard: Leaderboard,
    data: PairwiseVotes | PairCounts,
    *,
    cluster: Cluster | None = None,
    style_transform: Literal["lmarena", "relative", "difference"] = "lmarena",
) -> Array:
    """Robust covariance ``H^-1 M H^-1`` of the scores of a fitted leaderboard.

    ``M = sum_v u_v u_v^T`` over votes ``v`` (with aggregated cells every vote of a cell has
    the same contribution, so ``M = sum_c n_c u_c u_c^T`` over cells of ``n_c`` votes with
    per-vote contribution ``u_c``); with ``cluster``, ``M = sum_g U_g U_g^T`` with
    ``U_g = sum_{v in g} u_v`` per annotator or prompt. Under the sum-to-zero constraint
    ``H^-1`` is the inverse on the constraint plane. ``data`` (and ``style_transform``)
    must be what the leaderboard was fitted on; a ``ValueError`` says so otherwise.
    """
    lb = leaderboard
    d = design(data, ties=lb.ties, style=tuple(lb.coefficients), style_transform=style_transform,
               cluster=cluster)
    rows, n = d.rows, d.rows.n_items
    if rows.items.names != lb.items.names:
        raise ValueError("the data's items differ from the leaderboard's")
    theta, prior_var = _theta(lb, d)
    link = get_link(lb.model)
    _, t = objective(theta, rows, link, prior_var)
    g, H = gradient_hessian(theta, rows, link, prior_var, t)
    gmax = float(np.abs(g).max()) if g.size else 0.0
    if gmax > FIT_MISMATCH_TOL * max(float(rows.counts.sum()), 1.0):
        raise ValueError(
            f"the leaderboard is not the fit of these data (max |gradient| {gmax:.3g}); pass "
            "the data and options (ties, style, style_transform) it was fitted with"
        )
    J = _unit_gradients(d, lb.model, theta)
    if cluster is None:
        ZJ = d.Z @ J  # per-vote contribution of each unit
        M = (ZJ.T @ sp.diags(d.unit_n) @ ZJ).toarray()
    else:
        assert d.Q is not None
        QJ = (d.Q @ J).toarray()  # per-cluster sums
        M = QJ.T @ QJ
    k = theta.size
    if prior_var is None:  # inverse on the plane sum(scores) = 0
        v = np.zeros(k)
        v[:n] = 1.0 / np.sqrt(n)
        Hinv = np.linalg.inv(H + np.outer(v, v)) - np.outer(v, v)
    else:
        Hinv = np.linalg.inv(H)
    cov = Hinv @ M @ Hinv
    return cov[:n, :n]


def _percentiles(ratings: Array, alpha: float, unbounded: NDArray[np.bool_] | None) -> Array:
    """Percentile intervals ``(n, 2)``. Where a round had no MLE because an item only won
    (``unbounded[0]``) or only lost (``unbounded[1]``), that round's rating counts as +inf
    (-inf) for the item: the samples hold the prior's finite stand-in, which would
    understate how far the rating can go. An interval end that falls among such rounds
    is infinite."""
    q = [alpha / 2, 1 - alpha / 2]
    if unbounded is None:
        return np.quantile(ratings, q, axis=0).T
    big = 1e300  # a finite stand-in for infinity that interpolates without NaN
    lo = np.quantile(np.where(unbounded[1], -big, ratings), q[0], axis=0)
    hi = np.quantile(np.where(unbounded[0], big, ratings), q[1], axis=0)
    lo[lo < -big / 10] = -np.inf
    hi[hi > big / 10] = np.inf
    return np.column_stack([lo, hi])


def _with_ranks(lb: Leaderboard, ri: RankInference) -> Leaderboard:
    info = {**lb.info, "rank_inference": {"method": ri.method, "critical_value": ri.critical_value,
                                          "confidence": ri.confidence}}
    return replace(lb, rank_intervals=ri.rank_intervals, tiers=ri.tiers, info=info)


def with_intervals(
    leaderboard: Leaderboard,
    data: PairwiseVotes | PairCounts | None = None,
    *,
    method: Literal["hessian", "sandwich", "bootstrap"] | None = None,
    cluster: Cluster | None = None,
    confidence: float = 0.95,
    rng: np.random.Generator | None = None,
    ties: str | None = None,
    style: Sequence[str] | None = None,
    style_transform: Literal["lmarena", "relative", "difference"] = "lmarena",
) -> Leaderboard:
    """Add rating intervals, rank intervals and tiers to a fitted leaderboard.

    Args:
        leaderboard: from :func:`~prefkit.rank.fit_bradley_terry` (or :func:`bootstrap`).
        data: the data it was fitted on; needed for ``"sandwich"`` only.
        method: ``"hessian"`` (``ratings +- z se`` with ``Cov = H^-1``), ``"sandwich"``
            (``Cov = H^-1 M H^-1``, per vote or per ``cluster``) or ``"bootstrap"``
            (percentiles of ``leaderboard.samples``; e.g. to change the confidence).
            Default: ``"bootstrap"`` if the leaderboard has samples, else ``"hessian"``.
        cluster: for ``"sandwich"``: sum score contributions per annotator or prompt.
        confidence: level of the rating intervals; family-wise level of the rank
            intervals and tiers.
        rng: for the Gaussian max-t critical value of the rank inference; without it the
            (conservative) Bonferroni value is used. Unused with ``"bootstrap"``.
        ties, style: optional; the fit options are read from the leaderboard, and these,
            when given, must agree with it (a ``ValueError`` otherwise).
        style_transform: as used in the fit (for ``"sandwich"`` with style).

    Returns:
        The leaderboard with ``intervals``, ``interval_method``, ``confidence``,
        ``rank_intervals`` and ``tiers`` set. With ``"sandwich"``, ``covariance`` becomes
        the sandwich covariance (the model-based one is kept in
        ``info["model_covariance"]``), so ``standard_errors()`` matches the intervals.
    """
    lb = leaderboard
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if ties is not None or style is not None:
        _options(lb, None, ties, style, None)  # raises if they disagree
    if method is None:
        method = "bootstrap" if lb.samples is not None else "hessian"
    alpha = 1.0 - confidence
    if method == "bootstrap":
        if lb.samples is None:
            raise ValueError("the leaderboard has no bootstrap samples; call bootstrap(...)")
        label = lb.interval_method if (lb.interval_method or "").startswith("bootstrap") else "bootstrap"
        info = dict(lb.info)
        # items whose estimate rests on the prior, and items the rounds cannot move (every
        # round the same: separable or tiny data), get the prior-regularised fit's Hessian
        # interval; a bootstrap that cannot resolve them must not look certain
        fallback = np.ptp(lb.samples, axis=0) <= 1e-12
        if lb.provisional is not None:
            fallback |= lb.provisional
        if fallback.any() and lb.covariance is not None:
            info["bootstrap_fallback"] = fallback
            ri = rank_inference(lb.scores, covariance=lb.covariance, confidence=confidence,
                                rng=rng)
            label = label.split(";")[0] + f"; hessian of the prior-regularised fit for " \
                f"{plural(int(fallback.sum()), 'item')} the bootstrap cannot resolve, and for " \
                "ranks"
        else:
            info.pop("bootstrap_fallback", None)
            ri = rank_inference(lb.scores, samples=lb.samples, confidence=confidence)
        out = replace(lb, interval_method=label, confidence=confidence, info=info)
        return _with_ranks(_reinterval(out), ri)
    info = dict(lb.info)
    if method == "hessian":
        cov = info.pop("model_covariance", lb.covariance)
        if cov is None and data is not None and "covariance" in lb.info:
            # a large fit left the dense covariance out (its cost: n^2 memory, n^3 time)
            from prefkit.rank.bradley_terry import hessian_covariance

            cov = hessian_covariance(lb, data, style_transform=style_transform)
        if cov is None:
            why = lb.info.get("covariance", "its Hessian was singular")
            raise ValueError(f"the leaderboard has no covariance ({why}); pass the data it "
                             "was fitted on to compute it")
        label = "hessian"
    elif method == "sandwich":
        if data is None:
            raise ValueError("method='sandwich' needs the data the leaderboard was fitted on")
        info.setdefault("model_covariance", lb.covariance)
        cov = sandwich_covariance(lb, data, cluster=cluster, style_transform=style_transform)
        label = "sandwich" if cluster is None else f"sandwich(cluster={cluster})"
    else:
        raise ValueError(f"method must be 'hessian', 'sandwich' or 'bootstrap', got {method!r}")
    ri = rank_inference(lb.scores, covariance=cov, confidence=confidence, rng=rng)
    out = replace(lb, covariance=cov, interval_method=label, confidence=confidence, info=info)
    return _with_ranks(_reinterval(out), ri)


def _reinterval(lb: Leaderboard) -> Leaderboard:
    """Rating intervals from the leaderboard's samples (bootstrap methods) or covariance,
    at its ``confidence``, relative to its anchor if it has one (the anchor's interval is
    then its rating exactly, as in LMArena's per-round anchoring)."""
    alpha = 1.0 - lb.confidence
    if (lb.interval_method or "").startswith("bootstrap"):
        unbounded = lb.info.get("bootstrap_unbounded")
        if unbounded is not None and lb.anchor is not None:
            a = lb.items.id(lb.anchor[0])  # the anchor unbounded above pushes the rest below
            up, down = unbounded[0] | unbounded[1][:, [a]], unbounded[1] | unbounded[0][:, [a]]
            up[:, a] = down[:, a] = False
            unbounded = np.stack([up, down])
        iv = _percentiles(lb.offset + ELO_SCALE * lb.anchored_samples(), alpha, unbounded)
        fallback = lb.info.get("bootstrap_fallback")
        if fallback is not None and fallback.any():
            hess = _reinterval(replace(lb, interval_method="hessian"))
            iv[fallback] = hess.intervals[fallback]  # type: ignore[index]
    else:
        se = lb.standard_errors()
        if se is None:
            raise ValueError("the leaderboard has no covariance (its Hessian was singular)")
        from scipy.stats import norm  # ~0.8 s to import: not for the bootstrap

        z = float(norm.isf(alpha / 2))
        iv = np.column_stack([lb.ratings - z * se, lb.ratings + z * se])
    if lb.anchor is not None:
        iv[lb.items.id(lb.anchor[0])] = lb.anchor[1]
    return replace(lb, intervals=iv)
