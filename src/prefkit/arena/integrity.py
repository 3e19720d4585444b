"""Vote-rigging checks: which voters and votes to set aside, and how much they matter.

All checks read a :class:`VoteTable` (one pairwise vote per row: item ids ``a``, ``b``, an
outcome code 0 a wins / 1 b wins / 2 tie / 3 both bad, the voter, the seconds from the
battle being shown to the vote). They are pure: arrays in, results out.

- :func:`sequential_test` — FastChat's ``outlier_detect``
  (``fastchat/serve/monitor/elo_analysis.py``, the anomalous-user test of Chiang et al. 2024,
  "Chatbot Arena", section 5): a voter's votes are taken in order; for each, the one-sided
  p-values of the vote against the consensus of the pair (the share of all decisive votes
  on that pair that are wins, resp. losses, of the lexicographically first model) give
  e-values ``1 / (2 p)``; their running products ``M_upper``, ``M_lower`` flag the voter as
  soon as one exceeds ``1 / alpha`` (Ville's inequality: a level-``alpha`` test at any
  stopping time). Only voters with at least ``min_votes`` (5) votes, and their first
  ``max_votes`` (100) votes, are tested, as FastChat does; FastChat's arithmetic is kept
  (a p-value of 0 flags at once; a pair without decisive votes makes the voter's products
  undefined from there on, so such a voter is not flagged).
- :func:`favouritism` — anomalous agreement: a voter whose votes favour one model beyond
  what the consensus Bradley-Terry fit predicts (``z = (O - E) / sqrt(V)`` over the votes
  involving the model, ``O`` its wins with ties as half, ``E = sum p``, ``V = sum p(1-p)``),
  with a Bonferroni bound over voters x models; voters flagged for the same model form a
  colluding group.
- :func:`bot_timing` — votes faster than a person reads (median seconds from battle to vote
  below ``min_seconds``) or too regular (coefficient of variation below ``min_cv``).
- :func:`with_and_without` — the leaderboard with and without the flagged votes.
- :func:`influence_removal` — how far the ranking moves when the ``k`` votes that most
  shrink a gap between neighbours are removed (first-order influence
  ``delta_r = -u' C grad l_r`` with ``C`` the covariance of the fit, ``u = e_i - e_j``; the
  chosen votes are then removed and the model refitted, so the movement reported is exact).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from prefkit.runs import plural

__all__ = ["REASONS", "VoteTable", "bot_timing", "check_arena", "favouritism",
           "influence_removal", "sequential_test", "with_and_without"]


@dataclass(frozen=True)
class VoteTable:
    """Pairwise votes in time order (see the module docstring)."""

    names: tuple[str, ...]
    a: NDArray[np.int64]
    b: NDArray[np.int64]
    outcome: NDArray[np.int64]
    voter: NDArray[np.object_]
    elapsed: NDArray[np.float64] | None = None

    @classmethod
    def from_tally(cls, tally: Any) -> VoteTable:
        names = tuple(sorted(tally.names, key=tally.names.__getitem__))
        return cls(names, np.asarray(tally.a, np.int64), np.asarray(tally.b, np.int64),
                   np.asarray(tally.outcome, np.int64),
                   np.asarray([v or "" for v in tally.voter], object),
                   np.asarray(tally.elapsed, float))

    def __len__(self) -> int:
        return int(self.a.size)

    def counts(self, keep: NDArray[np.bool_] | None = None) -> Any:
        from prefkit.data.records import ItemIndex, PairwiseVotes, aggregate

        w = None if keep is None else keep.astype(float)
        return aggregate(PairwiseVotes(ItemIndex(self.names), self.a, self.b,
                                       self.outcome.astype(np.int8), weight=w))


def _first_side_value(t: VoteTable) -> tuple[NDArray, NDArray, NDArray]:
    """Per vote: the sorted pair ``(lo, hi)`` by name and FastChat's vote value for ``lo``
    (1 win, 0.5 tie or both bad, 0 loss)."""
    names = np.asarray(t.names, object)
    a_first = names[t.a] <= names[t.b]
    lo = np.where(a_first, t.a, t.b)
    hi = np.where(a_first, t.b, t.a)
    won_a = t.outcome == 0
    won_b = t.outcome == 1
    first_won = (won_a & a_first) | (won_b & ~a_first)
    value = np.where(t.outcome >= 2, 0.5, np.where(first_won, 1.0, 0.0))
    return lo, hi, value


def sequential_test(t: VoteTable, *, alpha: float = 0.05, max_votes: int = 100,
                    min_votes: int = 5) -> dict[str, dict[str, Any]]:
    """FastChat's ``outlier_detect`` (module docstring). Returns, per tested voter,
    ``{"flagged", "votes"}`` (``votes``: the votes read when flagged, else all tested)."""
    lo, hi, value = _first_side_value(t)
    n = len(t.names)
    key = lo * n + hi
    decisive = value != 0.5
    wins = np.bincount(key[decisive], weights=value[decisive] == 1.0, minlength=n * n)
    total = np.bincount(key[decisive], minlength=n * n).astype(float)
    W, T = wins[key], total[key]
    with np.errstate(invalid="ignore", divide="ignore"):
        # share of decisive consensus votes <= / >= this vote (ratings are 1 win, 0 loss)
        p_upper = np.where(value == 1.0, 1.0, (T - W) / T)
        p_lower = np.where(value == 0.0, 1.0, W / T)
        p_upper = np.where(T > 0, p_upper, np.nan)
        p_lower = np.where(T > 0, p_lower, np.nan)
        e_up = np.log(1.0 / (2.0 * p_upper))
        e_lo = np.log(1.0 / (2.0 * p_lower))
    bound = math.log(1.0 / alpha)
    voters, first = np.unique(t.voter, return_index=True)
    out: dict[str, dict[str, Any]] = {}
    for v in voters[np.argsort(first)]:
        idx = np.flatnonzero(t.voter == v)
        if idx.size < min_votes or not v:
            continue
        idx = idx[:max_votes]
        with np.errstate(invalid="ignore"):
            up, low = np.cumsum(e_up[idx]), np.cumsum(e_lo[idx])
            over = (up > bound) | (low > bound)  # NaN compares False, as in FastChat
        hit = np.flatnonzero(over)
        out[str(v)] = {"flagged": bool(hit.size),
                       "votes": int(hit[0] + 1) if hit.size else int(idx.size)}
    return out


def _consensus(t: VoteTable, keep: NDArray[np.bool_] | None = None) -> NDArray[np.float64]:
    from prefkit.rank.matchmaking import MatchState

    return MatchState.fit(t.counts(keep), prior=1.0).scores


def favouritism(t: VoteTable, *, alpha: float = 0.01, min_votes: int = 5,
                scores: NDArray[np.float64] | None = None) -> dict[str, dict[str, Any]]:
    """Voters whose votes favour one model beyond the consensus (module docstring).
    Returns ``voter -> {"model", "z", "votes"}`` for the flagged ones."""
    from scipy.special import expit
    from scipy.stats import norm

    s = _consensus(t) if scores is None else scores
    p_a = expit(s[t.a] - s[t.b])
    y_a = np.where(t.outcome == 0, 1.0, np.where(t.outcome == 1, 0.0, 0.5))
    voters, vid = np.unique(t.voter, return_inverse=True)
    n_v, n_m = voters.size, len(t.names)
    O, E, V, N = (np.zeros(n_v * n_m) for _ in range(4))
    for side, p, y in ((t.a, p_a, y_a), (t.b, 1 - p_a, 1 - y_a)):
        cell = vid * n_m + side
        O += np.bincount(cell, y, n_v * n_m)
        E += np.bincount(cell, p, n_v * n_m)
        V += np.bincount(cell, p * (1 - p), n_v * n_m)
        N += np.bincount(cell, None, n_v * n_m)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where((N >= min_votes) & (V > 0), (O - E) / np.sqrt(V), -np.inf)
    z = z.reshape(n_v, n_m)
    n_tests = max(1, int(((N >= min_votes).reshape(n_v, n_m)).sum()))
    crit = float(norm.isf(alpha / n_tests))
    out: dict[str, dict[str, Any]] = {}
    for k in range(n_v):
        m = int(np.argmax(z[k]))
        if voters[k] and z[k, m] > crit:
            out[str(voters[k])] = {"model": t.names[m], "z": round(float(z[k, m]), 2),
                                   "votes": int(N.reshape(n_v, n_m)[k, m])}
    return out


def bot_timing(t: VoteTable, *, min_seconds: float = 2.0, min_cv: float = 0.05,
               min_votes: int = 5) -> dict[str, dict[str, Any]]:
    """Voters who vote faster than a person reads, or with machine-like regularity."""
    out: dict[str, dict[str, Any]] = {}
    if t.elapsed is None:
        return out
    for v in np.unique(t.voter):
        e = t.elapsed[(t.voter == v) & np.isfinite(t.elapsed)]
        if not v or e.size < min_votes:
            continue
        med = float(np.median(e))
        cv = float(np.std(e) / np.mean(e)) if np.mean(e) > 0 else 0.0
        if med < min_seconds or cv < min_cv:
            out[str(v)] = {"median_seconds": round(med, 3), "cv": round(cv, 3),
                           "votes": int(e.size)}
    return out


def with_and_without(t: VoteTable, keep: NDArray[np.bool_]) -> list[dict[str, Any]]:
    """Rating and rank of every model with all votes and with the kept votes only."""
    from prefkit.rank.leaderboard import to_elo

    out = []
    s_all, s_kept = _consensus(t), _consensus(t, keep)
    r_all = np.argsort(np.argsort(-s_all)) + 1
    r_kept = np.argsort(np.argsort(-s_kept)) + 1
    e_all, e_kept = to_elo(s_all), to_elo(s_kept)
    for k in np.argsort(-s_kept):
        out.append({"item": t.names[k], "rating_all": round(float(e_all[k]), 1),
                    "rating_kept": round(float(e_kept[k]), 1), "rank_all": int(r_all[k]),
                    "rank_kept": int(r_kept[k])})
    return out


def influence_removal(t: VoteTable, keep: NDArray[np.bool_] | None = None,
                      ks: tuple[int, ...] = (1, 10, 100)) -> list[dict[str, Any]]:
    """For each ``k``: remove the ``k`` votes that most shrink the gap of some pair of
    neighbours in the ranking (first-order influence, module docstring), refit, and report
    the largest movement over the pairs tried: how many models change rank and the most
    places one model moves."""
    from prefkit.rank.matchmaking import MatchState

    keep = np.ones(len(t), bool) if keep is None else keep
    st = MatchState.fit(t.counts(keep), prior=1.0)
    s, C = st.scores, st.covariance
    rank0 = np.argsort(np.argsort(-s))
    order = np.argsort(-s)
    p = 1.0 / (1.0 + np.exp(-(s[t.a] - s[t.b])))
    y = np.where(t.outcome == 0, 1.0, np.where(t.outcome == 1, 0.0, 0.5))
    g = (y - p) * keep  # d l_r / d (s_a - s_b)
    out = []
    for k in ks:
        best = {"k": k, "models_moved": 0, "max_places": 0, "pair": None}
        for x in range(len(order) - 1):
            i, j = order[x], order[x + 1]
            # gap change when vote r is removed: -u' C (e_a - e_b) g_r
            cu = C[:, i] - C[:, j]
            delta = -(cu[t.a] - cu[t.b]) * g
            pick = np.argsort(delta, kind="stable")[:k]
            pick = pick[delta[pick] < 0]
            if pick.size == 0:
                continue
            k2 = keep.copy()
            k2[pick] = False
            s2 = MatchState.fit(t.counts(k2), prior=1.0, init=s).scores
            moved = np.abs(np.argsort(np.argsort(-s2)) - rank0)
            if (int((moved > 0).sum()), int(moved.max())) > (best["models_moved"],
                                                              best["max_places"]):
                best = {"k": k, "models_moved": int((moved > 0).sum()),
                        "max_places": int(moved.max()),
                        "pair": [t.names[i], t.names[j]], "votes_removed": int(pick.size)}
        out.append(best)
    return out


REASONS = ("outlier", "favouritism", "timing")


def check_arena(board: Any, *, write: bool = False,
                reasons: tuple[str, ...] = REASONS) -> dict[str, Any]:
    """Run every check on the arena's votes; with ``write``, flag the voters found for
    ``reasons`` (once per voter and reason) so that the flag policy sets their votes
    aside. Every check is reported either way."""
    bad = set(reasons) - set(REASONS)
    if bad:
        raise ValueError(f"unknown reason(s) {sorted(bad)}; choose from {', '.join(REASONS)}")
    tally, _, _ = board.snapshot()
    t = VoteTable.from_tally(tally)
    if len(t) == 0:
        return {"votes": 0}
    seq = sequential_test(t)
    fav = favouritism(t)
    timing = bot_timing(t)
    found = ([(v, "outlier", f"sequential test, {plural(r['votes'], 'vote')}") for v, r in seq.items()
              if r["flagged"]]
             + [(v, "favouritism", f"favours {r['model']} (z={r['z']})") for v, r in fav.items()]
             + [(v, "timing", f"median {r['median_seconds']} s, cv {r['cv']}")
                for v, r in timing.items()])
    found = [f for f in found if f[1] in reasons]
    flagged = {v for v, _, _ in found}
    keep = ~np.isin(t.voter, list(flagged)) if flagged else np.ones(len(t), bool)
    report = {
        "votes": len(t), "voters_tested": len(seq),
        "outliers": sorted(v for v, r in seq.items() if r["flagged"]),
        "favouritism": fav, "timing": timing,
        "with_and_without": with_and_without(t, keep) if keep.any() else [],
        "influence": influence_removal(t, keep, ks=(1, 10)) if keep.any() else [],
    }
    report["flags_written"] = 0
    if write and found:
        have = {(v, r) for _, s_, v, r, _ in board.store.flags() if s_ is None}
        new = [(None, v, r, d) for v, r, d in found if (v, r) not in have]
        if new:
            board.store.add_flags(new)
        report["flags_written"] = len(new)
    return report
