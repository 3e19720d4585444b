"""RL losses and advantages against TRL 1.16's own code on identical random inputs, plus
hand cases.

TRL's losses are methods of its trainers (``GRPOTrainer._compute_loss``,
``RLOOTrainer._compute_loss``): the tests build the trainer object without ``__init__``
(``object.__new__``), set the attributes those methods read, give it a real (one-process)
``accelerate.Accelerator`` and make its ``_get_per_token_logps_and_entropies`` return the
test's per-token log-probs -- so TRL's own loss code runs on our inputs. TRL's advantages
live inside ``_generate_and_score_completions`` (a 400-line method that also generates);
there the test writes TRL's formula from its source, with file and line.
"""

from __future__ import annotations

import math
import types

import pytest
import torch
from accelerate import Accelerator
from trl import GRPOTrainer, RLOOTrainer
from trl.trainer.utils import nanstd as trl_nanstd

from prefkit.losses import LossOutput, LossSpec
from prefkit.rl.advantages import (
    group_advantages,
    kl_penalised_rewards,
    masked_whiten,
    nanstd,
    reinforce_pp_advantages,
    rloo_advantages,
)
from prefkit.rl.losses import RL_LOSSES, RLLoss, clipped_token_loss, get_rl_loss, k3_kl
from prefkit.rl.types import TokenLogps

TOL = 1e-6  # float32 arithmetic in the same order; most agree bit for bit


def _inputs(seed: int, b: int = 6, t: int = 7, per_token_adv: bool = False):
    g = torch.Generator().manual_seed(seed)
    policy = -torch.rand(b, t, generator=g) * 3
    old = policy + 0.3 * torch.randn(b, t, generator=g)  # ratios well outside the clip
    ref = policy + 0.5 * torch.randn(b, t, generator=g)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    lengths[0] = t
    mask = (torch.arange(t)[None, :] < lengths[:, None]).long()
    adv = torch.randn(b, t, generator=g) if per_token_adv else torch.randn(b, generator=g)
    return policy, old, ref, mask, adv


def _grpo_trainer(loss_type: str, beta: float, eps: float, eps_high: float,
                  max_len: int, policy: torch.Tensor, accum: int = 1) -> GRPOTrainer:
    tr = object.__new__(GRPOTrainer)
    tr.loss_type, tr.beta, tr.epsilon_low, tr.epsilon_high = loss_type, beta, eps, eps_high
    tr.importance_sampling_level = "token"
    tr.top_entropy_quantile, tr.off_policy_mask_threshold = 1.0, None
    tr.use_vllm, tr.vllm_importance_sampling_correction = False, False
    tr.aux_loss_enabled, tr._entropy_bonus_enabled = False, False
    tr.max_completion_length, tr.current_gradient_accumulation_steps = max_len, accum
    tr.args = types.SimpleNamespace(use_bias_correction_kl=False, delta=None,
                                    steps_per_generation=accum)
    tr.model = torch.nn.Linear(1, 1)  # read for .training only
    tr.accelerator = Accelerator(cpu=True)
    from collections import defaultdict
    tr._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    tr._get_per_token_logps_and_entropies = (  # TRL's forward pass, replaced by our inputs
        lambda *a, **k: (policy, torch.zeros_like(policy), None))
    return tr


