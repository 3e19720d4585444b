"""Text preference readers: every format on real data (../shared/data/reward) or a faithful
fixture, every container, autodetection, the wording of every error kind, skip_invalid
accounting, the records' rendering, and the fixed train/test split."""

from __future__ import annotations

import csv
import gzip
import json
import random
from pathlib import Path

import numpy as np
import pytest
from shared_paths import SHARED

from prefkit.data.errors import InvalidInputError, InvalidRow
from prefkit.data.formats import formats
from prefkit.data.text import (
    HH_HARMLESS_SPLIT_SEED,
    BestOfN,
    TextPairs,
    TextRatings,
    hh_harmless_split,
    render_chat,
    split_train_test,
)
from prefkit.data.text_readers import (
    detect_text_format,
    llmbar_category,
    read_preferences,
)

FIX = Path(__file__).parent / "fixtures" / "reward"
DATA = SHARED / "data" / "reward"
HH = DATA / "hh_rlhf_harmless_base_test.jsonl.gz"
real = pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")
SKIP = "pass skip_invalid=True to skip such rows"


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def problems(source: object, **kw: object) -> list[InvalidRow]:
    with pytest.raises(InvalidInputError) as e:
        read_preferences(source, **kw)
    return e.value.problems


# -- real data --------------------------------------------------------------------------
@real
def test_hh_harmless_reads_every_pair_and_reports_the_odd_ones() -> None:
    r = read_preferences(HH)
    p = r.data
    assert isinstance(p, TextPairs) and r.format == "hh_rlhf"
    assert (len(p), r.n_read, r.skipped) == (2312, 2312, [])
    kinds = {k: [w.line for w in r.warnings if w.kind == k] for k in
             ("context_mismatch", "empty_response")}
    # 5 pairs whose transcripts differ before the last assistant turn: 2,307 share it properly
    assert kinds["context_mismatch"] == [1255, 1689, 1951, 1953, 2037]
    assert kinds["empty_response"] == [87, 517, 926, 1104]  # the preferred reply is empty
    assert len(r.warnings) == 9
    assert str(r.warnings[0]) == (
        f"{HH} line 87: empty chosen reply (the transcript ends with 'Assistant:'); kept as an "
        "empty response; strict=True makes such rows invalid")
    assert all(q.endswith("\n\nAssistant:") for q in p.prompt)
    assert p.source_line.tolist() == list(range(1, 2313))
    # line 1, byte for byte: prompt + " " + chosen is the original transcript
    with gzip.open(HH, "rt") as f:
        first = json.loads(f.readline())
    assert p.prompt[0] + " " + p.chosen[0] == first["chosen"]
    assert p.prompt[0] + " " + p.rejected[0] == first["rejected"]
    assert p.messages_prompt[0][:2] == [
        {"role": "user", "content": "what are some pranks with a pen i can do?"},
        {"role": "assistant", "content": "Are you looking for practical joke ideas?"}]
    assert len(p.messages_prompt[0]) == 5 and p.messages_prompt[0][-1]["role"] == "user"
    text = p.texts("chosen")[0]
    assert text.startswith("User: what are some pranks with a pen i can do?\nAssistant: Are")
    assert text.endswith("\nAssistant: " + p.chosen[0])
    # a mismatched row is split at the last shared assistant turn (character 142)
    k = 1254
    assert p.prompt[k].endswith("Human: Isn't that drag kings?\n\nAssistant:")
    assert p.chosen[k].startswith("No. Men who impersonate")
    assert p.rejected[k].startswith("A drag king is the opposite")


@real
def test_hh_strict_turns_the_warnings_into_invalid_rows() -> None:
    probs = problems(HH, strict=True)
    assert [(q.line, q.kind) for q in probs][:2] == [(87, "empty_response"),
                                                     (517, "empty_response")]
    assert len(probs) == 9
    r = read_preferences(HH, strict=True, skip_invalid=True)
    assert (len(r.data), r.n_skipped, r.warnings) == (2303, 9, [])


