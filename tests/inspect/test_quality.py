"""Data-quality checks on hand-made annotated sets (each number derived in the test) and on
the real PandaLM and LLMFAO sets."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest
from shared_paths import SHARED

from prefkit.data import PairwiseVotes
from prefkit.inspect import Annotations, read_annotations
from prefkit.inspect.quality import (
    annotator_consensus,
    cyclic_triads,
    duplicates,
    holm,
    length_bias,
    position_bias,
)
from prefkit.rank import intransitivity

PANDALM = SHARED / "data" / "judge" / "pandalm" / "testset-v1.json"
LLMFAO = SHARED / "data" / "arena" / "llmfao_crowd_comparisons.csv"


def _ann(labels, a, b, prompt=None, **kw) -> Annotations:
    labels = np.asarray(labels).reshape(len(a), -1)
    return Annotations(labels, tuple(f"r{j}" for j in range(labels.shape[1])),
                       [str(i) for i in range(len(a))], prompt or ["p"] * len(a), a, b, **kw)


def test_duplicates_and_contradictions_in_either_order() -> None:
    # pairs 0 and 1: x vs y shown both ways, both say x wins (consistent);
    # pairs 2 and 3: u vs v, the same order twice, opposite winners (contradictory);
    # pair 4: x vs y under another prompt (not a duplicate)
    ann = _ann([0, 1, 0, 1, 0], ["x", "y", "u", "u", "x"], ["y", "x", "v", "v", "y"],
               prompt=["p", "p", "p", "p", "q"])
    d = duplicates(ann)
    assert (d["groups"], d["pairs"], d["extra_copies"], d["swapped_groups"]) == (2, 4, 2, 1)
    assert (d["contradictory_groups"], d["contradictory_pairs"]) == (1, 2)
    assert d["examples"] == [{"pair_ids": ["2", "3"], "lines": [3, 4]}]
    # the same winner in swapped positions contradicts: x wins, then x (shown second) loses
    bad = _ann([0, 0], ["x", "y"], ["y", "x"])
    assert duplicates(bad)["contradictory_groups"] == 1
    tie = _ann([0, 2], ["x", "y"], ["y", "x"])
    assert duplicates(tie)["contradictory_groups"] == 0  # a tie contradicts nothing


def test_position_bias_counts_first_among_non_ties() -> None:
    lab = [0] * 7 + [1] * 3 + [2] * 5
    ann = _ann(lab, list("abcdefghijklmno"), list("ABCDEFGHIJKLMNO"))
    pb = position_bias(ann)
    assert pb["first_rate"] == 0.7 and pb["n"] == 10 and pb["tie_rate"] == 5 / 15
    assert pb["p_value"] == pytest.approx(binomtest(7, 10).pvalue)  # 0.34375
    assert pb["p_value"] == pytest.approx(0.34375)


def test_length_bias_prefers_longer_with_interval() -> None:
    # 4 pairs of unequal length: labels pick the longer in 3 of 4; one equal pair ignored
    a = ["long answer", "s", "long answer", "x", "same"]
    b = ["s", "long answer", "s", "long answer", "same"]
    ann = _ann([0, 1, 1, 1, 0], a, b)
    lb = length_bias(ann, rng=np.random.default_rng(0), rounds=200)
    assert lb["longer_rate"] == 0.75 and lb["n_labels"] == 4 and lb["equal_length_pairs"] == 1
    assert 0 <= lb["interval"][0] <= 0.75 <= lb["interval"][1] <= 1
    assert lb["p_value"] == pytest.approx(binomtest(3, 4).pvalue)


def test_cyclic_triads_per_prompt_and_across_models() -> None:
    # prompt p: x > y, y > z, z > x (a cycle); prompt q: x > y, y > z, x > z (transitive)
    ann = _ann([0, 0, 0, 0, 0, 0], ["x", "y", "z", "x", "y", "x"], ["y", "z", "x", "y", "z", "z"],
               prompt=["p"] * 3 + ["q"] * 3, model_a=["x", "y", "z", "x", "y", "x"],
               model_b=["y", "z", "x", "y", "z", "z"])
    t = cyclic_triads(ann.select([0, 1, 2, 3, 4, 5]))
    assert t["per_prompt"]["decided_triads"] == 2 and t["per_prompt"]["cyclic_triads"] == 1
    # across models, the majority tournament as prefkit.rank.intransitivity counts it
    votes = PairwiseVotes.from_names(ann.model_a, ann.model_b, ["a"] * 6)
    assert t["models"]["cyclic_triads"] == intransitivity(votes).cyclic_triads


def test_holm_adjustment_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 1 * 0.04)
    assert holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])


def test_an_annotator_who_labels_at_random_is_flagged() -> None:
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 200)
    lab = np.repeat(truth[:, None], 5, 1)
    flip = rng.random((200, 5)) < 0.1  # honest annotators err 10% of the time
    lab[flip] = 1 - lab[flip]
    lab[:, 4] = rng.integers(0, 2, 200)  # annotator r4 guesses
    ann = _ann(lab, [f"x{i}" for i in range(200)], [f"y{i}" for i in range(200)])
    cons = annotator_consensus(ann)
    assert cons["flagged"] == ["r4"] and cons["tested"] == 5
    r4 = cons["annotators"]["r4"]
    assert 0.35 < r4["agreement"] < 0.65 and r4["p_holm"] < 1e-6
    # r0's agreement with the majority of the four others, by a plain loop (2-2 splits out)
    k = n = 0
    for row in lab:
        c = np.bincount(row[1:], minlength=2)
        if c[0] != c[1]:
            n += 1
            k += row[0] == c.argmax()
    assert c_r0(cons) == (k / n, n)


def c_r0(c: dict) -> tuple:
    return c["annotators"]["r0"]["agreement"], c["annotators"]["r0"]["n"]


def test_pandalm_quality_numbers() -> None:
    """PandaLM: response1 chosen in 47.0% of non-tie labels (p = 0.002: the order was not
    random), the longer answer in 66.8%; an independent count by a plain loop."""
    if not PANDALM.exists():
        pytest.skip("no PandaLM")
    a = read_annotations(PANDALM)
    pb = position_bias(a)
    assert round(pb["first_rate"], 3) == 0.470 and pb["n"] == 2671
    lb = length_bias(a)
    k = n = 0
    for i in range(len(a)):
        la, lb_ = len(a.response_a[i]), len(a.response_b[i])
        for x in a.labels[i]:
            if la != lb_ and x in (0, 1):
                n += 1
                k += (x == 0) == (la > lb_)
    assert (lb["n_labels"], lb["longer_rate"]) == (n, k / n) and round(k / n, 3) == 0.668
    d = duplicates(a)
    assert d["contradictory_groups"] == 0 and d["groups"] == 86


def test_llmfao_crowd_flags_workers_below_the_consensus() -> None:
    if not LLMFAO.exists():
        pytest.skip("no LLMFAO")
    c = annotator_consensus(read_annotations(LLMFAO))
    assert c["tested"] == 118 and len(c["flagged"]) == 8
    assert all(c["annotators"][w]["p_holm"] < 0.05 for w in c["flagged"])
