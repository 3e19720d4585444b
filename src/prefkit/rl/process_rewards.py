"""Process rewards as dense step rewards: a process reward model (PRM) scores every step of a
sampled solution, and each token's advantage sums the normalised rewards of the steps that
end at or after it (DeepSeekMath's process supervision for GRPO, Shao et al. 2024,
arXiv:2402.03300, sec. 4.1.3).

    prm = ProcessReward.load("runs/prm")                 # a prefkit prm folder
    steps, rewards = prm(prompts, completions)           # per completion: steps, P(right)
    ends = step_token_ends(completion_ids, steps_text, tokenizer)
    adv = process_advantages(rewards, ends, (N, T), num_generations=G)    # (N, T)

For a group of ``G`` completions of one prompt, with ``r_{i,j}`` the reward of step ``j`` of
completion ``i`` and ``e_{i,j}`` the token where that step ends:

    r~_{i,j} = (r_{i,j} - mean(R)) / std(R)       R: every step reward of the group
    A_{i,t}  = sum over steps j with e_{i,j} >= t of r~_{i,j}

(``std`` unbiased, plus 1e-4 as TRL's GRPO; a group whose steps all score alike gets 0.)
A step's text is found in the completion by :func:`split_steps`' separator (the PRM's own,
default a blank line) and mapped to the token where the decoded text first covers its end;
the last step always ends at the completion's last token (EOS included). Steps the PRM
could not score (NaN) are left out of ``R`` and add nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from prefkit.runs import plural

__all__ = ["ProcessReward", "process_advantages", "step_spans", "step_token_ends"]

STD_EPS = 1e-4
SEPARATOR = "\n\n"


def step_spans(text: str, separator: str = SEPARATOR) -> list[tuple[str, int]]:
    """The non-empty steps of ``text`` split on ``separator`` (stripped) with the character
    index just past each step's end; the whole text is one step without a separator."""
    out: list[tuple[str, int]] = []
    pos = 0
    for piece in text.split(separator):
        stripped = piece.strip()
        if stripped:
            end = pos + len(piece.rstrip())
            out.append((stripped, end))
        pos += len(piece) + len(separator)
    return out or [(text.strip(), len(text))]


def step_token_ends(token_ids: Sequence[int], ends_chars: Sequence[int], tokenizer: Any
                    ) -> list[int]:
    """For each step end (a character index into the decoded completion), the first token
    whose decoded prefix reaches it; the last step ends at the last token."""
    n = len(token_ids)
    if n == 0:
        return []
    prefix = [len(tokenizer.decode(list(token_ids[:t + 1]), skip_special_tokens=True))
              for t in range(n)]
    out = []
    for c in ends_chars:
        t = next((i for i, length in enumerate(prefix) if length >= c), n - 1)
        out.append(t)
    if out:
        out[-1] = n - 1
    return out


def process_advantages(step_rewards: Sequence[Sequence[float]], step_ends: Sequence[Sequence[int]],
                       shape: tuple[int, int], *, num_generations: int) -> Tensor:
    """``(N, T)`` per-token advantages from per-step rewards (module docstring)."""
    n, t = shape
    if len(step_rewards) != n or len(step_ends) != n:
        raise ValueError(f"need step rewards and ends for all {n} completions")
    if n % num_generations:
        raise ValueError(f"{n} completions cannot form groups of {num_generations}")
    adv = torch.zeros((n, t), dtype=torch.float32)
    for start in range(0, n, num_generations):
        rows = range(start, start + num_generations)
        pooled = np.array([r for i in rows for r in step_rewards[i] if not np.isnan(r)],
                          dtype=np.float64)
        if pooled.size < 2:
            continue
        mean, std = pooled.mean(), pooled.std(ddof=1)
        for i in rows:
            for r, e in zip(step_rewards[i], step_ends[i], strict=True):
                if np.isnan(r) or not 0 <= e < t:
                    continue
                adv[i, :e + 1] += float((r - mean) / (std + STD_EPS))
    return adv


@dataclass
class ProcessReward:
    """Per-step rewards of completions: ``score(prompts, steps) -> per completion an array``
    (a prefkit PRM's ``score``, P(step right), or any function of that shape), the steps
    found with ``separator``. Calling it returns ``(steps with their end characters,
    rewards)`` per completion."""

    score: Callable[[Sequence[str], Sequence[Sequence[str]]], Sequence[Any]]
    separator: str = SEPARATOR
    name: str = "process"

    @classmethod
    def load(cls, folder: str | Path) -> ProcessReward:
        """A PRM folder written by ``prefkit prm train`` (:func:`prefkit.process.load_prm`)."""
        from prefkit.process.model import load_prm

        prm = load_prm(folder)
        separator = getattr(getattr(prm, "config", None), "separator", SEPARATOR)
        return cls(prm.score, separator, f"prm:{Path(folder).name}")

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]
                 ) -> tuple[list[list[tuple[str, int]]], list[list[float]]]:
        spans = [step_spans(c, self.separator) for c in completions]
        scores = self.score(list(prompts), [[s for s, _ in sp] for sp in spans])
        rewards = [[float(x) for x in np.asarray(sc, dtype=np.float64)] for sc in scores]
        for sp, r in zip(spans, rewards, strict=True):
            if len(sp) != len(r):
                raise ValueError(f"the process reward gave {plural(len(r), 'score')} for "
                                 f"{plural(len(sp), 'step')}; give one per step")
        return spans, rewards
