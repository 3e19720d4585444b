"""The arena's JSON API (the routes :mod:`prefkit.arena.app` lists): a session, battles,
votes, the leaderboard and the win rates. What a battle and a vote do is
:mod:`prefkit.arena.voting`'s, shared with the plain HTML forms."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from prefkit.arena import guard
from prefkit.arena.app import Arena, Refusal, _error, _ok, _with_cookies, refused
from prefkit.arena.voting import cast_vote, start_battle

__all__ = ["create_battle", "leaderboard", "session", "vote", "win_rates"]


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


async def session(request: Request) -> Response:
    arena: Arena = request.app.state.arena
    voter, new = arena.voter(request)
    csrf = request.cookies.get(guard.CSRF_COOKIE) or guard.new_token()
    return _with_cookies(_ok({"csrf": csrf}), request, voter, new, csrf)


async def _checked(request: Request) -> tuple[Arena, tuple[str, bool], dict[str, Any]] | Response:
    """A state-changing request past the CSRF check, with its JSON body."""
    arena: Arena = request.app.state.arena
    who = arena.who(request)
    if isinstance(who, Refusal):
        return refused(who)
    body, err = await _body(request)
    if err or body is None:
        return _error(400, err or "")
    return arena, who, body


async def create_battle(request: Request) -> Response:
    checked = await _checked(request)
    if isinstance(checked, Response):
        return checked
    arena, who, body = checked
    battle = await start_battle(arena, who[0], arena.address(request), body.get("k", 2),
                                body.get("prompt"))
    if isinstance(battle, Refusal):
        return refused(battle)
    return _with_cookies(_ok(battle), request, *who)


async def vote(request: Request) -> Response:
    checked = await _checked(request)
    if isinstance(checked, Response):
        return checked
    arena, who, body = checked
    done = await cast_vote(arena, who[0], arena.address(request),
                           request.path_params["battle_id"], body)
    return refused(done) if isinstance(done, Refusal) else _ok(done)


async def leaderboard(request: Request) -> Response:
    return _ok(request.app.state.arena.board.leaderboard())


async def win_rates(request: Request) -> Response:
    return _ok(request.app.state.arena.board.win_rates())
