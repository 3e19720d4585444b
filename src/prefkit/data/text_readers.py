"""Text preferences in: read chosen/rejected pairs, rated responses and best-of-N sets from
the field's formats (TRL, Anthropic HH, LLMBar, RewardBench 1/2, HelpSteer-style ratings),
with the same precise errors as the vote readers.

>>> import tempfile, pathlib, json
>>> p = pathlib.Path(tempfile.mkdtemp()) / "prefs.jsonl"
>>> rows = [{"prompt": "2+2?", "chosen": "4", "rejected": "5"},
...         {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Lyon"}]
>>> _ = p.write_text("".join(json.dumps(r) + "\\n" for r in rows))
>>> res = read_preferences(p)
>>> res.format, res.n_read, res.data.chosen
('trl', 2, ['4', 'Paris'])

Every problem is reported at once, with file, line, field and fix; ``skip_invalid=True``
skips the bad rows and lists them in ``.skipped``:

>>> rows.append({"prompt": "Hi", "chosen": "Hello", "rejected": "Hello"})
>>> _ = p.write_text("".join(json.dumps(r) + "\\n" for r in rows))
>>> read_preferences(p)  # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
Traceback (most recent call last):
...
prefkit.data.errors.InvalidInputError: 1 problem in ...prefs.jsonl; 1 of 3 records are
invalid, nothing was read:
  chosen and rejected responses are identical in field 'rejected' at ...prefs.jsonl line 3;
  a pair needs two different responses; drop the row;
  pass skip_invalid=True to skip such rows
>>> res = read_preferences(p, skip_invalid=True)
>>> len(res.data), [s.line for s in res.skipped]
(2, [3])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefkit.data._source import Source
from prefkit.data._text_formats import (
    TEXT_FORMATS,
    ParsedText,
    TextFormat,
    llmbar_category,
    register_text_format,
)
from prefkit.data.errors import InvalidInputError, InvalidRow
from prefkit.data.text import BestOfN, TextPairs, TextRatings

__all__ = [
    "TEXT_FORMATS",
    "Table",
    "TextFormat",
    "TextReadResult",
    "describe_text_formats",
    "detect_text_format",
    "llmbar_category",
    "read_preferences",
    "register_text_format",
]


@dataclass
class Table:
    """The records of one input (a file, a ``datasets`` folder or a ``datasets.Dataset``),
    each with the 1-based line (JSON, JSONL, CSV) or row (Parquet, datasets) it came from."""

    name: str
    kind: str
    rows: list[dict[str, Any]]
    lines: list[int]
    problems: list[InvalidRow] = field(default_factory=list)  # unreadable records
    n_read: int = 0

    @property
    def unit(self) -> str:
        return "row" if self.kind in ("parquet", "dataset") else "line"

    def header(self) -> list[str]:
        """Column names: the keys seen in the records, in first-seen order."""
        keys: dict[str, None] = {}
        for r in self.rows:
            keys.update(dict.fromkeys(r))
        return list(keys)

    def problem(self, line: int | None, fld: str | None, value: Any, reason: str, fix: str,
                kind: str, skippable: bool | None = None) -> InvalidRow:
        return InvalidRow(self.name, line, fld, value, reason, fix, kind, self.unit,
                          skippable)  # type: ignore[arg-type]

    def fail(self, reason: str, fix: str, kind: str) -> None:
        """Raise a problem with the whole input."""
        raise InvalidInputError([self.problem(None, None, None, reason, fix, kind)])

    @classmethod
    def load(cls, source: Any, *, split: str | None = None) -> Table:
        """Read every record of ``source``: a path to a JSONL, JSON-list, CSV or Parquet
        file (``.gz`` for the text ones), a folder written by ``datasets.save_to_disk``, or
        a ``datasets.Dataset`` / ``DatasetDict`` object."""
        if _is_dataset(source):
            return cls._from_dataset(source, f"<{type(source).__name__}>", split)
        path = Path(source)
        if path.is_dir():
            try:
                import datasets
            except ImportError:
                raise InvalidInputError([InvalidRow(
                    str(source), None, None, None, "a folder, and the datasets library is not "
                    "installed", "pip install datasets, or give a file", "no_file")]) from None
            return cls._from_dataset(datasets.load_from_disk(str(path)), str(source), split)
        src = Source.of(path)
        if src.kind == "parquet":
            import pyarrow.parquet as pq

            rows = pq.ParquetFile(src.path).read().to_pylist()
            return cls(src.name, "parquet", rows, list(range(1, len(rows) + 1)), [], len(rows))
        if src.kind == "csv":
            rows_, lines, probs, n = src.csv_rows()
            return cls(src.name, "csv", rows_, lines, probs, n)  # type: ignore[arg-type]
        recs = src.records()
        return cls(src.name, src.kind, recs.rows, recs.lines, recs.problems, recs.n_read)

    @classmethod
    def _from_dataset(cls, ds: Any, name: str, split: str | None) -> Table:
        if hasattr(ds, "keys") and not hasattr(ds, "column_names") or isinstance(
                getattr(ds, "column_names", None), dict):  # a DatasetDict
            splits = list(ds.keys())
            if split is None and len(splits) == 1:
                split = splits[0]
            if split not in splits:
                raise InvalidInputError([InvalidRow(
                    name, None, None, None, f"a DatasetDict with splits {', '.join(splits)}",
                    "pick one with split='<name>'", "wrong_shape")])
            ds, name = ds[split], f"{name}[{split}]"
        rows = ds.to_list()
        return cls(name, "dataset", rows, list(range(1, len(rows) + 1)), [], len(rows))


def _is_dataset(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "datasets"


@dataclass(frozen=True)
class TextReadResult:
    """What :func:`read_preferences` read.

    Attributes:
        data: :class:`TextPairs`, :class:`TextRatings` or :class:`BestOfN`.
        skipped: every problem of every skipped row (only with ``skip_invalid=True``).
        format: the format name (detected, or as given).
        n_read: records in the input, valid or not.
        warnings: rows kept as read but worth a look (e.g. HH transcripts that differ
            before their last assistant turn); each says where and why.
    """

    data: TextPairs | TextRatings | BestOfN
    skipped: list[InvalidRow] = field(default_factory=list)
    format: str = ""
    n_read: int = 0
    warnings: list[InvalidRow] = field(default_factory=list)

    @property
    def n_skipped(self) -> int:
        """Number of distinct skipped rows (a row can have several problems)."""
        return len({(p.file, p.line) for p in self.skipped})

    def summary(self) -> str:
        what = {TextPairs: "pairs", TextRatings: "rated responses", BestOfN: "prompts"}
        text = f"read {len(self.data):,} {what[type(self.data)]} ({self.format})"
        if self.skipped:
            text += f"; skipped {self.n_skipped:,} invalid rows"
        if self.warnings:
            text += f"; {len(self.warnings):,} warnings"
        return text


def describe_text_formats() -> str:
    """One line per known text format, in detection order."""
    order = sorted(TEXT_FORMATS.values(), key=lambda f: f.priority)
    return "\n".join(f"  {f.name}: {f.describe}" for f in order)


def detect_text_format(source: Any, *, split: str | None = None) -> str:
    """The format of an input, from its columns and first record; an
    :class:`InvalidInputError` listing the known formats if none matches.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "j.json"
    >>> _ = p.write_text('[{"input": "q", "output_1": "a", "output_2": "b", "label": 2}]')
    >>> detect_text_format(p)
    'llmbar'
    """
    table = source if isinstance(source, Table) else Table.load(source, split=split)
    return _detect(table)


def _detect(table: Table) -> str:
    if table.n_read == 0:
        table.fail("no rows (the input is empty)", "add at least one record or check that "
                   "this is the file you meant", "empty_input")
    if not table.rows:
        raise InvalidInputError(table.problems, note="no record could be read")
    keys = frozenset(table.header())
    for f in sorted(TEXT_FORMATS.values(), key=lambda f: f.priority):
        if f.detect(table.kind, keys, table.rows[0]):
            return f.name
    shown = ", ".join(sorted(keys)[:30]) or "none"
    table.fail(f"cannot tell the format of this input from its columns ({shown})",
               f"known formats:\n{describe_text_formats()}\n  pass format='<name>', or map "
               "your columns with columns={'prompt': ..., 'chosen': ..., 'rejected': ...}",
               "unknown_format")
    raise AssertionError  # unreachable


def read_preferences(
    source: Any,
    *,
    format: str = "auto",
    columns: Mapping[str, str] | None = None,
    skip_invalid: bool = False,
    split: str | None = None,
    **options: Any,
) -> TextReadResult:
    """Read text preferences from a file, a ``datasets`` folder or a ``datasets.Dataset``.

    Args:
        source: a JSONL, JSON-list, CSV or Parquet file (``.gz`` for the text ones), a folder
            written by ``Dataset.save_to_disk``, or a ``datasets.Dataset``/``DatasetDict``.
        format: a name in :data:`TEXT_FORMATS` (``trl``, ``hh_rlhf``, ``llmbar``,
            ``rewardbench``, ``ratings``, ``generic``), or ``"auto"`` to detect it.
        columns: map roles to your column names, e.g. ``{"chosen": "better", "rejected":
            "worse"}`` (pair roles: ``prompt``, ``chosen``, ``rejected``, ``margin``,
            ``annotator``, ``user``, ``category``, ``id``; see each reader). With
            ``format="auto"``, a mapping selects ``generic`` when detection finds nothing.
        skip_invalid: skip invalid rows (each reported in ``.skipped``) instead of raising.
        split: the split of a ``DatasetDict`` (needed when it has several).
        **options: format options (``strict=`` for hh_rlhf, ``category=`` for llmbar,
            ``attributes=`` for ratings).

    Raises:
        InvalidInputError: listing every problem found, when a row is invalid (and
            ``skip_invalid`` is false), a column is missing, or the input has no rows.
    """
    table = Table.load(source, split=split)
    if format == "auto":
        try:
            name = _detect(table)
        except InvalidInputError as e:
            if not columns or e.problems[0].kind != "unknown_format":
                raise
            name = "generic"
    else:
        name = format
    if name not in TEXT_FORMATS:
        raise ValueError(f"unknown format {name!r}; known formats: {', '.join(TEXT_FORMATS)}")
    if table.n_read == 0:
        _detect(table)  # raises the empty-input error
    parsed: ParsedText = TEXT_FORMATS[name].read(table, columns=columns, **options)
    problems = sorted(parsed.problems, key=lambda q: q.line or 0)
    if problems and not skip_invalid:
        n_bad = len({p.line for p in problems})
        raise InvalidInputError(
            problems, note=f"{n_bad:,} of {parsed.n_read:,} records are invalid, nothing was read")
    if parsed.data is None or len(parsed.data) == 0:
        raise InvalidInputError(problems, note=f"all {parsed.n_read:,} records are invalid")
    return TextReadResult(parsed.data, problems, name, parsed.n_read, parsed.warnings)
