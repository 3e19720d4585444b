"""The arena's JSON API (the routes :mod:`prefkit.arena.app` lists): a session, battles,
votes, the leaderboard and the win rates. What a battle and a vote do is
:mod:`prefkit.arena.voting`'s, shared with the plain HTML forms."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from prefkit.arena import guard
from prefkit.arena.app import Arena, Refusal, _ok, _with_cookies, refused
from prefkit.arena.bodies import MAX_BATTLE_BYTES, MAX_JSON_BYTES, read_body
from prefkit.arena.voting import cast_vote, start_battle

__all__ = ["create_battle", "leaderboard", "session", "vote", "win_rates"]


_VOTE_FIX = 'a vote is under 1 KiB: send e.g. {"winner": "a"}'
_BATTLE_FIX = ('send {"k": 2}, or {"prompt": "..."} with a prompt of at most 20,000 '
               "characters")


async def _body(request: Request, limit: int, fix: str) -> dict[str, Any] | Refusal:
    """The JSON object of the body (``{}`` when empty), or a refusal: over
    ``limit`` bytes (413, read no further; ``fix`` says what to send), not JSON or not an
    object (400)."""
    raw = await read_body(request, limit, fix)
    if isinstance(raw, Refusal):
        return raw
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return Refusal(400, f"the body is not JSON ({getattr(e, 'msg', e)}); send e.g. "
                            '{"winner": "a"}')
    if not isinstance(body, dict):
        return Refusal(400, 'the body must be a JSON object, e.g. {"winner": "a"}')
    return body


async def session(request: Request) -> Response:
    arena: Arena = request.app.state.arena
    voter, new = arena.voter(request)
    csrf = request.cookies.get(guard.CSRF_COOKIE) or guard.new_token()
    return _with_cookies(_ok({"csrf": csrf}), request, voter, new, csrf)


async def _checked(request: Request, limit: int, fix: str
                   ) -> tuple[Arena, tuple[str, bool], dict[str, Any]] | Response:
    """A state-changing request past the CSRF check, with its JSON body."""
    arena: Arena = request.app.state.arena
    who = arena.who(request)
    if isinstance(who, Refusal):
        return refused(who)
    body = await _body(request, limit, fix)
    if isinstance(body, Refusal):
        return refused(body)
    return arena, who, body


async def create_battle(request: Request) -> Response:
    checked = await _checked(request, MAX_BATTLE_BYTES, _BATTLE_FIX)
    if isinstance(checked, Response):
        return checked
    arena, who, body = checked
    battle = await start_battle(arena, who[0], arena.address(request), body.get("k", 2),
                                body.get("prompt"))
    if isinstance(battle, Refusal):
        return refused(battle)
    return _with_cookies(_ok(battle), request, *who)


async def vote(request: Request) -> Response:
    checked = await _checked(request, MAX_JSON_BYTES, _VOTE_FIX)
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
