"""A watch on the reward: held-out questions with a checker, evaluated while training, and a
flag when the reward keeps rising while the checker's success falls (over-optimisation: a
reward being hacked, e.g. one that pays for length).

    watch = Watch(read_task("heldout.jsonl"), checker=parse_reward("exact"), every=5)
    train_rl(model, task, reward, ..., on_step=watch)     # adds watch/* to metrics rows

**What is measured.** Every ``every`` steps (and at step 1), the policy samples
``samples`` completions for each held-out prompt (a fixed seed per evaluation, the run's
sampling settings). Then, on those completions:

* ``watch/reward`` -- the mean of the *training* reward (the proxy being optimised);
* ``watch/success`` -- the checker's success rate (the mean of ``checker``, 0/1 or any
  score in [0, 1]), with ``watch/success_low`` / ``_high`` its 95% Wilson interval over
  the ``m = prompts * samples`` completions;
* ``watch/length`` -- mean completion length (tokens), ``watch/reward_per_token``.

**Held-out preference pairs** (``pairs``: ``{"prompt", "chosen", "rejected"}`` lists, e.g.
``read_preferences(file).data``): the *training reward* scores both responses of every
pair at each evaluation; ``watch/agreement`` is its agreement with the people (the share of
pairs where the chosen response scores higher, a tie counting half:
:func:`prefkit.losses.preference_accuracy`), ``watch/brier`` its calibration, the Brier
score of ``sigmoid(r_chosen - r_rejected)`` as the probability that the chosen response
wins (Bradley-Terry; 0.25 is a constant 50%). A fixed reward model gives the same numbers at
every evaluation; a judge that drifts (a hosted model updated, a cache cleared) does not,
and a fall of the agreement is flagged like the checker's (rule 2 with the agreement in
place of the success, over the pairs).

**The flag.** Over the last ``window`` evaluations ``k - window + 1 .. k`` (default 3):
over-optimisation is flagged at evaluation ``k`` when

1. the proxy rose: ``reward_k > reward_{k - window + 1}``, and
2. the checker fell significantly from its best in the window: with ``s*`` the highest
   success among the window's earlier evaluations, ``s_k < s*`` and the one-sided
   two-proportion z-test of ``s_k`` against ``s*`` (pooled variance, ``m`` completions
   each) gives ``p < alpha`` (default 0.05).

``watch/flag`` is 1 on a row where the rule fires (``watch/p`` the test's p-value),
``Watch.flagged_at`` the first step it fired. A resumed run takes the evaluations so far
from its ``metrics.jsonl`` (every watch row is logged: use ``log_every`` dividing
``every``), so the window continues across the interruption. An honest reward (the checker itself) cannot
rise while the checker falls on the same samples' distribution, so it is flagged only by
chance (at most ``alpha`` per evaluation once the success plateaus); a length reward that
pushes answers past their end is flagged once the success drops (tested; demonstrated in
``benchmarks/rl_demo.py``). The window is in evaluations, not steps: with ``every = 5``
and ``window = 3`` the rule compares the last 10 steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prefkit.rl.generate import SamplingConfig, sample
from prefkit.rl.rewards import CombinedReward
from prefkit.rl.tasks import Task, prompt_inputs

__all__ = ["Watch", "two_proportion_p", "wilson"]


def wilson(p: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``p`` over ``n`` trials, ``z`` standard
    errors wide (default: 95%): :func:`prefkit.reward.evaluate.wilson_interval` at the
    confidence ``erf(z / sqrt(2))``; no trials: (0, 1)."""
    from prefkit.reward.evaluate import wilson_interval

    if n == 0:
        return (0.0, 1.0)
    return wilson_interval(p, n, confidence=math.erf(z / math.sqrt(2)))


def two_proportion_p(high: float, low: float, n: int) -> float:
    """One-sided p-value that a success rate ``low`` (of ``n``) lies below ``high`` (of
    ``n``): the pooled two-proportion z-test, ``1 - Phi(z)``."""
    pooled = (high + low) / 2
    se = math.sqrt(max(pooled * (1 - pooled), 0.0) * 2 / n)
    if se == 0:
        return 0.0 if high > low else 1.0
    z = (high - low) / se
    return 0.5 * math.erfc(z / math.sqrt(2))


