"""The one loss contract of prefkit: what every training loss returns, how its caller
reduces it, how a tied prediction counts, and the registry entry that names a loss.

Reward losses (:data:`prefkit.reward.losses.REWARD_LOSSES`) and alignment losses
(:data:`prefkit.align.losses.ALIGN_LOSSES`) differ in what they take -- two scores per
pair (or two preference embeddings), or the log-probabilities of ``K`` responses -- and
agree on everything else:

* a loss returns a :class:`LossOutput`: per-element values with gradients (``losses``),
  the ``normaliser`` its caller divides their sum by, and detached diagnostics (``rewards``
  ``(B, K)``, ``margins`` ``(B,)``, ``accuracy`` by :func:`preference_accuracy`, and any
  loss-specific ``diagnostics``);
* the **caller reduces**: ``sum(losses) / normaliser``, over one batch
  (:meth:`LossOutput.reduce`) or several (:func:`reduce_outputs`). ``normaliser`` is
  additive: over micro-batches, processes or a whole optimizer step, the denominator is
  the sum of the parts' normalisers, so gradient accumulation stays exact whatever the
  element. A loop that accumulates divides each micro-batch's sum by the step's total,
  which it knows before the first backward pass (the number of examples, or of active
  tokens: both come from the data, not the model);
* a loss is registered as a :class:`LossSpec`: its function, the kind of data it takes,
  its keyword hyper-parameters with their defaults (unknown names refused), the paper,
  what else its input must hold (``needs``) and any extra pass it needs once per optimizer
  step (:class:`StepPass`, e.g. KTO's KL estimate), so a training loop asks the spec and
  never names a loss.

What one element of ``losses`` is, and its normaliser, for the losses prefkit has and
those that come next:

=============================  =========================  ==================================
loss                           element (``losses``)       ``normaliser``
=============================  =========================  ==================================
reward, DPO family, KTO, ...   one per example ``(B,)``   ``B`` (the default)
GRPO / DAPO (token level)      one per token ``(B, T)``   active tokens of the whole batch
Dr. GRPO                       one per token ``(B, T)``   a constant (``B * max_tokens``)
PPO                            policy + value, per token  active tokens; each term, detached,
                                                          in ``diagnostics``
process rewards (steps)        one per step ``(B, S)``    labelled steps of the batch
=============================  =========================  ==================================

Elements that do not count (padding tokens, unlabelled steps) hold 0.

**Ties.** :func:`preference_accuracy` is the one accuracy rule, used by the reward
losses, the reward trainers' metrics and the alignment trainer's metrics: the chosen
response is right when its margin is positive, wrong when negative, and a **tie (margin
exactly 0) counts 0.5**. RewardBench (and TRL's logged ``rewards/accuracies``) counts a
tie as wrong. prefkit counts half because a tie says nothing either way: 0.5 is the
expected accuracy of breaking it with a fair coin, so a constant scorer, or a DPO policy
still equal to its reference at step 0, reads exactly chance (0.5) instead of 0, and the
accuracy of ``(chosen, rejected)`` plus that of ``(rejected, chosen)`` is always 1. The
difference only shows on exact ties; ``ties="wrong"`` gives RewardBench's rule where a
number must be compared with theirs (:mod:`prefkit.reward.rewardbench` reproduces their
scoring with it).

Example:
    >>> import torch
    >>> preference_accuracy(torch.tensor([2.0, 0.0, -1.0])).tolist()
    [1.0, 0.5, 0.0]
    >>> preference_accuracy(torch.tensor([2.0, 0.0, -1.0]), ties="wrong").tolist()
    [1.0, 0.0, 0.0]
    >>> out = LossOutput(torch.tensor([0.25, 0.75]), rewards=torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    >>> float(out.reduce()), out.margins.tolist(), out.accuracy.tolist()
    (0.5, [1.0, 0.0], [1.0, 0.5])
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "TIES",
    "LossOutput",
    "LossSpec",
    "StepPass",
    "preference_accuracy",
    "reduce_outputs",
    "keyword_defaults",
]

#: the tie rules of :func:`preference_accuracy`: prefkit's ``"half"`` (the default) and
#: RewardBench's ``"wrong"``
TIES = ("half", "wrong")


def preference_accuracy(margins: Tensor, *, ties: str = "half") -> Tensor:
    """Per-example accuracy of predicted preferences: 1 where ``margins > 0`` (the chosen
    response scored higher), 0 where ``margins < 0``, and for a tie (``margins == 0``)
    0.5 (``ties="half"``, prefkit's rule) or 0 (``ties="wrong"``, RewardBench's). A NaN
    margin counts 0. The result has the margins' floating dtype (float32 otherwise) and
    no gradient. See the module docstring for why prefkit counts a tie half.
    """
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    m = margins.detach()
    dtype = m.dtype if m.is_floating_point() else torch.float32
    right = (m > 0).to(dtype)
    if ties == "wrong":
        return right
    return right + 0.5 * (m == 0).to(dtype)


@dataclass
class LossOutput:
    """What every training loss returns (reward and alignment alike).

    losses:      per-element values with gradients: ``(B,)`` per example, ``(B, T)`` per
                 token, ``(B, S)`` per step; elements that do not count hold 0.
    rewards:     ``(B, K)`` detached scores of the ``K`` responses in the loss's own scale
                 (the reward model's outputs; ``beta * log-ratio`` for DPO; ...), column 0
                 the chosen (best) one; ``None`` when the loss has no per-response score
                 (GPM scores pairs, not responses; multi-attribute regression).
    margins:     ``(B,)`` detached: how much the chosen response is preferred, the link's
                 argument where there is one (``r_c - r_r``; GPM's skew-symmetric logit).
                 Derived from ``rewards`` when ``K >= 2`` and not given: column 0 minus
                 the best of the others.
    normaliser:  what the caller divides ``losses.sum()`` by; this batch's share of the
                 denominator (additive over batches). Default: the number of examples.
    diagnostics: other detached per-example values (``squared_error``, PPO's separate
                 terms, ...).

    ``accuracy`` (``(B,)``, :func:`preference_accuracy`) follows from the margins.
    """

    losses: Tensor
    rewards: Tensor | None = None
    margins: Tensor | None = None
    normaliser: float | Tensor | None = None
    diagnostics: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.losses.ndim < 1:
            raise ValueError("losses must be per element (batch, ...), got a scalar; the "
                             "caller reduces")
        if self.rewards is not None:
            self.rewards = self.rewards.detach()
            if self.rewards.ndim != 2:
                raise ValueError(f"rewards must be (batch, K), got shape "
                                 f"{tuple(self.rewards.shape)}")
            if self.margins is None and self.rewards.shape[1] >= 2:
                self.margins = self.rewards[:, 0] - self.rewards[:, 1:].max(dim=1).values
        if self.margins is not None:
            self.margins = self.margins.detach()
        if self.normaliser is None:
            self.normaliser = self.losses.shape[0]
        self.diagnostics = {k: v.detach() for k, v in self.diagnostics.items()}

    @property
    def chosen_rewards(self) -> Tensor:
        if self.rewards is None:
            raise ValueError("this loss gives no per-response rewards")
        return self.rewards[:, 0]

    @property
    def rejected_rewards(self) -> Tensor:
        """The best of the non-chosen responses' rewards (the rejected one when K = 2)."""
        if self.rewards is None or self.rewards.shape[1] < 2:
            raise ValueError("this loss gives no rejected rewards (unpaired data, or no "
                             "per-response rewards)")
        return self.rewards[:, 1:].max(dim=1).values

    @property
    def accuracy(self) -> Tensor | None:
        """``(B,)`` prefkit's accuracy (a tie counts 0.5); None without margins."""
        return None if self.margins is None else preference_accuracy(self.margins)

    def reduce(self) -> Tensor:
        """``losses.sum() / normaliser``: the loss to minimise for this batch alone."""
        return self.losses.sum() / self.normaliser

    def as_dict(self) -> dict[str, Tensor]:
        """The detached per-example diagnostics by name: ``chosen_rewards``,
        ``rejected_rewards`` (pairs of scalar rewards), ``margins``, ``accuracy`` (where
        there are margins) and :attr:`diagnostics`."""
        out: dict[str, Tensor] = {}
        if self.rewards is not None and self.rewards.shape[1] >= 2:
            out["chosen_rewards"] = self.chosen_rewards
            out["rejected_rewards"] = self.rejected_rewards
        if self.margins is not None:
            out["margins"] = self.margins
            out["accuracy"] = preference_accuracy(self.margins)
        return out | self.diagnostics

    # the reward losses' earlier return value, ``losses, diagnostics = loss(...)``, so code
    # written against it keeps working
    def __iter__(self) -> Iterator[Any]:
        return iter((self.losses, self.as_dict()))

    def __getitem__(self, i: int) -> Any:
        return (self.losses, self.as_dict())[i]


def reduce_outputs(outputs: Iterable[LossOutput]) -> Tensor:
    """``sum of all losses / sum of all normalisers`` over several batches' outputs."""
    outs = list(outputs)
    if not outs:
        raise ValueError("reduce_outputs needs at least one LossOutput")
    total = outs[0].losses.sum()
    norm = outs[0].normaliser
    for o in outs[1:]:
        total = total + o.losses.sum()
        norm = norm + o.normaliser  # type: ignore[operator]
    return total / norm


@dataclass(frozen=True)
class StepPass:
    """An extra pass a loss needs once per optimizer step, without gradients, whose result
    it takes as a hyper-parameter (the whole step's value, so micro-batches and processes
    share one).

    hyper:          the hyper-parameter the result fills (``"kl_estimate"`` for KTO); a
                    value given in the config fixes it, and the pass is skipped.
    examples:       what the pass scores: ``"mismatched"`` -- each prompt with another
                    row's completion (its ``kl_completion``, fixed before training).
    statistic:      what it computes: ``"mean_log_ratio"`` -- the mean of
                    ``log pi_theta - log pi_ref`` over those examples.
    min_batch_size: the smallest ``batch_size`` the pass makes sense for (the mismatched
                    partners come from the same chunk of ``batch_size`` rows).
    """

    hyper: str
    examples: str = "mismatched"
    statistic: str = "mean_log_ratio"
    min_batch_size: int = 1

    def wanted(self, hyper: Mapping[str, Any]) -> bool:
        """Whether the pass runs: the config does not fix its value."""
        return hyper.get(self.hyper) is None


def keyword_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    """The keyword-only parameters of ``fn`` with their defaults (a loss's hyper-parameters)."""
    return {p.name: p.default for p in inspect.signature(fn).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one spec per loss
class LossSpec:
    """One registry entry: a loss function and what its input must hold.

    name:      the canonical registry name.
    fn:        ``fn(*inputs, **hyper) -> LossOutput``.
    kind:      the data it takes: ``"pairwise"`` (chosen, rejected), ``"listwise"`` (K >= 2
               ranked best first) or ``"unpaired"`` (K = 1, labelled).
    defaults:  its keyword hyper-parameters with their defaults (read-only).
    paper:     the citation.
    needs:     what its input must hold besides the scores (``"reference"``,
               ``"token_kl"``, ``"margin"``, ``"chosen_ratings"``, ...).
    step_pass: an extra pass per optimizer step (:class:`StepPass`), or None.

    Calling it fills the defaults, rejects unknown hyper-parameter names
    (:meth:`resolve`) and calls ``fn``. Its ``__name__`` and ``__doc__`` are ``fn``'s.
    """

    name: str
    fn: Callable[..., LossOutput]
    kind: str = "pairwise"
    defaults: Mapping[str, Any] = field(default_factory=dict)
    paper: str = ""
    needs: frozenset[str] = frozenset()
    step_pass: StepPass | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))
        object.__setattr__(self, "needs", frozenset(self.needs))
        object.__setattr__(self, "__doc__", self.fn.__doc__)

    @property
    def __name__(self) -> str:  # noqa: A003 (a spec reads like its function)
        return self.fn.__name__

    def check(self, key: str, value: Any) -> None:
        """Raise a ``ValueError`` for a hyper-parameter value where the loss is undefined
        (subclasses narrow it; the base accepts any)."""

    def resolve(self, **hyper: Any) -> dict[str, Any]:
        """The full hyper-parameters: defaults overridden by ``hyper`` (names and ranges
        checked, so a bad value fails before any training, with the fix)."""
        unknown = sorted(set(hyper) - set(self.defaults))
        if unknown:
            known = ", ".join(self.defaults) or "none"
            raise ValueError(f"unknown hyper-parameter(s) {unknown} for the {self.name!r} "
                             f"loss; it takes: {known}")
        resolved = {**self.defaults, **hyper}
        for key, value in resolved.items():
            self.check(key, value)
        return resolved

    def __call__(self, *inputs: Any, **hyper: Any) -> LossOutput:
        return self.fn(*inputs, **self.resolve(**hyper))
