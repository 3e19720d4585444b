"""Columns of an input file, vectorised: categorical columns as ``(codes, values)``
(dictionary encoding; ``-1`` = missing) and numeric columns as float arrays (``NaN`` =
missing). Parquet and CSV go through pyarrow (no Python loop over rows); JSON records and
the CSV fallback build the same columns with the standard library.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from prefkit.data.table import Table
from prefkit.data.errors import InvalidInputError, InvalidRow

__all__ = ["Cat", "Frame", "Need", "Num", "frame_from_lists", "load_frame"]

#: why a column is needed: ``(role, key of columns=)``, e.g. ``("the outcome", "winner")``;
#: ``None`` for an optional column.
Need = tuple[str, str] | None

NULLS = frozenset({"", "na", "n/a", "nan", "null", "none", "#n/a", "-nan"})
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


@dataclass
class Cat:
    """A dictionary-encoded column: row ``r`` holds ``values[codes[r]]`` (``-1`` = missing)."""

    codes: NDArray[np.integer]
    values: list[Any]

    def value(self, row: int) -> Any:
        c = int(self.codes[row])
        return None if c < 0 else self.values[c]


@dataclass
class Num:
    """A numeric column (``NaN`` = missing); ``unparsed`` maps rows whose raw value was not
    a number to that raw value."""

    x: NDArray[np.float64]
    unparsed: dict[int, Any] = field(default_factory=dict)

    def value(self, row: int) -> Any:
        return self.unparsed.get(row, float(self.x[row]))


@dataclass
class Frame:
    """Named columns of ``n`` rows from one source, and how to find each row's line."""

    src: Table
    n: int
    cols: dict[str, Cat | Num]
    lines: NDArray[np.int64] | None = None  # explicit (JSON); else computed on demand
    problems: list[InvalidRow] = field(default_factory=list)  # rows that could not be parsed
    n_read: int = -1  # records seen, parsed or not (default: n)

    def __post_init__(self) -> None:
        if self.n_read < 0:
            self.n_read = self.n + len(self.problems)

    def line_of(self, rows: NDArray[np.int64]) -> NDArray[np.int64]:
        if self.lines is None:
            self.lines = self.src.row_lines(self.n)
        return self.lines[rows]


def missing_column(
    src: Table, col: str, role: str, present: Sequence[str], key: str
) -> InvalidRow:
    more = len(present) - 30
    shown = ", ".join(present[:30]) + (f" and {more} more" if more > 0 else "")
    if key == "features":
        how = "a feature <name> needs columns <name>_a and <name>_b (features=[...])"
    else:
        how = f"map yours with columns={{{key!r}: '<name>'}} (CLI: --column {key}=<name>)"
    return InvalidRow(src.name, None, col, None, f"missing column {col!r} (needed for {role})",
                      f"columns present: {shown}; {how}", "missing_column")


# -- building columns from Python values ------------------------------------------
def cat_from_list(values: Sequence[Any]) -> Cat:
    lut: dict[Any, int] = {}
    codes = np.empty(len(values), dtype=np.int32)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            codes[i] = -1
            continue
        if isinstance(v, (list, dict)):
            v = "/".join(map(str, v)) if isinstance(v, list) else str(v)
        codes[i] = lut.setdefault(v, len(lut))
    return Cat(codes, list(lut))


def to_float(v: Any) -> float | None:
    """A number from a JSON/CSV value; ``NaN`` for missing; ``None`` if not a number."""
    if v is None:
        return float("nan")
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        s = v.strip().lower()
        if s in NULLS:
            return float("nan")
        if s in _TRUE or s in _FALSE:
            return 1.0 if s in _TRUE else 0.0
        try:
            return float(s)
        except ValueError:
            return None
    if isinstance(v, dict):  # FastChat stores some counts as {"h1": 0, "h2": 3, ...}
        parts = [to_float(x) for x in v.values()]
        return None if any(p is None for p in parts) else float(sum(parts))  # type: ignore[arg-type]
    return None


def num_from_list(values: Sequence[Any]) -> Num:
    x = np.empty(len(values), dtype=np.float64)
    bad: dict[int, Any] = {}
    for i, v in enumerate(values):
        f = to_float(v)
        if f is None:
            bad[i] = v
            f = float("nan")
        x[i] = f
    return Num(x, bad)


