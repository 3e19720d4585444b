"""What a new user hit in `prefkit judge` after the judge issue: a --conflict-turn that
compared nothing, grades off the scale used as grades, judge run overwriting its --output,
MT-Bench's human judgments refused as --gold, a server that is not listening taking minutes
to give up, and typer's own errors read at any terminal width."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from prefkit.cli.main import app
from prefkit.judge.analyze import analyze
from prefkit.judge.io import read_verdicts
from prefkit.llm.server import serve_responder

runner = CliRunner()


def _jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _words(text: str) -> str:
    """The output as words: rich's panel borders gone, every run of white space one space
    (a message reads the same whatever width the terminal wrapped it at)."""
    return " ".join(re.sub(r"[\u2500-\u257f]", " ", text).split())


def _verdicts_and_grades(tmp_path: Path, grades: dict[str, float]) -> tuple[Path, Path]:
    """Judge j, prompt 1, turn 2: x beats y and y beats z in both orders; single grades of
    turns 1 and 2 (turn 1 all 5)."""
    v = _jsonl(tmp_path / "pairs.jsonl", [
        {"question_id": 1, "model_a": a, "model_b": b, "judge_id": "j", "turn": 2,
         "winner_ab": "A", "winner_ba": "B"} for a, b in (("x", "y"), ("y", "z"))])
    g = _jsonl(tmp_path / "grades.jsonl", [
        {"question_id": 1, "model_id": m, "judge_id": "j", "score_turn1": 5, "score_turn2": s}
        for m, s in grades.items()])
    return v, g


# -- 1. --conflict-turn that no grade has ---------------------------------------------------
@pytest.mark.parametrize("turn", ["-1", "0", "3"])
def test_a_conflict_turn_no_grade_has_is_refused(tmp_path: Path, turn: str) -> None:
    """Was: exit 0 and a conflict ratio of null (every pair compared with grades of a turn
    that does not exist: 'no_grade')."""
    v, g = _verdicts_and_grades(tmp_path, {"x": 9, "y": 3, "z": 5})
    r = runner.invoke(app, ["judge", "analyze", str(v), str(g), "--conflict-turn", turn])
    assert r.exit_code == 2, r.output
    said = _words(r.output)
    assert f"--conflict-turn {turn}: the single grades hold turns 1 and 2 only" in said
    assert "give one of them, or leave --conflict-turn out" in said
    assert "Traceback" not in r.output
    with pytest.raises(ValueError, match=f"conflict_turn {turn}: the single grades"):
        d = read_verdicts([v, g])
        analyze(d.verdicts, d.grades, conflict_turn=int(turn))


def test_a_conflict_turn_the_grades_have_compares_them(tmp_path: Path) -> None:
    v, g = _verdicts_and_grades(tmp_path, {"x": 9, "y": 3, "z": 5})
    r = runner.invoke(app, ["judge", "analyze", str(v), str(g), "--json"])
    j = json.loads(r.stdout)["judges"][0]  # turn 2: x>y (9 > 3), y>z (3 < 5: a conflict)
    assert j["conflict_ratio"] == 0.5 and j["counts"]["conflict_turn"] == 2
    r = runner.invoke(app, ["judge", "analyze", str(v), str(g), "--conflict-turn", "1",
                            "--json"])
    j = json.loads(r.stdout)["judges"][0]  # turn 1: all 5, no winner graded lower
    assert j["conflict_ratio"] == 0.0 and j["counts"]["conflict_turn"] == 1


def test_a_conflict_turn_without_grades_is_refused(tmp_path: Path) -> None:
    v, _ = _verdicts_and_grades(tmp_path, {"x": 9})
    r = runner.invoke(app, ["judge", "analyze", str(v), "--conflict-turn", "2"])
    assert r.exit_code == 2
    assert "--conflict-turn 2: there are no single grades to compare" in _words(r.output)


# -- 2. grades outside the scale -------------------------------------------------------------
def test_grades_outside_the_scale_are_counted_shown_and_left_out(tmp_path: Path) -> None:
    """x graded 11 on MT-Bench's 1-10 scale. Was: taken as a grade (x>y, 11 > 3, no
    conflict), nothing said."""
    v, g = _verdicts_and_grades(tmp_path, {"x": 11, "y": 3, "z": 5})
    r = runner.invoke(app, ["judge", "analyze", str(v), str(g), "--json"])
    assert r.exit_code == 0, r.output
    c = json.loads(r.stdout)["judges"][0]
    assert c["counts"]["grades_out_of_scale"] == 1 and c["counts"]["grade_scale_top"] == 10
    # x-y left out (x's grade is not a grade of 1..10); y>z at 3 < 5: 1 conflict of 1
    assert c["conflict_ratio"] == 1.0 and c["counts"]["conflict_pairs"] == 1
    assert c["counts"]["conflict_out_of_scale"] == 1
    r = runner.invoke(app, ["judge", "analyze", str(v), str(g)])
    said = _words(r.output)
    assert ("1 single grade outside the scale 1..10 (--scale), left out of the conflict "
            f"ratio as not grades of that scale (1 pair): {g}:1 (11 of 1..10)") in said
    # a judge asked for 1..20: 11 is a grade, x>y is no conflict
    r = runner.invoke(app, ["judge", "analyze", str(v), str(g), "--scale", "20", "--json"])
    c = json.loads(r.stdout)["judges"][0]
    assert c["counts"]["grades_out_of_scale"] == 0 and c["conflict_ratio"] == 0.5


def test_a_grade_file_that_says_its_scale_is_checked_against_it(tmp_path: Path) -> None:
    """prefkit judge run writes each grade's scale; it wins over --scale."""
    v, g = _verdicts_and_grades(tmp_path, {})
    _jsonl(g, [{"question_id": 1, "model_id": m, "judge_id": "j", "turn": 2, "score": s,
                "scale": 5} for m, s in (("x", 4), ("y", 6), ("z", 1))])
    r = runner.invoke(app, ["judge", "analyze", str(v), str(g), "--json"])
    c = json.loads(r.stdout)["judges"][0]["counts"]
    assert c["grades_out_of_scale"] == 1 and c["grade_scale_top"] == 5  # y: 6 of 1..5
    assert c["conflict_out_of_scale"] == 2 and c["conflict_pairs"] == 0


