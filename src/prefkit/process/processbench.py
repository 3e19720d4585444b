"""ProcessBench scoring (Zheng et al. 2024, arXiv:2412.06559), as its ``code/run_eval.py``.

A solution's **prediction** is the index of the first step the model flags as wrong, or -1
when it flags none; it **matches** when it equals the label (the first wrong step, -1 for a
correct solution). Then

* ``accuracy_erroneous`` = mean match over solutions with ``label != -1``,
* ``accuracy_correct``   = mean match over solutions with ``label == -1``,
* ``f1`` = ``2 * a_err * a_cor / (a_err + a_cor)`` -- their harmonic mean (0 when both are 0).

prefkit reports fractions in [0, 1]; the script prints percentages (x 100).

**A scalar PRM** gives each step a score (the probability that the step is right); a step is
flagged when its score is below a ``threshold``. Two thresholds are reported: the fixed 0.5,
and one tuned (:func:`tune_threshold`) to maximise F1 on a *training* split -- never on the
split being scored.

**Unscored steps.** A solution longer than the backbone's window is scored in windows
(:mod:`prefkit.process.model`); a step that still gets no score (NaN) is never flagged, so
it counts as "looks right": a solution whose first error sits in an unscored step can only be
matched by chance of an earlier flag (never, as an earlier flag is a mismatch), and an
all-correct solution is not hurt. :func:`evaluate_steps` reports how many solutions had
unscored steps (``n_unscored``).

**Baselines** (:func:`baselines`): ``never_flags`` (predict -1: ``a_cor = 1, a_err = 0``, F1
0), ``first_step`` (always step 0), and ``position_prior`` -- for each number of steps, the
most frequent label among training solutions of that length (all lengths pooled when a length
was not seen), which is what a scorer that read only the length could do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "ProcessBenchReport",
    "baselines",
    "evaluate_steps",
    "first_flagged",
    "processbench_f1",
    "tune_threshold",
]

#: the fixed threshold: a step is flagged when P(step right) < 0.5
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class ProcessBenchReport:
    """ProcessBench's three numbers (fractions), the counts behind them, the threshold used
    (None for a predictor without one) and how many solutions had unscored steps."""

    f1: float
    accuracy_erroneous: float
    accuracy_correct: float
    n_erroneous: int
    n_correct: int
    threshold: float | None = None
    n_unscored: int = 0
    predictions: list[int] = field(default_factory=list, repr=False)

    def as_dict(self, predictions: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not predictions:
            d.pop("predictions")
        return d


def processbench_f1(predictions: Sequence[int], labels: Sequence[int], *,
                    threshold: float | None = None, n_unscored: int = 0) -> ProcessBenchReport:
    """ProcessBench's metric from predicted and true first-wrong-step indices (-1 = none).

    >>> r = processbench_f1([1, -1, 0, -1], [1, 2, -1, -1])
    >>> r.accuracy_erroneous, r.accuracy_correct, round(r.f1, 4)
    (0.5, 0.5, 0.5)
    """
    pred = np.asarray(predictions, dtype=np.int64)
    lab = np.asarray(labels, dtype=np.int64)
    if pred.shape != lab.shape:
        raise ValueError(f"{pred.size} predictions but {lab.size} labels")
    err, cor = lab != -1, lab == -1
    if not err.any() or not cor.any():
        raise ValueError("ProcessBench's F1 needs both erroneous (label >= 0) and correct "
                         f"(label -1) solutions; got {int(err.sum())} and {int(cor.sum())}")
    match = pred == lab
    a_err, a_cor = float(match[err].mean()), float(match[cor].mean())
    f1 = 0.0 if a_err + a_cor == 0 else 2 * a_err * a_cor / (a_err + a_cor)
    return ProcessBenchReport(f1, a_err, a_cor, int(err.sum()), int(cor.sum()), threshold,
                              n_unscored, pred.tolist())


def first_flagged(step_scores: Sequence[ArrayLike], threshold: float = DEFAULT_THRESHOLD
                  ) -> list[int]:
    """Per solution, the first step whose score is below ``threshold`` (-1 if none; NaN
    scores, unscored steps, are never flagged)."""
    out = []
    for s in step_scores:
        a = np.asarray(s, dtype=np.float64)
        hit = np.flatnonzero(a < threshold)  # NaN < t is False
        out.append(int(hit[0]) if hit.size else -1)
    return out


def tune_threshold(step_scores: Sequence[ArrayLike], labels: Sequence[int]) -> float:
    """The threshold that maximises ProcessBench F1 on these (training) solutions: every
    midpoint between consecutive distinct scores is tried (ties broken towards 0.5)."""
    values = np.unique(np.concatenate([np.asarray(s, dtype=np.float64).ravel()
                                       for s in step_scores]))
    values = values[np.isfinite(values)]
    if values.size == 0:
        return DEFAULT_THRESHOLD
    cands = np.concatenate([[values[0] - 1e-6], (values[1:] + values[:-1]) / 2,
                            [values[-1] + 1e-6]])
    if cands.size > 2000:  # quantiles are plenty
        cands = np.unique(np.quantile(cands, np.linspace(0, 1, 2000)))
    best, best_t = -1.0, DEFAULT_THRESHOLD
    for t in sorted(cands, key=lambda c: abs(c - DEFAULT_THRESHOLD)):
        f1 = processbench_f1(first_flagged(step_scores, float(t)), labels).f1
        if f1 > best + 1e-12:
            best, best_t = f1, float(t)
    return best_t


def evaluate_steps(step_scores: Sequence[ArrayLike], labels: Sequence[int], *,
                   threshold: float = DEFAULT_THRESHOLD) -> ProcessBenchReport:
    """ProcessBench report of step scores (P(step right), NaN = unscored) at ``threshold``."""
    unscored = sum(bool(np.isnan(np.asarray(s, dtype=np.float64)).any()) for s in step_scores)
    return processbench_f1(first_flagged(step_scores, threshold), labels, threshold=threshold,
                           n_unscored=unscored)


def baselines(n_steps: Sequence[int], labels: Sequence[int], *,
              train_n_steps: Sequence[int] | None = None,
              train_labels: Sequence[int] | None = None) -> dict[str, ProcessBenchReport]:
    """The three baselines of the module docstring on solutions with ``n_steps`` steps;
    the position prior is fitted on ``train_*`` (left out when not given)."""
    out = {"never_flags": processbench_f1([-1] * len(labels), labels),
           "first_step": processbench_f1([0] * len(labels), labels)}
    if train_n_steps is not None and train_labels is not None:
        by_len: dict[int, Counter[int]] = {}
        for n, lab in zip(train_n_steps, train_labels):
            by_len.setdefault(int(n), Counter())[int(lab)] += 1
        pooled = Counter(int(x) for x in train_labels)
        preds = []
        for n in n_steps:
            c = by_len.get(int(n), pooled)
            ok = [(k, v) for k, v in c.items() if k < n] or [(-1, 0)]
            preds.append(max(ok, key=lambda kv: (kv[1], -kv[0]))[0])
        out["position_prior"] = processbench_f1(preds, labels)
    return out
