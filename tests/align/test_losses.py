"""Alignment losses: TRL 1.16's own loss code on identical inputs, hand-computed cases for
the losses only a paper defines, the registry's contract, gradients and edge numerics.

TRL is called without building a trainer: a stand-in ``self`` carries the attributes each
method reads, and a stand-in model returns fixed per-token log-probabilities, so TRL's
own arithmetic runs on exactly the numbers prefkit gets."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the TRL reference imports huggingface_hub
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # CPO and ORPO live in trl.experimental

import dataclasses  # noqa: E402
import math  # noqa: E402
import types  # noqa: E402
from collections import defaultdict  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from prefkit.align.losses import (  # noqa: E402
    ALIASES,
    ALIGN_LOSSES,
    AlignLoss,
    combine_losses,
    get_align_loss,
    sft_term,
)
from prefkit.align.types import LossOutput, SequenceLogps  # noqa: E402
from prefkit.choice.torch_pairwise import log_plackett_luce  # noqa: E402

TRL_TOL = 1e-6  # the issue's bar: |prefkit - TRL| <= 1e-6 * max(1, |TRL|)
TIGHT = 1e-12  # float64 against a hand computation
SEEDS = (0, 1, 2)
DTYPES = (torch.float64, torch.float32)
CANONICAL = sorted({spec.name for spec in ALIGN_LOSSES.values()})


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tensors here are tiny: one intra-op thread avoids thread start-up and contention on
    a shared machine (with two busy cores a 12-element op took 8 ms, not 2 us)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def close(got: float, want: float, tol: float = TRL_TOL) -> bool:
    return abs(got - want) <= tol * max(1.0, abs(want))


def _assert_elementwise(got: torch.Tensor, want: torch.Tensor) -> None:
    """Elementwise ``close``; ``-inf == -inf`` counts as equal."""
    assert got.shape == want.shape
    same = got == want
    near = (got - want).abs() <= TRL_TOL * want.abs().clamp_min(1.0)
    assert bool((same | near).all()), (got - want).abs().max()


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x > -30 else x - math.log1p(math.exp(x))


def pairs(policy: list[list[float]], reference: list[list[float]] | None = None,
          lengths: list[list[float]] | None = None, dtype: torch.dtype = torch.float64,
          **extra: torch.Tensor) -> SequenceLogps:
    p = torch.tensor(policy, dtype=dtype)
    return SequenceLogps(
        policy=p, reference=None if reference is None else torch.tensor(reference, dtype=dtype),
        lengths=torch.ones_like(p) if lengths is None else torch.tensor(lengths, dtype=dtype),
        **extra)


# -- random token-level batches, as TRL's DPOTrainer sees them ----------------------------
@dataclass
class TokenBatch:
    """``B`` pairs of completions; TRL's layout: rows ``[chosen..., rejected...]``."""

    tokens: torch.Tensor  # (2B, T-1) per-token log-probs, 0 outside the completion
    mask: torch.Tensor  # (2B, T) completion mask (prompt and padding 0)
    reference: torch.Tensor  # (B, 2) summed reference log-probs

    @property
    def b(self) -> int:
        return self.reference.shape[0]

    def logps(self) -> SequenceLogps:
        sums = self.tokens.sum(dim=1)  # the same reduction TRL applies
        lengths = self.mask.sum(dim=1).to(self.tokens.dtype)
        return SequenceLogps(policy=torch.stack(sums.chunk(2), dim=1),
                             reference=self.reference.clone(),
                             lengths=torch.stack(lengths.chunk(2), dim=1))


def token_batch(seed: int, dtype: torch.dtype, *, b: int = 12, t: int = 10,
                extremes: bool = True, equal_lengths: bool = False) -> TokenBatch:
    """Random completions of 1..8 tokens after a 1-2 token prompt. Rows 0-1 are extreme
    (log-probs ~ -30 a token, log-ratio margins ~ +-800, i.e. beta d ~ +-80), row 2 has
    policy = reference (all log-ratios 0), row 3 equal log-ratios (d = 0 exactly)."""
    g = torch.Generator().manual_seed(seed)
    prompt = torch.randint(1, 3, (2 * b,), generator=g)
    length = torch.randint(1, t - 2, (2 * b,), generator=g)
    if equal_lengths:
        prompt, length = torch.ones_like(prompt), torch.full_like(length, 5)
    pos = torch.arange(t)
    mask = ((pos >= prompt[:, None]) & (pos < (prompt + length)[:, None])).long()  # (2B, T)
    scale = torch.full((2 * b, 1), 3.0, dtype=torch.float64)
    if extremes:
        scale[[0, 1, b, b + 1]] = 30.0
    raw = -torch.rand(2 * b, t - 1, generator=g, dtype=torch.float64) * scale
    tokens = torch.where(mask[:, 1:].bool(), raw, torch.zeros_like(raw)).to(dtype)
    policy = torch.stack(tokens.sum(dim=1).chunk(2), dim=1)  # (B, 2)
    noise = 4.0 * torch.randn(b, 2, generator=g, dtype=torch.float64).to(dtype)
    reference = policy - noise
    reference[2] = policy[2]
    reference[3] = policy[3] - 1.5
    if extremes:
        reference[0] = policy[0] + torch.tensor([-400.0, 400.0], dtype=dtype)
        reference[1] = policy[1] + torch.tensor([400.0, -400.0], dtype=dtype)
    return TokenBatch(tokens, mask, reference)


def _metrics() -> dict[str, defaultdict[str, list[float]]]:
    return {"train": defaultdict(list), "eval": defaultdict(list)}


def _accelerator(gathered: list[torch.Tensor] | None = None) -> SimpleNamespace:
    """A one-process accelerator; ``gathered`` records what TRL passes to ``gather`` (its
    per-example chosen and rejected rewards come first)."""
    def gather(x: torch.Tensor) -> torch.Tensor:
        if gathered is not None:
            gathered.append(x)
        return x

    return SimpleNamespace(device=torch.device("cpu"), gather=gather,
                           gather_for_metrics=lambda x: x)


