"""The campaign tests' table runner: each row is one ``prefkit`` command run in-process (typer's
CliRunner) from a prepared tree, with the exit code and the words its output must hold; a
refused command (exit 2) must say so on stderr and leave the tree as it was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def invoke(args: list[str], input: str | None = None) -> Any:
    from typer.testing import CliRunner

    from prefkit.cli.main import app

    return CliRunner().invoke(app, args, input=input)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def check_row(tree: Path, cmd: str, code: int, words: list[str],
              monkeypatch: pytest.MonkeyPatch, *, unset: tuple[str, ...], flat: bool = True,
              json_ok: bool = True, json_refused: bool = True) -> None:
    """Run ``prefkit CMD`` in ``tree`` (offline, the ``unset`` variables removed) and check
    it: no traceback, exit ``code``, every word in the output (``flat``: also across the line
    breaks of typer's panels), and for exit 2 an error on stderr and ``tree`` unchanged.
    ``json_ok`` / ``json_refused``: a ``--json`` command's stdout is JSON when it succeeds /
    empty or JSON when it is refused."""
    monkeypatch.chdir(tree)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in unset:
        monkeypatch.delenv(var, raising=False)
    before = snapshot(tree)
    r = invoke(cmd.split(" "))
    text = r.stdout + r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit), \
        f"traceback: {r.exception!r}\n{text[-2000:]}"
    assert r.exit_code == code, text[-2000:]
    joined = " ".join(text.split()) if flat else text  # typer's panels wrap at the width
    for w in words:
        assert w in text or w in joined, f"{w!r} not in:\n{text[-2000:]}"
    if json_ok and code == 0 and "--json" in cmd:  # notes on stderr: stdout is the JSON
        json.loads(r.stdout)
    if code == 2:
        assert "error" in r.stderr.lower() or "Invalid value" in r.stderr, r.stderr
        assert snapshot(tree) == before, "a refused command changed the tree"
        if json_refused and "--json" in cmd:
            assert not r.stdout.strip() or json.loads(r.stdout) is not None
