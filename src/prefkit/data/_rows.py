"""Row-by-row checks shared by every text reader (pairs, ratings, best-of-N, responses to
score, alignment rows), so every format reports the same problems with the same wording:
each problem says the file, line, field, the bad value and the fix.

An empty response is data, not a malformed row (HH-RLHF holds a few; TRL trains on them): it
is kept and counted (:attr:`RowChecks.n_empty`, shown in each reader's summary). What is
truly malformed (a missing field, text that is not text, two identical responses) is not.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from prefkit.data._build import norm_group
from prefkit.data._frame import get, to_float
from prefkit.data.errors import InvalidRow
from prefkit.data.formats import Parsed, Role
from prefkit.data.text import Messages, TextPairs

if TYPE_CHECKING:
    from prefkit.data.table import Table

__all__ = ["FIX_MESSAGES", "FIX_SAME", "PAIR_ROLES", "PairColumns", "RowChecks", "get",
           "json_list", "label_text", "maybe_json"]

Columns = Mapping[str, str] | None
Prompt = str | Messages

FIX_SAME = "a pair needs two different responses; drop the row"
FIX_MESSAGES = 'give a list of {"role": ..., "content": ...} messages, or a plain string'


class RowChecks:
    """Collects problems row by row: ``start(line)``, then value checks that return a clean
    value (or ``None`` after recording a problem); ``ok`` says whether the row is valid."""

    def __init__(self, table: Table) -> None:
        self.t = table
        self.problems: list[InvalidRow] = list(table.records().problems)
        self.warnings: list[InvalidRow] = []
        self.empty_lines: set[int] = set()
        self.line = 0
        self.ok = True

    def start(self, line: int) -> None:
        self.line, self.ok = line, True

    def bad(self, fld: str | None, value: Any, reason: str, fix: str, kind: str) -> None:
        self.ok = False
        self.problems.append(self.t.problem(self.line, reason, fix, kind, field=fld,
                                            value=_short(value)))

    def warn(self, fld: str | None, reason: str, fix: str, kind: str) -> None:
        self.warnings.append(self.t.problem(self.line, reason, fix, kind, field=fld,
                                            skippable=False))

    @property
    def n_empty(self) -> int:
        """Rows kept with an empty response (rows invalid for another reason not counted)."""
        return len(self.empty_lines - {p.line for p in self.problems})

    def parsed(self, data: Any) -> Parsed:
        """The reader's result: ``data`` with every problem, warning and empty count."""
        return Parsed(data, self.problems, self.t.records().n_read, self.warnings, self.n_empty)

    # -- values ------------------------------------------------------------------------
    def text(self, value: Any, fld: str, what: str) -> str | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            self.bad(fld, None, f"missing {what}", f"every row needs {what}", "missing_value")
            return None
        if not isinstance(value, str):
            self.bad(fld, value, f"expected text for {what}, got {type(value).__name__}",
                     "give a string", "bad_value")
            return None
        return value

    def response(self, value: Any, fld: str, what: str) -> str | None:
        """A response's text; an empty one is kept and counted."""
        text = self.text(value, fld, what)
        if text is not None and not text.strip():
            self.empty_lines.add(self.line)
        return text

    def messages(self, value: Any, fld: str) -> Messages | None:
        ok = isinstance(value, list) and all(
            isinstance(m, Mapping) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str) for m in value)
        if not ok:
            self.bad(fld, value, "malformed messages", FIX_MESSAGES, "bad_messages")
            return None
        return [{"role": m["role"], "content": m["content"]} for m in value]

    def number(self, value: Any, fld: str, what: str, kind: str, fix: str) -> float:
        x = to_float(value)
        if x is None:
            self.bad(fld, value, f"{what} {value!r} is not a number", fix, kind)
            return math.nan
        if not math.isfinite(x):
            self.bad(fld, value, f"missing or NaN {what}" if math.isnan(x)
                     else f"infinite {what}", fix, kind)
        return x

    def pair(self, chosen: str, rejected: str, fields: tuple[str, str]) -> None:
        """The two responses of a pair: not identical (an empty one is counted, and kept)."""
        if not chosen.strip() or not rejected.strip():
            self.empty_lines.add(self.line)
        if self.ok and chosen == rejected:
            self.bad(fields[1], rejected, "chosen and rejected responses are identical",
                     FIX_SAME, "identical_responses")

    def prompt(self, value: Any, fld: str) -> Prompt | None:
        """A prompt: text, or a non-empty list of messages."""
        value = maybe_json(value)
        if isinstance(value, list):
            msgs = self.messages(value, fld)
            if msgs is not None and not msgs:
                self.bad(fld, value, "empty list of prompt messages", FIX_MESSAGES,
                         "bad_messages")
                return None
            return msgs
        return self.text(value, fld, "a prompt")

    def completion(self, value: Any, fld: str, what: str) -> tuple[str, bool] | None:
        """A response: ``(text, conversational?)``; conversational responses are one
        assistant message (TRL's ``[{"role": "assistant", "content": ...}]``)."""
        value = maybe_json(value)
        if not isinstance(value, list):
            text = self.response(value, fld, f"a {what}")
            return None if text is None else (text, False)
        msgs = self.messages(value, fld)
        if msgs is None:
            return None
        if len(msgs) != 1 or msgs[0]["role"] != "assistant":
            self.bad(fld, value, f"a conversational {what} must be one assistant message, "
                     f"got {len(msgs)} message(s)", 'give [{"role": "assistant", "content": '
                     '...}] and put earlier turns in the prompt', "bad_messages")
            return None
        text = self.response(msgs[0]["content"], fld, f"a {what}")
        return None if text is None else (text, True)

    def chat_prompt(self, prompt: Prompt, chat: bool, fld: str) -> Prompt | None:
        """A string prompt given with conversational responses becomes one user message."""
        if not chat or isinstance(prompt, list):
            return prompt
        if not prompt.strip():
            self.bad(fld, prompt, "empty prompt for conversational responses",
                     "give the prompt as text or as messages", "missing_value")
            return None
        return [{"role": "user", "content": prompt}]


