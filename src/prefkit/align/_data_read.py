"""``read_alignment_data``: any pairwise, unpaired, listwise or Step-DPO input as
:class:`AlignmentData`, with the format detected from its columns."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from prefkit.align._data_records import (
    AlignmentData,
    Parsed,
    Prompt,
    read_listwise,
    read_unpaired,
    unpair,
)
from prefkit.align._data_step import read_step_dpo
from prefkit.data._text_formats import RowChecks
from prefkit.data.errors import InvalidInputError, InvalidRow
from prefkit.data.text import TextPairs
from prefkit.data.text_readers import (
    TEXT_FORMATS,
    Table,
    describe_text_formats,
    detect_text_format,
)

__all__ = ["ALIGN_FORMATS", "describe_alignment_formats", "read_alignment_data",
           "split_implicit_prompt"]

#: format name -> (kind it gives, description); the pairwise text formats of
#: :data:`prefkit.data.TEXT_FORMATS` come on top of these.
ALIGN_FORMATS: dict[str, tuple[str, str]] = {
    "unpaired": ("unpaired", "TRL unpaired (KTO) rows: prompt, completion, label (true = "
                 "desirable); text or messages"),
    "listwise": ("listwise", "ranked lists: prompt, completions (a list, K >= 2), ranks "
                 "(1 = best) or scores (higher = better), or neither if already best first"),
    "step_dpo": ("pairwise", "Step-DPO: prompt, steps (list), wrong_step_index (0-based) or "
                 "error_step (1-based), rejected_step; or the published Math-Step-DPO-10K "
                 "columns prompt, initial_reason_steps, chosen, rejected"),
}


def describe_alignment_formats() -> str:
    """One line per format :func:`read_alignment_data` reads."""
    own = "\n".join(f"  {k}: {d}" for k, (_, d) in ALIGN_FORMATS.items())
    return own + "\n" + describe_text_formats()


def _detect(table: Table, columns: Mapping[str, str] | None) -> str:
    cols = set(columns or {})
    keys = set(table.header())
    if cols & {"initial_reason_steps", "steps", "rejected_step", "wrong_step_index",
               "error_step"} or "initial_reason_steps" in keys or \
            {"steps", "rejected_step"} <= keys:
        return "step_dpo"
    if cols & {"completion", "label"} or {"completion", "label"} <= keys:
        return "unpaired"
    if cols & {"completions", "ranks", "scores"} or "completions" in keys or \
            ("responses" in keys and "prompt" in keys and "chosen" not in keys):
        return "listwise"
    try:
        return detect_text_format(table)
    except InvalidInputError as e:
        if e.problems[0].kind != "unknown_format":
            raise
        if columns:
            return "generic"
    shown = ", ".join(sorted(keys)[:30]) or "none"
    table.fail(f"cannot tell the format of this input from its columns ({shown})",
               f"known formats:\n{describe_alignment_formats()}\n  pass format='<name>', or "
               "map your columns with columns={'prompt': ..., 'chosen': ..., ...}",
               "unknown_format")
    raise AssertionError  # unreachable


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


def _from_pairs(table: Table, pairs: TextPairs, fmt: str, implicit: bool, chat: bool
                ) -> tuple[Parsed, list[InvalidRow]]:
    """TextPairs as alignment rows: conversational prompts as messages; an HH transcript as
    text (its replies after ``"Assistant:"`` get their space back), or as messages with
    ``chat=True``; an absent prompt split off the responses' shared start."""
    checks, out = RowChecks(table), Parsed()
    lines = pairs.source_line if pairs.source_line is not None else np.arange(1, len(pairs) + 1)
    msgs = pairs.messages_prompt or [None] * len(pairs)
    for i in range(len(pairs)):
        line = int(lines[i])
        checks.start(line)
        prompt: Prompt = pairs.prompt[i]
        chosen, rejected = pairs.chosen[i], pairs.rejected[i]
        if msgs[i] is not None and (fmt != "hh_rlhf" or chat):
            prompt = msgs[i]  # type: ignore[assignment]
        elif fmt == "hh_rlhf":
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
    return out, checks.problems


