"""Figures for leaderboards: ratings with intervals, and a win-probability heatmap."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from prefkit.runs import plural

if TYPE_CHECKING:
    from prefkit.rank.leaderboard import Leaderboard

__all__ = ["plot_leaderboard"]


def plot_leaderboard(
    lb: Leaderboard,
    path: str | Path | None = None,
    *,
    top: int | None = 40,
    heatmap_top: int = 20,
    title: str | None = None,
) -> Any:
    """Two panels: Elo-scale ratings with their intervals (best at the top; provisional
    items hollow), and the predicted probability that the row item beats the column item
    for the best ``heatmap_top`` items. Writes ``path`` (format from its suffix) if given
    and returns the matplotlib figure."""
    import warnings

    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    order = lb.order()
    shown = order[: top or len(order)]
    k, n = len(shown), lb.n_items
    names = [_short(lb.items.names[i]) for i in shown]
    hm_names = [_short(lb.items.names[i]) for i in order[: min(heatmap_top, n)]]
    family, missing = _fonts_for(names + hm_names)
    if missing:
        shown_chars = " ".join(repr(c) for c in missing[:5])
        warnings.warn(
            f"some item names use characters no installed font can draw ({shown_chars}"
            f"{' ...' if len(missing) > 5 else ''}): they show as boxes in the plot; install "
            "fonts that have them (Debian: fonts-noto-cjk, fonts-noto-color-emoji)",
            UserWarning, stacklevel=2)
    with plt.rc_context({"font.family": family}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        fig = _draw(lb, plt, order, shown, names, hm_names, k, n, title)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=130)
            plt.close(fig)
    return fig


def _short(name: str, limit: int = 48) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


#: Fonts tried in order for item names (installed ones only): DejaVu covers Latin, Greek
#: and Cyrillic; the Noto CJK and emoji fonts the rest, where the system has them.
_FONT_PREFERENCE = ("DejaVu Sans", "Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK TC",
                    "Noto Sans CJK KR", "WenQuanYi Zen Hei", "Noto Sans", "Noto Color Emoji",
                    "Noto Emoji", "Symbola")


def _fonts_for(texts: list[str]) -> tuple[list[str], list[str]]:
    """The installed fonts to draw ``texts`` with (a fallback list), and the characters
    none of them has."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    installed = {f.name: f.fname for f in font_manager.fontManager.ttflist}
    family = [name for name in _FONT_PREFERENCE if name in installed] or ["sans-serif"]
    chars = {c for t in texts for c in t if ord(c) > 0x7F and not c.isspace()}
    if not chars:
        return family, []
    covered: set[int] = set()
    for name in family:
        if name in installed:
            try:
                covered |= set(FT2Font(installed[name]).get_charmap())
            except (OSError, RuntimeError):  # an unreadable font file: skip it
                continue
    return family, sorted(c for c in chars if ord(c) not in covered and c != "…")


def _draw(lb: Leaderboard, plt: Any, order: Any, shown: Any, names: list[str],
          labels: list[str], k: int, n: int, title: str | None) -> Any:
    ratings = lb.ratings[shown]
    h = len(labels)
    hm = order[:h]
    height = max(4.0, 0.22 * k + 1.5)
    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(16, height), gridspec_kw={"width_ratios": [1.0, 1.1]}
    )
    y = np.arange(k)[::-1]
    if lb.intervals is not None:
        lo, hi = lb.intervals[shown, 0], lb.intervals[shown, 1]
        ax.errorbar(ratings, y, xerr=[ratings - lo, hi - ratings], fmt="none", ecolor="0.5",
                    capsize=2, lw=1)
    prov = lb.provisional[shown] if lb.provisional is not None else np.zeros(k, bool)
    ax.scatter(ratings[~prov], y[~prov], color="C0", zorder=3, s=18)
    if prov.any():
        ax.scatter(ratings[prov], y[prov], facecolor="none", edgecolor="C3", zorder=3, s=18,
                   label="provisional")
        ax.legend(loc="lower right")
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlabel("rating (Elo scale)")
    what = f"{int(lb.confidence * 100)}% {lb.interval_method} intervals" if lb.intervals is not None else "no intervals"
    part = f"top {k} of {n} items" if k < n else plural(n, "item")
    ax.set_title(title or f"{lb.method} ratings, {part}, {what}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)

    p = lb.win_probability()[np.ix_(hm, hm)]
    span = max(float(np.abs(p - 0.5).max()), 0.05)  # centre the colours on a coin flip
    im = ax2.imshow(p, cmap="RdBu", vmin=0.5 - span, vmax=0.5 + span)
    ax2.set_xticks(range(h))
    ax2.set_xticklabels(labels, rotation=90, fontsize=7)
    ax2.set_yticks(range(h))
    ax2.set_yticklabels(labels, fontsize=7)
    if h <= 25:
        for r in range(h):
            for c in range(h):
                if r != c:
                    ax2.text(c, r, f"{p[r, c]:.2f}", ha="center", va="center", fontsize=5.5,
                             color="white" if abs(p[r, c] - 0.5) > 0.6 * span else "black")
    best = f"the best {h} of {n}" if h < n else f"all {n}"
    ax2.set_title(f"P(row beats column), model-predicted, {best}", fontsize=10)
    fig.colorbar(im, ax=ax2, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig
