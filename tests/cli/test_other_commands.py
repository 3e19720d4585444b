"""`prefkit diagnose`, `propose`, `simulate`, `formats` on real data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shared_paths import SHARED
from typer.testing import CliRunner

from prefkit.cli.main import app

DATA = SHARED / "data" / "arena"
runner = CliRunner()


def test_diagnose_reports_components_and_cycles() -> None:
    r = runner.invoke(app, ["diagnose", str(DATA / "international_football_results.csv"),
                            "--influence-by", "none", "--json", "--simulations", "20"])
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["connectivity"]["n_components"] == 2
    assert sorted(d["connectivity"]["components"][1]) == ["Aymara", "Mapuche", "Maule Sur"]


def test_diagnose_finds_influential_workers() -> None:
    r = runner.invoke(app, ["diagnose", str(DATA / "llmfao_crowd_comparisons.csv"), "--simulations", "0"])
    assert r.exit_code == 0, r.stderr
    assert "59 items, 8,931 votes" in r.stdout and "most influential annotators" in r.stdout


def test_propose_pairs_and_ksets() -> None:
    r = runner.invoke(app, ["propose", str(DATA / "arena_hard_battles.jsonl"), "-n", "3", "--json"])
    assert r.exit_code == 0, r.stderr
    props = json.loads(r.stdout)["proposals"]
    assert len(props) == 3 and all(len(p) == 2 and p[0] != p[1] for p in props)
    assert len({tuple(p) for p in props}) == 3
    r = runner.invoke(app, ["propose", "-n", "2", "-k", "4", "--json"])
    props = json.loads(r.stdout)["proposals"]
    assert [len(set(p)) for p in props] == [4, 4]


def test_simulate_counts_votes_to_target(tmp_path: Path) -> None:
    png = tmp_path / "sim.png"
    r = runner.invoke(app, ["simulate", str(DATA / "arena_hard_battles.jsonl"), "--target", "0.9",
                            "--max-votes", "3000", "--batch", "50", "--runs", "1", "--json",
                            "--plot", str(png)])
    assert r.exit_code == 0, r.stderr
    d = json.loads(r.stdout)
    assert set(d["strategies"]) == {"active", "random", "elo"}
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_formats_lists_every_reader() -> None:
    from prefkit.data import FORMATS

    r = runner.invoke(app, ["formats"])
    for name in FORMATS:
        assert name in r.stdout


@pytest.mark.parametrize("cmd", ["diagnose", "propose", "simulate"])
def test_help_has_examples(cmd: str) -> None:
    r = runner.invoke(app, [cmd, "--help"])
    assert r.exit_code == 0 and "Examples" in r.stdout


@pytest.mark.parametrize("args", [[], ["rank"], ["diagnose"], ["propose"], ["simulate"],
                                  ["align"], ["formats"], ["version"], ["reward", "train"],
                                  ["reward", "eval"], ["reward", "score"],
                                  ["reward", "finetune"]])
def test_every_help_ends_with_its_examples(args: list[str]) -> None:
    # issue 9.14: examples came last only in align and reward help, first elsewhere, and
    # the top level had none
    r = runner.invoke(app, [*args, "--help"], terminal_width=200)
    assert r.exit_code == 0
    text = r.stdout
    assert "Examples:" in text, args
    assert text.index("Examples:") > text.index("Options"), args
    assert "prefkit" in text[text.index("Examples:"):]
