"""Step-labelled solutions and verifiable tasks (family ``"steps"``, read by
:func:`read_steps` and :func:`read_tasks`; ``prefkit prm``).

One record kind, :class:`StepSolutions`: a problem, its solution as a list of steps, and one
label per step -- 1 the step is right, 0 it is wrong, a value in between a soft label (the
Monte-Carlo estimate that the step still leads to a right answer), NaN not labelled (the
steps after ProcessBench's first wrong step). ``first_error`` is the index of the first step
whose label is below 0.5 (-1 when none): ProcessBench's ``label``.

Formats:

* ``processbench``: ``problem, steps, label`` (the first wrong step, -1 = all right);
* ``trl_stepwise``: TRL's stepwise supervision ``prompt, completions, labels`` (booleans);
* ``math_shepherd``: ``input, label`` with steps ending in the tag ``ки`` and ``+``/``-`` in
  ``label``, or soft labels ``prompt``/``problem``, ``steps``, ``values`` (numbers in [0, 1]);
* ``prm800k``: PRM800K's phase files (``question``, ``label.steps[].completions[].rating``
  -1/0/1, the chosen completion followed; ratings 0 count ``neutral``, 1.0 by default);

and :class:`Tasks` (a problem and its reference answer): ``gsm8k`` (``question, answer``
with ``#### N``), ``math`` (``problem, answer``: MATH-500), ``game24`` (``Puzzles`` CSV).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prefkit.data._frame import to_float
from prefkit.data._rows import RowChecks, get, json_list
from prefkit.data.formats import Parsed, Role, read_format, register, resolve

if TYPE_CHECKING:
    from prefkit.data.table import Table

__all__ = ["Candidates", "StepReadResult", "StepSolutions", "Tasks", "read_candidates_file",
           "read_steps", "read_tasks"]

SHEPHERD_TAG = "ки"


@dataclass
class StepSolutions:
    """Solutions split into steps, with one label per step (see the module docstring).

    prompts:  the problems.
    steps:    each solution's steps (a list of strings, at least one).
    labels:   per step, 1.0 right, 0.0 wrong, in between soft, NaN unlabelled.
    ids:      an id per solution (the file's ``id`` or the line).
    lines:    the line (or row) each solution was read from.
    soft:     whether any label is soft.
    """

    prompts: list[str] = field(default_factory=list)
    steps: list[list[str]] = field(default_factory=list)
    labels: list[list[float]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompts)

    def add(self, line: int, prompt: str, steps: list[str], labels: list[float],
            id_: str | None = None) -> None:
        self.prompts.append(prompt)
        self.steps.append(steps)
        self.labels.append(labels)
        self.ids.append(str(line) if id_ is None else str(id_))
        self.lines.append(line)

    @property
    def soft(self) -> bool:
        return any(0.0 < x < 1.0 for row in self.labels for x in row if not math.isnan(x))

    @property
    def first_error(self) -> list[int]:
        """ProcessBench's ``label`` per solution: the first step labelled below 0.5, else -1."""
        return [next((i for i, x in enumerate(row) if x < 0.5), -1)  # NaN < 0.5 is False
                for row in self.labels]

    def subset(self, index: Sequence[int]) -> StepSolutions:
        out = StepSolutions()
        for i in index:
            out.add(self.lines[i], self.prompts[i], self.steps[i], self.labels[i], self.ids[i])
        return out


@dataclass
class Tasks:
    """Problems with a reference answer a checker can verify (:mod:`prefkit.answers`).

    kind: ``"gsm8k"`` (numeric), ``"math"`` (MATH equivalence) or ``"game24"`` (the answer
    is the puzzle's four numbers; any valid expression is right)."""

    kind: str
    prompts: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompts)


def _first_error_labels(n: int, first: int) -> list[float]:
    """ProcessBench labels as per-step values: right before ``first``, wrong at it,
    unlabelled after; all right when ``first == -1``."""
    if first < 0:
        return [1.0] * n
    return [1.0] * first + [0.0] + [math.nan] * (n - first - 1)


def _step_list(checks: RowChecks, value: Any, fld: str) -> list[str] | None:
    value = json_list(value)
    if not isinstance(value, list) or not value:
        checks.bad(fld, value, "expected a non-empty list of steps",
                   'give the solution as a list of step strings, e.g. ["Step 1 ...", '
                   '"Step 2 ..."]', "bad_value")
        return None
    out = [checks.text(s, f"{fld}[{i}]", "a step") for i, s in enumerate(value)]
    return None if any(s is None for s in out) else out  # type: ignore[return-value]


