"""Prompt sets for online RL: a prompt per row plus the columns rewards read.

    task = read_task("../shared/data/rl/gsm8k/test.jsonl")    # layout "gsm8k"
    task.prompts[0], task.columns["answer"][0], task.answer_kind   # ..., '... #### 18', 'gsm8k'

Layouts, recognised from the columns (or named with ``layout=``):

=========  ==================================  ===========================================
layout     columns                             prompt / what the rewards get
=========  ==================================  ===========================================
prompt     ``prompt`` (TRL's standard; text    the prompt; every other column as is
           or conversational messages)
gsm8k      ``question``, ``answer``            the question; ``answer`` (``#### N``)
math       ``problem``, ``answer``             the problem; ``answer`` (MATH-500)
game24     ``Puzzles`` (CSV)                   the four numbers; ``numbers`` column
=========  ==================================  ===========================================

Files: JSONL (``.jsonl``, ``.jsonl.gz``), a JSON list, CSV (``.csv``, ``.csv.gz``; a
byte-order mark is ignored) or Parquet, read as the data readers read them. A row without
the layout's prompt column, or with an empty prompt, stops the read with the file, line and
field (:class:`~prefkit.data.errors.InvalidInputError`), never silently dropped.
``template`` (``"{question}\\nAnswer:"``) formats each prompt from the row's columns.

A conversational prompt (TRL's format: a list of ``{"role", "content"}`` messages) is kept
as the list: the model sees it through its tokenizer's chat template with the generation
prompt (:func:`prompt_inputs`), reward functions get the list, as TRL gives it to them
(completions stay text).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefkit.data.errors import InvalidInputError, InvalidRow

__all__ = ["LAYOUTS", "Task", "as_task", "check_template", "prompt_inputs", "read_task"]

#: layout -> (prompt column, the answer checker's kind or None)
LAYOUTS: dict[str, tuple[str, str | None]] = {
    "prompt": ("prompt", None),
    "gsm8k": ("question", "gsm8k"),
    "math": ("problem", "math"),
    "game24": ("Puzzles", None),
}


@dataclass
class Task:
    """Prompts and their columns (every column a list as long as ``prompts``)."""

    prompts: list[Any]  # text, or a list of {"role", "content"} messages
    columns: dict[str, list[Any]] = field(default_factory=dict)
    layout: str = "prompt"
    source: str | None = None

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def answer_kind(self) -> str | None:
        """``"gsm8k"`` / ``"math"`` for the exact-answer checker, None otherwise."""
        return LAYOUTS[self.layout][1]

    def rows(self, index: Sequence[int]) -> tuple[list[Any], dict[str, list[Any]]]:
        """The prompts and columns of rows ``index``."""
        return ([self.prompts[i] for i in index],
                {k: [v[i] for i in index] for k, v in self.columns.items()})

    def head(self, n: int) -> Task:
        return Task(self.prompts[:n], {k: v[:n] for k, v in self.columns.items()},
                    self.layout, self.source)


def _records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The records of a prompt file, read by the data readers' :class:`Table` (JSONL, a
    JSON list, CSV, Parquet; .gz; a byte-order mark ignored): a line that is not JSON, a
    JSON object with a key twice, a CSV with a duplicate column or a row of too many
    fields, text that is not UTF-8 -- each is refused with its line, none skipped."""
    from dataclasses import replace

    from prefkit.data.table import Table

    table = Table.of(path)
    with table.decoding():
        recs = table.records()
    if recs.problems:
        raise InvalidInputError([replace(q, skippable=False) for q in recs.problems])
    return list(zip(recs.lines, recs.rows))


def _guess_layout(keys: set[str]) -> str | None:
    if "prompt" in keys:
        return "prompt"
    if {"question", "answer"} <= keys:
        return "gsm8k"
    if {"problem", "answer"} <= keys:
        return "math"
    if "Puzzles" in keys:
        return "game24"
    return None


