"""Fixtures of the online RL tests (the helpers live in rl_sums.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # rl_sums, whatever the import mode
from rl_sums import sft_noisy_sums


@pytest.fixture(scope="session")
def sft_folder(tmp_path_factory) -> Path:
    """The SFT start of :mod:`rl_sums` as a model folder (with its tokenizer)."""
    model, tok = sft_noisy_sums()
    out = tmp_path_factory.mktemp("sft") / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
