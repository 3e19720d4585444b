"""Counts in the arena's command-line messages agree with their nouns: one vote imported,
held and exported says '1 vote' (it said '1 votes'); a real SQLite arena database."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from prefkit.cli.main import app

runner = CliRunner()


def _said(r) -> str:
    return " ".join((r.stderr + r.stdout).split())


def test_one_vote_imported_held_and_exported(tmp_path: Path) -> None:
    votes = tmp_path / "votes.jsonl"
    votes.write_text(json.dumps({"model_a": "alpha", "model_b": "bravo", "winner": "model_a"})
                     + "\n")
    db = str(tmp_path / "arena.db")
    r = runner.invoke(app, ["arena", "import", str(votes), "--db", db])
    assert r.exit_code == 0, r.output
    assert f"imported 1 vote into {db}" in _said(r)
    out = tmp_path / "export.jsonl"
    r = runner.invoke(app, ["arena", "export", str(out), "--db", db])
    assert r.exit_code == 0, r.output
    assert f"wrote 1 vote to {out} (0 set aside" in _said(r)
    assert len(out.read_text().splitlines()) == 1
    r = runner.invoke(app, ["arena", "import", str(votes), "--db", db])
    assert r.exit_code == 0, r.output
    assert "imported 1 vote" in _said(r) and "already held 1 vote;" in _said(r)