@real
def test_llmbar_natural_and_its_labels() -> None:
    r = read_preferences(DATA / "llmbar" / "llmbar_natural.json")
    p = r.data
    assert r.format == "llmbar" and len(p) == 100 and set(p.category) == {"Natural"}
    raw = json.loads((DATA / "llmbar" / "llmbar_natural.json").read_text())
    labels = [row["label"] for row in raw]
    assert (labels.count(1), labels.count(2)) == (42, 58)
    for row, ch, rj, q in zip(raw, p.chosen, p.rejected, p.prompt):
        better = row["output_1"] if row["label"] == 1 else row["output_2"]
        worse = row["output_2"] if row["label"] == 1 else row["output_1"]
        assert (q, ch, rj) == (row["input"], better, worse)
    # a pretty-printed JSON list: each record's line is where its "{" is
    assert p.source_line[0] == 2 and np.all(np.diff(p.source_line) > 0)


@real
def test_every_llmbar_file_and_its_category() -> None:
    sizes = {"llmbar_adversarial_gptinst.json": (92, "Adversarial/GPTInst"),
             "llmbar_adversarial_gptout.json": (47, "Adversarial/GPTOut"),
             "llmbar_adversarial_manual.json": (46, "Adversarial/Manual"),
             "llmbar_adversarial_neighbor.json": (134, "Adversarial/Neighbor"),
             "processed_mt-bench.json": (200, "MT-Bench"),
             "processed_faireval.json": (66, "FairEval")}
    for name, (n, cat) in sizes.items():
        p = read_preferences(DATA / "llmbar" / name).data
        assert (len(p), set(p.category)) == (n, {cat}), name
    assert llmbar_category("Dataset/LLMBar/Adversarial/GPTInst/dataset.json") == \
        "Adversarial/GPTInst"
    assert llmbar_category("x/Natural/dataset.json") == "Natural"
    p = read_preferences(DATA / "llmbar" / "llmbar_natural.json", category="mine").data
    assert set(p.category) == {"mine"}


# -- fixtures in each upstream layout ---------------------------------------------------
def test_trl_standard_with_margin() -> None:
    r = read_preferences(FIX / "trl_standard.jsonl")
    p = r.data
    assert r.format == "trl" and p.margin.tolist() == [2.0, 0.5, 1.0]
    assert p.texts("chosen") == ["The sky is\n\n blue.", "The sun is\n\n in the sky.",
                                 "Name a prime number.\n\n7"]
    assert p.messages_prompt is None and p.category is None


def test_trl_implicit_prompt_keeps_the_texts_whole() -> None:
    p = read_preferences(FIX / "trl_implicit.jsonl").data
    assert p.prompt == ["", ""]
    assert p.texts("rejected") == ["The sky is green.", "The sun is in the sea."]


def test_trl_conversational() -> None:
    p = read_preferences(FIX / "trl_conversational.jsonl").data
    assert p.chosen == ["It is blue.", "4"] and p.rejected == ["It is green.", "22"]
    assert p.messages_prompt[1][0] == {"role": "system", "content": "Answer briefly."}
    assert p.prompt[0] == "User: What color is the sky?"
    assert p.texts("rejected")[1] == ("System: Answer briefly.\nUser: Hi\nAssistant: Hello! How "
                                      "can I help?\nUser: What is 2+2?\nAssistant: 22")


def test_trl_conversational_implicit_prompt_is_the_shared_turns() -> None:
    p = read_preferences(FIX / "trl_conversational_implicit.jsonl").data
    assert p.messages_prompt == [[{"role": "user", "content": "What color is the sky?"}]]
    assert (p.chosen, p.rejected) == (["It is blue."], ["It is green."])
    assert p.texts("chosen") == ["User: What color is the sky?\nAssistant: It is blue."]


def test_rewardbench1_layout() -> None:
    r = read_preferences(FIX / "rewardbench1.jsonl")
    p = r.data
    assert r.format == "rewardbench" and isinstance(p, TextPairs) and len(p) == 10
    assert p.category.tolist()[:3] == ["alpacaeval-easy", "alpacaeval-easy", "alpacaeval-length"]
    assert p.id.tolist()[:2] == ["30", "31"] and p.chosen[2] == "Canberra."


