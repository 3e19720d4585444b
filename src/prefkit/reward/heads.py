"""Reward heads on frozen embeddings: ``r(x, y) = head(emb(prompt + response))``.

Every head maps the embedding of a prompt-and-response text ``(B, D)`` (and, for heads
that look at the prompt alone, the prompt's embedding ``(B, D)``) to one reward per text
``(B,)`` or one per attribute ``(B, A)``. :func:`score_pairs` runs a head on both sides of
a batch of pairs in one pass; the losses in :mod:`prefkit.reward.losses` take it from there.

* :class:`LinearHead` -- ``w . e + b`` (zero-initialised, so training starts at
  ``P = 0.5`` for every pair and the Bradley-Terry fit is a convex problem).
* :class:`MLPHead` -- ``Linear -> GELU -> Dropout`` blocks, then a zero-initialised output.
* :class:`MultiObjectiveHead` -- ArmoRM (Wang et al. 2024, "Interpretable Preferences via
  Multi-Objective Reward Modeling and Mixture-of-Experts"): per-attribute linear regression
  heads ``r_k(x, y) = w_k . e(x, y) + b_k`` and a gating MLP on the prompt's embedding,
  ``g(x) = beta * softmax(MLP(e(x)) / T)`` (non-negative, summing to ``beta``), combined as
  ``R(x, y) = sum_k g_k(x) r_k(x, y)``. As in the paper, training runs in two stages:
  ``stage="attributes"`` fits the regression heads on ratings (the ``regression`` loss, or
  the closed-form ridge probe :meth:`MultiObjectiveHead.fit_attributes`, which is what the
  paper does), then ``stage="gating"`` freezes them and trains the gate and ``beta`` with
  Bradley-Terry on pairs. (The paper's extra verbosity-decorrelation matrix is left out.)

``HEADS`` maps names to classes; a head's :meth:`~RewardHead.spec` is what the output
folder records to rebuild it. :class:`PairFeatures` holds embedded pairs (the input of
heads, losses and the trainer) and :func:`embed_pairs` makes it from text pairs.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from prefkit.reward.backbones import FrozenEncoder, prompt_texts

__all__ = [
    "HEADS",
    "PairFeatures",
    "RewardHead",
    "LinearHead",
    "MLPHead",
    "MultiObjectiveHead",
    "build_head",
    "embed_pairs",
    "score_pairs",
]


class RewardHead(nn.Module):
    """Base class: ``forward(emb, prompt_emb=None) -> (B,)`` or ``(B, A)`` rewards."""

    name: str = ""
    #: whether ``forward`` needs the prompt's own embedding
    needs_prompt: bool = False

    def __init__(self, dim: int, **kwargs: Any) -> None:
        super().__init__()
        self.dim = int(dim)
        self._kwargs = dict(kwargs)

    def spec(self) -> dict[str, Any]:
        """``{"name", "dim", **kwargs}``: enough for :func:`build_head` to rebuild it."""
        return {"name": self.name, "dim": self.dim, **self._kwargs}

    def forward(self, emb: Tensor, prompt_emb: Tensor | None = None) -> Tensor:
        raise NotImplementedError


def _zero_linear(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _squeeze(x: Tensor, n_outputs: int) -> Tensor:
    return x[:, 0] if n_outputs == 1 else x


class LinearHead(RewardHead):
    """``r = w . e + b`` with ``n_outputs`` outputs (1: a scalar reward)."""

    name = "linear"

    def __init__(self, dim: int, *, n_outputs: int = 1) -> None:
        super().__init__(dim, n_outputs=n_outputs)
        self.n_outputs = n_outputs
        self.linear = _zero_linear(dim, n_outputs)

    def forward(self, emb: Tensor, prompt_emb: Tensor | None = None) -> Tensor:
        return _squeeze(self.linear(emb), self.n_outputs)  # (B,) or (B, A)


class MLPHead(RewardHead):
    """``n_layers`` blocks of ``Linear(hidden) -> GELU -> Dropout``, then a linear output."""

    name = "mlp"

    def __init__(
        self, dim: int, *, hidden: int = 256, n_layers: int = 1, dropout: float = 0.1,
        n_outputs: int = 1,
    ) -> None:
        super().__init__(dim, hidden=hidden, n_layers=n_layers, dropout=dropout,
                         n_outputs=n_outputs)
        self.n_outputs = n_outputs
        blocks: list[nn.Module] = []
        width = dim
        for _ in range(n_layers):
            blocks += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        self.body = nn.Sequential(*blocks)
        self.out = _zero_linear(width, n_outputs)

    def forward(self, emb: Tensor, prompt_emb: Tensor | None = None) -> Tensor:
        return _squeeze(self.out(self.body(emb)), self.n_outputs)  # (B,) or (B, A)


class MultiObjectiveHead(RewardHead):
    """ArmoRM-style attribute heads plus a prompt-conditioned gate (module docstring).

    Args:
        dim: embedding size (of both the response text and the prompt).
        n_attributes: number of rated attributes ``A``.
        stage: ``"attributes"`` -- ``forward`` returns the ``(B, A)`` attribute rewards and
            only the attribute heads train; ``"gating"`` -- ``forward`` returns the combined
            ``(B,)`` reward and only the gate (and ``beta``) train.
        hidden, n_hidden, dropout: the gating MLP (ArmoRM: 3 x 1024 on a 4096-d LLM state;
            smaller defaults suit a 384-d MiniLM).
        temperature: softmax temperature ``T`` of the gate (ArmoRM: 10).
        attributes: optional attribute names, recorded for reading the gate's weights.
    """

    name = "multi_objective"
    needs_prompt = True

    def __init__(
        self, dim: int, *, n_attributes: int, stage: str = "gating", hidden: int = 256,
        n_hidden: int = 2, dropout: float = 0.1, temperature: float = 10.0,
        attributes: list[str] | None = None,
    ) -> None:
        if stage not in ("attributes", "gating"):
            raise ValueError(f"stage must be 'attributes' or 'gating', got {stage!r}")
        if attributes is not None and len(attributes) != n_attributes:
            raise ValueError(f"{len(attributes)} attribute names for {n_attributes} attributes")
        super().__init__(dim, n_attributes=n_attributes, stage=stage, hidden=hidden,
                         n_hidden=n_hidden, dropout=dropout, temperature=temperature,
                         attributes=attributes)
        self.stage = stage
        self.temperature = float(temperature)
        self.attribute_heads = nn.Linear(dim, n_attributes)
        layers: list[nn.Module] = []
        width = dim
        for _ in range(n_hidden):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, n_attributes))
        self.gate_mlp = nn.Sequential(*layers)
        self.log_beta = nn.Parameter(torch.zeros(()))  # beta = exp(log_beta) > 0, starts at 1
        training_attrs = stage == "attributes"
        self.attribute_heads.requires_grad_(training_attrs)
        self.gate_mlp.requires_grad_(not training_attrs)
        self.log_beta.requires_grad_(not training_attrs)

    def attribute_rewards(self, emb: Tensor) -> Tensor:
        """``r_k(x, y)`` for every attribute, ``(B, A)``."""
        return self.attribute_heads(emb)

    def gate(self, prompt_emb: Tensor) -> Tensor:
        """``g(x) = beta * softmax(MLP(e(x)) / T)``: non-negative weights, ``(B, A)``."""
        logits = self.gate_mlp(prompt_emb)  # (B, A)
        return self.log_beta.exp() * torch.softmax(logits / self.temperature, dim=-1)

    def forward(self, emb: Tensor, prompt_emb: Tensor | None = None) -> Tensor:
        if self.stage == "attributes":
            return self.attribute_rewards(emb)  # (B, A)
        if prompt_emb is None:
            raise ValueError("the multi-objective head's gate needs the prompt embeddings")
        return (self.gate(prompt_emb) * self.attribute_rewards(emb)).sum(-1)  # (B,)

    @torch.no_grad()
    def fit_attributes(self, emb: Tensor, ratings: Tensor, *, alpha: float = 1.0) -> None:
        """ArmoRM stage 1 in closed form: one ridge regression per attribute,
        ``min_w ||X w + b - y||^2 + alpha ||w||^2`` over the rows where attribute ``k`` is
        rated (NaN = not rated), intercept unpenalised. Overwrites the attribute heads."""
        x = emb.to(torch.float64)  # (N, D)
        y = ratings.to(torch.float64).reshape(x.shape[0], -1)  # (N, A)
        eye = torch.eye(x.shape[1], dtype=torch.float64)
        for k in range(y.shape[1]):
            seen = ~torch.isnan(y[:, k])
            if not bool(seen.any()):
                raise ValueError(f"attribute {k} has no ratings")
            xs, ys = x[seen], y[seen, k]
            mx, my = xs.mean(0), ys.mean()
            xc = xs - mx
            w = torch.linalg.solve(xc.T @ xc + alpha * eye, xc.T @ (ys - my))
            self.attribute_heads.weight[k] = w.to(self.attribute_heads.weight.dtype)
            self.attribute_heads.bias[k] = (my - mx @ w).to(self.attribute_heads.bias.dtype)


HEADS: dict[str, type[RewardHead]] = {
    "linear": LinearHead,
    "mlp": MLPHead,
    "multi_objective": MultiObjectiveHead,
}


def build_head(name: str, dim: int, **kwargs: Any) -> RewardHead:
    """A head by name (``linear``, ``mlp``, ``multi_objective``) for ``dim``-d embeddings;
    the error lists the known names. Parameters come from the global torch RNG: seed it (or
    wrap the call in ``torch.random.fork_rng``) for reproducible initial weights."""
    try:
        cls = HEADS[name]
    except KeyError:
        raise ValueError(f"unknown reward head {name!r}; choose one of {sorted(HEADS)}") from None
    return cls(dim, **kwargs)


def score_pairs(
    head: RewardHead, chosen: Tensor, rejected: Tensor, prompt: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Rewards of both sides of ``B`` pairs in one forward pass: ``(r_chosen, r_rejected)``.

    ``chosen``, ``rejected``: ``(B, D)`` embeddings of prompt + response; ``prompt``:
    ``(B, D)`` embeddings of the prompt alone (used by heads with ``needs_prompt``).
    """
    n = chosen.shape[0]
    both = torch.cat([chosen, rejected])  # (2B, D)
    p = torch.cat([prompt, prompt]) if prompt is not None else None  # (2B, D)
    if head.needs_prompt and p is None:
        raise ValueError(f"the {head.name!r} head needs prompt embeddings; embed the prompts too")
    out = head(both, p)  # (2B,) or (2B, A)
    return out[:n], out[n:]


