"""DAPO's dynamic sampling (Yu et al. 2025, arXiv:2503.14476, section 3.2): a group whose
``G`` rewards are all equal has advantage 0 everywhere and teaches nothing, so it is left
out and **more prompts are sampled until the batch holds ``batch_size`` informative
groups** -- "over-sample and filter out prompts with the accuracy equal to 1 and 0".

:func:`refill` runs the rounds: the step's batch first, then, while fewer than the target
groups have unequal rewards and fewer than ``max_rounds`` extra rounds were drawn, the next
``batch_size`` prompts of the data order (each round seeded on its own); informative groups
are kept in the order drawn and cut to the target. After the last round a batch may hold
fewer groups (the step trains on those; none: on the first round's, all of whose groups
the loss leaves out). As verl's ``max_num_gen_batches``, the rounds are bounded.

Metrics (:func:`refill`'s counts): ``groups_drawn`` (groups sampled this step, all rounds),
``groups_dropped`` (of them, those whose rewards were all equal or all unscorable),
``groups_kept`` (trained on), ``resample_rounds`` (rounds after the first).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from prefkit.rl.distributed import Processes, concat_samples
from prefkit.rl.generate import Samples

__all__ = ["ROUND_STRIDE", "informative_groups", "refill", "select_groups"]

#: a refill round ``r``'s sampling seed is the step's plus ``r`` times this
ROUND_STRIDE = 2**40
#: a draw: (samples, rewards (N,), reward terms {name: (N,)}, prompt indices (P,))
Draw = tuple[Samples, Tensor, dict[str, np.ndarray], list[int]]


def informative_groups(rewards: Tensor, num_generations: int) -> Tensor:
    """(P,) bool: groups whose scorable rewards are not all equal (NaN ignored; fewer than
    two scorable: not informative)."""
    r = rewards.detach().double().view(-1, num_generations)
    ok = ~torch.isnan(r)
    hi = torch.where(ok, r, torch.full_like(r, -torch.inf)).max(1).values
    lo = torch.where(ok, r, torch.full_like(r, torch.inf)).min(1).values
    return (ok.sum(1) >= 2) & (hi > lo)


def select_groups(draw: Draw, groups: list[int]) -> Draw:
    """The prompts ``groups`` of a draw with their completions (prompts re-indexed)."""
    samples, rewards, parts, mine = draw
    g = samples.num_generations
    rows = torch.tensor([p * g + j for p in groups for j in range(g)], dtype=torch.long)
    pidx = torch.tensor(groups, dtype=torch.long)
    dev = samples.completion_ids.device
    s = Samples(samples.prompt_ids[pidx.to(dev)], samples.prompt_mask[pidx.to(dev)],
                samples.completion_ids[rows.to(dev)], samples.mask[rows.to(dev)],
                samples.old_logps[rows.to(dev)], [samples.texts[i] for i in rows.tolist()],
                samples.truncated[rows.to(dev)], g, samples.temperature)
    r = rows.numpy()
    return (s, rewards[rows.to(rewards.device)], {k: v[r] for k, v in parts.items()},
            [mine[p] for p in groups])


def refill(draw: Callable[[int], Draw], target: int, max_rounds: int, pad_id: int,
           procs: Processes | None = None) -> tuple[Draw, dict[str, int]]:
    """Draw round 0, then rounds 1.. ``max_rounds`` while fewer than ``target`` groups are
    informative; the kept groups (cut to ``target``) and the counts (see the module).
    ``procs`` (several processes, each with its own ``target``): every process draws until
    all are full, then keeps as many groups as the emptiest; counts are over all."""
    procs = procs or Processes()
    kept: list[Draw] = []
    n_kept = drawn = dropped = 0
    first: Draw | None = None
    rounds = 0
    for rnd in range(max_rounds + 1):
        d = draw(rnd)
        first = first or d
        rounds = rnd
        g = d[0].num_generations
        good = informative_groups(d[1], g).tolist()
        drawn += len(good)
        dropped += len(good) - sum(good)
        take = [i for i, ok in enumerate(good) if ok][:target - n_kept]
        if take:
            kept.append(select_groups(d, take))
            n_kept += len(take)
        if procs.min_int(n_kept) >= target:
            break
    assert first is not None
    keep = procs.min_int(n_kept)  # equal shares across processes
    if keep < n_kept:  # cut to the first ``keep`` groups
        cut, left = [], keep
        for d in kept:
            if left <= 0:
                break
            n = d[0].num_prompts
            cut.append(d if n <= left else select_groups(d, list(range(left))))
            left -= n
        kept = cut
    drawn, dropped = procs.sum_ints([drawn, dropped])
    counts = {"groups_drawn": drawn, "groups_dropped": dropped,
              "groups_kept": keep * procs.world, "resample_rounds": rounds}
    if not kept:
        return first, {**counts, "groups_kept": 0}
    if len(kept) == 1:
        return kept[0], counts
    samples = concat_samples([k[0] for k in kept], pad_id)
    return (samples, torch.cat([k[1] for k in kept]),
            {name: np.concatenate([k[2][name] for k in kept]) for name in kept[0][2]},
            [i for k in kept for i in k[3]]), counts
