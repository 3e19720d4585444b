"""The readers on a new user's bad input (issue 9; the campaign's own files under
../shared/campaigns/new_user_bad_input/inputs): every one is a clear error naming the file,
line, field and fix, or is read correctly -- never silence, a wrong result or a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shared_paths import SHARED

from prefkit.data import (
    FORMATS,
    InvalidInputError,
    describe_formats,
    read_alignment_data,
    read_preferences,
    read_responses,
    read_votes,
)
from prefkit.data.errors import CLI_SKIP_HINT
from prefkit.data.formats import FAMILIES

INPUTS = (SHARED / "campaigns" / "new_user_bad_input"
          / "inputs")
campaign = pytest.mark.skipif(not INPUTS.is_dir(), reason="needs ../shared/campaigns")


def refused(read, path, **kw):  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInputError) as e:
        read(path, **kw)
    return e.value


# -- issue 9.3: duplicate column names and JSON keys are refused, named ----------------------
@campaign
@pytest.mark.parametrize("read,name,col,where", [
    (read_votes, "dup_cols.csv", "model_a", "columns 1 and 2"),
    (read_votes, "v_dup2.csv", "winner", "columns 3 and 4"),
    (read_preferences, "p_dupcols.csv", "chosen", "columns 2 and 3"),
    (read_preferences, "p_dup2.csv", "chosen", "columns 2 and 4"),
    (read_alignment_data, "p_dupcols.csv", "chosen", "columns 2 and 3"),
])
def test_duplicate_columns_are_refused_naming_them(read, name, col, where) -> None:  # type: ignore[no-untyped-def]
    # before: the second `chosen` won in reward eval (accuracy 0.500 instead of 0.975), the
    # first `winner` won in rank, and model_a,model_a was "missing column 'model_b'"
    (p,) = refused(read, INPUTS / name).problems
    assert (p.kind, p.line, p.skippable) == ("duplicate_column", 1, False)
    assert p.reason == f"duplicate column name {col!r} ({col!r} is {where})"
    assert "rename or drop the extra column" in p.fix


def test_duplicate_parquet_columns_are_refused(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    t = pa.Table.from_arrays([pa.array(["x", "y"]), pa.array(["y", "z"]), pa.array(["a", "b"]),
                              pa.array(["b", "a"])], names=["model_a", "model_b", "winner",
                                                            "winner"])
    pq.write_table(t, tmp_path / "v.parquet")
    for aggregate in (False, True):  # the streamed path too
        (p,) = refused(read_votes, tmp_path / "v.parquet", aggregate=aggregate).problems
        assert p.kind == "duplicate_column" and "'winner' is columns 3 and 4" in p.reason


@campaign
def test_duplicate_json_keys_are_refused_per_record() -> None:
    # before: `rank dup_keys.jsonl` kept the last "winner" of each object silently
    err = refused(read_votes, INPUTS / "dup_keys.jsonl")
    assert {p.kind for p in err.problems} == {"duplicate_key"}
    assert err.problems[0].line == 1 and err.problems[0].field == "winner"
    assert "duplicate key 'winner' in one JSON object" in err.problems[0].reason


def test_duplicate_keys_in_a_json_list_and_text_pairs(tmp_path: Path) -> None:
    p = tmp_path / "d.json"
    p.write_text('[{"prompt": "q", "chosen": "a", "rejected": "b"},\n'
                 ' {"prompt": "q", "chosen": "a", "chosen": "c", "rejected": "b"}]')
    (prob,) = refused(read_preferences, p).problems
    assert (prob.line, prob.kind, prob.field) == (2, "duplicate_key", "chosen")
    assert read_preferences(p, skip_invalid=True).data.chosen == ["a"]


# -- issue 9.9: folders, latin-1 -----------------------------------------------------------
@campaign
@pytest.mark.parametrize("read", [read_votes, read_preferences, read_responses,
                                  read_alignment_data])
def test_a_folder_is_a_clear_error(read) -> None:  # type: ignore[no-untyped-def]
    # before: FileNotFoundError "Directory ../data is neither a `Dataset` directory nor ..."
    (p,) = refused(read, INPUTS).problems
    assert (p.kind, p.reason) == ("is_folder", "is a folder, not a data file")
    assert "give a JSONL, JSON, CSV or Parquet file" in p.fix and "data files in it: all_ties.csv," in p.fix


@campaign
@pytest.mark.parametrize("read,name", [
    (read_votes, "latin1.csv"), (read_preferences, "p_latin1.csv"),
    (read_alignment_data, "p_latin1.csv"), (read_responses, "s_latin1.csv"),
])
def test_latin1_says_the_line_and_the_fix_everywhere(read, name) -> None:  # type: ignore[no-untyped-def]
    # before: `reward score` gave a UnicodeDecodeError traceback; reward train/eval/finetune
    # and align gave the codec's message without line or fix
    (p,) = refused(read, INPUTS / name).problems
    assert p.kind == "not_utf8" and p.reason.startswith("not UTF-8 text at line 2 (")
    assert f"iconv -f latin1 -t utf-8 {name} > utf8_{name}" in p.fix


# -- issue 9.12: an empty answer is data ---------------------------------------------------
@campaign
def test_empty_answers_are_kept_and_counted() -> None:
    # before: `reward train` and `align` refused the whole file unless --skip-invalid
    r = read_preferences(INPUTS / "p_emptyfields.jsonl")
    assert (len(r.data), r.n_empty, r.skipped) == (40, 2, [])
    assert r.data.chosen[4] == "" and r.data.rejected[6] == "   "
    assert r.summary() == "read 40 pairs (trl); 2 rows with an empty response (kept)"
    d = read_alignment_data(INPUTS / "p_emptyfields.jsonl")
    assert (len(d), d.n_empty) == (40, 2) and "2 rows with an empty response (kept)" in d.summary()


def test_empty_answers_in_every_text_kind_but_identical_ones_stay_invalid(tmp_path: Path) -> None:
    def jsonl(name: str, rows: list[dict]) -> Path:
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        return tmp_path / name

    u = read_alignment_data(jsonl("u.jsonl", [{"prompt": "q", "completion": "", "label": True},
                                              {"prompt": "q", "completion": "a", "label": 0}]))
    assert (u.kind, u.n_empty, u.responses) == ("unpaired", 1, [[""], ["a"]])
    lw = read_alignment_data(jsonl("l.jsonl", [{"prompt": "q", "completions": ["a", ""],
                                                "ranks": [2, 1]}]))
    assert (lw.responses, lw.n_empty) == ([["", "a"]], 1)
    both = jsonl("s.jsonl", [{"prompt": "q", "chosen": "", "rejected": ""}])
    (p,) = refused(read_preferences, both).problems
    assert p.kind == "identical_responses"  # truly malformed: still refused
    missing = jsonl("m.jsonl", [{"prompt": "q", "chosen": None, "rejected": "b"}])
    assert refused(read_preferences, missing).problems[0].kind == "missing_value"


# -- responses to score (was cli/reward.py's own reader) ------------------------------------
@campaign
def test_responses_to_score() -> None:
    r = read_responses(INPUTS / "s_empty_resp.jsonl", prompt="default")
    assert r.format == "responses" and r.n_empty == 1
    assert r.data.prompt == ["p", "default", "p"] and r.data.response == ["", "ok", "fine"]
    (p,) = refused(read_responses, INPUTS / "s_empty.txt").problems
    assert p.kind == "empty_input"
    (noresp,) = refused(read_responses, INPUTS / "s_noresp.jsonl").problems
    assert noresp.reason == ("missing column 'response' (or 'text'; needed for the response (or "
                             "'text': prompt and response already rendered as one text))")
    assert noresp.fix.startswith("columns present: prompt, answer;")


# -- issue 9.10: a huge value never floods the message --------------------------------------
def test_a_one_megabyte_name_is_quoted_by_its_start_and_length(tmp_path: Path) -> None:
    name = "L" * 1_000_000
    p = tmp_path / "long.csv"
    p.write_text(f"model_a,model_b,winner\n{name},{name},a\nx,y,banana_{name}\n")
    err = refused(read_votes, p)
    assert len(str(err)) < 2_000 and len(err.for_cli()) < 2_000
    assert "LLL…' (1,000,000 characters) is compared with itself" in str(err)
    assert "unknown outcome label 'banana_LLL" in str(err)
    assert "LLL…' (1,000,007 characters) in field 'winner'" in str(err)
    assert CLI_SKIP_HINT in err.for_cli()
    q = tmp_path / "long.jsonl"
    q.write_text(json.dumps({"prompt": "q", "chosen": name, "rejected": name}) + "\n")
    assert len(str(refused(read_preferences, q))) < 2_000


# -- one registry ------------------------------------------------------------------------
def test_one_registry_lists_every_kind() -> None:
    families = {f.family for f in FORMATS.values()}
    assert families == set(FAMILIES) == {"votes", "text", "align", "responses", "verdicts",
                                         "annotations", "steps"}
    assert {"generic", "rankings", "trl", "hh_rlhf", "rewardbench", "ratings", "unpaired",
            "listwise", "step_dpo", "responses"} <= set(FORMATS)
    text = describe_formats()
    for f in FORMATS.values():
        assert f"\n  {f.name}: " in text
    assert text.startswith("votes, counts and rankings: prefkit rank")
