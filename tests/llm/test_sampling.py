"""The shared sampler (prefkit.llm.sampling): with a shared prompt prefill it draws what plain
``generate`` draws, the old log-probs equal a full forward pass, completions end at EOS /
stop strings; prefkit.rl.generate re-exports the same objects (no second copy)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prefkit.align.tiny import char_tokenizer, tiny_llama
from prefkit.llm.sampling import SamplingConfig, sample
from prefkit.rl.logprobs import completion_rows, token_logps

PROMPTS = ["ab+", "hello world", "x"]  # different lengths: left padding in the prefill


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return tiny_llama(len(tok), seed=0)


def _full_forward_logps(model, rows, temperature):
    # independent of prefkit's chunked head: the model's own logits
    with torch.no_grad():
        logits = model(input_ids=rows.input_ids, attention_mask=rows.attention_mask).logits
    lp = torch.log_softmax(logits.flatten(0, 1)[rows.where].float() / temperature, -1)
    return lp.gather(1, rows.targets[:, None]).squeeze(1)


@pytest.mark.parametrize("temperature,top_p,top_k", [(1.0, 1.0, 0), (0.7, 0.9, 20)])
def test_shared_prefill_draws_what_generate_draws(model, tok, temperature, top_p, top_k):
    cfg = SamplingConfig(num_generations=4, max_new_tokens=10, temperature=temperature,
                         top_p=top_p, top_k=top_k)
    shared = sample(model, tok, PROMPTS, cfg, seed=3)
    plain = sample(model, tok, PROMPTS, SamplingConfig(**{**cfg.__dict__,
                                                          "share_prefill": False}), seed=3)
    assert shared.completion_ids.shape[0] == 12
    assert torch.equal(shared.completion_ids, plain.completion_ids)
    torch.testing.assert_close(shared.old_logps, plain.old_logps, rtol=0, atol=1e-5)
    # the old log-probs are the model's at the temperature, by an independent forward pass
    rows = completion_rows(shared.prompt_ids, shared.prompt_mask, shared.prompt_index,
                           shared.completion_ids, shared.mask)
    want = _full_forward_logps(model, rows, temperature)
    torch.testing.assert_close(shared.old_logps.flatten()[rows.slots], want, rtol=0, atol=1e-5)
    with torch.no_grad():
        ours = token_logps(model, rows, temperature=temperature)
    torch.testing.assert_close(ours.flatten()[rows.slots], want, rtol=0, atol=1e-5)
    # a seed is a seed; another seed draws otherwise
    again = sample(model, tok, PROMPTS, cfg, seed=3)
    assert torch.equal(again.completion_ids, shared.completion_ids)
    assert not torch.equal(sample(model, tok, PROMPTS, cfg, seed=4).completion_ids,
                           shared.completion_ids)


def _biased(tok, favour: dict[str, float]) -> nn.Module:
    """A tiny Llama whose head has a bias: the favoured tokens are likely."""
    m = tiny_llama(len(tok), seed=1)
    head = nn.Linear(32, len(tok), bias=True)
    with torch.no_grad():
        head.weight.copy_(m.lm_head.weight)
        head.bias.zero_()
        for t, b in favour.items():
            head.bias[tok.convert_tokens_to_ids(t)] = b
    m.lm_head = head
    return m


def test_completions_end_at_eos_which_is_scored(tok):
    m = _biased(tok, {"</s>": 4.0})
    s = sample(m, tok, PROMPTS, SamplingConfig(num_generations=8, max_new_tokens=12), seed=0)
    eos = tok.eos_token_id
    ended = ~s.truncated
    assert ended.sum() > 12  # most end early
    for row, n, trunc in zip(s.completion_ids.tolist(), s.lengths.tolist(),
                             s.truncated.tolist(), strict=True):
        if trunc:
            assert n == 12 and eos not in row[:n]
        else:
            assert row[n - 1] == eos and eos not in row[:n - 1]
            assert all(t == tok.pad_token_id for t in row[n:])
    assert bool((s.old_logps[~s.mask] == 0).all()) and bool((s.old_logps[s.mask] < 0).all())


def test_stop_strings_end_a_completion(tok):
    m = _biased(tok, {"a": 3.0, "</s>": -10.0})
    s = sample(m, tok, PROMPTS, SamplingConfig(num_generations=6, max_new_tokens=16,
                                               stop=("a",)), seed=0)
    assert (~s.truncated).sum() > 10
    for text, trunc in zip(s.texts, s.truncated.tolist(), strict=True):
        if not trunc:
            assert text.endswith("a") and "a" not in text[:-1]


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="temperature"):
        SamplingConfig(temperature=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0)
    with pytest.raises(ValueError, match="num_generations"):
        SamplingConfig(num_generations=0)


def test_the_prompt_once_for_its_completions_equals_full_rows(model, tok):
    from prefkit.rl.logprobs import shared_token_logps

    s = sample(model, tok, PROMPTS, SamplingConfig(num_generations=3, max_new_tokens=8,
                                                   temperature=0.7), seed=1)
    mask = s.mask.clone()
    mask[1, 5:] = False  # a shorter completion
    rows = completion_rows(s.prompt_ids, s.prompt_mask, s.prompt_index, s.completion_ids, mask)
    weights = torch.randn(mask.shape, generator=torch.Generator().manual_seed(0))
    grads = []
    for shared in (False, True):
        model.zero_grad()
        model.train()
        lp = (shared_token_logps(model, s.prompt_ids, s.prompt_mask, s.prompt_index,
                                 s.completion_ids, mask, temperature=0.7) if shared
              else token_logps(model, rows, temperature=0.7))
        (lp * weights).sum().backward()
        grads.append(([p.grad.clone() for p in model.parameters()], lp.detach()))
    model.eval()
    (g_full, lp_full), (g_shared, lp_shared) = grads
    torch.testing.assert_close(lp_shared, lp_full, rtol=0, atol=1e-5)
    assert bool((lp_shared[~mask] == 0).all())
    for a, b in zip(g_full, g_shared, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    # a micro-batch of rows from different prompts
    mb = torch.tensor([1, 2, 3, 7])
    with torch.no_grad():
        sub = shared_token_logps(model, s.prompt_ids, s.prompt_mask, s.prompt_index[mb],
                                 s.completion_ids[mb], mask[mb], temperature=0.7)
    torch.testing.assert_close(sub, lp_full[mb], rtol=0, atol=1e-5)


def test_rl_imports_the_one_sampler():
    import prefkit.llm
    import prefkit.llm.sampling as shared
    import prefkit.rl
    import prefkit.rl.generate as rl_generate

    for name in ("Samples", "SamplingConfig", "sample"):
        assert getattr(rl_generate, name) is getattr(shared, name), name
        assert getattr(prefkit.rl, name) is getattr(shared, name), name
        assert getattr(prefkit.llm, name) is getattr(shared, name), name
    assert shared.sample.__module__ == "prefkit.llm.sampling"
