"""`prefkit prm`: process reward models -- train on step labels, evaluate on ProcessBench,
score steps, pick the best of N candidates.

Thin commands over :mod:`prefkit.process` and the ``steps`` readers; no math here.
"""

from __future__ import annotations

import json
import math
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from prefkit.cli._common import (
    check_output,
    console,
    fail,
    flag_words,
    input_errors,
    note,
    out,
    parse_mapping,
    print_json,
    report_skipped,
    run_errors,
)

prm_app = typer.Typer(
    help="Process reward models: train on step-labelled solutions, evaluate with "
         "ProcessBench's F1, score steps, pick the best of N candidates.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    epilog="Examples:\n\n  prefkit prm train processbench_gsm8k.json --output runs/prm\n\n"
           "  prefkit prm eval runs/prm processbench_math.json.gz --json\n\n"
           "  prefkit prm best-of-n runs/prm candidates.jsonl --aggregate min\n",
)


def _command(name: str) -> Any:
    """``prm_app.command(name)`` with the docstring's ``Examples:`` moved to the epilog, so
    that the help ends with them (as every prefkit command's does)."""
    from prefkit.cli.main import examples_last

    def deco(fn: Any) -> Any:
        return prm_app.command(name, **examples_last(fn, {}))(fn)

    return deco


class Aggregate(str, Enum):
    min = "min"
    last = "last"
    product = "product"
    mean = "mean"


class Checker(str, Enum):
    math = "math"
    gsm8k = "gsm8k"


