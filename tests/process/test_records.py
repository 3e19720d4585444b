"""Step records: the four step formats and the three task formats, read through the format
registry (family "steps"), with the shared errors for bad rows."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
from shared_paths import SHARED

from prefkit.data.errors import InvalidInputError
from prefkit.data.formats import describe_formats
from prefkit.process import read_steps, read_tasks

PRM = SHARED / "data" / "prm"
RL = SHARED / "data" / "rl"


def _need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"shared data missing: {path}")
    return path


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_processbench_files() -> None:
    """Both real splits: labels as in the file, steps after the first error unlabelled."""
    raw = json.loads(_need(PRM / "processbench_gsm8k.json").read_text())
    res = read_steps(PRM / "processbench_gsm8k.json")
    assert res.format == "processbench" and len(res.data) == 400
    assert res.data.first_error == [r["label"] for r in raw]
    assert res.data.ids[0] == "gsm8k-0" and res.data.steps[0] == raw[0]["steps"]
    lab = res.data.labels[0]  # gsm8k-0: first wrong step 1 of 4
    assert lab[0] == 1.0 and lab[1] == 0.0 and all(math.isnan(x) for x in lab[2:])
    with gzip.open(_need(PRM / "processbench_math.json.gz"), "rt") as f:
        raw_math = json.load(f)
    res = read_steps(PRM / "processbench_math.json.gz")
    assert len(res.data) == 1000 and res.data.first_error == [r["label"] for r in raw_math]


def test_trl_stepwise_and_soft_and_shepherd(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "trl.jsonl", [
        {"prompt": "1+1+1?", "completions": ["1+1=2", "2+1=4"], "labels": [True, False]}])
    d = read_steps(p).data
    assert d.labels == [[1.0, 0.0]] and d.first_error == [1] and not d.soft
    p = _jsonl(tmp_path / "soft.jsonl", [
        {"problem": "q", "steps": ["a", "b", "c"], "values": [0.9, 0.4, 0.0]}])
    res = read_steps(p)
    assert res.format == "math_shepherd" and res.data.soft and res.data.first_error == [1]
    text = ("Janet has 3 apples. Step 1: 3+2=5 ки\nStep 2: 5*2=11 ки\n"
            "Step 3: The answer is 11 ки")
    label = text.replace("ки", "+", 1).replace("ки", "-", 1).replace("ки", "-", 1)
    res = read_steps(_jsonl(tmp_path / "ms.jsonl", [{"input": text, "label": label,
                                                      "task": "GSM8K"}]))
    assert res.format == "math_shepherd"
    assert res.data.prompts == ["Janet has 3 apples."]
    assert res.data.steps[0] == ["Step 1: 3+2=5", "Step 2: 5*2=11", "Step 3: The answer is 11"]
    assert res.data.labels == [[1.0, 0.0, 0.0]]


def test_prm800k_layout(tmp_path: Path) -> None:
    row = {"question": {"problem": "2+3*4?", "ground_truth_answer": "14"},
           "label": {"steps": [
               {"completions": [{"text": "3*4=12", "rating": 1}], "chosen_completion": 0},
               {"completions": [{"text": "2+12=13", "rating": -1},
                                {"text": "2+12=14", "rating": 1}], "chosen_completion": None,
                "human_completion": None},
           ], "finish_reason": "found_error"}}
    res = read_steps(_jsonl(tmp_path / "prm800k.jsonl", [row]))
    assert res.format == "prm800k"
    assert res.data.steps == [["3*4=12", "2+12=13"]] and res.data.labels == [[1.0, 0.0]]


def test_bad_rows_name_line_field_and_fix(tmp_path: Path) -> None:
    p = _jsonl(tmp_path / "bad.jsonl", [
        {"problem": "q", "steps": ["a", "b"], "label": -1},
        {"problem": "q", "steps": ["a", "b"], "label": 5},
        {"problem": "q", "steps": [], "label": -1}])
    with pytest.raises(InvalidInputError) as e:
        read_steps(p)
    msg = str(e.value)
    assert "line 2" in msg and "'label'" in msg and "names no step of the 2 steps" in msg
    assert "line 3" in msg and "non-empty list of steps" in msg
    res = read_steps(p, skip_invalid=True)
    assert len(res.data) == 1 and sorted(s.line for s in res.skipped) == [2, 3]
    p = _jsonl(tmp_path / "trl.jsonl", [
        {"prompt": "q", "completions": ["a", "b"], "labels": [True]}])
    with pytest.raises(InvalidInputError, match="expected 2 labels"):
        read_steps(p)


def test_tasks_real_files() -> None:
    r = read_tasks(_need(RL / "gsm8k" / "test.jsonl"))
    assert r.format == "gsm8k" and len(r.data) == 1319 and r.data.answers[0].endswith("18")
    r = read_tasks(_need(RL / "math500" / "test.jsonl"))
    assert r.format == "math" and len(r.data) == 500
    r = read_tasks(_need(RL / "game24" / "24.csv"))
    assert r.format == "game24" and r.data.prompts[0] == "1 1 4 6"
    with pytest.raises(InvalidInputError, match="not tasks with reference answers"):
        read_tasks(_need(PRM / "processbench_gsm8k.json"))
    with pytest.raises(InvalidInputError, match="not step-labelled solutions"):
        read_steps(RL / "math500" / "test.jsonl")


def test_the_family_is_listed() -> None:
    text = describe_formats("steps")
    for name in ("processbench", "trl_stepwise", "math_shepherd", "prm800k", "gsm8k",
                 "math", "game24"):
        assert f"  {name}:" in text


def test_public_names_resolve_and_import_is_light() -> None:
    import subprocess
    import sys

    import prefkit.process as mod

    assert len(set(mod.__all__)) == len(mod.__all__)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name
    code = ("import sys, prefkit.process, prefkit.answers; "
            "print(sorted(m for m in ('torch', 'transformers', 'sympy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_processbench_as_parquet_and_jsonl(tmp_path: Path) -> None:
    """The Hugging Face copy of ProcessBench is Parquet/JSONL with the same columns."""
    pd = pytest.importorskip("pandas")
    rows = json.loads(_need(PRM / "processbench_gsm8k.json").read_text())[:30]
    pd.DataFrame(rows).to_parquet(tmp_path / "pb.parquet")
    _jsonl(tmp_path / "pb.jsonl", rows)
    for name in ("pb.parquet", "pb.jsonl"):
        res = read_steps(tmp_path / name)
        assert res.format == "processbench" and res.data.first_error == [r["label"] for r in rows]
        assert res.data.steps == [r["steps"] for r in rows]
