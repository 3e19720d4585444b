"""General Preference Model: skew-symmetry, gradients, numerics, cyclic preferences."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from prefkit.reward.general import (
    EmbeddingFitConfig,
    GeneralPreferenceModel,
    GPMConfig,
    fit_general_preference,
    general_preference_loss,
    gpm_logit,
    make_map,
    preference_probability,
    simulate_cyclic_preferences,
    train_pairwise,
)

#: Held-out accuracy GPM must reach on rock-paper-scissors data (20 seeds gave >= 0.992).
GPM_MIN_ACCURACY = 0.95
#: A scalar reward cannot beat a coin on a balanced cycle (20 seeds gave <= 0.522).
BT_MAX_ACCURACY = 0.60


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models: one thread is faster and immune to a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _block_matrix(lam: Tensor) -> Tensor:
    """``R^> = diag(lam_1 J, ..., lam_k J)``, ``J = [[0, -1], [1, 0]]``, built densely."""
    j = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=lam.dtype)
    return torch.block_diag(*[lam_l * j for lam_l in lam])


class ScalarReward(nn.Module):
    """Bradley-Terry baseline: one number per response, same map family as the GPM head."""

    def __init__(self, in_dim: int, hidden: int, generator: torch.Generator) -> None:
        super().__init__()
        self.f = make_map(in_dim, hidden, 1, generator)

    def forward(self, chosen: Tensor, rejected: Tensor, context: Tensor | None = None) -> Tensor:
        return (self.f(chosen) - self.f(rejected)).squeeze(-1)


def _accuracy(model: nn.Module, chosen: np.ndarray, rejected: np.ndarray, ctx=None) -> float:
    with torch.no_grad():
        c = None if ctx is None else torch.as_tensor(ctx)
        logits = model(torch.as_tensor(chosen), torch.as_tensor(rejected), c)
    return float((logits > 0).float().mean())


# -- the pure score ---------------------------------------------------------------------
def test_gpm_logit_by_hand() -> None:
    # one block: <R v1, v2> = v1[0] v2[1] - v1[1] v2[0] = 1*1 - 0*0 = 1
    assert float(gpm_logit(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))) == 1.0
    # two blocks with eigenvalues (2, 3): 2 * (1*4 - 2*3) + 3 * (5*8 - 6*7) = -4 - 6 = -10
    v1, v2 = torch.tensor([1.0, 2.0, 5.0, 6.0]), torch.tensor([3.0, 4.0, 7.0, 8.0])
    assert float(gpm_logit(v1, v2, torch.tensor([2.0, 3.0]))) == -10.0


def test_gpm_logit_equals_dense_block_matrix_and_numpy() -> None:
    g = torch.Generator().manual_seed(1)
    v1, v2 = (
        torch.randn(6, 8, generator=g, dtype=torch.float64),
        torch.randn(6, 8, generator=g, dtype=torch.float64),
    )
    lam = torch.rand(4, generator=g, dtype=torch.float64) * 3
    dense = torch.einsum("ni,ij,nj->n", v2, _block_matrix(lam), v1)  # <R v1, v2>
    torch.testing.assert_close(gpm_logit(v1, v2, lam), dense, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        gpm_logit(v1.numpy(), v2.numpy(), lam.numpy()), dense.numpy(), rtol=1e-12
    )
    with pytest.raises(ValueError, match="even"):
        gpm_logit(torch.zeros(3), torch.zeros(3))


def test_rock_paper_scissors_on_a_circle_is_cyclic() -> None:
    """Three points 120 degrees apart (rock, scissors, paper): each beats the next one
    counter-clockwise with the same score sin(120 deg), and paper beats rock."""
    angles = torch.tensor([0.0, 2.0, 4.0]) * torch.pi / 3
    v = torch.stack([angles.cos(), angles.sin()], -1)  # (3, 2)
    logits = gpm_logit(v, v.roll(-1, 0))  # rock>scissors>paper>rock
    torch.testing.assert_close(logits, torch.full((3,), np.sin(2 * np.pi / 3), dtype=torch.float32))


def test_gradient_matches_finite_differences() -> None:
    g = torch.Generator().manual_seed(2)
    args = (
        torch.randn(5, 6, generator=g, dtype=torch.float64, requires_grad=True),
        torch.randn(5, 6, generator=g, dtype=torch.float64, requires_grad=True),
        torch.rand(5, 3, generator=g, dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(gpm_logit, args, eps=1e-6, atol=1e-8)
    # closed form: d<R v1, v2>/dv2 = R v1 and d/dv1 = R^T v2 = -R v2
    v1, v2 = (a.detach().clone().requires_grad_() for a in args[:2])
    gpm_logit(v1, v2).sum().backward()
    r = _block_matrix(torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(v2.grad, v1.detach() @ r.T)
    torch.testing.assert_close(v1.grad, -(v2.detach() @ r.T))


# -- skew-symmetry of the model ---------------------------------------------------------
@pytest.mark.parametrize("hidden,prompt_dim", [(0, None), (16, 5)])
def test_model_is_exactly_skew_symmetric(hidden: int, prompt_dim: int | None) -> None:
    g = torch.Generator().manual_seed(3)
    model = GeneralPreferenceModel(
        12, GPMConfig(dim=6, hidden=hidden), prompt_dim=prompt_dim, generator=g
    )
    a, b = torch.randn(200, 12, generator=g) * 3, torch.randn(200, 12, generator=g) * 3
    p = None if prompt_dim is None else torch.randn(200, prompt_dim, generator=g)
    with torch.no_grad():
        p_ab, p_ba, p_aa = (
            model.probability(a, b, p),
            model.probability(b, a, p),
            model.probability(a, a, p),
        )
        assert torch.equal(model(a, b, p), -model(b, a, p))
        assert torch.all(p_ab + p_ba == 1.0)
        assert torch.all(p_aa == 0.5)
        s = model.logit_matrix(a[:7], None if p is None else p[0])
        assert torch.equal(s, -s.T) and torch.all(s.diagonal() == 0)
        torch.testing.assert_close(s[0, 1], model(a[:1], a[1:2], None if p is None else p[:1])[0])


def test_preference_probability_sums_to_one_where_sigmoid_does_not() -> None:
    z = torch.randn(100_000, generator=torch.Generator().manual_seed(4)) * 5
    assert torch.all(preference_probability(z) + preference_probability(-z) == 1.0)
    torch.testing.assert_close(preference_probability(z), torch.sigmoid(z))


def test_eigenvalue_gate_is_nonnegative_and_sums_to_k() -> None:
    g = torch.Generator().manual_seed(5)
    model = GeneralPreferenceModel(4, GPMConfig(dim=6), prompt_dim=3, generator=g)
    lam = model.eigenvalues(torch.randn(10, 3, generator=g) * 10)
    assert lam is not None and lam.shape == (10, 3) and torch.all(lam >= 0)
    torch.testing.assert_close(lam.sum(-1), torch.full((10,), 3.0))
    with pytest.raises(ValueError, match="prompt"):
        model(torch.zeros(1, 4), torch.zeros(1, 4))


# -- numerics ---------------------------------------------------------------------------
def test_no_nan_at_large_inputs() -> None:
    g = torch.Generator().manual_seed(6)
    big = torch.randn(2, 4, generator=g, dtype=torch.float64) * 1e150
    assert torch.isfinite(gpm_logit(big, big.flip(0))).all()
    # normalised head on huge embeddings: finite logits and gradients (float32 max ~3e38)
    model = GeneralPreferenceModel(8, generator=g)
    a, b = torch.randn(16, 8, generator=g) * 1e30, torch.randn(16, 8, generator=g) * 1e30
    losses, diag = general_preference_loss(model.embed(a), model.embed(b), tau=0.1)
    losses.mean().backward()
    assert torch.isfinite(losses).all() and torch.isfinite(diag["logits"]).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    # unnormalised embeddings with logits of +-1e8: loss 0 or 1e8 (never inf/nan), finite grads
    v1 = torch.tensor([[1e4, 0.0], [0.0, 1e4]], requires_grad=True)
    v2 = torch.tensor([[0.0, 1e4], [1e4, 0.0]], requires_grad=True)
    losses, _ = general_preference_loss(v1, v2, tau=1.0, label_smoothing=0.1)
    losses.sum().backward()
    assert (
        torch.isfinite(losses).all()
        and torch.isfinite(v1.grad).all()
        and torch.isfinite(v2.grad).all()
    )


def test_empty_or_mismatched_data_is_refused() -> None:
    with pytest.raises(ValueError, match="pairs"):
        fit_general_preference(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(ValueError, match="pairs"):
        fit_general_preference(np.zeros((4, 3)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="even"):
        GPMConfig(dim=3)


# -- learning ---------------------------------------------------------------------------
def test_gpm_learns_rock_paper_scissors_where_bradley_terry_is_at_chance() -> None:
    rng = np.random.default_rng(20240601)
    train = simulate_cyclic_preferences(1000, rng=rng, n_classes=3)
    test = simulate_cyclic_preferences(2000, rng=rng, n_classes=3)
    cfg = EmbeddingFitConfig(steps=300, batch_size=128, learning_rate=1e-2)

    gpm, history = fit_general_preference(
        *train, config=cfg, generator=torch.Generator().manual_seed(0)
    )
    g = torch.Generator().manual_seed(0)
    bt = ScalarReward(train[0].shape[1], 0, g)
    bt_history = train_pairwise(bt, *train, config=cfg, generator=g)

    assert np.mean(history[-20:]) < 0.5 * history[0]  # the loss moved the way it must
    assert _accuracy(gpm, *test) >= GPM_MIN_ACCURACY
    assert _accuracy(bt, *test) < BT_MAX_ACCURACY
    assert np.mean(bt_history[-20:]) > 0.6  # BT cannot fit a cycle: log 2 = 0.693 is its floor


def test_eigenvalue_gate_learns_prompt_dependent_direction() -> None:
    """Under prompt type 1 the cycle runs backwards: only the gate can tell the two apart."""
    rng = np.random.default_rng(7)

    def data(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c, r = simulate_cyclic_preferences(n, rng=rng)
        kind = rng.integers(0, 2, n)
        prompt = (np.eye(2)[kind] + 0.1 * rng.standard_normal((n, 2))).astype(np.float32)
        back = (kind == 1)[:, None]
        return np.where(back, r, c), np.where(back, c, r), prompt

    train, test = data(1000), data(1000)
    cfg = EmbeddingFitConfig(steps=300, batch_size=128, learning_rate=0.03)
    gated, _ = fit_general_preference(
        train[0], train[1], prompt=train[2], config=cfg, generator=torch.Generator().manual_seed(0)
    )
    plain, _ = fit_general_preference(
        train[0], train[1], config=cfg, generator=torch.Generator().manual_seed(0)
    )
    assert _accuracy(gated, *test) >= GPM_MIN_ACCURACY
    assert _accuracy(plain, test[0], test[1]) < BT_MAX_ACCURACY


def test_training_is_reproducible_and_accepts_numpy_or_torch() -> None:
    rng = np.random.default_rng(8)
    chosen, rejected = simulate_cyclic_preferences(300, rng=rng)
    cfg = EmbeddingFitConfig(steps=30, batch_size=64)
    m1, h1 = fit_general_preference(
        chosen, rejected, config=cfg, generator=torch.Generator().manual_seed(3)
    )
    m2, h2 = fit_general_preference(
        torch.from_numpy(chosen),
        torch.from_numpy(rejected),
        config=cfg,
        generator=torch.Generator().manual_seed(3),
    )
    _, h3 = fit_general_preference(
        chosen, rejected, config=cfg, generator=torch.Generator().manual_seed(4)
    )
    assert h1 == h2 and h1 != h3
    for p1, p2 in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.equal(p1, p2)
    fresh = GeneralPreferenceModel(chosen.shape[1], generator=torch.Generator().manual_seed(3))
    assert not torch.equal(fresh.head.weight, m1.head.weight)  # the parameters changed
    assert not m1.training  # returned in eval mode
    # float64 arrays train a float32 head (inputs take the parameters' dtype)
    bt = ScalarReward(chosen.shape[1], 0, torch.Generator().manual_seed(0))
    h = train_pairwise(bt, chosen.astype(np.float64), rejected.astype(np.float64), config=cfg)
    assert len(h) == cfg.steps and bt.f.weight.dtype == torch.float32


# -- the registry's loss is what trains -----------------------------------------------------
def test_pair_loss_is_the_registry_entry_and_the_old_logistic_loss_bit_for_bit() -> None:
    """train_pairwise minimises GeneralPreferenceModel.pair_loss, the general_preference
    entry of REWARD_LOSSES; its mean equals -log sigmoid(model(...)) (the loss trained
    before the registry), bit for bit, gated or not, with label smoothing or not."""
    import torch.nn.functional as F

    from prefkit.reward.losses import REWARD_LOSSES

    g = torch.Generator().manual_seed(2)
    a, b, p = (torch.randn(7, 6, generator=g) for _ in range(3))
    for model, ctx in [(GeneralPreferenceModel(6, generator=g), None),
                       (GeneralPreferenceModel(6, prompt_dim=6, generator=g), p)]:
        out = model.pair_loss(a, b, ctx)
        logits = model(a, b, ctx)
        assert torch.equal(out.reduce(), -F.logsigmoid(logits).mean())
        assert torch.equal(out.margins, logits.detach())
        eps = 0.1
        smooth = model.pair_loss(a, b, ctx, label_smoothing=eps).losses
        old = -(1.0 - eps) * F.logsigmoid(logits) - eps * F.logsigmoid(-logits)
        assert torch.equal(smooth, old)
        lam = model.eigenvalues(ctx)
        direct = REWARD_LOSSES["general_preference"](
            model.embed(a), model.embed(b), None if lam is None else {"eigenvalues": lam},
            tau=model.config.tau)
        assert torch.equal(direct.losses, out.losses)
