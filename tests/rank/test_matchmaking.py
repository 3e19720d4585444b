"""Active matchmaking and the arena simulation: hand-built beliefs whose best pair is
known, the rank-one algebra against direct inversion and a brute-force sum, batch and
K-set shapes, reproducibility, and the headline claim on Arena strengths (active beats
random pairs; the Bradley-Terry fit beats online Elo with K = 4)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.special import expit, ndtr
from shared_paths import SHARED

from prefkit.data import ItemIndex, PairCounts, PairwiseVotes
from prefkit.rank import fit_bradley_terry
from prefkit.rank.leaderboard import Leaderboard
from prefkit.rank.matchmaking import MatchState, _Gains, pair_gains, propose_pairs
from prefkit.rank.simulate import rank_accuracy, simulate_matchmaking, simulate_votes

DATA = SHARED / "data" / "arena"
ARENA = DATA / "chatbotarena_20240814_counts.json"
#: agreement of closed-form / rank-one results with direct computation
ALG_TOL = 1e-10


@pytest.fixture(scope="module")
def arena() -> Leaderboard:
    d = json.loads(ARENA.read_text())
    X, Y = np.array(d["X"]), np.array(d["Y"], float)
    return fit_bradley_terry(PairCounts(ItemIndex(tuple(d["models"])), X[:, 0], X[:, 1], Y))


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# -- which pair ---------------------------------------------------------------------------
def test_prefers_close_uncertain_pair_over_settled_ones() -> None:
    # 0 and 1: nearly equal and uncertain; 2 and 3: far from everything and well known
    st = MatchState(np.array([0.0, 0.05, 3.0, -3.0]), np.diag([0.5, 0.5, 0.01, 0.01]))
    for strategy in ("information", "uncertainty"):
        assert propose_pairs(st, rng=_rng(), strategy=strategy).tolist() == [[0, 1]]


def test_gain_falls_with_gap_and_with_certainty() -> None:
    # same variances, different gaps: the closer pair wins
    st = MatchState(np.array([0.0, 0.1, 5.0, 6.5]), 0.3 * np.eye(4))
    g = pair_gains(st)
    assert g[0, 1] > g[2, 3]
    # same gaps, different variances: the less certain pair wins
    st = MatchState(np.array([0.0, 0.1, 5.0, 5.1]), np.diag([0.4, 0.4, 0.05, 0.05]))
    g = pair_gains(st)
    assert g[0, 1] > g[2, 3]
    assert np.all(np.isneginf(np.diag(g)))


def test_settled_order_gets_no_votes_from_counts() -> None:
    # a >> b >> c settled by many votes; c vs d: two votes, order unknown
    items = ItemIndex(("a", "b", "c", "d"))
    counts = PairCounts(items, [0, 1, 2, 0], [1, 2, 3, 2],
                        [[900, 100, 0, 0], [900, 100, 0, 0], [1, 1, 0, 0], [990, 10, 0, 0]])
    pairs = propose_pairs(counts, n=1, rng=_rng(), prior=1.0)
    assert 3 in pairs[0]


def test_gains_equal_brute_force_sum(arena: Leaderboard) -> None:
    st = MatchState.from_leaderboard(arena)
    m, C = st.scores, st.covariance
    i, j = 5, 11
    u = np.zeros(m.size)
    u[[i, j]] = 1.0, -1.0
    p = expit(m[i] - m[j])
    beta = p * (1 - p) / (1 + p * (1 - p) * (u @ C @ u))
    g = C @ u
    total = 0.0
    for a in range(m.size):  # the docstring's sum, term by term
        for b in range(a + 1, m.size):
            v = C[a, a] + C[b, b] - 2 * C[a, b]
            omega = 2 * ndtr(-abs(m[a] - m[b]) / np.sqrt(v))
            total += omega * beta * (g[a] - g[b]) ** 2 / (2 * np.sqrt(v))
    assert pair_gains(st)[i, j] == pytest.approx(total, rel=ALG_TOL)


def test_rank_one_updates_match_direct_inverse() -> None:
    rng = _rng(1)
    A = rng.normal(size=(6, 6))
    C = A @ A.T / 6 + 0.2 * np.eye(6)
    m = rng.normal(size=6)
    gains = _Gains(MatchState(m, C), "information")
    H = np.linalg.inv(C)
    for i, j in [(0, 3), (2, 5), (0, 3)]:
        gains.commit(i, j)
        u = np.zeros(6)
        u[[i, j]] = 1.0, -1.0
        p = expit(m[i] - m[j])
        H += p * (1 - p) * np.outer(u, u)
    assert np.allclose(gains.C, np.linalg.inv(H), atol=ALG_TOL)
    from prefkit.rank.matchmaking import _laplacian

    assert np.allclose(gains.M, gains.C @ _laplacian(gains.lw) @ gains.C, atol=ALG_TOL)


# -- shapes of proposals ------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["information", "uncertainty", "random"])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_no_self_pairs_and_distinct_batches(arena: Leaderboard, strategy: str, k: int) -> None:
    out = propose_pairs(arena, n=25, k=k, rng=_rng(), strategy=strategy)  # type: ignore[arg-type]
    assert out.shape == (25, k)
    assert all(len(set(row)) == k for row in out.tolist())
    assert len({tuple(r) for r in out.tolist()}) == 25
    if k == 2:
        assert np.all(out[:, 0] < out[:, 1])


def test_batch_spreads_even_when_repeats_are_allowed() -> None:
    # one pair is by far the most uncertain; the rank-one updates must still move on
    st = MatchState(np.zeros(5), np.diag([4.0, 4.0, 0.2, 0.2, 0.2]))
    out = propose_pairs(st, n=10, rng=_rng(), distinct=False)
    assert out[0].tolist() == [0, 1]
    assert len({tuple(r) for r in out.tolist()}) > 1


def test_eligible_and_explore(arena: Leaderboard) -> None:
    ok = np.zeros(arena.n_items, bool)
    ok[[3, 7, 40, 90]] = True
    out = propose_pairs(arena, n=6, k=2, rng=_rng(), eligible=ok, explore=0.5)
    assert set(out.ravel()) <= {3, 7, 40, 90}
    assert len({tuple(r) for r in out.tolist()}) == 6  # all six pairs among four items


def test_votes_input_and_errors() -> None:
    v = PairwiseVotes.from_names(["a", "b", "c"], ["b", "c", "a"], ["a", "b", "tie"])
    assert propose_pairs(v, n=2, rng=_rng()).shape == (2, 2)
    with pytest.raises(ValueError, match="strategy"):
        propose_pairs(v, rng=_rng(), strategy="best")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must"):
        propose_pairs(v, rng=_rng(), k=4)
    lb = fit_bradley_terry(v, prior=1.0)
    from dataclasses import replace

    with pytest.raises(ValueError, match="prior"):
        propose_pairs(replace(lb, covariance=None), rng=_rng())


def test_proposal_is_fast_on_129_items(arena: Leaderboard) -> None:
    st = MatchState.from_leaderboard(arena)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        propose_pairs(st, rng=_rng())
        times.append(time.perf_counter() - t0)
    assert min(times) < 0.05  # ~1-2 ms single-threaded; generous for loaded machines


# -- simulation ---------------------------------------------------------------------------
def test_rank_accuracy_hand_cases() -> None:
    t = np.array([3.0, 2.0, 1.0, 0.0])
    assert rank_accuracy(t[::-1].copy(), t, top_k=2)["kendall_tau"] == -1.0
    flat = rank_accuracy(np.zeros(4), t, top_k=2)  # no information earns nothing
    assert flat == {"kendall_tau": 0.0, "pairs_correct": 0.0, "top_k": 0.0}
    one_swap = rank_accuracy(np.array([2.0, 3.0, 1.0, 0.0]), t, top_k=2)
    assert one_swap["kendall_tau"] == pytest.approx(4 / 6)
    assert one_swap["pairs_correct"] == pytest.approx(5 / 6)
    assert one_swap["top_k"] == 1.0


def test_simulated_votes_follow_davidson() -> None:
    n = 200_000
    s = np.array([1.0, 0.0])
    i, j = np.zeros(n, np.int64), np.ones(n, np.int64)
    out = simulate_votes(s, i, j, ties=0.0, rng=_rng())
    assert (out == 0).mean() == pytest.approx(expit(1.0), abs=0.005)
    out = simulate_votes(np.zeros(2), i, j, ties=0.3, rng=_rng())
    assert (out == 2).mean() == pytest.approx(0.3, abs=0.005)


def test_simulation_is_reproducible(tmp_path: Path) -> None:
    t = np.linspace(1.0, -1.0, 6)
    kw = dict(max_votes=200, batch=20, n_runs=2, ties=0.3)
    a = simulate_matchmaking(t, rng=_rng(7), **kw).to_dict()  # type: ignore[arg-type]
    b = simulate_matchmaking(t, rng=_rng(7), **kw).to_dict()  # type: ignore[arg-type]
    c = simulate_matchmaking(t, rng=_rng(8), **kw).to_dict()  # type: ignore[arg-type]
    assert json.dumps(a) == json.dumps(b)
    assert json.dumps(a) != json.dumps(c)
    res = simulate_matchmaking(t, rng=_rng(7), **kw)  # type: ignore[arg-type]
    res.plot(str(tmp_path / "curve.png"))
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "random/active" in res.table([0.5, 0.8])


def test_active_beats_random_and_bt_beats_elo_on_arena_strengths(arena: Leaderboard) -> None:
    """12 models at evenly spaced ranks of the real Arena fit, votes with 30% ties between
    equals, Kendall tau >= 0.95, curves averaged over 24 runs. Checked over 61 seeds
    (0-59 and 2024) when this test was written: random/active ranged from 1.14 (median
    1.5) and elo/random from 1.09 (median 2.0; Elo often never reaches the target in
    6,000 votes), so the 1.05 margins hold across seeds, not just for this one."""
    order = np.argsort(-arena.scores)
    truth = arena.scores[order[np.linspace(0, arena.n_items - 1, 12).round().astype(int)]]
    res = simulate_matchmaking(
        truth, target=0.95, max_votes=6000, batch=20, rng=_rng(0), n_runs=24,
        ties=0.3, stop_at_target=True,
    )
    active, random = res.votes_to_target("active"), res.votes_to_target("random")
    elo = res.votes_to_target("elo") or res.max_votes + res.config["batch"]
    assert active is not None and random is not None
    assert random >= 1.05 * active
    assert elo >= 1.05 * random


def test_state_fit_equals_map_leaderboard() -> None:
    items = ItemIndex(("a", "b", "c", "d"))
    counts = PairCounts(items, [0, 1, 2], [1, 2, 3], [[3, 1, 1, 0], [2, 2, 0, 1], [5, 0, 0, 0]])
    st = MatchState.fit(counts, prior=2.0)
    lb = fit_bradley_terry(counts, prior=2.0)
    assert np.allclose(st.scores - st.scores.mean(), lb.scores, atol=1e-8)
    assert lb.covariance is not None
    assert np.allclose(st.covariance, lb.covariance, atol=1e-10)
    prior_only = MatchState.fit(PairCounts(items, [], [], np.zeros((0, 4))), prior=2.0)
    assert np.array_equal(prior_only.covariance, 2.0 * np.eye(4))
