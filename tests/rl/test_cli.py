"""`prefkit rl`: a real run on the tiny SFT model, --json, --resume, and bad input stopped
before the model loads, in the flags' words."""

from __future__ import annotations

import json
from pathlib import Path

from rl_sums import ANSWERS, PROMPTS
from shared_paths import SHARED
from typer.testing import CliRunner

from prefkit.cli.main import app

runner = CliRunner()


def _task(tmp_path: Path) -> Path:
    p = tmp_path / "sums.jsonl"
    p.write_text("".join(json.dumps({"prompt": q, "answer": a}) + "\n"
                         for q, a in zip(PROMPTS, ANSWERS, strict=True)))
    return p


def _reward_file(tmp_path: Path) -> Path:
    f = tmp_path / "rewards.py"
    f.write_text("def right(prompts, completions, answer, **kwargs):\n"
                 "    return [float(c.strip() == a) for c, a in zip(completions, answer)]\n")
    return f


def test_list_losses() -> None:
    out = runner.invoke(app, ["rl", "--list-losses"])
    assert out.exit_code == 0
    for name in ("dapo", "dr_grpo", "bnpo", "rloo", "reinforce_pp", "ppo", "online DPO"):
        assert name in out.output


def test_a_run_with_json_and_resume(sft_folder: Path, tmp_path: Path) -> None:
    args = ["rl", "--algo", "grpo", "--model", str(sft_folder), "--task",
            str(_task(tmp_path)), "--reward", f"{_reward_file(tmp_path)}:right",
            "--reward", "0.1*format:^[0-9]", "--output", str(tmp_path / "run"),
            "--num-generations", "4", "--batch-size", "2", "--max-new-tokens", "3",
            "--max-steps", "3", "--learning-rate", "5e-3", "--json"]
    out = runner.invoke(app, args + ["--stop-after", "2"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["step"] == 2 and not summary["finished"]
    assert summary["reward_terms"] == ["right", "format:^[0-9]"]
    assert summary["loss"] == "dapo"
    out = runner.invoke(app, args)  # the folder holds a run: refused without --resume
    assert out.exit_code == 2 and "--resume" in out.output
    out = runner.invoke(app, args + ["--resume"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["step"] == 3 and summary["finished"]
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().split("\n")
            if x]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert "rewards/right" in rows[-1] and "rewards/format:^[0-9]" in rows[-1]


def test_gsm8k_from_the_command_line(sft_folder: Path, tmp_path: Path) -> None:
    out = runner.invoke(app, [
        "rl", "--model", str(sft_folder), "--task",
        str(SHARED / "data" / "rl" / "gsm8k" / "test.jsonl"), "--limit", "2", "--reward",
        "exact", "--output", str(tmp_path / "g"), "--num-generations", "2", "--batch-size", "2",
        "--max-new-tokens", "4", "--max-steps", "1", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["reward_terms"] == ["exact:gsm8k"]


def test_bad_input_is_refused_in_the_flags_words(sft_folder: Path, tmp_path: Path) -> None:
    task = _task(tmp_path)
    base = ["rl", "--model", str(sft_folder), "--task", str(task), "--output",
            str(tmp_path / "x")]
    out = runner.invoke(app, ["rl", "--model", str(sft_folder)])
    assert out.exit_code == 2 and "missing --task, --reward, --output" in out.output
    out = runner.invoke(app, base + ["--reward", "bleu"])
    assert out.exit_code == 2 and "unknown reward 'bleu'" in out.output
    out = runner.invoke(app, base + ["--reward", "exact"])  # a 'prompt' file names no checker
    assert out.exit_code == 2 and "exact:gsm8k or exact:math" in out.output
    out = runner.invoke(app, base + ["--reward", "length", "--num-generations", "1"])
    assert out.exit_code == 2 and "--num-generations must be >= 2" in out.output
    out = runner.invoke(app, base + ["--reward", "length", "--algo", "trpo"])
    assert out.exit_code == 2 and "algo must be one of" in out.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a"}\n{"text": "b"}\n')
    out = runner.invoke(app, ["rl", "--model", str(sft_folder), "--task", str(bad),
                              "--reward", "length", "--output", str(tmp_path / "y")])
    assert out.exit_code == 2 and "line 2" in out.output and "prompt" in out.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_watch_from_the_command_line(sft_folder: Path, tmp_path: Path) -> None:
    task = _task(tmp_path)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "a" * (i + 2),
                                         "rejected": "a"}) + "\n" for i in range(6)))
    out = runner.invoke(app, [
        "rl", "--model", str(sft_folder), "--task", str(task), "--reward", "length:1",
        "--watch", str(task), "--watch-reward", f"{_reward_file(tmp_path)}:right",
        "--watch-pairs", str(pairs), "--watch-every", "2", "--output", str(tmp_path / "w"),
        "--num-generations", "4",
        "--batch-size", "4", "--max-new-tokens", "3", "--max-steps", "6",
        "--learning-rate", "5e-3", "--json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["watch"]["evaluations"] == 4  # steps 1, 2, 4, 6
    assert (tmp_path / "w" / "watch.png").stat().st_size > 1000
    rows = [json.loads(x) for x in (tmp_path / "w" / "metrics.jsonl").read_text().split("\n")
            if x]
    assert [r["watch/agreement"] for r in rows if "watch/agreement" in r] == [1.0] * 4
