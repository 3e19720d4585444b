"""Align language models directly from preferences: the DPO family, listwise and
token-level losses, in one trainer (needs torch: ``pip install prefkit[align]``)."""

from prefkit.align.types import LossOutput, SequenceLogps

__all__ = ["LossOutput", "SequenceLogps"]
