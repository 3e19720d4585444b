"""What a judge is run over: pairs of answers (pairwise), answers (single), answer sets
(listwise), from JSON/JSONL/CSV/Parquet files, with every bad row named (file, line, field,
fix).

Pairs: one row per pair with a question (``question``, ``prompt``, ``instruction`` or
``input``), two answers (``answer_a``/``answer_b``, ``response_a``/``response_b``,
``output_1``/``output_2``, ``response1``/``response2``) and, optionally, the models
(``model_a``/``model_b``, ``generator_1``/``generator_2``; default ``answer_a`` and
``answer_b``) and an id (``question_id``, ``id``, ``idx``; default the row number). This
reads AlpacaEval annotations, LLMBar, PandaLM's test set and the generic layout as they are.
Answers: ``question``, ``answer`` (or ``response``/``output``), ``model``. Answer sets:
``question``, ``answers`` (a list) and ``models`` (a list).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefkit.runs import plural

__all__ = ["GoldLabels", "read_gold", "read_gold_labels", "read_judge_inputs",
           "read_mtbench_human_gold"]

QUESTION = ("question", "prompt", "instruction", "input")
SIDES = (("answer_a", "answer_b"), ("response_a", "response_b"), ("output_1", "output_2"),
         ("response1", "response2"))
MODELS = (("model_a", "model_b"), ("generator_1", "generator_2"))
IDS = ("question_id", "id", "idx", "pair_id")


def _first(keys: set[str], names: Sequence[str]) -> str | None:
    return next((n for n in names if n in keys), None)


def read_judge_inputs(path: str | Path, kind: str = "pairwise",
                      *, skip_invalid: bool = False) -> tuple[list[dict[str, Any]], list[Any]]:
    """The items to judge and the problems of skipped rows (``skip_invalid``); without it,
    an :class:`~prefkit.data.errors.InvalidInputError` lists every bad row."""
    from prefkit.data.errors import InvalidInputError
    from prefkit.data.table import Table

    table = Table.of(path)
    with table.decoding():
        recs = table.records()
    if recs.n_read == 0:
        raise table.empty()
    keys = set(table.header())
    problems = list(recs.problems)
    qcol = _first(keys, QUESTION)
    idcol = _first(keys, IDS)
    if qcol is None:
        table.fail(None, f"no question column (one of {', '.join(QUESTION)})",
                   "name the question column question (or prompt, instruction)",
                   "missing_column")
    items: list[dict[str, Any]] = []
    for k, (rec, line) in enumerate(zip(recs.rows, recs.lines)):
        base = {"question_id": str(rec.get(idcol, k)) if idcol else str(k),
                "question": _question(rec, qcol), "turn": rec.get("turn", 1)}
        bad = None
        if kind == "pairwise":
            sides = next((s for s in SIDES if set(s) <= keys), None)
            if sides is None:
                table.fail(None, "no answer columns (answer_a/answer_b, output_1/output_2, "
                           "response1/response2)", "name the two answers answer_a and "
                           "answer_b", "missing_column")
            models = next((m for m in MODELS if set(m) <= keys), sides)
            a, b = rec.get(sides[0]), rec.get(sides[1])
            ma = str(rec.get(models[0])) if models != sides else sides[0]
            mb = str(rec.get(models[1])) if models != sides else sides[1]
            for col, v in ((sides[0], a), (sides[1], b)):
                if not isinstance(v, str):
                    bad = (col, v, "missing answer" if v is None else "the answer is not text")
            if bad is None and ma == mb:
                bad = (models[1], mb, f"model {mb!r} is compared with itself")
            item = {**base, "model_a": ma, "model_b": mb, "answer_a": a, "answer_b": b}
        elif kind == "single":
            acol = _first(keys, ("answer", "response", "output"))
            v = rec.get(acol) if acol else None
            if not isinstance(v, str):
                bad = (acol or "answer", v, "missing answer")
            item = {**base, "model": str(rec.get(_first(keys, ("model", "model_id",
                                                                "generator")) or "", "answer")),
                    "answer": v}
        else:
            ans, models = rec.get("answers"), rec.get("models")
            if not isinstance(ans, list) or len(ans) < 2 or not all(isinstance(x, str)
                                                                     for x in ans):
                bad = ("answers", ans, "answers must be a list of at least two texts")
            elif models is not None and (not isinstance(models, list) or len(models) != len(ans)):
                bad = ("models", models, "models must list one name per answer")
            item = {**base, "answers": ans,
                    "models": models or [f"answer_{i + 1}" for i in range(len(ans or []))]}
        if base["question"] is None:
            bad = (qcol, rec.get(qcol), "missing question")
        if bad is not None:
            problems.append(table.problem(line, bad[2], "every row needs a question and its "
                                          "answers as text", "missing_value", field=bad[0],
                                          value=bad[1]))
            continue
        items.append(item)
    if problems and not skip_invalid:
        raise InvalidInputError(problems, note=_invalid(len({p.line for p in problems}), recs.n_read,
                                                     "record", "nothing was judged"))
    if not items:
        raise InvalidInputError(problems or [table.empty()], note="nothing to judge")
    return items, problems


def _invalid(bad: int, read: int, noun: str, so: str) -> str:
    """'3 of 10 records are invalid, nothing was judged' (one: '1 of 1 record is invalid')."""
    return f"{bad:,} of {plural(read, noun)} {'is' if bad == 1 else 'are'} invalid, {so}"


def _question(rec: dict[str, Any], col: str | None) -> str | None:
    q = rec.get(col) if col else None
    if not isinstance(q, str):
        return None
    extra = rec.get("input") if col == "instruction" else None
    return q + (f"\n\n{extra.strip()}" if isinstance(extra, str) and extra.strip() else "")


#: gold label columns and spellings: 1 / a = the first answer (answer_a, output_1)
GOLD = ("label", "gold", "winner", "preference")
_GOLD_CODES = {"1": 0, "a": 0, "model_a": 0, "output_1": 0, "2": 1, "b": 1, "model_b": 1,
               "output_2": 1, "0": 2, "tie": 2, "3": 2}


def read_gold_labels(path: str | Path) -> dict[tuple[str, str, str], int]:
    """Gold labels of a pairs file with one label per pair (LLMBar's ``label`` 1/2, or a
    ``gold``/``winner`` column: 1/a = the first answer, 2/b = the second, 0/tie), keyed as
    ``prefkit judge run`` writes the pairs' verdicts: (question_id, model_a, model_b), with
    the same defaults (row number, ``output_1``/``output_2``). A label that is not one of
    those is an error naming its line."""
    from prefkit.data.errors import InvalidInputError
    from prefkit.data.table import Table

    items, _ = read_judge_inputs(path)
    table = Table.of(path)
    keys = set(table.header())
    col = _first(keys, GOLD)
    if col is None:
        table.fail(None, f"no gold label column (one of {', '.join(GOLD)})",
                   "name the column label (1 = the first answer, 2 = the second, 0 = tie)",
                   "missing_column")
    out: dict[tuple[str, str, str], int] = {}
    problems = []
    recs = table.records()
    for item, rec, line in zip(items, recs.rows, recs.lines):
        v = rec.get(col)
        code = _GOLD_CODES.get(str(int(v) if isinstance(v, float) and v.is_integer() else v)
                               .strip().lower()) if v is not None else None
        if code is None:
            problems.append(table.problem(line, f"unknown gold label {v!r}", "1 (the first "
                                          "answer), 2 (the second) or 0 (tie)",
                                          "unknown_label", field=col, value=v))
            continue
        out[(item["question_id"], item["model_a"], item["model_b"])] = code
    if problems:
        raise InvalidInputError(problems)
    return out


# -- gold labels of any kind, for prefkit judge analyze --gold --------------------------------
@dataclass(frozen=True)
class GoldLabels:
    """Gold labels per pair, as :func:`prefkit.judge.analyze.analyze` takes them: codes 0 =
    ``model_a`` (the key's second name), 1 = ``model_b``, 2 = tie, keyed by (prompt,
    model_a, model_b) or (prompt, model_a, model_b, turn); ``kind`` and ``summary`` say what
    was read, for the report."""

    labels: dict[tuple[Any, ...], int]
    kind: str
    summary: str


#: the columns of MT-Bench's human judgments (lmsys/mt_bench_human_judgments, split
#: ``human``; FastChat's ``compute_agreement.py`` reads them): one row per vote
MTBENCH_HUMAN = frozenset({"question_id", "model_a", "model_b", "winner", "judge"})


def _is_mtbench_human(keys: set[str]) -> bool:
    """The human judgments' layout (``question_id`` may be missing: then the reader names
    it, rather than another reader asking for a question column)."""
    answers = {c for pair in SIDES for c in pair}
    return (MTBENCH_HUMAN - {"question_id"} <= keys and not keys & answers
            and "winner_ab" not in keys)


def _turn(value: Any) -> int | None:
    """A vote's turn: a whole number from 1 (an int, 2.0, or "2" as a CSV holds it), None
    if it is anything else (NaN, inf, true, "x", 0)."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if value >= 1 else None


