"""The General Preference Model's link in prefkit.choice: skew-symmetric, array-agnostic,
and free of torch for numpy callers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from prefkit.choice import gpm_logit


def test_gpm_logit_is_skew_symmetric_on_numpy() -> None:
    rng = np.random.default_rng(0)
    v1, v2 = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    lam = rng.random((4, 3))
    assert np.array_equal(gpm_logit(v1, v2, lam), -gpm_logit(v2, v1, lam))
    assert np.array_equal(gpm_logit(v1, v1), np.zeros(4))
    # by hand: one block J, <J v1, v2> = v1[0] v2[1] - v1[1] v2[0]
    assert gpm_logit(np.array([2.0, 1.0]), np.array([3.0, 5.0])) == 2 * 5 - 1 * 3


def test_numpy_callers_do_not_import_torch() -> None:
    code = ("import sys, numpy as np; from prefkit.choice import gpm_logit; "
            "gpm_logit(np.ones(2), np.zeros(2)); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
