"""The synthetic task (exact step labels, lucky solutions) and the implicit PRM: its step
rewards equal beta * log(pi/pi_ref) summed over each step's tokens, computed here from the
two models' full logits (independently of prefkit.align's chunked engine), its score is their
sigmoid and its values their running sums (the paper's q_t, arXiv:2412.01981); training
runs prefkit.align on outcome rows and writes a folder load_prm reads; `prefkit prm train
--kind implicit` end to end through the real CLI (outcomes from ProcessBench's
final_answer_correct, a column named with --outcome-column, Math-Shepherd's last mark,
PRM800K's finish_reason -- all read by the step readers into StepSolutions.outcomes -- or from
checked candidates; --stop-after then --resume equals one run; the tuned threshold recomputed
here; bad rows named)."""

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
    for g, sc, p, st in zip(got, s, data.prompts, data.steps):  # sigmoid(r_k); q_k = sum
        r = np.array(_full_logits_rewards(prm, p, st))
        np.testing.assert_allclose(sc, 1 / (1 + np.exp(-r)), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(prm.values([p], [st])[0], np.cumsum(r), rtol=1e-4,
                                   atol=1e-5)
    same = ImplicitPRM(policy, policy, tok, beta=0.3)  # pi == pi_ref: every reward 0
    assert all(np.allclose(r, 0.0) for r in same.step_rewards(data.prompts, data.steps))


def test_batch_size_counts_solutions() -> None:
    """``batch_size`` of step_rewards / score / values counts solutions (rows) per forward
    pass, whatever their number of steps; the scores do not depend on it."""
    tok = char_tokenizer()
    policy, ref = tiny_llama(len(tok), seed=1), tiny_llama(len(tok), seed=2)
    prm = ImplicitPRM(policy, ref, tok, beta=0.3)
    data, _ = make_solutions(5, np.random.default_rng(3), p_error=0.5)
    assert sum(map(len, data.steps)) > 5  # more steps than solutions
    base = prm.score(data.prompts, data.steps)  # (the split check runs here, once)
    rows: list[int] = []
    hook = policy.model.register_forward_hook(
        lambda _m, args, kwargs, _out: rows.append(int(kwargs["input_ids"].shape[0])),
        with_kwargs=True)
    try:
        got = prm.score(data.prompts, data.steps, batch_size=2)
    finally:
        hook.remove()
    assert rows == [2, 2, 1]  # 5 solutions, 2 a pass
    for x, y in zip(base, got):
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6)


def test_step_rewards_one_pass_paths_and_batches_agree() -> None:
    """One pass per solution: the fused path (backbone + chunked output embedding) and the
    model's own logits give the same step rewards, in any batching (one solution per
    batch, a token budget that forces it, all at once)."""
    from prefkit.align import logprobs

    tok = char_tokenizer()
    policy, ref = tiny_llama(len(tok), seed=1), tiny_llama(len(tok), seed=2)
    prm = ImplicitPRM(policy, ref, tok, beta=0.3)
    data, _ = make_solutions(7, np.random.default_rng(1), p_error=0.5)
    fused = prm.step_rewards(data.prompts, data.steps)
    # align's once-per-model check: the split reproduced each model's logits
    assert logprobs._CHECKED[policy] is True and logprobs._CHECKED[ref] is True
    runs = [prm.step_rewards(data.prompts, data.steps, batch_size=1),
            prm.step_rewards(data.prompts, data.steps, max_batch_tokens=1)]
    logprobs._CHECKED[policy] = logprobs._CHECKED[ref] = False  # now the model's own logits
    runs.append(prm.step_rewards(data.prompts, data.steps, batch_size=3))
    for other in runs:
        for x, y in zip(fused, other):
            np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6)
    assert all(len(x) == len(st) and np.isfinite(x).all() for x, st in zip(fused, data.steps))


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
    with pytest.raises(FileExistsError, match="already holds a run"):
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


# -- prefkit prm train --kind implicit, end to end --------------------------------------------
def _cli(*args: str) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from prefkit.cli.main import app

    r = CliRunner().invoke(app, [str(a) for a in args])
    return r.exit_code, r.stdout, r.stderr