def read_task(path: str | Path, *, layout: str | None = None, template: str | None = None,
              limit: int | None = None) -> Task:
    """Read a prompt set (see the module docstring); ``limit`` keeps the first rows."""
    path = Path(path)  # a folder: read when datasets' save_to_disk wrote it, else refused
    if not path.exists():
        raise FileNotFoundError(f"task file {str(path)!r} does not exist")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1 (prompts), got {limit}")
    if template is not None:
        check_template(template)
    rows = _records(path)
    if limit is not None:
        rows = rows[:limit]
    if not rows:
        raise InvalidInputError([InvalidRow(str(path), None, None, None, "the file holds no rows",
                                            "give a file with one prompt per row",
                                            kind="empty", skippable=False)])
    keys = set(rows[0][1])
    if layout is None:
        layout = _guess_layout(keys)
        if layout is None:
            raise InvalidInputError([InvalidRow(
                str(path), rows[0][0], None, sorted(keys),
                "no prompt column: expected 'prompt' (TRL), 'question' + 'answer' (GSM8K), "
                "'problem' + 'answer' (MATH) or 'Puzzles' (Game of 24)",
                "rename the prompt column to 'prompt'", kind="no_prompt", skippable=False)])
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}")
    col = LAYOUTS[layout][0]
    problems: list[InvalidRow] = []
    prompts: list[str] = []
    columns: dict[str, list[Any]] = {}
    for line, rec in rows:
        value = rec.get(col)
        if layout == "prompt" and _is_chat(value):
            prompts.append(value)
            for k in set(columns) | set(rec):
                columns.setdefault(k, [None] * (len(prompts) - 1)).append(rec.get(k))
            continue
        if not isinstance(value, str) or not value.strip():
            what = ("is missing or empty" if value is None or isinstance(value, str)
                    else f"is not text ({type(value).__name__} {value!r:.40})")
            problems.append(InvalidRow(str(path), line, col, value,
                                       f"the {col!r} field {what}",
                                       f"give every row a non-empty {col!r}",
                                       kind="no_prompt", skippable=False))
            continue
        if layout == "game24":
            rec = {**rec, "numbers": value}
        prompt = value
        if template is not None:
            try:
                prompt = template.format(**rec)
            except KeyError as exc:
                problems.append(InvalidRow(str(path), line, str(exc.args[0]), None,
                                           f"the template names {exc.args[0]!r}, which this "
                                           "row lacks", "name only the file's columns in "
                                           "the template", kind="template", skippable=False))
                continue
        prompts.append(prompt)
        for k in set(columns) | set(rec):
            columns.setdefault(k, [None] * (len(prompts) - 1)).append(rec.get(k))
    if problems:
        raise InvalidInputError(problems)
    return Task(prompts, columns, layout, str(path))


def check_template(template: str) -> None:
    """Raise ValueError unless ``template`` formats from column names only
    (``'Q: {question}'``; a literal brace is doubled: ``{{``)."""
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"template {template!r}: {exc}; write each column in braces, e.g. "
                         "'Q: {question}', and double a literal brace ({{ or }})") from None
    for f in fields:
        name = f.split(".", 1)[0].split("[", 1)[0]
        if not name or name.isdigit():
            raise ValueError(f"template {template!r}: {{{f}}} is a position, not a column; "
                             "name the column in the braces, e.g. 'Q: {question}'")


def _is_chat(value: Any) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(m, dict) and isinstance(m.get("role"), str)
                    and isinstance(m.get("content"), str) for m in value))


def prompt_inputs(tokenizer: Any, prompts: Sequence[Any]) -> list[str | list[int]]:
    """What the model reads for each prompt: text as is; messages through the tokenizer's
    chat template with the generation prompt, as token ids (the template's own special
    tokens, none added twice)."""
    out: list[str | list[int]] = []
    for p in prompts:
        if isinstance(p, str):
            out.append(p)
            continue
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("a conversational prompt needs a tokenizer with a chat template")
        text = tokenizer.apply_chat_template(list(p), tokenize=False,
                                             add_generation_prompt=True)
        out.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return out


def as_task(data: Task | str | Path | Sequence[str] | Mapping[str, Any]) -> Task:
    """A :class:`Task` from a task, a file, a list of prompt strings or ``{"prompt": [...],
    other columns}``."""
    if isinstance(data, Task):
        return data
    if isinstance(data, (str, Path)):
        return read_task(data)
    if isinstance(data, Mapping):
        cols = {k: list(v) for k, v in data.items()}
        prompts = cols.pop("prompt")
        return Task([p if _is_chat(p) else str(p) for p in prompts], cols)
    return Task([p if _is_chat(p) else str(p) for p in data])
