"""Preference records: pairwise votes and rankings, stored as columns.

Everything downstream (fitting, bootstrap, diagnostics) works on integer item ids
``0..n_items-1``; names live in exactly one place, the :class:`ItemIndex`.

Pairwise outcome codes (``Outcome``) keep a tie and a "both bad" tie apart, since some
tie models and some diagnostics treat them differently; the Bradley-Terry fit counts
both as a tie unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Outcome",
    "ItemIndex",
    "PairwiseVotes",
    "PairCounts",
    "Rankings",
    "aggregate",
]


#: The largest weight one vote may carry. A weight counts votes (1 = one vote); counts
#: beyond this overflow the resampling and the integer vote tallies downstream.
MAX_WEIGHT = 1e9


class Outcome(IntEnum):
    """What happened in one pairwise comparison between item ``a`` and item ``b``."""

    A_WINS = 0
    B_WINS = 1
    TIE = 2
    BOTH_BAD = 3


@dataclass(frozen=True)
class ItemIndex:
    """The one mapping between item names and integer ids ``0..n-1``."""

    names: tuple[str, ...]
    _ids: Mapping[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        object.__setattr__(self, "names", names)
        ids = {n: i for i, n in enumerate(names)}
        if len(ids) != len(names):
            seen: set[str] = set()
            dup = next(n for n in names if n in seen or seen.add(n))  # type: ignore[func-returns-value]
            raise ValueError(f"item names must be unique; {dup!r} appears twice")
        object.__setattr__(self, "_ids", ids)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._ids

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.names)

    def id(self, name: str) -> int:
        """The id of ``name``; a ``KeyError`` that lists close names if unknown."""
        try:
            return self._ids[name]
        except KeyError:
            import difflib

            close = difflib.get_close_matches(str(name), self.names, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise KeyError(f"unknown item {name!r}{hint}") from None

    def ids(self, names: Iterable[str]) -> NDArray[np.int32]:
        return np.fromiter((self.id(n) for n in names), dtype=np.int32)

    @classmethod
    def from_names(cls, *columns: Iterable[str]) -> ItemIndex:
        """Index of the distinct names across columns, in sorted order (stable across runs)."""
        seen: set[str] = set()
        for col in columns:
            seen.update(str(x) for x in col)
        return cls(tuple(sorted(seen)))


def _column(x: object, dtype: type, n: int, name: str) -> NDArray:
    arr = np.ascontiguousarray(np.asarray(x, dtype=dtype))
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    return arr


def _kept(items: ItemIndex, keep: object) -> tuple[NDArray[np.intp], ItemIndex, NDArray[np.int64]]:
    """``keep`` (a boolean mask over the items, or item ids or names) as the kept ids, in
    the order given (a mask: id order), their own :class:`ItemIndex`, and the map from old
    ids to new ones (-1 for an item left out)."""
    arr = np.asarray(keep)
    n = len(items)
    if arr.dtype == np.bool_:
        if arr.shape != (n,):
            raise ValueError(f"a boolean mask over the items must have shape ({n},), got {arr.shape}")
        ids = np.flatnonzero(arr)
    elif arr.size and arr.dtype.kind in "USO":
        ids = items.ids(str(x) for x in arr.ravel()).astype(np.intp)
    else:
        ids = arr.astype(np.intp).ravel() if arr.size else np.zeros(0, np.intp)
        if ids.size and (ids.min() < 0 or ids.max() >= n):
            raise ValueError(f"item ids must lie in [0, {n}); got {ids.min()}..{ids.max()}")
    remap = np.full(n, -1, np.int64)
    remap[ids] = np.arange(ids.size)
    if np.count_nonzero(remap >= 0) != ids.size:
        raise ValueError("the items to keep list an item twice")
    return ids, ItemIndex(tuple(items.names[k] for k in ids)), remap


@dataclass(frozen=True)
class PairwiseVotes:
    """One row per pairwise comparison, as parallel columns.

    Attributes:
        items: names of the items; ``a`` and ``b`` index into it.
        a, b: item ids of the two sides, shape ``(n,)``.
        outcome: :class:`Outcome` codes, shape ``(n,)``.
        weight: non-negative weight per vote (1.0 by default), shape ``(n,)``.
        annotator, prompt: optional group labels per vote (e.g. a judge id, a question
            id), as strings; used by cluster bootstrap and influence diagnostics.
        features: optional per-side covariates for style control, ``name -> (x_a, x_b)``
            (e.g. response length of each side, or ``home`` = 1 for the home side).
        soft: optional probability that ``a`` is preferred (e.g. AlpacaEval's
            soft preferences); when given, the likelihood uses it instead of ``outcome``.
    """

    items: ItemIndex
    a: NDArray[np.int32]
    b: NDArray[np.int32]
    outcome: NDArray[np.int8]
    weight: NDArray[np.float64] | None = None
    annotator: NDArray[np.object_] | None = None
    prompt: NDArray[np.object_] | None = None
    features: Mapping[str, tuple[NDArray[np.float64], NDArray[np.float64]]] = field(
        default_factory=dict
    )
    soft: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        n = np.asarray(self.a).shape[0] if np.ndim(self.a) else 0
        object.__setattr__(self, "a", _column(self.a, np.int32, n, "a"))
        object.__setattr__(self, "b", _column(self.b, np.int32, n, "b"))
        object.__setattr__(self, "outcome", _column(self.outcome, np.int8, n, "outcome"))
        w = np.ones(n) if self.weight is None else _column(self.weight, np.float64, n, "weight")
        object.__setattr__(self, "weight", w)
        for name in ("annotator", "prompt"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, _column(v, object, n, name))
        if self.soft is not None:
            s = _column(self.soft, np.float64, n, "soft")
            if np.any(~np.isfinite(s)) or np.any((s < 0) | (s > 1)):
                raise ValueError("soft preferences must lie in [0, 1]")
            object.__setattr__(self, "soft", s)
        feats = {
            k: (_column(xa, np.float64, n, f"features[{k}][a]"),
                _column(xb, np.float64, n, f"features[{k}][b]"))
            for k, (xa, xb) in dict(self.features).items()
        }
        object.__setattr__(self, "features", feats)
        self._check()

    def _check(self) -> None:
        m = len(self.items)
        for side in (self.a, self.b):
            if side.size and (side.min() < 0 or side.max() >= m):
                raise ValueError(f"item ids must lie in [0, {m}); got {side.min()}..{side.max()}")
        if np.any(self.a == self.b):
            k = int(np.flatnonzero(self.a == self.b)[0])
            raise ValueError(
                f"vote {k} compares {self.items.names[self.a[k]]!r} with itself; drop it"
            )
        if self.outcome.size and (self.outcome.min() < 0 or self.outcome.max() > 3):
            raise ValueError("outcome codes must be 0 (a wins), 1 (b wins), 2 (tie), 3 (both bad)")
        w = self.weight
        assert w is not None
        if np.any(~np.isfinite(w)) or np.any(w < 0) or np.any(w > MAX_WEIGHT):
            k = int(np.flatnonzero(~np.isfinite(w) | (w < 0) | (w > MAX_WEIGHT))[0])
            raise ValueError(f"vote {k} has weight {w[k]}; weights must be finite, >= 0 and "
                             f"at most {MAX_WEIGHT:g} (1 = one vote)")

    # -- convenience -------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.a.shape[0])

    @property
    def n_items(self) -> int:
        return len(self.items)

    @classmethod
    def from_names(
        cls,
        a: Sequence[str],
        b: Sequence[str],
        outcome: Sequence[int | str] | NDArray,
        *,
        items: ItemIndex | None = None,
        **columns: object,
    ) -> PairwiseVotes:
        """Build votes from item names; ``outcome`` may use codes or the labels
        ``"a"``, ``"b"``, ``"tie"``, ``"both_bad"``.

        >>> v = PairwiseVotes.from_names(["x", "y"], ["y", "z"], ["a", "tie"])
        >>> v.items.names, v.a.tolist(), v.outcome.tolist()
        (('x', 'y', 'z'), [0, 1], [0, 2])
        """
        items = items or ItemIndex.from_names(a, b)
        labels = {"a": 0, "b": 1, "tie": 2, "both_bad": 3}
        out = np.asarray([labels[o] if isinstance(o, str) else int(o) for o in outcome], np.int8)
        return cls(items, items.ids(a), items.ids(b), out, **columns)  # type: ignore[arg-type]

    def select(self, mask: NDArray[np.bool_] | NDArray[np.integer]) -> PairwiseVotes:
        """Subset of the votes (a boolean mask or an index array), same item index."""

        def sub(x):  # type: ignore[no-untyped-def]
            return None if x is None else x[mask]

        return PairwiseVotes(
            self.items,
            self.a[mask],
            self.b[mask],
            self.outcome[mask],
            sub(self.weight),
            sub(self.annotator),
            sub(self.prompt),
            {k: (xa[mask], xb[mask]) for k, (xa, xb) in self.features.items()},
            sub(self.soft),
        )

    def restrict(self, keep: Sequence[str] | NDArray[np.bool_] | NDArray[np.integer]) -> PairwiseVotes:
        """The votes between kept items only, re-indexed to them.

        ``keep`` is a boolean mask over the items, or item ids or names; the new
        :class:`ItemIndex` lists the kept items in that order (a mask: id order). Every
        per-vote column (weight, annotator, prompt, features, soft) comes along.

        >>> v = PairwiseVotes.from_names(["x", "y", "x"], ["y", "z", "z"], ["a", "b", "tie"])
        >>> r = v.restrict(["z", "x"])
        >>> r.items.names, r.a.tolist(), r.b.tolist(), r.outcome.tolist()
        (('z', 'x'), [1], [0], [2])
        """
        _, items, remap = _kept(self.items, keep)
        v = self.select((remap[self.a] >= 0) & (remap[self.b] >= 0))
        return PairwiseVotes(items, remap[v.a], remap[v.b], v.outcome, v.weight, v.annotator,
                             v.prompt, v.features, v.soft)

    def to_frame(self):  # type: ignore[no-untyped-def]
        """The votes as a pandas DataFrame with item names (needs pandas)."""
        import pandas as pd

        names = np.asarray(self.items.names, dtype=object)
        df = pd.DataFrame(
            {
                "item_a": names[self.a],
                "item_b": names[self.b],
                "outcome": [Outcome(o).name.lower() for o in self.outcome],
                "weight": self.weight,
            }
        )
        for col in ("annotator", "prompt", "soft"):
            if getattr(self, col) is not None:
                df[col] = getattr(self, col)
        for k, (xa, xb) in self.features.items():
            df[f"{k}_a"], df[f"{k}_b"] = xa, xb
        return df


@dataclass(frozen=True)
class PairCounts:
    """Votes aggregated per unordered pair ``i < j``: the sufficient statistics of every
    pairwise model without covariates.

    ``counts[:, 0]`` = weight of wins of ``i``, ``[:, 1]`` wins of ``j``, ``[:, 2]`` ties,
    ``[:, 3]`` both-bad ties.
    """

    items: ItemIndex
    i: NDArray[np.int32]
    j: NDArray[np.int32]
    counts: NDArray[np.float64]  # (P, 4)

    def __post_init__(self) -> None:
        c = np.asarray(self.counts, dtype=np.float64)
        if c.ndim != 2 or c.shape[1] != 4 or c.shape[0] != len(self.i):
            raise ValueError(f"counts must have shape ({len(self.i)}, 4), got {c.shape}")
        if np.any(~np.isfinite(c)) or np.any(c < 0):
            raise ValueError("counts must be finite and >= 0")
        object.__setattr__(self, "counts", c)
        object.__setattr__(self, "i", np.asarray(self.i, dtype=np.int32))
        object.__setattr__(self, "j", np.asarray(self.j, dtype=np.int32))
        if np.any(self.i == self.j):
            k = int(np.flatnonzero(self.i == self.j)[0])
            raise ValueError(f"pair {k} compares {self.items.names[self.i[k]]!r} with itself")

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_votes(self) -> float:
        return float(self.counts.sum())

    def __len__(self) -> int:
        return int(self.i.shape[0])

    def restrict(self, keep: Sequence[str] | NDArray[np.bool_] | NDArray[np.integer]) -> PairCounts:
        """The pairs between kept items only, re-indexed to them (as
        :meth:`PairwiseVotes.restrict`; a pair keeps its orientation and counts)."""
        _, items, remap = _kept(self.items, keep)
        m = (remap[self.i] >= 0) & (remap[self.j] >= 0)
        return PairCounts(items, remap[self.i[m]], remap[self.j[m]], self.counts[m])

    def matrix(self, ties: str = "half") -> NDArray[np.float64]:
        """Dense ``(n, n)`` win matrix ``W[i, j]`` = wins of i over j; ties count as half
        a win for each side when ``ties="half"``, are left out when ``ties="ignore"``."""
        n = self.n_items
        w_ij, w_ji = self.counts[:, 0].copy(), self.counts[:, 1].copy()
        if ties == "half":
            t = 0.5 * (self.counts[:, 2] + self.counts[:, 3])
            w_ij += t
            w_ji += t
        elif ties != "ignore":
            raise ValueError(f"ties must be 'half' or 'ignore', got {ties!r}")
        m = np.zeros((n, n))
        np.add.at(m, (self.i, self.j), w_ij)
        np.add.at(m, (self.j, self.i), w_ji)
        return m


#: Largest dense cell table used by :func:`aggregate` (n^2 * 4 float64 = 256 MiB).
DENSE_CELL_LIMIT = 1 << 25


def aggregate(votes: PairwiseVotes, *, chunk: int = 1 << 20) -> PairCounts:
    """Sum vote weights per unordered pair and outcome (a vectorised group-by).

    Up to ~2,900 items the sum is a dense ``np.bincount`` over ``n^2 * 4`` cells, chunk by
    chunk (no sort, temporaries one chunk long); beyond, a sort of one key per vote.
    Pairs come out sorted by ``(i, j)`` either way.
    """
    n = votes.n_items
    w = votes.weight if votes.weight is not None else np.ones(len(votes))
    unit = bool(np.all(w == 1.0))
    if n * n * 4 <= DENSE_CELL_LIMIT:
        cells = np.zeros(n * n * 4)
        seen = np.zeros(n * n, bool)  # keeps pairs whose votes all weigh 0
        for s in range(0, len(votes), chunk):
            a = votes.a[s : s + chunk].astype(np.intp)
            b = votes.b[s : s + chunk].astype(np.intp)
            out = votes.outcome[s : s + chunk].astype(np.intp)
            swap = a > b
            pair = np.where(swap, b, a) * n + np.where(swap, a, b)
            out ^= swap & (out < 2)  # a win for `a` is a win for the higher id when swapped
            cells += np.bincount(pair * 4 + out, weights=None if unit else w[s : s + chunk],
                                 minlength=cells.size)
            seen[pair] = True
        i, j = np.nonzero(seen.reshape(n, n))
        return PairCounts(votes.items, i.astype(np.int32), j.astype(np.int32),
                          cells.reshape(n, n, 4)[i, j])
    a, b = votes.a.astype(np.int64), votes.b.astype(np.int64)
    swap = a > b
    lo, hi = np.where(swap, b, a), np.where(swap, a, b)
    out = votes.outcome.astype(np.int64)
    out = np.where(swap & (out < 2), 1 - out, out)
    key = lo * n + hi
    uniq, inv = np.unique(key, return_inverse=True)
    c4 = np.bincount(inv * 4 + out, weights=w, minlength=4 * uniq.size).reshape(-1, 4)
    return PairCounts(votes.items, (uniq // n).astype(np.int32), (uniq % n).astype(np.int32), c4)


@dataclass(frozen=True)
class Rankings:
    """Rankings and K-wise choices, stored flat (CSR style).

    Ranking ``r`` covers ``members[offsets[r]:offsets[r+1]]`` with rank levels
    ``levels[...]`` (0 = best; equal levels are ties). A top-1 choice among K is a ranking
    whose winner has level 0 and the rest share level 1 (the rest are not ordered).
    """

    items: ItemIndex
    members: NDArray[np.int32]
    levels: NDArray[np.int32]
    offsets: NDArray[np.int64]
    weight: NDArray[np.float64] | None = None
    annotator: NDArray[np.object_] | None = None
    unordered_tail: NDArray[np.bool_] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", np.ascontiguousarray(self.members, dtype=np.int32))
        object.__setattr__(self, "levels", np.ascontiguousarray(self.levels, dtype=np.int32))
        off = np.ascontiguousarray(self.offsets, dtype=np.int64)
        object.__setattr__(self, "offsets", off)
        nr = off.size - 1
        if off[0] != 0 or off[-1] != self.members.size or np.any(np.diff(off) < 2):
            raise ValueError("each ranking needs at least 2 items and offsets must cover members")
        if self.levels.shape != self.members.shape:
            raise ValueError("levels and members must have the same length")
        w = np.ones(nr) if self.weight is None else _column(self.weight, np.float64, nr, "weight")
        if np.any(~np.isfinite(w)) or np.any(w < 0):
            raise ValueError("ranking weights must be finite and >= 0")
        object.__setattr__(self, "weight", w)
        ut = self.unordered_tail
        ut = np.zeros(nr, bool) if ut is None else _column(ut, np.bool_, nr, "unordered_tail")
        object.__setattr__(self, "unordered_tail", ut)
        m = len(self.items)
        if self.members.size and (self.members.min() < 0 or self.members.max() >= m):
            raise ValueError(f"item ids must lie in [0, {m})")
        for r in range(nr):
            seg = self.members[off[r] : off[r + 1]]
            if np.unique(seg).size != seg.size:
                raise ValueError(f"ranking {r} lists an item twice")

    def __len__(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @classmethod
    def from_lists(
        cls,
        rankings: Sequence[Sequence[str | Sequence[str]]],
        *,
        items: ItemIndex | None = None,
        weight: Sequence[float] | None = None,
        unordered_tail: bool | Sequence[bool] = False,
    ) -> Rankings:
        """From lists of names, best first; an inner list is a group of tied items.

        >>> r = Rankings.from_lists([["x", ["y", "z"]]])   # x first, y and z tied
        >>> r.members.tolist(), r.levels.tolist()
        ([0, 1, 2], [0, 1, 1])
        """
        flat: list[str] = []
        levels: list[int] = []
        offsets = [0]
        for ranking in rankings:
            for lvl, group in enumerate(ranking):
                grp = [group] if isinstance(group, str) else list(group)
                flat.extend(grp)
                levels.extend([lvl] * len(grp))
            offsets.append(len(flat))
        items = items or ItemIndex.from_names(flat)
        tail = np.broadcast_to(np.asarray(unordered_tail, bool), (len(rankings),))
        return cls(
            items, items.ids(flat), np.asarray(levels), np.asarray(offsets), weight,  # type: ignore[arg-type]
            unordered_tail=tail,
        )

    @classmethod
    def from_choices(
        cls, winners: Sequence[str], choice_sets: Sequence[Sequence[str]], **kw: object
    ) -> Rankings:
        """Top-1 choices: ``winners[r]`` was picked among ``choice_sets[r]``."""
        lists = []
        for w, s in zip(winners, choice_sets, strict=True):
            rest = [x for x in s if x != w]
            if len(rest) != len(s) - 1:
                raise ValueError(f"winner {w!r} is not in its choice set {list(s)!r}")
            lists.append([w, rest])
        return cls.from_lists(lists, unordered_tail=True, **kw)  # type: ignore[arg-type]

    def to_pairwise(self) -> PairwiseVotes:
        """Break each ranking into its implied pairwise outcomes (ties become ties; pairs
        inside an unordered tail are not compared); for K = 2 this is the identity."""
        a_l, b_l, o_l, w_l = [], [], [], []
        assert self.weight is not None and self.unordered_tail is not None
        for r in range(len(self)):
            s, e = self.offsets[r], self.offsets[r + 1]
            mem, lev = self.members[s:e], self.levels[s:e]
            ii, jj = np.triu_indices(e - s, 1)
            la, lb = lev[ii], lev[jj]
            if self.unordered_tail[r]:
                keep = ~((la == lb) & (la == lev.max()))
                ii, jj, la, lb = ii[keep], jj[keep], la[keep], lb[keep]
            a_l.append(mem[ii])
            b_l.append(mem[jj])
            o_l.append(np.where(la < lb, 0, np.where(la > lb, 1, 2)))
            w_l.append(np.full(ii.size, self.weight[r]))
        return PairwiseVotes(
            self.items,
            np.concatenate(a_l),
            np.concatenate(b_l),
            np.concatenate(o_l),
            np.concatenate(w_l),
        )
