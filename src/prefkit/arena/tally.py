"""The arena's votes as ranking data: pairwise rows with their flags, the flag policy, the
counts the live leaderboard fits and the export ``prefkit rank`` reads.

:class:`Tally` turns the stored votes (:class:`~prefkit.arena.store.VoteRows`) into pairwise
rows (a K-wise ranking is broken into its ``K (K - 1) / 2`` pairs, equal levels tie), each
with its flags. The **flag policy** decides which rows count: ``"exclude"`` (the default)
sets aside every vote that carries a flag (an identity word in a shown output, a flagged
voter, a flagged vote); ``"include"`` counts them all. Set-aside rows stay in the data with
weight 0, exactly as :func:`export_rows` writes them, so that ``prefkit rank`` on the export
reads the same :class:`~prefkit.data.records.PairCounts` (items sorted by name, every pair
that was ever voted on) and, with the same seed and rounds, prints the same leaderboard.

Both-bad votes count as LMArena counts them: a tie (half a win each, ``ties="half"``);
``both_bad="ignore"`` gives them weight 0 instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prefkit.arena.store import VoteRows

__all__ = ["EXPORT_COLUMNS", "LABELS", "OUTCOMES", "Tally", "export_rows", "finite"]

OUTCOMES = {"a": 0, "b": 1, "tie": 2, "both_bad": 3}
LABELS = ("a", "b", "tie", "both_bad")
EXPORT_COLUMNS = ("item_a", "item_b", "winner", "weight", "annotator", "prompt", "flags",
                  "battle_id", "vote_seq")


def finite(o: Any) -> Any:
    """JSON-ready: non-finite floats become ``None`` (as ``prefkit rank --json`` prints)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [finite(v) for v in o]
    if isinstance(o, np.generic):
        return finite(o.item())
    return o


def _pairs(ranking: str) -> Iterable[tuple[str, str, int]]:
    """Full rank breaking of a stored ranking (JSON list of names or lists of names)."""
    levels = [lv if isinstance(lv, list) else [lv] for lv in json.loads(ranking)]
    for x, upper in enumerate(levels):
        for a in upper:
            for b in upper[upper.index(a) + 1:]:
                yield a, b, 2
            for lower in levels[x + 1:]:
                for b in lower:
                    yield a, b, 0


