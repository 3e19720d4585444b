"""Properties (hypothesis): relabelling categories or reordering pairs leaves nominal alpha
and Fleiss' kappa unchanged; Cohen's kappa is symmetric; showing every pair in the other
order turns the first-position rate into its complement and leaves length bias alone."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from prefkit.inspect import (
    Annotations,
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
    label_counts,
)
from prefkit.inspect.quality import length_bias, position_bias

TOL = 1e-9
labels_st = st.integers(3, 25).flatmap(lambda n: st.integers(2, 5).flatmap(
    lambda m: st.lists(st.lists(st.integers(-1, 2), min_size=m, max_size=m), min_size=n,
                       max_size=n)))


def _close(a: float, b: float) -> bool:
    return (np.isnan(a) and np.isnan(b)) or abs(a - b) < TOL


@settings(max_examples=60, deadline=None)
@given(labels_st, st.permutations([0, 1, 2]), st.randoms(use_true_random=False))
def test_nominal_alpha_and_fleiss_ignore_category_names_and_pair_order(lab, perm, rnd) -> None:
    lab = np.array(lab)
    relabelled = np.where(lab < 0, -1, np.array(perm)[np.clip(lab, 0, 2)])
    order = list(range(len(lab)))
    rnd.shuffle(order)
    c, c2, c3 = label_counts(lab), label_counts(relabelled), label_counts(lab[order])
    assert _close(krippendorff_alpha(c), krippendorff_alpha(c2))
    assert _close(krippendorff_alpha(c), krippendorff_alpha(c3))
    assert _close(fleiss_kappa(c), fleiss_kappa(c2))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-1, 2), st.integers(-1, 2)), min_size=1, max_size=40))
def test_cohen_kappa_is_symmetric(pairs) -> None:
    x, y = np.array(pairs).T
    assert _close(cohen_kappa(x, y), cohen_kappa(y, x))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.text("ab", min_size=1, max_size=6),
                          st.text("xy", min_size=1, max_size=6), st.integers(0, 2)),
                min_size=1, max_size=30))
def test_swapping_every_presentation(rows) -> None:
    a, b, lab = map(list, zip(*rows))
    ann = Annotations(np.array(lab)[:, None], ("r",), [str(i) for i in range(len(a))],
                      None, a, b)
    flip = {0: 1, 1: 0, 2: 2}
    swapped = Annotations(np.array([flip[x] for x in lab])[:, None], ("r",), ann.pair_id,
                          None, b, a)
    p, q = position_bias(ann)["first_rate"], position_bias(swapped)["first_rate"]
    assert (p is None and q is None) or abs(p + q - 1) < TOL
    assert length_bias(ann)["longer_rate"] == length_bias(swapped)["longer_rate"]