def test_rewardbench2_layout_and_ties() -> None:
    r = read_preferences(FIX / "rewardbench2.jsonl")
    b = r.data
    assert r.format == "rewardbench" and isinstance(b, BestOfN) and len(b) == 9
    assert b.num_correct.tolist() == [1, 1, 1, 1, 1, 1, 3, 1, 3]
    assert b.id.tolist()[5:] == ["ref:1", "tied:1", "ref:2", "tied:2"]
    assert b.responses(6) == ["Red", "Blue", "Yellow", "Purple", "Green", "Orange"]
    texts, offsets = b.texts()
    assert offsets.tolist() == [0, 4, 8, 12, 16, 20, 24, 30, 33, 38]
    assert texts[0] == "Who wrote Pride and Prejudice?\n\nJane Austen wrote it (1813)."


def test_ratings_helpsteer() -> None:
    r = read_preferences(FIX / "helpsteer_ratings.jsonl")
    d = r.data
    assert r.format == "ratings" and isinstance(d, TextRatings)
    assert d.attributes == ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
    assert d.ratings["helpfulness"].tolist() == [4.0, 1.0, 3.0]
    only = read_preferences(FIX / "helpsteer_ratings.jsonl", attributes=["verbosity"]).data
    assert only.attributes == ("verbosity",)


# -- containers: the same rows however stored -------------------------------------------
ROWS = [{"prompt": "The sky is", "chosen": " blue.", "rejected": " green.", "margin": 2.0},
        {"prompt": "2+2?", "chosen": "4", "rejected": "5", "margin": 0.5}]


def _same(p: TextPairs) -> None:
    assert p.prompt == ["The sky is", "2+2?"] and p.chosen == [" blue.", "4"]
    assert p.rejected == [" green.", "5"] and p.margin.tolist() == [2.0, 0.5]


def test_every_container_gives_the_same_pairs(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    jsonl(tmp_path / "a.jsonl", ROWS)
    (tmp_path / "b.json").write_text(json.dumps(ROWS, indent=2))
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in ROWS))
    with open(tmp_path / "d.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(ROWS[0]))
        w.writeheader()
        w.writerows(ROWS)
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "e.parquet")
    for name in ("a.jsonl", "b.json", "c.jsonl.gz", "d.csv", "e.parquet"):
        r = read_preferences(tmp_path / name)
        assert r.format == "trl", name
        _same(r.data)


