"""Reward losses and the torch links: hand-derived values, TRL's formula (written out and,
when installed, TRL itself), prefkit's numpy Plackett-Luce, gradients and edge numerics;
the shared loss contract (LossOutput, the registry entry, the tie rule) and the GPM and
PAL entries."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the TRL reference imports huggingface_hub

import math  # noqa: E402
from collections import defaultdict  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from prefkit.choice.general import gpm_logit  # noqa: E402
from prefkit.choice.plackett_luce import (  # noqa: E402
    plackett_luce_log_likelihood,
    plackett_luce_terms,
    ranking_design,
)
from prefkit.choice.torch_pairwise import log_bradley_terry, log_plackett_luce  # noqa: E402
from prefkit.losses import LossOutput, LossSpec  # noqa: E402
from prefkit.reward.losses import REWARD_LOSSES, RewardLoss, get_reward_loss  # noqa: E402

EXACT = 1e-6  # float32 arithmetic on O(1) values
TIGHT = 1e-12  # float64

RC = torch.tensor([1.0, 2.0, -3.0, 0.5])
RR = torch.tensor([0.0, 2.5, 1.0, 0.5])
MARGIN = torch.tensor([1.0, 0.0, 2.0, 0.5])
#: the losses over one scalar reward per response (GPM takes preference embeddings)
SCALAR = sorted(n for n, spec in REWARD_LOSSES.items() if spec.takes == "rewards")


def softplus(x: float) -> float:
    """-log sigmoid(-x) = log(1 + e^x), written out."""
    return math.log1p(math.exp(x))


# -- hand-derived values ----------------------------------------------------------------
def test_bradley_terry_by_hand() -> None:
    # -log sigmoid(1) = log(1 + e^-1) = 0.3132617; a tie costs log 2
    out = REWARD_LOSSES["bradley_terry"](torch.tensor([1.0, 0.5]), torch.tensor([0.0, 0.5]))
    assert out.losses.tolist() == pytest.approx([0.3132617, math.log(2)], abs=EXACT)
    assert out.accuracy.tolist() == [1.0, 0.5]  # prefkit's rule: a tie counts half
    assert out.margins.tolist() == [1.0, 0.0]
    assert out.rewards.tolist() == [[1.0, 0.0], [0.5, 0.5]]


def test_margin_by_hand() -> None:
    # r_c - r_r - m = 2 - 0.5 - 1 = 0.5: -log sigmoid(0.5) = log(1 + e^-0.5) = 0.4740770
    loss, _ = REWARD_LOSSES["bradley_terry_margin"](
        torch.tensor([2.0]), torch.tensor([0.5]), {"margin": torch.tensor([1.0])})
    assert float(loss) == pytest.approx(0.4740770, abs=EXACT)


def test_label_smoothing_by_hand() -> None:
    # eps = 0.1, d = 1: 0.9 * log(1 + e^-1) + 0.1 * log(1 + e^1) = 0.9*0.3132617 + 0.1*1.3132617
    loss, _ = REWARD_LOSSES["label_smoothing"](torch.tensor([1.0]), torch.tensor([0.0]),
                                               label_smoothing=0.1)
    assert float(loss) == pytest.approx(0.4132617, abs=EXACT)
    # its minimum sits at the finite margin d* = log((1 - eps) / eps)
    d = torch.tensor([math.log(9.0)], dtype=torch.float64, requires_grad=True)
    REWARD_LOSSES["label_smoothing"](d, torch.zeros(1, dtype=torch.float64),
                                     label_smoothing=0.1)[0].sum().backward()
    assert float(d.grad) == pytest.approx(0.0, abs=TIGHT)


def test_centering_by_hand() -> None:
    # c = 0.01, r_c = 2, r_r = -1: log(1 + e^-3) + 0.01 * (2 - 1)^2 = 0.0485874 + 0.01
    loss, _ = REWARD_LOSSES["reward_centering"](torch.tensor([2.0]), torch.tensor([-1.0]),
                                                center_rewards_coefficient=0.01)
    assert float(loss) == pytest.approx(0.0585874, abs=EXACT)


def test_regression_by_hand_with_missing_ratings() -> None:
    pred_c = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    pred_r = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    y_c = torch.tensor([[0.0, float("nan")], [float("nan"), float("nan")]])
    y_r = torch.tensor([[2.0, 1.0], [float("nan"), float("nan")]])
    loss, diag = REWARD_LOSSES["regression"](pred_c, pred_r,
                                             {"chosen_ratings": y_c, "rejected_ratings": y_r})
    # row 0: rated entries (1-0)^2, (0-2)^2, (1-1)^2 -> 5 / 3; row 1: nothing rated -> 0
    assert loss.tolist() == pytest.approx([5 / 3, 0.0], abs=EXACT)
    assert diag["n_rated"].tolist() == [3.0, 0.0]


def test_helpsteer2_by_hand() -> None:
    # |m| = 2 (sign ignored): 2 * log(1 + e^-1); w = 0.5: 0.5/2 * ((1-3)^2 + (0-1)^2) = 1.25
    batch = {"margin": torch.tensor([-2.0]), "chosen_ratings": torch.tensor([[3.0]]),
             "rejected_ratings": torch.tensor([[1.0]])}
    loss, diag = REWARD_LOSSES["helpsteer2"](torch.tensor([1.0]), torch.tensor([0.0]), batch,
                                             regression_weight=0.5)
    assert float(loss) == pytest.approx(2 * 0.3132617 + 1.25, abs=EXACT)
    # w = 0: pure Scaled BT, ratings not needed; no margin column: weight 1 (= plain BT)
    only_bt, _ = REWARD_LOSSES["helpsteer2"](RC, RR, regression_weight=0.0)
    assert torch.allclose(only_bt, REWARD_LOSSES["bradley_terry"](RC, RR)[0])


# -- TRL: its RewardTrainer.compute_loss, written out ------------------------------------
def trl_formula(rc: torch.Tensor, rr: torch.Tensor, margin: torch.Tensor | None = None,
                coef: float | None = None) -> float:
    """TRL 1.16 ``RewardTrainer.compute_loss``: ``-logsigmoid(r_c - r_r [- margin]).mean()``,
    then ``+= coef * mean((r_c + r_r) ** 2)``; here in plain Python floats."""
    terms = [softplus(-(c - r - (float(margin[i]) if margin is not None else 0.0)))
             for i, (c, r) in enumerate(zip(rc.tolist(), rr.tolist()))]
    loss = sum(terms) / len(terms)
    if coef is not None:
        loss += coef * sum((c + r) ** 2 for c, r in zip(rc.tolist(), rr.tolist())) / len(terms)
    return loss


def test_matches_trl_formula_written_out() -> None:
    bt = REWARD_LOSSES["bradley_terry"](RC, RR)[0].mean()
    assert float(bt) == pytest.approx(trl_formula(RC, RR), abs=EXACT)
    mg = REWARD_LOSSES["bradley_terry_margin"](RC, RR, {"margin": MARGIN})[0].mean()
    assert float(mg) == pytest.approx(trl_formula(RC, RR, MARGIN), abs=EXACT)
    ce = REWARD_LOSSES["reward_centering"](RC, RR, center_rewards_coefficient=0.01)[0].mean()
    assert float(ce) == pytest.approx(trl_formula(RC, RR, coef=0.01), abs=EXACT)
    both = REWARD_LOSSES["reward_centering"](RC, RR, {"margin": MARGIN}, use_margin=True,
                                             center_rewards_coefficient=0.05)[0].mean()
    assert float(both) == pytest.approx(trl_formula(RC, RR, MARGIN, coef=0.05), abs=EXACT)


def _real_trl_loss(rc: torch.Tensor, rr: torch.Tensor, margin: torch.Tensor | None = None,
                   coef: float | None = None) -> float:
    """Call TRL's own ``RewardTrainer.compute_loss`` with a stand-in trainer and model: the
    model returns the stacked rewards as logits (chosen half first, as TRL's collator
    stacks them)."""
    trl = pytest.importorskip("trl.trainer.reward_trainer")
    logits = torch.cat([rc, rr])[:, None]
    accel = SimpleNamespace(gather_for_metrics=lambda x: x, gather=lambda x: x)
    trainer = SimpleNamespace(
        model=SimpleNamespace(training=False), accelerator=accel, _total_train_tokens=0,
        args=SimpleNamespace(center_rewards_coefficient=coef), _tp_size=1,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)})
    inputs: dict[str, torch.Tensor] = {
        "input_ids": torch.zeros(logits.shape[0], 2, dtype=torch.long),
        "attention_mask": torch.ones(logits.shape[0], 2, dtype=torch.long)}
    if margin is not None:
        inputs["margin"] = margin
    model = lambda **kw: SimpleNamespace(logits=logits)  # noqa: E731
    return float(trl.RewardTrainer.compute_loss(trainer, model, inputs))


def test_matches_trl_itself() -> None:
    """Reference: trl==1.16.0 installed in the venv (skipped when it is not)."""
    pytest.importorskip("trl")
    assert float(REWARD_LOSSES["bradley_terry"](RC, RR)[0].mean()) == pytest.approx(
        _real_trl_loss(RC, RR), abs=EXACT)
    assert float(REWARD_LOSSES["bradley_terry_margin"](RC, RR, {"margin": MARGIN})[0].mean()) \
        == pytest.approx(_real_trl_loss(RC, RR, MARGIN), abs=EXACT)
    got = REWARD_LOSSES["reward_centering"](RC, RR, center_rewards_coefficient=0.01)[0].mean()
    assert float(got) == pytest.approx(_real_trl_loss(RC, RR, coef=0.01), abs=EXACT)


# -- gradients and edge numerics ------------------------------------------------------------
BATCH64 = {
    "margin": torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64),
    "chosen_ratings": torch.tensor([[3.0], [1.0], [float("nan")]], dtype=torch.float64),
    "rejected_ratings": torch.tensor([[1.0], [2.0], [0.0]], dtype=torch.float64),
}
OPTIONS = {"label_smoothing": {"label_smoothing": 0.2},
           "reward_centering": {"center_rewards_coefficient": 0.1, "use_margin": True}}


@pytest.mark.parametrize("name", SCALAR)
def test_gradient_matches_finite_differences(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    rc = torch.randn(3, dtype=torch.float64, generator=g, requires_grad=True)
    rr = torch.randn(3, dtype=torch.float64, generator=g, requires_grad=True)
    fn = REWARD_LOSSES[name]
    assert torch.autograd.gradcheck(
        lambda c, r: fn(c, r, BATCH64, **OPTIONS.get(name, {}))[0], (rc, rr))


SQUARED = {"reward_centering", "regression", "helpsteer2"}  # carry (r - y)^2 or (r_c + r_r)^2


@pytest.mark.parametrize(("name", "scale"), [(n, s) for n in SCALAR
                                             for s in ((1e4,) if n in SQUARED else (1e4, 1e30))])
def test_huge_margins_give_finite_loss_and_gradients(name: str, scale: float) -> None:
    """Links stay finite at any margin; losses with squared terms are checked at 1e4 only
    (1e30 squared overflows float32 whatever the implementation)."""
    rc = torch.tensor([scale, -scale, 0.0], requires_grad=True)
    rr = torch.tensor([-scale, scale, 0.0], requires_grad=True)
    batch = {k: v.float() for k, v in BATCH64.items()}
    loss, diag = REWARD_LOSSES[name](rc, rr, batch, **OPTIONS.get(name, {}))
    loss.sum().backward()
    assert torch.isfinite(loss).all()
    assert torch.isfinite(rc.grad).all() and torch.isfinite(rr.grad).all()
    assert all(not v.requires_grad for v in diag.values())


@pytest.mark.parametrize("name", SCALAR)
def test_empty_batch(name: str) -> None:
    rc = torch.zeros(0, requires_grad=True)
    rr = torch.zeros(0, requires_grad=True)
    batch = {"margin": torch.zeros(0), "chosen_ratings": torch.zeros(0, 1),
             "rejected_ratings": torch.zeros(0, 1)}
    loss, diag = REWARD_LOSSES[name](rc, rr, batch, **OPTIONS.get(name, {}))
    assert loss.shape == (0,)
    loss.sum().backward()
    assert rc.grad is not None and rc.grad.shape == (0,)
    assert all(v.shape[0] == 0 for v in diag.values())


def test_bt_loss_is_per_example_and_differentiable_wrt_both_sides() -> None:
    rc, rr = RC.clone().requires_grad_(), RR.clone().requires_grad_()
    loss, _ = REWARD_LOSSES["bradley_terry"](rc, rr)
    assert loss.shape == (4,)
    loss.sum().backward()
    # d/d r_c of -log sigmoid(d) = -(1 - sigmoid(d)) = -sigmoid(-d); opposite for r_r
    expected = -torch.sigmoid(-(RC - RR))
    assert torch.allclose(rc.grad, expected) and torch.allclose(rr.grad, -expected)


# -- errors -------------------------------------------------------------------------------
def test_missing_margin_says_which_column() -> None:
    with pytest.raises(KeyError, match="'margin'"):
        REWARD_LOSSES["bradley_terry_margin"](RC, RR)


def test_unknown_loss_lists_the_names() -> None:
    with pytest.raises(ValueError, match="bradley_terry_margin"):
        get_reward_loss("bt")
    assert get_reward_loss("gpm") is REWARD_LOSSES["general_preference"]
    assert get_reward_loss("pal") is REWARD_LOSSES["pluralistic"]


def test_unknown_option_is_refused_with_the_options() -> None:
    with pytest.raises(ValueError, match="unknown hyper-parameter.*label_smoothing"):
        REWARD_LOSSES["label_smoothing"](RC, RR, label_smothing=0.1)


def test_multi_attribute_output_needs_regression() -> None:
    with pytest.raises(ValueError, match="regression"):
        REWARD_LOSSES["bradley_terry"](torch.zeros(2, 3), torch.zeros(2, 3))


def test_every_loss_documents_formula_and_reference() -> None:
    for name, spec in REWARD_LOSSES.items():
        assert isinstance(spec, RewardLoss) and isinstance(spec, LossSpec) and spec.name == name
        assert spec.__doc__ and "References" in spec.__doc__ and spec.paper, name
        assert spec.__name__.endswith("_loss") and spec.__doc__ == spec.fn.__doc__, name


# -- the shared contract ----------------------------------------------------------------------
@pytest.mark.parametrize("name", SCALAR)
def test_every_loss_returns_the_shared_contract(name: str) -> None:
    """A LossOutput: per-example losses, the number of pairs as normaliser (reduce() is the
    mean), the pair's detached rewards, margins r_c - r_r and prefkit's accuracy."""
    rc = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64, requires_grad=True)
    rr = torch.tensor([0.0, 2.5, 0.5], dtype=torch.float64)
    out = REWARD_LOSSES[name](rc, rr, BATCH64, **OPTIONS.get(name, {}))
    assert isinstance(out, LossOutput) and out.losses.shape == (3,) and out.normaliser == 3
    assert torch.equal(out.reduce(), out.losses.sum() / 3)
    assert out.losses.requires_grad and not out.rewards.requires_grad
    assert out.rewards.tolist() == [[1.0, 0.0], [2.0, 2.5], [0.5, 0.5]]
    assert out.margins.tolist() == [1.0, -0.5, 0.0]
    assert out.accuracy.tolist() == [1.0, 0.0, 0.5]


def test_unpacking_gives_the_earlier_pair() -> None:
    """``losses, diagnostics = loss(...)`` (the reward losses' earlier return) still works."""
    out = REWARD_LOSSES["helpsteer2"](RC, RR, {"chosen_ratings": RC[:, None],
                                               "rejected_ratings": RR[:, None]})
    losses, diag = out
    assert losses is out.losses and out[0] is out.losses
    assert set(diag) == {"chosen_rewards", "rejected_rewards", "margins", "accuracy",
                         "squared_error"}
    assert torch.equal(diag["margins"], RC - RR) and torch.equal(diag["accuracy"], out.accuracy)


def test_multi_attribute_regression_has_no_margins() -> None:
    out = REWARD_LOSSES["regression"](torch.zeros(2, 3), torch.ones(2, 3),
                                      {"chosen_ratings": torch.zeros(2, 3),
                                       "rejected_ratings": torch.zeros(2, 3)})
    assert out.rewards is None and out.margins is None and out.accuracy is None
    assert out.losses.tolist() == [0.5, 0.5] and set(out.as_dict()) == {"squared_error",
                                                                        "n_rated"}


# -- GPM and PAL: registered like the rest ------------------------------------------------------
def test_gpm_loss_by_hand() -> None:
    # <R v_c, v_r> = 1*1 - 0*0 = 1 (block J); tau 0.5: s = 2, loss = log(1 + e^-2) = 0.1269280
    v_c = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v_r = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    out = get_reward_loss("gpm")(v_c, v_r, tau=0.5)
    assert out.losses.tolist() == pytest.approx([0.1269280, math.log(2)], abs=EXACT)
    assert out.rewards is None and out.margins.tolist() == [2.0, 0.0]
    assert out.accuracy.tolist() == [1.0, 0.5] and torch.equal(out.diagnostics["logits"],
                                                                out.margins)
    # eigenvalues come with the batch; label smoothing is choice's Bradley-Terry link's
    lam = torch.tensor([[3.0], [1.0]])
    got = get_reward_loss("gpm")(v_c, v_r, {"eigenvalues": lam}, tau=0.5, label_smoothing=0.1)
    s = gpm_logit(v_c, v_r, lam) / 0.5
    assert torch.equal(got.losses, -log_bradley_terry(s, label_smoothing=0.1))
    with pytest.raises(ValueError, match=r"embeddings \(B, 2k\)"):
        get_reward_loss("gpm")(RC, RR)
    with pytest.raises(ValueError, match="tau"):
        get_reward_loss("gpm")(v_c, v_r, tau=0.0)


def test_gpm_loss_gradient_and_skew_symmetry() -> None:
    g = torch.Generator().manual_seed(4)
    v_c = torch.randn(5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    v_r = torch.randn(5, 4, dtype=torch.float64, generator=g, requires_grad=True)
    spec = get_reward_loss("general_preference")
    assert torch.autograd.gradcheck(lambda a, b: spec(a, b, tau=0.3).losses, (v_c, v_r))
    # swapping the sides flips the logit: loss(c, r) - loss(r, c) = -s
    fwd, back = spec(v_c, v_r, tau=0.3), spec(v_r, v_c, tau=0.3)
    assert torch.equal(fwd.margins, -back.margins)
    assert torch.allclose(fwd.losses - back.losses, -fwd.margins, atol=1e-12)


def test_pal_loss_is_bradley_terry_on_user_rewards() -> None:
    spec = get_reward_loss("pluralistic")
    assert torch.equal(spec(RC, RR).losses, REWARD_LOSSES["bradley_terry"](RC, RR).losses)
    smooth = spec(RC, RR, label_smoothing=0.2)
    assert torch.equal(smooth.losses,
                       REWARD_LOSSES["label_smoothing"](RC, RR, label_smoothing=0.2).losses)
    assert torch.equal(smooth.margins, RC - RR)


# -- torch links ---------------------------------------------------------------------------
def test_plackett_luce_by_hand_and_two_items_is_bradley_terry() -> None:
    s = torch.log(torch.tensor([[3.0, 2.0, 1.0]], dtype=torch.float64))
    assert float(log_plackett_luce(s)) == pytest.approx(math.log(3 / 6 * 2 / 3), abs=TIGHT)
    pair = torch.tensor([[1.5, -0.25], [0.0, 4.0]], dtype=torch.float64)
    # bit for bit, with and without a scale applied to the difference (DPO's beta)
    assert torch.equal(log_plackett_luce(pair), log_bradley_terry(pair[:, 0] - pair[:, 1]))
    assert torch.equal(log_plackett_luce(pair, scale=0.3),
                       log_bradley_terry(0.3 * (pair[:, 0] - pair[:, 1])))


def test_plackett_luce_matches_prefkit_numpy_likelihood() -> None:
    """Reference: prefkit.choice.plackett_luce (numpy, checked against choix)."""
    rng = np.random.default_rng(1)
    for k in (2, 3, 5):
        scores = rng.normal(size=k) * 3
        order = rng.permutation(k)
        ref = plackett_luce_log_likelihood(scores, order, np.arange(k), [0, k])
        got = log_plackett_luce(torch.tensor(scores[order])[None])
        assert float(got) == pytest.approx(ref, abs=TIGHT)


def test_plackett_luce_with_padding_anywhere_matches_numpy_terms() -> None:
    """Padding left out wherever it sits: the rankers' numpy Plackett-Luce
    (ranking_design / plackett_luce_terms) over each row's real entries, in order."""
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(6, 5)) * 4
    mask = rng.random((6, 5)) < 0.7
    mask[:, 0] = True
    mask[1] = [True, False, True, False, True]  # gaps inside a row
    got = log_plackett_luce(torch.tensor(scores), mask=torch.tensor(mask), scale=0.5)
    for b in range(6):
        real = 0.5 * scores[b][mask[b]]
        k = real.size
        d = ranking_design(np.arange(k), np.arange(k), [0, k], n_items=k)
        want = -plackett_luce_terms(real, d).nll.sum()
        assert float(got[b]) == pytest.approx(want, abs=1e-10), b


def test_plackett_luce_mask_equals_shorter_ranking() -> None:
    s = torch.tensor([[0.3, -1.0, 2.0, 9.0], [1.0, 0.5, -0.5, 0.0]], requires_grad=True)
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    got = log_plackett_luce(s, mask=mask)
    assert float(got[0].detach()) == pytest.approx(float(log_plackett_luce(s[:1, :3].detach())),
                                                   abs=EXACT)
    got.sum().backward()
    assert torch.isfinite(s.grad).all() and float(s.grad[0, 3]) == 0.0
    assert log_plackett_luce(torch.zeros(0, 3)).shape == (0,)


def test_links_finite_at_huge_scores() -> None:
    s = torch.tensor([[1e4, -1e4, 0.0], [-1e30, 1e30, 0.0]], requires_grad=True)
    out = log_plackett_luce(s)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(s.grad).all()
    d = torch.tensor([-1e30, 1e30], requires_grad=True)
    log_bradley_terry(d, label_smoothing=0.1).sum().backward()
    assert torch.isfinite(d.grad).all()
    with pytest.raises(ValueError, match="label_smoothing"):
        log_bradley_terry(d, label_smoothing=0.7)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-20, 20), min_size=2, max_size=6), st.floats(-50, 50))