def test_judge_run_counts_grades_outside_its_scale(tmp_path: Path) -> None:
    """A judge that answers [[11]] on a 1..10 scale: an error verdict (score null), counted
    as out of scale, said, and read back as a missing grade."""
    answers = _jsonl(tmp_path / "answers.jsonl", [
        {"question_id": q, "question": "q?", "model": m, "answer": m}
        for q in ("1", "2") for m in ("high", "ok")])
    s = serve_responder(lambda req: "Rating: [[11]]" if "high" in req.messages[-1]["content"]
                        else "Rating: [[7]]", model="m")
    try:
        out = tmp_path / "g.jsonl"
        args = ["judge", "run", str(answers), "--template", "mtbench_single", "--model", "m",
                "--base-url", s.base_url, "--output", str(out)]
        r = runner.invoke(app, [*args, "--json"])
        assert r.exit_code == 0, r.output
        summary = json.loads(r.stdout)
        assert summary["out_of_scale"] == 2 and summary["errors"] == 2
        r = runner.invoke(app, [*args, "--overwrite"])
        assert "2 of the errors are grades outside the scale 1..10" in _words(r.output)
    finally:
        s.close()
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(x["score"], x["scale"], x["out_of_scale"]) for x in recs] == [
        (None, 10, True), (7.0, 10, False)] * 2
    assert recs[0]["error"] == "rating 11 outside the scale [1, 10]"
    g = read_verdicts(out).grades
    assert np.isnan(g.score).sum() == 2 and g.scale.tolist() == [10.0] * 4