def _grpo_inputs(old, ref, mask, adv, beta):
    b, t = mask.shape
    inputs = {"prompt_ids": torch.zeros(b, 2, dtype=torch.long),
              "prompt_mask": torch.ones(b, 2, dtype=torch.long),
              "completion_ids": torch.zeros(b, t, dtype=torch.long), "completion_mask": mask,
              "advantages": adv, "old_per_token_logps": old,
              "num_items_in_batch": mask.sum()}
    if beta:
        inputs["ref_per_token_logps"] = ref
    return inputs


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("beta,eps_high", [(0.0, 0.2), (0.04, 0.28)])
@pytest.mark.parametrize("seed", [0, 1])
def test_grpo_losses_equal_trl(loss_type: str, beta: float, eps_high: float, seed: int) -> None:
    policy, old, ref, mask, adv = _inputs(seed)
    max_len = 10
    p_trl = policy.clone().requires_grad_(True)
    tr = _grpo_trainer(loss_type, beta, 0.2, eps_high, max_len, p_trl)
    want = tr._compute_loss(None, _grpo_inputs(old, ref, mask, adv, beta))
    want.backward()

    p = policy.clone().requires_grad_(True)
    out = RL_LOSSES[loss_type](TokenLogps(p, mask, adv, old=old, reference=ref), beta=beta,
                               epsilon=0.2, epsilon_high=eps_high, max_tokens=max_len)
    got = out.reduce()
    got.backward()
    assert abs(float(got.detach()) - float(want.detach())) <= TOL * (1 + abs(float(want.detach())))
    torch.testing.assert_close(p.grad, p_trl.grad, rtol=1e-5, atol=1e-7)
    # the clip fraction TRL logs (global masked mean of region-clipped tokens)
    clipped = (out.diagnostics["clipped_low"] + out.diagnostics["clipped_high"]).sum()
    assert math.isclose(float(clipped / mask.sum()), tr._metrics["train"][
        "clip_ratio/region_mean"][0], rel_tol=1e-6, abs_tol=1e-7)
    if beta:
        assert math.isclose(float(out.diagnostics["kl"].sum() / mask.sum()),
                            tr._metrics["train"]["kl"][0], rel_tol=1e-5)


def test_dapo_accumulated_over_micro_batches_equals_trl() -> None:
    # TRL's dapo divides every micro-batch by the active tokens of the whole generation
    # batch (grpo_trainer.py 3168-3173); prefkit: summed losses over summed normalisers
    policy, old, ref, mask, adv = _inputs(3, b=8)
    p_trl = policy.clone().requires_grad_(True)
    total = torch.zeros(())
    for half in (slice(0, 4), slice(4, 8)):
        tr = _grpo_trainer("dapo", 0.0, 0.2, 0.2, 10, p_trl[half], accum=2)
        inp = _grpo_inputs(old[half], ref[half], mask[half], adv[half], 0.0)
        inp["num_items_in_batch"] = mask.sum()  # spans the generation batch
        total = total + tr._compute_loss(None, inp)
    outs = [get_rl_loss("dapo")(TokenLogps(policy[h], mask[h], adv[h], old=old[h]))
            for h in (slice(0, 4), slice(4, 8))]
    from prefkit.losses import reduce_outputs
    assert math.isclose(float(reduce_outputs(outs)), float(total), rel_tol=1e-6)


def test_rloo_loss_equals_trl() -> None:
    policy, old, _, mask, adv = _inputs(5)
    old = policy + 0.05 * torch.randn(policy.shape, generator=torch.Generator().manual_seed(9))
    p_trl = policy.clone().requires_grad_(True)
    tr = object.__new__(RLOOTrainer)
    tr.epsilon_low, tr.epsilon_high = 0.2, 0.28
    tr.aux_loss_enabled = False
    tr.model = torch.nn.Linear(1, 1)
    tr.accelerator = Accelerator(cpu=True)
    from collections import defaultdict
    tr._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    tr._get_per_token_logps_and_entropies = lambda *a, **k: (p_trl, torch.zeros_like(p_trl),
                                                             None)
    b, t = mask.shape
    old_logps = (old * mask).sum(1)
    want = tr._compute_loss(None, {
        "prompt_ids": torch.zeros(b, 2, dtype=torch.long),
        "prompt_mask": torch.ones(b, 2, dtype=torch.long),
        "completion_ids": torch.zeros(b, t, dtype=torch.long), "completion_mask": mask,
        "advantages": adv, "old_logps": old_logps})
    want.backward()
    p = policy.clone().requires_grad_(True)
    out = get_rl_loss("rloo")(TokenLogps(p, mask, adv, old=old), epsilon_high=0.28)
    got = out.reduce()
    got.backward()
    assert math.isclose(float(got), float(want), rel_tol=1e-6, abs_tol=1e-7)
    torch.testing.assert_close(p.grad, p_trl.grad, rtol=1e-5, atol=1e-7)
    assert math.isclose(float(((out.diagnostics["clipped_low"] + out.diagnostics[
        "clipped_high"]) > 0).float().mean()), tr._metrics["train"]["clip_ratio/region_mean"][0])


