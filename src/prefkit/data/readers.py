"""Votes in: read the field's preference formats into records, with precise errors.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "votes.csv"
>>> _ = p.write_text("model_a,model_b,winner\\ngpt-4,claude,a\\nclaude,llama,tie\\n")
>>> res = read_votes(p)
>>> res.format, res.n_read, res.votes.items.names, res.votes.outcome.tolist()
('generic', 2, ('claude', 'gpt-4', 'llama'), [0, 2])

Every problem in a file is reported at once, each with file, line, field, the bad value and
the fix; ``skip_invalid=True`` skips the bad rows instead and lists them in ``.skipped``:

>>> _ = p.write_text("model_a,model_b,winner\\ngpt-4,claude,a\\nclaude,claude,b\\nx,y,model_c\\n")
>>> read_votes(p)  # doctest: +ELLIPSIS, +NORMALIZE_WHITESPACE
Traceback (most recent call last):
...
prefkit.data.errors.InvalidInputError: 2 problems in ...votes.csv; 2 of 3 records are
invalid, nothing was read (1 self_comparison, 1 unknown_label):
  item 'claude' is compared with itself (same name in 'model_a' and 'model_b') in field
  'model_b' at ...votes.csv line 3; fix one of the two names or drop the row;
  pass skip_invalid=True to skip such rows
  unknown outcome label 'model_c' in field 'winner' at ...votes.csv line 4; expected one of
  a, model_a, item_a, b, model_b, item_b, tie, tie (bothbad), both_bad, tie (inconsistent),
  0, 1, 2, 3;
  pass skip_invalid=True to skip such rows
>>> res = read_votes(p, skip_invalid=True)
>>> len(res.votes), res.n_skipped, [s.line for s in res.skipped]
(1, 2, [3, 4])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# the format modules register themselves on import; FORMATS imports them all on its first
# read (so that `prefkit formats` lists every family), and the streamed Parquet path of
# read_votes(aggregate=True) imports none
from prefkit.data.errors import InvalidRow
from prefkit.data.formats import FORMATS, describe_formats, detect, read_format, register
from prefkit.data.records import ItemIndex, PairCounts, PairwiseVotes, Rankings
from prefkit.data.table import Table

__all__ = ["FORMATS", "ReadResult", "describe_formats", "detect_format", "read_votes", "register"]


@dataclass(frozen=True)
class ReadResult:
    """What :func:`read_votes` read.

    Attributes:
        votes: :class:`PairwiseVotes` (one vote per row), :class:`PairCounts` (aggregated
            inputs) or :class:`Rankings` (ranking inputs).
        skipped: every problem of every skipped row (only with ``skip_invalid=True``).
        format: the format name (detected, or as given).
        n_read: records in the file, valid or not (an arena-hard judgment record holds
            two games, so it can give two votes).
    """

    votes: PairwiseVotes | PairCounts | Rankings
    skipped: list[InvalidRow] = field(default_factory=list)
    format: str = ""
    n_read: int = 0
    #: rows kept but read in a way worth saying (e.g. a label read as a tie), one note each
    warnings: list[InvalidRow] = field(default_factory=list)

    @property
    def n_skipped(self) -> int:
        """Number of distinct skipped rows (a row can have several problems)."""
        return len({(p.file, p.line) for p in self.skipped})

    def summary(self) -> str:
        v = self.votes
        from prefkit.runs import plural

        what = {PairwiseVotes: "vote", PairCounts: "pair", Rankings: "ranking"}[type(v)]
        text = f"read {plural(len(v), what)} on {plural(v.n_items, 'item')} ({self.format})"
        if self.skipped:
            text += f"; skipped {plural(self.n_skipped, 'invalid row')}"
        return text


def detect_format(path: str | Path | Table) -> str:
    """The vote format of a file, sniffed from its header (CSV, Parquet) or first record
    (JSON, JSONL); an :class:`InvalidInputError` listing the known formats if none matches.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.csv"
    >>> _ = p.write_text("id,prompt,worker,winner,left,right\\n0,8,58,tie,A,B\\n")
    >>> detect_format(p)
    'llmfao'
    """
    table = Table.of(path)
    with table.decoding():
        return detect(table, ("votes",)).name


def read_votes(
    path: str | Path,
    *,
    format: str = "auto",
    columns: Mapping[str, str] | None = None,
    skip_invalid: bool = False,
    items: ItemIndex | None = None,
    aggregate: bool = False,
    **options: Any,
) -> ReadResult:
    """Read preferences from ``path`` in any registered vote format.

    Args:
        path: a CSV, JSONL, JSON or Parquet file (``.gz`` for the text ones), or a folder
            written by ``datasets.save_to_disk``.
        format: a name in :data:`FORMATS` of the ``votes`` family, or ``"auto"`` to
            detect it.
        columns: map roles to your column names, e.g. ``{"a": "left", "b": "right",
            "winner": "verdict"}`` (roles: ``a``, ``b``, ``winner``, ``weight``,
            ``annotator``, ``prompt``; per format, see its reader). With ``format="auto"``
            a mapping selects the ``generic`` reader unless detection finds another.
        skip_invalid: skip invalid rows (each reported in ``.skipped``) instead of raising.
        items: an existing :class:`ItemIndex` to use (names outside it are invalid rows);
            by default the names found, sorted.
        aggregate: return :class:`PairCounts` (all a fit without covariates needs). A
            Parquet table of ``a/b/winner`` votes is then streamed batch by batch, never
            holding one row per vote (see :mod:`prefkit.data.stream`).
        **options: format options (e.g. ``style=False`` for fastchat, ``baseline=`` for
            arena_hard judgments, ``features=[...]`` for generic).

    Raises:
        InvalidInputError: listing every problem found, when a row is invalid (and
            ``skip_invalid`` is false), a column is missing, or the file has no rows.
    """
    if aggregate and format in ("auto", "fastchat", "generic") and items is None and not options:
        from prefkit.data.stream import can_stream, read_pair_counts

        if can_stream(path, columns):
            warnings: list[InvalidRow] = []
            counts, skipped, n_rows = read_pair_counts(path, columns=columns,
                                                       skip_invalid=skip_invalid,
                                                       warnings=warnings)
            return ReadResult(counts, skipped, "parquet-stream", n_rows, warnings)
    if aggregate:
        res = read_votes(path, format=format, columns=columns, skip_invalid=skip_invalid,
                         items=items, **options)
        if isinstance(res.votes, PairwiseVotes) and res.votes.soft is None:
            from prefkit.data.records import aggregate as _aggregate

            return ReadResult(_aggregate(res.votes), res.skipped, res.format, res.n_read,
                              res.warnings)
        return res
    fmt, parsed, _ = read_format(path, ("votes",), format=format, columns=columns,
                                 skip_invalid=skip_invalid, items=items, **options)
    return ReadResult(parsed.data, parsed.problems, fmt.name, parsed.n_read, parsed.warnings)
