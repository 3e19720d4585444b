"""Data quality of annotated pairs: duplicates and contradictions, position and length
bias, cyclic triads, annotators who disagree with the consensus.

Definitions (``ann`` an :class:`~prefkit.data.Annotations`; a response's *identity* is its
text when the input has texts, else its model's name):

- **duplicates**: pairs with the same prompt and the same two responses, in either
  presentation order (``swapped`` counts groups holding both orders);
- **contradictory**: a duplicate group whose pairs' majority labels, mapped back from
  positions to identities, name different winners (a tie contradicts nothing);
- **position bias**: among non-tie labels, the share choosing the response shown first;
  a two-sided exact binomial test against 1/2 and a Wilson interval. A data set that put
  the better response first more often than not shows the same share: it measures the
  annotators only where the order was random;
- **length bias**: among non-tie labels of pairs whose responses differ in length (in
  characters), ``P(prefers the longer)``, with a percentile bootstrap interval over pairs
  (labels of one pair are not independent) and an exact binomial test;
- **cyclic triads** per prompt: over three responses of one prompt whose three pairs all
  have a majority winner, the triads where the winners form a cycle (A > B > C > A); across
  models, :func:`prefkit.rank.diagnose`'s cyclic triads of the majority tournament against
  what Bradley-Terry predicts;
- **annotators against the consensus**: for annotator ``j``, the share of its labels equal
  to the leave-one-out majority (the most frequent label of the *other* annotators of the
  pair, when unique); flagged when a one-sided exact binomial test says it is below the
  agreement of everybody else, with Holm's correction over the annotators tested.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
from numpy.typing import NDArray

from prefkit.data.annotations import FIRST, MISSING, SECOND, TIE

__all__ = ["Quality", "annotator_consensus", "cyclic_triads", "duplicates", "holm",
           "length_bias", "position_bias", "quality"]


def _identities(ann: Any) -> tuple[list[str], list[str]] | None:
    if ann.response_a is not None and ann.response_b is not None:
        return ann.response_a, ann.response_b
    if ann.model_a is not None and ann.model_b is not None:
        return ann.model_a, ann.model_b
    return None


def _prompts(ann: Any) -> list[str]:
    return ann.prompt if ann.prompt is not None else [""] * len(ann)


def _winner(label: int, a: str, b: str) -> str | None:
    return a if label == FIRST else b if label == SECOND else None


def _binom_p(k: int, n: int, p: float = 0.5, alternative: str = "two-sided") -> float | None:
    if n == 0:
        return None
    from scipy.stats import binomtest

    return float(binomtest(k, n, p, alternative=alternative).pvalue)


def _wilson(k: int, n: int, confidence: float) -> list[float | None]:
    if n == 0:
        return [None, None]
    from prefkit.reward.evaluate import wilson_interval

    return list(wilson_interval(k / n, n, confidence))


# -- duplicates ---------------------------------------------------------------------------------
def duplicates(ann: Any, *, show: int = 20) -> dict[str, Any]:
    """Duplicate and contradictory pairs (see the module docstring); ``examples`` lists the
    first ``show`` contradictory groups with their pair ids and lines."""
    ids = _identities(ann)
    if ids is None:
        return {"applies": False, "reason": "no response texts or model names"}
    ra, rb = ids
    groups: dict[tuple[str, frozenset[str]], list[int]] = defaultdict(list)
    for i, p in enumerate(_prompts(ann)):
        groups[(p, frozenset((ra[i], rb[i])))].append(i)
    maj = ann.majority()
    dup = [g for g in groups.values() if len(g) > 1]
    swapped = sum(len({ra[i] for i in g}) > 1 for g in dup)
    contra = []
    for g in dup:
        winners = {w for i in g if (w := _winner(int(maj[i]), ra[i], rb[i])) is not None}
        if len(winners) > 1:
            contra.append(g)
    lines = ann.lines if ann.lines is not None else np.arange(1, len(ann) + 1)
    return {"applies": True, "groups": len(dup), "pairs": sum(len(g) for g in dup),
            "extra_copies": sum(len(g) - 1 for g in dup), "swapped_groups": swapped,
            "contradictory_groups": len(contra),
            "contradictory_pairs": sum(len(g) for g in contra),
            "examples": [{"pair_ids": [ann.pair_id[i] for i in g],
                          "lines": [int(lines[i]) for i in g]} for g in contra[:show]]}


# -- biases -------------------------------------------------------------------------------------
def position_bias(ann: Any, *, confidence: float = 0.95) -> dict[str, Any]:
    """Share of non-tie labels choosing the response shown first, overall and per
    annotator (see the module docstring)."""
    lab = np.asarray(ann.labels)
    out = _first_share(lab, confidence)
    out["per_annotator"] = {a: _first_share(lab[:, j], confidence)
                            for j, a in enumerate(ann.annotators)}
    return out


def _first_share(lab: NDArray[np.int8], confidence: float) -> dict[str, Any]:
    k, n = int((lab == FIRST).sum()), int(((lab == FIRST) | (lab == SECOND)).sum())
    return {"first_rate": k / n if n else None, "n": n, "interval": _wilson(k, n, confidence),
            "p_value": _binom_p(k, n), "tie_rate": float((lab == TIE).sum() / max(
                (lab != MISSING).sum(), 1))}


def length_bias(ann: Any, *, rng: np.random.Generator | None = None, rounds: int = 1000,
                confidence: float = 0.95) -> dict[str, Any]:
    """``P(prefers the longer answer)`` over non-tie labels of pairs of unequal length
    (characters), with a bootstrap interval over pairs (see the module docstring)."""
    if ann.response_a is None or ann.response_b is None:
        return {"applies": False, "reason": "no response texts"}
    la = np.array([len(x) for x in ann.response_a])
    lb = np.array([len(x) for x in ann.response_b])
    lab = np.asarray(ann.labels)
    longer = np.where(la > lb, FIRST, np.where(lb > la, SECOND, MISSING))
    dec = ((lab == FIRST) | (lab == SECOND)) & (longer != MISSING)[:, None]
    hit = (lab == longer[:, None]) & dec
    k_pair, n_pair = hit.sum(1).astype(float), dec.sum(1).astype(float)
    k, n = int(k_pair.sum()), int(n_pair.sum())
    interval: list[float | None] = [None, None]
    if rng is not None and n and rounds > 0:
        used = np.flatnonzero(n_pair > 0)
        w = rng.multinomial(used.size, np.full(used.size, 1 / used.size), size=rounds)
        vals = (w @ k_pair[used]) / np.maximum(w @ n_pair[used], 1)
        a = (1 - confidence) / 2
        interval = [float(x) for x in np.quantile(vals, [a, 1 - a])]
    return {"applies": True, "longer_rate": k / n if n else None, "n_labels": n,
            "n_pairs": int((n_pair > 0).sum()), "interval": interval,
            "interval_method": "percentile bootstrap over pairs" if interval[0] is not None
            else None, "p_value": _binom_p(k, n),
            "equal_length_pairs": int((la == lb).sum()), "unit": "characters"}


# -- cycles -------------------------------------------------------------------------------------
def cyclic_triads(ann: Any, *, rng: np.random.Generator | None = None,
                  simulations: int = 200) -> dict[str, Any]:
    """Cyclic triads per prompt (over response identities, each pair's winner the majority
    of all its labels, duplicates pooled) and, with model names, across models through
    :func:`prefkit.rank.diagnose` (see the module docstring)."""
    ids = _identities(ann)
    out: dict[str, Any] = {}
    if ids is None:
        out["per_prompt"] = {"applies": False, "reason": "no response texts or model names"}
    else:
        out["per_prompt"] = _prompt_triads(ann, *ids)
    if ann.model_a is not None and ann.model_b is not None:
        out["models"] = _model_triads(ann, rng, simulations)
    return out


def _prompt_triads(ann: Any, ra: Sequence[str], rb: Sequence[str]) -> dict[str, Any]:
    votes: dict[str, dict[tuple[str, str], list[float]]] = defaultdict(lambda: defaultdict(
        lambda: [0.0, 0.0]))
    counts = ann.counts()
    for i, p in enumerate(_prompts(ann)):
        a, b = ra[i], rb[i]
        if a == b:
            continue
        key, flip = ((a, b), False) if a < b else ((b, a), True)
        wa, wb = counts[i, 0], counts[i, 1]
        v = votes[p][key]
        v[0] += wb if flip else wa
        v[1] += wa if flip else wb
    decided = cyclic = 0
    examples = []
    for p, pairs in votes.items():
        beats = {k: (1 if v[0] > v[1] else -1 if v[1] > v[0] else 0) for k, v in pairs.items()}
        nodes = sorted({x for k in pairs for x in k})
        for x, y, z in combinations(nodes, 3):
            d = [beats.get((x, y), 0), beats.get((y, z), 0), beats.get((x, z), 0)]
            if 0 in d:
                continue
            decided += 1
            if d[0] == d[1] == -d[2]:  # x>y>z>x or the reverse
                cyclic += 1
                if len(examples) < 10:
                    examples.append({"prompt": p[:80], "responses": [x[:60], y[:60], z[:60]]})
    return {"applies": True, "decided_triads": decided, "cyclic_triads": cyclic,
            "rate": cyclic / decided if decided else None, "examples": examples}


def _model_triads(ann: Any, rng: np.random.Generator | None, simulations: int
                  ) -> dict[str, Any]:
    from prefkit.data import PairwiseVotes
    from prefkit.rank import diagnose

    lab = np.asarray(ann.labels)
    i, j = np.nonzero(lab >= 0)
    a = [ann.model_a[k] for k in i]
    b = [ann.model_b[k] for k in i]
    keep = [x != y for x, y in zip(a, b)]
    if sum(keep) == 0 or len(set(a) | set(b)) < 3:
        return {"applies": False, "reason": "fewer than three models"}
    names = np.array(["a", "b", "tie"])
    votes = PairwiseVotes.from_names([x for x, k in zip(a, keep) if k],
                                     [x for x, k in zip(b, keep) if k],
                                     list(names[lab[i, j][keep]]))
    d = diagnose(votes, influence_by=None, rng=rng, simulations=simulations)
    if d.intransitivity is None:
        return {"applies": False, "reason": "fewer than three connected models"}
    return {"applies": True, **d.intransitivity.to_dict(), "notes": list(d.notes)}


# -- annotators -----------------------------------------------------------------------------------
def holm(p: Sequence[float]) -> NDArray[np.float64]:
    """Holm's step-down adjusted p-values (family-wise error), in the input order.

    >>> holm([0.01, 0.04, 0.03]).round(2).tolist()
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    order = np.argsort(p)
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order]).clip(max=1.0)
    out = np.empty(m)
    out[order] = adj
    return out


