"""Readers of recorded LLM-judge verdicts and grades (family ``verdicts``, read by
:func:`prefkit.judge.read_verdicts` and ``prefkit judge analyze``), and the vote view of
``prefkit judge run``'s output (family ``votes``, read by ``prefkit rank``).

Each reader keeps what a consistency analysis needs: both presentation orders as
*positional* verdicts (see :mod:`prefkit.judge.records`), the judge's raw output of an
unparsed or failed verdict (shown with its row, never mapped to a default), verdict
probabilities where the judge gave them, and answer lengths where the file holds the
answers. A record whose verdict is a value no judge writes is an invalid row (file, line,
field, fix); a verdict the judge *did* write as ``error`` is kept and counted as one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from prefkit.data.formats import Parsed, register
from prefkit.data.table import Table

__all__ = ["read_alpaca_eval_verdicts", "read_fastchat_pair_verdicts", "read_judge_pairs",
           "read_judge_votes", "read_mtbench_grades", "read_pandalm_verdicts"]

FIRST, SECOND, TIE, ERROR, NOT_JUDGED = 0, 1, 2, -1, -2
#: positional verdict words (judge_pairs files: mtbench_repro and ``prefkit judge run``), any
#: casing, with or without FastChat's brackets: ``C`` / ``[[C]]`` is pair-v2's tie
POSITIONAL = {"a": FIRST, "b": SECOND, "tie": TIE, "c": TIE, "error": ERROR}
#: both-orders outcomes some files write where one order's verdict belongs: refused with
#: this explanation (the order's own verdict is unknown)
COMBINED = ("inconsistent", "tie (inconsistent)")


def _word(v: Any) -> str:
    """A verdict word as the readers compare it: stripped, lower case, ``[[x]]`` -> ``x``."""
    w = str(v).strip().lower()
    return w[2:-2].strip() if w.startswith("[[") and w.endswith("]]") else w


def _turn(rows: _Rows, line: int, rec: Mapping[str, Any], default: int) -> int | None:
    """The record's ``turn`` (absent or null: ``default``); a turn that is not a whole
    number is a problem of the row (None)."""
    v = rec.get("turn")
    if v is None:
        return default
    x = _float(v)
    if isinstance(v, bool) or not math.isfinite(x) or x != int(x) or x < 0:
        rows.bad(line, "turn", v, f"turn {v!r} is not a whole number",
                 "turn is 1 or 2 (the MT-Bench turn judged), or leave it out", "bad_value")
        return None
    return int(x)


def _judge_name(rec: Mapping[str, Any], keys: tuple[str, ...], table: Table) -> str:
    """The judge named by the first of ``keys`` present; a file without one is its own
    judge (its file name), so two unnamed judges' files are never pooled."""
    for k in keys:
        name = _text(rec.get(k)).strip()
        if name:
            return name
    return f"({table.name})"


def _prompt_id(rec: Mapping[str, Any], line: int) -> str:
    """``question_id``; a row without one is its own prompt (never pooled with others into
    one prompt's triads)."""
    q = _text(rec.get("question_id")).strip()
    return q if q else f"(no question_id, line {line})"


def _records(src: str | Path | Table) -> tuple[Table, Any]:
    table = Table.of(src)
    recs = table.records()
    if recs.n_read == 0:
        raise table.empty()
    return table, recs


def _text(v: Any) -> str:
    if isinstance(v, list):
        return "/".join(str(x) for x in v)
    return "" if v is None else str(v)


def _float(v: Any) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x


def _probs(v: Any) -> list[float]:
    """``{"A": p, "B": p, "tie": p}`` -> [P(first), P(second), P(tie)] (NaN if absent)."""
    if not isinstance(v, Mapping):
        return [math.nan] * 3
    low = {str(k).lower(): _float(x) for k, x in v.items()}
    return [low.get("a", math.nan), low.get("b", math.nan), low.get("tie", math.nan)]


