"""`prefkit reward finetune` on real HH pairs with the offline MiniLM (a few steps)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from shared_paths import SHARED
from typer.testing import CliRunner

pytest.importorskip("torch")

from prefkit.cli.main import app  # noqa: E402

HH = SHARED / "data" / "reward" / "hh_rlhf_harmless_base_test.jsonl.gz"


def test_finetune_then_eval_and_resume(tmp_path: Path) -> None:
    with gzip.open(HH, "rt") as f:
        lines = [next(f) for _ in range(40)]
    train, val = tmp_path / "train.jsonl", tmp_path / "val.jsonl"
    train.write_text("".join(lines[:24]))
    val.write_text("".join(lines[24:]))
    out = tmp_path / "ft"
    args = ["reward", "finetune", str(train), "--output", str(out), "--validation", str(val),
            "--max-steps", "2", "--max-length", "32", "--batch-size", "4", "--json"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["steps"] == 2 and d["n_train"] == 24
    assert json.loads((out / "config.json").read_text())["kind"] == "sequence-scorer"
    r = CliRunner().invoke(app, ["reward", "eval", str(out), str(val), "--json"])
    assert r.exit_code == 0, r.stderr
    assert 0.0 <= json.loads(r.stdout)["accuracy"] <= 1.0
    # a folder that holds a run is not overwritten silently
    r = CliRunner().invoke(app, args[:-1])
    assert r.exit_code == 2 and "resume" in r.stderr


def test_finetune_rejects_a_bad_precision(tmp_path: Path) -> None:
    with gzip.open(HH, "rt") as f:
        (tmp_path / "p.jsonl").write_text("".join(next(f) for _ in range(8)))
    r = CliRunner().invoke(app, ["reward", "finetune", str(tmp_path / "p.jsonl"), "--output",
                                 str(tmp_path / "o"), "--precision", "fp8"])
    assert r.exit_code == 2 and "precision" in r.stderr


def test_stop_after_then_resume_finishes_the_run(tmp_path: Path) -> None:
    with gzip.open(HH, "rt") as f:
        (tmp_path / "p.jsonl").write_text("".join(next(f) for _ in range(12)))
    out = tmp_path / "ft"
    args = ["reward", "finetune", str(tmp_path / "p.jsonl"), "--output", str(out),
            "--max-steps", "3", "--max-length", "32", "--batch-size", "4", "--json"]
    r = CliRunner().invoke(app, [*args, "--stop-after", "1"])
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert (d["steps"], d["finished"]) == (1, False)
    r = CliRunner().invoke(app, [*args, "--resume"])
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert (d["steps"], d["finished"]) == (3, True)
    r = CliRunner().invoke(app, [*args[:-1], "--overwrite", "--stop-after", "0"])
    assert r.exit_code == 2 and "--stop-after must be at least 1" in r.stderr