TRAIN_ARGS = ("--kind", "implicit", "--learning-rate", "3e-3", "--batch-size", "8",
              "--epochs", "2", "--val-fraction", "0.25", "--json")


@pytest.fixture(scope="module")
def implicit_cli(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny Llama (a folder, as --model takes), ProcessBench rows of synthetic solutions
    with final_answer_correct, and one uninterrupted CLI run."""
    import json

    tmp = tmp_path_factory.mktemp("implicit_cli")
    tok = char_tokenizer()
    model = tiny_llama(len(tok), seed=0)
    model.save_pretrained(str(tmp / "lm"))
    tok.save_pretrained(str(tmp / "lm"))
    data, outcome = make_solutions(64, np.random.default_rng(11), per_problem=4, p_error=0.5,
                                   p_lucky=0.3)
    rows = [{"id": f"s{i}", "problem": p, "steps": st, "label": f, "final_answer_correct": ok}
            for i, (p, st, f, ok) in enumerate(zip(data.prompts, data.steps, data.first_error,
                                                   outcome))]
    (tmp / "train.json").write_text(json.dumps(rows))
    code, out, err = _cli("prm", "train", tmp / "train.json", "--model", tmp / "lm",
                          "--output", tmp / "run", *TRAIN_ARGS)
    assert code == 0, err
    return {"tmp": tmp, "summary": json.loads(out), "data": data, "outcome": outcome,
            "rows": rows}


def test_cli_trains_an_implicit_prm_from_outcomes(implicit_cli: dict) -> None:
    import json

    tmp, s, data = implicit_cli["tmp"], implicit_cli["summary"], implicit_cli["data"]
    run = tmp / "run"
    assert s["finished"] and s["loss"] == "apo_zero_unpaired" and s["n_solutions"] == 64
    assert s["n_train_solutions"] + s["n_val_solutions"] == 64 and s["n_val_solutions"] == 16
    assert s["n_right_outcomes"] == sum(implicit_cli["outcome"])
    lucky = sum(ok and f != -1 for ok, f in zip(implicit_cli["outcome"], data.first_error))
    assert s["n_lucky"] == lucky > 0  # right outcomes through a wrong step, labelled right
    # the rows trained on: one per training solution, labelled by its outcome only
    trained = [json.loads(x) for x in (run / "outcome_rows.jsonl").read_text().splitlines()]
    assert len(trained) == s["n_train_rows"] == s["n_train_solutions"] == 48
    by_text = {(p + response_text(st)): ok for p, st, ok in
               zip(data.prompts, data.steps, implicit_cli["outcome"])}
    assert all(by_text[r["prompt"] + r["completion"]] == r["label"] for r in trained)
    val = [json.loads(x) for x in (run / "outcome_rows_val.jsonl").read_text().splitlines()]
    assert not {r["prompt"] for r in val} & {r["prompt"] for r in trained}  # whole prompts
    # the folder load_prm reads; the threshold tuned on the held-out solutions' labels,
    # recomputed here with ProcessBench's F1
    from prefkit.process import evaluate_steps, tune_threshold

    prm = load_prm(run)
    assert isinstance(prm, ImplicitPRM) and prm.beta == 0.1
    held = [i for i, p in enumerate(data.prompts) if p in {r["prompt"] for r in val}]
    scores = prm.score([data.prompts[i] for i in held], [data.steps[i] for i in held])
    labels = [data.first_error[i] for i in held]
    assert prm.threshold == pytest.approx(tune_threshold(scores, labels))
    assert s["threshold"] == pytest.approx(prm.threshold)
    assert s["val_f1_tuned"] == pytest.approx(
        evaluate_steps(scores, labels, threshold=prm.threshold).f1)
    assert s["val_f1_fixed"] == pytest.approx(evaluate_steps(scores, labels).f1)
    assert "tuned on 16 held-out" in prm.threshold_source
    # the policy moved away from the reference, and scores are sigmoid(step rewards)
    r = prm.step_rewards(data.prompts[:4], data.steps[:4])
    assert not all(np.allclose(x, 0) for x in r)
    for x, sc in zip(r, prm.score(data.prompts[:4], data.steps[:4])):
        np.testing.assert_allclose(sc, 1 / (1 + np.exp(-x)), rtol=1e-6)


def test_cli_stop_after_then_resume_equals_one_run(implicit_cli: dict) -> None:
    import json

    tmp, data = implicit_cli["tmp"], implicit_cli["data"]
    part = tmp / "part"
    args = ("prm", "train", tmp / "train.json", "--model", tmp / "lm", "--output", part)
    code, out, err = _cli(*args, *TRAIN_ARGS, "--stop-after", "3")
    assert code == 0, err
    stopped = json.loads(out)
    assert stopped["finished"] is False and stopped["steps"] == 3
    code, _, err = _cli("prm", "eval", part, tmp / "train.json")
    assert code == 2 and "has not finished" in err and "--resume" in err
    code, _, err = _cli(*args, *TRAIN_ARGS)
    assert code == 2 and "--resume" in err  # a used folder is not written without it
    code, out, err = _cli(*args, *TRAIN_ARGS, "--resume")
    assert code == 0, err
    done = json.loads(out)
    assert done["finished"] and done["steps"] == implicit_cli["summary"]["steps"] == 12
    a = load_prm(tmp / "run").step_rewards(data.prompts[:8], data.steps[:8])
    b = load_prm(part).step_rewards(data.prompts[:8], data.steps[:8])
    for x, y in zip(a, b):
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-7)
    assert done["threshold"] == pytest.approx(implicit_cli["summary"]["threshold"])
    code, out, err = _cli(*args, *TRAIN_ARGS, "--resume")  # finished: left as it is
    assert code == 0 and json.loads(out)["resumed"] is True


def test_cli_device_places_the_implicit_prm(implicit_cli: dict) -> None:
    """``--device cpu`` trains the same implicit PRM as the default; a GPU that is not there is
    refused before anything is written, naming --device and the fix."""
    import json

    import torch

    tmp, data = implicit_cli["tmp"], implicit_cli["data"]
    code, out, err = _cli("prm", "train", tmp / "train.json", "--model", tmp / "lm", "--output",
                          tmp / "on_cpu", *TRAIN_ARGS, "--device", "cpu")
    assert code == 0, err
    assert json.loads(out)["threshold"] == pytest.approx(implicit_cli["summary"]["threshold"])
    a = load_prm(tmp / "run").step_rewards(data.prompts[:4], data.steps[:4])
    b = load_prm(tmp / "on_cpu").step_rewards(data.prompts[:4], data.steps[:4])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(y, x)
    if not torch.cuda.is_available():
        code, _, err = _cli("prm", "train", tmp / "train.json", "--model", tmp / "lm",
                            "--output", tmp / "on_gpu", *TRAIN_ARGS, "--device", "cuda")
        assert code != 0 and "use --device cpu" in " ".join(err.split())
        assert not (tmp / "on_gpu").exists()


def test_cli_eval_score_best_of_n_load_the_implicit_folder(implicit_cli: dict) -> None:
    import json

    from prefkit.process import evaluate_steps

    tmp = implicit_cli["tmp"]
    test, _ = make_solutions(24, np.random.default_rng(5), p_error=0.5)
    rows = [{"problem": p, "steps": s, "label": f}
            for p, s, f in zip(test.prompts, test.steps, test.first_error)]
    (tmp / "test.json").write_text(json.dumps(rows))
    code, out, err = _cli("prm", "eval", tmp / "run", tmp / "test.json", "--json")
    assert code == 0, err
    res = json.loads(out)
    prm = load_prm(tmp / "run")
    scores = prm.score(test.prompts, test.steps)
    assert res["f1"] == pytest.approx(evaluate_steps(scores, test.first_error,
                                                     threshold=prm.threshold).f1)
    assert res["at_0.5"]["f1"] == pytest.approx(evaluate_steps(scores, test.first_error).f1)
    assert res["threshold_source"].startswith("tuned on 16 held-out")
    assert set(res["baselines"]) == {"never_flags", "first_step", "position_prior"}
    cands = tmp / "cands.jsonl"
    cands.write_text(json.dumps({"prompt": test.prompts[0],
                                 "candidates": [test.steps[0], test.steps[1]]}) + "\n")
    code, out, err = _cli("prm", "best-of-n", tmp / "run", cands, "--aggregate", "min",
                          "--json")
    assert code == 0, err
    pick = json.loads(out)["prompts"][0]
    assert pick["scores"] == pytest.approx([float(np.min(x)) for x in prm.score(
        [test.prompts[0]] * 2, [test.steps[0], test.steps[1]])], abs=1e-6)


def test_cli_outcomes_from_candidates_checked_against_the_answer(implicit_cli: dict,
                                                                  tmp_path: Path) -> None:
    import json

    from prefkit.process.synthetic import parse_problem

    tmp = implicit_cli["tmp"]
    data, outcome = make_solutions(32, np.random.default_rng(8), per_problem=4, p_error=0.5)
    with (tmp_path / "cands.jsonl").open("w") as f:
        for q in range(8):
            p = data.prompts[4 * q]
            f.write(json.dumps({"prompt": p, "candidates": data.steps[4 * q:4 * q + 4],
                                "answer": str(parse_problem(p).answer)}) + "\n")
    code, out, err = _cli("prm", "train", tmp_path / "cands.jsonl", "--model", tmp / "lm",
                          "--checker", "gsm8k", "--output", tmp_path / "run", *TRAIN_ARGS)
    assert code == 0, err
    s = json.loads(out)
    assert s["n_solutions"] == 32 and s["n_right_outcomes"] == sum(outcome)  # the generator's
    assert s["threshold"] == 0.5 and s["threshold_source"].startswith("fixed 0.5")
    assert s["n_lucky"] is None
    assert load_prm(tmp_path / "run").threshold == 0.5


def test_cli_implicit_refuses_bad_rows_and_options(implicit_cli: dict, tmp_path: Path) -> None:
    import json

    tmp, rows = implicit_cli["tmp"], [dict(r) for r in implicit_cli["rows"]]
    args = ("prm", "train", tmp_path / "bad.json", "--model", tmp / "lm", "--output")
    del rows[2]["final_answer_correct"]
    rows[5]["final_answer_correct"] = "maybe"
    (tmp_path / "bad.json").write_text(json.dumps(rows, indent=1))
    code, _, err = _cli(*args, tmp_path / "o1", *TRAIN_ARGS)
    assert code == 2 and "2 problems" in err and "missing outcome" in err
    assert "outcome 'maybe' is not true/false in field 'final_answer_correct'" in err
    assert "--skip-invalid" in err and not (tmp_path / "o1").exists()
    code, out, err = _cli(*args, tmp_path / "o2", *TRAIN_ARGS, "--skip-invalid",
                          "--stop-after", "1")
    assert code == 0, err
    assert json.loads(out)["n_solutions"] == 62 and "skipped 2 invalid rows" in err
    # a row the step reader skips, in a JSON list on one line: outcomes stay row for row
    skip = [dict(r) for r in implicit_cli["rows"]]
    skip[1]["label"] = 99
    (tmp_path / "skip.json").write_text(json.dumps(skip))
    code, out, err = _cli("prm", "train", tmp_path / "skip.json", "--model", tmp / "lm",
                          "--output", tmp_path / "o5", *TRAIN_ARGS, "--skip-invalid",
                          "--stop-after", "1")
    assert code == 0, err
    s = json.loads(out)
    assert s["n_solutions"] == 63 and "names none of its" in err
    want = {(r["problem"] + response_text(r["steps"])): r["final_answer_correct"]
            for i, r in enumerate(skip) if i != 1}
    got = [json.loads(x) for f in ("outcome_rows.jsonl", "outcome_rows_val.jsonl")
           for x in (tmp_path / "o5" / f).read_text().splitlines()]
    assert len(got) == 63 and all(want[g["prompt"] + g["completion"]] == g["label"]
                                  for g in got)
    for r in rows:
        r.pop("final_answer_correct", None)
    (tmp_path / "bad.json").write_text(json.dumps(rows))
    code, _, err = _cli(*args, tmp_path / "o3", *TRAIN_ARGS)
    assert code == 2 and "no row has the field 'final_answer_correct'" in err
    assert "--outcome-column" in err and "--checker" in err
    good = tmp / "train.json"
    code, _, err = _cli("prm", "train", good, "--kind", "implicit", "--output", tmp_path / "o4")
    assert code == 2 and "needs --model" in err
    code, _, err = _cli("prm", "train", good, "--kind", "implicit", "--model",
                        tmp_path / "nope", "--output", tmp_path / "o4")
    assert code == 2 and "no such folder" in err
    code, _, err = _cli("prm", "train", good, "--kind", "implicit", "--model", tmp / "lm",
                        "--loss", "simpo", "--output", tmp_path / "o4")
    assert code == 2 and "cannot train an implicit PRM" in err
    code, _, err = _cli("prm", "train", good, "--model", tmp / "lm", "--output", tmp_path / "o4")
    assert code == 2 and "--model is an option of --kind implicit" in err
    code, _, err = _cli("prm", "train", good, "--finetune", "--kind", "implicit",
                        "--output", tmp_path / "o4")
    assert code == 2 and "contradict" in err
    assert not (tmp_path / "o4").exists()


def _trained_outcomes(run: Path) -> list[tuple[str, bool]]:
    """What a run trained on: (prompt + response, outcome label) of every row (training and
    validation), sorted."""
    import json

    return sorted((r["prompt"] + r["completion"], r["label"])
                  for f in ("outcome_rows.jsonl", "outcome_rows_val.jsonl")
                  if (run / f).is_file()
                  for r in map(json.loads, (run / f).read_text().splitlines()))


def test_cli_outcomes_from_a_named_column_and_where_each_format_keeps_them(
        implicit_cli: dict, tmp_path: Path) -> None:
    """The outcomes come from the reader (StepSolutions.outcomes): --outcome-column names
    another column; Math-Shepherd's tagged text gives the last step's mark; PRM800K's
    finish_reason; the run trains on exactly those labels."""
    import json

    tmp, data, outcome = implicit_cli["tmp"], implicit_cli["data"], implicit_cli["outcome"]
    pairs = [(p + response_text(st), ok) for p, st, ok in zip(data.prompts, data.steps, outcome)]
    want = sorted(pairs)
    rows = [{k: v for k, v in r.items() if k != "final_answer_correct"}
            | {"right": "yes" if r["final_answer_correct"] else "no"}
            for r in implicit_cli["rows"]]
    (tmp_path / "named.json").write_text(json.dumps(rows))
    args = ("prm", "train", tmp_path / "named.json", "--model", tmp / "lm", "--output")
    code, out, err = _cli(*args, tmp_path / "o1", *TRAIN_ARGS, "--outcome-column", "right",
                          "--stop-after", "1")
    assert code == 0, err
    assert json.loads(out)["n_right_outcomes"] == sum(outcome)
    assert _trained_outcomes(tmp_path / "o1") == want
    # the same run as with final_answer_correct: the same rows, in the same order
    assert (tmp_path / "o1" / "outcome_rows.jsonl").read_text() == \
        (tmp / "run" / "outcome_rows.jsonl").read_text()
    code, _, err = _cli(*args, tmp_path / "o2", *TRAIN_ARGS, "--outcome-column", "nope")
    assert code == 2 and "no row has the field 'nope' (columns present: id, problem, steps, " \
        "label, right)" in err and "--outcome-column" in err
    code, _, err = _cli(*args, tmp_path / "o2", *TRAIN_ARGS)  # the default names are absent
    assert code == 2 and "no row has the field 'final_answer_correct' (or 'outcome') " \
        "(columns present: id, problem, steps, label, right)" in err
    code, _, err = _cli(*args, tmp_path / "o2", *TRAIN_ARGS, "--outcome-column", "right",
                        "--column", "outcome=label")
    assert code == 2 and "name two columns" in err
    code, _, err = _cli("prm", "train", tmp_path / "named.json", "--outcome-column", "right",
                        "--output", tmp_path / "o2")
    assert code == 2 and "--outcome-column is an option of --kind implicit only" in err
    assert not (tmp_path / "o2").exists()
    # Math-Shepherd's tagged text: outcome = the last step's mark
    ms = []
    for p, st, first, ok in zip(data.prompts, data.steps, data.first_error, outcome):
        marks = ["+" if first == -1 or k < first else "-" for k in range(len(st))]
        marks[-1] = "+" if ok else "-"  # lucky solutions: a wrong step, a right answer
        text = p + "\n" + " ки\n".join(st) + " ки"
        label = p + "\n" + "\n".join(f"{s} {m}" for s, m in zip(st, marks))
        ms.append({"input": text, "label": label, "task": "synthetic"})
    (tmp_path / "ms.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ms))
    code, out, err = _cli("prm", "train", tmp_path / "ms.jsonl", "--model", tmp / "lm",
                          "--output", tmp_path / "o3", *TRAIN_ARGS, "--stop-after", "1")
    assert code == 0, err
    assert _trained_outcomes(tmp_path / "o3") == want
    # PRM800K: finish_reason; give_up says nothing of the answer, refused (or skipped)
    pr = [{"question": {"problem": p}, "label": {"finish_reason": "solution" if ok else
           "found_error", "steps": [{"completions": [{"text": s, "rating": 1}],
                                     "chosen_completion": 0} for s in st]}}
          for p, st, ok in zip(data.prompts, data.steps, outcome)]
    pr[3]["label"]["finish_reason"] = "give_up"
    (tmp_path / "prm800k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pr))
    args = ("prm", "train", tmp_path / "prm800k.jsonl", "--model", tmp / "lm", "--output")
    code, _, err = _cli(*args, tmp_path / "o4", *TRAIN_ARGS)
    assert code == 2 and "line 4" in err and "'label.finish_reason'" in err
    assert "missing outcome: finish_reason 'give_up'" in err and "--skip-invalid" in err
    code, out, err = _cli(*args, tmp_path / "o4", *TRAIN_ARGS, "--skip-invalid",
                          "--stop-after", "1")
    assert code == 0, err
    assert json.loads(out)["n_solutions"] == 63 and "skipped 1 invalid row" in err
    assert _trained_outcomes(tmp_path / "o4") == sorted(pairs[:3] + pairs[4:])


def test_fit_takes_step_solutions_with_their_outcomes(implicit_cli: dict,
                                                      tmp_path: Path) -> None:
    """fit_implicit_prm on StepSolutions read with their outcomes equals the run on the
    parallel lists (the same rows trained on, the same summary); solutions without a
    right/wrong outcome are refused naming their lines."""
    from prefkit.process import ImplicitPRMConfig, fit_implicit_prm, read_steps

    tmp = implicit_cli["tmp"]
    data = read_steps(tmp / "train.json", require_outcome=True).data
    assert data.outcomes == implicit_cli["outcome"]
    config = ImplicitPRMConfig(model=str(tmp / "lm"), learning_rate=3e-3, batch_size=8,
                               epochs=2, val_fraction=0.25)
    a = fit_implicit_prm(config, tmp_path / "a", data, stop_after=2, progress=False)
    b = fit_implicit_prm(config, tmp_path / "b", data.prompts, data.steps,
                         implicit_cli["outcome"], first_error=data.first_error, stop_after=2,
                         progress=False)
    ma, mb = a.pop("metrics"), b.pop("metrics")  # their timings differ
    assert a == b and a["steps"] == 2 and a["n_lucky"] > 0
    assert ma["loss"] == mb["loss"] and ma["step"] == mb["step"] == 2
    for f in ("outcome_rows.jsonl", "outcome_rows_val.jsonl"):
        assert (tmp_path / "a" / f).read_text() == (tmp_path / "b" / f).read_text()
    part = data.subset(range(6))
    part.outcomes[2], part.outcomes[4] = None, 0.5
    with pytest.raises(ValueError, match=r"2 solution\(s\) have no right/wrong outcome "
                       r"\(ids s2, s4\)"):
        fit_implicit_prm(config, tmp_path / "c", part)
    with pytest.raises(ValueError, match="give neither"):
        fit_implicit_prm(config, tmp_path / "c", data, data.steps)
