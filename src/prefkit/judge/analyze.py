"""One report per judge: the consistency metrics of :mod:`prefkit.judge.consistency` and the
counts behind them, as ``prefkit judge analyze`` prints them.

The JSON of a report (:meth:`JudgeReport.to_dict`) is ``{"judge", "position_consistency",
"first_position_rate", "conflict_ratio", "non_transitivity", "counts"}``: fractions in
[0, 1], ``None`` (JSON ``null``) where a metric does not apply -- position consistency
without pairs judged in both orders, the conflict ratio without single grades from the same
judge, non-transitivity without a set of three answers to one prompt whose pairs all have a
consistent verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prefkit.judge.bias import prefers_longer
from prefkit.judge.consistency import (
    NonTransitivity,
    Ratio,
    conflict_ratio,
    consistent_verdict,
    first_position_rate,
    judges_of,
    non_transitivity,
    position_consistency,
)
from prefkit.judge.records import ERROR, NOT_JUDGED, TIE, Grades, Verdicts
from prefkit.judge.repair import agreement, bradley_terry_repair, judge_verdict

__all__ = ["JudgeReport", "analyze"]


@dataclass(frozen=True)
class JudgeReport:
    """The consistency of one judge (see the module docstring)."""

    judge: str
    position_consistency: Ratio | None
    first_position_rate: Ratio | None
    conflict_ratio: Ratio | None
    non_transitivity: NonTransitivity | None
    ntr_k: dict[int, NonTransitivity] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    unparsed: list[tuple[str, str, str]] = field(default_factory=list)  # source, order, raw
    #: grades outside the scale: (source, grade, top of the scale), the first few
    out_of_scale: list[tuple[str, float, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The ``prefkit judge analyze --json`` record of this judge."""

        def val(r: Ratio | NonTransitivity | None) -> float | None:
            if isinstance(r, NonTransitivity):
                r = r.ratio
            return None if r is None else r.value

        return {"judge": self.judge,
                "position_consistency": val(self.position_consistency),
                "first_position_rate": val(self.first_position_rate),
                "conflict_ratio": val(self.conflict_ratio),
                "non_transitivity": val(self.non_transitivity),
                "counts": self.counts}


def analyze(verdicts: Verdicts | None, grades: Grades | None = None, *,
            ks: tuple[int, ...] = (4,), conflict_turn: int | None = None,
            gold: Mapping[tuple[Any, ...], int] | None = None,
            show_unparsed: int = 20, scale: float = 10) -> list[JudgeReport]:
    """A :class:`JudgeReport` per judge found in ``verdicts`` or ``grades``.

    Args:
        verdicts, grades: what :func:`prefkit.judge.read_verdicts` read.
        ks: the set sizes of NTR_k reported besides k = 3 (in ``counts``).
        conflict_turn: the turn of the single grades the conflict ratio compares with; by
            default each pairwise verdict's own turn. A turn no grade has is refused
            (``ValueError``): it would compare nothing.
        gold: gold labels per (prompt, model_a, model_b), or per (prompt, model_a,
            model_b, turn) (e.g. human majority labels,
            :func:`prefkit.judge.repair.gold_from_annotations`,
            :func:`prefkit.judge.inputs.read_gold`): ``counts`` then holds the
            agreement of the judge's verdicts before and after the Bradley-Terry repair,
            on the same pairs (those with a verdict before).
        show_unparsed: how many error/unparsed verdicts (and grades off the scale) to keep
            with their rows.
        scale: the top grade of the scale the single grades were asked on (1..scale;
            MT-Bench's single-v1 template: 10), for grade files that do not say their own
            (``prefkit judge run`` writes it per grade). A grade outside it is counted
            (``grades_out_of_scale``), shown with its row (:attr:`JudgeReport.out_of_scale`)
            and left out of the conflict ratio as not a grade of that scale
            (``conflict_out_of_scale`` pairs).

    ``counts`` also holds P(prefers the longer answer) where the answers' lengths are known
    (``prefers_longer``, over ``length_compared`` verdicts).
    """
    if conflict_turn is not None:
        turns = sorted(set(grades.turn.tolist())) if grades is not None else []
        if not turns:
            raise ValueError(f"conflict_turn {conflict_turn}: there are no single grades to "
                             "compare the verdicts with; add the judge's grade files, or "
                             "leave conflict_turn out")
        if conflict_turn not in turns:
            shown = " and ".join(map(str, turns))
            raise ValueError(f"conflict_turn {conflict_turn}: the single grades hold turn"
                             f"{'s' if len(turns) > 1 else ''} {shown} only, so no pair would "
                             f"be compared; give {'one of them' if len(turns) > 1 else shown}"
                             ", or leave conflict_turn out (each verdict is compared with the "
                             "grades of the turn it judged)")
    judges = judges_of(verdicts.judge if verdicts is not None else (),
                       grades.judge if grades is not None else ())
    return [_report(j, verdicts, grades, ks, conflict_turn, gold, show_unparsed, scale)
            for j in judges]


