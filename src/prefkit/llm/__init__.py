"""Chat backends: an OpenAI-compatible async client, a local transformers model, a
content-keyed cache; one contract (:mod:`prefkit.llm.types`) for judges, the arena and RL;
and the shared sampler of a local causal LM (:mod:`prefkit.llm.sampling`: RL's groups,
process rewards' rollouts).

    from prefkit.llm import CachedBackend, ChatRequest, OpenAIClient, run_requests

    client = OpenAIClient(base_url="http://127.0.0.1:8000/v1", model="judge", concurrency=32)
    backend = CachedBackend(client, "cache.sqlite")         # a rerun makes zero calls
    results = run_requests(backend, [ChatRequest.of("A or B?", top_logprobs=5)])

Every name is imported from its submodule on first use (PEP 562): ``import prefkit.llm``
loads neither httpx nor torch.
"""

from __future__ import annotations

from prefkit import _lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:
    from prefkit.llm.batch import arun_requests, run_requests, summarize
    from prefkit.llm.cache import CachedBackend, request_key
    from prefkit.llm.client import OpenAIClient
    from prefkit.llm.local import LabelDistribution, LocalModelBackend
    from prefkit.llm.sampling import Samples, SamplingConfig, sample
    from prefkit.llm.server import (
        Faults,
        LocalServer,
        Reply,
        ServerStats,
        canned_responder,
        model_responder,
        serve_responder,
    )
    from prefkit.llm.types import ChatBackend, ChatRequest, ChatResult, TokenLogprob

__getattr__, __dir__ = _lazy_exports(__name__, {
    "prefkit.llm.batch": ["arun_requests", "run_requests", "summarize"],
    "prefkit.llm.cache": ["CachedBackend", "request_key"],
    "prefkit.llm.client": ["OpenAIClient"],
    "prefkit.llm.local": ["LabelDistribution", "LocalModelBackend"],
    "prefkit.llm.sampling": ["Samples", "SamplingConfig", "sample"],
    "prefkit.llm.server": ["Faults", "LocalServer", "Reply", "ServerStats", "canned_responder",
                           "model_responder", "serve_responder"],
    "prefkit.llm.types": ["ChatBackend", "ChatRequest", "ChatResult", "TokenLogprob"],
})

__all__ = [
    "CachedBackend", "ChatBackend", "ChatRequest", "ChatResult", "Faults", "LabelDistribution",
    "LocalModelBackend", "LocalServer", "OpenAIClient", "Reply", "Samples", "SamplingConfig",
    "ServerStats", "TokenLogprob", "arun_requests", "canned_responder", "model_responder",
    "request_key", "run_requests", "sample", "serve_responder", "summarize",
]
