"""The two records every alignment loss speaks: what goes in and what comes out.

A preference-alignment loss never sees a model. It sees, for each of ``B`` prompts, the
log-probabilities that the policy (and, for most losses, a frozen reference) assigns to
``K`` responses, and returns one loss per prompt plus the implicit rewards it implies (a
:class:`~prefkit.losses.LossOutput`, the output every prefkit loss shares, re-exported here):

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

from torch import Tensor

from prefkit.losses import LossOutput

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
