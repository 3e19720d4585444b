"""Preference strength from a reward-model ensemble (Secrets of RLHF II): two small reward
models trained here on a slice of PandaLM, loaded from their folders through
prefkit.reward's loading API."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest
from shared_paths import SHARED

from prefkit.inspect import read_annotations
from prefkit.inspect.strength import (
    load_reward_models,
    preference_strength,
    strength_of_annotations,
)

PANDALM = SHARED / "data" / "judge" / "pandalm" / "testset-v1.json"
N_PAIRS = 60  # the first 60 PandaLM pairs: ~200 texts to embed with the offline MiniLM


@pytest.fixture(scope="module")
def ann():
    if not PANDALM.exists():
        pytest.skip(f"{PANDALM} is not there")
    return read_annotations(PANDALM).select(np.arange(N_PAIRS))


@pytest.fixture(scope="module")
def folders(ann, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from prefkit.reward.backbones import FrozenEncoder
    from prefkit.reward.train import RewardTrainConfig, train_reward_model

    cache = tmp_path_factory.getbasetemp() / "minilm-cache"  # shared with the other tests
    pairs = ann.to_text_pairs(min_votes=2)
    out = []
    for name, feats in (("joint_stats", ("joint", "stats")), ("stats", ("stats",))):
        folder = tmp_path_factory.mktemp(name)
        cfg = RewardTrainConfig(features=feats, epochs=30, patience=0)
        train_reward_model(cfg, folder, pairs, encoder=FrozenEncoder(cache_dir=cache,
                                                                      features=feats),
                           progress=False)
        out.append(folder)
    return out


def test_strength_is_the_mean_and_std_of_reward_margins(ann, folders) -> None:
    from prefkit.reward.model import RewardModel

    models = load_reward_models(folders)
    s = strength_of_annotations(ann, models)
    pairs = ann.to_text_pairs(min_votes=1, drop_identical=False)
    assert s.margins.shape == (2, len(pairs)) and s.n_left_out == N_PAIRS - len(pairs)
    # independently: each folder loaded again and scored on the majority pairs
    d = []
    for f in folders:
        m = RewardModel.load(f)
        d.append(m.score(pairs.messages_prompt, pairs.chosen)
                 - m.score(pairs.messages_prompt, pairs.rejected))
    d = np.array(d)
    np.testing.assert_allclose(s.mean, d.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(s.std, np.abs(d[0] - d[1]) / 2, rtol=1e-6, atol=1e-6)
    summary = s.to_dict()
    assert summary["n_models"] == 2 and summary["n_pairs"] == len(pairs)
    assert sum(g["n"] for g in summary["deciles"]) == len(pairs)
    assert summary["negative_share"] == pytest.approx((d.mean(0) < 0).mean())
    # trained on these pairs, the ensemble prefers the human choice on most of them
    assert summary["mean"] > 0 and summary["negative_share"] < 0.5


def test_one_model_twice_has_no_spread_and_swapping_negates(ann, folders) -> None:
    m = load_reward_models(folders[:1])[0]
    pairs = ann.to_text_pairs(min_votes=2)
    p, c, r = pairs.messages_prompt[:8], pairs.chosen[:8], pairs.rejected[:8]
    twice = preference_strength([m, m], p, c, r)
    np.testing.assert_allclose(twice.std, 0.0, atol=1e-12)
    swapped = preference_strength([m], p, r, c)
    np.testing.assert_allclose(swapped.mean, -twice.mean, atol=1e-9)
    with pytest.raises(ValueError, match="at least one reward model"):
        preference_strength([], p, c, r)


def test_report_and_cli_with_the_ensemble(ann, folders, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from prefkit.cli.main import app
    from prefkit.inspect import inspect_annotations

    models = load_reward_models(folders)
    rep = inspect_annotations(ann, reward_models=models, rounds=0)
    want = strength_of_annotations(ann, models).to_dict()
    assert rep.to_dict()["preference_strength"]["mean"] == pytest.approx(want["mean"])
    png = rep.plot(tmp_path / "r.png")
    assert png.stat().st_size > 20_000
    # the same through the command line, the folders as --reward-model
    p = tmp_path / "slice.json"
    rows = json.loads(PANDALM.read_text())[:N_PAIRS]
    p.write_text(json.dumps(rows, indent=1))
    args = ["inspect", str(p), "--json", "--rounds", "0"]
    for f in folders:
        args += ["--reward-model", str(f)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.stderr
    got = json.loads(res.stdout)["preference_strength"]
    assert got["n_models"] == 2 and got["mean"] == pytest.approx(want["mean"], rel=1e-6)
