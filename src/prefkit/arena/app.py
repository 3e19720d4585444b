"""The arena web app (Starlette): pages, the JSON API and the admin routes.

JSON API:

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
- Admin (token) and media routes: :mod:`prefkit.arena.admin`.

Status codes: 400 bad body (the message names the field and the fix), 401 admin token,
403 CSRF or another voter's battle, 404 unknown battle, 429 rate limit or daily cap (with
``Retry-After``), 503 no battle possible (fewer than K models share a prompt).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from prefkit.arena import guard, pages
from prefkit.arena.board import BoardConfig, LiveBoard
from prefkit.arena.content import media_kind
from prefkit.arena.matchmaking import Matchmaker
from prefkit.arena.store import Store, open_store

__all__ = ["ArenaConfig", "create_app"]

#: Battles whose hidden side is kept in memory (the oldest are forgotten first).
BATTLE_CACHE = 200_000


@dataclass(frozen=True)
class ArenaConfig:
    """Everything ``prefkit arena serve`` sets. Rates are per second; 0 turns a limit off."""

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
    board: BoardConfig = field(default_factory=BoardConfig)


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
        self.match = Matchmaker(explore=config.explore, seed=config.seed)
        self.gen_match = Matchmaker(explore=config.explore, seed=config.seed)
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

    def startup(self) -> None:
        self.store.checkpoint_in_background()
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

    def battle(self, battle_id: str) -> dict[str, Any] | None:
        b = self.battles.get(battle_id)
        return b if b is not None else self.store.battle(battle_id)

    # -- who ----------------------------------------------------------------------------------
    def voter(self, request: Request) -> tuple[str, bool]:
        """The voter key and whether it is new (a cookie must be set)."""
        key = request.headers.get("x-voter") or request.cookies.get(guard.VOTER_COOKIE)
        if key:
            return key[:128], False
        return guard.new_token(), True

    def known_voter(self, key: str) -> int | None:
        """The voter's id if already seen (no database call)."""
        return self._voter_ids.get(key)

    def voter_id(self, key: str, ip: str) -> int:
        vid = self._voter_ids.get(key)
        if vid is None:
            vid = self._voter_ids[key] = self.store.voter_id(key, ip)
        return vid

    def address(self, request: Request) -> str:
        peer = request.client.host if request.client else None
        return guard.client_address(peer, request.headers.get("x-forwarded-for"),
                                    self.config.trusted_proxies)

    def own_origin(self, request: Request) -> str:
        return f"{request.url.scheme}://{request.headers.get('host', '')}"

    def limited(self, voter: str, ip: str) -> Response | None:
        wait = max(self.voter_buckets.take(f"v:{voter}"), self.ip_buckets.take(f"ip:{ip}"))
        if wait > 0:
            return _error(429, f"too many requests; retry in {wait:.1f} s",
                          **{"Retry-After": str(max(1, round(wait)))})
        return None

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


async def _body(request: Request) -> tuple[dict[str, Any] | None, str | None]:
    raw = await request.body()
    if not raw.strip():
        return {}, None
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as e:
        return None, f"the body is not JSON ({e.msg}); send e.g. {{\"winner\": \"a\"}}"
    if not isinstance(body, dict):
        return None, "the body must be a JSON object, e.g. {\"winner\": \"a\"}"
    return body, None


# -- routes -------------------------------------------------------------------------------------
async def session(request: Request) -> Response:
    arena: Arena = request.app.state.arena
    voter, new = arena.voter(request)
    csrf = request.cookies.get(guard.CSRF_COOKIE) or guard.new_token()
    return _with_cookies(_ok({"csrf": csrf}), request, voter, new, csrf)


