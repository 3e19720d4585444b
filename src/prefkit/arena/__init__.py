"""The arena: a web app where people vote double-blind between model outputs and the
leaderboard updates live (Starlette + SQLite/PostgreSQL, on top of :mod:`prefkit.rank`).

- :mod:`prefkit.arena.store`: all SQL (SQLite WAL by default, PostgreSQL through psycopg);
  :mod:`prefkit.arena.schema` its numbered migrations.
- :mod:`prefkit.arena.content`: reading outputs files, identity words.
- :mod:`prefkit.arena.tally`: votes as ranking data, the flag policy, the export.
- :mod:`prefkit.arena.board`: the live leaderboard.
- :mod:`prefkit.arena.matchmaking`: the next battle (active matchmaking).
- :mod:`prefkit.arena.guard`: voters, CSRF, admin token, rate limits.
- :mod:`prefkit.arena.app`: the Starlette app (its state and routes);
  :mod:`prefkit.arena.voting` what a voter does (a battle, a vote) under the guards, shared by
  the JSON API (:mod:`prefkit.arena.api`) and the plain HTML forms that need no JavaScript
  (:mod:`prefkit.arena.plain`); :mod:`prefkit.arena.media` media under neutral names
  (cached, capped); :mod:`prefkit.arena.admin` the admin routes; :mod:`prefkit.arena.pages`
  the HTML and JavaScript; :mod:`prefkit.arena.bodies` every request body read under a cap.
- :mod:`prefkit.arena.integrity`: vote-rigging checks.
"""

from __future__ import annotations

from prefkit import _lazy_exports

__getattr__, __dir__ = _lazy_exports(__name__, {
    "prefkit.arena.app": ["ArenaConfig", "create_app"],
    "prefkit.arena.board": ["LiveBoard"],
    "prefkit.arena.tally": ["Tally", "export_rows"],
    "prefkit.arena.content": ["IDENTITY_WORDS", "identity_words", "read_outputs"],
    "prefkit.arena.store": ["Store", "open_store"],
})

__all__ = [
    "IDENTITY_WORDS",
    "ArenaConfig",
    "LiveBoard",
    "Store",
    "Tally",
    "create_app",
    "export_rows",
    "identity_words",
    "open_store",
    "read_outputs",
]