def trl_dpo(batch: TokenBatch, loss_type: str | list[str], *, beta: float,
            label_smoothing: float = 0.0, discopop_tau: float = 0.05,
            loss_weights: list[float] | None = None, f_divergence_type: str = "reverse_kl",
            f_alpha_divergence_coef: float = 0.5) -> tuple[float, torch.Tensor]:
    """TRL's ``DPOTrainer._compute_loss`` with precomputed reference log-probs: the batch
    loss and TRL's per-example (chosen, rejected) rewards, ``(B, 2)``."""
    dpo = pytest.importorskip("trl.trainer.dpo_trainer")
    loss_types = [loss_type] if isinstance(loss_type, str) else loss_type
    zeros = torch.zeros_like(batch.tokens)
    outputs = SimpleNamespace(log_probs=batch.tokens, entropy=zeros, mean_logits=zeros,
                              is_top1=zeros.bool())
    gathered: list[torch.Tensor] = []
    trainer = SimpleNamespace(
        model=SimpleNamespace(training=True), accelerator=_accelerator(gathered),
        aux_loss_enabled=False,
        ld_alpha=None, precompute_ref_logps=True, f_divergence_type=f_divergence_type,
        f_alpha_divergence_coef=f_alpha_divergence_coef,
        loss_types=loss_types, loss_weights=loss_weights or [1.0] * len(loss_types),
        beta=beta, label_smoothing=label_smoothing, use_weighting=False,
        args=SimpleNamespace(discopop_tau=discopop_tau, gradient_checkpointing_kwargs=None),
        _metrics=_metrics(), _total_train_tokens=0, _tp_size=1)
    inputs = {
        "input_ids": torch.zeros_like(batch.mask), "attention_mask": torch.ones_like(batch.mask),
        "completion_mask": batch.mask, "ref_chosen_logps": batch.reference[:, 0].clone(),
        "ref_rejected_logps": batch.reference[:, 1].clone()}
    loss = dpo.DPOTrainer._compute_loss(trainer, lambda **kw: outputs, inputs, False)
    rewards = torch.stack(gathered[:2], dim=1)
    assert rewards.shape == (batch.b, 2)
    assert float(gathered[0].mean()) == trainer._metrics["train"]["rewards/chosen"][-1]
    return float(loss), rewards


# (prefkit name, prefkit hyper-parameters, TRL loss_type, TRL attributes)
DPO_CASES = [
    ("dpo", {"beta": 0.1}, "sigmoid", {}),
    ("dpo", {"beta": 0.5}, "sigmoid", {}),
    ("dpo_norm", {"beta": 0.5}, "sigmoid_norm", {}),
    ("robust_dpo", {"beta": 0.1, "label_smoothing": 0.2}, "robust", {"label_smoothing": 0.2}),
    ("robust_dpo", {"beta": 0.1, "label_smoothing": 0.0}, "robust", {"label_smoothing": 0.0}),
    ("ipo", {"beta": 0.1}, "ipo", {}),
    ("ipo", {"beta": 1.0}, "ipo", {}),
    ("hinge", {"beta": 0.1}, "hinge", {}),
    ("exo", {"beta": 0.1, "label_smoothing": 1e-3}, "exo_pair", {"label_smoothing": 1e-3}),
    ("exo", {"beta": 0.5, "label_smoothing": 0.2}, "exo_pair", {"label_smoothing": 0.2}),
    ("nca", {"beta": 0.1}, "nca_pair", {}),
    ("bco_pair", {"beta": 0.1}, "bco_pair", {}),
    ("sppo_hard", {"beta": 0.1}, "sppo_hard", {}),
    ("aot", {"beta": 0.1}, "aot", {}),
    ("aot", {"beta": 0.1, "label_smoothing": 0.1}, "aot", {"label_smoothing": 0.1}),
    ("aot_unpaired", {"beta": 0.1, "label_smoothing": 0.1}, "aot_unpaired",
     {"label_smoothing": 0.1}),
    ("apo_zero", {"beta": 0.1}, "apo_zero", {}),
    ("apo_down", {"beta": 0.1}, "apo_down", {}),
    ("discopop", {"beta": 0.1, "tau": 0.05}, "discopop", {"discopop_tau": 0.05}),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name,hyper,trl_type,trl_attrs", DPO_CASES,
                         ids=[f"{c[0]}-{c[2]}-{i}" for i, c in enumerate(DPO_CASES)])
def test_dpo_family_equals_trl(name, hyper, trl_type, trl_attrs, seed, dtype) -> None:
    """Reference: trl==1.16.0 ``DPOTrainer._compute_loss`` (batch loss, per-example rewards)."""
    # DiscoPOP in TRL multiplies exp(-beta d) = inf by 0 in float32 at beta d ~ -80
    extremes = not (name == "discopop" and dtype == torch.float32)
    batch = token_batch(seed, dtype, extremes=extremes)
    trl_loss, trl_rewards = trl_dpo(batch, trl_type, beta=hyper["beta"], **trl_attrs)
    out = get_align_loss(name)(batch.logps(), **hyper)
    assert out.losses.shape == (batch.b,) and out.losses.dtype == dtype
    assert close(float(out.losses.mean()), trl_loss)
    _assert_elementwise(out.rewards, trl_rewards)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_trl_aliases_give_trl_values(dtype) -> None:
    """TRL users pass TRL's names: each alias gives the same numbers as TRL's loss_type."""
    batch = token_batch(5, dtype)
    for trl_type in ["sigmoid", "sigmoid_norm", "exo_pair", "nca_pair", "robust"]:
        attrs = {"label_smoothing": 0.1} if trl_type in {"exo_pair", "robust"} else {}
        trl_loss, _ = trl_dpo(batch, trl_type, beta=0.1, **attrs)
        assert close(float(get_align_loss(trl_type)(batch.logps(), **attrs).losses.mean()),
                     trl_loss)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", SEEDS)
