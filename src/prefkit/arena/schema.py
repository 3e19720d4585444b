"""The arena's schema: numbered migrations and the append-only guards (DDL only).

:mod:`prefkit.arena.store` applies them in order and records them in
``schema_migrations``; every statement that reads or writes rows lives there. Votes, flags,
flag lifts and the audit log are append-only: triggers refuse ``UPDATE`` and ``DELETE`` on
them in both engines (a flag is withdrawn by appending a lift, never by deleting it).

Tables: ``models``, ``prompts``, ``outputs`` (one per prompt and model, with the identity
words found in it), ``voters``, ``battles`` and ``battle_slots`` (which output sits in which
anonymous slot), ``votes`` (one row per battle at most: ``UNIQUE(battle_id)`` makes voting
idempotent; a K-wise vote keeps its ``ranking``), ``flags``, ``flag_lifts`` (a flag
withdrawn: its votes count again) and ``audit``.
"""

from __future__ import annotations

__all__ = ["APPEND_ONLY", "MIGRATIONS", "guards"]

#: Tables that triggers keep append-only, and the migration that created each.
APPEND_ONLY = {"votes": 1, "flags": 1, "audit": 1, "flag_lifts": 3}

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
    (3, "flag_lifts", [
        # a flag withdrawn (by an admin): the votes it set aside count again; the flag
        # itself stays (append-only), and a lifted flag is not raised again automatically
        ("CREATE TABLE flag_lifts (id {serial}, flag_id INTEGER NOT NULL UNIQUE "
         "REFERENCES flags(id), actor TEXT NOT NULL, reason TEXT, "
         "created_at DOUBLE PRECISION NOT NULL)"),
    ]),
]

_SQLITE_GUARD = ("CREATE TRIGGER {t}_no_{op} BEFORE {OP} ON {t} BEGIN "
                 "SELECT RAISE(ABORT, '{t} is append-only'); END")
_PG_GUARD_FN = ("CREATE OR REPLACE FUNCTION prefkit_append_only() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$ LANGUAGE plpgsql")
_PG_GUARD = ("CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE ON {t} "
             "FOR EACH ROW EXECUTE FUNCTION prefkit_append_only()")


def guards(version: int, postgres: bool) -> list[str]:
    """The trigger statements that make the tables of migration ``version`` append-only."""
    tables = [t for t, v in APPEND_ONLY.items() if v == version]
    if not tables:
        return []
    if postgres:
        return [_PG_GUARD_FN] + [_PG_GUARD.format(t=t) for t in tables]
    return [_SQLITE_GUARD.format(t=t, op=op, OP=op.upper())
            for t in tables for op in ("update", "delete")]
