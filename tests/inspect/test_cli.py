"""`prefkit inspect`: JSON keys as issue 11 names them, the table, the figure and the HTML
page, the policy/reference/beta and reward-model paths, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shared_paths import SHARED
from typer.testing import CliRunner

from prefkit.cli.main import app

runner = CliRunner()
PANDALM = SHARED / "data" / "judge" / "pandalm" / "testset-v1.json"


def _run(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, ["inspect", *args])
    return res.exit_code, res.stdout, res.stderr


def _pandalm() -> Path:
    if not PANDALM.exists():
        pytest.skip(f"{PANDALM} is not there")
    return PANDALM


def test_json_has_the_issue_keys_for_several_annotators() -> None:
    code, out, err = _run(str(_pandalm()), "--json", "--rounds", "50")
    assert code == 0, err
    d = json.loads(out)
    assert d["format"] == "pandalm" and d["n_pairs"] == 999
    assert round(d["krippendorff_alpha"]["value"], 3) == 0.864 and d["level"] == "nominal"
    assert d["krippendorff_alpha"]["lower"] < d["krippendorff_alpha"]["value"]
    assert round(d["fleiss_kappa"]["value"], 3) == 0.864 and d["cohen_kappa"] is None
    assert d["accuracy"] is None  # no gold column
    for k in ("position_bias", "length_bias", "duplicates", "cyclic_triads", "annotators",
              "confusion", "per_category"):
        assert k in d
    code, out, _ = _run(str(PANDALM), "--json", "--rounds", "0", "--ordinal")
    assert json.loads(out)["level"] == "ordinal"
    assert round(json.loads(out)["krippendorff_alpha"]["value"], 3) == 0.877


def test_two_annotators_and_gold_give_cohen_and_accuracy(tmp_path: Path) -> None:
    p = tmp_path / "labels.csv"
    p.write_text("pair,who,choice,truth\n" + "".join(
        f"{i},{w},{lab},{g}\n" for i, (g, labs) in enumerate(
            [("a", "aa"), ("b", "ba"), ("tie", "tt"), ("a", "ab"), ("b", "bb")])
        for w, lab in zip(("x", "y"), labs)).replace(",t,", ",tie,").replace(",t\n", ",tie\n"))
    code, out, err = _run(str(p), "--json", "--rounds", "0", "-c", "pair=pair", "-c",
                          "annotator=who", "-c", "label=choice", "-c", "gold=truth",
                          "--format", "annotations_long")
    assert code == 0, err
    d = json.loads(out)
    assert d["fleiss_kappa"] is None and d["cohen_kappa"]["between"] == "the two annotators"
    # labels x: a b tie a b, y: a a tie b b against gold a b tie a b: x all right, y 3 of 5
    assert d["accuracy"]["with_ties"] == pytest.approx(8 / 10)
    assert d["accuracy"]["without_ties"] == pytest.approx(6 / 8)
    assert d["per_annotator_accuracy"]["x"]["with_ties"] == 1.0


def test_table_figure_and_html(tmp_path: Path) -> None:
    png, page = tmp_path / "r.png", tmp_path / "r.html"
    code, out, err = _run(str(_pandalm()), "--rounds", "20", "--plot", str(png), "--html",
                          str(page))
    assert code == 0, err
    assert "Krippendorff's alpha (nominal)" in out and "0.864" in out
    assert "chose the longer response" in out and "66.8%" in out
    assert png.stat().st_size > 20_000 and png.read_bytes()[:4] == b"\x89PNG"
    text = page.read_text()
    assert text.startswith("<!doctype html>") and "data:image/png;base64," in text
    assert "Krippendorff&#x27;s alpha (nominal)" in text


def test_bad_rows_and_bad_options_are_clear(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("id,worker,winner\n1,w1,left\n1,w2,maybe\n")
    code, _, err = _run(str(p))
    assert code == 2
    assert "unknown label 'maybe' in field 'winner' at" in err and "bad.csv line 3" in err
    assert "pass --skip-invalid to skip such rows" in err
    code, out, err = _run(str(p), "--skip-invalid", "--json", "--rounds", "0")
    assert code == 0 and "skipped 1 invalid row of" in err and json.loads(out)["n_pairs"] == 1
    code, _, err = _run(str(p), "--policy", str(tmp_path))
    assert code == 2 and "--policy DIR, --reference DIR and --beta B together" in err
    code, _, err = _run(str(p), "--plot", str(tmp_path / "x.txt"))
    assert code == 2 and "--plot" in err
    code, _, err = _run(str(p), "--reward-model", str(tmp_path / "nope"))
    assert code == 2 and "no such model folder" in err
    code, _, err = _run(str(tmp_path / "missing.csv"))
    assert code == 2 and "no such file" in err


def test_policy_reference_beta_give_ranking_accuracy(tmp_path: Path) -> None:
    from prefkit.align.tiny import char_tokenizer, tiny_llama

    tok = char_tokenizer()
    for name, seed in (("pol", 1), ("ref", 0)):
        tiny_llama(len(tok), seed=seed).save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
    p = tmp_path / "pairs.jsonl"
    rows = [{"pair_id": i, "prompt": f"Q{i}?", "response_a": "yes" * (i + 1),
             "response_b": "no", "annotator": w, "label": lab}
            for i in range(4) for w, lab in (("u", "a"), ("v", "a" if i % 2 else "b"),
                                             ("w", "a"))]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = _run(str(p), "--json", "--rounds", "0", "--policy", str(tmp_path / "pol"),
                          "--reference", str(tmp_path / "ref"), "--beta", "0.1")
    assert code == 0, err
    r = json.loads(out)["ranking_accuracy"]
    assert r["n_pairs"] == 4 and r["idealized"]["beta"] == 0.1
    # the same numbers as the Python API on the same folders
    from prefkit.inspect import read_annotations
    from prefkit.inspect.ranking import load_causal_lm, ranking_of_annotations

    pol, tk = load_causal_lm(tmp_path / "pol")
    ref, _ = load_causal_lm(tmp_path / "ref")
    want = ranking_of_annotations(read_annotations(p), pol, ref, tk, beta=0.1)
    assert r == json.loads(json.dumps(want))
    # longer "yes..." answers are far less likely under random tiny models: pi* with
    # beta 0.1 and alpha 2/3 or 1 still ranks some of them below "no"
    assert r["idealized"]["summed"] < 1.0


@pytest.mark.parametrize(("judge", "key", "want"), [
    ("gpt-3.5-turbo-testset-v1.json", "gpt_result", 0.7107),
    ("pandalm-7b-testset-v1.json", "pandalm_result", 0.6677),
])
def test_judges_against_the_human_majority_as_pandalm_computes_it(
        tmp_path: Path, judge: str, key: str, want: float) -> None:
    """Two judges' verdicts on PandaLM's 999 pairs against the majority of the three human
    annotators, ties a class: the accuracies PandaLM's own data/compute_metrics.py prints
    (WeOpenML/PandaLM @ 8536d2c: GPT-3.5 0.7107, PandaLM-7B 0.6677). As that script does,
    a verdict that is not 1, 2 or a tie ('garbage', 25 of GPT-3.5's) counts as a tie."""
    humans = json.loads(_pandalm().read_text())
    verdicts = json.loads((PANDALM.parent / judge).read_text())
    from prefkit.inspect import read_annotations

    gold = read_annotations(PANDALM).majority()  # no pair has a 3-way split
    names = {0: "a", 1: "b", 2: "tie"}
    p = tmp_path / "judged.csv"
    lines = ["pair_id,judge,gold"]
    for h, v, g in zip(humans, verdicts, gold):
        assert int(h["idx"]) == v["idx"]
        verdict = str(v[key]).lower()
        verdict = {"1": "a", "2": "b"}.get(verdict, "tie")  # 0, tie, garbage -> tie
        lines.append(f"{v['idx']},{verdict},{names[int(g)]}")
    p.write_text("\n".join(lines) + "\n")
    code, out, err = _run(str(p), "--json", "--rounds", "0")
    assert code == 0, err
    d = json.loads(out)
    assert d["format"] == "annotations_wide" and d["cohen_kappa"]["between"] == \
        "annotator and gold"
    assert round(d["accuracy"]["with_ties"], 4) == want and d["accuracy"]["n"] == 999