class _Rows:
    """Column lists of :class:`~prefkit.judge.records.Verdicts`, row by row."""

    FIELDS = ("judge", "prompt", "model_a", "model_b", "ab", "ba", "turn", "prob_ab",
              "prob_ba", "strong_ab", "strong_ba", "length_a", "length_b", "category",
              "source", "raw_ab", "raw_ba")

    def __init__(self, table: Table) -> None:
        self.table = table
        self.cols: dict[str, list[Any]] = {f: [] for f in self.FIELDS}
        self.problems: list[Any] = []

    def add(self, line: int, **row: Any) -> None:
        defaults = {"turn": 0, "prob_ab": [math.nan] * 3, "prob_ba": [math.nan] * 3,
                    "strong_ab": False, "strong_ba": False, "length_a": math.nan,
                    "length_b": math.nan, "category": "", "raw_ab": None, "raw_ba": None,
                    "ba": NOT_JUDGED}
        row = {**defaults, **row, "source": f"{self.table.name}:{line}"}
        for f in self.FIELDS:
            self.cols[f].append(row[f])

    def bad(self, line: int, field: str, value: Any, reason: str, fix: str,
            kind: str = "unknown_label") -> None:
        self.problems.append(self.table.problem(line, reason, fix, kind, field=field,
                                                value=value))

    def parsed(self, n_read: int) -> Parsed:
        from prefkit.judge.records import Verdicts

        if not self.cols["ab"]:
            return Parsed(None, self.problems, n_read)
        c = self.cols
        v = Verdicts(**{f: (np.array(c[f], dtype=object) if f in ("raw_ab", "raw_ba")
                            else c[f]) for f in self.FIELDS})
        return Parsed(v, self.problems, n_read)


def _check_names(rows: _Rows, line: int, rec: Mapping[str, Any], a: str, b: str) -> bool:
    for key in (a, b):
        if not _text(rec.get(key)).strip():
            rows.bad(line, key, rec.get(key), "missing model name",
                     "every judged pair needs the names of both models", "missing_value")
            return False
    if _text(rec.get(a)) == _text(rec.get(b)):
        rows.bad(line, b, rec.get(b), f"model {rec.get(b)!r} is compared with itself",
                 "fix one of the two names or drop the row", "self_comparison")
        return False
    return True


# -- judge pairs: mtbench_repro and prefkit judge run -------------------------------------
def _is_judge_pairs(kind: str, keys: frozenset[str], first: object = None) -> bool:
    return {"model_a", "model_b", "winner_ab"} <= keys  # winner_ba: absent = one order


@register("judge_pairs", family="verdicts", gives="Verdicts", priority=10,
          detect=_is_judge_pairs,
          describe="pairwise judge verdicts in both orders (mt_bench_repro, prefkit judge "
          "run): question_id, model_a, model_b, winner_ab, winner_ba (A|B|tie|error; "
          "C or [[C]] = tie; winner_ba absent or null = one order), judge_id, turn")
