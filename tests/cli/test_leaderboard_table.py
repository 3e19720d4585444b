"""The leaderboard table laid out by prefkit (cli._common.leaderboard_table) against rich's own
``Table`` (the reference: what prefkit printed before, ~30x slower), cell for cell."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table
from rich.text import Text

from prefkit.cli._common import _clip, leaderboard_table


def _rich(records, top):
    """rich's Table as prefkit built it up to 0.4 (heavy-head box, right-justified numbers)."""
    t = Table(header_style="bold")
    has = {k for r in records for k in r}
    t.add_column("rank", justify="right")
    t.add_column("item", no_wrap=True)
    t.add_column("rating", justify="right")
    for col, key in (("interval", "lower"), ("rank range", "rank_lower"), ("tier", "tier"),
                     ("votes", "votes")):
        if key in has:
            t.add_column(col, justify="right")
    for r in records[: top or len(records)]:
        name = Text(_clip(r["item"]))
        if r.get("provisional"):
            name.append(" (provisional)", style="yellow")
        row = [str(r["rank"]), name, f"{r['rating']:.1f}"]
        if "lower" in has:
            row.append(f"{r['lower']:.1f} – {r['upper']:.1f}")
        if "rank_lower" in has:
            lo, hi = r["rank_lower"], r["rank_upper"]
            row.append(f"{lo}" if lo == hi else f"{lo}–{hi}")
        if "tier" in has:
            row.append(str(r["tier"]))
        if "votes" in has:
            row.append(f"{r['votes']:,.0f}")
        t.add_row(*row)
    return t


def _render(renderable) -> str:
    c = Console(file=io.StringIO(), width=400, color_system=None)
    c.print(renderable, soft_wrap=isinstance(renderable, Text))
    return c.file.getvalue()


RECORDS = [
    dict(rank=1, item="gpt-4o", rating=1203.94, lower=1199.8, upper=1207.3, rank_lower=1,
         rank_upper=1, tier=1, votes=14514.0),
    dict(rank=2, item="好的模型 [bold]", rating=1187.2, lower=1183.6, upper=1190.3,
         rank_lower=2, rank_upper=4, tier=2, votes=20071.0, provisional=True),
    dict(rank=3, item="L" * 200, rating=987.25, lower=900.0, upper=1000.5, rank_lower=2,
         rank_upper=3, tier=2, votes=7.0),
    dict(rank=4, item="😀 emoji", rating=-12.0, lower=-20.0, upper=-1.0, rank_lower=4,
         rank_upper=4, tier=3, votes=1.0),
]


@pytest.mark.parametrize("keys,top", [
    (None, None), (None, 2), ({"rank", "item", "rating", "votes"}, None),
    ({"rank", "item", "rating", "provisional"}, None), ({"rank", "item", "rating", "tier"}, 3)])
def test_same_cells_as_rich_table(keys, top):
    records = [{k: v for k, v in r.items() if keys is None or k in keys} for r in RECORDS]
    ours = _render(leaderboard_table(records, title="the title", top=top)).splitlines()
    theirs = _render(_rich(records, top)).splitlines()
    assert ours[0] == "the title"  # one line, never wrapped to the table's width
    assert ours[1:] == theirs


def test_styles_kept():
    t = leaderboard_table(RECORDS, title="x", top=None)
    styled = {(str(s.style), t.plain[s.start:s.end]) for s in t.spans}
    assert ("yellow", " (provisional)") in styled and ("bold", "rating") in styled
    assert ("italic", "x\n") in styled
