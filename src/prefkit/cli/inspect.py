"""`prefkit inspect`: agreement, quality and biases of any annotated preference source."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from prefkit.cli._common import (
    check_plot,
    console,
    fail,
    flag_words,
    input_errors,
    note,
    out,
    parse_mapping,
    print_json,
    report_skipped,
)
from prefkit.runs import plural


def inspect(
    file: Annotated[Path, typer.Argument(help="Annotated pairs: PandaLM's test set, one row per (pair, annotator, label), or one column per annotator.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="Input format: pandalm, annotations_long, annotations_wide (see `prefkit formats`).")] = "auto",
    column: Annotated[Optional[list[str]], typer.Option("--column", "-c", help="Column mapping KEY=NAME (pair, annotator, label, prompt, response_a, response_b, model_a, model_b, category, gold; annotators=A,B for the wide layout).")] = None,
    ordinal: Annotated[bool, typer.Option("--ordinal", help="Krippendorff's alpha on the ordinal scale b < tie < a (default nominal).")] = False,
    rounds: Annotated[int, typer.Option(help="Bootstrap rounds of the intervals (0: none).", min=0)] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and the simulations.")] = 0,
    reward_model: Annotated[Optional[list[Path]], typer.Option("--reward-model", help="A reward-model folder (prefkit reward train/finetune); repeat for an ensemble: preference strength.")] = None,
    policy: Annotated[Optional[Path], typer.Option(help="A causal LM folder (or prefkit align output): its ranking accuracy on the pairs.")] = None,
    reference: Annotated[Optional[Path], typer.Option(help="The reference model folder, for the idealized ranking accuracy.")] = None,
    beta: Annotated[Optional[float], typer.Option(help="The DPO beta of the idealized ranking accuracy.")] = None,
    max_length: Annotated[Optional[int], typer.Option(help="Most tokens of prompt + response when scoring log-probs (longer pairs are left out).", min=2)] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size of reward and log-prob scoring.", min=1)] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    plot: Annotated[Optional[Path], typer.Option(help="Write the report's figure (png, svg, pdf, jpg).")] = None,
    html_out: Annotated[Optional[Path], typer.Option("--html", help="Write a self-contained HTML report.")] = None,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Skip bad rows (each is reported).")] = False,
) -> None:
    """Inspect annotated preference pairs, human or AI: agreement (kappa, alpha, accuracy
    against gold), duplicates and contradictions, position and length bias, cyclic triads,
    annotators against the consensus, reward-ensemble strength, ranking accuracy.

    Agreement: Krippendorff's alpha (nominal, or --ordinal) with Fleiss' kappa (several
    annotators) or Cohen's kappa (two, or one and a gold column), a tie being a category;
    accuracy with and without ties when the input has a gold label; bootstrap intervals
    over pairs. --json prints the whole report; --plot and --html write it for people.

    Examples:

      prefkit inspect testset-v1.json

      prefkit inspect crowd.csv --column pair=id --column annotator=worker --json

      prefkit inspect votes.csv --ordinal --plot report.png --html report.html

      prefkit inspect pairs.json --reward-model runs/rm1 --reward-model runs/rm2

      prefkit inspect pairs.json --policy runs/dpo --reference ./sft --beta 0.1
    """
    import time

    import numpy as np

    t0 = time.perf_counter()
    check_plot(plot)
    if html_out is not None and html_out.suffix.lower() not in (".html", ".htm"):
        fail(f"--html {html_out}: the file name must end in .html")
    if (policy is None) != (reference is None) or (policy is None) != (beta is None):
        fail("ranking accuracy needs --policy DIR, --reference DIR and --beta B together "
             "(e.g. --policy runs/dpo --reference ./sft --beta 0.1)")
    if beta is not None and not (0 < beta < float("inf")):
        fail(f"--beta must be a positive finite number, got {beta}")
    for d in [*(reward_model or []), *([policy, reference] if policy else [])]:
        if not d.is_dir():  # type: ignore[union-attr]
            fail(f"{d}: no such model folder")
    ann = _read(file, fmt, parse_mapping(column, "--column"), skip_invalid)
    if ann.skipped:
        report_skipped(file, ann.skipped, len({p.line for p in ann.skipped}))
    models, names = _reward_models(reward_model or [], progress=not as_json)
    pol = ref = tok = None
    if policy is not None:
        from prefkit.inspect.ranking import load_causal_lm

        try:
            pol, tok = load_causal_lm(policy)
            ref, _ = load_causal_lm(reference)  # type: ignore[arg-type]
        except (OSError, ValueError) as e:
            fail(f"cannot load the policy or reference: {e}")
    from prefkit.inspect.report import inspect_annotations

    if not as_json:
        note(f"read {plural(len(ann), 'pair')}, {plural(ann.n_annotators, 'annotator')} "
             f"(format {ann.format}); measuring ...", style="dim")
    try:
        rep = inspect_annotations(
            ann, level="ordinal" if ordinal else "nominal", rounds=rounds,
            rng=np.random.default_rng(seed), reward_models=models or None,
            reward_model_names=names, policy=pol, reference=ref, tokenizer=tok, beta=beta,
            batch_size=batch_size, max_length=max_length)
    except ValueError as e:
        fail(f"{file}: {e}")
    from prefkit.cli.rank import _write  # rank's rule: make the folder, refuse an OSError

    if plot is not None:
        _write(plot, "--plot", rep.plot)
    if html_out is not None:
        _write(html_out, "--html", rep.write_html)
    if as_json:
        print_json(rep.to_dict())
        return
    for t in rep.tables():
        out.print(t)
    for n in rep.notes:
        console.print(f"[dim]{n}[/]", highlight=False)
    wrote = [str(p) for p in (plot, html_out) if p is not None]
    console.print(f"[dim]total {time.perf_counter() - t0:.2f}s"
                  f"{'; wrote ' + ', '.join(wrote) if wrote else ''}[/]", highlight=False)


def _read(file: Path, fmt: str, columns: dict[str, str], skip_invalid: bool) -> Any:
    from prefkit.data.errors import InvalidInputError
    from prefkit.inspect import read_annotations

    if str(file) == "-":
        fail("inspect reads a file, not standard input ('-'); save the labels to a file first")
    if not file.exists():
        fail(f"{file}: no such file")
    with input_errors(file, also=(KeyError,)):
        try:
            return read_annotations(file, format=fmt, columns=columns or None,
                                    skip_invalid=skip_invalid)
        except InvalidInputError:
            raise
        except ValueError as e:  # in the command line's words: columns= is --column
            fail(f"{file}: {flag_words(str(e), {'columns=': '--column'})}")


def _reward_models(folders: list[Path], *, progress: bool) -> tuple[list[Any], list[str]]:
    if not folders:
        return [], []
    from prefkit.inspect.strength import load_reward_models
    from prefkit.runs import progress_bar

    models = []
    bar = progress_bar(len(folders), "loading reward models", enabled=progress)
    try:
        for f in folders:
            try:
                models.extend(load_reward_models([f]))
            except (FileNotFoundError, ValueError, KeyError, OSError) as e:
                bar.close()  # the bar's last frame before the error, not after it
                fail(f"{f}: cannot load the reward model: {e}")
            bar.advance(1)
    finally:
        bar.close()
    return models, [str(f) for f in folders]
