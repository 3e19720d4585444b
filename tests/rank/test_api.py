"""prefkit.rank.rank: model dispatch, default intervals and their fallbacks, refusals."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from prefkit.data import PairwiseVotes, Rankings, aggregate
from prefkit.rank import OptionError, bootstrap, fit_bradley_terry, rank
from prefkit.rank.api import check_options, counts_suffice, resolve_intervals


def _votes(n: int = 120, seed: int = 0) -> PairwiseVotes:
    rng = np.random.default_rng(seed)
    names = ["a", "b", "c", "d"]
    s = np.array([1.0, 0.5, 0.0, -0.5])
    a = rng.integers(0, 4, n)
    b = (a + rng.integers(1, 4, n)) % 4
    win = rng.random(n) < 1 / (1 + np.exp(-(s[a] - s[b])))
    return PairwiseVotes.from_names([names[k] for k in a], [names[k] for k in b],
                                    np.where(win, 0, 1),
                                    annotator=[f"u{k}" for k in rng.integers(0, 6, n)])


def test_default_intervals_per_model() -> None:
    assert resolve_intervals("bradley_terry") == "bootstrap"
    assert resolve_intervals("thurstone") == "bootstrap"
    assert resolve_intervals("plackett_luce") == "hessian"
    assert resolve_intervals("weng_lin") == "hessian"
    assert resolve_intervals("elo") == "none"
    r = Rankings.from_lists([["a", "b", "c"], ["b", "a", "c"]])
    assert resolve_intervals("bradley_terry", None, r) == "hessian"
    assert resolve_intervals("bradley_terry", "bootstrap", r) == "hessian"
    assert resolve_intervals("bradley_terry", "sandwich", _votes()) == "sandwich"
    assert counts_suffice() and not counts_suffice(style=["length"])
    assert not counts_suffice(cluster="annotator") and not counts_suffice("elo")


def test_rank_is_the_fit_plus_the_bootstrap() -> None:
    v = _votes()
    lb = rank(v, rounds=20, rng=np.random.default_rng(3))
    fit = fit_bradley_terry(v)
    want = bootstrap(v, leaderboard=fit, rng=np.random.default_rng(3), rounds=20)
    np.testing.assert_array_equal(lb.scores, fit.scores)
    np.testing.assert_array_equal(lb.intervals, want.intervals)
    none = rank(v, intervals="none")
    assert none.intervals is None and np.array_equal(none.scores, fit.scores)
    # counts give the same fit
    np.testing.assert_allclose(rank(aggregate(v), intervals="none").scores, fit.scores)


@pytest.mark.parametrize("kw, rule", [
    ({"model": "elo", "ties": "davidson"}, "online_ties"),
    ({"model": "thurstone", "ties": "rao_kupper"}, "thurstone_ties"),
    ({"model": "thurstone", "style": ["length"]}, "style_model"),
    ({"model": "elo", "intervals": "bootstrap"}, "elo_intervals"),
    ({"model": "weng_lin", "intervals": "sandwich"}, "weng_lin_intervals"),
    ({"model": "plackett_luce", "intervals": "bootstrap"}, "plackett_luce_intervals"),
    ({"intervals": "none", "cluster": "annotator"}, "cluster_intervals"),
    ({"model": "elo", "cluster": "annotator"}, "cluster_intervals"),
])
def test_incompatible_options_are_refused_in_python_words(kw: dict, rule: str) -> None:
    with pytest.raises(OptionError) as e:
        check_options(**kw)
    assert e.value.rule == rule and "--" not in str(e.value)
    with pytest.raises(ValueError):  # before any fit
        rank(_votes(), **kw)


def test_refusals_that_depend_on_the_data() -> None:
    v = _votes()
    with pytest.raises(OptionError, match="needs rankings") as e:
        rank(v, model="plackett_luce")
    assert e.value.rule == "plackett_luce_data"
    with pytest.raises(OptionError, match="no order") as e:
        rank(aggregate(v), model="elo")
    assert e.value.rule == "online_counts"
    with pytest.raises(OptionError, match="did you mean 'a'") as e:
        rank(v, intervals="none", anchor=("aa", 1000.0))
    assert e.value.rule == "anchor_unknown" and e.value.details["close"] == ["a"]
    with pytest.raises(ValueError, match="model must be one of"):
        rank(v, model="bradley-terry")


def test_rankings_get_plackett_luce_and_hessian_intervals() -> None:
    r = Rankings.from_lists([["a", "b", "c"], ["b", "a", "c"], ["a", "c", "b"],
                             ["c", "a", "b"], ["b", "c", "a"]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default: no warning
        lb = rank(r)
    assert lb.model == "plackett_luce" and lb.intervals is not None
    with pytest.warns(UserWarning, match="Plackett-Luce gets Hessian intervals"):
        again = rank(r, intervals="bootstrap")
    np.testing.assert_array_equal(again.intervals, lb.intervals)


def test_online_models_and_the_anchor() -> None:
    v = _votes()
    assert rank(v, model="elo").intervals is None
    wl = rank(v, model="weng_lin")
    assert wl.interval_method.startswith("weng-lin posterior")
    lb = rank(v, intervals="hessian", anchor=("c", 1000.0))
    assert lb.rating("c") == pytest.approx(1000.0) and lb.anchor == ("c", 1000.0)
