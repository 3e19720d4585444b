"""Judge verdicts and grades as columns: what a recorded (or a live) LLM judge said.

A pairwise row is one pair of answers (``model_a``, ``model_b``) to one prompt (and turn),
judged by one judge in up to two presentation orders:

- order ``ab`` shows ``model_a``'s answer first (position ``A``), ``model_b``'s second;
- order ``ba`` shows ``model_b``'s answer first.

Each order's verdict is **positional** -- :data:`FIRST` (the answer shown first wins),
:data:`SECOND`, :data:`TIE` -- or :data:`ERROR` (the judge failed, or its output could not
be parsed; the output is kept in ``raw_ab``/``raw_ba`` so that it can be shown with its
row), or :data:`NOT_JUDGED` (that order was not asked). :func:`identity` maps a positional
verdict back to the models: :data:`A_WINS` (``model_a``), :data:`B_WINS`, :data:`TIE`.

Verdict probabilities, when the judge gave them (from its label-token log-probabilities),
are ``prob_ab``/``prob_ba`` of shape ``(n, 3)``: P(first wins), P(second wins), P(tie) as
read from the tokens, never renormalised (their sum is the mass on valid labels); NaN rows
when there are none.

A single grade is one answer (``model``) to one prompt and turn with a number ``score``
from one judge (``NaN`` when the judge gave none).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from prefkit.runs import plural

__all__ = [
    "A_WINS",
    "B_WINS",
    "ERROR",
    "FIRST",
    "NOT_JUDGED",
    "SECOND",
    "TIE",
    "Grades",
    "Verdicts",
    "identity",
]

FIRST, SECOND, TIE = 0, 1, 2
ERROR, NOT_JUDGED = -1, -2
A_WINS, B_WINS = 0, 1
#: how a positional code is written in files and reports
POSITION_NAMES = {FIRST: "A", SECOND: "B", TIE: "tie", ERROR: "error", NOT_JUDGED: "-"}


def identity(code: NDArray[np.integer], order: str) -> NDArray[np.int8]:
    """Positional verdicts of one order in model terms: order ``"ab"`` keeps them (FIRST =
    ``model_a`` wins), order ``"ba"`` swaps FIRST and SECOND; TIE, ERROR and NOT_JUDGED stay.

    >>> identity(np.array([0, 1, 2, -1]), "ba").tolist()
    [1, 0, 2, -1]
    """
    c = np.asarray(code, dtype=np.int8)
    if order == "ab":
        return c.copy()
    if order != "ba":
        raise ValueError(f"order must be 'ab' or 'ba', got {order!r}")
    out = c.copy()
    out[c == FIRST] = B_WINS
    out[c == SECOND] = A_WINS
    return out


def _col(x: Any, n: int, dtype: Any, name: str, fill: Any = None) -> NDArray[Any]:
    if x is None:
        arr = np.full(n, fill, dtype=dtype)
    else:
        arr = np.asarray(x, dtype=dtype)
    if arr.shape[:1] != (n,):
        raise ValueError(f"{name} must have {plural(n, 'row')}, got shape {arr.shape}")
    return arr


_T = TypeVar("_T", "Verdicts", "Grades")


def _rows(cls: type[_T], table: _T, mask: NDArray[np.bool_] | NDArray[np.integer]) -> _T:
    """The rows of ``mask`` of every column of ``table`` (a :class:`Verdicts` or
    :class:`Grades`)."""
    return cls(**{f: getattr(table, f)[mask] for f in cls.__dataclass_fields__})


def _joined(cls: type[_T], parts: list[_T], what: str) -> _T:
    """Every column of ``parts`` end to end; an error naming ``what`` when there are none."""
    if not parts:
        raise ValueError(f"no {what} to join")
    return cls(**{f: np.concatenate([getattr(p, f) for p in parts])
                  for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Verdicts:
    """Pairwise verdicts, one row per judged pair (see the module docstring).

    Attributes:
        judge, prompt, model_a, model_b: strings, shape ``(n,)``.
        ab, ba: positional verdict codes per order, ``int8`` ``(n,)``.
        turn: the turn judged (``0`` when not known or not multi-turn).
        prob_ab, prob_ba: ``(n, 3)`` verdict probabilities (NaN: none).
        strong_ab, strong_ba: the verdict was a strong one (``A>>B``).
        length_a, length_b: characters of each answer (NaN: unknown).
        category: the prompt's category ("" if unknown).
        source: ``file:line`` of each row, for reports.
        raw_ab, raw_ba: the judge's output per order (``None`` when not kept).
        positional: ``False`` for a row recorded as one both-orders outcome (a file that
            writes ``winner`` = model_a / model_b / tie / ``tie (inconsistent)`` per pair,
            e.g. MT-Bench's ``gpt4_pair`` judgments): its ``ab``/``ba`` stand for that
            outcome in model terms -- agreeing orders, or (inconsistent) ``FIRST`` in both,
            which disagree -- and say nothing about positions, so position metrics leave
            the row out (:func:`~prefkit.judge.consistency.first_position_rate`).
    """

    judge: NDArray[np.object_]
    prompt: NDArray[np.object_]
    model_a: NDArray[np.object_]
    model_b: NDArray[np.object_]
    ab: NDArray[np.int8]
    ba: NDArray[np.int8]
    turn: NDArray[np.int64] | None = None
    prob_ab: NDArray[np.float64] | None = None
    prob_ba: NDArray[np.float64] | None = None
    strong_ab: NDArray[np.bool_] | None = None
    strong_ba: NDArray[np.bool_] | None = None
    length_a: NDArray[np.float64] | None = None
    length_b: NDArray[np.float64] | None = None
    category: NDArray[np.object_] | None = None
    source: NDArray[np.object_] | None = None
    raw_ab: NDArray[np.object_] | None = None
    raw_ba: NDArray[np.object_] | None = None
    positional: NDArray[np.bool_] | None = None

    def __post_init__(self) -> None:
        n = len(np.asarray(self.ab))
        s = object.__setattr__
        for name in ("judge", "prompt", "model_a", "model_b"):
            s(self, name, np.array([str(v) for v in _col(getattr(self, name), n, object, name)],
                                   dtype=object))
        for name in ("ab", "ba"):
            c = _col(getattr(self, name), n, np.int8, name)
            if c.size and (c.min() < NOT_JUDGED or c.max() > TIE):
                raise ValueError(f"{name} codes must be -2..2 (not judged, error, first, "
                                 "second, tie)")
            s(self, name, c)
        s(self, "turn", _col(self.turn, n, np.int64, "turn", 0))
        for name in ("prob_ab", "prob_ba"):
            p = getattr(self, name)
            p = np.full((n, 3), np.nan) if p is None else np.asarray(p, dtype=np.float64)
            if p.shape != (n, 3):
                raise ValueError(f"{name} must have shape ({n}, 3), got {p.shape}")
            s(self, name, p)
        for name in ("strong_ab", "strong_ba"):
            s(self, name, _col(getattr(self, name), n, bool, name, False))
        for name in ("length_a", "length_b"):
            s(self, name, _col(getattr(self, name), n, np.float64, name, np.nan))
        for name, fill in (("category", ""), ("source", ""), ("raw_ab", None),
                           ("raw_ba", None)):
            s(self, name, _col(getattr(self, name), n, object, name, fill))
        s(self, "positional", _col(self.positional, n, bool, "positional", True))
        if np.any(self.model_a == self.model_b):
            k = int(np.flatnonzero(self.model_a == self.model_b)[0])
            raise ValueError(f"row {k} ({self.source[k]}) compares {self.model_a[k]!r} with "
                             "itself")

    def __len__(self) -> int:
        return int(self.ab.shape[0])

    @property
    def both_orders(self) -> NDArray[np.bool_]:
        """Rows asked in both orders (whatever came back)."""
        return (self.ab != NOT_JUDGED) & (self.ba != NOT_JUDGED)

    @property
    def has_probabilities(self) -> bool:
        """Whether any row has verdict probabilities."""
        return bool(np.isfinite(self.prob_ab).any() or np.isfinite(self.prob_ba).any())

    def judges(self) -> list[str]:
        """The judges, in order of first appearance."""
        return list(dict.fromkeys(self.judge.tolist()))

    def select(self, mask: NDArray[np.bool_] | NDArray[np.integer]) -> Verdicts:
        """The rows of ``mask`` (a boolean mask or row indices)."""
        return _rows(Verdicts, self, mask)

    def of_judge(self, judge: str) -> Verdicts:
        return self.select(self.judge == judge)

    @classmethod
    def concat(cls, parts: list[Verdicts]) -> Verdicts:
        """One :class:`Verdicts` of several (e.g. one per file)."""
        return _joined(cls, parts, "verdicts")

    def identity_verdicts(self) -> tuple[NDArray[np.int8], NDArray[np.int8]]:
        """Both orders' verdicts in model terms (A_WINS, B_WINS, TIE, ERROR, NOT_JUDGED)."""
        return identity(self.ab, "ab"), identity(self.ba, "ba")

    def with_columns(self, **columns: Any) -> Verdicts:
        return replace(self, **columns)


@dataclass(frozen=True)
class Grades:
    """Single-answer grades, one row per (judge, prompt, turn, model).

    Attributes:
        judge, prompt, model: strings, shape ``(n,)``.
        turn: the turn graded (``0`` when not known).
        score: the grade (NaN: the judge gave none or it could not be parsed).
        source: ``file:line`` of each row.
        scale: the top grade of the scale the judge was asked to grade on (1..scale), where
            the file says it (``prefkit judge run`` writes it); NaN: not said.
    """

    judge: NDArray[np.object_]
    prompt: NDArray[np.object_]
    model: NDArray[np.object_]
    score: NDArray[np.float64]
    turn: NDArray[np.int64] | None = None
    source: NDArray[np.object_] | None = field(default=None)
    scale: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        n = len(np.asarray(self.score))
        s = object.__setattr__
        for name in ("judge", "prompt", "model"):
            s(self, name, np.array([str(v) for v in _col(getattr(self, name), n, object, name)],
                                   dtype=object))
        s(self, "score", _col(self.score, n, np.float64, "score"))
        s(self, "turn", _col(self.turn, n, np.int64, "turn", 0))
        s(self, "source", _col(self.source, n, object, "source", ""))
        s(self, "scale", _col(self.scale, n, np.float64, "scale", np.nan))

    def __len__(self) -> int:
        return int(self.score.shape[0])

    def judges(self) -> list[str]:
        return list(dict.fromkeys(self.judge.tolist()))

    def select(self, mask: NDArray[np.bool_] | NDArray[np.integer]) -> Grades:
        return _rows(Grades, self, mask)

    @classmethod
    def concat(cls, parts: list[Grades]) -> Grades:
        return _joined(cls, parts, "grades")

    def out_of_scale(self, high: float = 10, low: float = 1) -> NDArray[np.bool_]:
        """Rows whose grade lies outside ``[low, top]``, ``top`` the row's own
        :attr:`scale` where the file says it, else ``high`` (a missing grade is not out of
        scale).

        >>> g = Grades(judge=["j"] * 4, prompt=["1"] * 4, model=list("wxyz"),
        ...            score=[11, 10, 0, float("nan")])
        >>> g.out_of_scale().tolist(), g.out_of_scale(high=20).tolist()
        ([True, False, True, False], [False, False, True, False])
        """
        top = np.where(np.isfinite(self.scale), self.scale, high)
        return np.isfinite(self.score) & ((self.score < low) | (self.score > top))

    def lookup(self) -> dict[tuple[str, str, int, str], float]:
        """``(judge, prompt, turn, model) -> score``; a key graded twice keeps the last."""
        return {(j, p, int(t), m): float(s) for j, p, t, m, s in zip(
            self.judge.tolist(), self.prompt.tolist(), self.turn.tolist(), self.model.tolist(),
            self.score.tolist())}