def read_judge_pairs(src: str | Path | Table, *, columns: Any = None) -> Parsed:
    """Pairwise verdicts in both presentation orders, one record per pair.

    The layout of kook222/mt_bench_repro (``data/en/judgments/<judge>/pairwise/``) and of
    ``prefkit judge run``'s output: ``winner_ab`` is the verdict with ``model_a``'s answer
    shown first, ``winner_ba`` with ``model_b``'s shown first, both *positional* (``A`` =
    the answer shown first, ``B``, ``tie``, ``error``; any casing, ``C`` and FastChat's
    ``[[A]]``/``[[B]]``/``[[C]]`` too); ``null``/absent = that order was not asked, and a
    row with neither order is an invalid row. Without ``judge_id`` the file is its own
    judge (its name in parentheses); without ``question_id`` a row is its own prompt.
    ``judgment_ab``/``judgment_ba`` (or ``output_ab``/``output_ba``) are the
    judge's texts; ``probs_ab``/``probs_ba`` (``{"A": p, "B": p, "tie": p}``), ``score_ab``
    (``A>>B``: strong) and ``length_a``/``length_b`` are read when present.
    """
    if columns:
        raise ValueError("judge_pairs files take no columns= mapping")
    table, recs = _records(src)
    rows = _Rows(table)
    for rec, line in zip(recs.rows, recs.lines):
        if not _check_names(rows, line, rec, "model_a", "model_b"):
            continue
        codes = []
        for key in ("winner_ab", "winner_ba"):
            v = rec.get(key)
            code = NOT_JUDGED if v is None else POSITIONAL.get(_word(v))
            if code is None:
                rows.bad(line, key, v, f"unknown positional verdict {v!r}" + (
                    " (a both-orders outcome, not this order's verdict)"
                    if _word(v) in COMBINED else ""),
                    "expected A (the answer shown first), B, tie (C), error, or null "
                    "(order not judged)")
            codes.append(code)
        if codes == [NOT_JUDGED, NOT_JUDGED]:
            rows.bad(line, "winner_ab", None, "no verdict in either order (winner_ab and "
                     "winner_ba are null)", "judge the pair, or drop the row",
                     "missing_value")
            continue
        turn = _turn(rows, line, rec, 0)
        if None in codes or turn is None:
            continue
        scores = [str(rec.get(f"score_{o}") or "") for o in ("ab", "ba")]
        rows.add(line, judge=_judge_name(rec, ("judge_id", "judge"), table),
                 prompt=_prompt_id(rec, line), model_a=_text(rec["model_a"]),
                 model_b=_text(rec["model_b"]), ab=codes[0], ba=codes[1], turn=turn,
                 prob_ab=_probs(rec.get("probs_ab")), prob_ba=_probs(rec.get("probs_ba")),
                 strong_ab=">>" in scores[0] or "<<" in scores[0],
                 strong_ba=">>" in scores[1] or "<<" in scores[1],
                 length_a=_float(rec.get("length_a")), length_b=_float(rec.get("length_b")),
                 category=_text(rec.get("category")),
                 raw_ab=rec.get("judgment_ab", rec.get("output_ab")),
                 raw_ba=rec.get("judgment_ba", rec.get("output_ba")))
    return rows.parsed(recs.n_read)


# -- FastChat pair judgments ---------------------------------------------------------
_FASTCHAT_POS = {  # (game, identity winner) -> positional code
    (1, "model_1"): FIRST, (1, "model_2"): SECOND, (2, "model_2"): FIRST,
    (2, "model_1"): SECOND,
}


def _answer_length(prompt: Any, which: str) -> float:
    """Length of the answer between FastChat pair-v2's ``[The Start of Assistant X's
    Answer]`` markers (single-turn prompts only)."""
    if not isinstance(prompt, str):
        return math.nan
    start = f"[The Start of Assistant {which}'s Answer]\n"
    end = f"\n[The End of Assistant {which}'s Answer]"
    i = prompt.find(start)
    j = prompt.find(end, i + len(start)) if i >= 0 else -1
    return float(j - i - len(start)) if i >= 0 and j >= 0 else math.nan


@register("fastchat_pair", family="verdicts", gives="Verdicts", priority=20,
          detect=lambda kind, keys, first: {"model_1", "model_2", "g1_winner",
                                            "g2_winner"} <= keys,
          describe="FastChat MT-Bench pair judgments (*_pair.jsonl): model_1, model_2, "
          "g1_winner, g2_winner (model_1|model_2|tie|error), judge, turn")
