"""The fine-tuned PRM's faster paths compute what the plain path computes: the marker-only
BERT forward (prefkit.process._fastpath) against the backbone's own forward (transformers'
BertModel, eager and SDPA), the causal cut after the last marker against the whole window,
and training on labelled markers only against all markers. Scores, losses and gradients
agree to 1e-5 in float32."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from prm_minilm import minilm_path

from prefkit.process import load_prm
from prefkit.process._fastpath import bert_at_markers, supports
from prefkit.process.finetune import (
    FinetunePRMConfig,
    _batch,
    _examples,
    _Scorer,
    _trim,
    finetune_prm,
    is_causal,
)
from prefkit.process.losses import get_process_loss
from prefkit.process.synthetic import make_solutions

TOL = 1e-5  # float32: the same sums in another order


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


def _tiny_bert(tok: Any, seed: int = 0) -> Any:
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=3,
                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=128,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertModel(cfg)


def _windows(tok: Any, n: int = 12, max_length: int = 48) -> list[Any]:
    data, _ = make_solutions(n, np.random.default_rng(3))
    return _examples(tok, data, range(len(data)), max_length), data


def _grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.clone() for k, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("padded", [True, False])
@pytest.mark.parametrize("fold", [True, False])
def test_marker_forward_equals_the_backbone_forward(attention: str, padded: bool, fold: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The last layer with its keys and values folded into the markers' queries (fold) or
    formed for every token: both equal the backbone's forward, loss and every gradient."""
    from prefkit.process import _fastpath

    calls: list[bool] = []
    monkeypatch.setattr(_fastpath, "folds", lambda *a: calls.append(fold) or fold)
    tok = _tokenizer()
    items, _ = _windows(tok)
    if not padded:  # every window cut to the shortest's length: no padding at all
        n = min(len(x[0]) for x in items)
        items = [(ids[:n], [p for p in pos if p < n] or [n - 1], i, ks)
                 for ids, pos, _, i, ks in items]
        items = [(ids, pos, [1.0] * len(pos), i, ks) for ids, pos, i, ks in items]
    ids, attn, rows, cols, y = _batch(items[:6], tok.pad_token_id)
    assert bool((attn == 0).any()) == padded
    for model_attention in ("eager", "sdpa"):
        bert = _tiny_bert(tok)
        assert supports(bert)
        fast = _Scorer(bert, attention=attention, fast=True)
        assert fast.fast and fast.core == attention
        bert.set_attn_implementation(model_attention)  # the backbone's own forward's kernel
        plain = _Scorer(bert, attention="default", fast=False)
        plain.head = fast.head
        assert not plain.fast
        h0 = bert(input_ids=ids, attention_mask=attn).last_hidden_state[rows, cols]
        h1 = bert_at_markers(bert, ids, attn, rows, cols, attention=attention)
        assert h1.shape == h0.shape
        torch.testing.assert_close(h1, h0, rtol=TOL, atol=TOL)
        # the loss and every gradient, through the scorer
        grads, losses = [], []
        for scorer in (plain, fast):
            scorer.zero_grad(set_to_none=True)
            loss = get_process_loss("step_bce")(scorer(ids, attn, rows, cols)[None],
                                                y[None]).reduce()
            loss.backward()
            losses.append(float(loss.detach()))
            grads.append(_grads(scorer))
        assert math.isclose(losses[0], losses[1], rel_tol=TOL, abs_tol=TOL)
        # the pooler gets no gradient on either path (its output is never read)
        assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 20
        for k in grads[0]:
            torch.testing.assert_close(grads[1][k], grads[0][k], rtol=TOL, atol=TOL, msg=k)
    assert calls and set(calls) == {fold}  # the path asked for was taken


def test_fold_pays_below_35_markers_a_row_for_minilm() -> None:
    """folds(): the marker queries folded through the key/value weights cost
    m_max * heads * (H + 2T) * H multiply-adds against 2 T H^2 for the keys and values of
    every token (plus m_max * heads * 2T * d of the attention core): fewer for
    m_max * heads * (H - d) < H^2, i.e. under 34.9 markers a row at H=384, 12 heads."""
    from prefkit.process._fastpath import folds

    assert folds(1, 12, 384) and folds(34, 12, 384)
    assert not folds(35, 12, 384) and not folds(200, 12, 384)
    assert folds(10, 4, 32) and not folds(11, 4, 32)  # the tiny test BERT: under 10.7


def test_marker_forward_on_the_offline_minilm() -> None:
    """The real backbone of the benchmark (6 layers, 12 heads): equal to its own forward."""
    from transformers import AutoModel

    tok = _tokenizer()
    bert = AutoModel.from_pretrained(minilm_path(), dtype=torch.float32).eval()  # fp16 on GPU boxes
    assert supports(bert)
    items, _ = _windows(tok, n=6, max_length=64)
    ids, attn, rows, cols, _ = _batch(items[:4], tok.pad_token_id)
    with torch.no_grad():
        h0 = bert(input_ids=ids, attention_mask=attn).last_hidden_state[rows, cols]
        for attention in ("eager", "sdpa"):
            h1 = bert_at_markers(bert, ids, attn, rows, cols, attention=attention)
            torch.testing.assert_close(h1, h0, rtol=TOL, atol=TOL)


