"""`prefkit rank`: votes in, leaderboard with intervals out."""

from __future__ import annotations

import time
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from prefkit.cli._common import (
    check_plot,
    console,
    fail,
    leaderboard_table,
    note,
    out,
    parse_mapping,
    print_json,
    read_input,
)
from prefkit.runs import plural


class Model(str, Enum):
    bradley_terry = "bradley-terry"
    thurstone = "thurstone"
    plackett_luce = "plackett-luce"
    elo = "elo"
    weng_lin = "weng-lin"


class Ties(str, Enum):
    half = "half"
    ignore = "ignore"
    davidson = "davidson"
    rao_kupper = "rao-kupper"


class StyleTransform(str, Enum):
    lmarena = "lmarena"
    relative = "relative"
    difference = "difference"


class Intervals(str, Enum):
    bootstrap = "bootstrap"
    hessian = "hessian"
    sandwich = "sandwich"
    none = "none"


class Cluster(str, Enum):
    annotator = "annotator"
    prompt = "prompt"


EXAMPLES = """
Examples:

  prefkit rank                                  # the embedded Chatbot Arena votes

  prefkit rank battles.parquet --plot board.png

  prefkit rank battles.jsonl --format fastchat --style length --style list

  prefkit rank crowd.csv --ties davidson --intervals bootstrap --cluster annotator

  prefkit rank results.csv --format football --style home --largest-component --json > board.json

  prefkit rank votes.csv --column a=left --column b=right --column winner=choice
"""