FmtOpt = Annotated[str, typer.Option("--format", "-f", help="Input format (processbench, trl_stepwise, math_shepherd, prm800k, candidates); auto-detected by default.")]
ColumnOpt = Annotated[Optional[list[str]], typer.Option("--column", "-c", help="Column mapping KEY=NAME (keys: prompt, steps, label, ...).")]
SkipOpt = Annotated[bool, typer.Option("--skip-invalid", help="Skip bad rows (each is reported) instead of stopping.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]
SepOpt = Annotated[str, typer.Option("--separator", help="What splits a candidate given as one text into steps (default: a blank line). Use '\\n' for one step per line.")]


def _read_steps(path: Path, fmt: str, column: list[str] | None, skip_invalid: bool) -> Any:
    from prefkit.data.errors import InvalidInputError
    from prefkit.process import read_steps

    if not path.exists():
        fail(f"{path}: no such file")
    try:
        res = read_steps(path, format=fmt, columns=parse_mapping(column, "--column") or None,
                         skip_invalid=skip_invalid)
    except InvalidInputError as e:
        fail(e.for_cli())
    except (ValueError, KeyError) as e:
        fail(f"{path}: {flag_words(str(e), {'columns=': '--column'})}")
    report_skipped(path, res.skipped, len(res.skipped))
    return res.data


def _read_candidates(path: Path, fmt: str, column: list[str] | None, skip_invalid: bool,
                     separator: str) -> Any:
    from prefkit.data.steps import read_candidates_file
    from prefkit.data.errors import InvalidInputError

    if not path.exists():
        fail(f"{path}: no such file")
    try:
        sep = separator.encode().decode("unicode_escape")
    except UnicodeDecodeError as e:
        fail(f"--separator {separator!r}: not a valid escape ({e.reason}); write e.g. '\\n' "
             "for a new line or '\\n\\n' for a blank line")
    if not sep:
        fail("--separator must not be empty")
    try:
        res = read_candidates_file(path, format=fmt, skip_invalid=skip_invalid,
                                   columns=parse_mapping(column, "--column") or None,
                                   separator=sep)
    except InvalidInputError as e:
        fail(e.for_cli())
    except (ValueError, KeyError) as e:
        fail(f"{path}: {flag_words(str(e), {'columns=': '--column'})}")
    report_skipped(path, res.skipped, len(res.skipped))
    return res.data


def _load(folder: Path) -> Any:
    from prefkit.process import load_prm

    if folder.is_file():
        fail(f"{folder} is a file; the first argument is the folder a PRM was trained into "
             "(prefkit prm train DATA --output DIR)")
    try:
        return load_prm(folder)
    except FileNotFoundError as e:
        if e.filename is None:
            fail(str(e))
        fail(f"{folder}: not a finished PRM folder ({Path(e.filename).name} is missing); give "
             "the folder prefkit prm train DATA --output DIR wrote when it finished")
    except ValueError as e:
        fail(str(e))


# -- train ------------------------------------------------------------------------------------
@_command("train")
def train(
    data: Annotated[Path, typer.Argument(help="Step-labelled solutions (ProcessBench JSON, TRL stepwise, Math-Shepherd, PRM800K).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the run (new or empty, or an earlier run with --resume/--overwrite).")],
    fmt: FmtOpt = "auto",
    column: ColumnOpt = None,
    skip_invalid: SkipOpt = False,
    finetune: Annotated[bool, typer.Option("--finetune", help="Fine-tune the whole backbone, scoring at a marker token after each step, instead of a head on frozen embeddings.")] = False,
    backbone: Annotated[Optional[str], typer.Option(help="A local Hugging Face model folder (encoder, or causal LM) for --finetune, or a sentence-transformers folder for the frozen head; default the offline MiniLM.")] = None,
    max_length: Annotated[int, typer.Option("--max-length", help="--finetune: tokens per window (longer solutions are scored in overlapping windows).")] = 256,
    hidden: Annotated[int, typer.Option(help="Hidden units of the frozen head (0: linear).", min=0)] = 256,
    loss: Annotated[str, typer.Option(help="Step loss: step_bce (hard or soft labels) or step_mse.")] = "step_bce",
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default 60 with early stopping for the frozen head, 2 for --finetune).")] = None,
    learning_rate: Annotated[Optional[float], typer.Option("--learning-rate", help="AdamW learning rate (default 1e-3 frozen head, 5e-5 --finetune).")] = None,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Share of the solutions held out for early stopping and for tuning the threshold.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the split, the initial weights and the data order.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --output.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start the run in --output again.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Train a process reward model on step labels: a head on the frozen offline MiniLM
    reading each step with the problem and the steps before it, or (--finetune) a
    fine-tuned backbone scoring at a marker token after each step.

    Every labelled step is one example (ProcessBench labels the steps up to the first
    wrong one). The threshold that flags a step is tuned for ProcessBench F1 on the held-out
    solutions and saved with the model.

    Examples:

      prefkit prm train processbench_gsm8k.json --output runs/prm

      prefkit prm train trl_stepwise.jsonl --output runs/prm --hidden 0 --json

      prefkit prm train math_shepherd_soft.jsonl --output runs/soft --loss step_mse

      prefkit prm train processbench_gsm8k.json --finetune --max-length 512 --output runs/ft
    """
    from prefkit.process import FrozenPRMConfig, train_frozen_prm
    from prefkit.process.finetune import FinetunePRMConfig, finetune_prm

    check_output(output, "prm-finetune" if finetune else "prm-train", resume, overwrite)
    given = {k: v for k, v in (("epochs", epochs), ("learning_rate", learning_rate))
             if v is not None}
    try:
        config: Any = FinetunePRMConfig(backbone=backbone, max_length=max_length, loss=loss,
                                        val_fraction=val_fraction, seed=seed, **given) \
            if finetune else FrozenPRMConfig(encoder=backbone, hidden=hidden, loss=loss,
                                             val_fraction=val_fraction, seed=seed, **given)
    except ValueError as e:
        fail(flag_words(str(e), {"val_fraction": "--val-fraction", "max_length": "--max-length",
                                 "learning_rate": "--learning-rate", "epochs": "--epochs"}))
    if finetune and backbone is not None and not Path(backbone).is_dir():
        fail(f"--backbone {backbone}: no such folder (give a local Hugging Face model folder)")
    steps = _read_steps(data, fmt, column, skip_invalid)
    try:  # the run's parent folder now, not after loading the encoder
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"--output {output}: cannot write the run there ({e.strerror or e}); choose "
             "another folder")
    t0 = time.perf_counter()
    with run_errors(), input_errors(data, also=(ValueError,)):
        trainer = finetune_prm if finetune else train_frozen_prm
        try:
            summary = trainer(config, output, steps, resume=resume, overwrite=overwrite,
                              progress=not json_out)
        except FileNotFoundError as e:  # a --backbone that is no folder nor cached Hub id
            if e.filename is not None:
                raise
            fail(flag_words(str(e), {"encoder": "--backbone", "backbone": "--backbone"})
                 .replace("(or None for", "(or no --backbone for"))
    summary = {**summary, "output": str(output), "n_solutions": len(steps),
               "seconds": round(time.perf_counter() - t0, 2)}
    if json_out:
        print_json(summary)
        return
    out.print(f"trained on {len(steps):,} solutions in {summary['seconds']:.1f}s; threshold "
              f"{summary['threshold']:.3f} (tuned on {summary['n_val_solutions']} held-out "
              f"solutions); model in {output}", highlight=False)


# -- eval -------------------------------------------------------------------------------------
def _report(rep: Any) -> dict[str, Any]:
    return rep.as_dict()


@_command("eval")
def evaluate(
    model: Annotated[Path, typer.Argument(help="A PRM folder (prefkit prm train --output).")],
    data: Annotated[Path, typer.Argument(help="Step-labelled solutions to score (ProcessBench JSON, ...).")],
    fmt: FmtOpt = "auto",
    column: ColumnOpt = None,
    skip_invalid: SkipOpt = False,
    threshold: Annotated[Optional[float], typer.Option(help="Flag steps below this P(right) instead of the threshold tuned at training.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Evaluate a PRM as ProcessBench does: the first flagged step must equal the first
    wrong step (-1 when none); F1 is the harmonic mean of the accuracies on erroneous and
    on correct solutions.

    Reported at the threshold tuned on the training run's held-out solutions (never on this
    file) and at the fixed 0.5, with the baselines never flags, always flags the first step
    and the position prior of the training solutions. Steps the model could not score never
    count as flagged (n_unscored says how many solutions had some).

    Examples:

      prefkit prm eval runs/prm processbench_math.json.gz

      prefkit prm eval runs/prm processbench_math.json.gz --json > eval.json
    """
    from prefkit.process import baselines, evaluate_steps

    if threshold is not None and not 0 <= threshold <= 1:
        fail(f"--threshold {threshold}: a step is flagged when P(right) falls below it, so it "
             "must lie in [0, 1] (e.g. --threshold 0.5)")
    prm = _load(model)
    steps = _read_steps(data, fmt, column, skip_invalid)
    labels = steps.first_error
    if all(x == -1 for x in labels) or all(x != -1 for x in labels):
        fail(f"{data}: ProcessBench's F1 needs both erroneous and correct solutions; this "
             f"file has {sum(x != -1 for x in labels)} erroneous and "
             f"{sum(x == -1 for x in labels)} correct")
    t0 = time.perf_counter()
    scores = prm.score(steps.prompts, steps.steps, progress=not json_out)
    t = prm.threshold if threshold is None else threshold
    main = evaluate_steps(scores, labels, threshold=t)
    fixed = evaluate_steps(scores, labels)
    train = getattr(prm, "train_stats", None) or {}
    base = baselines([len(s) for s in steps.steps], labels,
                     train_n_steps=train.get("n_steps"), train_labels=train.get("labels"))
    result = {**_report(main), "threshold_source": "given" if threshold is not None
              else "tuned on the training run's held-out solutions",
              "at_0.5": _report(fixed), "baselines": {k: _report(v) for k, v in base.items()},
              "n_solutions": len(steps), "n_steps": sum(len(s) for s in steps.steps),
              "seconds": round(time.perf_counter() - t0, 2)}
    if json_out:
        print_json(result)
        return
    from rich.table import Table

    tab = Table(title=f"ProcessBench scores on {data.name} ({len(steps):,} solutions)")
    for c in ("predictor", "threshold", "F1", "acc. erroneous", "acc. correct"):
        tab.add_column(c, justify="right" if c != "predictor" else "left")
    rows = [("PRM", main), ("PRM at 0.5", fixed)] + [(k, v) for k, v in base.items()]
    for name, rep in rows:
        th = "-" if rep.threshold is None else f"{rep.threshold:.3f}"
        tab.add_row(name, th, f"{rep.f1:.3f}", f"{rep.accuracy_erroneous:.3f}",
                    f"{rep.accuracy_correct:.3f}")
    out.print(tab)
    if main.n_unscored:
        note(f"{main.n_unscored} solution(s) had steps the model could not score (counted "
             "as not flagged)")


# -- score ------------------------------------------------------------------------------------
@_command("score")
def score(
    model: Annotated[Path, typer.Argument(help="A PRM folder (prefkit prm train --output).")],
    data: Annotated[Path, typer.Argument(help="Solutions: prompt with steps (a list) or candidates; or any step-labelled file.")],
    fmt: FmtOpt = "auto",
    column: ColumnOpt = None,
    skip_invalid: SkipOpt = False,
    separator: SepOpt = "\\n\\n",
    json_out: JsonOpt = False,
) -> None:
    """Score every step of every solution: P(step right), the first step below the
    threshold, and the min/last/product/mean aggregates (one JSON line per solution).

    Examples:

      prefkit prm score runs/prm solutions.jsonl

      prefkit prm score runs/prm processbench_gsm8k.json --json > scores.json
    """
    from prefkit.process import AGGREGATES, aggregate_steps, first_flagged

    prm = _load(model)
    cands = _read_candidates(data, fmt, column, skip_invalid, separator)
    flat = [(i, j, c) for i, cs in enumerate(cands.candidates) for j, c in enumerate(cs)]
    scores = prm.score([cands.prompts[i] for i, _, _ in flat], [c for _, _, c in flat],
                       progress=not json_out)
    rows = []
    for (i, j, _), s in zip(flat, scores):
        rows.append({"line": cands.lines[i], "candidate": j,
                     "step_scores": [_num(x) for x in s],
                     "first_flagged": first_flagged([s], prm.threshold)[0],
                     **{a: _num(aggregate_steps(s, a)) for a in AGGREGATES}})
    if json_out:
        print_json({"threshold": prm.threshold, "solutions": rows})
        return
    for r in rows:
        out.print(json.dumps(r), highlight=False, soft_wrap=True)


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 6)


# -- best-of-n --------------------------------------------------------------------------------
@_command("best-of-n")
def best_of_n_command(
    model: Annotated[Path, typer.Argument(help="A PRM folder (prefkit prm train --output).")],
    candidates: Annotated[Path, typer.Argument(help="JSONL: prompt, candidates (each a list of steps or a text), answer (optional).")],
    aggregate: Annotated[Aggregate, typer.Option(help="How step scores make a candidate's score.")] = Aggregate.min,
    separator: SepOpt = "\\n\\n",
    checker: Annotated[Checker, typer.Option(help="How answers are compared with the reference answer (when the file gives one).")] = Checker.math,
    fmt: FmtOpt = "auto",
    column: ColumnOpt = None,
    skip_invalid: SkipOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Pick the best of N candidate solutions per prompt by their aggregated step scores,
    and the PRM-weighted majority answer.

    A candidate is a list of steps, or one text split into steps on --separator (a blank
    line by default). With an `answer` column, the accuracy of best-of-N, of PRM-weighted
    voting and of plain majority voting is reported too (answers read with
    prefkit.answers: the last \\boxed{}, else '#### N', else 'the answer is', else the last
    number).

    Examples:

      prefkit prm best-of-n runs/prm candidates.jsonl --aggregate min

      prefkit prm best-of-n runs/prm candidates.jsonl --aggregate product --checker gsm8k --json
    """
    from prefkit.answers import final_answer, math_equal, numbers_equal
    from prefkit.process import aggregate_steps, best_of_n, weighted_vote

    prm = _load(model)
    cands = _read_candidates(candidates, fmt, column, skip_invalid, separator)
    flat = [(i, c) for i, cs in enumerate(cands.candidates) for c in cs]
    scores = prm.score([cands.prompts[i] for i, _ in flat], [c for _, c in flat],
                       progress=not json_out)
    rows, at = [], 0
    hits = {"best_of_n": 0, "weighted_vote": 0, "majority_vote": 0}
    n_ref = 0

    def same(a: str | None, ref: str) -> bool:
        if checker is Checker.gsm8k:
            return bool(numbers_equal(a, ref.rsplit("####", 1)[-1].strip()))
        return math_equal(a, ref)

    for i, cs in enumerate(cands.candidates):
        s = scores[at:at + len(cs)]
        at += len(cs)
        pick = best_of_n(s, aggregate.value)
        agg = [aggregate_steps(x, aggregate.value) for x in s]
        answers = [final_answer("\n".join(c)) for c in cs]
        voted = weighted_vote(answers, [0.0 if math.isnan(a) else a for a in agg])
        majority = weighted_vote(answers)
        row = {"line": cands.lines[i], "best": pick, "score": _num(agg[pick]),
               "answer": answers[pick], "weighted_vote": voted, "majority_vote": majority,
               "scores": [_num(a) for a in agg]}
        ref = cands.answers[i]
        if ref is not None:
            n_ref += 1
            for key, a in (("best_of_n", answers[pick]), ("weighted_vote", voted),
                           ("majority_vote", majority)):
                ok = same(a, ref)
                hits[key] += ok
                row[f"{key}_correct"] = ok
        rows.append(row)
    summary: dict[str, Any] = {"aggregate": aggregate.value, "n_prompts": len(rows)}
    if n_ref:
        summary["accuracy"] = {k: v / n_ref for k, v in hits.items()}
        summary["n_with_answer"] = n_ref
    if json_out:
        print_json({**summary, "prompts": rows})
        return
    for r in rows:
        out.print(json.dumps(r), highlight=False, soft_wrap=True)
    if n_ref:
        acc = summary["accuracy"]
        console.print(f"accuracy on {n_ref} prompts with an answer: best-of-N "
                      f"{acc['best_of_n']:.3f}, PRM-weighted vote {acc['weighted_vote']:.3f}, "
                      f"majority vote {acc['majority_vote']:.3f}", highlight=False)
