"""Using step scores: one score per solution (best-of-N) and PRM-weighted majority voting.

A PRM gives step ``k`` of a solution a score ``p_k`` (the probability that the step is
right). A solution's score aggregates them:

* ``min``:     ``min_k p_k`` -- the weakest step (Lightman et al. 2023; the default);
* ``last``:    ``p_K`` -- the last step's score;
* ``product``: ``prod_k p_k`` -- all steps right, were they independent;
* ``mean``:    ``mean_k p_k``.

Unscored steps (NaN) are left out of every aggregate. **Best-of-N** picks the candidate with
the highest aggregate (the first on a tie). **PRM-weighted majority voting** (Uesato et al.
2022; Wang et al. 2024, Math-Shepherd) sums the aggregates of the candidates that reach each
final answer and picks the answer with the largest sum; plain majority voting is the same with
every weight 1.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["AGGREGATES", "aggregate_steps", "best_of_n", "weighted_vote"]

AGGREGATES = ("min", "last", "product", "mean")


def aggregate_steps(step_scores: ArrayLike, how: str = "min") -> float:
    """One solution's score from its step scores (see the module docstring); NaN when no
    step was scored.

    >>> aggregate_steps([0.9, 0.2, 0.8], "min"), aggregate_steps([0.9, 0.2, 0.8], "last")
    (0.2, 0.8)
    >>> round(aggregate_steps([0.5, 0.5], "product"), 3), aggregate_steps([0.5, 1.0], "mean")
    (0.25, 0.75)
    """
    if how not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {how!r}")
    a = np.asarray(step_scores, dtype=np.float64).ravel()
    a = a[~np.isnan(a)]
    if a.size == 0:
        return float("nan")
    if how == "min":
        return float(a.min())
    if how == "last":
        return float(a[-1])
    if how == "product":
        return float(np.exp(np.log(np.clip(a, 1e-300, None)).sum()))
    return float(a.mean())


def best_of_n(step_scores: Sequence[ArrayLike], how: str = "min") -> int:
    """The index of the candidate with the highest aggregate score (NaN ranks last)."""
    if not step_scores:
        raise ValueError("best_of_n needs at least one candidate")
    agg = np.array([aggregate_steps(s, how) for s in step_scores])
    agg = np.where(np.isnan(agg), -np.inf, agg)
    return int(np.argmax(agg))


def weighted_vote(answers: Sequence[Hashable | None], weights: ArrayLike | None = None
                  ) -> Hashable | None:
    """The answer with the largest total weight (plain majority voting without ``weights``);
    candidates without an answer (None) do not vote; ties go to the answer seen first.

    >>> weighted_vote(["7", "8", "8"]), weighted_vote(["7", "8", "8"], [0.9, 0.2, 0.3])
    ('8', '7')
    """
    w = np.ones(len(answers)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(answers),):
        raise ValueError(f"{len(answers)} answers but {w.size} weights")
    totals: dict[Hashable, float] = {}
    for a, x in zip(answers, w):
        if a is not None and not np.isnan(x):
            totals[a] = totals.get(a, 0.0) + float(x)
    if not totals:
        return None
    return max(totals, key=lambda k: totals[k])
