"""The result of a ranking fit: scores, ratings on the Elo scale, intervals and tiers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from prefkit.data.records import ItemIndex
from prefkit.runs import plural

__all__ = ["Leaderboard", "ELO_SCALE", "ELO_BASE", "to_elo"]

#: Elo points per unit of log-strength: 400 / ln 10 (a 400-point gap = 10:1 odds).
ELO_SCALE = 400.0 / math.log(10.0)
#: Rating given to the mean item unless an anchor is set (FastChat's INIT_RATING).
ELO_BASE = 1000.0


def to_elo(scores: NDArray[np.float64], base: float = ELO_BASE) -> NDArray[np.float64]:
    """Log-strengths to Elo-scale ratings: ``base + 400 / ln(10) * scores``."""
    return base + ELO_SCALE * np.asarray(scores, float)


@dataclass(frozen=True)
class Leaderboard:
    """Fitted log-strengths (``scores``) for every item, plus what is known about them.

    ``ratings`` are on the Elo scale: ``offset + 400/ln(10) * scores``, where ``offset``
    puts the mean score at 1000 or, with an anchor, the anchor item at its given rating.
    ``intervals`` (``(n, 2)``, Elo scale) and ``rank_intervals``/``tiers`` are present
    once an uncertainty method has been applied (see :mod:`prefkit.rank.uncertainty`).

    ``anchor`` (``(item, rating)``) pins one item the way LMArena does (FastChat's
    ``compute_mle_elo`` shifts every bootstrap round so that the anchor sits at its rating):
    every rating is then measured *against the anchor*, so the anchor's interval has zero
    width and the others' intervals are those of ``s_i - s_anchor``. ``scores``,
    ``covariance`` and ``samples`` stay centred on the mean item; rank intervals and tiers
    depend only on differences and do not change.
    """

    items: ItemIndex
    scores: NDArray[np.float64]
    model: str = "bradley_terry"  # the link: bradley_terry, davidson, rao_kupper, thurstone
    ties: str = "half"
    offset: float = ELO_BASE
    covariance: NDArray[np.float64] | None = None  # of scores (Hessian-based)
    coefficients: dict[str, float] = field(default_factory=dict)  # style / covariates
    tie_parameter: dict[str, float] = field(default_factory=dict)
    provisional: NDArray[np.bool_] | None = None
    n_votes: NDArray[np.float64] | None = None  # per item
    intervals: NDArray[np.float64] | None = None
    interval_method: str | None = None
    confidence: float = 0.95
    rank_intervals: NDArray[np.int64] | None = None
    tiers: NDArray[np.int64] | None = None
    samples: NDArray[np.float64] | None = None  # bootstrap scores, (B, n)
    info: dict[str, Any] = field(default_factory=dict)
    anchor: tuple[str, float] | None = None

    # -- the numbers ---------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def method(self) -> str:
        """What produced the ratings: ``"elo"``, ``"weng_lin:<model>"``, else the link
        (``"bradley_terry"``, ``"davidson"``, ``"plackett_luce"``, ...)."""
        return str(self.info.get("method", self.model))

    @property
    def ratings(self) -> NDArray[np.float64]:
        return self.offset + ELO_SCALE * self.scores

    def rating(self, name: str) -> float:
        return float(self.ratings[self.items.id(name)])

    def anchored(self, item: str, rating: float) -> Leaderboard:
        """Pin ``item`` at ``rating`` as LMArena does (``mixtral-8x7b-instruct-v0.1`` at
        1114): the Elo offset moves so that the anchor has that rating, and intervals are
        recomputed for ratings relative to the anchor (as if every bootstrap round had been
        anchored, FastChat's way; with a covariance, ``Var(s_i - s_anchor)``), so the
        anchor's own interval has zero width."""
        shift = float(rating) - self.rating(item)
        lb = replace(self, offset=self.offset + shift, anchor=(item, float(rating)))
        if self.intervals is None:
            return lb
        from prefkit.rank.uncertainty import _reinterval

        return _reinterval(lb)

    def win_probability(self) -> NDArray[np.float64]:
        """``P[i, j]`` = predicted probability that i beats j (ties split evenly for
        tie models, so ``P + P.T = 1``)."""
        from prefkit.choice.pairwise import get_link

        link = get_link(self.model)
        d = self.scores[:, None] - self.scores[None, :]
        tau = float(self.info.get("tau", 0.0))
        pi, pj, pt = link.probabilities(d.ravel(), tau)
        p = (pi + 0.5 * pt).reshape(d.shape)
        np.fill_diagonal(p, 0.5)
        return p

    def order(self) -> NDArray[np.int64]:
        """Item ids from best to worst (ties in score broken by name)."""
        return np.lexsort((np.asarray(self.items.names), -self.scores))

    def ranks(self) -> NDArray[np.int64]:
        """1-based rank of each item by point estimate."""
        r = np.empty(self.n_items, np.int64)
        r[self.order()] = np.arange(1, self.n_items + 1)
        return r

    def standard_errors(self) -> NDArray[np.float64] | None:
        """Elo-scale standard errors from the covariance, if known (against the anchor
        when the leaderboard is anchored: the anchor's is 0)."""
        if self.covariance is None:
            return None
        return ELO_SCALE * np.sqrt(np.clip(np.diag(self.anchored_covariance()), 0, None))

    def anchored_covariance(self) -> NDArray[np.float64]:
        """The covariance of the scores as the ratings are reported: of ``s_i - s_anchor``
        if anchored (``C_ij - C_ia - C_aj + C_aa``), else ``covariance`` itself."""
        if self.covariance is None:
            raise ValueError("the leaderboard has no covariance")
        c = self.covariance
        if self.anchor is None:
            return c
        a = self.items.id(self.anchor[0])
        return c - c[:, [a]] - c[[a], :] + c[a, a]

    def anchored_samples(self) -> NDArray[np.float64]:
        """Bootstrap scores as the ratings are reported: each round shifted so that the
        anchor keeps its point estimate (LMArena's anchoring per round), else ``samples``."""
        if self.samples is None:
            raise ValueError("the leaderboard has no bootstrap samples")
        if self.anchor is None:
            return self.samples
        a = self.items.id(self.anchor[0])
        return self.samples - self.samples[:, [a]] + self.scores[a]

    # -- views ---------------------------------------------------------------------------
    def to_records(self) -> list[dict[str, Any]]:
        """One dict per item, best first."""
        out = []
        ranks = self.ranks()
        for k in self.order():
            row: dict[str, Any] = {
                "rank": int(ranks[k]),
                "item": self.items.names[k],
                "rating": round(float(self.ratings[k]), 4),
                "score": float(self.scores[k]),
            }
            if self.intervals is not None:
                row["lower"] = round(float(self.intervals[k, 0]), 4)
                row["upper"] = round(float(self.intervals[k, 1]), 4)
            if self.rank_intervals is not None:
                row["rank_lower"] = int(self.rank_intervals[k, 0])
                row["rank_upper"] = int(self.rank_intervals[k, 1])
            if self.tiers is not None:
                row["tier"] = int(self.tiers[k])
            if self.n_votes is not None:
                row["votes"] = float(self.n_votes[k])
            if self.provisional is not None:
                row["provisional"] = bool(self.provisional[k])
            out.append(row)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: the leaderboard plus the model's parameters."""
        return {
            "model": self.method,
            "link": self.model,
            "ties": self.ties,
            "elo_scale": ELO_SCALE,
            "offset": self.offset,
            "anchor": None if self.anchor is None else {"item": self.anchor[0],
                                                        "rating": self.anchor[1]},
            "interval_method": self.interval_method,
            "confidence": self.confidence if self.intervals is not None else None,
            "coefficients": self.coefficients,
            "tie_parameter": self.tie_parameter,
            "leaderboard": self.to_records(),
            "info": {k: v for k, v in self.info.items() if _jsonable(v)},
        }

    def to_frame(self):  # type: ignore[no-untyped-def]
        """The leaderboard as a pandas DataFrame, best first."""
        import pandas as pd

        return pd.DataFrame.from_records(self.to_records()).set_index("item")

    def plot(self, path: str | None = None, **kw: Any):  # type: ignore[no-untyped-def]
        """Ratings with intervals and a win-rate heatmap (matplotlib); writes ``path``
        (PNG/SVG by extension) if given and returns the figure."""
        from prefkit.rank.plots import plot_leaderboard

        return plot_leaderboard(self, path, **kw)

    def __repr__(self) -> str:
        head = ", ".join(
            f"{r['item']}={r['rating']:.1f}" for r in self.to_records()[:3]
        )
        return f"Leaderboard({self.model}, {plural(self.n_items, 'item')}: {head}, ...)"


def _jsonable(v: Any) -> bool:
    return isinstance(v, (str, int, float, bool, type(None), list, dict, tuple))
