"""The live tally: incremental per-pair counts equal the aggregation that ``prefkit rank``
reads from the export (same items, pairs, orientation and counts), rank breaking of K-wise
votes, the flag policy."""

from __future__ import annotations

import json

import numpy as np

from prefkit.arena.store import VoteRows
from prefkit.arena.tally import Tally


def _rows(rng, n, start=1):
    names = ["zeta", "alpha", "mu", "beta", "omega"]
    rows = {k: [] for k in VoteRows.__dataclass_fields__}
    for s in range(start, start + n):
        a, b, c = rng.choice(names, 3, replace=False)
        k_wise = rng.random() < 0.2
        rows["seq"].append(s)
        rows["battle_id"].append(f"b{s}")
        rows["voter"].append(f"v{s % 7}")
        rows["model_a"].append(None if k_wise else str(a))
        rows["model_b"].append(None if k_wise else str(b))
        rows["outcome"].append(None if k_wise else str(rng.choice(["a", "b", "tie", "both_bad"])))
        rows["ranking"].append(json.dumps([str(a), [str(b), str(c)]]) if k_wise else None)
        rows["prompt"].append("p")
        rows["created_at"].append(0.0)
        rows["elapsed"].append(1.0)
    return VoteRows(**rows)


def test_incremental_cells_equal_the_aggregate():
    rng = np.random.default_rng(0)
    t = Tally()
    cells: dict = {}
    for batch in range(5):
        start = len(t.a)
        t.extend(_rows(rng, 40, start=batch * 40 + 1))
        reasons = t.reasons([(1, 5, None, "identity", "x"), (2, None, "v3", "outlier", "")])
        w_all = t.weights(reasons)
        t.add_cells(cells, w_all[start:], start)
        inc, ref = Tally.cells_to_counts(cells), t.counts(w_all)
        assert inc.items == ref.items
        assert inc.i.tolist() == ref.i.tolist() and inc.j.tolist() == ref.j.tolist()
        assert np.array_equal(inc.counts, ref.counts)
    # vote 5 (one row, or three for a ranking) and every row of voter v3 are set aside
    assert {r for r in reasons if r} == {"identity", "voter:outlier"}
    assert int((w_all == 0).sum()) == sum(1 for r in reasons if r)
    assert t.weights(reasons, policy="include").sum() == len(t.a)


def test_rank_breaking_of_a_ranking():
    t = Tally()
    t.extend(VoteRows([1], ["b"], ["v"], [None], [None], [None],
                      [json.dumps(["x", ["y", "z"], "w"])], ["p"], [0.0], [None]))
    names = sorted(t.names, key=t.names.__getitem__)
    got = {(names[a], names[b], o) for a, b, o in zip(t.a, t.b, t.outcome)}
    assert got == {("x", "y", 0), ("x", "z", 0), ("x", "w", 0), ("y", "z", 2), ("y", "w", 0),
                   ("z", "w", 0)}


def test_live_board_says_when_the_bootstrap_lags(tmp_path):
    from prefkit.arena.board import BoardConfig, LiveBoard
    from prefkit.arena.store import open_store

    store = open_store(str(tmp_path / "a.db"))
    board = LiveBoard(store, BoardConfig(rounds=30, bootstrap_process=False))
    assert board.leaderboard()["arena"]["message"] == "no votes yet"
    store.import_votes([("x", "y", "a", "v", "p"), ("y", "z", "a", "v", "p"),
                        ("z", "x", "b", "v", "p"), ("x", "z", "tie", "v", "p"),
                        ("y", "x", "a", "v", "p"), ("z", "y", "a", "v", "p")] * 5)
    assert board.update()
    first = board.leaderboard()
    assert first["arena"]["lagging"] and "first bootstrap" in first["arena"]["message"]
    board.full_fit()
    caught = board.leaderboard()
    assert caught["arena"] == {**caught["arena"], "lagging": False, "bootstrap_lag_votes": 0,
                               "votes_seq": 30}
    store.import_votes([("y", "x", "a", "w", "p")])
    board.update()
    lag = board.leaderboard()
    assert lag["arena"]["lagging"] and lag["arena"]["bootstrap_lag_votes"] == 1
    old = {r["item"]: r for r in caught["leaderboard"]}
    for r in lag["leaderboard"]:  # fresh rating, the old interval's width around it
        o = old[r["item"]]
        assert r["rating"] != o["rating"]
        assert abs((r["upper"] - r["lower"]) - (o["upper"] - o["lower"])) < 1e-9
        assert r["tier"] == o["tier"]
    board.full_fit()
    assert not board.leaderboard()["arena"]["lagging"]
    store.close()
