"""Pluralistic (PAL-style) reward model: structure, two-group data, few-shot new users."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from prefkit.reward.general import EmbeddingFitConfig
from prefkit.reward.pluralistic import (
    PALConfig,
    PluralisticRewardModel,
    adapt_new_user,
    fit_pluralistic,
    simulate_length_groups,
)

# Two groups x 6 users, 50 training + 40 held-out comparisons each, 4 noise features.
# Over 20 other seeds (data and init, both scores): PAL per-user held-out accuracy
# >= 0.881, one BT model <= 0.544, mean over 6 new users fitted from 10 comparisons
# >= 0.853 (annotator noise is 5%, so 0.95 is the ceiling).
PAL_MIN_ACCURACY = 0.85
BT_MAX_ACCURACY = 0.60
NEW_USER_MIN_ACCURACY = 0.80
N_TRAIN, N_TEST, NOISE_DIMS = 50, 40, 4
FIT = EmbeddingFitConfig(steps=300, batch_size=128, learning_rate=0.03)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _per_user_accuracy(
    model: PluralisticRewardModel, chosen, rejected, users, model_users=None
) -> float:
    """Mean over users of each user's share of comparisons predicted right."""
    ids = torch.as_tensor(users if model_users is None else model_users)
    with torch.no_grad():
        right = (model(torch.as_tensor(chosen), torch.as_tensor(rejected), ids) > 0).numpy()
    return float(np.mean([right[users == u].mean() for u in np.unique(users)]))


def _split(users: np.ndarray, n_train: int) -> np.ndarray:
    """Boolean mask of each user's comparisons after their first ``n_train``."""
    test = np.zeros(users.size, bool)
    for u in np.unique(users):
        test[np.flatnonzero(users == u)[n_train:]] = True
    return test


# -- structure --------------------------------------------------------------------------
def test_weights_on_simplex_and_ideal_points_are_mixtures() -> None:
    g = torch.Generator().manual_seed(0)
    m = PluralisticRewardModel(5, n_users=4, config=PALConfig(dim=3, n_prototypes=3), generator=g)
    with torch.no_grad():
        m.user_logits.normal_(0, 5, generator=g)
        w = m.user_weights(torch.arange(4))
        assert torch.all(w >= 0)
        torch.testing.assert_close(w.sum(-1), torch.ones(4))
        torch.testing.assert_close(m.ideal_points(torch.arange(4)), w @ m.prototypes)


def test_rewards_follow_the_formulas() -> None:
    """distance: r = -||z - a||^2; dot: r = <z, a>; logit = r(chosen) - r(rejected), and the
    distance logit is 2 * (dot logit) + ||z_rejected||^2 - ||z_chosen||^2."""
    g = torch.Generator().manual_seed(1)
    dist = PluralisticRewardModel(6, 3, PALConfig(dim=4, score="distance"), generator=g)
    dot = PluralisticRewardModel(6, 3, PALConfig(dim=4, score="dot"))
    dot.load_state_dict(dist.state_dict())
    x, y, u = torch.randn(9, 6, generator=g), torch.randn(9, 6, generator=g), torch.arange(9) % 3
    with torch.no_grad():
        zx, zy, a = dist.f(x), dist.f(y), dist.ideal_points(u)
        torch.testing.assert_close(dist.reward(x, u), -((zx - a) ** 2).sum(-1))
        torch.testing.assert_close(dot.reward(x, u), (zx * a).sum(-1))
        torch.testing.assert_close(dist(x, y, u), dist.reward(x, u) - dist.reward(y, u))
        expected = 2 * dot(x, y, u) + (zy**2).sum(-1) - (zx**2).sum(-1)
        torch.testing.assert_close(dist(x, y, u), expected, rtol=1e-5, atol=1e-5)


def test_one_prototype_is_a_single_bradley_terry_reward() -> None:
    g = torch.Generator().manual_seed(2)
    m = PluralisticRewardModel(5, n_users=3, config=PALConfig(n_prototypes=1), generator=g)
    x, y = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    with torch.no_grad():
        logits = [m(x, y, torch.full((4,), u)) for u in range(3)]
    assert torch.equal(logits[0], logits[1]) and torch.equal(logits[0], logits[2])


def test_bad_user_ids_are_refused() -> None:
    x = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="out of range"):
        fit_pluralistic(x, x, np.array([0, 1, 5]), n_users=2)
    with pytest.raises(ValueError, match=">= 0"):
        fit_pluralistic(x, x, np.array([0, -1, 1]))
    m = PluralisticRewardModel(2, 2)
    with pytest.raises(ValueError, match="user id"):
        m(torch.zeros(1, 2), torch.zeros(1, 2), None)


