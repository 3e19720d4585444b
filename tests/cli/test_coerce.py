"""prefkit's fast conversion of command-line values (prefkit.cli._coerce) against typer's own.

The reference is typer's own runtime conversion (``typer._coercion.build_runtime_param``,
pydantic underneath) of the same parameter: for every parameter of every prefkit command and
a spread of inputs, both give the same value of the same type, or the same error message.
"""

from __future__ import annotations

import sys

import pytest
import typer
from typer._click import Context
from typer._click.exceptions import BadParameter
from typer._coercion import build_runtime_param

from prefkit.cli import _coerce
from prefkit.cli.main import _VERBS, _build, app

STRINGS = ["1", "0", "-3", "007", " 5", "+2", "1_000", "2.5", ".5", "1.", "-1e-3", "1e400",
           "inf", "nan", "abc", "", "true", "no", "x.csv", "-", "bradley-terry", "BRADLEY-TERRY",
           "half", "none", "min", "json"]


def _commands():
    for name in _VERBS:
        command = _build(name)
        subs = getattr(command, "commands", None)
        if subs:
            for sub in subs.values():
                yield f"{name} {sub.name}", sub
        else:
            yield name, command
    for name in ("formats", "version"):
        yield name, typer.main.get_command(app).commands[name]


def _outcome(runtime, value, param, ctx):
    try:
        out = runtime.coerce(value, param=param, ctx=ctx)
    except BadParameter as e:
        return ("error", e.format_message())
    return ("value", type(out), repr(out))  # repr: nan equals nan


def _inputs(param, tmp_path):
    d = param.type_descriptor
    values = [param.default, *STRINGS, str(tmp_path), str(tmp_path / "missing.txt"), 3, 2.5,
              True]
    choices = d.choices
    if choices:
        values += [c.value if hasattr(c, "value") else c for c in choices]
        values += [str(getattr(c, "value", c)).upper() for c in choices]
    if param.multiple or d.is_list:
        values = [(), *[(v,) for v in values if isinstance(v, str)], ("1", "abc"), ("a", "b")]
    return values


def test_installed_with_this_typer():
    """With the pinned typer the fast path is on (an upgrade that moves typer's internals
    turns it off silently in use, and fails here)."""
    assert _coerce.install()


@pytest.mark.parametrize("name,command", list(_commands()), ids=lambda x: x
                         if isinstance(x, str) else "")
def test_same_values_and_errors_as_typer(name, command, tmp_path):
    (tmp_path / "f.txt").write_text("x")
    ctx = Context(command)
    checked = 0
    for param in command.params:
        if not hasattr(param, "type_descriptor"):
            continue
        theirs = build_runtime_param(param.type_descriptor)
        param._runtime_param = None
        ours = param.get_runtime_param()
        assert type(ours).__name__ == "_Fast" or param.type_descriptor.is_file
        for value in _inputs(param, tmp_path):
            assert _outcome(ours, value, param, ctx) == _outcome(theirs, value, param, ctx), (
                name, param.name, value)
            checked += 1
    assert checked or not command.params


def test_rank_imports_no_pydantic(tmp_path):
    """The point of it: `prefkit rank` on a CSV converts its ~20 options without pydantic."""
    import subprocess

    votes = tmp_path / "v.csv"
    votes.write_text("model_a,model_b,winner\nx,y,model_a\ny,x,model_a\nx,y,tie\n")
    code = ("import sys; from prefkit.cli.main import app\n"
            "try:\n    app(['rank', sys.argv[1], '--intervals', 'none', '--top', '2'])\n"
            "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "print('pydantic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(votes)], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr
