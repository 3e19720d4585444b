"""The format registry: every input format prefkit reads, of every record kind, in one place.

A format is one reader function over a :class:`~prefkit.data.table.Table`, registered with
:func:`register`. Its ``family`` says which reading function takes it (and so which
commands):

- ``"votes"``: :func:`prefkit.data.read_votes` (``prefkit rank``, ``diagnose``, ``propose``,
  ``simulate``) -- pairwise votes, aggregated counts, rankings and K-wise choices;
- ``"text"``: :func:`prefkit.data.read_preferences` (``prefkit reward train/eval/finetune``)
  and :func:`prefkit.data.read_alignment_data` (``prefkit align``) -- text pairs, ratings,
  best-of-N sets;
- ``"align"``: :func:`prefkit.data.read_alignment_data` only -- unpaired, listwise and
  Step-DPO rows;
- ``"responses"``: :func:`prefkit.data.read_responses` (``prefkit reward score``).

A new format is one function::

    @register("votes_x", family="votes", gives="PairwiseVotes",
              detect=lambda kind, keys, first: {"p1", "p2", "verdict"} <= keys,
              describe="X's votes: p1, p2, verdict (p1|p2|draw)", priority=60)
    def read_votes_x(table, *, columns=None, items=None):
        roles = {"a": Role(("p1",), "side a"), "b": Role(("p2",), "side b"),
                 "winner": Role(("verdict",), "the outcome")}
        return pairwise_table(table, roles, columns, {"p1": 0, "p2": 1, "draw": 2}, items)

``detect(kind, keys, first)`` says from the container (csv/jsonl/json/parquet/dataset/txt),
the column names and the first record whether an input is in this format; lower
``priority`` is tried first. ``prefkit formats`` lists every registered format.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from prefkit.data._frame import missing_column
from prefkit.data.errors import InvalidInputError, InvalidRow
from prefkit.data.table import Table

__all__ = ["FAMILIES", "FORMATS", "Format", "Parsed", "Role", "describe_formats",
           "detect", "lookup", "notes", "read_format", "register", "resolve"]

#: ``detect(kind, keys, first_record) -> bool``
Detect = Callable[[str, frozenset[str], Mapping[str, Any]], bool]

#: family -> who reads it (the heading of ``prefkit formats``)
FAMILIES = {
    "votes": "votes, counts and rankings: prefkit rank, diagnose, propose, simulate "
             "(read_votes)",
    "text": "text pairs, ratings and best-of-N: prefkit reward train, eval, finetune "
            "(read_preferences) and prefkit align (read_alignment_data)",
    "align": "alignment rows: prefkit align (read_alignment_data)",
    "responses": "responses to score: prefkit reward score (read_responses)",
    "verdicts": "recorded LLM-judge verdicts and grades: prefkit judge analyze (read_verdicts)",
    "annotations": "pairs labelled by several annotators: prefkit inspect (read_annotations)",
    "steps": "step-labelled solutions and verifiable tasks: prefkit prm (read_steps, read_tasks)",
}
#: the reader used when detection finds nothing but ``columns=`` maps the roles
FALLBACK = {"votes": "generic", "text": "pairs", "align": "pairs"}
#: what ``columns=`` looks like, per family, for the unknown-format message
_MAPPING = {"votes": "{'a': ..., 'b': ..., 'winner': ...}",
            "text": "{'prompt': ..., 'chosen': ..., 'rejected': ...}",
            "align": "{'prompt': ..., 'chosen': ..., 'rejected': ...}",
            "responses": "{'prompt': ..., 'response': ...}",
            "verdicts": "",
            "annotations": "{'pair': ..., 'annotator': ..., 'label': ...}",
            "steps": "{'prompt': ..., 'steps': ..., 'label': ...}"}
#: the keys of ``_MAPPING`` as --column flags (verdicts: none, the format is named instead)
_CLI_KEYS = {"votes": ("a", "b", "winner"), "text": ("prompt", "chosen", "rejected"),
             "align": ("prompt", "chosen", "rejected"), "responses": ("prompt", "response"),
             "annotations": ("pair", "annotator", "label"),
             "steps": ("prompt", "steps", "label")}


@dataclass
class Parsed:
    """What a reader returns: the records of the valid rows (``None`` if none), every
    row-level problem, the records read, notes on rows kept as they are (``warnings``) and
    the number of rows kept with an empty response (``n_empty``)."""

    data: Any
    problems: list[InvalidRow] = field(default_factory=list)
    n_read: int = 0
    warnings: list[InvalidRow] = field(default_factory=list)
    n_empty: int = 0

    @property
    def votes(self) -> Any:
        """The vote readers' name for :attr:`data`."""
        return self.data


