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

Flags change the counts incrementally: :meth:`Tally.apply_flags` takes every flag and lift
of the store, finds the rows of the votes and voters whose flags changed (vectorized over
all rows) and returns only those rows, whose weights the live board then moves from their
old to their new cell (a flag on one voter costs that voter's rows, not all votes).

Both-bad votes count as LMArena counts them: a tie (half a win each, ``ties="half"``);
``both_bad="ignore"`` gives them weight 0 instead.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
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
    """Pairwise rows of every vote so far, with their flags (grows with :meth:`extend`;
    flags and lifts come in through :meth:`apply_flags`, and ``row_reasons`` follows
    both)."""

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
    row_reasons: list[str] = field(default_factory=list)  # per row, as :meth:`reasons`
    voter_code: list[int] = field(default_factory=list)  # per row; -1 without a voter
    voters: dict[str, int] = field(default_factory=dict)
    # the flags in force: id -> (vote seq, voter, reason); lifted ids; reasons by vote/voter
    active: dict[int, tuple[int | None, str | None, str]] = field(default_factory=dict)
    lifted: set[int] = field(default_factory=set)
    _by_vote: dict[int, Counter] = field(default_factory=dict)
    _by_voter: dict[str, Counter] = field(default_factory=dict)

    def _id(self, name: str) -> int:
        return self.names.setdefault(name, len(self.names))

    def _reason(self, seq: int, voter: str | None) -> str:
        r = set(self._by_vote.get(seq, ()))
        if voter is not None:
            r |= {f"voter:{x}" for x in self._by_voter.get(voter, ())}
        return ";".join(sorted(r))

    def extend(self, rows: VoteRows) -> int:
        """Add votes; returns the number of pairwise rows added (their reasons from the
        flags in force)."""
        before = len(self.a)
        for k, s in enumerate(rows.seq):
            if rows.ranking[k]:
                pairs = list(_pairs(rows.ranking[k]))  # type: ignore[arg-type]
            else:
                outcome = OUTCOMES[rows.outcome[k]]  # type: ignore[index]
                pairs = [(rows.model_a[k], rows.model_b[k], outcome)]
            v = rows.voter[k]
            code = -1 if v is None else self.voters.setdefault(v, len(self.voters))
            reason = self._reason(s, v)
            e = rows.elapsed[k]
            for x, y, o in pairs:
                self.a.append(self._id(x))  # type: ignore[arg-type]
                self.b.append(self._id(y))  # type: ignore[arg-type]
                self.outcome.append(o)
                self.seq.append(s)
                self.voter.append(v)
                self.voter_code.append(code)
                self.prompt.append(rows.prompt[k])
                self.battle.append(rows.battle_id[k])
                self.elapsed.append(float("nan") if e is None else float(e))
                self.row_reasons.append(reason)
            self.last_seq = max(self.last_seq, s)
        return len(self.a) - before

    def apply_flags(self, flags: Iterable[tuple[int, int | None, str | None, str, str | None]],
                    lifts: Iterable[int] = ()) -> list[tuple[int, str]]:
        """Bring the flags in force up to the store's (every flag ``(id, vote_seq, voter,
        reason, detail)`` and every lifted flag id; those already applied are skipped).
        Returns ``(row, reason before)`` for each row whose reasons changed."""
        touched_seq: set[int] = set()
        touched_voter: set[str] = set()

        def count(seq: int | None, voter: str | None, reason: str, step: int) -> None:
            if seq is not None:
                key, table = seq, self._by_vote
                touched_seq.add(seq)
            elif voter is not None:
                key, table = voter, self._by_voter  # type: ignore[assignment]
                touched_voter.add(voter)
            else:
                return
            got = table.setdefault(key, Counter())  # type: ignore[arg-type]
            got[reason] += step
            if got[reason] <= 0:
                del got[reason]
                if not got:
                    del table[key]  # type: ignore[arg-type]

        for fid in lifts:
            if fid in self.lifted:
                continue
            self.lifted.add(fid)
            gone = self.active.pop(fid, None)
            if gone is not None:
                count(*gone, -1)
        for fid, seq, voter, reason, _ in flags:
            if fid in self.active or fid in self.lifted:
                continue
            self.active[fid] = (seq, voter, reason)
            count(seq, voter, reason, +1)
        if not (touched_seq or touched_voter) or not self.a:
            return []
        hit = np.zeros(len(self.a), bool)
        if touched_seq:
            hit |= np.isin(np.fromiter(self.seq, np.int64, len(self.seq)),
                           np.fromiter(touched_seq, np.int64, len(touched_seq)))
        codes = [self.voters[v] for v in touched_voter if v in self.voters]
        if codes:
            hit |= np.isin(np.fromiter(self.voter_code, np.int64, len(self.voter_code)), codes)
        changed = []
        for k in np.flatnonzero(hit).tolist():
            new = self._reason(self.seq[k], self.voter[k])
            if new != self.row_reasons[k]:
                changed.append((k, self.row_reasons[k]))
                self.row_reasons[k] = new
        return changed

    def reasons(self, flags: Iterable[tuple[int, int | None, str | None, str, str | None]],
                start: int = 0) -> list[str]:
        """Per pairwise row from ``start`` on, the flag reasons that apply (``;``-joined,
        ``""`` if none): the vote's own flags and ``voter:<reason>`` for a flagged voter.
        From scratch, over every row (the reference that :meth:`apply_flags`, which keeps
        ``row_reasons`` incrementally, must equal; ``flags`` are those in force)."""
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

    def weights(self, reasons: Sequence[str], policy: str = "exclude",
                both_bad: str = "tie", start: int = 0,
                rows: Sequence[int] | None = None) -> np.ndarray:
        """1 for a counted row, 0 for a row set aside by the flag policy (or both-bad);
        for the rows from ``start`` on, or the given ``rows`` (``reasons`` are theirs)."""
        if policy not in ("exclude", "include"):
            raise ValueError(f"flag policy must be 'exclude' or 'include', got {policy!r}")
        if both_bad not in ("tie", "ignore"):
            raise ValueError(f"both_bad must be 'tie' or 'ignore', got {both_bad!r}")
        outcome = np.asarray(self.outcome[start:] if rows is None
                             else [self.outcome[k] for k in rows], int)
        w = np.ones(len(outcome))
        if policy == "exclude":
            w[[k for k, r in enumerate(reasons) if r]] = 0.0
        if both_bad == "ignore":
            w[outcome == 3] = 0.0
        return w

    def add_cells(self, cells: dict[tuple[str, str], list[float]], weights: np.ndarray,
                  start: int = 0, rows: Sequence[int] | None = None) -> None:
        """Add the rows from ``start`` on (or the given ``rows``), each with its weight, to
        per-pair counts ``cells`` (keyed by the two names in sorted order; ``[wins of the
        first, wins of the second, ties, both bad]``), so that a refit costs the new votes,
        not all of them; a negative weight takes a row out again."""
        names = sorted(self.names, key=self.names.__getitem__)
        for k, w in zip(range(start, len(self.a)) if rows is None else rows, weights.tolist()):
            x, y, o = names[self.a[k]], names[self.b[k]], self.outcome[k]
            if x > y:
                x, y = y, x
                o = 1 - o if o < 2 else o
            c = cells.get((x, y))
            if c is None:
                c = cells[(x, y)] = [0.0, 0.0, 0.0, 0.0]
            c[o] += w

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
