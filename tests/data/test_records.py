"""Records: validation, aggregation, rankings."""

from __future__ import annotations

import numpy as np
import pytest

from prefkit.data import ItemIndex, Outcome, PairCounts, PairwiseVotes, Rankings, aggregate


def test_aggregate_orients_outcomes_to_the_lower_id() -> None:
    v = PairwiseVotes.from_names(
        ["x", "y", "y", "x", "y"], ["y", "x", "x", "y", "x"], ["a", "a", "b", "tie", "both_bad"],
        weight=[1.0, 2.0, 1.0, 1.0, 0.5],
    )
    c = aggregate(v)
    assert c.i.tolist() == [0] and c.j.tolist() == [1]
    # x beats y once (w 1) and once as b (w 1); y beats x once (w 2); one tie; one both-bad
    assert c.counts.tolist() == [[2.0, 2.0, 1.0, 0.5]]
    assert c.n_votes == pytest.approx(5.5)
    np.testing.assert_allclose(c.matrix("half"), [[0, 2.75], [2.75, 0]])


def test_votes_reject_self_comparison_and_bad_weights() -> None:
    items = ItemIndex(("a", "b"))
    with pytest.raises(ValueError, match="compares 'a' with itself"):
        PairwiseVotes(items, [0], [0], [0])
    with pytest.raises(ValueError, match="weight nan"):
        PairwiseVotes(items, [0], [1], [0], [np.nan])
    with pytest.raises(ValueError, match="weight -1.0"):
        PairwiseVotes(items, [0], [1], [0], [-1.0])
    with pytest.raises(ValueError, match="outcome codes"):
        PairwiseVotes(items, [0], [1], [7])


def test_item_index_suggests_close_names() -> None:
    idx = ItemIndex(("gpt-4", "claude-2"))
    with pytest.raises(KeyError, match="did you mean 'gpt-4'"):
        idx.id("gpt4")
    with pytest.raises(ValueError, match="'a' appears twice"):
        ItemIndex(("a", "a"))


def test_rankings_layout_and_pairwise_breakdown() -> None:
    r = Rankings.from_lists([["x", ["y", "z"]], ["z", "x"]])
    assert r.offsets.tolist() == [0, 3, 5]
    p = r.to_pairwise()
    # ranking 1: x>y, x>z, y=z ; ranking 2: z>x
    names = p.items.names
    got = sorted((names[a], names[b], int(o)) for a, b, o in zip(p.a, p.b, p.outcome))
    assert got == [("x", "y", Outcome.A_WINS), ("x", "z", Outcome.A_WINS),
                   ("y", "z", Outcome.TIE), ("z", "x", Outcome.A_WINS)]


def test_top1_choices_do_not_tie_the_losers() -> None:
    r = Rankings.from_choices(["b"], [["a", "b", "c"]])
    p = r.to_pairwise()
    assert len(p) == 2 and set(p.outcome.tolist()) == {Outcome.A_WINS}
    with pytest.raises(ValueError, match="not in its choice set"):
        Rankings.from_choices(["d"], [["a", "b"]])


def test_counts_validate_shape() -> None:
    with pytest.raises(ValueError, match="shape"):
        PairCounts(ItemIndex(("a", "b")), [0], [1], [[1, 2, 3]])


def test_restrict_reindexes_votes_and_keeps_every_column() -> None:
    v = PairwiseVotes.from_names(
        ["x", "y", "x", "w"], ["y", "z", "z", "x"], ["a", "b", "tie", "both_bad"],
        weight=[1.0, 2.0, 3.0, 4.0], annotator=["p", "q", "r", "s"], prompt=["1", "2", "3", "4"],
        features={"len": ([1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0])},
        soft=[0.9, 0.2, 0.5, 0.4])
    r = v.restrict(["z", "x"])  # order given: z -> 0, x -> 1
    assert r.items.names == ("z", "x")
    assert (r.a.tolist(), r.b.tolist(), r.outcome.tolist()) == ([1], [0], [2])
    assert r.weight.tolist() == [3.0] and r.annotator.tolist() == ["r"]
    assert r.prompt.tolist() == ["3"] and r.soft.tolist() == [0.5]
    assert r.features["len"][0].tolist() == [3.0] and r.features["len"][1].tolist() == [7.0]
    # ids and a boolean mask give id order; the same votes either way
    ids = v.items.ids(["x", "y", "z"])
    mask = np.isin(np.arange(v.n_items), ids)
    for keep in (np.sort(ids), mask):
        s = v.restrict(keep)
        assert s.items.names == ("x", "y", "z") and len(s) == 3
        assert [s.items.names[k] for k in s.a] == ["x", "y", "x"]
    assert len(v.restrict([])) == 0
    with pytest.raises(KeyError, match="unknown item"):
        v.restrict(["nope"])
    with pytest.raises(ValueError, match="twice"):
        v.restrict(["x", "x"])
    with pytest.raises(ValueError, match="shape"):
        v.restrict(np.ones(2, bool))


def test_restrict_pair_counts_matches_restricting_the_votes() -> None:
    v = PairwiseVotes.from_names(["a", "b", "c", "a", "d"], ["b", "c", "a", "d", "c"],
                                 ["a", "b", "tie", "a", "b"], weight=[1.0, 2.0, 3.0, 4.0, 5.0])
    keep = ["a", "b", "c"]
    got, want = aggregate(v).restrict(keep), aggregate(v.restrict(keep))
    assert got.items == want.items
    assert got.i.tolist() == want.i.tolist() and got.j.tolist() == want.j.tolist()
    np.testing.assert_array_equal(got.counts, want.counts)
