"""CachedBackend: real SQLite file, real server counting its hits. A rerun makes zero calls, a
run killed half-way (SIGKILL of a real process) resumes asking only for what is missing,
failures are not cached, identical concurrent requests share one call."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from prefkit.llm.batch import run_requests, summarize
from prefkit.llm.cache import CachedBackend, request_key
from prefkit.llm.client import OpenAIClient
from prefkit.llm.server import Faults
from prefkit.llm.types import ChatRequest

ROOT = Path(__file__).resolve().parents[2]


def requests(n: int) -> list[ChatRequest]:
    return [ChatRequest.of(f"q{i}", top_logprobs=0) for i in range(n)]


def cached(server, path, **kw) -> CachedBackend:
    client = OpenAIClient(base_url=server.base_url, model="tiny", backoff=0.005, **kw)
    return CachedBackend(client, path)


def test_a_rerun_makes_zero_calls(serve, tmp_path) -> None:
    server = serve()
    first = run_requests(cached(server, tmp_path / "c.sqlite"), requests(30), progress=False)
    assert server.stats.requests == 30 and not any(r.cached for r in first)
    backend = cached(server, tmp_path / "c.sqlite")  # a new process would open it the same way
    second = run_requests(backend, requests(30), progress=False)
    assert server.stats.requests == 30  # counted on the server: no new hit
    assert [r.text for r in second] == [r.text for r in first]
    assert [(r.prompt_tokens, r.completion_tokens) for r in second] == \
        [(r.prompt_tokens, r.completion_tokens) for r in first]
    assert all(r.cached and r.attempts == 0 for r in second)
    assert (backend.hits, backend.calls, len(backend)) == (30, 0, 30)
    assert summarize(second)["cached"] == 30


def test_failures_are_not_cached_and_a_rerun_retries_them(serve, tmp_path) -> None:
    server = serve(Faults(bad_request_every=2))  # even hits: 400, not retried
    first = run_requests(cached(server, tmp_path / "c.sqlite"), requests(10), concurrency=1,
                         progress=False)
    assert summarize(first)["errors"] == 5
    backend = cached(server, tmp_path / "c.sqlite")
    assert len(backend) == 5
    run_requests(backend, requests(10), concurrency=1, progress=False)
    assert (backend.hits, backend.calls) == (5, 5)  # only the 5 failed ones asked again
    assert server.stats.requests == 15


def test_identical_requests_in_flight_share_one_call(serve, tmp_path) -> None:
    server = serve(Faults(delay=0.1))
    backend = cached(server, tmp_path / "c.sqlite")
    results = run_requests(backend, [ChatRequest.of("same")] * 12, concurrency=12,
                           progress=False)
    assert server.stats.requests == 1 and backend.shared == 11
    assert {r.text for r in results} == {"echo same"}
    assert sum(not r.cached for r in results) == 1


def test_a_killed_run_resumes_with_only_the_missing_calls(serve, tmp_path) -> None:
    server = serve(Faults(delay=0.05))
    path = tmp_path / "c.sqlite"
    child = textwrap.dedent(f"""
        from prefkit.llm import CachedBackend, ChatRequest, OpenAIClient, run_requests
        backend = CachedBackend(OpenAIClient(base_url={server.base_url!r}, model="tiny"),
                                {str(path)!r})
        run_requests(backend, [ChatRequest.of(f"q{{i}}", top_logprobs=0) for i in range(40)],
                     concurrency=2, progress=False)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", child], env=env)
    deadline = time.monotonic() + 60
    while server.stats.answered < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # no clean-up runs: what survives was committed
    proc.wait()
    assert 10 <= server.stats.answered < 40
    with sqlite3.connect(path) as db:
        done = db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert 8 <= done < 40  # each answer committed on arrival (up to 2 in flight lost)
    hits_before = server.stats.requests
    backend = cached(server, path)
    results = run_requests(backend, requests(40), progress=False)
    assert [r.text for r in results] == [f"echo q{i}" for i in range(40)]
    assert server.stats.requests - hits_before == 40 - done == backend.calls
    assert backend.hits == done


def test_wal_mode_and_the_stored_row(serve, tmp_path) -> None:
    server = serve()
    backend = cached(server, tmp_path / "c.sqlite")
    run_requests(backend, [ChatRequest.of("x")], progress=False)
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        key, name, req = db.execute("SELECT key, backend, request FROM results").fetchone()
    assert name == "tiny" and key == request_key("tiny", ChatRequest.of("x"))
    assert '"content":"x"' in req


def test_the_key_is_the_content() -> None:
    a = ChatRequest.of("x", seed=1, stop="\n")
    assert request_key("m", a) == request_key("m", ChatRequest.of("x", stop="\n", seed=1))
    assert request_key("m", a) != request_key("other", a)
    assert request_key("m", a) != request_key("m", ChatRequest.of("x", seed=2, stop="\n"))
    assert request_key("m", a) != request_key("m", ChatRequest.of("x", seed=1, stop="\n",
                                                                  temperature=0.5))
    assert request_key("m", a) != request_key("m", ChatRequest.of(
        [{"role": "system", "content": "x"}], seed=1, stop="\n"))


def test_logprobs_survive_the_round_trip(tmp_path) -> None:
    from prefkit.llm.types import ChatResult, TokenLogprob

    class Fixed:
        name, calls = "fixed", 0

        async def chat(self, request):
            self.calls += 1
            return ChatResult(text="A", logprobs=(TokenLogprob("A", -0.25, (("A", -0.25),
                                                                           ("B", -1.5))),),
                              prompt_tokens=3, completion_tokens=1, finish_reason="stop")

    inner = Fixed()
    backend = CachedBackend(inner, tmp_path / "c.sqlite")
    first = asyncio.run(backend.chat(ChatRequest.of("q", top_logprobs=2)))
    again = asyncio.run(backend.chat(ChatRequest.of("q", top_logprobs=2)))
    assert inner.calls == 1 and again.cached
    assert again.logprobs == first.logprobs and again.text == "A"
