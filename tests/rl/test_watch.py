"""The watch: its rule on hand-made sequences, its statistics against scipy / statsmodels'
formulas, and on real runs: a planted length reward is flagged, an honest one is not."""

from __future__ import annotations

import copy
import math

import pytest
from rl_sums import ANSWERS, PROMPTS, sft_noisy_sums, sums_reward
from scipy import stats

from prefkit.rl import RLConfig, parse_reward, train_rl
from prefkit.rl.tasks import Task
from prefkit.rl.watch import Watch, two_proportion_p, wilson

TASK = Task(PROMPTS, {"answer": ANSWERS})


def test_wilson_and_the_two_proportion_test() -> None:
    # Wilson (1927) interval, as statsmodels' proportion_confint(method="wilson"):
    # 30 of 100 -> [0.2189, 0.3958]
    low, high = wilson(0.3, 100)
    assert (round(low, 4), round(high, 4)) == (0.2189, 0.3958)
    # 99%: centre (0.3 + z^2/200) / (1 + z^2/100) = 0.31244, half-width 0.11498 by hand
    assert wilson(0.3, 100, z=2.5758293035489004) == pytest.approx((0.1975, 0.4274), abs=1e-4)
    assert wilson(0.5, 0) == (0.0, 1.0)  # no trials: nothing known
    # pooled z-test: 60/100 vs 45/100 -> z = 0.15 / sqrt(0.525 * 0.475 * 0.02)
    z = 0.15 / math.sqrt(0.525 * 0.475 * 2 / 100)
    assert two_proportion_p(0.6, 0.45, 100) == pytest.approx(stats.norm.sf(z), rel=1e-12)
    assert two_proportion_p(0.5, 0.5, 100) == pytest.approx(0.5)


def _rule(rows: list[tuple[float, float]], window: int = 3) -> list[int]:
    w = Watch(TASK, parse_reward(sums_reward), window=window)
    return [w.check({"watch/reward": r, "watch/success": s, "watch/completions": 100})[
        "watch/flag"] for r, s in rows]


def test_the_rule_on_hand_sequences() -> None:
    # proxy up, checker down by 0.3 on 100 completions: flagged once the window is full
    assert _rule([(0.1, 0.5), (0.5, 0.4), (0.9, 0.2)]) == [0, 0, 1]
    # both rise (honest): never
    assert _rule([(0.1, 0.1), (0.3, 0.3), (0.5, 0.5), (0.6, 0.6)]) == [0, 0, 0, 0]
    # checker falls a little (not significant on 100): not flagged
    assert _rule([(0.1, 0.5), (0.2, 0.5), (0.3, 0.47)]) == [0, 0, 0]
    # checker falls while the proxy falls too: no over-optimisation
    assert _rule([(0.9, 0.6), (0.5, 0.4), (0.2, 0.1)]) == [0, 0, 0]
    with pytest.raises(ValueError, match="window"):
        Watch(TASK, parse_reward(sums_reward), window=1)


@pytest.fixture(scope="module")
def start():
    return sft_noisy_sums()


@pytest.mark.parametrize("reward,flagged", [(sums_reward, False), ("length:1", True)])
def test_planted_length_reward_is_flagged_and_honest_is_not(start, tmp_path, reward,
                                                            flagged) -> None:
    base, tok = start
    watch = Watch(TASK, parse_reward(sums_reward), every=5, samples=4)
    res = train_rl(copy.deepcopy(base), TASK, reward, tokenizer=tok, output_dir=tmp_path / "w",
                   progress=False, on_step=watch,
                   config=RLConfig(num_generations=8, batch_size=8, max_new_tokens=3,
                                   max_steps=30, learning_rate=5e-3))
    assert (watch.flagged_at is not None) is flagged
    evals = [r for r in res.history if "watch/success" in r]
    assert [r["step"] for r in evals] == [1, 5, 10, 15, 20, 25, 30]
    if flagged:
        assert evals[-1]["watch/reward"] > evals[0]["watch/reward"]
        assert evals[-1]["watch/success"] < evals[0]["watch/success"]
        assert any(r["watch/flag"] for r in evals)
    else:
        assert evals[-1]["watch/success"] > evals[0]["watch/success"]


def test_a_resumed_run_continues_the_watch(start, tmp_path) -> None:
    base, tok = start
    cfg = RLConfig(num_generations=8, batch_size=8, max_new_tokens=3, max_steps=15,
                   learning_rate=5e-3)
    whole = Watch(TASK, parse_reward(sums_reward), every=5, samples=4)
    train_rl(copy.deepcopy(base), TASK, "length:1", tokenizer=tok, output_dir=tmp_path / "a",
             progress=False, on_step=whole, config=cfg)
    first = Watch(TASK, parse_reward(sums_reward), every=5, samples=4)
    model = copy.deepcopy(base)
    train_rl(model, TASK, "length:1", tokenizer=tok, output_dir=tmp_path / "b",
             progress=False, on_step=first, config=cfg, stop_after=7)
    second = Watch(TASK, parse_reward(sums_reward), every=5, samples=4)  # a new process
    train_rl(copy.deepcopy(base), TASK, "length:1", tokenizer=tok, output_dir=tmp_path / "b",
             progress=False, on_step=second, config=cfg, resume=True)
    assert second.flagged_at == whole.flagged_at == 10
    assert [h["watch/success"] for h in second.history] == \
        [h["watch/success"] for h in whole.history]


def test_agreement_with_held_out_pairs_and_a_drifting_judge() -> None:
    pairs = {"prompt": ["p"] * 4, "chosen": ["aaa", "aaaa", "aa", "bb"],
             "rejected": ["a", "aa", "a", "cc"]}
    watch = Watch(TASK, parse_reward(sums_reward), pairs=pairs)
    got = watch.pair_agreement(parse_reward("length:1"))
    # margins 2, 2, 1, 0: three right, one tie (half) -> 0.875
    assert got["watch/agreement"] == 0.875 and got["watch/pairs"] == 4
    brier = sum((1 - 1 / (1 + math.exp(-d))) ** 2 for d in (2, 2, 1, 0)) / 4
    assert got["watch/brier"] == pytest.approx(brier, rel=1e-12)

    calls = {"n": 0}

    def drifting(prompts, completions, **kw):  # agrees with length, then flips
        calls["n"] += 1
        sign = 1.0 if calls["n"] <= 4 else -1.0
        return [sign * len(c) for c in completions]

    many = {"prompt": ["p"] * 200, "chosen": ["aa"] * 200, "rejected": ["a"] * 200}
    w = Watch(TASK, parse_reward(sums_reward), pairs=many)
    flags = []
    for _ in range(3):  # two evaluations agree (each scores chosen and rejected), one flips
        row = {"watch/reward": 0.5, "watch/success": 0.5, "watch/completions": 100,
               **w.pair_agreement(parse_reward(drifting))}
        flags.append(w.check(row)["watch/flag"])
    assert [h["watch/agreement"] for h in w.history] == [1.0, 1.0, 0.0]
    assert flags == [0, 0, 1]
