"""fit_plackett_luce: choix as the reference, Bradley-Terry at K = 2 on real votes,
recovery of known strengths, existence/connectivity handling and property tests."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared_paths import SHARED

from prefkit.choice.plackett_luce import ranking_design, sample_plackett_luce
from prefkit.data.records import ItemIndex, PairwiseVotes, Rankings, aggregate
from prefkit.rank.bradley_terry import ProvisionalWarning, fit_bradley_terry
from prefkit.rank.connectivity import DisconnectedGraphError
from prefkit.rank.plackett_luce import fit_plackett_luce, implied_pair_counts

choix = pytest.importorskip("choix")

#: choix's I-LSR run to tol=1e-13 converges to the same MLE; both solve to ~1e-12.
CHOIX_ILSR_TOL = 1e-9
#: choix.opt_* use scipy's Newton-CG (xtol=1e-12); it lands within ~1e-10 of the optimum.
CHOIX_OPT_TOL = 1e-8
#: Two exact solvers of the same convex problem (Newton here, Newton in fit_bradley_terry).
SAME_MLE_TOL = 1e-10
#: Hunter's MM stops when no score moves more than 1e-10; its error is of that order x the
#: inverse convergence rate.
MM_TOL = 1e-7

DATA = SHARED / "data" / "arena"


def _items(n: int) -> ItemIndex:
    return ItemIndex(tuple(f"m{i:02d}" for i in range(n)))


def _simulate(rng: np.random.Generator, s: np.ndarray, n_rank: int, k: int) -> np.ndarray:
    """Plackett-Luce rankings of random K-subsets (Gumbel trick), best first, (R, K)."""
    sets = np.argsort(rng.random((n_rank, s.size)), axis=1)[:, :k]
    return sample_plackett_luce(s, sets, rng)


def _full(ranked: np.ndarray, n: int) -> Rankings:
    r, k = ranked.shape
    return Rankings(_items(n), ranked.ravel(), np.tile(np.arange(k), r), np.arange(r + 1) * k)


def _top(ranked: np.ndarray, n: int, top: int) -> Rankings:
    """The first ``top`` places ordered, the rest an unordered tail."""
    r, k = ranked.shape
    lv = np.minimum(np.arange(k), top)
    return Rankings(
        _items(n), ranked.ravel(), np.tile(lv, r), np.arange(r + 1) * k,
        unordered_tail=np.ones(r, bool),
    )


@pytest.fixture(scope="module")
def simulated() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20240814)
    s = rng.normal(size=8)
    return s, _simulate(rng, s, 300, 4)


# -- choix as the reference -----------------------------------------------------------------
def test_full_rankings_match_choix(simulated: tuple[np.ndarray, np.ndarray]) -> None:
    _, ranked = simulated
    lb = fit_plackett_luce(_full(ranked, 8), prior=None)
    ilsr = choix.ilsr_rankings(8, list(ranked), tol=1e-13, max_iter=1000)
    np.testing.assert_allclose(lb.scores, ilsr - ilsr.mean(), atol=CHOIX_ILSR_TOL)
    opt = choix.opt_rankings(8, list(ranked), alpha=0.0, tol=1e-12)
    np.testing.assert_allclose(lb.scores, opt - opt.mean(), atol=CHOIX_OPT_TOL)
    assert lb.info["likelihood"] == "plackett_luce" and lb.info["n_iter"] < 15


def test_top1_choices_match_choix(simulated: tuple[np.ndarray, np.ndarray]) -> None:
    _, ranked = simulated
    lb = fit_plackett_luce(_top(ranked, 8, 1), prior=None)
    data = [(int(x[0]), [int(y) for y in x[1:]]) for x in ranked]
    ref = choix.ilsr_top1(8, data, tol=1e-13, max_iter=1000)
    np.testing.assert_allclose(lb.scores, ref - ref.mean(), atol=CHOIX_ILSR_TOL)


def test_top_k_partial_rankings_match_choix_top1_decomposition() -> None:
    rng = np.random.default_rng(5)
    s = rng.normal(size=10)
    ranked = _simulate(rng, s, 400, 5)
    lb = fit_plackett_luce(_top(ranked, 10, 2), prior=None)
    # a top-2 ranking is two top-1 choices: x1 among all five, x2 among the other four
    data = [(int(x[t]), [int(y) for y in x[t + 1 :]]) for x in ranked for t in range(2)]
    ref = choix.ilsr_top1(10, data, tol=1e-13, max_iter=1000)
    np.testing.assert_allclose(lb.scores, ref - ref.mean(), atol=CHOIX_ILSR_TOL)


def test_gaussian_prior_matches_choix_map(simulated: tuple[np.ndarray, np.ndarray]) -> None:
    ranked = simulated[1][:100]  # choix's pure-Python Newton-CG is slow on more
    lb = fit_plackett_luce(_full(ranked, 8), prior=2.0)
    # choix penalises alpha * ||theta||^2 (choix/opt.py, Top1Fcts.objective), i.e. a
    # N(0, 1 / (2 alpha)) prior; prior variance 2 is alpha = 0.25
    ref = choix.opt_rankings(8, list(ranked), alpha=0.25, tol=1e-12)
    np.testing.assert_allclose(lb.scores, ref, atol=CHOIX_OPT_TOL)
    assert lb.info["prior_variance"] == 2.0


def test_mm_equals_newton(simulated: tuple[np.ndarray, np.ndarray]) -> None:
    _, ranked = simulated
    r = _full(ranked, 8)
    newton, mm = fit_plackett_luce(r, prior=None), fit_plackett_luce(r, prior=None, method="mm")
    np.testing.assert_allclose(mm.scores, newton.scores, atol=MM_TOL)
    assert mm.covariance is not None and newton.covariance is not None
    np.testing.assert_allclose(mm.covariance, newton.covariance, rtol=1e-5)


# -- K = 2 is Bradley-Terry, on real votes ------------------------------------------------------
def _llmfao() -> tuple[PairwiseVotes, list[dict[str, str]]]:
    path = DATA / "llmfao_crowd_comparisons.csv"
    if not path.exists():
        pytest.skip(f"real data not found at {path}")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    label = {"left": "a", "right": "b", "tie": "tie"}
    votes = PairwiseVotes.from_names(
        [r["left"] for r in rows], [r["right"] for r in rows], [label[r["winner"]] for r in rows]
    )
    return votes, rows


def test_two_item_rankings_equal_bradley_terry_on_llmfao() -> None:
    """dustalov/llmfao crowd comparisons (8,931 votes, 59 models), ties left out."""
    votes, rows = _llmfao()
    bt = fit_bradley_terry(votes, ties="ignore", prior=None)
    lists = [
        [r["left"], r["right"]] if r["winner"] == "left" else [r["right"], r["left"]]
        for r in rows
        if r["winner"] != "tie"
    ]
    pl = fit_plackett_luce(Rankings.from_lists(lists, items=votes.items), prior=None)
    np.testing.assert_allclose(pl.scores, bt.scores, atol=SAME_MLE_TOL)
    assert pl.covariance is not None and bt.covariance is not None
    np.testing.assert_allclose(pl.covariance, bt.covariance, atol=SAME_MLE_TOL)
    np.testing.assert_allclose(pl.ratings, bt.ratings, atol=1e-7)
    assert pl.to_records()[0]["item"] == bt.to_records()[0]["item"]


def test_breslow_tie_is_one_win_each_on_llmfao() -> None:
    """A tied pair under Breslow = Bradley-Terry with the tie as half a win each, twice."""
    votes, rows = _llmfao()
    lists = [
        [[r["left"], r["right"]]] if r["winner"] == "tie"
        else [r["left"], r["right"]] if r["winner"] == "left" else [r["right"], r["left"]]
        for r in rows
    ]
    pl = fit_plackett_luce(Rankings.from_lists(lists, items=votes.items), prior=None)
    doubled = PairwiseVotes(
        votes.items, votes.a, votes.b, votes.outcome, np.where(votes.outcome == 2, 2.0, 1.0)
    )
    bt = fit_bradley_terry(doubled, ties="half", prior=None)
    np.testing.assert_allclose(pl.scores, bt.scores, atol=SAME_MLE_TOL)


# -- recovery -----------------------------------------------------------------------------------
def test_recovers_known_strengths_from_simulated_k_wise_data() -> None:
    rng = np.random.default_rng(11)
    s = np.linspace(-1.5, 1.5, 20)
    ranked = _simulate(rng, s, 4000, 5)
    lb = fit_plackett_luce(_full(ranked, 20))
    se = lb.standard_errors()
    assert se is not None
    z = (lb.scores - (s - s.mean())) / (se / 400 * np.log(10))
    assert np.max(np.abs(z)) < 4.0  # 20 roughly standard normal z-scores
    assert np.mean(np.abs(z) < 1.96) >= 0.8
    assert np.sqrt(np.mean((lb.scores - s + s.mean()) ** 2)) < 0.06
    assert np.corrcoef(lb.scores, s)[0, 1] > 0.995


# -- existence and connectivity ----------------------------------------------------------------
def test_disconnected_rankings_are_refused() -> None:
    r = Rankings.from_lists([["a", "b"], ["b", "a"], ["c", "d"], ["d", "c"]])
    with pytest.raises(DisconnectedGraphError, match="2 components"):
        fit_plackett_luce(r)


def test_never_chosen_item_gets_the_prior() -> None:
    r = Rankings.from_lists([["a", "b", "c"], ["b", "a", "c"], ["a", "c", "b"], ["b", "a", "d"]])
    with pytest.raises(ValueError, match="do not exist"):
        fit_plackett_luce(r, prior=None)
    with pytest.warns(ProvisionalWarning, match="d"):
        lb = fit_plackett_luce(r)
    assert lb.provisional is not None and lb.provisional.tolist() == [False, False, False, True]
    assert lb.info["prior_variance"] == 1.0 and abs(lb.scores.sum()) < 1e-12
    assert lb.scores[3] < 0 < lb.scores[0]  # d only lost, a mostly won (shrunk by the prior)
    with pytest.raises(ValueError, match="mm"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ProvisionalWarning)
        fit_plackett_luce(r, method="mm")


def test_unordered_tail_carries_no_order_between_its_items() -> None:
    # c and d only ever sit in unordered tails together: no c-d edge, yet both lose to a/b
    # and a, b alternate, so the graph is connected but c, d never win -> provisional
    r = Rankings.from_lists([["a", ["b", "c", "d"]], ["b", ["a", "c", "d"]]], unordered_tail=True)
    i, j, counts = implied_pair_counts(
        ranking_design(r.members, r.levels, r.offsets, n_items=4, unordered_tail=r.unordered_tail)
    )
    pairs = {(int(x), int(y)): c.tolist() for x, y, c in zip(i, j, counts)}
    assert (2, 3) not in pairs and pairs[(0, 1)] == [1.0, 1.0, 0.0]
    with pytest.warns(ProvisionalWarning):
        lb = fit_plackett_luce(r)
    assert lb.provisional is not None and lb.provisional.tolist() == [False, False, True, True]


def test_implied_pairs_agree_with_rankings_to_pairwise() -> None:
    rng = np.random.default_rng(4)
    lists = []
    for _ in range(30):
        names = list(rng.permutation(list("abcdef"))[: rng.integers(2, 6)])
        cut = int(rng.integers(1, len(names)))
        lists.append([*names[:cut], names[cut:]])  # ordered head, tied last level
    for tail in (False, True):
        r = Rankings.from_lists(lists, unordered_tail=tail)
        design = ranking_design(
            r.members, r.levels, r.offsets, n_items=r.n_items, unordered_tail=r.unordered_tail
        )
        i, j, counts = implied_pair_counts(design)
        ref = aggregate(r.to_pairwise())
        np.testing.assert_array_equal(i, ref.i)
        np.testing.assert_array_equal(j, ref.j)
        np.testing.assert_allclose(counts, ref.counts[:, :3])


# -- the leaderboard ----------------------------------------------------------------------------
def test_leaderboard_scale_anchor_and_votes(simulated: tuple[np.ndarray, np.ndarray]) -> None:
    _, ranked = simulated
    r = _full(ranked, 8)
    lb = fit_plackett_luce(r)
    assert lb.ratings.mean() == pytest.approx(1000.0)
    assert abs(lb.scores.sum()) < 1e-12
    assert lb.n_votes is not None and lb.n_votes.sum() == pytest.approx(300 * 4)
    pinned = fit_plackett_luce(r, anchor=("m03", 1114.0))
    assert pinned.rating("m03") == pytest.approx(1114.0)
    np.testing.assert_allclose(np.diff(pinned.ratings), np.diff(lb.ratings))
    with pytest.raises(ValueError, match="method"):
        fit_plackett_luce(r, method="lsr")  # type: ignore[arg-type]


# -- properties -----------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_relabelling_items_permutes_the_estimate(seed: int) -> None:
    rng = np.random.default_rng(seed)
    s = rng.normal(size=6)
    ranked = _simulate(rng, s, 60, 3)
    perm = rng.permutation(6)  # item i becomes perm[i]
    a = fit_plackett_luce(_full(ranked, 6), prior=3.0)
    b = fit_plackett_luce(_full(perm[ranked], 6), prior=3.0)
    np.testing.assert_allclose(b.scores[perm], a.scores, atol=1e-9)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_duplicating_the_data_changes_nothing(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ranked = _simulate(rng, rng.normal(size=5), 40, 3)
    once = _full(ranked, 5)
    twice = _full(np.concatenate([ranked, ranked]), 5)
    weighted = Rankings(once.items, once.members, once.levels, once.offsets, np.full(40, 2.0))
    a = fit_plackett_luce(once, prior=5.0)
    b = fit_plackett_luce(twice, prior=2.5)  # twice the data: halve the prior variance
    c = fit_plackett_luce(weighted, prior=2.5)
    np.testing.assert_allclose(b.scores, a.scores, atol=1e-9)
    np.testing.assert_allclose(c.scores, a.scores, atol=1e-9)


# -- items that appear in no comparison --------------------------------------------------
def test_an_item_never_compared_gets_the_prior_mean_as_choix() -> None:
    # issue 8.5: an item listed but never in a ranking (or a choice set) was refused with
    # DisconnectedGraphError even with a prior. With a N(0, v) prior the posterior mode is
    # identified and the unseen item sits at the prior mean. choix's MAP (opt_rankings /
    # opt_top1 / opt_pairwise) adds ``alpha * sum(theta**2)`` to the negative
    # log-likelihood (choix/opt.py PairwiseFcts.objective), i.e. a prior of variance
    # 1 / (2 alpha): v = 2.0 is alpha = 0.25.
    items = ItemIndex(("a", "b", "c", "d", "e"))
    lists = [["a", "b", "c"], ["b", "a", "c"], ["a", "c", "b"], ["c", "b", "a"], ["b", "c", "a"],
             ["a", "e", "b"], ["e", "c", "a"]]
    r = Rankings.from_lists(lists, items=items)
    lb = fit_plackett_luce(r, prior=2.0)
    ids = [[items.id(x) for x in lst] for lst in lists]
    ref = choix.opt_rankings(5, ids, alpha=0.25)
    np.testing.assert_allclose(lb.scores, ref - ref.mean(), atol=1e-7)
    assert lb.scores[items.id("d")] == pytest.approx(0.0, abs=1e-9)   # the prior mean
    assert lb.provisional.tolist() == [False, False, False, True, False]
    # top-1 choices: d never offered
    winners, sets = ["a", "b", "a", "c", "e", "b"], [["a", "b"], ["b", "c", "a"], ["a", "c"],
                                                     ["c", "b"], ["e", "a"], ["b", "e", "c"]]
    t = Rankings.from_choices(winners, sets, items=items)
    lb1 = fit_plackett_luce(t, prior=2.0)
    ref1 = choix.opt_top1(5, [(items.id(w), [items.id(x) for x in s if x != w])
                              for w, s in zip(winners, sets)], alpha=0.25)
    np.testing.assert_allclose(lb1.scores, ref1 - ref1.mean(), atol=1e-7)
    assert lb1.provisional[items.id("d")]
    # prior="auto" fits with N(0, 1) and says so; prior=None still refuses
    with pytest.warns(ProvisionalWarning, match="1 item appears in no comparison"):
        auto = fit_plackett_luce(r)
    ref_auto = choix.opt_rankings(5, ids, alpha=0.5)
    np.testing.assert_allclose(auto.scores, ref_auto - ref_auto.mean(), atol=1e-7)
    with pytest.raises(DisconnectedGraphError, match="or give a prior"):
        fit_plackett_luce(r, prior=None)
    # two real components stay refused even with a prior: they share no scale
    two = Rankings.from_lists([["a", "b"], ["b", "a"], ["c", "d"], ["d", "c"]], items=items)
    with pytest.raises(DisconnectedGraphError):
        fit_plackett_luce(two, prior=2.0)


def test_bradley_terry_item_never_compared_as_choix() -> None:
    items = ItemIndex(("a", "b", "c", "z"))
    pairs = [("a", "b"), ("b", "c"), ("c", "a"), ("a", "c"), ("b", "a"), ("a", "b")]
    v = PairwiseVotes(items, [items.id(w) for w, _ in pairs], [items.id(x) for _, x in pairs],
                      np.zeros(len(pairs), np.int64))
    lb = fit_bradley_terry(v, prior=2.0)
    ref = choix.opt_pairwise(4, [(items.id(w), items.id(x)) for w, x in pairs], alpha=0.25)
    np.testing.assert_allclose(lb.scores, ref - ref.mean(), atol=1e-7)
    assert lb.provisional.tolist() == [False, False, False, True]
