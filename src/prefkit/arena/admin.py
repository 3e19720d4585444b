"""The arena's admin routes (the token is checked first).

``POST /api/admin/outputs`` (a JSON list of ``{prompt_id, prompt, model, output, media}``,
media an http(s) URL), ``POST|GET /api/admin/integrity?reasons=...``, ``GET
/api/admin/flags`` (each with ``lifted``), ``POST /api/admin/flags/lift`` (``{"ids": [...],
"why": "..."}``: the flags are withdrawn, their votes count again; the flags stay in the
append-only log, and an automatic integrity round does not raise them again), ``GET
/api/admin/audit``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from prefkit.arena.app import Arena, _error, _ok
from prefkit.arena.content import identity_words, media_kind

__all__ = ["admin_audit", "admin_flags", "admin_integrity", "admin_lift_flags", "admin_outputs"]


def _admin(request: Request) -> Arena | Response:
    arena: Arena = request.app.state.arena
    if not arena.is_admin(request):
        return _error(401, "admin route: send Authorization: Bearer TOKEN (PREFKIT_ARENA_TOKEN "
                           "or the token printed when the server started)")
    return arena


async def admin_outputs(request: Request) -> Response:
    arena = _admin(request)
    if isinstance(arena, Response):
        return arena
    try:
        rows = json.loads(await request.body())
        names = set(arena.store.models()) | {str(r["model"]) for r in rows}
        data = [(str(r["prompt_id"]), str(r["prompt"]), str(r["model"]), str(r["output"]),
                 ",".join(identity_words(str(r["output"]), names)), _url(r.get("media")))
                for r in rows]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        return _error(400, f"send a JSON list of {{prompt_id, prompt, model, output, media "
                           f"(optional http(s) URL)}} ({e})")
    done = arena.store.add_outputs(data, actor="admin-api")
    arena.reload_content()
    return _ok(done)


async def admin_integrity(request: Request) -> Response:
    arena = _admin(request)
    if isinstance(arena, Response):
        return arena
    from prefkit.arena.integrity import REASONS, check_arena

    reasons = tuple(r for r in request.query_params.get("reasons", ",".join(REASONS)).split(",")
                    if r)
    try:
        report = check_arena(arena.board, write=request.method == "POST", reasons=reasons)
    except ValueError as e:
        return _error(400, f"query 'reasons': {e}")
    return _ok(report)


async def admin_flags(request: Request) -> Response:
    arena = _admin(request)
    if isinstance(arena, Response):
        return arena
    lifted = set(arena.store.flag_lifts())
    return _ok([{"id": i, "vote_seq": s, "voter": v, "reason": r, "detail": d,
                 "lifted": i in lifted} for i, s, v, r, d in arena.store.flags()])


async def admin_lift_flags(request: Request) -> Response:
    arena = _admin(request)
    if isinstance(arena, Response):
        return arena
    try:
        body = json.loads(await request.body())
        ids = [int(i) for i in body["ids"]]
        why = str(body.get("why", ""))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        return _error(400, f"send {{\"ids\": [flag ids], \"why\": \"...\"}} (GET "
                           f"/api/admin/flags lists the ids) ({e})")
    done = arena.store.lift_flags(ids, actor="admin-api", why=why)
    arena.board.poke()
    return _ok({"lifted": done, "not_lifted": [i for i in ids if i not in done]})


async def admin_audit(request: Request) -> Response:
    arena = _admin(request)
    if isinstance(arena, Response):
        return arena
    return _ok([{"id": i, "at": at, "actor": a, "action": act, "detail": json.loads(d or "{}")}
                for i, at, a, act, d in arena.store.audit_log()])


def _url(media: Any) -> str:
    """Media given through the API: an http(s) URL only (files come through the CLI)."""
    if not media:
        return ""
    if not str(media).startswith(("http://", "https://")) or media_kind(str(media)) is None:
        raise ValueError(f"media {media!r} must be an http(s) URL of an image, audio or video")
    return str(media)