# -- advantages: TRL's formulas, written from its source ------------------------------------------
def _trl_group_advantages(rewards: torch.Tensor, g: int, scale: str) -> torch.Tensor:
    # trl/trainer/grpo_trainer.py 2763-2810 (TRL 1.16.0), sum_then_normalize, one process
    mean = torch.nanmean(rewards.view(-1, g), dim=1).repeat_interleave(g, dim=0)
    if scale in ("group", "none"):
        std = trl_nanstd(rewards.view(-1, g), dim=1).repeat_interleave(g, dim=0)
    else:
        std = trl_nanstd(rewards).expand_as(rewards)
    adv = rewards - mean
    if scale != "none":
        adv = adv / (std + 1e-4)
    return torch.nan_to_num(adv, nan=0.0)


def _trl_rloo_advantages(rewards: torch.Tensor, g: int, normalize: bool) -> torch.Tensor:
    # trl/trainer/rloo_trainer.py 1676-1699 (TRL 1.16.0)
    grouped = rewards.view(-1, g)
    counts = (~torch.isnan(grouped)).sum(dim=1, keepdim=True)
    total = torch.nansum(grouped, dim=1, keepdim=True)
    adv = rewards - ((total - grouped) / (counts - 1)).view(-1)
    if normalize:
        adv = (adv - torch.nanmean(adv)) / (trl_nanstd(adv) + 1e-4)
    return torch.nan_to_num(adv, nan=0.0)


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_group_advantages_equal_trl(scale: str) -> None:
    r = torch.randn(24, generator=torch.Generator().manual_seed(0))
    r[5] = float("nan")  # unscorable
    r[8:12] = 1.0  # a group with zero std
    torch.testing.assert_close(group_advantages(r, 4, scale=scale),
                               _trl_group_advantages(r, 4, scale), rtol=0, atol=0)
    torch.testing.assert_close(nanstd(r), trl_nanstd(r), rtol=0, atol=0)


@pytest.mark.parametrize("normalize", [False, True])
def test_rloo_advantages_equal_trl(normalize: bool) -> None:
    r = torch.randn(12, generator=torch.Generator().manual_seed(1))
    r[2] = float("nan")
    torch.testing.assert_close(rloo_advantages(r, 4, normalize=normalize),
                               _trl_rloo_advantages(r, 4, normalize), rtol=0, atol=0)


def test_rloo_kl_in_reward_is_trls_first_order_sum() -> None:
    # rloo_trainer.py 1663-1673: rewards - beta * sum_t mask (old - ref)
    _, old, ref, mask, _ = _inputs(2)
    r = torch.ones(6)
    got = kl_penalised_rewards(r, old, ref, mask, beta=0.05)
    torch.testing.assert_close(got, r - 0.05 * ((old - ref) * mask).sum(-1))