# -- 3. judge run and an --output that exists ----------------------------------------------
def test_judge_run_refuses_an_existing_output_without_overwrite(tmp_path: Path) -> None:
    """Was: replaced silently. Now refused before any request (the file untouched), with
    --overwrite to replace it; a rerun with the same --cache asks nothing again."""
    pairs = _jsonl(tmp_path / "pairs.jsonl", [
        {"question_id": q, "question": f"q{q}?", "answer_a": "a", "answer_b": "b"}
        for q in ("1", "2")])
    s = serve_responder(lambda req: "[[A]]", model="m")
    try:
        out, cache = tmp_path / "v.jsonl", tmp_path / "c.sqlite"
        args = ["judge", "run", str(pairs), "--model", "m", "--base-url", s.base_url,
                "--output", str(out)]
        assert runner.invoke(app, args).exit_code == 0
        before, hits = out.read_bytes(), s.stats.requests
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and out.read_bytes() == before and s.stats.requests == hits
        said = _words(r.output)
        assert f"--output {out} already exists; pass --overwrite to replace it" in said
        assert "add --cache judge.sqlite" in said
        r = runner.invoke(app, [*args, "--cache", str(cache)])
        assert r.exit_code == 2 and f"the answers in --cache {cache} are not asked" in \
            _words(r.output)
        r = runner.invoke(app, [*args, "--cache", str(cache), "--overwrite", "--json"])
        assert r.exit_code == 0 and s.stats.requests == hits + 4
        r = runner.invoke(app, [*args, "--cache", str(cache), "--overwrite", "--json"])
        assert r.exit_code == 0 and json.loads(r.stdout)["cached"] == 4
        assert s.stats.requests == hits + 4  # the rerun asked nothing
    finally:
        s.close()


