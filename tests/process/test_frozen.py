"""The frozen-encoder PRM (offline MiniLM): features, a run that resumes to the same
weights as an uninterrupted one, soft labels through step_mse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from prefkit.process import FrozenPRMConfig, load_prm, train_frozen_prm
from prefkit.process.frozen import prefix_texts, step_features
from prefkit.process.synthetic import make_solutions


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from prefkit.reward.backbones import FrozenEncoder

    return FrozenEncoder(cache_dir=tmp_path_factory.mktemp("emb"))


def test_features(encoder) -> None:  # type: ignore[no-untyped-def]
    f = step_features(encoder, ["Compute 1 + 1."], [["1 + 1 = 2", "The answer is 2"]])
    assert f[0].shape == (2, 2 * 384 + 1)
    e = encoder.encode(prefix_texts("Compute 1 + 1.", ["1 + 1 = 2", "The answer is 2"]))
    p = encoder.encode(["Compute 1 + 1."])
    np.testing.assert_allclose(f[0][:, :384], e, rtol=1e-6)
    np.testing.assert_allclose(f[0][0, 384:768], e[0] - p[0], rtol=1e-5, atol=1e-6)
    assert f[0][1, -1] == pytest.approx(np.log(2.0))


def test_resume_equals_uninterrupted(encoder, tmp_path: Path) -> None:  # type: ignore
    data, _ = make_solutions(40, np.random.default_rng(0))
    cfg = FrozenPRMConfig(epochs=6, patience=100, batch_size=32, dropout=0.3)
    whole = train_frozen_prm(cfg, tmp_path / "a", data, encoder=encoder, progress=False)
    part = train_frozen_prm(cfg, tmp_path / "b", data, encoder=encoder, progress=False,
                            stop_after=3)
    assert part == {"finished": False, "epochs_run": 3, "steps": part["steps"]}
    again = train_frozen_prm(cfg, tmp_path / "b", data, encoder=encoder, progress=False,
                             resume=True)
    assert again["finished"] and again["threshold"] == whole["threshold"]
    a, b = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("a", "b"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").open()]
    assert [r["epoch"] for r in rows] == list(range(6))
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]


def test_soft_labels(encoder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data, _ = make_solutions(30, np.random.default_rng(1))
    data.labels = [[0.8 if x == 1.0 else 0.1 if x == 0.0 else x for x in row]
                   for row in data.labels]
    assert data.soft
    s = train_frozen_prm(FrozenPRMConfig(epochs=3, loss="step_mse"), tmp_path / "soft", data,
                         encoder=encoder, progress=False)
    prm = load_prm(tmp_path / "soft", cache_dir=tmp_path / "cache")
    got = prm.score(data.prompts[:3], data.steps[:3])
    assert [len(g) for g in got] == [len(x) for x in data.steps[:3]] and s["finished"]
