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

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["read_gold_labels", "read_judge_inputs"]

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
        raise InvalidInputError(problems, note=f"{len({p.line for p in problems}):,} of "
                                f"{recs.n_read:,} records are invalid, nothing was judged")
    if not items:
        raise InvalidInputError(problems or [table.empty()], note="nothing to judge")
    return items, problems


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
