"""Judging protocols over any :class:`~prefkit.llm.types.ChatBackend`: pairwise in both
presentation orders with verdict probabilities, pointwise K-point rating with the expected
score from the label-token probabilities, listwise ranking of K answers.

Each protocol returns one JSON-ready record per judged item, in the layout the verdict
readers read back (``judge_pairs`` for pairwise: ``winner_ab``/``winner_ba`` positional,
``probs_ab``/``probs_ba``, the judge's outputs; ``mtbench_grades`` for ratings), so a run
is analysed by ``prefkit judge analyze`` and ranked by ``prefkit rank`` as it is. A failed
request or an unparsed answer is the verdict ``error`` with its reason and output in the
record -- counted, never replaced by a default.

A backend with ``label_distribution`` (:class:`prefkit.llm.local.LocalModelBackend`) and a
one-token template (``verdict="token"``, e.g. ``alpaca_eval``) is read directly: the verdict
is the most probable label of the next-token distribution, no text is sampled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from prefkit.judge.parse import (
    FIRST,
    SECOND,
    TIE,
    Parsed,
    expected_score,
    label_probabilities,
    parse_pairwise,
    parse_ranking,
    parse_rating,
)
from prefkit.judge.templates import Template

__all__ = ["judge_pairs", "rank_answers", "rate_answers"]

_POS = {FIRST: "A", SECOND: "B", TIE: "tie"}


def _request(template: Template, fields: Mapping[str, Any], model: str, top_logprobs: int,
             ) -> Any:
    from prefkit.llm.types import ChatRequest

    return ChatRequest.of(template.render(**fields), model=model, temperature=0.0,
                          max_tokens=template.max_tokens, top_logprobs=top_logprobs)


def _answer(backend: Any, requests: list[Any], template: Template, concurrency: int | None,
            progress: bool) -> list[Any]:
    """ChatResults, or (for a local one-token judge) LabelDistributions read directly."""
    if template.verdict == "token" and hasattr(backend, "label_distribution"):
        return [backend.label_distribution(r, list(template.labels[:2])) for r in requests]
    from prefkit.llm.batch import run_requests

    return run_requests(backend, requests, concurrency=concurrency, progress=progress,
                        description=f"judging ({template.name})")


def _pairwise_verdict(result: Any, template: Template) -> tuple[Parsed, dict[str, float] | None,
                                                                 str | None]:
    """(parsed verdict, {"A", "B", "tie", "mass"} probabilities or None, the output text)."""
    if hasattr(result, "mass") and not hasattr(result, "text"):  # a LabelDistribution
        p = [result[lab] for lab in template.labels[:2]]
        probs = {"A": p[0], "B": p[1], "tie": 0.0, "mass": result.mass}
        code = FIRST if p[0] > p[1] else SECOND if p[1] > p[0] else TIE
        return Parsed(code), probs, None
    if not result.ok:
        return Parsed(reason=f"request failed: {result.error}"), None, None
    parsed = parse_pairwise(result.text, template.verdict, template.labels)
    probs = None
    if template.verdict in ("ab", "token"):
        read = label_probabilities(result.logprobs, template.labels, style=template.verdict)
        if read is not None:
            p = read[0] + [0.0] * (3 - len(read[0]))
            probs = {"A": p[0], "B": p[1], "tie": p[2], "mass": sum(p)}
    return parsed, probs, result.text


def judge_pairs(backend: Any, pairs: Sequence[Mapping[str, Any]], template: Template, *,
                both_orders: bool = True, model: str = "", top_logprobs: int = 5,
                concurrency: int | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """Judge each pair (``question_id``, ``question``, ``model_a``, ``model_b``,
    ``answer_a``, ``answer_b``, optional ``turn``) with ``template`` in order ab
    (``answer_a`` shown first) and, with ``both_orders``, ba. Returns one record per pair
    (see the module docstring); ``winner`` is the model both orders chose, ``tie``,
    ``inconsistent`` or ``error`` (one order: that order's verdict in model terms)."""
    if template.kind != "pairwise":
        raise ValueError(f"template {template.name!r} is {template.kind}, not pairwise")
    orders = ("ab", "ba") if both_orders else ("ab",)
    requests = []
    for p in pairs:
        for order in orders:
            a, b = (p["answer_a"], p["answer_b"]) if order == "ab" else (p["answer_b"],
                                                                        p["answer_a"])
            requests.append(_request(template, {**p, "answer_a": a, "answer_b": b}, model,
                                     top_logprobs))
    results = _answer(backend, requests, template, concurrency, progress)
    judge = getattr(backend, "name", "") or model
    out = []
    for i, p in enumerate(pairs):
        rec: dict[str, Any] = {
            "question_id": p["question_id"], "model_a": p["model_a"], "model_b": p["model_b"],
            "judge_id": judge, "template": template.name, "turn": p.get("turn", 1),
            "length_a": len(p["answer_a"]), "length_b": len(p["answer_b"]),
            "winner_ab": None, "winner_ba": None}
        for j, order in enumerate(orders):
            result = results[i * len(orders) + j]
            parsed, probs, text = _pairwise_verdict(result, template)
            rec[f"winner_{order}"] = _POS[parsed.value] if parsed.ok else "error"
            rec[f"score_{order}"] = ">>" if parsed.strong else None
            rec[f"probs_{order}"] = probs
            rec[f"output_{order}"] = text
            rec[f"error_{order}"] = None if parsed.ok else parsed.reason
            rec[f"cached_{order}"] = bool(getattr(result, "cached", False))
        rec["winner"] = _winner(rec)
        out.append(rec)
    return out


def _winner(rec: Mapping[str, Any]) -> str:
    ab, ba = rec["winner_ab"], rec["winner_ba"]
    ident_ab = {"A": rec["model_a"], "B": rec["model_b"], "tie": "tie"}.get(ab)
    ident_ba = {"A": rec["model_b"], "B": rec["model_a"], "tie": "tie"}.get(ba) \
        if ba is not None else ident_ab
    if ident_ab is None or ident_ba is None:
        return "error"
    return ident_ab if ident_ab == ident_ba else "inconsistent"


def rate_answers(backend: Any, answers: Sequence[Mapping[str, Any]], template: Template, *,
                 scale: int = 10, model: str = "", top_logprobs: int = 10,
                 concurrency: int | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """Pointwise rating of each answer (``question_id``, ``question``, ``model``,
    ``answer``, optional ``turn``) on 1..``scale``. Each record has the ``scale`` and the
    parsed ``score`` (null when unparsed, with ``error``; a grade outside 1..``scale`` is
    unparsed, its ``error`` saying the grade and ``out_of_scale`` true), and from the label
    tokens ``1``..``scale`` at the
    rating's position: ``probs`` (per label, **not** renormalised), ``label_mass`` (their
    sum: the probability of a valid label) and ``expected_score`` (the mean grade given a
    valid label, i.e. divided by ``label_mass``, which is always reported with it).

    A grade of two or more characters ("10") is one label only where the judge's tokenizer
    writes it as one token; otherwise the probability of "1" also holds that of "10".
    """
    if template.kind != "single":
        raise ValueError(f"template {template.name!r} is {template.kind}, not single")
    labels = tuple(str(k) for k in range(1, scale + 1))
    requests = [_request(template, {"scale": scale, **a}, model, top_logprobs) for a in answers]
    results = _answer(backend, requests, template, concurrency, progress)
    judge = getattr(backend, "name", "") or model
    out = []
    for a, result in zip(answers, results):
        parsed = parse_rating(result.text if result.ok else None, low=1, high=scale,
                              style="json" if template.verdict == "json" else "rating")
        read = label_probabilities(result.logprobs if result.ok else None, labels,
                                   style="rating")
        probs = dict(zip(labels, read[0])) if read else None
        exp, mass = expected_score(read[0], range(1, scale + 1)) if read else (None, None)
        out.append({"question_id": a["question_id"], "model_id": a["model"],
                    "judge_id": judge, "template": template.name, "turn": a.get("turn", 1),
                    "scale": scale, "score": parsed.value,
                    "expected_score": None if exp is None or math.isnan(exp) else exp,
                    "label_mass": mass, "probs": probs,
                    "output": result.text, "error": None if parsed.ok else (
                        parsed.reason if result.ok else f"request failed: {result.error}"),
                    "out_of_scale": parsed.out_of_scale})
    return out


def rank_answers(backend: Any, items: Sequence[Mapping[str, Any]], template: Template, *,
                 model: str = "", concurrency: int | None = None,
                 progress: bool = False) -> list[dict[str, Any]]:
    """Listwise ranking of K answers per question (``question_id``, ``question``,
    ``models``, ``answers``): each record's ``ranking`` names the models best first (null
    when unparsed, with ``error``)."""
    if template.kind != "listwise":
        raise ValueError(f"template {template.name!r} is {template.kind}, not listwise")
    requests = [_request(template, it, model, 0) for it in items]
    results = _answer(backend, requests, template, concurrency, progress)
    judge = getattr(backend, "name", "") or model
    out = []
    for it, result in zip(items, results):
        parsed = parse_ranking(result.text if result.ok else None, len(it["answers"]))
        out.append({"question_id": it["question_id"], "judge": judge,
                    "ranking": [it["models"][k] for k in parsed.value] if parsed.ok else None,
                    "output": result.text, "error": None if parsed.ok else (
                        parsed.reason if result.ok else f"request failed: {result.error}")})
    return out
