"""Precise input errors: one :class:`InvalidRow` per problem, all of them in one
:class:`InvalidInputError`.

Every problem says where it is (file, line, field), what the bad value was, and how to fix
it, so a user can go straight to the line in an editor:

>>> p = InvalidRow("votes.jsonl", 12, "winner", "model_c", "unknown outcome label 'model_c'",
...                "expected one of model_a, model_b, tie, tie (bothbad)")
>>> print(p)  # doctest: +NORMALIZE_WHITESPACE
unknown outcome label 'model_c' in field 'winner' at votes.jsonl line 12; expected one of
model_a, model_b, tie, tie (bothbad); pass skip_invalid=True to skip such rows

The command line names its flag instead (:meth:`InvalidInputError.for_cli`):
``... pass --skip-invalid to skip such rows``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["CLI_SKIP_HINT", "SKIP_HINT", "InvalidInputError", "InvalidRow", "clip"]

#: How to skip bad rows, said in Python's words and in the command line's.
SKIP_HINT = "pass skip_invalid=True to skip such rows"
CLI_SKIP_HINT = "pass --skip-invalid to skip such rows"
MAX_SHOWN = 20
#: Most characters of a bad value a message quotes (a 1 MB item name must not flood stderr).
MAX_QUOTED = 200


class Clipped(str):
    """The start of a long text, which says how long the whole was: ``repr`` and ``format``
    give ``'abc…' (1,048,576 characters)``."""

    length: int

    def __new__(cls, full: str, n: int = MAX_QUOTED) -> Clipped:
        obj = super().__new__(cls, full[:n])
        obj.length = len(full)
        return obj

    def __repr__(self) -> str:
        return f"{str.__repr__(self)[:-1]}…{str.__repr__(self)[-1]} ({self.length:,} characters)"

    def __format__(self, spec: str) -> str:
        return f"{str.__str__(self)}… ({self.length:,} characters)"

    def __str__(self) -> str:
        return self.__format__("")


def clip(value: object, n: int = MAX_QUOTED) -> object:
    """``value`` as a message quotes it: a text (or list/dict, as JSON) longer than ``n``
    characters becomes its first ``n`` with ``… (N characters)``; anything else as it is.

    >>> clip("x" * 1000, 10)
    'xxxxxxxxxx…' (1,000 characters)
    """
    if isinstance(value, Clipped):
        return value
    if isinstance(value, (list, dict)):
        import json

        try:
            text = json.dumps(value, ensure_ascii=False)
        except (TypeError, ValueError):
            text = str(value)
        return Clipped(text, n) if len(text) > n else value
    if isinstance(value, str) and len(value) > n:
        return Clipped(value, n)
    return value


def _clip_text(text: str, n: int = 4 * MAX_QUOTED) -> str:
    """A message part (reason, fix) that some value made huge, cut to ``n`` characters."""
    return text if len(text) <= n else f"{text[:n]}… ({len(text):,} characters)"


@dataclass(frozen=True)
class InvalidRow:
    """One problem in an input file.

    Attributes:
        file: the path as the user gave it.
        line: 1-based location as a user sees it: the line in an editor for CSV (header =
            line 1), JSONL and JSON; the row for Parquet; the pair for aggregated counts.
            ``None`` for problems with the whole file (a missing column, no rows).
        field: the column or key at fault, if any.
        value: the offending value (``None`` when missing).
        reason: what is wrong, e.g. ``"unknown outcome label 'model_c'"``.
        fix: how to fix it.
        kind: a short stable code, e.g. ``"unknown_label"``, ``"self_comparison"``,
            ``"missing_column"``, ``"malformed_json"``, ``"bad_weight"``, ``"empty_input"``.
        unit: what ``line`` counts: ``"line"``, ``"row"``, ``"record"`` (of a JSON list
            written on one line) or ``"pair"``.
        skippable: whether ``skip_invalid=True`` can skip it: true for a bad row, false for
            a problem that stops the whole file (by default: whether ``line`` is given).
    """

    file: str
    line: int | None
    field: str | None
    value: object
    reason: str
    fix: str
    kind: str = ""
    unit: str = "line"
    skippable: bool = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.skippable is None:
            object.__setattr__(self, "skippable", self.line is not None)
        object.__setattr__(self, "value", clip(self.value))
        object.__setattr__(self, "reason", _clip_text(self.reason))
        if len(self.fix) > 8 * MAX_QUOTED and "known formats" not in self.fix:
            object.__setattr__(self, "fix", _clip_text(self.fix, 8 * MAX_QUOTED))

    @property
    def where(self) -> str:
        return self.file if self.line is None else f"{self.file} {self.unit} {self.line}"

    def __str__(self) -> str:
        return self.describe(SKIP_HINT)

    def describe(self, skip_hint: str | None = SKIP_HINT) -> str:
        """The problem on one line; ``skip_hint`` (how to skip such rows) ends a row's
        problem: Python's words by default, :data:`CLI_SKIP_HINT` on the command line,
        ``None`` where the row was skipped already."""
        if not self.skippable:  # a problem with the whole file
            return f"{self.where}: {self.reason}" + (f"; {self.fix}" if self.fix else "")
        text = self.reason
        if self.field is not None:
            text += f" in field {self.field!r}"
        text += f" at {self.where}"
        if self.fix:
            text += f"; {self.fix}"
        return f"{text}; {skip_hint}" if skip_hint else text


class InvalidInputError(ValueError):
    """Input that cannot be read as preferences; ``.problems`` lists every problem found.

    The message shows the first 20 problems (then "and N more") and a count per kind.

    >>> err = InvalidInputError([InvalidRow(
    ...     "v.csv", None, None, None, "no rows", "add at least one row below the header")])
    >>> print(err)
    1 problem in v.csv; nothing was read:
      v.csv: no rows; add at least one row below the header
    """

    def __init__(self, problems: Sequence[InvalidRow], *, note: str = "nothing was read") -> None:
        self.problems: list[InvalidRow] = list(problems)
        self.note = note
        super().__init__(self._format(note))

    def for_cli(self, *, can_skip: bool = True) -> str:
        """The same message naming the command line's flag (``--skip-invalid``); a command
        without that flag passes ``can_skip=False`` (each row still named with its field,
        no hint to skip it)."""
        return self._format(self.note, CLI_SKIP_HINT if can_skip else None)

    def _format(self, note: str, skip_hint: str | None = SKIP_HINT) -> str:
        probs = self.problems
        files = sorted({p.file for p in probs})
        where = files[0] if len(files) == 1 else f"{len(files)} files"
        n = len(probs)
        head = f"{n} problem{'s' if n != 1 else ''} in {where}; {note}"
        kinds = Counter(p.kind for p in probs if p.kind)
        if n > 1 and len(kinds) > 0:
            head += " (" + ", ".join(f"{c} {k}" for k, c in kinds.most_common()) + ")"
        lines = [head + ":"]
        lines += [f"  {p.describe(skip_hint)}" for p in probs[:MAX_SHOWN]]
        if n > MAX_SHOWN:
            lines.append(f"  ... and {n - MAX_SHOWN} more")
        return "\n".join(lines)
