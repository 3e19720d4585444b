"""Test-wide set-up: ``shared_paths`` (where the real data lives) importable from every
test module, whatever pytest's import mode."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
