"""Fixtures for the chat-backend tests: real servers on 127.0.0.1 (Starlette + uvicorn in a
background thread), a canned responder that echoes, and a tiny Llama built from a config
(prefkit.align.tiny: character-level tokenizer with a chat template; no download)."""

from __future__ import annotations

import pytest

from prefkit.llm.server import Faults, canned_responder, serve_responder


def echo(request) -> str:
    """The canned answer: 'echo ' + the last message (so order and content can be checked)."""
    return "echo " + request.messages[-1]["content"]


@pytest.fixture
def serve():
    """``serve(faults=..., responder=...)`` starts a server; all are stopped at the end."""
    servers = []

    def start(faults: Faults | None = None, responder=None, **kw):
        server = serve_responder(responder or canned_responder(echo), faults=faults, **kw)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture(scope="module")
def tiny():
    """(model, tokenizer): a 2-layer Llama with a 100-character vocabulary, seed 0."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from prefkit.align.tiny import char_tokenizer, tiny_llama

    tok = char_tokenizer()
    return tiny_llama(len(tok), seed=0), tok
