"""Readers of annotated pairs (family ``"annotations"``): several labels per pair, from
people or judges, for :mod:`prefkit.inspect`.

Three layouts, one record kind (:class:`Annotations`):

- ``pandalm``: PandaLM's human test set (``testset-v1.json``): ``response1``/``response2``,
  ``annotator1..3`` with ``0`` = tie, ``1`` = response 1, ``2`` = response 2; the prompt is
  ``instruction`` + a blank line + ``input`` (when given), ``cmp_key`` names the two models
  (``"bloom-7b_llama-7b"``), ``motivation_app`` is the category;
- ``annotations_long``: one row per (pair, annotator, label) -- a crowd's votes such as
  LLMFAO's ``id, prompt, worker, winner, left, right``;
- ``annotations_wide``: one row per pair with one column per annotator (``annotator1``,
  ``rater_2``, ... or ``columns={"annotators": "ann_x,ann_y"}``).

A label says which of the two responses, **as shown** (the first, ``a``, or the second,
``b``), was preferred, or a tie. Accepted spellings (case-insensitive): ``a``, ``1``,
``model_a``, ``left``, ``first``, ``response1``, ``output_1``; ``b``, ``2``, ``model_b``,
``right``, ``second``, ``response2``, ``output_2``; ``tie``, ``0``, ``draw``, ``equal``, ``=``,
``tie (bothbad)``. A blank cell in the wide layout means that annotator did not label the
pair; a label that cannot be read is an invalid row (file, line, field, fix).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from prefkit.data.errors import InvalidRow
from prefkit.data.formats import Parsed, check_column_keys, read_format, register
from prefkit.data.table import Table

__all__ = ["FIRST", "LABEL_NAMES", "MISSING", "SECOND", "TIE", "Annotations", "parse_label",
           "read_annotations"]

#: label codes: the response shown first won, the second won, a tie, no label
FIRST, SECOND, TIE, MISSING = 0, 1, 2, -1
LABEL_NAMES = ("a", "b", "tie")
_SPELLINGS = {
    FIRST: ("a", "1", "model_a", "left", "first", "response1", "response_1", "output_1",
            "output1"),
    SECOND: ("b", "2", "model_b", "right", "second", "response2", "response_2", "output_2",
             "output2"),
    TIE: ("tie", "0", "draw", "equal", "=", "tie (bothbad)", "tie(bothbad)", "both"),
}
_LABELS = {s: code for code, names in _SPELLINGS.items() for s in names}
_FIX_LABEL = ("a label is a (the first response), b (the second) or tie; also 1/2/0, "
              "model_a/model_b, left/right")
Columns = Mapping[str, str] | None
_WHOLE = re.compile(r"(\d+)\.0+")  # '2.0' as pandas writes an integer column with blanks


def parse_label(value: Any) -> int | None:
    """The code of one label, :data:`MISSING` for a blank, ``None`` if unreadable. A number
    written as a float (``2.0``: pandas writes an integer column with a blank as floats) is
    the whole number.

    >>> [parse_label(v) for v in ("A", 2, "tie", "", None, 1.0, "2.0", "maybe")]
    [0, 1, 2, -1, -1, 0, 1, None]
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip().lower()
    if not text:
        return MISSING
    whole = _WHOLE.fullmatch(text)
    if whole is not None:
        text = str(int(whole.group(1)))
    return _LABELS.get(text)