# -- hand cases ---------------------------------------------------------------------------------
def test_hand_cases() -> None:
    # group of two, rewards 1 and 0: mean 0.5, unbiased std sqrt(0.5)
    a = group_advantages(torch.tensor([1.0, 0.0]), 2)
    assert math.isclose(float(a[0]), 0.5 / (math.sqrt(0.5) + 1e-4), rel_tol=1e-6)
    # leave-one-out: 3 samples 1,0,0 -> 1 - 0, 0 - 0.5, 0 - 0.5
    assert rloo_advantages(torch.tensor([1.0, 0.0, 0.0]), 3).tolist() == [1.0, -0.5, -0.5]
    # on-policy (ratio 1): grpo loss = -mean over completions of A (token means of A)
    p = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    out = clipped_token_loss(TokenLogps(p, mask, torch.tensor([1.0, -2.0])), aggregation="grpo")
    assert math.isclose(float(out.reduce()), -(1.0 - 2.0) / 2, rel_tol=1e-6)
    out = clipped_token_loss(TokenLogps(p, mask, torch.tensor([1.0, -2.0])), aggregation="dapo")
    assert math.isclose(float(out.reduce()), -(2 * 1.0 - 3 * 2.0) / 5, rel_tol=1e-6)
    out = clipped_token_loss(TokenLogps(p, mask, torch.tensor([1.0, -2.0])),
                             aggregation="dr_grpo", max_tokens=4)
    assert math.isclose(float(out.reduce()), -(2 * 1.0 - 3 * 2.0) / 8, rel_tol=1e-6)
    # the gradient of an on-policy token is -A / normaliser (d rho / d logp = 1)
    out.reduce().backward()
    assert p.grad.tolist() == [[-1 / 8, -1 / 8, 0.0], [2 / 8, 2 / 8, 2 / 8]]
    # clipping: ratio e^1 > 1.2 with A > 0 is clipped, so no gradient flows
    q = torch.ones(1, 2, requires_grad=True)
    out = clipped_token_loss(TokenLogps(q, torch.ones(1, 2), torch.tensor([1.0]),
                                        old=torch.zeros(1, 2)))
    out.reduce().backward()
    assert q.grad.abs().sum() == 0 and out.diagnostics["clipped_high"].item() == 2
    assert math.isclose(float(out.reduce()), -1.2, rel_tol=1e-6)
    # k3 is zero at the reference and positive elsewhere
    assert float(k3_kl(torch.zeros(3), torch.zeros(3)).abs().max()) == 0.0
    assert bool((k3_kl(torch.tensor([0.0, -1.0]), torch.tensor([-1.0, 0.0])) > 0).all())


def test_reinforce_pp_hand_case() -> None:
    # two completions of lengths 2 and 1, rewards 1 and 0, beta = 0: returns [1, 1] and [0]
    # -> whitened over the 3 tokens: mean 2/3, unbiased var 1/3
    mask = torch.tensor([[1, 1], [1, 0]])
    adv = reinforce_pp_advantages(torch.tensor([1.0, 0.0]), mask)
    s = math.sqrt(1 / 3 + 1e-8)
    torch.testing.assert_close(adv, torch.tensor([[1 / 3 / s, 1 / 3 / s], [-2 / 3 / s, 0.0]]))
    # with a KL penalty: reward -beta*kl per token, summed to the end
    kl = torch.tensor([[0.5, 1.0], [2.0, 0.0]])
    raw = torch.tensor([[1 - 0.1 * 1.5, 1 - 0.1 * 1.0], [-0.2, 0.0]])
    got = reinforce_pp_advantages(torch.tensor([1.0, 0.0]), mask, token_kl=kl, beta=0.1)
    torch.testing.assert_close(got, masked_whiten(raw, mask))
    # the whole batch's tokens have mean 0 (global batch normalisation)
    assert abs(float((got * mask).sum())) < 1e-5


def test_registry_follows_the_shared_contract() -> None:
    assert {"grpo", "bnpo", "dr_grpo", "dapo", "rloo", "reinforce_pp"} <= set(RL_LOSSES)
    for spec in RL_LOSSES.values():
        assert isinstance(spec, RLLoss) and isinstance(spec, LossSpec)
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        get_rl_loss("dapo").resolve(bta=0.1)
    with pytest.raises(ValueError, match="epsilon"):
        get_rl_loss("grpo").resolve(epsilon=-0.1)
    with pytest.raises(ValueError, match="unknown RL loss"):
        get_rl_loss("ppo2")
    with pytest.raises(ValueError, match="reference"):
        get_rl_loss("dapo")(TokenLogps(torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1)),
                            beta=0.1)
    out = get_rl_loss("dapo")(TokenLogps(torch.zeros(1, 2), torch.ones(1, 2), torch.ones(1)))
    assert isinstance(out, LossOutput) and out.losses.shape == (1, 2)


