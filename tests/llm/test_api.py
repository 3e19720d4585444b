"""prefkit.llm: every public name imports and is documented; importing it is cheap."""

from __future__ import annotations

import json
import subprocess
import sys

import prefkit.llm


def test_every_public_name_imports_and_has_a_docstring() -> None:
    for name in prefkit.llm.__all__:
        obj = getattr(prefkit.llm, name)
        assert obj.__doc__, f"prefkit.llm.{name} has no docstring"


def test_importing_the_package_loads_no_client_or_model_library() -> None:
    code = ("import json, sys, prefkit.llm, prefkit.llm.types; print(json.dumps(sorted(m for m in "
            "('httpx', 'torch', 'transformers', 'starlette', 'uvicorn', 'openai') "
            "if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
