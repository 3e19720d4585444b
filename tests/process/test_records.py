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
    assert "line 2" in msg and "'label'" in msg and "names none of its 2 steps" in msg
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
        assert res.data.outcomes == [r["final_answer_correct"] for r in rows]
        assert all(type(o) is bool for o in res.data.outcomes)  # not numpy's bool


# -- outcomes: whether each solution's final answer is right ----------------------------------
def test_processbench_outcomes_are_final_answer_correct_row_for_row() -> None:
    """Both real splits: the outcome is the file's final_answer_correct, row for row (the
    GSM8K file is one JSON list on one line); answers right through a wrong step exist."""
    for name in ("processbench_gsm8k.json", "processbench_math.json.gz"):
        path = _need(PRM / name)
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt") as f:
            raw = json.load(f)
        data = read_steps(path, require_outcome=True).data
        assert data.outcomes == [r["final_answer_correct"] for r in raw]
        assert all(isinstance(o, bool) for o in data.outcomes) and data.has_outcomes
        assert data.first_error == [r["label"] for r in raw]
        assert sum(o and r["label"] != -1 for o, r in zip(data.outcomes, raw)) > 0  # lucky


def test_outcomes_of_each_format(tmp_path: Path) -> None:
    trl = {"prompt": "q", "completions": ["a", "b"], "labels": [True, False]}
    d = read_steps(_jsonl(tmp_path / "trl.jsonl", [trl])).data
    assert d.outcomes == [None] and not d.has_outcomes  # TRL stepwise has none of its own
    d = read_steps(_jsonl(tmp_path / "trl2.jsonl", [{**trl, "outcome": "true"},
                                                    {**trl, "outcome": 0}])).data
    assert d.outcomes == [True, False]
    # Math-Shepherd's tagged text: the last step's mark is the final answer's
    text = "Q. Step 1: 1+1=2 ки\nStep 2: 2+1=4 ки"
    rows = [{"input": text, "label": text.replace("ки", "+")},
            {"input": text, "label": text.replace("ки", "+", 1).replace("ки", "-")}]
    d = read_steps(_jsonl(tmp_path / "ms.jsonl", rows)).data
    assert d.outcomes == [True, False] and d.labels == [[1.0, 1.0], [1.0, 0.0]]
    # the soft layout: none of its own (a soft last value is an estimate), a column read
    soft = {"problem": "q", "steps": ["a", "b"], "values": [0.9, 0.4]}
    d = read_steps(_jsonl(tmp_path / "soft.jsonl", [soft, {**soft, "outcome": 0.25}])).data
    assert d.outcomes == [None, 0.25]
    # PRM800K: label.finish_reason
    step = {"completions": [{"text": "x", "rating": 1}], "chosen_completion": 0}
    pr = [{"question": {"problem": "p"}, "label": {"steps": [step], "finish_reason": r}}
          for r in ("solution", "found_error", "give_up", "bad_problem")]
    d = read_steps(_jsonl(tmp_path / "prm800k.jsonl", pr)).data
    assert d.outcomes == [True, False, None, None]
    with pytest.raises(InvalidInputError) as e:
        read_steps(tmp_path / "prm800k.jsonl", require_outcome=True)
    msg = str(e.value)
    assert "line 3" in msg and "line 4" in msg and "'label.finish_reason'" in msg
    assert "finish_reason 'give_up' says nothing of the final answer" in msg
    res = read_steps(tmp_path / "prm800k.jsonl", require_outcome=True, skip_invalid=True)
    assert res.data.outcomes == [True, False] and [p.line for p in res.skipped] == [3, 4]
    pr[0]["label"]["finish_reason"] = "done"
    with pytest.raises(InvalidInputError, match="unknown finish_reason 'done'"):
        read_steps(_jsonl(tmp_path / "prm800k.jsonl", pr))


