"""The arena's storage: every statement that reads or writes the arena's rows lives in this
module (the schema, DDL only, in :mod:`prefkit.arena.schema`).

One interface, two engines:

- **SQLite** (a file path; the default, no set-up): WAL journal, ``synchronous=NORMAL``.
  A vote is acknowledged only after its transaction has committed into the WAL, so it
  survives a ``kill -9`` of the server (the WAL is in the operating system's cache); a
  power loss can lose the last commits. ``fsync_every_vote=True`` (``synchronous=FULL``)
  fsyncs the WAL at every commit, so an acknowledged vote also survives a power loss.
  One connection under a lock: the single writer.
- **PostgreSQL** (a ``postgresql://`` URL, through psycopg 3): the server's defaults
  (``synchronous_commit=on``: every vote's commit is flushed to its WAL before it returns).
  Two pools of connections, partly opened when the server starts (:meth:`Store.warm`,
  :meth:`Store.awarm`), so that no request waits for a new server backend: the worker
  threads' (votes and the rest) and the event loop's (a new battle, a voter's id: no thread
  hop). The hot paths are one statement each (one round trip, committed when it returns):
  a battle with its slots (committed without waiting for the WAL flush: see
  :meth:`Store.create_battle`), a vote, a voter's id.

Schema changes are numbered migrations (:data:`~prefkit.arena.schema.MIGRATIONS`), applied
in order and recorded in ``schema_migrations``; votes, flags, flag lifts and the audit log
are append-only (triggers refuse ``UPDATE`` and ``DELETE``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prefkit.arena.pools import LoopPool, ThreadPool
from prefkit.arena.schema import MIGRATIONS, guards

__all__ = ["MIGRATIONS", "Store", "VoteRows", "open_store"]

#: PostgreSQL connections at most: the worker threads' pool (votes and everything else; as
#: many as Starlette's thread pool has threads) and the event loop's (battles and voter ids:
#: one statement each, no thread hop, no wait for the WAL flush).
PG_POOL = 40
PG_ASYNC_POOL = 16
#: Connections of each pool opened when the server starts (:meth:`Store.warm`,
#: :meth:`Store.awarm`); more on demand.
PG_WARM = 8

_VOTER = "SELECT id FROM voters WHERE key = ?"
_VOTER_UPSERT = ("INSERT INTO voters (key, created_at, ip) VALUES (?, ?, ?) ON CONFLICT (key) "
                 "DO UPDATE SET key = excluded.key RETURNING id")
_BATTLE = "INSERT INTO battles (id, voter_id, prompt_id, created_at) VALUES (?, ?, ?, ?)"
_SLOT = ("INSERT INTO battle_slots (battle_id, slot, output_id, model_id) VALUES "
         "(?, ?, ?, (SELECT model_id FROM outputs WHERE id = ?))")
_VOTE = ("INSERT INTO votes (battle_id, voter_id, model_a, model_b, outcome, ranking, "
         "prompt_key, created_at, elapsed, source) VALUES (?, ?, "
         "(SELECT id FROM models WHERE name = ?), (SELECT id FROM models WHERE name = ?), "
         "?, ?, ?, ?, ?, 'live') ON CONFLICT (battle_id) DO NOTHING RETURNING seq")
_VOTE_SEQ = "SELECT seq FROM votes WHERE battle_id = ?"


def _pg_battle(battle_id: str, voter_id: int, prompt_id: int, slots: Sequence[tuple[str, int]],
               now: float) -> tuple[str, tuple]:
    """A battle and its slots as one PostgreSQL statement (:meth:`Store.create_battle`)."""
    values = ", ".join(["(?, ?)"] * len(slots))
    sql = (f"WITH c AS (SELECT set_config('synchronous_commit', 'off', true)), "
           f"b AS ({_BATTLE} RETURNING id) INSERT INTO battle_slots (battle_id, slot, "
           f"output_id, model_id) SELECT b.id, s.slot, o.id, o.model_id FROM c, b "
           f"CROSS JOIN (VALUES {values}) AS s (slot, output_id) JOIN outputs o ON "
           "o.id = s.output_id RETURNING 1")
    return (sql, (battle_id, voter_id, prompt_id, now,
             *[x for slot, oid in slots for x in (slot, int(oid))]))


@dataclass(frozen=True)
class VoteRows:
    """Every vote, as columns in ``seq`` order (what the tally, integrity and export read).

    ``model_a``/``model_b`` are model names (``None`` for a K-wise vote, whose ``ranking``
    is a JSON list of levels: names, or lists of names that tie)."""

    seq: list[int]
    battle_id: list[str | None]
    voter: list[str | None]
    model_a: list[str | None]
    model_b: list[str | None]
    outcome: list[str | None]
    ranking: list[str | None]
    prompt: list[str | None]
    created_at: list[float]
    elapsed: list[float | None]


class Store:
    """All of the arena's SQL. Thread-safe: SQLite shares one connection under a lock (the
    single writer); PostgreSQL lends each call a connection of its pool."""

    def __init__(self, url: str, *, fsync_every_vote: bool = False,
                 pool_size: int = PG_POOL) -> None:
        self.url = str(url)
        self.postgres = self.url.startswith(("postgresql://", "postgres://"))
        self.fsync_every_vote = fsync_every_vote
        self._lock = threading.RLock()
        self._threads = ThreadPool(self.url, pool_size)
        self._loop = LoopPool(self.url, PG_ASYNC_POOL)
        if not self.postgres:
            conn = sqlite3.connect(self.url, check_same_thread=False, isolation_level=None,
                                   timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={'FULL' if fsync_every_vote else 'NORMAL'}")
            conn.execute("PRAGMA foreign_keys=ON")
            self._sqlite = conn
        self.migrate()
        self._checkpointer: threading.Thread | None = None
        self._stop = threading.Event()

    def checkpoint_in_background(self, every: float = 1.0) -> None:
        """SQLite: move WAL checkpoints (and their fsync of the database file) off the
        writers' path: automatic checkpoints off, a thread with its own connection runs a
        ``PASSIVE`` checkpoint every ``every`` seconds (writers go on meanwhile). The
        durability of a committed vote does not depend on checkpoints (it is in the WAL)."""
        if self.postgres or self._checkpointer is not None:
            return
        with self._lock:
            self._sqlite.execute("PRAGMA wal_autocheckpoint=0")

        def run() -> None:
            conn = sqlite3.connect(self.url, timeout=30.0)
            try:
                while not self._stop.wait(every):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                conn.close()

        self._checkpointer = threading.Thread(target=run, daemon=True, name="arena-checkpoint")
        self._checkpointer.start()

    # -- connections ---------------------------------------------------------------------------
    def warm(self, n: int = PG_WARM) -> None:
        """PostgreSQL: open ``n`` connections of the threads' pool now."""
        if self.postgres:
            self._threads.warm(n)

    async def awarm(self, n: int = PG_WARM) -> None:
        """PostgreSQL: open ``n`` connections of the event loop's pool now."""
        if self.postgres:
            await self._loop.warm(n)

    async def aclose(self) -> None:
        """Close the event loop's pool (from the event loop, before :meth:`close`)."""
        if self.postgres:
            await self._loop.close()

    async def _aone(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        """:meth:`_one` on the event loop's pool."""
        return await self._loop.one(sql.replace("?", "%s"), params)

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[Any]:
        """One transaction; yields ``run(sql, params) -> cursor`` (``?`` placeholders).
        SQLite takes the write lock at the start of a writing transaction (``IMMEDIATE``)."""
        if self.postgres:
            with self._threads.conn() as conn, conn.transaction():
                cur = conn.cursor()
                yield lambda sql, p=(): cur.execute(sql.replace("?", "%s"), p or None)
            return
        with self._lock:
            conn = self._sqlite
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn.execute
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        """One statement in its own (implicit) transaction: one round trip, no BEGIN or
        COMMIT; the statement is atomic and committed when this returns."""
        if self.postgres:
            with self._threads.conn() as conn:
                return conn.execute(sql.replace("?", "%s"), params or None).fetchone()
        with self._lock:
            return self._sqlite.execute(sql, params).fetchone()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._tx(write=not sql.lstrip().upper().startswith(("SELECT", "PRAGMA"))) as run:
            return list(run(sql, params).fetchall())

    def close(self) -> None:
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=30)
        with self._lock:
            if not self.postgres:
                self._sqlite.close()
        self._threads.close()

    def describe(self) -> str:
        """The database without credentials (for logs and the leaderboard's ``input``)."""
        if not self.postgres:
            return self.url
        from urllib.parse import urlsplit

        u = urlsplit(self.url)
        return f"{u.scheme}://{u.hostname}:{u.port or 5432}{u.path}"

    # -- migrations ----------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        """Apply the migrations not applied yet; returns their numbers."""
        serial = "BIGSERIAL PRIMARY KEY" if self.postgres else "INTEGER PRIMARY KEY AUTOINCREMENT"
        done: list[int] = []
        with self._tx() as run:
            run("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)")
            have = {r[0] for r in run("SELECT version FROM schema_migrations").fetchall()}
            for version, name, statements in MIGRATIONS:
                if version in have:
                    continue
                for sql in statements:
                    run(sql.format(serial=serial))
                for sql in guards(version, self.postgres):
                    run(sql)
                run("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, time.time()))
                done.append(version)
        return done

    def schema_version(self) -> int:
        return int(self._all("SELECT MAX(version) FROM schema_migrations")[0][0] or 0)

    # -- content -----------------------------------------------------------------------------
    def add_outputs(self, rows: Iterable[tuple[str, str, str, str, str, str]],
                    actor: str = "admin") -> dict[str, int]:
        """Insert ``(prompt_key, prompt, model, output, identity, media)`` rows; an existing
        (prompt, model) output is replaced only by a new row for it (outputs are content,
        not votes). Returns counts of models, prompts and outputs written."""
        now = time.time()
        n_out = 0
        models: set[str] = set()
        prompts: set[str] = set()
        with self._tx() as run:
            for key, prompt, model, output, identity, media in rows:
                run("INSERT INTO models (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    (model, now))
                run("INSERT INTO prompts (key, prompt) VALUES (?, ?) ON CONFLICT (key) "
                    "DO UPDATE SET prompt = excluded.prompt", (key, prompt))
                run("INSERT INTO outputs (prompt_id, model_id, output, identity, media) VALUES "
                    "((SELECT id FROM prompts WHERE key = ?), (SELECT id FROM models WHERE name = ?), "
                    "?, ?, ?) ON CONFLICT (prompt_id, model_id) DO UPDATE SET output = "
                    "excluded.output, identity = excluded.identity, media = excluded.media",
                    (key, model, output, identity, media))
                n_out += 1
                models.add(model)
                prompts.add(key)
            detail = {"outputs": n_out, "models": len(models), "prompts": len(prompts)}
            run("INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)",
                (now, actor, "add_outputs", json.dumps(detail)))
        return detail

    def add_generated(self, prompt_key: str, prompt: str,
                      rows: Sequence[tuple[str, str, str]]) -> tuple[int, list[int]]:
        """Store a voter's prompt and the answers generated for it (``(model, output,
        identity)``); returns the prompt id and the output ids, in order."""
        now = time.time()
        with self._tx() as run:
            pid = run("INSERT INTO prompts (key, prompt) VALUES (?, ?) RETURNING id",
                      (prompt_key, prompt)).fetchone()[0]
            ids = []
            for model, output, identity in rows:
                run("INSERT INTO models (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    (model, now))
                ids.append(run("INSERT INTO outputs (prompt_id, model_id, output, identity) "
                               "VALUES (?, (SELECT id FROM models WHERE name = ?), ?, ?) "
                               "RETURNING id", (pid, model, output, identity)).fetchone()[0])
        return int(pid), [int(i) for i in ids]

    def content(self) -> list[tuple[int, str, int, str, str, str, str, str]]:
        """``(output_id, model, prompt_id, identity, prompt key, prompt, output, media)``
        for every output."""
        return self._all("SELECT o.id, m.name, o.prompt_id, o.identity, p.key, p.prompt, "
                         "o.output, o.media FROM outputs o JOIN models m ON m.id = o.model_id "
                         "JOIN prompts p ON p.id = o.prompt_id ORDER BY o.id")

    def models(self) -> list[str]:
        return [r[0] for r in self._all("SELECT name FROM models ORDER BY name")]

    # -- voters and battles -------------------------------------------------------------------
    def voter_id(self, key: str, ip: str | None = None) -> int:
        """The voter's id, registered on first sight: one read for a known voter, an upsert
        (that returns the id whether it inserted the row or lost a race) for a new one."""
        row = self._one(_VOTER, (key,)) or self._one(_VOTER_UPSERT, (key, time.time(), ip))
        return int(row[0])  # type: ignore[index]

    async def avoter_id(self, key: str, ip: str | None = None) -> int:
        """:meth:`voter_id` on the event loop (PostgreSQL: asynchronous, no thread)."""
        if not self.postgres:
            return self.voter_id(key, ip)
        row = await self._aone(_VOTER, (key,)) or await self._aone(
            _VOTER_UPSERT, (key, time.time(), ip))
        return int(row[0])  # type: ignore[index]

    def create_battle(self, battle_id: str, voter_id: int, prompt_id: int,
                      slots: Sequence[tuple[str, int]]) -> float:
        """Store a battle (``slots``: ``(slot, output_id)``) before it is shown; returns its
        creation time.

        On PostgreSQL one statement, one round trip: the battle row in a data-modifying
        ``WITH``, its slots in the main ``INSERT``, committed with ``synchronous_commit``
        off for this transaction alone (``set_config(..., true)``): the commit does not
        wait for the WAL to reach the disk. A battle is not a vote: a crash of the database
        server (not of the arena) can lose the last fraction of a second of battles (never
        a vote: a vote's commit flushes the WAL up to itself, its battle included), which
        is SQLite's ``synchronous=NORMAL`` guarantee; a vote on a lost battle is refused."""
        now = time.time()
        if self.postgres:
            self._one(*_pg_battle(battle_id, voter_id, prompt_id, slots, now))
            return now
        with self._tx() as run:
            run(_BATTLE, (battle_id, voter_id, prompt_id, now))
            for slot, output_id in slots:
                run(_SLOT, (battle_id, slot, output_id, output_id))
        return now

    async def acreate_battle(self, battle_id: str, voter_id: int, prompt_id: int,
                             slots: Sequence[tuple[str, int]]) -> float:
        """:meth:`create_battle` on the event loop (PostgreSQL: asynchronous, no thread)."""
        if not self.postgres:
            return self.create_battle(battle_id, voter_id, prompt_id, slots)
        now = time.time()
        await self._aone(*_pg_battle(battle_id, voter_id, prompt_id, slots, now))
        return now

    def battle(self, battle_id: str) -> dict[str, Any] | None:
        """The battle: its voter key, prompt key and text, creation time, slots (``slot ->
        (model, identity words, media location)``), what each slot showed (``shown``:
        ``slot -> output text``) and the vote already cast on it (or ``None``)."""
        with self._tx(write=False) as run:
            head = run("SELECT b.created_at, v.key, p.key, p.prompt FROM battles b JOIN prompts "
                       "p ON p.id = b.prompt_id LEFT JOIN voters v ON v.id = b.voter_id "
                       "WHERE b.id = ?", (battle_id,)).fetchone()
            if head is None:
                return None
            slots = run("SELECT s.slot, m.name, o.identity, o.media, o.output FROM battle_slots "
                        "s JOIN models m ON m.id = s.model_id JOIN outputs o ON o.id = "
                        "s.output_id WHERE s.battle_id = ? ORDER BY s.slot",
                        (battle_id,)).fetchall()
            vote = run("SELECT seq, outcome, ranking FROM votes WHERE battle_id = ?",
                       (battle_id,)).fetchone()
        return {"created_at": head[0], "voter": head[1], "prompt_key": head[2],
                "prompt": head[3], "slots": {s: (m, ident, media) for s, m, ident, media, _
                                             in slots},
                "shown": {s: out for s, *_, out in slots},
                "vote": None if vote is None else {"seq": vote[0], "outcome": vote[1],
                                                   "ranking": vote[2]}}

    # -- votes ----------------------------------------------------------------------------------
    def record_vote(self, battle_id: str, voter_id: int, *, model_a: str | None,
                    model_b: str | None, outcome: str | None, ranking: str | None,
                    prompt_key: str | None, elapsed: float | None,
                    flags: Sequence[tuple[str, str]] = ()) -> tuple[int, bool]:
        """Commit one vote on a battle with its flags (``(reason, detail)``), or find the
        vote already cast: returns ``(seq, created)``. Idempotent: one vote per battle.
        Without flags the vote is one statement (one round trip on PostgreSQL)."""
        params = (battle_id, voter_id, model_a, model_b, outcome, ranking, prompt_key,
                  time.time(), elapsed)
        if not flags:
            row = self._one(_VOTE, params)
            if row is None:
                return int(self._one(_VOTE_SEQ, (battle_id,))[0]), False  # type: ignore[index]
            return int(row[0]), True
        with self._tx() as run:
            row = run(_VOTE, params).fetchone()
            if row is None:
                return int(run(_VOTE_SEQ, (battle_id,)).fetchone()[0]), False
            for reason, detail in flags:
                run("INSERT INTO flags (vote_seq, voter_id, reason, detail, created_at) VALUES "
                    "(?, ?, ?, ?, ?)", (row[0], voter_id, reason, detail, time.time()))
        return int(row[0]), True

    async def arecord_vote(self, battle_id: str, voter_id: int, **kw: Any) -> tuple[int, bool]:
        """:meth:`record_vote` from the event loop: inline on SQLite, in a worker thread on
        PostgreSQL. (Measured with ``benchmarks/arena_load.py``: votes through the event
        loop's asynchronous connections, whose commits wait for the WAL flush, sustained
        fewer votes/s with a worse tail than the threads' pool; battles, which commit
        without waiting, gained.)"""
        if not self.postgres:
            return self.record_vote(battle_id, voter_id, **kw)
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(lambda: self.record_vote(battle_id, voter_id, **kw))

    def import_votes(self, rows: Iterable[tuple[str, str, str, str | None, str | None]],
                     actor: str = "admin") -> int:
        """Append imported pairwise votes ``(model_a, model_b, outcome, voter, prompt)``."""
        now = time.time()
        n = 0
        with self._tx() as run:
            for a, b, outcome, voter, prompt in rows:
                for m in (a, b):
                    run("INSERT INTO models (name, created_at) VALUES (?, ?) "
                        "ON CONFLICT DO NOTHING", (m, now))
                vid = None
                if voter:
                    run("INSERT INTO voters (key, created_at) VALUES (?, ?) "
                        "ON CONFLICT DO NOTHING", (voter, now))
                    vid = run("SELECT id FROM voters WHERE key = ?", (voter,)).fetchone()[0]
                run("INSERT INTO votes (voter_id, model_a, model_b, outcome, prompt_key, "
                    "created_at, source) VALUES (?, (SELECT id FROM models WHERE name = ?), "
                    "(SELECT id FROM models WHERE name = ?), ?, ?, ?, 'import')",
                    (vid, a, b, outcome, prompt, now))
                n += 1
            run("INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)",
                (now, actor, "import_votes", json.dumps({"votes": n})))
        return n

    def votes_since(self, seq: int = 0, also: Sequence[int] = ()) -> VoteRows:
        """Every vote with ``seq`` above the given one, and those of the ``seq`` numbers in
        ``also`` (gaps that an earlier read skipped), in ``seq`` order."""
        extra = f" OR v.seq IN ({', '.join('?' * len(also))})" if also else ""
        rows = self._all(
            "SELECT v.seq, v.battle_id, r.key, ma.name, mb.name, v.outcome, v.ranking, "
            "v.prompt_key, v.created_at, v.elapsed FROM votes v "
            "LEFT JOIN voters r ON r.id = v.voter_id LEFT JOIN models ma ON ma.id = v.model_a "
            f"LEFT JOIN models mb ON mb.id = v.model_b WHERE v.seq > ?{extra} ORDER BY v.seq",
            (seq, *[int(x) for x in also]))
        cols = list(zip(*rows)) if rows else [[] for _ in range(10)]
        return VoteRows(*[list(c) for c in cols])

    def vote_count(self) -> int:
        return int(self._all("SELECT COUNT(*) FROM votes")[0][0])

    def votes_today(self, voter_id: int, since: float) -> int:
        return int(self._all("SELECT COUNT(*) FROM votes WHERE voter_id = ? AND created_at >= ?",
                             (voter_id, since))[0][0])

    # -- flags and audit -------------------------------------------------------------------
    def add_flags(self, flags: Iterable[tuple[int | None, str | None, str, str]],
                  actor: str = "integrity") -> int:
        """Append flags ``(vote_seq or None, voter key or None, reason, detail)``: a flag
        with a voter and no vote sets aside all of that voter's votes."""
        now = time.time()
        n = 0
        with self._tx() as run:
            for seq, voter, reason, detail in flags:
                vid = None
                if voter is not None:
                    r = run("SELECT id FROM voters WHERE key = ?", (voter,)).fetchone()
                    vid = r[0] if r else None
                run("INSERT INTO flags (vote_seq, voter_id, reason, detail, created_at) VALUES "
                    "(?, ?, ?, ?, ?)", (seq, vid, reason, detail, now))
                n += 1
            run("INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)",
                (now, actor, "flag", json.dumps({"flags": n})))
        return n

    def flags(self) -> list[tuple[int, int | None, str | None, str, str | None]]:
        """``(id, vote_seq, voter key, reason, detail)`` for every flag, oldest first."""
        return self._all("SELECT f.id, f.vote_seq, r.key, f.reason, f.detail FROM flags f "
                         "LEFT JOIN voters r ON r.id = f.voter_id ORDER BY f.id")

    def lift_flags(self, flag_ids: Iterable[int], actor: str = "admin",
                   why: str = "") -> list[int]:
        """Withdraw flags (append a lift for each; the flag stays): the votes they set aside
        count again. Returns the ids lifted now (unknown or already lifted ids are left
        out)."""
        now = time.time()
        done = []
        with self._tx() as run:
            for fid in flag_ids:
                row = run("INSERT INTO flag_lifts (flag_id, actor, reason, created_at) SELECT "
                          "id, ?, ?, ? FROM flags WHERE id = ? ON CONFLICT (flag_id) DO NOTHING "
                          "RETURNING flag_id", (actor, why, now, int(fid))).fetchone()
                if row is not None:
                    done.append(int(row[0]))
            if done:
                run("INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)",
                    (now, actor, "lift_flags", json.dumps({"flags": done, "why": why})))
        return done

    def flag_lifts(self) -> list[int]:
        """The ids of the lifted flags."""
        return [int(r[0]) for r in self._all("SELECT flag_id FROM flag_lifts ORDER BY id")]

    def flag_version(self) -> tuple[int, int, int, int]:
        """Changes whenever a flag or a lift is committed (counts and largest ids of
        both; a count also catches an id committed after a larger one)."""
        row = self._one("SELECT (SELECT COUNT(*) FROM flags), (SELECT COALESCE(MAX(id), 0) "
                        "FROM flags), (SELECT COUNT(*) FROM flag_lifts), "
                        "(SELECT COALESCE(MAX(id), 0) FROM flag_lifts)")
        return tuple(int(x) for x in row)  # type: ignore[return-value, union-attr]

    def audit(self, actor: str, action: str, detail: dict[str, Any] | None = None) -> None:
        with self._tx() as run:
            run("INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)",
                (time.time(), actor, action, json.dumps(detail or {})))

    def audit_log(self) -> list[tuple[int, float, str, str, str]]:
        return self._all("SELECT id, at, actor, action, detail FROM audit ORDER BY id")


def open_store(url: str, *, fsync_every_vote: bool = False) -> Store:
    """A :class:`Store` on a SQLite file path or a ``postgresql://`` URL (migrated)."""
    return Store(url, fsync_every_vote=fsync_every_vote)
