"""Command-line values converted without building a pydantic schema per parameter.

typer (0.22 and later) converts every parameter's value -- the defaults too -- through a
pydantic ``TypeAdapter`` built on first use: importing pydantic and building ~20 adapters
costs ~0.15 s of a ~0.5 s `prefkit rank --intervals none` (benchmarks/cli_speed.py). Nearly
every value on prefkit's command lines is already of its type (a default) or a plain
string, int, float, path, choice or list of those. :func:`install` gives typer's parameters
a converter that settles those cases with typer's own helpers (``coerce_cli_choice``,
``coerce_cli_path``) and hands everything else -- a malformed number, an unknown choice, a
parser, a file, a date, a tuple -- to typer's own pydantic path, so the values and every
error message stay typer's (tests/cli/test_coerce.py compares both on every parameter of
every command). If typer's internals are not what this module expects, :func:`install`
does nothing and typer converts as before.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin

_INT = re.compile(r"-?(0|[1-9][0-9]*)\Z")
_FLOAT = re.compile(r"-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\Z")
_MISS = object()


def _leaf(annotation: Any, info: Any, value: Any, param: Any, ctx: Any) -> Any:
    """``value`` converted as typer would, or ``_MISS`` where only typer's path can say."""
    from typer._param_types import coerce_cli_choice, coerce_cli_path

    if info.parser is not None:
        return _MISS
    if annotation is str:
        return value if isinstance(value, str) else _MISS
    if annotation is int or annotation is float:
        if type(value) is annotation:
            number = value
        elif isinstance(value, str) and (_INT if annotation is int else _FLOAT).match(value):
            number = annotation(value)
        else:
            return _MISS
        if info.clamp or (info.min is not None and number < info.min) or (
                info.max is not None and number > info.max):
            return _MISS  # typer clamps or words the range error
        return number
    if annotation is bool:
        return value if isinstance(value, bool) else _MISS
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, str):
            return _MISS
        try:
            return coerce_cli_choice(value, choices=list(annotation),
                                     case_sensitive=info.case_sensitive, ctx=ctx)
        except ValueError:
            return _MISS  # typer's message lists the choices
    if annotation is Path and info.path_type is None:
        if not isinstance(value, (str, Path)):
            return _MISS
        # typer's own check of exists/file_okay/dir_okay/readable/..., its own errors
        return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
    return _MISS


def _convert(annotation: Any, info: Any, value: Any, param: Any, ctx: Any) -> Any:
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        items = value if isinstance(value, (list, tuple)) else [value]
        out = [_leaf(item, info, v, param, ctx) for v in items]
        return _MISS if any(v is _MISS for v in out) else out
    return _leaf(annotation, info, value, param, ctx)


def install() -> bool:
    """Give typer's parameters the fast converter; True if it was installed."""
    try:
        from typer import _param_types  # noqa: F401
        from typer._coercion import RuntimeParam, build_runtime_param
        from typer.core import _TyperParameter
    except ImportError:  # another typer: keep its own conversion
        return False
    if getattr(_TyperParameter, "_prefkit_fast", False):
        return True
    if not hasattr(_TyperParameter, "get_runtime_param"):
        return False

    class _Fast(RuntimeParam):  # type: ignore[misc]
        """Plain values here; the rest through typer's runtime parameter."""

        def __init__(self, descriptor: Any) -> None:
            object.__setattr__(self, "parameter_info", descriptor.parameter_info)
            object.__setattr__(self, "annotation", descriptor.annotation)
            object.__setattr__(self, "descriptor", descriptor)
            object.__setattr__(self, "typer_param", None)

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            out = _convert(self.annotation, self.parameter_info, value, param, ctx)
            if out is not _MISS:
                return out
            if self.typer_param is None:
                object.__setattr__(self, "typer_param", build_runtime_param(self.descriptor))
            return self.typer_param._coerce_value(value, param=param, ctx=ctx)

    def get_runtime_param(self: Any) -> Any:
        if self._runtime_param is None:
            d = self.type_descriptor
            self._runtime_param = (build_runtime_param(d) if d.file_annotation is not None
                                   else _Fast(d))
        return self._runtime_param

    _TyperParameter.get_runtime_param = get_runtime_param
    _TyperParameter._prefkit_fast = True
    return True
