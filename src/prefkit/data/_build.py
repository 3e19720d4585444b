"""From columns to records, vectorised: outcome labels and item names are mapped through
their (small) dictionaries, checks run as array masks, and an :class:`InvalidRow` is built
only for a row that fails one.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from prefkit.data._frame import Cat, Frame, Num
from prefkit.data.errors import InvalidRow, clip
from prefkit.data.formats import Parsed
from prefkit.data.stream import norm_label
from prefkit.data.records import ItemIndex, PairCounts, PairwiseVotes, Rankings

__all__ = ["Items", "Parsed", "Problems", "build_pairwise", "map_labels", "norm_label"]


Check = tuple[NDArray[np.int64], str | None, str, Callable[[Any], str], str, Callable[[int], Any]]


class Problems:
    """Collects row-level problems as masks; ``rows()`` turns them into sorted InvalidRows."""

    def __init__(self, frame: Frame) -> None:
        self.frame = frame
        self.bad = np.zeros(frame.n, dtype=bool)
        self._checks: list[Check] = []
        self.extra: list[tuple[int, InvalidRow]] = []  # (row, problem) built by a reader

    def flag(
        self, mask: NDArray[np.bool_], *, field: str | None, kind: str,
        reason: Callable[[Any], str], fix: str, value: Callable[[int], Any],
    ) -> None:
        if mask.any():
            self.bad |= mask
            self._checks.append((np.flatnonzero(mask), field, kind, reason, fix, value))

    def add(self, row: int, problem: InvalidRow) -> None:
        self.bad[row] = True
        self.extra.append((row, problem))

    def rows(self) -> list[InvalidRow]:
        f = self.frame
        out = list(f.problems) + [p for _, p in self.extra]
        unit = f.src.unit
        for rows, fld, kind, reason, fix, value in self._checks:
            for r, ln in zip(rows.tolist(), f.line_of(rows).tolist()):
                v = clip(value(r))
                out.append(InvalidRow(f.src.name, ln, fld, v, reason(v), fix, kind, unit))
        out.sort(key=lambda p: (p.line or 0))
        return out


def is_blank(v: Any) -> bool:
    """Missing: None, NaN, or an empty / all-space string."""
    return v is None or (isinstance(v, float) and math.isnan(v)) or (
        isinstance(v, str) and not v.strip())


def map_labels(
    frame: Frame, probs: Problems, col: str, mapping: Mapping[str, int], *, what: str = "outcome"
) -> NDArray[np.int64]:
    """Outcome code per row from the labels in ``col`` (``-1`` where invalid, flagged)."""
    cat = frame.cols[col]
    assert isinstance(cat, Cat)
    lut = np.array([mapping.get(norm_label(v), -1) for v in cat.values] + [-1], dtype=np.int64)
    out = lut[cat.codes]
    bad = out < 0
    if bad.any():
        shown = ", ".join(dict.fromkeys(_display(mapping)))
        blank_lut = np.array([is_blank(v) for v in cat.values] + [True])
        blank = blank_lut[cat.codes]
        probs.flag(blank, field=col, kind="missing_value", reason=lambda v: f"missing {what}",
                   fix=f"expected one of {shown}", value=cat.value)
        probs.flag(bad & ~blank, field=col, kind="unknown_label",
                   reason=lambda v: f"unknown {what} label {v!r}", fix=f"expected one of {shown}",
                   value=cat.value)
    return out


def _display(mapping: Mapping[str, int]) -> list[str]:
    return [k for k in mapping if not k.isdigit()] + [k for k in mapping if k.isdigit()]


_MISSING, _UNKNOWN = -1, -2


class Items:
    """Item names across several name columns -> ids, following the sorted
    ``ItemIndex.from_names`` convention over the names of the rows that end up valid.

    The index is first built over every name (one table lookup per row and column); only
    when some rows turn out invalid are the ids remapped to the names still in use."""

    def __init__(self, frame: Frame, probs: Problems, cols: Sequence[str],
                 items: ItemIndex | None = None) -> None:
        self.given = items is not None
        self.cols = list(cols)
        keys: list[list[str | None]] = []
        seen: set[str] = set()
        for c in cols:
            cat = frame.cols[c]
            assert isinstance(cat, Cat)
            k = [None if is_blank(v) else norm_group(v) for v in cat.values]
            used = np.bincount(cat.codes + 1, minlength=len(k) + 1)[1:] > 0
            seen.update(x for x, u in zip(k, used.tolist()) if u and x is not None)
            keys.append(k)
        self.index = items if items is not None else ItemIndex.from_names(seen)
        lookup = self.index._ids
        self.ids: list[NDArray[np.int32]] = []
        for c, k in zip(cols, keys):
            cat = frame.cols[c]
            assert isinstance(cat, Cat)
            lut = [_MISSING if x is None else lookup.get(x, _UNKNOWN) for x in k] + [_MISSING]
            ids = np.asarray(lut, dtype=np.int32)[cat.codes]
            probs.flag(ids == _MISSING, field=c, kind="missing_value", value=cat.value,
                       reason=lambda v: "missing item name",
                       fix="every vote needs the names of both items")
            if items is not None:
                unknown = sorted({x for x, i in zip(k, lut) if i == _UNKNOWN and x is not None})
                probs.flag(ids == _UNKNOWN, field=c, kind="unknown_item", value=cat.value,
                           reason=lambda v: f"unknown item {v!r}",
                           fix=f"the given item index has {len(items)} items"
                           + _close_hint(unknown, items))
            self.ids.append(ids)

    def self_compared(self, probs: Problems, i: int = 0, j: int = 1) -> None:
        a, b = self.ids[i], self.ids[j]
        names, ca, cb = self.index.names, self.cols[i], self.cols[j]
        probs.flag((a == b) & (a >= 0), field=cb, kind="self_comparison",
                   reason=lambda v: f"item {v!r} is compared with itself (same name in "
                   f"{ca!r} and {cb!r})",
                   fix="fix one of the two names or drop the row", value=lambda r: names[a[r]])

    def final(self, valid: NDArray[np.bool_] | None) -> tuple[ItemIndex, list[NDArray[np.int32]]]:
        """The index over names used by valid rows (``None``: all rows) and each column's
        ids for those rows."""
        if valid is None:
            return self.index, self.ids
        cols = [ids[valid] for ids in self.ids]
        m = len(self.index)
        used = np.zeros(m, dtype=bool)
        for ids in cols:
            used[ids] = True
        if self.given or used.all():
            return self.index, cols
        index = ItemIndex(tuple(n for n, u in zip(self.index.names, used.tolist()) if u))
        remap = np.cumsum(used, dtype=np.int32) - 1  # sorted stays sorted
        return index, [remap[ids] for ids in cols]


def _close_hint(bad: list[str], items: ItemIndex) -> str:
    if len(bad) != 1:
        return ""
    close = difflib.get_close_matches(bad[0], items.names, n=3)
    return f"; did you mean {', '.join(map(repr, close))}?" if close else ""


def check_weight(frame: Frame, probs: Problems, col: str) -> NDArray[np.float64]:
    num = frame.cols[col]
    assert isinstance(num, Num)
    x = num.x
    unparsed = np.zeros(frame.n, dtype=bool)
    unparsed[list(num.unparsed)] = True
    from prefkit.data.records import MAX_WEIGHT

    fix = f"weights must be finite numbers >= 0 and at most {MAX_WEIGHT:g} (1 = one vote)"
    probs.flag(unparsed, field=col, kind="bad_weight", value=num.value,
               reason=lambda v: f"weight {v!r} is not a number", fix=fix)
    with np.errstate(invalid="ignore"):
        probs.flag(np.isnan(x) & ~unparsed, field=col, kind="bad_weight", value=num.value,
                   reason=lambda v: "missing or NaN weight", fix=fix)
        probs.flag(np.isinf(x) | (x < 0), field=col, kind="bad_weight", value=num.value,
                   reason=lambda v: f"{'negative' if v < 0 else 'infinite'} weight {v!r}",
                   fix=fix)
        probs.flag(np.isfinite(x) & (x > MAX_WEIGHT), field=col, kind="bad_weight",
                   value=num.value, reason=lambda v: f"weight {v!r} is too large", fix=fix)
    return x


def check_number(
    frame: Frame, probs: Problems, col: str, what: str, fix: str
) -> NDArray[np.float64]:
    num = frame.cols[col]
    assert isinstance(num, Num)
    bad = ~np.isfinite(num.x)
    bad[list(num.unparsed)] = True
    probs.flag(bad, field=col, kind="bad_number", value=num.value, fix=fix,
               reason=lambda v: f"missing {what}" if is_blank(v)
               else f"{what} {v!r} is not a number")
    return num.x


def group_labels(frame: Frame, col: str | None) -> NDArray[np.object_] | None:
    """Annotator / prompt ids as strings ("" where missing)."""
    if col is None or col not in frame.cols:
        return None
    cat = frame.cols[col]
    assert isinstance(cat, Cat)
    vals = np.array([norm_group(v) for v in cat.values] + [""], dtype=object)
    return vals[cat.codes]


def norm_group(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def build_pairwise(
    frame: Frame,
    probs: Problems,
    items: Items,
    outcome: NDArray[np.int64],
    *,
    weight: str | None = None,
    weight_x: NDArray[np.float64] | None = None,
    annotator: str | None = None,
    prompt: str | None = None,
    features: Mapping[str, tuple[str, str]] | None = None,
    feature_x: Mapping[str, tuple[NDArray[np.float64], NDArray[np.float64]]] | None = None,
    feature_fix: str = "",
    soft: NDArray[np.float64] | None = None,
) -> Parsed:
    """PairwiseVotes from the valid rows; ``items.ids[0]``/``[1]`` are the two sides.
    ``features`` name feature columns (checked here), ``feature_x`` gives computed ones."""
    items.self_compared(probs)
    w = weight_x
    if weight is not None and weight in frame.cols:
        wc = check_weight(frame, probs, weight)
        w = wc if w is None else w * wc
    feats_x = dict(feature_x or {})
    for name, (ca, cb) in (features or {}).items():
        fix = f"feature {name!r} needs a number for each side ({ca}, {cb})"
        fix += f"; {feature_fix}" if feature_fix else ""
        feats_x[name] = (check_number(frame, probs, ca, f"feature {ca!r}", fix),
                         check_number(frame, probs, cb, f"feature {cb!r}", fix))
    problems = probs.rows()
    valid = ~probs.bad if probs.bad.any() else None
    if valid is not None and not valid.any():
        return Parsed(None, problems, frame.n_read)
    index, (a, b) = items.final(valid)

    def sub(x: Any) -> Any:
        return x if x is None or valid is None else x[valid]

    votes = PairwiseVotes(
        index, a, b, sub(outcome).astype(np.int8), sub(w),
        sub(group_labels(frame, annotator)), sub(group_labels(frame, prompt)),
        {k: (sub(xa), sub(xb)) for k, (xa, xb) in feats_x.items()}, sub(soft),
    )
    return Parsed(votes, problems, frame.n_read)
