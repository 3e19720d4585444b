"""Every public name imports, and is documented."""

from __future__ import annotations

import importlib

import pytest

MODULES = ["prefkit", "prefkit.data", "prefkit.choice", "prefkit.rank", "prefkit.datasets", "prefkit.reward",
           "prefkit.align", "prefkit.align.data"]


@pytest.mark.parametrize("module", MODULES)
def test_every_public_name_imports_and_has_a_docstring(module: str) -> None:
    mod = importlib.import_module(module)
    assert mod.__doc__
    for name in mod.__all__:
        obj = getattr(mod, name)
        if callable(obj) and not isinstance(obj, type(importlib)):
            assert getattr(obj, "__doc__", None), f"{module}.{name} has no docstring"


def test_py_typed_ships() -> None:
    from importlib.resources import files

    assert files("prefkit").joinpath("py.typed").is_file()
    assert files("prefkit").joinpath("datasets/chatbotarena_20240814_counts.json").is_file()