@dataclass
class Annotations:
    """Pairs of responses, each labelled by several annotators.

    Attributes:
        labels: ``(n_pairs, n_annotators)`` int8 codes: :data:`FIRST` (0), :data:`SECOND`
            (1), :data:`TIE` (2), :data:`MISSING` (-1, not labelled).
        annotators: the annotators' names (columns of ``labels``).
        pair_id: each pair's id, as a string.
        prompt, response_a, response_b: the texts (``None`` when the input has none);
            ``response_a`` is the one shown first.
        model_a, model_b: who wrote each response (``None`` when not given).
        category: a group per pair (``None`` when not given).
        gold: a reference label per pair (codes as ``labels``; ``None`` when not given).
        lines: the input line (or row) of each pair (its first row in the long layout).
        source, format: the input's name and the format it was read as.
    """

    labels: NDArray[np.int8]
    annotators: tuple[str, ...]
    pair_id: list[str]
    prompt: list[str] | None = None
    response_a: list[str] | None = None
    response_b: list[str] | None = None
    model_a: list[str] | None = None
    model_b: list[str] | None = None
    category: list[str] | None = None
    gold: NDArray[np.int8] | None = None
    lines: NDArray[np.int64] | None = None
    source: str = ""
    format: str = ""
    skipped: list[InvalidRow] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int8)
        if self.labels.ndim != 2 or self.labels.shape[1] != len(self.annotators):
            raise ValueError(f"labels must have shape (n_pairs, {len(self.annotators)}), "
                             f"got {self.labels.shape}")
        n = self.labels.shape[0]
        for name in ("pair_id", "prompt", "response_a", "response_b", "model_a", "model_b",
                     "category", "gold", "lines"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise ValueError(f"{name} must have {n} entries, got {len(v)}")
        if self.gold is not None:
            self.gold = np.asarray(self.gold, dtype=np.int8)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_annotators(self) -> int:
        return len(self.annotators)

    def counts(self) -> NDArray[np.int64]:
        """``(n_pairs, 3)``: how many annotators said a, b, tie."""
        return np.stack([(self.labels == c).sum(1) for c in (FIRST, SECOND, TIE)], 1)

    def majority(self, min_votes: int = 1) -> NDArray[np.int8]:
        """Each pair's most frequent label when it has at least ``min_votes`` votes and no
        other label has as many; else :data:`MISSING`."""
        c = self.counts()
        top = c.argmax(1)
        k = c.max(1)
        unique = (c == k[:, None]).sum(1) == 1
        return np.where(unique & (k >= min_votes), top, MISSING).astype(np.int8)

    def select(self, keep: NDArray[np.bool_] | Sequence[int]) -> Annotations:
        """The pairs ``keep`` (a mask or indices), every column kept."""
        idx = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep)

        def sub(x: Any) -> Any:
            if x is None:
                return None
            return x[idx] if isinstance(x, np.ndarray) else [x[i] for i in idx]

        return Annotations(self.labels[idx], self.annotators, sub(self.pair_id),
                           sub(self.prompt), sub(self.response_a), sub(self.response_b),
                           sub(self.model_a), sub(self.model_b), sub(self.category),
                           sub(self.gold), sub(self.lines), self.source, self.format,
                           self.skipped)

    def to_text_pairs(self, *, min_votes: int = 2, drop_identical: bool = True) -> Any:
        """The pairs whose :meth:`majority` (with ``min_votes``) names a winner, as
        :class:`~prefkit.data.text.TextPairs` (chosen = the winner); pairs whose two
        responses are the same text are left out with ``drop_identical``."""
        from prefkit.data.text import TextPairs

        if self.response_a is None or self.response_b is None:
            raise ValueError(f"{self.source}: the input has no response texts")
        maj = self.majority(min_votes)
        P: list[str] = []
        C: list[str] = []
        R: list[str] = []
        ids: list[str] = []
        lines: list[int] = []
        for i, m in enumerate(maj):
            ra, rb = self.response_a[i], self.response_b[i]
            if m not in (FIRST, SECOND) or (drop_identical and ra == rb):
                continue
            P.append(self.prompt[i] if self.prompt is not None else "")
            C.append(ra if m == FIRST else rb)
            R.append(rb if m == FIRST else ra)
            ids.append(self.pair_id[i])
            lines.append(int(self.lines[i]) if self.lines is not None else i + 1)
        return TextPairs(P, C, R, messages_prompt=[[{"role": "user", "content": p}] for p in P],
                         id=np.asarray(ids, dtype=object),
                         source_line=np.asarray(lines, dtype=np.int64))


def read_annotations(source: Any, *, format: str = "auto", columns: Columns = None,
                     skip_invalid: bool = False, split: str | None = None) -> Annotations:
    """Read annotated pairs (see the module docstring for the layouts) through the format
    registry; every bad row is reported (file, line, field, fix) unless ``skip_invalid``
    skips it (then listed in ``.skipped``). ``columns={"annotators": "A,B"}`` names the
    annotator columns of the wide layout, and so picks that layout."""
    if format == "auto" and columns and "annotators" in columns:
        format = "annotations_wide"
    fmt, parsed, table = read_format(source, ("annotations",), format=format, columns=columns,
                                     skip_invalid=skip_invalid, split=split)
    ann: Annotations = parsed.data
    ann.source, ann.format, ann.skipped = table.name, fmt.name, list(parsed.problems)
    return ann