# -- embedded pairs: the heads' (and the trainer's) input ------------------------------
@dataclass(frozen=True)
class PairFeatures:
    """Embedded preference pairs: the trainer's input (tensors only, no text).

    ``chosen``/``rejected``/``prompt``: ``(N, D)`` float32 embeddings of prompt + response
    (and of the prompt alone, for heads that need it); ``margin`` ``(N,)``;
    ``chosen_ratings``/``rejected_ratings`` ``(N, A)`` (NaN = not rated); ``backbone``: the
    encoder's :meth:`~prefkit.reward.FrozenEncoder.describe`.
    """

    chosen: Tensor
    rejected: Tensor
    prompt: Tensor | None = None
    margin: Tensor | None = None
    chosen_ratings: Tensor | None = None
    rejected_ratings: Tensor | None = None
    backbone: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        n = self.chosen.shape[0]
        for name in ("chosen", "rejected", "prompt", "margin", "chosen_ratings",
                     "rejected_ratings"):
            v = getattr(self, name)
            if v is None:
                continue
            v = torch.as_tensor(v, dtype=torch.float32)
            if v.shape[0] != n:
                raise ValueError(f"{name} has {v.shape[0]} rows, chosen has {n}")
            object.__setattr__(self, name, v)
        if self.rejected.shape != self.chosen.shape:
            raise ValueError("chosen and rejected embeddings differ in shape")

    def __len__(self) -> int:
        return int(self.chosen.shape[0])

    @property
    def dim(self) -> int:
        return int(self.chosen.shape[1])

    def select(self, idx: Tensor | Sequence[int]) -> PairFeatures:
        """The pairs at an index array, every column kept."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        return PairFeatures(**{f.name: (getattr(self, f.name)[idx]
                                        if isinstance(getattr(self, f.name), Tensor)
                                        else getattr(self, f.name))
                               for f in dataclasses.fields(self)})

    def batch(self) -> dict[str, Tensor]:
        """The loss's ``batch`` mapping (side information only)."""
        return {k: v for k in ("margin", "chosen_ratings", "rejected_ratings")
                if (v := getattr(self, k)) is not None}

    def digest(self) -> str:
        """SHA-256 of every tensor (a checkpoint's guard against resuming on other data)."""
        h = hashlib.sha256()
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                h.update(f.name.encode() + v.contiguous().numpy().tobytes())
        return h.hexdigest()


