"""PRM-guided beam search over steps (Snell et al. 2024, "Scaling LLM Test-Time Compute";
search-and-learn's ``beam_search``).

Keep ``beam_width`` partial solutions; from each, a proposer samples ``expand`` next steps;
the PRM scores every extended solution's steps; the ``beam_width`` best by the aggregate of
their step scores (:func:`~prefkit.process.aggregate.aggregate_steps`, ``"last"`` by default:
the newest step's score, as search-and-learn) survive. Finished solutions (``is_done``) leave
the beam; the search stops when the beam is empty or after ``max_steps``. The best finished
solution is returned first.

The proposer is any callable ``propose(prompt, steps_so_far, n) -> n next steps`` (a sampler
over a language model, or a task's own generator); the scorer any
``score(prompts, step_lists) -> per solution an array of step scores`` (a PRM's ``score``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from prefkit.process.aggregate import aggregate_steps

__all__ = ["BeamResult", "beam_search"]

Proposer = Callable[[str, Sequence[str], int], Sequence[str]]
Scorer = Callable[[Sequence[str], Sequence[Sequence[str]]], Sequence[np.ndarray]]


@dataclass(frozen=True)
class BeamResult:
    """Finished solutions best first with their aggregate scores, and the PRM calls made."""

    solutions: list[list[str]]
    scores: list[float]
    n_scored: int


def beam_search(prompt: str, propose: Proposer, score: Scorer, is_done: Callable[[str], bool],
                *, beam_width: int = 4, expand: int = 4, max_steps: int = 20,
                aggregate: str = "last") -> BeamResult:
    """Beam search over steps guided by step scores (module docstring)."""
    if beam_width < 1 or expand < 1:
        raise ValueError("beam_width and expand must be >= 1")
    beam: list[list[str]] = [[]]
    done: list[tuple[float, list[str]]] = []
    n_scored = 0
    for _ in range(max_steps):
        cands = [b + [s] for b in beam for s in propose(prompt, b, expand)]
        cands = [list(c) for c in dict.fromkeys(tuple(c) for c in cands)]  # drop repeats
        if not cands:
            break
        got = score([prompt] * len(cands), cands)
        n_scored += len(cands)
        agg = np.array([aggregate_steps(s, aggregate) for s in got])
        agg = np.where(np.isnan(agg), -np.inf, agg)
        order = np.argsort(-agg, kind="stable")[:beam_width]
        beam = []
        for j in order:
            if is_done(cands[j][-1]):
                done.append((float(agg[j]), cands[j]))
            else:
                beam.append(cands[j])
        if not beam:
            break
    done.sort(key=lambda t: -t[0])
    return BeamResult([d for _, d in done], [s for s, _ in done], n_scored)
