"""How consistent a judge is with itself: position consistency, first-position rate,
score-comparison conflicts, non-transitivity (TrustJudge, Wang et al. 2025; the MT-Bench
paper, Zheng et al. 2023).

Every metric is a :class:`Ratio`: the share, its numerator and denominator, and what was
left out of the denominator and why (never silently). Pure functions over
:class:`~prefkit.judge.records.Verdicts` and :class:`~prefkit.judge.records.Grades`.

Consistent verdicts: a pair judged in both orders has a *consistent verdict* when its two
verdicts agree after mapping back to the models (both say ``model_a``, both ``model_b``, or
both tie). :func:`pair_relations` gives, per (judge, prompt, turn, pair), that verdict.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from prefkit.judge.records import (
    A_WINS,
    B_WINS,
    ERROR,
    FIRST,
    NOT_JUDGED,
    SECOND,
    TIE,
    Grades,
    Verdicts,
    identity,
)

__all__ = [
    "VIOLATIONS",
    "NonTransitivity",
    "Ratio",
    "classify_triad",
    "conflict_ratio",
    "first_position_rate",
    "non_transitivity",
    "pair_relations",
    "position_consistency",
]


@dataclass(frozen=True)
class Ratio:
    """``count / total`` (``value`` is None when ``total`` is 0: the metric does not
    apply), and how many items were left out of ``total``, by reason."""

    count: int
    total: int
    left_out: dict[str, int] = field(default_factory=dict)

    @property
    def value(self) -> float | None:
        return self.count / self.total if self.total else None

    def to_dict(self) -> dict[str, object]:
        return {"value": self.value, "count": self.count, "total": self.total,
                "left_out": dict(self.left_out)}


def position_consistency(v: Verdicts) -> Ratio:
    """Share of pairs judged in both orders whose two verdicts agree after mapping back to
    the models (MT-Bench paper, Table 2 "consistency").

    Denominator: rows asked in both orders with a parsed verdict (A, B or tie) in each.
    Left out and counted: ``error`` (an error or unparsed verdict in either order) and
    ``one_order`` (asked in one order only).

    >>> from prefkit.judge.records import Verdicts
    >>> v = Verdicts(judge=["j"] * 4, prompt=["1", "2", "3", "4"], model_a=["x"] * 4,
    ...              model_b=["y"] * 4, ab=[0, 0, 2, -1], ba=[1, 0, 2, 0])
    >>> r = position_consistency(v)  # rows 1, 3 agree (x wins; tie); row 2 flips; 4 error
    >>> r.count, r.total, r.left_out
    (2, 3, {'error': 1, 'one_order': 0})
    """
    both = v.both_orders
    err = both & ((v.ab == ERROR) | (v.ba == ERROR))
    ok = both & ~err
    ia, ib = identity(v.ab, "ab"), identity(v.ba, "ba")
    agree = ok & (ia == ib)
    return Ratio(int(agree.sum()), int(ok.sum()),
                 {"error": int(err.sum()), "one_order": int((~both).sum())})


def first_position_rate(v: Verdicts) -> Ratio:
    """Share of parsed positional verdicts, ties excluded, that pick the answer shown first.

    Every judged order of every row is one verdict. Denominator: verdicts ``A`` or ``B``.
    Left out and counted: ``tie`` and ``error`` verdicts, and (``not_positional``) rows
    recorded as both-orders outcomes. 0.5 is a judge without position
    bias; above 0.5 it favours the first position.

    >>> from prefkit.judge.records import Verdicts
    >>> v = Verdicts(judge=["j"] * 3, prompt=["1", "2", "3"], model_a=["x"] * 3,
    ...              model_b=["y"] * 3, ab=[0, 0, 2], ba=[0, 1, -1])
    >>> r = first_position_rate(v)
    >>> r.count, r.total, r.left_out
    (3, 4, {'tie': 1, 'error': 1})
    """
    pos = v.positional
    codes = np.concatenate([v.ab[pos], v.ba[pos]])
    codes = codes[codes != NOT_JUDGED]
    left = {"tie": int((codes == TIE).sum()), "error": int((codes == ERROR).sum())}
    if not pos.all():  # rows recorded as both-orders outcomes: no position to count
        left["not_positional"] = int((~pos).sum())
    return Ratio(int((codes == FIRST).sum()), int(((codes == FIRST) | (codes == SECOND)).sum()),
                 left)


def consistent_verdict(v: Verdicts, *, orders: Literal["both", "any"] = "both") -> np.ndarray:
    """Per row, the verdict in model terms (A_WINS, B_WINS, TIE), or -1 where there is
    none: an error or unparsed verdict, the two orders disagreeing, or (``orders="both"``)
    a row asked in one order only. ``orders="any"`` takes a one-order verdict as it is
    (for judges recorded in one order)."""
    ia, ib = identity(v.ab, "ab"), identity(v.ba, "ba")
    out = np.full(len(v), -1, dtype=np.int8)
    both = v.both_orders
    ok_both = both & (ia == ib) & (ia >= 0)
    out[ok_both] = ia[ok_both]
    if orders == "any":
        only_a = (v.ba == NOT_JUDGED) & (v.ab >= 0)
        only_b = (v.ab == NOT_JUDGED) & (v.ba >= 0)
        out[only_a] = ia[only_a]
        out[only_b] = ib[only_b]
    return out


def conflict_ratio(v: Verdicts, grades: Grades, *, turn: int | None = None,
                   scale: float | None = None) -> Ratio:
    """Score-comparison conflict ratio (TrustJudge's score-comparison inconsistency, in
    this stricter form): among pairs whose both-order verdict agrees and is not a tie, the
    share whose winner has a strictly **lower** single grade than its loser, grades from the
    same judge for the same prompt and the same turn as the pairwise verdict (``turn``
    overrides it; the shared MT-Bench pairwise files judge turn 2).

    Denominator: consistent non-tie pairs with both grades. Left out and counted:
    ``not_consistent`` (error, one order, or the orders disagree), ``tie`` (a consistent
    tie), ``no_grade`` (either answer has no grade, or an unparsed one) and, with
    ``scale`` (the top grade where a row does not say its own,
    :meth:`~prefkit.judge.records.Grades.out_of_scale`), ``out_of_scale`` (either grade
    lies outside the scale the judge was asked to use: not a grade of that scale).

    >>> from prefkit.judge.records import Grades, Verdicts
    >>> v = Verdicts(judge=["j"] * 3, prompt=["1", "1", "2"], model_a=["x", "x", "x"],
    ...              model_b=["y", "z", "y"], ab=[0, 1, 0], ba=[1, 0, 1], turn=[2, 2, 2])
    >>> g = Grades(judge=["j"] * 5, prompt=["1", "1", "1", "2", "2"],
    ...            model=["x", "y", "z", "x", "y"], score=[8, 9, 5, 7, 7], turn=[2] * 5)
    >>> r = conflict_ratio(v, g)  # x beat y but scored lower (8 < 9); z beat x (5 < 8)
    >>> r.count, r.total, r.left_out   # prompt 2: x beat y at 7 = 7, no conflict
    (2, 3, {'not_consistent': 0, 'tie': 0, 'no_grade': 0})
    """
    verdict = consistent_verdict(v)
    lookup = grades.lookup()
    bad = set() if scale is None else {  # (judge, prompt, turn, model) graded off the scale
        (j, p, int(t), m) for j, p, t, m in zip(*(x[grades.out_of_scale(scale)].tolist() for x
                                                 in (grades.judge, grades.prompt, grades.turn,
                                                     grades.model)))}
    count = total = no_grade = off_scale = 0
    ties = int((verdict == TIE).sum())
    for k in np.flatnonzero((verdict == A_WINS) | (verdict == B_WINS)).tolist():
        t = int(v.turn[k]) if turn is None else turn
        key = (v.judge[k], v.prompt[k], t)
        sa = lookup.get((*key, v.model_a[k]), np.nan)
        sb = lookup.get((*key, v.model_b[k]), np.nan)
        if (*key, v.model_a[k]) in bad or (*key, v.model_b[k]) in bad:
            off_scale += 1
            continue
        if not (np.isfinite(sa) and np.isfinite(sb)):
            no_grade += 1
            continue
        total += 1
        win, lose = (sa, sb) if verdict[k] == A_WINS else (sb, sa)
        count += int(win < lose)
    left = {"not_consistent": int((verdict < 0).sum()), "tie": ties, "no_grade": no_grade}
    if scale is not None:
        left["out_of_scale"] = off_scale
    return Ratio(count, total, left)


# -- transitivity ---------------------------------------------------------------------
#: violation types of a triad that no weak order explains (relabelling-invariant)
VIOLATIONS = ("cycle", "tie_chain", "tie_split")


def classify_triad(r_xy: int, r_yz: int, r_xz: int) -> str | None:
    """``None`` if a weak order explains the three verdicts, else the violation type.

    Each ``r`` is +1 (the first wins), -1 (the second wins) or 0 (tie).

    - ``cycle``: no tie, A>B>C>A;
    - ``tie_chain``: two ties and one win, A=B, B=C, A>C (TrustJudge's "equal" case);
    - ``tie_split``: one tie whose two answers the third separates, A=B, A>C, C>B.

    (TrustJudge's ``evaluate_triple`` sorts the one-tie violations into "circle" or
    "equal" by where the tie sits in its argument order; the count of violations is the
    same, the types here do not depend on the order the items are named in.)

    >>> classify_triad(1, 1, -1), classify_triad(0, 0, 1), classify_triad(0, -1, 1)
    ('cycle', 'tie_chain', 'tie_split')
    >>> classify_triad(1, 1, 1), classify_triad(0, 1, 1), classify_triad(0, 0, 0)
    (None, None, None)
    """
    rels = (r_xy, r_yz, r_xz)
    ties = sum(r == 0 for r in rels)
    if ties == 0:
        return "cycle" if r_xy == r_yz == -r_xz else None
    if ties == 3:
        return None
    if ties == 2:
        return "tie_chain"
    # one tie: the tied pair's two answers must stand the same way to the third
    # rel(u, t) and rel(w, t) for tied (u, w) and third t, from x, y, z's relations
    r_yx, r_zy, r_zx = -r_xy, -r_yz, -r_xz
    if r_xy == 0:  # x = y, third z
        same = r_xz == r_yz
    elif r_yz == 0:  # y = z, third x
        same = r_yx == r_zx
    else:  # x = z, third y
        same = r_xy == r_zy
    return None if same else "tie_split"


Key = tuple[str, str, int]  # judge, prompt, turn


def pair_relations(v: Verdicts, *, orders: Literal["both", "any"] = "both"
                   ) -> dict[Key, dict[tuple[str, str], int | None]]:
    """Per (judge, prompt, turn), each judged pair ``(m1, m2)`` (sorted names) -> +1 (m1
    wins), -1, 0 (tie), or ``None`` (no consistent verdict: see
    :func:`consistent_verdict`; a pair judged twice with different verdicts is also
    ``None``)."""
    verdict = consistent_verdict(v, orders=orders)
    out: dict[Key, dict[tuple[str, str], int | None]] = defaultdict(dict)
    for k in range(len(v)):
        a, b = v.model_a[k], v.model_b[k]
        c = int(verdict[k])
        rel: int | None = None if c < 0 else (0 if c == TIE else (1 if c == A_WINS else -1))
        if a > b:
            a, b = b, a
            rel = None if rel is None else -rel
        group = out[(v.judge[k], v.prompt[k], int(v.turn[k]))]
        if (a, b) in group and group[(a, b)] != rel:
            rel = None
        group[(a, b)] = rel
    return dict(out)


@dataclass(frozen=True)
class NonTransitivity:
    """Non-transitivity over ``k``-answer sets: ``ratio`` (sets that no weak order
    explains / sets whose pairs all have a consistent verdict, with the sets left out by
    reason) and, for ``k`` = 3, the violations by type."""

    k: int
    ratio: Ratio
    by_type: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        return {"k": self.k, **self.ratio.to_dict(), "by_type": dict(self.by_type)}


def non_transitivity(v: Verdicts, *, k: int = 3, orders: Literal["both", "any"] = "both"
                     ) -> NonTransitivity:
    """Non-transitivity ratio NTR_k (TrustJudge): per (judge, prompt, turn), over the sets
    of ``k`` answers whose ``k(k-1)/2`` pairs all have a consistent verdict (ties
    included), the share that no weak order explains. A weak order explains a set iff it
    explains each of its triads, so a set is non-transitive iff one of its triads is a
    violation (:func:`classify_triad`); ``by_type`` counts, per type, the sets holding such
    a triad (a set can count under several types; for k = 3 the counts add up).

    Left out and counted: ``inconsistent_pair`` (a pair of the set has no consistent
    verdict: an error, one order only under ``orders="both"``, or the orders disagree) and
    ``not_compared`` (a pair of the set was never judged).

    >>> from prefkit.judge.records import Verdicts
    >>> v = Verdicts(judge=["j"] * 3, prompt=["1"] * 3, model_a=["x", "y", "x"],
    ...              model_b=["y", "z", "z"], ab=[0, 0, 1], ba=[1, 1, 0])  # x>y>z>x
    >>> r = non_transitivity(v)
    >>> r.ratio.count, r.ratio.total, r.by_type["cycle"]
    (1, 1, 1)
    """
    if k < 3:
        raise ValueError(f"k must be at least 3 (a triad), got {k}")
    count = total = inconsistent = not_compared = 0
    by_type = dict.fromkeys(VIOLATIONS, 0)
    for group in pair_relations(v, orders=orders).values():
        models = sorted({m for pair in group for m in pair})
        for subset in itertools.combinations(models, k):
            pairs = list(itertools.combinations(subset, 2))
            rels = [group.get(p, "missing") for p in pairs]
            if any(r == "missing" for r in rels):
                not_compared += 1
                continue
            if any(r is None for r in rels):
                inconsistent += 1
                continue
            rel = dict(zip(pairs, rels))
            types = {t for t in (classify_triad(rel[(x, y)], rel[(y, z)], rel[(x, z)])  # type: ignore[arg-type]
                                 for x, y, z in itertools.combinations(subset, 3)) if t}
            total += 1
            if types:
                count += 1
                for t in types:
                    by_type[t] += 1
    return NonTransitivity(k, Ratio(count, total, {"inconsistent_pair": inconsistent,
                                                   "not_compared": not_compared}), by_type)


def judges_of(*parts: Iterable[str]) -> list[str]:
    """The judges across verdicts and grades, in order of first appearance."""
    return list(dict.fromkeys(j for p in parts for j in p))
