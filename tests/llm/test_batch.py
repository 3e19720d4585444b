"""run_requests / summarize: order, the worker bound, a backend that breaks the contract."""

from __future__ import annotations

import asyncio

from prefkit.llm.batch import _label, run_requests, summarize
from prefkit.llm.types import ChatRequest, ChatResult


class Slow:
    """Answers 'a:<content>' after a pause; raises on 'boom'; records the most in flight."""

    name, concurrency = "slow", 3

    def __init__(self) -> None:
        self.in_flight = self.max_in_flight = 0

    async def chat(self, request: ChatRequest) -> ChatResult:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            content = request.messages[-1]["content"]
            if content == "boom":
                raise RuntimeError("boom")
            return ChatResult(text="a:" + content, prompt_tokens=2, completion_tokens=3,
                              attempts=2 if content == "q1" else 1)
        finally:
            self.in_flight -= 1


def test_order_bound_and_contract_breaches() -> None:
    backend = Slow()
    reqs = [ChatRequest.of(c) for c in ["q0", "q1", "boom", "q3", "q4", "q5", "q6"]]
    results = run_requests(backend, reqs, progress=True)
    assert backend.max_in_flight == 3  # the backend's own concurrency by default
    assert [r.text for r in results] == ["a:q0", "a:q1", None, "a:q3", "a:q4", "a:q5", "a:q6"]
    assert results[2].error == "RuntimeError: boom"
    s = summarize(results)
    assert (s["n"], s["ok"], s["errors"], s["cached"], s["retried"], s["attempts"]) == \
        (7, 6, 1, 0, 1, 8)
    assert (s["prompt_tokens"], s["completion_tokens"]) == (12, 18)
    assert s["error_examples"] == ["RuntimeError: boom"]
    assert run_requests(Slow(), reqs, concurrency=1, progress=False)[0].text == "a:q0"
    assert run_requests(backend, [], progress=False) == []


def test_the_progress_label_counts_errors_and_cache_hits() -> None:
    assert _label("judging", {"done": 5, "errors": 2, "cached": 0}) == "judging (2 errors)"
    assert _label("judging", {"done": 5, "errors": 1, "cached": 3}) == \
        "judging (1 error, 3 cached)"