# -- ProcessBench ---------------------------------------------------------------------------
PB_ROLES = {"prompt": Role(("problem", "prompt", "question"), "the problem"),
            "steps": Role(("steps",), "the solution's steps (a list of strings)"),
            "label": Role(("label",), "the first wrong step (0-based), -1 if all are right"),
            "id": Role(("id",), "an id", False)}
FIX_PB = "label is the 0-based index of the first wrong step, or -1 if every step is right"


@register("processbench", family="steps", priority=1, gives="StepSolutions",
          describe="ProcessBench: problem, steps (list), label (first wrong step, 0-based; "
          "-1 = all right)",
          detect=lambda kind, keys, first: {"steps", "label"} <= keys
          and not isinstance(first.get("label"), (dict, list)))
def read_processbench(table: Table, *, columns: Mapping[str, str] | None = None) -> Parsed:
    col = resolve(table, PB_ROLES, columns)  # type: ignore[arg-type]
    checks, out = RowChecks(table), StepSolutions()
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        prompt = checks.text(get(row, col["prompt"]), col["prompt"], "a problem")
        steps = _step_list(checks, get(row, col["steps"]), col["steps"])  # type: ignore[arg-type]
        raw = get(row, col["label"])
        x = None if isinstance(raw, bool) else to_float(raw)
        if steps is not None and (x is None or x != int(x) or not -1 <= x < len(steps)):
            checks.bad(col["label"], raw, f"label {raw!r} names no step of the {len(steps)} "
                       "steps", FIX_PB, "missing_value" if raw is None else "bad_value")
        if not checks.ok or prompt is None or steps is None or x is None:
            continue
        id_ = get(row, col["id"]) if col["id"] else None
        out.add(line, prompt, steps, _first_error_labels(len(steps), int(x)), id_)
    return checks.parsed(out)


# -- TRL stepwise ---------------------------------------------------------------------------
TRL_ROLES = {"prompt": Role(("prompt",), "the problem"),
             "completions": Role(("completions",), "the steps (a list of strings)"),
             "labels": Role(("labels",), "one label per step (true = right)")}


def _label(checks: RowChecks, v: Any, fld: str, soft: bool) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "+", "-"):
        return float(v.strip().lower() in ("true", "+"))
    x = to_float(v)
    if x is not None and (x in (0.0, 1.0) or (soft and 0.0 <= x <= 1.0)):
        return x
    checks.bad(fld, v, f"step label {v!r} is not " + ("a number in [0, 1]" if soft
               else "true/false"), "give one label per step: true (right) or false (wrong)"
               + (", or a probability in [0, 1]" if soft else ""), "bad_value")
    return None


def _labels(checks: RowChecks, value: Any, fld: str, n: int, soft: bool) -> list[float] | None:
    value = json_list(value)
    if not isinstance(value, list) or len(value) != n:
        got = f", got {len(value)}" if isinstance(value, list) else ""
        checks.bad(fld, value, f"expected {n} labels (one per step){got}",
                   "give exactly one label per step, in the same order", "bad_value")
        return None
    out = [_label(checks, v, f"{fld}[{i}]", soft) for i, v in enumerate(value)]
    return None if any(x is None for x in out) else out  # type: ignore[return-value]


def _read_labelled_steps(table: Table, c_prompt: str | None, c_steps: str | None,
                         c_labels: str | None, prompt_what: str, *, soft: bool) -> Parsed:
    """Rows of a prompt, a list of steps and a list of one label per step (TRL stepwise's
    booleans, or Math-Shepherd's soft values when ``soft``) as :class:`StepSolutions`."""
    assert c_steps and c_labels
    checks, out = RowChecks(table), StepSolutions()
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        prompt = checks.text(get(row, c_prompt), c_prompt, prompt_what)
        steps = _step_list(checks, get(row, c_steps), c_steps)
        if steps is None:
            continue
        labels = _labels(checks, get(row, c_labels), c_labels, len(steps), soft)
        if checks.ok and prompt is not None and labels is not None:
            out.add(line, prompt, steps, labels)
    return checks.parsed(out)


@register("trl_stepwise", family="steps", priority=2, gives="StepSolutions",
          describe="TRL stepwise supervision: prompt, completions (steps), labels (one "
          "boolean per step)",
          detect=lambda kind, keys, first: {"completions", "labels"} <= keys)
def read_trl_stepwise(table: Table, *, columns: Mapping[str, str] | None = None) -> Parsed:
    col = resolve(table, TRL_ROLES, columns)  # type: ignore[arg-type]
    return _read_labelled_steps(table, col["prompt"], col["completions"], col["labels"],
                                "a prompt", soft=False)


