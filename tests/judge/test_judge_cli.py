"""`prefkit judge analyze`: the JSON shape of the issue, the table, errors in flags' words."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from shared_paths import SHARED
from typer.testing import CliRunner

from prefkit.cli.main import app

runner = CliRunner()
JUDGE = SHARED / "data" / "judge"
needs_data = pytest.mark.skipif(not JUDGE.is_dir(), reason=f"shared data missing: {JUDGE}")

def _gz(path: object) -> str:
    """A gzip file's text."""
    with gzip.open(path, "rt", encoding="utf-8") as f:  # type: ignore[call-overload]
        return f.read()



def _write(tmp_path: Path, rows: list[dict[str, object]]) -> Path:
    p = tmp_path / "pairs.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_analyze_json_shape_on_a_hand_made_file(tmp_path: Path) -> None:
    rows = [{"question_id": 1, "model_a": a, "model_b": b, "judge_id": "j", "turn": 1,
             "winner_ab": ab, "winner_ba": ba}
            for a, b, ab, ba in [("x", "y", "A", "B"), ("y", "z", "A", "B"), ("z", "x", "A", "B"),
                                 ("x", "w", "A", "A")]]
    grades = tmp_path / "grades.jsonl"
    grades.write_text("".join(json.dumps({"question_id": 1, "model_id": m, "judge_id": "j",
                                          "score_turn1": s, "score_turn2": 5}) + "\n"
                              for m, s in [("x", 9), ("y", 3), ("z", 5), ("w", 1)]))
    r = runner.invoke(app, ["judge", "analyze", str(_write(tmp_path, rows)), str(grades),
                            "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert list(out) == ["judges"] and len(out["judges"]) == 1
    j = out["judges"][0]
    assert list(j) == ["judge", "position_consistency", "first_position_rate", "conflict_ratio",
                       "non_transitivity", "counts"]
    # 3 of 4 pairs consistent; firsts: 4 A's of 8 verdicts -> 5/8 (x-w: A, A)
    assert j["judge"] == "j" and j["position_consistency"] == pytest.approx(3 / 4)
    assert j["first_position_rate"] == pytest.approx(5 / 8)
    # consistent: x>y (9 > 3 fine), y>z (3 < 5 conflict), z>x (5 < 9 conflict)
    assert j["conflict_ratio"] == pytest.approx(2 / 3)
    assert j["non_transitivity"] == 1.0  # the one triad with consistent pairs is a cycle
    assert j["counts"]["violations"]["cycle"] == 1 and j["counts"]["conflict_turn"] == 1


def test_analyze_null_where_a_metric_does_not_apply(tmp_path: Path) -> None:
    rows = [{"question_id": 1, "model_a": "x", "model_b": "y", "judge_id": "j",
             "winner_ab": "A", "winner_ba": None}]
    r = runner.invoke(app, ["judge", "analyze", str(_write(tmp_path, rows)), "--json"])
    j = json.loads(r.stdout)["judges"][0]
    assert j["position_consistency"] is None and j["conflict_ratio"] is None
    assert j["non_transitivity"] is None and j["first_position_rate"] == 1.0


def test_analyze_bad_row_names_line_and_field(tmp_path: Path) -> None:
    rows = [{"question_id": 1, "model_a": "x", "model_b": "y", "winner_ab": "A",
             "winner_ba": "B"},
            {"question_id": 2, "model_a": "x", "model_b": "y", "winner_ab": "A>B",
             "winner_ba": "B"}]
    p = _write(tmp_path, rows)
    r = runner.invoke(app, ["judge", "analyze", str(p)])
    assert r.exit_code == 2
    assert "line 2" in r.output and "winner_ab" in r.output and "--skip-invalid" in r.output
    r = runner.invoke(app, ["judge", "analyze", str(p), "--skip-invalid", "--json"])
    assert r.exit_code == 0 and "skipped 1 invalid row" in r.output
    r = runner.invoke(app, ["judge", "analyze", str(tmp_path / "nope.jsonl")])
    assert r.exit_code == 2 and "no such file" in r.output


@needs_data
def test_analyze_the_four_mtbench_repro_judges() -> None:
    r = runner.invoke(app, ["judge", "analyze", str(JUDGE / "mtbench_repro" / "judgments"),
                            "--json"])
    assert r.exit_code == 0, r.output
    judges = {j["judge"]: j for j in json.loads(r.stdout)["judges"]}
    assert judges["Qwen2.5-14B-Instruct"]["position_consistency"] == pytest.approx(659 / 1200)
    assert judges["Qwen2.5-7B-Instruct"]["position_consistency"] == pytest.approx(249 / 1200)
    r = runner.invoke(app, ["judge", "analyze", str(JUDGE / "mtbench_repro" / "judgments")])
    assert "turn 2 (the turn the pairwise verdicts judged)" in r.output
    assert "Qwen2.5-7B-Instruct" in r.output


@needs_data
def test_analyze_with_gold_reports_agreement_before_and_after_repair() -> None:
    r = runner.invoke(app, ["judge", "analyze",
                            str(JUDGE / "pandalm" / "pandalm-7b-testset-v1.json"),
                            "--gold", str(JUDGE / "pandalm" / "testset-v1.json"), "--json"])
    assert r.exit_code == 0, r.output
    c = json.loads(r.stdout)["judges"][0]["counts"]
    assert c["agreement_pairs"] == 999
    assert 0.6 < c["agreement"] < 0.75 and c["agreement_bt_repair"] is not None


@needs_data
def test_analyze_answers_give_the_length_bias() -> None:
    repro = JUDGE / "mtbench_repro"
    r = runner.invoke(app, ["judge", "analyze", str(repro / "judgments" / "qwen" / "judge_14B"),
                            "--answers", str(repro / "answers"), "--json"])
    assert r.exit_code == 0, r.output
    c = json.loads(r.stdout)["judges"][0]["counts"]
    # independently: every A/B verdict of either order, its winner's turn-2 answer longer?

    length = {}
    for f in (repro / "answers").glob("*.jsonl.gz"):
        for line in _gz(f).splitlines():
            a = json.loads(line)
            length[(a["question_id"], a["model_id"])] = len(a["choices"][0]["turns"][1])
    longer = total = 0
    for f in (repro / "judgments" / "qwen" / "judge_14B" / "pairwise").glob("*.jsonl.gz"):
        for line in _gz(f).splitlines():
            x = json.loads(line)
            la, lb = length[(x["question_id"], x["model_a"])], length[(x["question_id"], x["model_b"])]
            for w, first, second in ((x["winner_ab"], x["model_a"], x["model_b"]),
                                     (x["winner_ba"], x["model_b"], x["model_a"])):
                if w not in ("A", "B") or la == lb:
                    continue
                win = first if w == "A" else second
                total += 1
                longer += length[(x["question_id"], win)] == max(la, lb)
    assert c["length_compared"] == total and c["prefers_longer"] == pytest.approx(longer / total)


def test_analyze_repairs(tmp_path: Path) -> None:
    # x-y: order ab says A with P 0.6/0.4, order ba says A (y) with P 0.9/0.1: inconsistent;
    # summed, P(x) = 0.6 + 0.1 < P(y) = 0.4 + 0.9 -> y, in both orders after the repair
    rows = [{"question_id": 1, "model_a": "x", "model_b": "y", "judge_id": "j",
             "winner_ab": "A", "winner_ba": "A", "probs_ab": {"A": 0.6, "B": 0.4, "tie": 0},
             "probs_ba": {"A": 0.9, "B": 0.1, "tie": 0}}]
    p = _write(tmp_path, rows)
    r = runner.invoke(app, ["judge", "analyze", str(p), "--json"])
    assert json.loads(r.stdout)["judges"][0]["position_consistency"] == 0.0
    r = runner.invoke(app, ["judge", "analyze", str(p), "--repair", "likelihood", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["judges"][0]["position_consistency"] == 1.0
    q = _write(tmp_path, [{**rows[0], "probs_ab": None, "probs_ba": None}])
    r = runner.invoke(app, ["judge", "analyze", str(q), "--repair", "likelihood"])
    assert r.exit_code == 2 and "needs verdict probabilities" in r.output
    r = runner.invoke(app, ["judge", "analyze", str(q), "--repair", "bradley-terry", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["judges"][0]["position_consistency"] == 1.0
    r = runner.invoke(app, ["judge", "analyze", str(q), "--repair", "magic"])
    assert r.exit_code == 2 and "--repair must be" in r.output
