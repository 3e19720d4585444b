"""``import prefkit.arena`` is cheap (names load on first use) and every public name resolves;
``prefkit arena --help`` lists the four commands."""

from __future__ import annotations

import json
import subprocess
import sys

from arena_helpers import prefkit as run_prefkit

import prefkit.arena


def test_import_loads_no_web_or_database_stack():
    code = ("import json, sys, prefkit.arena; print(json.dumps(sorted(m for m in "
            "('starlette', 'uvicorn', 'psycopg', 'numpy', 'scipy') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_every_public_name_resolves():
    for name in prefkit.arena.__all__:
        assert getattr(prefkit.arena, name) is not None


def test_help_lists_the_commands():
    out = run_prefkit("arena", "--help").stdout
    for verb in ("serve", "add-outputs", "export", "import"):
        assert verb in out
