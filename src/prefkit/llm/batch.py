"""Many chat requests through one backend, from synchronous code (the CLI, scripts, notebooks).

    results = run_requests(OpenAIClient(model="judge"), requests, concurrency=32)
    summary = summarize(results)        # {"n": ..., "ok": ..., "errors": ..., "cached": ...}

:func:`run_requests` keeps the order of ``requests``, shows a progress bar whose label counts
errors and cache hits as they come, and returns every result (failed ones carry their
``error``; nothing is dropped). :func:`arun_requests` is the same inside a running event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from .types import ChatBackend, ChatRequest, ChatResult

__all__ = ["arun_requests", "run_requests", "summarize"]


async def arun_requests(backend: ChatBackend, requests: Sequence[ChatRequest], *,
                        concurrency: int | None = None, progress: bool = False,
                        description: str = "chat", close: bool = False) -> list[ChatResult]:
    """Answer ``requests`` with at most ``concurrency`` of them awaited at once (default: the
    backend's ``concurrency``, else 16); results in the order of ``requests``.

    ``close=True`` closes the backend's connections (``aclose``) when done.
    """
    from prefkit.runs import progress_bar

    requests = list(requests)
    n_workers = max(1, min(concurrency or getattr(backend, "concurrency", 16), len(requests) or 1))
    results: list[ChatResult | None] = [None] * len(requests)
    counts = {"done": 0, "errors": 0, "cached": 0}
    bar = progress_bar(len(requests), description, enabled=progress and bool(requests))
    queue = iter(range(len(requests)))  # shared by the workers: each index taken once

    async def worker() -> None:
        for i in queue:
            try:
                result = await backend.chat(requests[i])
            except Exception as exc:  # noqa: BLE001 - a backend that breaks the contract
                result = ChatResult(text=None, error=f"{type(exc).__name__}: {exc}")
            results[i] = result
            counts["done"] += 1
            counts["errors"] += not result.ok
            counts["cached"] += result.cached
            if counts["errors"] or counts["cached"]:
                bar.update(counts["done"], _label(description, counts))
            else:
                bar.advance(1)

    try:
        await asyncio.gather(*(worker() for _ in range(n_workers)))
    finally:
        bar.close()
        if close and hasattr(backend, "aclose"):
            await backend.aclose()
    return [r for r in results if r is not None]


def run_requests(backend: ChatBackend, requests: Iterable[ChatRequest], *,
                 concurrency: int | None = None, progress: bool = True,
                 description: str = "chat") -> list[ChatResult]:
    """:func:`arun_requests` from synchronous code: runs its own event loop (in a helper
    thread when the caller already runs one, as in a notebook) and closes the backend's
    connections at the end. Order preserved; failures are results with ``error`` set."""
    coro_args: dict[str, Any] = {"concurrency": concurrency, "progress": progress,
                                 "description": description, "close": True}
    requests = list(requests)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(arun_requests(backend, requests, **coro_args))
    out: list[list[ChatResult]] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            out.append(asyncio.run(arun_requests(backend, requests, **coro_args)))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="prefkit-run-requests")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return out[0]


def summarize(results: Sequence[ChatResult]) -> dict[str, Any]:
    """Counts over a batch: ``n``, ``ok``, ``errors``, ``cached``, ``retried`` (results that
    needed more than one attempt), the total ``attempts``, token totals, and the first few
    distinct error messages (``error_examples``)."""
    errors = [r.error for r in results if r.error is not None]
    return {
        "n": len(results),
        "ok": len(results) - len(errors),
        "errors": len(errors),
        "cached": sum(r.cached for r in results),
        "retried": sum(r.attempts > 1 for r in results),
        "attempts": sum(r.attempts for r in results),
        "prompt_tokens": sum(r.prompt_tokens or 0 for r in results),
        "completion_tokens": sum(r.completion_tokens or 0 for r in results),
        "error_examples": list(dict.fromkeys(errors))[:5],
    }


def _label(description: str, counts: dict[str, int]) -> str:
    errors = counts["errors"]
    parts = [f"{errors} error{'s' if errors != 1 else ''}" if errors else "",
             f"{counts['cached']} cached" if counts["cached"] else ""]
    return f"{description} ({', '.join(p for p in parts if p)})"
