"""Readers of text preference formats (family ``"text"``: trl, pairs, hh_rlhf, llmbar,
rewardbench, ratings) and of responses to score (family ``"responses"``).

Each reader is one registered function ``read(table, *, columns=None, **options)`` over the
records of a :class:`~prefkit.data.table.Table`, returning a
:class:`~prefkit.data.formats.Parsed`; per-row checks go through
:class:`~prefkit.data._rows.RowChecks`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from prefkit.data._frame import to_float
from prefkit.data._rows import (
    EXTRA_ROLES,
    FIX_MESSAGES,
    FIX_SAME,
    PAIR_ROLES,
    Columns,
    PairColumns,
    RowChecks,
    get,
    label_text,
    maybe_json,
)
from prefkit.data.formats import Parsed, Role, register, resolve
from prefkit.data.text import BestOfN, Messages, Responses, TextRatings, render_chat
from prefkit.runs import plural

if TYPE_CHECKING:
    from prefkit.data.table import Table

__all__ = ["llmbar_category", "read_hh_rlhf", "read_llmbar", "read_pairs", "read_ratings",
           "read_responses", "read_rewardbench"]


def _common_messages(a: Messages, b: Messages) -> int:
    k = 0
    while k < min(len(a), len(b)) - 1 and a[k] == b[k]:
        k += 1
    return k


def _trl_row(checks: RowChecks, row: Mapping[str, Any], col: Mapping[str, str | None]
             ) -> tuple[str, str, str, Messages | None] | None:
    """(prompt, chosen, rejected, prompt messages) of one TRL-style row."""
    cc, cr, cp = col["chosen"], col["rejected"], col.get("prompt")
    assert cc and cr
    c_raw, r_raw = maybe_json(get(row, cc)), maybe_json(get(row, cr))
    p_raw = maybe_json(get(row, cp)) if cp else None
    if isinstance(c_raw, list) or isinstance(r_raw, list):
        cm, rm = (checks.messages(raw, fld) if isinstance(raw, list) else checks.bad(
            fld, raw, "chosen and rejected must both be text or both be messages",
            FIX_MESSAGES, "bad_messages") for raw, fld in ((c_raw, cc), (r_raw, cr)))
        pm = checks.messages(p_raw, cp or "prompt") if isinstance(p_raw, list) else None
        if not checks.ok or cm is None or rm is None:
            return None
        k = _common_messages(cm, rm)
        if len(cm) - k != 1 or len(rm) - k != 1:
            checks.bad(cc, c_raw, f"after their {plural(k, 'shared turn')} chosen has "
                       f"{plural(len(cm) - k, 'message')} and rejected "
                       f"{plural(len(rm) - k, 'message')}", "chosen and rejected must end in "
                       "exactly one message each (put earlier turns in the prompt)",
                       "bad_messages")
            return None
        if pm is None:
            pm = [{"role": "user", "content": p_raw}] if isinstance(p_raw, str) and p_raw \
                and k == 0 else []
        msgs = pm + cm[:k]
        return render_chat(msgs), cm[k]["content"], rm[k]["content"], msgs
    chosen, rejected = checks.response(c_raw, cc, "a chosen response"), \
        checks.response(r_raw, cr, "a rejected response")
    if isinstance(p_raw, list):
        pm = checks.messages(p_raw, cp)  # type: ignore[arg-type]
        if pm is None or chosen is None or rejected is None:
            return None
        return render_chat(pm), chosen, rejected, pm
    prompt = "" if p_raw is None else checks.text(p_raw, cp, "a prompt")  # type: ignore[arg-type]
    if prompt is None or chosen is None or rejected is None:
        return None
    return prompt, chosen, rejected, None


def read_pairs(table: Table, *, columns: Columns = None) -> Parsed:
    """TRL preference rows (standard or conversational), under any column names."""
    return _pairs(table, resolve(table, PAIR_ROLES, columns))


def _pairs(table: Table, col: Mapping[str, str | None]) -> Parsed:
    checks, out = RowChecks(table), PairColumns(col)
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        got = _trl_row(checks, row, col)
        extra = out.extras(checks, row)
        if got is None or extra is None:
            continue
        prompt, chosen, rejected, msgs = got
        checks.pair(chosen, rejected, (col["chosen"], col["rejected"]))  # type: ignore[arg-type]
        if checks.ok:
            out.add(line, prompt, chosen, rejected, msgs, extra)
    return checks.parsed(out.build())






def _is_hh(first: Mapping[str, Any]) -> bool:
    c = first.get("chosen")
    return isinstance(c, str) and c.lstrip("\n").startswith("Human:")


register(
    "trl", priority=50, family="text", gives="TextPairs",
    describe="TRL preference data: prompt (optional), chosen, rejected as strings (standard) "
    'or lists of {"role", "content"} messages (conversational); optional margin, annotator, '
    "user, category, id",
    detect=lambda kind, keys, first: {"chosen", "rejected"} <= keys)(read_pairs)
register(
    "pairs", priority=90, family="text", gives="TextPairs", aliases=("generic",),
    describe="pairs under any column names: "
    "columns={'prompt': ..., 'chosen': ..., 'rejected': ..., 'margin': ..., ...}",
    detect=lambda kind, keys, first: False)(read_pairs)


# -- Anthropic HH -----------------------------------------------------------------------
HH_ROLES = {"chosen": PAIR_ROLES["chosen"], "rejected": PAIR_ROLES["rejected"], **EXTRA_ROLES}
ASSISTANT = "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")


def _hh_messages(context: str) -> Messages:
    """The turns of a transcript prefix that ends with ``"\\n\\nAssistant:"``."""
    parts = _TURN.split(context)
    msgs = [{"role": "user", "content": parts[0].strip()}] if parts[0].strip() else []
    for role, content in zip(parts[1::2], parts[2::2]):
        msgs.append({"role": "user" if role == "Human" else "assistant",
                     "content": content.strip()})
    return msgs[:-1]  # the last, empty assistant turn is the response's slot


@register(
    "hh_rlhf", priority=30, family="text", gives="TextPairs",
    describe="Anthropic HH-RLHF: chosen and rejected full transcripts "
    "('\\n\\nHuman: ...\\n\\nAssistant: ...') that differ in the last assistant turn",
    detect=lambda kind, keys, first: {"chosen", "rejected"} <= keys and "prompt" not in keys
    and _is_hh(first))
def read_hh_rlhf(table: Table, *, columns: Columns = None, strict: bool = False) -> Parsed:
    """Anthropic HH transcripts. The prompt is the shared transcript up to and including the
    last ``"\\n\\nAssistant:"``; each response is the rest, stripped of surrounding spaces.

    Rows kept with a warning (``strict=True`` makes them invalid rows instead):

    - the two transcripts differ before their last assistant turn (a few rows upstream
      carry an extra ``Human:`` turn inside a reply): the prompt is then the longest shared
      prefix that ends with ``"\\n\\nAssistant:"``;
    - an empty reply (the transcript ends with ``"Assistant:"``): an empty response is a
      real answer in HH (saying nothing was preferred).
    """
    col = resolve(table, HH_ROLES, columns)  # type: ignore[arg-type]
    cc, cr = col["chosen"], col["rejected"]
    assert cc and cr
    checks, out = RowChecks(table), PairColumns(col)
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        c = checks.text(get(row, cc), cc, "a chosen transcript")
        r = checks.text(get(row, cr), cr, "a rejected transcript")
        extra = out.extras(checks, row)
        if c is None or r is None or extra is None:
            continue
        for text, fld in ((c, cc), (r, cr)):
            if ASSISTANT not in text:
                checks.bad(fld, text, "no '\\n\\nAssistant:' turn in the transcript",
                           "HH transcripts alternate '\\n\\nHuman: ...' and '\\n\\nAssistant: "
                           "...'; use format='trl' for separate prompt and responses",
                           "not_a_transcript")
        if not checks.ok:
            continue
        cut = c.rfind(ASSISTANT) + len(ASSISTANT)
        if c[:cut] != r[: r.rfind(ASSISTANT) + len(ASSISTANT)]:
            n = next((i for i, (x, y) in enumerate(zip(c, r)) if x != y), min(len(c), len(r)))
            k = c[:n].rfind(ASSISTANT)
            if k < 0:
                checks.bad(cr, r, "chosen and rejected transcripts share no context up to an "
                           "assistant turn", "both transcripts must start with the same "
                           "conversation", "no_shared_context")
                continue
            cut = k + len(ASSISTANT)
            how = ("the transcripts differ before their last assistant turn", "check the row; "
                   f"it was split after the last shared '\\n\\nAssistant:' (character {cut})")
            if strict:
                checks.bad(cr, r, *how, "context_mismatch")
                continue
            checks.warn(cr, how[0], how[1] + "; strict=True makes such rows invalid",
                        "context_mismatch")
        chosen, rejected = c[cut:].strip(), r[cut:].strip()
        if not chosen or not rejected:
            what = "empty chosen reply" if not chosen else "empty rejected reply"
            if strict:
                checks.bad(cc if not chosen else cr, "", what, "strict=True refuses empty "
                           "replies; fill it in or drop the row", "empty_response")
                continue
            checks.empty_lines.add(line)
            checks.warn(cc if not chosen else cr, what + " (the transcript ends with "
                        "'Assistant:')", "kept as an empty response; strict=True makes "
                        "such rows invalid", "empty_response")
        if chosen == rejected:
            checks.bad(cr, r, "chosen and rejected responses are identical", FIX_SAME,
                       "identical_responses")
            continue
        out.add(line, c[:cut], chosen, rejected, _hh_messages(c[:cut]), extra)
    return checks.parsed(out.build())


# -- LLMBar -----------------------------------------------------------------------------
LLMBAR_ROLES = {
    "prompt": Role(("input",), "the instruction"),
    "output_1": Role(("output_1",), "the first output"),
    "output_2": Role(("output_2",), "the second output"),
    "label": Role(("label",), "which output is better (1 or 2)"),
}
#: file-name token -> LLMBar split (the upstream folders Natural, Adversarial/<name>, and
#: the processed MT-Bench / FairEval sets)
LLMBAR_SPLITS = {"natural": "Natural", "gptinst": "Adversarial/GPTInst",
                 "gptout": "Adversarial/GPTOut", "manual": "Adversarial/Manual",
                 "neighbor": "Adversarial/Neighbor", "mt-bench": "MT-Bench",
                 "faireval": "FairEval", "llmbar_natural": "Natural"}


def llmbar_category(path: str) -> str | None:
    """The LLMBar split named by a path: ``llmbar_adversarial_gptinst.json`` or
    ``Dataset/LLMBar/Adversarial/GPTInst/dataset.json`` -> ``"Adversarial/GPTInst"``."""
    low = path.replace("\\", "/").lower()
    for token, name in LLMBAR_SPLITS.items():
        if re.search(rf"(^|[/_.-]){re.escape(token)}($|[/_.-])", low):
            return name
    return None


@register(
    "llmbar", priority=20, family="text", gives="TextPairs",
    describe="LLMBar / LLM-judge pairs: input, output_1, output_2, label (1 or 2 names the "
    "better output); category from the file name",
    detect=lambda kind, keys, first: {"input", "output_1", "output_2", "label"} <= keys)
def read_llmbar(table: Table, *, columns: Columns = None, category: str | None = None
                ) -> Parsed:
    """LLMBar pairs: ``label`` 1 means ``output_1`` is chosen, 2 means ``output_2``. The
    category is ``category=`` if given, else the LLMBar split in the file name (see
    :func:`llmbar_category`)."""
    col = resolve(table, LLMBAR_ROLES, columns)  # type: ignore[arg-type]
    cp, c1, c2, cl = (col[k] for k in ("prompt", "output_1", "output_2", "label"))
    assert cp and c1 and c2 and cl
    cat = category if category is not None else llmbar_category(table.name)
    checks, out = RowChecks(table), PairColumns({})
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        prompt = checks.text(get(row, cp), cp, "an instruction")
        o1 = checks.response(get(row, c1), c1, "output 1")
        o2 = checks.response(get(row, c2), c2, "output 2")
        lab = get(row, cl)
        code = to_float(lab)
        if lab is None or (code is not None and math.isnan(code)):
            checks.bad(cl, lab, "missing label", "label must be 1 (output_1 is better) or 2 "
                       "(output_2 is better)", "missing_value")
        elif code not in (1.0, 2.0) or isinstance(lab, bool):
            checks.bad(cl, lab, f"unknown label {lab!r}", "label must be 1 (output_1 is "
                       "better) or 2 (output_2 is better)", "unknown_label")
        if not checks.ok or prompt is None or o1 is None or o2 is None:
            continue
        chosen, rejected, flds = (o1, o2, (c1, c2)) if code == 1.0 else (o2, o1, (c2, c1))
        checks.pair(chosen, rejected, flds)
        if checks.ok:
            out.add(line, prompt, chosen, rejected, None, {}, cat)
    return checks.parsed(out.build())


# -- RewardBench 1 and 2 ----------------------------------------------------------------
RB_ROLES = {
    "prompt": Role(("prompt",), "the prompt"),
    "chosen": Role(("chosen",), "the correct response(s)"),
    "rejected": Role(("rejected",), "the incorrect response(s)"),
    "subset": Role(("subset",), "the subset", False),
    "id": Role(("id",), "example ids", False),
    "num_correct": Role(("num_correct",), "the number of correct responses", False),
}


def _is_rewardbench(keys: frozenset[str], first: Mapping[str, Any]) -> bool:
    if not {"prompt", "chosen", "rejected"} <= keys:
        return False
    c = first.get("chosen")
    v2 = isinstance(c, list) and all(isinstance(x, str) for x in c)
    return v2 or "subset" in keys or "num_correct" in keys


@register(
    "rewardbench", priority=10, family="text", gives="TextPairs or BestOfN",
    describe="RewardBench: prompt, chosen, rejected, subset, id (v1: one pair per row) or "
    "prompt, chosen: [...], rejected: [...], num_correct, subset, id (v2: best-of-N)",
    detect=lambda kind, keys, first: _is_rewardbench(keys, first))
def read_rewardbench(table: Table, *, columns: Columns = None) -> Parsed:
    """RewardBench 1 rows (``chosen``/``rejected`` strings) give :class:`TextPairs` with
    ``category`` = ``subset``; RewardBench 2 rows (lists of responses, ``num_correct``)
    give :class:`BestOfN`, told apart by the first row's ``chosen``."""
    col = resolve(table, RB_ROLES, columns)  # type: ignore[arg-type]
    first = table.rows[0] if table.rows else {}
    if not isinstance(maybe_json(get(first, col["chosen"])), list):  # type: ignore[arg-type]
        pair_col = {"prompt": col["prompt"], "chosen": col["chosen"],
                    "rejected": col["rejected"], "category": col["subset"], "id": col["id"]}
        return _pairs(table, pair_col)
    return _read_rewardbench2(table, col)


