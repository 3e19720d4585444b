"""Online RL shown to work: GRPO, RLOO, online DPO and PPO each raise a checker's success
rate over an SFT start, and the watch flags a planted exploitable reward but not an honest
one.

The task (``tests/rl/rl_sums.py``): the 25 sums ``a+b=`` with single digits 0..4, answered
by a tiny Llama (2 layers, hidden 32, character tokenizer; built from a config) taught the
format by 300 SFT steps on *noisy* answers -- the right sum half the time, else a random
digit -- so it answers in the format and is right about a third to a half of the time. The
checker: the completion (stripped) equals the sum.

For each seed (``--seeds``, default 5): the SFT start, then each algorithm from that start
(``RLConfig(num_generations=8, batch_size=8, max_new_tokens=3, max_steps=40,
learning_rate=5e-3)``; online DPO: its own best/worst pair per prompt, ``dpo_beta=0.1``;
PPO: a value head, GAE with gamma 1 and lambda 0.95, vf_coef 0.1).
Success is measured on 16 sampled answers per sum (400 completions, temperature 1, a fixed
evaluation seed) before and after; each row shows the seed's Wilson interval, the summary
the mean gain over seeds with a 95% t-interval.

The watch: from the same start, GRPO with the honest reward (the checker) and with a planted
reward that pays one point per character (``length:1``), watched on the 25 sums every 5
steps (:class:`prefkit.rl.watch.Watch`); reported: how many seeds were flagged, and when.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rl_demo.py --seeds 5
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "rl"))

from rl_sums import ANSWERS, PROMPTS, sft_noisy_sums, sums_reward
from scipy import stats

from prefkit.rl import RLConfig, parse_reward, train_rl
from prefkit.rl.generate import SamplingConfig, sample
from prefkit.rl.tasks import Task
from prefkit.rl.watch import Watch, wilson

TASK = Task(PROMPTS, {"answer": ANSWERS})
ALGOS = ("grpo", "rloo", "online_dpo", "ppo")


def success(model, tok, n: int = 16, seed: int = 123) -> float:
    s = sample(model, tok, PROMPTS, SamplingConfig(num_generations=n, max_new_tokens=3),
               seed=seed)
    return sum(t.strip() == ANSWERS[i // n] for i, t in enumerate(s.texts)) / len(s.texts)


def t_interval(xs: list[float]) -> tuple[float, float, float]:
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, math.nan, math.nan
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    h = stats.t.ppf(0.975, len(xs) - 1) * sd / math.sqrt(len(xs))
    return m, m - h, m + h


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rl_demo_"))
    gains: dict[str, list[float]] = {a: [] for a in ALGOS}
    flags: dict[str, list[int | None]] = {"honest": [], "length:1": []}
    t0, cpu0 = time.perf_counter(), time.process_time()
    print(f"{'seed':>4} {'algo':<11} {'before':>22} {'after':>22} {'gain':>7}")
    for seed in range(args.seeds):
        base, tok = sft_noisy_sums(seed=seed)
        before = success(base, tok)
        lo_b, hi_b = wilson(before, 400)
        for algo in ALGOS:
            model = copy.deepcopy(base)
            train_rl(model, TASK, sums_reward, tokenizer=tok, output_dir=work / f"{algo}{seed}",
                     progress=False, config=RLConfig(
                         algo=algo, num_generations=8, batch_size=8, max_new_tokens=3,
                         max_steps=args.steps, learning_rate=5e-3, seed=seed))
            after = success(model, tok)
            lo, hi = wilson(after, 400)
            gains[algo].append(after - before)
            print(f"{seed:>4} {algo:<11} {before:.3f} [{lo_b:.3f}, {hi_b:.3f}] "
                  f"{after:.3f} [{lo:.3f}, {hi:.3f}] {after - before:+.3f}", flush=True)
        for name, reward in (("honest", sums_reward), ("length:1", "length:1")):
            watch = Watch(TASK, parse_reward(sums_reward), every=5, samples=4)
            train_rl(copy.deepcopy(base), TASK, reward, tokenizer=tok,
                     output_dir=work / f"w{name}{seed}", progress=False, on_step=watch,
                     config=RLConfig(num_generations=8, batch_size=8, max_new_tokens=3,
                                     max_steps=args.steps, learning_rate=5e-3, seed=seed))
            flags[name].append(watch.flagged_at)
    print("\nmean gain in checker success over seeds (95% t-interval):")
    for algo in ALGOS:
        m, lo, hi = t_interval(gains[algo])
        print(f"  {algo:<11} {m:+.3f} [{lo:+.3f}, {hi:+.3f}]  (n = {len(gains[algo])} seeds)")
    print("\nwatch (flag = reward up while held-out success falls, p < 0.05 over 3 evaluations):")
    for name, got in flags.items():
        n = sum(f is not None for f in got)
        print(f"  {name:<9} flagged in {n}/{len(got)} seeds; first flag at steps {got}")
    print(f"\nwall {time.perf_counter() - t0:.0f} s, CPU {time.process_time() - cpu0:.0f} s")


if __name__ == "__main__":
    main()
