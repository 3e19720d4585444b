"""Repairs of a judge's verdicts, and agreement with human labels to judge a repair by.

- :func:`likelihood_aggregate` (TrustJudge's likelihood-aware aggregation): add the verdict
  probabilities of both presentation orders, mapped back to the models, and take the most
  likely verdict -- needs a judge that gives probabilities.
- :func:`bradley_terry_repair`: per prompt, fit Bradley-Terry strengths to every judged
  order (:func:`prefkit.rank.fit_bradley_terry`) and replace each verdict by the order of
  the fitted strengths. Transitive by construction, so non-transitivity cannot judge it:
  :func:`agreement` with human labels before and after can.

A repaired set is a :class:`~prefkit.judge.records.Verdicts` whose two orders agree by
construction (``ab`` = the verdict, ``ba`` = its mirror), so every metric reads it as is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from prefkit.judge.consistency import Ratio, consistent_verdict
from prefkit.judge.records import (
    A_WINS,
    B_WINS,
    ERROR,
    FIRST,
    NOT_JUDGED,
    SECOND,
    TIE,
    Verdicts,
    identity,
)

__all__ = ["Agreement", "agreement", "bradley_terry_repair", "gold_from_annotations",
           "gold_label", "judge_verdict", "likelihood_aggregate", "majority_labels"]

Pair = tuple[str, str, str]  # prompt, model_a, model_b


def _mirrored(v: Verdicts, verdict: NDArray[np.int8], done: NDArray[np.bool_]) -> Verdicts:
    """``v`` with the rows of ``done`` set to ``verdict`` (model terms) in both orders."""
    ab, ba = v.ab.copy(), v.ba.copy()
    ab[done] = verdict[done]  # A_WINS == FIRST in order ab
    ba[done] = identity(verdict, "ba")[done]  # order ba: model_a wins = SECOND
    return v.with_columns(ab=ab, ba=ba)


def likelihood_aggregate(v: Verdicts, *, tolerance: float = 0.0) -> tuple[Verdicts, int]:
    """TrustJudge's likelihood-aware aggregation of both orders.

    For a pair with probabilities in both orders: P(a) = p_ab(first) + p_ba(second),
    P(b) = p_ab(second) + p_ba(first), P(tie) = p_ab(tie) + p_ba(tie) (missing labels
    count 0); the verdict is the most likely one, or a tie when the two largest differ by
    less than ``2 * tolerance`` (TrustJudge's ``abs(first - second) / 2 < tolerance``).
    Rows without probabilities in both orders keep their verdicts.

    Returns the repaired verdicts and the number of rows repaired.

    >>> from prefkit.judge.records import Verdicts
    >>> v = Verdicts(judge=["j"], prompt=["1"], model_a=["x"], model_b=["y"], ab=[0], ba=[0],
    ...              prob_ab=[[0.6, 0.4, 0.0]], prob_ba=[[0.9, 0.1, 0.0]])
    >>> r, n = likelihood_aggregate(v)  # P(x) = 0.6 + 0.1, P(y) = 0.4 + 0.9: y wins
    >>> r.ab.tolist(), r.ba.tolist(), n
    ([1], [0], 1)
    """
    pa, pb = np.nan_to_num(v.prob_ab), np.nan_to_num(v.prob_ba)
    have = np.isfinite(v.prob_ab).any(axis=1) & np.isfinite(v.prob_ba).any(axis=1)
    merged = np.stack([pa[:, FIRST] + pb[:, SECOND], pa[:, SECOND] + pb[:, FIRST],
                       pa[:, TIE] + pb[:, TIE]], axis=1)  # (n, 3): a, b, tie
    top2 = np.sort(merged, axis=1)[:, -2:]
    verdict = np.argmax(merged, axis=1).astype(np.int8)
    verdict[(top2[:, 1] - top2[:, 0]) / 2 < tolerance] = TIE
    return _mirrored(v, verdict, have), int(have.sum())


def bradley_terry_repair(v: Verdicts, *, prior: float = 1.0, tie_margin: float = 1e-6,
                         ties: str = "half") -> Verdicts:
    """Per (judge, prompt, turn): fit Bradley-Terry log-strengths to every parsed verdict
    of every order (a tie as half a win each, ``ties``; a Gaussian prior of variance
    ``prior`` keeps a prompt where one answer wins everything finite) and replace each
    pair's verdict by the fitted order: a wins when ``s_a - s_b > tie_margin``, a tie
    within it. A group with no parsed verdict keeps its rows. Transitive by construction.
    """
    from prefkit.data.records import ItemIndex, PairwiseVotes
    from prefkit.rank import fit_bradley_terry

    ia, ib = identity(v.ab, "ab"), identity(v.ba, "ba")
    groups: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    for k in range(len(v)):
        groups[(v.judge[k], v.prompt[k], int(v.turn[k]))].append(k)
    verdict = np.full(len(v), -1, dtype=np.int8)
    for rows in groups.values():
        a_l, b_l, out_l = [], [], []
        for k in rows:
            for code in (ia[k], ib[k]):
                if code >= 0:
                    a_l.append(v.model_a[k])
                    b_l.append(v.model_b[k])
                    out_l.append(int(code))
        if not a_l:
            continue
        # answers of a prompt never compared with each other share no scale: one fit per
        # connected component of the judged pairs
        index = ItemIndex.from_names(a_l, b_l)
        votes = PairwiseVotes(index, index.ids(a_l), index.ids(b_l), np.asarray(out_l))
        scores: dict[str, float] = {}
        for comp in _components(index.names, a_l, b_l):
            sub = votes.restrict(comp)
            fit = fit_bradley_terry(sub, ties=ties, prior=prior)  # type: ignore[arg-type]
            scores.update(zip(sub.items.names, fit.scores.tolist()))
        for k in rows:
            sa, sb = scores.get(v.model_a[k]), scores.get(v.model_b[k])
            if sa is None or sb is None:
                continue
            d = sa - sb
            verdict[k] = A_WINS if d > tie_margin else B_WINS if d < -tie_margin else TIE
    return _mirrored(v, verdict, verdict >= 0)


def _components(names: tuple[str, ...], a: list[str], b: list[str]) -> list[list[str]]:
    """The connected components (of at least two answers) of the judged pairs."""
    parent = {n: n for n in names}

    def root(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for x, y in zip(a, b):
        parent[root(x)] = root(y)
    comps: dict[str, list[str]] = defaultdict(list)
    for n in names:
        comps[root(n)].append(n)
    return [c for c in comps.values() if len(c) > 1]


def judge_verdict(v: Verdicts) -> NDArray[np.int8]:
    """One verdict per row in model terms, as FastChat's ``show_result.py`` reads a pair
    judged in both orders: the orders agree -> that verdict; they disagree -> a tie; an
    error in either order -> -1 (no verdict). A one-order row gives its verdict."""
    ia, ib = identity(v.ab, "ab"), identity(v.ba, "ba")
    both = v.both_orders
    out = consistent_verdict(v, orders="any")
    disagree = both & (ia >= 0) & (ib >= 0) & (ia != ib)
    out[disagree] = TIE
    out[(v.ab == ERROR) | (v.ba == ERROR)] = -1
    out[(v.ab == NOT_JUDGED) & (v.ba == NOT_JUDGED)] = -1
    return out


def majority_labels(pairs: Mapping[Pair, list[int]]) -> dict[Pair, int]:
    """Human labels per pair (A_WINS, B_WINS, TIE codes) -> the majority label; a pair
    without a strict majority (1-1, 1-1-1) is left out."""
    out = {}
    for key, labels in pairs.items():
        values, counts = np.unique(np.asarray(labels), return_counts=True)
        best = np.flatnonzero(counts == counts.max())
        if len(best) == 1 and counts.max() * 2 > len(labels):
            out[key] = int(values[best[0]])
    return out


@dataclass(frozen=True)
class Agreement:
    """Agreement of a judge's verdicts with gold labels: ``with_ties`` (a tie is a label:
    exact match over pairs with both a verdict and a label) and ``without_ties`` (pairs
    where neither is a tie), each a :class:`~prefkit.judge.consistency.Ratio`."""

    with_ties: Ratio
    without_ties: Ratio
    left_out: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {"with_ties": self.with_ties.value, "without_ties": self.without_ties.value,
                "pairs": self.with_ties.total, "pairs_without_ties": self.without_ties.total,
                "left_out": dict(self.left_out)}


def gold_label(gold: Mapping[tuple[object, ...], int], prompt: str, a: str, b: str,
               turn: int) -> int | None:
    """The gold label of pair (``a``, ``b``) on ``prompt`` in model terms (A_WINS = ``a``):
    the label of (prompt, a, b, turn) -- gold read per turn, e.g. MT-Bench's human
    judgments -- else of (prompt, a, b); a label stored for (b, a) is mirrored. None: no
    label."""
    mirror = {A_WINS: B_WINS, B_WINS: A_WINS, TIE: TIE}
    for key, flip in (((prompt, a, b, turn), False), ((prompt, b, a, turn), True),
                      ((prompt, a, b), False), ((prompt, b, a), True)):
        label = gold.get(key)
        if label is not None:
            return mirror[label] if flip else label
    return None


def agreement(v: Verdicts, gold: Mapping[tuple[object, ...], int],
              verdict: NDArray[np.int8] | None = None) -> Agreement:
    """How often the judge's verdict (:func:`judge_verdict`, or ``verdict``) equals the gold
    label of the same (prompt, model_a, model_b), per turn where the gold is keyed by turn
    too (:func:`gold_label`; a gold label stored for (prompt, b, a) is mirrored). Left out
    and counted: ``no_verdict`` and ``no_label``.

    >>> from prefkit.judge.records import Verdicts
    >>> v = Verdicts(judge=["j"] * 3, prompt=["1", "2", "3"], model_a=["x"] * 3,
    ...              model_b=["y"] * 3, ab=[0, 2, 1], ba=[-2, -2, -2])
    >>> a = agreement(v, {("1", "x", "y"): 0, ("2", "x", "y"): 1, ("3", "y", "x"): 0})
    >>> a.with_ties.count, a.with_ties.total, a.without_ties.count, a.without_ties.total
    (2, 3, 2, 2)
    """
    verdict = judge_verdict(v) if verdict is None else verdict
    hit = n = hit_nt = n_nt = no_verdict = no_label = 0
    for k in range(len(v)):
        label = gold_label(gold, v.prompt[k], v.model_a[k], v.model_b[k], int(v.turn[k]))
        if label is None:
            no_label += 1
            continue
        if verdict[k] < 0:
            no_verdict += 1
            continue
        n += 1
        hit += int(verdict[k] == label)
        if verdict[k] != TIE and label != TIE:
            n_nt += 1
            hit_nt += int(verdict[k] == label)
    left = {"no_verdict": no_verdict, "no_label": no_label}
    return Agreement(Ratio(hit, n, left), Ratio(hit_nt, n_nt), left)


def gold_from_annotations(annotations: object, *, min_votes: int = 2) -> dict[Pair, int]:
    """Gold labels per (prompt, model_a, model_b) from a
    :class:`prefkit.data.annotations.Annotations` (``read_annotations``, e.g. the
    ``pandalm`` format): each pair's majority label with at least ``min_votes`` votes and
    no other label as frequent (pairs without one are left out). Label codes are the same
    (0 = the response shown first, ``model_a``; 1 = ``model_b``; 2 = tie)."""
    ann = annotations
    majority = ann.majority(min_votes)  # type: ignore[attr-defined]
    prompts, ma, mb = ann.prompt, ann.model_a, ann.model_b  # type: ignore[attr-defined]
    if prompts is None or ma is None or mb is None:
        raise ValueError("gold labels need each pair's prompt and both models' names")
    return {(p, a, b): int(m) for p, a, b, m in zip(prompts, ma, mb, majority.tolist())
            if m >= 0}
