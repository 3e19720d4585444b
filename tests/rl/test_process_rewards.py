"""Dense step rewards (DeepSeekMath's process supervision): step spans, their tokens and the
per-token advantages, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from prefkit.align.tiny import char_tokenizer
from prefkit.rl.process_rewards import (
    ProcessReward,
    process_advantages,
    step_spans,
    step_token_ends,
)


def test_step_spans_and_their_tokens() -> None:
    text = "2+2=4\n\n4*3=12\n\n"
    assert step_spans(text) == [("2+2=4", 5), ("4*3=12", 13)]
    assert step_spans("no separator") == [("no separator", 12)]
    tok = char_tokenizer()  # one token per character: the token index is the char index
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert step_token_ends(ids, [5, 13], tok) == [4, len(ids) - 1]


def test_process_advantages_by_hand() -> None:
    # one group of two completions; steps rewards [1, 0] (ends 1, 3) and [1] (end 2)
    # R = {1, 0, 1}: mean 2/3, unbiased std sqrt(1/3); r~ = 1/3/s, -2/3/s, 1/3/s
    s = math.sqrt(1 / 3) + 1e-4
    adv = process_advantages([[1.0, 0.0], [1.0]], [[1, 3], [2]], (2, 5), num_generations=2)
    a, b = (1 / 3) / s, (-2 / 3) / s
    want = torch.tensor([[a + b, a + b, b, b, 0.0], [a, a, a, 0.0, 0.0]])
    torch.testing.assert_close(adv, want)
    # NaN steps add nothing and stay out of the statistics; constant groups give 0
    adv = process_advantages([[1.0, float("nan")], [0.0]], [[0, 1], [0]], (2, 2),
                             num_generations=2)
    assert adv[0, 1] == 0 and adv[0, 0] > 0 > adv[1, 0]
    assert process_advantages([[0.5], [0.5]], [[0], [0]], (2, 1),
                              num_generations=2).abs().sum() == 0


def test_a_process_reward_function() -> None:
    def score(prompts, steps):  # P(right): steps containing '=4' are right
        return [np.array([1.0 if "=4" in s else 0.0 for s in st]) for st in steps]

    pr = ProcessReward(score)
    spans, rewards = pr(["q", "q"], ["2+2=4\n\n4*3=12", "2+2=5"])
    assert [[s for s, _ in sp] for sp in spans] == [["2+2=4", "4*3=12"], ["2+2=5"]]
    assert rewards == [[1.0, 0.0], [0.0]]
    bad = ProcessReward(lambda p, st: [np.array([1.0])] * len(st))
    with pytest.raises(ValueError, match="1 score for 2 steps"):
        bad(["q"], ["a\n\nb"])


def test_a_prefkit_prm_folder_as_the_process_reward(tmp_path, monkeypatch) -> None:
    # a frozen-MiniLM PRM (prefkit.process) trained on step-labelled sums, loaded by folder,
    # drives the loop's dense advantages (plumbing: the folder, its separator, its scores)
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from rl_sums import ANSWERS, PROMPTS, sft_noisy_sums

    from prefkit.process import StepSolutions
    from prefkit.process.frozen import FrozenPRMConfig, train_frozen_prm
    from prefkit.rl import RLConfig, train_rl

    monkeypatch.setenv("PREFKIT_CACHE_DIR", str(tmp_path / "cache"))
    data = StepSolutions()
    line = 0
    for p, a in zip(PROMPTS, ANSWERS, strict=True):
        for guess in (a, str((int(a) + 3) % 10), str((int(a) + 7) % 10)):
            line += 1
            data.add(line, p, [guess], [float(guess == a)])
    train_frozen_prm(FrozenPRMConfig(epochs=80, hidden=0), tmp_path / "prm", data,
                     progress=False)
    prm = ProcessReward.load(tmp_path / "prm")
    assert prm.name == "prm:prm"
    _, scores = prm(PROMPTS[:5] * 2, ANSWERS[:5] + ["9", "8", "0", "1", "2"])
    right, wrong = [s[0] for s in scores[:5]], [s[0] for s in scores[5:]]
    assert np.mean(right) > np.mean(wrong)
    model, tok = sft_noisy_sums(steps=50)
    res = train_rl(model, {"prompt": PROMPTS, "answer": ANSWERS},
                   lambda completions, **kw: [0.0] * len(completions), tokenizer=tok,
                   output_dir=tmp_path / "run", progress=False,
                   process_reward=tmp_path / "prm",
                   config=RLConfig(num_generations=4, batch_size=4, max_new_tokens=3,
                                   max_steps=2))
    assert all(0.0 <= r["process_reward"] <= 1.0 for r in res.history)
