"""What every RL policy loss takes: per-token log-probabilities of sampled completions.

An online RL loss never sees a model either. For each of ``B`` sampled completions it sees
the per-token log-probabilities the current policy gives its tokens (with gradients), those
of the policy that sampled them (``old``: the importance-sampling denominator), optionally
those of a frozen reference (for a KL term), which tokens count (``mask``), and an
advantage per completion (``(B,)``) or per token (``(B, T)``).

Shapes: ``(B, T)`` with ``T`` the longest completion of the batch; positions past a
completion's end are padding (``mask`` False, values ignored). Log-probabilities are float32.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from prefkit.losses import LossOutput

__all__ = ["LossOutput", "TokenLogps"]


@dataclass
class TokenLogps:
    """Per-token log-probabilities of ``B`` sampled completions (the input of every RL loss).

    policy:     (B, T) log pi_theta(token | context); carries gradients.
    mask:       (B, T) True (or 1.0) for the completion tokens that count.
    advantages: (B,) one advantage per completion, or (B, T) per token (REINFORCE++).
    old:        (B, T) log-probs under the policy that sampled (pi_old), no gradients;
                None: the sample is on-policy, ``old = policy.detach()`` (ratio 1).
    reference:  (B, T) log-probs under the frozen reference, or None (no KL term).
    values:     (B, T) the value head's estimates now (with gradients; PPO), or None.
    old_values: (B, T) its estimates when the batch was sampled (PPO's value clipping).
    returns:    (B, T) the value targets (PPO: advantages + old values, by GAE).
    """

    policy: Tensor
    mask: Tensor
    advantages: Tensor
    old: Tensor | None = None
    reference: Tensor | None = None
    values: Tensor | None = None
    old_values: Tensor | None = None
    returns: Tensor | None = None

    def __post_init__(self) -> None:
        if self.policy.ndim != 2:
            raise ValueError(f"policy log-probs must be (batch, tokens), got shape "
                             f"{tuple(self.policy.shape)}")
        shape = tuple(self.policy.shape)
        for name in ("mask", "old", "reference", "values", "old_values", "returns"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != shape:
                raise ValueError(f"{name} has shape {tuple(value.shape)} but policy has "
                                 f"{shape}; both must be (batch, tokens)")
        if tuple(self.advantages.shape) not in (shape[:1], shape):
            raise ValueError(f"advantages must be ({shape[0]},) or {shape}, got "
                             f"{tuple(self.advantages.shape)}")

    @property
    def batch_size(self) -> int:
        return int(self.policy.shape[0])

    def old_logps(self) -> Tensor:
        """(B, T) the sampling policy's log-probs (the policy's, detached, when on-policy)."""
        return self.policy.detach() if self.old is None else self.old.detach()

    def float_mask(self) -> Tensor:
        return self.mask.to(self.policy.dtype)

    def lengths(self) -> Tensor:
        """(B,) tokens that count per completion (float)."""
        return self.float_mask().sum(dim=1)
