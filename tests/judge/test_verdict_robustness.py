"""Every verdict reader on unusual but valid input, small hand-made files: missing optional
fields, extra fields, one order only, verdict words in other casing, pair-v2's ``[[C]]``
tie, FastChat's ``tie (bothbad)``, both-orders outcomes where one order's verdict belongs
(``tie (inconsistent)``), error rows. Nothing crashes; every row left out is counted and
shown with its line by ``prefkit judge analyze`` (on stderr, beside its JSON)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from prefkit.cli.main import app
from prefkit.data.errors import InvalidInputError
from prefkit.judge.io import read_verdicts
from prefkit.judge.records import ERROR, FIRST, NOT_JUDGED, SECOND, TIE

runner = CliRunner()


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _analyze(*args: str) -> dict[str, Any]:
    """analyze --json, and the rows it left out as stderr lists them: ``skipped_rows`` (the
    count said) and ``skipped_lines`` (the lines shown)."""
    import re

    r = runner.invoke(app, ["judge", "analyze", *args, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert list(out) == ["judges"]  # the JSON shape, nothing added
    err = " ".join(r.stderr.split())
    m = re.search(r"skipped (\d+) invalid rows?\b", err)
    out["skipped_rows"] = int(m.group(1)) if m else 0
    out["skipped_lines"] = [int(x) for x in re.findall(r" line (\d+);", err)]
    return out


def test_judge_pairs_casing_brackets_one_order_and_errors(tmp_path: Path) -> None:
    rows = [  # positional verdicts as other tools write them, plus fields no reader knows
        {"question_id": 1, "model_a": "x", "model_b": "y", "winner_ab": "a",
         "winner_ba": "B", "judge_id": "j", "extra": {"any": [1, 2]}},   # x both times
        {"question_id": 1, "model_a": "x", "model_b": "z", "winner_ab": "[[C]]",
         "winner_ba": "c", "judge_id": "j"},                                # tie both times
        {"question_id": 1, "model_a": "y", "model_b": "z", "winner_ab": "A",
         "winner_ba": "[[A]]", "judge_id": "j"},                            # first both times
        {"question_id": 2, "model_a": "x", "model_b": "y", "winner_ab": "Error",
         "winner_ba": " b ", "judge_id": "j", "judgment_ab": {"not": "text"}},
        {"question_id": 2, "model_a": "x", "model_b": "z", "winner_ab": "TIE",
         "winner_ba": None, "judge_id": "j"},                               # one order
    ]
    p = _jsonl(tmp_path / "j.jsonl", rows)
    v = read_verdicts(p).verdicts
    assert v.ab.tolist() == [FIRST, TIE, FIRST, ERROR, TIE]
    assert v.ba.tolist() == [SECOND, TIE, FIRST, SECOND, NOT_JUDGED]
    j = _analyze(str(p))["judges"][0]
    # by hand: rows 1-3 have both orders valid, rows 1 and 2 agree -> 2/3; non-tie
    # positional verdicts: A, B (row 1), A, A (row 3), B (row 4, order ba) -> 3 of 5 first
    assert j["position_consistency"] == pytest.approx(2 / 3)
    assert j["first_position_rate"] == pytest.approx(3 / 5)
    assert j["counts"]["errors"] == 1 and j["counts"]["pairs"] == 5


def test_judge_pairs_without_optional_fields(tmp_path: Path) -> None:
    """No judge_id: each file is its own judge (never pooled); no question_id: each row is
    its own prompt (never pooled into one prompt's triads); no winner_ba column: one
    order; turn absent: 0."""
    base = [("x", "y", "A"), ("y", "z", "A"), ("x", "z", "B")]  # a cycle if one prompt
    for name in ("one.jsonl", "two.jsonl"):
        _jsonl(tmp_path / name, [{"model_a": a, "model_b": b, "winner_ab": w}
                                 for a, b, w in base])
    d = _analyze(str(tmp_path / "one.jsonl"), str(tmp_path / "two.jsonl"))
    judges = sorted(x["judge"] for x in d["judges"])
    assert len(judges) == 2 and judges[0].endswith("one.jsonl)")
    for j in d["judges"]:
        assert j["position_consistency"] is None  # one order: does not apply
        assert j["non_transitivity"] is None  # three rows, three prompts: no triad
        assert j["first_position_rate"] == pytest.approx(2 / 3)
        assert j["counts"]["pairs"] == 3
    v = read_verdicts(tmp_path / "one.jsonl").verdicts
    assert len(set(v.prompt)) == 3 and set(v.turn.tolist()) == {0}


def test_judge_pairs_bad_rows_counted_and_shown(tmp_path: Path) -> None:
    rows = [
        {"question_id": 1, "model_a": "x", "model_b": "y", "winner_ab": "A", "winner_ba": "B"},
        {"question_id": 1, "model_a": "x", "model_b": "z", "winner_ab": None,
         "winner_ba": None},                                                # nothing judged
        {"question_id": 1, "model_a": "y", "model_b": "z", "winner_ab": "tie (inconsistent)",
         "winner_ba": "A"},                                                 # not one order's
        {"question_id": 2, "model_a": "x", "model_b": "y", "winner_ab": "A", "winner_ba": "B",
         "turn": "second"},                                                 # bad turn
        {"question_id": 2, "model_a": "x", "model_b": "y", "winner_ab": "A", "winner_ba": "B",
         "turn": "2"},                                                      # a turn as text
    ]
    p = _jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(InvalidInputError) as e:
        read_verdicts(p)
    text = str(e.value)
    assert "no verdict in either order" in text and "line 2" in text
    assert "a both-orders outcome" in text and "line 3" in text
    assert "turn 'second' is not a whole number" in text and "line 4" in text
    d = _analyze(str(p), "--skip-invalid")
    assert d["skipped_rows"] == 3 and d["skipped_lines"] == [2, 3, 4]
    assert d["judges"][0]["counts"]["pairs"] == 2
    assert read_verdicts(p, skip_invalid=True).verdicts.turn.tolist() == [0, 2]


def test_fastchat_pair_variants(tmp_path: Path) -> None:
    rows = [
        {"question_id": 81, "model_1": "x", "model_2": "y", "g1_winner": "Model_1",
         "g2_winner": "MODEL_1", "judge": ["gpt-4", "pair-v2"], "turn": 1},  # consistent x
        {"question_id": 81, "model_1": "x", "model_2": "z", "g1_winner": "tie (bothbad)",
         "g2_winner": "[[C]]", "judge": ["gpt-4", "pair-v2"]},               # ties
        {"question_id": 81, "model_1": "y", "model_2": "z", "g1_winner": "model_2",
         "g2_winner": None, "judge": ["gpt-4", "pair-v2"]},                  # game 2 not played
        {"question_id": 82, "model_1": "y", "model_2": "z", "g1_winner": "error",
         "g2_winner": "error", "judge": ["gpt-4", "pair-v2"], "g1_judgment": "no verdict"},
        {"question_id": 82, "model_1": "x", "model_2": "z", "g1_winner": "tie (inconsistent)",
         "g2_winner": "tie", "judge": ["gpt-4", "pair-v2"]},                 # invalid
        {"question_id": 82, "model_1": "x", "model_2": "y", "g1_winner": "model_1",
         "g2_winner": "model_2", "judge": ["gpt-4", "pair-v2"], "turn": None,
         "g1_user_prompt": 5},                                               # odd types
    ]
    p = _jsonl(tmp_path / "gpt-4_pair.jsonl", rows)
    with pytest.raises(InvalidInputError, match="not game 1's verdict"):
        read_verdicts(p)
    d = read_verdicts(p, skip_invalid=True)
    v = d.verdicts
    assert [s.line for s in d.skipped] == [5]
    # game 2 shows model_2 first: model_1 winning game 2 is SECOND
    assert v.ab.tolist() == [FIRST, TIE, SECOND, ERROR, FIRST]
    assert v.ba.tolist() == [SECOND, TIE, NOT_JUDGED, ERROR, FIRST]
    assert v.turn.tolist() == [1, 1, 1, 1, 1] and np.isnan(v.length_a[4])
    j = _analyze(str(p), "--skip-invalid")
    rep = j["judges"][0]
    # both orders valid: rows 1, 2, 6; consistent: 1, 2 -> 2/3; one error pair
    assert rep["position_consistency"] == pytest.approx(2 / 3)
    assert rep["counts"]["errors"] == 2 and j["skipped_rows"] == 1


def test_alpaca_eval_odd_completions_keep_the_preference(tmp_path: Path) -> None:
    """A raw_completion that is text, or whose logprob is not a number, gives no
    probabilities: the row keeps its preference as an order-ab verdict."""
    def row(pref: Any, raw: Any = None, **kw: Any) -> dict[str, Any]:
        return {"instruction": "q", "output_1": "a", "generator_1": "x", "output_2": "bbb",
                "generator_2": "y", "preference": pref, "annotator": "j",
                "raw_completion": raw, **kw}

    bad_lp = {"logprobs": {"content": [{"top_logprobs": [{"token": "m", "logprob": "x"}]}]}}
    rows = [row("1.7"), row(2.0, "garbage"), row(1.2, bad_lp), row(None), row(0),
            row(1.0, extra_field=[1])]
    p = tmp_path / "annotations.json"
    p.write_text(json.dumps(rows, indent=1))
    with pytest.raises(InvalidInputError, match="missing preference"):
        read_verdicts(p)
    d = read_verdicts(p, skip_invalid=True)
    v = d.verdicts
    assert len(v) == 5 and len(d.skipped) == 1
    assert v.ab.tolist() == [SECOND, SECOND, FIRST, TIE, FIRST]
    assert np.isnan(v.prob_ab).all() and (v.ba == NOT_JUDGED).all()


def test_pandalm_verdict_spellings(tmp_path: Path) -> None:
    rows = [{"idx": 0, "gpt_result": "TIE"}, {"idx": 1, "gpt_result": " 2 "},
            {"idx": 2, "gpt_result": None}, {"idx": "3", "gpt_result": "Garbage"},
            {"idx": 4, "gpt_result": 1}]
    p = tmp_path / "gpt-3.5-turbo-testset-v1.json"
    p.write_text(json.dumps(rows, indent=1))
    d = read_verdicts(p, skip_invalid=True)
    assert d.verdicts.ab.tolist() == [TIE, SECOND, ERROR, FIRST]
    assert len(d.skipped) == 1 and "unknown verdict None" in d.skipped[0].reason
    q = tmp_path / "pandalm-7b-testset-v1.json"
    q.write_text(json.dumps([{"idx": 0, "pandalm_result": 2.0},
                             {"idx": 1, "pandalm_result": "0"}]))
    assert read_verdicts(q).verdicts.ab.tolist() == [SECOND, TIE]
    j = _analyze(str(p), "--skip-invalid")
    assert j["judges"][0]["counts"]["errors"] == 1 and j["skipped_rows"] == 1


def test_single_grades_odd_values(tmp_path: Path) -> None:
    rows = [{"question_id": 81, "model": "x", "score": "7", "turn": 1, "judge": "g"},
            {"question_id": 81, "model": "y", "score": None, "turn": "2", "judge": "g"},
            {"question_id": 81, "model_id": "z", "score_turn1": 8, "score_turn2": "NaN",
             "judge_id": "g"},
            {"question_id": 81, "model": "w", "score": True, "judge": "g"},
            {"question_id": 81, "model": "v", "score": 5, "turn": "x", "judge": "g"},
            {"question_id": 81, "model": "u", "score": -1, "judge": "g", "extra": 1}]
    p = _jsonl(tmp_path / "single.jsonl", rows)
    with pytest.raises(InvalidInputError) as e:
        read_verdicts(p)
    assert "grade True is not a number" in str(e.value)
    assert "turn 'x' is not a whole number" in str(e.value)
    d = read_verdicts(p, skip_invalid=True)
    g = d.grades
    assert sorted(s.line for s in d.skipped) == [4, 5]
    assert g.model.tolist() == ["x", "y", "z", "z", "u"]
    assert g.turn.tolist() == [1, 2, 1, 2, 1]
    np.testing.assert_array_equal(g.score, [7, np.nan, 8, np.nan, np.nan])
    j = _analyze(str(p), "--skip-invalid")
    assert j["skipped_rows"] == 2 and j["judges"][0]["counts"]["grades"] == 5


def _conv(answer: str, second: str = "same") -> list[dict[str, str]]:
    return [{"role": "user", "content": "q"}, {"role": "assistant", "content": answer},
            {"role": "user", "content": "more"}, {"role": "assistant", "content": second}]


def test_both_orders_outcomes_as_mt_bench_gpt4_pair_writes_them(tmp_path: Path) -> None:
    """winner = model_a / model_b / tie / tie (inconsistent) per pair (MT-Bench's gpt4_pair
    split), any casing, a model's name, tie (bothbad), error: position consistency is the
    share not inconsistent, the first-position rate does not apply (null), P(longer)
    counts each consistent non-tie outcome once, and agreement reads an inconsistent pair
    as a tie (FastChat's rule)."""
    from prefkit.judge.repair import judge_verdict

    rows = [(81, "x", "y", "model_a", 1, "aaaa", "bb"),       # x, the longer
            (81, "y", "z", "Model_B", 1, "c", "dddd"),        # z, the longer
            (81, "x", "z", "tie (inconsistent)", 1, "eeeee", "f"),
            (82, "x", "y", "TIE", 1, "g", "h"),
            (82, "y", "z", "error", 1, "i", "j"),
            (82, "x", "z", "z", 1, "kk", "l"),                # z by name, the shorter
            (82, "x", "w", "tie (bothbad)", 2, "k", "llll"),
            (83, "x", "y", "model_c", 1, "a", "b")]           # invalid
    p = _jsonl(tmp_path / "gpt4_pair.jsonl", [
        {"question_id": q, "model_a": a, "model_b": b, "winner": w, "judge": "gpt4_pair",
         "turn": t, "conversation_a": _conv(ca), "conversation_b": _conv(cb)}
        for q, a, b, w, t, ca, cb in rows])
    with pytest.raises(InvalidInputError, match="unknown winner 'model_c'"):
        read_verdicts(p)
    d = read_verdicts(p, skip_invalid=True)
    v = d.verdicts
    assert d.formats == ["judge_winners"] and not v.positional.any()
    assert judge_verdict(v).tolist() == [0, 1, TIE, TIE, -1, 1, TIE]
    assert v.length_a.tolist() == [4, 1, 5, 1, 1, 2, 4]  # turn 2: "same" (4 characters)
    j = _analyze(str(p), "--skip-invalid")
    rep = j["judges"][0]
    assert rep["position_consistency"] == pytest.approx(5 / 6)  # the error pair left out
    assert rep["first_position_rate"] is None
    assert rep["counts"]["prefers_longer"] == pytest.approx(2 / 3)
    assert rep["counts"]["length_compared"] == 3 and j["skipped_lines"] == [8]
    # beside a positional file of the same judge, only its rows count for position
    q = _jsonl(tmp_path / "j.jsonl", [{"question_id": 90, "model_a": "x", "model_b": "y",
                                       "judge_id": "gpt4_pair", "winner_ab": "A",
                                       "winner_ba": "A"}])
    rep = _analyze(str(p), str(q), "--skip-invalid")["judges"][0]
    assert rep["first_position_rate"] == 1.0 and rep["counts"]["positional_non_tie"] == 2
    assert rep["position_consistency"] == pytest.approx(5 / 7)
