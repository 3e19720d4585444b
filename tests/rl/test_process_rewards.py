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
    with pytest.raises(ValueError, match="1 scores for 2 steps"):
        bad(["q"], ["a\n\nb"])