@dataclass
class Tally:
    """Pairwise rows of every vote so far, with their flags (grows with :meth:`extend`)."""

    names: dict[str, int] = field(default_factory=dict)
    a: list[int] = field(default_factory=list)
    b: list[int] = field(default_factory=list)
    outcome: list[int] = field(default_factory=list)
    seq: list[int] = field(default_factory=list)
    voter: list[str | None] = field(default_factory=list)
    prompt: list[str | None] = field(default_factory=list)
    battle: list[str | None] = field(default_factory=list)
    elapsed: list[float] = field(default_factory=list)  # seconds from battle shown to vote
    last_seq: int = 0

    def _id(self, name: str) -> int:
        return self.names.setdefault(name, len(self.names))

    def extend(self, rows: VoteRows) -> int:
        """Add votes (in ``seq`` order); returns the number of pairwise rows added."""
        before = len(self.a)
        for k, s in enumerate(rows.seq):
            if rows.ranking[k]:
                pairs = list(_pairs(rows.ranking[k]))  # type: ignore[arg-type]
            else:
                outcome = OUTCOMES[rows.outcome[k]]  # type: ignore[index]
                pairs = [(rows.model_a[k], rows.model_b[k], outcome)]
            for x, y, o in pairs:
                self.a.append(self._id(x))  # type: ignore[arg-type]
                self.b.append(self._id(y))  # type: ignore[arg-type]
                self.outcome.append(o)
                self.seq.append(s)
                self.voter.append(rows.voter[k])
                self.prompt.append(rows.prompt[k])
                self.battle.append(rows.battle_id[k])
                e = rows.elapsed[k]
                self.elapsed.append(float("nan") if e is None else float(e))
            self.last_seq = max(self.last_seq, s)
        return len(self.a) - before

    def reasons(self, flags: Iterable[tuple[int, int | None, str | None, str, str | None]],
                start: int = 0) -> list[str]:
        """Per pairwise row from ``start`` on, the flag reasons that apply (``;``-joined,
        ``""`` if none): the vote's own flags and ``voter:<reason>`` for a flagged voter."""
        by_vote: dict[int, set[str]] = {}
        by_voter: dict[str, set[str]] = {}
        for _, seq, voter, reason, _ in flags:
            if seq is not None:
                by_vote.setdefault(seq, set()).add(reason)
            elif voter is not None:
                by_voter.setdefault(voter, set()).add(f"voter:{reason}")
        out = []
        none: set[str] = set()
        for s, v in zip(self.seq[start:], self.voter[start:]):
            r = by_vote.get(s, none) | (by_voter.get(v, none) if v is not None else none)
            out.append(";".join(sorted(r)))
        return out

    def weights(self, reasons: list[str], policy: str = "exclude",
                both_bad: str = "tie", start: int = 0) -> np.ndarray:
        """1 for a counted row, 0 for a row set aside by the flag policy (or both-bad);
        for the rows from ``start`` on (``reasons`` are theirs)."""
        if policy not in ("exclude", "include"):
            raise ValueError(f"flag policy must be 'exclude' or 'include', got {policy!r}")
        if both_bad not in ("tie", "ignore"):
            raise ValueError(f"both_bad must be 'tie' or 'ignore', got {both_bad!r}")
        w = np.ones(len(self.a) - start)
        if policy == "exclude":
            w[[k for k, r in enumerate(reasons) if r]] = 0.0
        if both_bad == "ignore":
            w[np.asarray(self.outcome[start:], int) == 3] = 0.0
        return w

    def add_cells(self, cells: dict[tuple[str, str], list[float]], weights: np.ndarray,
                  start: int = 0) -> None:
        """Add the rows from ``start`` on to per-pair counts ``cells`` (keyed by the two
        names in sorted order; ``[wins of the first, wins of the second, ties, both bad]``),
        so that a refit costs the new votes, not all of them."""
        names = sorted(self.names, key=self.names.__getitem__)
        for k in range(start, len(self.a)):
            x, y, o = names[self.a[k]], names[self.b[k]], self.outcome[k]
            if x > y:
                x, y = y, x
                o = 1 - o if o < 2 else o
            c = cells.get((x, y))
            if c is None:
                c = cells[(x, y)] = [0.0, 0.0, 0.0, 0.0]
            c[o] += float(weights[k - start])

    @staticmethod
    def cells_to_counts(cells: dict[tuple[str, str], list[float]]) -> Any:
        """The :class:`PairCounts` of ``cells``, exactly as :meth:`counts` aggregates."""
        from prefkit.data.records import ItemIndex, PairCounts

        order = sorted({n for pair in cells for n in pair})
        ids = {n: k for k, n in enumerate(order)}
        keys = sorted(cells, key=lambda p: (ids[p[0]], ids[p[1]]))
        return PairCounts(ItemIndex(tuple(order)),
                          np.asarray([ids[x] for x, _ in keys], np.int32),
                          np.asarray([ids[y] for _, y in keys], np.int32),
                          np.asarray([cells[p] for p in keys], float).reshape(-1, 4))

    def counts(self, weights: np.ndarray) -> Any:
        """The :class:`PairCounts` that reading :func:`export_rows` with
        ``read_votes(..., aggregate=True)`` gives: items sorted by name, every pair."""
        from prefkit.data.records import ItemIndex, PairwiseVotes, aggregate

        order = sorted(self.names)
        remap = np.empty(len(self.names), np.int32)
        for new, name in enumerate(order):
            remap[self.names[name]] = new
        votes = PairwiseVotes(ItemIndex(tuple(order)), remap[np.asarray(self.a, int)],
                              remap[np.asarray(self.b, int)], np.asarray(self.outcome, np.int8),
                              weight=weights)
        return aggregate(votes)


def export_rows(tally: Tally, reasons: list[str], weights: np.ndarray) -> Iterable[list[Any]]:
    """Rows of prefkit's generic vote format (:data:`EXPORT_COLUMNS`), one per pairwise
    row: weight 0 marks a row set aside, ``flags`` says why."""
    names = sorted(tally.names, key=tally.names.__getitem__)
    for k in range(len(tally.a)):
        yield [names[tally.a[k]], names[tally.b[k]], LABELS[tally.outcome[k]],
               int(weights[k]), tally.voter[k] or "", tally.prompt[k] or "", reasons[k],
               tally.battle[k] or "", tally.seq[k]]
