"""A cancelled batch ends at once: no cancellation is swallowed between ``asyncio.timeout``,
httpx, httpcore and anyio in :class:`~prefkit.llm.client.OpenAIClient` (through the cache and
:func:`~prefkit.llm.batch.arun_requests`, as ``prefkit judge run`` calls them), wherever the
cancel lands: while connecting, sending, or waiting for an answer that never comes.

A swallowed cancellation would leave a request retrying for its whole timeout (60 s an
attempt by default), the way a Ctrl-C once seemed to (that hang was SIGINT inherited as
ignored: tests/judge/test_interrupt.py). Servers: real sockets on 127.0.0.1 that accept and
never answer, or never accept (a full backlog: connects stay pending)."""

from __future__ import annotations

import asyncio
import random
import socket
import threading
import time
from pathlib import Path

import pytest

from prefkit.llm.batch import arun_requests
from prefkit.llm.cache import CachedBackend
from prefkit.llm.client import OpenAIClient
from prefkit.llm.types import ChatRequest

ROUNDS = 60  # cancel points per server kind (each round: 6 requests, 3 of them shared)
UNWIND = 2.0  # seconds a cancelled batch may take to end (it takes milliseconds)


def _silent(accept: bool) -> tuple[socket.socket, list[socket.socket]]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64 if accept else 0)
    held: list[socket.socket] = []

    def run() -> None:
        while True:
            try:
                held.append(srv.accept()[0])
            except OSError:
                return

    if accept:
        threading.Thread(target=run, daemon=True).start()
    return srv, held


@pytest.mark.parametrize("accept", [True, False], ids=["never-answers", "never-accepts"])
def test_cancel_anywhere_ends_the_batch(tmp_path: Path, accept: bool) -> None:
    srv, held = _silent(accept)
    port = srv.getsockname()[1]
    rng = random.Random(0)
    outcomes, slowest = [], 0.0

    async def one_round(backend: CachedBackend) -> tuple[str, float]:
        requests = [ChatRequest.of(f"q{i % 3}") for i in range(6)]
        task = asyncio.ensure_future(arun_requests(backend, requests, close=True))
        await asyncio.sleep(rng.uniform(0.0, 0.03))  # connect, send or wait
        task.cancel()
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(asyncio.shield(task), UNWIND)
        except asyncio.CancelledError:
            pass
        except TimeoutError:
            return "still running", UNWIND
        else:
            return "returned", time.monotonic() - t0
        # every request's task ended too (gather ends at the first cancelled one; a request
        # that swallowed its cancellation would go on retrying behind it)
        while time.monotonic() - t0 < UNWIND:
            left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if not left:
                return "cancelled", time.monotonic() - t0
            await asyncio.sleep(0.005)
        return f"{len(left)} request task(s) still running", UNWIND

    try:
        for r in range(ROUNDS):
            # a short attempt and one retry: a swallowed cancellation costs seconds, not hours
            client = OpenAIClient(base_url=f"http://127.0.0.1:{port}/v1", model="m",
                                  concurrency=4, timeout=5.0, max_retries=1)
            backend = CachedBackend(client, tmp_path / f"c{r}.sqlite")
            what, took = asyncio.run(one_round(backend))
            backend.close()
            outcomes.append(what)
            slowest = max(slowest, took)
            if what != "cancelled":
                break
    finally:
        srv.close()
        for c in held:
            c.close()
    assert outcomes == ["cancelled"] * ROUNDS, f"round {len(outcomes)}: {outcomes[-1]}"
    assert slowest < UNWIND
    if accept:
        assert held, "no request reached the server"
