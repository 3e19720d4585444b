"""The fine-tuned PRM (token classification at step markers): a tiny BERT built from a
config with the offline MiniLM's tokenizer, and a tiny causal LM (its decoder); windows for
long solutions score every step; the folder loads back with the same scores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from prm_minilm import minilm_path

from prefkit.process import load_prm
from prefkit.process.finetune import (
    FinetunePRMConfig,
    encode_solution,
    finetune_prm,
    windows,
)
from prefkit.process.synthetic import make_solutions


def _tiny_bert() -> tuple[object, object]:
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    return BertModel(cfg), tok


def test_windows_cover_every_marker_with_the_most_context() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 300))
        markers = sorted(set(rng.integers(0, n, size=int(rng.integers(1, 12))).tolist()))
        length = int(rng.integers(8, 64))
        got = windows(n, markers, length)
        seen = sorted(k for _, ks in got for k in ks)
        assert seen == list(range(len(markers)))
        for s, ks in got:
            assert 0 <= s and (s + length <= n or s == 0)
            for k in ks:
                assert s <= markers[k] < s + length
                # at least half a window of context before it (or the window starts at 0)
                assert s == 0 or markers[k] - s >= length - max(1, length // 2)


def test_encode_marks_each_step() -> None:
    _, tok = _tiny_bert()
    ids, where = encode_solution(tok, "1+1+1?", ["1+1 = 2", "2+1 = 3"])
    assert ids[0] == tok.cls_token_id and [ids[p] for p in where] == [tok.sep_token_id] * 2


def test_finetune_bert_learns_and_reloads(tmp_path: Path) -> None:
    model, tok = _tiny_bert()
    data, _ = make_solutions(48, np.random.default_rng(0))
    cfg = FinetunePRMConfig(max_length=32, epochs=3, batch_size=8, learning_rate=1e-3)
    summary = finetune_prm(cfg, tmp_path / "run", data, model=model, tokenizer=tok,
                           progress=False)
    assert summary["n_train_windows"] > len(data) * 0.8  # 32 tokens: long solutions split
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").open()]
    k = len(losses) // 3
    assert np.mean(losses[-k:]) < np.mean(losses[:k])  # the step loss went down
    prm = load_prm(tmp_path / "run")
    scores = prm.score(data.prompts[:5], data.steps[:5])
    assert [len(s) for s in scores] == [len(s) for s in data.steps[:5]]
    assert all(not np.isnan(s).any() for s in scores)  # windows: every step scored
    again = load_prm(tmp_path / "run").score(data.prompts[:5], data.steps[:5])
    for a, b in zip(scores, again):
        np.testing.assert_allclose(a, b, rtol=1e-5)
    assert 0 < prm.threshold < 1 or prm.threshold == 0.5


def test_finetune_a_causal_lm_decoder(tmp_path: Path) -> None:
    from prefkit.align.tiny import char_tokenizer, tiny_llama

    tok = char_tokenizer()
    model = tiny_llama(len(tok), seed=0)
    data, _ = make_solutions(16, np.random.default_rng(1))
    cfg = FinetunePRMConfig(max_length=512, epochs=1, batch_size=4, learning_rate=1e-3)
    finetune_prm(cfg, tmp_path / "run", data, model=model, tokenizer=tok, progress=False)
    prm = load_prm(tmp_path / "run")
    s = prm.score(data.prompts[:2], data.steps[:2])
    assert all(((x > 0) & (x < 1)).all() for x in s)
    with pytest.raises(ValueError, match="max_length"):
        FinetunePRMConfig(max_length=2)
    assert math.isfinite(prm.threshold)


def test_stopped_and_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    """stop_after k steps (mid-epoch), resume: the same losses, weights and threshold as an
    uninterrupted run (prefkit.runs' checkpoint; the epoch's batches drawn again)."""
    from safetensors.torch import load_file

    data, _ = make_solutions(24, np.random.default_rng(0))
    # dropout on: its draws must come from the saved stream too
    cfg = FinetunePRMConfig(max_length=32, epochs=2, batch_size=4, learning_rate=1e-3,
                            disable_dropout=False)

    def run(out: Path, **kw: object) -> dict:
        model, tok = _tiny_bert()
        return finetune_prm(cfg, out, data, model=model, tokenizer=tok, progress=False, **kw)

    whole = run(tmp_path / "whole")
    assert whole["finished"] and whole["steps"] >= 8
    stopped = run(tmp_path / "part", stop_after=3)
    assert stopped == {"finished": False, "steps": 3, "epochs_run": 0}
    ck = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    assert (ck["kind"], ck["step"], ck["step_in_epoch"]) == ("prm-finetune", 3, 3)
    resumed = run(tmp_path / "part", resume=True)
    assert resumed["finished"] and resumed["steps"] == whole["steps"]
    assert resumed["threshold"] == whole["threshold"]

    def rows(out: Path) -> list[dict]:
        return [json.loads(line) for line in (out / "metrics.jsonl").open()]

    assert rows(tmp_path / "part") == rows(tmp_path / "whole")
    assert len(rows(tmp_path / "whole")) == whole["steps"]
    for name in ("backbone/model.safetensors", "head.safetensors"):
        a, b = load_file(str(tmp_path / "whole" / name)), load_file(str(tmp_path / "part" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # a run stopped at an epoch end resumes too
    per_epoch = whole["steps"] // 2
    assert run(tmp_path / "edge", stop_after=per_epoch)["epochs_run"] == 1
    run(tmp_path / "edge", resume=True)
    assert rows(tmp_path / "edge") == rows(tmp_path / "whole")


def test_no_labelled_training_step_is_refused(tmp_path: Path) -> None:
    from prefkit.data.steps import StepSolutions

    model, tok = _tiny_bert()
    data = StepSolutions()
    for i in range(6):
        data.add(i + 1, f"{i}+1?", [f"{i}+1 = {i + 1}"], [math.nan])  # unlabelled
    with pytest.raises(ValueError, match="no labelled training steps"):
        finetune_prm(FinetunePRMConfig(max_length=32), tmp_path / "run", data, model=model,
                     tokenizer=tok, progress=False)


def test_solutions_tokenized_in_batches_as_one_call_a_step() -> None:
    """The texts of many solutions tokenized in one call (a fast tokenizer's encode_batch)
    give the ids of one call per problem and per step, the markers at the same places;
    chunks of 5 solutions, empty prompts and steps included."""
    from prefkit.align.tiny import char_tokenizer
    from prefkit.process._finetune_data import _encode_many

    data, _ = make_solutions(23, np.random.default_rng(4))
    prompts = ["", *data.prompts[1:]]
    steps = [[*data.steps[0], ""], *data.steps[1:-1], []]
    for tok in (_tiny_bert()[1], char_tokenizer()):
        start = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        marker = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        got = _encode_many(tok, prompts, steps, chunk=5)
        for (ids, where), p, st in zip(got, prompts, steps, strict=True):
            want = [start] + tok(p, add_special_tokens=False)["input_ids"]
            marks = []
            for s in st:
                want += tok("\n" + s, add_special_tokens=False)["input_ids"] + [marker]
                marks.append(len(want) - 1)
            assert (ids, where) == (want, marks)
        assert got[3] == encode_solution(tok, prompts[3], steps[3])
