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
    no_such_input,
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
DeviceOpt = Annotated[str, typer.Option("--device", help="Where the PRM runs: auto (a GPU if there is one, else the CPU), cpu, cuda or cuda:N.")]
SepOpt = Annotated[str, typer.Option("--separator", help="What splits a candidate given as one text into steps (default: a blank line). Use '\\n' for one step per line.")]


def _read_steps(path: Path, fmt: str, column: list[str] | None, skip_invalid: bool,
                outcome_column: str | None = None, require_outcome: bool = False) -> Any:
    """The step-labelled solutions of ``path``; ``require_outcome``: each with its outcome
    (--kind implicit), read from ``outcome_column`` when given (--outcome-column), else
    where the format keeps it."""
    from prefkit.data.errors import InvalidInputError
    from prefkit.process import read_steps

    if not path.exists():
        no_such_input(path, "step-labelled solutions", "solutions.jsonl")
    columns = parse_mapping(column, "--column") or {}
    if outcome_column is not None:
        if columns.get("outcome", outcome_column) != outcome_column:
            fail(f"--outcome-column {outcome_column} and --column outcome="
                 f"{columns['outcome']} name two columns; give one")
        columns["outcome"] = outcome_column
    try:
        res = read_steps(path, format=fmt, columns=columns or None, skip_invalid=skip_invalid,
                         **({"require_outcome": True} if require_outcome else {}))
    except InvalidInputError as e:
        if require_outcome:
            _no_outcome_column(path, e, outcome_column)
        fail(e.for_cli())
    except (ValueError, KeyError) as e:
        fail(f"{path}: {flag_words(str(e), {'columns=': '--column'})}")
    report_skipped(path, res.skipped, len(res.skipped))
    return res.data


def _read_candidates(path: Path, fmt: str, column: list[str] | None, skip_invalid: bool,
                     separator: str) -> Any:
    from prefkit.data.errors import InvalidInputError
    from prefkit.data.steps import read_candidates_file

    if not path.exists():
        no_such_input(path, "candidates", "candidates.jsonl")
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


def _device(device: str) -> Any:
    """``--device`` as a torch.device; an unknown name or a GPU that is not there refused
    with the fix."""
    from prefkit.process.device import resolve_device

    try:
        return resolve_device(device, option="--device")
    except ValueError as e:
        fail(str(e))


def _load(folder: Path, device: str = "auto") -> Any:
    from prefkit.process import load_prm

    if folder.is_file():
        fail(f"{folder} is a file; the first argument is the folder a PRM was trained into "
             "(prefkit prm train DATA --output DIR)")
    if (folder / "prefkit_run.json").is_file() and not (folder / "config.json").is_file():
        fail(f"{folder}: the training run there has not finished (stopped at --stop-after "
             "or interrupted), so it holds no model yet; continue it with the same prefkit "
             "prm train command and --resume")
    try:
        return load_prm(folder, device=_device(device))
    except FileNotFoundError as e:
        if e.filename is None:
            fail(str(e))
        fail(f"{folder}: not a finished PRM folder ({Path(e.filename).name} is missing); give "
             "the folder prefkit prm train DATA --output DIR wrote when it finished")
    except ValueError as e:
        fail(str(e))


# -- train ------------------------------------------------------------------------------------
class Kind(str, Enum):
    frozen = "frozen"
    finetune = "finetune"
    implicit = "implicit"


