"""Readers: every format on real data (../shared/data) or a faithful fixture, autodetection,
the exact wording of every error kind, skip_invalid accounting, and round trips."""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from shared_paths import SHARED

from prefkit.data import ItemIndex, PairCounts, PairwiseVotes, Rankings, aggregate
from prefkit.data.errors import InvalidInputError, InvalidRow
from prefkit.data.readers import FORMATS, ReadResult, detect_format, read_votes

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

FIX = Path(__file__).parent / "fixtures"
DATA = SHARED / "data" / "arena"
real = pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")
SKIP = "pass skip_invalid=True to skip such rows"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def problems(path: Path, **kw: object) -> list[InvalidRow]:
    with pytest.raises(InvalidInputError) as e:
        read_votes(path, **kw)  # type: ignore[arg-type]
    return e.value.problems


# -- every format on real data, exact counts --------------------------------------------
@real
def test_llmfao_crowd() -> None:
    r = read_votes(DATA / "llmfao_crowd_comparisons.csv")
    v = r.votes
    assert isinstance(v, PairwiseVotes) and r.format == "llmfao"
    assert (len(v), v.n_items, r.n_read, r.skipped) == (8931, 59, 8931, [])
    assert np.bincount(v.outcome, minlength=4).tolist() == [2911, 2549, 3471, 0]
    assert len(set(v.annotator)) == 124 and len(set(v.prompt)) == 13
    assert v.items.names == tuple(sorted(v.items.names))
    first = v.items.names[v.a[0]], v.items.names[v.b[0]], v.annotator[0], v.prompt[0]
    assert first == ("Airoboros L2 70B", "Weaver 12k", "58", "8")  # line 2 of the CSV


@real
def test_llmfao_gpt4() -> None:
    r = read_votes(DATA / "llmfao_gpt4_comparisons.csv")
    assert (r.format, len(r.votes), r.votes.n_items) == ("llmfao", 3236, 70)
    assert np.bincount(r.votes.outcome, minlength=4).tolist() == [1397, 1700, 139, 0]
    assert r.votes.annotator is None  # this file has no worker column


@real
def test_arena_hard_battles() -> None:
    r = read_votes(DATA / "arena_hard_battles.jsonl")
    v = r.votes
    assert (r.format, len(v), v.n_items, r.n_read) == ("arena_hard", 1348, 4, 1348)
    assert v.items.names == ("claude-3-5-sonnet-20240620", "claude-3-haiku-20240307",
                             "claude-3-opus-20240229", "gpt-4o")
    assert set(v.a.tolist()) == {1}  # the baseline is always model_a
    assert np.bincount(v.outcome, minlength=4).tolist() == [147, 1178, 23, 0]
    assert len(set(v.prompt)) == 100


@real
def test_football_results() -> None:
    r = read_votes(DATA / "international_football_results.csv")
    v = r.votes
    # 49,520 matches; this copy has no NA (unplayed) row, so none is invalid
    assert (r.format, len(v), r.n_read, r.n_skipped) == ("football", 49520, 49520, 0)
    assert v.n_items == 337
    assert np.bincount(v.outcome, minlength=4).tolist() == [24265, 13997, 11258, 0]
    home_a, home_b = v.features["home"]
    assert home_a.sum() == 36364 and not home_b.any()  # 13,156 matches on neutral ground
    names = v.items.names
    assert (names[v.a[0]], names[v.b[0]], v.outcome[0]) == ("Scotland", "England", 2)  # 0-0


@real
def test_counts_json() -> None:
    r = read_votes(DATA / "chatbotarena_20240814_counts.json")
    c = r.votes
    assert isinstance(c, PairCounts) and r.format == "counts_json"
    assert (len(c), c.n_items, c.n_votes) == (3460, 129, 1_670_250)
    assert c.counts[:, 2:].sum(axis=0).tolist() == [281121, 295254]
    assert np.all(c.i < c.j)
    k = np.flatnonzero((c.i == c.items.id("RWKV-4-Raven-14B")) & (c.j == c.items.id("alpaca-13b")))
    assert c.counts[k].tolist() == [[103, 94, 18, 85]]  # X[0], Y[0] of the file