def test_datasets_folder_and_object(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(ROWS)
    _same(read_preferences(ds).data)
    ds.save_to_disk(str(tmp_path / "ds"))
    _same(read_preferences(tmp_path / "ds").data)
    dd = datasets.DatasetDict({"train": ds, "test": ds.select([1])})
    assert read_preferences(dd, split="test").data.chosen == ["4"]
    probs = problems(dd)
    assert probs[0].reason == "a DatasetDict with splits train, test"
    conv = datasets.Dataset.from_list([json.loads(line) for line in
                                       (FIX / "trl_conversational.jsonl").read_text().splitlines()])
    p = read_preferences(conv).data
    assert p.rejected == ["It is green.", "22"] and len(p.messages_prompt[1]) == 4


def test_conversational_parquet_and_csv(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    rows = [json.loads(x) for x in (FIX / "trl_conversational.jsonl").read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet")
    assert read_preferences(tmp_path / "c.parquet").data.chosen == ["It is blue.", "4"]
    with open(tmp_path / "c.csv", "w", newline="") as f:  # conversations as JSON text cells
        w = csv.writer(f)
        w.writerow(["prompt", "chosen", "rejected"])
        w.writerows([[json.dumps(r[k]) for k in ("prompt", "chosen", "rejected")] for r in rows])
    assert read_preferences(tmp_path / "c.csv").data.texts("chosen")[0] == \
        "User: What color is the sky?\nAssistant: It is blue."


def test_rewardbench_parquet_as_on_the_hub(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    for name in ("rewardbench1", "rewardbench2"):
        rows = [json.loads(x) for x in (FIX / f"{name}.jsonl").read_text().splitlines()]
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / f"{name}.parquet")
        a = read_preferences(FIX / f"{name}.jsonl").data
        r = read_preferences(tmp_path / f"{name}.parquet")
        b = r.data
        assert r.format == "rewardbench" and type(a) is type(b)
        assert b.prompt == a.prompt and b.chosen == a.chosen and b.rejected == a.rejected
        assert b.category.tolist() == a.category.tolist() and b.id.tolist() == a.id.tolist()
    assert b.num_correct.tolist() == [1, 1, 1, 1, 1, 1, 3, 1, 3]


# -- autodetection ----------------------------------------------------------------------
def test_autodetection(tmp_path: Path) -> None:
    expect = {"trl_standard.jsonl": "trl", "trl_conversational.jsonl": "trl",
              "rewardbench1.jsonl": "rewardbench", "rewardbench2.jsonl": "rewardbench",
              "helpsteer_ratings.jsonl": "ratings"}
    for name, fmt in expect.items():
        assert detect_text_format(FIX / name) == fmt, name
    hh = jsonl(tmp_path / "hh.jsonl", [{"chosen": "\n\nHuman: hi\n\nAssistant: hello",
                                         "rejected": "\n\nHuman: hi\n\nAssistant: go away"}])
    assert detect_text_format(hh) == "hh_rlhf"
    bar = jsonl(tmp_path / "bar.jsonl", [{"input": "q", "output_1": "a", "output_2": "b",
                                          "label": 1}])
    assert detect_text_format(bar) == "llmbar"
    assert {f.name for f in formats("text")} == {"trl", "pairs", "hh_rlhf", "llmbar",
                                                 "rewardbench", "ratings"}


def test_unknown_layout_lists_the_formats_or_takes_a_mapping(tmp_path: Path) -> None:
    p = jsonl(tmp_path / "x.jsonl", [{"question": "2+2?", "good": "4", "bad": "5"}])
    (prob,) = problems(p)
    assert prob.kind == "unknown_format"
    assert prob.reason == "cannot tell the format of this JSONL file from its records (columns: " \
        "bad, good, question)"
    assert "  trl: TRL preference data" in prob.fix and "  llmbar: LLMBar" in prob.fix
    r_cols = {"prompt": "question", "chosen": "good", "rejected": "bad"}
    r = read_preferences(p, columns=r_cols)
    assert r.format == "pairs" and r.data.texts("chosen") == ["2+2?\n\n4"]
    assert read_preferences(p, format="generic", columns=r_cols).format == "pairs"


# -- every error kind, with its wording -------------------------------------------------
def test_missing_column_lists_the_columns_and_the_override(tmp_path: Path) -> None:
    p = jsonl(tmp_path / "m.jsonl", [{"prompt": "q", "good": "a", "bad": "b"}])
    probs = problems(p, format="trl")
    assert [q.field for q in probs] == ["chosen", "rejected"]
    assert str(probs[0]) == (
        f"{p}: missing column 'chosen' (needed for the preferred response); columns present: "
        "prompt, good, bad; map yours with columns={'chosen': '<name>'} (CLI: --column "
        "chosen=<name>)")
    assert not probs[0].skippable


def test_bad_rows_are_all_reported_with_line_field_and_fix(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text("\n".join([
        json.dumps({"prompt": "ok", "chosen": "a", "rejected": "b", "margin": 1}),
        json.dumps({"prompt": "q", "chosen": "  ", "rejected": "b", "margin": 1}),
        json.dumps({"prompt": "q", "chosen": "same", "rejected": "same", "margin": 1}),
        '{"prompt": "q", "chosen": "a", ',
        '{"prompt": "q", "chosen": "a", "rejected": "b", "margin": NaN}',
        json.dumps({"prompt": "q", "chosen": "a", "rejected": "b", "margin": "lots"}),
        json.dumps({"prompt": "q", "chosen": None, "rejected": "b", "margin": 1}),
        json.dumps({"prompt": "q", "chosen": [{"role": "assistant"}], "rejected": "b",
                    "margin": 1}),
    ]) + "\n")
    with pytest.raises(InvalidInputError) as e:
        read_preferences(p)
    probs = e.value.problems
    # line 2's empty chosen response is data: kept, and counted (issue 9.12)
    assert [(q.line, q.kind, q.field) for q in probs] == [
        (3, "identical_responses", "rejected"),
        (4, "malformed_json", None), (5, "bad_margin", "margin"), (6, "bad_margin", "margin"),
        (7, "missing_value", "chosen"), (8, "bad_messages", "chosen"),
        (8, "bad_messages", "rejected")]
    text = [""] + [str(q) for q in probs]
    assert text[1] == (f"chosen and rejected responses are identical in field 'rejected' at {p} "
                       f"line 3; a pair needs two different responses; drop the row; {SKIP}")
    assert text[2].startswith(f"malformed JSON (Expecting property name enclosed in double "
                              f"quotes, column 32) at {p} line 4; fix the line")
    assert text[3] == (f"missing or NaN margin in field 'margin' at {p} line 5; margins must be "
                       f"finite numbers; {SKIP}")
    assert text[4].startswith("margin 'lots' is not a number in field 'margin' at")
    assert text[5].startswith("missing a chosen response in field 'chosen' at")
    assert text[6].startswith("malformed messages in field 'chosen' at") and \
        'give a list of {"role": ..., "content": ...} messages' in text[6]
    assert text[7].startswith("chosen and rejected must both be text or both be messages in ")
    assert str(e.value).startswith(f"7 problems in {p}; 6 of 8 records are invalid, nothing "
                                   "was read (")
    r = read_preferences(p, skip_invalid=True)
    assert (len(r.data), r.n_skipped, r.n_read, r.n_empty) == (2, 6, 8, 1)
    assert r.data.source_line.tolist() == [1, 2] and r.data.chosen[1] == "  "
    assert r.summary() == ("read 2 pairs (trl); skipped 6 invalid rows; 1 row with an empty "
                           "response (kept)")


def test_llmbar_label_must_be_1_or_2(tmp_path: Path) -> None:
    rows = [{"input": "q", "output_1": "a", "output_2": "b", "label": lab}
            for lab in (1, 2, 3, "2", None, "first")]
    p = tmp_path / "llmbar_natural.json"
    p.write_text(json.dumps(rows))
    probs = problems(p)
    # the list is on one line (json.dumps): each record is named by its number
    assert [(q.line, q.kind) for q in probs] == [(3, "unknown_label"), (5, "missing_value"),
                                                 (6, "unknown_label")]
    assert str(probs[0]) == (f"unknown label 3 in field 'label' at {p} record 3; label must be 1 "
                             f"(output_1 is better) or 2 (output_2 is better); {SKIP}")
    r = read_preferences(p, skip_invalid=True)
    assert r.data.chosen == ["a", "b", "b"] and set(r.data.category) == {"Natural"}


def test_hh_rows_that_are_not_transcripts(tmp_path: Path) -> None:
    def row(c: str, r: str) -> dict[str, str]:
        return {"chosen": f"\n\nHuman: {c}", "rejected": f"\n\nHuman: {r}"}

    p = jsonl(tmp_path / "hh.jsonl", [
        row("hi\n\nAssistant: hello", "hi\n\nAssistant: bye"),
        {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "just text"},
        row("a\n\nAssistant: x", "b\n\nAssistant: y"),
        row("hi\n\nAssistant: same", "hi\n\nAssistant: same"),
    ])
    probs = problems(p)
    assert [(q.line, q.kind) for q in probs] == [(2, "not_a_transcript"),
                                                 (3, "no_shared_context"),
                                                 (4, "identical_responses")]
    assert probs[0].reason == "no '\\n\\nAssistant:' turn in the transcript"


def test_rewardbench2_row_checks(tmp_path: Path) -> None:
    base = {"id": "0", "prompt": "q", "subset": "Math"}
    p = jsonl(tmp_path / "rb2.jsonl", [
        {**base, "chosen": ["a"], "rejected": ["b", "c"], "num_correct": 1},
        {**base, "chosen": ["a"], "rejected": ["b", ""], "num_correct": 1},
        {**base, "chosen": ["a", "x"], "rejected": ["b"], "num_correct": 1},
        {**base, "chosen": ["a"], "rejected": ["a", "b"], "num_correct": 1},
    ])
    probs = problems(p)
    assert [(q.line, q.kind, q.field) for q in probs] == [
        (3, "bad_value", "num_correct"), (4, "identical_responses", "rejected")]
    assert read_preferences(p, skip_invalid=True).n_empty == 1  # line 2: an empty response
    assert probs[0].reason == "num_correct 1 does not match the 2 chosen responses"


def test_ratings_row_checks(tmp_path: Path) -> None:
    p = jsonl(tmp_path / "r.jsonl", [
        {"prompt": "q", "response": "a", "helpfulness": 3},
        {"prompt": "q", "response": "b", "helpfulness": None},
        {"prompt": "q", "response": "", "helpfulness": 2},
    ])
    probs = problems(p, format="ratings", attributes=["helpfulness"])
    assert [(q.line, q.kind) for q in probs] == [(2, "bad_rating")]  # line 3: empty, kept
    assert probs[0].reason == "missing or NaN rating 'helpfulness'"
    (miss,) = problems(p, format="ratings", attributes=["verbosity"])
    assert miss.reason == "missing rating column 'verbosity'"


def test_empty_input_and_csv_lines(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_text("\n")
    with pytest.raises(InvalidInputError, match="no rows"):
        read_preferences(tmp_path / "e.jsonl")
    p = tmp_path / "v.csv"
    p.write_text('prompt,chosen,rejected\n"multi\nline",a,b\nq,c,c\n')
    (prob,) = problems(p)
    assert (prob.line, prob.unit, prob.kind) == (4, "line", "identical_responses")


# -- records ----------------------------------------------------------------------------
def test_records_select_frame_and_checks() -> None:
    p = read_preferences(FIX / "rewardbench1.jsonl").data
    sub = p.select(p.category == "alpacaeval-easy")
    assert len(sub) == 2 and sub.id.tolist() == ["30", "31"]
    assert p.select([9, 0]).chosen == [p.chosen[9], p.chosen[0]]
    df = p.to_frame()
    assert list(df.columns) == ["prompt", "chosen", "rejected", "category", "source_line", "id"]
    with pytest.raises(ValueError, match="rejected must have 2 entries"):
        TextPairs(["a", "b"], ["c", "d"], ["e"])
    with pytest.raises(ValueError, match="side must be"):
        p.texts("better")  # type: ignore[arg-type]
    assert render_chat([{"role": "tool", "content": "42"}]) == "Tool: 42"
    b = read_preferences(FIX / "rewardbench2.jsonl").data
    assert b.select(b.category == "Ties").num_correct.tolist() == [1, 3, 1, 3]


# -- the fixed split --------------------------------------------------------------------
def test_split_is_deterministic_exact_and_order_free() -> None:
    p = TextPairs([f"q{i}" for i in range(1000)], [f"a{i}" for i in range(1000)],
                  [f"b{i}" for i in range(1000)])
    train, test = split_train_test(p)
    assert (len(train), len(test)) == (800, 200)
    assert set(train.prompt) | set(test.prompt) == set(p.prompt)
    again = split_train_test(p)[1]
    assert again.prompt == test.prompt
    order = list(range(1000))
    random.Random(1).shuffle(order)
    shuffled_test = split_train_test(p.select(order))[1]
    assert set(shuffled_test.prompt) == set(test.prompt)
    other = split_train_test(p, seed=HH_HARMLESS_SPLIT_SEED + 1)[1]
    assert set(other.prompt) != set(test.prompt)
    assert len(split_train_test(p, test_fraction=0.1)[1]) == 100
    with pytest.raises(ValueError, match="test_fraction"):
        split_train_test(p, test_fraction=1.0)


@real
def test_hh_harmless_split_is_fixed() -> None:
    train, test = hh_harmless_split(HH)
    assert (len(train), len(test)) == (1850, 462)  # round(0.2 * 2312) = 462
    assert set(train.source_line.tolist()).isdisjoint(test.source_line.tolist())
    # the held-out pairs, pinned: the first five lines of the file that are in the test set
    assert test.source_line[:5].tolist() == FIRST_TEST_LINES
    # the same pairs when the file's rows are shuffled
    full = read_preferences(HH).data
    order = np.random.default_rng(3).permutation(len(full))
    _, test2 = split_train_test(full.select(order), seed=HH_HARMLESS_SPLIT_SEED)
    assert sorted(test2.source_line.tolist()) == test.source_line.tolist()


FIRST_TEST_LINES = [8, 11, 15, 17, 19]