async def create_battle(request: Request) -> Response:
    arena: Arena = request.app.state.arena
    voter, new = arena.voter(request)
    if not guard.csrf_ok(dict(request.headers), request.cookies, arena.own_origin(request)):
        return _error(403, "CSRF check failed: send the X-CSRF-Token header (GET /api/session "
                           "gives it) or an X-Voter header")
    body, err = await _body(request)
    if err:
        return _error(400, err)
    k = body.get("k", 2) if body else 2
    if not isinstance(k, int) or not 2 <= k <= arena.config.max_k:
        return _error(400, f"field 'k' must be an integer from 2 to {arena.config.max_k}, "
                           f"got {k!r}")
    ip = arena.address(request)
    limited = arena.limited(voter, ip)
    if limited:
        return limited
    if body and "prompt" in body:
        pick = await _generated(arena, body["prompt"], k)
        if isinstance(pick, Response):
            return pick
    else:
        pick = arena.match.next_battle(k)
    if pick is None:
        return _error(503, f"no battle possible: fewer than {k} models have outputs for a "
                           "shared prompt; add outputs (prefkit arena add-outputs)")
    prompt_id, slots = pick
    battle_id = guard.new_token(16)
    vid = arena.known_voter(voter) or await arena.call(arena.voter_id, voter, ip)
    created = await arena.call(arena.store.create_battle, battle_id, vid, prompt_id,
                               [(s, oid) for s, _, oid in slots])
    shown = {s: arena.outputs[oid] for s, _, oid in slots}
    arena.remember(battle_id, {"created_at": created, "voter": voter,
                               "prompt_key": shown["a"][2], "vote": None,
                               "slots": {s: (o[0], o[1], o[5]) for s, o in shown.items()}})
    outputs = []
    for s in sorted(shown):
        out: dict[str, Any] = {"slot": s, "output": shown[s][4]}
        if shown[s][5]:  # media: a neutral URL, whatever the file or original URL is called
            out["media"] = f"/media/{battle_id}/{s}"
            out["media_type"] = media_kind(shown[s][5])
        outputs.append(out)
    resp = _ok({"battle_id": battle_id, "prompt": shown["a"][3], "outputs": outputs})
    return _with_cookies(resp, request, voter, new)


async def _generated(arena: Arena, prompt: Any, k: int
                     ) -> tuple[int, list[tuple[str, str, int]]] | Response:
    """A battle on the voter's own prompt: models drawn, every answer generated (at once)
    and stored before anything is shown."""
    from prefkit.arena.content import identity_words
    from prefkit.arena.generate import generate_answers

    if not arena.endpoints:
        return _error(400, "this arena has no model endpoints, so it cannot answer your own "
                           "prompt; leave out 'prompt' (or start the server with --endpoints)")
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > 20_000:
        return _error(400, "field 'prompt' must be a non-empty string of at most 20,000 "
                           "characters")
    group = arena.gen_match.next_models(k)
    if group is None:
        return _error(503, f"fewer than {k} models have endpoints")
    texts = await generate_answers(arena.backends, arena.endpoints, [m for _, m in group],
                                   prompt)
    if texts is None:
        return _error(502, "a model did not answer; try again (no battle was created)")
    names = set(arena.endpoints)
    rows = [(m, t, ",".join(identity_words(t, names))) for (_, m), t in zip(group, texts)]
    key = "voter:" + guard.new_token(9)  # a prompt of its own, never matched again
    pid, oids = await arena.call(arena.store.add_generated, key, prompt, rows)
    for (_, m), t, oid, (_, _, ident) in zip(group, texts, oids, rows):
        arena.outputs[oid] = (m, ident, key, prompt, t, "")
    return pid, [(s, m, oid) for (s, m), oid in zip(group, oids)]


def _parse_vote(body: dict[str, Any], slots: list[str]) -> tuple[str | None, list | None, str]:
    """``(outcome, ranking levels of slots, error)`` from a vote body."""
    if "winner" in body:
        w = body["winner"]
        if len(slots) != 2:
            return None, None, (f"this battle has {len(slots)} outputs: send a 'ranking' of "
                                f"the slots {slots}, best first")
        if w not in ("a", "b", "tie", "both_bad"):
            return None, None, f"field 'winner' must be 'a', 'b', 'tie' or 'both_bad', got {w!r}"
        return w, None, ""
    if "ranking" in body:
        r = body["ranking"]
        levels = [lv if isinstance(lv, list) else [lv] for lv in r] if isinstance(r, list) else None
        flat = [s for lv in levels or [] for s in lv]
        if levels is None or sorted(flat) != sorted(slots) or any(not lv for lv in levels):
            return None, None, (f"field 'ranking' must list each slot of {slots} once, best "
                                f"first (an inner list for a tie), got {r!r}")
        return None, levels, ""
    return None, None, "send {\"winner\": \"a\"|\"b\"|\"tie\"|\"both_bad\"} or {\"ranking\": [...]}"