# -- Math-Shepherd (hard tags, or soft values) ----------------------------------------------
SOFT_ROLES = {"prompt": Role(("prompt", "problem", "question"), "the problem"),
              "steps": Role(("steps",), "the steps (a list of strings)"),
              "values": Role(("values",), "one Monte-Carlo value in [0, 1] per step")}


def _split_shepherd(text: str, label: str, tag: str) -> tuple[str, list[str], list[str]] | None:
    """``input`` ``"problem Step 1: a ки\\nStep 2: b ки"`` and its ``label`` (the same text,
    each tag replaced by ``+`` or ``-``) -> (problem, steps, marks); the problem is the text
    before ``Step 1`` (else before the first line break). None when they do not line up."""
    at = [i for i in range(len(text)) if text.startswith(tag, i)]
    if not at or len(label) != len(text) - len(at) * (len(tag) - 1):
        return None
    marks = [label[i - k * (len(tag) - 1)] for k, i in enumerate(at)]
    parts = text.split(tag)[:-1]
    cut = parts[0].find("Step 1")
    cut = cut if cut >= 0 else parts[0].find("\n") + 1
    prompt, parts[0] = parts[0][:cut].strip(), parts[0][cut:]
    return prompt, [p.strip() for p in parts], marks


@register("math_shepherd", family="steps", priority=3, gives="StepSolutions",
          describe="Math-Shepherd: input (steps end with 'ки'), label (the same text with "
          "+/- for each tag); or soft labels: prompt, steps, values (in [0, 1])",
          detect=lambda kind, keys, first: {"input", "label"} <= keys
          or {"steps", "values"} <= keys)
def read_math_shepherd(table: Table, *, columns: Mapping[str, str] | None = None) -> Parsed:
    if "values" in table.header() or "values" in (columns or {}):
        col = resolve(table, SOFT_ROLES, columns)  # type: ignore[arg-type]
        return _read_labelled_steps(table, col["prompt"], col["steps"], col["values"],
                                    "a problem", soft=True)
    checks, out = RowChecks(table), StepSolutions()
    roles = {"input": Role(("input",), "the solution with a 'ки' after each step"),
             "label": Role(("label",), "the same solution with + or - after each step")}
    col = resolve(table, roles, columns)  # type: ignore[arg-type]
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        text = checks.text(get(row, col["input"]), col["input"], "the tagged solution")
        lab = checks.text(get(row, col["label"]), col["label"], "the labelled solution")
        if text is None or lab is None:
            continue
        got = _split_shepherd(text, lab, SHEPHERD_TAG)
        if got is None or any(m not in "+-" for m in got[2]):
            checks.bad(col["label"], lab, f"could not find a +/- in place of each of the "
                       f"{text.count(SHEPHERD_TAG)} 'ки' tags of input", "input must end each "
                       "step with 'ки' and label must repeat input with '+' (right) or '-' "
                       "(wrong) in place of each tag", "bad_value")
            continue
        prompt, steps, marks = got
        out.add(line, prompt, steps, [float(m == "+") for m in marks])
    return checks.parsed(out)


# -- PRM800K ----------------------------------------------------------------------------------
def _prm800k_steps(label: Any, neutral: float) -> tuple[list[str], list[float]] | None:
    if not isinstance(label, Mapping) or not isinstance(label.get("steps"), list):
        return None
    steps: list[str] = []
    values: list[float] = []
    for st in label["steps"]:
        comps = st.get("completions") or []
        pick = st.get("chosen_completion")
        if pick is not None and 0 <= pick < len(comps):
            chosen = comps[pick]
        elif st.get("human_completion"):
            chosen = st["human_completion"]
            chosen = {"text": chosen.get("text", ""), "rating": chosen.get("rating", 1)} \
                if isinstance(chosen, Mapping) else {"text": str(chosen), "rating": 1}
        elif comps:  # the last step of a run that stopped: the first rated completion
            chosen = comps[0]
        else:
            break
        rating = chosen.get("rating")
        steps.append(str(chosen.get("text", "")))
        values.append({1: 1.0, 0: neutral, -1: 0.0}.get(rating, math.nan))
        if rating == -1:
            break
    return (steps, values) if steps else None


@register("prm800k", family="steps", priority=4, gives="StepSolutions",
          describe="PRM800K phase files: question.problem, label.steps[].completions[] with "
          "rating -1/0/1 (neutral counts 1.0 unless neutral= says otherwise)",
          detect=lambda kind, keys, first: {"question", "label"} <= keys
          and isinstance(first.get("label"), Mapping))
