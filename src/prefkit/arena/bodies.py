"""Request bodies read under a cap: every body the arena reads (the JSON API, the plain HTML
forms, the admin routes) comes through :func:`read_body`.

A body over its cap is refused with ``413 Content Too Large`` whose message names the cap and
what to do; the app reads no further. (The rest of what the client sends is dropped by the
HTTP server as it arrives, without being kept, so that a client still sending can read the
413, as nginx's lingering close does; closing at once would reset the connection under the
client's unread answer.) The cap holds however the client frames the body:

- a ``Content-Length`` over the cap is refused from the header, before any byte is read (a
  client that declares less than it sends is cut at what it declared by the HTTP parser);
- a chunked body (no length declared) is counted as it arrives and refused at the first
  chunk that takes it past the cap, so at most the cap plus one network read is held.

Caps: :data:`MAX_JSON_BYTES` for a vote (JSON or a form) and a form that starts a battle,
:data:`MAX_BATTLE_BYTES` for the JSON that starts one (it may carry the voter's own prompt),
:data:`MAX_ADMIN_BYTES` for the outputs an admin uploads, :data:`MAX_LIFT_BYTES` for a
request that lifts flags.
"""

from __future__ import annotations

from collections.abc import AsyncIterable

from starlette.requests import Request

from prefkit.arena.app import Refusal
from prefkit.runs import plural

__all__ = ["MAX_ADMIN_BYTES", "MAX_BATTLE_BYTES", "MAX_JSON_BYTES", "MAX_LIFT_BYTES",
           "read_body", "read_capped", "size_text"]

#: A vote, JSON or a form (under 1 KiB), and the form that starts a battle.
MAX_JSON_BYTES = 64 * 1024
#: ``POST /api/battles``: a voter's own prompt of up to 20,000 characters fits however it is
#: escaped (12 bytes a character at most: an emoji as ``\ud83d\ude00``, 240,000 bytes).
MAX_BATTLE_BYTES = 256 * 1024
#: ``POST /api/admin/outputs``: a JSON list of outputs (more go in several requests).
MAX_ADMIN_BYTES = 16 * 1024 * 1024
#: ``POST /api/admin/flags/lift``: 64 bytes for each of its at most 10,000 ids.
MAX_LIFT_BYTES = 64 * 10_000


def size_text(n: int) -> str:
    """``n`` bytes as people say it: '64 KiB', '16 MiB', '625 KiB', '100 bytes', '1 byte'."""
    for unit, scale in (("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= scale and n % scale == 0:
            return f"{n // scale:,} {unit}"
    if n >= 1024:
        return f"{n / 1024:,.1f} KiB"
    return plural(n, "byte")


def too_large(limit: int, fix: str) -> Refusal:
    """The 413 of a body over ``limit`` bytes, naming the limit and ``fix``."""
    return Refusal(413, f"the request body is over {size_text(limit)} ({plural(limit, 'byte')}), the "
                        f"limit of this address; {fix}")


async def read_body(request: Request, limit: int, fix: str) -> bytes | Refusal:
    """The body of ``request``, or a refusal (413) once it is known to be over ``limit``
    bytes: from its ``Content-Length`` before reading, else while counting what arrives.
    ``fix`` ends the refusal's message (what the client should send instead)."""
    declared = request.headers.get("content-length")
    if declared is not None and not (declared.isascii() and declared.isdigit()):
        return Refusal(400, f"header Content-Length {declared[:40]!r} is not a number of "
                            "bytes; send the body's length in bytes")
    body = await read_capped(request.stream(), limit, declared)
    return too_large(limit, fix) if isinstance(body, int) else body


async def read_capped(stream: AsyncIterable[bytes], limit: int,
                      declared: str | None = None) -> bytes | int:
    """What ``stream`` yields, joined, or -- once it is known to be over ``limit`` bytes --
    that size: from ``declared`` (a ``Content-Length`` of digits) before reading, else while
    counting what arrives, so that at most ``limit`` plus one chunk is held. Request bodies
    (:func:`read_body`) and media fetched from a URL (:mod:`prefkit.arena.media`) read
    through it."""
    if declared is not None and declared.isascii() and declared.isdigit() \
            and int(declared) > limit:
        return int(declared)
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            return size
        chunks.append(chunk)
    return b"".join(chunks)