def _responses(checks: RowChecks, value: Any, fld: str, what: str) -> list[str] | None:
    value = maybe_json(value)
    if not isinstance(value, list) or not value:
        checks.bad(fld, value, f"expected a non-empty list of {what} responses",
                   "RewardBench 2 rows hold lists of response strings", "bad_value")
        return None
    out = []
    for i, v in enumerate(value):
        out.append(checks.response(v, f"{fld}[{i}]", f"a {what} response") or "")
    return out if checks.ok else None


def _read_rewardbench2(table: Table, col: Mapping[str, str | None]) -> Parsed:
    cp, cc, cr, cs, ci, cn = (col[k] for k in ("prompt", "chosen", "rejected", "subset",
                                               "id", "num_correct"))
    assert cp and cc and cr
    checks = RowChecks(table)
    prompt, chosen, rejected, other, cat, ids, lines = [], [], [], [], [], [], []
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        p = checks.text(get(row, cp), cp, "a prompt")
        good = _responses(checks, get(row, cc), cc, "chosen")
        wrong = _responses(checks, get(row, cr), cr, "rejected")
        if cn and good is not None and get(row, cn) is not None:
            k = checks.number(get(row, cn), cn, "num_correct", "bad_value",
                              "num_correct must be the number of chosen responses")
            if checks.ok and k != len(good):
                checks.bad(cn, get(row, cn), f"num_correct {get(row, cn)!r} does not match "
                           f"the {len(good)} chosen responses", "num_correct must be the "
                           "number of chosen responses", "bad_value")
        if good is not None and wrong is not None and set(good) & set(wrong):
            checks.bad(cr, wrong, "a response is both chosen and rejected", FIX_SAME,
                       "identical_responses")
        if not checks.ok or p is None or good is None or wrong is None:
            continue
        prompt.append(p)
        chosen.append(good[0])
        other.append(good[1:])
        rejected.append(wrong)
        cat.append(label_text(get(row, cs)) if cs else "")
        ids.append(label_text(get(row, ci)) if ci else "")
        lines.append(line)
    data = None
    if chosen:
        data = BestOfN(prompt, chosen, rejected, np.asarray(cat, object) if cs else None,
                       np.asarray(ids, object) if ci else None,
                       other if any(other) else None, lines)
    return checks.parsed(data)


