"""The arena web app (Starlette): the app's state, its pages and the table of routes.

JSON API (:mod:`prefkit.arena.api`):

- ``POST /api/battles`` (body optional: ``{"k": 2}``; ``{"prompt": "..."}`` has the models
  answer the voter's own prompt, :mod:`prefkit.arena.generate`) -> ``{"battle_id", "prompt",
  "outputs": [{"slot": "a", "output": ...}, ...]}``. No model identity anywhere: the
  battle id is random, slots are shuffled per battle, outputs are stored before the
  battle is shown (no timing differences), responses carry ``Cache-Control: no-store``.
- ``POST /api/battles/{battle_id}/vote`` with ``{"winner": "a"|"b"|"tie"|"both_bad"}``
  (pairs) or ``{"ranking": ["b", ["a", "c"]]}`` (slots best first; an inner list ties)
  -> ``{"battle_id", "vote_seq", "models": [{"slot", "model"}], "flags", "duplicate"}``.
  One vote per battle: voting again returns the first vote's answer (``duplicate``).
- ``GET /api/leaderboard`` -> the JSON ``prefkit rank --json`` prints, plus ``arena``.
- ``GET /api/winrates`` -> observed pairwise win rates (the heatmap).
- ``GET /api/session`` -> ``{"csrf": ...}`` and the voter and CSRF cookies.

Without JavaScript (:mod:`prefkit.arena.plain`): ``GET /vote`` and plain HTML forms
(``POST /vote/battles``, ``POST /vote/battles/{battle_id}``), under the same guards.
Admin routes (token): :mod:`prefkit.arena.admin`; media under neutral names:
:mod:`prefkit.arena.media`. Both paths share :mod:`prefkit.arena.voting`.

Status codes: 400 bad body (the message names the field and the fix), 401 admin token,
403 CSRF or another voter's battle, 404 unknown battle, 413 a body over its cap (64 KiB for
a vote, 256 KiB for a battle; the others: :mod:`prefkit.arena.bodies`),
429 rate limit or daily cap (with ``Retry-After``), 503 no battle possible (fewer than K
models share a prompt).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from prefkit.arena import guard, pages
from prefkit.arena.board import BoardConfig, LiveBoard
from prefkit.arena.content import MAX_MEDIA_BYTES
from prefkit.arena.matchmaking import Matchmaker
from prefkit.arena.store import Store, open_store

__all__ = ["ArenaConfig", "Refusal", "create_app"]

#: Battles whose hidden side is kept in memory (the oldest are forgotten first).
BATTLE_CACHE = 200_000


@dataclass(frozen=True)
class ArenaConfig:
    """Everything ``prefkit arena serve`` sets. Rates are per second; 0 turns a limit off.
    ``seed`` seeds the matchmaking (which models, which prompt, which slot): ``None`` draws
    from the operating system, so that nobody can predict the slots of a battle."""

    db: str
    admin_token: str | None = None
    fsync_every_vote: bool = False
    voter_rate: float = 2.0
    voter_burst: float = 30.0
    ip_rate: float = 50.0
    ip_burst: float = 500.0
    daily_cap: int = 1000
    trusted_proxies: tuple[str, ...] = ()
    explore: float = 0.1
    max_k: int = 4
    seed: int | None = None
    endpoints: str | None = None  # a JSON file: model -> OpenAI-compatible endpoint
    auto_flag: float = 0.0  # run the integrity checks every so many seconds (0: only on demand)
    auto_flag_reasons: tuple[str, ...] = ("outlier", "favouritism")
    max_media_bytes: int = MAX_MEDIA_BYTES  # a media file or URL larger than this is refused
    board: BoardConfig = field(default_factory=BoardConfig)


@dataclass(frozen=True)
class Refusal:
    """A request refused by a guard or a check: the status and the message that says what
    to do (rendered as JSON by the API, as a page by the HTML forms)."""

    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


#: What a JSON client does about a failed CSRF check.
CSRF_FIX = "send the X-CSRF-Token header (GET /api/session gives it) or an X-Voter header"


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status,
                        headers={"Cache-Control": "no-store", **headers})


def _ok(body: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


class Arena:
    """The app's state: the store, the live board, the matchmaker and the guards."""

    def __init__(self, config: ArenaConfig, store: Store | None = None) -> None:
        self.config = config
        self.store = store or open_store(config.db, fsync_every_vote=config.fsync_every_vote)
        token = config.admin_token or os.environ.get("PREFKIT_ARENA_TOKEN")
        self.token_printed = token is None
        self.admin_token = token or guard.new_token(24)
        self.board = LiveBoard(self.store, config.board)
        stored, generated = np.random.SeedSequence(config.seed).spawn(2)
        self.match = Matchmaker(explore=config.explore, seed=stored)
        self.gen_match = Matchmaker(explore=config.explore, seed=generated)
        self.endpoints: dict[str, Any] = {}
        self.backends: dict[str, Any] = {}
        if config.endpoints:
            from prefkit.arena.generate import read_endpoints

            self.endpoints = read_endpoints(config.endpoints)
        self.voter_buckets = guard.Buckets(config.voter_rate, config.voter_burst)
        self.ip_buckets = guard.Buckets(config.ip_rate, config.ip_burst)
        self.cap = guard.DailyCap(config.daily_cap)
        self._voter_ids: dict[str, int] = {}
        self.outputs: dict[int, tuple[str, str, str, str, str, str]] = {}
        self.battles: dict[str, dict[str, Any]] = {}
        from prefkit.arena.media import MediaCache

        self.media = MediaCache()

    def startup(self) -> None:
        self.store.checkpoint_in_background()
        self.store.warm()
        self.reload_content()
        self.board.listeners.append(lambda b: self.match.refresh(b.counts))
        if self.endpoints:
            from prefkit.arena.generate import clients

            self.backends = clients(self.endpoints)
            self.gen_match.set_models(sorted(self.endpoints))
            self.board.listeners.append(lambda b: self.gen_match.refresh(b.counts))
        self.board.update()
        self.board.start()
        if self.config.auto_flag > 0:
            import threading

            threading.Thread(target=self._auto_flag, daemon=True, name="arena-integrity").start()

    def _auto_flag(self) -> None:
        """Run the integrity checks on a timer and flag what they find (audit-logged)."""
        import logging

        from prefkit.arena.integrity import check_arena

        while not self.board._stop.wait(self.config.auto_flag):
            try:
                check_arena(self.board, write=True, reasons=self.config.auto_flag_reasons)
            except Exception:
                logging.getLogger("prefkit.arena").exception("arena: integrity round failed")

    def shutdown(self) -> None:
        self.board.stop()
        self.store.close()

    def reload_content(self) -> None:
        content = self.store.content()
        self.outputs = {oid: (model, ident, key, prompt, text, media)
                        for oid, model, _, ident, key, prompt, text, media in content}
        self.match.set_content(content)
        self.match.refresh(self.board.counts)

    async def call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        """Run a store call: inline on SQLite (microseconds, no fsync by default), in a
        worker thread on PostgreSQL (network round trips overlap there)."""
        if not self.store.postgres:
            return fn(*args, **kw)
        from functools import partial

        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(partial(fn, *args, **kw))

    def remember(self, battle_id: str, info: dict[str, Any]) -> None:
        """Keep a battle's hidden side in memory (the vote then needs no read); the
        database stays the truth after a restart or for an old battle."""
        self.battles[battle_id] = info
        if len(self.battles) > BATTLE_CACHE:
            self.battles.pop(next(iter(self.battles)))

    async def battle(self, battle_id: str) -> dict[str, Any] | None:
        """A battle's hidden side: from memory, else from the store (kept in memory then)."""
        b = self.battles.get(battle_id)
        if b is None:
            b = await self.call(self.store.battle, battle_id)
            if b is not None:
                self.remember(battle_id, b)
        return b

    # -- who ----------------------------------------------------------------------------------
    def voter(self, request: Request) -> tuple[str, bool]:
        """The voter key and whether it is new (a cookie must be set)."""
        key = request.headers.get("x-voter") or request.cookies.get(guard.VOTER_COOKIE)
        if key:
            return key[:128], False
        return guard.new_token(), True

    async def voter_id(self, key: str, ip: str) -> int:
        """The voter's id (from memory once seen)."""
        vid = self._voter_ids.get(key)
        if vid is None:
            vid = self._voter_ids[key] = await self.store.avoter_id(key, ip)
        return vid

    def address(self, request: Request) -> str:
        peer = request.client.host if request.client else None
        return guard.client_address(peer, request.headers.get("x-forwarded-for"),
                                    self.config.trusted_proxies)

    def own_origin(self, request: Request) -> str:
        return f"{request.url.scheme}://{request.headers.get('host', '')}"

    def limited(self, voter: str, ip: str) -> Refusal | None:
        wait = max(self.voter_buckets.take(f"v:{voter}"), self.ip_buckets.take(f"ip:{ip}"))
        if wait > 0:
            return Refusal(429, f"too many requests; retry in {wait:.1f} s",
                           {"Retry-After": str(max(1, round(wait)))})
        return None

    def who(self, request: Request, form_token: str | None = None,
            fix: str = CSRF_FIX) -> tuple[str, bool] | Refusal:
        """The voter (key, whether new) of a state-changing request, once it has passed
        the CSRF check (:func:`prefkit.arena.guard.csrf_ok`); ``fix`` says what to do."""
        voter, new = self.voter(request)
        if not guard.csrf_ok(dict(request.headers), request.cookies, self.own_origin(request),
                             form_token):
            return Refusal(403, f"CSRF check failed: {fix}")
        return voter, new

    def is_admin(self, request: Request) -> bool:
        auth = request.headers.get("authorization", "")
        given = auth[7:] if auth.lower().startswith("bearer ") else request.headers.get(
            "x-admin-token")
        return guard.token_ok(given, self.admin_token)


