"""ProcessBench scoring: prefkit's function against the logic of ProcessBench's own
code/run_eval.py (QwenLM/ProcessBench @ e802463: split by label != -1 / == -1, mean of
pred == label, x100, harmonic mean), computed independently here on a hand case."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefkit.process import (
    aggregate_steps,
    baselines,
    best_of_n,
    evaluate_steps,
    first_flagged,
    processbench_f1,
    tune_threshold,
    weighted_vote,
)


def _script_logic(records: list[dict]) -> tuple[float, float, float]:
    """The rule run_eval.py applies, computed here from counts (no transcription): the
    percentage of exact first-error matches among solutions with an error, among solutions
    without one, and their harmonic mean (NaN where the script would divide by zero)."""
    hits = {True: 0, False: 0}
    totals = {True: 0, False: 0}
    for d in records:
        has_error = d["label"] >= 0
        totals[has_error] += 1
        hits[has_error] += int(d["prediction"] == d["label"])
    acc1 = 100.0 * hits[True] / totals[True]
    acc2 = 100.0 * hits[False] / totals[False]
    return acc1, acc2, (2 * acc1 * acc2 / (acc1 + acc2) if acc1 + acc2 else math.nan)


# hand case: 5 erroneous solutions (2 matched), 3 correct ones (2 matched)
#   accuracy_erroneous = 2/5 = 0.4, accuracy_correct = 2/3, F1 = 2*0.4*(2/3)/(0.4+2/3) = 0.5
LABELS = [2, 0, 1, 3, 0, -1, -1, -1]
SCORES = [[0.9, 0.8, 0.1, 0.7],    # flags 2: match
          [0.2, 0.9],              # flags 0: match
          [0.9, 0.6, 0.3],         # flags 2, label 1: miss
          [0.9, 0.9, 0.9, 0.9],    # flags none, label 3: miss
          [0.6, 0.4],              # flags 1, label 0: miss
          [0.9, 0.7],              # none: match
          [0.8, float("nan"), 0.9],  # none (the NaN step is unscored): match
          [0.3, 0.9]]              # flags 0 on a correct solution: miss


def test_hand_case_equals_the_script_logic() -> None:
    preds = first_flagged(SCORES, 0.5)
    assert preds == [2, 0, 2, -1, 1, -1, -1, 0]
    rep = evaluate_steps(SCORES, LABELS)
    a1, a2, f1 = _script_logic([{"label": l, "prediction": p} for l, p in zip(LABELS, preds)])
    assert rep.accuracy_erroneous == pytest.approx(a1 / 100) == pytest.approx(0.4)
    assert rep.accuracy_correct == pytest.approx(a2 / 100) == pytest.approx(2 / 3)
    assert rep.f1 == pytest.approx(f1 / 100) == pytest.approx(0.5)
    assert rep.n_unscored == 1 and rep.n_erroneous == 5 and rep.n_correct == 3


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-1, 4), st.integers(-1, 4)), min_size=2, max_size=40))
def test_random_predictions_equal_the_script_logic(pairs: list[tuple[int, int]]) -> None:
    labels = [lab for lab, _ in pairs]
    if -1 not in labels or all(lab == -1 for lab in labels):
        with pytest.raises(ValueError, match="both erroneous"):
            processbench_f1([p for _, p in pairs], labels)
        return
    rep = processbench_f1([p for _, p in pairs], labels)
    a1, a2, _ = _script_logic([{"label": lab, "prediction": p} for lab, p in pairs])
    assert rep.accuracy_erroneous == pytest.approx(a1 / 100)
    assert rep.accuracy_correct == pytest.approx(a2 / 100)
    if a1 + a2 > 0:  # the script divides by zero there; prefkit says 0
        assert rep.f1 == pytest.approx(2 * a1 * a2 / (a1 + a2) / 100)
    else:
        assert rep.f1 == 0.0


def test_tuned_threshold_maximises_f1_on_its_data() -> None:
    t = tune_threshold(SCORES, LABELS)
    best = evaluate_steps(SCORES, LABELS, threshold=t).f1
    for cand in np.linspace(0, 1, 101):
        assert evaluate_steps(SCORES, LABELS, threshold=float(cand)).f1 <= best + 1e-12
    assert best > evaluate_steps(SCORES, LABELS).f1  # 0.5 is not the best here


def test_baselines() -> None:
    n = [len(s) for s in SCORES]
    b = baselines(n, LABELS, train_n_steps=[2, 2, 2, 4, 4, 3], train_labels=[0, 0, -1, 3, 3, -1])
    assert b["never_flags"].accuracy_correct == 1 and b["never_flags"].f1 == 0
    assert b["first_step"].accuracy_erroneous == pytest.approx(2 / 5)
    assert b["first_step"].f1 == 0
    # position prior: length 2 -> 0, length 4 -> 3, length 3 -> -1 (most common in training)
    assert b["position_prior"].predictions == [3, 0, -1, 3, 0, 0, -1, 0]


def test_aggregation_and_voting() -> None:
    cands = [[0.9, 0.2, 0.95], [0.6, 0.7, 0.65], [0.99, float("nan")]]
    assert [round(aggregate_steps(c, "min"), 3) for c in cands] == [0.2, 0.6, 0.99]
    assert best_of_n(cands, "min") == 2 and best_of_n(cands, "last") == 2
    # mean 0.683 > 0.65, product 0.171 < 0.273
    assert best_of_n(cands[:2], "mean") == 0 and best_of_n(cands[:2], "product") == 1
    assert math.isnan(aggregate_steps([float("nan")], "min"))
    with pytest.raises(ValueError, match="aggregate must be one of"):
        aggregate_steps([0.5], "max")
    assert weighted_vote(["a", "b", "b", None]) == "b"
    assert weighted_vote(["a", "b", "b"], [0.9, 0.3, 0.3]) == "a"
    assert weighted_vote([None]) is None
