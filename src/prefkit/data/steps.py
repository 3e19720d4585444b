"""Step-labelled solutions and verifiable tasks (family ``"steps"``, read by
:func:`read_steps` and :func:`read_tasks`; ``prefkit prm``).

One record kind, :class:`StepSolutions`: a problem, its solution as a list of steps, one
label per step -- 1 the step is right, 0 it is wrong, a value in between a soft label (the
Monte-Carlo estimate that the step still leads to a right answer), NaN not labelled (the
steps after ProcessBench's first wrong step) -- and the solution's **outcome**, whether its
final answer is right (``True``/``False``, a probability in [0, 1], or ``None`` where the
source does not say). ``first_error`` is the index of the first step whose label is below
0.5 (-1 when none): ProcessBench's ``label``.

Formats, and where each reads the outcome (every one also reads a column named
``final_answer_correct`` or ``outcome`` when the file has one, or the column mapped with
``columns={"outcome": NAME}``; values true/false, 1/0, or a probability in [0, 1]):

* ``processbench``: ``problem, steps, label`` (the first wrong step, -1 = all right);
  outcome ``final_answer_correct``;
* ``trl_stepwise``: TRL's stepwise supervision ``prompt, completions, labels`` (booleans);
  no outcome of its own (its labels may stop anywhere, so the last one says nothing of the
  final answer);
* ``math_shepherd``: ``input, label`` with steps ending in the tag ``ки`` and ``+``/``-`` in
  ``label``, outcome the **last step's mark** (Math-Shepherd labels a step by rolling out
  from it; from the last step the rollout is the solution itself, so its mark is whether
  the final answer is right); or soft labels ``prompt``/``problem``, ``steps``, ``values``
  (numbers in [0, 1], ``null`` unlabelled), no outcome of its own (a soft last value is an
  estimate, not an outcome);
* ``prm800k``: PRM800K's phase files (``question``, ``label.steps[].completions[].rating``
  -1/0/1, the chosen completion followed; ratings 0 count ``neutral``, 1.0 by default);
  outcome from ``label.finish_reason``: ``solution`` (PRM800K: "we reached a step that
  concluded in the correct answer") is right, ``found_error`` wrong, ``give_up`` and
  ``bad_problem`` say nothing (None). ``found_error`` is the outcome **of the record**, not
  of the generator's whole solution: PRM800K's labelling stops at the first step rated -1,
  so the record ends there and reaches no answer, and it reads as wrong even where the
  generator's full solution (phase 2's ``question.pre_generated_answer``) went on to the
  right answer through that wrong step;

and :class:`Tasks` (a problem and its reference answer): ``gsm8k`` (``question, answer``
with ``#### N``), ``math`` (``problem, answer``: MATH-500), ``game24`` (``Puzzles`` CSV).

A bad outcome value (``"maybe"``, 2, a list) is an invalid row like any other, named with
its file, line and field. With ``require_outcome=True`` (the implicit PRM's reading) every
solution must have a right/wrong outcome: a missing or soft one is an invalid row too, and a
file with no outcome source at all is refused naming the columns present.
:func:`write_steps` writes solutions (outcomes included) that read back the same.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prefkit.data._frame import to_float
from prefkit.data._rows import RowChecks, get, json_list
from prefkit.data._step_records import Candidates, StepSolutions, Tasks, write_steps
from prefkit.data._step_rows import (
    first_error_labels,
    labels_of,
    outcome_of,
    outcome_role,
    prm800k_outcome,
    prm800k_steps,
    split_shepherd,
    step_list,
)
from prefkit.data.formats import Parsed, Role, read_format, register, resolve
from prefkit.runs import plural

if TYPE_CHECKING:
    from prefkit.data.table import Table

__all__ = ["Candidates", "StepReadResult", "StepSolutions", "Tasks", "read_candidates_file",
           "read_steps", "read_tasks", "write_steps"]

SHEPHERD_TAG = "ки"

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
def read_processbench(table: Table, *, columns: Mapping[str, str] | None = None,
                      require_outcome: bool = False) -> Parsed:
    col = resolve(table, {**PB_ROLES, "outcome": outcome_role(require_outcome)},
                  columns)  # type: ignore[arg-type]
    checks, out = RowChecks(table), StepSolutions()
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        prompt = checks.text(get(row, col["prompt"]), col["prompt"], "a problem")
        steps = step_list(checks, get(row, col["steps"]), col["steps"])  # type: ignore[arg-type]
        raw = get(row, col["label"])
        x = None if isinstance(raw, bool) else to_float(raw)
        if steps is not None and (x is None or x != int(x) or not -1 <= x < len(steps)):
            checks.bad(col["label"], raw, f"label {raw!r} names none of its "
                       f"{plural(len(steps), 'step')}", FIX_PB, "missing_value" if raw is None else "bad_value")
        outcome = outcome_of(checks, get(row, col["outcome"]) if col["outcome"] else None,
                           col["outcome"], required=require_outcome)
        if not checks.ok or prompt is None or steps is None or x is None:
            continue
        id_ = get(row, col["id"]) if col["id"] else None
        out.add(line, prompt, steps, first_error_labels(len(steps), int(x)), id_, outcome)
    return checks.parsed(out)


# -- TRL stepwise ---------------------------------------------------------------------------
TRL_ROLES = {"prompt": Role(("prompt",), "the problem"),
             "completions": Role(("completions",), "the steps (a list of strings)"),
             "labels": Role(("labels",), "one label per step (true = right)"),
             "id": Role(("id",), "an id", False)}


def _read_labelled_steps(table: Table, col: Mapping[str, str | None], c_steps: str,
                         c_labels: str, prompt_what: str, *, soft: bool,
                         require_outcome: bool) -> Parsed:
    """Rows of a prompt, a list of steps and a list of one label per step (TRL stepwise's
    booleans, or Math-Shepherd's soft values when ``soft``), an optional id and outcome
    column, as :class:`StepSolutions`."""
    c_prompt, c_out, c_id = col["prompt"], col["outcome"], col["id"]
    checks, out = RowChecks(table), StepSolutions()
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        prompt = checks.text(get(row, c_prompt), c_prompt, prompt_what)
        steps = step_list(checks, get(row, c_steps), c_steps)
        if steps is None:
            continue
        labels = labels_of(checks, get(row, c_labels), c_labels, len(steps), soft)
        outcome = outcome_of(checks, get(row, c_out) if c_out else None, c_out,
                           required=require_outcome)
        if checks.ok and prompt is not None and labels is not None:
            out.add(line, prompt, steps, labels, get(row, c_id) if c_id else None, outcome)
    return checks.parsed(out)


@register("trl_stepwise", family="steps", priority=2, gives="StepSolutions",
          describe="TRL stepwise supervision: prompt, completions (steps), labels (one "
          "boolean per step)",
          detect=lambda kind, keys, first: {"completions", "labels"} <= keys)
def read_trl_stepwise(table: Table, *, columns: Mapping[str, str] | None = None,
                      require_outcome: bool = False) -> Parsed:
    col = resolve(table, {**TRL_ROLES, "outcome": outcome_role(require_outcome)},
                  columns)  # type: ignore[arg-type]
    return _read_labelled_steps(table, col, col["completions"], col["labels"],  # type: ignore[arg-type]
                                "a prompt", soft=False, require_outcome=require_outcome)


# -- Math-Shepherd (hard tags, or soft values) ----------------------------------------------
SOFT_ROLES = {"prompt": Role(("prompt", "problem", "question"), "the problem"),
              "steps": Role(("steps",), "the steps (a list of strings)"),
              "values": Role(("values",), "one Monte-Carlo value in [0, 1] per step"),
              "id": Role(("id",), "an id", False)}


@register("math_shepherd", family="steps", priority=3, gives="StepSolutions",
          describe="Math-Shepherd: input (steps end with 'ки'), label (the same text with "
          "+/- for each tag); or soft labels: prompt, steps, values (in [0, 1])",
          detect=lambda kind, keys, first: {"input", "label"} <= keys
          or {"steps", "values"} <= keys)
def read_math_shepherd(table: Table, *, columns: Mapping[str, str] | None = None,
                       require_outcome: bool = False) -> Parsed:
    if "values" in table.header() or "values" in (columns or {}):
        col = resolve(table, {**SOFT_ROLES, "outcome": outcome_role(require_outcome)},
                      columns)  # type: ignore[arg-type]
        return _read_labelled_steps(table, col, col["steps"], col["values"],  # type: ignore[arg-type]
                                    "a problem", soft=True, require_outcome=require_outcome)
    checks, out = RowChecks(table), StepSolutions()
    roles = {"input": Role(("input",), "the solution with a 'ки' after each step"),
             "label": Role(("label",), "the same solution with + or - after each step"),
             "outcome": outcome_role(False)}  # else the last step's mark
    col = resolve(table, roles, columns)  # type: ignore[arg-type]
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        text = checks.text(get(row, col["input"]), col["input"], "the tagged solution")
        lab = checks.text(get(row, col["label"]), col["label"], "the labelled solution")
        if text is None or lab is None:
            continue
        got = split_shepherd(text, lab, SHEPHERD_TAG)
        if got is None or any(m not in "+-" for m in got[2]):
            checks.bad(col["label"], lab, f"could not find a +/- in place of each of the "
                       f"{text.count(SHEPHERD_TAG)} 'ки' tags of input", "input must end each "
                       "step with 'ки' and label must repeat input with '+' (right) or '-' "
                       "(wrong) in place of each tag", "bad_value")
            continue
        prompt, steps, marks = got
        outcome = outcome_of(checks, get(row, col["outcome"]), col["outcome"], required=False) \
            if col["outcome"] else None
        if not checks.ok:
            continue
        if outcome is None:  # the last step's rollout is the solution itself
            outcome = marks[-1] == "+"
        if require_outcome and not isinstance(outcome, bool):
            outcome_of(checks, outcome, col["outcome"], required=True)
            continue
        out.add(line, prompt, steps, [float(m == "+") for m in marks], outcome=outcome)
    return checks.parsed(out)


# -- PRM800K ----------------------------------------------------------------------------------
@register("prm800k", family="steps", priority=4, gives="StepSolutions",
          describe="PRM800K phase files: question.problem, label.steps[].completions[] with "
          "rating -1/0/1 (neutral counts 1.0 unless neutral= says otherwise); outcome from "
          "label.finish_reason, found_error = wrong (the record stops at its first -1 step, "
          "even where the full solution reached the right answer)",
          detect=lambda kind, keys, first: {"question", "label"} <= keys
          and isinstance(first.get("label"), Mapping))
def read_prm800k(table: Table, *, columns: Mapping[str, str] | None = None,
                 neutral: float = 1.0, require_outcome: bool = False) -> Parsed:
    c_out = resolve(table, {"outcome": outcome_role(False)}, columns)["outcome"]
    checks, out = RowChecks(table), StepSolutions()
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        q = row.get("question")
        problem = q.get("problem") if isinstance(q, Mapping) else None
        got = prm800k_steps(row.get("label"), neutral)
        if not isinstance(problem, str) or got is None:
            checks.bad("question" if not isinstance(problem, str) else "label",
                       row.get("label"), "expected question.problem (text) and label.steps "
                       "with rated completions", "use PRM800K's phase1/phase2 JSONL files as "
                       "published", "bad_value")
            continue
        outcome = prm800k_outcome(checks, row, c_out, require_outcome)
        if checks.ok:
            out.add(line, problem, *got, outcome=outcome)
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
    return step_list(checks, v, fld)


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
        got = _KINDS.get(fmt.gives, f"{fmt.name} data")
        hint = (" (no row has step labels, e.g. ProcessBench's 'label': the index of the first "
                "wrong step, -1 for none); add them, or score these with prefkit prm score"
                if fmt.gives == "Candidates" else "")
        table.fail(None, f"these rows are {got}, not {what}{hint}",
                   f"give {what}: " + ", ".join(f.name for f in _of(want)), "wrong_kind")
    return StepReadResult(parsed.data, fmt.name, parsed.n_read, parsed.problems)


#: What each kind of step data is, in a user's words.
_KINDS = {"Candidates": "solutions without step labels (candidates to score)",
          "StepSolutions": "step-labelled solutions", "Tasks": "tasks (question and answer)"}


def _of(want: type) -> list[Any]:
    from prefkit.data.formats import formats

    return [f for f in formats("steps") if f.gives == want.__name__]


def read_steps(source: Any, *, format: str = "auto", columns: Mapping[str, str] | None = None,
               skip_invalid: bool = False, split: str | None = None,
               **options: Any) -> StepReadResult:
    """Step-labelled solutions (:class:`StepSolutions`) from any ``steps`` format, each with
    its outcome where the format or a column gives one (module docstring).

    ``require_outcome=True``: every solution must say whether its final answer is right
    (true/false); a missing or soft outcome is an invalid row, and a file with no outcome
    column (ProcessBench, TRL stepwise, the soft layout) is refused naming the columns
    present. Map another column with ``columns={"outcome": NAME}``."""
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
