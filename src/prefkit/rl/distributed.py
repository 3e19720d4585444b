"""Several processes for :func:`prefkit.rl.train.train_rl` (``accelerate launch`` /
``torchrun``), data-parallel, as :func:`prefkit.align.align` runs them.

**The split.** Every process walks the same seeded prompt order; of each step's
``batch_size`` prompts, process ``r`` of ``W`` takes the contiguous ``r``-th slice of
``batch_size / W`` prompts and samples, scores and scores log-probs of *their* ``G``
completions: a prompt's group lives on one process, so its group statistics are local.

**Sampling shards.** transformers' ``generate`` draws the tokens of a whole batch from one
random stream, so the draws of a prompt depend on which other prompts share its batch. A
step's prompts are therefore sampled in ``sample_shards`` contiguous shards (RLConfig;
None: one per process), shard ``k`` seeded by :func:`shard_seed` -- shard 0 keeps the
one-process seed. A 1-process run with ``sample_shards=W`` draws exactly what a
``W``-process run draws (each process samples its own shards), and then makes the same
updates (tested to float rounding, ``tests/rl/test_distributed.py``); a 1-process run with
``sample_shards=1`` draws other samples from the same distribution.

**The update.** Advantages that need statistics beyond a group (``scale_rewards="batch"``,
RLOO's ``normalize_advantages``) are formed over the gathered rewards of all processes,
each process keeping its slice. The loss's normaliser (tokens, for ``dapo`` /
``dr_grpo`` / ``grpo``) is summed over processes, the gradients all-reduced (summed) and
divided by it, so the update equals one process's over the global batch. ``bnpo``
normalises per micro-batch: the processes' gradients are averaged, which equals one process
whose micro-batches are each process's share. Metrics are computed over the gathered
values; process 0 writes ``metrics.jsonl``, checkpoints and the model. Online DPO: each
process's pairs, the loss the mean over every process's pairs.

REINFORCE++ and PPO whiten their advantages over every token of every process (the sums
all-reduced); PPO's value head is trained as the policy (its gradients summed).

Dynamic sampling's refill (``max_resample_rounds``): each process refills its own share
(``batch_size / W`` groups) and every process draws every round until all are full or the
rounds run out; a process then keeps as many groups as the emptiest one (the advantages
gather equal shares), so the kept groups differ from a 1-process run's.
A process reward's advantages are per group, so per process; its mean step reward is
summed over processes.

The process handling itself -- joining the group, :class:`~prefkit.processes.Processes`
(rank, world, barrier, sums, gathers, the flat gradient all-reduce) -- is
:mod:`prefkit.processes`', shared with :func:`prefkit.align.align`; it is re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from prefkit.processes import Processes, join_processes
from prefkit.rl.generate import Samples

__all__ = ["GatheredSamples", "Processes", "concat_samples", "join_processes", "shard_seed",
           "shard_slices"]

#: shard ``k``'s sampling seed is the step's seed plus ``k`` times this (shard 0: the seed)
SHARD_STRIDE = 2**32


def shard_slices(n_prompts: int, shards: int) -> list[slice]:
    """``shards`` contiguous equal slices of a step's ``n_prompts`` prompts."""
    if shards < 1 or n_prompts % shards:
        raise ValueError(f"batch_size={n_prompts} prompts cannot be split into "
                         f"{shards} equal sampling shards (one per process unless "
                         "sample_shards is set): make batch_size a multiple of it")
    size = n_prompts // shards
    return [slice(k * size, (k + 1) * size) for k in range(shards)]


def shard_seed(step_seed: int, shard: int) -> int:
    """The sampling seed of shard ``shard`` of a step seeded ``step_seed``."""
    return step_seed + shard * SHARD_STRIDE


def local_shards(n_prompts: int, shards: int | None, procs: Processes) -> list[tuple[int, slice]]:
    """``(shard index, prompt slice)`` of the step's shards this process samples: shards
    ``rank * S / W`` to ``(rank + 1) * S / W - 1`` (contiguous prompts)."""
    s = procs.world if shards is None else shards
    if s % procs.world:
        raise ValueError(f"sample_shards={s} must be a multiple of the number of processes "
                         f"({procs.world})")
    per = s // procs.world
    all_ = shard_slices(n_prompts, s)
    return [(k, all_[k]) for k in range(procs.rank * per, (procs.rank + 1) * per)]


def concat_samples(parts: Sequence[Samples], pad_id: int) -> Samples:
    """Samples of consecutive prompt shards as one (prompts left-padded, completions
    right-padded to the widest; padding masked out)."""
    if len(parts) == 1:
        return parts[0]
    lp = max(int(p.prompt_ids.shape[1]) for p in parts)
    t = max(int(p.completion_ids.shape[1]) for p in parts)

    def left(x: Tensor, width: int, fill: Any) -> Tensor:
        pad = torch.full((x.shape[0], width - x.shape[1]), fill, dtype=x.dtype, device=x.device)
        return torch.cat([pad, x], dim=1)

    def right(x: Tensor, width: int, fill: Any) -> Tensor:
        pad = torch.full((x.shape[0], width - x.shape[1]), fill, dtype=x.dtype, device=x.device)
        return torch.cat([x, pad], dim=1)

    first = parts[0]
    return Samples(
        torch.cat([left(p.prompt_ids, lp, pad_id) for p in parts]),
        torch.cat([left(p.prompt_mask, lp, 0) for p in parts]),
        torch.cat([right(p.completion_ids, t, pad_id) for p in parts]),
        torch.cat([right(p.mask, t, False) for p in parts]),
        torch.cat([right(p.old_logps, t, 0.0) for p in parts]),
        [x for p in parts for x in p.texts],
        torch.cat([p.truncated for p in parts]), first.num_generations, first.temperature)


@dataclass
class GatheredSamples:
    """What the step's sample metrics read, over all processes: ``lengths`` and
    ``truncated`` (N_global,)."""

    lengths: Tensor
    truncated: Tensor


def gather_for_metrics(procs: Processes, samples: Samples, rewards: Tensor,
                       parts: dict[str, Any]) -> tuple[Any, Tensor, dict[str, Any]]:
    """``(samples-like, rewards, parts)`` over every process (one process: as given)."""
    if procs.world == 1:
        return samples, rewards, parts
    import numpy as np

    got = procs.gather((samples.lengths.cpu(), samples.truncated.cpu(), rewards.cpu(),
                        {k: np.asarray(v) for k, v in parts.items()}))
    return (GatheredSamples(torch.cat([g[0] for g in got]), torch.cat([g[1] for g in got])),
            torch.cat([g[2] for g in got]),
            {k: np.concatenate([g[3][k] for g in got]) for k in parts})


def check_supported(config: Any, procs: Processes, *, process_reward: bool) -> None:
    """Refuse a run that does not split over the processes (every algorithm, reward and
    process reward does; ``process_reward`` is kept for the callers)."""
    if procs.world == 1:
        return
    if config.batch_size % procs.world:
        raise ValueError(f"batch_size={config.batch_size} must be a multiple of the number "
                         f"of processes ({procs.world}): each takes an equal share")