@dataclass(frozen=True)
class Format:
    """One registered format: ``read(table, *, columns=None, **options) -> Parsed``."""

    name: str
    read: Callable[..., Parsed]
    detect: Detect
    describe: str
    priority: int
    family: str
    gives: str = ""
    aliases: tuple[str, ...] = ()


#: the modules whose readers register themselves on import (every family)
_FORMAT_MODULES = ("_formats", "_formats_align", "_formats_judges", "_formats_other",
                   "_formats_text", "_formats_verdicts", "annotations",
                   "steps", "_formats_verdicts_single")


class _Registry(dict):  # type: ignore[type-arg]
    """:data:`FORMATS`: a dict that imports every format module on its first read, so
    that a path that needs no reader (the streamed Parquet votes of ``prefkit rank``)
    does not pay for importing them all (~0.1 s); writes (:func:`register`) load
    nothing."""

    _loaded = False

    def _load(self) -> None:
        if not _Registry._loaded:
            _Registry._loaded = True
            import importlib

            for m in _FORMAT_MODULES:
                importlib.import_module(f"prefkit.data.{m}")

    def __getitem__(self, key: str) -> Format:
        self._load()
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._load()
        return super().__contains__(key)

    def __iter__(self):  # type: ignore[no-untyped-def]
        self._load()
        return super().__iter__()

    def __len__(self) -> int:
        self._load()
        return super().__len__()

    def __repr__(self) -> str:
        self._load()
        return super().__repr__()

    def get(self, key: str, default: Any = None) -> Any:
        self._load()
        return super().get(key, default)

    def keys(self):  # type: ignore[no-untyped-def]
        self._load()
        return super().keys()

    def values(self):  # type: ignore[no-untyped-def]
        self._load()
        return super().values()

    def items(self):  # type: ignore[no-untyped-def]
        self._load()
        return super().items()

    def copy(self) -> dict[str, Format]:
        self._load()
        return dict(super().items())


FORMATS: dict[str, Format] = _Registry()