def test_sft_term_equals_trl_sft_for_equal_lengths(seed, dtype) -> None:
    """TRL averages over all chosen tokens of the batch, prefkit per response: equal when
    the chosen responses have equal lengths."""
    batch = token_batch(seed, dtype, equal_lengths=True)
    trl_loss, _ = trl_dpo(batch, "sft", beta=0.1)
    assert close(float(sft_term(batch.logps()).mean()), trl_loss)
    assert close(float(get_align_loss("sft")(batch.logps()).losses.mean()), trl_loss)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_combined_losses_equal_trl_loss_weights(dtype) -> None:
    """TRL's ``loss_type=[...]`` + ``loss_weights`` (MPO) is :func:`combine_losses`."""
    batch = token_batch(3, dtype, equal_lengths=True)
    trl_loss, _ = trl_dpo(batch, ["sigmoid", "bco_pair", "sft"], beta=0.1,
                          loss_weights=[0.8, 0.2, 1.0])
    mpo = combine_losses({"sigmoid": 0.8, "bco_pair": 0.2, "sft": 1.0})
    assert isinstance(mpo, AlignLoss) and mpo.needs_reference and mpo.kind == "pairwise"
    assert close(float(mpo(batch.logps()).losses.mean()), trl_loss)
    with pytest.raises(ValueError, match="different data"):
        combine_losses({"dpo": 1.0, "kto": 1.0})
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        combine_losses({"dpo": 1.0}, {"dpo": {"betta": 1.0}})


# -- f-DPO: TRL's f_divergence_type ------------------------------------------------------
def _rows(batch: TokenBatch, i: int) -> TokenBatch:
    """Pair ``i`` of ``batch`` alone (TRL's rows ``i`` and ``B + i``)."""
    rows = [i, batch.b + i]
    return TokenBatch(batch.tokens[rows], batch.mask[rows], batch.reference[i:i + 1])


