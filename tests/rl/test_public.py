"""Every public name of prefkit.rl imports, and importing the package costs nothing."""

from __future__ import annotations

import subprocess
import sys

import prefkit.rl


def test_every_public_name_imports() -> None:
    for name in prefkit.rl.__all__:
        assert getattr(prefkit.rl, name) is not None, name
    assert sorted(prefkit.rl.__all__) == sorted(set(prefkit.rl.__all__))


def test_import_is_lazy() -> None:
    code = "import sys, prefkit.rl; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
