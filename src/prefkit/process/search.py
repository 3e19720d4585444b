"""PRM-guided beam search over steps (Snell et al. 2024, "Scaling LLM Test-Time Compute";
search-and-learn's ``beam_search``).

Keep ``beam_width`` partial solutions; from each, a proposer samples ``expand`` next steps;
the PRM scores every extended solution's steps; the ``beam_width`` best by the aggregate of
their step scores (:func:`~prefkit.process.aggregate.aggregate_steps`, ``"last"`` by default:
the newest step's score, as search-and-learn) survive. Finished solutions (``is_done``) leave
the beam; the search stops when the beam is empty or after ``max_steps``. The best finished
solution is returned first.

The proposer is any callable ``propose(prompt, steps_so_far, n) -> n next steps`` (a task's
own generator, or :func:`lm_proposer`: a causal LM sampled with the shared sampler
:func:`prefkit.llm.sampling.sample`); the scorer any
``score(prompts, step_lists) -> per solution an array of step scores`` (a PRM's ``score``).
:func:`sample_candidates` draws the N candidates of best-of-N with the same sampler.

A language model writes a solution as :func:`~prefkit.process.implicit.response_text` does:
the prompt, then each step on its own line (``"\n" + step``); a step ends at its line break,
the solution at the end-of-sequence token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prefkit.process.aggregate import aggregate_steps

__all__ = ["BeamResult", "beam_search", "lm_proposer", "sample_candidates"]

Proposer = Callable[[str, Sequence[str], int], Sequence[str]]
Scorer = Callable[[Sequence[str], Sequence[Sequence[str]]], Sequence[np.ndarray]]


@dataclass(frozen=True)
class BeamResult:
    """Finished solutions best first with their aggregate scores, and the PRM calls made."""

    solutions: list[list[str]]
    scores: list[float]
    n_scored: int


def beam_search(prompt: str, propose: Proposer, score: Scorer, is_done: Callable[[str], bool],
                *, beam_width: int = 4, expand: int = 4, max_steps: int = 20,
                aggregate: str = "last") -> BeamResult:
    """Beam search over steps guided by step scores (module docstring)."""
    if beam_width < 1 or expand < 1:
        raise ValueError("beam_width and expand must be >= 1")
    beam: list[list[str]] = [[]]
    done: list[tuple[float, list[str]]] = []
    n_scored = 0
    for _ in range(max_steps):
        cands = [b + [s] for b in beam for s in propose(prompt, b, expand)]
        cands = [list(c) for c in dict.fromkeys(tuple(c) for c in cands)]  # drop repeats
        if not cands:
            break
        got = score([prompt] * len(cands), cands)
        n_scored += len(cands)
        agg = np.array([aggregate_steps(s, aggregate) for s in got])
        agg = np.where(np.isnan(agg), -np.inf, agg)
        order = np.argsort(-agg, kind="stable")[:beam_width]
        beam = []
        for j in order:
            if is_done(cands[j][-1]):
                done.append((float(agg[j]), cands[j]))
            else:
                beam.append(cands[j])
        if not beam:
            break
    done.sort(key=lambda t: -t[0])
    return BeamResult([d for _, d in done], [s for s, _ in done], n_scored)


def lm_proposer(model: Any, tokenizer: Any, *, max_new_tokens: int = 128,
                temperature: float = 1.0, top_p: float = 1.0, seed: int = 0) -> Proposer:
    """A :data:`Proposer` that samples next steps from a causal LM with the shared sampler
    (:func:`prefkit.llm.sampling.sample`): the prompt and the steps so far, one per line,
    then a line break, continued ``n`` times up to the next line break (a stop string) or
    the end-of-sequence token; each proposal is the new line, stripped. Each call draws
    with its own seed (``seed``, ``seed + 1``, ...), so a search is reproducible."""
    from prefkit.llm.sampling import SamplingConfig, sample
    from prefkit.process.implicit import response_text

    calls = [seed]

    def propose(prompt: str, steps: Sequence[str], n: int) -> list[str]:
        cfg = SamplingConfig(num_generations=n, max_new_tokens=max_new_tokens,
                             temperature=temperature, top_p=top_p, stop=("\n",))
        got = sample(model, tokenizer, [prompt + response_text(steps) + "\n"], cfg,
                     seed=calls[0])
        calls[0] += 1
        return [t.split("\n", 1)[0].strip() for t in got.texts]

    return propose


def sample_candidates(model: Any, tokenizer: Any, prompts: Sequence[str], n: int, *,
                      max_new_tokens: int = 256, temperature: float = 1.0,
                      top_p: float = 1.0, seed: int = 0) -> list[list[list[str]]]:
    """``n`` candidate solutions per prompt for best-of-N, drawn from a causal LM with the
    shared sampler (one call, each prompt's prefill shared by its ``n`` samples); each
    candidate is its completion split into steps on line breaks (empty lines dropped).
    Written as JSONL rows ``{"prompt": p, "candidates": c}`` they are what
    ``prefkit prm best-of-n`` reads."""
    from prefkit.llm.sampling import SamplingConfig, sample

    cfg = SamplingConfig(num_generations=n, max_new_tokens=max_new_tokens,
                         temperature=temperature, top_p=top_p)
    got = sample(model, tokenizer, list(prompts), cfg, seed=seed)
    out: list[list[list[str]]] = []
    for p in range(len(prompts)):
        texts = got.texts[p * n:(p + 1) * n]
        out.append([[s.strip() for s in t.split("\n") if s.strip()] or [t.strip()]
                    for t in texts])
    return out