F_DIVERGENCE_CASES = [("reverse_kl", 0.5), ("forward_kl", 0.5), ("js_divergence", 0.5),
                      ("alpha_divergence", 0.5), ("alpha_divergence", 0.2),
                      ("alpha_divergence", 1.5), ("alpha_divergence", 1.0 + 1e-7)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", SEEDS[:2])
@pytest.mark.parametrize("f_divergence,alpha", F_DIVERGENCE_CASES,
                         ids=[f"{f}-{a}" for f, a in F_DIVERGENCE_CASES])
@pytest.mark.parametrize("name,trl_type", [("dpo", "sigmoid"), ("dpo_norm", "sigmoid_norm")])
def test_f_dpo_equals_trl(name, trl_type, f_divergence, alpha, seed, dtype) -> None:
    """Reference: trl==1.16.0 ``DPOTrainer._compute_loss`` with ``f_divergence_type`` and
    ``f_alpha_divergence_coef``, pair by pair (one pair's loss of ~1e34 at the extreme rows
    would hide the others in a batch mean). TRL's alpha-divergence has no float64 (its
    exponent cap is looked up by dtype: float16, bfloat16, float32), and its forward KL
    overflows to inf at the extreme rows (prefkit caps the exponent at 80), so those
    cases use float32 and the moderate rows respectively."""
    if f_divergence == "alpha_divergence" and alpha != 1.0 + 1e-7 and dtype == torch.float64:
        pytest.skip("TRL 1.16's alpha-divergence raises KeyError on float64")
    batch = token_batch(seed, dtype, extremes=f_divergence != "forward_kl")
    out = get_align_loss(name)(batch.logps(), beta=0.1, f_divergence=f_divergence, alpha=alpha)
    assert out.losses.dtype == dtype and torch.isfinite(out.losses).all()
    for i in range(batch.b):
        trl_loss, trl_rewards = trl_dpo(_rows(batch, i), trl_type, beta=0.1,
                                        f_divergence_type=f_divergence,
                                        f_alpha_divergence_coef=alpha)
        assert close(float(out.losses[i]), trl_loss), (i, float(out.losses[i]), trl_loss)
        _assert_elementwise(out.rewards[i:i + 1], trl_rewards)  # beta u, whatever f


def test_f_dpo_by_hand_and_its_limits() -> None:
    """Wang et al. (2023): DPO's ``u`` becomes ``f'(e^u)``. With ``u_c = 1``, ``u_r = -1``:
    forward KL ``d = (1 - e^-1) - (1 - e) = 2 sinh 1``; JS ``d = log sig(1) - log sig(-1)
    = 1``; alpha = 1/2 ``d = 2 (1 - e^-1/2) - 2 (1 - e^1/2) = 4 sinh(1/2)``."""
    logps = pairs([[-4.0, -9.0]], [[-5.0, -8.0]], lengths=[[2.0, 4.0]])
    b = 0.5

    def run(**hyper: object) -> float:
        return float(get_align_loss("dpo")(logps, beta=b, **hyper).losses)

    assert run(f_divergence="forward_kl") == pytest.approx(-logsig(b * 2 * math.sinh(1)),
                                                           abs=TIGHT)
    assert run(f_divergence="js_divergence") == pytest.approx(-logsig(b * 1.0), abs=TIGHT)
    assert run(f_divergence="alpha_divergence", alpha=0.5) == pytest.approx(
        -logsig(b * 4 * math.sinh(0.5)), abs=TIGHT)
    assert run(f_divergence="alpha_divergence", alpha=0.0) == run(f_divergence="forward_kl")
    assert run(f_divergence="alpha_divergence", alpha=1.0) == run()  # the limit: DPO
    norm = get_align_loss("dpo_norm")(logps, beta=b, f_divergence="js_divergence")
    js = [math.log(2) + logsig(1.0), math.log(2) + logsig(-1.0)]  # averaged, then the margin
    assert float(norm.losses) == pytest.approx(-logsig(b * (js[0] / 2 - js[1] / 4)), abs=TIGHT)
    assert get_align_loss("dpo")(logps, beta=b, f_divergence="forward_kl").rewards.tolist() \
        == [[0.5, -0.5]]  # rewards stay beta u
    with pytest.raises(ValueError, match="f_divergence must be one of"):
        get_align_loss("dpo")(logps, f_divergence="kl")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("f_divergence", ["forward_kl", "js_divergence", "alpha_divergence"])
def test_f_dpo_is_finite_with_finite_gradients_at_extreme_log_ratios(f_divergence, dtype):
    policy = torch.tensor([[-3000.0, -1.0], [-1.0, -3000.0], [-2.0, -2.0]], dtype=dtype,
                          requires_grad=True)
    logps = SequenceLogps(policy=policy, reference=torch.full((3, 2), -5.0, dtype=dtype),
                          lengths=torch.ones(3, 2, dtype=dtype))
    out = get_align_loss("dpo")(logps, f_divergence=f_divergence)
    out.losses.sum().backward()
    assert torch.isfinite(out.losses).all() and torch.isfinite(policy.grad).all()


# -- CPO / SimPO and ORPO: TRL's loss methods ---------------------------------------------
def _cpo(loss_type: str, beta: float, label_smoothing: float = 0.0, simpo_gamma: float = 0.5):
    cpo = pytest.importorskip("trl.experimental.cpo.cpo_trainer")
    trainer = SimpleNamespace(alpha=0.0, beta=beta, label_smoothing=label_smoothing,
                              loss_type=loss_type, simpo_gamma=simpo_gamma,
                              accelerator=_accelerator())
    return lambda c, r: cpo.CPOTrainer.cpo_loss(trainer, c, r)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", SEEDS)
def test_simpo_and_cpo_equal_trl(seed, dtype) -> None:
    """Reference: trl==1.16.0 ``CPOTrainer.cpo_loss`` (``alpha=0``) on TRL's own inputs:
    average log-probs for ``simpo``, summed for ``sigmoid``."""
    logps = token_batch(seed, dtype).logps()
    avg = logps.policy / logps.lengths
    for ls in (0.0, 0.1):
        losses, rc, rr = _cpo("simpo", 2.0, ls, simpo_gamma=1.2)(avg[:, 0], avg[:, 1])
        out = get_align_loss("simpo")(logps, beta=2.0, gamma=1.2, label_smoothing=ls)
        _assert_elementwise(out.losses, losses)
        _assert_elementwise(out.chosen_rewards, rc)
        _assert_elementwise(out.rejected_rewards, rr)
        losses, rc, rr = _cpo("sigmoid", 0.1, ls)(logps.policy[:, 0], logps.policy[:, 1])
        out = get_align_loss("cpo")(logps, beta=0.1, label_smoothing=ls)
        _assert_elementwise(out.losses, losses)
        _assert_elementwise(out.rewards, torch.stack([rc, rr], dim=1))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", SEEDS)
def test_cdpo_equals_trl_conservative_sigmoid_on_log_ratios(seed, dtype) -> None:
    """TRL 1.16's DPO ``sigmoid`` dropped label smoothing; its CPO ``sigmoid`` keeps the
    conservative form, so fed log-ratios instead of log-probs it is cDPO."""
    logps = token_batch(seed, dtype).logps()
    u = logps.policy - logps.reference
    losses, rc, rr = _cpo("sigmoid", 0.1, 0.15)(u[:, 0], u[:, 1])
    out = get_align_loss("cdpo")(logps, label_smoothing=0.15)
    _assert_elementwise(out.losses, losses)
    _assert_elementwise(out.rewards, torch.stack([rc, rr], dim=1))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", SEEDS)
def test_orpo_odds_ratio_term_equals_trl(seed, dtype) -> None:
    """Reference: trl==1.16.0 ``ORPOTrainer.odds_ratio_loss`` on average log-probs; TRL's
    loss is ``nll - mean(that)``, prefkit's ``sft_term + beta * (-log sig(log odds))``."""
    orpo = pytest.importorskip("trl.experimental.orpo.orpo_trainer")
    g = torch.Generator().manual_seed(seed)
    b = 16
    lengths = torch.randint(1, 20, (b, 2), generator=g).to(dtype)
    avg = -torch.rand(b, 2, generator=g, dtype=torch.float64).to(dtype) * 3.0
    avg[0] = torch.tensor([-1e-5, -30.0])  # nearly certain vs hopeless
    avg[1] = torch.tensor([-30.0, -1e-5])
    avg[2] = torch.tensor([-0.6931, -0.6932])  # either side of log(1/2), log1mexp's branch
    avg[3, 1] = avg[3, 0]  # a tie
    logps = SequenceLogps(policy=avg * lengths, lengths=lengths)
    trainer = SimpleNamespace(beta=0.25, accelerator=_accelerator())
    a = logps.policy / logps.lengths  # TRL's average_log_prob
    ratio, rc, rr, _, _ = orpo.ORPOTrainer.odds_ratio_loss(trainer, a[:, 0], a[:, 1])
    out = get_align_loss("orpo")(logps, beta=0.25)
    # TRL casts to float32 first (differences ~1e-7 in float64)
    _assert_elementwise(out.losses, sft_term(logps) - ratio.to(dtype))
    _assert_elementwise(out.rewards, torch.stack([rc, rr], dim=1).to(dtype))


# -- KTO: TRL's KTOTrainer._compute_loss ----------------------------------------------------
def unpaired_batch(seed: int, dtype: torch.dtype, b: int = 14) -> SequenceLogps:
    g = torch.Generator().manual_seed(seed)
    policy = -torch.rand(b, 1, generator=g, dtype=torch.float64) * 50.0
    reference = policy - 3.0 * torch.randn(b, 1, generator=g, dtype=torch.float64)
    reference[0], reference[1] = policy[0] - 700.0, policy[1] + 700.0  # beta u = +-70
    reference[2] = policy[2]  # u = 0
    label = torch.rand(b, generator=g) < 0.5
    label[:2] = torch.tensor([True, False])
    kl_policy = -torch.rand(b, generator=g, dtype=torch.float64) * 40.0
    kl_reference = kl_policy - 2.0 * torch.randn(b, generator=g, dtype=torch.float64) - 0.5
    return SequenceLogps(policy=policy.to(dtype), reference=reference.to(dtype),
                         lengths=torch.ones(b, 1, dtype=dtype), label=label,
                         kl_policy=kl_policy.to(dtype), kl_reference=kl_reference.to(dtype))


def trl_kto(logps: SequenceLogps, loss_type: str, *, beta: float, desirable_weight: float,
            undesirable_weight: float) -> tuple[float, dict[str, float]]:
    """TRL's ``KTOTrainer._compute_loss`` with precomputed reference log-probs. The stand-in
    model reads row ``i`` of a table from ``input_ids[:, 0]``: rows ``0..B-1`` are the
    completions, ``B..2B-1`` the mismatched KL completions (one scored token each)."""
    kto = pytest.importorskip("trl.trainer.kto_trainer")
    b = logps.batch_size
    table = torch.zeros(2 * b, 2, dtype=logps.policy.dtype)
    table[:b, 0], table[b:, 0] = logps.policy[:, 0], logps.kl_policy

    def model(input_ids, **kw):
        rows = table[input_ids[:, 0]]
        return SimpleNamespace(log_probs=rows, entropy=torch.zeros_like(rows),
                               mean_logits=torch.zeros_like(rows))

    ids = torch.arange(b)[:, None].repeat(1, 3)
    mask = torch.tensor([[0, 1, 0]]).repeat(b, 1)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "completion_mask": mask,
              "KL_input_ids": ids + b, "KL_attention_mask": torch.ones_like(ids),
              "KL_completion_mask": mask, "label": logps.label,
              "ref_logps": logps.reference[:, 0], "ref_KL_logps": logps.kl_reference}
    trainer = object.__new__(kto.KTOTrainer)
    vars(trainer).update(
        model=SimpleNamespace(training=True), accelerator=_accelerator(),
        calculate_KL=loss_type == "kto", precompute_ref_logps=True, loss_type=loss_type,
        beta=beta, desirable_weight=desirable_weight, undesirable_weight=undesirable_weight,
        aux_loss_enabled=False, _metrics=_metrics(), _total_train_tokens=0, _tp_size=1,
        args=SimpleNamespace(gradient_checkpointing_kwargs=None))
    trainer._compute_kl_logps = types.MethodType(kto.KTOTrainer._compute_kl_logps, trainer)
    loss = kto.KTOTrainer._compute_loss(trainer, model, inputs, False)
    return float(loss), {k: v[-1] for k, v in trainer._metrics["train"].items()}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", ["kto", "apo_zero_unpaired"])