async def vote(request: Request) -> Response:
    arena: Arena = request.app.state.arena
    voter, _ = arena.voter(request)
    if not guard.csrf_ok(dict(request.headers), request.cookies, arena.own_origin(request)):
        return _error(403, "CSRF check failed: send the X-CSRF-Token header (GET /api/session "
                           "gives it) or an X-Voter header")
    body, err = await _body(request)
    if err:
        return _error(400, err)
    battle_id = request.path_params["battle_id"]
    b = arena.battles.get(battle_id) or await arena.call(arena.battle, battle_id)
    if b is None:
        return _error(404, f"no battle {battle_id!r}; start one with POST /api/battles")
    if b["voter"] != voter:
        return _error(403, "this battle was shown to another voter")
    slots = sorted(b["slots"])
    models = [{"slot": s, "model": b["slots"][s][0]} for s in slots]
    if b["vote"] is not None:
        return _ok({"battle_id": battle_id, "vote_seq": b["vote"]["seq"], "models": models,
                    "flags": [], "duplicate": True})
    outcome, levels, err = _parse_vote(body or {}, slots)
    if err:
        return _error(400, err)
    ip = arena.address(request)
    limited = arena.limited(voter, ip)
    if limited:
        return limited
    vid = arena.known_voter(voter) or await arena.call(arena.voter_id, voter, ip)
    if not arena.cap.known(vid):
        arena.cap.seed(vid, await arena.call(arena.store.votes_today, vid,
                                             arena.cap.day() * 86400.0))
    if not arena.cap.take(vid):
        return _error(429, f"daily cap of {arena.cap.cap} votes reached; come back tomorrow "
                           "(UTC)", **{"Retry-After": "3600"})
    words = sorted({w for s in slots for w in b["slots"][s][1].split(",") if w})
    flags = [("identity", ",".join(words))] if words else []
    name = {s: b["slots"][s][0] for s in slots}
    ranking = None if levels is None else json.dumps([[name[s] for s in lv] for lv in levels])
    seq, created = await arena.call(
        arena.store.record_vote, battle_id, vid, model_a=name["a"] if outcome else None,
        model_b=name["b"] if outcome else None, outcome=outcome, ranking=ranking,
        prompt_key=b["prompt_key"], elapsed=time.time() - b["created_at"], flags=flags)
    if not created:
        arena.cap.give_back(vid)
    b["vote"] = {"seq": seq}
    arena.board.poke()
    return _ok({"battle_id": battle_id, "vote_seq": seq, "models": models,
                "flags": [f[0] for f in flags] if created else [], "duplicate": not created})


async def leaderboard(request: Request) -> Response:
    return _ok(request.app.state.arena.board.leaderboard())


async def win_rates(request: Request) -> Response:
    return _ok(request.app.state.arena.board.win_rates())


async def page_battle(request: Request) -> Response:
    arena: Arena = request.app.state.arena
    voter, new = arena.voter(request)
    return _with_cookies(HTMLResponse(pages.BATTLE), request, voter, new)


async def page_leaderboard(request: Request) -> Response:
    return HTMLResponse(pages.LEADERBOARD)


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

    from prefkit.arena.admin import admin_audit, admin_flags, admin_integrity, admin_outputs, media

    routes = [
        Route("/", page_battle),
        Route("/leaderboard", page_leaderboard),
        Route("/static/{name}", asset),
        Route("/api/session", session),
        Route("/media/{battle_id}/{slot}", media),
        Route("/api/battles", create_battle, methods=["POST"]),
        Route("/api/battles/{battle_id}/vote", vote, methods=["POST"]),
        Route("/api/leaderboard", leaderboard),
        Route("/api/winrates", win_rates),
        Route("/api/admin/outputs", admin_outputs, methods=["POST"]),
        Route("/api/admin/integrity", admin_integrity, methods=["GET", "POST"]),
        Route("/api/admin/flags", admin_flags),
        Route("/api/admin/audit", admin_audit),
    ]
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        startup()
        try:
            yield
        finally:
            arena.shutdown()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.arena = arena
    return app