def _with_cookies(resp: Response, request: Request, voter: str, new: bool,
                  csrf: str | None = None) -> Response:
    if new:
        resp.set_cookie(guard.VOTER_COOKIE, voter, max_age=365 * 86400, httponly=True,
                        samesite="strict")
    if guard.CSRF_COOKIE not in request.cookies:
        resp.set_cookie(guard.CSRF_COOKIE, csrf or guard.new_token(), max_age=365 * 86400,
                        samesite="strict")
    return resp


def refused(r: Refusal) -> JSONResponse:
    return _error(r.status, r.message, **r.headers)


async def page_battle(request: Request) -> Response:
    arena: Arena = request.app.state.arena
    voter, new = arena.voter(request)
    return _with_cookies(HTMLResponse(pages.BATTLE), request, voter, new)


async def page_leaderboard(request: Request) -> Response:
    board = request.app.state.arena.board
    return HTMLResponse(pages.leaderboard_page(board.leaderboard(), board.win_rates()),
                        headers={"Cache-Control": "no-store"})


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name == "arena.js":
        return Response(pages.JS, media_type="text/javascript")
    if name == "arena.css":
        return Response(pages.CSS, media_type="text/css")
    return _error(404, "no such asset")


def create_app(config: ArenaConfig, *, quiet: bool = False) -> Starlette:
    """The Starlette app of an arena on ``config.db`` (migrated on start)."""
    arena = Arena(config)

    def startup() -> None:
        arena.startup()
        if arena.token_printed and not quiet:
            print(f"prefkit arena: admin token (shown once): {arena.admin_token}",
                  file=sys.stderr, flush=True)
        arena.store.audit("server", "start", {"db": arena.store.describe()})

    from prefkit.arena import admin, api, plain
    from prefkit.arena.media import media

    routes = [
        Route("/", page_battle),
        Route("/leaderboard", page_leaderboard),
        Route("/static/{name}", asset),
        Route("/api/session", api.session),
        Route("/media/{battle_id}/{slot}", media),
        Route("/api/battles", api.create_battle, methods=["POST"]),
        Route("/api/battles/{battle_id}/vote", api.vote, methods=["POST"]),
        Route("/api/leaderboard", api.leaderboard),
        Route("/api/winrates", api.win_rates),
        Route("/vote", plain.start_page),
        Route("/vote/battles", plain.create_battle, methods=["POST"]),
        Route("/vote/battles/{battle_id}", plain.battle_page, methods=["GET", "POST"]),
        Route("/api/admin/outputs", admin.admin_outputs, methods=["POST"]),
        Route("/api/admin/integrity", admin.admin_integrity, methods=["GET", "POST"]),
        Route("/api/admin/flags", admin.admin_flags),
        Route("/api/admin/flags/lift", admin.admin_lift_flags, methods=["POST"]),
        Route("/api/admin/audit", admin.admin_audit),
    ]
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        startup()
        await arena.store.awarm()
        try:
            yield
        finally:
            await arena.media.aclose()
            await arena.store.aclose()
            arena.shutdown()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.arena = arena
    return app
