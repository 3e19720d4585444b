"""The pieces of ``benchmarks/align_synthetic.py``'s task (``benchmarks/_align_task.py``): the
prompt generator, the rule and its graded score, the partly correct SFT data, and the pair
and ranking builders. The long training run itself is the benchmark, not a test."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "_align_task.py"


@pytest.fixture(scope="module")
def task():
    spec = importlib.util.spec_from_file_location("_align_task", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("_align_task", module)
    spec.loader.exec_module(module)
    return module


def test_prompts_are_distinct_well_formed_and_disjoint(task):
    rng = np.random.default_rng(0)
    train = task.make_prompts(300, rng)
    held = task.make_prompts(100, rng, exclude=train)
    assert len(set(train)) == 300 and not set(train) & set(held)
    for p in train + held:
        assert p.startswith("sort: ") and p.endswith("\n")
        digits = task.digits_of(p)
        assert task.MIN_LEN <= len(digits) <= task.MAX_LEN
        assert all(d in "0123456789" and len(d) == 1 for d in digits)
    # seeded: the same generator state gives the same prompts
    assert task.make_prompts(5, np.random.default_rng(1)) == \
        task.make_prompts(5, np.random.default_rng(1))


def test_rule_and_graded_score(task):
    p = "sort: 7 2 9 2\n"
    assert task.target(p) == "2 2 7 9"
    assert task.obeys_rule(p, "2 2 7 9")
    for wrong in ("2 7 2 9", "2 2 7", "2 2 7 9 9", "2 2 7 9 ", " 2 2 7 9", "2 2 7 9<no-eos>", ""):
        assert not task.obeys_rule(p, wrong)
    assert task.rule_score(p, "2 2 7 9") == 0
    assert task.rule_score(p, "2 2 7") == -1  # one digit missing
    assert task.rule_score(p, "2 2 9 7") == -2  # a swap: two substitutions
    assert task.rule_score(p, "9 7 2 2") < task.rule_score(p, "2 2 9 7")


def test_corrupt_is_well_formed_but_always_wrong(task):
    rng = np.random.default_rng(0)
    for p in task.make_prompts(300, rng):
        t = task.target(p)
        bad = task.corrupt(t, rng)
        assert bad != t
        toks = bad.split(" ")
        assert all(len(x) == 1 and x.isdigit() for x in toks)  # the format is kept
        assert len(toks) in (len(t.split(" ")), len(t.split(" ")) - 1)


def test_systematic_mistake(task):
    assert task.systematic_mistake("0 2 5 8") == "0 2 8 5"
    assert task.systematic_mistake("1 3 7 7") == "1 7 3 7"  # the last two *different* digits
    assert task.systematic_mistake("4 4 4 4") is None


def test_sft_examples_are_partly_correct(task):
    rng = np.random.default_rng(0)
    prompts = task.make_prompts(2000, rng)
    ex = task.sft_examples(prompts, rng, p_correct=0.3, p_systematic=0.85)
    assert [p for p, _ in ex] == prompts
    right = np.mean([task.obeys_rule(p, a) for p, a in ex])
    habit = np.mean([a == task.systematic_mistake(task.target(p)) for p, a in ex])
    assert abs(right - 0.3) < 0.04  # binomial sd ~0.01
    assert abs(habit - 0.7 * 0.85) < 0.05  # a little less: lists of equal digits have none
    assert all(task.rule_score(p, a) < 0 for p, a in ex if not task.obeys_rule(p, a))


def test_build_pairs_chosen_correct_rejected_wrong(task):
    samples = {
        "sort: 3 1\n": ["1 3", "3 1", "1 3", "1"],
        "sort: 2 2 1\n": ["1 2 2", "1 2 2"],          # all correct: skipped
        "sort: 5 4\n": ["5 4", "4"],                  # all wrong: skipped
        "sort: 9 8\n": ["8 9", "", "9 8<no-eos>"],    # only unusable wrong ones: skipped
        "sort: 6 0\n": ["0 6", "6 0"],
    }
    rows = task.build_pairs(samples, np.random.default_rng(0))
    assert [r["prompt"] for r in rows] == ["sort: 3 1\n", "sort: 6 0\n"]
    for r in rows:
        assert set(r) == {"prompt", "chosen", "rejected"}
        assert task.obeys_rule(r["prompt"], r["chosen"])
        assert not task.obeys_rule(r["prompt"], r["rejected"]) and r["rejected"]


def test_build_rankings_distinct_grades_best_first(task):
    p = "sort: 4 3 2 1\n"
    samples = {p: ["1 2 3 4", "1 2 4 3", "2 1 4 3", "1 2 3", "4 3 2 1", "1 2 4 3", ""],
               "sort: 2 1\n": ["2 1", "1"]}  # no correct answer: skipped
    rows = task.build_rankings(samples, np.random.default_rng(0), k=3)
    assert len(rows) == 1
    row = rows[0]
    assert row["prompt"] == p and row["completions"][0] == "1 2 3 4"
    assert row["scores"] == [task.rule_score(p, c) for c in row["completions"]]
    assert row["scores"] == sorted(set(row["scores"]), reverse=True)  # distinct, best first
    assert len(row["completions"]) == 3 and "" not in row["completions"]


def test_rankings_and_pairs_read_by_prefkit(task, tmp_path):
    """The rows are in the forms prefkit's reader takes (pairwise and listwise)."""
    import json

    pytest.importorskip("torch")
    from prefkit.align.data import read_alignment_data

    rng = np.random.default_rng(0)
    samples = {p: [task.target(p), task.corrupt(task.target(p), rng),
                   task.corrupt(task.target(p), rng)] for p in task.make_prompts(20, rng)}
    for name, rows, kind in (("p.jsonl", task.build_pairs(samples, rng), "pairwise"),
                             ("r.jsonl", task.build_rankings(samples, rng, k=3), "listwise")):
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        data = read_alignment_data(path)
        assert data.kind == kind and len(data.responses) == len(rows)
        assert all(resp[0] == task.target(r["prompt"]) for resp, r in zip(data.responses, rows))


