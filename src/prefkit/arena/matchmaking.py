"""Which models (and which prompt) the next battle shows.

Pairs (or K-sets) come from :func:`prefkit.rank.propose_pairs` on the Laplace posterior of
a MAP Bradley-Terry fit of the votes so far (``prior=1.0``, so it works from the first vote),
with an exploration share drawn uniformly (K-Sort Arena's exploration-exploitation). A batch
of proposals is computed at a time and refreshed as votes arrive; each battle takes the next
proposal whose models share a prompt, then a random shared prompt, and shuffles which model
sits in which slot (a coin flip per battle, so a slot tells nothing).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

import numpy as np

__all__ = ["Matchmaker"]

SLOTS = "abcdefgh"


class Matchmaker:
    """Proposals from the current counts over the models that have outputs."""

    def __init__(self, *, batch: int = 32, explore: float = 0.1, seed: int | None = None) -> None:
        self.batch = batch
        self.explore = explore
        self.rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self.outputs: dict[str, dict[int, int]] = {}  # model -> prompt_id -> output_id
        self.models: tuple[str, ...] = ()
        self._queue: dict[int, deque[tuple[str, ...]]] = {}
        self._state: Any = None

    def set_content(self, content: list[tuple]) -> None:
        """``(output_id, model, prompt_id, ...)`` rows from the store."""
        outputs: dict[str, dict[int, int]] = {}
        for oid, model, pid, *_ in content:
            outputs.setdefault(model, {})[pid] = oid
        with self._lock:
            self.outputs = outputs
            self.models = tuple(sorted(m for m in outputs if outputs[m]))
            self._queue.clear()
            self._state = None

    def set_models(self, models: list[str]) -> None:
        """Models without stored outputs (answers generated per battle): any group goes."""
        self.set_content([(-1, m, -1) for m in models])

    def next_models(self, k: int = 2) -> list[tuple[str, str]] | None:
        """``[(slot, model), ...]`` for a battle whose outputs are generated on demand."""
        pick = self.next_battle(k)
        return None if pick is None else [(slot, model) for slot, model, _ in pick[1]]

    def refresh(self, counts: Any) -> None:
        """New votes: refit the belief (MAP, warm) and drop the old proposals."""
        from prefkit.data.records import ItemIndex, PairCounts
        from prefkit.rank.matchmaking import MatchState

        with self._lock:
            models = self.models
        if len(models) < 2:
            return
        index = {m: k for k, m in enumerate(models)}
        i, j, c = [], [], []
        if counts is not None:
            names = counts.items.names
            for p in range(len(counts)):
                x, y = names[counts.i[p]], names[counts.j[p]]
                if x in index and y in index:
                    i.append(index[x])
                    j.append(index[y])
                    c.append(counts.counts[p])
        sub = PairCounts(ItemIndex(models), np.asarray(i, np.int32), np.asarray(j, np.int32),
                         np.asarray(c, float).reshape(-1, 4))
        old = self._state
        init = old.scores if old is not None and old.n_items == len(models) else None
        state = MatchState.fit(sub, prior=1.0, init=init)
        with self._lock:
            if models == self.models:
                self._state = state
                self._queue.clear()

    def _propose(self, k: int) -> deque[tuple[str, ...]]:
        from prefkit.rank.matchmaking import MatchState, propose_pairs

        models = self.models
        state = self._state if self._state is not None else MatchState.prior(len(models))
        ids = propose_pairs(state, n=self.batch, k=k, rng=self.rng, explore=self.explore)
        return deque(tuple(models[x] for x in row) for row in ids)

    def next_battle(self, k: int = 2) -> tuple[int, list[tuple[str, str, int]]] | None:
        """``(prompt_id, [(slot, model, output_id), ...])`` for the next battle, or ``None``
        when fewer than ``k`` models share a prompt."""
        with self._lock:
            if len(self.models) < k:
                return None
            for _ in range(4 * self.batch):
                q = self._queue.get(k)
                if not q:
                    q = self._queue[k] = self._propose(k)
                group = q.popleft()
                shared = set(self.outputs[group[0]])
                for m in group[1:]:
                    shared &= set(self.outputs[m])
                if not shared:
                    continue
                pids = sorted(shared)
                pid = pids[int(self.rng.integers(len(pids)))]
                order = self.rng.permutation(len(group))
                return pid, [(SLOTS[s], group[g], self.outputs[group[g]][pid])
                             for s, g in enumerate(order)]
        return None
