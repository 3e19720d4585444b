"""Pairwise accuracy, intervals, baselines and calibration: hand-computed cases (arithmetic
in the comments), scikit-learn as the independent reference for the calibration numbers,
the baselines measured on the real data, and properties."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shared_paths import SHARED

from prefkit.data.text import TextPairs, hh_harmless_split
from prefkit.data.text_readers import read_preferences
from prefkit.reward import (
    baselines,
    brier_score,
    calibration_report,
    evaluate_scores,
    expected_calibration_error,
    fit_temperature,
    pairwise_accuracy,
    pairwise_calibration,
    reliability_curve,
    wilson_interval,
)

DATA = SHARED / "data" / "reward"
HH = DATA / "hh_rlhf_harmless_base_test.jsonl.gz"
real = pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")
TOL = 1e-12
Z95 = 1.959963984540054  # scipy.stats.norm.ppf(0.975)


def wilson_by_hand(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """(p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)  -- Wilson (1927)."""
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return c - h, c + h


# -- accuracy and intervals -------------------------------------------------------------
def test_accuracy_by_hand_with_ties_as_half() -> None:
    chosen = [3.0, 1.0, 2.0, 5.0, 0.0]
    rejected = [1.0, 1.0, 4.0, 2.0, 0.0]
    # credits: 1, 0.5 (tie), 0, 1, 0.5 (tie) -> 3 / 5
    rep = pairwise_accuracy(chosen, rejected, category=["a", "a", "b", "b", "b"])
    assert (rep.accuracy, rep.n, rep.n_ties) == (0.6, 5, 2)
    assert (rep.low, rep.high) == pytest.approx((0.2307, 0.8824), abs=1e-4)
    assert (rep.low, rep.high) == pytest.approx(wilson_by_hand(0.6, 5), abs=TOL)
    a, b = rep.per_category["a"], rep.per_category["b"]
    assert (a.accuracy, a.n, a.n_ties) == (0.75, 2, 1)  # (1 + 0.5) / 2
    assert (b.accuracy, b.n, b.n_ties) == (0.5, 3, 1)  # (0 + 1 + 0.5) / 3
    assert list(rep.per_category) == ["a", "b"]
    d = rep.to_dict()
    assert d["per_category"]["b"]["interval"] == [b.low, b.high]


def test_wilson_reference_values() -> None:
    # textbook values (e.g. Newcombe 1998, Table I): 0/10 -> [0, 0.2775]; 50/100 -> [0.4038, 0.5962]
    assert wilson_interval(0.0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(0.5, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert wilson_interval(0.8, 20, 0.9) == pytest.approx(
        wilson_by_hand(0.8, 20, z=1.6448536269514722), abs=TOL)
    assert all(math.isnan(x) for x in wilson_interval(0.5, 0))


def test_accuracy_rejects_bad_scores() -> None:
    with pytest.raises(ValueError, match="finite"):
        pairwise_accuracy([1.0, float("nan")], [0.0, 0.0])
    with pytest.raises(ValueError, match="differ in length"):
        pairwise_accuracy([1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="no pairs"):
        pairwise_accuracy([], [])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-5, 5), st.integers(-5, 5)), min_size=1, max_size=30),
       st.integers(-1000, 1000))
def test_accuracy_properties(pairs: list[tuple[int, int]], shift: int) -> None:
    c = np.array([p[0] for p in pairs], float)
    r = np.array([p[1] for p in pairs], float)
    acc = pairwise_accuracy(c, r).accuracy
    # shifting every score changes nothing; swapping the sides gives 1 - accuracy
    assert pairwise_accuracy(c + shift, r + shift).accuracy == acc
    assert pairwise_accuracy(r, c).accuracy == pytest.approx(1 - acc, abs=TOL)
    assert pairwise_accuracy(np.zeros_like(c), np.zeros_like(r)).accuracy == 0.5


# -- baselines --------------------------------------------------------------------------
def test_baselines_by_hand() -> None:
    p = TextPairs(["q"] * 4, ["long answer", "ab", "abc", "x"], ["no", "abcd", "xyz", "y"],
                  category=["u", "u", "v", "v"])
    b = baselines(p)
    # longer: 11 > 2 yes, 2 > 4 no, 3 = 3 half, 1 = 1 half -> (1 + 0 + .5 + .5) / 4
    assert b["longer"].accuracy == 0.5 and b["longer"].n_ties == 2
    assert b["longer"].per_category["u"].accuracy == 0.5
    assert b["shorter"].per_category["u"].accuracy == 0.5
    assert b["random"].accuracy == 0.5
    assert (b["random"].low, b["random"].high) == pytest.approx(wilson_by_hand(0.5, 4), abs=TOL)
    assert b["random"].per_category["v"].n == 2


@real
def test_baselines_on_hh_harmless() -> None:
    pairs = read_preferences(HH).data
    b = baselines(pairs)
    # the chosen (more harmless) reply is the longer one in 1,025 pairs, 11 have equal length:
    # (1025 + 11 / 2) / 2312 = 0.44572 -- length is *anti*-correlated with harmlessness here
    assert b["longer"].accuracy == pytest.approx((1025 + 5.5) / 2312, abs=TOL)
    assert b["longer"].n_ties == 11
    assert b["shorter"].accuracy == pytest.approx(1 - (1025 + 5.5) / 2312, abs=TOL)
    assert (b["longer"].low, b["longer"].high) == pytest.approx((0.4256, 0.4661), abs=1e-4)
    assert (b["random"].low, b["random"].high) == pytest.approx((0.4796, 0.5204), abs=1e-4)
    _, test = hh_harmless_split(HH)
    bt = baselines(test)
    assert bt["longer"].accuracy == pytest.approx(204.5 / 462, abs=TOL)  # 0.4426 on the 20%
    assert bt["longer"].n_ties == 3


@real
def test_baselines_on_llmbar() -> None:
    got = {}
    for name in ("natural", "adversarial_neighbor", "adversarial_gptinst"):
        pairs = read_preferences(DATA / "llmbar" / f"llmbar_{name}.json").data
        got[name] = baselines(pairs)["longer"].accuracy
    # natural: 56 longer + 1 equal of 100; adversarial sets reward the *shorter* output
    assert got == pytest.approx({"natural": 0.565, "adversarial_neighbor": 16 / 134,
                                 "adversarial_gptinst": 12 / 92}, abs=TOL)


# -- the report -------------------------------------------------------------------------
def test_evaluate_scores_report(tmp_path: Path) -> None:
    p = TextPairs(["q"] * 6, ["a long answer", "ok", "yes", "fine", "sure thing", "b"],
                  ["no", "nope", "x", "y", "nah", "bb"], category=["c1"] * 3 + ["c2"] * 3)
    chosen, rejected = [2.0, 1.0, 0.0, 3.0, 1.0, 0.0], [0.0, 2.0, 0.0, 1.0, 0.0, 1.0]
    rep = evaluate_scores(p, chosen, rejected)
    d = rep.to_dict()
    # right, wrong, tie | right, right, wrong -> (1 + 0 + .5 + 1 + 1 + 0) / 6
    assert d["accuracy"] == pytest.approx(3.5 / 6, abs=TOL) and d["n"] == 6 and d["n_ties"] == 1
    assert d["per_category"]["c1"]["accuracy"] == 0.5
    assert d["per_category"]["c2"]["accuracy"] == pytest.approx(2 / 3, abs=TOL)
    # c2 lengths: 4 > 1, 10 > 3, 1 < 2 -> longer-is-better 2 / 3
    assert d["per_category"]["c2"]["baselines"]["longer"]["accuracy"] == pytest.approx(2 / 3)
    assert set(d["baselines"]) == {"random", "longer", "shorter"}
    assert d["calibration"]["brier"] == pytest.approx(
        np.mean((1 - 1 / (1 + np.exp(-(np.array(chosen) - rejected)))) ** 2), abs=TOL)
    table = rep.table()
    assert table.splitlines()[2].split()[:3] == ["all", "6", "0.583"]
    assert table.splitlines()[3].startswith("c1") and "ECE" in table.splitlines()[-1]
    out = tmp_path / "eval.png"
    rep.plot(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="5 scores for 6 pairs"):
        evaluate_scores(p, chosen[:5], rejected[:5])


# -- calibration ------------------------------------------------------------------------
def test_calibration_matches_scikit_learn() -> None:
    sk = pytest.importorskip("sklearn")
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss, log_loss

    assert sk
    rng = np.random.default_rng(0)
    p = rng.uniform(size=500)
    y = (rng.uniform(size=500) < p**1.5).astype(int)
    p[:3] = [0.0, 0.1, 1.0]  # bin edges go where scikit-learn puts them
    for bins in (5, 10, 13):
        c = reliability_curve(p, y, n_bins=bins)
        true, pred = calibration_curve(y, p, n_bins=bins)
        np.testing.assert_allclose(c.prob_true, true, atol=TOL)
        np.testing.assert_allclose(c.prob_pred, pred, atol=TOL)
        ece = float(np.sum(c.counts * np.abs(pred - true)) / p.size)
        assert expected_calibration_error(p, y, n_bins=bins) == pytest.approx(ece, abs=TOL)
    assert brier_score(p, y) == pytest.approx(brier_score_loss(y, p), abs=TOL)
    q = np.clip(p, 1e-6, 1 - 1e-6)
    assert calibration_report(q, y).nll == pytest.approx(log_loss(y, q), abs=1e-9)


def test_ece_by_hand_and_pairwise_symmetry() -> None:
    # bins (0, .5] and (.5, 1]: {.3, .2} has mean .25 vs labels .5; {.9, .8}: .85 vs 1
    # ECE = (2 * .25 + 2 * .15) / 4 = 0.2
    assert expected_calibration_error([0.9, 0.8, 0.3, 0.2], [1, 1, 0, 1], n_bins=2) == \
        pytest.approx(0.2, abs=TOL)
    cal = pairwise_calibration([2.0, 0.0, 1.5], [0.0, 1.0, 1.0], n_bins=4)
    c = cal.curve
    # the pairs are scored both ways, so the curve is symmetric about (0.5, 0.5) (no
    # probability sits on a bin edge here: the bins are closed on the right)
    np.testing.assert_allclose(c.prob_pred + c.prob_pred[::-1], 1.0, atol=TOL)
    np.testing.assert_allclose(c.prob_true + c.prob_true[::-1], 1.0, atol=TOL)
    sig = 1 / (1 + np.exp(-np.array([2.0, -1.0, 0.5])))
    assert cal.brier == pytest.approx(np.mean((1 - sig) ** 2), abs=TOL)
    assert cal.nll == pytest.approx(-np.mean(np.log(sig)), abs=TOL)
    huge = pairwise_calibration([1e6, -1e6], [0.0, 0.0])
    assert huge.nll == pytest.approx(5e5, rel=1e-9) and np.isfinite(huge.ece)


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(7)
    m = rng.normal(0.0, 4.0, size=20_000)
    y = (rng.uniform(size=m.size) < 1 / (1 + np.exp(-m / 2.5))).astype(float)
    fit = fit_temperature(m, y)
    assert fit.temperature == pytest.approx(2.5, rel=0.05)
    grid = np.exp(np.linspace(np.log(2.0), np.log(3.0), 1001))  # an independent grid search
    nll = [np.mean(np.logaddexp(0, -(2 * y - 1) * m / t)) for t in grid]
    assert fit.temperature == pytest.approx(grid[int(np.argmin(nll))], rel=1e-3)
    assert fit.nll_after < fit.nll_before
    # applied to new margins, and evaluated on a "test" half
    probs = fit.probs([0.0, 2.5])
    assert probs == pytest.approx([0.5, 1 / (1 + math.exp(-2.5 / fit.temperature))], abs=TOL)
    test = pairwise_calibration(m[:100], np.zeros(100), temperature=fit.temperature)
    assert test.temperature == fit.temperature


def test_temperature_refuses_separable_margins() -> None:
    with pytest.raises(ValueError, match="perfectly separated or carry no signal"):
        fit_temperature([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="labels 0 or 1"):
        fit_temperature([1.0, 2.0], [1, 2])