def test_wilson_matches_prefkit(task):
    from prefkit.reward.evaluate import wilson_interval

    w = task.wilson(50, 100)
    assert w["share"] == 0.5 and w["n"] == 100
    assert (w["low"], w["high"]) == wilson_interval(0.5, 100)


def test_sequence_logps_and_sampling_on_a_tiny_model(task):
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from prefkit.align.tiny import char_tokenizer, tiny_llama

    tok = char_tokenizer()
    model = tiny_llama(len(tok), seed=0)
    prompts = ["sort: 3 1 2 0\n", "sort: 5 5 1 2 9\n"]
    logps, lengths = task.sequence_logps(model, tok, prompts, ["0 1 2 3", "1 2 5 5 9"])
    assert lengths.tolist() == [8.0, 10.0]  # answer characters + EOS
    # the summed log-prob equals the chain rule done by hand for the first row
    ids, n_prompt = task.encode(tok, prompts[0], "0 1 2 3")
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    manual = sum(float(lp[t - 1, ids[t]]) for t in range(n_prompt, len(ids)))
    assert logps[0] == pytest.approx(manual, abs=1e-4)
    # one step of the SFT loop runs and returns a finite loss
    losses = task.sft(model, tok, [(p, task.target(p)) for p in prompts], steps=1,
                      batch_size=2, lr=1e-3, seed=0)
    assert len(losses) == 1 and np.isfinite(losses[0])
    # sampling is seeded and returns n answers per prompt
    a = task.sample_answers(model, tok, prompts, n=3, seed=0)
    b = task.sample_answers(model, tok, prompts, n=3, seed=0)
    assert a == b and all(len(v) == 3 for v in a.values())
