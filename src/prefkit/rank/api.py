"""One call from preference data to a leaderboard with intervals: :func:`rank`.

This is where the model is chosen for the data (rankings get Plackett-Luce, counts and
votes a pairwise fit or an online rating) and where the default intervals of each model,
and their fallbacks, are decided. ``prefkit rank`` only maps its flags onto these
arguments (and these messages onto its flags: :class:`OptionError` says which rule a
refusal broke).

The module imports nothing heavy at import time: the fits load on first call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from prefkit.data.records import PairCounts, PairwiseVotes, Rankings
    from prefkit.rank.leaderboard import Leaderboard

__all__ = ["CLUSTERS", "INTERVALS", "MODELS", "TIES", "OptionError", "check_options",
           "counts_suffice", "rank", "resolve_intervals"]

MODELS = ("bradley_terry", "thurstone", "plackett_luce", "elo", "weng_lin")
TIES = ("half", "ignore", "davidson", "rao_kupper")
INTERVALS = ("bootstrap", "hessian", "sandwich", "none")
CLUSTERS = ("annotator", "prompt")
ONLINE = ("elo", "weng_lin")


class OptionError(ValueError):
    """Options that do not go together, or do not fit the data.

    ``rule`` names the check that failed (e.g. ``"elo_intervals"``) and ``details`` holds
    what a front end needs to word it in its own terms (the CLI names its flags)."""

    def __init__(self, rule: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.rule = rule
        self.details = details


def _one_of(name: str, value: object, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def _fits_plackett_luce(model: str, data: object) -> bool:
    """Rankings ranked with the default model get Plackett-Luce (its K-wise extension)."""
    from prefkit.data.records import Rankings

    return model == "plackett_luce" or (isinstance(data, Rankings) and model == "bradley_terry")


def resolve_intervals(model: str, intervals: str | None = None, data: object = None) -> str:
    """The intervals a fit gets: ``intervals`` if given, else the model's default
    (bootstrap for Bradley-Terry and Thurstone, Hessian for Plackett-Luce and Weng-Lin,
    whose posterior it is, none for online Elo). A Plackett-Luce fit (``data`` rankings)
    has Hessian intervals in place of the bootstrap, which refits pairwise models only."""
    if intervals is None:
        intervals = {"elo": "none", "weng_lin": "hessian",
                     "plackett_luce": "hessian"}.get(model, "bootstrap")
    if intervals == "bootstrap" and data is not None and _fits_plackett_luce(model, data):
        return "hessian"
    return intervals


def counts_suffice(model: str = "bradley_terry", style: Sequence[str] = (),
                   cluster: str | None = None) -> bool:
    """Whether :func:`rank` needs no more than pair counts (no covariates, no clusters, a
    batch pairwise model): then a big table can be read as aggregated counts."""
    return not style and cluster is None and model in ("bradley_terry", "thurstone")


def check_options(
    model: str = "bradley_terry",
    ties: str = "half",
    style: Sequence[str] = (),
    intervals: str | None = None,
    cluster: str | None = None,
) -> str:
    """Refuse option combinations that would be ignored (:class:`OptionError`), before any
    data is read; returns the intervals the model gets by default or as given."""
    _one_of("model", model, MODELS)
    _one_of("ties", ties, TIES)
    if intervals is not None:
        _one_of("intervals", intervals, INTERVALS)
    if cluster is not None:
        _one_of("cluster", cluster, CLUSTERS)
    if model in ONLINE and ties != "half":
        raise OptionError(
            "online_ties", f"model={model!r} scores a tie as half a win (a shared rank for "
            f"weng_lin); ties={ties!r} applies to bradley_terry (and thurstone: 'half' or "
            "'ignore')", model=model, ties=ties)
    if model == "thurstone" and ties in ("davidson", "rao_kupper"):
        raise OptionError(
            "thurstone_ties", f"ties={ties!r} is a Bradley-Terry tie model; use "
            "model='bradley_terry' with it, or ties='half' or 'ignore' with "
            "model='thurstone'", model=model, ties=ties)
    if style and model != "bradley_terry":
        raise OptionError(
            "style_model", f"style is a Bradley-Terry covariate; drop it or use "
            f"model='bradley_terry' (got model={model!r})", model=model)
    resolved = resolve_intervals(model, intervals)
    if model == "elo" and resolved != "none":
        raise OptionError(
            "elo_intervals", "online Elo gives no intervals (its ratings depend on the "
            "order of the votes); use model='bradley_terry' for intervals, or "
            "intervals='none'", intervals=resolved)
    if model == "weng_lin" and resolved not in ("hessian", "none"):
        raise OptionError(
            "weng_lin_intervals", "model='weng_lin' has posterior intervals (mu +- z "
            f"sigma): use intervals='hessian' (its default) or 'none', not {resolved!r}",
            intervals=resolved)
    if model == "plackett_luce" and resolved in ("bootstrap", "sandwich"):
        raise OptionError(
            "plackett_luce_intervals", "model='plackett_luce' has Hessian intervals only "
            "(the bootstrap and the sandwich refit pairwise models): use "
            "intervals='hessian' or 'none'", intervals=resolved)
    if cluster is not None and resolved not in ("bootstrap", "sandwich"):
        raise OptionError(
            "cluster_intervals", f"cluster={cluster!r} resamples (bootstrap) or sums "
            f"(sandwich) by {cluster}; it has no effect with intervals={resolved!r}",
            cluster=cluster, intervals=resolved)
    return resolved


def _fit(data: Any, model: str, ties: str, style: Sequence[str], prior: Any,
         style_transform: str) -> Leaderboard:
    from prefkit.data.records import PairCounts, PairwiseVotes, Rankings

    if _fits_plackett_luce(model, data):
        from prefkit.rank.plackett_luce import fit_plackett_luce

        if not isinstance(data, Rankings):
            raise OptionError(
                "plackett_luce_data", "model='plackett_luce' needs rankings or K-wise "
                f"votes (a Rankings), got {type(data).__name__}", model=model)
        return fit_plackett_luce(data, prior=prior)
    if isinstance(data, Rankings):
        data = data.to_pairwise()
    if model == "bradley_terry":
        from prefkit.rank.bradley_terry import fit_bradley_terry

        return fit_bradley_terry(data, ties=ties, style=list(style), prior=prior,  # type: ignore[arg-type]
                                 style_transform=style_transform)  # type: ignore[arg-type]
    if model == "thurstone":
        from prefkit.rank.bradley_terry import fit_thurstone

        return fit_thurstone(data, ties=ties, prior=prior)  # type: ignore[arg-type]
    if isinstance(data, PairCounts):
        raise OptionError(
            "online_counts", f"model={model!r} replays votes in order; aggregated counts "
            "(PairCounts) have no order", model=model)
    if not isinstance(data, PairwiseVotes):
        raise TypeError(f"data must be PairwiseVotes, PairCounts or Rankings, got "
                        f"{type(data).__name__}")
    from prefkit.rank import online

    if model == "elo":
        return online.elo(data)
    return online.weng_lin(data).to_leaderboard()


def rank(
    data: PairwiseVotes | PairCounts | Rankings,
    *,
    model: str = "bradley_terry",
    ties: str = "half",
    style: Sequence[str] = (),
    style_transform: str = "lmarena",
    intervals: str | None = None,
    rounds: int = 1000,
    cluster: str | None = None,
    confidence: float = 0.95,
    prior: float | str | None = "auto",
    anchor: tuple[str, float] | None = None,
    rng: np.random.Generator | None = None,
) -> Leaderboard:
    """Fit ``model`` to ``data`` and attach intervals: what ``prefkit rank`` computes.

    Args:
        data: pairwise votes, pair counts or rankings. Rankings with the default model
            get Plackett-Luce; with ``thurstone`` they are broken into pairs.
        model: ``"bradley_terry"``, ``"thurstone"``, ``"plackett_luce"``, ``"elo"`` or
            ``"weng_lin"`` (the last two are online ratings that replay votes in order).
        ties, style, style_transform, prior: as :func:`~prefkit.rank.fit_bradley_terry`.
        intervals: ``"bootstrap"``, ``"hessian"``, ``"sandwich"`` or ``"none"``; ``None``
            for the model's default (:func:`resolve_intervals`). A Plackett-Luce fit
            asked for the bootstrap gets Hessian intervals, with a warning.
        rounds, cluster, confidence: of the bootstrap (``cluster`` also of the sandwich).
        anchor: ``(item, rating)`` pins one item's rating (LMArena pins
            ``mixtral-8x7b-instruct-v0.1`` at 1114).
        rng: drives the bootstrap and the simulation of simultaneous intervals (never
            the point estimate); ``None`` is ``np.random.default_rng(0)``.

    Raises:
        OptionError: (a ``ValueError``) for options that do not go together or do not
            fit the data, before anything is fitted; ``KeyError`` for an unknown anchor.

    Example:
        >>> from prefkit.data import PairwiseVotes
        >>> v = PairwiseVotes.from_names(["x", "y", "z", "x"], ["y", "z", "x", "z"],
        ...                              ["a", "a", "b", "tie"])
        >>> rank(v, intervals="none").items.names
        ('x', 'y', 'z')
    """
    import warnings

    check_options(model, ties, style, intervals, cluster)
    if anchor is not None:
        name = anchor[0]
        if name not in data.items:
            from difflib import get_close_matches

            close = get_close_matches(name, data.items.names, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise OptionError("anchor_unknown", f"anchor item {name!r} is not in the data{hint}",
                              item=name, close=close, items=data.items.names)
    lb = _fit(data, model, ties, style, prior, style_transform)
    how = resolve_intervals(model, intervals, data)
    if intervals == "bootstrap" and how != "bootstrap":
        warnings.warn("the bootstrap refits pairwise models only; Plackett-Luce gets "
                      "Hessian intervals", UserWarning, stacklevel=2)
    if how != "none":
        import numpy as np

        from prefkit.rank import uncertainty

        rng = np.random.default_rng(0) if rng is None else rng
        if model == "weng_lin":
            from dataclasses import replace

            lb = uncertainty.with_intervals(lb, method="hessian", confidence=confidence)
            lb = replace(lb, interval_method="weng-lin posterior (mu +- z sigma)")
        elif how == "bootstrap":
            lb = uncertainty.bootstrap(data, leaderboard=lb, rng=rng, rounds=rounds,
                                       cluster=cluster, confidence=confidence, ties=ties,
                                       style=list(style), style_transform=style_transform,
                                       prior=prior)
        else:
            # the fit options travel with the leaderboard; rng drives the max-t simulation
            lb = uncertainty.with_intervals(lb, data, method=how, cluster=cluster,
                                            confidence=confidence, rng=rng,
                                            style_transform=style_transform)
    if anchor is not None:
        lb = lb.anchored(anchor[0], anchor[1])
    return lb