def test_bad_outcomes_name_file_line_field_and_fix(tmp_path: Path) -> None:
    rows = [{"problem": "q", "steps": ["a", "b"], "label": -1, "final_answer_correct": v}
            for v in (True, "maybe", 2, [1], "False", None, 0.5)]
    p = _jsonl(tmp_path / "pb.jsonl", rows)
    with pytest.raises(InvalidInputError) as e:
        read_steps(p)
    msg = str(e.value)
    assert "3 of 7 records are invalid" in msg and "pb.jsonl" in msg
    for line, v in ((2, "'maybe'"), (3, "2"), (4, "[1]")):
        assert f"outcome {v} is not true/false in field 'final_answer_correct'" in msg
        assert f"line {line}" in msg
    assert "true or false (or the probability that it is, in [0, 1])" in msg  # the fix
    res = read_steps(p, skip_invalid=True)  # never dropped silently: each one reported
    assert res.data.outcomes == [True, False, None, 0.5]
    assert [s.line for s in res.skipped] == [2, 3, 4]
    # required (the implicit PRM): a missing or soft outcome is refused too
    with pytest.raises(InvalidInputError) as e:
        read_steps(p, require_outcome=True)
    msg = str(e.value)
    assert "5 of 7 records are invalid" in msg and "missing outcome" in msg
    assert "outcome 0.5 is not true/false (a soft outcome" in msg


def test_required_outcome_column_missing_names_the_columns_present(tmp_path: Path) -> None:
    rows = [{"problem": "q", "steps": ["a"], "label": -1, "ok": True}]
    p = _jsonl(tmp_path / "pb.jsonl", rows)
    assert read_steps(p).data.outcomes == [None]  # optional: absent is None
    with pytest.raises(InvalidInputError) as e:
        read_steps(p, require_outcome=True)
    msg = str(e.value)
    assert "missing column 'final_answer_correct' (or 'outcome'" in msg
    assert "columns present: problem, steps, label, ok" in msg
    assert read_steps(p, columns={"outcome": "ok"}, require_outcome=True).data.outcomes == [True]
    with pytest.raises(InvalidInputError, match="missing column 'right'.*columns present: "
                       "problem, steps, label, ok"):
        read_steps(p, columns={"outcome": "right"})


def test_write_steps_round_trips_outcomes(tmp_path: Path) -> None:
    from prefkit.data.steps import StepSolutions, write_steps

    def same(a: StepSolutions, b: StepSolutions) -> None:
        assert (a.prompts, a.steps, a.ids, a.outcomes) == (b.prompts, b.steps, b.ids, b.outcomes)
        assert [[None if math.isnan(x) else x for x in r] for r in a.labels] == \
            [[None if math.isnan(x) else x for x in r] for r in b.labels]

    data = read_steps(_need(PRM / "processbench_gsm8k.json")).data
    assert write_steps(data, tmp_path / "pb.jsonl") == "processbench"
    back = read_steps(tmp_path / "pb.jsonl")
    assert back.format == "processbench"
    same(data, back.data)
    assert [type(o) for o in back.data.outcomes] == [bool] * len(data)
    soft = StepSolutions()
    soft.add(1, "p", ["a", "b", "c"], [0.75, math.nan, 0.0], "s-1", 0.5)
    soft.add(2, "q", ["a"], [1.0], "s-2", None)
    soft.add(3, "r", ["a", "b"], [0.0, 1.0], "s-3", False)
    assert write_steps(soft, tmp_path / "soft.jsonl") == "math_shepherd"
    back = read_steps(tmp_path / "soft.jsonl")
    assert back.format == "math_shepherd"
    same(soft, back.data)
    # subset and concatenate keep the outcomes
    sub = soft.subset([2, 0])
    assert sub.outcomes == [False, 0.5] and sub.ids == ["s-3", "s-1"]
    both = StepSolutions.concatenate([sub, data.subset([0, 1])])
    assert both.outcomes == [False, 0.5, *data.outcomes[:2]] and len(both) == 4
    assert both.first_error == [0, 2, *data.first_error[:2]]
