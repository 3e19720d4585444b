"""prefkit: learn from preferences — rank, model, align."""

from __future__ import annotations

import importlib
import sys

TYPE_CHECKING = False  # typing costs an import; mypy treats this name as True
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__"]


def _lazy_exports(
    package: str, exports: Mapping[str, Iterable[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """PEP 562 ``__getattr__`` and ``__dir__`` for a package whose public names live in
    submodules: ``exports`` maps a submodule to the names it defines. The submodule is
    imported on the first access to one of its names, and the value is then kept in the
    package, so ``import prefkit.rank`` costs nothing until a name is used (``from
    prefkit.rank import fit_bradley_terry`` imports ``prefkit.rank.bradley_terry`` only).
    """
    where = {name: module for module, names in exports.items() for name in names}
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__
