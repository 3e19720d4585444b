"""Alignment records: one prompt with its ``K`` responses (best first), for pairwise,
unpaired and listwise data, and :func:`read_alignment_data`, which reads them from every
format of the ``align`` family (unpaired, listwise, Step-DPO) and the pairs of the ``text``
family (TRL standard and conversational, Anthropic HH, LLMBar, RewardBench 1, generic
columns), with the same precise problems (file, line, field, fix).

>>> import tempfile, pathlib, json
>>> p = pathlib.Path(tempfile.mkdtemp()) / "ranked.jsonl"
>>> _ = p.write_text(json.dumps({"prompt": "2+2=", "completions": ["5", "4", "22"],
...                              "ranks": [2, 1, 3]}) + "\\n")
>>> d = read_alignment_data(p)
>>> d.kind, d.responses
('listwise', [['4', '5', '22']])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

# the format modules register themselves on import
from prefkit.data import _formats_text  # noqa: F401
from prefkit.data._formats_align import AlignRows, StepPair, step_dpo_pair
from prefkit.data._rows import Prompt, RowChecks
from prefkit.data.errors import InvalidRow
from prefkit.data.formats import Format, Parsed, describe_formats, notes, read_format
from prefkit.data.table import Table
from prefkit.data.text import TextPairs

__all__ = ["AlignmentData", "Kind", "Prompt", "StepPair", "convert_kind",
           "describe_alignment_formats",
           "read_alignment_data", "split_implicit_prompt", "step_dpo_pair", "unpair"]

Kind = Literal["pairwise", "unpaired", "listwise"]
KINDS = ("pairwise", "unpaired", "listwise")


@dataclass(frozen=True)
class AlignmentData:
    """Prompts with their responses, best first, as an alignment trainer reads them.

    Attributes:
        kind: ``"pairwise"`` (``K = 2``: chosen, rejected), ``"unpaired"`` (``K = 1`` with a
            ``label``) or ``"listwise"`` (``K >= 2`` ranked best first; ``K`` may vary).
        prompts: per row, a string (standard data: the model sees the prompt text and the
            response text concatenated as they are, TRL's convention) or a list of
            ``{"role", "content"}`` messages (conversational data: rendered with the
            tokenizer's chat template; the response is the next assistant turn).
        responses: per row, the responses' texts, best first.
        labels: unpaired only: True = desirable, False = undesirable.
        response_prefix: text every response of the row continues, already written (Step-DPO's
            correct earlier steps): appended to a standard prompt's text, or opening the
            assistant turn of a conversation; never scored. ``None`` = no prefix anywhere.
        source_lines: the line (or row) of the input each row came from.
        source: the input's name; format: the format it was read as.
        skipped: every problem of every row left out (``skip_invalid=True``).
        warnings: rows kept as they are but worth a look.
        n_read: records in the input, valid or not.
        n_empty: rows kept with an empty response (an empty answer is data).
    """

    kind: Kind
    prompts: list[Prompt]
    responses: list[list[str]]
    labels: NDArray[np.bool_] | None = None
    response_prefix: list[str] | None = None
    source_lines: NDArray[np.int64] | None = None
    source: str = ""
    format: str = ""
    skipped: tuple[InvalidRow, ...] = ()
    warnings: tuple[InvalidRow, ...] = ()
    n_read: int = 0
    n_empty: int = 0

    def __post_init__(self) -> None:
        n = len(self.prompts)
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        resp = [[str(r) for r in rs] for rs in self.responses]
        if len(resp) != n:
            raise ValueError(f"responses must have {n} entries (one list per prompt), "
                             f"got {len(resp)}")
        sizes = {len(r) for r in resp}
        need = {"pairwise": lambda k: k == 2, "unpaired": lambda k: k == 1,
                "listwise": lambda k: k >= 2}[self.kind]
        if any(not need(k) for k in sizes):
            what = {"pairwise": "exactly 2", "unpaired": "exactly 1", "listwise": "at least 2"}
            raise ValueError(f"{self.kind} rows need {what[self.kind]} responses each, "
                             f"got {sorted(sizes)}")
        object.__setattr__(self, "responses", resp)
        object.__setattr__(self, "prompts", [_copy_prompt(p) for p in self.prompts])
        if (self.labels is None) != (self.kind != "unpaired"):
            raise ValueError("labels are required for unpaired data and only allowed there")
        if self.labels is not None:
            lab = np.asarray(self.labels, dtype=bool)
            if lab.shape != (n,):
                raise ValueError(f"labels must have shape ({n},), got {lab.shape}")
            object.__setattr__(self, "labels", lab)
        if self.response_prefix is not None:
            pre = [str(p) for p in self.response_prefix]
            if len(pre) != n:
                raise ValueError(f"response_prefix must have {n} entries, got {len(pre)}")
            object.__setattr__(self, "response_prefix", pre)
        if self.source_lines is not None:
            lines = np.asarray(self.source_lines, dtype=np.int64)
            if lines.shape != (n,):
                raise ValueError(f"source_lines must have shape ({n},), got {lines.shape}")
            object.__setattr__(self, "source_lines", lines)
        object.__setattr__(self, "skipped", tuple(self.skipped))
        object.__setattr__(self, "warnings", tuple(self.warnings))

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def num_responses(self) -> NDArray[np.int64]:
        """``K`` per row."""
        return np.asarray([len(r) for r in self.responses], dtype=np.int64)

    def is_chat(self, i: int) -> bool:
        """Whether row ``i`` is conversational (its prompt is a list of messages)."""
        return isinstance(self.prompts[i], list)

    def line(self, i: int) -> int | None:
        """The input line of row ``i`` (``None`` when unknown)."""
        return None if self.source_lines is None else int(self.source_lines[i])

    def select(self, mask: Sequence[int] | NDArray[Any]) -> AlignmentData:
        """The rows at a boolean mask or an index array (reports are kept as they are)."""
        m = np.asarray(mask)
        idx = np.flatnonzero(m) if m.dtype == np.bool_ else m.astype(np.intp).reshape(-1)
        if m.dtype == np.bool_ and m.shape != (len(self),):
            raise ValueError(f"a boolean mask must have shape ({len(self)},), got {m.shape}")
        take = idx.tolist()
        return replace(
            self, prompts=[self.prompts[i] for i in take],
            responses=[self.responses[i] for i in take],
            labels=None if self.labels is None else self.labels[idx],
            response_prefix=None if self.response_prefix is None
            else [self.response_prefix[i] for i in take],
            source_lines=None if self.source_lines is None else self.source_lines[idx])

    @property
    def n_skipped(self) -> int:
        """Number of distinct rows left out (a row can have several problems)."""
        return len({(p.file, p.line) for p in self.skipped})

    def summary(self) -> str:
        """One line: what was read, and how many rows were skipped or warned about."""
        what = {"pairwise": "pairs", "unpaired": "labelled completions",
                "listwise": "ranked lists"}[self.kind]
        return f"read {len(self):,} {what}" + (f" ({self.format})" if self.format else "") \
            + notes(self.n_skipped, self.n_empty, len(self.warnings))


def _copy_prompt(p: Any) -> Prompt:
    if isinstance(p, str):
        return p
    if isinstance(p, list) and all(isinstance(m, Mapping) for m in p):
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in p]
    raise ValueError(f"a prompt must be a string or a list of messages, got {type(p).__name__}")


def unpair(data: AlignmentData) -> AlignmentData:
    """Pairwise rows as unpaired ones, as TRL's KTO does with paired data: every chosen
    response labelled True, then every rejected one labelled False (all chosen first, so that
    KTO's KL partners -- neighbours in data order -- rarely pair a prompt with its own other
    response).

    >>> d = AlignmentData("pairwise", ["2+2=", "1+1="], [["4", "5"], ["2", "3"]])
    >>> u = unpair(d)
    >>> u.responses, u.labels.tolist()
    ([['4'], ['2'], ['5'], ['3']], [True, True, False, False])
    """
    if data.kind != "pairwise":
        raise ValueError(f"unpair needs pairwise data, got {data.kind}")
    n = len(data)
    twice = np.concatenate([np.arange(n), np.arange(n)])
    out = data.select(twice)
    return replace(out, kind="unpaired",
                   responses=[[r[0]] for r in data.responses] + [[r[1]] for r in data.responses],
                   labels=np.repeat([True, False], n))




def describe_alignment_formats() -> str:
    """One line per format :func:`read_alignment_data` reads."""
    return describe_formats("align", "text")


def split_implicit_prompt(chosen: str, rejected: str) -> tuple[str, str, str]:
    """``(prompt, chosen, rejected)`` of two texts that share their start: the prompt is the
    longest shared prefix (at most all but one character of the shorter text, so both
    responses keep some text), less a last space, which stays with the responses. This is
    the convention of TRL's ``extract_prompt`` for standard data without a prompt column.

    >>> split_implicit_prompt("The sky is blue.", "The sky is green.")
    ('The sky is', ' blue.', ' green.')
    """
    n = 0
    limit = min(len(chosen), len(rejected)) - 1
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    if n > 0 and chosen[n - 1] == " ":
        n -= 1
    return chosen[:n], chosen[n:], rejected[n:]


def _pairs_as_rows(fmt: Format, parsed: Parsed, table: Table, implicit: bool,
                   chat: bool) -> Parsed:
    """TextPairs as alignment rows: conversational prompts as messages; an HH transcript as
    text (its replies after ``"Assistant:"`` get their space back), or as messages with
    ``chat=True``; an absent prompt split off the responses' shared start."""
    pairs = parsed.data
    if pairs is not None and not isinstance(pairs, TextPairs):
        what = "best-of-N sets" if hasattr(pairs, "num_correct") else "rated responses"
        table.fail(None, f"format {fmt.name!r} gives {what}, not preference pairs",
                   "convert them to prompt/chosen/rejected pairs, or to prompt/completions/"
                   "ranks rows (listwise)", "wrong_shape")
    if pairs is None:
        return replace(parsed, data=None)
    checks, out = RowChecks(table), AlignRows()
    checks.problems = []
    lines = pairs.source_line if pairs.source_line is not None else np.arange(1, len(pairs) + 1)
    msgs = pairs.messages_prompt or [None] * len(pairs)
    for i in range(len(pairs)):
        line = int(lines[i])
        checks.start(line)
        prompt: Prompt = pairs.prompt[i]
        chosen, rejected = pairs.chosen[i], pairs.rejected[i]
        if msgs[i] is not None and (fmt.name != "hh_rlhf" or chat):
            prompt = msgs[i]  # type: ignore[assignment]
        elif fmt.name == "hh_rlhf":
            chosen, rejected = " " + chosen, " " + rejected
        elif implicit and not prompt:
            prompt, chosen, rejected = split_implicit_prompt(chosen, rejected)
        if chat and isinstance(prompt, str):
            if not prompt.strip():
                checks.bad("prompt", prompt, "empty prompt; chat=True needs one to make a "
                           "user message", "give a prompt column, or read without chat=True",
                           "missing_value")
                continue
            prompt = [{"role": "user", "content": prompt}]
        out.add(line, prompt, [chosen, rejected])
    return replace(parsed, data=out, problems=parsed.problems + checks.problems)


def read_alignment_data(
    source: Any,
    *,
    kind: str = "auto",
    format: str = "auto",
    columns: Mapping[str, str] | None = None,
    skip_invalid: bool = False,
    split: str | None = None,
    chat: bool = False,
    **options: Any,
) -> AlignmentData:
    """Read alignment data from a file, a ``datasets`` folder or a ``datasets.Dataset``.

    Args:
        source: a JSONL, JSON-list, CSV or Parquet file (``.gz`` for the text ones), a folder
            written by ``Dataset.save_to_disk``, or a ``datasets.Dataset``/``DatasetDict``.
        kind: ``"pairwise"``, ``"unpaired"``, ``"listwise"`` or ``"auto"`` (the input's own
            kind). Pairs can be read as ``"unpaired"`` (see :func:`unpair`) or as
            ``"listwise"`` (``K = 2``); other conversions are refused.
        format: ``"unpaired"``, ``"listwise"``, ``"step_dpo"``, a pairwise text format
            (``trl``, ``hh_rlhf``, ``llmbar``, ``rewardbench``, ``pairs`` a.k.a.
            ``generic``), or ``"auto"`` to detect it from the columns.
        columns: map roles to your column names (``prompt``, ``chosen``, ``rejected``,
            ``completion``, ``label``, ``completions``, ``ranks``, ``scores``, ``steps``,
            ``wrong_step_index``, ``error_step``, ``rejected_step``, ...).
        skip_invalid: leave invalid rows out (listed in ``.skipped``) instead of raising.
        split: the split of a ``DatasetDict`` with several.
        chat: give standard (text) prompts to the chat template as one user message (HH
            transcripts: as their turns). Conversational inputs always use it.
        **options: format options (``strict=`` for hh_rlhf, ``step_separator=`` and
            ``prompt_separator=`` for step_dpo, ...).

    Raises:
        InvalidInputError: listing every problem (file, line, field, how to fix) when a row
            is invalid and ``skip_invalid`` is false, a column is missing, the format is
            unknown, or nothing valid is left.
    """
    if kind not in ("auto", "pairwise", "unpaired", "listwise"):
        raise ValueError(f"kind must be auto, pairwise, unpaired or listwise, got {kind!r}")

    def as_rows(fmt: Format, parsed: Parsed, table: Table) -> Parsed:
        if fmt.family == "align":
            return parsed
        prompt_col = (columns or {}).get("prompt", "prompt").split(".")[0]
        implicit = fmt.name in ("trl", "pairs") and prompt_col not in table.header()
        return _pairs_as_rows(fmt, parsed, table, implicit, chat)

    fmt, parsed, table = read_format(source, ("align", "text"), format=format, columns=columns,
                                     skip_invalid=skip_invalid, split=split, then=as_rows,
                                     **options)
    rows: AlignRows = parsed.data
    data = AlignmentData(
        rows.kind, rows.prompts, rows.responses,  # type: ignore[arg-type]
        labels=np.asarray(rows.labels, dtype=bool) if rows.kind == "unpaired" else None,
        response_prefix=rows.prefix if any(rows.prefix) else None,
        source_lines=np.asarray(rows.lines, dtype=np.int64), source=table.name,
        format=fmt.name, skipped=tuple(parsed.problems), warnings=tuple(parsed.warnings),
        n_read=parsed.n_read, n_empty=parsed.n_empty)
    return _convert(data, kind, table)


def convert_kind(data: AlignmentData, kind: str) -> AlignmentData:
    """``data`` as ``kind`` data: pairs become unpaired rows (:func:`unpair`) or lists of 2;
    ``"auto"`` or its own kind leaves it as it is; any other conversion is a ``ValueError``.

    >>> d = AlignmentData("pairwise", ["2+2="], [["4", "5"]])
    >>> convert_kind(d, "listwise").kind
    'listwise'
    """
    if kind in ("auto", data.kind):
        return data
    if data.kind == "pairwise" and kind == "unpaired":
        return unpair(data)
    if data.kind == "pairwise" and kind == "listwise":
        return replace(data, kind="listwise")
    raise ValueError(f"{data.kind} data does not convert to {kind}; pairs convert to unpaired "
                     "or listwise, nothing else converts")


def _convert(data: AlignmentData, kind: str, table: Table) -> AlignmentData:
    try:
        return convert_kind(data, kind)
    except ValueError:
        table.fail(None, f"this input holds {data.kind} data (format {data.format!r}), not "
                   f"{kind}", f"read it with kind='{data.kind}' (or 'auto'); pairs convert to "
                   "unpaired or listwise, nothing else converts", "wrong_shape")
    raise AssertionError  # unreachable