def test_plackett_luce_ignores_a_shift(scores: list[float], shift: float) -> None:
    s = torch.tensor([scores], dtype=torch.float64)
    assert float(log_plackett_luce(s + shift)) == pytest.approx(float(log_plackett_luce(s)),
                                                                abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.floats(-30, 30), st.floats(-30, 30), st.floats(-50, 50))
def test_bt_loss_sees_only_differences_and_swapping_costs_the_margin(
        c: float, r: float, shift: float) -> None:
    rc, rr = torch.tensor([c], dtype=torch.float64), torch.tensor([r], dtype=torch.float64)
    base = REWARD_LOSSES["bradley_terry"](rc, rr)[0]
    assert float(REWARD_LOSSES["bradley_terry"](rc + shift, rr + shift)[0]) == pytest.approx(
        float(base), abs=1e-9)
    # log(1 + e^-d) - log(1 + e^d) = -d
    swapped = REWARD_LOSSES["bradley_terry"](rr, rc)[0]
    assert float(base - swapped) == pytest.approx(r - c, abs=1e-9)


def test_reward_loss_options_outside_their_range_are_refused() -> None:
    import torch

    from prefkit.reward.losses import label_smoothing_loss, reward_centering_loss

    c, r = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    with pytest.raises(ValueError, match=r"must lie in \[0, 0.5\], got 0.8"):
        label_smoothing_loss(c, r, label_smoothing=0.8)
    with pytest.raises(ValueError, match="finite number >= 0"):
        reward_centering_loss(c, r, center_rewards_coefficient=-0.01)
