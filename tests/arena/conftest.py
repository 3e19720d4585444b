"""Arena fixtures live in ``arena_helpers`` (importable by the tests, which pytest's importlib
mode does not allow for a conftest)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from arena_helpers import db, servers, sqlite_db  # noqa: F401 - fixtures
