"""Readers of recorded LLM judges that give one verdict per pair, and of single grades
(family ``verdicts``): AlpacaEval annotations (one order, recovered from the judge's token
log-probabilities), PandaLM's judges (one order, joined to its human test set), both-orders
outcomes (``judge_winners``: MT-Bench's ``gpt4_pair`` judgments with ``tie
(inconsistent)``) and single-answer grades (mt_bench_repro, FastChat ``*_single.jsonl``).
The row helpers and conventions are those of :mod:`prefkit.data._formats_verdicts`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefkit.data._formats_verdicts import (
    ERROR,
    FIRST,
    NOT_JUDGED,
    SECOND,
    TIE,
    _check_names,
    _float,
    _judge_name,
    _prompt_id,
    _records,
    _Rows,
    _text,
    _turn,
    _word,
)
from prefkit.data.annotations import pandalm_prompt
from prefkit.data.formats import Parsed, register
from prefkit.data.table import Table

__all__ = ["read_alpaca_eval_verdicts", "read_judge_winners", "read_mtbench_grades",
           "read_pandalm_verdicts"]


# -- AlpacaEval annotations with token log-probabilities --------------------------------
def _first_token_probs(raw: Any, tokens: tuple[str, str]) -> tuple[float, float]:
    """P(tokens[0]) and P(tokens[1]) at the first generated token of an OpenAI
    ``raw_completion`` (``logprobs.content[0].top_logprobs``); NaN when absent (a token
    missing from the top list has probability below the last one shown: counted as 0)."""
    try:
        top = raw["logprobs"]["content"][0]["top_logprobs"]
    except (KeyError, IndexError, TypeError):
        return math.nan, math.nan
    p = {t: 0.0 for t in tokens}
    if not isinstance(top, list):
        return math.nan, math.nan
    for alt in top:
        if not isinstance(alt, Mapping) or alt.get("token") not in p:
            continue
        lp = _float(alt.get("logprob"))
        if math.isnan(lp) or lp > 0:  # not a log-probability: no probabilities at all
            return math.nan, math.nan
        p[alt["token"]] += math.exp(lp)
    return p[tokens[0]], p[tokens[1]]


@register("alpaca_eval_verdicts", family="verdicts", gives="Verdicts", priority=30,
          detect=lambda kind, keys, first: {"generator_1", "generator_2",
                                            "preference"} <= keys,
          describe="AlpacaEval annotations: generator_1, generator_2, output_1, output_2, "
          "preference in [1, 2], raw_completion (token log-probabilities)")
def read_alpaca_eval_verdicts(src: str | Path | Table, *, columns: Any = None,
                              tokens: tuple[str, str] = ("m", "M")) -> Parsed:
    """AlpacaEval annotations (``annotations.json``) as one-order verdicts with their
    probabilities.

    AlpacaEval shows the two outputs in a random order (``is_randomize_output_order``) and
    writes ``preference`` = 1 + P(output_2 better) mapped back to the generators. The
    weighted GPT-4-turbo judge answers one token, ``m`` (the output shown first) or ``M``;
    its parser (``completion_parsers.logprob_parser``) gives ``2 - q`` with
    ``q = P(m) / (P(m) + P(M))``, and a swapped row becomes ``3 - (2 - q) = 1 + q``. So the
    presentation order of each row is recovered from ``raw_completion``: ``preference ==
    2 - q`` means generator_1 was shown first (order ``ab``), ``1 + q`` the reverse (order
    ``ba``). The verdict's probabilities are P(first) = P(m), P(second) = P(M), P(tie) = 0
    as read from the tokens, **not** renormalised (their sum is the mass on the valid
    labels). A row without ``raw_completion`` (or where ``q`` = 1/2 leaves the order
    open) keeps its ``preference`` as an order-``ab`` verdict without probabilities.
    ``preference`` 0 is AlpacaEval's legacy draw (a tie); missing or outside [1, 2] is an
    invalid row. Lengths are the characters of ``output_1``/``output_2``.
    """
    table, recs = _records(src, columns, "alpaca_eval_verdicts")
    rows = _Rows(table)
    for rec, line in zip(recs.rows, recs.lines):
        if not _check_names(rows, line, rec, "generator_1", "generator_2"):
            continue
        pref = _float(rec.get("preference"))
        pref = 1.5 if pref == 0 else pref
        if not 1 <= pref <= 2:
            rows.bad(line, "preference", rec.get("preference"),
                     "missing preference" if math.isnan(pref)
                     else f"preference {rec.get('preference')!r} is outside [1, 2]",
                     "1 = output 1 better, 2 = output 2 better, 1.5 = tie", "bad_preference")
            continue
        p2 = pref - 1.0  # P(generator_2 better)
        pm, pM = _first_token_probs(rec.get("raw_completion"), tokens)
        order, probs = "ab", [math.nan] * 3
        if pm + pM > 0:
            q = pm / (pm + pM)
            ab_fit, ba_fit = abs(pref - (2 - q)) < 1e-6, abs(pref - (1 + q)) < 1e-6
            if ab_fit != ba_fit:
                order, probs = ("ab" if ab_fit else "ba"), [pm, pM, 0.0]
        # positional: in order ba generator_2 is shown first
        p_first = (1.0 - p2) if order == "ab" else p2
        code = FIRST if p_first > 0.5 else SECOND if p_first < 0.5 else TIE
        out1, out2 = rec.get("output_1"), rec.get("output_2")
        raw = rec.get("raw_completion")
        verdict = {f"{'ab' if order == 'ab' else 'ba'}": code,
                   f"prob_{order}": probs,
                   f"raw_{order}": json.dumps(raw)[:2000] if raw is not None else None}
        if order == "ba":
            verdict["ab"] = NOT_JUDGED
        rows.add(line, judge=_judge_name(rec, ("annotator",), table),
                 prompt=_text(rec.get("instruction")),
                 model_a=_text(rec["generator_1"]), model_b=_text(rec["generator_2"]),
                 length_a=float(len(out1)) if isinstance(out1, str) else math.nan,
                 length_b=float(len(out2)) if isinstance(out2, str) else math.nan,
                 **verdict)
    return rows.parsed(recs.n_read)


# -- PandaLM judges -----------------------------------------------------------------
_PANDALM = {"1": FIRST, "2": SECOND, "0": TIE, "tie": TIE}


def _pandalm_pairs(path: Path | None) -> dict[str, Mapping[str, Any]]:
    """The human test set next to a judge file (``testset-v1.json``), keyed by ``idx``."""
    if path is None or not path.is_file():
        return {}
    t = Table.of(path)
    return {str(_strip(r.get("idx"))): r for r in t.records().rows}


def _strip(v: Any) -> str:
    return "" if v is None else str(v).strip()


@register("pandalm_judge", family="verdicts", gives="Verdicts", priority=40,
          detect=lambda kind, keys, first: "idx" in keys and bool(
              keys & {"gpt_result", "pandalm_result"}),
          describe="PandaLM judge verdicts: idx, gpt_result (1|2|Tie|garbage) or "
          "pandalm_result (0|1|2); pairs from testset-v1.json beside the file")
def read_pandalm_verdicts(src: str | Path | Table, *, columns: Any = None,
                          pairs: str | Path | None = None) -> Parsed:
    """PandaLM's recorded judges (``gpt-3.5-turbo-testset-v1.json``,
    ``pandalm-7b-testset-v1.json``): one order, ``response1`` shown first. ``gpt_result``:
    ``1``/``2``/``Tie``, and ``garbage`` (an unparsed output: an error verdict, its reason
    shown); ``pandalm_result``: 0 tie, 1, 2. The models and the instruction come from the
    human test set (``pairs=``, by default ``testset-v1.json`` beside the file; its
    ``cmp_key`` ``"m1_m2"`` names response1's then response2's model), joined on ``idx``;
    without it the models are ``response1``/``response2`` and the prompt is ``idx``.
    """
    table, recs = _records(src, columns, "pandalm_judge")
    if pairs is None and table.path is not None:
        pairs = table.path.parent / "testset-v1.json"
    lookup = _pandalm_pairs(Path(pairs) if pairs is not None else None)
    rows = _Rows(table)
    for rec, line in zip(recs.rows, recs.lines):
        key = "gpt_result" if "gpt_result" in rec else "pandalm_result"
        judge = "gpt-3.5-turbo" if key == "gpt_result" else "pandalm-7b"
        raw = rec.get(key)
        v = _word(raw) if raw is not None else ""
        if isinstance(raw, float) and raw.is_integer():
            v = str(int(raw))
        code = ERROR if v == "garbage" else _PANDALM.get(v)
        if code is None:
            rows.bad(line, key, rec.get(key), f"unknown verdict {rec.get(key)!r}",
                     "expected 1, 2, Tie (0) or garbage")
            continue
        idx = _strip(rec.get("idx"))
        pair = lookup.get(idx)
        ma, mb, prompt = "response1", "response2", idx
        if pair is not None:
            cmp_key = _strip(pair.get("cmp_key"))
            names = cmp_key.split("_", 1) if "_" in cmp_key else []
            if len(names) == 2 and names[0] != names[1]:
                ma, mb = names
            # the prompt as the annotation reader ``pandalm`` writes it, so the two join
            prompt = pandalm_prompt(_text(pair.get("instruction")), _text(pair.get("input")))
        r1 = _strip(pair.get("response1")) if pair else None
        r2 = _strip(pair.get("response2")) if pair else None
        rows.add(line, judge=judge, prompt=prompt, model_a=ma, model_b=mb, ab=code,
                 length_a=float(len(r1)) if r1 is not None else math.nan,
                 length_b=float(len(r2)) if r2 is not None else math.nan,
                 category=_strip(pair.get("motivation_app")) if pair else "",
                 raw_ab=_strip(rec.get("gpt_reason", rec.get("pandalm_reason"))))
    return rows.parsed(recs.n_read)


# -- both-orders outcomes: MT-Bench gpt4_pair judgments -------------------------------
#: a pair's both-orders outcome -> (ab, ba) codes standing for it (model terms; see
#: ``Verdicts.positional``): agreeing orders, or FIRST twice (they disagree) when inconsistent
_OUTCOMES = {"model_a": (FIRST, SECOND), "model_b": (SECOND, FIRST), "tie": (TIE, TIE),
             "tie (bothbad)": (TIE, TIE), "tie (inconsistent)": (FIRST, FIRST),
             "inconsistent": (FIRST, FIRST), "error": (ERROR, ERROR)}


def _answer_chars(conversation: Any, turn: int) -> float:
    """Characters of the assistant's answer of ``turn`` (1-based; 0 reads 1) in a chat
    ``[{"role", "content"}, ...]``; NaN when the record does not hold it."""
    if not isinstance(conversation, list):
        return math.nan
    answers = [m.get("content") for m in conversation
               if isinstance(m, Mapping) and m.get("role") == "assistant"]
    t = max(turn, 1)
    text = answers[t - 1] if len(answers) >= t else None
    return float(len(text)) if isinstance(text, str) else math.nan


@register("judge_winners", family="verdicts", gives="Verdicts", priority=45,
          detect=lambda kind, keys, first: {"model_a", "model_b", "winner"} <= keys
          and "winner_ab" not in keys and bool(keys & {"judge", "judge_id"}),
          describe="one both-orders outcome per pair (MT-Bench gpt4_pair judgments): "
          "question_id, model_a, model_b, winner (model_a|model_b|tie|tie (bothbad)|"
          "tie (inconsistent)|error, or a model's name), judge, turn")
def read_judge_winners(src: str | Path | Table, *, columns: Any = None) -> Parsed:
    """A judge's both-orders outcome per pair, as the MT-Bench human-judgments release
    writes GPT-4's pair judgments (split ``gpt4_pair``: ``winner`` is ``model_a``,
    ``model_b``, ``tie``, or ``tie (inconsistent)`` when the two presentation orders
    disagreed) and as mt_bench_repro's ``winner`` column does (a model's name,
    ``inconsistent``). Any casing; ``tie (bothbad)`` is a tie; ``error`` keeps the row as an
    error verdict in both orders (counted as two error verdicts, as a pair-v2 file's
    ``error``/``error`` row is). The rows are not positional (``Verdicts.positional``): position
    consistency (the share not inconsistent), the conflict ratio, non-transitivity and
    agreement apply; the first-position rate does not (null). Answer lengths come from
    ``conversation_a``/``conversation_b`` (the judged turn's answer) when present.
    """
    table, recs = _records(src, columns, "judge_winners")
    rows = _Rows(table)
    for rec, line in zip(recs.rows, recs.lines):
        if not _check_names(rows, line, rec, "model_a", "model_b"):
            continue
        raw = rec.get("winner")
        w = _word(raw) if raw is not None else ""
        ma, mb = _text(rec["model_a"]), _text(rec["model_b"])
        w = {ma.lower(): "model_a", mb.lower(): "model_b"}.get(w, w)
        codes = _OUTCOMES.get(w)
        if codes is None:
            rows.bad(line, "winner", raw, "missing winner" if raw is None
                     else f"unknown winner {raw!r}", "expected model_a, model_b, tie, "
                     "tie (bothbad), tie (inconsistent), error, or one of the two models")
        turn = _turn(rows, line, rec, 0)
        if codes is None or turn is None:
            continue
        rows.add(line, judge=_judge_name(rec, ("judge", "judge_id"), table),
                 prompt=_prompt_id(rec, line), model_a=ma, model_b=mb, ab=codes[0],
                 ba=codes[1], turn=turn, category=_text(rec.get("category")),
                 length_a=_answer_chars(rec.get("conversation_a"), turn),
                 length_b=_answer_chars(rec.get("conversation_b"), turn), positional=False)
    return rows.parsed(recs.n_read)


# -- single grades --------------------------------------------------------------------
@register("mtbench_grades", family="verdicts", gives="Grades", priority=50,
          detect=lambda kind, keys, first: bool(keys & {"model_id", "model"}) and (
              {"score_turn1", "score_turn2"} <= keys or "score" in keys) and "question_id"
          in keys,
          describe="single-answer grades: question_id, model_id|model, score_turn1/2 "
          "(mt_bench_repro) or score + turn (FastChat single; -1 = error), judge_id|judge")
def read_mtbench_grades(src: str | Path | Table, *, columns: Any = None) -> Parsed:
    """Single-answer grades. mt_bench_repro's ``single_grade`` files hold both turns of one
    answer per record (``score_turn1``, ``score_turn2``): two grades. FastChat's
    ``*_single.jsonl`` holds one ``score`` per record for its ``turn``; ``-1`` is FastChat's
    mark of an unparsed ``[[rating]]`` and is kept as a missing grade (NaN), counted. A
    ``scale`` (the top grade the judge was asked for, as ``prefkit judge run`` writes it) is
    kept per grade; a grade outside its scale is kept as read, and flagged by the analysis
    (``Grades.out_of_scale``)."""
    from prefkit.judge.records import Grades

    table, recs = _records(src, columns, "mtbench_grades")
    cols: dict[str, list[Any]] = {k: [] for k in ("judge", "prompt", "model", "score", "turn",
                                                  "source", "scale")}
    problems = []
    for rec, line in zip(recs.rows, recs.lines):
        model = _text(rec.get("model_id", rec.get("model")))
        if not model.strip():
            problems.append(table.problem(line, "missing model name", "each grade needs the "
                                          "graded model", "missing_value", field="model_id"))
            continue
        if "score_turn1" in rec or "score_turn2" in rec:
            turns = [(1, rec.get("score_turn1")), (2, rec.get("score_turn2"))]
        else:
            t = _float(rec.get("turn", 1) if rec.get("turn") is not None else 1)
            if not math.isfinite(t) or t != int(t) or isinstance(rec.get("turn"), bool):
                problems.append(table.problem(line, f"turn {rec.get('turn')!r} is not a whole "
                                              "number", "turn is 1 or 2 (the MT-Bench turn "
                                              "graded), or leave it out", "bad_value",
                                              field="turn", value=rec.get("turn")))
                continue
            turns = [(int(t) or 1, rec.get("score"))]
        for turn, raw in turns:
            x = _float(raw)
            if isinstance(raw, bool) or raw is not None and math.isnan(x) and str(
                    raw).strip().lower() not in ("nan", "none", ""):
                problems.append(table.problem(line, f"grade {raw!r} is not a number",
                                              "a grade is a number (-1 or null: none)",
                                              "bad_number", field=f"score_turn{turn}",
                                              value=raw))
                continue
            cols["judge"].append(_text(rec.get("judge_id", rec.get("judge"))))
            cols["prompt"].append(_text(rec.get("question_id")))
            cols["model"].append(model)
            cols["score"].append(math.nan if x == -1 else x)
            cols["turn"].append(turn)
            cols["source"].append(f"{table.name}:{line}")
            top = _float(rec.get("scale"))
            cols["scale"].append(top if math.isfinite(top) and top > 1 else math.nan)
    data = Grades(**cols) if cols["score"] else None
    return Parsed(data, problems, recs.n_read)
