"""A short fit imports no scipy: the covariance of a small Hessian is inverted with numpy
(equal to LAPACK's potri path) and scipy.sparse loads only for sparse problems."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import prefkit.rank.bradley_terry as bt


@pytest.mark.parametrize("constrained", [True, False])
def test_numpy_and_lapack_inverses_agree(constrained: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    k, n = 40, 37
    m = rng.normal(size=(k, k))
    H = m @ m.T + 0.5 * np.eye(k)
    small = bt._covariance(H, n, constrained)
    monkeypatch.setattr(bt, "_NUMPY_INVERSE_MAX", 0)
    big = bt._covariance(H, n, constrained)
    np.testing.assert_allclose(small, big, rtol=1e-10, atol=1e-12)
    v = np.zeros(k)
    v[:n] = 1 / np.sqrt(n) if constrained else 0.0
    np.testing.assert_allclose(small, np.linalg.inv(H + np.outer(v, v)) - np.outer(v, v),
                               rtol=1e-9, atol=1e-12)
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        bt._covariance(-np.eye(k), n, False)


def test_a_small_fit_imports_no_scipy(tmp_path) -> None:
    votes = tmp_path / "v.csv"
    rng = np.random.default_rng(0)
    names = [f"m{i}" for i in range(12)]
    lines = ["model_a,model_b,winner"]
    for _ in range(600):
        a, b = rng.choice(12, 2, replace=False)
        lines.append(f"{names[a]},{names[b]},{rng.choice(['model_a', 'model_b', 'tie'])}")
    votes.write_text("\n".join(lines) + "\n")
    code = ("import sys, json\n"
            "from prefkit.cli.main import app\n"
            f"sys.argv = ['prefkit', 'rank', {str(votes)!r}, '--intervals', 'none', '--json']\n"
            "try:\n    app()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy')),"
            " file=sys.stderr)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stderr.strip().splitlines()[-1]) == []
    assert len(json.loads(out.stdout)["leaderboard"]) == 12
