"""One input, whatever holds it: a CSV, JSONL, JSON or Parquet file (``.gz`` for the text
ones), a ``.txt`` file (one text per line), a folder written by ``datasets.save_to_disk`` or a
``datasets.Dataset`` object. Every reader of :mod:`prefkit.data.formats` takes a
:class:`Table`: the vote readers load its columns as arrays (:mod:`prefkit.data.columns`),
the text readers walk its records, each with the line (or row) it came from.

What no format accepts is refused here, once, with the file, the line and the fix: a folder
that is not a saved dataset, text that is not UTF-8, duplicate column names (a CSV header,
a Parquet schema) and duplicate keys in a JSON object.

Standard library only; pyarrow is imported where a Parquet file needs it.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from prefkit.data.errors import InvalidInputError, InvalidRow, clip

__all__ = ["Records", "Table"]

# a CSV cell may hold a whole document (a long answer, a 1 MB item name): read it, never
# stop at the csv module's default 128 KB field limit
csv.field_size_limit(2**31 - 1)
_DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".txt", ".gz")


@dataclass
class Records:
    """The records (objects) of an input with their 1-based lines (rows for Parquet and
    datasets), the problems of records that could not be read, and how many were seen."""

    rows: list[dict[str, Any]]
    lines: list[int]
    problems: list[InvalidRow]  # malformed lines / non-object entries (row-level)
    n_read: int  # records seen, good or bad


class _DuplicateKeys(ValueError):
    def __init__(self, keys: list[str]) -> None:
        super().__init__(keys)
        self.keys = keys


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: a JSON object whose keys repeat is refused, not last-wins."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _DuplicateKeys(sorted(k for k, c in Counter(k for k, _ in pairs).items() if c > 1))
    return out


_loads = json.JSONDecoder(object_pairs_hook=_unique_keys).decode
_decoder = json.JSONDecoder(object_pairs_hook=_unique_keys)


def _names(keys: list[str]) -> str:
    return ", ".join(repr(clip(k)) for k in keys)


_SEPARATORS = {",": "commas", "\t": "tabs", ";": "semicolons"}


def _delimiter(header: str, name: str) -> str:
    """A CSV file's field separator: a tab for ``.tsv``; else a comma, unless the header holds
    none and holds tabs or semicolons (Excel's CSV where the decimal mark is a comma)."""
    if name.removesuffix(".gz").lower().endswith(".tsv"):
        return "\t"
    if "," not in header:
        for d in ("\t", ";"):
            if d in header:
                return d
    return ","


@dataclass
class Table:
    """One input. ``kind``: ``"csv"``, ``"jsonl"``, ``"json"`` (a JSON list or object),
    ``"parquet"``, ``"txt"`` or ``"dataset"``, sniffed from the content (a ``.gz`` suffix is
    decompressed). Build one with :meth:`of`."""

    path: Path | None
    name: str
    kind: str = ""
    _records: Records | None = field(default=None, repr=False)
    _value: Any = field(default=None, repr=False)
    _is_list: bool = field(default=False, repr=False)
    _header: list[str] | None = field(default=None, repr=False)
    _by_record: bool = field(default=False, repr=False)  # a JSON list's records share lines
    delimiter: str = field(default=",", repr=False)  # a CSV file's: sniffed from its header

    @classmethod
    def of(cls, source: Any, *, split: str | None = None) -> Table:
        """A :class:`Table` of a path (file, or folder written by ``save_to_disk``), of a
        ``datasets.Dataset`` / ``DatasetDict`` (``split`` picks one of several), or the
        table itself."""
        if isinstance(source, Table):
            return source
        if type(source).__module__.split(".")[0] == "datasets":
            return cls._from_dataset(source, f"<{type(source).__name__}>", split)
        p = Path(source)
        if p.is_dir():
            return cls._from_folder(p, str(source), split)
        t = cls(p, str(source))
        if not p.is_file():
            t.fail(None, f"no such file {str(source)!r}", "check the path", "no_file")
        if p.suffix == ".gz":
            with open(p, "rb") as f:
                magic = f.read(2)
            if not magic:
                raise t.empty()
            if magic != b"\x1f\x8b":  # gzip's magic bytes
                t.fail(None, "named .gz but not gzip-compressed",
                       f"rename it without .gz (mv {p.name} {p.name[:-3]}), or compress "
                       f"it: gzip {p.name[:-3]}", "not_gzip")
        with t.decoding():
            t.kind = "txt" if p.name.removesuffix(".gz").endswith(".txt") else t._sniff_kind()
        return t

    @classmethod
    def _from_folder(cls, p: Path, name: str, split: str | None) -> Table:
        saved = any((p / f).is_file() for f in ("dataset_info.json", "state.json",
                                                "dataset_dict.json"))
        if not saved:
            files = sorted(f.name for f in p.iterdir() if f.is_file()
                           and f.name.lower().endswith(_DATA_SUFFIXES))
            hint = f"; data files in it: {', '.join(files[:5])}" + (
                f" and {len(files) - 5} more" if len(files) > 5 else "") if files else ""
            raise InvalidInputError([InvalidRow(
                name, None, None, None, "is a folder, not a data file",
                "give a JSONL, JSON, CSV or Parquet file (a folder written by datasets' "
                f"save_to_disk is read as a dataset){hint}", "is_folder")])
        try:
            import datasets
        except ImportError:
            raise InvalidInputError([InvalidRow(
                name, None, None, None, "a saved dataset folder, and the datasets library is "
                "not installed", "pip install datasets, or give a file", "no_file")]) from None
        return cls._from_dataset(datasets.load_from_disk(str(p)), name, split)

    @classmethod
    def _from_dataset(cls, ds: Any, name: str, split: str | None) -> Table:
        if hasattr(ds, "keys") and not hasattr(ds, "column_names") or isinstance(
                getattr(ds, "column_names", None), dict):  # a DatasetDict
            splits = list(ds.keys())
            if split is None and len(splits) == 1:
                split = splits[0]
            if split not in splits:
                folder = (f"give one split's folder (e.g. {Path(name) / str(splits[0])}), or "
                          if Path(name).is_dir() else "")
                raise InvalidInputError([InvalidRow(
                    name, None, None, None, f"a DatasetDict with splits {', '.join(splits)}",
                    f"{folder}pick one with split='<name>' in Python", "wrong_shape")])
            ds, name = ds[split], f"{name}[{split}]"
        rows = ds.to_list()
        t = cls(None, name, "dataset")
        t._header = list(ds.column_names)
        t._records = Records(rows, list(range(1, len(rows) + 1)), [], len(rows))
        return t

    @property
    def unit(self) -> str:
        """What a problem's ``line`` counts here: ``"row"`` (Parquet, datasets), ``"record"``
        (a JSON list whose records share lines: one written on a single line), or ``"line"``."""
        if self._by_record:
            return "record"
        return "row" if self.kind in ("parquet", "dataset") else "line"

    # -- errors ------------------------------------------------------------------
    def problem(
        self, line: int | None, reason: str, fix: str, kind: str,
        field: str | None = None, value: object = None, skippable: bool | None = None,
    ) -> InvalidRow:
        return InvalidRow(self.name, line, field, value, reason, fix, kind, self.unit,
                          skippable)  # type: ignore[arg-type]

    def fail(self, line: int | None, reason: str, fix: str, kind: str, **kw: Any) -> None:
        """Raise a problem that stops the whole input (never skippable)."""
        raise InvalidInputError([self.problem(line, reason, fix, kind, skippable=False, **kw)])

    def empty(self) -> InvalidInputError:
        what = {"csv": "below the header", "parquet": ""}.get(self.kind, "")
        return InvalidInputError([self.problem(
            None, "no rows (the input is empty)", f"add at least one record {what}".rstrip()
            + " or check that this is the file you meant", "empty_input")])

    @contextmanager
    def decoding(self) -> Iterator[None]:
        """Text that is not UTF-8, met anywhere while reading, becomes a problem that says
        the line and how to convert the file."""
        import zlib

        try:
            yield
        except UnicodeDecodeError as e:
            raise self.not_utf8(e) from None
        except (EOFError, zlib.error, gzip.BadGzipFile) as e:  # click reads EOFError as Ctrl-D
            raise InvalidInputError([self.problem(
                None, f"a damaged gzip file ({e or 'it ends too early'})",
                "download or compress it again (gzip -t checks a .gz file)", "bad_gzip",
                skippable=False)]) from None

    def not_utf8(self, e: UnicodeDecodeError) -> InvalidInputError:
        line = None
        if self.path is not None:
            with self._open_binary() as f:
                raw = f.read()
            if raw[:2] == b"\x1f\x8b":  # gzip's magic bytes under a name without .gz
                name = Path(self.name).name
                return InvalidInputError([self.problem(
                    None, "a gzip-compressed file, not text (its name does not end in .gz)",
                    f"name it {name}.gz (prefkit reads .gz files as they are), or decompress "
                    f"it: gzip -dc {name} > plain_{name}", "compressed")])
            try:
                raw.decode("utf-8-sig")
            except UnicodeDecodeError as err:
                start = err.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
                line = raw.count(b"\n", 0, start) + 1
                e = err
        where = f" at line {line}" if line else ""
        name = Path(self.name).name
        return InvalidInputError([self.problem(
            None, f"not UTF-8 text{where} ({e.reason}: byte 0x{e.object[e.start]:02x})",
            "re-save the file as UTF-8, e.g. for a Latin-1 file: iconv -f latin1 -t utf-8 "
            f"{name} > utf8_{name}", "not_utf8")])

    # -- raw access --------------------------------------------------------------
    def open_text(self) -> io.TextIOBase:
        assert self.path is not None
        if self.path.suffix == ".gz":
            return gzip.open(self.path, "rt", encoding="utf-8-sig", newline="")  # type: ignore[return-value]
        return open(self.path, encoding="utf-8-sig", newline="")

    def _open_binary(self) -> Any:
        assert self.path is not None
        return gzip.open(self.path, "rb") if self.path.suffix == ".gz" else open(self.path, "rb")

    def _sniff_kind(self) -> str:
        with self._open_binary() as f:
            magic = f.read(6)
            if magic[:4] == b"PAR1":
                return "parquet"
            if magic == b"ARROW1":  # Arrow IPC / Feather v2: not UTF-8 text, and not Parquet
                name = self.path.name  # type: ignore[union-attr]
                self.fail(None, "an Arrow IPC (Feather) file; prefkit reads Parquet, not Arrow",
                          "convert it to Parquet: python -c \"import pyarrow.feather as f, "
                          f"pyarrow.parquet as pq; pq.write_table(f.read_table('{name}'), "
                          f"'{Path(name).stem}.parquet')\"", "arrow_file")
            f.seek(0)
            first = b""
            for raw in f:  # the first non-blank line, however long
                first = raw.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
                if first:
                    break
        if not first:
            raise self.empty()
        if first[0] == "[":
            self._is_list = True
            return "json"
        if first[0] == "{":
            try:
                json.loads(first)
                return "jsonl"
            except json.JSONDecodeError:
                pass
            if self.path.name.endswith((".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")):  # type: ignore[union-attr]
                return "jsonl"
            return "json"
        self.delimiter = _delimiter(first, self.path.name)  # type: ignore[union-attr]
        return "csv"

    # -- header ------------------------------------------------------------------
    def header(self) -> list[str]:
        """Column names (CSV, Parquet, datasets) or the keys seen in the records (JSON,
        JSONL); a name given twice is refused, naming it."""
        if self._header is None:
            self._header = self._read_header()
        return self._header

    def _read_header(self) -> list[str]:
        if self.kind == "csv":
            with self.open_text() as f:
                for row in csv.reader(f, delimiter=self.delimiter):
                    if row:
                        return self._unique(row)
            raise self.empty()
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            return self._unique(list(pq.read_schema(self.path).names))
        if self.kind == "json" and not self._is_list:
            value = self.json_value()
            if isinstance(value, dict):
                return list(value)
        keys: dict[str, None] = {}
        for r in self.records().rows:
            keys.update(dict.fromkeys(r))
        return list(keys)

    def _unique(self, names: list[str]) -> list[str]:
        dup = [n for n, c in Counter(names).items() if c > 1]
        if dup:
            where = "; ".join(f"{n!r} is columns " + " and ".join(
                str(i + 1) for i, m in enumerate(names) if m == n) for n in dup)
            self.fail(1 if self.kind == "csv" else None,
                      f"duplicate column name{'s' if len(dup) > 1 else ''} {_names(dup)} "
                      f"({where})", "rename or drop the extra column: which one is meant "
                      "cannot be told", "duplicate_column", value=", ".join(dup))
        return names

    def peek_keys(self) -> list[str]:
        """Header keys from the start of the input only (cheap; used by format detection)."""
        if self.kind in ("csv", "parquet", "dataset"):
            return self.header()
        if self.kind == "txt":
            return []
        if self.kind == "jsonl":
            with self.open_text() as f:
                for i, line in enumerate(f):
                    if i > 100:
                        break
                    try:
                        obj = _loads(line)
                    except (json.JSONDecodeError, _DuplicateKeys):
                        continue
                    if isinstance(obj, dict):
                        return list(obj)
            return []
        if not self._is_list:
            value = self.json_value()
            if isinstance(value, dict):
                return list(value)
        recs = self.records()
        return list(recs.rows[0]) if recs.rows else []

    # -- rows --------------------------------------------------------------------
    def row_lines(self, n: int) -> NDArray[np.int64]:
        """1-based line of each data row: rows for Parquet; for CSV the line each record starts
        on (header = line 1), found with the csv module only when a problem needs reporting."""
        if self.kind != "csv":
            return np.arange(1, n + 1)
        starts: list[int] = []
        with self.open_text() as f:
            reader = csv.reader(f, delimiter=self.delimiter)
            prev = 0
            header_seen = False
            for row in reader:
                start, prev = prev + 1, reader.line_num
                if not row:
                    continue
                if header_seen:
                    starts.append(start)
                header_seen = True
        out = np.asarray(starts, dtype=np.int64)
        if out.size != n:  # pyarrow and csv disagree on the record count; fall back to rows
            return np.arange(2, n + 2)
        return out

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The valid records (see :meth:`records`)."""
        return self.records().rows

    @property
    def lines(self) -> list[int]:
        """The line (or row) of each of :attr:`rows`."""
        return self.records().lines

    @property
    def n_read(self) -> int:
        """Records seen, readable or not."""
        return self.records().n_read

    def record_problems(self) -> list[InvalidRow]:
        """The records that could not be read (malformed JSON lines, entries that are not
        objects, CSV rows with the wrong number of fields), if the records were read."""
        return [] if self._records is None else list(self._records.problems)

    def records(self) -> Records:
        """Every record as a dict with the line it starts on (CSV: a row with the wrong number
        of fields is a row-level problem; TXT: ``{"text": line}`` per non-blank line)."""
        if self._records is None:
            read = {"jsonl": self._read_jsonl, "json": self._read_list, "csv": self._read_csv,
                    "parquet": self._read_parquet, "txt": self._read_txt}[self.kind]
            self._records = read()
        return self._records

    def _read_parquet(self) -> Records:
        import pyarrow.parquet as pq

        self.header()
        rows = pq.ParquetFile(self.path).read().to_pylist()
        return Records(rows, list(range(1, len(rows) + 1)), [], len(rows))

    def _read_txt(self) -> Records:
        rows: list[dict[str, Any]] = []
        lines: list[int] = []
        with self.open_text() as f:
            for i, line in enumerate(f, 1):
                text = line.rstrip("\r\n")
                if text.strip():
                    rows.append({"text": text})
                    lines.append(i)
        return Records(rows, lines, [], len(rows))

    def _read_csv(self) -> Records:
        header = self.header()
        rows: list[dict[str, Any]] = []
        lines: list[int] = []
        probs: list[InvalidRow] = []
        with self.open_text() as f:
            reader = csv.reader(f, delimiter=self.delimiter)
            seen = False
            prev = 0
            for rec in reader:
                start, prev = prev + 1, reader.line_num
                if not rec:
                    continue
                if not seen:
                    seen = True
                    continue
                if len(rec) != len(header):
                    probs.append(self.problem(
                        start, f"expected {len(header)} fields, got {len(rec)}",
                        f"quote fields that contain {_SEPARATORS[self.delimiter]}, or fix the "
                        "field count", "ragged_row",
                        value=",".join(rec)[:60]))
                    continue
                rows.append(dict(zip(header, rec)))
                lines.append(start)
        return Records(rows, lines, probs, len(rows) + len(probs))

    # -- JSON --------------------------------------------------------------------
    def json_value(self) -> Any:
        """The whole file as one JSON value (kind ``"json"``)."""
        if self._value is None:
            with self.open_text() as f:
                text = f.read()
            try:
                self._value = _loads(text)
            except json.JSONDecodeError as e:
                self.fail(e.lineno, f"malformed JSON ({e.msg}, column {e.colno})",
                          "fix the JSON syntax (a JSON list of objects, or one object per "
                          "line for JSONL)", "malformed_json")
            except _DuplicateKeys as e:
                self.fail(None, f"duplicate key {_names(e.keys)} in a JSON object",
                          _FIX_DUP_KEY, "duplicate_key")
        return self._value

    def _read_jsonl(self) -> Records:
        rows: list[dict[str, Any]] = []
        lines: list[int] = []
        probs: list[InvalidRow] = []
        n = 0
        with self.open_text() as f:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                n += 1
                line = line.rstrip("\r\n")
                try:
                    obj = _loads(line)
                except json.JSONDecodeError as e:
                    probs.append(self.problem(
                        i, f"malformed JSON ({e.msg}, column {e.pos + 1})",
                        "fix the line so it holds one JSON object, or delete it",
                        "malformed_json", value=_short(line)))
                    continue
                except _DuplicateKeys as e:
                    probs.append(self._duplicate_keys(i, e))
                    continue
                if not isinstance(obj, dict):
                    probs.append(self._not_object(i, obj))
                    continue
                rows.append(obj)
                lines.append(i)
        return Records(rows, lines, probs, n)

    def _read_list(self) -> Records:
        with self.open_text() as f:
            text = f.read()
        plain = json.JSONDecoder()
        rows: list[dict[str, Any]] = []
        lines: list[int] = []
        probs: list[InvalidRow] = []
        pos, line, n = 0, 1, 0

        def skip(p: int) -> int:
            while p < len(text) and text[p] in " \t\r\n\ufeff":
                p += 1
            return p

        def bad(p: int, msg: str) -> None:
            ln = text.count("\n", 0, p) + 1
            col = p - text.rfind("\n", 0, p)
            self.fail(ln, f"malformed JSON ({msg}, column {col})",
                      "fix the JSON syntax", "malformed_json")

        entries: list[tuple[int, Any, _DuplicateKeys | None]] = []
        pos = skip(0)
        if pos >= len(text) or text[pos] != "[":
            value = self.json_value()
            self.fail(None, f"expected a list of records, got a JSON {type(value).__name__}",
                      "give a JSON list of objects, or one object per line (JSONL)",
                      "wrong_shape")
        pos = skip(pos + 1)
        last = 0
        while pos < len(text) and text[pos] != "]":
            dup: _DuplicateKeys | None = None
            try:
                obj, end = _decoder.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                bad(e.pos, e.msg)
            except _DuplicateKeys as e:
                dup = e
                obj, end = plain.raw_decode(text, pos)
            line += text.count("\n", last, pos)
            last = pos
            n += 1
            entries.append((line, obj, dup))
            pos = skip(end)
            if pos < len(text) and text[pos] == ",":
                pos = skip(pos + 1)
            elif pos < len(text) and text[pos] != "]":
                bad(pos, "expected ',' or ']'")
        if pos >= len(text):
            bad(len(text), "unterminated list")
        starts = [ln for ln, _, _ in entries]
        if len(set(starts)) < len(starts):  # records share a line (json.dump, pandas'
            self._by_record = True  # to_json): name each by its number instead
            starts = list(range(1, len(starts) + 1))
        for ln, (_, obj, dup) in zip(starts, entries):
            if dup is not None:
                probs.append(self._duplicate_keys(ln, dup))
            elif isinstance(obj, dict):
                rows.append(obj)
                lines.append(ln)
            else:
                probs.append(self._not_object(ln, obj))
        return Records(rows, lines, probs, n)

    def _duplicate_keys(self, line: int, e: _DuplicateKeys) -> InvalidRow:
        return self.problem(line, f"duplicate key {_names(e.keys)} in one JSON object",
                            _FIX_DUP_KEY, "duplicate_key", field=e.keys[0])

    def _not_object(self, line: int, obj: object) -> InvalidRow:
        return self.problem(line, f"expected a JSON object, got {type(obj).__name__}",
                            "each record must be an object such as {\"model_a\": ...}",
                            "not_an_object", value=_short(json.dumps(obj)))


_FIX_DUP_KEY = ("keep one of them: which value is meant cannot be told (JSON readers "
                "disagree: most keep the last)")


def _short(text: str, n: int = 60) -> str:
    text = text.strip()
    return text if len(text) <= n else text[: n - 3] + "..."