# -- the readers -------------------------------------------------------------------------------
_OPTIONAL = {
    "prompt": ("prompt", "instruction", "question"),
    "response_a": ("response_a", "response1", "output_1", "answer_a"),
    "response_b": ("response_b", "response2", "output_2", "answer_b"),
    "model_a": ("model_a", "left", "generator_1"),
    "model_b": ("model_b", "right", "generator_2"),
    "category": ("category", "subset"),
    "gold": ("gold", "gold_label"),
}
_PAIR = ("pair_id", "item_id", "id", "idx", "question_id", "item")
_ANNOTATOR = ("annotator", "worker", "rater", "annotator_id", "judge", "user")
_LABEL = ("label", "winner", "preference", "choice", "verdict")
_WIDE = re.compile(r"^(annotator|rater|worker|judge|label)[_-]?\d+$", re.IGNORECASE)


def _pick(keys: Sequence[str], names: Sequence[str]) -> str | None:
    return next((n for n in names if n in keys), None)


def _columns(table: Table, columns: Columns, required: Mapping[str, Sequence[str]],
             allowed: Sequence[str]) -> dict[str, str | None]:
    """Column per role: ``columns=`` first, else the first default name present; a missing
    required column stops the file with the columns present and how to map them."""
    columns = dict(columns or {})
    check_column_keys(columns, allowed)
    keys = table.header()
    out: dict[str, str | None] = {}
    for role, names in {**required, **_OPTIONAL}.items():
        if role not in allowed:
            continue
        col = columns.get(role) or _pick(keys, names)
        if role in columns and columns[role] not in keys or col is None and role in required:
            shown = ", ".join(keys[:30]) or "none"
            table.fail(None, f"missing column {columns.get(role) or names[0]!r} (needed for "
                       f"the {role.replace('_', ' ')}; columns present: {shown})",
                       f"map it with --column {role}=NAME (Python: columns={{'{role}': "
                       "NAME}})", "missing_column", field=role)
        out[role] = col
    return out


def _text(v: Any) -> str:
    return "" if v is None else str(v)


def pandalm_prompt(instruction: str, extra: str) -> str:
    """A PandaLM pair's prompt: its ``instruction``, then its ``input`` (stripped) after a
    blank line when there is one. The annotation and the judge readers both key pairs by it."""
    extra = extra.strip()
    return instruction + (f"\n\n{extra}" if extra else "")


