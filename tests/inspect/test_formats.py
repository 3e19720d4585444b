"""The annotation readers (family ``annotations``): PandaLM's human test set, the long and
the wide layouts, and their errors (file, line, field, fix)."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest
from shared_paths import SHARED

from prefkit.data.errors import InvalidInputError
from prefkit.data.formats import FORMATS, describe_formats
from prefkit.data.text import TextPairs
from prefkit.inspect import FIRST, MISSING, SECOND, TIE, read_annotations

PANDALM = SHARED / "data" / "judge" / "pandalm" / "testset-v1.json"
LLMFAO = SHARED / "data" / "arena" / "llmfao_crowd_comparisons.csv"


def _need(p: Path) -> Path:
    if not p.exists():
        pytest.skip(f"{p} is not there")
    return p


def test_registered_in_their_own_family() -> None:
    for name in ("pandalm", "annotations_long", "annotations_wide"):
        assert FORMATS[name].family == "annotations"
    assert "pandalm" in describe_formats("annotations")


def test_pandalm_reads_every_pair_with_its_three_annotators() -> None:
    rows = json.loads(_need(PANDALM).read_text())
    a = read_annotations(PANDALM)
    assert a.format == "pandalm" and len(a) == 999 and a.annotators == (
        "annotator1", "annotator2", "annotator3")
    code = {"0": TIE, "1": FIRST, "2": SECOND}
    want = np.array([[code[str(r[f"annotator{k}"])] for k in (1, 2, 3)] for r in rows])
    np.testing.assert_array_equal(a.labels, want)
    r = rows[5]
    assert a.response_a[5] == r["response1"] and a.response_b[5] == r["response2"]
    assert a.prompt[5] == r["instruction"] + ("\n\n" + r["input"] if r["input"] else "")
    assert f"{a.model_a[5]}_{a.model_b[5]}" == r["cmp_key"]
    assert a.category[5] == r["motivation_app"] and a.pair_id[5] == str(r["idx"])
    assert a.lines[0] == 2  # the first object of the JSON list opens on line 2


def test_pandalm_majority_pairs_equal_the_hand_written_reader() -> None:
    """The reader benchmarks/reward_default.py used before: >= 2 of 3 annotators name a
    winner, identical responses left out."""
    rows = json.loads(_need(PANDALM).read_text())
    P, C, R = [], [], []
    for r in rows:
        label, k = collections.Counter(str(r[f"annotator{i}"]) for i in (1, 2, 3)).most_common(1)[0]
        if k < 2 or label not in ("1", "2") or r["response1"] == r["response2"]:
            continue
        P.append(r["instruction"] + (("\n\n" + r["input"]) if r["input"] else ""))
        a, b = (r["response1"], r["response2"]) if label == "1" else (r["response2"], r["response1"])
        C.append(a)
        R.append(b)
    pairs = read_annotations(PANDALM, format="pandalm").to_text_pairs()
    old = TextPairs(P, C, R)  # six responses are JSON true: both read them as "True"
    assert (pairs.prompt, pairs.chosen, pairs.rejected) == (old.prompt, old.chosen,
                                                            old.rejected) and len(P) == 894


def test_long_layout_reads_the_llmfao_crowd() -> None:
    a = read_annotations(_need(LLMFAO))
    assert a.format == "annotations_long"
    assert (len(a), a.n_annotators, int((a.labels != MISSING).sum())) == (2139, 124, 8931)
    assert a.model_a[0] == "Airoboros L2 70B" and a.model_b[0] == "Weaver 12k"
    c = a.counts().sum(0)
    assert c.tolist() == [2911, 2549, 3471]  # left, right, tie as in the file


def test_wide_layout_with_gold_and_blank_cells(tmp_path: Path) -> None:
    p = tmp_path / "w.csv"
    p.write_text("pair_id,prompt,rater_1,rater_2,gold\nq1,hi,a,b,a\nq2,yo,tie,,b\n")
    a = read_annotations(p)
    assert a.format == "annotations_wide"
    assert a.labels.tolist() == [[FIRST, SECOND], [TIE, MISSING]]
    assert a.gold.tolist() == [FIRST, SECOND] and a.pair_id == ["q1", "q2"]
    a2 = read_annotations(p, columns={"annotators": "rater_2"})
    assert a2.annotators == ("rater_2",)
    q = tmp_path / "mine.csv"  # columns nobody would guess: named, so the wide layout
    q.write_text("item,gpt4,human\n1,a,b\n2,tie,tie\n")
    a3 = read_annotations(q, columns={"annotators": "gpt4,human", "pair": "item"})
    assert a3.format == "annotations_wide" and a3.labels.tolist() == [[FIRST, SECOND],
                                                                      [TIE, TIE]]
    assert a3.pair_id == ["1", "2"]


def test_bad_rows_name_file_line_field_and_fix(tmp_path: Path) -> None:
    p = tmp_path / "long.csv"
    p.write_text("id,worker,winner\n1,w1,left\n1,w2,maybe\n2,w1,\n1,w1,right\n")
    with pytest.raises(InvalidInputError) as e:
        read_annotations(p)
    msg = str(e.value)
    assert "unknown label 'maybe' in field 'winner' at " in msg and "long.csv line 3;" in msg
    assert "missing label in field 'winner' at " in msg and "long.csv line 4;" in msg
    assert "annotator 'w1' labels pair '1' a second time" in msg and "line 5" in msg
    assert "a label is a (the first response), b (the second) or tie" in msg
    a = read_annotations(p, skip_invalid=True)
    assert len(a) == 1 and a.labels.tolist() == [[FIRST]] and len(a.skipped) == 3


def test_pandalm_blank_annotator_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "p.json"
    p.write_text(json.dumps([{"idx": 0, "cmp_key": "x_y", "instruction": "i", "input": "",
                              "response1": "r1", "response2": "r2", "annotator1": 1,
                              "annotator2": "", "annotator3": 7}], indent=1))
    with pytest.raises(InvalidInputError) as e:
        read_annotations(p)
    assert "missing label in field 'annotator2' at " in str(e.value) and "p.json line 2;" in str(e.value)
    assert "unknown label 7 in field 'annotator3'" in str(e.value)


def test_unknown_layout_lists_the_formats(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("foo,bar\n1,2\n")
    with pytest.raises(InvalidInputError) as e:
        read_annotations(p)
    assert "cannot tell the format" in str(e.value) and "pandalm" in str(e.value)
    p.write_text("id,worker\n1,2\n")
    with pytest.raises(InvalidInputError) as e:
        read_annotations(p, format="annotations_long")
    assert "missing column 'label'" in str(e.value) and "--column label=NAME" in str(e.value)


def test_one_pair_id_for_two_pairs_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "l.csv"
    p.write_text("id,worker,winner,prompt\n1,w1,a,hello\n1,w2,b,other prompt\n")
    with pytest.raises(InvalidInputError) as e:
        read_annotations(p)
    assert "pair '1' has another prompt here than at line 2" in str(e.value)
    assert "give different pairs different ids" in str(e.value)


def test_every_public_name_imports_and_has_a_docstring() -> None:
    import prefkit.inspect as m

    assert m.__doc__
    for name in m.__all__:
        obj = getattr(m, name)
        if callable(obj):
            assert obj.__doc__, name