# -- ratings ----------------------------------------------------------------------------
RATING_ROLES = {
    "prompt": Role(("prompt",), "the prompt"),
    "response": Role(("response",), "the rated response"),
    "user": EXTRA_ROLES["user"], "category": EXTRA_ROLES["category"], "id": EXTRA_ROLES["id"],
}
_META = {"user", "user_id", "category", "id", "annotator", "source", "split", "model"}


def _numeric_columns(table: Table, skip: set[str]) -> list[str]:
    out = []
    for c in table.header():
        vals = [r.get(c) for r in table.rows[:200] if r.get(c) is not None]
        if c in skip or c in _META or not vals:
            continue
        if all(not isinstance(v, bool) and to_float(v) is not None
               and not isinstance(v, (dict, list)) for v in vals):
            out.append(c)
    return out


@register(
    "ratings", priority=40, family="text", gives="TextRatings",
    describe="rated responses (HelpSteer style): prompt, response and numeric attribute "
    "columns (helpfulness, correctness, ...); optional user, category, id",
    detect=lambda kind, keys, first: {"prompt", "response"} <= keys
    and "chosen" not in keys)
def read_ratings(table: Table, *, columns: Columns = None,
                 attributes: Sequence[str] | None = None) -> Parsed:
    """:class:`TextRatings`: the attributes are ``attributes=`` or every other column whose
    values are all numbers. A missing or non-numeric rating makes the row invalid."""
    col = resolve(table, RATING_ROLES, columns)  # type: ignore[arg-type]
    cp, cr = col["prompt"], col["response"]
    assert cp and cr
    used = {c for c in col.values() if c}
    attrs = list(attributes) if attributes is not None else _numeric_columns(table, used)
    have = set(table.header())
    miss = [a for a in attrs if a not in have]
    if not attrs or miss:
        table.fail(None, f"missing rating column {miss[0]!r}" if miss else "no numeric rating "
                   "columns", f"columns present: {', '.join(table.header())}; name them "
                   "with attributes=['helpfulness', ...]", "missing_column")
    checks = RowChecks(table)
    prompt, response, lines = [], [], []
    ratings: dict[str, list[float]] = {a: [] for a in attrs}
    opt = {k: col[k] for k in ("user", "category", "id") if col[k]}
    extra: dict[str, list[str]] = {k: [] for k in opt}
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        p = checks.text(get(row, cp), cp, "a prompt")
        r = checks.response(get(row, cr), cr, "a response")
        xs = [checks.number(row.get(a), a, f"rating {a!r}", "bad_rating",
                            "ratings must be finite numbers") for a in attrs]
        if not checks.ok or p is None or r is None:
            continue
        prompt.append(p)
        response.append(r)
        lines.append(line)
        for a, x in zip(attrs, xs):
            ratings[a].append(x)
        for k, c in opt.items():
            extra[k].append(label_text(get(row, c)))  # type: ignore[arg-type]
    data = TextRatings(prompt, response, ratings, source_line=lines, **extra) \
        if response else None  # type: ignore[arg-type]
    return checks.parsed(data)


