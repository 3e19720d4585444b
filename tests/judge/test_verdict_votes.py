"""`prefkit rank` on judge verdict files: an error order drops that order only; the pair's
other order still votes, and the note says how many such single-order votes were kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prefkit.cli.main import app
from prefkit.data import read_votes
from prefkit.data.errors import InvalidInputError

runner = CliRunner()

ROWS = [  # (model_a, model_b, winner_ab, winner_ba): positional verdicts
    ("x", "y", "A", "error"),      # single-order vote: x wins
    ("x", "y", "A", "B"),          # x wins twice
    ("y", "z", "error", "error"),  # no vote
    ("y", "z", "tie", "A"),        # tie, then z (shown first) wins
    ("x", "z", "error", "A"),      # single-order vote: z (shown first in ba) wins
    ("x", "z", "B", None),         # one order asked: z wins
    ("y", "x", "B", "B"),          # x wins (order ab: B = x), y wins (order ba: B = y)
]


def _write(tmp_path: Path) -> Path:
    p = tmp_path / "verdicts.jsonl"
    p.write_text("".join(json.dumps({"question_id": str(i), "model_a": a, "model_b": b,
                                     "judge_id": "j", "winner_ab": ab, "winner_ba": ba}) + "\n"
                         for i, (a, b, ab, ba) in enumerate(ROWS)))
    return p


def _expected_votes() -> list[tuple[str, str, int]]:
    """(a, b, outcome) of every valid order, worked out from ROWS by hand's rule: order ab
    shows a first, order ba shows b first; 0 = a wins, 1 = b wins, 2 = tie."""
    out = []
    for a, b, ab, ba in ROWS:
        if ab in ("A", "B", "tie"):
            out.append((a, b, {"A": 0, "B": 1, "tie": 2}[ab]))
        if ba in ("A", "B", "tie"):
            out.append((a, b, {"A": 1, "B": 0, "tie": 2}[ba]))
    return out


def test_skip_invalid_keeps_the_valid_order_of_a_failed_pair(tmp_path: Path) -> None:
    p = _write(tmp_path)
    with pytest.raises(InvalidInputError):
        read_votes(p)  # without skip_invalid an error verdict stops the read
    res = read_votes(p, skip_invalid=True)
    v = res.votes
    got = sorted(zip([v.items.names[i] for i in v.a], [v.items.names[i] for i in v.b],
                     v.outcome.tolist()))
    assert got == sorted(_expected_votes()) and len(got) == 9
    # one problem per row with an error; the two single-order rows say so, numbered
    msgs = {p_.line: p_.describe(None) for p_ in res.skipped}
    assert sorted(msgs) == [1, 3, 5]
    assert "order ba is an error" in msgs[1] and "single-order vote 1 of 2" in msgs[1]
    assert "order ab's vote still counts" in msgs[1]
    assert "both orders are errors" in msgs[3] and "no vote" in msgs[3]
    assert "single-order vote 2 of 2" in msgs[5] and "order ba's vote still counts" in msgs[5]


def test_rank_cli_counts_the_single_order_votes(tmp_path: Path) -> None:
    r = runner.invoke(app, ["rank", str(_write(tmp_path)), "--skip-invalid", "--json",
                            "--intervals", "none"])
    assert r.exit_code == 0, r.output
    board = {x["item"]: x["votes"] for x in json.loads(r.stdout)["leaderboard"]}
    expected: dict[str, float] = {}
    for a, b, _ in _expected_votes():
        expected[a] = expected.get(a, 0) + 1
        expected[b] = expected.get(b, 0) + 1
    assert board == expected == {"x": 7, "y": 7, "z": 4}
    assert "single-order vote 2 of 2" in r.stderr


#: MT-Bench's gpt4_pair judgments as lmsys/mt_bench_human_judgments releases them (one row per
#: pair and turn, GPT-4's both-orders outcome; FastChat's compute_agreement.py reads the
#: layout): 'tie (inconsistent)' = the two presentation orders disagreed
GPT4_PAIR = [
    (81, "alpaca-13b", "gpt-3.5-turbo", "model_b", 1),
    (81, "alpaca-13b", "gpt-3.5-turbo", "tie (inconsistent)", 2),
    (82, "gpt-4", "claude-v1", "model_a", 1),
    (82, "gpt-4", "vicuna-13b-v1.2", "tie", 1),
    (83, "claude-v1", "gpt-3.5-turbo", "tie (inconsistent)", 1),
]


def _gpt4_pair(tmp_path: Path) -> Path:
    p = tmp_path / "gpt4_pair.jsonl"
    p.write_text("".join(json.dumps({
        "question_id": q, "model_a": a, "model_b": b, "winner": w, "judge": ["gpt-4", "pair-v2"],
        "conversation_a": [{"role": "user", "content": "q"}, {"role": "assistant", "content": a}],
        "conversation_b": [{"role": "user", "content": "q"}, {"role": "assistant", "content": b}],
        "turn": t}) + "\n" for q, a, b, w, t in GPT4_PAIR))
    return p


def test_fastchat_votes_read_tie_inconsistent_as_a_tie_and_say_so(tmp_path: Path) -> None:
    """Was: 'unknown outcome label 'tie (inconsistent)'' on lines 2 and 5, nothing read."""
    from prefkit.data.formats import read_format

    p = _gpt4_pair(tmp_path)
    res = read_votes(p)
    assert res.format == "fastchat" and res.skipped == []
    v = res.votes
    names = v.items.names
    got = [(names[a], names[b], int(o)) for a, b, o in zip(v.a, v.b, v.outcome)]
    assert got == [("alpaca-13b", "gpt-3.5-turbo", 1), ("alpaca-13b", "gpt-3.5-turbo", 2),
                   ("gpt-4", "claude-v1", 0), ("gpt-4", "vicuna-13b-v1.2", 2),
                   ("claude-v1", "gpt-3.5-turbo", 2)]
    _, parsed, _ = read_format(p, ("votes",))
    assert [w.reason for w in parsed.warnings] == [
        ("2 rows with winner 'tie (inconsistent)' read as ties (the judge's two presentation "
         "orders disagreed, as FastChat's MT-Bench judgments write it)")]
    r = runner.invoke(app, ["rank", str(p), "--json", "--intervals", "none"])
    assert r.exit_code == 0, r.output
    board = {x["item"]: x["votes"] for x in json.loads(r.stdout)["leaderboard"]}
    assert board["claude-v1"] == 2.0 and board["alpaca-13b"] == 2.0
