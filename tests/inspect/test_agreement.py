"""Agreement coefficients against independent implementations (scikit-learn's
``cohen_kappa_score``, the ``krippendorff`` package), Fleiss' published worked example and
hand cases; and the numbers of the real PandaLM human test set."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from shared_paths import SHARED
from sklearn.metrics import cohen_kappa_score

from prefkit.inspect import (
    Annotations,
    accuracy,
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
    label_counts,
    measure_agreement,
    read_annotations,
)

TOL = 1e-12
PANDALM = SHARED / "data" / "judge" / "pandalm" / "testset-v1.json"
#: preference codes as ordinal values for the krippendorff package: b < tie < a
ORDINAL_VALUE = {0: 2.0, 1: 0.0, 2: 1.0}


def _reliability(labels: np.ndarray, ordinal: bool = False) -> np.ndarray:
    """(raters, units) float with nan for missing, as the krippendorff package reads it."""
    if ordinal:
        return np.vectorize(lambda v: ORDINAL_VALUE.get(int(v), np.nan))(labels.T).astype(float)
    return np.where(labels.T < 0, np.nan, labels.T.astype(float))


def test_cohen_kappa_equals_scikit_learn_with_ties_as_a_category() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        x = rng.integers(0, 3, 50)
        y = np.where(rng.random(50) < 0.6, x, rng.integers(0, 3, 50))
        assert abs(cohen_kappa(x, y) - cohen_kappa_score(x, y)) < TOL
    # a missing label (-1) leaves the unit out, as dropping it before scikit-learn does
    x, y = np.array([0, 1, 2, -1, 0]), np.array([0, 1, 1, 2, -1])
    assert abs(cohen_kappa(x, y) - cohen_kappa_score([0, 1, 2], [0, 1, 1])) < TOL


def test_cohen_kappa_hand_case() -> None:
    # p_o = 3/4, marginals (2, 2) and (1, 3): p_e = (2*1 + 2*3)/16 = 1/2, kappa = 1/2
    assert cohen_kappa(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])) == 0.5


def test_fleiss_kappa_matches_fleiss_1971_worked_example() -> None:
    """Wikipedia's 'Fleiss' kappa' worked example (10 subjects, 14 raters, 5 categories):
    P-bar = 0.378, P_e = 0.213, kappa = 0.210 (as statsmodels' fleiss_kappa gives)."""
    table = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
                      [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
                      [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert round(fleiss_kappa(table), 3) == 0.210
    p_bar = ((table * (table - 1)).sum(1) / (14 * 13)).mean()
    p_e = ((table.sum(0) / table.sum()) ** 2).sum()
    assert round(p_bar, 3) == 0.378 and round(p_e, 3) == 0.213
    assert abs(fleiss_kappa(table) - (p_bar - p_e) / (1 - p_e)) < TOL


def test_fleiss_kappa_with_varying_raters_leaves_single_labels_out() -> None:
    # unit 3 has one label: left out; the rest is the 2-rater table [[2,0],[0,2],[1,1]]
    counts = np.array([[2, 0], [0, 2], [1, 1], [1, 0]])
    # P_i = 1, 1, 0 -> P = 2/3; p = (3/6, 3/6) -> P_e = 1/2; kappa = (2/3 - 1/2)/(1/2) = 1/3
    assert abs(fleiss_kappa(counts) - 1 / 3) < TOL
    assert fleiss_kappa(np.array([[3, 0], [0, 3]])) == 1.0


@pytest.mark.parametrize("level", ["nominal", "ordinal"])
def test_krippendorff_alpha_equals_the_krippendorff_package(level: str) -> None:
    rng = np.random.default_rng(7)
    for _ in range(10):
        truth = rng.integers(0, 3, 60)
        lab = np.where(rng.random((60, 5)) < 0.7, truth[:, None], rng.integers(0, 3, (60, 5)))
        lab[rng.random((60, 5)) < 0.3] = -1  # missing labels, some units unpairable
        got = krippendorff_alpha(label_counts(lab), level, (1, 2, 0))  # type: ignore[arg-type]
        want = krippendorff.alpha(reliability_data=_reliability(lab, level == "ordinal"),
                                  level_of_measurement=level)
        assert abs(got - want) < 1e-9


def test_krippendorff_alpha_hand_case() -> None:
    # coincidences o = [[2, 1], [1, 2]], n_c = (3, 3), n = 6:
    # alpha = 1 - (n - 1) * 2 / (2 * 3 * 3) = 1 - 10/18 = 4/9
    assert abs(krippendorff_alpha(np.array([[2, 0], [0, 2], [1, 1]])) - 4 / 9) < TOL


def test_accuracy_with_and_without_ties() -> None:
    lab = np.array([[0, 1], [2, 2], [1, 1], [0, 2]])
    gold = np.array([0, 2, 0, 1])
    acc = accuracy(lab, gold)
    # with ties: hits (0,0) (2,2)(2,2) of 8 labels -> 3/8; without: decisive label and gold
    # (0 vs 0) (1 vs 0) (1 vs 0) (1 vs 0) (0 vs 1) -> 1/5
    assert acc == {"with_ties": 3 / 8, "without_ties": 1 / 5, "n": 8, "n_without_ties": 5}


def test_two_annotators_give_cohen_one_annotator_and_gold_too() -> None:
    two = Annotations(np.array([[0, 0], [1, 0], [1, 1], [2, 2]]), ("x", "y"), list("abcd"))
    rep = measure_agreement(two)
    assert rep.cohen_kappa["value"] == pytest.approx(cohen_kappa_score([0, 1, 1, 2],
                                                                       [0, 0, 1, 2]))
    assert rep.fleiss_kappa is None and rep.accuracy is None
    assert rep.confusion["matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    one = Annotations(np.array([[0], [1], [1], [2]]), ("judge",), list("abcd"),
                      gold=np.array([0, 0, 1, 2]))
    rep = measure_agreement(one)
    assert rep.cohen_kappa["between"] == "annotator and gold"
    assert rep.accuracy["with_ties"] == 0.75 and rep.confusion["kind"] == "gold x label"


def test_bootstrap_intervals_are_seeded_and_cover_the_estimate() -> None:
    a = read_annotations(PANDALM) if PANDALM.exists() else pytest.skip("no PandaLM")
    r1 = measure_agreement(a, rng=np.random.default_rng(0), rounds=200)
    r2 = measure_agreement(a, rng=np.random.default_rng(0), rounds=200)
    assert r1.to_dict() == r2.to_dict()
    k = r1.krippendorff_alpha
    assert k["lower"] < k["value"] < k["upper"] and k["upper"] - k["lower"] < 0.1


def test_pandalm_human_agreement() -> None:
    """PandaLM's 999 pairs x 3 annotators: alpha (nominal) = 0.864 equal to the krippendorff
    package; Fleiss' kappa 0.864; ordinal alpha (b < tie < a) 0.877."""
    a = read_annotations(PANDALM) if PANDALM.exists() else pytest.skip("no PandaLM")
    rep = measure_agreement(a)
    want = krippendorff.alpha(reliability_data=_reliability(a.labels),
                              level_of_measurement="nominal")
    assert abs(rep.krippendorff_alpha["value"] - want) < 1e-9
    assert round(rep.krippendorff_alpha["value"], 3) == 0.864
    assert round(rep.fleiss_kappa["value"], 3) == 0.864 and rep.cohen_kappa is None
    ordinal = measure_agreement(a, level="ordinal").krippendorff_alpha["value"]
    assert abs(ordinal - krippendorff.alpha(reliability_data=_reliability(a.labels, True),
                                            level_of_measurement="ordinal")) < 1e-9
    assert round(ordinal, 3) == 0.877
    assert sum(v["n_pairs"] for v in rep.per_category.values()) == 999
    assert np.array(rep.confusion["matrix"]).sum() == pytest.approx(2997)  # 3 labels x 999
