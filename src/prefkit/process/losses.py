"""Step-level losses of process reward models, in the shared loss contract
(:mod:`prefkit.losses`): one element per step ``(B, S)``, unlabelled steps (NaN targets,
padding) hold 0, and the normaliser is the number of labelled steps of the batch.

* ``step_bce``: ``-[y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))]`` per step, for hard
  labels (``y`` in {0, 1}: PRM800K, ProcessBench, TRL) and soft ones (``y`` in [0, 1]: the
  Monte-Carlo values of Math-Shepherd, trained as a soft cross-entropy);
* ``step_mse``: ``(sigmoid(z) - y)^2`` per step (regression on soft values, as PAV's
  advantage targets).

``rewards`` is None (a PRM scores steps, not responses); ``diagnostics["step_accuracy"]``
holds ``(B, S)`` 1 where ``sigmoid(z) >= 0.5`` agrees with ``y >= 0.5`` on labelled steps.

>>> import torch
>>> out = PROCESS_LOSSES["step_bce"](torch.zeros(1, 3), torch.tensor([[1.0, 0.0, float("nan")]]))
>>> [round(x, 4) for x in out.losses[0].tolist()], float(out.normaliser)
([0.6931, 0.6931, 0.0], 2.0)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from prefkit.losses import LossOutput, LossSpec

__all__ = ["PROCESS_LOSSES", "get_process_loss", "step_bce_loss", "step_mse_loss"]


def _mask(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    if logits.shape != targets.shape or logits.ndim != 2:
        raise ValueError(f"logits and targets must both be (batch, steps), got "
                         f"{tuple(logits.shape)} and {tuple(targets.shape)}")
    labelled = ~torch.isnan(targets)
    return labelled, torch.where(labelled, targets, torch.zeros_like(targets))


def _output(losses: Tensor, logits: Tensor, y: Tensor, labelled: Tensor) -> LossOutput:
    agree = ((logits.detach() >= 0) == (y >= 0.5)) & labelled
    return LossOutput(losses, normaliser=labelled.sum().to(torch.float32).clamp_min(1.0),
                      diagnostics={"step_accuracy": agree.to(torch.float32)})


def step_bce_loss(logits: Tensor, targets: Tensor) -> LossOutput:
    """Per-step binary cross-entropy of ``logits`` ``(B, S)`` against ``targets`` ``(B, S)``
    in [0, 1] (NaN = unlabelled); see the module docstring."""
    labelled, y = _mask(logits, targets)
    per = F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype), reduction="none")
    return _output(per * labelled, logits, y, labelled)


def step_mse_loss(logits: Tensor, targets: Tensor) -> LossOutput:
    """Per-step squared error of ``sigmoid(logits)`` against soft ``targets`` (NaN =
    unlabelled)."""
    labelled, y = _mask(logits, targets)
    per = (torch.sigmoid(logits) - y.to(logits.dtype)) ** 2
    return _output(per * labelled, logits, y, labelled)


PROCESS_LOSSES: dict[str, LossSpec] = {
    "step_bce": LossSpec("step_bce", step_bce_loss, kind="steps",
                         paper="Lightman et al. 2023 (PRM800K); Wang et al. 2024 (Math-Shepherd)"),
    "step_mse": LossSpec("step_mse", step_mse_loss, kind="steps",
                         paper="Setlur et al. 2024 (PAV), regression on soft step values"),
}


def get_process_loss(name: str) -> LossSpec:
    """The registry entry called ``name``, or a ValueError listing the losses."""
    try:
        return PROCESS_LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown process loss {name!r}; choose one of "
                         f"{sorted(PROCESS_LOSSES)}") from None
