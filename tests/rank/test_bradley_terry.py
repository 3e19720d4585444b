"""Bradley-Terry fits: against choix and evalica on the real Chatbot Arena counts, closed
forms for two items, the properties of STYLE.md, and edge cases."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared_paths import SHARED

from prefkit.data import ItemIndex, PairCounts, PairwiseVotes
from prefkit.rank import (
    ELO_SCALE,
    DisconnectedGraphError,
    ProvisionalWarning,
    fit_bradley_terry,
    fit_thurstone,
)

DATA = SHARED / "data" / "arena"
ARENA = DATA / "chatbotarena_20240814_counts.json"
#: the issue asks for agreement with choix and evalica "to within 0.01 Elo"
ELO_TOL = 0.01


@pytest.fixture(scope="module")
def arena() -> PairCounts:
    d = json.loads(ARENA.read_text())
    X, Y = np.array(d["X"]), np.array(d["Y"], float)
    return PairCounts(ItemIndex(tuple(d["models"])), X[:, 0], X[:, 1], Y)


def _elo_diff(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float(np.abs(ELO_SCALE * (a - b)).max())


def test_arena_matches_choix(arena: PairCounts) -> None:
    choix = pytest.importorskip("choix")
    lb = fit_bradley_terry(arena)  # ties as half wins (LMArena)
    # choix 0.4.1: ilsr_pairwise_dense(comp_mat) with comp_mat[i, j] = wins of i over j;
    # alpha=0 gives the maximum-likelihood estimate
    ref = choix.ilsr_pairwise_dense(arena.matrix("half"), alpha=0.0, tol=1e-12, max_iter=10_000)
    assert _elo_diff(lb.scores, ref) < ELO_TOL


def test_arena_matches_evalica(arena: PairCounts) -> None:
    evalica = pytest.importorskip("evalica")
    lb = fit_bradley_terry(arena)
    names = arena.items.names
    xs = [names[i] for i in arena.i for _ in range(3)]
    ys = [names[j] for j in arena.j for _ in range(3)]
    c = arena.counts
    w = [float(v) for v in np.column_stack([c[:, 0], c[:, 1], c[:, 2] + c[:, 3]]).ravel()]
    win = [evalica.Winner.X, evalica.Winner.Y, evalica.Winner.Draw] * len(arena)
    # evalica 0.4.2 counts a Draw as tie_weight=0.5 of a win for each side, as we do
    res = evalica.bradley_terry(xs, ys, win, weights=w, tolerance=1e-12, limit=100_000)
    ref = np.log(res.scores.reindex(list(names)).to_numpy())
    assert _elo_diff(lb.scores, ref) < ELO_TOL


def test_arena_top_models_and_mm_agree(arena: PairCounts) -> None:
    lb = fit_bradley_terry(arena).anchored("mixtral-8x7b-instruct-v0.1", 1114.0)
    top = [r["item"] for r in lb.to_records()[:3]]
    assert top == ["chatgpt-4o-latest", "gemini-1.5-pro-exp-0801", "gpt-4o-2024-05-13"]
    assert lb.rating("mixtral-8x7b-instruct-v0.1") == pytest.approx(1114.0)
    mm = fit_bradley_terry(arena, method="mm")
    assert _elo_diff(lb.scores, mm.scores) < 1e-3
    assert lb.info["n_iter"] <= 10


def test_two_items_closed_form() -> None:
    # with two items the MLE is s_a - s_b = log(w_ab / w_ba)
    v = PairwiseVotes.from_names(["a"] * 10, ["b"] * 10, ["a"] * 7 + ["b"] * 3)
    lb = fit_bradley_terry(v)
    assert lb.scores[0] - lb.scores[1] == pytest.approx(math.log(7 / 3), abs=1e-9)
    # ties as half wins: (7 + 1) / (3 + 1)
    v2 = PairwiseVotes.from_names(["a"] * 12, ["b"] * 12, ["a"] * 7 + ["b"] * 3 + ["tie", "both_bad"])
    lb2 = fit_bradley_terry(v2)
    assert lb2.scores[0] - lb2.scores[1] == pytest.approx(math.log(8 / 4), abs=1e-9)


def test_davidson_two_items_closed_form() -> None:
    # Davidson with two items: P_a = w_a/N, P_b = w_b/N, P_t = t/N at the MLE, so
    # s_a - s_b = log(w_a / w_b) and nu = t / sqrt(w_a w_b)
    out = ["a"] * 6 + ["b"] * 3 + ["tie"] * 4
    v = PairwiseVotes.from_names(["a"] * 13, ["b"] * 13, out)
    lb = fit_bradley_terry(v, ties="davidson")
    assert lb.scores[0] - lb.scores[1] == pytest.approx(math.log(2.0), abs=1e-8)
    assert lb.tie_parameter["nu"] == pytest.approx(4 / math.sqrt(18), abs=1e-8)


def test_rao_kupper_two_items_closed_form() -> None:
    # P_a = pi_a / (pi_a + theta pi_b) = w_a / N and P_b = pi_b / (pi_b + theta pi_a) = w_b/N;
    # with x = pi_a/pi_b: x = (w_a/N) (x + theta), 1 = (w_b/N)(1 + theta x)
    wa, wb, t = 6.0, 3.0, 4.0
    n = wa + wb + t
    out = ["a"] * 6 + ["b"] * 3 + ["tie"] * 4
    lb = fit_bradley_terry(PairwiseVotes.from_names(["a"] * 13, ["b"] * 13, out), ties="rao_kupper")
    x, theta = math.exp(lb.scores[0] - lb.scores[1]), lb.tie_parameter["theta"]
    assert x / (x + theta) == pytest.approx(wa / n, abs=1e-8)
    assert 1 / (1 + theta * x) == pytest.approx(wb / n, abs=1e-8)


def test_thurstone_two_items_closed_form() -> None:
    from scipy.stats import norm

    v = PairwiseVotes.from_names(["a"] * 10, ["b"] * 10, ["a"] * 7 + ["b"] * 3)
    lb = fit_thurstone(v)
    assert lb.scores[0] - lb.scores[1] == pytest.approx(norm.ppf(0.7), abs=1e-8)


def test_disconnected_graph_is_reported_not_fitted() -> None:
    v = PairwiseVotes.from_names(["a", "b", "c", "d"], ["b", "a", "d", "c"], ["a", "a", "a", "a"])
    with pytest.raises(DisconnectedGraphError, match=r"2 components: \[a, b\].*\[c, d\]"):
        fit_bradley_terry(v)


def test_all_wins_flagged_provisional_with_prior() -> None:
    a = ["top", "top", "x", "y", "x"]
    b = ["x", "y", "y", "x", "y"]
    v = PairwiseVotes.from_names(a, b, ["a", "a", "a", "a", "b"])
    with pytest.raises(ValueError, match="only won or only lost.*prior"):
        fit_bradley_terry(v, prior=None)
    with pytest.warns(ProvisionalWarning, match="top"):
        lb = fit_bradley_terry(v)
    assert lb.provisional is not None
    assert lb.provisional[lb.items.id("top")] and not lb.provisional[lb.items.id("x")]
    assert np.all(np.isfinite(lb.ratings))
    assert lb.to_records()[0]["item"] == "top"


def test_style_control_recovers_a_planted_length_effect() -> None:
    # truth: three items, and longer answers win more (beta = 0.8 on the standardised
    # relative length); style control must recover both the strengths and beta
    rng = np.random.default_rng(7)
    n = 30_000
    true = np.array([0.5, 0.0, -0.5])
    a = rng.integers(0, 3, n)
    b = (a + rng.integers(1, 3, n)) % 3
    la, lb_ = rng.lognormal(6, 0.5, n), rng.lognormal(6, 0.5, n)
    rel = (la - lb_) / (la + lb_ + 1)  # LMArena's transform (the default)
    z = (rel - rel.mean()) / rel.std()
    p = 1 / (1 + np.exp(-(true[a] - true[b] + 0.8 * z)))
    out = np.where(rng.random(n) < p, 0, 1)
    votes = PairwiseVotes(ItemIndex(("i0", "i1", "i2")), a, b, out, features={"length": (la, lb_)})
    fit = fit_bradley_terry(votes, style=["length"])
    assert fit.coefficients["length"] == pytest.approx(0.8, abs=0.05)
    np.testing.assert_allclose(fit.scores, true - true.mean(), atol=0.05)
    assert fit.info["coefficient_se"]["length"] < 0.03


def test_style_control_matches_scipy_logistic_regression() -> None:
    # independent implementation: the same likelihood maximised by scipy's BFGS
    from scipy.optimize import minimize
    from scipy.special import log_expit

    rng = np.random.default_rng(3)
    n = 2_000
    a = rng.integers(0, 4, n)
    b = (a + rng.integers(1, 4, n)) % 4
    xa, xb = rng.random(n) * 10 + 1, rng.random(n) * 10 + 1
    out = rng.integers(0, 2, n)
    votes = PairwiseVotes(ItemIndex(tuple("wxyz")), a, b, out, features={"len": (xa, xb)})
    fit = fit_bradley_terry(votes, style=["len"], style_transform="difference")
    y = np.where(out == 0, 1.0, -1.0)

    def nll(t: np.ndarray) -> float:
        s = np.append(t[:3], -t[:3].sum())  # sum-to-zero
        return -float(log_expit(y * (s[a] - s[b] + t[3] * (xa - xb))).sum())

    ref = minimize(nll, np.zeros(4), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(fit.scores[:3], ref[:3], atol=1e-5)
    assert fit.coefficients["len"] == pytest.approx(ref[3], abs=1e-5)


def _fastchat_style_features(xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    # FastChat fastchat/serve/monitor/elo_analysis.py construct_style_matrices (add_one=True,
    # apply_ratio=1), as arena-hard's show_result.py: style_diff / (style_sum + 1), then
    # standardised with np.mean / np.std (population std) over the (duplicated) battles.
    d = (xa - xb) / (xa + xb + 1.0)
    return (d - d.mean()) / d.std()


def test_style_control_default_is_lmarenas_transform() -> None:
    # Header/list counts are small integers, where "+ 1" matters; LMArena's fit is a logistic
    # regression on FastChat's design with ties as one win each way. The same likelihood
    # maximised by scipy's BFGS on FastChat's features is the reference.
    from scipy.optimize import minimize
    from scipy.special import log_expit

    rng = np.random.default_rng(11)
    n = 3_000
    a = rng.integers(0, 4, n)
    b = (a + rng.integers(1, 4, n)) % 4
    xa, xb = rng.integers(0, 4, n).astype(float), rng.integers(0, 4, n).astype(float)
    z = np.array([0.3, 0.1, -0.1, -0.3])[a] - np.array([0.3, 0.1, -0.1, -0.3])[b]
    z = z + 0.5 * _fastchat_style_features(xa, xb)
    u = rng.random(n)
    out = np.where(u < 0.15, 2, np.where(u < 0.15 + 0.85 / (1 + np.exp(-z)), 0, 1))
    votes = PairwiseVotes(ItemIndex(tuple("wxyz")), a, b, out, features={"headers": (xa, xb)})
    fit = fit_bradley_terry(votes, style=["headers"])
    X = _fastchat_style_features(xa, xb)
    ya = np.where(out == 0, 1.0, np.where(out == 2, 0.5, 0.0))

    def nll(t: np.ndarray) -> float:
        s = np.append(t[:3], -t[:3].sum())  # sum-to-zero
        m = s[a] - s[b] + t[3] * X
        return -float((ya * log_expit(m) + (1 - ya) * log_expit(-m)).sum())

    ref = minimize(nll, np.zeros(4), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(fit.scores[:3], ref[:3], atol=1e-5)
    assert fit.coefficients["headers"] == pytest.approx(ref[3], abs=1e-5)
    # the former default, (a - b) / (a + b), is a different model: kept by name only
    rel = fit_bradley_terry(votes, style=["headers"], style_transform="relative")
    assert abs(rel.coefficients["headers"] - ref[3]) > 1e-3
    with pytest.raises(ValueError, match="lmarena, relative, difference"):
        fit_bradley_terry(votes, style=["headers"], style_transform="ratio")  # type: ignore[arg-type]


# -- properties (hypothesis) -----------------------------------------------------------
@st.composite
def connected_votes(draw: st.DrawFn) -> PairwiseVotes:
    n_items = draw(st.integers(3, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # a cycle guarantees a strongly connected win graph, plus random extra votes
    a = list(range(n_items)) + list(range(n_items))
    b = [(k + 1) % n_items for k in range(n_items)] + [(k - 1) % n_items for k in range(n_items)]
    out = [0] * n_items + [0] * n_items
    m = draw(st.integers(0, 30))
    ea = rng.integers(0, n_items, m)
    eb = (ea + rng.integers(1, n_items, m)) % n_items
    a += ea.tolist()
    b += eb.tolist()
    out += rng.integers(0, 4, m).tolist()
    w = rng.integers(1, 4, len(a)).astype(float)
    items = ItemIndex(tuple(f"m{k}" for k in range(n_items)))
    return PairwiseVotes(items, a, b, out, w)


@settings(max_examples=40, deadline=None)
@given(connected_votes(), st.sampled_from(["half", "davidson", "rao_kupper"]))
def test_swapping_sides_and_outcomes_negates_nothing_but_orientation(v: PairwiseVotes, ties: str) -> None:
    # writing every vote the other way round (b vs a, outcome mirrored) is the same data
    mirrored_out = np.where(v.outcome == 0, 1, np.where(v.outcome == 1, 0, v.outcome))
    v2 = PairwiseVotes(v.items, v.b, v.a, mirrored_out, v.weight)
    np.testing.assert_allclose(
        fit_bradley_terry(v, ties=ties).scores, fit_bradley_terry(v2, ties=ties).scores, atol=1e-7
    )


@settings(max_examples=40, deadline=None)
@given(connected_votes())
def test_swapping_every_winner_and_loser_negates_scores(v: PairwiseVotes) -> None:
    flipped = np.where(v.outcome == 0, 1, np.where(v.outcome == 1, 0, v.outcome))
    s1 = fit_bradley_terry(v).scores
    s2 = fit_bradley_terry(PairwiseVotes(v.items, v.a, v.b, flipped, v.weight)).scores
    np.testing.assert_allclose(s1, -s2, atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(connected_votes(), st.integers(0, 2**32 - 1))
def test_relabelling_items_permutes_the_estimate(v: PairwiseVotes, seed: int) -> None:
    perm = np.random.default_rng(seed).permutation(v.n_items)  # old id -> new id
    names = [""] * v.n_items
    for old, new in enumerate(perm):
        names[new] = v.items.names[old]
    v2 = PairwiseVotes(ItemIndex(tuple(names)), perm[v.a], perm[v.b], v.outcome, v.weight)
    s1, s2 = fit_bradley_terry(v).scores, fit_bradley_terry(v2).scores
    np.testing.assert_allclose(s2[perm], s1, atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(connected_votes())
def test_duplicating_the_data_leaves_the_estimate_unchanged(v: PairwiseVotes) -> None:
    def twice(x: np.ndarray) -> np.ndarray:
        return np.concatenate([x, x])

    v2 = PairwiseVotes(v.items, twice(v.a), twice(v.b), twice(v.outcome), twice(v.weight))
    for ties in ("half", "davidson"):
        np.testing.assert_allclose(
            fit_bradley_terry(v, ties=ties).scores, fit_bradley_terry(v2, ties=ties).scores, atol=1e-7
        )


@settings(max_examples=30, deadline=None)
@given(connected_votes())
def test_weights_equal_repetition(v: PairwiseVotes) -> None:
    reps = v.weight.astype(int)
    idx = np.repeat(np.arange(len(v)), reps)
    v2 = PairwiseVotes(v.items, v.a[idx], v.b[idx], v.outcome[idx])
    np.testing.assert_allclose(fit_bradley_terry(v).scores, fit_bradley_terry(v2).scores, atol=1e-7)


def test_warm_start_gives_the_same_answer(arena: PairCounts) -> None:
    lb = fit_bradley_terry(arena)
    lb2 = fit_bradley_terry(arena, init=lb.scores + 0.3)
    assert _elo_diff(lb.scores, lb2.scores) < 1e-6
    assert lb2.info["n_iter"] <= 2


def test_win_probability_matrix(arena: PairCounts) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lb = fit_bradley_terry(arena)
    p = lb.win_probability()
    np.testing.assert_allclose(p + p.T, 1.0, atol=1e-12)
    i, j = lb.items.id("chatgpt-4o-latest"), lb.items.id("claude-1")
    expected = 1 / (1 + 10 ** ((lb.ratings[j] - lb.ratings[i]) / 400))  # Elo's formula
    assert p[i, j] == pytest.approx(expected, rel=1e-12)
