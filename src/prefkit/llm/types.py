"""The contract between chat backends and their users (judges, the arena, online RL).

A backend turns one :class:`ChatRequest` into one :class:`ChatResult`. It never raises for a
failed request: the failure is the result's ``error`` (so one bad row of a thousand costs one
row, counted, not the run). Everything a caller needs to judge a verdict's certainty comes back
with it: the text, the log-probabilities of the generated tokens and their alternatives (when
the backend has them), token counts, and whether the answer came from the cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion, as the OpenAI chat-completions API takes it.

    ``messages`` are ``{"role": ..., "content": ...}`` dicts. ``top_logprobs`` > 0 asks for the
    log-probabilities of that many alternatives at every generated token (``logprobs=true`` on
    the wire). ``extra`` goes into the request body unchanged (``seed``, ``stop``, ...).
    """

    messages: tuple[dict[str, str], ...]
    model: str = ""
    temperature: float = 0.0
    max_tokens: int | None = None
    top_logprobs: int = 0
    extra: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, messages: list[dict[str, str]] | str, **options: Any) -> ChatRequest:
        """A request from a message list (or one user message) and keyword options; unknown
        options go to ``extra``."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        known = {"model", "temperature", "max_tokens", "top_logprobs"}
        extra = tuple(sorted((k, v) for k, v in options.items() if k not in known))
        return cls(messages=tuple(dict(m) for m in messages), extra=extra,
                   **{k: v for k, v in options.items() if k in known})


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token, its log-probability, and the ``top_logprobs`` alternatives at its
    position as ``(token, logprob)`` pairs, most likely first."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class ChatResult:
    """What came back for one request. ``error`` is None on success; otherwise it says what
    failed after the retries (``"HTTP 429: ..."``, ``"timeout after 30 s"``) and ``text`` is
    None."""

    text: str | None
    logprobs: tuple[TokenLogprob, ...] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None
    cached: bool = False
    attempts: int = 1
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None


@runtime_checkable
class ChatBackend(Protocol):
    """Anything that answers chat requests: an OpenAI-compatible server through
    :class:`prefkit.llm.client.OpenAIClient`, a local transformers model, a cache in front of
    either. ``name`` identifies the model in caches and reports."""

    name: str

    async def chat(self, request: ChatRequest) -> ChatResult: ...
