"""`prefkit prm`: train on a slice of ProcessBench GSM8K (frozen MiniLM head), evaluate on
another slice (the JSON fields the issue asks for), score, best-of-N; bad input and a
wrong model argument stop with a clear message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from shared_paths import SHARED
from typer.testing import CliRunner

from prefkit.cli.main import app
from prefkit.process import evaluate_steps, load_prm, processbench_f1

GSM = SHARED / "data" / "prm" / "processbench_gsm8k.json"
runner = CliRunner()
pytestmark = pytest.mark.skipif(not GSM.exists(), reason=f"{GSM} is not available")


def run(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module", autouse=True)
def own_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Embeddings cached in this module's own folder, not the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFKIT_CACHE_DIR", str(tmp_path_factory.mktemp("prm_cache")))
        yield


@pytest.fixture(scope="module")
def trained(own_cache: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("prm_cli")
    rows = json.loads(GSM.read_text())
    (tmp / "train.json").write_text(json.dumps(rows[::7]))  # 58: 28 correct
    (tmp / "test.json").write_text(json.dumps(rows[3::10]))  # 40: 19 correct
    code, out, err = run("prm", "train", str(tmp / "train.json"), "--output",
                         str(tmp / "run"), "--epochs", "5", "--json")
    assert code == 0, err
    return {"tmp": tmp, "summary": json.loads(out), "test": rows[3::10]}


def test_train_writes_a_loadable_model(trained: dict[str, Any]) -> None:
    s, run_dir = trained["summary"], trained["tmp"] / "run"
    assert s["n_solutions"] == 58 and s["n_val_solutions"] == 12 and 0 < s["threshold"] < 1
    for f in ("config.json", "model.safetensors", "backbone.json", "metrics.jsonl",
              "prefkit_run.json", "checkpoint.pt"):
        assert (run_dir / f).is_file(), f
    prm = load_prm(run_dir)
    scores = prm.score(["2+2?"], [["2+2 = 4", "The answer is 4"]])
    assert scores[0].shape == (2,) and ((scores[0] > 0) & (scores[0] < 1)).all()
    assert prm.train_stats["n_steps"][0] == 4  # gsm8k-0 has four steps


def test_eval_json_fields_and_numbers(trained: dict[str, Any]) -> None:
    tmp = trained["tmp"]
    code, out, err = run("prm", "eval", str(tmp / "run"), str(tmp / "test.json"), "--json")
    assert code == 0, err
    res = json.loads(out)
    for k in ("f1", "accuracy_erroneous", "accuracy_correct", "threshold", "baselines"):
        assert k in res, k
    assert set(res["baselines"]) == {"never_flags", "first_step", "position_prior"}
    assert res["baselines"]["never_flags"]["accuracy_correct"] == 1.0
    assert res["threshold"] == pytest.approx(trained["summary"]["threshold"])
    # the same numbers from the Python API on the same predictions
    prm = load_prm(tmp / "run")
    labels = [r["label"] for r in trained["test"]]
    scores = prm.score([r["problem"] for r in trained["test"]],
                       [r["steps"] for r in trained["test"]])
    rep = evaluate_steps(scores, labels, threshold=res["threshold"])
    assert rep.f1 == pytest.approx(res["f1"])
    assert processbench_f1(rep.predictions, labels).f1 == pytest.approx(res["f1"])
    assert res["at_0.5"]["threshold"] == 0.5
    code, out, _ = run("prm", "eval", str(tmp / "run"), str(tmp / "test.json"))
    assert code == 0 and "position_prior" in out and "never_flags" in out


def test_score_and_best_of_n(trained: dict[str, Any], tmp_path: Path) -> None:
    tmp = trained["tmp"]
    cands = tmp_path / "cands.jsonl"
    cands.write_text(json.dumps({
        "prompt": "Tom has 3 apples and buys 4 more. How many?",
        "candidates": [["3 + 4 = 7", "The answer is 7"], "3 + 4 = 8\n\nThe answer is 8",
                       "3 + 4 = 7\n\nThe answer is \\boxed{7}"],
        "answer": "7"}) + "\n")
    code, out, err = run("prm", "best-of-n", str(tmp / "run"), str(cands), "--aggregate",
                         "min", "--json")
    assert code == 0, err
    res = json.loads(out)
    row = res["prompts"][0]
    assert row["scores"][row["best"]] == max(row["scores"])
    assert row["majority_vote"] == "7" and res["accuracy"]["majority_vote"] == 1.0
    code, out, err = run("prm", "score", str(tmp / "run"), str(cands), "--json")
    assert code == 0, err
    sol = json.loads(out)["solutions"]
    assert [len(s["step_scores"]) for s in sol] == [2, 2, 2]
    assert all(s["min"] == min(s["step_scores"]) for s in sol)


def test_bad_input_and_arguments(trained: dict[str, Any], tmp_path: Path) -> None:
    tmp = trained["tmp"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"problem": "q", "steps": ["a"], "label": 3}]))
    code, _, err = run("prm", "eval", str(tmp / "run"), str(bad))
    assert code == 2 and "names none of its 1 step" in err and "line 1" in err
    code, _, err = run("prm", "eval", str(tmp / "test.json"), str(tmp / "run"))
    assert code == 2 and "is a file" in err
    code, _, err = run("prm", "train", str(tmp / "train.json"), "--output", str(tmp / "run"))
    assert code == 2 and "--resume" in err
    code, _, err = run("prm", "best-of-n", str(tmp / "run"), str(bad), "--aggregate", "max")
    assert code == 2 and "max" in err
    # campaign s7: '-' said "-: no such file"
    code, _, err = run("prm", "train", "-", "--output", str(tmp_path / "o"))
    assert code == 2 and "step-labelled solutions are read from a file, not from standard" \
        in " ".join(err.split())
    code, _, err = run("prm", "best-of-n", str(tmp / "run"), "-")
    assert code == 2 and "candidates are read from a file" in " ".join(err.split())


def test_train_finetune_flags(tmp_path: Path) -> None:
    rows = json.loads(GSM.read_text())[::40]
    data = tmp_path / "d.json"
    data.write_text(json.dumps(rows))
    code, _, err = run("prm", "train", str(data), "--finetune", "--max-length", "2",
                       "--output", str(tmp_path / "ft"))
    assert code == 2 and "--max-length must be >= 8" in err
    code, _, err = run("prm", "train", str(data), "--finetune", "--backbone",
                       str(tmp_path / "nope"), "--output", str(tmp_path / "ft"))
    assert code == 2 and "no such folder" in err
    code, _, err = run("prm", "train", str(data), "--val-fraction", "0",
                       "--output", str(tmp_path / "ft"))
    assert code == 2 and "--val-fraction must lie in (0, 1)" in err
