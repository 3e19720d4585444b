"""Agreement between annotators, and with a gold label.

Labels are integer categories ``0..C-1`` with ``-1`` for "not labelled"; for preferences
(:class:`~prefkit.data.Annotations`) the categories are ``a`` (0, the response shown first
won), ``b`` (1) and ``tie`` (2), and **a tie is a category of its own** in every
coefficient. A *unit* is one pair; ``counts[u, c]`` is how many annotators put unit ``u``
in category ``c``.

Definitions (``n`` = pairable values):

- **accuracy** against gold, *with ties*: the share of (label, gold) with both present where
  the label equals the gold label (a tie must match a tie); *without ties*: the same share
  over the pairs where neither the label nor the gold label is a tie.
- **Cohen's kappa** (two raters): ``(p_o - p_e) / (1 - p_e)`` with ``p_o`` the observed
  agreement and ``p_e = sum_c p1_c p2_c`` from each rater's own marginals, over the units
  both labelled (as scikit-learn's ``cohen_kappa_score``).
- **Fleiss' kappa** (several raters): ``(P - P_e) / (1 - P_e)`` with
  ``P_i = sum_c n_ic (n_ic - 1) / (m_i (m_i - 1))`` the agreement within unit ``i``
  (``m_i`` raters), ``P`` the mean of ``P_i`` and ``P_e = sum_c p_c^2`` with ``p_c`` the
  share of all labels in ``c``. With a varying number of raters per unit each unit keeps its
  own ``m_i`` and units with fewer than two labels are left out (with equal ``m_i`` this is
  Fleiss 1971 exactly).
- **Krippendorff's alpha**: ``1 - D_o / D_e`` from the coincidence matrix
  ``o_ck = sum_u (n_uc n_uk - [c = k] n_uc) / (m_u - 1)`` over units with ``m_u >= 2``:
  ``D_o = sum o_ck d_ck / n`` and ``D_e = sum n_c n_k d_ck / (n (n - 1))``; nominal
  ``d_ck = [c != k]``, ordinal ``d_ck = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2`` with the
  categories in their order (for preferences ``b < tie < a``). Missing labels are allowed.
- **Intervals**: percentile bootstrap over units (pairs resampled with replacement,
  ``rounds`` times, from the ``numpy.random.Generator`` passed in).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

__all__ = ["Agreement", "accuracy", "bootstrap_interval", "cohen_kappa", "coincidence_matrix",
           "confusion_matrix", "fleiss_kappa", "krippendorff_alpha", "label_counts",
           "measure_agreement"]

Level = Literal["nominal", "ordinal"]
#: preference categories in ordinal order (b < tie < a), as codes a=0, b=1, tie=2
PREFERENCE_ORDER = (1, 2, 0)
_NAMES = ("a", "b", "tie")


def label_counts(labels: NDArray[np.integer], n_categories: int = 3) -> NDArray[np.float64]:
    """``(n_units, C)``: how many raters put each unit in each category (``-1`` ignored)."""
    lab = np.asarray(labels)
    return np.stack([(lab == c).sum(1) for c in range(n_categories)], 1).astype(np.float64)


# -- accuracy and two-rater coefficients ---------------------------------------------------
def accuracy(labels: NDArray[np.integer], gold: NDArray[np.integer], *, tie: int = 2
             ) -> dict[str, Any]:
    """Accuracy of ``labels`` (any shape, ``-1`` = none) against ``gold`` (broadcast to it),
    with and without ties (see the module docstring).

    >>> accuracy(np.array([0, 1, 2, 2]), np.array([0, 0, 2, 1]))
    {'with_ties': 0.5, 'without_ties': 0.5, 'n': 4, 'n_without_ties': 2}
    """
    lab = np.asarray(labels)
    g = np.broadcast_to(np.asarray(gold).reshape(-1, *([1] * (lab.ndim - 1))), lab.shape)
    both = (lab >= 0) & (g >= 0)
    dec = both & (lab != tie) & (g != tie)
    hit = lab == g
    return {"with_ties": _share(hit, both), "without_ties": _share(hit, dec),
            "n": int(both.sum()), "n_without_ties": int(dec.sum())}


def _share(hit: NDArray[np.bool_], mask: NDArray[np.bool_]) -> float | None:
    n = int(mask.sum())
    return float(hit[mask].sum() / n) if n else None


def confusion_matrix(x: NDArray[np.integer], y: NDArray[np.integer], n_categories: int = 3
                     ) -> NDArray[np.int64]:
    """``M[i, j]`` = units with ``x = i`` and ``y = j`` (both labelled)."""
    x, y = np.asarray(x).ravel(), np.asarray(y).ravel()
    ok = (x >= 0) & (y >= 0)
    return np.bincount(x[ok] * n_categories + y[ok], minlength=n_categories ** 2).reshape(
        n_categories, n_categories)


def cohen_kappa(x: NDArray[np.integer], y: NDArray[np.integer], n_categories: int = 3
                ) -> float:
    """Cohen's kappa of two raters over the units both labelled (``nan`` if none, or if
    both always use one and the same category).

    >>> cohen_kappa(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]))
    0.5
    """
    m = confusion_matrix(x, y, n_categories).astype(np.float64)
    n = m.sum()
    if n == 0:
        return float("nan")
    po = np.trace(m) / n
    pe = float(m.sum(1) @ m.sum(0)) / n ** 2
    return float((po - pe) / (1 - pe)) if pe < 1 else float("nan")


# -- several raters ---------------------------------------------------------------------------
def fleiss_kappa(counts: NDArray[np.floating]) -> float:
    """Fleiss' kappa from ``counts`` ``(n_units, C)`` (see the module docstring for
    units with different numbers of raters).

    >>> fleiss_kappa(np.array([[3, 0], [0, 3], [3, 0]]))
    1.0
    """
    c = np.asarray(counts, dtype=np.float64)
    m = c.sum(1)
    c, m = c[m >= 2], m[m >= 2]
    if c.shape[0] == 0:
        return float("nan")
    p_i = ((c * (c - 1)).sum(1)) / (m * (m - 1))
    p_c = c.sum(0) / c.sum()
    pe = float((p_c ** 2).sum())
    return float((p_i.mean() - pe) / (1 - pe)) if pe < 1 else float("nan")


def coincidence_matrix(counts: NDArray[np.floating]) -> NDArray[np.float64]:
    """Krippendorff's coincidence matrix ``o_ck`` from ``counts`` (units with one label
    are not pairable and add nothing)."""
    c = np.asarray(counts, dtype=np.float64)
    m = c.sum(1)
    ok = m >= 2
    c, m = c[ok], m[ok]
    w = c / (m - 1)[:, None]
    return w.T @ c - np.diag(w.sum(0))


def _distance(n_c: NDArray[np.float64], level: Level, order: Sequence[int] | None
              ) -> NDArray[np.float64]:
    k = n_c.size
    if level == "nominal":
        return 1.0 - np.eye(k)
    if level != "ordinal":
        raise ValueError(f"level must be 'nominal' or 'ordinal', got {level!r}")
    order = list(order) if order is not None else list(range(k))
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    cum = np.concatenate([[0.0], np.cumsum(n_c[order])])  # sums in rank order
    d = np.zeros((k, k))
    for c in range(k):
        for e in range(k):
            lo, hi = sorted((rank[c], rank[e]))
            d[c, e] = (cum[hi + 1] - cum[lo] - (n_c[c] + n_c[e]) / 2) ** 2
    return d


def krippendorff_alpha(counts: NDArray[np.floating], level: Level = "nominal",
                       order: Sequence[int] | None = None) -> float:
    """Krippendorff's alpha from ``counts`` ``(n_units, C)``; ``order`` lists the
    categories from lowest to highest for ``level="ordinal"`` (default ``0..C-1``).

    >>> round(float(krippendorff_alpha(np.array([[2, 0], [0, 2], [1, 1]]))), 4)
    0.4444
    """
    o = coincidence_matrix(counts)
    n_c = o.sum(1)
    n = n_c.sum()
    if n <= 1:
        return float("nan")
    d = _distance(n_c, level, order)
    d_o = float((o * d).sum())
    d_e = float(n_c @ d @ n_c) / (n - 1)
    return float(1.0 - d_o / d_e) if d_e > 0 else float("nan")


def bootstrap_interval(stat: Callable[[NDArray[np.int64]], float], n_units: int, *,
                       rng: np.random.Generator, rounds: int = 1000,
                       confidence: float = 0.95) -> tuple[float | None, float | None]:
    """Percentile interval of ``stat(indices)`` over ``rounds`` resamples of the units
    (``nan`` rounds, e.g. a resample with one category only, are left out)."""
    if rounds <= 0 or n_units == 0:
        return None, None
    vals = np.array([stat(rng.integers(0, n_units, n_units)) for _ in range(rounds)])
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return None, None
    a = (1 - confidence) / 2
    lo, hi = np.quantile(vals, [a, 1 - a])
    return float(lo), float(hi)


# -- the report ------------------------------------------------------------------------------
@dataclass
class Agreement:
    """Agreement of an annotated set (see :func:`measure_agreement`); ``to_dict`` gives the JSON."""

    n_pairs: int
    n_annotators: int
    n_labels: int
    level: str
    krippendorff_alpha: dict[str, Any]
    fleiss_kappa: dict[str, Any] | None
    cohen_kappa: dict[str, Any] | None
    accuracy: dict[str, Any] | None
    confusion: dict[str, Any]
    per_category: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_annotator_accuracy: dict[str, dict[str, Any]] | None = None
    rounds: int = 0
    confidence: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "n_pairs", "n_annotators", "n_labels", "level", "krippendorff_alpha",
            "fleiss_kappa", "cohen_kappa", "accuracy", "confusion", "per_category",
            "per_annotator_accuracy", "rounds", "confidence")}


def _with_interval(value: float, lo: float | None, hi: float | None) -> dict[str, Any]:
    return {"value": None if not np.isfinite(value) else value, "lower": lo, "upper": hi}


def _coefficients(labels: NDArray[np.int8], gold: NDArray[np.int8] | None, level: Level,
                  rng: np.random.Generator | None, rounds: int, confidence: float
                  ) -> dict[str, Any]:
    """alpha, Fleiss or Cohen, accuracy: the numbers of one set of pairs."""
    counts = label_counts(labels)
    order = PREFERENCE_ORDER
    boot = rounds if rng is not None else 0

    def interval(fn: Callable[[NDArray[np.int64]], float]) -> tuple[Any, Any]:
        if not boot:
            return None, None
        return bootstrap_interval(fn, labels.shape[0], rng=rng,  # type: ignore[arg-type]
                                  rounds=boot, confidence=confidence)

    out: dict[str, Any] = {"n_pairs": int(labels.shape[0])}
    alpha = krippendorff_alpha(counts, level, order)
    out["krippendorff_alpha"] = _with_interval(
        alpha, *interval(lambda i: krippendorff_alpha(counts[i], level, order)))
    raters = labels if gold is None or labels.shape[1] != 1 else np.column_stack([labels, gold])
    if raters.shape[1] == 2:
        x, y = raters[:, 0], raters[:, 1]
        k = cohen_kappa(x, y)
        out["cohen_kappa"] = _with_interval(k, *interval(lambda i: cohen_kappa(x[i], y[i])))
        out["cohen_kappa"]["between"] = "annotator and gold" if raters is not labels else \
            "the two annotators"
        out["fleiss_kappa"] = None
    elif raters.shape[1] > 2:
        f = fleiss_kappa(counts)
        out["fleiss_kappa"] = _with_interval(f, *interval(lambda i: fleiss_kappa(counts[i])))
        out["cohen_kappa"] = None
    else:
        out["fleiss_kappa"] = out["cohen_kappa"] = None
    out["accuracy"] = None if gold is None else accuracy(labels, gold)
    return out


def measure_agreement(ann: Any, *, level: Level = "nominal", rounds: int = 1000,
                      rng: np.random.Generator | None = None, confidence: float = 0.95
                      ) -> Agreement:
    """Every agreement number of ``ann`` (an :class:`~prefkit.data.Annotations`):
    Krippendorff's alpha (``level``), Cohen's kappa with two raters (two annotators, or one
    annotator and the gold label) or Fleiss' kappa with more, accuracy against the gold
    label (pooled over annotators, and per annotator), the confusion matrix, and alpha,
    kappa and accuracy per category; intervals (overall numbers only) by bootstrap over
    pairs when ``rng`` is given.

    The confusion matrix is gold (rows) x label (columns) pooled over annotators when there
    is a gold label; annotator 1 (rows) x annotator 2 with two annotators; otherwise
    Krippendorff's coincidence matrix (every ordered pair of labels of a pair, each pair
    weighted ``1 / (m - 1)``).
    """
    labels = np.asarray(ann.labels)
    gold = ann.gold
    main = _coefficients(labels, gold, level, rng, rounds, confidence)
    if gold is not None:
        lab = labels[labels >= 0]
        g = np.broadcast_to(gold[:, None], labels.shape)[labels >= 0]
        conf = {"kind": "gold x label", "matrix": confusion_matrix(g, lab).tolist()}
    elif labels.shape[1] == 2:
        conf = {"kind": f"{ann.annotators[0]} x {ann.annotators[1]}",
                "matrix": confusion_matrix(labels[:, 0], labels[:, 1]).tolist()}
    else:
        conf = {"kind": "coincidence", "matrix": coincidence_matrix(label_counts(labels)).round(
            6).tolist()}
    conf["labels"] = list(_NAMES)
    per_cat: dict[str, dict[str, Any]] = {}
    if ann.category is not None:
        cats = np.asarray(ann.category, dtype=object)
        for c in sorted(set(cats)):
            m = cats == c
            per_cat[str(c)] = _coefficients(labels[m], None if gold is None else gold[m],
                                            level, None, 0, confidence)
    per_ann = None
    if gold is not None:
        per_ann = {a: accuracy(labels[:, j], gold) for j, a in enumerate(ann.annotators)}
    return Agreement(
        n_pairs=len(labels), n_annotators=labels.shape[1], n_labels=int((labels >= 0).sum()),
        level=level, krippendorff_alpha=main["krippendorff_alpha"],
        fleiss_kappa=main["fleiss_kappa"], cohen_kappa=main["cohen_kappa"],
        accuracy=main["accuracy"], confusion=conf, per_category=per_cat,
        per_annotator_accuracy=per_ann, rounds=rounds if rng is not None else 0,
        confidence=confidence)
