"""The arena's admin routes (the token is checked first) and the media route.

Admin: ``POST /api/admin/outputs`` (a JSON list of ``{prompt_id, prompt, model, output,
media}``, media an http(s) URL), ``POST|GET /api/admin/integrity?reasons=...``, ``GET
/api/admin/flags``, ``GET /api/admin/audit``. Media: ``GET /media/{battle_id}/{slot}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from prefkit.arena.app import Arena, _error, _ok
from prefkit.arena.content import identity_words, media_kind

__all__ = ["admin_audit", "admin_flags", "admin_integrity", "admin_outputs", "media"]


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
    return _ok([{"id": i, "vote_seq": s, "voter": v, "reason": r, "detail": d}
                for i, s, v, r, d in arena.store.flags()])


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


async def media(request: Request) -> Response:
    """A battle's image, audio or video, under a neutral name: the bytes and their type,
    never the original path, URL or file name; only for the battle's voter."""
    arena: Arena = request.app.state.arena
    voter, _ = arena.voter(request)
    battle_id, slot = request.path_params["battle_id"], request.path_params["slot"]
    b = arena.battles.get(battle_id) or await arena.call(arena.battle, battle_id)
    if b is None or slot not in b["slots"] or b["voter"] != voter:
        return _error(404, "no such media")
    location = b["slots"][slot][2] if len(b["slots"][slot]) > 2 else ""
    if not location:
        location = await arena.call(arena.store.battle_media, battle_id, slot)
    if not location:
        return _error(404, "no such media")
    import mimetypes

    kind = mimetypes.guess_type(location.split("?")[0])[0] or "application/octet-stream"
    if location.startswith(("http://", "https://")):
        import httpx

        async with httpx.AsyncClient(timeout=20, follow_redirects=True) as client:
            r = await client.get(location)
        if r.status_code != 200:
            return _error(502, f"the media could not be fetched (status {r.status_code})")
        data = r.content
    else:
        try:
            data = Path(location).read_bytes()
        except OSError:
            return _error(404, "no such media")
    return Response(data, media_type=kind, headers={"Cache-Control": "no-store"})
