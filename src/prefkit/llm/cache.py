"""A content-keyed on-disk cache (SQLite) in front of any chat backend.

    backend = CachedBackend(OpenAIClient(model="judge"), "judge_cache.sqlite")
    run_requests(backend, requests)      # a rerun makes zero calls; an interrupted run resumes

The key is the SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8) of
``{"backend": backend.name, "request": {messages, model, temperature, max_tokens,
top_logprobs, extra}}``: the same question to the same model is answered once, whatever the
run, process or order. Each successful result is committed the moment it arrives (WAL
journal, so readers and other processes are not blocked), so a run killed half-way keeps what
it got and its rerun asks only for the rest. Failed results are never stored: a rerun retries
them. Identical requests in flight at the same time share one call.

A cached result comes back with ``cached=True`` and ``attempts=0`` (no call was made).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .types import ChatBackend, ChatRequest, ChatResult, TokenLogprob

__all__ = ["CachedBackend", "request_key", "result_from_json", "result_to_json"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,     -- sha256 of the canonical JSON of {backend, request}
    backend TEXT NOT NULL,
    request TEXT NOT NULL,    -- the canonical request JSON, for inspection
    result TEXT NOT NULL,     -- the ChatResult as JSON (result_to_json)
    created REAL NOT NULL     -- unix time
);
"""


def canonical_request(request: ChatRequest) -> dict[str, Any]:
    """The request as plain JSON values (``extra`` as an object)."""
    return {"messages": [dict(m) for m in request.messages], "model": request.model,
            "temperature": request.temperature, "max_tokens": request.max_tokens,
            "top_logprobs": request.top_logprobs, "extra": dict(request.extra)}


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_key(backend_name: str, request: ChatRequest,
                labels: Sequence[str] | None = None) -> str:
    """The cache key: SHA-256 hex of the canonical JSON of ``{backend, request}`` (and
    ``labels`` for a label distribution, which is keyed apart from the chat answer)."""
    key: dict[str, Any] = {"backend": backend_name, "request": canonical_request(request)}
    if labels is not None:
        key["labels"] = list(labels)
    return hashlib.sha256(_dumps(key).encode("utf-8")).hexdigest()


def result_to_json(result: ChatResult) -> str:
    """A result as the JSON the cache stores (``cached``/``error`` are not stored)."""
    return _dumps({
        "text": result.text, "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
        "logprobs": None if result.logprobs is None else
        [[t.token, t.logprob, [list(a) for a in t.top]] for t in result.logprobs],
        "attempts": result.attempts, "raw": result.raw,
    })


def result_from_json(text: str, *, cached: bool = True) -> ChatResult:
    """The result :func:`result_to_json` wrote (``attempts=0`` when ``cached``)."""
    d = json.loads(text)
    logprobs = None if d["logprobs"] is None else tuple(
        TokenLogprob(tok, lp, tuple((a, b) for a, b in top)) for tok, lp, top in d["logprobs"])
    return ChatResult(text=d["text"], logprobs=logprobs, prompt_tokens=d["prompt_tokens"],
                      completion_tokens=d["completion_tokens"],
                      finish_reason=d["finish_reason"], cached=cached,
                      attempts=0 if cached else d["attempts"], raw=d.get("raw") or {})


class CachedBackend:
    """``backend`` with an SQLite cache at ``path`` (created with its folder if missing).

    Counters: ``hits`` (answered from the cache), ``calls`` (passed to the backend),
    ``stored`` (successful results written), ``shared`` (identical requests that waited on a
    call already in flight).
    """

    def __init__(self, backend: ChatBackend, path: str | Path, *,
                 store_raw: bool = True) -> None:
        self.backend = backend
        self.name = backend.name
        self.path = Path(path)
        self.store_raw = store_raw
        self.hits = self.calls = self.stored = self.shared = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection, used from whichever thread runs the event loop, under a lock.
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._pending: dict[str, asyncio.Future[ChatResult]] = {}

    @property
    def concurrency(self) -> int:
        return getattr(self.backend, "concurrency", 16)

    def __repr__(self) -> str:
        return f"CachedBackend({self.backend!r}, {str(self.path)!r})"

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def key(self, request: ChatRequest) -> str:
        return request_key(self.name, request)

    def get(self, request: ChatRequest) -> ChatResult | None:
        """The cached result for ``request``, or None."""
        return self._get(self.key(request))

    def put(self, request: ChatRequest, result: ChatResult) -> bool:
        """Store a successful result (committed at once); a failed one is not stored."""
        return self._put(self.key(request), request, result)

    def _get(self, key: str) -> ChatResult | None:
        with self._lock:
            row = self._db.execute("SELECT result FROM results WHERE key = ?", (key,)).fetchone()
        return None if row is None else result_from_json(row[0])

    def _put(self, key: str, request: ChatRequest, result: ChatResult) -> bool:
        if not result.ok:
            return False
        if not self.store_raw:
            result = replace(result, raw={})
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO results (key, backend, request, result, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (key, self.name, _dumps(canonical_request(request)), result_to_json(result),
                 time.time()))
        self.stored += 1
        return True

    async def chat(self, request: ChatRequest) -> ChatResult:
        """The cached answer, else the backend's (stored when it succeeded)."""
        key = self.key(request)
        hit = self._get(key)
        if hit is not None:
            self.hits += 1
            return hit
        pending = self._pending.get(key)
        if pending is not None and pending.get_loop() is asyncio.get_running_loop():
            self.shared += 1
            result = await asyncio.shield(pending)
            return replace(result, cached=True, attempts=0) if result.ok else result
        future: asyncio.Future[ChatResult] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            self.calls += 1
            result = await self.backend.chat(request)
            self._put(key, request, result)
            future.set_result(result)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            self._pending.pop(key, None)

    @property
    def label_distribution(self) -> Any:
        """The wrapped backend's ``label_distribution(request, labels)``, cached under its own
        key (absent, so ``hasattr`` is False, when the wrapped backend has none)."""
        read = self.backend.label_distribution  # AttributeError: no such reading here either

        def cached_read(request: ChatRequest, labels: Sequence[str]) -> Any:
            from .local import LabelDistribution

            key = request_key(self.name, request, labels)
            with self._lock:
                row = self._db.execute("SELECT result FROM results WHERE key = ?",
                                       (key,)).fetchone()
            if row is not None:
                self.hits += 1
                d = json.loads(row[0])["label_distribution"]
                return LabelDistribution(d["probs"], d["token_ids"])
            self.calls += 1
            dist = read(request, labels)
            value = _dumps({"label_distribution": {"probs": dict(dist),
                                                   "token_ids": dist.token_ids}})
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO results (key, backend, request, result, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (key, self.name, _dumps({**canonical_request(request),
                                             "labels": list(labels)}), value, time.time()))
            self.stored += 1
            return dist

        return cached_read

    async def aclose(self) -> None:
        """Close the wrapped backend's connections (the database stays open)."""
        if hasattr(self.backend, "aclose"):
            await self.backend.aclose()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
