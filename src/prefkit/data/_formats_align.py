"""Readers of the alignment-only formats (family ``"align"``, read by
:func:`prefkit.data.read_alignment_data`): TRL's unpaired rows (KTO), ranked lists, and
Step-DPO (Lai et al. 2024, arXiv:2406.18629) as a data transformation.


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

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prefkit.data._frame import to_float
from prefkit.data._rows import FIX_SAME, Prompt, RowChecks, get, json_list
from prefkit.data.formats import Parsed, Role, register, resolve
from prefkit.runs import plural

if TYPE_CHECKING:
    from prefkit.data.table import Table

__all__ = ["AlignRows", "StepPair", "read_listwise", "read_step_dpo", "read_unpaired",
           "step_dpo_pair"]


@dataclass
class AlignRows:
    """The valid rows an alignment reader collects (prompts, responses best first, labels,
    response prefixes, lines)."""

    kind: str = "pairwise"
    prompts: list[Prompt] = field(default_factory=list)
    responses: list[list[str]] = field(default_factory=list)
    labels: list[bool] = field(default_factory=list)
    prefix: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def add(self, line: int, prompt: Prompt, responses: list[str], label: bool | None = None,
            prefix: str = "") -> None:
        self.prompts.append(prompt)
        self.responses.append(responses)
        self.lines.append(line)
        self.prefix.append(prefix)
        if label is not None:
            self.labels.append(label)

    def __len__(self) -> int:
        return len(self.prompts)


# -- unpaired (TRL's KTO form) ------------------------------------------------------------
UNPAIRED_ROLES = {
    "prompt": Role(("prompt",), "the prompt"),
    "completion": Role(("completion",), "the completion"),
    "label": Role(("label",), "whether the completion is desirable (true) or not (false)"),
}
_TRUE = {"true", "1", "1.0", "yes", "desirable", "good"}
_FALSE = {"false", "0", "0.0", "no", "undesirable", "bad"}
FIX_LABEL = "label must be true (desirable) or false (undesirable); 1/0 are accepted too"


def check_label(checks: RowChecks, value: Any, fld: str) -> bool | None:
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    x = to_float(value) if not isinstance(value, str) else None
    if x is not None and x in (0.0, 1.0):
        return x == 1.0
    checks.bad(fld, value, "missing label" if value is None else f"unknown label {value!r}",
               FIX_LABEL, "missing_value" if value is None else "unknown_label")
    return None


@register(
    "unpaired", priority=2, family="align", gives="AlignmentData (unpaired)",
    describe="TRL unpaired (KTO) rows: prompt, completion, label (true = desirable); text or "
    "messages",
    detect=lambda kind, keys, first: {"completion", "label"} <= keys)
def read_unpaired(table: Table, *, columns: Mapping[str, str] | None = None) -> Parsed:
    """TRL's unpaired preference rows: ``prompt``, ``completion``, ``label`` (standard: text;
    conversational: messages, the completion one assistant message)."""
    col = resolve(table, UNPAIRED_ROLES, columns)  # type: ignore[arg-type]
    cp, cc, cl = (col[k] for k in ("prompt", "completion", "label"))
    assert cp and cc and cl
    checks, out = RowChecks(table), AlignRows("unpaired")
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        prompt = checks.prompt(get(row, cp), cp)
        got = checks.completion(get(row, cc), cc, "completion")
        label = check_label(checks, get(row, cl), cl)
        if not checks.ok or prompt is None or got is None or label is None:
            continue
        prompt = checks.chat_prompt(prompt, got[1], cp)
        if prompt is not None:
            out.add(line, prompt, [got[0]], label)
    return checks.parsed(out)


# -- listwise -----------------------------------------------------------------------------
LISTWISE_ROLES = {
    "prompt": Role(("prompt",), "the prompt"),
    "completions": Role(("completions", "responses"), "the list of completions"),
    "ranks": Role(("ranks", "ranking"), "each completion's rank (1 = best)", False),
    "scores": Role(("scores", "rewards"), "each completion's score (higher = better)", False),
}
FIX_TIE = ("listwise rows need a strict order (ties are not supported): break the tie, or "
           "drop one of the tied completions")


def _order(checks: RowChecks, value: Any, fld: str, k: int, *, ascending: bool) -> list[int] | None:
    what = "ranks" if ascending else "scores"
    value = json_list(value)
    if not isinstance(value, list) or len(value) != k:
        n = len(value) if isinstance(value, list) else None
        checks.bad(fld, value, f"expected a list of {k} {what} (one per completion)"
                   + (f", got {n}" if n is not None else ""),
                   f"give one {what[:-1]} per completion, in the same order", "bad_value")
        return None
    xs = []
    for v in value:
        x = None if isinstance(v, bool) else to_float(v)
        if x is None or not math.isfinite(x):
            how = "1 = best" if ascending else "higher = better"
            checks.bad(fld, value, f"{what} must be finite numbers, got {v!r}",
                       f"give one number per completion ({how})", "bad_value")
            return None
        xs.append(x)
    seen: dict[float, int] = {}
    for i, x in enumerate(xs):
        if x in seen:
            checks.bad(fld, value, f"tied {what}: completions {seen[x]} and {i} both have "
                       f"{value[i]!r}", FIX_TIE, "tie")
            return None
        seen[x] = i
    order = sorted(range(k), key=lambda i: xs[i] if ascending else -xs[i])
    return order


@register(
    "listwise", priority=3, family="align", gives="AlignmentData (listwise)",
    describe="ranked lists: prompt, completions (a list, K >= 2), ranks (1 = best) or scores "
    "(higher = better), or neither if already best first",
    detect=lambda kind, keys, first: "completions" in keys
    or ({"responses", "prompt"} <= keys and "chosen" not in keys))
def read_listwise(table: Table, *, columns: Mapping[str, str] | None = None) -> Parsed:
    """Listwise rows: ``prompt``, ``completions`` (a list, ``K >= 2``, ``K`` may vary by
    row) and ``ranks`` (1 = best; any distinct numbers, lower = better) or ``scores``
    (higher = better), or neither when the completions are already ordered best first."""
    col = resolve(table, LISTWISE_ROLES, columns)  # type: ignore[arg-type]
    cp, cc, cr, cs = (col[k] for k in ("prompt", "completions", "ranks", "scores"))
    assert cp and cc
    checks, out = RowChecks(table), AlignRows("listwise")
    if cr and cs:
        checks.warnings.append(table.problem(
            None, f"both {cr!r} and {cs!r} are present; the order comes from {cr!r}",
            "drop one of them, or map the one you want with columns={'ranks': ...} or "
            "columns={'scores': ...}", "ignored_column", field=cs, skippable=False))
        cs = None
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        prompt = checks.prompt(get(row, cp), cp)
        raw = json_list(get(row, cc))
        if not isinstance(raw, list) or len(raw) < 2:
            n = len(raw) if isinstance(raw, list) else None
            checks.bad(cc, raw, "expected a list of at least 2 completions"
                       + (f", got {n}" if n is not None else ""),
                       "give 2 or more completions; use prompt/completion/label rows for "
                       "single labelled completions", "bad_value")
            continue
        got = [checks.completion(v, f"{cc}[{i}]", "completion") for i, v in enumerate(raw)]
        if not checks.ok or prompt is None:
            continue
        texts = [g[0] for g in got if g is not None]
        dup = next((j for j in range(len(texts)) if texts[j] in texts[:j]), None)
        if dup is not None:
            checks.bad(f"{cc}[{dup}]", texts[dup], f"completion {dup} repeats completion "
                       f"{texts.index(texts[dup])}", "each completion of a row must differ; "
                       "drop the repeat", "identical_responses")
            continue
        order: list[int] | None = list(range(len(texts)))
        if cr and get(row, cr) is not None:
            order = _order(checks, get(row, cr), cr, len(texts), ascending=True)
        elif cs and get(row, cs) is not None:
            order = _order(checks, get(row, cs), cs, len(texts), ascending=False)
        elif cr or cs:
            checks.bad(cr or cs, None, f"missing {'ranks' if cr else 'scores'}",
                       "every row needs one per completion", "missing_value")
        if not checks.ok or order is None:
            continue
        prompt = checks.chat_prompt(prompt, any(g[1] for g in got if g), cp)
        if prompt is not None:
            out.add(line, prompt, [texts[i] for i in order])
    return checks.parsed(out)


# -- Step-DPO ---------------------------------------------------------------------------
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
        v = get(row, fld) if fld else None
        if fld is None or v is None:
            continue
        x = None if isinstance(v, bool) else to_float(v)
        if x is None or x != x or x != int(x) or not base <= x < n + base:
            checks.bad(fld, v, f"{fld} {v!r} names none of its {plural(n, 'step')}", FIX_INDEX,
                       "bad_value")
            return None
        got.append((fld, int(x) - base))
    if not got:
        checks.bad(ci or ce, None, "missing wrong step index", FIX_INDEX, "missing_value")
        return None
    if len(got) == 2 and got[0][1] != got[1][1]:
        assert ce is not None
        checks.bad(ce, get(row, ce), f"error_step {got[1][1] + 1} (1-based) disagrees with "
                   f"wrong_step_index {got[0][1]} (0-based)", "give one of them, or make "
                   "error_step = wrong_step_index + 1", "bad_value")
        return None
    return got[0][1]


@register(
    "step_dpo", priority=1, family="align", gives="AlignmentData (pairwise, with a prefix)",
    describe="Step-DPO: prompt, steps (list), wrong_step_index (0-based) or error_step "
    "(1-based), rejected_step; or the published Math-Step-DPO-10K columns prompt, "
    "initial_reason_steps, chosen, rejected",
    detect=lambda kind, keys, first: "initial_reason_steps" in keys
    or {"steps", "rejected_step"} <= keys)
def read_step_dpo(table: Table, *, columns: Mapping[str, str] | None = None,
                  step_separator: str = "\n", prompt_separator: str = "\n") -> Parsed:
    """Step-DPO rows as pairs with a ``response_prefix`` (see the module docstring).

    Two layouts: prefkit's (``prompt``, ``steps``, ``wrong_step_index`` or ``error_step``,
    ``rejected_step``) and the published Math-Step-DPO-10K columns (``prompt``,
    ``initial_reason_steps``, ``chosen``, ``rejected``; ``full_chosen``, ``full_rejected``,
    ``answer`` and ``dataset`` are not needed and ignored). Published rows are used as they
    are: ``initial_reason_steps`` (which already ends where the next step starts, e.g. with
    ``"\\nStep 3:"``) is the prefix, after ``prompt_separator`` for a text prompt.
    """
    checks, out = RowChecks(table), AlignRows()
    if is_published(table, columns):
        col = resolve(table, PUBLISHED_ROLES, columns)  # type: ignore[arg-type]
        cp, cs, cc, cr = (col[k] for k in ("prompt", "initial_reason_steps", "chosen",
                                            "rejected"))
        assert cp and cs and cc and cr
        for row, line in zip(table.rows, table.lines):
            checks.start(line)
            prompt = checks.prompt(get(row, cp), cp)
            steps_raw = get(row, cs)
            done = "" if steps_raw is None else checks.text(steps_raw, cs, "the steps so far")
            good = checks.completion(get(row, cc), cc, "chosen step")
            bad = checks.completion(get(row, cr), cr, "rejected step")
            if not checks.ok or prompt is None or done is None or good is None or bad is None:
                continue
            if good[0] == bad[0]:
                checks.bad(cr, bad[0], "chosen and rejected steps are identical", FIX_SAME,
                           "identical_responses")
                continue
            prefix = done if isinstance(prompt, list) else prompt_separator + done
            out.add(line, prompt, [good[0], bad[0]], prefix=prefix)
        return checks.parsed(out)
    col = resolve(table, STEP_ROLES, columns)  # type: ignore[arg-type]
    cp, cs, ci, ce, cr = (col[k] for k in ("prompt", "steps", "wrong_step_index",
                                            "error_step", "rejected_step"))
    assert cp and cs and cr
    if not ci and not ce:
        table.fail(None, "missing column 'wrong_step_index' (or 'error_step'; needed for the first "
                   "wrong step)", f"columns present: {', '.join(table.header())}; "
                   "wrong_step_index is 0-based, error_step 1-based", "missing_column")
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        prompt = checks.prompt(get(row, cp), cp)
        steps = json_list(get(row, cs))
        if not isinstance(steps, list) or not steps:
            checks.bad(cs, steps, "expected a non-empty list of steps",
                       'give the correct solution as a list of step strings, e.g. '
                       '["Step 1: ...", "Step 2: ..."]', "bad_value")
            continue
        texts = [checks.text(s, f"{cs}[{i}]", "a step") for i, s in enumerate(steps)]
        k = _index(checks, row, ci, ce, len(steps))
        bad = checks.completion(get(row, cr), cr, "rejected step")
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
    return checks.parsed(out)
