"""DAPO's dynamic sampling (arXiv:2503.14476, section 3.2): groups whose rewards are all
equal are dropped and the batch refilled from more prompts, at most max_resample_rounds
extra rounds; counts by hand, the loop's metrics, resume equals uninterrupted."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from rl_sums import ANSWERS, PROMPTS, sums_reward
from transformers import AutoModelForCausalLM, AutoTokenizer

from prefkit.rl.config import RLConfig
from prefkit.rl.dynamic import informative_groups, refill
from prefkit.rl.generate import Samples
from prefkit.rl.train import train_rl

TASK = {"prompt": PROMPTS, "answer": ANSWERS}
NAN = math.nan


def test_informative_groups_by_hand() -> None:
    r = torch.tensor([1, 1, 0, 0, 1, 1, 0, 1, NAN, 1, NAN, NAN, 0.5, NAN])
    # groups of 2: [1,1] flat, [0,0] flat, [1,1] flat, [0,1] yes, [nan,1] one scorable,
    # [nan,nan] none, [0.5,nan] one scorable
    assert informative_groups(r, 2).tolist() == [False, False, False, True, False, False,
                                                 False]
    assert informative_groups(torch.tensor([0, 0, 1, NAN, 1, 1]), 3).tolist() == [True, False]


def _draw(rewards: list[list[float]], prompts: list[int], g: int = 2):
    """A draw of len(rewards) prompts (tokens: the prompt id) with the given group rewards."""
    p = len(rewards)
    ids = torch.tensor([[10 + i] for i in prompts])
    comp = torch.tensor([[100 + 10 * i + j] for i in prompts for j in range(g)])
    s = Samples(ids, torch.ones_like(ids), comp, torch.ones_like(comp, dtype=torch.bool),
                torch.full(comp.shape, -0.5), [f"{i}.{j}" for i in prompts for j in range(g)],
                torch.zeros(p * g, dtype=torch.bool), g)
    flat = torch.tensor([x for row in rewards for x in row], dtype=torch.float32)
    return s, flat, {"r": flat.double().numpy()}, list(prompts)


def test_refill_keeps_informative_groups_in_order_and_cuts_to_the_target() -> None:
    rounds = [_draw([[1, 1], [0, 1], [0, 0]], [0, 1, 2]),     # 1 informative
              _draw([[0, 0], [1, 1], [0, 0]], [3, 4, 5]),     # none
              _draw([[1, 0], [0.5, 0], [1, 0]], [6, 7, 8])]   # 3: two needed
    calls: list[int] = []

    def draw(r):
        calls.append(r)
        return rounds[r]

    (s, rewards, parts, mine), counts = refill(draw, target=3, max_rounds=5, pad_id=0)
    assert calls == [0, 1, 2]  # stops once full
    assert mine == [1, 6, 7] and s.num_prompts == 3
    assert s.prompt_ids[:, 0].tolist() == [11, 16, 17]
    assert s.completion_ids[:, 0].tolist() == [110, 111, 160, 161, 170, 171]
    assert s.texts == ["1.0", "1.1", "6.0", "6.1", "7.0", "7.1"]
    assert rewards.tolist() == [0, 1, 1, 0, 0.5, 0] and np.array_equal(parts["r"],
                                                                       rewards.numpy())
    assert counts == {"groups_drawn": 9, "groups_dropped": 5, "groups_kept": 3,
                      "resample_rounds": 2}


def test_refill_stops_at_max_rounds() -> None:
    flat = [_draw([[1, 1], [0, 1]], [0, 1]), _draw([[0, 0], [0, 0]], [2, 3]),
            _draw([[0, 1], [0, 1]], [4, 5])]
    (_, _, _, mine), counts = refill(lambda r: flat[r], target=2, max_rounds=1, pad_id=0)
    assert mine == [1]  # a short batch after the last round
    assert counts == {"groups_drawn": 4, "groups_dropped": 3, "groups_kept": 1,
                      "resample_rounds": 1}
    none = _draw([[1, 1], [0, 0]], [0, 1])
    (_, _, _, mine), counts = refill(lambda r: none, target=2, max_rounds=2, pad_id=0)
    assert mine == [0, 1] and counts["groups_kept"] == 0 and counts["groups_drawn"] == 6


def _load(folder: Path):
    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def test_loop_refills_the_batch(sft_folder: Path, tmp_path: Path) -> None:
    """Same seed, with and without refill: without it some groups are flat (dropped); with
    it every step trains on batch_size informative groups, drawn from more prompts, and
    episodes count every completion sampled."""
    base = {"num_generations": 4, "batch_size": 4, "max_new_tokens": 3, "max_steps": 4,
            "learning_rate": 5e-3, "drop_zero_std_groups": True}
    model, tok = _load(sft_folder)
    plain = train_rl(model, TASK, sums_reward, tokenizer=tok, output_dir=tmp_path / "plain",
                     progress=False, config=RLConfig(**base))
    assert max(r["frac_reward_zero_std"] for r in plain.history) > 0
    assert "groups_drawn" not in plain.history[0]
    model, tok = _load(sft_folder)
    cfg = RLConfig(**base, max_resample_rounds=8)
    res = train_rl(model, TASK, sums_reward, tokenizer=tok, output_dir=tmp_path / "dyn",
                   progress=False, config=cfg)
    rows = res.history
    assert all(r["groups_kept"] == 4 and r["frac_reward_zero_std"] == 0 for r in rows)
    assert all(r["groups_drawn"] == 4 * (r["resample_rounds"] + 1) for r in rows)
    assert all(r["groups_drawn"] - r["groups_dropped"] >= 4 for r in rows)
    assert sum(r["resample_rounds"] for r in rows) > 0  # some step did refill
    assert rows[-1]["episodes"] == 4 * sum(r["groups_drawn"] for r in rows)
    # resume equals uninterrupted (the extra prompts taken from the data order included)
    model, tok = _load(sft_folder)
    train_rl(model, TASK, sums_reward, tokenizer=tok, output_dir=tmp_path / "part",
             progress=False, config=cfg, stop_after=2)
    model2, tok = _load(sft_folder)
    rest = train_rl(model2, TASK, sums_reward, tokenizer=tok, output_dir=tmp_path / "part",
                    progress=False, config=cfg, resume=True)
    timing = {"elapsed_s", "sample_s", "update_s"}
    assert [{k: v for k, v in r.items() if k not in timing} for r in rest.history] == \
        [{k: v for k, v in r.items() if k not in timing} for r in rows]


def test_refill_needs_dropping() -> None:
    with pytest.raises(ValueError, match="set drop_zero_std_groups=True"):
        RLConfig(max_resample_rounds=2)


def test_cli_max_resample_rounds(sft_folder: Path, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from prefkit.cli.main import app

    task = tmp_path / "sums.jsonl"
    task.write_text("".join(json.dumps({"prompt": q, "answer": a}) + "\n"
                            for q, a in zip(PROMPTS, ANSWERS, strict=True)))
    f = tmp_path / "rewards.py"
    f.write_text("def right(prompts, completions, answer, **kwargs):\n"
                 "    return [float(c.strip() == a) for c, a in zip(completions, answer)]\n")
    out = CliRunner().invoke(app, [
        "rl", "--model", str(sft_folder), "--task", str(task), "--reward", f"{f}:right",
        "--output", str(tmp_path / "run"), "--num-generations", "4", "--batch-size", "2",
        "--max-new-tokens", "3", "--max-steps", "2", "--max-resample-rounds", "3", "--json"])
    assert out.exit_code == 0, out.output
    m = json.loads(out.stdout)["metrics"]
    assert m["groups_kept"] <= 2 and m["groups_drawn"] == 2 * (m["resample_rounds"] + 1)
    info = json.loads((tmp_path / "run" / "prefkit_rl.json").read_text())["config"]
    assert info["max_resample_rounds"] == 3 and info["drop_zero_std_groups"] is True
