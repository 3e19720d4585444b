"""A judge's biases: position, length (and AlpacaEval's length-controlled win rate),
self-preference.

- :func:`position_bias`: the first-position rate with an exact two-sided binomial test
  against 1/2.
- :func:`prefers_longer`: P(the judge prefers the longer answer), as AlpacaEval's
  evaluator table reports it.
- :func:`length_controlled_win_rate`: AlpacaEval 2's length-controlled win rate (Dubois et
  al. 2024), the same GLM as ``alpaca_eval.metrics.get_length_controlled_winrate``.
- :func:`self_preference`: a DBG-style score (Chen et al. 2025, "Beyond the Surface:
  Measuring Self-Preference in LLM Judgments"): how much more the judge favours its own
  model than gold labels do on the same pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from prefkit.judge.consistency import Ratio, first_position_rate
from prefkit.judge.records import A_WINS, B_WINS, NOT_JUDGED, TIE, Verdicts, identity

__all__ = ["LengthControlled", "length_controlled_win_rate", "position_bias",
           "prefers_longer", "self_preference"]


def position_bias(v: Verdicts) -> tuple[Ratio, float | None]:
    """The first-position rate (:func:`~prefkit.judge.consistency.first_position_rate`) and
    the two-sided exact binomial p-value of "no position bias" (rate 1/2); ``None`` when
    there is no non-tie verdict."""
    r = first_position_rate(v)
    if not r.total:
        return r, None
    from scipy.stats import binomtest

    return r, float(binomtest(r.count, r.total, 0.5).pvalue)


def prefers_longer(v: Verdicts) -> Ratio:
    """P(prefers the longer answer): over every parsed non-tie verdict (each judged order
    counts once, as AlpacaEval counts each annotation), the share whose winner is the
    longer answer (in characters). Left out and counted: ``tie``, ``error``,
    ``same_length`` and ``unknown_length``; a row recorded as one both-orders outcome
    counts once, and not at all when inconsistent (``inconsistent``).

    >>> from prefkit.judge.records import Verdicts
    >>> v = Verdicts(judge=["j"] * 3, prompt=list("123"), model_a=["x"] * 3,
    ...              model_b=["y"] * 3, ab=[0, 1, 2], ba=[-2, 0, -2],
    ...              length_a=[10, 10, 5], length_b=[20, 30, 9])
    >>> r = prefers_longer(v)  # row 1: x (shorter) wins; row 2: y wins twice (longer)
    >>> r.count, r.total, r.left_out["tie"]
    (2, 3, 1)
    """
    count = total = 0
    left = {"tie": 0, "error": 0, "same_length": 0, "unknown_length": 0}
    la, lb = v.length_a, v.length_b
    ab, ba = v.ab, v.ba
    combined = ~v.positional
    if combined.any():  # a both-orders outcome counts once; an inconsistent one not at all
        ab, ba = ab.copy(), ba.copy()
        bad = combined & (identity(v.ab, "ab") != identity(v.ba, "ba"))
        left["inconsistent"] = int(bad.sum())
        ab[bad] = NOT_JUDGED
        ba[combined] = NOT_JUDGED
    for order, col in (("ab", ab), ("ba", ba)):
        ident = identity(col, order)
        judged = col != NOT_JUDGED
        left["tie"] += int((judged & (ident == TIE)).sum())
        left["error"] += int((judged & (ident < 0)).sum())
        win = judged & ((ident == A_WINS) | (ident == B_WINS))
        known = np.isfinite(la) & np.isfinite(lb)
        left["unknown_length"] += int((win & ~known).sum())
        left["same_length"] += int((win & known & (la == lb)).sum())
        ok = win & known & (la != lb)
        longer_a = la > lb
        count += int((ok & ((ident == A_WINS) == longer_a)).sum())
        total += int(ok.sum())
    return Ratio(count, total, left)


@dataclass(frozen=True)
class LengthControlled:
    """AlpacaEval's metrics of one model against its baseline, in percent: ``win_rate``
    (mean preference for the model), ``length_controlled`` (the GLM's prediction at zero
    length difference, averaged over instructions), ``coefficients`` of the GLM."""

    win_rate: float
    length_controlled: float
    coefficients: dict[str, float]
    n: int


def length_controlled_win_rate(
    preference: ArrayLike, length_model: ArrayLike, length_baseline: ArrayLike, *,
    instruction_difficulty: ArrayLike | None = None, n_splits: int = 5,
) -> LengthControlled:
    """AlpacaEval 2's length-controlled win rate of a model against a baseline.

    ``preference`` is P(the model's output is better) in [0, 1] per instruction (AlpacaEval's
    ``preference - 1`` with the baseline as ``output_1``; NaN rows are dropped from the fit,
    as AlpacaEval drops them). The GLM is AlpacaEval's ``length_controlled_v1`` --
    ``logit P = w_len * tanh(delta / sd(delta)) + w_d * instruction_difficulty + w_0`` with
    ``delta`` = baseline length - model length (characters) and ``sd`` its sample standard
    deviation -- fitted as AlpacaEval does (``fit_LogisticRegressionCV``): each instruction
    twice, with label 1 weighted by the preference and label 0 by its complement, an L1
    liblinear logistic regression without intercept, C chosen from 10 values by 5-fold
    GroupKFold on the soft log-loss, ``random_state=123``. The length-controlled win rate
    is the mean prediction with ``delta = 0``. Without ``instruction_difficulty`` the term
    is left out (AlpacaEval's ``length_controlled_minimal``); AlpacaEval's default also
    regularises towards two "gamed" baselines whose annotations (``df_gamed.csv``) and the
    instruction difficulties it downloads from the Hugging Face Hub -- give the
    difficulties to reproduce ``length_controlled_v1`` minus that regularisation.
    """
    import warnings

    import sklearn
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.metrics import make_scorer
    from sklearn.model_selection import GroupKFold

    p = np.asarray(preference, dtype=float)
    lm, lb = np.asarray(length_model, float), np.asarray(length_baseline, float)
    delta = lb - lm
    std_delta = delta / np.std(delta, ddof=1)
    names = ["np.tanh(std_delta_len)"]
    cols = [np.tanh(std_delta)]
    test = [np.zeros_like(std_delta)]
    if instruction_difficulty is not None:
        d = np.asarray(instruction_difficulty, float)
        names.append("instruction_difficulty")
        cols.append(d)
        test.append(d)
    names.append("not_gamed_baseline.astype(float)")
    cols.append(np.ones_like(p))
    test.append(np.ones_like(p))
    x, x_test = np.stack(cols, 1), np.stack(test, 1)
    keep = np.isfinite(p)
    x_fit, p_fit = x[keep], p[keep]
    n = len(p_fit)
    # each instruction twice: label 1 weighted by p, label 0 by 1 - p
    x_dup = np.concatenate([x_fit, x_fit])
    y_dup = np.concatenate([np.ones(n, int), np.zeros(n, int)])
    prob = np.concatenate([p_fit, 1 - p_fit])
    groups = np.concatenate([np.arange(n), np.arange(n)])
    with sklearn.config_context(enable_metadata_routing=True), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scorer = make_scorer(_soft_log_loss, response_method="predict_proba",
                             greater_is_better=False).set_score_request(
            true_sample_weight=True, true_prob=True)
        model = LogisticRegressionCV(cv=GroupKFold(n_splits=n_splits), scoring=scorer,
                                     random_state=123, dual=False, penalty="l1",
                                     solver="liblinear", n_jobs=None, fit_intercept=False)
        model.set_fit_request(sample_weight=True)
        model.fit(x_dup, y_dup, sample_weight=prob, groups=groups, true_sample_weight=None,
                  true_prob=prob)
        pred = model.predict_proba(x_test)[:, 1]
    return LengthControlled(float(np.nanmean(p) * 100), float(pred.mean() * 100),
                            dict(zip(names, model.coef_[0].tolist())), len(p))


def _soft_log_loss(y_true: NDArray[np.int64], y_pred: NDArray[np.float64],
                   true_prob: NDArray[np.float64],
                   true_sample_weight: NDArray[np.float64] | None = None) -> float:
    """AlpacaEval's ``logloss_continuous``: the log-loss against the soft preference (a
    duplicated row's label says which side of the probability it carries)."""
    y = np.where(y_true == 1, true_prob, 1 - true_prob)
    q = np.clip(y_pred, 1e-15, 1 - 1e-15)
    losses = y * np.log(q) + (1 - y) * np.log(1 - q)
    if true_sample_weight is not None:
        losses = losses * true_sample_weight
    return float(-np.mean(losses))


def self_preference(v: Verdicts, own_model: str, gold: Mapping[tuple[str, str, str], int],
                    verdict: NDArray[np.int8] | None = None) -> dict[str, float | int | None]:
    """A DBG-style self-preference score: over the pairs that involve ``own_model`` (the
    judge's own model) and have a gold label, the judge's win rate of ``own_model`` minus
    the gold win rate on the same pairs (a tie counts half). Positive: the judge favours its
    own model beyond what the gold labels support.

    ``verdict`` is one verdict per row in model terms (default
    :func:`prefkit.judge.repair.judge_verdict`); rows without one are left out.

    >>> from prefkit.judge.records import Verdicts
    >>> v = Verdicts(judge=["me"] * 2, prompt=["1", "2"], model_a=["me", "x"],
    ...              model_b=["x", "me"], ab=[0, 1], ba=[-2, -2])
    >>> self_preference(v, "me", {("1", "me", "x"): 2, ("2", "x", "me"): 0})["dbg"]
    0.75
    """
    from prefkit.judge.repair import judge_verdict

    verdict = judge_verdict(v) if verdict is None else verdict
    mirror = {A_WINS: B_WINS, B_WINS: A_WINS, TIE: TIE}
    judge_score = gold_score = 0.0
    n = 0
    for k in range(len(v)):
        if own_model not in (v.model_a[k], v.model_b[k]) or verdict[k] < 0:
            continue
        label = gold.get((v.prompt[k], v.model_a[k], v.model_b[k]))
        if label is None:
            alt = gold.get((v.prompt[k], v.model_b[k], v.model_a[k]))
            label = None if alt is None else mirror[alt]
        if label is None:
            continue
        own_is_a = v.model_a[k] == own_model
        n += 1
        judge_score += _points(int(verdict[k]), own_is_a)
        gold_score += _points(label, own_is_a)
    if not n:
        return {"dbg": None, "judge_win_rate": None, "gold_win_rate": None, "pairs": 0}
    return {"dbg": (judge_score - gold_score) / n, "judge_win_rate": judge_score / n,
            "gold_win_rate": gold_score / n, "pairs": n}


def _points(code: int, own_is_a: bool) -> float:
    if code == TIE:
        return 0.5
    return float((code == A_WINS) == own_is_a)
