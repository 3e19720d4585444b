"""Readers of recorded LLM-judge verdicts in both presentation orders (family ``verdicts``,
read by :func:`prefkit.judge.read_verdicts` and ``prefkit judge analyze``): ``judge_pairs``
(mt_bench_repro, ``prefkit judge run``) and FastChat's ``fastchat_pair``; the vote view of
``judge_pairs`` files (family ``votes``, read by ``prefkit rank``); and the row helpers the
one-order and single-grade readers of :mod:`prefkit.data._formats_verdicts_single` share.

Each reader keeps what a consistency analysis needs: both presentation orders as
*positional* verdicts (see :mod:`prefkit.judge.records`), the judge's raw output of an
unparsed or failed verdict (shown with its row, never mapped to a default), verdict
probabilities where the judge gave them, and answer lengths where the file holds the
answers. A record whose verdict is a value no judge writes is an invalid row (file, line,
field, fix); a verdict the judge *did* write as ``error`` is kept and counted as one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from prefkit.data.formats import Parsed, register
from prefkit.data.table import Table

__all__ = ["read_fastchat_pair_verdicts", "read_judge_pairs", "read_judge_votes"]

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


def _records(src: str | Path | Table, columns: Any, fmt: str) -> tuple[Table, Any]:
    """A reader's start: a ``columns=`` mapping refused (these formats have fixed columns),
    the file's table and its records (an empty file refused)."""
    if columns:
        raise ValueError(f"{fmt} files take no columns= mapping")
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
              "source", "raw_ab", "raw_ba", "positional")

    def __init__(self, table: Table) -> None:
        self.table = table
        self.cols: dict[str, list[Any]] = {f: [] for f in self.FIELDS}
        self.problems: list[Any] = []

    def add(self, line: int, **row: Any) -> None:
        defaults = {"turn": 0, "prob_ab": [math.nan] * 3, "prob_ba": [math.nan] * 3,
                    "strong_ab": False, "strong_ba": False, "length_a": math.nan,
                    "length_b": math.nan, "category": "", "raw_ab": None, "raw_ba": None,
                    "ba": NOT_JUDGED, "positional": True}
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
    table, recs = _records(src, columns, "judge_pairs")
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
    table, recs = _records(src, columns, "fastchat_pair")
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
