"""LLM judges with measured consistency: verdict records and readers, consistency and bias
metrics, repairs, prompt templates, parsing and the judging protocols.

Every name below is imported from its submodule on first use (PEP 562): ``import
prefkit.judge`` loads neither an HTTP client nor torch.
"""

from __future__ import annotations

from prefkit import _lazy_exports

__getattr__, __dir__ = _lazy_exports(__name__, {
    "prefkit.judge.records": ["Verdicts", "Grades", "identity"],
    "prefkit.judge.io": ["JudgeData", "read_verdicts"],
})

__all__ = ["Grades", "JudgeData", "Verdicts", "identity", "read_verdicts"]
