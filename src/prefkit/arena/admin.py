"""The arena's admin routes (the token is checked first).

``POST /api/admin/outputs`` (a JSON list of ``{prompt_id, prompt, model, output, media}``,
media an http(s) URL), ``POST|GET /api/admin/integrity?reasons=...``, ``GET
/api/admin/flags`` (each with ``lifted``), ``POST /api/admin/flags/lift`` (``{"ids": [...],
"why": "..."}``: the flags are withdrawn, their votes count again; the flags stay in the
append-only log, and an automatic integrity round does not raise them again; the answer
``{"lifted", "not_lifted", "already_lifted", "no_such_flag"}``; ids must be JSON integers,
at most :data:`MAX_LIFT_IDS` a request), ``GET
/api/admin/audit``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from prefkit.arena.app import Arena, Refusal, _error, _ok, refused
from prefkit.arena.bodies import MAX_ADMIN_BYTES, MAX_LIFT_BYTES, read_body, size_text
from prefkit.arena.content import identity_words, media_kind

__all__ = ["admin_audit", "admin_flags", "admin_integrity", "admin_lift_flags", "admin_outputs"]


def _admin(request: Request) -> Arena | Response:
    arena: Arena = request.app.state.arena
    if not arena.is_admin(request):
        return _error(401, "admin route: send Authorization: Bearer TOKEN (PREFKIT_ARENA_TOKEN "
                           "or the token printed when the server started)")
    return arena


_OUTPUTS_FIX = (f"send the outputs in several requests of at most {size_text(MAX_ADMIN_BYTES)} "
                "each, or add them from a file with prefkit arena add-outputs")


async def admin_outputs(request: Request) -> Response:
    arena = _admin(request)
    if isinstance(arena, Response):
        return arena
    raw = await read_body(request, MAX_ADMIN_BYTES, _OUTPUTS_FIX)
    if isinstance(raw, Refusal):
        return refused(raw)
    try:
        rows = json.loads(raw)
        names = set(arena.store.models()) | {str(r["model"]) for r in rows}
        data = [(str(r["prompt_id"]), str(r["prompt"]), str(r["model"]), str(r["output"]),
                 ",".join(identity_words(str(r["output"]), names)), _url(r.get("media")))
                for r in rows]
    except (KeyError, TypeError, ValueError) as e:  # JSONDecodeError, UnicodeDecodeError too
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


MAX_LIFT_IDS = 10_000  # ids per lift request (one statement each, in one transaction)
_LIFT_FIX = ('send {"ids": [flag ids], "why": "..."} (GET /api/admin/flags lists the ids; '
             f"at most {MAX_LIFT_IDS:,} ids a request)")


def _lift_body(raw: bytes) -> tuple[list[int], str] | Response:
    """The ids and reason of a lift request (its body read under
    :data:`~prefkit.arena.bodies.MAX_LIFT_BYTES`), or what is wrong with it. Each id must be
    a JSON integer of a flag's range: a string is not read as its characters, 1.7 or true
    not as 1, a number past SQLite's INTEGER not sent to the database."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return _error(400, f"the body is not JSON ({getattr(e, 'msg', e)}); {_LIFT_FIX}")
    if not isinstance(body, dict) or "ids" not in body:
        return _error(400, f"the body has no field 'ids'; {_LIFT_FIX}")
    ids, why = body["ids"], body.get("why", "")
    if not isinstance(ids, list):
        return _error(400, f"field 'ids' must be a JSON list of integers, got "
                           f"{json.dumps(ids)[:80]}; {_LIFT_FIX}")
    bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int)
           or not 1 <= i < 2**63]
    if bad:
        return _error(400, f"field 'ids': {json.dumps(bad[0])[:80]} is not a flag id (a "
                           f"whole number from 1); {_LIFT_FIX}")
    if len(ids) > MAX_LIFT_IDS:
        return _error(413, f"field 'ids' holds {len(ids):,} ids; {_LIFT_FIX}")
    if not isinstance(why, str):
        return _error(400, f"field 'why' must be a string, got {json.dumps(why)[:80]}; "
                           f"{_LIFT_FIX}")
    return ids, why


async def admin_lift_flags(request: Request) -> Response:
    """Lift flags: the answer says which ids were lifted now, which were lifted before
    (``already_lifted``) and which no flag has (``no_such_flag``); ``not_lifted`` is both."""
    arena = _admin(request)
    if isinstance(arena, Response):
        return arena
    raw = await read_body(request, MAX_LIFT_BYTES, _LIFT_FIX)
    if isinstance(raw, Refusal):
        return refused(raw)
    got = _lift_body(raw)
    if isinstance(got, Response):
        return got
    ids, why = got
    before = set(arena.store.flag_lifts())
    done = arena.store.lift_flags(ids, actor="admin-api", why=why)
    arena.board.poke()
    rest = [i for i in dict.fromkeys(ids) if i not in done]
    return _ok({"lifted": done, "not_lifted": rest,
                "already_lifted": [i for i in rest if i in before],
                "no_such_flag": [i for i in rest if i not in before]})


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
