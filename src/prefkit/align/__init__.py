"""Align language models directly from preferences: the DPO family, listwise and
token-level losses, in one trainer (needs torch: ``pip install prefkit[align]``).

* :mod:`prefkit.align.types` -- what every loss takes (:class:`SequenceLogps`) and returns
  (:class:`LossOutput`);
* :mod:`prefkit.align.losses` -- the losses, chosen by name from :data:`ALIGN_LOSSES`.
"""

from prefkit.align.losses import (
    ALIGN_LOSSES,
    AlignLoss,
    combine_losses,
    get_align_loss,
)
from prefkit.align.types import LossOutput, SequenceLogps

__all__ = [
    "ALIGN_LOSSES",
    "AlignLoss",
    "LossOutput",
    "SequenceLogps",
    "combine_losses",
    "get_align_loss",
]