def _read_pairs(table: Table, fmt: str, columns: Mapping[str, str] | None, chat: bool,
                options: Mapping[str, Any]) -> tuple[Parsed, list[InvalidRow], list[InvalidRow]]:
    parsed = TEXT_FORMATS[fmt].read(table, columns=columns, **options)
    data = parsed.data
    if data is not None and not isinstance(data, TextPairs):
        what = "best-of-N sets" if hasattr(data, "num_correct") else "rated responses"
        table.fail(f"format {fmt!r} gives {what}, not preference pairs",
                   "convert them to prompt/chosen/rejected pairs, or to prompt/completions/"
                   "ranks rows (listwise)", "wrong_shape")
    if data is None:
        return Parsed(), parsed.problems, parsed.warnings
    prompt_col = (columns or {}).get("prompt", "prompt").split(".")[0]
    implicit = fmt in ("trl", "generic") and prompt_col not in table.header()
    out, probs = _from_pairs(table, data, fmt, implicit, chat)
    return out, parsed.problems + probs, parsed.warnings


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
            (``trl``, ``hh_rlhf``, ``llmbar``, ``rewardbench``, ``generic``), or ``"auto"``
            to detect it from the columns.
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
    table = Table.load(source, split=split)
    if table.n_read == 0:
        table.fail("no rows (the input is empty)", "add at least one record or check that "
                   "this is the file you meant", "empty_input")
    if not table.rows:
        raise InvalidInputError(table.problems, note="no record could be read")
    fmt = _detect(table, columns) if format == "auto" else format
    readers: dict[str, Callable[..., Any]] = {
        "unpaired": read_unpaired, "listwise": read_listwise, "step_dpo": read_step_dpo}
    warnings: list[InvalidRow] = []
    if fmt in readers:
        natural = ALIGN_FORMATS[fmt][0]
        got = readers[fmt](table, columns=columns, **options)
        parsed, problems = got[0], got[1]
        warnings = list(got[2]) if len(got) > 2 else []
    elif fmt in TEXT_FORMATS:
        natural = "pairwise"
        parsed, problems, warnings = _read_pairs(table, fmt, columns, chat, options)
    else:
        raise ValueError(f"unknown format {fmt!r}; known formats: "
                         f"{', '.join([*ALIGN_FORMATS, *TEXT_FORMATS])}")
    skipped = _finish(problems, skip_invalid, table.n_read)
    if not parsed.prompts:
        raise InvalidInputError(skipped or [table.problem(
            None, None, None, "no valid rows", "check the file", "empty_input")],
            note=f"all {table.n_read:,} records are invalid")
    has_prefix = any(parsed.prefix)
    data = AlignmentData(
        natural, parsed.prompts, parsed.responses,  # type: ignore[arg-type]
        labels=np.asarray(parsed.labels, dtype=bool) if natural == "unpaired" else None,
        response_prefix=parsed.prefix if has_prefix else None,
        source_lines=np.asarray(parsed.lines, dtype=np.int64), source=table.name, format=fmt,
        skipped=tuple(skipped), warnings=tuple(warnings), n_read=table.n_read)
    return _convert(data, kind, table)


def _finish(problems: list[InvalidRow], skip_invalid: bool, n_read: int) -> list[InvalidRow]:
    problems = sorted(problems, key=lambda q: q.line or 0)
    if problems and not skip_invalid:
        n_bad = len({p.line for p in problems})
        raise InvalidInputError(
            problems, note=f"{n_bad:,} of {n_read:,} records are invalid, nothing was read")
    return problems


def _convert(data: AlignmentData, kind: str, table: Table) -> AlignmentData:
    if kind in ("auto", data.kind):
        return data
    if data.kind == "pairwise" and kind == "unpaired":
        return unpair(data)
    if data.kind == "pairwise" and kind == "listwise":
        return AlignmentData("listwise", data.prompts, data.responses,
                             response_prefix=data.response_prefix,
                             source_lines=data.source_lines, source=data.source,
                             format=data.format, skipped=data.skipped,
                             warnings=data.warnings, n_read=data.n_read)
    table.fail(f"this input holds {data.kind} data (format {data.format!r}), not {kind}",
               f"read it with kind='{data.kind}' (or 'auto'); pairs convert to unpaired or "
               "listwise, nothing else converts", "wrong_shape")
    raise AssertionError  # unreachable
