"""Reading a judge's answer: verdicts, ratings, rankings, and their probabilities from the
label tokens. Pure functions; an answer that cannot be read gives a :class:`Parsed` with
``ok`` false and the reason -- it is counted and shown with its row, never mapped to a
default (FastChat maps several ``[[A]]``/``[[B]]`` to the first it finds; here two different
verdicts in one answer are an unparsed answer).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Parsed", "expected_score", "label_probabilities", "parse_pairwise",
           "parse_ranking", "parse_rating"]

FIRST, SECOND, TIE = 0, 1, 2

#: arena-hard verdicts -> (positional winner, strong)
ARENA = {"A>>B": (FIRST, True), "A>B": (FIRST, False), "A=B": (TIE, False),
         "B=A": (TIE, False), "B>A": (SECOND, False), "B>>A": (SECOND, True),
         "A<B": (SECOND, False), "A<<B": (SECOND, True), "B<A": (FIRST, False),
         "B<<A": (FIRST, True)}
_AB = {"A": FIRST, "B": SECOND, "C": TIE}
_ARENA_RE = re.compile(r"\[\[([AB<>=]+)\]\]")  # arena-hard-auto's regex_pattern
_AB_RE = re.compile(r"\[\[([ABC])\]\]")
_RATING_RE = re.compile(r"\[\[(\d+\.?\d*)\]\]")  # FastChat's one_score_pattern
_RATING_BACKUP_RE = re.compile(r"\[(\d+\.?\d*)\]")  # FastChat's one_score_pattern_backup
_RANKING_RE = re.compile(r"\[\[\s*(\d+(?:\s*>\s*\d+)+)\s*\]\]")
_JSON_RE = re.compile(r"\{[^{}]*\}", re.DOTALL)


@dataclass(frozen=True)
class Parsed:
    """One read answer: ``value`` (a positional verdict code, a rating, or a ranking as a
    list of 0-based answer indices, best first), ``strong`` (``A>>B``), or ``reason`` when
    it could not be read (``value`` None)."""

    value: Any = None
    strong: bool = False
    reason: str = ""
    #: a rating that was read but lies outside the scale (unparsed, ``reason`` says it)
    out_of_scale: bool = False

    @property
    def ok(self) -> bool:
        return self.value is not None


def _one(found: list[str], what: str) -> tuple[str | None, str]:
    distinct = list(dict.fromkeys(found))
    if not distinct:
        return None, f"no {what} in the answer"
    if len(distinct) > 1:
        return None, f"several different {what}s: {', '.join(distinct)}"
    return distinct[0], ""


def parse_pairwise(text: str | None, style: str = "ab",
                   labels: Sequence[str] = ("m", "M")) -> Parsed:
    """A positional pairwise verdict (FIRST = the answer shown first, SECOND, TIE).

    ``style``: ``"ab"`` (``[[A]]``, ``[[B]]``, ``[[C]]`` tie: FastChat pair-v2), ``"arena"``
    (``[[A>>B]]`` ... ``[[B>>A]]``; strong verdicts marked), ``"token"`` (the answer is one
    of ``labels``: first, second), ``"json"`` (``{"winner": "A"|"B"|"tie"}``).

    >>> parse_pairwise("... so [[B]]").value, parse_pairwise("[[A]] or [[B]]").reason
    (1, 'several different verdicts: A, B ([[A]], [[B]] or [[C]])')
    >>> p = parse_pairwise("My final verdict: [[B>>A]]", "arena"); (p.value, p.strong)
    (1, True)
    >>> parse_pairwise('{"winner": "tie", "why": "same"}', "json").value
    2
    """
    if text is None:
        return Parsed(reason="no answer")
    if style == "ab":
        v, why = _one(_AB_RE.findall(text), "verdict")
        return Parsed(_AB[v]) if v else Parsed(reason=why + " ([[A]], [[B]] or [[C]])")
    if style == "arena":
        v, why = _one([m for m in _ARENA_RE.findall(text) if m], "verdict")
        if v is None:
            return Parsed(reason=why + " ([[A>>B]] ... [[B>>A]])")
        if v not in ARENA:
            return Parsed(reason=f"unknown verdict [[{v}]]")
        code, strong = ARENA[v]
        return Parsed(code, strong)
    if style == "token":
        t = text.strip()
        if t in labels[:2]:
            return Parsed(FIRST if t == labels[0] else SECOND)
        return Parsed(reason=f"answer {t[:40]!r} is neither {labels[0]!r} nor {labels[1]!r}")
    if style == "json":
        obj = _json_object(text)
        if obj is None:
            return Parsed(reason="no JSON object in the answer")
        v = next((obj[k] for k in ("winner", "verdict", "choice", "better") if k in obj), None)
        code = {"a": FIRST, "b": SECOND, "tie": TIE, "c": TIE, "1": FIRST, "2": SECOND}.get(
            str(v).strip().lower()) if v is not None else None
        if code is None:
            return Parsed(reason=f"JSON without a winner A, B or tie (got {v!r})")
        return Parsed(code)
    raise ValueError(f"unknown pairwise verdict style {style!r}")


def parse_rating(text: str | None, *, low: float = 1, high: float = 10,
                 style: str = "rating") -> Parsed:
    """A ``[[rating]]`` (FastChat's pattern, then its ``[rating]`` backup; several different
    ratings are unparsed), or a JSON ``{"rating": 7}`` (``style="json"``); a rating outside
    ``[low, high]`` is unparsed.

    >>> parse_rating("Rating: [[7]]").value, parse_rating("[8.5]").value
    (7.0, 8.5)
    >>> parse_rating("Rating: [[11]]").reason
    'rating 11 outside the scale [1, 10]'
    """
    if text is None:
        return Parsed(reason="no answer")
    if style == "json":
        obj = _json_object(text)
        v = None if obj is None else next(
            (obj[k] for k in ("rating", "score", "grade") if k in obj), None)
        try:
            x = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return Parsed(reason=f"no numeric rating in the JSON answer (got {v!r})")
    else:
        found = _RATING_RE.findall(text) or _RATING_BACKUP_RE.findall(text)
        v, why = _one([str(float(f)) for f in found], "rating")
        if v is None:
            return Parsed(reason=why + " ([[rating]])")
        x = float(v)
    if not (low <= x <= high) or math.isnan(x):
        return Parsed(reason=f"rating {x:g} outside the scale [{low:g}, {high:g}]",
                      out_of_scale=True)
    return Parsed(x)


def parse_ranking(text: str | None, k: int) -> Parsed:
    """A ranking of ``k`` answers written ``[[2>1>3]]`` (1-based, best first) or a JSON list
    ``[2, 1, 3]``; it must name each answer exactly once. Value: 0-based indices.

    >>> parse_ranking("so: [[3>1>2]]", 3).value
    [2, 0, 1]
    >>> parse_ranking("[[1>1>2]]", 3).reason
    'the ranking must name each of the 3 answers once, got 1>1>2'
    """
    if text is None:
        return Parsed(reason="no answer")
    found = [m.replace(" ", "") for m in _RANKING_RE.findall(text)]
    if found:
        v, why = _one(found, "ranking")
        if v is None:
            return Parsed(reason=why)
        order = [int(x) for x in v.split(">")]
    else:
        m = re.search(r"\[\s*\d+(?:\s*,\s*\d+)+\s*\]", text)
        if m is None:
            return Parsed(reason="no ranking [[2>1>3]] in the answer")
        order = json.loads(m.group(0))
        v = ">".join(map(str, order))
    if sorted(order) != list(range(1, k + 1)):
        return Parsed(reason=f"the ranking must name each of the {k} answers once, got {v}")
    return Parsed([i - 1 for i in order])


def _json_object(text: str) -> dict[str, Any] | None:
    for m in reversed(_JSON_RE.findall(text)):
        try:
            obj = json.loads(m)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return {str(k).lower(): v for k, v in obj.items()}
    return None


def label_probabilities(logprobs: Sequence[Any] | None, labels: Sequence[str], *,
                        style: str = "ab") -> tuple[list[float], int] | None:
    """The probability of each label at the token that carries the verdict, from the
    ``top_logprobs`` alternatives there (a label missing from them counts 0), **not**
    renormalised: their sum is the mass on valid labels. Returns ``(probs, position)`` or
    None when the answer's tokens hold no verdict position (or no log-probabilities).

    The verdict position: ``style="token"``, the first generated token; otherwise the
    last token whose text (stripped) is a label and that follows ``[[`` in the answer
    (``[[A]]``, ``[[7]]``); for ``"arena"`` the token right after the last ``[[``.
    Alternatives that differ only by surrounding spaces count as the same label.
    """
    if not logprobs:
        return None
    pos = None
    if style == "token":
        pos = 0
    else:
        text = ""
        for i, tok in enumerate(logprobs):
            before = text
            text += tok.token
            stripped = tok.token.strip()
            if before.rstrip().endswith("[[") and (style == "arena" or stripped in labels):
                pos = i
    if pos is None:
        return None
    probs = [0.0] * len(labels)
    index = {lab: j for j, lab in enumerate(labels)}
    seen: set[str] = set()
    alternatives = logprobs[pos].top or ((logprobs[pos].token, logprobs[pos].logprob),)
    for tok, lp in alternatives:
        key = tok.strip()
        if style == "arena":  # the first token of A>>B, A=B ...: "A" or "B" only tells A/B
            key = {"A": labels[0], "B": labels[1]}.get(key, key)
        if key in index and tok not in seen:
            seen.add(tok)
            probs[index[key]] += math.exp(lp)
    return probs, pos


def expected_score(probs: Sequence[float], scores: Sequence[float]) -> tuple[float, float]:
    """The expected score over the valid labels and the mass that fell on them:
    ``(sum p_k s_k / mass, mass)``. The expectation is *conditional on a valid label*; the
    mass (1 - the probability of an invalid answer) is always reported with it.

    >>> [round(x, 4) for x in expected_score([0.2, 0.6, 0.1], [1, 2, 3])]
    [1.8889, 0.9]
    """
    mass = float(sum(probs))
    if mass <= 0:
        return math.nan, 0.0
    return float(sum(p * s for p, s in zip(probs, scores)) / mass), mass