# -- PPO: GAE, per-token rewards and the clipped value loss, by hand ---------------------------------
def test_gae_by_hand() -> None:
    from prefkit.rl.advantages import gae, ppo_token_rewards

    # one completion of 3 tokens, reward 1 at the end, values 0.5, 0.2, 0.4; gamma 0.9, lam 0.8
    r = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    v = torch.tensor([[0.5, 0.2, 0.4, 9.9]])  # the last is padding: ignored
    m = torch.tensor([[1, 1, 1, 0]])
    adv, ret = gae(r, v, m, gamma=0.9, lam=0.8)
    d2 = 1.0 - 0.4  # no next value past the end
    d1 = 0.0 + 0.9 * 0.4 - 0.2
    d0 = 0.0 + 0.9 * 0.2 - 0.5
    a2, a1 = d2, d1 + 0.72 * d2
    a0 = d0 + 0.72 * a1
    torch.testing.assert_close(adv, torch.tensor([[a0, a1, a2, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[a0 + 0.5, a1 + 0.2, a2 + 0.4, 0.0]]))
    # gamma = lam = 1 and zero values: every token's advantage is the final reward
    adv, _ = gae(r, torch.zeros_like(r), m, gamma=1.0, lam=1.0)
    assert adv.tolist() == [[1.0, 1.0, 1.0, 0.0]]
    # per-token rewards: -beta (old - ref) on each token, the score added at the last
    tr = ppo_token_rewards(torch.tensor([2.0]), m, old=torch.tensor([[-1.0, -1.0, -1.0, 0.0]]),
                           reference=torch.tensor([[-2.0, -1.0, -0.5, 0.0]]), beta=0.1)
    torch.testing.assert_close(tr, torch.tensor([[-0.1, 0.0, 0.05 + 2.0, 0.0]]))


def test_ppo_value_loss_by_hand() -> None:
    from prefkit.rl.losses import ppo_loss

    p = torch.zeros(1, 2, requires_grad=True)
    values = torch.tensor([[1.0, 0.1]], requires_grad=True)
    old_v = torch.tensor([[0.5, 0.0]])
    ret = torch.tensor([[0.0, 1.0]])
    x = TokenLogps(p, torch.ones(1, 2), torch.tensor([[1.0, -1.0]]), values=values,
                   old_values=old_v, returns=ret)
    out = ppo_loss(x, value_clip=0.2, vf_coef=0.5)
    # token 0: unclipped (1 - 0)^2 = 1, clipped (0.7 - 0)^2 = 0.49 -> 0.5 * 1
    # token 1: unclipped (0.1 - 1)^2 = 0.81, clipped (0.1 - 1)^2 (inside the clip) -> 0.405
    # policy on-policy: -A per token -> -1, +1; total = (-1 + 0.25) + (1 + 0.2025)
    assert math.isclose(float(out.reduce().detach()), ((-1 + 0.25) + (1 + 0.2025)) / 2,
                        rel_tol=1e-6)
    out.reduce().backward()
    # dL/dV = vf_coef * (V - R) on token 0 (the unclipped term is the max), / 2 tokens
    assert math.isclose(float(values.grad[0, 0]), 0.5 * 1.0 / 2, rel_tol=1e-6)
    # the value moved more than the clip on the clipped side: max picks the clipped term
    x2 = TokenLogps(torch.zeros(1, 1), torch.ones(1, 1), torch.tensor([[0.0]]),
                    values=torch.tensor([[2.0]], requires_grad=True),
                    old_values=torch.tensor([[0.0]]), returns=torch.tensor([[3.0]]))
    out2 = ppo_loss(x2, value_clip=0.2, vf_coef=1.0)
    # unclipped (2-3)^2 = 1; clipped (0.2-3)^2 = 7.84 -> 3.92, no gradient to V
    assert math.isclose(float(out2.reduce().detach()), 3.92, rel_tol=1e-6)
    assert out2.diagnostics["value_clipped"].item() == 1
    with pytest.raises(ValueError, match="value head"):
        ppo_loss(TokenLogps(p, torch.ones(1, 2), torch.ones(1, 2)))