@real
def test_parquet_battles_aggregate_to_the_published_counts(tmp_path: Path) -> None:
    """Expand the counts of 12 models into one row per battle, write Parquet, read it
    back with the generic and fastchat readers: aggregation gives the counts again."""
    counts = read_votes(DATA / "chatbotarena_20240814_counts.json").votes
    keep = (counts.i < 12) & (counts.j < 12)
    sub = PairCounts(counts.items, counts.i[keep], counts.j[keep], counts.counts[keep])
    rep = sub.counts.astype(int).ravel()
    pair = np.repeat(np.arange(len(sub)), 4)
    a = np.repeat(sub.i[pair], rep)
    b = np.repeat(sub.j[pair], rep)
    out = np.repeat(np.tile(np.arange(4), len(sub)), rep)
    rng = np.random.default_rng(0)
    flip = rng.random(a.size) < 0.5  # write half the battles with the sides swapped
    a, b = np.where(flip, b, a), np.where(flip, a, b)
    out = np.where(flip & (out < 2), 1 - out, out)
    names = np.array(counts.items.names, dtype=object)
    labels = np.array(["model_a", "model_b", "tie", "tie (bothbad)"], dtype=object)
    path = tmp_path / "battles.parquet"
    pq.write_table(pa.table({"model_a": names[a], "model_b": names[b], "winner": labels[out]}),
                   path, row_group_size=20_000)
    for fmt in ("auto", "fastchat"):
        r = read_votes(path, format=fmt)
        assert r.format == ("generic" if fmt == "auto" else "fastchat")
        assert len(r.votes) == a.size == int(sub.n_votes)
        agg = aggregate(r.votes)
        assert agg.items.names == tuple(sorted(set(names[sub.i]) | set(names[sub.j])))
        got = {(agg.items.names[i], agg.items.names[j]): c.tolist()
               for i, j, c in zip(agg.i, agg.j, agg.counts)}
        want = {(names[i], names[j]): c.tolist() for i, j, c in zip(sub.i, sub.j, sub.counts)}
        assert got == want


# -- formats from faithful fixtures ----------------------------------------------------
def test_fastchat_json_with_style_features() -> None:
    r = read_votes(FIX / "fastchat_battles.json")
    v = r.votes
    assert (r.format, len(v), v.n_items) == ("fastchat", 6, 4)
    assert v.outcome.tolist() == [0, 1, 2, 3, 0, 1]
    assert v.annotator.tolist()[:2] == ["arena_user_0", "arena_user_3"]
    assert v.prompt[0] == "a1f37d2e61b84f0c9a35"
    assert set(v.features) == {"length", "header", "list", "bold"}
    assert v.features["length"][0].tolist() == [512, 230, 145, 98, 640, 300]
    assert v.features["header"][0].tolist()[:2] == [3, 0]  # sum of the h1..h6 dict
    assert v.features["list"][1].tolist()[:2] == [4, 12]  # ordered + unordered
    assert v.features["bold"][1].tolist()[:2] == [2, 9]
    assert read_votes(FIX / "fastchat_battles.json", style=False).votes.features == {}


def test_fastchat_parquet_with_nested_conv_metadata(tmp_path: Path) -> None:
    rows = json.loads((FIX / "fastchat_battles.json").read_text())
    path = tmp_path / "battles.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)  # conv_metadata becomes a struct
    pv, jv = read_votes(path).votes, read_votes(FIX / "fastchat_battles.json").votes
    assert read_votes(path).format == "fastchat"
    for name in ("a", "b", "outcome", "annotator", "prompt"):
        assert getattr(pv, name).tolist() == getattr(jv, name).tolist()
    for k in jv.features:
        np.testing.assert_array_equal(pv.features[k], jv.features[k])


def test_fastchat_rows_without_style_metadata_are_invalid(tmp_path: Path) -> None:
    rows = json.loads((FIX / "fastchat_battles.json").read_text())
    del rows[2]["conv_metadata"]
    path = write(tmp_path / "b.json", json.dumps(rows, indent=1))
    probs = problems(path)
    assert {p.line for p in probs} == {len(json.dumps(rows[:2], indent=1).splitlines())}
    assert "pass style=False to read without style features" in str(probs[0])
    assert len(read_votes(path, style=False).votes) == 6


