"""The synthetic task (exact step labels, lucky solutions) and the implicit PRM: its step
rewards equal beta * log(pi/pi_ref) summed over each step's tokens, computed here from the
two models' full logits (independently of prefkit.align's chunked engine); training runs
prefkit.align on outcome pairs and writes a folder load_prm reads."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from prefkit.align.tiny import char_tokenizer, tiny_llama
from prefkit.process import load_prm
from prefkit.process.implicit import (
    ImplicitPRM,
    fit_lm,
    outcome_pairs,
    response_text,
    train_implicit_prm,
)
from prefkit.process.synthetic import make_problem, make_solutions, solve


def test_synthetic_labels_are_exact() -> None:
    rng = np.random.default_rng(3)
    data, outcome = make_solutions(400, rng, p_error=0.6, p_lucky=0.3)
    lucky = 0
    for prompt, steps, first, ok in zip(data.prompts, data.steps, data.first_error, outcome):
        nums = [int(t) for t in prompt[len("Compute "):-1].replace("- ", "-").replace("+ ", "")
                .split()]
        v = nums[0]
        wrong = -1
        for k, (step, x) in enumerate(zip(steps, nums[1:])):
            a, _op, b, _, c = step.split()
            assert int(a) == v and int(b) == abs(x)
            if int(c) != int(a) + x and wrong < 0:
                wrong = k
            v = int(c)
        assert first == wrong
        assert ok == (v == sum(nums))
        assert steps[-1] == f"The answer is {v}"
        lucky += ok and first >= 0
    assert lucky > 10  # right answers reached through a wrong step


def test_problems_stay_in_range() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        p = make_problem(rng)
        v = p.start
        for step in solve(p)[0][:-1]:
            v = int(step.split()[-1])
            assert 0 <= v <= 9


def _full_logits_rewards(prm: ImplicitPRM, prompt: str, steps: list[str]) -> list[float]:
    text = prompt
    ids = prm.tokenizer(prompt)["input_ids"]
    spans = []
    for s in steps:
        text += "\n" + s
        new = prm.tokenizer(text)["input_ids"]
        spans.append((len(ids), len(new)))
        ids = new
    x = torch.tensor([ids])
    with torch.no_grad():
        lp = torch.log_softmax(prm.policy(x).logits.double(), -1)[0]
        lr = torch.log_softmax(prm.reference(x).logits.double(), -1)[0]
    out = []
    for s, e in spans:
        tot = sum(lp[t - 1, ids[t]] - lr[t - 1, ids[t]] for t in range(s, e))
        out.append(prm.beta * float(tot))
    return out


def test_step_rewards_equal_the_log_ratio_of_full_logits() -> None:
    tok = char_tokenizer()
    policy, ref = tiny_llama(len(tok), seed=1), tiny_llama(len(tok), seed=2)
    prm = ImplicitPRM(policy, ref, tok, beta=0.3)
    data, _ = make_solutions(3, np.random.default_rng(0), p_error=1.0)
    got = prm.step_rewards(data.prompts, data.steps, batch_size=5)
    for g, p, st in zip(got, data.prompts, data.steps):
        np.testing.assert_allclose(g, _full_logits_rewards(prm, p, st), rtol=1e-4, atol=1e-5)
    s = prm.score(data.prompts, data.steps)
    np.testing.assert_allclose(s[0], 1 / (1 + np.exp(-got[0])))
    same = ImplicitPRM(policy, policy, tok, beta=0.3)  # pi == pi_ref: every reward 0
    assert all(np.allclose(r, 0.0) for r in same.step_rewards(data.prompts, data.steps))


def test_outcome_pairs_use_outcomes_only() -> None:
    data, outcome = make_solutions(40, np.random.default_rng(2), per_problem=4)
    pairs = outcome_pairs(data.prompts, data.steps, outcome, np.random.default_rng(0))
    assert pairs
    right = {response_text(s) for s, ok in zip(data.steps, outcome) if ok}
    for r in pairs:
        assert r["chosen"] in right and r["rejected"] not in right


def test_train_writes_a_loadable_folder(tmp_path: Path) -> None:
    tok = char_tokenizer()
    model = tiny_llama(len(tok), seed=0)
    data, outcome = make_solutions(32, np.random.default_rng(4), per_problem=4)
    hist = fit_lm(model, tok, [p + response_text(s) for p, s in zip(data.prompts, data.steps)],
                  epochs=2, batch_size=16)
    assert hist[1] < hist[0]
    pairs = outcome_pairs(data.prompts, data.steps, outcome, np.random.default_rng(0))
    prm = train_implicit_prm(model, tok, pairs, tmp_path / "imp", beta=0.1)
    loaded = load_prm(tmp_path / "imp")
    a = prm.step_rewards(data.prompts[:4], data.steps[:4])
    b = loaded.step_rewards(data.prompts[:4], data.steps[:4])
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
        assert np.isfinite(x).all()
    assert not all(np.allclose(x, 0) for x in a)  # the policy moved away from the reference
    assert loaded.threshold == 0.5 and math.isclose(loaded.beta, 0.1)
    with pytest.raises(FileExistsError, match="not empty"):
        train_implicit_prm(model, tok, pairs, tmp_path / "imp")


def test_cli_eval_reads_an_implicit_folder(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from prefkit.cli.main import app

    tok = char_tokenizer()
    model = tiny_llama(len(tok), seed=0)
    data, outcome = make_solutions(16, np.random.default_rng(4), per_problem=4)
    rows = outcome_pairs(data.prompts, data.steps, outcome, np.random.default_rng(0))
    train_implicit_prm(model, tok, rows, tmp_path / "imp")
    test, _ = make_solutions(20, np.random.default_rng(5))
    (tmp_path / "test.json").write_text(json.dumps(
        [{"problem": p, "steps": s, "label": f}
         for p, s, f in zip(test.prompts, test.steps, test.first_error)]))
    r = CliRunner().invoke(app, ["prm", "eval", str(tmp_path / "imp"),
                                 str(tmp_path / "test.json"), "--json"])
    assert r.exit_code == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["threshold"] == 0.5 and 0.0 <= res["f1"] <= 1.0
    assert set(res["baselines"]) == {"never_flags", "first_step"}  # no training stats here
