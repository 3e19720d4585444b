"""Step-DPO (Lai et al. 2024, arXiv:2406.18629) as a data transformation.

Step-DPO prefers a *step* rather than a whole answer: given a problem, its correct reasoning
steps ``s_1 .. s_n`` and the first wrong step (number ``k``, 1-based) with a wrong
alternative ``w_k``, the pair is

    prompt   = problem + s_1 .. s_{k-1}   (the correct steps so far, never scored)
    chosen   = s_k                         (the correct step)
    rejected = w_k                         (the wrong step)

and the usual DPO family trains on it. Here the problem stays the row's prompt and the
earlier steps become its ``response_prefix``: for a standard (text) prompt the model sees
``problem + prompt_separator + s_1 + step_separator + ... + s_{k-1} + step_separator``
followed by the step; for a conversational prompt the steps open the assistant turn
(rendered with the chat template's ``continue_final_message``), so an instruct model sees its
own partial answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prefkit.align._data_records import (
    Parsed,
    Prompt,
    check_prompt,
    check_response,
    json_list,
)
from prefkit.data._frame import to_float
from prefkit.data._registry import Role, resolve
from prefkit.data._text_formats import FIX_SAME, RowChecks, _get
from prefkit.data.errors import InvalidRow

if TYPE_CHECKING:
    from prefkit.data.text_readers import Table

__all__ = ["StepPair", "step_dpo_pair"]


@dataclass(frozen=True)
class StepPair:
    """One Step-DPO pair: the prompt, the text the step continues (``prefix``), the correct
    step (``chosen``) and the wrong one (``rejected``)."""

    prompt: Prompt
    prefix: str
    chosen: str
    rejected: str


def step_dpo_pair(
    prompt: Prompt,
    steps: Sequence[str],
    wrong_step_index: int,
    rejected_step: str,
    *,
    step_separator: str = "\n",
    prompt_separator: str = "\n",
) -> StepPair:
    """The Step-DPO pair of one solution whose step ``steps[wrong_step_index]`` (0-based) is
    the first to go wrong, ``rejected_step`` being the wrong version of it.

    The prefix is the correct steps before it, each followed by ``step_separator``; for a
    standard prompt it starts with ``prompt_separator`` (between the problem and step 1).

    >>> p = step_dpo_pair("2*3+1=?", ["2*3 = 6.", "6+1 = 7.", "Answer: 7"], 1, "6+1 = 8.")
    >>> p.prompt + p.prefix, p.chosen, p.rejected
    ('2*3+1=?\\n2*3 = 6.\\n', '6+1 = 7.', '6+1 = 8.')
    >>> step_dpo_pair([{"role": "user", "content": "2*3+1=?"}], ["2*3 = 6.", "6+1 = 7."], 0,
    ...               "2*3 = 5.").prefix
    ''
    """
    k = int(wrong_step_index)
    if not 0 <= k < len(steps):
        raise ValueError(f"wrong_step_index must lie in [0, {len(steps)}) for {len(steps)} "
                         f"steps, got {wrong_step_index}")
    if steps[k] == rejected_step:
        raise ValueError("the rejected step equals the correct step")
    done = "".join(s + step_separator for s in steps[:k])
    prefix = done if isinstance(prompt, list) else prompt_separator + done
    return StepPair(prompt, prefix, steps[k], rejected_step)


# -- the reader ---------------------------------------------------------------------------
STEP_ROLES = {
    "prompt": Role(("prompt", "problem", "question"), "the problem"),
    "steps": Role(("steps",), "the correct reasoning steps (a list of strings)"),
    "wrong_step_index": Role(("wrong_step_index",), "the first wrong step, 0-based", False),
    "error_step": Role(("error_step",), "the first wrong step, 1-based", False),
    "rejected_step": Role(("rejected_step",), "the wrong version of that step"),
}
PUBLISHED_ROLES = {
    "prompt": Role(("prompt",), "the problem"),
    "initial_reason_steps": Role(("initial_reason_steps",), "the correct steps so far"),
    "chosen": Role(("chosen",), "the correct next step"),
    "rejected": Role(("rejected",), "the wrong next step"),
}
FIX_INDEX = ("wrong_step_index is the 0-based position in steps of the first wrong step "
             "(error_step the same step counted from 1); it must name one of the steps")


def is_published(table: Table, columns: Mapping[str, str] | None) -> bool:
    """Whether the input uses the published Math-Step-DPO-10K columns."""
    return "initial_reason_steps" in (columns or {}) or \
        "initial_reason_steps" in table.header()


def _index(checks: RowChecks, row: Mapping[str, Any], ci: str | None, ce: str | None,
           n: int) -> int | None:
    got: list[tuple[str, int]] = []
    for fld, base in ((ci, 0), (ce, 1)):
        v = _get(row, fld) if fld else None
        if fld is None or v is None:
            continue
        x = None if isinstance(v, bool) else to_float(v)
        if x is None or x != x or x != int(x) or not base <= x < n + base:
            checks.bad(fld, v, f"{fld} {v!r} names no step of the {n} steps", FIX_INDEX,
                       "bad_value")
            return None
        got.append((fld, int(x) - base))
    if not got:
        checks.bad(ci or ce, None, "missing wrong step index", FIX_INDEX, "missing_value")
        return None
    if len(got) == 2 and got[0][1] != got[1][1]:
        assert ce is not None
        checks.bad(ce, _get(row, ce), f"error_step {got[1][1] + 1} (1-based) disagrees with "
                   f"wrong_step_index {got[0][1]} (0-based)", "give one of them, or make "
                   "error_step = wrong_step_index + 1", "bad_value")
        return None
    return got[0][1]


def read_step_dpo(table: Table, *, columns: Mapping[str, str] | None = None,
                  step_separator: str = "\n", prompt_separator: str = "\n") -> tuple[
        Parsed, list[InvalidRow]]:
    """Step-DPO rows as pairs with a ``response_prefix`` (see the module docstring).

    Two layouts: prefkit's (``prompt``, ``steps``, ``wrong_step_index`` or ``error_step``,
    ``rejected_step``) and the published Math-Step-DPO-10K columns (``prompt``,
    ``initial_reason_steps``, ``chosen``, ``rejected``; ``full_chosen``, ``full_rejected``,
    ``answer`` and ``dataset`` are not needed and ignored). Published rows are used as they
    are: ``initial_reason_steps`` (which already ends where the next step starts, e.g. with
    ``"\\nStep 3:"``) is the prefix, after ``prompt_separator`` for a text prompt.
    """
    checks, out = RowChecks(table), Parsed()
    if is_published(table, columns):
        col = resolve(table, PUBLISHED_ROLES, columns)  # type: ignore[arg-type]
        cp, cs, cc, cr = (col[k] for k in ("prompt", "initial_reason_steps", "chosen",
                                            "rejected"))
        assert cp and cs and cc and cr
        for row, line in zip(table.rows, table.lines):
            checks.start(line)
            prompt = check_prompt(checks, _get(row, cp), cp)
            steps_raw = _get(row, cs)
            done = "" if steps_raw is None else checks.text(steps_raw, cs, "the steps so far")
            good = check_response(checks, _get(row, cc), cc, "chosen step")
            bad = check_response(checks, _get(row, cr), cr, "rejected step")
            if not checks.ok or prompt is None or done is None or good is None or bad is None:
                continue
            if good[0] == bad[0]:
                checks.bad(cr, bad[0], "chosen and rejected steps are identical", FIX_SAME,
                           "identical_responses")
                continue
            prefix = done if isinstance(prompt, list) else prompt_separator + done
            out.add(line, prompt, [good[0], bad[0]], prefix=prefix)
        return out, checks.problems
    col = resolve(table, STEP_ROLES, columns)  # type: ignore[arg-type]
    cp, cs, ci, ce, cr = (col[k] for k in ("prompt", "steps", "wrong_step_index",
                                            "error_step", "rejected_step"))
    assert cp and cs and cr
    if not ci and not ce:
        table.fail("missing column 'wrong_step_index' (or 'error_step'; needed for the first "
                   "wrong step)", f"columns present: {', '.join(table.header())}; "
                   "wrong_step_index is 0-based, error_step 1-based", "missing_column")
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        prompt = check_prompt(checks, _get(row, cp), cp)
        steps = json_list(_get(row, cs))
        if not isinstance(steps, list) or not steps:
            checks.bad(cs, steps, "expected a non-empty list of steps",
                       'give the correct solution as a list of step strings, e.g. '
                       '["Step 1: ...", "Step 2: ..."]', "bad_value")
            continue
        texts = [checks.text(s, f"{cs}[{i}]", "a step") for i, s in enumerate(steps)]
        k = _index(checks, row, ci, ce, len(steps))
        bad = check_response(checks, _get(row, cr), cr, "rejected step")
        if not checks.ok or prompt is None or k is None or bad is None:
            continue
        if not (texts[k] or "").strip():
            checks.bad(f"{cs}[{k}]", texts[k], "the correct step at the wrong step index is "
                       "empty", "fill it in or drop the row", "empty_response")
            continue
        if texts[k] == bad[0]:
            checks.bad(cr, bad[0], f"the rejected step equals the correct step {cs}[{k}]",
                       FIX_SAME, "identical_responses")
            continue
        pair = step_dpo_pair(prompt, [t or "" for t in texts], k, bad[0],
                             step_separator=step_separator, prompt_separator=prompt_separator)
        out.add(line, pair.prompt, [pair.chosen, pair.rejected], prefix=pair.prefix)
    return out, checks.problems