def test_arena_hard_judgments() -> None:
    path = FIX / "arena_hard_judgment.jsonl"
    (p,) = problems(path)
    assert str(p) == (f"missing verdict in field 'games[1].score' at {path} line 3; the judge "
                      f"gave no [[A>B]]-style verdict; re-judge or skip; {SKIP}")
    r = read_votes(path, skip_invalid=True)
    v = r.votes
    assert (r.format, r.n_read, len(v), r.n_skipped) == ("arena_hard", 4, 7, 1)
    assert v.items.names == ("gpt-4-0314", "gpt-4o-2024-05-13", "llama-3-70b-instruct")
    assert set(v.a.tolist()) == {0}  # side a is always the baseline
    # game 1: A = baseline; game 2: A = the model.  B>>A, A>B | A=B, B>A | A>>B | B>A, A>>B
    assert v.outcome.tolist() == [1, 1, 2, 0, 0, 1, 1]
    assert v.weight.tolist() == [3, 1, 1, 1, 3, 1, 3]
    one = read_votes(path, first_game_only=True, baseline="gpt-4-turbo", strong_weight=2)
    assert one.votes.items.names[0] == "gpt-4-turbo" and one.votes.weight.tolist() == [2, 1, 2, 1]


def test_arena_hard_v2_baselines_by_category(tmp_path: Path) -> None:
    recs = [{"uid": "u1", "category": "hard_prompt", "judge": "gpt-4.1", "model": "m",
             "games": [{"score": "A<<B"}, {"score": "B<A"}]},
            {"uid": "u2", "category": "creative_writing", "judge": "gpt-4.1", "model": "m",
             "games": [{"score": "B=A"}, {"score": "A<B"}]}]
    path = write(tmp_path / "m.jsonl", "".join(json.dumps(r) + "\n" for r in recs))
    v = read_votes(path).votes
    names = [v.items.names[i] for i in v.a]
    assert names == ["o3-mini-2025-01-31"] * 2 + ["gemini-2.0-flash-001"] * 2
    # A<<B: the model (B) wins strongly; B<A in game 2: A = the model wins; A<B: baseline wins
    assert v.outcome.tolist() == [1, 1, 2, 0] and v.weight.tolist() == [3, 1, 1, 1]
    assert v.prompt.tolist() == ["u1", "u1", "u2", "u2"]
    mapped = read_votes(path, baseline={"hard_prompt": "x", "creative_writing": "y"}).votes
    assert mapped.items.names == ("m", "x", "y")


def test_mtbench_pairs_follow_fastchat() -> None:
    path = FIX / "mtbench_pair.jsonl"
    (p,) = problems(path)
    assert str(p) == (f"the judge returned 'error' in field 'g1_winner' at {path} line 6; "
                      f"re-run the judgment for this question; {SKIP}")
    r = read_votes(path, skip_invalid=True)
    v = r.votes
    assert r.format == "mtbench" and (r.n_read, len(v)) == (6, 5)
    assert v.outcome.tolist() == [0, 2, 0, 2, 1]  # agree -> win; disagree or g1 tie -> tie
    assert v.annotator.tolist()[:2] == ["gpt-4/pair-v2", "gpt-4/pair-v2-multi-turn"]


def test_alpaca_eval_soft_preferences() -> None:
    path = FIX / "alpaca_eval_annotations.json"
    (p,) = problems(path)
    assert (p.line, p.field, p.kind) == (77, "preference", "bad_preference")  # record start
    v = read_votes(path, skip_invalid=True).votes
    np.testing.assert_allclose(v.soft, [2 - 1.8807, 2 - 1.0012, 0.5, 2 - 1.2311, 0.5])
    assert v.outcome.tolist() == [1, 0, 2, 0, 2]  # 0 is AlpacaEval's legacy draw
    assert v.items.names[v.a[0]] == "gpt4_1106_preview"


def test_rankings() -> None:
    r = read_votes(FIX / "rankings.jsonl")
    rk = r.votes
    assert isinstance(rk, Rankings) and r.format == "rankings" and len(rk) == 4
    assert rk.items.names == ("model_w", "model_x", "model_y", "model_z")
    assert rk.levels[: rk.offsets[1]].tolist() == [0, 1, 1, 2]  # inner list = tie
    assert rk.weight.tolist() == [1, 2, 1, 1] and rk.unordered_tail.tolist() == [0, 0, 1, 0]
    assert rk.annotator.tolist() == ["u1", "", "u2", ""]
    pw = rk.to_pairwise()
    assert len(pw) == 6 + 1 + 3 + 3  # K=4, K=2, top-1 of 4 (3 pairs), K=3


