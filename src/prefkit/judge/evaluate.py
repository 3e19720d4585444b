"""A pairwise LLM judge scored like a reward model: each chosen/rejected pair is judged (in
both presentation orders by default) and the verdicts become one score per response, so that
:func:`prefkit.reward.evaluate_scores` and :func:`prefkit.reward.rewardbench_scores` report
the judge exactly as they report a reward model (``prefkit reward eval --judge``).

**The judge's preference for the chosen answer.** Per judged order ``o`` with a valid
verdict (an ``error`` order -- a failed request or an unparsed answer -- is left out):

- with verdict probabilities (label-token log-probabilities, ``probs_o``):
  ``q_o = (P_o(chosen) + P_o(tie) / 2) / mass_o``, where ``mass_o = P_o(first) +
  P_o(second) + P_o(tie)`` is the probability the judge put on valid labels (divided out,
  and reported as :attr:`JudgeScores.mean_mass`);
- without: ``q_o`` = 1 when the verdict picks the chosen answer, 0 the rejected one, 1/2 a
  tie.

``p`` = the mean of ``q_o`` over the pair's valid orders: the judge's expected vote for the
chosen answer, a tie worth half (TrustJudge's likelihood-aware aggregation of both orders,
as a probability). The scores handed to the reward evaluation are ``chosen = logit(p) / 2``
and ``rejected = -logit(p) / 2``, so the pair counts 1 when ``p > 1/2``, 0 when ``p < 1/2``
and 1/2 when ``p = 1/2`` (a tie, or two orders that disagree: the reward evaluation's tie),
and its calibration (``sigmoid(chosen - rejected)``) is that of ``p`` itself.
RewardBench's scoring counts ``p = 1/2`` as wrong, as it does a reward model's tie.

A pair with no valid verdict in any order has no ``p``: it is left out of the accuracy and
counted (:attr:`JudgeScores.unjudged`), never given a default; RewardBench's generative
script scores such a pair 1/2, so :meth:`JudgeScores.accuracy_with_unjudged_as_ties` gives
that number beside it.

With one order only, the answer shown first is chosen by a fixed hash of the pair's index
(half the pairs show the chosen answer first), so position bias does not inflate accuracy.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["JudgeScores", "judge_scores", "pair_items"]

CHOSEN, REJECTED = "chosen", "rejected"
#: ``p`` is clipped into [EPS, 1 - EPS] before the logit, so a sure judge scores finitely
EPS = 1e-9


def _chosen_first(i: int, seed: int) -> bool:
    return hashlib.sha256(f"{seed}:{i}".encode()).digest()[0] % 2 == 0


def pair_items(pairs: Any, *, both_orders: bool = True, seed: int = 0
               ) -> list[dict[str, Any]]:
    """Judge inputs (:func:`prefkit.judge.judge_pairs`) for :class:`~prefkit.data.TextPairs`:
    ``question_id`` = the pair's index, ``model_a``/``model_b`` = ``"chosen"``/``"rejected"``
    (the names never reach the judge's prompt). With ``both_orders`` the chosen answer is
    ``answer_a``; with one order, it is ``answer_a`` for the pairs a hash of (``seed``,
    index) picks -- about half -- and ``answer_b`` for the rest.

    >>> from prefkit.data.text import TextPairs
    >>> items = pair_items(TextPairs(["q"], ["good"], ["bad"]))
    >>> items[0]["model_a"], items[0]["answer_a"], items[0]["answer_b"]
    ('chosen', 'good', 'bad')
    """
    items = []
    for i, (q, c, r) in enumerate(zip(pairs.prompt, pairs.chosen, pairs.rejected)):
        first = both_orders or _chosen_first(i, seed)
        (ma, a), (mb, b) = ((CHOSEN, c), (REJECTED, r)) if first else ((REJECTED, r),
                                                                       (CHOSEN, c))
        items.append({"question_id": str(i), "question": q, "model_a": ma, "model_b": mb,
                      "answer_a": a, "answer_b": b})
    return items


@dataclass(frozen=True)
class JudgeScores:
    """The judge's preference for each pair's chosen answer (see the module docstring).

    Attributes:
        p: (n,) ``p`` per pair, NaN where no order has a valid verdict.
        orders: (n,) the number of valid orders each ``p`` averages (0, 1 or 2).
        asked: (n,) the number of orders asked.
        from_probabilities: (n,) True where every valid order gave verdict probabilities.
        mass: (n,) the mean valid-label mass over the orders read from probabilities
            (NaN where none).
        errors: (pair index, order, reason, judge output) of every error order.
    """

    p: NDArray[np.float64]
    orders: NDArray[np.int64]
    asked: NDArray[np.int64]
    from_probabilities: NDArray[np.bool_]
    mass: NDArray[np.float64]
    errors: list[tuple[int, str, str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.p.size)

    @property
    def judged(self) -> NDArray[np.bool_]:
        """Pairs with at least one valid verdict."""
        return self.orders > 0

    @property
    def unjudged(self) -> int:
        """Pairs with no valid verdict (left out of the accuracy)."""
        return int((~self.judged).sum())

    @property
    def single_order(self) -> int:
        """Pairs asked in two orders of which exactly one gave a valid verdict."""
        return int(((self.asked == 2) & (self.orders == 1)).sum())

    @property
    def mean_mass(self) -> float | None:
        """The mean valid-label mass of the orders read from probabilities (None: none)."""
        m = self.mass[np.isfinite(self.mass)]
        return float(m.mean()) if m.size else None

    def scores(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """(chosen, rejected) scores of the judged pairs: ``+-logit(p) / 2``."""
        p = np.clip(self.p[self.judged], EPS, 1 - EPS)
        half = 0.5 * np.log(p / (1 - p))
        return half, -half

    def accuracy_with_unjudged_as_ties(self) -> float:
        """Accuracy over every pair with an unjudged pair counted 1/2 (RewardBench's
        generative script's rule for an ``error`` verdict): the reward evaluation's own
        :func:`prefkit.reward.pairwise_accuracy` (a tie counts 1/2) over the scores of
        :meth:`scores`, an unjudged pair scored 0 and 0 (a tie)."""
        from prefkit.reward.evaluate import pairwise_accuracy

        if not len(self):
            return float("nan")
        chosen = np.zeros(len(self))
        chosen[self.judged] = self.scores()[0]
        return pairwise_accuracy(chosen, -chosen).accuracy

    def counts(self) -> dict[str, Any]:
        """JSON-ready counts: pairs, judged, unjudged, single-order, error verdicts, mass."""
        return {"pairs": len(self), "judged": int(self.judged.sum()),
                "unjudged": self.unjudged, "single_order": self.single_order,
                "orders_asked": int(self.asked.sum()), "error_verdicts": len(self.errors),
                "from_probabilities": int((self.from_probabilities & self.judged).sum()),
                "mean_label_mass": self.mean_mass}


def _order_vote(rec: Mapping[str, Any], order: str) -> tuple[float, float] | None:
    """(q_o, mass or NaN) of one order of a judge_pairs record; None for an error."""
    w = rec.get(f"winner_{order}")
    if w not in ("A", "B", "tie"):
        return None
    shown_first = rec["model_a"] if order == "ab" else rec["model_b"]
    chosen_pos = "A" if shown_first == CHOSEN else "B"
    probs = rec.get(f"probs_{order}")
    if probs:
        mass = float(probs.get("mass", probs["A"] + probs["B"] + probs.get("tie", 0.0)))
        if mass > 0 and math.isfinite(mass):
            other = "B" if chosen_pos == "A" else "A"
            pc, pt = float(probs[chosen_pos]), float(probs.get("tie", 0.0))
            if math.isfinite(pc) and math.isfinite(pt) and math.isfinite(float(probs[other])):
                return (pc + pt / 2) / mass, mass
    return (1.0 if w == chosen_pos else 0.5 if w == "tie" else 0.0), float("nan")


def judge_scores(records: Sequence[Mapping[str, Any]]) -> JudgeScores:
    """The judge's preference ``p`` for the chosen answer of each pair, from the records
    :func:`prefkit.judge.judge_pairs` wrote for :func:`pair_items` (in that order).

    >>> rec = {"model_a": "chosen", "model_b": "rejected", "winner_ab": "A",
    ...        "probs_ab": {"A": 0.6, "B": 0.2, "tie": 0.0, "mass": 0.8},
    ...        "winner_ba": "tie", "probs_ba": None}
    >>> s = judge_scores([rec])   # (0.6 / 0.8 + 1/2) / 2
    >>> float(s.p[0]), int(s.orders[0]), s.mean_mass
    (0.625, 2, 0.8)
    """
    n = len(records)
    p, mass = np.full(n, np.nan), np.full(n, np.nan)
    orders, asked = np.zeros(n, np.int64), np.zeros(n, np.int64)
    from_probs = np.zeros(n, bool)
    errors: list[tuple[int, str, str, str]] = []
    for i, rec in enumerate(records):
        votes = []
        for order in ("ab", "ba"):
            if rec.get(f"winner_{order}") is None:
                continue  # not asked
            asked[i] += 1
            v = _order_vote(rec, order)
            if v is None:
                errors.append((i, order, str(rec.get(f"error_{order}") or "error"),
                               str(rec.get(f"output_{order}") or "")))
            else:
                votes.append(v)
        if votes:
            p[i] = float(np.mean([q for q, _ in votes]))
            orders[i] = len(votes)
            ms = [m for _, m in votes if math.isfinite(m)]
            from_probs[i] = len(ms) == len(votes)
            mass[i] = float(np.mean(ms)) if ms else np.nan
    return JudgeScores(p, orders, asked, from_probs, mass, errors)
