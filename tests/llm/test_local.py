"""LocalModelBackend and the model-backed server, on a tiny Llama built from a config.

The reference for every log-probability is the model's own ``log_softmax`` over one full
forward pass of prompt + answer (no KV cache), computed here independently of the backend's
incremental decoding; the official ``openai`` client (``AsyncOpenAI``) against the same
server must read the same text and numbers (the server speaks the protocol)."""

from __future__ import annotations

import asyncio
import copy

import pytest

torch = pytest.importorskip("torch")

from prefkit.llm.batch import run_requests
from prefkit.llm.client import OpenAIClient
from prefkit.llm.local import LabelDistribution, LocalModelBackend
from prefkit.llm.server import Faults, model_responder
from prefkit.llm.types import ChatBackend, ChatRequest

ATOL = 1e-5  # incremental (KV-cached) vs full forward, float32
K = 4


def full_forward_logprobs(model, ids: list[int]):
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)  # (T, V)


def check_against_model(model, backend, request, result) -> None:
    prompt = backend.prompt_ids(request)
    answer = backend.tokenizer(result.text, add_special_tokens=False)["input_ids"]
    assert len(answer) == result.completion_tokens == len(result.logprobs)
    logp = full_forward_logprobs(model, prompt + answer)
    for t, (token_id, tok) in enumerate(zip(answer, result.logprobs)):
        row = logp[len(prompt) - 1 + t]
        assert int(row.argmax()) == token_id  # greedy
        assert tok.token == backend.tokenizer.decode([token_id])
        assert tok.logprob == pytest.approx(float(row[token_id]), abs=ATOL)
        values, ids = torch.topk(row, K)
        assert [a for a, _ in tok.top] == [backend.tokenizer.decode([int(i)]) for i in ids]
        assert [b for _, b in tok.top] == pytest.approx(values.tolist(), abs=ATOL)


@pytest.fixture(scope="module")
def backend(tiny):
    model, tok = tiny
    return LocalModelBackend(model, tok, name="tiny")


def test_generate_is_greedy_with_the_models_logprobs(tiny, backend) -> None:
    assert isinstance(backend, ChatBackend)
    request = ChatRequest.of("Which is better?", max_tokens=6, top_logprobs=K)
    result = backend.generate(request)
    assert result.ok and result.finish_reason == "length" and result.completion_tokens == 6
    assert result.prompt_tokens == len(backend.prompt_ids(request))
    check_against_model(tiny[0], backend, request, result)
    assert asyncio.run(backend.chat(request)) == result  # deterministic, async the same


def test_stop_strings_cut_the_answer(backend) -> None:
    full = backend.generate(ChatRequest.of("hello", max_tokens=6)).text
    cut = backend.generate(ChatRequest.of("hello", max_tokens=6, stop=[full[3]]))
    assert cut.text == full[:full.index(full[3])] and cut.finish_reason == "stop"


def test_the_chat_template_is_used(backend) -> None:
    text, special = backend.prompt_text(ChatRequest.of([
        {"role": "system", "content": "Be fair."}, {"role": "user", "content": "A or B?"}]))
    assert text == "<s><|system|>Be fair.\n<|user|>A or B?\n<|assistant|>" and not special


def test_the_plain_format_without_a_template(tiny) -> None:
    model, tok = tiny
    plain = copy.deepcopy(tok)
    plain.chat_template = None
    b = LocalModelBackend(model, plain)
    request = ChatRequest.of([{"role": "system", "content": "S"},
                              {"role": "user", "content": "hi"}])
    assert b.prompt_text(request) == ("System: S\n\nUser: hi\n\nAssistant:", True)
    assert b.prompt_ids(request)[0] == plain.bos_token_id


def test_label_distribution_reads_the_first_token_probabilities(tiny, backend) -> None:
    model, tok = tiny
    request = ChatRequest.of("Answer A or B.")
    dist = backend.label_distribution(request, ["A", "B", "tie"])
    assert isinstance(dist, LabelDistribution) and list(dist) == ["A", "B", "tie"]
    probs = full_forward_logprobs(model, backend.prompt_ids(request))[-1].exp()
    for label, char in (("A", "A"), ("B", "B"), ("tie", "t")):
        assert dist[label] == pytest.approx(float(probs[tok.convert_tokens_to_ids(char)]),
                                            rel=1e-5)
    assert dist.mass == pytest.approx(dist["A"] + dist["B"] + dist["tie"])
    assert 0 < dist.mass < 1  # a random model puts most of its mass elsewhere: not rescaled