def test_rankings_errors(tmp_path: Path) -> None:
    lines = ['{"ranking": ["a", "b"]}', '{"choices": ["a", "b"], "winner": "c"}',
             '{"ranking": ["a", ["b", "a"]]}', '{"ranking": ["a"]}',
             '{"ranking": ["a", "b"], "weight": -1}', '{"order": ["a", "b"]}']
    path = write(tmp_path / "r.jsonl", "\n".join(lines))
    probs = problems(path)
    assert [(p.line, p.kind) for p in probs] == [
        (2, "bad_ranking"), (3, "self_comparison"), (4, "bad_ranking"), (5, "bad_weight"),
        (6, "bad_ranking")]
    assert str(probs[0]) == (f"winner 'c' is not one of the choices in field 'winner' at {path} "
                             f"line 2; name the winner exactly as in choices; {SKIP}")


def test_football_unplayed_fixtures_are_reported_with_their_lines() -> None:
    path = FIX / "football_fixtures.csv"
    probs = problems(path)
    assert [(p.line, p.field) for p in probs] == [
        (12, "home_score"), (12, "away_score"), (13, "home_score"), (13, "away_score")]
    assert str(probs[0]) == (
        f"missing score in field 'home_score' at {path} line 12; scores must be numbers; a match "
        f"without a score (not played yet?) is not a vote; {SKIP}")
    r = read_votes(path, skip_invalid=True)
    assert (len(r.votes), r.n_read, r.n_skipped, len(r.skipped)) == (10, 12, 2, 4)


# -- autodetection ---------------------------------------------------------------------
@pytest.mark.parametrize("name,fmt", [
    ("llmfao_crowd_head.csv", "llmfao"), ("arena_hard_battles_head.jsonl", "arena_hard"),
    ("arena_hard_judgment.jsonl", "arena_hard"), ("football_fixtures.csv", "football"),
    ("fastchat_battles.json", "fastchat"), ("mtbench_pair.jsonl", "mtbench"),
    ("alpaca_eval_annotations.json", "alpaca_eval"), ("rankings.jsonl", "rankings"),
])
def test_detect_fixture_formats(name: str, fmt: str) -> None:
    assert detect_format(FIX / name) == fmt


def test_detect_generic_and_counts(tmp_path: Path) -> None:
    assert detect_format(write(tmp_path / "g.csv", "item_a,item_b,winner\nx,y,a\n")) == "generic"
    counts = write(tmp_path / "c.json", json.dumps({"models": ["x", "y"], "X": [[0, 1]],
                                                    "Y": [[1, 2, 0, 0]]}))
    assert detect_format(counts) == "counts_json"
    votes = {f.name for f in FORMATS.values() if f.family == "votes"}
    assert votes == {"generic", "fastchat", "arena_hard", "mtbench", "alpaca_eval", "llmfao",
                     "counts_json", "football", "rankings", "judge_votes"}


def test_unknown_format_lists_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path / "u.csv", "foo,bar\n1,2\n")
    with pytest.raises(InvalidInputError) as e:
        detect_format(path)
    msg = str(e.value)
    assert (f"{path}: cannot tell the format of this CSV file from its header "
            "(columns: bar, foo)") in msg
    assert all(f"\n  {f.name}: " in msg for f in FORMATS.values() if f.family == "votes")
    assert "\n  trl: " not in msg  # only the formats read_votes reads
    assert "pass format='<name>' (CLI: --format <name>)" in msg


# -- every error kind, exact wording -----------------------------------------------------
def _battles(n: int, bad: dict[int, dict[str, object]]) -> str:
    rows = [{"model_a": "model_a_x", "model_b": "model_b_y", "winner": "model_a", "judge": "u"}
            for _ in range(n)]
    for k, patch in bad.items():
        rows[k - 1].update(patch)
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_unknown_outcome_label(tmp_path: Path) -> None:
    path = write(tmp_path / "votes.jsonl", _battles(12, {12: {"winner": "model_c"}}))
    (p,) = problems(path)
    assert str(p) == (f"unknown outcome label 'model_c' in field 'winner' at {path} line 12; "
                      f"expected one of model_a, model_b, tie, tie (bothbad), tie (inconsistent); "
                      f"{SKIP}")
    assert (p.file, p.line, p.field, p.value, p.kind) == (str(path), 12, "winner", "model_c",
                                                          "unknown_label")


