"""`prefkit align` end to end on a tiny Llama built from a config (no download)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

from prefkit.align.tiny import char_tokenizer, tiny_llama  # noqa: E402
from prefkit.cli.main import app  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("align_cli")
    tok = char_tokenizer()
    model = tiny_llama(len(tok), seed=0)
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    rows = []
    for i in range(12):
        a, b = str(i % 10), str((i * 3 + 1) % 10)
        if a == b:
            b = str((int(b) + 1) % 10)
        lo, hi = sorted([a, b])
        rows.append({"prompt": f"sort {a} {b}:", "chosen": f" {lo} {hi}", "rejected": f" {hi} {lo}"})
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ranked = [{"prompt": r["prompt"], "completions": [r["chosen"], r["rejected"], " ?"],
               "ranks": [1, 2, 3]} for r in rows]
    (root / "ranked.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ranked))
    return root


def _run(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, ["align", *args])
    # rich wraps long error lines: compare words, not line breaks
    return res.exit_code, res.stdout, " ".join(res.stderr.split())


def test_list_losses_names_every_family() -> None:
    code, out, _ = _run("--list-losses")
    assert code == 0
    for name in ("dpo", "ipo", "simpo", "orpo", "kto", "tdpo2", "listwise", "cal_dpo"):
        assert f"\n{name}" in out
    assert "beta=0.1" in out


def test_dpo_run_writes_a_loadable_model_and_resumes(workdir: Path) -> None:
    out = workdir / "run_dpo"
    base = ["--model", str(workdir / "model"), "--data", str(workdir / "pairs.jsonl"),
            "--output", str(out), "--batch-size", "4", "--lr", "1e-3", "--log-every", "1"]
    code, stdout, stderr = _run(*base, "--stop-after", "2", "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["steps"] == 2 and summary["finished"] is False
    assert summary["n_train"] == 12 and summary["kind"] == "pairwise"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    # step 1's loss is measured before any update: policy == reference, so DPO's loss is ln 2
    assert train[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert [r["step"] for r in train] == [1, 2]
    # resume to the end of the epoch (12 pairs / 4 = 3 steps)
    code, stdout, stderr = _run(*base, "--resume", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["steps"] == 3 and json.loads(stdout)["finished"] is True
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(out)
    start = AutoModelForCausalLM.from_pretrained(workdir / "model")
    changed = [not torch.equal(p, q) for p, q in zip(loaded.parameters(), start.parameters())]
    assert any(changed)


def test_pairs_convert_for_kto_and_listwise_takes_rankings(workdir: Path) -> None:
    code, stdout, stderr = _run("--model", str(workdir / "model"), "--data",
                                str(workdir / "pairs.jsonl"), "--output", str(workdir / "kto"),
                                "--loss", "kto", "--batch-size", "4", "--max-steps", "1", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["kind"] == "unpaired" and json.loads(stdout)["n_train"] == 24
    code, stdout, stderr = _run("--model", str(workdir / "model"), "--data",
                                str(workdir / "ranked.jsonl"), "--output", str(workdir / "pl"),
                                "--loss", "listwise", "--batch-size", "4", "--max-steps", "1",
                                "-p", "beta=0.5", "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["kind"] == "listwise" and summary["hyper"] == {"beta": 0.5}


def test_bad_input_gets_a_clear_error(workdir: Path, tmp_path: Path) -> None:
    model = ["--model", str(workdir / "model"), "--output", str(tmp_path / "x")]
    code, _, err = _run(*model, "--data", str(tmp_path / "nope.jsonl"))
    assert code == 2 and "no such file" in err
    code, _, err = _run(*model, "--data", str(workdir / "pairs.jsonl"), "--loss", "dpoo")
    assert code == 2 and "dpo" in err
    code, _, err = _run(*model, "--data", str(workdir / "pairs.jsonl"), "-p", "gamma=1")
    assert code == 2 and "gamma" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n"
                   + json.dumps({"prompt": "p", "chosen": "a"}) + "\n")
    code, _, err = _run(*model, "--data", str(bad))
    assert code == 2 and "line 2" in err and "rejected" in err
    code, _, err = _run("--data", str(bad))
    assert code == 2 and "--model" in err and "--output" in err


@pytest.mark.parametrize("args, message", [
    (["--beta", "-1"], "beta in (0, inf), got -1.0: it scales the log-ratio rewards"),
    (["--beta", "0"], "beta in (0, inf)"),
    (["-p", "label_smoothing=0.7"], "label_smoothing in [0, 0.5]"),
    (["--loss", "simpo", "-p", "gamma=-1"], "gamma in [0, inf)"),
    (["--loss", "kto", "-p", "desirable_weight=0"], "desirable_weight in (0, inf)"),
])
def test_hyper_parameters_out_of_range_are_refused_before_training(
        workdir: Path, tmp_path: Path, args: list[str], message: str) -> None:
    # issue 9.2: --beta -1 trained toward the rejected answers and reported accuracy 1
    out = tmp_path / "run"
    code, _, err = _run("--model", str(workdir / "model"), "--data", str(workdir / "pairs.jsonl"),
                        "--output", str(out), "--max-steps", "1", *args)
    assert code == 2 and message in err
    assert not out.exists() or not any(out.iterdir())  # nothing was trained or written


@pytest.fixture()
def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the command gets as far as loading a tokenizer (slow work)."""
    import transformers

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the tokenizer was loaded before the option was refused")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)