def read_fastchat_pair_verdicts(src: str | Path | Table, *, columns: Any = None) -> Parsed:
    """FastChat ``llm_judge`` pair judgments as verdicts in both orders.

    Game 1 shows ``model_1`` first; game 2 swaps the answers and FastChat writes its winner
    already mapped back to ``model_1``/``model_2`` (``gen_judgment.py``/``common.py
    play_a_match_pair``), so game 2's positional verdict is ``A`` when ``g2_winner`` is
    ``model_2``. ``error`` (FastChat's unparsed ``[[A]]``) is kept as an error verdict with
    the judge's text. Any casing; ``[[C]]``-style brackets and ``tie (bothbad)`` read as
    their word (a tie); a null or absent ``g2_winner`` is a game not played (one order);
    ``tie (inconsistent)`` is a both-games outcome, not a game's verdict: an invalid row.
    Answer lengths come from game 1's prompt (single-turn pair-v2).
    """
    if columns:
        raise ValueError("fastchat_pair files take no columns= mapping")
    table, recs = _records(src)
    rows = _Rows(table)
    for rec, line in zip(recs.rows, recs.lines):
        if not _check_names(rows, line, rec, "model_1", "model_2"):
            continue
        codes = []
        for g in (1, 2):
            raw = rec.get(f"g{g}_winner")
            v = _word(raw)
            code = NOT_JUDGED if raw is None and g == 2 else {
                "tie": TIE, "tie (bothbad)": TIE, "c": TIE, "error": ERROR}.get(
                v, _FASTCHAT_POS.get((g, v)))
            if code is None:
                rows.bad(line, f"g{g}_winner", raw, f"unknown winner {raw!r}" + (
                    f" (a both-games outcome, not game {g}'s verdict)"
                    if v in COMBINED else ""),
                    "expected model_1, model_2, tie or error" + (
                        " (null: game 2 not played)" if g == 2 else ""))
            codes.append(code)
        turn = _turn(rows, line, rec, 1)
        if None in codes or turn is None:
            continue
        p1 = rec.get("g1_user_prompt")
        rows.add(line, judge=_judge_name(rec, ("judge", "judge_id"), table),
                 prompt=_prompt_id(rec, line),
                 model_a=_text(rec["model_1"]), model_b=_text(rec["model_2"]), ab=codes[0],
                 ba=codes[1], turn=turn or 1,
                 length_a=_answer_length(p1, "A"), length_b=_answer_length(p1, "B"),
                 raw_ab=rec.get("g1_judgment"), raw_ba=rec.get("g2_judgment"))
    return rows.parsed(recs.n_read)


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
    if columns:
        raise ValueError("alpaca_eval_verdicts files take no columns= mapping")
    table, recs = _records(src)
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
    if columns:
        raise ValueError("pandalm_judge files take no columns= mapping")
    table, recs = _records(src)
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
            extra = _text(pair.get("input")).strip()
            # the prompt as the annotation reader ``pandalm`` writes it, so the two join
            prompt = _text(pair.get("instruction")) + (f"\n\n{extra}" if extra else "")
        r1 = _strip(pair.get("response1")) if pair else None
        r2 = _strip(pair.get("response2")) if pair else None
        rows.add(line, judge=judge, prompt=prompt, model_a=ma, model_b=mb, ab=code,
                 length_a=float(len(r1)) if r1 is not None else math.nan,
                 length_b=float(len(r2)) if r2 is not None else math.nan,
                 category=_strip(pair.get("motivation_app")) if pair else "",
                 raw_ab=_strip(rec.get("gpt_reason", rec.get("pandalm_reason"))))
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
    mark of an unparsed ``[[rating]]`` and is kept as a missing grade (NaN), counted."""
    from prefkit.judge.records import Grades

    if columns:
        raise ValueError("mtbench_grades files take no columns= mapping")
    table, recs = _records(src)
    cols: dict[str, list[Any]] = {k: [] for k in ("judge", "prompt", "model", "score", "turn",
                                                  "source")}
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
    data = Grades(**cols) if cols["score"] else None
    return Parsed(data, problems, recs.n_read)


# -- votes view: prefkit rank reads judge_pairs files -----------------------------------
@register("judge_votes", family="votes", gives="PairwiseVotes", priority=22,
          detect=_is_judge_pairs,
          describe="judge verdicts in both orders (prefkit judge run, mt_bench_repro): each "
          "judged order is a vote, a strong verdict (A>>B) weighs 3, as arena-hard")
def read_judge_votes(src: str | Path | Table, *, columns: Any = None, items: Any = None,
                     strong_weight: float = 3.0) -> Parsed:
    """``judge_pairs`` files as votes, arena-hard style (``show_result.py``): every judged
    order is one vote in model terms (``model_a`` = side a), a strong verdict weighs
    ``strong_weight``; an order not judged gives no vote. An ``error`` verdict makes its row
    invalid (re-judge it, or ``--skip-invalid``); skipping it drops **only the error
    order**: a pair whose other order has a valid verdict keeps that order's vote (a
    single-order vote), and each such row's problem says so and how many there are. The
    judge is the annotator, ``question_id`` the prompt, ``length_a``/``length_b`` the
    ``length`` style feature."""
    from prefkit.data.records import ItemIndex, PairwiseVotes

    parsed = read_judge_pairs(src)
    v = parsed.data
    problems = list(parsed.problems)
    if v is None:
        return Parsed(None, problems, parsed.n_read)
    a_l, b_l, out_l, w_l, j_l, p_l, la, lb = [], [], [], [], [], [], [], []
    table = Table.of(src)
    failed: list[tuple[int, list[str], list[str]]] = []  # (row, error orders, valid orders)
    for k in range(len(v)):
        bad, good = [], []
        for order, code, strong in (("ab", v.ab[k], v.strong_ab[k]),
                                    ("ba", v.ba[k], v.strong_ba[k])):
            if code == NOT_JUDGED:
                continue
            if code == ERROR:
                bad.append(order)
                continue
            good.append(order)
            ident = code if order == "ab" else {FIRST: SECOND, SECOND: FIRST}.get(code, code)
            a_l.append(v.model_a[k])
            b_l.append(v.model_b[k])
            out_l.append(int(ident))
            w_l.append(strong_weight if strong else 1.0)
            j_l.append(v.judge[k])
            p_l.append(v.prompt[k])
            la.append(v.length_a[k])
            lb.append(v.length_b[k])
        if bad:
            failed.append((k, bad, good))
    problems += _error_order_problems(table, v, failed)
    if not a_l:
        return Parsed(None, problems, parsed.n_read)
    index = items if items is not None else ItemIndex.from_names(a_l, b_l)
    feats = {}
    if np.all(np.isfinite(la)) and np.all(np.isfinite(lb)):
        feats["length"] = (np.asarray(la), np.asarray(lb))
    votes = PairwiseVotes(index, index.ids(a_l), index.ids(b_l), np.asarray(out_l, np.int8),
                          np.asarray(w_l), np.asarray(j_l, dtype=object),
                          np.asarray(p_l, dtype=object), feats)
    return Parsed(votes, problems, parsed.n_read)


def _error_order_problems(table: Table, v: Any, failed: list[tuple[int, list[str], list[str]]]
                          ) -> list[Any]:
    """One problem per row with an error verdict, saying which orders failed and whether
    the row keeps a single-order vote (numbered: "single-order vote 2 of 5")."""
    n_single = sum(1 for _, _, good in failed if good)
    out, i = [], 0
    for k, bad, good in failed:
        line = int(str(v.source[k]).rsplit(":", 1)[1])
        if good:
            i += 1
            reason = (f"the judge's verdict in order {bad[0]} is an error: skipping it drops "
                      f"that order only, order {good[0]}'s vote still counts (single-order "
                      f"vote {i} of {n_single} in {table.name})")
        elif len(bad) == 2:
            reason = "the judge's verdicts in both orders are errors: the pair gives no vote"
        else:
            reason = f"the judge's verdict in order {bad[0]} is an error: the pair gives no vote"
        orders = f"order{'s' if len(bad) > 1 else ''} {' and '.join(bad)}"
        out.append(table.problem(line, reason, f"re-judge {orders} of this pair",
                                 "judge_error", field=f"winner_{bad[0]}", value="error"))
    return out