def read_prm800k(table: Table, *, columns: Mapping[str, str] | None = None,
                 neutral: float = 1.0) -> Parsed:
    checks, out = RowChecks(table), StepSolutions()
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        q = row.get("question")
        problem = q.get("problem") if isinstance(q, Mapping) else None
        got = _prm800k_steps(row.get("label"), neutral)
        if not isinstance(problem, str) or got is None:
            checks.bad("question" if not isinstance(problem, str) else "label",
                       row.get("label"), "expected question.problem (text) and label.steps "
                       "with rated completions", "use PRM800K's phase1/phase2 JSONL files as "
                       "published", "bad_value")
            continue
        out.add(line, problem, *got)
    return checks.parsed(out)


# -- tasks ------------------------------------------------------------------------------------
def _task_reader(kind: str, prompt: str, answer: str | None) -> Any:
    def read(table: Table, *, columns: Mapping[str, str] | None = None) -> Parsed:
        roles = {"prompt": Role((prompt,), "the problem")}
        if answer:
            roles["answer"] = Role((answer,), "the reference answer")
        col = resolve(table, roles, columns)  # type: ignore[arg-type]
        checks, out = RowChecks(table), Tasks(kind)
        for row, line in zip(table.rows, table.lines):
            checks.start(line)
            p = get(row, col["prompt"])
            p = p if kind != "game24" or not isinstance(p, str) else p.strip()
            text = checks.text(p, col["prompt"], "a problem")
            ans = checks.text(get(row, col["answer"]), col["answer"], "an answer") \
                if answer else text
            if kind == "gsm8k" and ans is not None and "####" not in ans:
                checks.bad(col["answer"], ans, "a GSM8K answer ends with '#### <number>'",
                           "keep the worked solution with its final '#### N' line", "bad_value")
            if kind == "game24" and text is not None and (
                    len(text.split()) != 4 or not all(t.isdigit() for t in text.split())):
                checks.bad(col["prompt"], text, "a Game of 24 puzzle is four whole numbers",
                           'write it as "4 9 10 13"', "bad_value")
            if checks.ok and text is not None and ans is not None:
                out.prompts.append(text)
                out.answers.append(ans)
                out.lines.append(line)
        return checks.parsed(out)
    return read


register("gsm8k", family="steps", priority=10, gives="Tasks",
         describe="GSM8K: question, answer (worked solution ending '#### N')",
         detect=lambda kind, keys, first: {"question", "answer"} <= keys
         and "####" in str(first.get("answer", "")))(_task_reader("gsm8k", "question", "answer"))
register("math", family="steps", priority=11, gives="Tasks",
         describe="MATH / MATH-500: problem, answer",
         detect=lambda kind, keys, first: {"problem", "answer"} <= keys
         and "steps" not in keys)(_task_reader("math", "problem", "answer"))
register("game24", family="steps", priority=12, gives="Tasks",
         describe="Game of 24 (Tree of Thoughts' 24.csv): Puzzles ('4 9 10 13')",
         detect=lambda kind, keys, first: "Puzzles" in keys)(
    _task_reader("game24", "Puzzles", None))


# -- candidates to score (no labels) ------------------------------------------------------------
@dataclass
class Candidates:
    """Solutions to score: per prompt, one or more candidates, each a list of steps; the
    reference ``answers`` when the file gives them (None otherwise)."""

    prompts: list[str] = field(default_factory=list)
    candidates: list[list[list[str]]] = field(default_factory=list)
    answers: list[str | None] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompts)


CAND_ROLES = {"prompt": Role(("prompt", "problem", "question"), "the problem"),
              "candidates": Role(("candidates", "steps", "completions", "response", "solution"),
                                 "the candidates (a list of solutions), or one solution"),
              "answer": Role(("answer", "reference"), "the reference answer", False)}
FIX_CAND = ("a candidate is a list of step strings, or one text split on the separator "
            "(default a blank line)")


def _candidate(checks: RowChecks, v: Any, fld: str, separator: str) -> list[str] | None:
    if isinstance(v, str):
        parts = [p.strip() for p in v.split(separator)]
        steps = [p for p in parts if p]
        if not steps:
            checks.bad(fld, v, "empty candidate", FIX_CAND, "empty_response")
            return None
        return steps
    return _step_list(checks, v, fld)


