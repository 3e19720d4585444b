"""Readers that do not produce one vote per row: aggregated pair counts (leaderbot JSON)
and rankings / K-wise choices (JSONL).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from prefkit.data._build import Parsed
from prefkit.data._formats import Columns
from prefkit.data.formats import register
from prefkit.data.table import Table
from prefkit.data.errors import InvalidRow
from prefkit.data.records import MAX_WEIGHT, ItemIndex, PairCounts, Rankings

__all__ = ["read_counts_json", "read_rankings"]


def _no_columns(columns: Columns, fmt: str) -> None:
    if columns:
        raise ValueError(f"format {fmt!r} takes no columns= mapping")


@register("counts_json", gives="PairCounts", priority=5, describe='aggregated counts JSON {"models", "X": [[i, j]], '
          '"Y": [[wins_i, wins_j, ties, both_bad]]} (leaderbot)',
          detect=lambda kind, keys, first: {"models", "X", "Y"} <= keys)
def read_counts_json(
    src: str | Path | Table, *, columns: Columns = None, items: ItemIndex | None = None
) -> Parsed:
    """Votes aggregated per pair, as in leaderbot's data files: ``models`` names the items,
    ``X[k] = [i, j]`` indexes a pair into ``models`` and ``Y[k]`` holds the wins of ``i``,
    the wins of ``j``, ties and both-bad ties (a 3-column ``Y`` has no both-bad column).
    Gives :class:`PairCounts` over the models that appear in a valid pair, sorted; pairs
    listed twice are summed. Problems are located by pair (1-based ``k``).

    >>> import tempfile, pathlib, json
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.json"
    >>> _ = p.write_text(json.dumps({"models": ["z", "x"], "X": [[0, 1]], "Y": [[5, 2, 1, 0]]}))
    >>> c = read_counts_json(p).votes
    >>> c.items.names, c.i.tolist(), c.j.tolist(), c.counts.tolist()
    (('x', 'z'), [0], [1], [[2.0, 5.0, 1.0, 0.0]])
    """
    src = Table.of(src)
    _no_columns(columns, "counts_json")
    doc = src.json_value()
    if not isinstance(doc, dict) or not {"models", "X", "Y"} <= set(doc):
        src.fail(None, 'expected a JSON object with keys "models", "X" and "Y"',
                 "see leaderbot's data files for the layout", "wrong_shape")
    models, xs, ys = doc["models"], doc["X"], doc["Y"]
    fix_shape = "X and Y must be lists of the same length, one entry per pair"
    if not (isinstance(models, list) and isinstance(xs, list) and isinstance(ys, list)):
        src.fail(None, "models, X and Y must be lists", fix_shape, "wrong_shape")
    if len(xs) != len(ys):
        src.fail(None, f"X has {len(xs)} pairs but Y has {len(ys)}", fix_shape, "wrong_shape")
    if not xs:
        raise src.empty()
    names = [str(m) for m in models]
    if len(set(names)) != len(names):
        dup = next(n for k, n in enumerate(names) if n in names[:k])
        src.fail(None, f"model {dup!r} is listed twice in 'models'",
                 "list each model once", "duplicate_item")
    probs: list[InvalidRow] = []

    def bad(k: int, fld: str, value: Any, reason: str, fix: str, kind: str) -> None:
        probs.append(InvalidRow(src.name, k + 1, fld, value, reason, fix, kind, "pair"))

    keep_i, keep_j, keep_c = [], [], []
    for k, (x, y) in enumerate(zip(xs, ys)):
        ok = True
        if not (isinstance(x, list) and len(x) == 2 and all(_is_index(v, len(names)) for v in x)):
            bad(k, f"X[{k}]", x, f"pair {x!r} is not two indices into models",
                f"each entry of X is [i, j] with 0 <= i, j < {len(names)}", "bad_pair")
            ok = False
        elif x[0] == x[1]:
            bad(k, f"X[{k}]", x, f"item {names[x[0]]!r} is compared with itself",
                "fix the pair or drop it", "self_comparison")
            ok = False
        elif items is not None and not all(names[v] in items for v in x):
            miss = next(names[v] for v in x if names[v] not in items)
            bad(k, f"X[{k}]", x, f"unknown item {miss!r}",
                f"the given item index has {len(items)} items", "unknown_item")
            ok = False
        counts = _counts(y)
        if counts is None:
            bad(k, f"Y[{k}]", y, f"counts {y!r} are not 3 or 4 finite numbers >= 0",
                "Y[k] = [wins_i, wins_j, ties, both_bad]", "bad_counts")
            ok = False
        if ok:
            keep_i.append(x[0])
            keep_j.append(x[1])
            keep_c.append(counts)
    if not keep_i:
        return Parsed(None, probs, len(xs))
    i, j, c = np.asarray(keep_i), np.asarray(keep_j), np.asarray(keep_c, dtype=np.float64)
    used = np.unique(np.concatenate([i, j]))
    index = items or ItemIndex.from_names([names[u] for u in used])
    remap = np.full(len(names), -1, dtype=np.int64)
    remap[used] = [index.id(names[u]) for u in used]
    i, j = remap[i], remap[j]
    swap = i > j
    c[swap] = c[swap][:, [1, 0, 2, 3]]
    lo, hi = np.where(swap, j, i), np.where(swap, i, j)
    key, inv = np.unique(lo * len(index) + hi, return_inverse=True)
    cells = np.zeros((key.size, 4))
    np.add.at(cells, inv, c)
    n = len(index)
    return Parsed(PairCounts(index, key // n, key % n, cells), probs, len(xs))


def _is_index(v: Any, n: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n


def _counts(y: Any) -> list[float] | None:
    if not isinstance(y, list) or len(y) not in (3, 4):
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in y):
        return None
    vals = [float(v) for v in y] + [0.0] * (4 - len(y))
    return vals if all(math.isfinite(v) and v >= 0 for v in vals) else None


@register("rankings", gives="Rankings", priority=10, describe='rankings JSONL: {"ranking": ["m1", ["m2", "m3"], '
          '"m4"]} (inner list = tie) or {"choices": [...], "winner": "m2"}',
          detect=lambda kind, keys, first: "ranking" in keys or {"choices", "winner"} <= keys)
def read_rankings(
    src: str | Path | Table, *, columns: Columns = None, items: ItemIndex | None = None
) -> Parsed:
    """Rankings and K-wise choices, one JSON object per line (or a JSON list):

    - ``{"ranking": ["m1", ["m2", "m3"], "m4"]}``: best first; an inner list is a group of
      tied items (here m2 and m3 share second place).
    - ``{"choices": ["m1", "m2", "m3"], "winner": "m2"}``: a top-1 choice among K; the
      others are left unordered.

    Optional ``weight`` (>= 0) and ``annotator`` per record. Gives :class:`Rankings`.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.jsonl"
    >>> _ = p.write_text('{"ranking": ["b", ["a", "c"]]}\\n'
    ...                  '{"choices": ["a", "c"], "winner": "c"}\\n')
    >>> r = read_rankings(p).votes
    >>> r.items.names, r.members.tolist(), r.levels.tolist()
    (('a', 'b', 'c'), [1, 0, 2, 2, 0], [0, 1, 1, 0, 1])
    """
    src = Table.of(src)
    _no_columns(columns, "rankings")
    recs = src.records()
    if recs.n_read == 0:
        raise src.empty()
    probs = list(recs.problems)
    lists: list[list[Any]] = []
    tails: list[bool] = []
    weights: list[float] = []
    annot: list[str] = []

    def bad(line: int, fld: str | None, value: Any, reason: str, fix: str, kind: str) -> None:
        probs.append(src.problem(line, reason, fix, kind, field=fld, value=value))

    shape = 'a record is {"ranking": [...]} or {"choices": [...], "winner": ...}'
    for rec, line in zip(recs.rows, recs.lines):
        if "ranking" in rec:
            fld, groups, tail = "ranking", rec["ranking"], False
            if not isinstance(groups, list):
                bad(line, fld, groups, "ranking is not a list", shape, "bad_ranking")
                continue
            groups = [g if isinstance(g, list) else [g] for g in groups]
        elif "choices" in rec and "winner" in rec:
            fld, choices, win, tail = "winner", rec["choices"], rec["winner"], True
            if not isinstance(choices, list) or win not in choices:
                bad(line, fld, win, f"winner {win!r} is not one of the choices",
                    "name the winner exactly as in choices", "bad_ranking")
                continue
            groups = [[win], [c for c in choices if c != win]]
            fld = "choices"
        else:
            bad(line, None, None, "neither 'ranking' nor 'choices' + 'winner'", shape,
                "bad_ranking")
            continue
        flat = [x for g in groups for x in g]
        if not all(isinstance(x, str) and x.strip() for x in flat):
            bad(line, fld, flat, "item names must be non-empty strings", shape, "bad_ranking")
            continue
        if len(set(flat)) != len(flat):
            dup = next(x for k, x in enumerate(flat) if x in flat[:k])
            bad(line, fld, dup, f"item {dup!r} appears twice", "list each item once",
                "self_comparison")
            continue
        if len(flat) < 2:
            bad(line, fld, flat, "a ranking needs at least 2 items", shape, "bad_ranking")
            continue
        if items is not None and any(x not in items for x in flat):
            miss = next(x for x in flat if x not in items)
            bad(line, fld, miss, f"unknown item {miss!r}",
                f"the given item index has {len(items)} items", "unknown_item")
            continue
        w = rec.get("weight", 1.0)
        if (isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w)
                or w < 0 or w > MAX_WEIGHT):
            bad(line, "weight", w, f"weight {w!r} is not a finite number in [0, {MAX_WEIGHT:g}]",
                f"weights must be finite numbers >= 0 and at most {MAX_WEIGHT:g} (1 = one vote)",
                "bad_weight")
            continue
        lists.append([g for g in groups if g])
        tails.append(tail)
        weights.append(float(w))
        annot.append("" if rec.get("annotator") is None else str(rec["annotator"]))
    probs.sort(key=lambda p: p.line or 0)
    if not lists:
        return Parsed(None, probs, recs.n_read)
    index = items or ItemIndex.from_names([x for r in lists for g in r for x in g])
    r = Rankings.from_lists(lists, items=index, weight=weights, unordered_tail=tails)
    if any(annot):
        from dataclasses import replace

        r = replace(r, annotator=np.asarray(annot, dtype=object))
    return Parsed(r, probs, recs.n_read)