def test_malformed_json_line(tmp_path: Path) -> None:
    path = write(tmp_path / "votes.jsonl", _battles(3, {}) + '{"model_a": "x",\n' + _battles(1, {}))
    (p,) = problems(path)
    assert str(p) == (f"malformed JSON (Expecting property name enclosed in double quotes, "
                      f"column 17) at {path} line 4; fix the line so it holds one JSON object, "
                      f"or delete it; {SKIP}")
    assert len(read_votes(path, skip_invalid=True).votes) == 4


def test_malformed_json_list_is_fatal(tmp_path: Path) -> None:
    path = write(tmp_path / "v.json", '[\n {"model_a": "x", "model_b": "y", "winner": "tie"},\n'
                 ' {"model_a": "x" "model_b": "y"}\n]')
    with pytest.raises(InvalidInputError) as e:
        read_votes(path, format="generic", skip_invalid=True)
    (p,) = e.value.problems
    assert (p.line, p.kind, p.skippable) == (3, "malformed_json", False)


def test_self_comparison(tmp_path: Path) -> None:
    path = write(tmp_path / "v.csv", "model_a,model_b,winner\nx,y,a\ngpt-4,gpt-4,b\n")
    (p,) = problems(path)
    assert str(p) == (f"item 'gpt-4' is compared with itself (same name in 'model_a' and "
                      f"'model_b') in field 'model_b' at {path} line 3; fix one of the two names "
                      f"or drop the row; {SKIP}")


def test_missing_column_lists_columns_and_override(tmp_path: Path) -> None:
    path = write(tmp_path / "v.csv", "item_a,item_b,result\nx,y,a\n")
    with pytest.raises(InvalidInputError) as e:
        read_votes(path, format="generic", skip_invalid=True)  # not skippable
    (p,) = e.value.problems
    assert str(p) == (f"{path}: missing column 'winner' (needed for the outcome); columns "
                      "present: item_a, item_b, result; map yours with columns={'winner': "
                      "'<name>'} (CLI: --column winner=<name>)")
    r = read_votes(path, columns={"winner": "result"})
    assert (r.format, r.votes.outcome.tolist()) == ("generic", [0])
    with pytest.raises(ValueError, match="unknown key"):
        read_votes(path, columns={"loser": "x"})


def test_missing_side_column_names_the_alternatives(tmp_path: Path) -> None:
    path = write(tmp_path / "v.csv", "first,item_b,winner\nx,y,a\n")
    (p,) = problems(path, format="generic")
    assert p.reason == "missing column 'item_a' (or 'model_a'; needed for side a)"


@pytest.mark.parametrize("weight,reason", [
    ("nan", "missing or NaN weight"), ("-2", "negative weight -2.0"),
    ("inf", "infinite weight inf"), ("abc", "weight 'abc' is not a number"),
    ("1e300", "weight 1e+300 is too large")])
def test_bad_weights(tmp_path: Path, weight: str, reason: str) -> None:
    path = write(tmp_path / "v.csv", f"item_a,item_b,winner,weight\nx,y,a,1\nx,y,b,{weight}\n")
    (p,) = problems(path)
    assert str(p) == (f"{reason} in field 'weight' at {path} line 3; weights must be finite "
                      f"numbers >= 0 and at most 1e+09 (1 = one vote); {SKIP}")


@pytest.mark.parametrize("name,text", [
    ("h.csv", "model_a,model_b,winner\n"), ("e.jsonl", ""), ("e.json", "[]"), ("b.jsonl", "\n\n")])
