"""Step labels from rollouts, and step-level preference pairs for ``prefkit align``.

* :func:`monte_carlo_values` -- Math-Shepherd's labels (Wang et al. 2024, arXiv:2312.08935):
  from the prefix ending at step ``k``, ``n`` completions are rolled out and checked; the
  soft label is the share that reaches the right answer, the hard label whether any does;
* :func:`consensus` -- the filter of "The Lessons of Developing PRMs" (Zhang et al. 2025,
  arXiv:2501.07301): keep a solution only where the Monte-Carlo first error agrees with a
  judge's (an LLM critic's, or human) first error;
* :func:`step_dpo_rows` -- Step-DPO pairs (Lai et al. 2024) from a PRM-scored tree of samples:
  two candidates that share their first ``k`` steps and differ at step ``k``, one judged right
  there and the other wrong, give (prefix, right step, wrong step);
* :func:`rise_rows` -- error-injected pairs (RISE, self-editing: a correct solution's step
  ``k`` edited into a wrong one): here a number of the step is changed
  (:func:`inject_error`), a rule that needs no model.

The rows use prefkit's Step-DPO layout (``prompt, steps, wrong_step_index, rejected_step``),
which :func:`prefkit.data.read_alignment_data` reads (format ``step_dpo``), so ``prefkit
align --data rows.jsonl`` trains on them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["consensus", "first_error_of", "inject_error", "lm_completer", "monte_carlo_values",
           "rise_rows", "step_dpo_rows"]

#: ``complete(prompt, steps_so_far, n) -> n full solutions (texts or step lists)``
Completer = Callable[[str, Sequence[str], int], Sequence[Any]]


def monte_carlo_values(prompt: str, steps: Sequence[str], complete: Completer,
                       check: Callable[[Any], bool], *, n: int = 8) -> list[float]:
    """Per step ``k``, the share of ``n`` rollouts from the prefix ``steps[:k + 1]`` whose
    result ``check`` accepts (Math-Shepherd's soft label; ``> 0`` is its hard label)."""
    if n < 1:
        raise ValueError(f"n must be >= 1 rollouts, got {n}")
    out = []
    for k in range(len(steps)):
        rolls = complete(prompt, list(steps[:k + 1]), n)
        out.append(float(np.mean([bool(check(r)) for r in rolls])) if len(rolls) else 0.0)
    return out


def lm_completer(model: Any, tokenizer: Any, *, max_new_tokens: int = 256,
                 temperature: float = 1.0, top_p: float = 1.0, seed: int = 0) -> Completer:
    """A :data:`Completer` that rolls out a causal LM with the shared sampler
    (:func:`prefkit.llm.sampling.sample`): the prompt and the steps so far, written as
    :func:`~prefkit.process.implicit.response_text` does (one step per line), continued
    ``n`` times; each rollout is returned as the whole solution text (prefix + completion).
    Each call draws with its own seed (``seed``, ``seed + 1``, ...), so a run is
    reproducible."""
    from prefkit.llm.sampling import SamplingConfig, sample
    from prefkit.process.implicit import response_text

    calls = [seed]

    def complete(prompt: str, steps: Sequence[str], n: int) -> list[str]:
        prefix = prompt + response_text(steps)
        cfg = SamplingConfig(num_generations=n, max_new_tokens=max_new_tokens,
                             temperature=temperature, top_p=top_p)
        got = sample(model, tokenizer, [prefix], cfg, seed=calls[0])
        calls[0] += 1
        return [prefix + t for t in got.texts]

    return complete


def first_error_of(values: ArrayLike, *, hard: bool = True) -> int:
    """The first step whose value says wrong: ``== 0`` (hard: no rollout succeeds) or
    ``< 0.5`` (soft); -1 when none."""
    v = np.asarray(values, dtype=np.float64)
    bad = np.flatnonzero(v <= 0.0) if hard else np.flatnonzero(v < 0.5)
    return int(bad[0]) if bad.size else -1


def consensus(mc_values: Sequence[ArrayLike], judge_first_error: Sequence[int], *,
              hard: bool = True) -> list[int]:
    """Indices of the solutions whose Monte-Carlo first error equals the judge's."""
    if len(mc_values) != len(judge_first_error):
        raise ValueError(f"{len(mc_values)} solutions but {len(judge_first_error)} judgements")
    return [i for i, (v, j) in enumerate(zip(mc_values, judge_first_error))
            if first_error_of(v, hard=hard) == int(j)]


def step_dpo_rows(prompt: str, candidates: Sequence[Sequence[str]],
                  step_scores: Sequence[ArrayLike], *, threshold: float = 0.5
                  ) -> list[dict[str, Any]]:
    """Step-DPO rows from candidates of one prompt scored by a PRM: for every two candidates
    that agree on their first ``k`` steps (every earlier step scored at least ``threshold``
    in both) and differ at step ``k``, where one scores ``>= threshold`` and the other
    ``< threshold``. Each (prefix, right step, wrong step) is emitted once.

    >>> step_dpo_rows("2+3*4?", [["3*4 = 12", "2+12 = 14"], ["3*4 = 12", "2+12 = 15"]],
    ...               [[0.9, 0.8], [0.9, 0.1]])[0]["rejected_step"]
    '2+12 = 15'
    """
    rows, seen = [], set()
    for a in range(len(candidates)):
        for b in range(len(candidates)):
            ca, cb = list(candidates[a]), list(candidates[b])
            sa, sb = np.asarray(step_scores[a], float), np.asarray(step_scores[b], float)
            k = 0
            while k < min(len(ca), len(cb)) and ca[k] == cb[k]:
                k += 1
            if k >= min(len(ca), len(cb)):
                continue
            if (sa[:k] < threshold).any() or (sb[:k] < threshold).any():
                continue
            if sa[k] >= threshold > sb[k]:
                key = (tuple(ca[:k + 1]), cb[k])
                if key not in seen:
                    seen.add(key)
                    rows.append({"prompt": prompt, "steps": ca[:k + 1], "wrong_step_index": k,
                                 "rejected_step": cb[k]})
    return rows


_NUM = re.compile(r"-?\d+(?:\.\d+)?")


def inject_error(step: str, rng: np.random.Generator) -> str | None:
    """``step`` with its last number changed by 1-3 (None when it has no number)."""
    found = list(_NUM.finditer(step))
    if not found:
        return None
    m = found[-1]
    delta = int(rng.choice([-3, -2, -1, 1, 2, 3]))
    value = float(m.group(0)) + delta
    text = str(int(value)) if "." not in m.group(0) else f"{value:g}"
    return step[:m.start()] + text + step[m.end():]


def rise_rows(prompts: Sequence[str], steps: Sequence[Sequence[str]], rng: np.random.Generator,
              *, per_solution: int = 1) -> list[dict[str, Any]]:
    """Error-injected Step-DPO rows from correct solutions: a step with a number, picked by
    ``rng``, is the chosen step and its edited copy (:func:`inject_error`) the rejected one."""
    rows = []
    for p, st in zip(prompts, steps):
        with_number = [k for k, s in enumerate(st) if _NUM.search(s)]
        for k in rng.permutation(with_number)[:per_solution]:
            bad = inject_error(st[int(k)], rng)
            if bad is not None and bad != st[int(k)]:
                rows.append({"prompt": p, "steps": list(st[:int(k) + 1]),
                             "wrong_step_index": int(k), "rejected_step": bad})
    return rows