def test_unpaired_losses_equal_trl(name, seed, dtype) -> None:
    """Reference: trl==1.16.0 ``KTOTrainer._compute_loss`` (loss, rewards, KL estimate)."""
    logps = unpaired_batch(seed, dtype)
    for beta, wd, wu in [(0.1, 1.0, 1.0), (0.5, 1.33, 0.7)]:
        trl_loss, metrics = trl_kto(logps, name, beta=beta, desirable_weight=wd,
                                    undesirable_weight=wu)
        out = get_align_loss(name)(logps, beta=beta, desirable_weight=wd,
                                   undesirable_weight=wu)
        assert out.losses.shape == (logps.batch_size,) and out.rewards.shape == (14, 1)
        assert close(float(out.losses.mean()), trl_loss)
        label = logps.label
        assert close(float(out.rewards[label].mean()), metrics["rewards/chosen"])
        assert close(float(out.rewards[~label].mean()), metrics["rewards/rejected"])
        if name == "kto":
            z0 = max(0.0, float((logps.kl_policy - logps.kl_reference).mean()))
            assert close(z0, metrics["kl"])


def test_kto_reference_point_is_clamped_detached_and_weighted() -> None:
    # mean(kl_policy - kl_reference) = -1 < 0  ->  z0 = 0
    kl_p = torch.tensor([-5.0, -7.0], dtype=torch.float64, requires_grad=True)
    logps = pairs([[-3.0], [-4.0]], [[-3.5], [-3.0]], label=torch.tensor([True, False]),
                  kl_policy=kl_p, kl_reference=torch.tensor([-4.0, -6.0], dtype=torch.float64))
    logps.policy.requires_grad_(True)
    out = get_align_loss("kto")(logps, beta=0.5, undesirable_weight=2.0)
    want = [1 - sig(0.5 * 0.5), 2.0 * (1 - sig(0.5 * 1.0))]  # u = 0.5 and -1.0
    assert out.losses.detach().tolist() == pytest.approx(want, abs=TIGHT)
    out.losses.sum().backward()
    assert kl_p.grad is None  # the KL estimate is a constant reference point
    with pytest.raises(ValueError, match="kl_policy"):
        get_align_loss("kto")(pairs([[-3.0]], [[-3.5]], label=torch.tensor([True])))
    with pytest.raises(ValueError, match="label"):
        get_align_loss("apo_zero_unpaired")(pairs([[-3.0]], [[-3.5]]))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_kto_kl_estimate_equals_computing_it_from_the_mismatched_pairs(dtype) -> None:
    """``kl_estimate=z`` (a tensor or a number, as the trainer passes its step's mean) gives
    bit for bit what ``kl_policy`` / ``kl_reference`` with mean ``z`` give; it is clamped at
    0, receives no gradient and wins over the pairs when both are there."""
    positive = 0
    for seed in SEEDS:
        logps = unpaired_batch(seed, dtype)
        z = (logps.kl_policy - logps.kl_reference).mean()
        positive += int(z > 0)
        bare = dataclasses.replace(logps, kl_policy=None, kl_reference=None)
        for beta, wd, wu in [(0.1, 1.0, 1.0), (0.5, 1.33, 0.7)]:
            hyper = dict(beta=beta, desirable_weight=wd, undesirable_weight=wu)
            want = get_align_loss("kto")(logps, **hyper)
            for estimate in (z, float(z), z.reshape(1)):
                got = get_align_loss("kto")(bare, **hyper, kl_estimate=estimate)
                assert torch.equal(got.losses, want.losses)
                assert torch.equal(got.rewards, want.rewards)
            both = get_align_loss("kto")(logps, **hyper, kl_estimate=0.0)
            assert torch.equal(both.losses, get_align_loss("kto")(bare, **hyper,
                                                                  kl_estimate=-2.0).losses)
    assert positive >= 2  # z0 > 0 in most: the estimate matters there
    estimate = torch.tensor(0.7, dtype=dtype, requires_grad=True)
    logps = unpaired_batch(0, dtype)
    logps.policy.requires_grad_(True)
    get_align_loss("kto")(logps, kl_estimate=estimate).losses.sum().backward()
    assert estimate.grad is None and logps.policy.grad is not None
    with pytest.raises(ValueError, match="one number"):
        get_align_loss("kto")(logps, kl_estimate=torch.zeros(2))


# -- hand-computed cases (only the paper defines these) -------------------------------------
def test_dpo_is_ln2_when_policy_equals_reference() -> None:
    logps = pairs([[-3.0, -7.0], [-1.0, -1.0]], [[-3.0, -7.0], [-1.0, -1.0]])
    for name in ["dpo", "listwise", "cdpo", "robust_dpo"]:
        out = get_align_loss(name)(logps)
        assert out.losses.tolist() == pytest.approx([math.log(2)] * 2, abs=TIGHT), name
        # every margin is an exact tie: prefkit counts a tie half (prefkit.losses), so a
        # policy still equal to its reference reads chance, 0.5 (TRL's strict rule: 0)
        assert out.rewards.abs().max() == 0 and out.accuracy.tolist() == [0.5, 0.5]