def read_mtbench_human_gold(path: str | Path, skip_invalid: bool = False) -> GoldLabels:
    """Gold labels from MT-Bench's human judgments (the ``human`` split of
    lmsys/mt_bench_human_judgments: ``question_id, model_a, model_b, winner, judge, turn``
    and the two conversations; its ``gpt4_pair`` split has the same layout): one row per
    expert's vote on one pair and turn. As FastChat's ``compute_agreement.py`` does, a pair
    is the same whichever model is named first (the vote is mirrored) and every tie
    (``tie``, ``tie (bothbad)``, ``tie (inconsistent)``) is a tie. The gold label of a
    (question, pair, turn) is the strict majority of its votes (one vote is its own
    majority); a split vote (1-1, 1-1-1) gives no label and is counted. Keys:
    (question_id, model_a, model_b, turn), ``turn`` 1 when absent. A row whose winner is
    none of model_a, model_b, a tie or one of the two names, without a question_id, or
    whose turn is not a whole number from 1 is an error naming its line (``skip_invalid``:
    skipped and counted in the summary).
    """
    from prefkit.data.errors import InvalidInputError
    from prefkit.data.table import Table
    from prefkit.judge.repair import majority_labels

    table = Table.of(path)
    with table.decoding():
        recs = table.records()
    if recs.n_read == 0:
        raise table.empty()
    if "question_id" not in table.header():
        table.fail(None, "no question_id column (MT-Bench human judgments name the question "
                   "of each vote)", "add question_id, as the verdicts files name it",
                   "missing_column")
    votes: dict[tuple[str, str, str, int], list[int]] = defaultdict(list)
    problems = list(recs.problems)
    judges: set[str] = set()
    for rec, line in zip(recs.rows, recs.lines):
        a, b = (str(rec.get(k) or "").strip() for k in ("model_a", "model_b"))
        w = str(rec.get("winner") or "").strip().lower()
        code = {"model_a": 0, "model_b": 1, a.lower(): 0, b.lower(): 1}.get(w)
        code = 2 if code is None and w.startswith("tie") else code
        turn = 1 if rec.get("turn") is None else _turn(rec.get("turn"))
        qid = rec.get("question_id")
        bad = None
        if qid is None or str(qid).strip() == "":
            bad = ("question_id", qid, "missing question_id",
                   "give every vote the question_id of the verdicts it is compared with")
        elif not a or not b or a == b:
            bad = ("model_b" if a else "model_a", rec.get("model_b" if a else "model_a"),
                   "missing model name" if not (a and b) else
                   f"model {a!r} compared with itself", "every vote names two different models")
        elif code is None:
            bad = ("winner", rec.get("winner"), f"unknown winner {rec.get('winner')!r}",
                   ("expected model_a, model_b, tie (or tie (bothbad), tie (inconsistent)) "
                    "or one of the two models' names"))
        elif turn is None:
            bad = ("turn", rec.get("turn"),
                   f"turn {rec.get('turn')!r} is not a whole number from 1",
                   "turn is 1 or 2 (the MT-Bench turn voted on)")
        if bad is not None:
            problems.append(table.problem(line, bad[2], bad[3], "bad_value", field=bad[0],
                                          value=bad[1]))
            continue
        if a > b:  # one key per pair, whichever model the row names first
            a, b, code = b, a, {0: 1, 1: 0, 2: 2}[code]
        votes[(str(qid), a, b, turn)].append(code)
        judges.add(str(rec.get("judge")))
    bad_lines = len({p.line for p in problems})
    if problems and (not skip_invalid or not votes):
        raise InvalidInputError(problems, note=_invalid(bad_lines, recs.n_read, "vote",
                                                     "no gold label was read"))
    gold = majority_labels(votes)
    n_votes = sum(map(len, votes.values()))
    split = len(votes) - len(gold)
    ties = sum(x == 2 for x in gold.values())
    return GoldLabels(dict(gold), "mtbench_human", (
        f"MT-Bench human judgments: {plural(n_votes, 'vote')} by {plural(len(judges), 'judge')} "
        f"on {len(votes):,} {'pair and turn' if len(votes) == 1 else 'pairs and turns'}; "
        f"{plural(len(gold), 'gold label')} (the majority vote, {plural(ties, 'tie')}), "
        f"{plural(split, 'pair')} with a split vote left out"
        + (f"; {plural(bad_lines, 'invalid vote')} skipped (first: "
           f"{problems[0].describe(None)})" if problems else "")))