@dataclass
class Watch:
    """See the module docstring. Call it as ``on_step(state, row)`` of
    :func:`~prefkit.rl.train.train_rl`; ``history`` keeps every evaluation."""

    task: Task
    checker: CombinedReward
    every: int = 5
    samples: int = 4
    window: int = 3
    alpha: float = 0.05
    pairs: Any = None  # held-out {"prompt", "chosen", "rejected"} (or TextPairs), or None
    history: list[dict[str, Any]] = field(default_factory=list)
    flagged_at: int | None = None

    def __post_init__(self) -> None:
        if self.every < 1 or self.samples < 1 or self.window < 2:
            raise ValueError("the watch needs every >= 1, samples >= 1 and window >= 2")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha}")

    def evaluate(self, model: Any, tokenizer: Any, reward: CombinedReward,
                 sampling: SamplingConfig, seed: int) -> dict[str, Any]:
        """The watch's measurements of ``model`` now (no flag)."""
        n = self.samples
        cfg = SamplingConfig(num_generations=n, max_new_tokens=sampling.max_new_tokens,
                             temperature=sampling.temperature, top_p=sampling.top_p,
                             top_k=sampling.top_k, stop=sampling.stop)
        s = sample(model, tokenizer, prompt_inputs(tokenizer, self.task.prompts), cfg,
                   seed=seed)
        rep = [i for i in range(len(self.task)) for _ in range(n)]
        prompts = [self.task.prompts[i] for i in rep]
        cols = {k: [v[i] for i in rep] for k, v in self.task.columns.items()}
        proxy, _ = reward(prompts, s.texts, cols)
        check, _ = self.checker(prompts, s.texts, cols)
        m = len(s.texts)
        success = float(np.nanmean(check)) if m else 0.0
        low, high = wilson(success, m)
        length = float(s.lengths.float().mean())
        r = float(np.nanmean(proxy))
        out = {"watch/reward": r, "watch/success": success, "watch/success_low": low,
               "watch/success_high": high, "watch/length": length,
               "watch/reward_per_token": r / max(length, 1.0), "watch/completions": m}
        if self.pairs is not None:
            out.update(self.pair_agreement(reward))
        return out

    def pair_agreement(self, reward: CombinedReward) -> dict[str, Any]:
        """The reward's agreement with the held-out pairs and its Brier score."""
        import torch

        from prefkit.losses import preference_accuracy

        get = (self.pairs.get if isinstance(self.pairs, dict)
               else lambda k: getattr(self.pairs, k))
        prompts, chosen, rejected = list(get("prompt")), list(get("chosen")), \
            list(get("rejected"))
        r_c, _ = reward(prompts, chosen, {})
        r_r, _ = reward(prompts, rejected, {})
        margin = np.nan_to_num(r_c - r_r)
        acc = preference_accuracy(torch.as_tensor(margin)).double().mean().item()
        brier = float(np.mean((1.0 - 1.0 / (1.0 + np.exp(-margin))) ** 2))
        low, high = wilson(acc, len(margin))
        return {"watch/agreement": acc, "watch/agreement_low": low,
                "watch/agreement_high": high, "watch/brier": brier,
                "watch/pairs": len(margin)}

    def check(self, values: dict[str, Any]) -> dict[str, Any]:
        """Add this evaluation to the history and apply the rule (module docstring)."""
        self.history.append(values)
        out = {"watch/flag": 0, "watch/p": None}
        if len(self.history) < self.window:
            return out
        win = self.history[-self.window:]
        now = win[-1]
        best = max(h["watch/success"] for h in win[:-1])
        rose = now["watch/reward"] > win[0]["watch/reward"]
        if rose and now["watch/success"] < best:
            p = two_proportion_p(best, now["watch/success"], int(now["watch/completions"]))
            out["watch/p"] = p
            if p < self.alpha:
                out["watch/flag"] = 1
        if "watch/agreement" in now:  # the reward itself drifting away from the people
            best_a = max(h["watch/agreement"] for h in win[:-1])
            if now["watch/agreement"] < best_a:
                p = two_proportion_p(best_a, now["watch/agreement"], int(now["watch/pairs"]))
                out["watch/agreement_p"] = p
                if p < self.alpha:
                    out["watch/flag"] = 1
        return out

    def __call__(self, state: Any, row: dict[str, Any]) -> dict[str, Any] | None:
        if not (state.step == 1 or state.step % self.every == 0
                or state.step == state.config.max_steps):
            return None
        from prefkit.rl.train import sampling_config

        if not self.history:  # a resumed run: the evaluations so far are in its metrics
            self.history = [{k: v for k, v in r.items() if k.startswith("watch/")}
                            for r in state.metrics.history if "watch/success" in r]
            self.flagged_at = next((r["watch/step"] for r in self.history
                                    if r.get("watch/flag")), None)
        values = self.evaluate(state.model, state.tokenizer, state.reward,
                               sampling_config(state.config),
                               seed=state.config.seed * 7919 + 17)
        values["watch/step"] = state.step
        values.update(self.check(values))
        if values["watch/flag"] and self.flagged_at is None:
            self.flagged_at = state.step
        return values


def plot_watch(rows: list[dict[str, Any]], path: Any) -> None:
    """The watch over the run: the proxy reward and the checker's success (with its
    interval) by step, flagged evaluations marked; written to ``path`` (PNG/SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [r for r in rows if "watch/success" in r]
    if not evals:
        raise ValueError("no watch evaluations to plot")
    steps = [r["step"] for r in evals]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [r["watch/success"] for r in evals], "o-", label="checker success")
    ax.fill_between(steps, [r["watch/success_low"] for r in evals],
                    [r["watch/success_high"] for r in evals], alpha=0.2)
    if all("watch/agreement" in r for r in evals):
        ax.plot(steps, [r["watch/agreement"] for r in evals], "^:", color="tab:green",
                label="reward's agreement with held-out pairs")
    ax.set_xlabel("step")
    ax.set_ylabel("held-out checker success (agreement)")
    ax2 = ax.twinx()
    ax2.plot(steps, [r["watch/reward"] for r in evals], "s--", color="tab:orange",
             label="training reward (held-out)")
    ax2.set_ylabel("training reward")
    for r in evals:
        if r.get("watch/flag"):
            ax.axvline(r["step"], color="red", alpha=0.4)
    ax.set_title("watch: red lines = over-optimisation flagged")
    fig.legend(loc="lower center", ncol=2, fontsize=8)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path)
    plt.close(fig)
