"""A real OpenAI-compatible chat-completions server (Starlette + uvicorn) on 127.0.0.1, for
tests, benchmarks and offline demos: the judge, the arena and online RL talk to it exactly as
to vLLM or api.openai.com.

    with serve_responder(canned_responder("[[A]]"), faults=Faults(rate_limit_every=3)) as url:
        OpenAIClient(base_url=url, model="local")...       # url = "http://127.0.0.1:PORT/v1"

A *responder* maps a :class:`~prefkit.llm.types.ChatRequest` to a :class:`Reply` (text, and the
per-token log-probabilities with their ``top_logprobs`` alternatives) or to a plain string.
:func:`canned_responder` answers fixed text; :func:`model_responder` answers with a transformers
causal LM by greedy decoding, its log-probabilities read from the model's distribution (see
:class:`prefkit.llm.local.LocalModelBackend`).

Routes: ``POST /v1/chat/completions`` (the OpenAI body and response, ``logprobs`` and
``top_logprobs``, ``usage``; errors as ``{"error": {"message", "type", "code"}}``),
``GET /v1/models``, and ``GET /stats`` (the :class:`ServerStats` counters as JSON).

:class:`Faults` injects the failures a client must survive, deterministically by request
number n = 1, 2, ... (every HTTP hit counts, retries included): a 429 with ``Retry-After``, a
stall past the client's timeout, a 500, a 200 whose body is truncated JSON; and a fixed delay
on every request. From a shell: ``python -m prefkit.llm.server --text "[[A]]" --delay 0.02``
(prints the base URL, serves until interrupted; ``--model DIR`` serves a local model).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from .types import ChatRequest, ChatResult, TokenLogprob

__all__ = ["Faults", "LocalServer", "Reply", "ServerStats", "canned_responder",
           "model_responder", "serve_responder"]


@dataclass(frozen=True)
class Reply:
    """What a responder answers: the text, optionally the generated tokens with their
    log-probabilities and alternatives, token counts (default: characters)."""

    text: str
    logprobs: tuple[TokenLogprob, ...] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str = "stop"


Responder = Callable[[ChatRequest], "Reply | str | Awaitable[Reply | str]"]


@dataclass(frozen=True)
class Faults:
    """Injected failures, by request number n (1-based, every hit counts; the first rule that
    matches wins, in this order):

    * ``rate_limit_every``: n % k == 0 answers 429 with ``Retry-After: retry_after`` seconds
      (``retry_after_ms`` sends ``retry-after-ms`` instead; None for no header);
    * ``stall_every``: sleeps ``stall`` seconds (past the client's timeout), then answers;
    * ``error_every``: 500 with an OpenAI error body;
    * ``malformed_every``: 200 whose body is truncated JSON;
    * ``bad_request_every``: 400 (not to be retried);

    and ``delay`` seconds before every answer (a model's latency)."""

    rate_limit_every: int = 0
    retry_after: float | None = 1.0
    retry_after_ms: float | None = None
    stall_every: int = 0
    stall: float = 5.0
    error_every: int = 0
    malformed_every: int = 0
    bad_request_every: int = 0
    delay: float = 0.0

    def pick(self, n: int) -> str | None:
        for kind in ("rate_limit", "stall", "error", "malformed", "bad_request"):
            every = getattr(self, f"{kind}_every")
            if every and n % every == 0:
                return kind
        return None


@dataclass
class ServerStats:
    """Counters kept by the server: ``requests`` (HTTP hits on chat/completions), ``answered``
    (200 with a completion), ``statuses`` (hits per status sent), ``faults`` (per injected
    kind), ``in_flight`` now and ``max_in_flight`` (most requests being handled at once)."""

    requests: int = 0
    answered: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)

    def reset(self) -> None:
        self.requests = self.answered = self.in_flight = self.max_in_flight = 0
        self.statuses.clear()
        self.faults.clear()

    def _count(self, table: dict[str, int], key: Any) -> None:
        table[str(key)] = table.get(str(key), 0) + 1


# -- responders ---------------------------------------------------------------------------------
def canned_responder(text: str | Callable[[ChatRequest], str]) -> Responder:
    """Answers ``text`` (or ``text(request)``) to every request, without log-probabilities."""
    def respond(request: ChatRequest) -> Reply:
        out = text(request) if callable(text) else text
        prompt = sum(len(m.get("content") or "") for m in request.messages)
        return Reply(out, prompt_tokens=prompt, completion_tokens=len(out))
    return respond


def model_responder(model: Any, tokenizer: Any = None, **options: Any) -> Responder:
    """Answers with a transformers causal LM (a model object or a path) by greedy decoding,
    through :class:`prefkit.llm.local.LocalModelBackend` (``options`` go to it). The server
    runs it in a worker thread, one request at a time."""
    from .local import LocalModelBackend

    backend = model if isinstance(model, LocalModelBackend) else \
        LocalModelBackend(model, tokenizer, **options)

    def respond(request: ChatRequest) -> Reply | ChatResult:
        return backend.generate(request)

    respond.blocking = True  # type: ignore[attr-defined]
    return respond


# -- the app ------------------------------------------------------------------------------------
def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> Any:
    from starlette.responses import JSONResponse
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}},
                        status_code=status, headers=headers)


