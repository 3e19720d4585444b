"""Alignment records: one prompt with its ``K`` responses (best first), for pairwise,
unpaired and listwise data, and the readers of the unpaired and listwise formats.

Pairwise data goes through :func:`prefkit.data.read_preferences` (TRL standard and
conversational, Anthropic HH, LLMBar, RewardBench, generic columns); this module adds TRL's
unpaired form (``prompt/completion/label``) and a listwise form (``prompt/completions`` with
``ranks`` or ``scores``), with the same precise problems (file, line, field, fix).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from prefkit.data._frame import to_float
from prefkit.data._registry import Role, resolve
from prefkit.data._text_formats import FIX_MESSAGES, RowChecks, _get, _maybe_json
from prefkit.data.errors import InvalidRow
from prefkit.data.text import Messages

if TYPE_CHECKING:
    from prefkit.data.text_readers import Table

__all__ = ["AlignmentData", "Kind", "Prompt", "unpair"]

Kind = Literal["pairwise", "unpaired", "listwise"]
#: a standard prompt (text) or a conversational one (``{"role", "content"}`` messages)
Prompt = str | Messages
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
        text = f"read {len(self):,} {what}" + (f" ({self.format})" if self.format else "")
        if self.skipped:
            text += f"; skipped {self.n_skipped:,} invalid rows"
        if self.warnings:
            text += f"; {len(self.warnings):,} warnings"
        return text


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


# -- shared row checks --------------------------------------------------------------------
def json_list(value: Any) -> Any:
    """A CSV cell holding a JSON list (``'["a", "b"]'``) as the list; other values as they are."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, tuple) or type(value).__name__ == "ndarray":
        return list(value)
    return value


def check_prompt(checks: RowChecks, value: Any, fld: str) -> Prompt | None:
    """A prompt: text, or a non-empty list of messages."""
    value = _maybe_json(value)
    if isinstance(value, list):
        msgs = checks.messages(value, fld)
        if msgs is not None and not msgs:
            checks.bad(fld, value, "empty list of prompt messages", FIX_MESSAGES, "bad_messages")
            return None
        return msgs
    return checks.text(value, fld, "a prompt")


def check_response(checks: RowChecks, value: Any, fld: str, what: str) -> tuple[str, bool] | None:
    """A response: ``(text, conversational?)``. Conversational responses are one assistant
    message (TRL's ``[{"role": "assistant", "content": ...}]``)."""
    value = _maybe_json(value)
    chat = isinstance(value, list)
    if chat:
        msgs = checks.messages(value, fld)
        if msgs is None:
            return None
        if len(msgs) != 1 or msgs[0]["role"] != "assistant":
            checks.bad(fld, value, f"a conversational {what} must be one assistant message, "
                       f"got {len(msgs)} message(s)", 'give [{"role": "assistant", "content": '
                       '...}] and put earlier turns in the prompt', "bad_messages")
            return None
        text: str | None = msgs[0]["content"]
    else:
        text = checks.text(value, fld, f"a {what}")
    if text is None:
        return None
    if not text.strip():
        checks.bad(fld, text, f"empty {what}", f"every {what} needs some text; fill it in or "
                   "drop it", "empty_response")
        return None
    return text, chat


def chat_prompt(checks: RowChecks, prompt: Prompt, chat: bool, fld: str) -> Prompt | None:
    """A string prompt given with conversational responses becomes one user message."""
    if not chat or isinstance(prompt, list):
        return prompt
    if not prompt.strip():
        checks.bad(fld, prompt, "empty prompt for conversational responses",
                   "give the prompt as text or as messages", "missing_value")
        return None
    return [{"role": "user", "content": prompt}]


@dataclass
class Parsed:
    """What a reader of this module collects: valid rows and every problem."""

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


# -- unpaired (TRL's KTO form) ------------------------------------------------------------
UNPAIRED_ROLES = {
    "prompt": Role(("prompt",), "the prompt"),
    "completion": Role(("completion",), "the completion"),
    "label": Role(("label",), "whether the completion is desirable (true) or not (false)"),
}
_TRUE = {"true", "1", "yes", "desirable", "good"}
_FALSE = {"false", "0", "no", "undesirable", "bad"}
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


def read_unpaired(table: Table, *, columns: Mapping[str, str] | None = None) -> tuple[
        Parsed, list[InvalidRow]]:
    """TRL's unpaired preference rows: ``prompt``, ``completion``, ``label`` (standard: text;
    conversational: messages, the completion one assistant message)."""
    col = resolve(table, UNPAIRED_ROLES, columns)  # type: ignore[arg-type]
    cp, cc, cl = (col[k] for k in ("prompt", "completion", "label"))
    assert cp and cc and cl
    checks, out = RowChecks(table), Parsed()
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        prompt = check_prompt(checks, _get(row, cp), cp)
        got = check_response(checks, _get(row, cc), cc, "completion")
        label = check_label(checks, _get(row, cl), cl)
        if not checks.ok or prompt is None or got is None or label is None:
            continue
        prompt = chat_prompt(checks, prompt, got[1], cp)
        if prompt is not None:
            out.add(line, prompt, [got[0]], label)
    return out, checks.problems


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


def read_listwise(table: Table, *, columns: Mapping[str, str] | None = None) -> tuple[
        Parsed, list[InvalidRow], list[InvalidRow]]:
    """Listwise rows: ``prompt``, ``completions`` (a list, ``K >= 2``, ``K`` may vary by
    row) and ``ranks`` (1 = best; any distinct numbers, lower = better) or ``scores``
    (higher = better), or neither when the completions are already ordered best first."""
    col = resolve(table, LISTWISE_ROLES, columns)  # type: ignore[arg-type]
    cp, cc, cr, cs = (col[k] for k in ("prompt", "completions", "ranks", "scores"))
    assert cp and cc
    checks, out = RowChecks(table), Parsed()
    if cr and cs:
        checks.warnings.append(table.problem(
            None, cs, None, f"both {cr!r} and {cs!r} are present; the order comes from {cr!r}",
            "drop one of them, or map the one you want with columns={'ranks': ...} or "
            "columns={'scores': ...}", "ignored_column", skippable=False))
        cs = None
    for row, line in zip(table.rows, table.lines):
        checks.start(line)
        prompt = check_prompt(checks, _get(row, cp), cp)
        raw = json_list(_get(row, cc))
        if not isinstance(raw, list) or len(raw) < 2:
            n = len(raw) if isinstance(raw, list) else None
            checks.bad(cc, raw, "expected a list of at least 2 completions"
                       + (f", got {n}" if n is not None else ""),
                       "give 2 or more completions; use prompt/completion/label rows for "
                       "single labelled completions", "bad_value")
            continue
        got = [check_response(checks, v, f"{cc}[{i}]", "completion") for i, v in enumerate(raw)]
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
        if cr and _get(row, cr) is not None:
            order = _order(checks, _get(row, cr), cr, len(texts), ascending=True)
        elif cs and _get(row, cs) is not None:
            order = _order(checks, _get(row, cs), cs, len(texts), ascending=False)
        elif cr or cs:
            checks.bad(cr or cs, None, f"missing {'ranks' if cr else 'scores'}",
                       "every row needs one per completion", "missing_value")
        if not checks.ok or order is None:
            continue
        prompt = chat_prompt(checks, prompt, any(g[1] for g in got if g), cp)
        if prompt is not None:
            out.add(line, prompt, [texts[i] for i in order])
    return out, checks.problems, checks.warnings