# -- 6. a server that is not listening ------------------------------------------------------
def test_judge_run_against_a_server_that_is_not_listening_fails_fast(tmp_path: Path) -> None:
    """A real free port. Was: every request retried through 6 back-offs, about 1 min 46 s,
    then exit 0 and a file of errors."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    pairs = _jsonl(tmp_path / "pairs.jsonl", [
        {"question_id": str(q), "question": "q?", "answer_a": "a", "answer_b": "b"}
        for q in range(100)])
    out = tmp_path / "v.jsonl"
    t = time.perf_counter()
    r = runner.invoke(app, ["judge", "run", str(pairs), "--model", "m", "--base-url",
                            f"http://127.0.0.1:{port}/v1", "--output", str(out)])
    elapsed = time.perf_counter() - t
    assert r.exit_code == 2, r.output
    said = _words(r.output)
    assert f"--base-url http://127.0.0.1:{port}/v1: no request reached the server" in said
    assert "cannot connect to" in said and "Start the server" in said
    assert not out.exists() and elapsed < 15, elapsed


# -- 7. errors at any terminal width ----------------------------------------------------
#: (arguments, what the error says); the range checks are prefkit's own messages, printed on
#: whole lines (soft wrap) -- they were typer's min=/max= errors, in a panel wrapped at
#: $COLUMNS, where at 16 columns the campaign's "--concurrency" read "'--concurren" + "cy'"
RANGE_ERRORS = [
    (["judge", "run", "{v}", "--output", "o.jsonl", "--concurrency", "0"],
     "--concurrency must be at least 1 (requests in flight at once), got 0"),
    (["judge", "run", "{v}", "--output", "o.jsonl", "--top-logprobs", "21"],
     "--top-logprobs must be from 0 to 20 (alternatives per token), got 21"),
    (["judge", "run", "{v}", "--output", "o.jsonl", "--scale", "1"],
     "--scale must be at least 2 (the top grade of a 1..SCALE rating), got 1"),
    (["judge", "analyze", "{v}", "--tolerance", "-1"], "--tolerance must be at least 0, got -1"),
    (["judge", "analyze", "{v}", "--scale", "0.5"],
     "--scale must be at least 1 (the top grade of a 1..SCALE scale), got 0.5"),
    (["judge", "analyze", "{v}", "--show-unparsed", "-1"],
     "--show-unparsed must be at least 0, got -1"),
    (["judge", "analyze", "{v}", "--conflict-turn", "-1"],
     "--conflict-turn -1: there are no single grades to compare"),
    (["reward", "eval", "{prefs}", "--judge", "m", "--concurrency", "0"],
     "--concurrency must be at least 1 (requests in flight at once), got 0"),
]


@pytest.mark.parametrize("columns", ["16", "30", "80", "250"])
def test_judge_errors_read_the_same_at_any_terminal_width(tmp_path: Path, columns: str
                                                           ) -> None:
    """Each message whole, as a substring of the raw output, at 16 to 250 columns
    ($COLUMNS and typer's $TERMINAL_WIDTH); typer's own type errors (still in its panel,
    wrapped at spaces and after hyphens) compared without white space and borders."""
    v, _ = _verdicts_and_grades(tmp_path, {})
    prefs = _jsonl(tmp_path / "prefs.jsonl", [{"prompt": "q", "chosen": "a", "rejected": "b"}])
    env = {"COLUMNS": columns, "TERMINAL_WIDTH": columns}
    for args, message in RANGE_ERRORS:
        r = runner.invoke(app, [a.replace("{v}", str(v)).replace("{prefs}", str(prefs))
                                for a in args], env=env)
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output, (columns, r.output)
    r = runner.invoke(app, ["judge", "analyze", str(v), "--conflict-turn", "two"], env=env)
    assert r.exit_code == 2
    said = re.sub(r"[\s\u2500-\u257f]", "", r.output)  # rich breaks lines at spaces and "-"
    assert "Invalidvaluefor'--conflict-turn':Inputshouldbeavalidinteger" in said


# -- 5. MT-Bench's human judgments as --gold --------------------------------------------------
#: the human split of lmsys/mt_bench_human_judgments (one row per expert's vote on a pair and
#: turn; FastChat's compute_agreement.py reads it): question_id, model_a, model_b, winner,
#: judge, turn, conversation_a/b. A pair may be named in either order.
HUMAN = [
    (81, "alpaca-13b", "gpt-3.5-turbo", "model_b", "expert_0", 1),
    (81, "alpaca-13b", "gpt-3.5-turbo", "model_b", "author_1", 1),
    (81, "gpt-3.5-turbo", "alpaca-13b", "model_a", "author_2", 1),  # mirrored: the same vote
    (81, "alpaca-13b", "gpt-3.5-turbo", "tie", "expert_0", 2),      # 1-1: no majority
    (81, "alpaca-13b", "gpt-3.5-turbo", "model_a", "author_1", 2),
    (82, "claude-v1", "gpt-4", "model_a", "expert_3", 1),
    (82, "gpt-4", "vicuna-13b-v1.2", "tie", "author_0", 1),
]
#: GPT-4's both-orders outcomes of the same pairs (the gpt4_pair split's layout)
GPT4 = [
    (81, "alpaca-13b", "gpt-3.5-turbo", "model_b", 1),             # = gold
    (81, "alpaca-13b", "gpt-3.5-turbo", "tie (inconsistent)", 2),  # gold split: no label
    (82, "gpt-4", "claude-v1", "model_a", 1),                       # gold: claude-v1
    (82, "gpt-4", "claude-v1", "model_a", 2),                       # no turn-2 gold
    (82, "gpt-4", "vicuna-13b-v1.2", "tie", 1),                     # = gold (a tie)
]


def _conv(answer: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": "q"}, {"role": "assistant", "content": answer}]


def test_mtbench_human_judgments_are_gold_labels_per_pair_and_turn(tmp_path: Path) -> None:
    """Was: exit 2 -- read as annotations_long with question_id as the pair ('pair 81 has
    another model_b here than at line 1')."""
    human = _jsonl(tmp_path / "human.jsonl", [
        {"question_id": q, "model_a": a, "model_b": b, "winner": w, "judge": j,
         "conversation_a": _conv(a), "conversation_b": _conv(b), "turn": t}
        for q, a, b, w, j, t in HUMAN])
    gpt4 = _jsonl(tmp_path / "gpt4_pair.jsonl", [
        {"question_id": q, "model_a": a, "model_b": b, "winner": w,
         "judge": ["gpt-4", "pair-v2"], "turn": t} for q, a, b, w, t in GPT4])
    from prefkit.judge.inputs import read_gold

    gold = read_gold(human)
    assert gold.kind == "mtbench_human"
    assert gold.labels == {("81", "alpaca-13b", "gpt-3.5-turbo", 1): 1,
                           ("82", "claude-v1", "gpt-4", 1): 0,
                           ("82", "gpt-4", "vicuna-13b-v1.2", 1): 2}
    assert gold.summary == ("MT-Bench human judgments: 7 votes by 5 judges on 4 pairs and "
                            "turns; 3 gold labels (the majority vote, 1 tie), 1 pair with a "
                            "split vote left out")
    r = runner.invoke(app, ["judge", "analyze", str(gpt4), "--gold", str(human), "--json"])
    assert r.exit_code == 0, r.output
    c = json.loads(r.stdout)["judges"][0]["counts"]
    # with ties: 81 t1 (hit), 82 claude t1 (miss), 82 vicuna t1 (tie = tie: hit)
    assert (c["agreement_pairs"], c["agreement"]) == (3, pytest.approx(2 / 3))
    assert c["agreement_without_ties"] == 0.5 and c["agreement_no_label"] == 2
    r = runner.invoke(app, ["judge", "analyze", str(gpt4), "--gold", str(human)])
    assert f"--gold {human}: MT-Bench human judgments: 7 votes" in _words(r.output)


def test_a_bad_mtbench_human_vote_names_its_line(tmp_path: Path) -> None:
    human = _jsonl(tmp_path / "human.jsonl", [
        {"question_id": 81, "model_a": "x", "model_b": "y", "winner": "model_a",
         "judge": "expert_0", "turn": 1},
        {"question_id": 81, "model_a": "x", "model_b": "y", "winner": "model_c",
         "judge": "expert_1", "turn": 1}])
    v = _jsonl(tmp_path / "v.jsonl", [{"question_id": 81, "model_a": "x", "model_b": "y",
                                       "winner_ab": "A", "winner_ba": "B", "turn": 1}])
    r = runner.invoke(app, ["judge", "analyze", str(v), "--gold", str(human)])
    assert r.exit_code == 2
    said = _words(r.output)
    assert "line 2" in said and "winner" in said and "unknown winner 'model_c'" in said


# -- 8. one tie-half-credit accuracy ---------------------------------------------------------
def test_unjudged_as_ties_accuracy_is_the_reward_evaluations_own() -> None:
    """JudgeScores.accuracy_with_unjudged_as_ties is prefkit.reward.pairwise_accuracy (a tie
    counts 1/2) over the judge's scores, an unjudged pair a tie: by hand (1 + 1/2 + 0 + 1/2)
    / 4, and equal to it on 200 random pairs with ties and unjudged ones."""
    from prefkit.judge.evaluate import JudgeScores
    from prefkit.reward import pairwise_accuracy

    def scores(p: np.ndarray) -> JudgeScores:
        n = p.size
        orders = np.where(np.isnan(p), 0, 2)
        return JudgeScores(p, orders, np.full(n, 2), np.zeros(n, bool), np.full(n, np.nan))

    assert scores(np.array([0.9, 0.5, 0.2, np.nan])).accuracy_with_unjudged_as_ties() == 0.5
    rng = np.random.default_rng(0)
    p = rng.choice([0.0, 0.25, 0.5, 0.75, 1.0, np.nan], size=200)
    js = scores(p)
    c = np.zeros(200)
    c[js.judged] = js.scores()[0]
    assert js.accuracy_with_unjudged_as_ties() == pairwise_accuracy(c, -c).accuracy
    credit = np.where(np.isnan(p) | (p == 0.5), 0.5, (p > 0.5).astype(float))
    assert js.accuracy_with_unjudged_as_ties() == pytest.approx(credit.mean())