@pytest.mark.parametrize("args, words", [
    (["--max-steps", "0"], ["--max-steps must be >= 1, got 0"]),
    (["--lr", "-1"], ["--learning-rate must be > 0, got -1.0"]),
    (["--max-length", "1"], ["--max-length must be at least 2"]),
    (["--max-prompt-length", "0"], ["--max-prompt-length must be at least 1"]),
    (["--eval-every", "-1"], ["--eval-every must be >= 0"]),
    (["--batch-size", "0"], ["--batch-size must be >= 1, got 0"]),
    (["--stop-after", "0"], ["--stop-after must be at least 1"]),
    (["-p", "label_smoothing=abc"], ["-p label_smoothing=abc", "must be a number"]),
    (["-p", "length_normalize=maybe"], ["-p length_normalize=maybe", "true or false"]),
])
def test_bad_options_are_refused_in_flags_before_loading(
        workdir: Path, tmp_path: Path, no_loading: None, args: list[str], words: list[str]
        ) -> None:
    # campaign align.maxsteps0 / lr_neg / maxlen1 / param_badval: config field names
    # (max_steps, learning_rate) or torch's words, after tokenizing and loading the model
    out = tmp_path / "run"
    code, _, err = _run("--model", str(workdir / "model"), "--data", str(workdir / "pairs.jsonl"),
                        "--output", str(out), *args)
    assert code == 2, err
    for w in words:
        assert w in err
    assert "max_steps" not in err and "learning_rate" not in err
    assert not out.exists()


@pytest.mark.parametrize("flag", ["--data", "--validation"])
def test_missing_data_or_stdin_is_refused_before_the_model_loads(
        workdir: Path, tmp_path: Path, no_loading: None, flag: str) -> None:
    # campaign s7: `--data -` was checked only after the model (a Hub id: five retries first)
    data = ["--data", str(workdir / "pairs.jsonl")] if flag == "--validation" else []
    for given, words in (("-", "preference data are read from a file, not from standard "
                               "input ('-')"),
                         (str(tmp_path / "nope.jsonl"), "nope.jsonl: no such file")):
        code, _, err = _run("--model", "no-such-org/no-such-model", *data, flag, given,
                            "--output", str(tmp_path / "run"))
        assert code == 2, err
        assert f"{flag} " in err and words in " ".join(err.split()), err


