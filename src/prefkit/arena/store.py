"""The arena's storage: every SQL statement of the arena lives in this module.

One interface, two engines:

- **SQLite** (a file path; the default, no set-up): WAL journal, ``synchronous=NORMAL``.
  A vote is acknowledged only after its transaction has committed into the WAL, so it
  survives a ``kill -9`` of the server (the WAL is in the operating system's cache); a
  power loss can lose the last commits. ``fsync_every_vote=True`` (``synchronous=FULL``)
  fsyncs the WAL at every commit, so an acknowledged vote also survives a power loss.
- **PostgreSQL** (a ``postgresql://`` URL, through psycopg 3): the server's defaults
  (``synchronous_commit=on``: every commit is flushed to its WAL before it returns).

Schema changes are numbered migrations (:data:`MIGRATIONS`), applied in order and recorded
in ``schema_migrations``. Votes, flags and the audit log are append-only: triggers refuse
``UPDATE`` and ``DELETE`` on them in both engines.

Tables: ``models``, ``prompts``, ``outputs`` (one per prompt and model, with the identity
words found in it), ``voters``, ``battles`` and ``battle_slots`` (which output sits in which
anonymous slot), ``votes`` (one row per battle at most: ``UNIQUE(battle_id)`` makes voting
idempotent; a K-wise vote keeps its ``ranking``), ``flags`` and ``audit``.
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

__all__ = ["MIGRATIONS", "Store", "VoteRows", "open_store"]

_APPEND_ONLY = ("votes", "flags", "audit")

#: Numbered migrations; ``{serial}`` is the engine's auto-increment key type.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "initial", [
        "CREATE TABLE models (id {serial}, name TEXT NOT NULL UNIQUE, created_at DOUBLE PRECISION)",
        "CREATE TABLE prompts (id {serial}, key TEXT NOT NULL UNIQUE, prompt TEXT NOT NULL)",
        ("CREATE TABLE outputs (id {serial}, prompt_id INTEGER NOT NULL REFERENCES prompts(id), "
         "model_id INTEGER NOT NULL REFERENCES models(id), output TEXT NOT NULL, "
         "identity TEXT NOT NULL DEFAULT '', UNIQUE (prompt_id, model_id))"),
        ("CREATE TABLE voters (id {serial}, key TEXT NOT NULL UNIQUE, created_at DOUBLE PRECISION, "
         "ip TEXT)"),
        ("CREATE TABLE battles (id TEXT PRIMARY KEY, voter_id INTEGER REFERENCES voters(id), "
         "prompt_id INTEGER NOT NULL REFERENCES prompts(id), created_at DOUBLE PRECISION NOT NULL)"),
        ("CREATE TABLE battle_slots (battle_id TEXT NOT NULL REFERENCES battles(id), "
         "slot TEXT NOT NULL, output_id INTEGER NOT NULL REFERENCES outputs(id), "
         "model_id INTEGER NOT NULL REFERENCES models(id), PRIMARY KEY (battle_id, slot))"),
        ("CREATE TABLE votes (seq {serial}, battle_id TEXT UNIQUE REFERENCES battles(id), "
         "voter_id INTEGER REFERENCES voters(id), model_a INTEGER REFERENCES models(id), "
         "model_b INTEGER REFERENCES models(id), outcome TEXT, ranking TEXT, prompt_key TEXT, "
         "created_at DOUBLE PRECISION NOT NULL, elapsed DOUBLE PRECISION, source TEXT NOT NULL)"),
        "CREATE INDEX votes_voter ON votes (voter_id, created_at)",
        ("CREATE TABLE flags (id {serial}, vote_seq INTEGER REFERENCES votes(seq), "
         "voter_id INTEGER REFERENCES voters(id), reason TEXT NOT NULL, detail TEXT, "
         "created_at DOUBLE PRECISION NOT NULL)"),
        ("CREATE TABLE audit (id {serial}, at DOUBLE PRECISION NOT NULL, actor TEXT NOT NULL, "
         "action TEXT NOT NULL, detail TEXT)"),
    ]),
    (2, "output_media", [
        # an image/audio/video output: a file path (absolute) or an http(s) URL, served by
        # the app under a neutral name; '' for text
        "ALTER TABLE outputs ADD COLUMN media TEXT NOT NULL DEFAULT ''",
    ]),
]

_SQLITE_GUARD = ("CREATE TRIGGER {t}_no_{op} BEFORE {OP} ON {t} BEGIN "
                 "SELECT RAISE(ABORT, '{t} is append-only'); END")
_PG_GUARD_FN = ("CREATE OR REPLACE FUNCTION prefkit_append_only() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$ LANGUAGE plpgsql")
_PG_GUARD = ("CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
             "FOR EACH ROW EXECUTE FUNCTION prefkit_append_only()")


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
    single writer); PostgreSQL gives each thread its own connection."""

    def __init__(self, url: str, *, fsync_every_vote: bool = False) -> None:
        self.url = str(url)
        self.postgres = self.url.startswith(("postgresql://", "postgres://"))
        self.fsync_every_vote = fsync_every_vote
        self._lock = threading.RLock()
        self._local = threading.local()
        self._conns: list[Any] = []
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

    # -- connection and transaction ----------------------------------------------------------
    def _conn(self) -> Any:
        if not self.postgres:
            return self._sqlite
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            import psycopg

            conn = psycopg.connect(self.url, autocommit=True)  # _tx opens transactions
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[Any]:
        """One transaction; yields ``run(sql, params) -> cursor`` (``?`` placeholders).
        SQLite takes the write lock at the start of a writing transaction (``IMMEDIATE``)."""
        if self.postgres:
            conn = self._conn()
            with conn.transaction():
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
            return self._conn().execute(sql.replace("?", "%s"), params or None).fetchone()
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
            for c in self._conns:
                c.close()

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
                if version == 1:
                    self._guard(run)
                run("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, time.time()))
                done.append(version)
        return done

    def _guard(self, run: Any) -> None:
        if self.postgres:
            run(_PG_GUARD_FN)
        for t in _APPEND_ONLY:
            if self.postgres:
                run(_PG_GUARD.format(t=t))
            else:
                for op in ("update", "delete"):
                    run(_SQLITE_GUARD.format(t=t, op=op, OP=op.upper()))

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
        with self._tx() as run:
            row = run("SELECT id FROM voters WHERE key = ?", (key,)).fetchone()
            if row is None:
                row = run("INSERT INTO voters (key, created_at, ip) VALUES (?, ?, ?) "
                          "RETURNING id", (key, time.time(), ip)).fetchone()
        return int(row[0])

    def create_battle(self, battle_id: str, voter_id: int, prompt_id: int,
                      slots: Sequence[tuple[str, int]]) -> float:
        """Store a battle (``slots``: ``(slot, output_id)``) before it is shown; returns its
        creation time."""
        now = time.time()
        with self._tx() as run:
            run("INSERT INTO battles (id, voter_id, prompt_id, created_at) VALUES (?, ?, ?, ?)",
                (battle_id, voter_id, prompt_id, now))
            for slot, output_id in slots:
                run("INSERT INTO battle_slots (battle_id, slot, output_id, model_id) VALUES "
                    "(?, ?, ?, (SELECT model_id FROM outputs WHERE id = ?))",
                    (battle_id, slot, output_id, output_id))
        return now

    def battle(self, battle_id: str) -> dict[str, Any] | None:
        """The battle with its slots (``slot -> (model, identity words)``), its voter key,
        prompt key, creation time and the vote already cast on it (or ``None``)."""
        with self._tx(write=False) as run:
            head = run("SELECT b.created_at, v.key, p.key FROM battles b JOIN prompts p ON "
                       "p.id = b.prompt_id LEFT JOIN voters v ON v.id = b.voter_id "
                       "WHERE b.id = ?", (battle_id,)).fetchone()
            if head is None:
                return None
            slots = run("SELECT s.slot, m.name, o.identity FROM battle_slots s JOIN models m "
                        "ON m.id = s.model_id JOIN outputs o ON o.id = s.output_id "
                        "WHERE s.battle_id = ? ORDER BY s.slot", (battle_id,)).fetchall()
            vote = run("SELECT seq, outcome, ranking FROM votes WHERE battle_id = ?",
                       (battle_id,)).fetchone()
        return {"created_at": head[0], "voter": head[1], "prompt_key": head[2],
                "slots": {s: (m, ident) for s, m, ident in slots},
                "vote": None if vote is None else {"seq": vote[0], "outcome": vote[1],
                                                   "ranking": vote[2]}}

    def battle_media(self, battle_id: str, slot: str) -> str:
        """The media location of the output in a battle's slot (``""`` if none)."""
        rows = self._all("SELECT o.media FROM battle_slots s JOIN outputs o ON o.id = "
                         "s.output_id WHERE s.battle_id = ? AND s.slot = ?", (battle_id, slot))
        return rows[0][0] if rows else ""

    # -- votes ----------------------------------------------------------------------------------
    def record_vote(self, battle_id: str, voter_id: int, *, model_a: str | None,
                    model_b: str | None, outcome: str | None, ranking: str | None,
                    prompt_key: str | None, elapsed: float | None,
                    flags: Sequence[tuple[str, str]] = ()) -> tuple[int, bool]:
        """Commit one vote on a battle with its flags (``(reason, detail)``), or find the
        vote already cast: returns ``(seq, created)``. Idempotent: one vote per battle.
        Without flags the vote is one statement (one round trip on PostgreSQL)."""
        insert = ("INSERT INTO votes (battle_id, voter_id, model_a, model_b, outcome, ranking, "
                  "prompt_key, created_at, elapsed, source) VALUES (?, ?, "
                  "(SELECT id FROM models WHERE name = ?), (SELECT id FROM models WHERE name = ?), "
                  "?, ?, ?, ?, ?, 'live') ON CONFLICT (battle_id) DO NOTHING RETURNING seq")
        params = (battle_id, voter_id, model_a, model_b, outcome, ranking, prompt_key,
                  time.time(), elapsed)
        if not flags:
            row = self._one(insert, params)
            if row is None:
                row = self._one("SELECT seq FROM votes WHERE battle_id = ?", (battle_id,))
                return int(row[0]), False  # type: ignore[index]
            return int(row[0]), True
        with self._tx() as run:
            row = run(insert, params).fetchone()
            if row is None:
                seq = run("SELECT seq FROM votes WHERE battle_id = ?", (battle_id,)).fetchone()
                return int(seq[0]), False
            for reason, detail in flags:
                run("INSERT INTO flags (vote_seq, voter_id, reason, detail, created_at) VALUES "
                    "(?, ?, ?, ?, ?)", (row[0], voter_id, reason, detail, time.time()))
        return int(row[0]), True

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

    def votes_since(self, seq: int = 0) -> VoteRows:
        """Every vote with ``seq`` above the given one, in ``seq`` order."""
        rows = self._all(
            "SELECT v.seq, v.battle_id, r.key, ma.name, mb.name, v.outcome, v.ranking, "
            "v.prompt_key, v.created_at, v.elapsed FROM votes v "
            "LEFT JOIN voters r ON r.id = v.voter_id LEFT JOIN models ma ON ma.id = v.model_a "
            "LEFT JOIN models mb ON mb.id = v.model_b WHERE v.seq > ? ORDER BY v.seq", (seq,))
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

    def flag_version(self) -> int:
        return int(self._all("SELECT COALESCE(MAX(id), 0) FROM flags")[0][0])

    def audit(self, actor: str, action: str, detail: dict[str, Any] | None = None) -> None:
        with self._tx() as run:
            run("INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)",
                (time.time(), actor, action, json.dumps(detail or {})))

    def audit_log(self) -> list[tuple[int, float, str, str, str]]:
        return self._all("SELECT id, at, actor, action, detail FROM audit ORDER BY id")


def open_store(url: str, *, fsync_every_vote: bool = False) -> Store:
    """A :class:`Store` on a SQLite file path or a ``postgresql://`` URL (migrated)."""
    return Store(url, fsync_every_vote=fsync_every_vote)
