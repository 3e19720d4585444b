"""Readers of recorded judge verdicts: the shared real files, and bad rows named precisely."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from shared_paths import SHARED

from prefkit.data.errors import InvalidInputError
from prefkit.judge.io import read_verdicts
from prefkit.judge.records import ERROR, FIRST, NOT_JUDGED, SECOND, TIE, Verdicts

JUDGE = SHARED / "data" / "judge"
REPRO = JUDGE / "mtbench_repro" / "judgments"
needs_data = pytest.mark.skipif(not JUDGE.is_dir(), reason=f"shared data missing: {JUDGE}")

def _gz(path: object) -> str:
    """A gzip file's text."""
    with gzip.open(path, "rt", encoding="utf-8") as f:  # type: ignore[call-overload]
        return f.read()



@needs_data
def test_mtbench_repro_pairs_and_grades() -> None:
    d = read_verdicts([REPRO / "qwen" / "judge_14B"])
    assert set(d.formats) == {"judge_pairs", "mtbench_grades"}
    v, g = d.verdicts, d.grades
    assert len(v) == 15 * 80 and len(g) == 6 * 80 * 2  # 15 pairs x 80; 6 models x 80 x 2 turns
    assert set(v.turn.tolist()) == {2} and set(v.judge.tolist()) == {"Qwen2.5-14B-Instruct"}
    # the file's own both-order outcome `winner` (model name, tie, inconsistent, error)
    # agrees row by row with ours, computed from the two positional verdicts
    rows = [json.loads(line) for f in sorted((REPRO / "qwen" / "judge_14B" / "pairwise").glob("*"))
            for line in _gz(f).splitlines()]
    ia = np.where(v.ab == FIRST, 0, np.where(v.ab == SECOND, 1, v.ab))
    ib = np.where(v.ba == FIRST, 1, np.where(v.ba == SECOND, 0, v.ba))
    for k, r in enumerate(rows):
        agree = ia[k] == ib[k] and ia[k] >= 0
        if r["winner"] in ("inconsistent", "error"):
            assert not agree
        elif r["winner"] == "tie":
            assert agree and ia[k] == TIE
        else:
            assert agree and r["winner"] == (r["model_a"] if ia[k] == 0 else r["model_b"])
    first = g.select((g.model == "Phi-3.5-mini-Instruct") & (g.prompt == "81"))
    assert sorted(zip(first.turn.tolist(), first.score.tolist())) == [(1, 8.0), (2, 9.0)]


@needs_data
def test_fastchat_pair_game_two_is_positional() -> None:
    d = read_verdicts(JUDGE / "fastchat_gpt4_pair.jsonl.gz")
    v = d.verdicts
    rows = [json.loads(line) for line in _gz(JUDGE / "fastchat_gpt4_pair.jsonl.gz").splitlines()]
    assert len(v) == len(rows) == 75
    # game 2 shows model_2 first, its winner written as a model: model_2 -> A (first)
    for k, r in enumerate(rows):
        assert v.ba[k] == {"model_2": FIRST, "model_1": SECOND, "tie": TIE, "error": ERROR}[
            r["g2_winner"]]
        assert v.ab[k] == {"model_1": FIRST, "model_2": SECOND, "tie": TIE, "error": ERROR}[
            r["g1_winner"]]
    assert Counter(v.judge.tolist()) == {"gpt-4/pair-v2": 50, "gpt-4/pair-math-v1": 25}
    assert np.isfinite(v.length_a).all()  # from pair-v2's answer markers
    # an error verdict keeps the judge's text, to be shown with its row
    k = int(np.flatnonzero(v.ba == ERROR)[0])
    assert v.raw_ba[k] == rows[k]["g2_judgment"]


@needs_data
def test_alpaca_eval_presentation_order_recovered_from_logprobs() -> None:
    path = JUDGE / "alpaca_eval" / "alpaca-7b_weighted_gpt4_turbo_annotations.json.gz"
    v = read_verdicts(path).verdicts
    rows = json.loads(_gz(path))
    assert len(v) == 805
    ab, ba = v.ab != NOT_JUDGED, v.ba != NOT_JUDGED
    assert not (ab & ba).any()
    assert (ba.sum(), ab.sum()) == (403, 399 + 3)  # 3 rows without raw_completion stay in ab
    # probabilities as read from the "m"/"M" tokens reproduce AlpacaEval's preference:
    # shown in order ab, preference = 2 - P(m)/(P(m)+P(M)); in order ba, 1 + P(m)/(...)
    for k, r in enumerate(rows):
        p = v.prob_ab[k] if ab[k] else v.prob_ba[k]
        if not np.isfinite(p).all():
            assert r.get("raw_completion") is None
            continue
        q = p[0] / (p[0] + p[1])
        assert r["preference"] == pytest.approx(2 - q if ab[k] else 1 + q, abs=1e-6)
        assert 0.8 < p.sum() <= 1.0 + 1e-9  # the valid-label mass, not renormalised