def _short(value: Any, n: int = 60) -> Any:
    if isinstance(value, (list, dict)):
        value = json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and len(value) > n:
        return value[: n - 3] + "..."
    return value


def label_text(value: Any) -> str:
    """An id or category as text (``""`` when missing; ``3.0`` as ``"3"``)."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else norm_group(value)


def maybe_json(value: Any, opens: str = "[{") -> Any:
    """CSV cells hold conversations as JSON text: parse one that starts with ``opens``."""
    if isinstance(value, str) and value.lstrip().startswith(opens):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def json_list(value: Any) -> Any:
    """A CSV cell holding a JSON list (``'["a", "b"]'``) as the list; other values as they are."""
    if isinstance(value, tuple) or type(value).__name__ == "ndarray":
        return list(value)
    return maybe_json(value, "[")


# -- pairs ------------------------------------------------------------------------------
EXTRA_ROLES = {
    "margin": Role(("margin",), "preference strengths", False),
    "annotator": Role(("annotator",), "annotator ids", False),
    "user": Role(("user", "user_id"), "user ids", False),
    "category": Role(("category",), "categories", False),
    "id": Role(("id",), "pair ids", False),
}
PAIR_ROLES = {
    "prompt": Role(("prompt",), "the prompt", False),
    "chosen": Role(("chosen",), "the preferred response"),
    "rejected": Role(("rejected",), "the other response"),
    **EXTRA_ROLES,
}


class PairColumns:
    """Accumulates valid pairs and their optional columns."""

    def __init__(self, col: Mapping[str, str | None]) -> None:
        self.col = col
        self.prompt: list[str] = []
        self.chosen: list[str] = []
        self.rejected: list[str] = []
        self.msgs: list[Messages | None] = []
        self.lines: list[int] = []
        self.extra: dict[str, list[Any]] = {k: [] for k in EXTRA_ROLES if col.get(k)}

    def extras(self, checks: RowChecks, row: Mapping[str, Any]) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for key in self.extra:
            c = self.col[key]
            v = get(row, c)  # type: ignore[arg-type]
            if key == "margin":
                out[key] = checks.number(v, c, "margin", "bad_margin",  # type: ignore[arg-type]
                                         "margins must be finite numbers")
            else:
                out[key] = label_text(v)
        return out if checks.ok else None

    def add(self, line: int, prompt: str, chosen: str, rejected: str,
            msgs: Messages | None, extra: Mapping[str, Any], category: str | None = None) -> None:
        self.prompt.append(prompt)
        self.chosen.append(chosen)
        self.rejected.append(rejected)
        self.msgs.append(msgs)
        self.lines.append(line)
        for k, v in extra.items():
            self.extra[k].append(v)
        if category is not None:
            self.extra.setdefault("category", []).append(category)

    def build(self) -> TextPairs | None:
        if not self.chosen:
            return None
        has_msgs = any(m is not None for m in self.msgs)
        return TextPairs(self.prompt, self.chosen, self.rejected,
                         messages_prompt=self.msgs if has_msgs else None,
                         source_line=self.lines, **self.extra)  # type: ignore[arg-type]


