"""Design rows for pairwise fits: one row per aggregated cell (or per vote when
covariates vary by vote), with the tie convention applied once, here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from prefkit.data.records import ItemIndex, PairCounts, PairwiseVotes, aggregate

TIES = ("half", "ignore", "davidson", "rao_kupper")
#: How a per-side feature ``(x_a, x_b)`` becomes a style column. ``"lmarena"`` (default) is
#: LMArena's style control as FastChat's ``construct_style_matrices`` (``add_one=True``) and
#: arena-hard compute it: ``(x_a - x_b) / (x_a + x_b + 1)``, then standardised (mean 0,
#: population std 1); ``"relative"`` is the same without the ``+ 1``; ``"difference"`` is
#: ``x_a - x_b`` as is (e.g. a home-advantage indicator).
STYLE_TRANSFORMS = ("lmarena", "relative", "difference")


@dataclass(frozen=True)
class PairRows:
    """``eta_r = s[i_r] - s[j_r] + X_r @ beta``; ``counts[r]`` = (first wins, second wins,
    ties) weights; ``group`` (optional) is a cluster label per row for cluster bootstrap."""

    items: ItemIndex
    i: NDArray[np.int64]
    j: NDArray[np.int64]
    counts: NDArray[np.float64]  # (R, 3)
    X: NDArray[np.float64]  # (R, p)
    feature_names: tuple[str, ...] = ()
    feature_center: NDArray[np.float64] | None = None
    feature_scale: NDArray[np.float64] | None = None
    group: NDArray[np.int64] | None = None
    group_names: tuple[str, ...] = ()

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def with_counts(self, counts: NDArray[np.float64]) -> PairRows:
        return replace(self, counts=counts)


def tie_convention(
    raw: NDArray[np.float64], ties: str, *, inplace: bool = False
) -> NDArray[np.float64]:
    """Raw counts (first wins, second wins, ties) along axis 1 (shape ``(R, 3)`` or
    ``(R, 3, B)``) to fit counts: ``"half"`` adds half of each tie to both sides,
    ``"ignore"`` drops ties, the tie models keep them."""
    if ties in ("davidson", "rao_kupper"):
        return raw
    out = raw if inplace else raw.copy()
    if ties == "half":
        half = 0.5 * raw[:, 2]
        out[:, 0] += half
        out[:, 1] += half
    elif ties != "ignore":
        raise ValueError(f"ties must be 'half', 'ignore', 'davidson' or 'rao_kupper', got {ties!r}")
    out[:, 2] = 0.0
    return out


def _apply_ties(c4: NDArray[np.float64], ties: str) -> NDArray[np.float64]:
    """Counts (first wins, second wins, ties, both-bad ties) to fit counts: both kinds of
    tie are ties, then :func:`tie_convention`."""
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")
    raw = np.column_stack([c4[:, 0], c4[:, 1], c4[:, 2] + c4[:, 3]])
    return tie_convention(raw, ties, inplace=True)


def _style_columns(
    votes: PairwiseVotes, style: Sequence[str], transform: str
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    cols = []
    for name in style:
        if name not in votes.features:
            have = ", ".join(sorted(votes.features)) or "none"
            raise ValueError(
                f"style feature {name!r} is not in the votes (features present: {have}); "
                "readers add per-side features such as 'length' or 'home'"
            )
        xa, xb = votes.features[name]
        if transform == "lmarena":  # FastChat / arena-hard: (a - b) / (a + b + 1)
            col = (xa - xb) / (xa + xb + 1.0)
        elif transform == "relative":  # the same without the +1: (a - b) / (a + b)
            den = xa + xb
            col = np.divide(xa - xb, den, out=np.zeros_like(xa), where=den != 0)
        elif transform == "difference":
            col = xa - xb
        else:
            raise ValueError(
                f"style_transform must be one of {', '.join(STYLE_TRANSFORMS)}; got {transform!r}")
        cols.append(col)
    X = np.column_stack(cols) if cols else np.zeros((len(votes), 0))
    standardise = transform != "difference"
    center = X.mean(axis=0) if standardise else np.zeros(X.shape[1])
    scale = X.std(axis=0) if standardise else np.ones(X.shape[1])
    scale = np.where(scale > 0, scale, 1.0)
    return (X - center) / scale, center, scale


def build_rows(
    data: PairwiseVotes | PairCounts,
    *,
    ties: str = "half",
    style: Sequence[str] = (),
    style_transform: str = "lmarena",
    cluster: str | None = None,
) -> PairRows:
    """Turn votes or counts into fit rows.

    Without covariates, votes are aggregated per pair (the fast path: the fit costs
    O(pairs), not O(votes)). With covariates, each vote is a row. ``cluster`` names a vote
    column (``"annotator"`` or ``"prompt"``) whose labels are kept per row.
    """
    if isinstance(data, PairCounts):
        if style:
            raise ValueError("style control needs per-vote features; pass votes, not counts")
        if cluster:
            raise ValueError("a cluster bootstrap needs per-vote labels; pass votes, not counts")
        return PairRows(
            data.items, data.i.astype(np.int64), data.j.astype(np.int64),
            _apply_ties(data.counts, ties), np.zeros((len(data), 0)),
        )
    votes = data
    if votes.soft is not None and ties in ("davidson", "rao_kupper"):
        raise ValueError("soft preferences cannot be fitted with a tie model; use ties='half'")
    group = group_names = None
    if cluster is not None:
        labels = getattr(votes, cluster, None) if cluster in ("annotator", "prompt") else None
        if labels is None:
            raise ValueError(
                f"cluster={cluster!r} needs a per-vote {cluster!r} column; the votes have none "
                f"(map one when reading: --column {cluster}=NAME on the command line, "
                f"columns={{'{cluster}': NAME}} in read_votes)"
            )
        names, group = np.unique(labels.astype(str), return_inverse=True)
        group_names = tuple(names)
    if not style and votes.soft is None:
        if group is None:
            return build_rows(aggregate(votes), ties=ties)
        # aggregate per (cluster, pair): still far fewer rows than votes
        n, g = votes.n_items, group.astype(np.int64)
        a, b = votes.a.astype(np.int64), votes.b.astype(np.int64)
        swap = a > b
        lo, hi = np.where(swap, b, a), np.where(swap, a, b)
        out = votes.outcome.astype(np.int64)
        out = np.where(swap & (out < 2), 1 - out, out)
        key = (g * n + lo) * n + hi
        uniq, inv = np.unique(key, return_inverse=True)
        assert votes.weight is not None
        c4 = np.bincount(inv * 4 + out, weights=votes.weight, minlength=4 * uniq.size)
        return PairRows(
            votes.items, (uniq // n) % n, uniq % n, _apply_ties(c4.reshape(-1, 4), ties),
            np.zeros((uniq.size, 0)), group=uniq // (n * n), group_names=group_names,
        )
    # one row per vote
    assert votes.weight is not None
    w = votes.weight
    if votes.soft is not None:
        counts = np.column_stack([w * votes.soft, w * (1 - votes.soft), np.zeros_like(w)])
    else:
        c4 = np.zeros((len(votes), 4))
        c4[np.arange(len(votes)), votes.outcome.astype(np.int64)] = w
        counts = _apply_ties(c4, ties)
    X, center, scale = _style_columns(votes, style, style_transform)
    return PairRows(
        votes.items, votes.a.astype(np.int64), votes.b.astype(np.int64), counts, X,
        tuple(style), center, scale, group, group_names or (),
    )