def _report(judge: str, verdicts: Verdicts | None, grades: Grades | None,
            ks: tuple[int, ...], conflict_turn: int | None,
            gold: Mapping[tuple[Any, ...], int] | None, show: int,
            scale: float) -> JudgeReport:
    g = grades.select(grades.judge == judge) if grades is not None else None
    g = g if g is not None and len(g) else None
    v = verdicts.of_judge(judge) if verdicts is not None else None
    counts: dict[str, Any] = {}
    off: list[tuple[str, float, float]] = []
    if g is not None:
        bad = g.out_of_scale(scale)
        counts["grades"] = len(g)
        counts["grades_missing"] = int(np.isnan(g.score).sum())
        counts["grades_out_of_scale"] = int(bad.sum())
        counts["grade_scale_top"] = _scale_top(g, scale)
        top = np.where(np.isfinite(g.scale), g.scale, scale)
        off = [(str(g.source[k]), float(g.score[k]), float(top[k]))
               for k in np.flatnonzero(bad)[:show].tolist()]
    if v is None or not len(v):
        return JudgeReport(judge, None, None, None, None, counts=counts, out_of_scale=off)
    both = v.both_orders
    orders = "both" if both.any() else "any"
    pc = position_consistency(v) if both.any() else None
    fp = first_position_rate(v)
    fp = fp if fp.total or fp.left_out["tie"] else None
    cr = conflict_ratio(v, g, turn=conflict_turn, scale=scale) if g is not None else None
    nt = non_transitivity(v, orders=orders)
    ntr_k = {k: non_transitivity(v, k=k, orders=orders) for k in ks}
    verdict = consistent_verdict(v, orders=orders)
    codes = np.concatenate([v.ab, v.ba])
    counts.update({
        "pairs": len(v),
        "both_orders": int(both.sum()),
        "one_order": int((~both).sum()),
        "verdicts": int((codes != NOT_JUDGED).sum()),
        "errors": int((codes == ERROR).sum()),
        "consistent": int((verdict >= 0).sum()) if orders == "both" else None,
        "inconsistent": pc.total - pc.count if pc is not None else None,
        "consistent_ties": int((verdict == TIE).sum()),
        "first_position": fp.count if fp is not None else None,
        "positional_non_tie": fp.total if fp is not None else None,
        "verdict_orders": orders,
    })
    if cr is not None:
        counts.update({"conflicts": cr.count, "conflict_pairs": cr.total,
                       "conflict_no_grade": cr.left_out["no_grade"],
                       "conflict_out_of_scale": cr.left_out["out_of_scale"],
                       "conflict_turn": conflict_turn if conflict_turn is not None
                       else _turns(v)})
    counts.update({"triads": nt.ratio.total, "non_transitive_triads": nt.ratio.count,
                   "triads_left_out_inconsistent": nt.ratio.left_out["inconsistent_pair"],
                   "triads_left_out_not_compared": nt.ratio.left_out["not_compared"],
                   "violations": dict(nt.by_type)})
    for k, r in ntr_k.items():
        counts[f"ntr_{k}"] = r.ratio.value
        counts[f"sets_{k}"] = r.ratio.total
    longer = prefers_longer(v)
    if longer.total:
        counts["prefers_longer"] = longer.value
        counts["length_compared"] = longer.total
    if gold is not None:
        counts.update(_agreement(v, gold))
    unparsed = []
    for order, col, raw in (("ab", v.ab, v.raw_ab), ("ba", v.ba, v.raw_ba)):
        for k in np.flatnonzero(col == ERROR).tolist():
            unparsed.append((str(v.source[k]), order, "" if raw[k] is None else str(raw[k])))
    unparsed.sort()
    return JudgeReport(judge, pc, fp, cr, nt if nt.ratio.total else None, ntr_k, counts,
                       unparsed[:show], off)


def _scale_top(g: Grades, default: float) -> float | list[float]:
    """The top grade the grades were checked against (1..top: their own where the file
    says it, else ``default``); every top found when they differ."""
    tops = sorted(set(np.where(np.isfinite(g.scale), g.scale, default).tolist()))
    return tops[0] if len(tops) == 1 else tops


def _agreement(v: Verdicts, gold: Mapping[tuple[Any, ...], int]) -> dict[str, Any]:
    before = judge_verdict(v)
    after = judge_verdict(bradley_terry_repair(v))
    same = before >= 0
    a0 = agreement(v.select(same), gold, before[same])
    a1 = agreement(v.select(same), gold, after[same])
    return {"agreement": a0.with_ties.value, "agreement_without_ties": a0.without_ties.value,
            "agreement_pairs": a0.with_ties.total,
            "agreement_bt_repair": a1.with_ties.value,
            "agreement_bt_repair_without_ties": a1.without_ties.value,
            "agreement_no_label": a0.left_out["no_label"]}


def _turns(v: Verdicts) -> int | list[int]:
    turns = sorted(set(v.turn.tolist()))
    return turns[0] if len(turns) == 1 else turns
