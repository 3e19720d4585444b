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
prefkit.data.errors.InvalidInputError: 1 problem in ...prefs.jsonl; 1 of 3 records is
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
from typing import Any

# the format modules register themselves on import
from prefkit.data import _formats_text  # noqa: F401
from prefkit.data._formats_text import llmbar_category
from prefkit.data.errors import InvalidRow
from prefkit.data.formats import Format, Parsed, describe_formats, detect, notes, read_format
from prefkit.data.table import Table
from prefkit.data.text import BestOfN, Responses, TextPairs, TextRatings

__all__ = [
    "Table",
    "TextReadResult",
    "describe_text_formats",
    "detect_text_format",
    "llmbar_category",
    "read_preferences",
    "read_responses",
]


@dataclass(frozen=True)
class TextReadResult:
    """What :func:`read_preferences` (or :func:`read_responses`) read.

    Attributes:
        data: :class:`TextPairs`, :class:`TextRatings`, :class:`BestOfN` (or
            :class:`Responses`).
        skipped: every problem of every skipped row (only with ``skip_invalid=True``).
        format: the format name (detected, or as given).
        n_read: records in the input, valid or not.
        warnings: rows kept as read but worth a look (e.g. HH transcripts that differ
            before their last assistant turn); each says where and why.
        n_empty: rows kept with an empty response (an empty answer is data: HH-RLHF holds
            a few, and TRL trains on them).
    """

    data: TextPairs | TextRatings | BestOfN | Responses
    skipped: list[InvalidRow] = field(default_factory=list)
    format: str = ""
    n_read: int = 0
    warnings: list[InvalidRow] = field(default_factory=list)
    n_empty: int = 0

    @property
    def n_skipped(self) -> int:
        """Number of distinct skipped rows (a row can have several problems)."""
        return len({(p.file, p.line) for p in self.skipped})

    def summary(self) -> str:
        """One line: what was read; rows skipped, with an empty response, with a warning."""
        what = {TextPairs: "pairs", TextRatings: "rated responses", BestOfN: "prompts",
                Responses: "responses"}[type(self.data)]
        return f"read {len(self.data):,} {what} ({self.format})" + notes(
            self.n_skipped, self.n_empty, len(self.warnings))


def describe_text_formats() -> str:
    """One line per known text format, in detection order."""
    return describe_formats("text")


def detect_text_format(source: Any, *, split: str | None = None) -> str:
    """The text format of an input, from its columns and first record; an
    :class:`InvalidInputError` listing the known formats if none matches.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "j.json"
    >>> _ = p.write_text('[{"input": "q", "output_1": "a", "output_2": "b", "label": 2}]')
    >>> detect_text_format(p)
    'llmbar'
    """
    table = Table.of(source, split=split)
    with table.decoding():
        return detect(table, ("text",)).name


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
        format: a name in :data:`~prefkit.data.FORMATS` of the ``text`` family (``trl``,
            ``hh_rlhf``, ``llmbar``, ``rewardbench``, ``ratings``, ``pairs`` a.k.a.
            ``generic``), or ``"auto"`` to detect it.
        columns: map roles to your column names, e.g. ``{"chosen": "better", "rejected":
            "worse"}`` (pair roles: ``prompt``, ``chosen``, ``rejected``, ``margin``,
            ``annotator``, ``user``, ``category``, ``id``; see each reader). With
            ``format="auto"``, a mapping selects ``pairs`` when detection finds nothing.
        skip_invalid: skip invalid rows (each reported in ``.skipped``) instead of raising.
        split: the split of a ``DatasetDict`` (needed when it has several).
        **options: format options (``strict=`` for hh_rlhf, ``category=`` for llmbar,
            ``attributes=`` for ratings).

    Raises:
        InvalidInputError: listing every problem found, when a row is invalid (and
            ``skip_invalid`` is false), a column is missing, or the input has no rows.
    """
    return _result(*read_format(source, ("text",), format=format, columns=columns,
                                skip_invalid=skip_invalid, split=split, **options))


def read_responses(
    source: Any,
    *,
    prompt: str = "",
    columns: Mapping[str, str] | None = None,
    skip_invalid: bool = False,
    split: str | None = None,
) -> TextReadResult:
    """Responses to score (``prefkit reward score``): records with ``response`` (and an
    optional ``prompt``: a string or chat messages) or ``text`` (prompt and response already
    one text), in any container a :class:`Table` reads, or a ``.txt`` file with one response
    per line. ``prompt`` is the prompt of responses that have none.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.txt"
    >>> _ = p.write_text("Paris\\n\\nLyon\\n")
    >>> r = read_responses(p, prompt="Capital of France?")
    >>> r.data.response, r.data.prompt, r.data.source_line
    (['Paris', 'Lyon'], ['Capital of France?', 'Capital of France?'], [1, 3])
    """
    return _result(*read_format(source, ("responses",), columns=columns,
                                skip_invalid=skip_invalid, split=split, prompt=prompt))


def _result(fmt: Format, parsed: Parsed, table: Table) -> TextReadResult:
    return TextReadResult(parsed.data, parsed.problems, fmt.name, parsed.n_read,
                          parsed.warnings, parsed.n_empty)
