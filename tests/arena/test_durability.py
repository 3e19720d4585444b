"""Durability and storage rules: concurrent voters, ``kill -9`` of the server mid-run,
restart; every acknowledged vote is there exactly once. Migrations, append-only tables."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest
from arena_helpers import api, prefkit, write_outputs

from prefkit.arena.store import MIGRATIONS, open_store

N_VOTERS = 8
MAX_ROUNDS = 60  # per voter: the loops stop by themselves
KILL_AFTER = 120  # acknowledged votes before the kill -9


def test_kill_9_keeps_every_acknowledged_vote(db, servers, tmp_path, capsys):
    prefkit("arena", "add-outputs", str(write_outputs(tmp_path / "o.jsonl", leak=False)),
            "--db", db)
    s = servers(db, "--rounds", "20", "--voter-rate", "0", "--ip-rate", "0")
    acked: dict[str, int] = {}  # battle_id -> vote seq, as acknowledged
    sent = Counter()
    lock = threading.Lock()

    def voter(k: int) -> None:
        c = api(s, f"voter-{k}")
        for _ in range(MAX_ROUNDS):
            try:
                b = c.post("/api/battles").json()
                with lock:
                    sent["votes_sent"] += 1
                r = c.post(f"/api/battles/{b['battle_id']}/vote", json={"winner": "a"})
            except httpx.HTTPError:
                return  # the server is gone
            if r.status_code == 200:
                with lock:
                    acked[b["battle_id"]] = r.json()["vote_seq"]

    threads = [threading.Thread(target=voter, args=(k,)) for k in range(N_VOTERS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while len(acked) < KILL_AFTER and time.monotonic() < deadline:
        time.sleep(0.01)
    s.kill()  # SIGKILL while voters are mid-request
    for t in threads:
        t.join(timeout=60)
    # the bootstrap worker process follows the server (no orphan keeps running)
    deadline = time.monotonic() + 10
    while s.processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert s.processes() == []
    n_acked = len(acked)
    assert n_acked >= KILL_AFTER
    assert sent["votes_sent"] < N_VOTERS * MAX_ROUNDS  # the kill came mid-run

    # restart on the same database
    s2 = servers(db, "--rounds", "20", "--voter-rate", "0", "--ip-rate", "0")
    store = open_store(db)
    rows = store.votes_since(0)
    store.close()
    stored = Counter(rows.battle_id)
    assert all(stored[b] == 1 for b in acked), "an acknowledged vote is missing"
    assert max(stored.values()) == 1, "a battle has two votes"
    assert {rows.seq[rows.battle_id.index(b)] for b in acked} == set(acked.values())
    # committed but not yet acknowledged when the server died: at most one per voter
    assert n_acked <= len(rows.seq) <= n_acked + N_VOTERS
    # voting again on an acknowledged battle after the restart: the first vote's answer
    b, seq = next(iter(acked.items()))
    voter_key = rows.voter[rows.battle_id.index(b)]
    again = api(s2, voter_key).post(f"/api/battles/{b}/vote", json={"winner": "b"}).json()
    assert again == {**again, "duplicate": True, "vote_seq": seq}
    with capsys.disabled():
        engine = "postgresql" if db.startswith("postgresql") else "sqlite"
        print(f"\n[durability {engine}] {N_VOTERS} voters, kill -9 after "
              f"{n_acked} acknowledged votes ({sent['votes_sent']} sent); after restart "
              f"{len(rows.seq)} stored, every acknowledged one present, none twice")


def test_migrations_and_append_only(db):
    store = open_store(db)
    assert store.schema_version() == MIGRATIONS[-1][0]
    assert store.migrate() == []  # idempotent
    store.add_outputs([("p1", "q", "m1", "o1", "", ""), ("p1", "q", "m2", "o2", "", "")])
    store.import_votes([("m1", "m2", "a", "v", "p1")])
    store.add_flags([(1, None, "manual", "test")])
    for table in ("votes", "flags", "audit"):
        with pytest.raises(Exception, match="append-only"):
            store._all(f"DELETE FROM {table}")
        with pytest.raises(Exception, match="append-only"):
            store._all(f"UPDATE {table} SET id = id" if table != "votes"
                       else "UPDATE votes SET outcome = 'b'")
    assert store.vote_count() == 1
    assert [a[3] for a in store.audit_log()] == ["add_outputs", "import_votes", "flag"]
    store.close()
    again = open_store(db)  # reopening migrates nothing and keeps the data
    assert again.vote_count() == 1 and again.models() == ["m1", "m2"]
    again.close()


def test_fsync_every_vote_sets_synchronous_full(tmp_path):
    store = open_store(str(tmp_path / "a.db"), fsync_every_vote=True)
    assert store._all("PRAGMA synchronous")[0][0] == 2
    assert store._all("PRAGMA journal_mode")[0][0] == "wal"
    store.close()
    store = open_store(str(tmp_path / "b.db"))
    assert store._all("PRAGMA synchronous")[0][0] == 1
    store.close()


def test_server_refuses_a_database_it_cannot_open(tmp_path):
    r = prefkit("arena", "add-outputs", str(write_outputs(tmp_path / "o.jsonl")), "--db",
                str(tmp_path / "missing" / "a.db"), check=False)
    assert r.returncode == 2 and "does not exist; create it" in " ".join(r.stderr.split())


def test_checkpoints_run_off_the_writers_path(tmp_path):
    import sqlite3

    path = tmp_path / "a.db"
    store = open_store(str(path))
    store.checkpoint_in_background(every=0.05)
    assert store._all("PRAGMA wal_autocheckpoint")[0][0] == 0
    size0 = path.stat().st_size
    store.add_outputs([("p1", "q", "m1", "o1", "", ""), ("p1", "q", "m2", "o2", "", "")])
    store.import_votes([("m1", "m2", "a", "v", "p1")] * 500)
    deadline = time.monotonic() + 10
    while path.stat().st_size == size0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.stat().st_size > size0  # the background thread moved the WAL into the file
    store.close()
    with sqlite3.connect(path) as c:  # all there after close
        assert c.execute("SELECT COUNT(*) FROM votes").fetchone()[0] == 500


def test_postgres_battle_skips_the_flush_for_itself_only(db):
    """A battle commits with synchronous_commit off for its own transaction (one
    statement); the pooled connection is back to the server's setting afterwards, so a
    vote on it still waits for the WAL flush. Both pools (threads', event loop's)."""
    import asyncio

    if not db.startswith("postgres"):
        pytest.skip("PostgreSQL only (SQLite's battles and votes share synchronous=NORMAL)")
    store = open_store(db)
    store.add_outputs([("p1", "q", "m1", "o1", "", ""), ("p1", "q", "m2", "o2", "", "")])
    oids = [r[0] for r in store.content()]
    vid = store.voter_id("v")
    assert store.voter_id("v") == vid
    store.create_battle("b1", vid, 1, [("a", oids[0]), ("b", oids[1])])
    assert store._one("SHOW synchronous_commit") == ("on",)  # the same (LIFO) connection

    async def on_the_loop() -> tuple:
        assert await store.avoter_id("v") == vid
        await store.acreate_battle("b2", vid, 1, [("a", oids[1]), ("b", oids[0])])
        shown = await store._aone("SHOW synchronous_commit")
        await store.aclose()
        return shown

    assert asyncio.run(on_the_loop()) == ("on",)
    for bid, order in (("b1", ["m1", "m2"]), ("b2", ["m2", "m1"])):
        b = store.battle(bid)
        assert [b["slots"][s][0] for s in "ab"] == order and b["shown"]["a"] == f"o{order[0][1]}"
    seq, created = store.record_vote("b2", vid, model_a="m2", model_b="m1", outcome="a",
                                     ranking=None, prompt_key="p1", elapsed=1.0)
    assert created and store.record_vote("b2", vid, model_a="m2", model_b="m1", outcome="b",
                                         ranking=None, prompt_key="p1",
                                         elapsed=1.0) == (seq, False)
    store.close()