def register(
    name: str, *, detect: Detect, describe: str, priority: int = 50, family: str = "votes",
    gives: str = "", aliases: Sequence[str] = (),
) -> Callable[[Callable[..., Parsed]], Callable[..., Parsed]]:
    """Add a reader to :data:`FORMATS` (see the module docstring)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")

    def deco(fn: Callable[..., Parsed]) -> Callable[..., Parsed]:
        FORMATS[name] = Format(name, fn, detect, describe, priority, family, gives,
                               tuple(aliases))
        return fn

    return deco


def formats(*families: str) -> list[Format]:
    """The formats of ``families`` (all by default), in detection order."""
    return sorted((f for f in FORMATS.values() if not families or f.family in families),
                  key=lambda f: f.priority)


def describe_formats(*families: str) -> str:
    """One line per format, in detection order; grouped under a heading per family when
    more than one family is listed (``prefkit formats`` lists them all)."""
    shown = families or tuple(FAMILIES)
    if len(shown) == 1:
        return "\n".join(f"  {f.name}: {f.describe}" for f in formats(*shown))
    return "\n".join(f"{FAMILIES[fam]}:\n" + describe_formats(fam) for fam in shown
                     if formats(fam))


def lookup(name: str, families: Sequence[str]) -> Format:
    """The format called ``name`` (or one of its aliases) among ``families``."""
    for f in formats(*families):
        if name == f.name or name in f.aliases:
            return f
    known = ", ".join(f.name for f in formats(*families))
    raise ValueError(f"unknown format {name!r}; known formats: {known}")


def detect(table: Table, families: Sequence[str],
           columns: Mapping[str, str] | None = None) -> Format:
    """The first format of ``families`` whose ``detect`` accepts the input; with a
    ``columns=`` mapping and no match, the family's generic reader; else an
    :class:`InvalidInputError` listing the known formats."""
    if tuple(families) == ("votes",):  # cheap: the header or the first records only
        keys = frozenset(table.peek_keys())
        first: Mapping[str, Any] = {}
        if not keys and table.kind in ("json", "jsonl"):
            _need_records(table)
    else:
        first = _need_records(table)
        keys = frozenset(table.header())
    mapped = keys | frozenset(columns or {})
    for f in formats(*families):
        if f.detect(table.kind, mapped if f.family == "align" else keys, first):
            return f
    fallback = FALLBACK.get(families[0])
    if columns and fallback:
        return FORMATS[fallback]
    if len(formats(*families)) == 1:  # one reader: its own message names what is missing
        return formats(*families)[0]
    what = {"csv": "header", "parquet": "header", "dataset": "columns"}.get(
        table.kind, "records")
    shown = ", ".join(sorted(keys)[:30]) or "none"
    container = f"{table.kind.upper()} file" if table.kind != "dataset" else "dataset"
    raise InvalidInputError([table.problem(
        None, f"cannot tell the format of this {container} from its {what} "
        f"(columns: {shown})",
        f"{_rename_hint(table, keys, first, families)}"
        f"{_other_family_hint(table, keys, first, families)}known formats:\n"
        f"{describe_formats(*families)}\n  pass format='<name>' (CLI: --format "
        f"<name>){_map_hint(families[0])}",
        "unknown_format")])


def _other_family_hint(table: Table, keys: frozenset[str], first: Mapping[str, Any],
                       families: Sequence[str]) -> str:
    """When another command's format reads these columns (pairs given to prefkit rank,
    votes given to prefkit reward train): which command and format."""
    for fam, heading in FAMILIES.items():
        if fam in families:
            continue
        for f in formats(fam):
            try:
                found = f.detect(table.kind, keys, first)
            except Exception:  # noqa: BLE001 - a detector that needs more than the keys
                found = False
            if found:
                what, _, commands = heading.partition(": ")
                return (f"these columns are {what} (format {f.name}), read by {commands}; ")
    return ""


def _rename_hint(table: Table, keys: frozenset[str], first: Mapping[str, Any],
                 families: Sequence[str]) -> str:
    """When the columns would be a known format's without their capitals or the spaces
    around them (' Model_A ' for 'model_a'): the renames that make it so."""
    renames = {k: k.strip().lower() for k in keys if k.strip().lower() != k}
    if not renames:
        return ""
    norm = frozenset(renames.get(k, k) for k in keys)
    near = {renames.get(k, k): v for k, v in first.items()} if first else first
    for f in formats(*families):
        if f.detect(table.kind, norm, near):
            shown = ", ".join(f"{k!r} -> {v!r}" for k, v in sorted(renames.items()))
            return (f"the columns are format {f.name}'s but for capitals or spaces: rename "
                    f"them ({shown}), or map them with columns= (CLI: --column); ")
    return ""


def _map_hint(family: str) -> str:
    """How to map columns, in Python's and the command line's words (none for verdicts)."""
    keys = _CLI_KEYS.get(family)
    if not keys:
        return ""
    cli = " ".join(f"--column {k}=NAME" for k in keys)
    return f", or map your columns with columns={_MAPPING[family]} (CLI: {cli})"


def _need_records(table: Table) -> Mapping[str, Any]:
    recs = table.records()
    if recs.n_read == 0:
        raise table.empty()
    if not recs.rows:
        raise InvalidInputError(recs.problems, note="no record could be read")
    return recs.rows[0]


def read_format(
    source: Any, families: Sequence[str], *, format: str = "auto",
    columns: Mapping[str, str] | None = None, skip_invalid: bool = False,
    split: str | None = None,
    then: Callable[[Format, Parsed, Table], Parsed] | None = None, **options: Any,
) -> tuple[Format, Parsed, Table]:
    """The one reading path: open the input, pick the format (detected, or named), read it
    (and pass it through ``then``, which may add problems), and refuse it -- listing every
    problem -- when a row is invalid (unless ``skip_invalid``) or nothing valid is left."""
    table = Table.of(source, split=split)
    with table.decoding():
        fmt = detect(table, families, columns) if format == "auto" else lookup(format, families)
        if table.kind in ("json", "jsonl", "dataset", "txt") and fmt.family != "votes":
            _need_records(table)
        parsed = fmt.read(table, columns=columns, **options)
        if then is not None:
            parsed = then(fmt, parsed, table)
    # a record that could not be read is a problem of every reader (some readers took only
    # the readable records: a malformed JSONL line was dropped without a word)
    seen = {(q.line, q.reason) for q in parsed.problems}
    lost = [q for q in table.record_problems() if (q.line, q.reason) not in seen]
    problems = sorted([*parsed.problems, *lost], key=lambda q: q.line or 0)
    if problems and not skip_invalid:
        n_bad = len({p.line for p in problems})
        raise InvalidInputError(problems, note=f"{n_bad:,} of {_records(parsed.n_read)} "
                                f"{'is' if n_bad == 1 else 'are'} invalid, nothing was read")
    if parsed.data is None or len(parsed.data) == 0:
        if not problems:
            raise table.empty()
        raise InvalidInputError(problems, note="the record is invalid" if parsed.n_read == 1
                                else f"all {_records(parsed.n_read)} are invalid")
    return fmt, replace(parsed, problems=problems), table


def _records(n: int) -> str:
    from prefkit.runs import plural

    return plural(n, "record")


def notes(n_skipped: int, n_empty: int, n_warnings: int) -> str:
    """``"; skipped 2 invalid rows; 3 rows with an empty response (kept); 1 warning"``."""
    from prefkit.runs import plural

    text = f"; skipped {plural(n_skipped, 'invalid row')}" if n_skipped else ""
    if n_empty:
        text += f"; {plural(n_empty, 'row')} with an empty response (kept)"
    if n_warnings:
        text += f"; {plural(n_warnings, 'warning')}"
    return text


# -- column roles, shared by the readers ---------------------------------------------------
@dataclass(frozen=True)
class Role:
    """A column a format needs: default names tried in order, what it is for, required?"""

    names: Sequence[str]
    purpose: str
    required: bool = True


def check_column_keys(columns: Mapping[str, str], roles: Sequence[str] | Mapping[str, Any]
                      ) -> None:
    """A ``ValueError`` naming every key of a ``columns=`` mapping that is none of the
    format's ``roles`` (the roles it maps are listed, in order)."""
    unknown = sorted(set(columns) - set(roles))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))} in columns=; "
                         f"this format maps {', '.join(map(repr, roles))}")