@_command("train")
def train(
    data: Annotated[Path, typer.Argument(help="Step-labelled solutions (ProcessBench JSON, TRL stepwise, Math-Shepherd, PRM800K); for --kind implicit also candidates with an answer (prompt, candidates, answer).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the run (new or empty, or an earlier run with --resume/--overwrite).")],
    fmt: FmtOpt = "auto",
    column: ColumnOpt = None,
    skip_invalid: SkipOpt = False,
    kind: Annotated[Kind, typer.Option(help="frozen: a head on frozen embeddings (fast on CPU); finetune: a fine-tuned backbone scoring at a marker after each step; implicit: a causal LM trained on final-answer outcomes only, step reward beta*log(pi/pi_ref) (Free Process Rewards).")] = Kind.frozen,
    finetune: Annotated[bool, typer.Option("--finetune", help="The same as --kind finetune.")] = False,
    backbone: Annotated[Optional[str], typer.Option(help="A local Hugging Face model folder (encoder, or causal LM) for --finetune, or a sentence-transformers folder for the frozen head; default the offline MiniLM.")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="--kind implicit: the causal LM to train, a local folder or a cached Hub id; it is also the reference pi_ref, so give the model that wrote the solutions (a reference that already writes the right ones with probability near 1 leaves 0.5 no boundary).")] = None,
    outcome_column: Annotated[Optional[str], typer.Option("--outcome-column", help="--kind implicit: the field saying whether a solution's final answer is right (true/false). Default: the format's own: ProcessBench's final_answer_correct (or a column named outcome), Math-Shepherd's last step mark, PRM800K's finish_reason.")] = None,
    checker: Annotated[Checker, typer.Option(help="--kind implicit on candidates with an answer: how a candidate's final answer is compared with it.")] = Checker.math,
    separator: SepOpt = "\\n\\n",
    max_length: Annotated[Optional[int], typer.Option("--max-length", help="--finetune: tokens per window (longer solutions are scored in overlapping windows; default 256); --kind implicit: tokens per prompt and solution (longer ones are cut, each cut reported; default 1024).")] = None,
    hidden: Annotated[int, typer.Option(help="Hidden units of the frozen head (0: linear).", min=0)] = 256,
    loss: Annotated[Optional[str], typer.Option(help="Step loss: step_bce (hard or soft labels, the default) or step_mse; --kind implicit: the align loss on outcomes, apo_zero_unpaired (default), kto or dpo.")] = None,
    beta: Annotated[Optional[float], typer.Option(help="--kind implicit: beta of the reward beta*log(pi/pi_ref) (default 0.1).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="--kind implicit: solutions (or pairs) per optimizer step (default 8).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs (default 60 with early stopping for the frozen head, 2 for --finetune, 1 for --kind implicit).")] = None,
    learning_rate: Annotated[Optional[float], typer.Option("--learning-rate", help="AdamW learning rate (default 1e-3 frozen head, 5e-5 --finetune, 1e-6 --kind implicit).")] = None,
    val_fraction: Annotated[float, typer.Option("--val-fraction", help="Share of the solutions held out for early stopping and for tuning the threshold (--kind implicit: of the prompts).")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the split, the initial weights and the data order.")] = 0,
    device: Annotated[str, typer.Option("--device", help="Where to train: auto (a GPU if there is one, else the CPU), cpu, cuda or cuda:N (the fine-tuned model; the frozen head's encoder; the implicit PRM's policy and reference).")] = "auto",
    precision: Annotated[str, typer.Option(help="--kind finetune: fp32, or bf16 (autocast on the forward passes; fp32 weights, optimizer and loss; for GPUs).")] = "fp32",
    stop_after: Annotated[Optional[int], typer.Option("--stop-after", help="Stop after this many optimizer steps (epochs for the frozen head) with a checkpoint; --resume continues the run.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --output.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start the run in --output again.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Train a process reward model: a head on the frozen offline MiniLM reading each step
    with the problem and the steps before it, a fine-tuned backbone scoring at a marker
    token after each step (--kind finetune), or the implicit PRM (--kind implicit): a causal
    LM trained on whether each solution's final answer is right, no step label used.

    Every labelled step is one example (ProcessBench labels the steps up to the first
    wrong one). The threshold that flags a step is tuned for ProcessBench F1 on the held-out
    solutions and saved with the model. The implicit PRM trains on each solution's outcome
    as the step reader reads it (ProcessBench's final_answer_correct, Math-Shepherd's last
    step mark, PRM800K's finish_reason, any format's outcome column) or from the column
    --outcome-column names, or, for candidates with an answer column, checks each
    candidate's final answer with --checker; its step score is
    sigmoid of the step's log-ratio (0.5: the trained model finds the step as likely as the
    reference did), and its threshold stays 0.5 unless the data has step labels to tune it
    on.

    Examples:

      prefkit prm train processbench_gsm8k.json --output runs/prm

      prefkit prm train trl_stepwise.jsonl --output runs/prm --hidden 0 --json

      prefkit prm train math_shepherd_soft.jsonl --output runs/soft --loss step_mse

      prefkit prm train processbench_gsm8k.json --finetune --max-length 512 --output runs/ft

      prefkit prm train processbench_gsm8k.json --finetune --device cuda --precision bf16 --output runs/ft

      prefkit prm train processbench_gsm8k.json --kind implicit --model ./my-llama --output runs/implicit

      prefkit prm train trl_stepwise.jsonl --kind implicit --outcome-column solved --model ./my-llama --output runs/implicit

      prefkit prm train samples.jsonl --kind implicit --model ./my-llama --checker gsm8k --stop-after 100 --output runs/implicit

      prefkit prm train samples.jsonl --kind implicit --model ./my-llama --checker gsm8k --output runs/implicit --resume
    """
    from prefkit.process import FrozenPRMConfig, train_frozen_prm
    from prefkit.process.finetune import FinetunePRMConfig, finetune_prm

    if finetune and kind is Kind.implicit:
        fail("--finetune and --kind implicit contradict each other: give one --kind")
    kind = Kind.finetune if finetune else kind
    if stop_after is not None and stop_after < 1:
        fail(f"--stop-after must be at least 1, got {stop_after}")
    if kind is not Kind.finetune and precision != "fp32":
        fail("--precision is an option of --kind finetune")
    dev = _device(device)
    if kind is Kind.implicit:
        return _train_implicit(data, output, fmt=fmt, column=column, skip_invalid=skip_invalid,
                               model=model, backbone=backbone, outcome_column=outcome_column,
                               checker=checker, separator=separator, max_length=max_length,
                               loss=loss, beta=beta, batch_size=batch_size, epochs=epochs,
                               learning_rate=learning_rate, val_fraction=val_fraction,
                               seed=seed, stop_after=stop_after, resume=resume,
                               overwrite=overwrite, json_out=json_out, device=dev)
    for flag, value in (("--model", model), ("--beta", beta), ("--batch-size", batch_size),
                        ("--outcome-column", outcome_column)):
        if value is not None:
            fail(f"{flag} is an option of --kind implicit only"
                 + (f"; the {kind.value} PRM's model is --backbone" if flag == "--model"
                    else ""))
    finetune = kind is Kind.finetune
    check_output(output, "prm-finetune" if finetune else "prm-train", resume, overwrite)
    given = {k: v for k, v in (("epochs", epochs), ("learning_rate", learning_rate),
                               ("loss", loss)) if v is not None}
    try:
        config: Any = FinetunePRMConfig(backbone=backbone, max_length=max_length or 256,
                                        val_fraction=val_fraction, seed=seed, device=str(dev),
                                        precision=precision, **given) \
            if finetune else FrozenPRMConfig(encoder=backbone, hidden=hidden,
                                             val_fraction=val_fraction, seed=seed, **given)
    except ValueError as e:
        fail(flag_words(str(e), {"val_fraction": "--val-fraction", "max_length": "--max-length",
                                 "learning_rate": "--learning-rate", "epochs": "--epochs",
                                 "precision": "--precision"}))
    if finetune and backbone is not None and not Path(backbone).is_dir():
        fail(f"--backbone {backbone}: no such folder (give a local Hugging Face model folder)")
    steps = _read_steps(data, fmt, column, skip_invalid)
    _make_parent(output)
    t0 = time.perf_counter()
    with run_errors(), input_errors(data, also=(ValueError,)):
        trainer = finetune_prm if finetune else train_frozen_prm
        place = {} if finetune else {"device": str(dev)}  # the frozen head's encoder
        try:
            summary = trainer(config, output, steps, resume=resume, overwrite=overwrite,
                              progress=not json_out, stop_after=stop_after, **place)
        except FileNotFoundError as e:  # a --backbone that is no folder nor cached Hub id
            if e.filename is not None:
                raise
            fail(flag_words(str(e), {"encoder": "--backbone", "backbone": "--backbone"})
                 .replace("(or None for", "(or no --backbone for"))
    _train_report(summary, output, len(steps), t0, json_out, by_epochs=not finetune)


def _make_parent(output: Path) -> None:
    try:  # the run's parent folder now, not after loading a model
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fail(f"--output {output}: cannot write the run there ({e.strerror or e}); choose "
             "another folder")


def _train_report(summary: dict[str, Any], output: Path, n: int, t0: float,
                  json_out: bool, *, by_epochs: bool = False) -> None:
    summary = {**summary, "output": str(output), "n_solutions": n,
               "seconds": round(time.perf_counter() - t0, 2)}
    if json_out:
        print_json(summary)
        return
    if not summary.get("finished", True):
        n_done = summary.get("epochs_run") if by_epochs else summary.get("steps")
        unit = "epoch" if by_epochs else "optimizer step"
        done = f"{n_done} {unit}{'' if n_done == 1 else 's'}"
        out.print(f"stopped after {done} at --stop-after: a checkpoint (no model yet) is in "
                  f"{output}; the same command with --resume continues", highlight=False)
        return
    source = summary.get("threshold_source") or \
        f"tuned on {summary['n_val_solutions']} held-out solutions"
    out.print(f"trained on {n:,} solutions in {summary['seconds']:.1f}s; threshold "
              f"{summary['threshold']:.3f} ({source}); model in {output}", highlight=False)


def _same_answer(checker: Checker) -> Any:
    """``same(answer, reference)`` of --checker (a GSM8K reference may end in '#### N')."""
    from prefkit.answers import math_equal, numbers_equal

    def same(a: str | None, ref: str) -> bool:
        if checker is Checker.gsm8k:
            return bool(numbers_equal(a, ref.rsplit("####", 1)[-1].strip()))
        return math_equal(a, ref)

    return same


def _is_candidates(path: Path, fmt: str, column: list[str] | None) -> bool:
    """Whether ``path`` holds solutions to score (``candidates``) rather than step labels."""
    from prefkit.data.errors import InvalidInputError
    from prefkit.data.formats import detect
    from prefkit.data.table import Table

    if fmt != "auto":
        return fmt == "candidates"
    try:
        table = Table.of(path)
        with table.decoding():
            return detect(table, ("steps",), parse_mapping(column, "--column") or None
                          ).name == "candidates"
    except InvalidInputError as e:
        fail(e.for_cli())


def _no_outcome_column(path: Path, e: Any, outcome_column: str | None) -> None:
    """Fail naming the fix when the outcome column of --kind implicit is missing."""
    from prefkit.data.table import Table

    name = outcome_column or "final_answer_correct"
    if not any(p.kind == "missing_column" and p.field == name for p in e.problems):
        return
    header = Table.of(path).header()
    shown = ", ".join(header[:30]) + (f" and {len(header) - 30} more" if len(header) > 30
                                      else "")
    fail(f"{path}: no row has the field {name!r}" + ("" if outcome_column else
         " (or 'outcome')") + f" (columns present: {shown}); the implicit PRM trains on "
         "whether each solution's final answer is right: give that field (true/false; "
         "ProcessBench's is final_answer_correct), name it with --outcome-column, or give "
         "candidates with an answer column (prompt, candidates, answer) and --checker")


def _candidate_outcomes(path: Path, cands: Any, checker: Checker, skip_invalid: bool
                        ) -> tuple[list[str], list[list[str]], list[bool]]:
    """Every candidate as a solution, its outcome its final answer checked against the
    row's answer; rows without an answer are refused (or skipped with --skip-invalid)."""
    from prefkit.answers import final_answer
    from prefkit.data.errors import InvalidInputError, InvalidRow

    same = _same_answer(checker)
    prompts, solutions, outcomes, problems = [], [], [], []
    for prompt, cs, ref, line in zip(cands.prompts, cands.candidates, cands.answers,
                                     cands.lines):
        if ref is None or not str(ref).strip():
            problems.append(InvalidRow(
                str(path), line, "answer", ref, "no reference answer", "give each row the "
                "answer its candidates are checked against (--checker), or a step-labelled "
                "file with each solution's outcome (--outcome-column)", "missing_value"))
            continue
        for c in cs:
            prompts.append(prompt)
            solutions.append(c)
            outcomes.append(same(final_answer("\n".join(c)), str(ref)))
    if problems and not skip_invalid:
        fail(InvalidInputError(problems).for_cli())
    report_skipped(path, problems, len(problems))
    return prompts, solutions, outcomes


def _train_implicit(data: Path, output: Path, *, fmt: str, column: list[str] | None,
                    skip_invalid: bool, model: str | None, backbone: str | None,
                    outcome_column: str | None, checker: Checker, separator: str,
                    max_length: int | None, loss: str | None, beta: float | None,
                    batch_size: int | None, epochs: int | None, learning_rate: float | None,
                    val_fraction: float, seed: int, stop_after: int | None, resume: bool,
                    overwrite: bool, json_out: bool, device: Any = None) -> None:
    """``prm train --kind implicit``: outcomes read, the run of
    :func:`prefkit.process.implicit.fit_implicit_prm`."""
    from prefkit.process.implicit import ImplicitPRMConfig, fit_implicit_prm

    if backbone is not None:
        fail("--backbone is the encoder of the frozen and finetune PRMs; --kind implicit "
             "trains the causal LM given as --model")
    if model is None:
        fail("--kind implicit needs --model: the causal LM to train (a local folder or a "
             "cached Hub id), e.g. --model ./my-llama")
    check_output(output, "prm-implicit", resume, overwrite)
    if not Path(model).exists() and (model.startswith((".", "/", "~")) or model.count("/") > 1):
        fail(f"--model {model}: no such folder (give a folder with config.json, the weights "
             "and the tokenizer, or a Hub id that is in the local cache)")
    given = {k: v for k, v in (("loss", loss), ("beta", beta), ("batch_size", batch_size),
                               ("epochs", epochs), ("learning_rate", learning_rate),
                               ("max_length", max_length)) if v is not None}
    try:
        config = ImplicitPRMConfig(model=model, val_fraction=val_fraction, seed=seed, **given)
    except ValueError as e:
        fail(flag_words(str(e), {"val_fraction": "--val-fraction", "learning_rate":
                                 "--learning-rate", "epochs": "--epochs", "batch_size":
                                 "--batch-size", "beta": "--beta", "loss": "--loss"}))
    solutions: tuple[Any, ...]
    if _is_candidates(data, fmt, column):
        if outcome_column is not None:
            fail("--outcome-column reads a step-labelled file's outcomes; a candidate's "
                 "outcome is its final answer checked against the row's answer (--checker)")
        cands = _read_candidates(data, fmt, column, skip_invalid, separator)
        solutions = _candidate_outcomes(data, cands, checker, skip_invalid)
    else:  # StepSolutions, each with the outcome the reader read
        solutions = (_read_steps(data, fmt, column, skip_invalid, outcome_column,
                                 require_outcome=True),)
    n = len(solutions[0])
    if not n:
        fail(f"{data}: no solution left to train on")
    _make_parent(output)
    t0 = time.perf_counter()
    with run_errors(), input_errors(data, also=(ValueError,)):
        try:
            summary = fit_implicit_prm(config, output, *solutions, resume=resume,
                                       overwrite=overwrite, progress=not json_out,
                                       stop_after=stop_after, device=device)
        except OSError as e:  # a --model that is no folder nor cached Hub id
            fail(f"--model {model}: cannot load it ({e})")
    _train_report(summary, output, n, t0, json_out)


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
    device: DeviceOpt = "auto",
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
    prm = _load(model, device)
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
    source = getattr(prm, "threshold_source", None) or \
        "tuned on the training run's held-out solutions"
    result = {**_report(main), "threshold_source": "given" if threshold is not None
              else source,
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
    device: DeviceOpt = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Score every step of every solution: P(step right), the first step below the
    threshold, and the min/last/product/mean aggregates (one JSON line per solution).

    Examples:

      prefkit prm score runs/prm solutions.jsonl

      prefkit prm score runs/prm processbench_gsm8k.json --json > scores.json
    """
    from prefkit.process import AGGREGATES, aggregate_steps, first_flagged

    prm = _load(model, device)
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
    device: DeviceOpt = "auto",
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

    prm = _load(model, device)
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