def test_dropout_or_another_backbone_takes_the_plain_path() -> None:
    from prefkit.align.tiny import tiny_llama

    tok = _tokenizer()
    bert = _tiny_bert(tok)
    bert.embeddings.dropout.p = 0.1
    scorer = _Scorer(bert, attention="default", fast=True)
    items, _ = _windows(tok)
    ids, attn, rows, cols, _ = _batch(items[:3], tok.pad_token_id)
    scorer.train()
    torch.manual_seed(0)
    a = scorer(ids, attn, rows, cols)
    torch.manual_seed(0)  # the plain forward with the same dropout draws
    b = scorer.head(bert(input_ids=ids, attention_mask=attn).last_hidden_state[rows, cols])
    torch.testing.assert_close(a, b.squeeze(-1), rtol=0, atol=0)
    llama = tiny_llama(40).get_decoder()
    assert not supports(llama) and is_causal(llama) and not is_causal(bert)


def test_causal_cut_after_the_last_marker_changes_no_score() -> None:
    from prefkit.align.tiny import char_tokenizer, tiny_llama

    tok = char_tokenizer()
    llama = tiny_llama(len(tok), seed=0).get_decoder()
    items, _ = _windows(tok, n=8, max_length=40)  # characters: many windows a solution
    cut = _trim(items, labelled=False, causal=True)
    assert sum(len(x[0]) for x in cut) < sum(len(x[0]) for x in items)  # tokens were cut
    scorer = _Scorer(llama, attention="default").eval()
    with torch.no_grad():
        for j in range(0, len(items), 6):
            whole, part = items[j:j + 6], cut[j:j + 6]
            a = scorer(*_batch(whole, tok.pad_token_id)[:4])
            b = scorer(*_batch(part, tok.pad_token_id)[:4])
            torch.testing.assert_close(b, a, rtol=TOL, atol=TOL)


def test_training_on_labelled_markers_only_is_the_same_loss() -> None:
    tok = _tokenizer()
    items, _ = _windows(tok, n=16)
    some_nan = [x for x in items if any(math.isnan(v) for v in x[2])
                and any(not math.isnan(v) for v in x[2])]
    assert some_nan  # erroneous solutions: no labels after the first wrong step
    part = some_nan[:4]
    scorer = _Scorer(_tiny_bert(tok), attention="eager", fast=True)
    loss_fn = get_process_loss("step_bce")
    values, grads = [], []
    for batch in (part, _trim(part, labelled=True, causal=False)):
        ids, attn, rows, cols, y = _batch(batch, tok.pad_token_id)
        scorer.zero_grad(set_to_none=True)
        loss = loss_fn(scorer(ids, attn, rows, cols)[None], y[None]).reduce()
        loss.backward()
        values.append(float(loss.detach()))
        grads.append(_grads(scorer))
    assert math.isclose(values[0], values[1], rel_tol=TOL)
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=TOL, atol=TOL, msg=k)


def test_fast_and_plain_training_runs_agree(tmp_path: Path) -> None:
    """Two epochs of fine-tuning with each path: the same losses step by step and the same
    scores after (AdamW amplifies float32 rounding a little: 1e-4)."""
    tok = _tokenizer()
    data, _ = make_solutions(24, np.random.default_rng(0))
    runs = {}
    for fast in (True, False):
        cfg = FinetunePRMConfig(max_length=40, epochs=2, batch_size=4, learning_rate=1e-3,
                                fast_path=fast, attention="eager")
        summary = finetune_prm(cfg, tmp_path / str(fast), data, model=_tiny_bert(tok),
                               tokenizer=tok, progress=False)
        assert summary["finished"]
        losses = [r["loss"] for r in map(__import__("json").loads,
                                          (tmp_path / str(fast) / "metrics.jsonl").open())]
        prm = load_prm(tmp_path / str(fast))
        assert prm.scorer.fast == fast
        runs[fast] = losses, prm.score(data.prompts[:6], data.steps[:6])
    np.testing.assert_allclose(runs[True][0], runs[False][0], rtol=1e-4)
    assert runs[True][0][-1] < runs[True][0][0]
    for a, b in zip(runs[True][1], runs[False][1]):
        np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("scale", [1e-3, 1e3])  # the norm below and above max_norm
def test_clip_as_on_a_gpu_changes_no_bit(scale: float) -> None:
    """The GPU's clip (always scale by the factor clamped to 1, never reading it back) and
    the CPU's (skip the pass when the factor is 1) leave the same gradients, bit for bit,
    as torch.nn.utils.clip_grad_norm_."""
    from prefkit.process.finetune import _clip

    gen = torch.Generator().manual_seed(0)
    shapes = [(7, 5), (5,), (3, 3, 2)]
    grads = [torch.randn(s, generator=gen) * scale for s in shapes]
    results = []
    for how in ("cpu", "gpu", "torch"):
        params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        if how == "torch":
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        else:
            _clip(params, 1.0, always=how == "gpu")
        results.append([p.grad for p in params])
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))
    assert all(torch.equal(a, g) for a, g in zip(results[0], grads)) == (scale < 1)