def read_gold(path: str | Path, skip_invalid: bool = False) -> GoldLabels:
    """Gold labels for ``prefkit judge analyze --gold``, from any of: MT-Bench's human
    judgments (:func:`read_mtbench_human_gold`, per turn); an annotations file with several
    labels per pair (PandaLM's ``testset-v1.json``: the majority of at least two, see
    :func:`prefkit.judge.repair.gold_from_annotations`); a pairs file with one label per
    pair (LLMBar, :func:`read_gold_labels`). ``skip_invalid`` skips invalid votes of MT-Bench
    human judgments (the other kinds stop at a bad row)."""
    from prefkit.data.errors import InvalidInputError
    from prefkit.data.formats import read_format
    from prefkit.data.table import Table
    from prefkit.judge.repair import gold_from_annotations

    table = Table.of(path)
    with table.decoding():
        keys = set(table.header())
    if _is_mtbench_human(keys):
        return read_mtbench_human_gold(path, skip_invalid)
    try:
        fmt, parsed, _ = read_format(path, ("annotations",))
    except InvalidInputError as e:
        if not any(p.kind == "unknown_format" for p in e.problems):
            raise
    else:
        labels = gold_from_annotations(parsed.data)
        return GoldLabels(labels, fmt.name, f"{plural(len(parsed.data), 'pair')} annotated ({fmt.name})"
                          f"; {len(labels):,} with a majority label of at least 2 votes")
    labels = read_gold_labels(path)  # one gold label per pair (LLMBar)
    return GoldLabels(labels, "pairs", f"{plural(len(labels), 'pair')} with one gold label each")
