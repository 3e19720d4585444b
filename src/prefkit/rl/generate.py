"""The sampler online RL draws its groups with: ``G`` completions per prompt, the prompt's
prefill shared. It lives in :mod:`prefkit.llm.sampling` (shared with process rewards, which
roll out and propose steps with it); this module is its import site for :mod:`prefkit.rl`
and re-exports the same objects (one copy)."""

from __future__ import annotations

from prefkit.llm.sampling import Samples, SamplingConfig, sample

__all__ = ["Samples", "SamplingConfig", "sample"]
