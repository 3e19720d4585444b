"""The one loss contract (prefkit.losses): the tie rule, LossOutput's defaults and
reductions (exact over micro-batches, for per-example and per-token losses), the registry
entry shared by reward and align losses, and the step pass a loss declares."""

from __future__ import annotations

import pytest
import torch

from prefkit.align.losses import ALIGN_LOSSES, AlignLoss, combine_losses, get_align_loss
from prefkit.losses import (
    LossOutput,
    LossSpec,
    StepPass,
    preference_accuracy,
    reduce_outputs,
)
from prefkit.reward.losses import REWARD_LOSSES


def test_tie_rule_is_half_and_rewardbench_is_available() -> None:
    m = torch.tensor([3.0, 0.0, -0.0, -1e-30, float("nan"), float("inf")])
    assert preference_accuracy(m).tolist() == [1.0, 0.5, 0.5, 0.0, 0.0, 1.0]
    assert preference_accuracy(m, ties="wrong").tolist() == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    # symmetric: accuracy(c, r) + accuracy(r, c) == 1 wherever the margin is a number
    finite = m[:4]
    assert torch.equal(preference_accuracy(finite) + preference_accuracy(-finite),
                       torch.ones(4))
    assert preference_accuracy(torch.tensor([1, 0])).dtype == torch.float32
    assert not preference_accuracy(torch.zeros(2, requires_grad=True)).requires_grad
    with pytest.raises(ValueError, match="ties"):
        preference_accuracy(m, ties="coin")


def test_loss_output_defaults_and_derived_margins() -> None:
    losses = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    rewards = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, -float("inf")], [5.0, 1.0, 4.0]],
                           requires_grad=True)
    out = LossOutput(losses * 1, rewards * 1)
    assert out.normaliser == 3 and not out.rewards.requires_grad
    assert out.margins.tolist() == [-1.0, 0.0, 1.0]  # chosen minus the best other
    assert out.accuracy.tolist() == [0.0, 0.5, 1.0]
    assert out.rejected_rewards.tolist() == [2.0, 0.0, 4.0]
    assert float(out.reduce().detach()) == 2.0
    unpaired = LossOutput(losses, rewards[:, :1])
    assert unpaired.margins is None and unpaired.accuracy is None
    with pytest.raises(ValueError, match="no rejected"):
        unpaired.rejected_rewards  # noqa: B018
    with pytest.raises(ValueError, match="per element"):
        LossOutput(losses.sum())


def test_normalisers_add_up_so_accumulation_is_exact() -> None:
    """Per example: micro-batches reduce to the full batch's mean. Per token (GRPO/DAPO):
    the normaliser is the active tokens, and the micro-batches' sums divided by the whole
    batch's active tokens equal the one-batch loss -- not the mean of per-batch means."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, dtype=torch.float64, generator=g)
    mask = torch.rand(6, 5, generator=g) < 0.6
    mask[:, 0] = True
    per_token = [LossOutput(torch.where(mask[s], x[s], 0.0), normaliser=mask[s].sum())
                 for s in (slice(0, 2), slice(2, 6))]
    whole = LossOutput(torch.where(mask, x, 0.0), normaliser=mask.sum())
    assert torch.allclose(reduce_outputs(per_token), whole.reduce(), rtol=0, atol=1e-15)
    assert float(whole.reduce()) == pytest.approx(float(x[mask].mean()), abs=1e-12)
    per_example = [LossOutput(x[s, 0]) for s in (slice(0, 1), slice(1, 6))]
    assert float(reduce_outputs(per_example)) == pytest.approx(float(x[:, 0].mean()), abs=1e-12)
    constant = LossOutput(torch.where(mask, x, 0.0), normaliser=6 * 5)  # Dr. GRPO
    assert float(constant.reduce()) == pytest.approx(float(x[mask].sum() / 30), abs=1e-12)


def test_one_registry_type_for_reward_and_align_losses() -> None:
    for spec in [*REWARD_LOSSES.values(), *ALIGN_LOSSES.values()]:
        assert isinstance(spec, LossSpec) and spec.__doc__ and spec.paper, spec.name
    dpo = get_align_loss("dpo")
    assert isinstance(dpo, AlignLoss) and dpo.needs == {"reference"} and dpo.step_pass is None
    assert get_align_loss("tdpo1").needs == {"reference", "token_kl"}
    assert get_align_loss("simpo").needs == frozenset()
    assert REWARD_LOSSES["bradley_terry_margin"].needs == {"margin"}
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        dpo.resolve(betta=0.1)


def test_kto_declares_its_step_pass_and_a_fixed_value_skips_it() -> None:
    kto = get_align_loss("kto")
    assert kto.needs_kl_estimate and kto.step_pass == StepPass(
        "kl_estimate", examples="mismatched", statistic="mean_log_ratio", min_batch_size=2)
    assert kto.step_pass.wanted({}) and kto.step_pass.wanted({"kl_estimate": None})
    assert not kto.step_pass.wanted({"kl_estimate": 0.0})
    passes = {s.step_pass for s in ALIGN_LOSSES.values()}
    assert passes == {None, kto.step_pass}  # KTO is the only loss with one today
    both = combine_losses({"kto": 1.0})
    assert both.step_pass is kto.step_pass and both.needs == kto.needs