def _completion(reply: Reply | ChatResult, body: dict[str, Any], n: int, model: str) -> dict:
    want = bool(body.get("logprobs")) and reply.logprobs is not None
    k = int(body.get("top_logprobs") or 0)
    logprobs = None
    if want:
        logprobs = {"content": [
            {"token": t.token, "logprob": t.logprob, "bytes": list(t.token.encode()),
             "top_logprobs": [{"token": a, "logprob": lp, "bytes": list(a.encode())}
                              for a, lp in t.top[:k]]}
            for t in reply.logprobs or ()]}
    text = reply.text or ""
    prompt = reply.prompt_tokens or 0
    completion = reply.completion_tokens if reply.completion_tokens is not None else len(text)
    return {
        "id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
        "model": body.get("model") or model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "logprobs": logprobs, "finish_reason": reply.finish_reason or "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion},
    }


def _to_request(body: dict[str, Any]) -> ChatRequest:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and "role" in m for m in messages):
        raise ValueError("'messages' must be a non-empty list of {'role', 'content'} objects")
    if body.get("stream"):
        raise ValueError("'stream': true is not supported by this server; ask without it")
    known = {"model", "messages", "temperature", "max_tokens", "top_logprobs", "logprobs"}
    extra = {k: v for k, v in body.items()
             if k not in known and isinstance(v, (str, int, float, bool))}
    if body.get("logprobs") and not body.get("top_logprobs"):
        extra["logprobs"] = True  # the chosen tokens' log-probabilities, no alternatives
    return ChatRequest(
        messages=tuple({"role": str(m["role"]), "content": str(m.get("content") or "")}
                       for m in messages),
        model=str(body.get("model") or ""), temperature=float(body.get("temperature") or 0.0),
        max_tokens=body.get("max_tokens") or body.get("max_completion_tokens"),
        top_logprobs=int(body.get("top_logprobs") or 0) if body.get("logprobs") else 0,
        extra=tuple(sorted(extra.items())))