def embed_pairs(
    pairs: Any, encoder: FrozenEncoder, *, prompts: bool = False, batch_size: int = 32,
    progress: bool = False, chosen_ratings: Any = None, rejected_ratings: Any = None,
) -> PairFeatures:
    """Embed :class:`~prefkit.data.text.TextPairs` with ``encoder``: each side's vector is
    the encoder's feature blocks (:attr:`FrozenEncoder.features`; with only ``joint``, the
    embedding of ``texts("chosen")``/``texts("rejected")``), the prompts' own embeddings come
    too when ``prompts=True``; the pairs' ``margin`` and any ratings ``(N, A)`` come along."""
    ptexts = prompt_texts(pairs.prompt, pairs.messages_prompt)
    if tuple(getattr(encoder, "features", ("joint",))) == ("joint",):
        c = encoder.encode(pairs.texts("chosen"), batch_size=batch_size, progress=progress)
        r = encoder.encode(pairs.texts("rejected"), batch_size=batch_size, progress=progress)
    else:
        c = encoder.pair_vectors(ptexts, pairs.texts("chosen"), pairs.chosen,
                                 batch_size=batch_size, progress=progress)
        r = encoder.pair_vectors(ptexts, pairs.texts("rejected"), pairs.rejected,
                                 batch_size=batch_size, progress=progress)
    p = encoder.encode(ptexts, batch_size=batch_size, progress=progress) if prompts else None

    def t(x: Any) -> Tensor | None:
        return None if x is None else torch.as_tensor(np.asarray(x, dtype=np.float32))

    return PairFeatures(t(c), t(r), t(p), t(pairs.margin),  # type: ignore[arg-type]
                        t(chosen_ratings), t(rejected_ratings), encoder.describe())
