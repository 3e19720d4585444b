"""Text preference records: chosen/rejected pairs, rated responses and best-of-N sets,
stored as columns, plus the fixed train/test split used by the reward-model benchmarks.

How a prompt and a response become one text (``TextPairs.texts``), written down once:

- **standard** pairs (the prompt is a string): ``"{prompt}\\n\\n{response}"``, or just the
  response when the prompt is empty (an implicit-prompt file, whose responses are then kept
  whole, exactly as written);
- **conversational** pairs (``messages_prompt[i]`` is a list of ``{"role", "content"}``
  messages, TRL's conversational form, or an Anthropic HH transcript): one line per turn,
  ``"User: ..."`` / ``"Assistant: ..."`` / ``"System: ..."`` (other roles capitalised), joined
  by ``"\\n"``, and the response as a last ``"Assistant: {response}"`` turn.

>>> p = TextPairs(["What is 2+2?"], ["4"], ["5"])
>>> p.texts("chosen")
['What is 2+2?\\n\\n4']
>>> chat = [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
...          {"role": "user", "content": "2+2?"}]]
>>> c = TextPairs([render_chat(chat[0])], ["4"], ["5"], messages_prompt=chat)
>>> print(c.texts("rejected")[0])
User: Hi
Assistant: Hello!
User: 2+2?
Assistant: 5
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "HH_HARMLESS_SPLIT_SEED",
    "BestOfN",
    "Responses",
    "TextPairs",
    "TextRatings",
    "hh_harmless_split",
    "render_chat",
    "split_train_test",
]

Messages = list[dict[str, str]]
Index = NDArray[np.bool_] | NDArray[np.integer] | Sequence[int]

#: Seed of the fixed held-out split of ``hh_rlhf_harmless_base_test.jsonl.gz``
#: (:func:`hh_harmless_split`); changing it changes which pairs are held out.
HH_HARMLESS_SPLIT_SEED = 0

_ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "System"}


def render_chat(messages: Sequence[Mapping[str, Any]]) -> str:
    """Turns as ``"Role: content"`` lines (``user`` -> ``User``, ``assistant`` ->
    ``Assistant``, ``system`` -> ``System``, other roles capitalised), joined by newlines.

    >>> render_chat([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}])
    'User: Hi\\nAssistant: Yo'
    """
    out = []
    for m in messages:
        role = str(m.get("role", ""))
        out.append(f"{_ROLE_NAMES.get(role, role.capitalize())}: {m.get('content', '')}")
    return "\n".join(out)


def _strings(x: Sequence[Any], n: int | None, name: str) -> list[str]:
    out = [str(v) for v in x]
    if n is not None and len(out) != n:
        raise ValueError(f"{name} must have {n} entries, got {len(out)}")
    return out


def _opt(x: Any, n: int, name: str, dtype: Any) -> NDArray[Any] | None:
    if x is None:
        return None
    arr = np.asarray(x, dtype=dtype)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}")
    return arr


def _set_labels(records: Any, n: int, names: Sequence[str]) -> None:
    """Check and set the optional per-row labels ``names`` of ``records`` (kept as objects)
    and its ``source_line`` (integers): ``None`` or ``n`` entries each."""
    for name in names:
        object.__setattr__(records, name, _opt(getattr(records, name), n, name, object))
    object.__setattr__(records, "source_line", _opt(records.source_line, n, "source_line",
                                                    np.int64))


def _join(prompt: str, response: str) -> str:
    """A standard (string) prompt and a response as one text, as the module docstring says:
    ``"{prompt}\\n\\n{response}"``, or the response alone when the prompt is empty."""
    return f"{prompt}\n\n{response}" if prompt else response


def _index(mask: Index, n: int) -> NDArray[np.intp]:
    """A boolean mask or an index array as positions."""
    m = np.asarray(mask)
    if m.dtype == np.bool_:
        if m.shape != (n,):
            raise ValueError(f"a boolean mask must have shape ({n},), got {m.shape}")
        return np.flatnonzero(m)
    return m.astype(np.intp).reshape(-1)


def _take(x: Any, idx: NDArray[np.intp]) -> Any:
    if x is None:
        return None
    if isinstance(x, np.ndarray):
        return x[idx]
    return [x[i] for i in idx.tolist()]


def _frame(cols: dict[str, Any]) -> Any:
    import pandas as pd

    return pd.DataFrame({k: v for k, v in cols.items() if v is not None})


@dataclass(frozen=True)
class TextPairs:
    """One row per preference pair: a prompt, the chosen and the rejected response.

    Attributes:
        prompt: the prompt as a string (for a conversational source, its turns rendered with
            :func:`render_chat`; for Anthropic HH, the shared transcript up to and including
            the last ``"\\n\\nAssistant:"``); ``""`` when the file gives no prompt.
        chosen, rejected: the two responses (the last assistant turn only).
        margin: optional preference strength per pair (e.g. TRL's ``margin`` column).
        annotator, user: optional labeller / end-user ids, as strings.
        category: optional group per pair (a RewardBench subset, an LLMBar split).
        messages_prompt: the prompt as messages when the source was a chat (one list per
            pair, ``None`` for a pair whose prompt is a plain string); ``None`` if no pair is.
        source_line: the line (or row) each pair came from, for error reports.
        id: optional id per pair (e.g. RewardBench's ``id``).
    """

    prompt: list[str]
    chosen: list[str]
    rejected: list[str]
    margin: NDArray[np.float64] | None = None
    annotator: NDArray[np.object_] | None = None
    user: NDArray[np.object_] | None = None
    category: NDArray[np.object_] | None = None
    messages_prompt: list[Messages | None] | None = None
    source_line: NDArray[np.int64] | None = None
    id: NDArray[np.object_] | None = None

    def __post_init__(self) -> None:
        n = len(self.chosen)
        object.__setattr__(self, "prompt", _strings(self.prompt, n, "prompt"))
        object.__setattr__(self, "chosen", _strings(self.chosen, None, "chosen"))
        object.__setattr__(self, "rejected", _strings(self.rejected, n, "rejected"))
        object.__setattr__(self, "margin", _opt(self.margin, n, "margin", np.float64))
        _set_labels(self, n, ("annotator", "user", "category", "id"))
        mp = self.messages_prompt
        if mp is not None:
            mp = list(mp)
            if len(mp) != n:
                raise ValueError(f"messages_prompt must have {n} entries, got {len(mp)}")
            object.__setattr__(self, "messages_prompt", mp)

    def __len__(self) -> int:
        return len(self.chosen)

    def texts(self, side: Literal["chosen", "rejected"]) -> list[str]:
        """Prompt and ``side``'s response as one string per pair, rendered as the module
        docstring describes (the input of a text encoder or a reward model)."""
        if side not in ("chosen", "rejected"):
            raise ValueError(f"side must be 'chosen' or 'rejected', got {side!r}")
        responses = self.chosen if side == "chosen" else self.rejected
        mp = self.messages_prompt or [None] * len(self)
        out = []
        for prompt, msgs, resp in zip(self.prompt, mp, responses):
            if msgs is not None:
                out.append(render_chat([*msgs, {"role": "assistant", "content": resp}]))
            else:
                out.append(_join(prompt, resp))
        return out

    def select(self, mask: Index) -> TextPairs:
        """The pairs at a boolean mask or an index array, every column kept."""
        idx = _index(mask, len(self))
        return TextPairs(**{f.name: _take(getattr(self, f.name), idx) for f in fields(self)})

    def to_frame(self) -> Any:
        """The pairs as a pandas DataFrame (needs pandas); absent columns are left out."""
        return _frame({f.name: getattr(self, f.name) for f in fields(self)})


@dataclass(frozen=True)
class TextRatings:
    """One row per rated response (HelpSteer style): a prompt, a response and one or more
    numeric attributes, e.g. ``helpfulness``, ``correctness``, ``coherence``,
    ``complexity``, ``verbosity``.

    >>> r = TextRatings(["q"], ["a"], {"helpfulness": [3]})
    >>> r.ratings["helpfulness"].tolist(), r.attributes
    ([3.0], ('helpfulness',))
    """

    prompt: list[str]
    response: list[str]
    ratings: Mapping[str, NDArray[np.float64]]
    user: NDArray[np.object_] | None = None
    category: NDArray[np.object_] | None = None
    source_line: NDArray[np.int64] | None = None
    id: NDArray[np.object_] | None = None

    def __post_init__(self) -> None:
        n = len(self.response)
        object.__setattr__(self, "prompt", _strings(self.prompt, n, "prompt"))
        object.__setattr__(self, "response", _strings(self.response, None, "response"))
        if not self.ratings:
            raise ValueError("ratings needs at least one attribute")
        ratings = {str(k): _opt(v, n, f"ratings[{k!r}]", np.float64)
                   for k, v in dict(self.ratings).items()}
        object.__setattr__(self, "ratings", ratings)
        _set_labels(self, n, ("user", "category", "id"))

    def __len__(self) -> int:
        return len(self.response)

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(self.ratings)

    def texts(self) -> list[str]:
        """``"{prompt}\\n\\n{response}"`` per row (the response alone if the prompt is empty)."""
        return [_join(p, r) for p, r in zip(self.prompt, self.response)]

    def select(self, mask: Index) -> TextRatings:
        idx = _index(mask, len(self))
        return TextRatings(
            _take(self.prompt, idx), _take(self.response, idx),
            {k: v[idx] for k, v in self.ratings.items()}, _take(self.user, idx),
            _take(self.category, idx), _take(self.source_line, idx), _take(self.id, idx))

    def to_frame(self) -> Any:
        return _frame({"prompt": self.prompt, "response": self.response, **self.ratings,
                       "user": self.user, "category": self.category,
                       "source_line": self.source_line, "id": self.id})


@dataclass(frozen=True)
class BestOfN:
    """One row per prompt with one correct response and several incorrect ones
    (RewardBench 2 layout). RewardBench 2's Ties subset has several correct answers: the
    first is ``chosen``, the others are in ``other_correct``; ``num_correct`` counts them.

    Upstream orders a prompt's responses correct first; :meth:`responses` keeps that order,
    which the RewardBench 2 scoring relies on.

    >>> b = BestOfN(["2+2?"], ["4"], [["5", "3", "22"]])
    >>> b.responses(0), b.num_correct.tolist()
    (['4', '5', '3', '22'], [1])
    """

    prompt: list[str]
    chosen: list[str]
    rejected: list[list[str]]
    category: NDArray[np.object_] | None = None
    id: NDArray[np.object_] | None = None
    other_correct: list[list[str]] | None = None
    source_line: NDArray[np.int64] | None = None

    def __post_init__(self) -> None:
        n = len(self.chosen)
        object.__setattr__(self, "prompt", _strings(self.prompt, n, "prompt"))
        object.__setattr__(self, "chosen", _strings(self.chosen, None, "chosen"))
        rej = [_strings(r, None, "rejected") for r in self.rejected]
        if len(rej) != n:
            raise ValueError(f"rejected must have {n} entries, got {len(rej)}")
        if any(len(r) == 0 for r in rej):
            raise ValueError("every prompt needs at least one rejected response")
        object.__setattr__(self, "rejected", rej)
        oc = self.other_correct
        if oc is not None:
            oc = [_strings(o, None, "other_correct") for o in oc]
            if len(oc) != n:
                raise ValueError(f"other_correct must have {n} entries, got {len(oc)}")
            object.__setattr__(self, "other_correct", oc)
        _set_labels(self, n, ("category", "id"))

    def __len__(self) -> int:
        return len(self.chosen)

    @property
    def num_correct(self) -> NDArray[np.int64]:
        """Correct responses per prompt (1 + ``len(other_correct[i])``)."""
        extra = [len(o) for o in self.other_correct] if self.other_correct else [0] * len(self)
        return 1 + np.asarray(extra, dtype=np.int64)

    def responses(self, i: int) -> list[str]:
        """Prompt ``i``'s responses, correct ones first, then the rejected ones."""
        extra = self.other_correct[i] if self.other_correct else []
        return [self.chosen[i], *extra, *self.rejected[i]]

    def texts(self) -> tuple[list[str], NDArray[np.int64]]:
        """Every response rendered with its prompt (``"{prompt}\\n\\n{response}"``), flat,
        and offsets: prompt ``i`` owns ``texts[offsets[i]:offsets[i+1]]``, in the order of
        :meth:`responses`. Score them all at once and give the flat scores to
        :func:`prefkit.reward.rewardbench2_scores`."""
        flat: list[str] = []
        offsets = [0]
        for i, p in enumerate(self.prompt):
            flat += [_join(p, r) for r in self.responses(i)]
            offsets.append(len(flat))
        return flat, np.asarray(offsets, dtype=np.int64)

    def select(self, mask: Index) -> BestOfN:
        idx = _index(mask, len(self))
        return BestOfN(**{f.name: _take(getattr(self, f.name), idx) for f in fields(self)})

    def to_frame(self) -> Any:
        return _frame({f.name: getattr(self, f.name) for f in fields(self)})


# -- the fixed split --------------------------------------------------------------------
Records = TypeVar("Records", TextPairs, TextRatings, BestOfN)


@dataclass(frozen=True)
class Responses:
    """Responses to score, one per row: the prompt (a string, or ``{"role", "content"}``
    messages) and the response; ``source_line`` is where each came from."""

    prompt: list[str | Messages]
    response: list[str]
    source_line: list[int] | None = None

    def __len__(self) -> int:
        return len(self.response)


def _content(records: TextPairs | TextRatings | BestOfN) -> list[str]:
    if isinstance(records, TextPairs):
        return [f"{p}\x1f{c}\x1f{r}" for p, c, r in
                zip(records.prompt, records.chosen, records.rejected)]
    if isinstance(records, TextRatings):
        return [f"{p}\x1f{r}" for p, r in zip(records.prompt, records.response)]
    return [f"{records.prompt[i]}\x1f" + "\x1f".join(records.responses(i))
            for i in range(len(records))]


def split_train_test(
    records: Records, *, test_fraction: float = 0.2, seed: int = HH_HARMLESS_SPLIT_SEED
) -> tuple[Records, Records]:
    """A fixed split, the same on every machine and for every row order.

    Each row gets the 64-bit BLAKE2b hash of ``seed`` and its content (prompt and responses,
    separated by ``\\x1f``); the ``round(test_fraction * n)`` rows with the smallest hashes
    (ties, i.e. duplicate rows, by position) are the test set. Both parts keep the original
    row order. Shuffling the file's rows gives the same two sets of pairs.

    >>> p = TextPairs([""] * 10, [f"good {i}" for i in range(10)], ["bad"] * 10)
    >>> train, test = split_train_test(p, test_fraction=0.2)
    >>> len(train), len(test)
    (8, 2)
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    keys = _content(records)
    n = len(keys)
    salt = f"prefkit-split:{int(seed)}\x1e".encode()
    h = np.fromiter(
        (int.from_bytes(hashlib.blake2b(salt + k.encode("utf-8"), digest_size=8).digest(), "big")
         for k in keys), dtype=np.uint64, count=n)
    order = np.lexsort((np.arange(n), h))
    n_test = int(np.floor(test_fraction * n + 0.5))
    test = np.zeros(n, dtype=bool)
    test[order[:n_test]] = True
    return records.select(~test), records.select(test)  # type: ignore[return-value]


def hh_harmless_split(path: str | Path) -> tuple[TextPairs, TextPairs]:
    """The fixed held-out 20% of Anthropic HH-RLHF ``harmless-base/test.jsonl.gz``
    (2,312 pairs: 1,850 train, 462 test): read with the ``hh_rlhf`` reader, then
    ``split_train_test(pairs, test_fraction=0.2, seed=HH_HARMLESS_SPLIT_SEED)``."""
    from prefkit.data.text_readers import read_preferences

    pairs = read_preferences(path, format="hh_rlhf").data
    assert isinstance(pairs, TextPairs)
    return split_train_test(pairs, test_fraction=0.2, seed=HH_HARMLESS_SPLIT_SEED)

