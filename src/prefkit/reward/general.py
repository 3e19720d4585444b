"""General Preference Model (GPM): skew-symmetric preference embeddings on any backbone.

Zhang, Zhang, Wu, Xu & Gu, "Beyond Bradley-Terry Models: A General Preference Model for
Language Model Alignment" (arXiv:2410.02197, ICML 2025).

A Bradley-Terry reward model gives each response one number, so its preferences are always
transitive. GPM gives each response ``y`` to a prompt ``x`` a *preference embedding*
``v = v(x, y)`` in ``R^{2k}`` and scores a pair with a skew-symmetric bilinear form::

    R = diag(J, ..., J),            J = [[0, -1], [1, 0]]          (k blocks)
    s(y1 > y2 | x) = <R^>(x) v1, v2> / tau
                   = (1 / tau) * sum_l lambda_l(x) * (v1[2l] v2[2l+1] - v1[2l+1] v2[2l])
    P(y1 > y2 | x) = sigmoid(s(y1 > y2 | x))

with ``R^>(x) = diag(lambda_1(x) J, ..., lambda_k(x) J)`` (``lambda = 1`` without a gate).
Because ``R^T = -R``, ``s(y1 > y2) = -s(y2 > y1)``: ``P(y1 > y2) + P(y2 > y1) = 1`` and
``P(y > y) = 1/2`` hold for every parameter value, and a single block can place items on a
circle so that each beats the ones just "ahead" of it: rock-paper-scissors and any cyclic
tournament are representable, which no scalar reward can do.

**Sign convention.** ``s = <R v1, v2>`` with ``J`` as above is the paper's ``R^>`` and the
released code's 2-d loss (``chosen[0] * rejected[1] - chosen[1] * rejected[0]``).
``<R^T v1, v2>`` is the opposite orientation of every block; the two families of models are
the same up to reflecting each embedding, so nothing depends on the choice.

**What is implemented** (:class:`GeneralPreferenceModel`):

* *Eigenvector embedding head*: ``v = f(e)`` with ``f`` linear (``hidden=0``) or a
  one-hidden-layer GELU MLP on the backbone embedding ``e``; by default ``v`` is
  L2-normalised (as in the released inference code), so ``|<R v1, v2>| <= 1`` and the
  temperature ``tau`` (default 0.1, the released default) sets the largest logit, ``1/tau``.
* *Eigenvalue scale gate* (optional, ``prompt_dim``): ``lambda(x) = k * softmax(G e_x)``
  from a prompt embedding ``e_x`` (``G`` linear, no bias). The released code uses a softmax;
  the factor ``k`` (our choice) makes a uniform gate equal to the ungated ``R``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike, NDArray
from torch import Tensor, nn

from prefkit.choice.general import gpm_logit
from prefkit.choice.torch_pairwise import log_bradley_terry
from prefkit.losses import LossOutput
from prefkit.reward.losses import general_preference_loss, get_reward_loss
from prefkit.runs import renamed_fields

__all__ = [
    "EmbeddingFitConfig",
    "GPMConfig",
    "GeneralPreferenceModel",
    "fit_general_preference",
    "general_preference_loss",
    "gpm_logit",
    "preference_probability",
    "simulate_cyclic_preferences",
    "train_pairwise",
]

# -- pure functions (the link is prefkit.choice.general.gpm_logit, re-exported here) ----------
def preference_probability(logits: Tensor) -> Tensor:
    """``sigmoid(logits)``, computed so that ``p(z) + p(-z) == 1`` exactly in floating point.

    ``torch.sigmoid(z) + torch.sigmoid(-z)`` can miss 1 by an ulp; here the smaller side is
    ``sigmoid(-|z|)`` and the larger ``1 - sigmoid(-|z|)``, whose sum rounds to exactly 1.
    """
    small = torch.sigmoid(-logits.abs())
    return torch.where(logits > 0, 1.0 - small, small)


def _unit(v: Tensor) -> Tensor:
    """L2-normalise the last axis without overflow: divide by max |v| first. The result is
    scale-free, so treating that divisor as a constant leaves the gradient unchanged."""
    v = v / v.detach().abs().amax(-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)
    return F.normalize(v, dim=-1, eps=1e-12)


# -- modules ----------------------------------------------------------------------------
def _linear(
    n_in: int, n_out: int, generator: torch.Generator | None, bias: bool = True
) -> nn.Linear:
    """``nn.Linear`` with PyTorch's default init drawn from ``generator``."""
    layer = nn.Linear(n_in, n_out, bias=bias)
    bound = 1.0 / float(np.sqrt(n_in))
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=generator)
        if layer.bias is not None:
            layer.bias.uniform_(-bound, bound, generator=generator)
    return layer