def test_dpo_family_by_hand() -> None:
    # u_c = -4 - (-5) = 1, u_r = -9 - (-8) = -1, d = 2; lengths 2 and 4
    logps = pairs([[-4.0, -9.0]], [[-5.0, -8.0]], lengths=[[2.0, 4.0]])
    b = 0.5

    def run(name: str, **hyper: float) -> float:
        return float(get_align_loss(name)(logps, beta=b, **hyper).losses)

    assert run("dpo") == pytest.approx(-logsig(1.0), abs=TIGHT)
    assert run("cdpo", label_smoothing=0.2) == pytest.approx(
        -0.8 * logsig(1.0) - 0.2 * logsig(-1.0), abs=TIGHT)
    assert run("robust_dpo", label_smoothing=0.2) == pytest.approx(
        (0.8 * -logsig(1.0) - 0.2 * -logsig(-1.0)) / 0.6, abs=TIGHT)
    assert run("dpo_norm") == pytest.approx(-logsig(0.5 * (1 / 2 + 1 / 4)), abs=TIGHT)
    assert run("ipo") == pytest.approx((0.75 - 1.0) ** 2, abs=TIGHT)  # (1/2 + 1/4 - 1/(2b))^2
    assert run("ipo", length_normalize=False) == pytest.approx((2 - 1.0) ** 2, abs=TIGHT)
    assert run("hinge") == pytest.approx(0.0, abs=TIGHT)  # 1 - b d = 0
    assert run("sppo_hard") == pytest.approx((1 - 1) ** 2 + (-1 + 1) ** 2, abs=TIGHT)
    assert run("nca") == pytest.approx(
        -logsig(0.5) - 0.5 * logsig(-0.5) - 0.5 * logsig(0.5), abs=TIGHT)
    assert run("bco_pair", delta=0.25) == pytest.approx(
        -logsig(0.25) - logsig(0.75), abs=TIGHT)
    assert run("apo_zero") == pytest.approx(1 - sig(0.5) + sig(-0.5), abs=TIGHT)
    assert run("apo_down") == pytest.approx(sig(0.5) + 1 - sig(1.0), abs=TIGHT)
    q = sig(1.0)
    assert run("exo", label_smoothing=0.1) == pytest.approx(
        q * (math.log(q) - math.log(0.9)) + (1 - q) * (math.log(1 - q) - math.log(0.1)),
        abs=TIGHT)
    m = sig(1.0 / 0.05)
    assert run("discopop") == pytest.approx(-logsig(1.0) * (1 - m) + m * math.exp(-1.0),
                                            abs=TIGHT)


def test_cal_dpo_by_hand() -> None:
    """Xiao et al. (2024): ``-log sig(u_c - u_r) + (u_c - 1/(2b))^2 + (u_r + 1/(2b))^2``."""
    logps = pairs([[-4.0, -9.0], [-2.0, -2.0]], [[-5.0, -8.0], [-2.0, -2.0]])
    b = 0.25  # targets +-2
    out = get_align_loss("cal_dpo")(logps, beta=b)
    want = [-logsig(2.0) + (1 - 2) ** 2 + (-1 + 2) ** 2,  # u = (1, -1)
            math.log(2) + 4 + 4]  # u = (0, 0)
    assert out.losses.tolist() == pytest.approx(want, abs=TIGHT)
    assert out.rewards.flatten().tolist() == pytest.approx([0.25, -0.25, 0.0, 0.0], abs=TIGHT)
    half = get_align_loss("caldpo")(logps, beta=b, calibration_weight=0.5)  # authors' code
    assert float(half.losses[1]) == pytest.approx(math.log(2) + 4, abs=TIGHT)


def test_tdpo_by_hand_and_stop_gradient() -> None:
    """Zeng et al. (2024): TDPO1 ``-log sig(b d - b (D_r - D_c))``; TDPO2 ``-log sig(b d -
    alpha b (D_r - sg(D_c)))``, D = sum_t KL(pi_ref || pi_theta) (``token_kl``)."""
    kl = torch.tensor([[0.4, 1.2]], dtype=torch.float64, requires_grad=True)
    logps = pairs([[-4.0, -9.0]], [[-5.0, -8.0]], token_kl=kl)  # d = 2
    b, alpha = 0.5, 0.5
    one = get_align_loss("tdpo1")(logps, beta=b)
    assert one.losses.item() == pytest.approx(-logsig(b * 2 - b * (1.2 - 0.4)), abs=TIGHT)
    # the reward margin is the TDPO1 logit: b (u_c + D_c) - b (u_r + D_r)
    assert float(one.margins) == pytest.approx(b * 2 - b * 0.8, abs=TIGHT)
    two = get_align_loss("tdpo")(logps, beta=b, alpha=alpha)
    logit = b * 2 - alpha * b * (1.2 - 0.4)
    assert two.losses.item() == pytest.approx(-logsig(logit), abs=TIGHT)
    two.losses.sum().backward()
    # d loss / d D_r = sig(-logit) * alpha * b; D_c gets none (stop-gradient)
    assert kl.grad.flatten().tolist() == pytest.approx([0.0, sig(-logit) * alpha * b], abs=TIGHT)
    with pytest.raises(ValueError, match="token_kl"):
        get_align_loss("tdpo1")(pairs([[-4.0, -9.0]], [[-5.0, -8.0]]))


def test_simpo_orpo_sft_by_hand() -> None:
    logps = pairs([[-2.0, -6.0]], lengths=[[4.0, 3.0]])  # a = -0.5, -2
    out = get_align_loss("simpo")(logps, beta=2.0, gamma=1.0)
    assert float(out.losses) == pytest.approx(-logsig(2.0 * 1.5 - 1.0), abs=TIGHT)
    assert out.rewards.tolist() == [[-1.0, -4.0]]
    assert sft_term(logps).tolist() == [0.5]
    odds = [a - math.log(1 - math.exp(a)) for a in (-0.5, -2.0)]
    orpo = get_align_loss("orpo")(logps, beta=0.1)
    assert float(orpo.losses) == pytest.approx(0.5 - 0.1 * logsig(odds[0] - odds[1]), abs=TIGHT)
    unpaired = pairs([[-2.0], [-6.0]], lengths=[[4.0], [3.0]], label=torch.tensor([True, False]))
    assert sft_term(unpaired).tolist() == [0.5, 0.0]  # undesirable completions: no imitation
    cpo = get_align_loss("cpo")(logps, beta=0.1)
    assert float(cpo.losses) == pytest.approx(-logsig(0.4), abs=TIGHT)


