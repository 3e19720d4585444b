"""Readers of tabular pairwise formats (CSV / JSONL / JSON / Parquet with one vote per row):
generic, fastchat, arena_hard, llmfao, football. Each is one registered function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prefkit.data._build import (
    Items,
    Parsed,
    Problems,
    build_pairwise,
    check_number,
    map_labels,
    norm_label,
)
from prefkit.data._frame import Need, load_frame
from prefkit.data.formats import Role, need, register, resolve
from prefkit.data.stream import LABEL_NOTES
from prefkit.data.table import Table
from prefkit.data.records import ItemIndex

__all__ = ["pairwise_table", "read_fastchat", "read_football", "read_generic", "read_llmfao"]

Columns = Mapping[str, str] | None

A, B, TIE, BOTH = 0, 1, 2, 3
FASTCHAT_LABELS = {"model_a": A, "model_b": B, "tie": TIE, "tie (bothbad)": BOTH}
GENERIC_LABELS = {
    "a": A, "model_a": A, "item_a": A, "b": B, "model_b": B, "item_b": B, "tie": TIE,
    "tie (bothbad)": BOTH, "both_bad": BOTH, "0": A, "1": B, "2": TIE, "3": BOTH,
}


def pairwise_table(
    src: Table,
    roles: Mapping[str, Role],
    columns: Columns,
    labels: Mapping[str, int],
    items: ItemIndex | None,
    *,
    features: Mapping[str, tuple[str, str]] | None = None,
    maybe_features: Mapping[str, tuple[str, str]] | None = None,
    feature_fix: str = "",
    label_from_sides: bool = False,
    label_notes: Mapping[str, str] | None = None,
) -> Parsed:
    """The common path of one-vote-per-row tables. Roles: ``a``, ``b``, ``winner`` and
    optionally ``weight``, ``annotator``, ``prompt``. ``label_notes``: winner label -> what
    was made of it; the rows holding it are counted in one note (``Parsed.warnings``)."""
    col = resolve(src, roles, columns)
    cats: dict[str, Need] = {}
    for key in ("a", "b", "winner", "annotator", "prompt"):
        if key in roles and col[key] is not None:
            cats[col[key]] = need(roles[key], key)  # type: ignore[index]
    nums: dict[str, Need] = {}
    if col.get("weight"):
        nums[col["weight"]] = None  # type: ignore[index]
    for name, (ca, cb) in (features or {}).items():
        nums[ca] = nums[cb] = (f"feature {name!r}", "features")
    maybe = [c for pair in (maybe_features or {}).values() for c in pair]
    frame = load_frame(src, cats, nums, maybe_nums=maybe)
    probs = Problems(frame)
    a, b, w = col["a"], col["b"], col["winner"]
    assert a is not None and b is not None and w is not None
    if label_from_sides:  # a winner may name the side's column, e.g. "left" for column left
        labels = {**labels, a.lower(): A, b.lower(): B}
    outcome = map_labels(frame, probs, w, labels)
    items_ = Items(frame, probs, [a, b], items)
    feats = dict(features or {})
    feats.update({k: v for k, v in (maybe_features or {}).items()
                  if v[0] in frame.cols and v[1] in frame.cols})
    parsed = build_pairwise(
        frame, probs, items_, outcome, weight=col.get("weight"), annotator=col.get("annotator"),
        prompt=col.get("prompt"), features=feats, feature_fix=feature_fix,
    )
    cat: Any = frame.cols[w]
    for label, made in (label_notes or {}).items():
        hit = [i for i, v in enumerate(cat.values) if norm_label(v) == label]
        n = int(np.isin(cat.codes, hit).sum()) if hit else 0
        if n:
            parsed.warnings.append(src.problem(None, f"{n:,} row{'s' if n > 1 else ''} with "
                                               f"{w} {label!r} {made}", "", "label_note",
                                               field=w, value=label, skippable=True))
    return parsed


# -- generic ------------------------------------------------------------------------
GENERIC_ROLES = {
    "a": Role(("item_a", "model_a"), "side a"),
    "b": Role(("item_b", "model_b"), "side b"),
    "winner": Role(("winner",), "the outcome"),
    "weight": Role(("weight",), "vote weights", False),
    "annotator": Role(("annotator", "judge"), "annotator ids", False),
    "prompt": Role(("prompt", "question_id"), "prompt ids", False),
}


def _has_sides(keys: frozenset[str]) -> bool:
    return bool(keys & {"item_a", "model_a"}) and bool(keys & {"item_b", "model_b"})


@register("generic", gives="PairwiseVotes", priority=90, describe="one vote per row: item_a|model_a, item_b|model_b, "
          "winner (a|b|tie|both_bad or 0|1|2|3; tie (inconsistent) read as a tie), optional weight, annotator, prompt, <f>_a/<f>_b",
          detect=lambda kind, keys, first: _has_sides(keys) and "winner" in keys)
def read_generic(
    src: str | Path | Table, *, columns: Columns = None, items: ItemIndex | None = None,
    features: Sequence[str] | None = None,
) -> Parsed:
    """CSV, JSONL, JSON list or Parquet, one vote per row.

    Columns (override any with ``columns={"a": ..., "b": ..., "winner": ..., "weight": ...,
    "annotator": ..., "prompt": ...}``): ``item_a``/``model_a``, ``item_b``/``model_b``,
    ``winner``; optional ``weight``, ``annotator``/``judge``, ``prompt``/``question_id``.
    Winner labels (any case): ``a``/``model_a``/``item_a``/``0`` (side a wins),
    ``b``/``model_b``/``item_b``/``1``, ``tie``/``2``, ``both_bad``/``tie (bothbad)``/``3``
    (``tie (inconsistent)``, MT-Bench's judge whose two orders disagreed, is read as a tie,
    counted in a note, as by the fastchat reader and the Parquet stream);
    also the name of the side's column (e.g. ``left`` when ``columns={"a": "left"}``).
    Per-side features: every numeric column pair ``<name>_a``/``<name>_b`` (e.g.
    ``length_a, length_b``), or only those named in ``features=``.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "v.csv"
    >>> _ = p.write_text("item_a,item_b,winner,length_a,length_b\\nx,y,a,10,20\\ny,z,tie,5,5\\n")
    >>> v = read_generic(p).votes
    >>> v.items.names, v.outcome.tolist(), v.features["length"][1].tolist()
    (('x', 'y', 'z'), [0, 2], [20.0, 5.0])
    """
    src = Table.of(src)
    sides = {"item", "model"}
    if features is None:
        header = src.header()
        have = set(header)
        maybe = {c[:-2]: (c, c[:-2] + "_b") for c in header
                 if c.endswith("_a") and c[:-2] + "_b" in have and c[:-2] not in sides}
        for c in (columns or {}).values():  # a column used for a role is not a feature
            maybe = {k: v for k, v in maybe.items() if c not in v}
        fixed = None
    else:
        maybe, fixed = None, {f: (f"{f}_a", f"{f}_b") for f in features}
    return pairwise_table(src, GENERIC_ROLES, columns, {**GENERIC_LABELS, **_AS_TIE}, items,
                          features=fixed, maybe_features=maybe, label_from_sides=True,
                          label_notes=INCONSISTENT)


# -- fastchat -----------------------------------------------------------------------
FASTCHAT_ROLES = {
    "a": Role(("model_a",), "side a"),
    "b": Role(("model_b",), "side b"),
    "winner": Role(("winner",), "the outcome"),
    "annotator": Role(("judge",), "annotator ids", False),
    "prompt": Role(("question_id",), "prompt ids", False),
}
#: FastChat's STYLE_CONTROL_ELEMENTS_V1 (fastchat/serve/monitor/elo_analysis.py): tokens,
#: headers, lists and bold spans of each side's answers; some dumps name tokens
#: sum_assistant_tokens_a/_b. A count stored as a dict ({"h1": .., "h2": ..}) is summed.
STYLE_FIELDS = {
    "length": [("sum_assistant_a_tokens", "sum_assistant_b_tokens"),
               ("sum_assistant_tokens_a", "sum_assistant_tokens_b")],
    "header": [("header_count_a", "header_count_b")],
    "list": [("list_count_a", "list_count_b")],
    "bold": [("bold_count_a", "bold_count_b")],
}
_FASTCHAT_KEYS = {"judge", "conv_metadata", "anony", "tstamp", "turn", "language",
                  "conversation_a", "question_id", "sum_assistant_a_tokens"}


def _style_columns(src: Table) -> dict[str, tuple[str, str]]:
    """Style feature -> (column a, column b), nested under conv_metadata or flattened."""
    header = set(src.header())
    sub: set[str] = set()
    if "conv_metadata" in header:
        if src.kind == "parquet":
            import pyarrow.parquet as pq

            t = pq.read_schema(src.path).field("conv_metadata").type
            sub = {t.field(i).name for i in range(getattr(t, "num_fields", 0))}
        elif src.kind != "csv":
            for r in src.records().rows[:1000]:
                if isinstance(r.get("conv_metadata"), dict):
                    sub.update(r["conv_metadata"])
    out: dict[str, tuple[str, str]] = {}
    for feat, options in STYLE_FIELDS.items():
        for ka, kb in options:
            if ka in sub and kb in sub:
                out[feat] = (f"conv_metadata.{ka}", f"conv_metadata.{kb}")
            elif ka in header and kb in header:
                out[feat] = (ka, kb)
            else:
                continue
            break
    return out


#: labels read as another outcome (MT-Bench's 'tie (inconsistent)'), one note each
INCONSISTENT = LABEL_NOTES
_AS_TIE = {label: TIE for label in LABEL_NOTES}


@register("fastchat", gives="PairwiseVotes", priority=80, describe="Chatbot Arena battles: model_a, model_b, winner "
          "(model_a|model_b|tie|tie (bothbad); tie (inconsistent), MT-Bench's judge whose two "
          "orders disagreed, read as a tie), judge, conv_metadata (FastChat clean_battle)",
          detect=lambda kind, keys, first: {"model_a", "model_b", "winner"} <= keys
          and bool(keys & _FASTCHAT_KEYS))
def read_fastchat(
    src: str | Path | Table, *, columns: Columns = None, items: ItemIndex | None = None,
    style: bool | None = None,
) -> Parsed:
    """Chatbot Arena battles (FastChat ``clean_battle_*.json``, JSONL, or Parquet).

    ``judge`` becomes the annotator and ``question_id`` the prompt. With ``style=None``
    (auto) or ``True``, the style-control counts in ``conv_metadata`` become features
    ``length``, ``header``, ``list``, ``bold`` (raw counts per side; FastChat's
    normalisation belongs to the fit). Rows without them are invalid; ``style=False``
    leaves them out. MT-Bench's judgments in this layout (lmsys/mt_bench_human_judgments,
    split ``gpt4_pair``) write ``tie (inconsistent)`` where the judge's two presentation
    orders disagreed: a tie, as FastChat counts it, and the rows so read are counted in a
    note (``Parsed.warnings``).

    >>> import tempfile, pathlib, json
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "b.jsonl"
    >>> _ = p.write_text(json.dumps({"model_a": "x", "model_b": "y", "winner": "tie (bothbad)",
    ...     "judge": "u1", "conv_metadata": {"sum_assistant_a_tokens": 3,
    ...     "sum_assistant_b_tokens": 9}}) + "\\n")
    >>> v = read_fastchat(p).votes
    >>> v.outcome.tolist(), v.annotator.tolist(), v.features["length"][1].tolist()
    ([3], ['u1'], [9.0])
    """
    src = Table.of(src)
    feats = _style_columns(src) if style is not False else {}
    if style and not feats:
        src.fail(None, "no style metadata (conv_metadata with sum_assistant_a_tokens, "
                 "header_count_a, ...)", "pass style=False, or add conv_metadata", "missing_column")
    return pairwise_table(src, FASTCHAT_ROLES, columns, {**FASTCHAT_LABELS, **_AS_TIE}, items,
                          features=feats, label_notes=INCONSISTENT,
                          feature_fix="pass style=False to read without style features")


# -- llmfao -------------------------------------------------------------------------
LLMFAO_ROLES = {
    "a": Role(("left",), "side a"),
    "b": Role(("right",), "side b"),
    "winner": Role(("winner",), "the outcome"),
    "annotator": Role(("worker",), "annotator ids", False),
    "prompt": Role(("prompt",), "prompt ids", False),
}


@register("llmfao", gives="PairwiseVotes", priority=40, describe="LLMFAO comparisons CSV: left, right, winner "
          "(left|right|tie), worker, prompt",
          detect=lambda kind, keys, first: {"left", "right", "winner"} <= keys)
def read_llmfao(
    src: str | Path | Table, *, columns: Columns = None, items: ItemIndex | None = None
) -> Parsed:
    """LLMFAO crowd / GPT-4 comparisons (dustalov/llmfao): ``left`` and ``right`` hold the
    model names and ``winner`` is ``left``, ``right`` or ``tie``; ``worker`` becomes the
    annotator and ``prompt`` the prompt.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.csv"
    >>> _ = p.write_text("prompt,worker,winner,left,right\\n8,58,right,A,B\\n")
    >>> read_llmfao(p).votes.outcome.tolist()
    [1]
    """
    labels = {"left": A, "right": B, "tie": TIE}
    return pairwise_table(Table.of(src), LLMFAO_ROLES, columns, labels, items)


# -- football -----------------------------------------------------------------------
FOOTBALL_ROLES = {
    "a": Role(("home_team",), "side a (home)"),
    "b": Role(("away_team",), "side b (away)"),
    "score_a": Role(("home_score",), "the home score"),
    "score_b": Role(("away_score",), "the away score"),
    "neutral": Role(("neutral",), "the neutral-venue flag", False),
}


@register("football", gives="PairwiseVotes", priority=45, describe="match results: home_team, away_team, home_score, "
          "away_score, neutral (martj42/international_results)",
          detect=lambda kind, keys, first: {"home_team", "away_team", "home_score", "away_score"} <= keys)
def read_football(
    src: str | Path | Table, *, columns: Columns = None, items: ItemIndex | None = None
) -> Parsed:
    """Match results: side a is the home team, side b the away team; the higher score
    wins, equal scores are a tie. Feature ``home`` is ``(1, 0)``, or ``(0, 0)`` when
    ``neutral`` is true. A match without a score (a future fixture, ``NA``) is invalid.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.csv"
    >>> _ = p.write_text("date,home_team,away_team,home_score,away_score,neutral\\n"
    ...                  "1872-11-30,Scotland,England,0,0,FALSE\\n2000-01-01,A,B,2,1,TRUE\\n")
    >>> v = read_football(p).votes
    >>> v.outcome.tolist(), v.features["home"][0].tolist()
    ([2, 0], [1.0, 0.0])
    """
    src = Table.of(src)
    col = resolve(src, FOOTBALL_ROLES, columns)
    a, b, sa, sb, neu = (col[k] for k in ("a", "b", "score_a", "score_b", "neutral"))
    assert a and b and sa and sb
    nums: dict[str, Need] = {sa: need(FOOTBALL_ROLES["score_a"], "score_a"),
                             sb: need(FOOTBALL_ROLES["score_b"], "score_b")}
    if neu:
        nums[neu] = None
    frame = load_frame(src, {a: ("side a (home)", "a"), b: ("side b (away)", "b")}, nums)
    probs = Problems(frame)
    fix = "scores must be numbers; a match without a score (not played yet?) is not a vote"
    xa = check_number(frame, probs, sa, "score", fix)
    xb = check_number(frame, probs, sb, "score", fix)
    outcome = np.where(xa > xb, A, np.where(xa < xb, B, TIE)).astype(np.int64)
    home = np.ones(frame.n)
    if neu:
        flag = check_number(frame, probs, neu, "neutral flag", "neutral must be TRUE or FALSE")
        home = np.where(flag > 0, 0.0, 1.0)
    items_ = Items(frame, probs, [a, b], items)
    return build_pairwise(frame, probs, items_, outcome,
                          feature_x={"home": (home, np.zeros_like(home))})