@register("candidates", family="steps", priority=20, gives="Candidates",
          describe="solutions to score: prompt, candidates (list of solutions: each a list of "
          "steps or a text split on a blank line) or steps / response (one solution); "
          "answer optional",
          detect=lambda kind, keys, first: "candidates" in keys
          or ({"steps"} <= keys and "label" not in keys and "values" not in keys)
          or ({"response"} <= keys))
def read_candidates(table: Table, *, columns: Mapping[str, str] | None = None,
                    separator: str = "\n\n") -> Parsed:
    col = resolve(table, CAND_ROLES, columns)  # type: ignore[arg-type]
    cp, cc, ca = col["prompt"], col["candidates"], col["answer"]
    assert cp and cc
    many = cc == "candidates"
    checks, out = RowChecks(table), Candidates()
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        prompt = checks.text(get(row, cp), cp, "a problem")
        raw = json_list(get(row, cc)) if many else get(row, cc)
        if many and (not isinstance(raw, list) or not raw):
            checks.bad(cc, raw, "expected a non-empty list of candidates", FIX_CAND, "bad_value")
            continue
        got = [_candidate(checks, v, f"{cc}[{i}]" if many else cc, separator)
               for i, v in enumerate(raw if many else [raw])]
        answer = get(row, ca) if ca else None
        if not checks.ok or prompt is None:
            continue
        out.prompts.append(prompt)
        out.candidates.append([g for g in got if g is not None])
        out.answers.append(None if answer is None else str(answer))
        out.lines.append(line)
    return checks.parsed(out)


# -- reading ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepReadResult:
    """What :func:`read_steps` / :func:`read_tasks` read: ``data``, the ``format``,
    ``n_read`` records, and every problem of the rows skipped (``skip_invalid``)."""

    data: Any
    format: str
    n_read: int
    skipped: list[Any] = field(default_factory=list)


def _read(source: Any, want: type, what: str, *, format: str, columns: Any,
          skip_invalid: bool, split: str | None, **options: Any) -> StepReadResult:
    fmt, parsed, table = read_format(source, ("steps",), format=format, columns=columns,
                                     skip_invalid=skip_invalid, split=split, **options)
    if not isinstance(parsed.data, want):
        table.fail(None, f"this is {fmt.name} data ({fmt.gives}), not {what}",
                   f"give {what}: " + ", ".join(f.name for f in _of(want)), "wrong_kind")
    return StepReadResult(parsed.data, fmt.name, parsed.n_read, parsed.problems)


def _of(want: type) -> list[Any]:
    from prefkit.data.formats import formats

    return [f for f in formats("steps") if f.gives == want.__name__]


def read_steps(source: Any, *, format: str = "auto", columns: Mapping[str, str] | None = None,
               skip_invalid: bool = False, split: str | None = None,
               **options: Any) -> StepReadResult:
    """Step-labelled solutions (:class:`StepSolutions`) from any ``steps`` format."""
    return _read(source, StepSolutions, "step-labelled solutions", format=format,
                 columns=columns, skip_invalid=skip_invalid, split=split, **options)


def read_tasks(source: Any, *, format: str = "auto", columns: Mapping[str, str] | None = None,
               skip_invalid: bool = False, split: str | None = None) -> StepReadResult:
    """Problems with reference answers (:class:`Tasks`): GSM8K, MATH, Game of 24."""
    return _read(source, Tasks, "tasks with reference answers", format=format,
                 columns=columns, skip_invalid=skip_invalid, split=split)


def read_candidates_file(source: Any, *, format: str = "auto",
                         columns: Mapping[str, str] | None = None, skip_invalid: bool = False,
                         separator: str = "\n\n") -> StepReadResult:
    """Solutions to score or choose among (:class:`Candidates`); a file of labelled steps
    (``processbench``, ...) is read too, each solution one candidate (labels ignored)."""
    from prefkit.data.formats import detect
    from prefkit.data.table import Table

    if format == "auto":
        table = Table.of(source)
        with table.decoding():
            format = detect(table, ("steps",), columns).name
    opts = {"separator": separator} if format == "candidates" else {}
    fmt, parsed, table = read_format(source, ("steps",), format=format, columns=columns,
                                     skip_invalid=skip_invalid, split=None, **opts)
    data = parsed.data
    if isinstance(data, StepSolutions):
        data = Candidates(list(data.prompts), [[s] for s in data.steps],
                          [None] * len(data), list(data.lines))
    elif not isinstance(data, Candidates):
        table.fail(None, f"this is {fmt.name} data ({fmt.gives}), not solutions to score",
                   "give prompt and candidates (or steps) per row", "wrong_kind")
    return StepReadResult(data, fmt.name, parsed.n_read, parsed.problems)