def test_label_distributions_are_cached(tmp_path, backend) -> None:
    from prefkit.llm.cache import CachedBackend

    request = ChatRequest.of("Answer A or B.")
    first = CachedBackend(backend, tmp_path / "c.sqlite")
    direct = first.label_distribution(request, ["A", "B"])
    again = CachedBackend(backend, tmp_path / "c.sqlite")
    read = again.label_distribution(request, ["A", "B"])
    assert (first.calls, again.calls, again.hits) == (1, 0, 1)
    assert dict(read) == dict(direct) and read.mass == direct.mass
    assert again.label_distribution(request, ["B", "A"]) is not None and again.calls == 1
    assert again.get(request) is None  # the chat answer is keyed apart
    remote = OpenAIClient(base_url="http://127.0.0.1:1/v1", model="m")
    assert not hasattr(CachedBackend(remote, tmp_path / "d.sqlite"),
                       "label_distribution")


def test_labels_sharing_a_first_token_are_refused(backend) -> None:
    with pytest.raises(ValueError, match="labels '1' and '10' both start with token '1'"):
        backend.label_distribution(ChatRequest.of("Rate 1-10."), [str(i) for i in range(1, 11)])


def test_the_server_returns_the_models_logprobs(serve, tiny, backend) -> None:
    server = serve(responder=model_responder(backend))
    request = ChatRequest.of("Which is better?", max_tokens=5, top_logprobs=K)
    client = OpenAIClient(base_url=server.base_url, model="tiny")
    [result] = run_requests(client, [request], progress=False)
    assert result.ok and result.logprobs is not None
    check_against_model(tiny[0], backend, request, result)
    assert (result.prompt_tokens, result.completion_tokens) == \
        (len(backend.prompt_ids(request)), 5)


def test_logprobs_without_alternatives_and_no_streaming(serve, backend) -> None:
    openai = pytest.importorskip("openai")
    server = serve(responder=model_responder(backend))

    async def ask(**kw):
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        try:
            return await client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=3, **kw)
        finally:
            await client.close()

    r = asyncio.run(ask(logprobs=True))
    own = backend.generate(ChatRequest.of("hi", max_tokens=3, top_logprobs=1))
    assert [t.logprob for t in r.choices[0].logprobs.content] == [t.logprob for t in own.logprobs]
    assert all(t.top_logprobs == [] for t in r.choices[0].logprobs.content)
    with pytest.raises(openai.BadRequestError, match="'stream': true is not supported"):
        asyncio.run(ask(stream=True))


def test_retries_against_the_model_server(serve, backend) -> None:
    # 429s, truncated bodies, and stalls past the client's 2 s timeout (2 in flight: the
    # model answers one at a time, and a loaded machine must not turn the queue into timeouts)
    server = serve(Faults(rate_limit_every=2, retry_after=0.01, malformed_every=3,
                          stall_every=7, stall=5.0), responder=model_responder(backend))
    client = OpenAIClient(base_url=server.base_url, model="tiny", backoff=0.005, max_retries=8,
                          timeout=2.0, concurrency=2)
    reqs = [ChatRequest.of(f"q{i}", max_tokens=3) for i in range(8)]
    results = run_requests(client, reqs, progress=False)
    assert [r.error for r in results] == [None] * 8
    assert [r.text for r in results] == [backend.generate(r).text for r in reqs]
    assert sum(r.attempts for r in results) == server.stats.requests > 8
    assert server.stats.faults["stall"] > 0 and server.stats.faults["malformed"] > 0


def test_the_official_openai_client_reads_the_same_answer(serve, backend) -> None:
    openai = pytest.importorskip("openai")
    server = serve(responder=model_responder(backend))
    messages = [{"role": "user", "content": "Which is better?"}]

    async def official():
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="unused")
        try:
            return await client.chat.completions.create(
                model="tiny", messages=messages, max_tokens=5, logprobs=True, top_logprobs=K)
        finally:
            await client.close()

    theirs = asyncio.run(official())
    [ours] = run_requests(OpenAIClient(base_url=server.base_url, model="tiny"),
                          [ChatRequest.of(messages, max_tokens=5, top_logprobs=K)],
                          progress=False)
    choice = theirs.choices[0]
    assert choice.message.content == ours.text and choice.finish_reason == ours.finish_reason
    assert [t.token for t in choice.logprobs.content] == [t.token for t in ours.logprobs]
    assert [t.logprob for t in choice.logprobs.content] == [t.logprob for t in ours.logprobs]
    assert [[(a.token, a.logprob) for a in t.top_logprobs] for t in choice.logprobs.content] \
        == [list(t.top) for t in ours.logprobs]
    assert theirs.usage.completion_tokens == ours.completion_tokens == 5
