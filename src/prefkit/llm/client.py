"""An async client for any OpenAI-compatible chat-completions server (vLLM, llama.cpp, TGI,
hosted APIs), on ``httpx.AsyncClient``.

    client = OpenAIClient(base_url="http://127.0.0.1:8000/v1", model="qwen", concurrency=32)
    result = await client.chat(ChatRequest.of("Which is better, A or B?", top_logprobs=5))
    result.text, result.logprobs[0].top, result.prompt_tokens, result.error

What it does for every request:

* **bounded concurrency**: at most ``concurrency`` requests are on the wire at once, each on
  its own keep-alive connection (a slot); back-off sleeps hold no slot;
* **retries** (``max_retries`` after the first attempt) on 408, 409, 429, 5xx, dropped
  connections, timeouts and a 200 whose body is not a chat completion, waiting what the server asks
  (``retry-after-ms``, then ``Retry-After`` in seconds or as an HTTP date, up to
  ``max_retry_after``) or else an exponential back-off with full jitter:
  ``uniform(0, min(max_backoff, backoff * 2**retry))`` (AWS Architecture Blog, "Exponential
  Backoff And Jitter", 2015). Other 4xx are the caller's mistake and are not retried; a server
  header ``x-should-retry: true|false`` overrides the status, as openai-python obeys it;
* a connection that cannot be made at all (refused: nothing listens on the port; no such
  host) **fails fast**: ``connect_retries`` (2) retries after ``connect_backoff * 2**r``
  seconds less up to 25% (0.5 s, then 1 s: openai-python's ``_calculate_retry_timeout``
  with its ``INITIAL_RETRY_DELAY``), so a server that is not listening is given up on in
  about 1.5 s; once a request has given up so, a refused connection ends each later request
  at its first attempt, without waiting, until the server answers one (a run of thousands
  of requests against a server that is down ends in seconds, not minutes);
* a **per-attempt timeout**: ``timeout`` seconds for the whole attempt (connect, send, wait,
  read), not per socket operation;
* ``logprobs: true, top_logprobs: k`` on the wire when ``request.top_logprobs`` is k > 0, parsed
  into :class:`~prefkit.llm.types.TokenLogprob` (``None`` when the server gives none);
  ``usage`` token counts;
* it **never raises** for a failed request: :attr:`ChatResult.error` says what failed and after
  how many attempts (``"HTTP 429: rate limited (7 attempts)"``).

Options default from the environment as openai-python's do: ``OPENAI_BASE_URL`` and
``OPENAI_API_KEY``. With neither a base URL nor a key there is nothing to talk to and the
constructor says so; with a key alone the base URL is ``https://api.openai.com/v1``, as
openai-python's.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import random
import time
from typing import Any, Self

import httpx

from .types import ChatRequest, ChatResult, TokenLogprob

__all__ = ["OPENAI_DEFAULT_BASE_URL", "OpenAIClient", "parse_completion", "request_body",
           "retry_after_seconds"]

#: Where openai-python sends requests when ``OPENAI_BASE_URL`` is unset.
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: HTTP statuses retried besides 5xx (openai-python's list: request timeout, lock timeout, rate
#: limit).
RETRY_STATUSES = frozenset({408, 409, 429})


class OpenAIClient:
    """A :class:`~prefkit.llm.types.ChatBackend` for an OpenAI-compatible server.

    Parameters
    ----------
    base_url : str, optional
        The API root, the part before ``/chat/completions`` (``http://host:8000/v1``). Default:
        ``OPENAI_BASE_URL``, else ``https://api.openai.com/v1`` when an API key is set.
    api_key : str, optional
        Sent as ``Authorization: Bearer ...``. Default ``OPENAI_API_KEY``; none is sent when
        neither is set (local servers need none).
    model : str
        The model asked for when a request names none.
    concurrency : int
        Most requests in flight at once.
    timeout : float
        Seconds one attempt may take, end to end.
    max_retries : int
        Retries after the first attempt (so at most ``max_retries + 1`` attempts).
    connect_retries : int
        Retries of a connection that could not be made (refused, unknown host), at most
        ``max_retries``; see the module docstring.
    connect_backoff : float
        The first wait before a connection is tried again (doubled each retry, 8 s at most,
        less up to 25%).
    backoff, max_backoff : float
        Exponential back-off with full jitter: retry r (0-based) waits
        ``uniform(0, min(max_backoff, backoff * 2**r))`` seconds when the server names no wait.
    max_retry_after : float
        The longest server-asked wait honoured; a longer ``Retry-After`` ends the request with
        its error instead of stalling the run.
    name : str, optional
        The backend's name in caches and reports; default the model.
    headers : dict, optional
        Extra HTTP headers for every request.
    seed : int, optional
        Seeds the jitter (reproducible waits in tests).
    """

    def __init__(self, *, base_url: str | None = None, api_key: str | None = None,
                 model: str = "", concurrency: int = 16, timeout: float = 60.0,
                 max_retries: int = 6, backoff: float = 0.5, max_backoff: float = 30.0,
                 connect_retries: int = 2, connect_backoff: float = 0.5,
                 max_retry_after: float = 120.0, name: str | None = None,
                 headers: dict[str, str] | None = None, seed: int | None = None) -> None:
        api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY") or None
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        if base_url is None:
            if api_key is None:
                raise ValueError(
                    "OpenAIClient: no server to talk to. Pass base_url= (for example "
                    "'http://127.0.0.1:8000/v1' for a local vLLM or llama.cpp server) or set "
                    "OPENAI_BASE_URL; for api.openai.com set OPENAI_API_KEY.")
            base_url = OPENAI_DEFAULT_BASE_URL
        if concurrency < 1:
            raise ValueError(f"OpenAIClient: concurrency must be >= 1, got {concurrency}")
        if max_retries < 0 or connect_retries < 0:
            raise ValueError("OpenAIClient: max_retries and connect_retries must be >= 0, got "
                             f"{max_retries} and {connect_retries}")
        if not timeout > 0:
            raise ValueError(f"OpenAIClient: timeout must be > 0 seconds, got {timeout}")
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.api_key = api_key
        self.model = model
        self.name = name or model or self.base_url
        self.concurrency = concurrency
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.connect_retries = min(connect_retries, max_retries)
        self.connect_backoff = float(connect_backoff)
        # a request gave up on connecting, and the server has not answered since: a refused
        # connection then ends a request at its first attempt instead of retrying
        self._down = False
        self.max_retry_after = float(max_retry_after)
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self._rng = random.Random(seed)
        # The slots: one single-connection httpx client each, made on demand, taken from a
        # queue while a request is on the wire (so the queue is also the concurrency bound).
        # httpcore's pool scans every connection for every request (quadratic in the pool
        # size: about 4x the CPU per request at 64 connections), a pool of one scans one. The
        # slots bind to the event loop they first run on; run_requests starts a loop per call.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: asyncio.LifoQueue[httpx.AsyncClient] | None = None
        self._made: list[httpx.AsyncClient] = []
        self._ssl: Any = None

    def __repr__(self) -> str:
        return (f"OpenAIClient(base_url={self.base_url!r}, model={self.model!r}, "
                f"concurrency={self.concurrency}, timeout={self.timeout}, "
                f"max_retries={self.max_retries})")

    # -- connection slots ----------------------------------------------------------------------
    def _slots(self) -> asyncio.LifoQueue[httpx.AsyncClient]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._idle is None:
            self._loop, self._idle, self._made = loop, asyncio.LifoQueue(), []
        return self._idle

    async def _take(self) -> httpx.AsyncClient:
        idle = self._slots()
        if idle.empty() and len(self._made) < self.concurrency:
            if self._ssl is None:  # made once (httpx makes one per client otherwise: ~20 ms)
                self._ssl = httpx.create_ssl_context()
            # The attempt's deadline is enforced around the whole request (asyncio.timeout);
            # httpx's own per-operation timeouts are a backstop a little beyond it.
            http = httpx.AsyncClient(
                headers=self.headers, verify=self._ssl,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                timeout=httpx.Timeout(self.timeout + 5.0))
            self._made.append(http)
            return http
        return await idle.get()

    async def aclose(self) -> None:
        """Close the connections of the running loop (a later call opens new ones)."""
        if self._loop is asyncio.get_running_loop():
            await asyncio.gather(*(http.aclose() for http in self._made))
        self._loop, self._idle, self._made = None, None, []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- one request ---------------------------------------------------------------------------
    async def chat(self, request: ChatRequest) -> ChatResult:
        """Answer one request; never raises for a failed one (see the module docstring)."""
        body = request_body(request, self.model)
        if not body.get("model"):
            return ChatResult(text=None, attempts=0, error=(
                "no model: pass model= to OpenAIClient or to the ChatRequest"))
        payload = json.dumps(body).encode()
        error = ""
        refused = 0  # attempts whose connection could not be made
        for attempt in range(1, self.max_retries + 2):
            wait: float | None = None  # None: the back-off; a server- or connect-set wait
            try:
                http = await self._take()
                try:
                    async with asyncio.timeout(self.timeout):
                        response = await http.post(self.url, content=payload)
                finally:
                    self._idle.put_nowait(http)  # type: ignore[union-attr]
            except (TimeoutError, httpx.TimeoutException):
                error, retry = f"timeout after {self.timeout:g} s", True
            except httpx.ConnectError as exc:  # nothing listens there, or no such host
                refused += 1
                error = (f"cannot connect to {self.base_url} ({type(exc).__name__}: "
                         f"{exc or 'connection failed'})")
                retry = refused <= (0 if self._down else self.connect_retries)
                self._down = self._down or not retry
                wait = max(1e-3, min(self.connect_backoff * 2.0 ** (refused - 1), 8.0)
                           * (1.0 - 0.25 * self._rng.random()))
            except httpx.TransportError as exc:
                error, retry = f"{type(exc).__name__}: {exc or 'connection failed'}", True
            else:
                self._down = False  # the server answers
                if response.status_code == 200 and _is_html(response):  # asking again
                    error, retry = (f"a web page, not a chat completion, from {self.url} "
                                    f"({_short(response.text, 80)!r})"), False  # cannot mend
                elif response.status_code == 200:
                    try:
                        return parse_completion(response.json(), attempts=attempt)
                    except KeyError as exc:  # say which field, and what came instead
                        error, retry = (f"malformed response: no {exc.args[0]!r} field in "
                                        f"{_short(response.text, 120)}"), True
                    except (ValueError, IndexError, TypeError) as exc:
                        error, retry = f"malformed response: {_short(str(exc))}", True
                else:
                    error = f"HTTP {response.status_code}: {_error_text(response)}"
                    retry = _should_retry(response)
                    wait = retry_after_seconds(response.headers)
                    if retry and wait is not None and wait > self.max_retry_after:
                        error += (f" (the server asks to retry after {wait:g} s, more than "
                                  f"max_retry_after={self.max_retry_after:g} s)")
                        retry = False
            if not retry or attempt > self.max_retries:
                return ChatResult(text=None, attempts=attempt,
                                  error=f"{error} ({_attempts(attempt)})")
            if wait is None or wait <= 0:
                wait = self._rng.uniform(0.0, min(self.max_backoff,
                                                  self.backoff * 2.0 ** (attempt - 1)))
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover


# -- the wire format ----------------------------------------------------------------------------
def request_body(request: ChatRequest, default_model: str = "") -> dict[str, Any]:
    """The JSON body of ``POST /chat/completions`` for ``request``."""
    body: dict[str, Any] = {"model": request.model or default_model,
                            "messages": [dict(m) for m in request.messages],
                            "temperature": request.temperature}
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.top_logprobs > 0:
        body["logprobs"] = True
        body["top_logprobs"] = request.top_logprobs
    body.update(dict(request.extra))
    return body


def parse_completion(data: dict[str, Any], *, attempts: int = 1) -> ChatResult:
    """A :class:`ChatResult` from a chat-completion response body (the first choice).

    Raises ``KeyError``/``TypeError``/``ValueError`` when ``data`` is not a chat completion.
    """
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    choice = data["choices"][0]
    text = choice["message"]["content"]
    if text is not None and not isinstance(text, str):
        raise TypeError(f"message.content is {type(text).__name__}, not a string")
    logprobs = None
    content = (choice.get("logprobs") or {}).get("content")
    if content is not None:
        logprobs = tuple(
            TokenLogprob(token=t["token"], logprob=float(t["logprob"]),
                         top=tuple((a["token"], float(a["logprob"]))
                                   for a in t.get("top_logprobs") or ()))
            for t in content)
    usage = data.get("usage") or {}
    return ChatResult(text=text if text is not None else "", logprobs=logprobs,
                      prompt_tokens=usage.get("prompt_tokens"),
                      completion_tokens=usage.get("completion_tokens"),
                      finish_reason=choice.get("finish_reason"), attempts=attempts, raw=data)


def retry_after_seconds(headers: httpx.Headers | dict[str, str],
                        now: float | None = None) -> float | None:
    """Seconds the server asks to wait: ``retry-after-ms``, else ``Retry-After`` as seconds or
    an HTTP date (RFC 9110 section 10.2.3); None when absent or unreadable."""
    headers = httpx.Headers(headers)
    for header, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            continue
        return seconds if math.isfinite(seconds) else None
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when.timestamp() - (time.time() if now is None else now)


def _should_retry(response: httpx.Response) -> bool:
    flag = response.headers.get("x-should-retry")
    if flag in ("true", "false"):
        return flag == "true"
    return response.status_code in RETRY_STATUSES or response.status_code >= 500


def _is_html(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").split(";")[0].strip() == "text/html"


def _error_text(response: httpx.Response) -> str:
    """The server's error message (OpenAI's ``{"error": {"message": ...}}`` or the body)."""
    try:
        data = response.json()
        message = data["error"]["message"] if isinstance(data.get("error"), dict) \
            else data.get("error") or data.get("detail") or data
    except Exception:  # noqa: BLE001 - any unreadable body is shown as text
        message = response.text
    return _short(str(message).strip() or response.reason_phrase)


def _short(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[:n] + "..."


def _attempts(n: int) -> str:
    return "1 attempt" if n == 1 else f"{n} attempts"
