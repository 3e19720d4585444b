"""Importing prefkit does no heavy work: `prefkit --help` and `prefkit rank` start fast.

Each check runs in a fresh interpreter (``sys.modules`` of this test process already holds
whatever other tests imported).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Modules no package import may pull in: each costs 0.1-2 s, and only some commands
#: (or none: duckdb) need them.
HEAVY = [
    "scipy.stats", "scipy.optimize", "pandas", "torch", "matplotlib", "transformers",
    "sentence_transformers", "datasets", "accelerate", "peft", "duckdb", "rich.progress",
    "rich.live", "pydantic",
]


def _loaded_after(statement: str) -> list[str]:
    code = (f"import json, sys; {statement}; "
            f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("module", [
    "prefkit", "prefkit.rank", "prefkit.data", "prefkit.choice", "prefkit.reward",
    "prefkit.align", "prefkit.cli.main",
])
def test_package_import_loads_nothing_heavy(module: str) -> None:
    assert _loaded_after(f"import {module}") == []


@pytest.mark.parametrize("module", ["prefkit", "prefkit.rank", "prefkit.data", "prefkit.choice"])
def test_package_import_does_not_load_scipy_or_pyarrow(module: str) -> None:
    code = (f"import sys, {module}; "
            "print(sorted(m for m in ('scipy', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_fit_loads_only_what_it_needs(tmp_path: Path) -> None:
    # the `prefkit rank --intervals none` path: stream the Parquet file, fit; no statistics
    # module, no pandas (pyarrow's Array.to_numpy would import it), no bootstrap machinery
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    p = tmp_path / "votes.parquet"
    pq.write_table(pa.table({"model_a": ["x", "y", "z", "x", None], "model_b": ["y", "z", "x", "z", "y"],
                             "winner": ["model_a", "model_b", "tie", "model_a", "tie"]}), p)
    stmt = ("from prefkit.data import read_votes; from prefkit.rank import fit_bradley_terry; "
            f"res = read_votes({str(p)!r}, aggregate=True, skip_invalid=True); "
            "assert res.format == 'parquet-stream' and res.n_skipped == 1; "
            "fit_bradley_terry(res.votes)")
    assert _loaded_after(stmt) == []


def test_help_lists_every_command_without_loading_them() -> None:
    code = ("import sys; sys.argv = ['prefkit', '--help']; from prefkit.cli.main import app\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            f"print('LOADED', sorted(m for m in {HEAVY + ['numpy', 'scipy', 'pyarrow']!r} "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "COLUMNS": "200", "TERM": "dumb"})
    for command in ("rank", "diagnose", "propose", "simulate", "reward", "align", "formats",
                    "version"):
        assert f" {command} " in out.stdout, out.stdout
    assert out.stdout.strip().splitlines()[-1] == "LOADED []"


@pytest.mark.parametrize("module", ["prefkit.rank", "prefkit.data", "prefkit.choice",
                                    "prefkit.reward", "prefkit.align"])
def test_lazy_names_match_all(module: str) -> None:
    # every public name resolves (the lazy table and __all__ agree), dir() lists them
    mod = importlib.import_module(module)
    assert len(set(mod.__all__)) == len(mod.__all__)
    assert set(mod.__all__) <= set(dir(mod))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mod.nope  # noqa: B018


def test_connectivity_stays_the_function() -> None:
    # `connectivity` names both a submodule and the function exported from it
    import prefkit.rank
    import prefkit.rank.bradley_terry  # noqa: F401  (imports the submodule)

    assert callable(prefkit.rank.connectivity)
    assert prefkit.rank.connectivity.__module__ == "prefkit.rank.connectivity"


def test_help_lines_of_lazy_verbs_match_their_commands() -> None:
    # `prefkit --help` shows each verb's line from prefkit.cli.main._VERBS without importing
    # the verb; the line must be what the verb's own help says
    import inspect

    from prefkit.cli.main import _VERBS, _build

    for name, (_, _, line, _) in _VERBS.items():
        command = _build(name)
        first = inspect.cleandoc(command.help or "").split("\n\n")[0].replace("\n", " ")
        assert line == first, name
