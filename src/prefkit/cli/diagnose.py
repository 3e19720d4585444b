"""`prefkit diagnose`: is this vote data fit to rank? Connectivity, coverage, cycles, influence."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from prefkit.cli._common import fail, out, parse_mapping, print_json, read_input
from prefkit.cli.rank import refuse_stdin


def diagnose(
    file: Annotated[Optional[Path], typer.Argument(help="Votes file; omit for the embedded Chatbot Arena votes.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Input format (see `prefkit formats`).")] = "auto",
    column: Annotated[Optional[list[str]], typer.Option("--column", "-c", help="Column mapping KEY=NAME.")] = None,
    influence_by: Annotated[str, typer.Option(help="Leave-one-out influence by 'annotator', 'prompt' or 'none'.")] = "annotator",
    simulations: Annotated[int, typer.Option(help="Simulations for the intransitivity p-value (0: none).", min=0)] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the simulations.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the diagnostics as JSON.")] = False,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Skip bad rows (each is reported).")] = False,
) -> None:
    """Check vote data before ranking: components of the comparison graph, votes per item
    and pair, cyclic triads against what Bradley-Terry predicts, annotator influence.

    Examples:

      prefkit diagnose crowd.csv

      prefkit diagnose results.csv --format football --influence-by none

      prefkit diagnose battles.jsonl --json > checks.json
    """
    import numpy as np

    from prefkit.data.records import Rankings
    from prefkit.rank.diagnostics import diagnose as run

    refuse_stdin(file, "diagnose")
    if influence_by not in ("annotator", "prompt", "none"):
        fail(f"--influence-by must be 'annotator', 'prompt' or 'none', got {influence_by!r}")
    res = read_input(file, fmt=fmt, columns=parse_mapping(column, "--column"),
                     skip_invalid=skip_invalid, quiet=as_json)
    data = res.votes.to_pairwise() if isinstance(res.votes, Rankings) else res.votes
    try:
        d = run(data, influence_by=None if influence_by == "none" else influence_by,  # type: ignore[arg-type]
                rng=np.random.default_rng(seed) if simulations else None,
                simulations=max(simulations, 1))
    except ValueError as e:
        fail(str(e))
    if as_json:
        print_json(d.to_dict())
    else:
        out.print(d.describe(), highlight=False)
