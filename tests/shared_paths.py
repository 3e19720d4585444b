"""Where the shared real data lives, wherever the checkout is.

CI puts ``shared/`` beside the checkout; a clone in a deeply nested folder has it further
up. ``PREFKIT_SHARED`` (a path to the ``shared`` folder) wins; else the nearest ancestor of
this checkout that holds ``shared/data`` is used. No test depends on the clone's path.
"""

from __future__ import annotations

import os
from pathlib import Path


def _find_shared() -> Path:
    if os.environ.get("PREFKIT_SHARED"):
        return Path(os.environ["PREFKIT_SHARED"]).resolve()
    root = Path(__file__).resolve().parents[1]  # the checkout
    for parent in root.parents:
        if (parent / "shared" / "data").is_dir():
            return parent / "shared"
    return root.parent / "shared"  # where CI puts it; tests then say the file is missing


SHARED = _find_shared()
