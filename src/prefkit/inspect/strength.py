"""Preference strength from an ensemble of reward models (Secrets of RLHF in Large Language
Models Part II: Reward Modeling, Wang et al. 2024, section 2.1).

For pair ``j`` and reward model ``i`` of ``M``, ``d_ij = r_i(x_j, chosen_j) -
r_i(x_j, rejected_j)``; the pair's **strength** is the mean ``mean_i d_ij`` and its
**uncertainty** the standard deviation ``std_i d_ij`` over the ensemble (``ddof=0``; 0 with
one model). The paper reads a negative mean as a likely wrong label and a mean near 0 as an
ambiguous pair; it groups the pairs into tenths by strength (``deciles``).

The chosen response is the gold label when the input has one, else the majority label of
the annotators (pairs without a unique non-tie majority are left out and counted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from prefkit.data.annotations import FIRST, SECOND

__all__ = ["Strength", "load_reward_models", "preference_strength", "strength_of_annotations"]


def load_reward_models(folders: Sequence[str | Path]) -> list[Any]:
    """Reward models from prefkit reward-model folders (``prefkit reward train`` or
    ``finetune``), through :meth:`prefkit.reward.model.RewardModel.load`."""
    from prefkit.reward.model import RewardModel

    return [RewardModel.load(f) for f in folders]


@dataclass
class Strength:
    """Per-pair ensemble strength (``mean``, ``std``: ``(n,)``; ``margins``: ``(M, n)``) and
    the ids of the pairs scored."""

    margins: NDArray[np.float64]
    pair_id: list[str]
    n_left_out: int = 0
    models: tuple[str, ...] = ()

    @property
    def mean(self) -> NDArray[np.float64]:
        return self.margins.mean(0)

    @property
    def std(self) -> NDArray[np.float64]:
        return self.margins.std(0)

    def to_dict(self, *, lowest: int = 10) -> dict[str, Any]:
        """The summary: counts, the share the ensemble calls wrong (mean < 0) and ambiguous
        (``|mean| < std``), quantiles, per-tenth mean and std, the ``lowest`` pairs."""
        m, s = self.mean, self.std
        n = m.size
        if n == 0:
            return {"n_pairs": 0, "n_left_out": self.n_left_out, "n_models": len(self.models)}
        order = np.argsort(m, kind="stable")
        groups = np.array_split(order, min(10, n))
        return {
            "n_pairs": n, "n_left_out": self.n_left_out, "n_models": len(self.models),
            "models": list(self.models), "mean": float(m.mean()), "mean_std": float(s.mean()),
            "negative_share": float((m < 0).mean()),
            "ambiguous_share": float((np.abs(m) < s).mean()) if len(self.models) > 1 else None,
            "quantiles": {str(q): float(np.quantile(m, q)) for q in (0, .1, .25, .5, .75, .9, 1)},
            "deciles": [{"mean": float(m[g].mean()), "std": float(s[g].mean()), "n": int(g.size)}
                        for g in groups],
            "lowest": [{"pair_id": self.pair_id[i], "mean": float(m[i]), "std": float(s[i])}
                       for i in order[:lowest]],
        }


def preference_strength(models: Sequence[Any], prompts: Sequence[Any], chosen: Sequence[str],
                        rejected: Sequence[str], *, pair_id: Sequence[str] | None = None,
                        batch_size: int = 32, names: Sequence[str] | None = None) -> Strength:
    """Strength of each (prompt, chosen, rejected) under ``models`` (anything with
    ``score(prompts, responses) -> (n,)``, e.g. :class:`prefkit.reward.RewardModel`)."""
    if not models:
        raise ValueError("preference strength needs at least one reward model")
    n = len(chosen)
    if not (len(prompts) == len(rejected) == n):
        raise ValueError("prompts, chosen and rejected must have the same length")
    margins = np.zeros((len(models), n))
    for i, model in enumerate(models):
        if n:
            rc = np.asarray(model.score(list(prompts), list(chosen), batch_size=batch_size))
            rr = np.asarray(model.score(list(prompts), list(rejected), batch_size=batch_size))
            margins[i] = rc - rr
    ids = list(pair_id) if pair_id is not None else [str(i) for i in range(n)]
    shown = tuple(names) if names is not None else tuple(
        str(getattr(m, "info", {}).get("folder", f"model {i}")) for i, m in enumerate(models))
    return Strength(margins, ids, 0, shown)


def strength_of_annotations(ann: Any, models: Sequence[Any], *, batch_size: int = 32,
                            names: Sequence[str] | None = None) -> Strength:
    """:func:`preference_strength` of an :class:`~prefkit.data.Annotations`, the chosen
    response being the gold label, else the majority (see the module docstring)."""
    if ann.response_a is None or ann.response_b is None:
        raise ValueError(f"{ann.source}: preference strength needs the response texts "
                         "(response_a / response_b)")
    label = ann.gold if ann.gold is not None else ann.majority()
    keep = np.flatnonzero((label == FIRST) | (label == SECOND))
    prompts = ann.prompt if ann.prompt is not None else [""] * len(ann)
    msgs = [[{"role": "user", "content": prompts[i]}] for i in keep]
    chosen = [ann.response_a[i] if label[i] == FIRST else ann.response_b[i] for i in keep]
    rejected = [ann.response_b[i] if label[i] == FIRST else ann.response_a[i] for i in keep]
    s = preference_strength(models, msgs, chosen, rejected,
                            pair_id=[ann.pair_id[i] for i in keep], batch_size=batch_size,
                            names=names)
    s.n_left_out = len(ann) - keep.size
    return s
