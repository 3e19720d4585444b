"""Flags and lifts change the live counts incrementally (only the rows of the flagged votes
and voters move); after any sequence of flagging and unflagging the live board equals a
from-scratch tally: ``Tally.reasons`` over the flags in force and ``Tally.counts``, which
aggregates through :func:`prefkit.data.records.aggregate` (the path ``prefkit rank`` reads
an export with), and the whole path through a real server equals ``prefkit rank`` on the
export."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pytest
from arena_helpers import api, prefkit, wait_caught_up, write_outputs
from test_board import _rows

from prefkit.arena.board import BoardConfig, LiveBoard
from prefkit.arena.store import open_store
from prefkit.arena.tally import Tally


def _same_counts(x, y) -> None:
    assert x.items == y.items
    assert x.i.tolist() == y.i.tolist() and x.j.tolist() == y.j.tolist()
    assert np.array_equal(x.counts, y.counts)


def _from_scratch(tally: Tally, flags, lifted, policy="exclude", both_bad="tie"):
    in_force = [f for f in flags if f[0] not in lifted]
    reasons = tally.reasons(in_force)
    return reasons, tally.counts(tally.weights(reasons, policy, both_bad))


def test_incremental_flags_and_lifts_equal_the_from_scratch_tally():
    """Random votes, flags on votes and voters, lifts, interleaved: after every step the
    incremental reasons and cells equal the from-scratch ones."""
    rng = np.random.default_rng(3)
    for policy, both_bad in (("exclude", "tie"), ("exclude", "ignore"), ("include", "tie")):
        t = Tally()
        cells: dict = {}
        flags: list[tuple] = []
        lifted: set[int] = set()
        for step in range(12):
            start = len(t.a)
            t.extend(_rows(rng, 30, start=step * 30 + 1))
            for _ in range(int(rng.integers(0, 4))):  # new flags: a vote's or a voter's
                fid = len(flags) + 1
                if rng.random() < 0.5:
                    flags.append((fid, int(rng.integers(1, t.last_seq + 5)),
                                  None, str(rng.choice(["identity", "manual"])), ""))
                else:
                    flags.append((fid, None, f"v{rng.integers(0, 8)}",
                                  str(rng.choice(["outlier", "timing"])), ""))
            if flags and rng.random() < 0.6:  # lift a few (some twice, some unknown)
                lifted |= {int(x) for x in rng.integers(1, len(flags) + 3, 2)}
            before = list(t.row_reasons[:start])
            changed = t.apply_flags(flags, sorted(lifted))
            # the returned rows are exactly those whose reasons changed, with the old ones
            assert {k for k, _ in changed if k < start} == {
                k for k in range(start) if before[k] != t.row_reasons[k]}
            assert all(before[k] == old for k, old in changed if k < start)
            old = [(k, r) for k, r in changed if k < start]
            if old:
                idx = [k for k, _ in old]
                d = (t.weights([t.row_reasons[k] for k in idx], policy, both_bad, rows=idx)
                     - t.weights([r for _, r in old], policy, both_bad, rows=idx))
                t.add_cells(cells, d, rows=idx)
            t.add_cells(cells, t.weights(t.row_reasons[start:], policy, both_bad, start), start)
            reasons, ref = _from_scratch(t, flags, lifted, policy, both_bad)
            assert t.row_reasons == reasons
            _same_counts(Tally.cells_to_counts(cells), ref)
        assert any(reasons) and len(lifted & {f[0] for f in flags}) > 0


def test_live_board_after_flagging_and_unflagging_equals_a_fresh_tally(db):
    """On a real database (SQLite and PostgreSQL): the board kept current through flags and
    lifts equals a board built from scratch and the from-scratch tally, counts and
    leaderboard alike."""
    store = open_store(db)
    rng = np.random.default_rng(0)
    names = ["m0", "m1", "m2", "m3", "m4"]
    votes = []
    for k in range(400):
        a, b = rng.choice(names, 2, replace=False)
        votes.append((str(a), str(b), str(rng.choice(["a", "b", "tie", "both_bad"])),
                      f"voter{k % 9}", f"p{k % 5}"))
    store.import_votes(votes)
    board = LiveBoard(store, BoardConfig(rounds=10, bootstrap_process=False))
    assert board.update()
    first = board.counts

    def check() -> None:
        fresh = LiveBoard(store, BoardConfig(rounds=10, bootstrap_process=False))
        fresh.update()
        _same_counts(board.counts, fresh.counts)
        reasons, ref = _from_scratch(board.tally, store.flags(), set(store.flag_lifts()))
        assert board.tally.row_reasons == reasons
        _same_counts(board.counts, ref)
        # the same fit (the live one warm-started from the last scores: equal to 1e-9)
        live, cold = board.point["leaderboard"], fresh.point["leaderboard"]
        assert [{**r, "score": 0} for r in live] == [{**r, "score": 0} for r in cold]
        assert np.allclose([r["score"] for r in live], [r["score"] for r in cold], atol=1e-9)

    store.add_flags([(5, None, "manual", "x"), (None, "voter3", "outlier", ""),
                     (17, None, "identity", "openai"), (None, "voter5", "timing", "")])
    assert board.update()
    check()
    assert board.counts.counts.sum() < first.counts.sum()
    ids = [f[0] for f in store.flags()]
    assert store.lift_flags([ids[1], ids[3], 999], why="a person after all") == [ids[1], ids[3]]
    assert store.lift_flags([ids[1]]) == []  # once
    assert board.update()
    check()
    store.add_flags([(None, "voter3", "favouritism", "")])  # flagged again, for another reason
    store.import_votes(votes[:40])  # and new votes meanwhile
    assert board.update()
    check()
    store.lift_flags([f[0] for f in store.flags()])  # every flag lifted: all votes count
    assert board.update()
    check()
    _same_counts(board.counts, board.tally.counts(np.ones(len(board.tally.a))))
    assert [a[3] for a in store.audit_log()] == [  # a lift that lifted nothing: no entry
        "import_votes", "flag", "lift_flags", "flag", "import_votes", "lift_flags"]
    store.close()


def _caught_up(server, n: int, aside: int, timeout: float = 60.0) -> dict:
    """The leaderboard once caught up with vote ``n`` and setting ``aside`` rows aside."""
    deadline = time.monotonic() + timeout
    while True:
        lb = wait_caught_up(server, n)
        if lb["arena"]["rows_set_aside"] == aside or time.monotonic() > deadline:
            return lb
        time.sleep(0.2)


def test_lifting_through_the_admin_route_reaches_the_live_leaderboard(sqlite_db, servers,
                                                                      tmp_path):
    """A real server: a voter flagged (integrity round), then the flag lifted through
    ``POST /api/admin/flags/lift``; the live leaderboard counts the votes again and equals
    ``prefkit rank`` on the export; the flag stays in the log, marked lifted."""
    prefkit("arena", "add-outputs", str(write_outputs(tmp_path / "o.jsonl", leak=False)),
            "--db", sqlite_db)
    s = servers(sqlite_db, "--rounds", "30", "--seed", "3", "--voter-rate", "0")
    n = 0
    for voter in ("honest-1", "honest-2", "suspect"):
        c = api(s, voter)
        for _ in range(8):
            b = c.post("/api/battles").json()
            assert c.post(f"/api/battles/{b['battle_id']}/vote",
                          json={"winner": "a"}).status_code == 200
            n += 1
    wait_caught_up(s, n)
    store = open_store(sqlite_db)
    store.add_flags([(None, "suspect", "manual", "checked by hand")])
    store.close()
    assert _caught_up(s, n, aside=8)["arena"]["rows_set_aside"] == 8
    flags = httpx.get(s.url + "/api/admin/flags", headers=s.admin()).json()
    assert [(f["voter"], f["lifted"]) for f in flags] == [("suspect", False)]
    assert httpx.post(s.url + "/api/admin/flags/lift", json={"ids": [flags[0]["id"]]}
                      ).status_code == 401
    r = httpx.post(s.url + "/api/admin/flags/lift", headers=s.admin(),
                   json={"ids": [flags[0]["id"], 77], "why": "verified"})
    assert r.json() == {"lifted": [flags[0]["id"]], "not_lifted": [77],
                        "already_lifted": [], "no_such_flag": [77]}
    bad = httpx.post(s.url + "/api/admin/flags/lift", headers=s.admin(), json={"id": 1})
    assert bad.status_code == 400 and '"ids"' in bad.json()["error"]
    live = _caught_up(s, n, aside=0)
    assert live["arena"]["rows_set_aside"] == 0
    assert sum(r["votes"] for r in live["leaderboard"]) == 2 * n
    out = tmp_path / "votes.csv"
    prefkit("arena", "export", "--db", sqlite_db, str(out))
    cli = json.loads(prefkit("rank", str(out), "--rounds", "30", "--seed", "3", "--json").stdout)
    drop = ("input", "seconds", "arena")
    assert {k: v for k, v in live.items() if k not in drop} == \
        {k: v for k, v in cli.items() if k not in drop}
    flags = httpx.get(s.url + "/api/admin/flags", headers=s.admin()).json()
    assert [f["lifted"] for f in flags] == [True]
    audit = httpx.get(s.url + "/api/admin/audit", headers=s.admin()).json()
    assert audit[-1]["action"] == "lift_flags" and audit[-1]["detail"]["why"] == "verified"


def test_a_vote_committed_after_a_later_one_still_reaches_the_board(db):
    """PostgreSQL numbers votes when they are inserted, not when they commit: a vote whose
    transaction commits after a later-numbered one's was skipped by a board that read up
    to the larger number. The board asks for the skipped numbers again."""
    if not db.startswith("postgres"):
        pytest.skip("PostgreSQL only (SQLite has one writer: votes commit in order)")
    import psycopg

    store = open_store(db)
    store.import_votes([("m0", "m1", "a", "v0", "p")])
    board = LiveBoard(store, BoardConfig(rounds=10, bootstrap_process=False))
    assert board.update()
    with psycopg.connect(db) as slow:  # a transaction: seq 2 taken, not committed
        slow.execute("INSERT INTO votes (model_a, model_b, outcome, created_at, source) VALUES "
                     "((SELECT id FROM models WHERE name = 'm0'), (SELECT id FROM models "
                     "WHERE name = 'm1'), 'b', 0, 'import')")
        store.import_votes([("m0", "m1", "a", "v0", "p")])  # seq 3, committed first
        assert board.update() and board.tally.last_seq == 3 and len(board.tally.a) == 2
        slow.commit()
    assert board.update()  # seq 2 read now, though below the last seq read
    assert sorted(board.tally.seq) == [1, 2, 3]
    _same_counts(board.counts, board.tally.counts(np.ones(3)))
    assert board.counts.counts.tolist() == [[2.0, 1.0, 0.0, 0.0]]
    store.close()