@needs_data
def test_pandalm_judges_join_the_test_set() -> None:
    gpt = read_verdicts(JUDGE / "pandalm" / "gpt-3.5-turbo-testset-v1.json").verdicts
    assert Counter(gpt.ab.tolist()) == {SECOND: 476, FIRST: 460, TIE: 38, ERROR: 25}
    assert (gpt.ba == NOT_JUDGED).all()
    pl = read_verdicts(JUDGE / "pandalm" / "pandalm-7b-testset-v1.json").verdicts
    assert Counter(pl.ab.tolist()) == {SECOND: 459, FIRST: 433, TIE: 107}
    assert (gpt.model_a[0], gpt.model_b[0]) == ("bloom-7b", "llama-7b")  # cmp_key of idx 0
    assert set(gpt.model_a) | set(gpt.model_b) == {
        "bloom-7b", "cerebras-gpt-6.7B", "llama-7b", "opt-7b", "pythia-6.9b"}


def test_bad_rows_name_file_line_and_field(tmp_path: Path) -> None:
    p = tmp_path / "pairs.jsonl"
    rows = [{"question_id": 1, "model_a": "x", "model_b": "y", "winner_ab": "A", "winner_ba": "B"},
            {"question_id": 2, "model_a": "x", "model_b": "y", "winner_ab": "first",
             "winner_ba": "A"},
            {"question_id": 3, "model_a": "x", "model_b": "x", "winner_ab": "A", "winner_ba": "A"}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(InvalidInputError) as e:
        read_verdicts(p)
    text = str(e.value)
    assert "unknown positional verdict 'first'" in text and "line 2" in text
    assert "winner_ab" in text and "compared with itself" in text and "line 3" in text
    d = read_verdicts(p, skip_invalid=True)
    assert len(d.verdicts) == 1 and {s.line for s in d.skipped} == {2, 3}


def test_one_order_and_error_verdicts_are_kept(tmp_path: Path) -> None:
    p = tmp_path / "run.jsonl"
    rows = [{"question_id": 1, "model_a": "x", "model_b": "y", "winner_ab": "error",
             "winner_ba": None, "output_ab": "I cannot decide", "probs_ab": {"A": 0.2, "B": 0.1}},
            {"question_id": 1, "model_a": "x", "model_b": "z", "winner_ab": "tie",
             "winner_ba": "tie", "score_ab": "A=B"}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    v = read_verdicts(p).verdicts
    assert v.ab.tolist() == [ERROR, TIE] and v.ba.tolist() == [NOT_JUDGED, TIE]
    assert v.raw_ab[0] == "I cannot decide"
    np.testing.assert_allclose(v.prob_ab[0], [0.2, 0.1, np.nan])


def test_unknown_file_lists_the_verdict_formats(tmp_path: Path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"foo": 1}) + "\n")
    with pytest.raises(InvalidInputError) as e:
        read_verdicts(p)
    assert "judge_pairs" in str(e.value) and "fastchat_pair" in str(e.value)


def test_verdicts_refuse_self_comparison() -> None:
    with pytest.raises(ValueError, match="with itself"):
        Verdicts(judge=["j"], prompt=["1"], model_a=["x"], model_b=["x"], ab=[0], ba=[1])


def test_fastchat_single_grades_minus_one_is_missing(tmp_path: Path) -> None:
    p = tmp_path / "gpt-4_single.jsonl"
    rows = [{"question_id": 81, "model": "x", "judge": ["gpt-4", "single-v1"], "score": 8,
             "turn": 1, "judgment": "Rating: [[8]]"},
            {"question_id": 81, "model": "y", "judge": ["gpt-4", "single-v1"], "score": -1,
             "turn": 1, "judgment": "no rating"}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    d = read_verdicts(p)
    assert d.formats == ["mtbench_grades"] and d.verdicts is None
    g = d.grades
    assert g.judge.tolist() == ["gpt-4/single-v1"] * 2 and g.turn.tolist() == [1, 1]
    assert g.score[0] == 8 and np.isnan(g.score[1])


def test_judge_files_are_votes_for_rank(tmp_path: Path) -> None:
    from prefkit.data import read_votes

    rows = [{"question_id": 1, "model_a": "x", "model_b": "y", "judge_id": "j",
             "winner_ab": "A", "winner_ba": "A", "score_ab": "A>>B", "score_ba": "A>B",
             "length_a": 10, "length_b": 20},
            {"question_id": 2, "model_a": "x", "model_b": "y", "judge_id": "j",
             "winner_ab": "tie", "winner_ba": None, "length_a": 5, "length_b": 5}]
    p = tmp_path / "v.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = read_votes(p)
    v = res.votes
    assert res.format == "judge_votes"
    # order ab: x wins, strong (weight 3); order ba shows y first and A = y wins; q2: a tie
    assert v.outcome.tolist() == [0, 1, 2] and v.weight.tolist() == [3.0, 1.0, 1.0]
    assert v.features["length"][1].tolist() == [20.0, 20.0, 5.0]
    assert v.annotator.tolist() == ["j"] * 3 and v.prompt.tolist() == ["1", "1", "2"]


@pytest.mark.parametrize("fmt", ["judge_pairs", "fastchat_pair", "alpaca_eval_verdicts",
                                 "pandalm_judge", "judge_winners", "mtbench_grades"])
def test_fixed_column_readers_refuse_a_columns_mapping(fmt: str, tmp_path: Path) -> None:
    from prefkit.data.formats import FORMATS

    f = tmp_path / "rows.jsonl"
    f.write_text(json.dumps({"model_a": "x", "model_b": "y", "winner_ab": "A"}) + "\n")
    with pytest.raises(ValueError, match=f"^{fmt} files take no columns= mapping$"):
        FORMATS[fmt].read(f, columns={"model_a": "m"})
