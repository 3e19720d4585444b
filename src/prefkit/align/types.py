"""The two records every alignment loss speaks: what goes in and what comes out.

A preference-alignment loss never sees a model. It sees, for each of ``B`` prompts, the
log-probabilities that the policy (and, for most losses, a frozen reference) assigns to
``K`` responses, and returns one loss per prompt plus the implicit rewards it implies:

* ``K = 2`` pairwise (DPO and its family): column 0 is *chosen*, column 1 *rejected*;
* ``K > 2`` listwise (PRO / Plackett-Luce DPO): responses ranked best first, ``valid``
  masking padding when prompts have different numbers of responses;
* ``K = 1`` unpaired (KTO): ``label`` says desirable (True) or undesirable (False).

This is the scorer-plus-link idea of the rest of prefkit: the *scorer* is
``beta * (log pi_theta(y|x) - log pi_ref(y|x))`` (or a length-normalised log-probability
for reference-free losses) and the *link* is Bradley-Terry (DPO), Plackett-Luce
(listwise) or another (IPO's squared loss, hinge, ...).

Shapes: every tensor's first dimension is ``B``. Sequence log-probabilities are sums over
the scored (response) tokens, accumulated in float32.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

__all__ = ["SequenceLogps", "LossOutput"]


@dataclass
class SequenceLogps:
    """Per-response log-probabilities for one batch (the input of every alignment loss).

    policy:       (B, K) summed log pi_theta(response tokens | prompt); carries gradients.
    reference:    (B, K) the same under the frozen reference (no gradients), or None for
                  reference-free losses (SimPO, ORPO, ...).
    lengths:      (B, K) number of scored response tokens (float), for length-normalised
                  losses (SimPO, ORPO, IPO's average, the SFT term).
    token_kl:     (B, K) sum over response tokens of KL(pi_ref(.|ctx_t) || pi_theta(.|ctx_t)),
                  the sequential KL of token-level DPO (TDPO); None unless asked for.
    valid:        (B, K) bool, False for padding responses of listwise batches; None = all.
    label:        (B,) bool for unpaired data (KTO): True desirable; None otherwise.
    kl_policy:    (B,) log pi_theta of *mismatched* (prompt, completion) pairs, KTO's KL
                  estimate; None unless the loss needs it.
    kl_reference: (B,) the same under the reference.
    """

    policy: Tensor
    lengths: Tensor
    reference: Tensor | None = None
    token_kl: Tensor | None = None
    valid: Tensor | None = None
    label: Tensor | None = None
    kl_policy: Tensor | None = None
    kl_reference: Tensor | None = None

    def __post_init__(self) -> None:
        if self.policy.ndim != 2:
            raise ValueError(f"policy log-probs must be (batch, K), got shape {tuple(self.policy.shape)}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in {"lengths", "reference", "token_kl", "valid"} and value is not None:
                if value.shape != self.policy.shape:
                    raise ValueError(
                        f"{f.name} has shape {tuple(value.shape)} but policy has "
                        f"{tuple(self.policy.shape)}; both must be (batch, K)"
                    )
            if f.name in {"label", "kl_policy", "kl_reference"} and value is not None:
                if value.shape != self.policy.shape[:1]:
                    raise ValueError(
                        f"{f.name} has shape {tuple(value.shape)}; expected ({self.policy.shape[0]},)"
                    )

    @property
    def batch_size(self) -> int:
        return int(self.policy.shape[0])

    @property
    def num_responses(self) -> int:
        return int(self.policy.shape[1])

    def log_ratios(self) -> Tensor:
        """(B, K) log pi_theta - log pi_ref; raises if there is no reference."""
        if self.reference is None:
            raise ValueError("this loss needs reference log-probabilities (reference=None was given)")
        return self.policy - self.reference

    def detach(self) -> SequenceLogps:
        return replace(
            self,
            **{f.name: getattr(self, f.name).detach() for f in fields(self)
               if isinstance(getattr(self, f.name), Tensor)},
        )


@dataclass
class LossOutput:
    """What every alignment loss returns.

    losses:  (B,) per-example losses with gradients (the trainer takes their mean over the
             effective batch, so gradient accumulation is exact).
    rewards: (B, K) detached implicit rewards in the loss's own scale (``beta * log-ratio``
             for DPO; ``beta * average log-prob`` for SimPO; ...), column order as the input.
    """

    losses: Tensor
    rewards: Tensor

    def __post_init__(self) -> None:
        if self.losses.ndim != 1:
            raise ValueError(f"losses must be per example (batch,), got shape {tuple(self.losses.shape)}")
        self.rewards = self.rewards.detach()

    @property
    def chosen_rewards(self) -> Tensor:
        return self.rewards[:, 0]

    @property
    def rejected_rewards(self) -> Tensor:
        """The best of the non-chosen responses' rewards (the rejected one when K = 2)."""
        if self.rewards.shape[1] < 2:
            raise ValueError("unpaired losses have no rejected rewards")
        return self.rewards[:, 1:].max(dim=1).values

    @property
    def margins(self) -> Tensor:
        return self.chosen_rewards - self.rejected_rewards

    @property
    def accuracy(self) -> Tensor:
        """(B,) 1.0 where the chosen response gets a strictly higher reward than every other."""
        return (self.margins > 0).to(torch.float32)