# -- responses to score -----------------------------------------------------------------
RESPONSE_ROLES = {
    "prompt": Role(("prompt",), "the prompt", False),
    "response": Role(("response", "text"), "the response (or 'text': prompt and response "
                     "already rendered as one text)"),
}


@register(
    "responses", priority=50, family="responses", gives="Responses",
    describe="responses to score: prompt (optional; a string or chat messages) and "
    "response per record, or text (already rendered); a .txt file: one response per line",
    detect=lambda kind, keys, first: kind == "txt" or bool({"response", "text"} & keys))
def read_responses(table: Table, *, columns: Columns = None, prompt: str = "") -> Parsed:
    """:class:`~prefkit.data.text.Responses`: a record's prompt (``prompt=`` where it has
    none; a ``text`` record is prompt and response in one, so it has none) and response."""
    col = resolve(table, RESPONSE_ROLES, columns)
    cr = col["response"]
    assert cr
    # records may mix the two forms: a row without 'response' may give its 'text'
    alt = "text" if cr == "response" and "text" in table.header() else None
    checks = RowChecks(table)
    prompts: list[Any] = []
    texts: list[str] = []
    lines: list[int] = []
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        fld = alt if alt and get(row, cr) is None and get(row, alt) is not None else cr
        cp = col["prompt"] if fld != "text" else None
        p: Any = get(row, cp) if cp else None
        if p is None or p == "":
            p = prompt
        elif isinstance(p, (str, list)):
            p = checks.prompt(p, cp)  # type: ignore[arg-type]
        else:
            p = str(p)
        r = checks.response(get(row, fld), fld, "a response")
        if not checks.ok or r is None or p is None:
            continue
        prompts.append(p)
        texts.append(r)
        lines.append(line)
    return checks.parsed(Responses(prompts, texts, lines) if texts else None)