def test_listwise_by_hand_with_padding() -> None:
    """-sum_k log softmax over the responses ranked k..K (Plackett-Luce over b u)."""
    u = [2.0, 0.0, -1.0]
    logps = pairs([u, u], [[0.0] * 3, [0.0] * 3],
                  valid=torch.tensor([[True, True, True], [True, False, True]]))
    b = 0.5
    s = [b * x for x in u]
    full = -(s[0] - math.log(sum(math.exp(x) for x in s))
             + s[1] - math.log(math.exp(s[1]) + math.exp(s[2])))
    skip = -logsig(s[0] - s[2])  # padding in the middle: column 1 is left out
    out = get_align_loss("listwise")(logps, beta=b)
    assert out.losses.tolist() == pytest.approx([full, skip], abs=TIGHT)
    assert out.rewards[1, 1] == -math.inf
    assert out.rejected_rewards.tolist() == [0.0, -0.5]  # the best *real* non-chosen
    assert out.margins.tolist() == [1.0, 1.5]
    with pytest.raises(ValueError, match="column 0"):
        get_align_loss("listwise")(pairs([u], [[0.0] * 3], valid=torch.tensor([[False, True,
                                                                              True]])))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_listwise_at_k2_is_dpo_exactly(dtype) -> None:
    for seed in SEEDS:
        logps = token_batch(seed, dtype).logps()
        for beta in (0.1, 0.7):
            dpo = get_align_loss("dpo")(logps, beta=beta)
            pl = get_align_loss("plackett_luce")(logps, beta=beta)
            assert torch.equal(pl.losses, dpo.losses)
            assert torch.equal(pl.rewards, dpo.rewards)


def test_listwise_equals_choice_plackett_luce() -> None:
    """Independent implementation: prefkit.choice's Plackett-Luce (reversed logcumsumexp)
    over ``beta * u``, padding at the end of rows."""
    g = torch.Generator().manual_seed(7)
    policy = -torch.rand(9, 5, generator=g, dtype=torch.float64) * 40
    reference = policy - 5 * torch.randn(9, 5, generator=g, dtype=torch.float64)
    n = torch.tensor([5, 4, 3, 2, 5, 5, 2, 3, 4])
    valid = torch.arange(5)[None, :] < n[:, None]
    logps = SequenceLogps(policy=policy, reference=reference,
                          lengths=torch.ones_like(policy), valid=valid)
    out = get_align_loss("listwise")(logps, beta=0.3)
    want = -log_plackett_luce(0.3 * (policy - reference), mask=valid)
    assert torch.allclose(out.losses, want, rtol=0, atol=1e-10)


def test_listwise_gradient_matches_finite_differences() -> None:
    g = torch.Generator().manual_seed(3)
    policy = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    reference = torch.randn(3, 4, generator=g, dtype=torch.float64)
    valid = torch.tensor([[True] * 4, [True, True, True, False], [True, False, True, True]])

    def f(p: torch.Tensor) -> torch.Tensor:
        logps = SequenceLogps(policy=p, reference=reference, lengths=torch.ones_like(p),
                              valid=valid)
        return get_align_loss("listwise")(logps, beta=0.8).losses

    assert torch.autograd.gradcheck(f, (policy,))


def test_orpo_gradient_is_finite_at_certainty() -> None:
    policy = torch.tensor([[0.0, -3.0], [-0.6931, -1e-9]], dtype=torch.float64,
                          requires_grad=True)
    logps = SequenceLogps(policy=policy, lengths=torch.ones_like(policy))
    out = get_align_loss("orpo")(logps)
    out.losses.sum().backward()
    assert torch.isfinite(out.losses).all() and torch.isfinite(policy.grad).all()


# -- the registry's contract --------------------------------------------------------------
ISSUE_NAMES = ["dpo", "cdpo", "robust_dpo", "ipo", "hinge", "exo", "nca", "bco_pair",
               "sppo_hard", "aot", "aot_unpaired", "apo_zero", "apo_down", "simpo", "orpo",
               "kto", "cal_dpo", "tdpo1", "tdpo2", "listwise", "sft"]
TRL_NAMES = ["sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair",
             "sppo_hard", "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft",
             "sigmoid_norm", "kto", "apo_zero_unpaired", "simpo", "orpo"]


def test_registry_has_every_loss_of_the_issue_and_trl_names() -> None:
    for name in ISSUE_NAMES + TRL_NAMES:
        spec = get_align_loss(name)
        assert spec.fn.__doc__ and spec.paper, name
    for alias, name in ALIASES.items():
        assert ALIGN_LOSSES[alias] is ALIGN_LOSSES[name] and ALIGN_LOSSES[alias].name == name
    assert get_align_loss("Cal-DPO") is get_align_loss("cal_dpo")
    assert get_align_loss("pro").kind == "listwise"
    assert get_align_loss("kto").needs_kl_estimate and get_align_loss("tdpo2").needs_token_kl
    free = {s.name for s in ALIGN_LOSSES.values() if not s.needs_reference}
    assert free == {"simpo", "orpo", "cpo", "sft"}


def test_unknown_names_are_errors_that_list_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown alignment loss 'dop'.*'dpo'.*sigmoid"):
        get_align_loss("dop")
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['betta'\].*beta"):
        get_align_loss("dpo")(pairs([[-1.0, -2.0]], [[-1.0, -2.0]]), betta=0.1)


def test_spec_fills_defaults_which_are_read_only() -> None:
    spec = get_align_loss("cdpo")
    assert dict(spec.defaults) == {"beta": 0.1, "label_smoothing": 0.1, "length_normalize": False,
                                   "f_divergence": "reverse_kl", "alpha": 0.5}
    assert get_align_loss("ipo").defaults["length_normalize"] is True
    with pytest.raises(TypeError):
        spec.defaults["beta"] = 1.0  # type: ignore[index]
    logps = pairs([[-4.0, -9.0]], [[-5.0, -8.0]])  # d = 2
    assert float(spec(logps).losses) == pytest.approx(
        -0.9 * logsig(0.2) - 0.1 * logsig(-0.2), abs=TIGHT)