def num_from_cat(cat: Cat) -> Num:
    parsed = [to_float(v) for v in cat.values]
    lut = np.array([np.nan if p is None else p for p in parsed] + [np.nan])
    x = lut[cat.codes]
    bad_codes = np.flatnonzero(np.array([p is None for p in parsed] + [False]))
    rows = np.flatnonzero(np.isin(cat.codes, bad_codes)).tolist() if bad_codes.size else []
    return Num(x, {r: cat.values[cat.codes[r]] for r in rows})


def frame_from_lists(
    src: Table, lines: Sequence[int], cats: Mapping[str, Sequence[Any]],
    nums: Mapping[str, Sequence[Any]] = {},
) -> Frame:
    cols: dict[str, Cat | Num] = {k: cat_from_list(v) for k, v in cats.items()}
    cols.update({k: num_from_list(v) for k, v in nums.items()})
    return Frame(src, len(lines), cols, np.asarray(lines, dtype=np.int64))


def get(rec: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` of a record (``None`` where any part is missing)."""
    cur: Any = rec
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


# -- the loader ---------------------------------------------------------------------
def load_frame(
    src: Table,
    cats: Mapping[str, Need],
    nums: Mapping[str, Need] = {},
    *,
    maybe_nums: Sequence[str] = (),
) -> Frame:
    """Load the named columns. ``cats``/``nums`` map a column (dotted for nested JSON or
    Parquet structs) to why it is needed (``None``: optional, absent = all missing);
    ``maybe_nums`` are kept only if they hold numbers (auto-detected features)."""
    if src.kind == "parquet":
        return _load_parquet(src, cats, nums, maybe_nums)
    if src.kind == "csv":
        try:
            return _load_csv_arrow(src, cats, nums, maybe_nums)
        except ImportError:
            pass
        except _ArrowParseError:
            pass  # ragged rows etc.: the csv module reports them line by line
    return _load_records(src, cats, nums, maybe_nums)


class _ArrowParseError(Exception):
    pass


def _check_present(src: Table, present: Sequence[str], wanted: Mapping[str, Need]) -> None:
    have = set(present)
    probs = [missing_column(src, c, need[0], present, need[1])
             for c, need in wanted.items() if need is not None and c.split(".")[0] not in have]
    if probs:
        raise InvalidInputError(probs)


def _load_records(
    src: Table, cats: Mapping[str, Need], nums: Mapping[str, Need], maybe: Sequence[str]
) -> Frame:
    recs = src.records()
    rows, lines, probs, n_read = recs.rows, recs.lines, recs.problems, recs.n_read
    if n_read == 0:
        raise src.empty()
    present = src.header()
    _check_present(src, present, {**cats, **nums})
    cols: dict[str, Cat | Num] = {}
    for c in cats:
        cols[c] = cat_from_list([get(r, c) for r in rows])
    for c in nums:
        cols[c] = num_from_list([get(r, c) for r in rows])
    for c in maybe:
        vals = [get(r, c) for r in rows]
        num = num_from_list(vals)
        if not num.unparsed and not all(v is None for v in vals):
            cols[c] = num
    return Frame(src, len(rows), cols, np.asarray(lines, dtype=np.int64), probs, n_read)


def _load_csv_arrow(
    src: Table, cats: Mapping[str, Need], nums: Mapping[str, Need], maybe: Sequence[str]
) -> Frame:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    present = src.header()
    _check_present(src, present, {**cats, **nums})
    have = set(present)
    wanted = [c for c in [*cats, *nums, *maybe] if c in have]
    dict_t = pa.dictionary(pa.int32(), pa.string())
    try:
        table = pacsv.read_csv(
            src.path,
            read_options=pacsv.ReadOptions(use_threads=True, block_size=1 << 22),
            parse_options=pacsv.ParseOptions(delimiter=src.delimiter),
            convert_options=pacsv.ConvertOptions(
                include_columns=wanted,
                column_types={c: dict_t for c in cats if c in have},
                strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as e:
        raise _ArrowParseError(str(e)) from e
    if table.num_rows == 0:
        raise src.empty()
    return _frame_from_table(src, table, cats, nums, maybe)


def _load_parquet(
    src: Table, cats: Mapping[str, Need], nums: Mapping[str, Need], maybe: Sequence[str]
) -> Frame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(src.path)
    present = list(schema.names)
    _check_present(src, present, {**cats, **nums})
    top = list(dict.fromkeys(c.split(".")[0] for c in [*cats, *nums, *maybe]
                             if c.split(".")[0] in present))
    strings = [c for c in cats if c in present and (
        pa.types.is_string(schema.field(c).type) or pa.types.is_large_string(schema.field(c).type))]
    # ParquetFile.read, unlike read_table, does not import pyarrow.dataset (and pandas)
    table = pq.ParquetFile(src.path, read_dictionary=strings).read(columns=top)
    if table.num_rows == 0:
        raise src.empty()
    return _frame_from_table(src, table, cats, nums, maybe)


def _column(table: Any, path: str) -> Any:
    head, *rest = path.split(".")
    if head not in table.column_names:
        return None
    col = table.column(head)
    for part in rest:
        if not hasattr(col.type, "get_field_index") or col.type.get_field_index(part) < 0:
            return None
        col = _child(col, col.type.get_field_index(part))
    return col


def _child(col: Any, k: int) -> Any:
    """Field ``k`` of a struct ChunkedArray, with the parent's nulls (no compute kernels:
    their first call imports pandas)."""
    import pyarrow as pa

    return pa.chunked_array([ch.flatten()[k] for ch in col.chunks], type=col.type.field(k).type)


def _frame_from_table(
    src: Table, table: Any, cats: Mapping[str, Need], nums: Mapping[str, Need],
    maybe: Sequence[str],
) -> Frame:
    cols: dict[str, Cat | Num] = {}
    n = table.num_rows
    for c in cats:
        col = _column(table, c)
        cols[c] = _cat_from_arrow(col) if col is not None else Cat(np.full(n, -1, np.int32), [])
    for c in nums:
        col = _column(table, c)
        cols[c] = _num_from_arrow(col) if col is not None else Num(np.full(n, np.nan))
    for c in maybe:
        col = _column(table, c)
        if col is not None and _is_numeric(col.type):
            cols[c] = _num_from_arrow(col)
    return Frame(src, n, cols)


def _is_numeric(t: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_struct(t):
        return all(_is_numeric(t.field(i).type) for i in range(t.num_fields))
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
                or pa.types.is_null(t))


def _cat_from_arrow(col: Any) -> Cat:
    import pyarrow as pa

    if not pa.types.is_dictionary(col.type):
        import pyarrow.compute as pc

        col = pc.dictionary_encode(col)
    if isinstance(col, pa.Array):
        col = pa.chunked_array([col])
    if col.num_chunks == 0:
        return Cat(np.zeros(0, np.int32), [])
    col = col.unify_dictionaries()
    values = col.chunk(0).dictionary.to_pylist()
    parts = [_values(ch.indices, -1) for ch in col.chunks]
    codes = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return Cat(codes.astype(np.int32, copy=False), values)


_FLOATS = {"halffloat": "float16", "float": "float32", "double": "float64"}


def _values(arr: Any, fill: float) -> NDArray[Any]:
    """A fixed-width Arrow array as numpy, ``fill`` for nulls; read from the buffers
    directly (``to_numpy`` imports pandas, which costs more than the whole read)."""
    validity, data = arr.buffers()[:2]
    n, off = len(arr), arr.offset
    name = str(arr.type)
    x = np.frombuffer(data, dtype=np.dtype(_FLOATS.get(name, name)), count=n + off)[off:]
    if arr.null_count:
        bits = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
        x = np.where(bits[off : off + n].astype(bool), x, fill)
    return x


def _floats(arr: Any) -> NDArray[np.float64]:
    """One numeric or boolean Arrow array as float64 (NaN for nulls), without pyarrow's
    compute kernels (their first call imports pandas)."""
    import pyarrow as pa

    t, n, off = arr.type, len(arr), arr.offset
    if pa.types.is_null(t):
        return np.full(n, np.nan)
    if pa.types.is_boolean(t):
        validity, data = arr.buffers()[:2]
        x = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
        out = x[off : off + n].astype(np.float64)
        if arr.null_count:
            ok = np.unpackbits(np.frombuffer(validity, dtype=np.uint8), bitorder="little")
            out[~ok[off : off + n].astype(bool)] = np.nan
        return out
    return _values(arr, np.nan).astype(np.float64, copy=False)


def _num_from_arrow(col: Any) -> Num:
    import pyarrow as pa

    if isinstance(col, pa.Array):
        col = pa.chunked_array([col])
    t = col.type
    if pa.types.is_struct(t):  # e.g. FastChat's header_count_a = {h1: .., ..., h6: ..}
        total: NDArray[np.float64] | None = None
        for i in range(t.num_fields):
            x = _num_from_arrow(_child(col, i)).x
            total = x if total is None else total + x
        return Num(total if total is not None else np.full(len(col), np.nan))
    if _is_numeric(t):
        parts = [_floats(ch) for ch in col.chunks] or [np.zeros(0)]
        return Num(np.concatenate(parts))
    return num_from_cat(_cat_from_arrow(col))

