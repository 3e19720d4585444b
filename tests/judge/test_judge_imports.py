"""prefkit.judge imports nothing heavy (no torch, httpx, scipy, sklearn, pandas) until used,
and every public name resolves."""

from __future__ import annotations

import json
import subprocess
import sys


def test_import_is_light() -> None:
    code = ("import json, sys, prefkit.judge, prefkit.judge.analyze, prefkit.cli.judge; "
            "print(json.dumps(sorted(m for m in ('torch', 'httpx', 'scipy', 'sklearn', 'pandas', "
            "'transformers', 'jinja2') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_every_public_name_resolves() -> None:
    from prefkit import judge

    for name in judge.__all__:
        assert getattr(judge, name) is not None, name


def test_every_public_callable_has_a_docstring() -> None:
    from prefkit import judge

    assert judge.__doc__
    for name in judge.__all__:
        obj = getattr(judge, name)
        if callable(obj):
            assert getattr(obj, "__doc__", None), f"prefkit.judge.{name} has no docstring"