def test_k_must_fit_the_kind() -> None:
    three = pairs([[-1.0, -2.0, -3.0]], [[-1.0, -2.0, -3.0]])
    with pytest.raises(ValueError, match=r"pairs \(K = 2.*K = 3.*'listwise'"):
        get_align_loss("dpo")(three)
    with pytest.raises(ValueError, match="K = 3"):
        ALIGN_LOSSES["simpo"].fn(three)  # the functions check too
    with pytest.raises(ValueError, match="K = 1"):
        get_align_loss("listwise")(pairs([[-1.0]], [[-1.0]]))
    with pytest.raises(ValueError, match="K = 2"):
        get_align_loss("kto")(pairs([[-1.0, -2.0]], [[-1.0, -2.0]]))
    with pytest.raises(ValueError, match="padding"):
        get_align_loss("ipo")(pairs([[-1.0, -2.0]], [[-1.0, -2.0]],
                                    valid=torch.tensor([[True, False]])))


def test_reference_is_required_or_not() -> None:
    free = pairs([[-4.0, -9.0]], lengths=[[2.0, 3.0]])
    for name in ["simpo", "orpo", "cpo", "sft"]:
        assert torch.isfinite(get_align_loss(name)(free).losses).all()
    for spec in {s.name: s for s in ALIGN_LOSSES.values() if s.needs_reference}.values():
        logps = _inputs(spec, 2, torch.float64, with_grad=False)
        logps.reference = None
        with pytest.raises(ValueError, match="reference log-probabilities"):
            spec(logps)


def _inputs(spec: AlignLoss, b: int, dtype: torch.dtype, *, with_grad: bool = True,
            scale: float = 5.0, seed: int = 0) -> SequenceLogps:
    """Random inputs of the right kind for ``spec``, leaves with gradients."""
    g = torch.Generator().manual_seed(seed)
    k = {"pairwise": 2, "listwise": 4, "unpaired": 1}[spec.kind]

    def leaf(*shape: int, s: float = scale) -> torch.Tensor:
        x = (-torch.rand(*shape, generator=g, dtype=torch.float64) * s).to(dtype)
        return x.requires_grad_(with_grad)

    extra: dict[str, torch.Tensor] = {}
    if spec.kind == "listwise" and b:
        extra["valid"] = torch.ones(b, k, dtype=torch.bool)
        extra["valid"][0, 2:] = False
    if spec.kind == "unpaired":
        extra |= {"label": torch.arange(b) % 2 == 0, "kl_policy": leaf(b),
                  "kl_reference": leaf(b)}
    if spec.needs_token_kl:
        extra["token_kl"] = -leaf(b, k, s=1.0)
    return SequenceLogps(policy=leaf(b, k), reference=leaf(b, k),
                         lengths=torch.randint(1, 9, (b, k), generator=g).to(dtype), **extra)


@pytest.mark.parametrize("name", CANONICAL)
def test_every_loss_gives_per_example_losses_and_policy_only_gradients(name) -> None:
    spec = get_align_loss(name)
    logps = _inputs(spec, 6, torch.float64)
    out = spec(logps)
    assert isinstance(out, LossOutput) and out.losses.shape == (6,)
    assert out.rewards.shape == logps.policy.shape and not out.rewards.requires_grad
    out.losses.mean().backward()
    assert logps.policy.grad is not None and torch.isfinite(logps.policy.grad).all()
    assert logps.policy.grad.abs().sum() > 0
    assert logps.reference.grad is None  # the frozen reference gets no gradient
    for field in ("kl_policy", "kl_reference"):
        if getattr(logps, field) is not None:
            assert getattr(logps, field).grad is None


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", CANONICAL)
def test_every_loss_is_finite_at_extreme_log_probs_and_on_empty_batches(name, dtype) -> None:
    spec = get_align_loss(name)
    logps = _inputs(spec, 6, dtype, scale=3000.0, seed=1)  # beta u up to ~ +-300
    out = spec(logps)
    out.losses.sum().backward()
    assert torch.isfinite(out.losses).all(), out.losses
    assert torch.isfinite(logps.policy.grad).all()
    empty = spec(_inputs(spec, 0, dtype))
    assert empty.losses.shape == (0,)


def test_pairwise_losses_are_symmetric_in_swapping_chosen_and_rejected() -> None:
    """Swapping chosen and rejected negates every reward margin (property of the scorer)."""
    logps = token_batch(4, torch.float64).logps()
    swapped = SequenceLogps(policy=logps.policy.flip(1), reference=logps.reference.flip(1),
                            lengths=logps.lengths.flip(1))
    for name in ["dpo", "ipo", "simpo", "cal_dpo", "listwise"]:
        a = get_align_loss(name)(logps)
        b = get_align_loss(name)(swapped)
        assert np.allclose(a.margins.numpy(), -b.margins.numpy(), atol=TIGHT)


@pytest.mark.parametrize("name, hyper", [
    ("dpo", {"beta": -0.1}), ("ipo", {"beta": 0.0}), ("kto", {"beta": float("nan")}),
    ("simpo", {"beta": -2.0}), ("cdpo", {"label_smoothing": 0.6}),
    ("discopop", {"tau": 0.0}), ("cal_dpo", {"calibration_weight": -1.0}),
    ("kto", {"undesirable_weight": -1.0}), ("dpo", {"alpha": float("inf")}),
])
def test_every_loss_refuses_hyper_parameters_where_it_is_undefined(name: str, hyper: dict) -> None:
    # a negative beta flips every implicit reward: the loss then trains toward the rejected
    # answers while its reported accuracy looks perfect (issue 9.2). Refused at resolve(),
    # i.e. when AlignConfig is made, before any training.
    from prefkit.align import AlignConfig

    spec = get_align_loss(name)
    (key,) = hyper
    with pytest.raises(ValueError, match=f"needs {key} in"):
        spec.resolve(**hyper)
    with pytest.raises(ValueError, match=f"needs {key} in"):
        AlignConfig(loss=name, loss_kwargs=hyper)
    spec.resolve()  # the defaults are inside every range