class _Builder:
    """Collects pairs and the problems of their rows."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.problems: list[InvalidRow] = []

    def label(self, value: Any, line: int, fld: str, blank_ok: bool = True) -> int | None:
        code = parse_label(value)
        if code is None or (code == MISSING and not blank_ok):
            reason = (f"unknown label {value!r}" if code is None else "missing label")
            self.problems.append(self.table.problem(
                line, reason, _FIX_LABEL, "unknown_label" if code is None else "missing_value",
                field=fld, value=value))
            return None
        return code


def _finish(table: Table, b: _Builder, rows: list[dict[str, Any]], annotators: list[str],
            labels: list[list[int]], n_read: int, opt: Mapping[str, Any]) -> Parsed:
    bad = {p.line for p in b.problems}
    keep = [i for i, r in enumerate(rows) if not (set(r["lines"]) & bad)]
    if not keep:
        return Parsed(None, b.problems, n_read)
    lab = np.asarray([labels[i] for i in keep], dtype=np.int8).reshape(len(keep),
                                                                       len(annotators))
    used = (lab != MISSING).any(0)  # annotators whose every label was in a skipped row
    cols = {k: ([rows[i][k] for i in keep] if opt.get(k) else None) for k in _OPTIONAL}
    gold = cols.pop("gold")
    ann = Annotations(lab[:, used], tuple(a for a, u in zip(annotators, used) if u),
                      [rows[i]["id"] for i in keep], **cols,
                      gold=None if gold is None else np.asarray(gold, dtype=np.int8),
                      lines=np.asarray([rows[i]["lines"][0] for i in keep], dtype=np.int64))
    return Parsed(ann, b.problems, n_read)


def _pair_fields(b: _Builder, rec: Mapping[str, Any], line: int, col: Mapping[str, Any]
                 ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in _OPTIONAL:
        c = col.get(k)
        if not c:
            continue
        if k == "gold":
            g = b.label(rec.get(c), line, c)
            out[k] = MISSING if g is None else g
        else:
            out[k] = _text(rec.get(c))
    return out


@register("annotations_long", family="annotations", gives="Annotations", priority=30,
          detect=lambda kind, keys, first: bool(_pick(keys, _PAIR) and _pick(keys, _ANNOTATOR)
                                                and _pick(keys, _LABEL)),
          describe="one row per (pair, annotator, label): pair_id|id, annotator|worker, "
          "label|winner (a|b|tie, left|right|tie, 1|2|0); optional prompt, response_a/b, "
          "model_a/b (left/right), category, gold")
def read_annotations_long(table: Table, *, columns: Columns = None) -> Parsed:
    """The long layout: rows of one pair share its id; the pair's texts, models, category
    and gold come from its first row, and a later row that gives other ones is an invalid
    row (the same pair id for two different pairs; a later blank gold repeats the first, a
    first blank one is filled by a later row). An annotator labelling a pair twice
    is an invalid row too."""
    col = _columns(table, columns, {"pair": _PAIR, "annotator": _ANNOTATOR, "label": _LABEL},
                   ("pair", "annotator", "label", *_OPTIONAL))
    recs = table.records()
    b = _Builder(table)
    b.problems.extend(recs.problems)
    rows: list[dict[str, Any]] = []
    where: dict[str, int] = {}
    annotators: dict[str, int] = {}
    labels: list[dict[int, int]] = []
    for rec, line in zip(recs.rows, recs.lines):
        pid, who = rec.get(col["pair"]), rec.get(col["annotator"])
        if pid is None or _text(pid).strip() == "":
            b.problems.append(table.problem(line, "missing pair id", "give every row the id "
                              "of the pair it labels", "missing_value", field=col["pair"]))
            continue
        if who is None or _text(who).strip() == "":
            b.problems.append(table.problem(line, "missing annotator", "give every row the "
                              "annotator who labelled it", "missing_value",
                              field=col["annotator"]))
            continue
        code = b.label(rec.get(col["label"]), line, col["label"], blank_ok=False)
        fields = _pair_fields(b, rec, line, col)
        if code is None:
            continue
        pid, who = _text(pid), _text(who)
        j = annotators.setdefault(who, len(annotators))
        if pid not in where:
            where[pid] = len(rows)
            rows.append({"id": pid, "lines": [line], **fields})
            labels.append({})
        i = where[pid]
        first = rows[i]
        rows[i]["lines"].append(line)
        other = [k for k, v in fields.items() if first.get(k) != v and k != "gold"]
        gold = fields.get("gold", MISSING)  # a blank gold on a later row repeats the first
        if not other and gold != MISSING:
            if first.get("gold", MISSING) == MISSING:
                first["gold"] = gold
            elif first["gold"] != gold:
                other = ["gold"]
        if other:
            b.problems.append(table.problem(
                line, f"pair {pid!r} has another {other[0]} here than at line "
                f"{first['lines'][0]}", "give each pair one gold label (a later row may "
                "leave it blank)" if other[0] == "gold" else "one pair id must name one pair "
                "(same prompt, responses and models); give different pairs different ids",
                "inconsistent_pair",
                field=col[other[0]], value=fields[other[0]]))
            continue
        if j in labels[i]:
            b.problems.append(table.problem(
                line, f"annotator {who!r} labels pair {pid!r} a second time", "keep one label "
                "per annotator and pair", "duplicate_label", field=col["annotator"], value=who))
            continue
        labels[i][j] = code
    names = list(annotators)
    dense = [[lab.get(j, MISSING) for j in range(len(names))] for lab in labels]
    # a row's problems invalidate the pair only through that row: keep the pair, drop the row
    for r in rows:
        r["lines"] = [r["lines"][0]]
    return _finish(table, b, rows, names, dense, recs.n_read, col)


def _wide(table: Table, columns: Columns, *, pandalm: bool) -> Parsed:
    columns = dict(columns or {})
    listed = columns.pop("annotators", None)
    col = _columns(table, columns, {}, ("pair", *_OPTIONAL))
    keys = table.header()
    col["pair"] = columns.get("pair") or _pick(keys, _PAIR)
    ann_cols = ([c.strip() for c in listed.split(",") if c.strip()] if listed is not None
                else [k for k in keys if _WIDE.match(k)])
    twice = sorted({c for c in ann_cols if ann_cols.count(c) > 1})
    if twice or (listed is not None and not ann_cols):
        table.fail(None, f"annotator column {twice[0]!r} is named twice" if twice else
                   "annotators= names no column", "name each annotator's column once: "
                   "--column annotators=COL1,COL2 (Python: columns={'annotators': "
                   "'COL1,COL2'})", "duplicate_column" if twice else "missing_column",
                   field="annotators")
    if not ann_cols and not pandalm and col.get("gold"):  # labels beside a gold column
        ann_cols = _rest(keys)
    missing = [c for c in ann_cols if c not in keys]
    if not ann_cols or missing:
        table.fail(None, f"no annotator column {missing[0]!r}" if missing else
                   "no annotator columns (annotator1, rater_2, ...)",
                   "name them with --column annotators=COL1,COL2 (Python: columns="
                   "{'annotators': 'COL1,COL2'})", "missing_column", field="annotators")
    if pandalm:
        col["prompt"], col["response_a"], col["response_b"] = "instruction", "response1", \
            "response2"
        col["category"] = "motivation_app" if "motivation_app" in keys else None
    recs = table.records()
    b = _Builder(table)
    b.problems.extend(recs.problems)
    rows: list[dict[str, Any]] = []
    labels: list[list[int]] = []
    for k, (rec, line) in enumerate(zip(recs.rows, recs.lines)):
        codes = [b.label(rec.get(c), line, c, blank_ok=not pandalm) for c in ann_cols]
        fields = _pair_fields(b, rec, line, col)
        pid = _text(rec.get(col["pair"])) if col["pair"] else str(k)
        if pandalm:
            fields["prompt"] = pandalm_prompt(_text(rec.get("instruction")),
                                              _text(rec.get("input")))
            key = _text(rec.get("cmp_key"))
            if key:
                if key.count("_") != 1:
                    b.problems.append(table.problem(
                        line, f"cmp_key {key!r} does not name two models", "write it as "
                        "MODEL1_MODEL2 (one underscore)", "bad_value", field="cmp_key",
                        value=key))
                    continue
                fields["model_a"], fields["model_b"] = key.split("_")
        if any(c is None for c in codes):
            continue
        rows.append({"id": pid, "lines": [line], **fields})
        labels.append([c for c in codes if c is not None])
    opt = dict(col)
    if pandalm:
        opt["model_a"] = opt["model_b"] = "cmp_key" if "cmp_key" in keys else None
    return _finish(table, b, rows, ann_cols, labels, recs.n_read, opt)


@register("pandalm", family="annotations", gives="Annotations", priority=10,
          detect=lambda kind, keys, first: {"response1", "response2", "annotator1"} <= keys,
          describe="PandaLM's human test set: instruction, input, response1, response2, "
          "cmp_key, annotator1..3 (0 tie, 1 response1, 2 response2)")
def read_pandalm(table: Table, *, columns: Columns = None) -> Parsed:
    """PandaLM's ``testset-v1.json`` (WeOpenML/PandaLM ``data/testset-v1.json``): every
    pair labelled by its three annotators (a blank one is an invalid row)."""
    return _wide(table, columns, pandalm=True)


def _rest(keys: Sequence[str]) -> list[str]:
    """The columns no role claims (a pair id, texts, models, category, gold, an input)."""
    claimed = {n for names in (*_OPTIONAL.values(), _PAIR) for n in names} | {"input"}
    return [k for k in keys if k not in claimed]


def _is_wide(kind: str, keys: frozenset[str], first: object) -> bool:
    n = sum(bool(_WIDE.match(k)) for k in keys)
    gold = bool(_pick(sorted(keys), _OPTIONAL["gold"]))
    return n >= 2 or (gold and (n >= 1 or bool(_rest(sorted(keys)))))


@register("annotations_wide", family="annotations", gives="Annotations", priority=40,
          detect=_is_wide,
          describe="one row per pair, one column per annotator (annotator1, rater_2, ... or "
          "--column annotators=A,B; beside a gold column, every other column); optional "
          "pair_id, prompt, response_a/b, model_a/b, category, gold")
def read_annotations_wide(table: Table, *, columns: Columns = None) -> Parsed:
    """The wide layout; a blank cell means that annotator did not label the pair. The
    annotator columns are ``columns={"annotators": "A,B"}``, else those named like
    ``annotator1`` / ``rater_2``, else -- with a gold column -- every column that is not a
    pair id, text, model, category or gold (a judge's verdicts beside the gold label)."""
    return _wide(table, columns, pandalm=False)
