"""`prefkit propose` (the next comparisons to collect) and `prefkit simulate` (how many
votes active matchmaking saves against random pairing and against Elo)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer

from prefkit.cli._common import (
    _clip,
    check_plot,
    console,
    fail,
    note,
    out,
    parse_mapping,
    print_json,
    read_input,
)
from prefkit.cli.rank import _write, refuse_stdin
from prefkit.runs import plural


def propose(
    file: Annotated[Optional[Path], typer.Argument(help="Votes so far; omit for the embedded Chatbot Arena votes.")] = None,
    n: Annotated[int, typer.Option("--n", "-n", help="How many comparisons to propose.")] = 10,
    k: Annotated[int, typer.Option("--k", "-k", help="Items per comparison (2: pairs; 4: K-Sort Arena style).")] = 2,
    strategy: Annotated[str, typer.Option(help="information | uncertainty | random.")] = "information",
    explore: Annotated[float, typer.Option(help="Share of uniformly random proposals.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed for ties between candidates and exploration.")] = 0,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Input format (see `prefkit formats`).")] = "auto",
    column: Annotated[Optional[list[str]], typer.Option("--column", "-c", help="Column mapping KEY=NAME.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the proposals as JSON.")] = False,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Skip bad rows (each is reported).")] = False,
) -> None:
    """Propose the next pairs (or K-sets) whose votes most reduce the uncertainty of the
    ranking, from a Bradley-Terry fit of the votes so far.

    Examples:

      prefkit propose votes.csv --n 20

      prefkit propose battles.jsonl --k 4 --n 5 --json
    """
    import math

    import numpy as np

    from prefkit.data.records import Rankings
    from prefkit.rank.matchmaking import propose_pairs

    refuse_stdin(file, "propose")
    if n < 1:
        fail(f"--n must be at least 1 (how many comparisons to propose), got {n}")
    if k < 2:
        fail(f"--k must be at least 2 (items per comparison: 2 for pairs), got {k}")
    if not (math.isfinite(explore) and 0.0 <= explore <= 1.0):
        fail(f"--explore must lie in [0, 1] (the share of random proposals), got {explore:g}")
    res = read_input(file, fmt=fmt, columns=parse_mapping(column, "--column"),
                     skip_invalid=skip_invalid, quiet=as_json)
    data = res.votes.to_pairwise() if isinstance(res.votes, Rankings) else res.votes
    n_items = len(data.items.names)
    if k > n_items:
        fail(f"--k {k}: the votes have {n_items} items, so a comparison holds at most "
             f"{n_items}; lower --k")
    try:
        sets = propose_pairs(data, n=n, k=k, rng=np.random.default_rng(seed),
                             strategy=strategy, explore=explore)  # type: ignore[arg-type]
    except ValueError as e:
        message = str(e)
        fail(f"--{message}" if message.startswith(("k ", "strategy ")) else message)
    names = data.items.names
    proposals = [[names[i] for i in row] for row in sets]
    n_sets = math.comb(n_items, k)
    if n > n_sets and not as_json:
        note(f"note: {n:,} comparisons asked, but {n_items} items make only {n_sets:,} "
             f"different {'pairs' if k == 2 else f'{k}-sets'}: the proposals repeat, and none "
             "learns from the outcomes of the others; collect votes on the first ones and "
             "propose again")
    if as_json:
        print_json({"strategy": strategy, "k": k, "proposals": proposals})
        return
    # one write (a rich print per line takes minutes for 100,000 lines); long names clipped
    # as in the leaderboard table (the JSON keeps them whole)
    out.file.write("".join("  vs  ".join(_clip(x) for x in row) + "\n" for row in proposals))
    out.file.flush()


def simulate(
    file: Annotated[Optional[Path], typer.Argument(help="Votes whose fitted strengths are the truth; omit for the embedded Chatbot Arena votes.")] = None,
    top: Annotated[Optional[int], typer.Option(help="Use only the N strongest items.")] = None,
    target: Annotated[float, typer.Option(help="Kendall tau to reach.")] = 0.9,
    max_votes: Annotated[int, typer.Option(help="Vote budget per run.")] = 100_000,
    batch: Annotated[int, typer.Option(help="Votes between refits.")] = 200,
    runs: Annotated[int, typer.Option(help="Independent runs to average.")] = 3,
    ties: Annotated[Optional[float], typer.Option(help="Tie rate between equal items (default: the data's share of ties).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the simulation.")] = 0,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Input format.")] = "auto",
    column: Annotated[Optional[list[str]], typer.Option("--column", "-c", help="Column mapping KEY=NAME (keys: a, b, winner, weight, annotator, prompt).")] = None,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Skip bad rows (each is reported).")] = False,
    plot: Annotated[Optional[Path], typer.Option(help="Write accuracy against votes (PNG).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Simulate an arena on known strengths (fitted to real votes) and count the votes that
    active matchmaking, random pairing (Bradley-Terry fit) and online Elo (K=4) need to
    rank the items to a target Kendall tau.

    Examples:

      prefkit simulate --top 30 --runs 2

      prefkit simulate votes.csv --target 0.95 --plot sim.png --json

      prefkit simulate votes.csv --column a=left --column b=right --column winner=choice
    """
    import numpy as np

    from prefkit.data.records import Rankings
    from prefkit.rank import fit_bradley_terry
    from prefkit.rank.simulate import simulate_matchmaking

    check_plot(plot)  # before any slow work
    if top is not None and top < 3:
        fail(f"--top must be at least 3 (the strongest items to simulate), got {top}")
    if not 0 < target <= 1:
        fail(f"--target must be a Kendall tau in (0, 1] (e.g. 0.9), got {target}")
    for flag, v, least in (("--runs", runs, 1), ("--batch", batch, 1)):
        if v < least:
            fail(f"{flag} must be at least {least}, got {v}")
    if max_votes < batch:
        fail(f"--max-votes must be at least --batch ({batch}), got {max_votes}")
    if ties is not None and not 0 <= ties < 1:
        fail(f"--ties must be a rate in [0, 1), got {ties}")
    res = read_input(file, fmt=fmt, columns=parse_mapping(column, "--column"),
                     skip_invalid=skip_invalid, quiet=as_json)
    data = res.votes.to_pairwise() if isinstance(res.votes, Rankings) else res.votes
    if len(data.items.names) < 3:
        fail(f"{file}: {plural(len(data.items.names), 'item')}; a simulated ranking needs at "
             "least 3")
    try:
        with warnings.catch_warnings(record=True) as caught:  # notes, not Python's warnings
            warnings.simplefilter("always")
            lb = fit_bradley_terry(data)
    except ValueError as e:
        fail(str(e))
    for w in caught:
        note(f"note: the simulated truth: {w.message}")
    scores = lb.scores
    if top:
        scores = np.sort(scores)[::-1][:top]
    if ties is None:
        from prefkit.data.records import PairCounts, aggregate

        c = data if isinstance(data, PairCounts) else aggregate(data)
        ties = float(c.counts[:, 2:].sum() / max(c.counts.sum(), 1.0))
    with console.status(f"simulating {plural(runs, 'run')} on {scores.size} items"):
        result = simulate_matchmaking(scores, target=target, max_votes=max_votes, batch=batch,
                                      rng=np.random.default_rng(seed), n_runs=runs, ties=ties,
                                      stop_at_target=True)
    if plot is not None:
        _write(plot, "--plot", result.plot)
    if as_json:
        print_json(result.to_dict())
        return
    out.print(result.table(), highlight=False)
