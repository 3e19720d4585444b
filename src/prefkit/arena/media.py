"""A battle's image, audio or video, served under a neutral name (``GET
/media/{battle_id}/{slot}``): the bytes and their type, never the original path, URL or file
name; only for the battle's voter.

- **Cached by content**: the answer carries a strong ``ETag`` (a hash of the bytes, which
  says nothing the bytes do not) and ``Cache-Control: private, no-cache``: a browser keeps
  the bytes but asks again each time it shows them, with ``If-None-Match``, and gets ``304
  Not Modified`` without the bytes while they are the same. A file replaced after its
  battle was shown is shown anew (it was ``immutable`` for a year, so browsers kept the
  old bytes). ``private``: the URL is one voter's, so no shared cache may keep it. On the
  server, :class:`MediaCache` keeps the bytes (LRU, :data:`CACHE_BYTES` in all): a file is
  read again when its size, modification or change time or inode changes (a replacement
  that keeps size and modification time, as ``cp -p`` does, still changes the change
  time), a URL is fetched again after :data:`URL_SECONDS`.
- **Capped**: a file or a URL's answer larger than ``max_media_bytes`` (``prefkit arena serve
  --max-media-mb``; ``add-outputs`` refuses such files up front) is refused with 502 and a
  message naming the cap; a URL is read as a stream and dropped as soon as it passes the
  cap (its ``Content-Length`` is checked first), so a huge answer costs no memory.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from prefkit.arena.app import Arena, Refusal, _error, refused
from prefkit.arena.bodies import read_capped
from prefkit.runs import plural

__all__ = ["CACHE_BYTES", "CACHE_CONTROL", "URL_SECONDS", "MediaCache", "media"]

#: Bytes of media the server keeps in memory at most.
CACHE_BYTES = 128 * 2**20
#: Seconds a fetched URL's bytes are served before it is fetched again.
URL_SECONDS = 600.0
#: ``Cache-Control`` of a battle's media: kept, revalidated by ETag before each use.
CACHE_CONTROL = "private, no-cache"


@dataclass(frozen=True)
class Media:
    data: bytes
    kind: str
    etag: str
    stamp: Any  # a file's (size, mtime_ns, ctime_ns, inode); a URL's fetch time


class MediaCache:
    """Media bytes by location, least recently used dropped past ``max_bytes``."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, Media] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._client: Any = None
        self.reads = 0  # files read and URLs fetched (not served from the cache)

    def get(self, location: str, stamp: Any) -> Media | None:
        with self._lock:
            m = self._items.get(location)
            if m is None:
                return None
            fresh = (time.monotonic() - m.stamp < URL_SECONDS) if stamp is None else (
                m.stamp == stamp)
            if not fresh:
                self._size -= len(self._items.pop(location).data)
                return None
            self._items.move_to_end(location)
            return m

    def put(self, location: str, m: Media) -> None:
        if len(m.data) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(location, None)
            if old is not None:
                self._size -= len(old.data)
            self._items[location] = m
            self._size += len(m.data)
            while self._size > self.max_bytes:
                _, gone = self._items.popitem(last=False)
                self._size -= len(gone.data)

    def client(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(timeout=20, follow_redirects=True)
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _too_big(size: int, cap: int) -> Refusal:
    return Refusal(502, f"the media is {plural(size, 'byte')}, over this arena's cap of "
                        f"{plural(cap, 'byte')} (prefkit arena serve --max-media-mb)")


def _made(data: bytes, location: str, stamp: Any) -> Media:
    kind = mimetypes.guess_type(location.split("?")[0])[0] or "application/octet-stream"
    return Media(data, kind, '"' + hashlib.sha256(data).hexdigest()[:32] + '"', stamp)


async def load(arena: Arena, location: str) -> Media | Refusal:
    """The media at ``location`` (a file path or an http(s) URL), from the cache when fresh,
    within ``arena.config.max_media_bytes``."""
    cache, cap = arena.media, arena.config.max_media_bytes
    if location.startswith(("http://", "https://")):
        hit = cache.get(location, None)
        if hit is not None:
            return hit
        return await _fetch(arena, location, cap)
    try:
        st = os.stat(location)
    except OSError:
        return Refusal(404, "no such media")
    stamp = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    hit = cache.get(location, stamp)
    if hit is not None:
        return hit
    if st.st_size > cap:
        return _too_big(st.st_size, cap)
    from starlette.concurrency import run_in_threadpool

    data = await run_in_threadpool(_read, location, cap)
    if data is None:
        return Refusal(404, "no such media")
    if len(data) > cap:
        return _too_big(len(data), cap)
    cache.reads += 1
    m = _made(data, location, stamp)
    cache.put(location, m)
    return m


def _read(location: str, cap: int) -> bytes | None:
    """At most ``cap + 1`` bytes of a file (``None`` if it cannot be read)."""
    try:
        with open(location, "rb") as f:
            return f.read(cap + 1)
    except OSError:
        return None


async def _fetch(arena: Arena, url: str, cap: int) -> Media | Refusal:
    import httpx

    cache = arena.media
    try:
        async with cache.client().stream("GET", url) as r:
            if r.status_code != 200:
                return Refusal(502, f"the media could not be fetched (status {r.status_code})")
            body = await read_capped(r.aiter_bytes(), cap, r.headers.get("content-length"))
            if isinstance(body, int):
                return _too_big(body, cap)
    except httpx.HTTPError as e:
        return Refusal(502, f"the media could not be fetched ({type(e).__name__})")
    cache.reads += 1
    m = _made(body, url, time.monotonic())
    cache.put(url, m)
    return m


async def media(request: Request) -> Response:
    arena: Arena = request.app.state.arena
    voter, _ = arena.voter(request)
    battle_id, slot = request.path_params["battle_id"], request.path_params["slot"]
    b = await arena.battle(battle_id)
    if b is None or slot not in b["slots"] or b["voter"] != voter:
        return _error(404, "no such media")
    location = b["slots"][slot][2]
    if not location:
        return _error(404, "no such media")
    m = await load(arena, location)
    if isinstance(m, Refusal):
        return refused(m)
    headers = {"Cache-Control": CACHE_CONTROL, "ETag": m.etag}
    given = request.headers.get("if-none-match", "")
    if m.etag in [t.strip().removeprefix("W/") for t in given.split(",")] or given == "*":
        return Response(status_code=304, headers=headers)
    return Response(m.data, media_type=m.kind, headers=headers)
