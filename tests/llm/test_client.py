"""OpenAIClient against a real OpenAI-compatible server on 127.0.0.1 with injected faults:
retries, bounded concurrency (measured on the server), Retry-After, timeouts, counted
failures, order, configuration from the environment."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest

from prefkit.llm.batch import run_requests, summarize
from prefkit.llm.client import OpenAIClient, parse_completion, request_body, retry_after_seconds
from prefkit.llm.server import Faults
from prefkit.llm.types import ChatBackend, ChatRequest

FAST = {"backoff": 0.005, "max_backoff": 0.02, "seed": 0}  # back-off small enough for tests


def requests(n: int, **options) -> list[ChatRequest]:
    return [ChatRequest.of(f"q{i}", **options) for i in range(n)]


def client(server, **kw) -> OpenAIClient:
    return OpenAIClient(base_url=server.base_url, model="tiny", **{**FAST, **kw})


def test_client_is_a_chat_backend(serve) -> None:
    assert isinstance(client(serve()), ChatBackend)


def test_retries_through_429_500_and_malformed_bodies_and_keeps_order(serve) -> None:
    # n % 4 -> 429 (Retry-After 0.01 s), n % 9 -> 500, n % 11 -> 200 with truncated JSON:
    # 39% of hits fail, so 13 failed attempts in a row (0.39**13 = 5e-6) do not happen
    server = serve(Faults(rate_limit_every=4, retry_after=0.01, error_every=9, malformed_every=11))
    results = run_requests(client(server, concurrency=4, max_retries=12), requests(60),
                           progress=False)
    assert [r.error for r in results] == [None] * 60
    assert [r.text for r in results] == [f"echo q{i}" for i in range(60)]
    s = summarize(results)
    assert s["errors"] == 0 and s["ok"] == 60
    # every HTTP hit the server saw is one attempt the client counted
    assert s["attempts"] == server.stats.requests
    assert server.stats.answered == 60
    assert server.stats.statuses["429"] == server.stats.faults["rate_limit"] > 0
    assert server.stats.statuses["500"] == server.stats.faults["error"] > 0
    assert server.stats.faults["malformed"] > 0
    assert s["retried"] == sum(r.attempts > 1 for r in results) > 0


def test_concurrency_is_bounded_server_side(serve) -> None:
    server = serve(Faults(delay=0.05))
    results = run_requests(client(server, concurrency=5), requests(40), concurrency=64,
                           progress=False)
    assert all(r.ok for r in results)
    assert server.stats.max_in_flight == 5  # reached, never passed


def test_retry_after_seconds_is_honoured(serve) -> None:
    # request 1 answered, request 2 -> 429 with Retry-After: 0.6, request 3 answered
    server = serve(Faults(rate_limit_every=2, retry_after=0.6))
    c = client(server)  # back-off alone would wait at most 0.005 s

    async def go():
        first = await c.chat(ChatRequest.of("a"))
        t = time.perf_counter()
        second = await c.chat(ChatRequest.of("b"))
        return first, second, time.perf_counter() - t

    first, second, elapsed = asyncio.run(go())
    assert first.attempts == 1 and second.ok and second.attempts == 2
    assert 0.6 <= elapsed < 3.0


def test_retry_after_ms_is_preferred(serve) -> None:
    server = serve(Faults(rate_limit_every=2, retry_after_ms=300))
    c = client(server)

    async def go():
        await c.chat(ChatRequest.of("a"))
        t = time.perf_counter()
        r = await c.chat(ChatRequest.of("b"))
        return r, time.perf_counter() - t

    r, elapsed = asyncio.run(go())
    assert r.ok and r.attempts == 2 and 0.3 <= elapsed < 2.0


def test_retry_after_parsing() -> None:
    assert retry_after_seconds({"Retry-After": "2"}) == 2.0
    assert retry_after_seconds({"Retry-After": "1.5", "retry-after-ms": "250"}) == 0.25
    # an HTTP date (RFC 9110 10.2.3): 30 s after "now"
    now = 784111777.0 - 30  # Sun, 06 Nov 1994 08:49:37 GMT is 784111777 (RFC 9110's example)
    assert retry_after_seconds({"Retry-After": "Sun, 06 Nov 1994 08:49:37 GMT"}, now) == 30.0
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_a_retry_after_beyond_the_limit_ends_the_request(serve) -> None:
    server = serve(Faults(rate_limit_every=1, retry_after=600))
    r = asyncio.run(client(server).chat(ChatRequest.of("x")))
    assert not r.ok and r.attempts == 1 and server.stats.requests == 1
    assert r.error.startswith("HTTP 429: rate limited (injected)")
    assert "retry after 600 s, more than max_retry_after=120 s" in r.error


def test_without_retry_after_the_wait_is_full_jitter_back_off(serve) -> None:
    import random

    server = serve(Faults(error_every=2))  # request 2 -> 500 without Retry-After
    c = OpenAIClient(base_url=server.base_url, model="tiny", backoff=0.8, max_backoff=0.8,
                     seed=3)
    expected = random.Random(3).uniform(0.0, 0.8)  # retry 0: uniform(0, min(cap, 0.8 * 2**0))

    async def go():
        await c.chat(ChatRequest.of("a"))
        t = time.perf_counter()
        r = await c.chat(ChatRequest.of("b"))
        return r, time.perf_counter() - t

    r, elapsed = asyncio.run(go())
    assert r.ok and r.attempts == 2
    assert expected <= elapsed < expected + 1.0


def test_the_servers_x_should_retry_header_is_obeyed() -> None:
    from prefkit.llm.client import _should_retry

    assert _should_retry(httpx.Response(400, headers={"x-should-retry": "true"}))
    assert not _should_retry(httpx.Response(503, headers={"x-should-retry": "false"}))
    assert [_should_retry(httpx.Response(s)) for s in (400, 401, 404, 408, 409, 422, 429, 500,
                                                        503)] == \
        [False, False, False, True, True, False, True, True, True]


def test_a_stalled_request_times_out_and_is_retried(serve) -> None:
    server = serve(Faults(stall_every=2, stall=3.0))
    c = client(server, timeout=0.5)

    async def go():
        await c.chat(ChatRequest.of("a"))
        t = time.perf_counter()
        r = await c.chat(ChatRequest.of("b"))
        return r, time.perf_counter() - t

    r, elapsed = asyncio.run(go())
    assert r.ok and r.text == "echo b" and r.attempts == 2
    assert 0.5 <= elapsed < 2.5  # one timeout, not the 3 s stall


def test_timeouts_exhaust_the_retries_and_say_so(serve) -> None:
    server = serve(Faults(stall_every=1, stall=2.0))
    r = asyncio.run(client(server, timeout=0.2, max_retries=2).chat(ChatRequest.of("a")))
    assert not r.ok and r.text is None and r.attempts == 3
    assert r.error == "timeout after 0.2 s (3 attempts)"


def test_failures_are_counted_not_raised(serve) -> None:
    server = serve(Faults(error_every=1))
    results = run_requests(client(server, max_retries=2), requests(5), progress=False)
    s = summarize(results)
    assert s["errors"] == 5 and s["ok"] == 0 and s["attempts"] == 15
    assert server.stats.requests == 15
    assert results[0].error == "HTTP 500: internal error (injected) (3 attempts)"


def test_a_400_is_not_retried(serve) -> None:
    server = serve(Faults(bad_request_every=1))
    r = asyncio.run(client(server).chat(ChatRequest.of("a")))
    assert r.attempts == 1 and server.stats.requests == 1
    assert r.error == "HTTP 400: bad request (injected) (1 attempt)"


def _free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_is_retried_then_reported() -> None:
    port = _free_port()
    c = OpenAIClient(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=2,
                     connect_backoff=0.01, **FAST)
    r = asyncio.run(c.chat(ChatRequest.of("a")))
    assert r.attempts == 3 and "(3 attempts)" in r.error
    assert r.error.startswith(f"cannot connect to http://127.0.0.1:{port}/v1 (ConnectError")


def test_a_refused_connection_fails_fast_with_the_default_retries() -> None:
    """A server that is not listening (a real free port): openai-python's policy for a
    connection error (DEFAULT_MAX_RETRIES 2; waits 0.5 * 2**r s less up to 25%, its
    _calculate_retry_timeout), not the 6 back-offs of up to 30 s that 429/5xx get. Was: every
    request waited through 6 back-offs (about 16 s each on average, up to 31.5 s), a judge
    run of 200 requests about 1 min 46 s."""
    port = _free_port()
    c = OpenAIClient(base_url=f"http://127.0.0.1:{port}/v1", model="m", seed=0)
    assert c.max_retries == 6 and c.connect_retries == 2  # 429/5xx/timeouts keep 6
    t = time.perf_counter()
    r = asyncio.run(c.chat(ChatRequest.of("a")))
    one = time.perf_counter() - t
    assert r.attempts == 3 and not r.ok
    # the two waits: 0.5 and 1.0 s, each less up to 25% -> 1.125 .. 1.5 s in all
    assert 1.1 <= one < 1.5 + 1.0, one
    # a whole run: once one request gave up, a refused connection ends each later request
    # at its first attempt (no wait), so 200 requests end in about the time of one
    c = OpenAIClient(base_url=f"http://127.0.0.1:{port}/v1", model="m", seed=0,
                     concurrency=16)
    t = time.perf_counter()
    results = run_requests(c, requests(200), progress=False)
    elapsed = time.perf_counter() - t
    assert all(not x.ok and "cannot connect to" in x.error for x in results)
    assert elapsed < 6.0, elapsed
    assert sum(x.attempts for x in results) <= 16 * 3 + 200


def test_after_a_refusal_the_client_retries_again_once_the_server_answers(serve) -> None:
    port = _free_port()
    c = OpenAIClient(base_url=f"http://127.0.0.1:{port}/v1", model="tiny",
                     connect_backoff=0.01, **FAST)

    async def go():
        first = await c.chat(ChatRequest.of("a"))    # gives up after 3 attempts
        second = await c.chat(ChatRequest.of("b"))   # the server is down: 1 attempt
        server = serve(port=port)                    # now it listens
        third = await c.chat(ChatRequest.of("c"))
        return first, second, third, server

    first, second, third, server = asyncio.run(go())
    assert (first.attempts, second.attempts) == (3, 1)
    assert third.ok and third.text == "echo c" and server.stats.requests == 1
    assert c._down is False  # answered: a later refusal is retried twice again


def test_a_timeout_keeps_the_full_retry_policy(serve) -> None:
    """Only a connection that cannot be made fails fast: a server that accepts and stalls
    is retried max_retries times, as before."""
    server = serve(Faults(delay=1.0))
    c = client(server, timeout=0.05, max_retries=4, connect_retries=0)
    r = asyncio.run(c.chat(ChatRequest.of("a")))
    assert r.attempts == 5 and r.error.startswith("timeout after 0.05 s")


def test_usage_and_finish_reason(serve) -> None:
    r = asyncio.run(client(serve()).chat(ChatRequest.of("abc")))
    assert (r.prompt_tokens, r.completion_tokens, r.finish_reason) == (3, 8, "stop")
    assert r.logprobs is None  # none asked for, none given


def test_configuration_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="no server to talk to. Pass base_url="):
        OpenAIClient(model="m")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://example.test:9/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    c = OpenAIClient(model="m")
    assert c.url == "http://example.test:9/v1/chat/completions"
    assert c.headers["Authorization"] == "Bearer sk-test"
    assert c.name == "m"
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert OpenAIClient(model="m").base_url == "https://api.openai.com/v1"  # as openai-python
    with pytest.raises(ValueError, match="concurrency must be >= 1"):
        OpenAIClient(base_url="http://x", concurrency=0)


def test_a_request_without_a_model_is_an_error_result(serve) -> None:
    c = OpenAIClient(base_url=serve().base_url)
    r = asyncio.run(c.chat(ChatRequest.of("a")))
    assert r.attempts == 0 and r.error.startswith("no model")


def test_request_body_and_parsing() -> None:
    req = ChatRequest.of("hi", max_tokens=4, top_logprobs=2, seed=7, stop=["\n"])
    assert request_body(req, "m") == {
        "model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.0,
        "max_tokens": 4, "logprobs": True, "top_logprobs": 2, "seed": 7, "stop": ["\n"]}
    data = {"choices": [{"message": {"content": "A"}, "finish_reason": "stop", "logprobs": {
        "content": [{"token": "A", "logprob": -0.1, "top_logprobs": [
            {"token": "A", "logprob": -0.1}, {"token": "B", "logprob": -2.4}]}]}}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1}}
    r = parse_completion(data)
    assert r.text == "A" and r.logprobs[0].top == (("A", -0.1), ("B", -2.4))
    with pytest.raises(KeyError):
        parse_completion({"id": "x"})


def test_run_requests_inside_a_running_loop(serve) -> None:
    server = serve()

    async def notebook_cell():  # a caller that already runs an event loop
        return run_requests(client(server), requests(3), progress=False)

    assert [r.text for r in asyncio.run(notebook_cell())] == ["echo q0", "echo q1", "echo q2"]


def test_httpx_is_the_transport() -> None:
    c = OpenAIClient(base_url="http://127.0.0.1:1/v1", model="m")

    async def go():
        http = await c._take()
        kind = type(http)
        await c.aclose()
        return kind

    assert asyncio.run(go()) is httpx.AsyncClient