def resolve(
    table: Table, roles: Mapping[str, Role], columns: Mapping[str, str] | None
) -> dict[str, str | None]:
    """Column name per role: the ``columns=`` override, else the first default present.
    Every missing required column is reported at once, with the columns present."""
    columns = dict(columns or {})
    check_column_keys(columns, roles)
    header = table.header()
    have = set(header)
    out: dict[str, str | None] = {}
    probs = []
    for key, role in roles.items():
        if key in columns:
            col = columns[key]
            if col.split(".")[0] not in have:
                probs.append(missing_column(table, col, role.purpose, header, key))
            out[key] = col
            continue
        found = next((c for c in role.names if c.split(".")[0] in have), None)
        if found is None and role.required:
            miss = missing_column(table, role.names[0], role.purpose, header, key)
            if len(role.names) > 1:
                alts = " or ".join(repr(n) for n in role.names[1:])
                miss = replace(miss, reason=f"missing column {role.names[0]!r} (or {alts}; "
                               f"needed for {role.purpose})")
            probs.append(miss)
        out[key] = found
    if probs:
        raise InvalidInputError(probs)
    return out


def need(role: Role, key: str) -> tuple[str, str] | None:
    """Why a column is loaded: ``(purpose, key)`` if required, ``None`` if optional."""
    return (role.purpose, key) if role.required else None