# -- learning ---------------------------------------------------------------------------
@pytest.mark.parametrize("score", ["distance", "dot"])
def test_pal_serves_both_groups_where_one_reward_cannot(score: str) -> None:
    rng = np.random.default_rng(11)
    chosen, rejected, users, group = simulate_length_groups(
        6, N_TRAIN + N_TEST, rng=rng, noise_dims=NOISE_DIMS
    )
    test = _split(users, N_TRAIN)
    tr = (chosen[~test], rejected[~test])
    cfg = PALConfig(dim=8, score=score)

    pal, history = fit_pluralistic(
        *tr, users[~test], model_config=cfg, config=FIT, generator=torch.Generator().manual_seed(0)
    )
    one, _ = fit_pluralistic(
        *tr,
        np.zeros((~test).sum(), np.int64),
        model_config=cfg,
        config=FIT,
        generator=torch.Generator().manual_seed(0),
    )

    assert np.mean(history[-20:]) < 0.6 * history[0]
    pal_acc = _per_user_accuracy(pal, chosen[test], rejected[test], users[test])
    bt_acc = _per_user_accuracy(
        one, chosen[test], rejected[test], users[test], model_users=np.zeros(test.sum(), np.int64)
    )
    assert pal_acc >= PAL_MIN_ACCURACY, pal_acc
    assert bt_acc <= BT_MAX_ACCURACY, bt_acc
    # the groups separate on the simplex: every user of one group puts more weight on
    # prototype 0 than every user of the other (gap >= 0.197 over 20 seeds)
    w = pal.user_weights(torch.arange(12))[:, 0].detach().numpy()
    gap = max(w[group == 0].min() - w[group == 1].max(), w[group == 1].min() - w[group == 0].max())
    assert gap > 0.1, w


@pytest.mark.parametrize("score", ["distance", "dot"])
def test_new_user_from_ten_comparisons(score: str) -> None:
    rng = np.random.default_rng(12)
    chosen, rejected, users, _ = simulate_length_groups(6, N_TRAIN, rng=rng, noise_dims=NOISE_DIMS)
    model, _ = fit_pluralistic(
        chosen,
        rejected,
        users,
        model_config=PALConfig(dim=8, score=score),
        config=FIT,
        generator=torch.Generator().manual_seed(0),
    )
    frozen = {k: v.clone() for k, v in model.state_dict().items()}

    new_c, new_r, new_u, _ = simulate_length_groups(3, 60, rng=rng, noise_dims=NOISE_DIMS)
    accuracies = []
    for u in range(6):
        rows = np.flatnonzero(new_u == u)
        uid, history = adapt_new_user(model, new_c[rows[:10]], new_r[rows[:10]])
        assert uid == 12 + u and history[-1] < history[0]
        accuracies.append(
            _per_user_accuracy(model, new_c[rows[10:]], new_r[rows[10:]], np.full(50, uid))
        )
    assert np.mean(accuracies) >= NEW_USER_MIN_ACCURACY, accuracies

    # everything else stayed frozen: same map, same prototypes, same old users
    state = model.state_dict()
    for k, v in frozen.items():
        assert torch.equal(state[k][: v.shape[0]], v), k
    assert model.n_users == 18


def test_adapt_on_separable_data_stays_finite_and_deterministic() -> None:
    g = torch.Generator().manual_seed(3)
    m = PluralisticRewardModel(3, n_users=2, config=PALConfig(dim=2), generator=g)
    x = torch.randn(10, 3, generator=g)
    y = x + 5.0  # perfectly separable along one direction
    uid1, h1 = adapt_new_user(m, x, y, steps=500)
    uid2, h2 = adapt_new_user(m, x, y, steps=500)
    assert h1 == h2 and uid2 == uid1 + 1
    assert torch.isfinite(m.user_logits).all()
    assert torch.equal(m.user_logits[uid1], m.user_logits[uid2])


def test_pair_loss_is_the_registry_entry_and_the_old_logistic_loss_bit_for_bit() -> None:
    """fit_pluralistic (train_pairwise) minimises PluralisticRewardModel.pair_loss, the
    pluralistic entry of REWARD_LOSSES over per-user rewards; its mean equals
    -log sigmoid(model(...)) (the loss trained before the registry), bit for bit."""
    import torch.nn.functional as F

    from prefkit.reward.losses import REWARD_LOSSES

    g = torch.Generator().manual_seed(3)
    for score in ("distance", "dot"):
        m = PluralisticRewardModel(5, n_users=3, config=PALConfig(dim=4, score=score),
                                   generator=g)
        a, b = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
        users = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
        out = m.pair_loss(a, b, users)
        assert torch.equal(out.reduce(), -F.logsigmoid(m(a, b, users)).mean())
        want = REWARD_LOSSES["pluralistic"](m.reward(a, users), m.reward(b, users))
        assert torch.equal(out.losses, want.losses) and torch.equal(out.margins, want.margins)
    with pytest.raises(ValueError, match="user id"):
        m.pair_loss(a, b, None)