def make_map(n_in: int, hidden: int, n_out: int, generator: torch.Generator | None) -> nn.Module:
    """``Linear(n_in, n_out)`` when ``hidden == 0``, else ``Linear -> GELU -> Linear``."""
    if hidden <= 0:
        return _linear(n_in, n_out, generator)
    return nn.Sequential(
        _linear(n_in, hidden, generator), nn.GELU(), _linear(hidden, n_out, generator)
    )


@dataclass(frozen=True)
class GPMConfig:
    """Shape of a :class:`GeneralPreferenceModel` head.

    Attributes:
        dim: ``2k``, the preference-embedding size (even; 2 already holds a cyclic tournament).
        hidden: width of the MLP hidden layer; 0 for a linear map.
        normalize: L2-normalise each preference embedding.
        tau: temperature; logits are ``<R^> v1, v2> / tau``.
    """

    dim: int = 8
    hidden: int = 0
    normalize: bool = True
    tau: float = 0.1

    def __post_init__(self) -> None:
        if self.dim < 2 or self.dim % 2:
            raise ValueError(f"dim must be a positive even number (2k), got {self.dim}")
        if not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")


class GeneralPreferenceModel(nn.Module):
    """GPM head on backbone embeddings: ``P(y1 > y2 | x) = sigmoid(<R^>(x) v1, v2> / tau)``.

    Args:
        in_dim: size of the response embeddings (e.g. 384 for MiniLM).
        config: the head's shape, :class:`GPMConfig`.
        prompt_dim: size of the prompt embeddings feeding the eigenvalue gate; ``None``
            for no gate (``lambda = 1``).
        generator: draws the initial weights.

    >>> g = torch.Generator().manual_seed(0)
    >>> m = GeneralPreferenceModel(8, generator=g)
    >>> a, b = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    >>> bool(torch.all(m.probability(a, b) + m.probability(b, a) == 1))
    True
    """

    def __init__(
        self,
        in_dim: int,
        config: GPMConfig = GPMConfig(),
        *,
        prompt_dim: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.in_dim = in_dim
        self.prompt_dim = prompt_dim
        self.head = make_map(in_dim, config.hidden, config.dim, generator)
        self.gate = (
            None
            if prompt_dim is None
            else _linear(prompt_dim, config.dim // 2, generator, bias=False)
        )

    def embed(self, emb: Tensor) -> Tensor:
        """Preference embeddings ``v``, shape ``(n, 2k)``, of backbone embeddings ``(n, d)``."""
        v = self.head(emb)  # (n, 2k)
        return _unit(v) if self.config.normalize else v

    def eigenvalues(self, prompt: Tensor | None) -> Tensor | None:
        """``lambda(x) = k * softmax(G e_x)``, shape ``(n, k)``; ``None`` without a gate."""
        if self.gate is None:
            return None
        if prompt is None:
            raise ValueError("this model has an eigenvalue gate: pass prompt embeddings")
        lam: Tensor = self.gate(prompt).softmax(-1) * (self.config.dim // 2)  # (n, k)
        return lam

    def forward(self, chosen: Tensor, rejected: Tensor, prompt: Tensor | None = None) -> Tensor:
        """Logits ``s(chosen > rejected | prompt)``, shape ``(n,)``."""
        lam = self.eigenvalues(prompt)
        return gpm_logit(self.embed(chosen), self.embed(rejected), lam) / self.config.tau

    def pair_loss(self, chosen: Tensor, rejected: Tensor, prompt: Tensor | None = None, *,
                  label_smoothing: float = 0.0) -> LossOutput:
        """The ``general_preference`` loss of :data:`~prefkit.reward.losses.REWARD_LOSSES`
        on these pairs (what :func:`train_pairwise` minimises): per pair, Bradley-Terry
        over ``forward``'s logit."""
        lam = self.eigenvalues(prompt)
        return get_reward_loss("general_preference")(
            self.embed(chosen), self.embed(rejected),
            None if lam is None else {"eigenvalues": lam},
            tau=self.config.tau, label_smoothing=label_smoothing)

    def probability(self, a: Tensor, b: Tensor, prompt: Tensor | None = None) -> Tensor:
        """``P(a > b | prompt)``, shape ``(n,)``; exactly ``1 - P(b > a)``."""
        return preference_probability(self(a, b, prompt))

    def logit_matrix(self, emb: Tensor, prompt: Tensor | None = None) -> Tensor:
        """All-pairs logits ``S[i, j] = s(i > j)`` of ``m`` responses to one prompt
        (``prompt`` shape ``(d_p,)`` or ``None``); ``S`` is skew-symmetric. Costs ``m``
        embeddings, not ``m^2`` forward passes."""
        v = self.embed(emb)  # (m, 2k)
        lam = self.eigenvalues(None if prompt is None else prompt.reshape(1, -1))
        return gpm_logit(v[:, None, :], v[None, :, :], lam) / self.config.tau  # (m, m)


# -- training ---------------------------------------------------------------------------
@renamed_fields(lr="learning_rate")
@dataclass(frozen=True)
class EmbeddingFitConfig:
    """Optimisation settings for heads trained on precomputed embeddings.

    Attributes:
        steps: optimiser steps (one minibatch each).
        batch_size: pairs per step (capped at the number of pairs).
        learning_rate: AdamW learning rate.
        weight_decay: AdamW decoupled weight decay.
        label_smoothing: ``eps`` in ``-(1-eps) log sigmoid(s) - eps log sigmoid(-s)``.
    """

    steps: int = 300
    batch_size: int = 256
    learning_rate: float = 1e-2
    weight_decay: float = 0.0
    label_smoothing: float = 0.0


def as_float_tensor(x: ArrayLike | Tensor) -> Tensor:
    """A tensor of ``x`` without a copy where possible: float32 and float64 stay as they
    are, anything else (ints, bools, float16) becomes float32."""
    t = torch.as_tensor(x)
    return t if t.dtype in (torch.float32, torch.float64) else t.to(torch.float32)


def _as_context(x: ArrayLike | Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """Integer context (user ids) stays integer; float context takes the pairs' dtype."""
    if x is None:
        return None
    t = torch.as_tensor(x)
    return t.to(dtype) if torch.is_floating_point(t) else t.long()


def train_pairwise(
    model: nn.Module,
    chosen: ArrayLike | Tensor,
    rejected: ArrayLike | Tensor,
    *,
    context: ArrayLike | Tensor | None = None,
    config: EmbeddingFitConfig = EmbeddingFitConfig(),
    generator: torch.Generator | None = None,
) -> list[float]:
    """Fit ``model`` in place by minimising the mean loss of "chosen beats rejected";
    returns the loss of every step.

    A model with a ``pair_loss(chosen, rejected, context, *, label_smoothing)`` method
    (:class:`GeneralPreferenceModel`, the pluralistic model) is trained on that -- its entry
    of :data:`~prefkit.reward.losses.REWARD_LOSSES` -- any other on Bradley-Terry
    (:func:`prefkit.choice.log_bradley_terry`) over ``model(chosen, rejected, context) ->
    logits``.

    One flat loop: shuffled minibatches (reshuffled each epoch with ``generator``), AdamW.
    ``context`` rows travel with the pairs: prompt embeddings for GPM, user ids for PAL,
    ``None`` for a plain reward head. Only parameters with ``requires_grad`` are updated;
    float inputs are cast to their dtype.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    dtype = params[0].dtype if params else torch.float32
    x_c = as_float_tensor(chosen).to(dtype)  # (n, d)
    x_r = as_float_tensor(rejected).to(dtype)  # (n, d)
    ctx = _as_context(context, dtype)
    n = x_c.shape[0]
    if n == 0 or x_r.shape[0] != n or (ctx is not None and ctx.shape[0] != n):
        raise ValueError(f"need n > 0 pairs with matching rows; got {x_c.shape}, {x_r.shape}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    bs = min(config.batch_size, n)
    order, pos = torch.randperm(n, generator=g), 0
    history: list[float] = []
    model.train()
    for _ in range(config.steps):
        # -- next minibatch (a fresh permutation once the current one is used up)
        if pos + bs > n:
            order, pos = torch.randperm(n, generator=g), 0
        idx = order[pos : pos + bs]
        pos += bs
        # -- loss and step
        part = None if ctx is None else ctx[idx]
        if hasattr(model, "pair_loss"):  # its entry of REWARD_LOSSES (GPM, PAL)
            loss = model.pair_loss(x_c[idx], x_r[idx], part,
                                   label_smoothing=config.label_smoothing).reduce()
        else:  # Bradley-Terry over the logits model(...) returns
            logits = model(x_c[idx], x_r[idx], part)  # (B,)
            loss = -log_bradley_terry(logits, label_smoothing=float(config.label_smoothing)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    model.eval()
    return history


def fit_general_preference(
    chosen: ArrayLike | Tensor,
    rejected: ArrayLike | Tensor,
    *,
    prompt: ArrayLike | Tensor | None = None,
    model_config: GPMConfig = GPMConfig(),
    config: EmbeddingFitConfig = EmbeddingFitConfig(),
    generator: torch.Generator | None = None,
) -> tuple[GeneralPreferenceModel, list[float]]:
    """Train a :class:`GeneralPreferenceModel` on embedding pairs where ``chosen[i]`` beat
    ``rejected[i]``; with ``prompt`` embeddings the eigenvalue gate is learnt too.

    Args:
        chosen, rejected: response embeddings, shape ``(n, d)`` (numpy or torch).
        prompt: prompt embeddings, shape ``(n, d_p)``, or ``None`` for no gate.
        model_config: the head (:class:`GPMConfig`).
        config: the optimisation (:class:`EmbeddingFitConfig`).
        generator: seeds the initial weights and the minibatch order.

    Returns:
        The trained model (in eval mode) and the per-step training loss.
    """
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    x_c = as_float_tensor(chosen)
    p = None if prompt is None else as_float_tensor(prompt).to(x_c.dtype)
    model = GeneralPreferenceModel(
        x_c.shape[1], model_config, prompt_dim=None if p is None else p.shape[1], generator=g
    ).to(x_c.dtype)
    history = train_pairwise(model, x_c, rejected, context=p, config=config, generator=g)
    return model, history


# -- synthetic data ---------------------------------------------------------------------
def simulate_cyclic_preferences(
    n_pairs: int,
    *,
    rng: np.random.Generator,
    n_classes: int = 3,
    noise_dims: int = 5,
    noise: float = 0.2,
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Intransitive pairs: rock-paper-scissors generalised to a cyclic tournament.

    Class ``c`` beats classes ``c+1, ..., c+(n_classes-1)/2`` (mod ``n_classes``, which
    must be odd), so every class wins exactly half of its match-ups and the Bradley-Terry
    maximum-likelihood scores are all equal: a scalar reward can only guess. A response of
    class ``c`` has features ``[onehot(c) + noise * N(0, I), N(0, I_noise_dims)]``. The
    ordered class pairs appear equally often (up to ``n_pairs`` mod their number), shuffled.

    Returns:
        ``chosen``, ``rejected``: shape ``(n_pairs, n_classes + noise_dims)``.
    """
    if n_classes < 3 or n_classes % 2 == 0:
        raise ValueError(f"n_classes must be odd and >= 3 for a cyclic tournament, got {n_classes}")
    types = np.array([(a, b) for a in range(n_classes) for b in range(n_classes) if a != b])
    ca, cb = types[rng.permutation(np.arange(n_pairs) % len(types))].T  # (n,), (n,)
    a_wins = (cb - ca) % n_classes <= (n_classes - 1) // 2

    def features(c: NDArray[np.int64]) -> NDArray[np.float64]:
        x = np.zeros((c.size, n_classes + noise_dims))
        x[np.arange(c.size), c] = 1.0
        x[:, :n_classes] += noise * rng.standard_normal((c.size, n_classes))
        x[:, n_classes:] = rng.standard_normal((c.size, noise_dims))
        return x

    xa, xb = features(ca), features(cb)
    chosen = np.where(a_wins[:, None], xa, xb).astype(np.float32)
    rejected = np.where(a_wins[:, None], xb, xa).astype(np.float32)
    return chosen, rejected
