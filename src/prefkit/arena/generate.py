"""Outputs generated on demand: a voter's own prompt answered by two (or K) models through
their OpenAI-compatible endpoints (vLLM, llama.cpp, TGI, hosted APIs), with
:class:`prefkit.llm.client.OpenAIClient`.

Every side is generated, concurrently, before the battle is shown: the answer arrives when
the slowest model has finished, so the time to the battle says nothing about which models
were drawn. A failure of any side ends the request without a battle and without saying
which side failed.

An endpoints file maps each arena model to its server::

    {"model-a": {"base_url": "http://127.0.0.1:8001/v1", "model": "qwen2.5-7b-instruct"},
     "model-b": {"base_url": "https://api.example.com/v1", "model": "x",
                 "api_key_env": "EXAMPLE_API_KEY", "max_tokens": 512}}
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Endpoint", "generate_answers", "read_endpoints"]


@dataclass(frozen=True)
class Endpoint:
    """One model's server: the API root, the model id it serves (default: the arena's name
    of the model), generation options."""

    base_url: str
    model: str = ""
    api_key_env: str | None = None
    max_tokens: int = 1024
    temperature: float = 0.7
    timeout: float = 120.0


def read_endpoints(path: str | Path) -> dict[str, Endpoint]:
    """The endpoints file (module docstring); a clear error names the bad entry."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read the endpoints file ({e}); write a JSON object "
                         '{"arena model name": {"base_url": "http://host:port/v1", "model": '
                         '"served model id"}, ...}') from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: expected a JSON object with one entry per arena model")
    out = {}
    known = set(Endpoint.__dataclass_fields__)
    for name, spec in raw.items():
        if not isinstance(spec, dict) or "base_url" not in spec:
            raise ValueError(f"{path}: entry {name!r} needs at least a 'base_url'")
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"{path}: entry {name!r} has unknown key(s) {sorted(unknown)}; "
                             f"known: {', '.join(sorted(known))}")
        out[str(name)] = Endpoint(**spec)
    return out


def clients(endpoints: dict[str, Endpoint]) -> dict[str, Any]:
    """One :class:`~prefkit.llm.client.OpenAIClient` per arena model."""
    from prefkit.llm.client import OpenAIClient

    return {name: OpenAIClient(base_url=e.base_url, model=e.model or name, timeout=e.timeout,
                               max_retries=2, name=name,
                               api_key=os.environ.get(e.api_key_env) if e.api_key_env else None)
            for name, e in endpoints.items()}


async def generate_answers(backends: dict[str, Any], endpoints: dict[str, Endpoint],
                           models: list[str], prompt: str) -> list[str] | None:
    """Each model's answer to ``prompt``, all generated concurrently; ``None`` if any
    failed (which one is not said)."""
    from prefkit.llm.types import ChatRequest

    async def one(m: str) -> Any:
        e = endpoints[m]
        return await backends[m].chat(ChatRequest.of(prompt, model=e.model or m,
                                                     max_tokens=e.max_tokens,
                                                     temperature=e.temperature))

    results = await asyncio.gather(*(one(m) for m in models))
    if any(not r.ok or not (r.text or "").strip() for r in results):
        return None
    return [r.text for r in results]
