"""Online ratings: sequential Elo and Bayesian Weng-Lin (OpenSkill) updates.

Both walk the votes in the order given; the result depends on that order (unlike the
batch fits in :mod:`prefkit.rank.bradley_terry`). A sequential loop over votes is
inherent, so the loops use plain Python floats: about 0.3 s per million pairwise votes for
Elo and 3-4 s for Weng-Lin (faster than the compiled openskill package on the same games).

* :func:`elo` is the online Elo of Chatbot Arena (FastChat's ``compute_online_elo``,
  ``fastchat/serve/monitor/elo_analysis.py``), step for step.
* :func:`weng_lin` is Weng & Lin (2011) "A Bayesian approximation method for online
  ranking" (JMLR 12), with teams of one, as the ``openskill`` package implements it
  (models ``BradleyTerryFull``, ``PlackettLuce``, ``ThurstoneMostellerFull``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from prefkit.data.records import ItemIndex, PairwiseVotes, Rankings
from prefkit.rank.leaderboard import ELO_BASE, ELO_SCALE, Leaderboard

__all__ = ["elo", "weng_lin", "WengLinRatings", "WENG_LIN_MODELS"]

Array = NDArray[np.float64]
WengLinModel = Literal["bradley_terry_full", "plackett_luce", "thurstone_mosteller_full"]


# -- Elo ---------------------------------------------------------------------------------
def elo(
    votes: PairwiseVotes,
    *,
    k: float = 4.0,
    scale: float = 400.0,
    base: float = 10.0,
    init: float | ArrayLike = 1000.0,
) -> Leaderboard:
    """Sequential Elo over the votes in order (ties and both-bad ties score 0.5).

    For each vote between ``a`` and ``b`` with score ``S_a`` (1, 0 or 0.5; or the soft
    preference when the votes carry one):

        E_a = 1 / (1 + base^((R_b - R_a) / scale)),   E_b = 1 / (1 + base^((R_a - R_b) / scale))
        R_a += k w (S_a - E_a),                        R_b += k w (1 - S_a - E_b)

    with ``w`` the vote weight (1 by default, so ``k w = k``). With the defaults this is
    FastChat's ``compute_online_elo`` exactly.

    Args:
        votes: pairwise votes, processed in row order.
        k: the K-factor (FastChat uses 4).
        scale, base: a gap of ``scale`` points means ``base:1`` odds.
        init: starting rating, a number or one per item (to continue an earlier run,
            pass its ``info["elo"]``).

    Returns:
        A :class:`Leaderboard` with ``scores = (R - mean R) ln(base) / scale`` (the
        log-strengths the Elo expectation uses) and ``offset = mean R``, so that
        ``ratings`` equal the raw Elo ratings ``R`` when ``scale=400, base=10``.
        ``info["elo"]`` always holds the raw ratings (a list).

    Example:
        >>> v = PairwiseVotes.from_names(["x", "x"], ["y", "y"], ["a", "tie"])
        >>> [round(r, 4) for r in elo(v).ratings.tolist()]
        [1001.977, 998.023]
    """
    n = votes.n_items
    rating = np.broadcast_to(np.asarray(init, np.float64), (n,)).tolist()
    assert votes.weight is not None
    out = votes.outcome
    sa = np.where(out == 0, 1.0, np.where(out == 1, 0.0, 0.5))
    if votes.soft is not None:
        sa = votes.soft
    kw = (k * votes.weight).tolist()
    for a, b, s, kk in zip(votes.a.tolist(), votes.b.tolist(), sa.tolist(), kw):
        ra = rating[a]
        rb = rating[b]
        ea = 1 / (1 + base ** ((rb - ra) / scale))
        eb = 1 / (1 + base ** ((ra - rb) / scale))
        rating[a] = ra + kk * (s - ea)
        rating[b] = rb + kk * (1 - s - eb)
    r = np.asarray(rating)
    center = float(r.mean()) if n else float(ELO_BASE)
    per_item = np.bincount(votes.a, votes.weight, n) + np.bincount(votes.b, votes.weight, n)
    return Leaderboard(
        votes.items,
        (r - center) * math.log(base) / scale,
        model="bradley_terry",
        ties="half",
        offset=center,
        n_votes=per_item,
        info={"method": "elo", "elo": r.tolist(), "k": k, "scale": scale, "base": base},
    )


# -- Weng-Lin (OpenSkill) -----------------------------------------------------------------
_SQRT2 = math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)
_EPS = 2.220446049250313e-16  # sys.float_info.epsilon, openskill's guard


def _cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / _SQRT2))


def _pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) * _INV_SQRT2PI


def _v(x: float, t: float) -> float:  # phi(x - t) / Phi(x - t)
    xt = x - t
    den = _cdf(xt)
    return -xt if den < _EPS else _pdf(xt) / den


def _w(x: float, t: float) -> float:  # v (v + x - t)
    xt = x - t
    if _cdf(xt) < _EPS:
        return 1.0 if x < 0 else 0.0
    vv = _v(x, t)
    return vv * (vv + xt)


def _vt(x: float, t: float) -> float:  # tie counterpart of v
    xx = abs(x)
    b = _cdf(t - xx) - _cdf(-t - xx)
    if b < 1e-5:
        return -x - t if x < 0 else -x + t
    a = _pdf(-t - xx) - _pdf(t - xx)
    return (-a if x < 0 else a) / b


def _wt(x: float, t: float) -> float:  # tie counterpart of w
    xx = abs(x)
    b = _cdf(t - xx) - _cdf(-t - xx)
    if b < _EPS:
        return 1.0
    vt = _vt(x, t)
    return ((t - xx) * _pdf(t - xx) + (t + xx) * _pdf(-t - xx)) / b + vt * vt


# Each update takes the game's means, variances and ranks (lower is better) and returns
# (omega, delta) per player: mu += omega, sigma *= sqrt(max(1 - delta, kappa)).
_Update = Callable[[list, list, list, float, float], tuple[list, list]]


def _full_pairing(mu: list, s2: list, rk: list, beta2: float, eps: float,
                  pair: Callable[[float, float, int, float, float], tuple[float, float]]
                  ) -> tuple[list, list]:
    """The "full" pairing of every two players: ``Omega_i`` and ``Delta_i`` summed over every
    opponent ``q``; ``pair(x, t, cmp, r, k)`` gives one opponent's two terms, with ``x =
    (mu_i - mu_q) / c_iq``, ``t = eps / c_iq``, ``cmp`` 1 (i ranked better), 0 (tie) or -1,
    ``r = sigma_i^2 / c_iq`` and ``k = gamma_i r / c_iq``."""
    n = len(mu)
    om, de = [0.0] * n, [0.0] * n
    for i in range(n):
        o = d = 0.0
        g = math.sqrt(s2[i])
        for q in range(n):
            if q == i:
                continue
            c = math.sqrt(s2[i] + s2[q] + 2.0 * beta2)
            r = s2[i] / c
            cmp = 1 if rk[q] > rk[i] else (0 if rk[q] == rk[i] else -1)
            do, dd = pair((mu[i] - mu[q]) / c, eps / c, cmp, r, g / c * r / c)
            o += do
            d += dd
        om[i], de[i] = o, d
    return om, de


def _bt_pair(x: float, t: float, cmp: int, r: float, k: float) -> tuple[float, float]:
    # the logistic without overflow: exp(-x) overflows a float once x < -709
    p = 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))
    score = 1.0 if cmp > 0 else (0.5 if cmp == 0 else 0.0)
    return r * (score - p), k * p * (1.0 - p)


def _tm_pair(x: float, t: float, cmp: int, r: float, k: float) -> tuple[float, float]:
    if cmp > 0:
        return r * _v(x, t), k * _w(x, t)
    if cmp < 0:
        return -(r * _v(-x, t)), k * _w(-x, t)
    return r * _vt(x, t), k * _wt(x, t)


def _bt_full(mu: list, s2: list, rk: list, beta2: float, eps: float) -> tuple[list, list]:
    return _full_pairing(mu, s2, rk, beta2, eps, _bt_pair)


def _tm_full(mu: list, s2: list, rk: list, beta2: float, eps: float) -> tuple[list, list]:
    return _full_pairing(mu, s2, rk, beta2, eps, _tm_pair)


def _pl(mu: list, s2: list, rk: list, beta2: float, eps: float) -> tuple[list, list]:
    n = len(mu)
    c = math.sqrt(sum(s2) + n * beta2)
    top = max(mu)
    e = [math.exp((m - top) / c) for m in mu]
    # per rank level g: size A_g and remaining-set sum S_g = sum_{r_s >= g} e_s; the sums
    # over q in the docstring collapse per level, as every q of a level has the same terms
    size: dict[int, int] = {}
    level_sum: dict[int, float] = {}
    for x, g in zip(e, rk):
        size[g] = size.get(g, 0) + 1
        level_sum[g] = level_sum.get(g, 0.0) + x
    levels = sorted(level_sum)
    remaining, acc = {}, 0.0
    for g in reversed(levels):
        acc += level_sum[g]
        remaining[g] = acc
    om, de = [0.0] * n, [0.0] * n
    for i in range(n):
        o = 1.0 / size[rk[i]]
        d = 0.0
        for g in levels:
            if g > rk[i]:
                break
            p = e[i] / remaining[g]
            o -= p
            d += p * (1.0 - p)
        om[i] = o * s2[i] / c
        de[i] = d * s2[i] / (c * c) * (math.sqrt(s2[i]) / c)
    return om, de


#: The Weng-Lin models, by name (teams of one; the "full" pairing of every two players).
WENG_LIN_MODELS: dict[str, _Update] = {
    "bradley_terry_full": _bt_full,
    "plackett_luce": _pl,
    "thurstone_mosteller_full": _tm_full,
}


@dataclass(frozen=True)
class WengLinRatings:
    """Posterior means ``mu`` and standard deviations ``sigma`` of every item's skill
    after a Weng-Lin run; items that never played keep their prior."""

    items: ItemIndex
    mu: Array
    sigma: Array
    model: str
    beta: float
    n_games: Array
    params: dict[str, Any] = field(default_factory=dict)

    def ordinal(self, z: float = 3.0) -> Array:
        """The conservative rating ``mu - z * sigma`` (openskill's ``ordinal``)."""
        return self.mu - z * self.sigma

    def to_leaderboard(self, *, by: Literal["mu", "ordinal"] = "mu", z: float = 3.0) -> Leaderboard:
        """A :class:`Leaderboard` on the Elo scale.

        Scores are ``(x - mean x) / (sqrt(2) beta)`` with ``x = mu`` (or the ordinal): the
        log-odds (probit units for Thurstone-Mosteller) that the model gives one item over
        another once the sigmas have shrunk to zero, so Elo-scale ratings read as for the
        batch fits. ``covariance`` is ``diag(sigma^2) / (2 beta^2)``, centred; ``info``
        holds ``mu``, ``sigma`` and ``ordinal``.
        """
        if by not in ("mu", "ordinal"):
            raise ValueError(f"by must be 'mu' or 'ordinal', got {by!r}")
        x = self.mu if by == "mu" else self.ordinal(z)
        unit = _SQRT2 * self.beta
        n = self.mu.size
        c = np.eye(n) - 1.0 / n
        cov = c @ np.diag(self.sigma**2 / unit**2) @ c
        return Leaderboard(
            self.items,
            (x - x.mean()) / unit,
            model="thurstone" if self.model == "thurstone_mosteller_full" else "bradley_terry",
            ties="weng_lin",
            offset=ELO_BASE,
            covariance=cov,
            n_votes=self.n_games,
            info={
                "method": f"weng_lin:{self.model}", "by": by, "mu": self.mu.tolist(),
                "sigma": self.sigma.tolist(), "ordinal": self.ordinal(z).tolist(),
                "elo_per_mu": ELO_SCALE / unit, **self.params,
            },
        )


def _games(data: PairwiseVotes | Rankings) -> tuple[list[list[int]], list[list[int]]]:
    """(members, ranks) per game, in order; a pairwise tie is a shared rank."""
    if isinstance(data, PairwiseVotes):
        if data.soft is not None:
            raise ValueError("Weng-Lin updates need a ranked outcome, not soft preferences")
        ra = np.where(data.outcome == 1, 1, 0)
        rb = np.where(data.outcome == 0, 1, 0)
        return (np.column_stack([data.a, data.b]).tolist(), np.column_stack([ra, rb]).tolist())
    if isinstance(data, Rankings):
        cut = data.offsets[1:-1]
        return (
            [m.tolist() for m in np.split(data.members, cut)],
            [lv.tolist() for lv in np.split(data.levels, cut)],
        )
    raise TypeError(f"expected PairwiseVotes or Rankings, got {type(data).__name__}")


def weng_lin(
    data: PairwiseVotes | Rankings,
    *,
    model: WengLinModel = "bradley_terry_full",
    mu: float | ArrayLike = 25.0,
    sigma: float | ArrayLike = 25.0 / 3.0,
    beta: float = 25.0 / 6.0,
    kappa: float = 1e-4,
    tau: float = 0.0,
    epsilon: float = 0.1,
) -> WengLinRatings:
    """Bayesian online ratings (Weng & Lin 2011, Algorithms 1-4) for K-wise games.

    Every game (a pairwise vote, or a ranking of K items) updates the Gaussian skill
    ``N(mu_i, sigma_i^2)`` of each player from the pre-game values of all of them. First
    ``sigma_i^2 += tau^2`` (dynamics), then, with ``c_iq = sqrt(sigma_i^2 + sigma_q^2 +
    2 beta^2)``, ``gamma_i = sigma_i / c`` and ``r`` the ranks:

    * ``bradley_terry_full``: ``p_iq = 1 / (1 + exp((mu_q - mu_i) / c_iq))``;
      ``Omega_i = sum_q sigma_i^2 / c_iq (S_iq - p_iq)`` with ``S = 1, 1/2, 0`` for a
      win, tie, loss; ``Delta_i = sum_q gamma_i sigma_i^2 / c_iq^2 p_iq (1 - p_iq)``.
    * ``plackett_luce``: ``c = sqrt(sum_q (sigma_q^2 + beta^2))``, ``p_iq = e^{mu_i/c} /
      sum_{r_s >= r_q} e^{mu_s/c}``, ``A_q`` = size of q's tie group;
      ``Omega_i = sigma_i^2 / c sum_{r_q <= r_i} ([q = i] - p_iq) / A_q``,
      ``Delta_i = gamma_i sigma_i^2 / c^2 sum_{r_q <= r_i} p_iq (1 - p_iq) / A_q``.
    * ``thurstone_mosteller_full``: the truncated-Gaussian ``v, w`` (ties: ``v~, w~``)
      with draw margin ``epsilon / c_iq``.

    and ``mu_i += Omega_i``, ``sigma_i *= sqrt(max(1 - Delta_i, kappa))``.

    Ties follow openskill 6.2: a shared rank is a tie, and tied players keep their own
    updates. A ranking's unordered tail is passed on as its ranks are, i.e. as a tie.
    Vote weights must be 1 (openskill has no per-game weight).

    Args:
        data: pairwise votes (a tie or both-bad tie is a shared rank) or rankings.
        model: one of :data:`WENG_LIN_MODELS`.
        mu, sigma: prior mean and standard deviation, numbers or one per item (pass an
            earlier result's ``mu`` and ``sigma`` to continue it).
        beta: performance noise; kappa: floor of the variance shrink factor;
        tau: additive dynamics (0 = none); epsilon: Thurstone-Mosteller draw margin.

    Example:
        >>> v = PairwiseVotes.from_names(["x", "x"], ["y", "z"], ["a", "a"])
        >>> r = weng_lin(v)
        >>> r.mu.round(3).tolist(), r.ordinal().round(3).tolist()
        ([29.883, 22.365, 22.6], [6.411, -1.832, -1.573])
    """
    if model not in WENG_LIN_MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {sorted(WENG_LIN_MODELS)}")
    update = WENG_LIN_MODELS[model]
    n = data.n_items
    if data.weight is not None and np.any(data.weight != 1.0):
        raise ValueError("Weng-Lin updates take each game once; weights must all be 1")
    mus = np.broadcast_to(np.asarray(mu, np.float64), (n,)).tolist()
    sig = np.broadcast_to(np.asarray(sigma, np.float64), (n,)).tolist()
    beta2, tau2 = beta * beta, tau * tau
    sqrt = math.sqrt
    members, ranks = _games(data)
    for mem, rk in zip(members, ranks):
        s = [sqrt(sig[i] * sig[i] + tau2) for i in mem]
        s2 = [x * x for x in s]
        om, de = update([mus[i] for i in mem], s2, rk, beta2, epsilon)
        for i, o, d, si in zip(mem, om, de, s):
            mus[i] += o
            sig[i] = si * sqrt(max(1.0 - d, kappa))
    params: dict[str, Any] = {"kappa": kappa, "tau": tau}
    if model == "thurstone_mosteller_full":
        params["epsilon"] = epsilon
    if isinstance(data, PairwiseVotes):
        n_games = np.bincount(data.a, minlength=n) + np.bincount(data.b, minlength=n)
    else:
        n_games = np.bincount(data.members, minlength=n)
    return WengLinRatings(
        data.items, np.asarray(mus), np.asarray(sig), model, float(beta),
        n_games.astype(float), params,
    )