def test_empty_input(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(InvalidInputError) as e:
        read_votes(path, skip_invalid=True)
    (p,) = e.value.problems
    assert p.kind == "empty_input" and str(p).startswith(f"{path}: no rows (the input is empty)")


def test_empty_parquet(tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    cols = ("model_a", "model_b", "winner")
    pq.write_table(pa.table({c: pa.array([], pa.string()) for c in cols}), path)
    (p,) = problems(path)
    assert p.kind == "empty_input"


def test_all_problems_in_one_pass_and_the_message_cut(tmp_path: Path) -> None:
    bad = {k: {"winner": f"w{k}"} for k in range(2, 27)} | {30: {"model_b": "model_a_x"}}
    path = write(tmp_path / "votes.jsonl", _battles(30, bad))
    with pytest.raises(InvalidInputError) as e:
        read_votes(path)
    assert [p.line for p in e.value.problems] == list(range(2, 27)) + [30]
    msg = str(e.value)
    assert msg.startswith(f"26 problems in {path}; 26 of 30 records are invalid, nothing was "
                          "read (25 unknown_label, 1 self_comparison):")
    assert msg.count("\n  ") == 21 and msg.endswith("  ... and 6 more")


def test_skip_invalid_reports_every_skipped_row(tmp_path: Path) -> None:
    path = write(tmp_path / "v.csv", "model_a,model_b,winner,weight\nx,y,a,1\nx,x,b,1\n"
                 "y,z,model_c,1\nx,z,a,-2\nx,z,a,1\n,z,a,1\n")
    r = read_votes(path, skip_invalid=True)
    assert isinstance(r, ReadResult)
    assert (len(r.votes), r.n_read, r.n_skipped) == (2, 6, 4)
    assert [(p.line, p.kind) for p in r.skipped] == [
        (3, "self_comparison"), (4, "unknown_label"), (5, "bad_weight"), (7, "missing_value")]
    assert r.votes.items.names == ("x", "y", "z")
    assert r.summary() == "read 2 votes on 3 items (generic); skipped 4 invalid rows"
    with pytest.raises(InvalidInputError, match="the record is invalid"):
        read_votes(write(tmp_path / "w.csv", "model_a,model_b,winner\nx,x,a\n"), skip_invalid=True)


def test_skipped_names_leave_the_index(tmp_path: Path) -> None:
    path = write(tmp_path / "v.csv", "model_a,model_b,winner\nb,c,a\na,d,oops\n")
    v = read_votes(path, skip_invalid=True).votes
    assert v.items.names == ("b", "c") and v.a.tolist() == [0] and v.b.tolist() == [1]


def test_given_item_index(tmp_path: Path) -> None:
    path = write(tmp_path / "v.csv", "model_a,model_b,winner\nx,y,a\nx,gpt4,b\n")
    items = ItemIndex(("gpt-4", "x", "y", "z"))
    (p,) = problems(path, items=items)
    assert p.reason == "unknown item 'gpt4'" and "did you mean 'gpt-4'?" in p.fix
    v = read_votes(path, items=items, skip_invalid=True).votes
    assert v.items is items and (v.a.tolist(), v.b.tolist()) == ([1], [2])


def test_csv_lines_count_quoted_newlines(tmp_path: Path) -> None:
    path = write(tmp_path / "v.csv", 'prompt,model_a,model_b,winner\n"two\nlines",x,y,a\np,x,y,?\n')
    (p,) = problems(path)
    assert p.line == 4


def test_ragged_csv_rows_are_reported_by_line(tmp_path: Path) -> None:
    path = write(tmp_path / "v.csv", "model_a,model_b,winner\nx,y,a\nx,y,b,extra\ny,z,tie\n")
    (p,) = problems(path)
    assert (p.line, p.kind) == (3, "ragged_row")
    assert len(read_votes(path, skip_invalid=True).votes) == 2


def test_csv_without_pyarrow_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    want = read_votes(FIX / "llmfao_crowd_head.csv").votes
    monkeypatch.setitem(sys.modules, "pyarrow.csv", None)  # `import pyarrow.csv` fails
    got = read_votes(FIX / "llmfao_crowd_head.csv").votes
    for name in ("a", "b", "outcome", "annotator", "prompt"):
        assert getattr(got, name).tolist() == getattr(want, name).tolist()
    probs = problems(FIX / "football_fixtures.csv")
    assert [p.line for p in probs] == [12, 12, 13, 13]


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "v.csv"
    path.write_bytes("model_a,model_b,winner\nJosé,x,a\n".encode("latin-1"))
    (p,) = problems(path)
    assert str(p) == (f"{path}: not UTF-8 text at line 2 (invalid continuation byte: byte 0xe9); "
                      "re-save the file as UTF-8, e.g. for a Latin-1 file: iconv -f latin1 -t "
                      "utf-8 v.csv > utf8_v.csv")


def test_gzip_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl.gz"
    with open(FIX / "arena_hard_battles_head.jsonl", "rb") as f, gzip.open(path, "wb") as g:
        shutil.copyfileobj(f, g)
    r = read_votes(path)
    assert (r.format, len(r.votes)) == ("arena_hard", 20)


# -- generic: labels, codes and round trips ---------------------------------------------
def test_generic_labels_and_codes(tmp_path: Path) -> None:
    rows = "\n".join(f"x,y,{w}" for w in ["A", "model_b", "tie", "tie (bothbad)", "both_bad",
                                          "0", "1", "2", "3", "left"])
    path = write(tmp_path / "v.csv", "left,right,winner\n" + rows + "\n")
    assert detect_format(path) == "llmfao"  # so ask for generic
    v = read_votes(path, format="generic", columns={"a": "left", "b": "right"}).votes
    assert v.outcome.tolist() == [0, 1, 2, 3, 3, 0, 1, 2, 3, 0]
    path = tmp_path / "codes.parquet"
    pq.write_table(pa.table({"item_a": ["x", "y"], "item_b": ["y", "z"], "winner": [1, 2]}), path)
    assert read_votes(path).votes.outcome.tolist() == [1, 2]


def _random_votes(n: int, seed: int = 0) -> PairwiseVotes:
    rng = np.random.default_rng(seed)
    names = [f"model-{k:02d}" for k in range(9)]
    a = rng.integers(0, 9, n)
    b = (a + rng.integers(1, 9, n)) % 9
    return PairwiseVotes(
        ItemIndex(tuple(names)), a, b, rng.integers(0, 4, n), rng.uniform(0.5, 2, n).round(3),
        np.array([f"u{k}" for k in rng.integers(0, 5, n)], dtype=object),
        np.array([f"q{k}" for k in rng.integers(0, 7, n)], dtype=object),
        {"length": (rng.integers(1, 900, n).astype(float), rng.integers(1, 900, n).astype(float))},
    )


@pytest.mark.parametrize("ext", ["csv", "jsonl", "parquet"])
def test_generic_round_trip(tmp_path: Path, ext: str) -> None:
    v = _random_votes(300)
    names = np.array(v.items.names, dtype=object)
    labels = np.array(["a", "b", "tie", "both_bad"], dtype=object)
    cols = {"item_a": names[v.a], "item_b": names[v.b], "winner": labels[v.outcome],
            "weight": v.weight, "annotator": v.annotator, "prompt": v.prompt,
            "length_a": v.features["length"][0], "length_b": v.features["length"][1]}
    table = pa.table({k: list(x) for k, x in cols.items()})
    path = tmp_path / f"votes.{ext}"
    if ext == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, path)
    elif ext == "parquet":
        pq.write_table(table, path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in table.to_pylist()))
    r = read_votes(path)
    assert (r.format, r.n_read, r.skipped) == ("generic", 300, [])
    got = r.votes
    assert got.items == v.items
    for name in ("a", "b", "outcome", "weight", "annotator", "prompt"):
        assert getattr(got, name).tolist() == getattr(v, name).tolist(), name
    np.testing.assert_array_equal(got.features["length"], v.features["length"])


def test_generic_explicit_features_must_exist(tmp_path: Path) -> None:
    path = write(tmp_path / "v.csv", "item_a,item_b,winner,len_a,len_b\nx,y,a,1,2\n")
    assert read_votes(path).votes.features["len"][1].tolist() == [2]
    assert read_votes(path, features=[]).votes.features == {}
    probs = problems(path, features=["style"])
    assert [(p.kind, p.field) for p in probs] == [("missing_column", "style_a"),
                                                  ("missing_column", "style_b")]
    assert str(probs[0]) == (f"{path}: missing column 'style_a' (needed for feature 'style'); "
                             "columns present: item_a, item_b, winner, len_a, len_b; a feature "
                             "<name> needs columns <name>_a and <name>_b (features=[...])")
