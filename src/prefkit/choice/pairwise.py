"""Pairwise links: from a score difference to the probability of what was observed.

Every pairwise model in prefkit is a scorer plus one of these links. A *cell* is one
comparison (or a group of identical comparisons) between a "first" and a "second" item
with linear predictor ``eta = s_first - s_second (+ covariates)`` and observed weights
``counts[:, 0]`` (first wins), ``counts[:, 1]`` (second wins), ``counts[:, 2]`` (tie).

Each link returns the negative log-likelihood per cell and its first and second
derivatives with respect to ``eta`` and to the link's own tie parameter ``tau`` (a
scalar; unused by links without ties). These are pure numpy functions: arrays in,
arrays out.

Links (``tau`` is unconstrained; the natural parameter is derived from it):

* ``bradley_terry``: ``P(first) = sigmoid(eta)``; ties must be split beforehand
  (e.g. as half a win each, the LMArena convention) or dropped.
* ``thurstone``: ``P(first) = Phi(eta)`` (Thurstone-Mosteller case V).
* ``davidson`` (Davidson 1970): with ``nu = exp(tau)``,
  ``P(first) = e^{eta/2} / D``, ``P(tie) = nu / D``, ``D = e^{eta/2} + e^{-eta/2} + nu``.
* ``rao_kupper`` (Rao & Kupper 1967): with ``kappa = log(theta) = exp(tau)``,
  ``P(first) = sigmoid(eta - kappa)``, ``P(tie) = 1 - P(first) - P(second)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "CellTerms",
    "Link",
    "LINKS",
    "get_link",
    "bradley_terry_probability",
]

Array = NDArray[np.float64]


@dataclass(frozen=True)
class CellTerms:
    """Per-cell negative log-likelihood and its derivatives (all shape ``(R,)``)."""

    nll: Array
    d_eta: Array
    d_eta2: Array
    d_tau: Array
    d_tau2: Array
    d_eta_tau: Array


@dataclass(frozen=True)
class Link:
    """A pairwise link. ``has_ties`` links model ties and own a tie parameter ``tau``."""

    name: str
    has_ties: bool
    terms: Callable[[Array, Array, float], CellTerms]
    probabilities: Callable[[Array, float], tuple[Array, Array, Array]]
    tau_init: float = 0.0
    describe_tau: Callable[[float], dict[str, float]] = lambda tau: {}


def bradley_terry_probability(score_a: Array | float, score_b: Array | float) -> Array:
    """``P(a beats b) = sigmoid(score_a - score_b)``.

    >>> float(bradley_terry_probability(1.0, 0.0).round(4))
    0.7311
    """
    return expit(np.asarray(score_a, float) - np.asarray(score_b, float))


# scipy.special's expit and log_expit restated in numpy (the same formulas as its
# _logit.h: 1 / (1 + exp(-x)); x - log1p(exp(x)) for x < 0, else -log1p(exp(-x))) so that a
# fit does not import scipy.special (~0.15-0.3 s of CPU at start-up). log_ndtr (Thurstone)
# is still scipy's, imported on first use.
def expit(x: Array | float, out: Array | None = None) -> Array:
    """The logistic sigmoid ``1 / (1 + exp(-x))`` (``scipy.special.expit``)."""
    with np.errstate(over="ignore"):  # exp(-x) = inf for x < -709: the sigmoid is 0
        if out is None:
            r = np.exp(np.negative(x, dtype=float))
        else:  # in place in ``out``: no temporaries (the bootstrap's chord iterations)
            r = np.exp(np.negative(x, out=out), out=out)
    r += 1.0
    return np.divide(1.0, r, out=out)


def log_expit(x: Array | float) -> Array:
    """``log(sigmoid(x))``, stable at both ends (``scipy.special.log_expit``)."""
    x = np.asarray(x, dtype=float)
    neg = x < 0
    t = np.log1p(np.exp(np.where(neg, x, -x)))
    r = np.where(neg, x - t, -t)
    return r[()] if r.ndim == 0 else r


def log_ndtr(x: Array) -> Array:
    from scipy.special import log_ndtr as _log_ndtr

    return _log_ndtr(x)


def _zeros(n: int) -> Array:
    return np.zeros(n)


# -- Bradley-Terry ---------------------------------------------------------------------
def _bt_terms(eta: Array, counts: Array, tau: float) -> CellTerms:
    wi, wj = counts[:, 0], counts[:, 1]
    p = expit(eta)
    nll = -(wi * log_expit(eta) + wj * log_expit(-eta))
    total = wi + wj
    z = _zeros(eta.size)
    return CellTerms(nll, total * p - wi, total * p * (1.0 - p), z, z, z)


def _bt_probs(eta: Array, tau: float) -> tuple[Array, Array, Array]:
    eta = np.asarray(eta, float)
    return expit(eta), expit(-eta), np.zeros_like(eta)


# -- Thurstone (case V) ----------------------------------------------------------------
def _mills(x: Array) -> Array:
    """phi(x) / Phi(x), stable for very negative x."""
    return np.exp(-0.5 * x * x - 0.5 * np.log(2 * np.pi) - log_ndtr(x))


def _th_terms(eta: Array, counts: Array, tau: float) -> CellTerms:
    wi, wj = counts[:, 0], counts[:, 1]
    lp, lm = _mills(eta), _mills(-eta)
    nll = -(wi * log_ndtr(eta) + wj * log_ndtr(-eta))
    d1 = -wi * lp + wj * lm
    d2 = wi * lp * (eta + lp) + wj * lm * (-eta + lm)
    z = _zeros(eta.size)
    return CellTerms(nll, d1, d2, z, z, z)


def _th_probs(eta: Array, tau: float) -> tuple[Array, Array, Array]:
    eta = np.asarray(eta, float)
    return np.exp(log_ndtr(eta)), np.exp(log_ndtr(-eta)), np.zeros_like(eta)


# -- Davidson --------------------------------------------------------------------------
def _dav_parts(eta: Array, tau: float) -> tuple[Array, Array, Array, Array]:
    h = 0.5 * eta
    m = np.maximum(np.abs(h), tau)  # log-sum-exp shift
    ea, eb, et = np.exp(h - m), np.exp(-h - m), np.exp(tau - m)
    d = ea + eb + et
    log_d = m + np.log(d)
    return ea / d, eb / d, et / d, log_d


def _dav_terms(eta: Array, counts: Array, tau: float) -> CellTerms:
    wi, wj, wt = counts[:, 0], counts[:, 1], counts[:, 2]
    pi, pj, pt, log_d = _dav_parts(eta, tau)
    n = wi + wj + wt
    nll = -(0.5 * (wi - wj) * eta + wt * tau) + n * log_d
    diff = pi - pj
    d_eta = -0.5 * (wi - wj) + 0.5 * n * diff
    d_eta2 = n * 0.25 * ((pi + pj) - diff * diff)
    d_tau = -wt + n * pt
    d_tau2 = n * pt * (1.0 - pt)
    d_eta_tau = -0.5 * n * pt * diff
    return CellTerms(nll, d_eta, d_eta2, d_tau, d_tau2, d_eta_tau)


def _dav_probs(eta: Array, tau: float) -> tuple[Array, Array, Array]:
    pi, pj, pt, _ = _dav_parts(np.asarray(eta, float), tau)
    return pi, pj, pt


# -- Rao-Kupper ------------------------------------------------------------------------
def _rk_terms(eta: Array, counts: Array, tau: float) -> CellTerms:
    """Closed forms in log space. With kappa = log(theta):
    log P(first) = log sigmoid(eta - kappa), log P(second) = log sigmoid(-eta - kappa),
    log P(tie) = log(e^{2 kappa} - 1) - logaddexp(eta/2, kappa - eta/2)
                 - logaddexp(-eta/2, kappa + eta/2)."""
    wi, wj, wt = counts[:, 0], counts[:, 1], counts[:, 2]
    k = float(np.exp(tau))
    u, v = eta - k, -eta - k
    su, snu = expit(u), expit(-u)  # sigmoid(eta - k), sigmoid(k - eta)
    sv, snv = expit(v), expit(-v)  # sigmoid(-eta - k), sigmoid(eta + k)
    a1, c1 = su * snu, sv * snv
    em = -np.expm1(-2.0 * k)  # 1 - e^{-2k}
    g1, g2 = 2.0 / em, -4.0 * np.exp(-2.0 * k) / em**2
    log_t = np.log(em) + 2.0 * k - np.logaddexp(0.5 * eta, k - 0.5 * eta) - np.logaddexp(
        -0.5 * eta, k + 0.5 * eta
    )
    nll = -(wi * log_expit(u) + wj * log_expit(v) + wt * log_t)
    # derivatives of each log-probability with respect to (eta, kappa)
    d_e = wi * snu - wj * snv + wt * (1.0 - su - snv)
    d_k = -wi * snu - wj * snv + wt * (g1 - snu - snv)
    d_ee = -(wi * a1 + wj * c1 + wt * (a1 + c1))
    d_kk = -(wi * a1 + wj * c1) + wt * (g2 - a1 - c1)
    d_ek = wi * a1 - wj * c1 + wt * (a1 - c1)
    # negate (nll) and chain to tau: kappa = exp(tau), dk/dtau = d2k/dtau2 = k
    return CellTerms(nll, -d_e, -d_ee, -d_k * k, -(d_kk * k * k + d_k * k), -d_ek * k)


def _rk_probs(eta: Array, tau: float) -> tuple[Array, Array, Array]:
    k = float(np.exp(tau))
    a, b = expit(np.asarray(eta, float) - k), expit(-np.asarray(eta, float) - k)
    return a, b, 1.0 - a - b


LINKS: dict[str, Link] = {
    "bradley_terry": Link("bradley_terry", False, _bt_terms, _bt_probs),
    "thurstone": Link("thurstone", False, _th_terms, _th_probs),
    # Plackett-Luce restricted to a pair is Bradley-Terry: same link for win probabilities
    "plackett_luce": Link("plackett_luce", False, _bt_terms, _bt_probs),
    "davidson": Link(
        "davidson", True, _dav_terms, _dav_probs, tau_init=-1.0,
        describe_tau=lambda tau: {"nu": float(np.exp(tau))},
    ),
    "rao_kupper": Link(
        "rao_kupper", True, _rk_terms, _rk_probs, tau_init=-1.0,
        describe_tau=lambda tau: {"theta": float(np.exp(np.exp(tau)))},
    ),
}


def get_link(name: str) -> Link:
    """Look a link up by name; the error lists the known names."""
    try:
        return LINKS[name]
    except KeyError:
        raise ValueError(f"unknown link {name!r}; choose one of {sorted(LINKS)}") from None
