"""Row-level parsing of step records, shared by the readers of :mod:`prefkit.data.steps`:
a list of steps, per-step labels, ProcessBench's first error as labels, Math-Shepherd's
tagged text, PRM800K's followed completions, and a solution's outcome (the module docstring
of :mod:`prefkit.data.steps` says where each format reads it)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from prefkit.data._frame import to_float
from prefkit.data._rows import RowChecks, get, json_list
from prefkit.data._step_records import SolutionOutcome
from prefkit.data.formats import Role

__all__ = ["FIX_HARD", "FIX_OUTCOME", "OUTCOME_NAMES", "first_error_labels", "label_of",
           "labels_of", "outcome_of", "outcome_role", "prm800k_outcome", "prm800k_steps",
           "split_shepherd", "step_list"]

# -- outcomes ---------------------------------------------------------------------------------
OUTCOME_NAMES = ("final_answer_correct", "outcome")
OUTCOME_PURPOSE = "whether each solution's final answer is right (true/false)"
FIX_OUTCOME = ("give whether the solution's final answer is right: true or false (or the "
               "probability that it is, in [0, 1])")
FIX_HARD = "give whether the solution's final answer is right as true or false"
_WORDS = {"true": True, "false": False, "yes": True, "no": False, "+": True, "-": False}


def outcome_role(required: bool) -> Role:
    return Role(OUTCOME_NAMES, OUTCOME_PURPOSE, required)


def outcome_of(checks: RowChecks, v: Any, fld: str | None, *, required: bool) -> SolutionOutcome:
    """A row's outcome: true/false (also yes/no, +/-, 1/0, as text or as they are), a
    probability in [0, 1], or None when absent; anything else is recorded as a problem.
    ``required``: a missing or soft outcome is a problem too."""
    x: SolutionOutcome
    if v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str)
                                                                 and not v.strip()):
        x = None
    elif isinstance(v, bool):
        x = v
    elif isinstance(v, str) and v.strip().lower() in _WORDS:
        x = _WORDS[v.strip().lower()]
    else:
        num = None if isinstance(v, (list, dict)) else to_float(v)
        if num is None or not 0.0 <= num <= 1.0:
            checks.bad(fld, v, f"outcome {v!r} is not true/false", FIX_OUTCOME, "bad_value")
            return None
        x = bool(num) if num in (0.0, 1.0) else num
    if required and x is None:
        checks.bad(fld, v, "missing outcome", FIX_HARD, "missing_value")
    elif required and not isinstance(x, bool):
        checks.bad(fld, v, f"outcome {v!r} is not true/false (a soft outcome; the implicit "
                   "PRM trains on right and wrong final answers)", FIX_HARD, "bad_value")
    return x


def first_error_labels(n: int, first: int) -> list[float]:
    """ProcessBench labels as per-step values: right before ``first``, wrong at it,
    unlabelled after; all right when ``first == -1``."""
    if first < 0:
        return [1.0] * n
    return [1.0] * first + [0.0] + [math.nan] * (n - first - 1)


def step_list(checks: RowChecks, value: Any, fld: str) -> list[str] | None:
    value = json_list(value)
    if not isinstance(value, list) or not value:
        checks.bad(fld, value, "expected a non-empty list of steps",
                   'give the solution as a list of step strings, e.g. ["Step 1 ...", '
                   '"Step 2 ..."]', "bad_value")
        return None
    out = [checks.text(s, f"{fld}[{i}]", "a step") for i, s in enumerate(value)]
    return None if any(s is None for s in out) else out  # type: ignore[return-value]


def label_of(checks: RowChecks, v: Any, fld: str, soft: bool) -> float | None:
    if soft and v is None:  # the soft layout's unlabelled step (write_steps writes null)
        return math.nan
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


def labels_of(checks: RowChecks, value: Any, fld: str, n: int, soft: bool) -> list[float] | None:
    value = json_list(value)
    if not isinstance(value, list) or len(value) != n:
        got = f", got {len(value)}" if isinstance(value, list) else ""
        checks.bad(fld, value, f"expected {n} labels (one per step){got}",
                   "give exactly one label per step, in the same order", "bad_value")
        return None
    out = [label_of(checks, v, f"{fld}[{i}]", soft) for i, v in enumerate(value)]
    return None if any(x is None for x in out) else out  # type: ignore[return-value]


def split_shepherd(text: str, label: str, tag: str) -> tuple[str, list[str], list[str]] | None:
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


def prm800k_steps(label: Any, neutral: float) -> tuple[list[str], list[float]] | None:
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


_FINISH = {"solution": True, "found_error": False, "give_up": None, "bad_problem": None}


def prm800k_outcome(checks: RowChecks, row: Mapping[str, Any], col: str | None,
                     required: bool) -> SolutionOutcome:
    """The outcome column when there is one, else ``label.finish_reason`` (module
    docstring of :mod:`prefkit.data.steps`): ``found_error`` is read as wrong because the
    record stops at its first step rated -1 and so reaches no answer -- the outcome of the
    record, not of the generator's full solution, which may have reached the right answer
    through that wrong step."""
    if col:
        return outcome_of(checks, get(row, col), col, required=required)
    fld, reason = "label.finish_reason", get(row, "label.finish_reason")
    if reason is not None and reason not in _FINISH:
        checks.bad(fld, reason, f"unknown finish_reason {reason!r}", "PRM800K's finish_reason "
                   "is one of " + ", ".join(_FINISH) + " (or give the outcome in a column: "
                   "columns={'outcome': NAME})", "bad_value")
        return None
    x = _FINISH.get(reason) if reason is not None else None
    if required and x is None:
        checks.bad(fld, reason, "missing outcome" + (f": finish_reason {reason!r} says nothing "
                   "of the final answer" if reason else ""), "only solutions labelled to the "
                   "end (solution) or to their first error (found_error) have an outcome; "
                   "skip the others", "missing_value")
    return x


