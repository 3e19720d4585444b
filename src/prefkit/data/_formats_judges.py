"""Readers of LLM-judge outputs: arena-hard battles and judgments, MT-Bench pair
judgments, AlpacaEval annotations. The conventions follow each project's own code, cited
per reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from prefkit.data._build import Items, Parsed, Problems, build_pairwise, map_labels
from prefkit.data._formats import FASTCHAT_LABELS, TIE, A, B, Columns, pairwise_table
from prefkit.data._frame import frame_from_lists, load_frame
from prefkit.data.formats import Role, need, register, resolve
from prefkit.data.table import Table
from prefkit.data.records import ItemIndex

__all__ = ["VERDICTS", "read_alpaca_eval", "read_arena_hard", "read_mtbench"]

# -- arena-hard ---------------------------------------------------------------------
ARENA_HARD_ROLES = {
    "a": Role(("model_a",), "side a"),
    "b": Role(("model_b",), "side b"),
    "winner": Role(("winner",), "the outcome"),
    "prompt": Role(("question_id", "uid"), "prompt ids", False),
}
#: verdict -> (winner in the game's A/B terms, strong?); arena-hard-auto's label_to_score
#: (show_result.py) reads "A<B" as "B>A" and so on.
VERDICTS = {
    "A>>B": ("A", True), "A>B": ("A", False), "A=B": (None, False), "B=A": (None, False),
    "B>A": ("B", False), "B>>A": ("B", True), "A<B": ("B", False), "A<<B": ("B", True),
    "B<A": ("A", False), "B<<A": ("A", True),
}
#: arena-hard-auto v2.0 baselines per category (utils/judge_utils.py JUDGE_SETTINGS)
V2_BASELINES = {"hard_prompt": "o3-mini-2025-01-31", "coding": "o3-mini-2025-01-31",
                "math": "o3-mini-2025-01-31", "creative_writing": "gemini-2.0-flash-001"}
V01_BASELINE = "gpt-4-0314"


def _is_arena_hard(kind: str, keys: frozenset[str], first: object = None) -> bool:
    if "games" in keys:
        return True
    battle = {"model_a", "model_b", "winner"} <= keys and bool(keys & {"question_id", "uid"})
    return battle and kind in ("jsonl", "json") and keys <= {
        "question_id", "uid", "model_a", "model_b", "winner", "category"}


@register("arena_hard", gives="PairwiseVotes", priority=20, detect=_is_arena_hard,
          describe="arena-hard-auto battles (question_id, model_a, model_b, winner) or "
          "judgments (model, games with score A>>B ... B>>A)")
def read_arena_hard(
    src: str | Path | Table, *, columns: Columns = None, items: ItemIndex | None = None,
    baseline: str | Mapping[str, str] | None = None, strong_weight: float = 3.0,
    first_game_only: bool = False,
) -> Parsed:
    """arena-hard-auto battles or judgments.

    Battles (``data/arena_hard_battles.jsonl``) are read as they are: one vote per row,
    a strong verdict already written as repeated rows. Judgment files (one record per
    question with ``model`` and two ``games``) follow ``show_result.py``: game 1 shows the
    baseline as A and the model as B, game 2 swaps them; both become votes with side a =
    baseline and side b = model, a strong verdict (``A>>B``, ``B>>A``) weighing
    ``strong_weight`` (3, as arena-hard's ``--weight``) and a verdict-less game being an
    invalid row. ``baseline``: a name, or a map category -> name; by default the record's
    own ``baseline``, else arena-hard v2.0's baseline of its ``category``, else gpt-4-0314.

    >>> import tempfile, pathlib, json
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "j.jsonl"
    >>> _ = p.write_text(json.dumps({"question_id": 1, "model": "m", "judge": "gpt-4",
    ...     "games": [{"score": "A>>B"}, {"score": "A>B"}]}) + "\\n")
    >>> v = read_arena_hard(p).votes
    >>> v.items.names, v.outcome.tolist(), v.weight.tolist()
    (('gpt-4-0314', 'm'), [0, 1], [3.0, 1.0])
    """
    src = Table.of(src)
    if "games" not in src.peek_keys():
        return pairwise_table(src, ARENA_HARD_ROLES, columns, FASTCHAT_LABELS, items)
    if columns:
        raise ValueError("arena-hard judgment files take no columns= mapping")
    recs = src.records()
    if recs.n_read == 0:
        raise src.empty()
    a_l: list[Any] = []
    b_l: list[Any] = []
    p_l: list[Any] = []
    j_l: list[Any] = []
    out_l: list[int] = []
    w_l: list[float] = []
    lines: list[int] = []
    bad: list[tuple[int, str, Any, str, str]] = []
    for rec, line in zip(recs.rows, recs.lines):
        base = _baseline(rec, baseline)
        games = rec.get("games")
        games = games if isinstance(games, list) else []
        for g in range(1 if first_game_only else 2):
            game = games[g] if g < len(games) else None
            score = game.get("score") if isinstance(game, dict) else None
            verdict = VERDICTS.get(str(score).strip()) if score is not None else None
            outcome, w = -1, 0.0
            if verdict is not None:
                side, strong = verdict
                w = strong_weight if strong else 1.0
                # game 1: A = baseline (side a); game 2: A = model (side b)
                outcome = TIE if side is None else (A if (side == "A") == (g == 0) else B)
            elif score is None:
                bad.append((len(lines), f"games[{g}].score", None, "missing verdict",
                            "the judge gave no [[A>B]]-style verdict; re-judge or skip"))
            else:
                bad.append((len(lines), f"games[{g}].score", score, f"unknown verdict {score!r}",
                            f"expected one of {', '.join(VERDICTS)}"))
            a_l.append(base)
            b_l.append(rec.get("model"))
            out_l.append(outcome)
            w_l.append(w)
            p_l.append(rec.get("question_id", rec.get("uid")))
            j_l.append(rec.get("judge"))
            lines.append(line)
    frame = frame_from_lists(src, lines, {"baseline": a_l, "model": b_l, "question_id": p_l,
                                          "judge": j_l})
    frame.problems, frame.n_read = recs.problems, recs.n_read
    probs = Problems(frame)
    for row, fld, value, reason, fix in bad:
        kind = "missing_value" if value is None else "unknown_label"
        probs.add(row, src.problem(lines[row], reason, fix, kind, field=fld, value=value))
    items_ = Items(frame, probs, ["baseline", "model"], items)
    return build_pairwise(frame, probs, items_, np.asarray(out_l, dtype=np.int64),
                          weight_x=np.asarray(w_l), annotator="judge", prompt="question_id")


def _baseline(rec: Mapping[str, Any], baseline: str | Mapping[str, str] | None) -> Any:
    if isinstance(baseline, str):
        return baseline
    cat = rec.get("category")
    if isinstance(baseline, Mapping):
        return baseline.get(cat)  # type: ignore[arg-type]
    if rec.get("baseline"):
        return rec["baseline"]
    return V2_BASELINES.get(cat, V01_BASELINE) if cat else V01_BASELINE  # type: ignore[arg-type]


# -- MT-Bench -----------------------------------------------------------------------
MTBENCH_ROLES = {
    "a": Role(("model_1",), "side a"),
    "b": Role(("model_2",), "side b"),
    "g1": Role(("g1_winner",), "game 1's winner"),
    "g2": Role(("g2_winner",), "game 2's winner (positions swapped)"),
    "annotator": Role(("judge",), "judge ids", False),
    "prompt": Role(("question_id",), "prompt ids", False),
}
_ERROR = 9


@register("mtbench", gives="PairwiseVotes", priority=25, describe="MT-Bench pair judgments: question_id, model_1, "
          "model_2, g1_winner, g2_winner (model_1|model_2|tie|error), judge, turn",
          detect=lambda kind, keys, first: {"model_1", "model_2", "g1_winner", "g2_winner"} <= keys)
def read_mtbench(
    src: str | Path | Table, *, columns: Columns = None, items: ItemIndex | None = None
) -> Parsed:
    """MT-Bench pairwise judgments (FastChat ``llm_judge``, ``*_pair.jsonl``).

    Each row holds two games, the second with positions swapped (its winner already named
    as ``model_1``/``model_2``). As in FastChat's ``show_result.py``: a win needs both games
    to agree; ``g1_winner == "tie"`` or a disagreement is a tie; a row where either game
    is ``error`` is invalid (FastChat drops it). ``judge`` (e.g. ``["gpt-4", "pair-v2"]``)
    becomes the annotator ``"gpt-4/pair-v2"``.

    >>> import tempfile, pathlib, json
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.jsonl"
    >>> rows = [{"model_1": "x", "model_2": "y", "g1_winner": "model_1", "g2_winner": w}
    ...         for w in ("model_1", "model_2")]
    >>> _ = p.write_text("\\n".join(json.dumps(r) for r in rows))
    >>> read_mtbench(p).votes.outcome.tolist()
    [0, 2]
    """
    src = Table.of(src)
    col = resolve(src, MTBENCH_ROLES, columns)
    cats = {c: need(MTBENCH_ROLES[k], k) for k, c in col.items() if c is not None}
    frame = load_frame(src, cats)
    probs = Problems(frame)
    labels = {"model_1": A, "model_2": B, "tie": TIE, "error": _ERROR}
    g1 = map_labels(frame, probs, col["g1"], labels)  # type: ignore[arg-type]
    g2 = map_labels(frame, probs, col["g2"], labels)  # type: ignore[arg-type]
    for key, g in (("g1", g1), ("g2", g2)):
        cat = frame.cols[col[key]]  # type: ignore[index]
        probs.flag(g == _ERROR, field=col[key], kind="judge_error", value=cat.value,
                   reason=lambda v: "the judge returned 'error'",
                   fix="re-run the judgment for this question")
    outcome = np.where((g1 == TIE) | (g1 != g2), TIE, g1)
    items_ = Items(frame, probs, [col["a"], col["b"]], items)  # type: ignore[list-item]
    return build_pairwise(frame, probs, items_, outcome, annotator=col["annotator"],
                          prompt=col["prompt"])


# -- AlpacaEval ---------------------------------------------------------------------
ALPACA_ROLES = {
    "a": Role(("generator_1",), "side a"),
    "b": Role(("generator_2",), "side b"),
    "preference": Role(("preference",), "the preference"),
    "annotator": Role(("annotator",), "annotator ids", False),
    "prompt": Role(("instruction",), "prompt ids", False),
}


@register("alpaca_eval", gives="PairwiseVotes", priority=30, describe="AlpacaEval annotations: generator_1, "
          "generator_2, preference in [1, 2] (soft)",
          detect=lambda kind, keys, first: {"generator_1", "generator_2", "preference"} <= keys)
def read_alpaca_eval(
    src: str | Path | Table, *, columns: Columns = None, items: ItemIndex | None = None
) -> Parsed:
    """AlpacaEval annotations (``annotations.json``): ``preference`` 1 means output 1 is
    better, 2 output 2, values between are soft, so ``soft`` = p(a preferred) =
    ``2 - preference``; ``outcome`` is its rounding (1.5 is a tie). As in AlpacaEval's
    ``metrics/helpers.py``, ``0`` is the legacy code for a draw (read as 1.5); a missing or
    NaN preference, or one outside [1, 2], is an invalid row. ``instruction`` is the prompt.

    >>> import tempfile, pathlib, json
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.json"
    >>> _ = p.write_text(json.dumps([{"generator_1": "gpt4", "generator_2": "x",
    ...     "preference": w} for w in (1.0, 1.75, 0)]))
    >>> v = read_alpaca_eval(p).votes
    >>> v.soft.tolist(), v.outcome.tolist()
    ([1.0, 0.25, 0.5], [0, 1, 2])
    """
    src = Table.of(src)
    col = resolve(src, ALPACA_ROLES, columns)
    cats = {c: need(ALPACA_ROLES[k], k) for k, c in col.items() if c and k != "preference"}
    pref_col = col["preference"]
    assert pref_col is not None
    frame = load_frame(src, cats, {pref_col: ("the preference", "preference")})
    probs = Problems(frame)
    num = frame.cols[pref_col]
    pref = np.where(num.x == 0, 1.5, num.x)  # type: ignore[union-attr]
    with np.errstate(invalid="ignore"):
        bad = ~((pref >= 1) & (pref <= 2))
    probs.flag(bad, field=pref_col, kind="bad_preference", value=num.value,
               reason=lambda v: "missing preference" if v is None or np.isnan(v)
               else f"preference {v!r} is outside [1, 2]",
               fix="1 = output 1 better, 2 = output 2 better, 1.5 = tie")
    soft = np.where(bad, 0.5, 2.0 - np.where(bad, 1.5, pref))
    outcome = np.where(soft > 0.5, A, np.where(soft < 0.5, B, TIE))
    items_ = Items(frame, probs, [col["a"], col["b"]], items)  # type: ignore[list-item]
    return build_pairwise(frame, probs, items_, outcome, annotator=col["annotator"],
                          prompt=col["prompt"], soft=soft)
