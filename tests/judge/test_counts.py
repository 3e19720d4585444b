"""Counts in the judge's messages agree with their nouns ('1 pairwise record', '1 of 1 record
is invalid', '1 judge, 1 file'); they said '1 pairwise records', '1 of 1 records are invalid'
and '1 judge(s), 1 file(s)'. The judge run is against a real OpenAI-compatible server on
127.0.0.1 (prefkit.llm.server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prefkit.cli.main import app
from prefkit.data.errors import InvalidInputError
from prefkit.judge.inputs import read_judge_inputs
from prefkit.llm.server import canned_responder, serve_responder
from prefkit.runs import plural

runner = CliRunner()


def _said(r) -> str:
    return " ".join((r.stderr + r.stdout).split())


def test_plural() -> None:
    assert [plural(n, "vote") for n in (0, 1, 2, 1234)] == [
        "0 votes", "1 vote", "2 votes", "1,234 votes"]
    assert plural(1, "analysis", "analyses") == "1 analysis"
    assert plural(3, "analysis", "analyses") == "3 analyses"


def test_judge_run_of_one_pair_says_one_record(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "2+2?", "response_a": "4", "response_b": "5"}) + "\n")
    s = serve_responder(canned_responder("[[A]]"), model="m")
    try:
        r = runner.invoke(app, ["judge", "run", str(pairs), "--output", str(tmp_path / "o.jsonl"),
                                "--model", "m", "--base-url", s.base_url, "--one-order",
                                "--top-logprobs", "0"])
    finally:
        s.close()
    assert r.exit_code == 0, r.output
    said = _said(r)
    assert "wrote 1 pairwise record to" in said and "0 error or unparsed verdicts of 1" in said


def test_one_invalid_record_of_one(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "2+2?", "response_a": "4", "response_b": None}) + "\n")
    with pytest.raises(InvalidInputError) as e:
        read_judge_inputs(pairs, "pairwise")
    assert "1 of 1 record is invalid, nothing was judged" in str(e.value.note)


def test_analyze_table_title_of_one_judge_and_file(tmp_path: Path) -> None:
    v = tmp_path / "v.jsonl"
    v.write_text(json.dumps({"question_id": 1, "model_a": "x", "model_b": "y", "judge_id": "j",
                             "turn": 1, "winner_ab": "A", "winner_ba": "B"}) + "\n")
    r = runner.invoke(app, ["judge", "analyze", str(v)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "1 judge, 1 file" in _said(r)