def rank(
    file: Annotated[Optional[Path], typer.Argument(help="Votes file (CSV, JSONL, JSON, Parquet). Omit for the embedded Chatbot Arena votes.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Input format (see `prefkit formats`); auto-detected by default.")] = "auto",
    column: Annotated[Optional[list[str]], typer.Option("--column", "-c", help="Column mapping KEY=NAME for generic files (keys: a, b, winner, weight, annotator, prompt).")] = None,
    model: Annotated[Model, typer.Option(help="Rating model.")] = Model.bradley_terry,
    ties: Annotated[Ties, typer.Option(help="Tie handling: half a win each (LMArena), ignore, or a tie model.")] = Ties.half,
    style: Annotated[Optional[list[str]], typer.Option("--style", help="Control for a per-side feature (repeatable), e.g. length, home.")] = None,
    style_transform: Annotated[StyleTransform, typer.Option(help="How a style feature enters: lmarena = (a-b)/(a+b+1) standardised, as LMArena; relative = (a-b)/(a+b) standardised; difference = a-b as is.")] = StyleTransform.lmarena,
    intervals: Annotated[Optional[Intervals], typer.Option(help="How to compute uncertainty (default: bootstrap for bradley-terry and thurstone, hessian for plackett-luce and weng-lin (its posterior), none for elo).", show_default=False)] = None,
    rounds: Annotated[int, typer.Option(help="Bootstrap rounds.", envvar="PREFKIT_ROUNDS")] = 1000,
    cluster: Annotated[Optional[Cluster], typer.Option(help="Resample whole annotators or prompts (cluster bootstrap / clustered sandwich).")] = None,
    confidence: Annotated[float, typer.Option(help="Confidence level of the intervals.")] = 0.95,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap (the point estimate never depends on it).", envvar="PREFKIT_SEED")] = 0,
    prior: Annotated[str, typer.Option(help="'auto', 'none' (pure MLE) or a prior variance, e.g. 1.0.")] = "auto",
    anchor: Annotated[Optional[str], typer.Option(help="Pin one item's rating, ITEM=RATING (LMArena: mixtral-8x7b-instruct-v0.1=1114).")] = None,
    top: Annotated[Optional[int], typer.Option(help="Show only the best N rows in the table.", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the leaderboard as JSON on stdout.")] = False,
    csv: Annotated[Optional[Path], typer.Option("--csv", help="Also write the leaderboard as CSV.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write ratings with intervals and a win-rate heatmap (PNG/SVG).")] = None,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Skip bad rows (each is reported) instead of stopping.")] = False,
    largest_component: Annotated[bool, typer.Option("--largest-component", help="If the comparison graph is disconnected, rank only its largest component (the others are listed).")] = False,
) -> None:
    """Rank items from pairwise or K-wise votes; print the leaderboard with intervals."""
    t0 = time.perf_counter()
    refuse_stdin(file, "rank")
    _check_options(model, ties, style or [], intervals, cluster, plot)
    anchor_at = _parse_anchor(anchor)
    from prefkit.rank.api import counts_suffice

    # a fit without covariates or clusters needs only pair counts: stream big tables
    aggregate = counts_suffice(model.name, style or [], cluster and cluster.value)
    res = read_input(file, fmt=fmt, columns=parse_mapping(column, "--column"),
                     skip_invalid=skip_invalid, quiet=as_json,
                     aggregate=aggregate and not largest_component)
    data = res.votes
    t_read = time.perf_counter() - t0
    dropped: tuple[str, ...] = ()
    if largest_component:
        data, dropped = _largest_component(data)
    prior_value: float | str | None = _parse_prior(prior)
    _check_style(data, style or [], file)
    lb = _rank(data, file, model=model.name, ties=ties.name, style=style or [],
               style_transform=style_transform.value,
               intervals=intervals.value if intervals is not None else None, rounds=rounds,
               cluster=cluster.value if cluster is not None else None, confidence=confidence,
               prior=prior_value, anchor=anchor_at, seed=seed, quiet=as_json,
               largest_component=largest_component)
    elapsed = time.perf_counter() - t0
    _note_unbounded(lb)
    if plot is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _write(plot, "--plot", lb.plot, "leaderboard.png")
        for w in caught:
            note(f"note: {w.message}")
    if csv is not None:
        _write(csv, "--csv", lambda path: lb.to_frame().to_csv(path))
        note(f"leaderboard written to {csv} (CSV)", style="dim")
    if as_json:
        d = lb.to_dict()
        d["input"] = {"file": str(file) if file else "embedded:chatbotarena_20240814_counts.json",
                      "format": res.format, "rows_read": res.n_read,
                      "rows_skipped": len(res.skipped)}
        d["input"]["items_dropped"] = list(dropped)
        d["seconds"] = round(elapsed, 4)
        print_json(d)
        return
    if dropped:
        note(f"left out {plural(len(dropped), 'item')} outside the largest component: "
             f"{', '.join(dropped)}")
    n_votes = float(lb.n_votes.sum() / 2) if lb.n_votes is not None else float("nan")
    what = (plural(len(data), "ranking") if lb.model == "plackett_luce"
            else f"{n_votes:,.0f} vote{'' if n_votes == 1 else 's'}")
    title = (f"{lb.method} leaderboard — {plural(lb.n_items, 'item')}, {what} "
             f"(format {res.format})")
    out.print(leaderboard_table(lb.to_records(), title=title, top=top), soft_wrap=True)
    for name, coef in lb.coefficients.items():
        se = lb.info.get("coefficient_se", {}).get(name)
        out.print(f"style coefficient {name}: {coef:+.4f}" + (f" (se {se:.4f})" if se else ""))
    for name, v in lb.tie_parameter.items():
        out.print(f"tie parameter {name}: {v:.4f}")
    if lb.intervals is not None:
        against = f" (relative to {lb.anchor[0]}, pinned at {lb.anchor[1]:g})" if lb.anchor else ""
        out.print(f"{int(round(confidence * 100))}% intervals by {lb.interval_method}{against}; "
                  "rank ranges from simultaneous pairwise separation")
    console.print(f"[dim]read {t_read:.2f}s, total {elapsed:.2f}s"
                  + (f"; plot written to {plot}" if plot else "") + "[/]")


def refuse_stdin(file: Path | None, verb: str) -> None:
    """``-`` (standard input) is not a votes file: say how to give the votes instead."""
    if file is not None and str(file) == "-":
        fail(f"{verb} reads votes from a file, not from standard input ('-'); save them to a "
             f"file first (e.g. `cat > votes.csv`) and pass its path: prefkit {verb} votes.csv")


def _parse_anchor(anchor: str | None) -> tuple[str, float] | None:
    """``ITEM=RATING`` -> (item, rating); refused before any reading or fitting."""
    import math

    if not anchor:
        return None
    name, _, value = anchor.rpartition("=")
    try:
        rating = float(value)
    except ValueError:
        rating = float("nan")
    if not name or not math.isfinite(rating):
        fail(f"--anchor expects ITEM=RATING with a finite number as RATING, got {anchor!r} "
             "(e.g. --anchor mixtral-8x7b-instruct-v0.1=1114)")
    return name, rating


def _check_style(data: Any, style: list[str], file: Path | None) -> None:
    features = getattr(data, "features", None) or {}
    for name in style:
        if name not in features:
            have = ", ".join(sorted(features)) or "none"
            fail(f"--style {name}: {file or 'the votes'} has no per-side feature {name!r} "
                 f"(features present: {have}); drop --style {name}, or add the columns "
                 f"{name}_a and {name}_b (its value for each side) to the votes")


def _note_unbounded(lb: Any) -> None:
    """Say why an interval is shown as -inf or inf (never print it unexplained)."""
    import math

    if lb.intervals is None:
        return
    names = [str(r["item"]) for r in lb.to_records()
             if not (math.isfinite(r.get("lower", 0.0)) and math.isfinite(r.get("upper", 0.0)))]
    if names:
        from prefkit.cli._common import _clip

        note(f"note: the interval of {plural(len(names), 'item')} "
             f"({', '.join(_clip(n, 32) for n in names)}) {'is' if len(names) == 1 else 'are'} "
             "unbounded (-inf or inf): too few votes for the bootstrap to bound it (in some "
             "resamples the item only wins or only loses); collect more votes for it, or use "
             "--intervals hessian for intervals from the prior-regularised fit")


def _write(path: Path, flag: str, write: Any, example: str | None = None) -> None:
    """Write an output file, creating its folder; refuse (exit 2) a path that cannot be one
    (a folder: ``example`` names a file in it, by default one the flag writes)."""
    if path.is_dir():
        example = example or {"--csv": "leaderboard.csv", "--html": "report.html"}.get(
            flag, "plot.png")
        fail(f"{flag} {path} is a folder; give a file name (e.g. {path / example})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
    except OSError as e:
        fail(f"{flag} {path}: cannot write it ({e.strerror or e}); choose another path")


def _largest_component(data: Any) -> tuple[Any, tuple[str, ...]]:
    from prefkit.data.records import PairwiseVotes
    from prefkit.rank.connectivity import largest_component

    if not isinstance(data, PairwiseVotes):
        fail("--largest-component works on per-vote input (not counts or rankings)")
    return largest_component(data)


def _parse_prior(prior: str) -> float | str | None:
    if prior == "auto":
        return "auto"
    if prior.lower() in ("none", "mle"):
        return None
    try:
        value = float(prior)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        fail(f"--prior must be 'auto', 'none' or a variance > 0 such as 1.0, got {prior!r}")
    return value


def _check_options(model: Model, ties: Ties, style: list[str], intervals: Intervals | None,
                   cluster: Cluster | None, plot: Path | None) -> None:
    """Refuse option combinations that would be ignored, before reading (the rules are
    :func:`prefkit.rank.api.check_options`'s; here they are worded with the flags)."""
    from prefkit.rank.api import OptionError, check_options

    try:
        check_options(model.name, ties.name, style, intervals and intervals.value,
                      cluster and cluster.value)
    except OptionError as e:
        fail(_flag_words(e, model.value, ties.value))
    check_plot(plot)


def _flag_words(e: Any, model: str, ties: str, file: Path | None = None,
                anchor: tuple[str, float] | None = None) -> str:
    """An :class:`~prefkit.rank.api.OptionError` worded with the CLI's flags."""
    d = e.details
    iv = d.get("intervals")
    words = {
        "online_ties": f"--model {model} scores a tie as half a win (a shared rank for "
                       f"weng-lin); --ties {ties} applies to bradley-terry (and thurstone: "
                       "half or ignore)",
        "thurstone_ties": f"--ties {ties} is a Bradley-Terry tie model; use --model "
                          "bradley-terry with it, or --ties half or ignore with --model thurstone",
        "style_model": f"--style is a Bradley-Terry covariate; drop it or use --model "
                       f"bradley-terry (got --model {model})",
        "elo_intervals": "online Elo gives no intervals here (its ratings depend on the order "
                         "of the votes); use --model bradley-terry for intervals, or "
                         "--intervals none",
        "weng_lin_intervals": f"--model weng-lin has posterior intervals (mu +- z sigma): use "
                              f"--intervals hessian (its default) or none, not {iv}",
        "plackett_luce_intervals": "--model plackett-luce has Hessian intervals only (the "
                                   "bootstrap and the sandwich refit pairwise models): use "
                                   "--intervals hessian or none",
        "cluster_intervals": f"--cluster {d.get('cluster')} resamples (bootstrap) or sums "
                             f"(sandwich) by {d.get('cluster')}; it has no effect with "
                             f"--intervals {iv}",
        "plackett_luce_data": "--model plackett-luce needs rankings or K-wise votes (format "
                              "'rankings')",
        "online_counts": f"--model {model} replays votes in order; aggregated counts have no "
                         "order",
    }
    if e.rule == "anchor_unknown" and anchor is not None:
        from prefkit.cli._common import _clip

        name, rating = anchor
        names, close = d["items"], d["close"]
        shown = ", ".join(_clip(n, 32) for n in names[:10]) + (", ..." if len(names) > 10 else "")
        return (f"--anchor {_clip(name)}={rating:g}: no item {_clip(name)!r} in "
                f"{file or 'the votes'}"
                + (f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "")
                + f"; pin one of the items ranked: {shown}")
    return words.get(e.rule, str(e))


def _rank(data: Any, file: Path | None, *, seed: int, quiet: bool, largest_component: bool,
          **kw: Any) -> Any:
    """:func:`prefkit.rank.api.rank` with the CLI's notes, spinner and refusals."""
    import numpy as np

    from prefkit.rank.api import OptionError, rank, resolve_intervals

    spin = not quiet and resolve_intervals(kw["model"], kw["intervals"], data) == "bootstrap"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if spin:
                with console.status(f"bootstrap: {plural(kw['rounds'], 'round')}"):
                    lb = rank(data, rng=np.random.default_rng(seed), **kw)
            else:
                lb = rank(data, rng=np.random.default_rng(seed), **kw)
    except OptionError as e:
        fail(_flag_words(e, kw["model"].replace("_", "-"), kw["ties"].replace("_", "-"),
                         file, kw["anchor"]))
    except KeyError as e:
        fail(str(e.args[0]) if e.args else str(e))
    except ValueError as e:
        from prefkit.rank.connectivity import DisconnectedGraphError

        if isinstance(e, DisconnectedGraphError) and not largest_component:
            fail(f"{e} Or rank only the largest component: add --largest-component.")
        fail(str(e))
    shown: set[str] = set()
    for w in caught:
        if str(w.message) not in shown:
            shown.add(str(w.message))
            note(f"note: {w.message}")
    return lb


rank.__doc__ = (rank.__doc__ or "") + "\n" + EXAMPLES
