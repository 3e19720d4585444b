"""Diagnostics: connectivity, coverage, intransitivity and annotator influence.

Measured references: on Chatbot Arena (../shared/data/arena) 848 cyclic triads are
observed where Bradley-Terry predicts 909.8 (ratio 0.93); on 20 data sets simulated from
Bradley-Terry (30 items, 9 votes per pair) observed / predicted = 1.02.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from scipy.stats import binom
from shared_paths import SHARED

from prefkit.data import ItemIndex, PairCounts, PairwiseVotes
from prefkit.rank import ELO_SCALE, fit_bradley_terry
from prefkit.rank.diagnostics import Diagnostics, diagnose, influence, intransitivity

DATA = SHARED / "data" / "arena"


def _counts(n: int, i, j, wins_i, wins_j, ties=None) -> PairCounts:  # type: ignore[no-untyped-def]
    items = ItemIndex(tuple(f"m{k:02d}" for k in range(n)))
    t = np.zeros(len(i)) if ties is None else ties
    return PairCounts(items, i, j, np.column_stack([wins_i, wins_j, t, np.zeros(len(i))]))


def test_connectivity_and_coverage_by_hand() -> None:
    v = PairwiseVotes.from_names(
        ["a", "a", "b", "c", "x", "x"], ["b", "b", "c", "a", "y", "y"],
        ["a", "tie", "a", "b", "a", "b"],
    )
    d = diagnose(v)
    assert d.connectivity.n_components == 2
    assert d.connectivity.components == (("a", "b", "c"), ("x", "y"))
    # votes per item: a 3, b 3, c 2, x 2, y 2; per pair: ab 2, bc 1, ac 1, xy 2
    np.testing.assert_array_equal(d.votes_per_item, [3, 3, 2, 2, 2])
    assert sorted(d.votes_per_pair.tolist()) == [1, 1, 2, 2] and d.pairs_compared == 4
    assert d.to_dict()["votes_per_item"] == {"min": 2.0, "median": 2.0, "max": 3.0}
    assert d.intransitivity is not None  # computed on the largest component
    assert any("largest component" in s for s in d.notes)
    assert "2 components" in d.describe()


def test_cyclic_triads_by_hand() -> None:
    i, j = np.array([0, 1, 0, 0, 1, 2]), np.array([1, 2, 2, 3, 3, 3])
    # 0>1, 1>2, 2>0 (a cycle), and 3 loses to everyone: one cyclic of four triads
    d = intransitivity(_counts(4, i, j, [5, 5, 1, 5, 5, 5], [1, 1, 5, 1, 1, 1]))
    assert (d.cyclic_triads, d.decided_triads) == (1, 4)
    # a split pair (3-3) decides nothing
    d = intransitivity(_counts(4, i, j, [5, 5, 3, 5, 5, 5], [1, 1, 3, 1, 1, 1]))
    assert (d.cyclic_triads, d.decided_triads) == (0, 2)


def test_expected_cycles_match_brute_force() -> None:
    """tr(P^3) / 3 against an explicit sum over triads and orientations."""
    rng = np.random.default_rng(0)
    n = 7
    i, j = np.triu_indices(n, 1)
    keep = rng.random(i.size) < 0.8
    i, j = i[keep], j[keep]
    w = rng.integers(0, 6, (i.size, 2)).astype(float)
    data = _counts(n, i, j, w[:, 0] + 1, w[:, 1] + 1)
    got = intransitivity(data).expected
    s = fit_bradley_terry(data, ties="ignore").scores
    P = {}
    for a, b, (x, y) in zip(i, j, w + 1):
        m, p = int(x + y), 1.0 / (1.0 + np.exp(s[b] - s[a]))
        P[a, b] = binom.sf(m // 2, m, p)
        P[b, a] = binom.cdf((m + 1) // 2 - 1, m, p)
    want = 0.0
    for a, b, c in itertools.combinations(range(n), 3):
        if all((x, y) in P for x, y in ((a, b), (b, c), (a, c))):
            want += P[a, b] * P[b, c] * P[c, a] + P[b, a] * P[c, b] * P[a, c]
    assert got == pytest.approx(want, rel=1e-10)


def _bt_counts(rng: np.random.Generator, n: int = 30, m: int = 9) -> PairCounts:
    s = rng.normal(0.0, 0.6, n)
    i, j = np.triu_indices(n, 1)
    w = rng.binomial(m, 1.0 / (1.0 + np.exp(-(s[i] - s[j]))))
    return _counts(n, i, j, w, m - w)


def test_bradley_terry_data_is_as_cyclic_as_predicted() -> None:
    rng = np.random.default_rng(1)
    obs, exp, pv = [], [], []
    for _ in range(12):
        d = intransitivity(_bt_counts(rng), rng=rng, simulations=100)
        obs.append(d.cyclic_triads)
        exp.append(d.expected)
        pv.append(d.p_value)
    assert sum(obs) / sum(exp) == pytest.approx(1.0, abs=0.1)  # measured 1.02 (20 sets)
    assert min(pv) > 0.01


def _rock_paper_scissors(rng: np.random.Generator, groups: int = 10, m: int = 15) -> PairCounts:
    """Groups of three (rock, paper, scissors) that beat each other in a cycle 85% of the
    time; between groups a transitive group strength decides. Bradley-Terry puts each
    group's three items level and so expects a cycle in a quarter of those triads."""
    n = 3 * groups
    level = np.repeat(1.5 * np.arange(groups), 3)
    i, j = np.triu_indices(n, 1)
    eta = level[i] - level[j]
    same = (i // 3) == (j // 3)
    # within a group: item 3g beats 3g+1 beats 3g+2 beats 3g
    first_wins = ((j - i) == 1)
    eta = np.where(same, np.where(first_wins, 1.7, -1.7), eta)
    w = rng.binomial(m, 1.0 / (1.0 + np.exp(-eta)))
    return _counts(n, i, j, w, m - w)


def test_rock_paper_scissors_is_far_more_cyclic_than_predicted() -> None:
    d = intransitivity(_rock_paper_scissors(np.random.default_rng(2)),
                       rng=np.random.default_rng(3), simulations=500)
    assert d.cyclic_triads >= 8  # 10 planted cycles, each decided with p ~ 0.95
    assert d.ratio > 2.5
    assert d.p_value is not None and d.p_value < 0.01


def test_arena_is_consistent_with_bradley_terry() -> None:
    path = DATA / "chatbotarena_20240814_counts.json"
    if not path.exists():
        pytest.skip(f"real data not found at {path}")
    raw = json.loads(path.read_text())
    X, Y = np.asarray(raw["X"]), np.asarray(raw["Y"], float)
    pc = PairCounts(ItemIndex(tuple(raw["models"])), X[:, 0], X[:, 1], Y)
    d = intransitivity(pc)
    assert (d.cyclic_triads, d.expected) == (848, pytest.approx(909.8, abs=0.1))


def _with_adversary(rng: np.random.Generator) -> tuple[PairwiseVotes, str]:
    """40 honest annotators (60 Bradley-Terry votes each) and one who always votes for
    the weaker item (150 votes)."""
    n = 10
    s = np.linspace(-1.0, 1.0, n)
    items = ItemIndex(tuple(f"m{k}" for k in range(n)))
    honest = np.repeat(np.arange(40), 60)
    a = rng.integers(0, n, honest.size + 150)
    b = (a + rng.integers(1, n, a.size)) % n
    p = 1.0 / (1.0 + np.exp(-(s[a] - s[b])))
    out = (rng.random(a.size) >= p).astype(int)
    out[honest.size :] = (s[a[honest.size :]] > s[b[honest.size :]]).astype(int)  # b if a stronger
    ann = np.r_[honest.astype(str), np.full(150, "troll")].astype(object)
    return PairwiseVotes(items, a, b, out, annotator=ann), "troll"


def test_influence_finds_the_planted_adversary() -> None:
    v, troll = _with_adversary(np.random.default_rng(4))
    inf = influence(v)
    top = inf.top(2)
    assert top[0]["annotator"] == troll
    assert top[0]["max_elo_change"] > 2 * top[1]["max_elo_change"]
    assert top[0]["votes"] == 150 and top[0]["items_reranked"] >= 1
    # the batched leave-one-out refit equals a fit without the troll's votes
    g = inf.names.index(troll)
    full = fit_bradley_terry(v)
    drop = fit_bradley_terry(v.select(v.annotator != troll))
    want = ELO_SCALE * np.abs(drop.scores - full.scores).max()
    assert inf.max_elo_change[g] == pytest.approx(want, abs=1e-5)


def test_influence_flags_unidentifiable_removals() -> None:
    """Only annotator 'z' compared item 'd': without them 'd' has no rating."""
    v = PairwiseVotes.from_names(
        ["a", "b", "c", "a", "b", "c", "a"], ["b", "c", "a", "c", "a", "b", "d"],
        ["a", "a", "a", "a", "a", "a", "tie"],
        annotator=np.array(["x", "x", "x", "y", "y", "y", "z"], object),
    )
    inf = influence(v)
    assert inf.identifiable.tolist() == [True, True, False]


def test_diagnose_reports_json_and_text() -> None:
    v, troll = _with_adversary(np.random.default_rng(5))
    d = diagnose(v, rng=np.random.default_rng(0), simulations=50)
    assert isinstance(d, Diagnostics) and d.influence is not None
    out = json.loads(json.dumps(d.to_dict()))  # JSON-ready
    assert out["n_items"] == 10 and out["n_votes"] == len(v)
    assert out["influence"]["top"][0]["annotator"] == troll
    assert out["connectivity"]["n_components"] == 1
    text = d.describe()
    assert "most influential annotators: troll (150 votes)" in text
    assert "cyclic of" in text
    counts_only = diagnose(PairCounts(v.items, [0, 1, 0], [1, 2, 2], [[3, 1, 0, 0]] * 3))
    assert counts_only.influence is None