def build_app(responder: Responder, *, faults: Faults | None = None,
              stats: ServerStats | None = None, model: str = "local") -> Any:
    """The Starlette application (``serve_responder`` runs it; mount it anywhere else)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    faults = faults or Faults()
    stats = stats if stats is not None else ServerStats()
    blocking = getattr(responder, "blocking", False)
    lock = threading.Lock()  # one model call at a time in the worker threads

    def locked(request: ChatRequest) -> Any:
        with lock:
            return responder(request)

    async def chat(http: Any) -> Any:
        stats.requests += 1
        n = stats.requests
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            response = await _answer(http, n)
        finally:
            stats.in_flight -= 1
        stats._count(stats.statuses, response.status_code)
        return response

    async def _answer(http: Any, n: int) -> Any:
        try:
            body = json.loads(await http.body())
            request = _to_request(body)
        except (ValueError, TypeError, AttributeError) as exc:
            return _error(400, f"invalid request body: {exc}", "invalid_request_error")
        fault = faults.pick(n)
        if fault:
            stats._count(stats.faults, fault)
        if faults.delay:
            await asyncio.sleep(faults.delay)
        if fault == "rate_limit":
            headers = {}
            if faults.retry_after_ms is not None:
                headers["retry-after-ms"] = f"{faults.retry_after_ms:g}"
            elif faults.retry_after is not None:
                headers["Retry-After"] = f"{faults.retry_after:g}"
            return _error(429, "rate limited (injected)", "rate_limit_error", headers)
        if fault == "stall":
            await asyncio.sleep(faults.stall)
        if fault == "error":
            return _error(500, "internal error (injected)", "server_error")
        if fault == "malformed":
            return Response('{"id": "chatcmpl-broken", "choices": [{"mess',
                            media_type="application/json")
        if fault == "bad_request":
            return _error(400, "bad request (injected)", "invalid_request_error")
        if inspect.iscoroutinefunction(responder):
            reply = await responder(request)
        elif blocking:
            reply = await run_in_threadpool(locked, request)
        else:
            reply = responder(request)
        if isinstance(reply, str):
            reply = Reply(reply)
        if getattr(reply, "error", None):
            return _error(500, f"responder failed: {reply.error}", "server_error")
        stats.answered += 1
        return JSONResponse(_completion(reply, body, n, model))

    async def models(http: Any) -> Any:
        return JSONResponse({"object": "list", "data": [
            {"id": model, "object": "model", "created": 0, "owned_by": "prefkit"}]})

    async def stats_route(http: Any) -> Any:
        return JSONResponse(asdict(stats))

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/chat/completions", chat, methods=["POST"]),
                             Route("/v1/models", models), Route("/stats", stats_route)])


# -- running it ---------------------------------------------------------------------------------
class LocalServer:
    """A server running in a background thread. ``base_url`` is ``http://HOST:PORT/v1``;
    ``stats`` its counters; ``with server as url:`` starts (if needed) and stops it."""

    def __init__(self, responder: Responder, host: str = "127.0.0.1", port: int = 0, *,
                 faults: Faults | None = None, model: str = "local") -> None:
        self.stats = ServerStats()
        self.faults = faults or Faults()
        self.app = build_app(responder, faults=self.faults, stats=self.stats, model=model)
        self.host, self._port = host, port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}/v1"

    def start(self) -> LocalServer:
        import uvicorn

        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._port))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False,
                                lifespan="off", loop="asyncio", backlog=4096,
                                timeout_graceful_shutdown=1, timeout_keep_alive=30)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"prefkit-llm-server-{self._port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the chat server on {self.host}:{self._port} did not start")
            time.sleep(0.01)
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> str:
        self.start()
        return self.base_url

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_responder(responder: Responder, host: str = "127.0.0.1", port: int = 0, *,
                    faults: Faults | None = None, model: str = "local") -> LocalServer:
    """Start an OpenAI-compatible server for ``responder`` in a background thread (``port=0``:
    a free port) and return it, started; ``with`` it to stop it at the end (the ``with``
    value is the base URL)."""
    return LocalServer(responder, host, port, faults=faults, model=model).start()


def main(argv: list[str] | None = None) -> None:
    """``python -m prefkit.llm.server``: serve canned text or a local model until interrupted;
    prints the base URL on the first line of standard output."""
    p = argparse.ArgumentParser(prog="python -m prefkit.llm.server", description=main.__doc__)
    p.add_argument("--text", default="[[A]]", help="canned answer (default [[A]])")
    p.add_argument("--model", help="a transformers causal LM folder (answers by greedy decoding)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: a free port")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    p.add_argument("--rate-limit-every", type=int, default=0)
    p.add_argument("--retry-after", type=float, default=1.0)
    args = p.parse_args(argv)
    responder = model_responder(args.model) if args.model else canned_responder(args.text)
    faults = Faults(delay=args.delay, rate_limit_every=args.rate_limit_every,
                    retry_after=args.retry_after)
    server = serve_responder(responder, args.host, args.port, faults=faults)
    print(server.base_url, flush=True)
    try:
        while server._thread is not None and server._thread.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


if __name__ == "__main__":
    main()