def test_hyper_parameter_values_are_typed_by_the_loss(workdir: Path, tmp_path: Path) -> None:
    from prefkit.align.losses import get_align_loss
    from prefkit.cli.align import _hyper

    spec = get_align_loss("dpo")
    assert _hyper(spec, {"label_smoothing": "0.1", "length_normalize": "true",
                         "f_divergence": "js_divergence"}) == {
        "label_smoothing": 0.1, "length_normalize": True, "f_divergence": "js_divergence"}
    assert _hyper(get_align_loss("kto"), {"kl_estimate": "none"}) == {"kl_estimate": None}
    with pytest.raises(ValueError, match="needs a number for label_smoothing"):
        spec.resolve(label_smoothing="0.1")  # a string is no number, from Python either


def test_a_model_that_is_no_causal_lm_is_refused_in_words(
        workdir: Path, tmp_path: Path, no_loading: None) -> None:
    # campaign align.model_is_file / model_is_rm / model_is_ft_encoder: "cannot load its
    # tokenizer" with a fix about sentencepiece
    data = ["--data", str(workdir / "pairs.jsonl"), "--output", str(tmp_path / "run")]
    f = tmp_path / "votes.csv"
    f.write_text("model_a,model_b,winner\nA,B,model_a\n")
    code, _, err = _run("--model", str(f), *data)
    assert code == 2 and "is a file, not a model folder" in err
    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "prefkit_run.json").write_text(json.dumps({"kind": "reward-train"}))
    (rm / "config.json").write_text(json.dumps({"head": {"name": "linear", "dim": 4}}))
    (rm / "backbone.json").write_text("{}")
    code, _, err = _run("--model", str(rm), *data)
    assert code == 2 and "a prefkit reward model" in err and "not a causal language model" in err
    assert "prefkit reward score" in err
    ft = tmp_path / "ft"
    ft.mkdir()
    (ft / "config.json").write_text(json.dumps({"kind": "sequence-scorer"}))
    code, _, err = _run("--model", str(ft), *data)
    assert code == 2 and "a prefkit reward model" in err
    enc = tmp_path / "encoder"
    enc.mkdir()
    (enc / "config.json").write_text(json.dumps({"architectures": ["BertModel"],
                                                 "model_type": "bert"}))
    code, _, err = _run("--model", str(enc), *data)
    assert code == 2 and "BertModel" in err and "not a causal language model" in err
    empty = tmp_path / "folder"
    empty.mkdir()
    code, _, err = _run("--model", str(empty), *data)
    assert code == 2 and "no config.json" in err
    assert not (tmp_path / "run").exists()


def test_unpaired_data_for_a_pairwise_loss_names_an_unpaired_loss(
        workdir: Path, tmp_path: Path) -> None:
    # campaign align.dpo_on_unpaired: the fix was "read it with kind='unpaired'"
    data = tmp_path / "unpaired.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}", "completion": " a", "label": True})
                            + "\n" for i in range(4)))
    code, _, err = _run("--model", str(workdir / "model"), "--data", str(data), "--output",
                        str(tmp_path / "run"), "--loss", "dpo")
    assert code == 2, err
    assert "holds unpaired data" in err and "--loss dpo takes pairwise data" in err
    assert "--loss kto" in err and "kind=" not in err
    code, _, err = _run("--model", str(workdir / "model"), "--data", str(data), "--output",
                        str(tmp_path / "run"), "--kind", "listwise")
    assert code == 2 and "--kind listwise" in err and "--kind auto" in err


def test_what_has_no_effect_or_was_kept_is_said(workdir: Path, tmp_path: Path) -> None:
    # campaign align.emptyfields / eval_every_noval / stop_after_gt: exit 0 in silence
    rows = [json.loads(x) for x in (workdir / "pairs.jsonl").read_text().splitlines()]
    rows[1]["rejected"] = ""
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = _run("--model", str(workdir / "model"), "--data", str(data), "--output",
                        str(tmp_path / "run"), "--batch-size", "4", "--max-steps", "2",
                        "--eval-every", "1", "--stop-after", "10")
    assert code == 0, err
    assert "1 pair with an empty response, kept" in err
    assert "--eval-every 1 has no effect without --validation" in err
    assert "--stop-after 10 had no effect: the run has 2 steps" in err