def annotator_consensus(ann: Any, *, alpha: float = 0.05, min_labels: int = 5
                        ) -> dict[str, Any]:
    """Each annotator's agreement with the leave-one-out majority, and who is flagged (see
    the module docstring); annotators with fewer than ``min_labels`` comparable labels are
    reported but not tested."""
    lab = np.asarray(ann.labels)
    counts = ann.counts()
    agree = np.zeros(lab.shape[1])
    n = np.zeros(lab.shape[1])
    for j in range(lab.shape[1]):
        mine = lab[:, j]
        others = counts.copy()
        has = mine >= 0
        others[np.flatnonzero(has), mine[has]] -= 1
        top = others.max(1)
        unique = (others == top[:, None]).sum(1) == 1
        ok = has & unique & (top > 0)
        agree[j] = (mine[ok] == others[ok].argmax(1)).sum()
        n[j] = ok.sum()
    rows: dict[str, dict[str, Any]] = {}
    tested: list[int] = []
    pvals: list[float] = []
    for j, a in enumerate(ann.annotators):
        rest_n, rest_k = n.sum() - n[j], agree.sum() - agree[j]
        base = rest_k / rest_n if rest_n else None
        row: dict[str, Any] = {"agreement": agree[j] / n[j] if n[j] else None, "n": int(n[j]),
                               "others": base, "p_value": None, "p_holm": None,
                               "flagged": False}
        if n[j] >= min_labels and base is not None and 0 < base < 1:
            row["p_value"] = _binom_p(int(agree[j]), int(n[j]), base, "less")
            tested.append(j)
            pvals.append(row["p_value"])
        rows[a] = row
    if pvals:
        for j, q in zip(tested, holm(pvals)):
            r = rows[ann.annotators[j]]
            r["p_holm"] = float(q)
            r["flagged"] = bool(q < alpha)
    return {"annotators": rows, "tested": len(tested), "alpha": alpha,
            "correction": "Holm (family-wise error over the annotators tested)",
            "test": "one-sided exact binomial: agreement below everybody else's",
            "flagged": [a for a, r in rows.items() if r["flagged"]],
            "overall": float(agree.sum() / n.sum()) if n.sum() else None}


# -- all of it ---------------------------------------------------------------------------------
@dataclass
class Quality:
    """The data-quality checks of :func:`quality`; ``to_dict`` gives the JSON."""

    duplicates: dict[str, Any]
    position_bias: dict[str, Any]
    length_bias: dict[str, Any]
    cyclic_triads: dict[str, Any]
    annotators: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"duplicates": self.duplicates, "position_bias": self.position_bias,
                "length_bias": self.length_bias, "cyclic_triads": self.cyclic_triads,
                "annotators": self.annotators}


def quality(ann: Any, *, rng: np.random.Generator | None = None, rounds: int = 1000,
            confidence: float = 0.95, alpha: float = 0.05, simulations: int = 200) -> Quality:
    """Every check of this module on ``ann``."""
    return Quality(duplicates(ann), position_bias(ann, confidence=confidence),
                   length_bias(ann, rng=rng, rounds=rounds, confidence=confidence),
                   cyclic_triads(ann, rng=rng, simulations=simulations),
                   annotator_consensus(ann, alpha=alpha))
