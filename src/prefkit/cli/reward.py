"""`prefkit reward`: train a reward model on text pairs, evaluate it, score responses.

Thin commands over :mod:`prefkit.reward` (trainer, model, evaluation) and
:func:`prefkit.data.text_readers.read_preferences`; no math here.
"""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from prefkit.cli._common import (
    check_output,
    check_plot,
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
from prefkit.cli.judge import (
    JudgeCacheOpt,
    JudgeConcurrencyOpt,
    JudgeLocalOpt,
    JudgeOpt,
    JudgeOrdersOpt,
    JudgeTemplateOpt,
    JudgeUrlOpt,
    JudgeVerdictsOpt,
)
from prefkit.runs import plural

reward_app = typer.Typer(
    help="Reward models on a frozen text encoder: train on chosen/rejected pairs, "
         "evaluate against human preferences, score responses.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    epilog="Examples:\n\n  prefkit reward train pairs.jsonl --output runs/rm\n\n"
           "  prefkit reward eval runs/rm test_pairs.jsonl\n\n"
           "  prefkit reward eval --judge qwen --base-url http://127.0.0.1:8000/v1 p.json\n\n"
           "  prefkit reward score runs/rm answers.jsonl\n",
)

MODEL_FILES = ("config.json", "model.safetensors", "backbone.json")
LOSSES = ("bradley_terry", "bradley_terry_margin", "label_smoothing", "reward_centering")


class Head(str, Enum):
    linear = "linear"
    mlp = "mlp"


class Split(str, Enum):
    all = "all"
    train = "train"
    test = "test"


FmtOpt = Annotated[str, typer.Option("--format", "-f", help="Input format (trl, hh_rlhf, llmbar, rewardbench, generic); auto-detected by default.")]
ColumnOpt = Annotated[Optional[list[str]], typer.Option("--column", "-c", help="Column mapping KEY=NAME (keys: prompt, chosen, rejected, margin, category, ...).")]
SplitOpt = Annotated[Split, typer.Option(help="Use all pairs, or the train / test part of the fixed 20% hash split (prefkit.data.text.split_train_test, seed 0: the split of benchmarks/reward_hh.py).")]
SkipOpt = Annotated[bool, typer.Option("--skip-invalid", help="Skip bad rows (each is reported) instead of stopping.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")]


_TRAIN_EXAMPLES = """
Examples:

  prefkit reward train hh_rlhf_harmless_base_test.jsonl.gz --output runs/hh

  prefkit reward train hh.jsonl.gz --split train --output runs/hh   # hold out the fixed 20%

  prefkit reward train prefs.jsonl --validation val.jsonl --head mlp --output runs/mlp --json

  prefkit reward train prefs.csv -c chosen=better -c rejected=worse --output runs/csv

  prefkit reward train prefs.jsonl --output runs/hh --resume
"""
_EVAL_EXAMPLES = """
Examples:

  prefkit reward eval runs/hh test_pairs.jsonl

  prefkit reward eval runs/hh hh.jsonl.gz --split test --plot eval.png

  prefkit reward eval runs/hh llmbar_natural.json --json > eval.json

  prefkit reward eval --judge qwen --base-url http://127.0.0.1:8000/v1 p.json

  prefkit reward eval --local ./judge --template alpaca_eval pairs.jsonl
"""
_SCORE_EXAMPLES = """
Examples:

  prefkit reward score runs/hh answers.jsonl    # prompt/response per line

  prefkit reward score runs/hh candidates.txt --prompt "How do I bake bread?"

  prefkit reward score runs/hh answers.csv --json > rewards.json
"""


# -- helpers ---------------------------------------------------------------------------------
def _read_pairs(path: Path, fmt: str, column: list[str] | None, skip_invalid: bool,
                split: Split, quiet: bool) -> tuple[Any, Any]:
    """(TextPairs, TextReadResult); bad input exits with code 2 and the readers' message."""
    from prefkit.data.text import TextPairs, split_train_test
    from prefkit.data.text_readers import read_preferences

    if not path.exists():
        no_such_input(path, "pairs", "pairs.jsonl")
    with input_errors(path):
        res = read_preferences(path, format=fmt, columns=parse_mapping(column, "--column") or None,
                               skip_invalid=skip_invalid)
    if not isinstance(res.data, TextPairs):
        fail(f"{path} holds {type(res.data).__name__} (format {res.format}), not chosen/rejected "
             "pairs; give a pairs file (formats trl, hh_rlhf, llmbar, rewardbench, generic)")
    report_skipped(path, res.skipped, res.n_skipped)
    if res.n_empty and not quiet:
        console.print(f"[dim]{path}: {plural(res.n_empty, 'pair')} with an empty response, kept "
                      "(an empty answer is data)[/]", highlight=False)
    if res.warnings and not quiet:
        console.print(f"[dim]{plural(len(res.warnings), 'warning')} reading {path}, e.g. "
                      f"{escape(str(res.warnings[0]))}[/]", highlight=False)
    pairs = res.data
    if split is not Split.all:
        train, test = split_train_test(pairs, test_fraction=0.2)
        pairs = train if split is Split.train else test
        if not len(pairs):
            fail(f"{path}: the {split.value} split of its {plural(res.n_read, 'record')} is "
                 "empty (the split holds out a fixed 20% of pairs by hash); use --split all, or "
                 "more pairs")
    return pairs, res


def _check_model_arg(folder: Path, other: Path, command: str, what: str) -> None:
    """Refuse a model argument that is a file (a data file where the model folder goes:
    say the order), before any slow work."""
    if folder.is_file():
        swapped = f"; did you mean `prefkit reward {command} {other} {folder}`?" \
            if other.is_dir() else ""
        fail(f"{folder} is a file, not a model folder: `prefkit reward {command} DIR {what}` "
             "takes the model folder first (DIR, written by `prefkit reward train DATA "
             f"--output DIR`), then the {what.lower()} file{swapped}")


def _load_model(folder: Path) -> Any:
    from prefkit.reward.model import RewardModel

    if not folder.is_dir():
        fail(f"{folder}: no such model folder; a reward-model folder holds "
             f"{', '.join(MODEL_FILES)} (written by `prefkit reward train DATA --output "
             f"{folder}` when training finishes)")
    needed = MODEL_FILES
    cfg = folder / "config.json"
    if cfg.is_file() and '"sequence-scorer"' in cfg.read_text():  # a fine-tuned backbone
        needed = ("config.json", "model.safetensors")
    missing = [n for n in needed if not (folder / n).is_file()]
    if missing:
        fail(f"{folder} is not a reward-model folder: a model folder holds "
             f"{', '.join(needed)}, this one lacks {', '.join(missing)}; "
             f"{_not_a_model_hint(folder)}")
    try:
        return RewardModel.load(folder)
    except (FileNotFoundError, ValueError, KeyError) as e:
        fail(f"{folder}: cannot load the reward model: {e}")


def _not_a_model_hint(folder: Path) -> str:
    """What to do with a folder that holds no reward model: continue its run, or train one
    -- into this folder only where training may write (never into a foreign folder)."""
    from prefkit.runs import run_kind

    kind = run_kind(folder)
    if kind in ("reward-train", "reward-finetune", "") or (
            kind is None and (folder / "checkpoint.pt").is_file()):
        command = "prefkit reward finetune" if kind == "reward-finetune" else \
            "prefkit reward train"
        return (f"training has not finished: continue it with `{command} DATA --output "
                f"{folder} --resume`")
    if kind == "align":
        return (f"it holds a `prefkit align` run (a language model), not a reward model; train "
                "one with `prefkit reward train DATA --output runs/rm`")
    if any(folder.iterdir()):
        return ("it is not a prefkit run; train a reward model into a new folder with "
                "`prefkit reward train DATA --output runs/rm`")
    return f"train one with `prefkit reward train DATA --output {folder}`"


def _reader(model: Any) -> tuple[Any, int, str]:
    """(tokenizer, most tokens read per text, side kept) of a reward model's text reader: a
    frozen encoder's or a fine-tuned scorer's."""
    if hasattr(model, "score_embeddings"):
        m = model.encoder.model
        return m.tokenizer, int(m.max_seq_length), model.encoder.truncation_side
    return model.tokenizer, int(model.max_length), model.truncation_side


def note_cut(path: Path, texts: list[str], tokenizer: Any, limit: int, side: str,
             flag: str = "") -> None:
    """Say how many texts (prompt + response) are longer than the model reads, so cut."""
    from prefkit.reward.scorer import count_cut

    n = count_cut(tokenizer, texts, limit)
    if n:
        what = f"{flag} {limit}" if flag else f"the {limit} the encoder reads"
        kept = "last" if side == "left" else "first"
        note(f"{path}: {n:,} of {plural(len(texts), 'text')} (prompt + response) "
             f"{'has' if n == 1 else 'have'} more tokens than {what}: "
             f"{'it is' if n == 1 else 'each is'} cut to its {kept} {plural(limit, 'token')}")


def _input(path: Path, res: Any, split: Split) -> dict[str, Any]:
    return {"file": str(path), "format": res.format, "rows_read": res.n_read,
            "rows_skipped": res.n_skipped, "split": split.value}


# -- train -----------------------------------------------------------------------------------
#: RewardTrainConfig's fields as the command line names them: its errors are said in flags
TRAIN_FLAGS = {"learning_rate": "--learning-rate", "batch_size": "--batch-size", "epochs": "--epochs",
               "val_fraction": "--validation-fraction", "features": "--features",
               "seed": "--seed"}


@reward_app.command(epilog=_TRAIN_EXAMPLES)
def train(
    data: Annotated[Path, typer.Argument(metavar="DATA", help="Preference pairs: JSONL/JSON/CSV/Parquet (.gz ok), e.g. TRL prompt/chosen/rejected or Anthropic HH.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to write the model to.")],
    fmt: FmtOpt = "auto",
    column: ColumnOpt = None,
    split: SplitOpt = Split.all,
    validation: Annotated[Optional[Path], typer.Option(help="Validation pairs file (instead of holding out --validation-fraction).")] = None,
    validation_fraction: Annotated[Optional[float], typer.Option(help="Share of DATA held out for early stopping when --validation is not given [default: 0.1].")] = None,
    head: Annotated[Head, typer.Option(help="Reward head on the frozen MiniLM embeddings.")] = Head.linear,
    loss: Annotated[str, typer.Option(help=f"Pairwise loss: {', '.join(LOSSES)}.")] = "bradley_terry",
    features: Annotated[Optional[str], typer.Option(help="What the head reads per response, comma-separated blocks: joint (MiniLM embedding of prompt + response), stats (length/format statistics of the response), response (its embedding alone), interaction (prompt x response embedding) [default: joint,stats].")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Most epochs (early stopping after 10 without a better validation loss) [default: 200].")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Pairs per step [default: 64].")] = None,
    learning_rate: Annotated[Optional[float], typer.Option(help="AdamW learning rate [default: 1e-2 linear, 1e-3 mlp].")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights, data order and validation split.", envvar="PREFKIT_SEED")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --output (a finished run is left as it is).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start again in an --output that already holds a run.")] = False,
    skip_invalid: SkipOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a reward model (frozen MiniLM + a Bradley-Terry head) on chosen/rejected pairs.

    By default the linear head reads the MiniLM embedding of prompt + response and eleven
    length/format statistics of the response (RewardTrainConfig's defaults; measured in
    benchmarks/reward_default.py).

    Prints the validation accuracy and where the model was written.
    Texts are embedded once and cached ($PREFKIT_CACHE_DIR/embeddings): the first run on
    2,300 HH pairs takes a few minutes on 2 CPU cores, a second one seconds.
    """
    from prefkit.reward.evaluate import wilson_interval
    from prefkit.reward.train import RewardTrainConfig, train_reward_model

    t0 = time.perf_counter()
    check_output(output, "reward-train", resume, overwrite)  # before the slow embedding
    pairs, res = _read_pairs(data, fmt, column, skip_invalid, split, as_json)
    val_pairs = None
    if validation is not None:
        val_pairs, _ = _read_pairs(validation, fmt, column, skip_invalid, Split.all, as_json)
        if validation_fraction is not None:
            note(f"--validation-fraction {validation_fraction} is not used: --validation "
                 f"{validation} gives the validation pairs (no part of {data} is held out)")
    given = {"features": features and tuple(f.strip() for f in features.split(",") if f.strip()),
             "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
             "val_fraction": 0.0 if validation is not None else validation_fraction}
    try:  # the head's preset (RewardTrainConfig's defaults for linear), then the flags given
        cfg = RewardTrainConfig.preset(head.value, loss=loss, seed=seed,
                                       **{k: v for k, v in given.items() if v is not None})
    except (KeyError, ValueError) as e:
        fail(flag_words(str(e.args[0]) if e.args else str(e), TRAIN_FLAGS))
    from prefkit.reward.losses import get_reward_loss

    for path, p in ((data, pairs), (validation, val_pairs)):
        if p is not None and "margin" in get_reward_loss(cfg.loss).needs and \
                getattr(p, "margin", None) is None:
            fail(f"{path}: --loss {loss} needs a margin per pair, and {path} has no margin "
                 "column; add one (or map yours: --column margin=NAME), or choose another "
                 "--loss (e.g. bradley_terry)")
    if not as_json:
        console.print(f"[dim]{plural(len(pairs), 'training pair')} from {data} (format {res.format}"
                      + (f", {split.value} split" if split is not Split.all else "") + ")[/]")
    from prefkit.reward.backbones import FrozenEncoder

    enc = FrozenEncoder(cfg.encoder, max_seq_length=cfg.max_seq_length,
                        truncation_side=cfg.truncation_side, cache_dir=None).model
    for path, p in ((data, pairs), (validation, val_pairs)):
        if p is not None and not as_json:
            note_cut(path, [*p.texts("chosen"), *p.texts("rejected")], enc.tokenizer,
                     int(enc.max_seq_length), cfg.truncation_side)
    try:
        with run_errors():
            result = train_reward_model(cfg, output, pairs, val_pairs, resume=resume,
                                        overwrite=overwrite, progress=not as_json)
    except ValueError as e:
        fail(str(e))
    n_val = len(val_pairs) if val_pairs is not None else int(round(cfg.val_fraction * len(pairs)))
    acc = result.best["val_accuracy"]
    lo, hi = wilson_interval(acc, n_val) if acc is not None else (None, None)
    if as_json:
        print_json({
            "accuracy": acc, "interval": [lo, hi], "n_val": n_val, "n_train": len(pairs) - (
                0 if val_pairs is not None else n_val),
            "val_loss": result.best["val_loss"], "best_epoch": result.best_epoch,
            "epochs_run": result.epoch, "steps": result.step,
            "stopped_early": result.stopped_early, "output": str(output),
            "config": cfg.to_dict(), "input": _input(data, res, split),
            "seconds": round(time.perf_counter() - t0, 3)})
        return
    if acc is not None:
        out.print(f"validation accuracy {acc:.3f} [95% {lo:.3f}, {hi:.3f}] on "
                  f"{plural(n_val, 'pair')} "
                  f"(best epoch {result.best_epoch} of {result.epoch}, val loss "
                  f"{result.best['val_loss']:.4f})", highlight=False)
    else:
        out.print("no validation pairs: the last epoch's weights were kept", highlight=False)
    out.print(f"model written to {output} ({', '.join(MODEL_FILES)}, metrics.jsonl, "
              f"checkpoint.pt) in {time.perf_counter() - t0:.1f}s", highlight=False)
    out.print(f"next: prefkit reward eval {output} TEST_PAIRS.jsonl", highlight=False)


# -- eval ------------------------------------------------------------------------------------
@reward_app.command("eval", epilog=_EVAL_EXAMPLES)
def evaluate(
    model_dir: Annotated[Optional[Path], typer.Argument(metavar="DIR", help="Model folder written by `prefkit reward train` (with --judge or --local: leave it out).", show_default=False)] = None,
    data: Annotated[Optional[Path], typer.Argument(metavar="DATA", help="Held-out preference pairs (any format `train` reads).", show_default=False)] = None,
    fmt: FmtOpt = "auto",
    column: ColumnOpt = None,
    split: SplitOpt = Split.all,
    plot: Annotated[Optional[Path], typer.Option(help="Write accuracy by category and the calibration curve (PNG/SVG).")] = None,
    judge: JudgeOpt = None,
    local: JudgeLocalOpt = None,
    base_url: JudgeUrlOpt = None,
    template: JudgeTemplateOpt = "mtbench_pair",
    both_orders: JudgeOrdersOpt = True,
    cache: JudgeCacheOpt = None,
    concurrency: JudgeConcurrencyOpt = 16,
    verdicts: JudgeVerdictsOpt = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a --verdicts file that exists.")] = False,
    skip_invalid: SkipOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a reward model (or an LLM judge) on held-out pairs: accuracy, baselines, calibration.

    Scores chosen and rejected responses; prints accuracy with its 95% (Wilson) interval,
    per category, next to the random / longer / shorter baselines, and calibration (ECE,
    Brier). Ties count 0.5. A RewardBench file also gets RewardBench's section scores (a
    tie counts as wrong there).

    With --judge NAME (a server's model) or --local DIR (a transformers folder) an LLM judge
    replaces the reward model: each pair is judged pairwise (both presentation orders by
    default) and scored by the judge's expected vote for the chosen answer (verdict
    probabilities where the judge gives them); a pair whose orders disagree is a tie, and
    a pair with no valid verdict is left out and counted (prefkit.judge.evaluate).
    """
    from prefkit.reward.evaluate import evaluate_scores

    t0 = time.perf_counter()
    check_plot(plot)
    judging = judge is not None or local is not None
    if judging and data is None:  # the one positional argument is the pairs file
        model_dir, data = None, model_dir
    if judging and model_dir is not None:
        fail(f"--judge/--local replace the reward-model folder: give only the pairs file "
             f"(`prefkit reward eval --judge NAME {data}`), not {model_dir}")
    if data is None:
        fail("give a reward-model folder and a pairs file (`prefkit reward eval DIR DATA`), "
             "or a judge and a pairs file (`prefkit reward eval --judge NAME DATA`)")
    if verdicts is not None and not judging:
        fail("--verdicts writes an LLM judge's verdicts: give it with --judge or --local")
    if overwrite and verdicts is None:
        fail("--overwrite replaces a --verdicts file: give --verdicts FILE with it, or leave "
             "--overwrite out (nothing else is written)")
    if verdicts is not None:
        from prefkit.cli.judge import check_written

        check_written("--verdicts", verdicts, data, cache)
    if verdicts is not None and verdicts.exists() and not overwrite:
        fail(f"--verdicts {verdicts} already exists; pass --overwrite to replace it, or choose "
             "another file (with --cache, answers already cached are not asked again)")
    if judging:
        from prefkit.cli.judge import judge_pair_scores

        pairs, res = _read_pairs(data, fmt, column, skip_invalid, split, as_json)
        pairs, s_c, s_r, _, judged = judge_pair_scores(
            pairs, judge=judge, local=local, base_url=base_url, template=template,
            both_orders=both_orders, cache=cache, concurrency=concurrency, verdicts=verdicts,
            data=data, quiet=as_json)
        scorer = f"judge {judged['name']}"
    elif model_dir is None:
        fail("give a reward-model folder and a pairs file (`prefkit reward eval DIR DATA`)")
    else:
        _check_model_arg(model_dir, data, "eval", "DATA")
        model = _load_model(model_dir)
        pairs, res = _read_pairs(data, fmt, column, skip_invalid, split, as_json)
        s_c, s_r = _model_scores(model, pairs, data, as_json)
        scorer, judged = f"reward model {model_dir}", None
    report = evaluate_scores(pairs, s_c, s_r)
    bench = _rewardbench(pairs, res, s_c, s_r)
    if plot is not None:
        report.plot(plot)
    if as_json:
        d = report.to_dict()
        d |= {"model": str(model_dir) if judged is None else judged["name"],
              "input": _input(data, res, split), "seconds": round(time.perf_counter() - t0, 3)}
        if judged is not None:
            d["judge"] = judged
        if bench is not None:
            d["rewardbench"] = bench.to_dict()
        print_json(d)
        return
    out.print(f"{scorer} on {plural(len(pairs), 'pair')} of {data} (format "
              f"{res.format}" + (f", {split.value} split" if split is not Split.all else "")
              + ")", highlight=False)
    out.print(report.table(), highlight=False, markup=False)
    a, longer = report.accuracy, report.baselines["longer"].accuracy
    shorter = report.baselines["shorter"].accuracy
    out.print(f"accuracy {a.accuracy:.3f} [95% {a.low:.3f}, {a.high:.3f}] vs longer-wins "
              f"{longer:.3f}, shorter-wins {shorter:.3f}, random 0.5", highlight=False)
    if bench is not None:
        out.print(f"RewardBench score {bench.score:.3f}: " + ", ".join(
            f"{k} {v:.3f}" for k, v in bench.sections.items())
            + (f" (no subset of {', '.join(bench.missing_sections)} in the file: 0, as "
               "RewardBench counts it)" if bench.missing_sections else ""), highlight=False)
    console.print(f"[dim]{time.perf_counter() - t0:.1f}s"
                  + (f"; plot written to {plot}" if plot else "") + "[/]")


def _rewardbench(pairs: Any, res: Any, s_c: Any, s_r: Any) -> Any:
    """RewardBench 1 scoring of a RewardBench file's pairs (subset = category), else None."""
    if res.format != "rewardbench" or pairs.category is None:
        return None
    from prefkit.reward.rewardbench import rewardbench_scores

    return rewardbench_scores(s_c, s_r, pairs.category)


def _model_scores(model: Any, pairs: Any, data: Path, quiet: bool) -> tuple[Any, Any]:
    """A reward model's (chosen, rejected) scores of text pairs."""
    from prefkit.reward.heads import embed_pairs

    note_cut(data, [*pairs.texts("chosen"), *pairs.texts("rejected")], *_reader(model))
    if not hasattr(model, "score_embeddings"):  # a fine-tuned sequence scorer reads text
        s_c = model.score(pairs.prompt, pairs.chosen)
        s_r = model.score(pairs.prompt, pairs.rejected)
    else:  # embed exactly as in training (TextPairs.texts), then score the embeddings
        feats = embed_pairs(pairs, model.encoder, prompts=model.head.needs_prompt,
                            progress=not quiet)
        prompt = None if feats.prompt is None else feats.prompt.numpy()
        s_c = model.score_embeddings(feats.chosen.numpy(), prompt)
        s_r = model.score_embeddings(feats.rejected.numpy(), prompt)
    return s_c, s_r


# -- score -----------------------------------------------------------------------------------
def _read_texts(path: Path, default_prompt: str, skip_invalid: bool,
                columns: dict[str, str] | None = None) -> tuple[list[Any], list[str], list[int]]:
    """(prompts, responses, lines) from a TXT, JSONL/JSON, CSV or Parquet file
    (:func:`prefkit.data.read_responses`); a file of pairs (chosen, rejected) is refused
    with the command that reads pairs."""
    from prefkit.data.errors import InvalidInputError
    from prefkit.data.text_readers import read_responses

    if not path.exists():
        no_such_input(path, "responses", "responses.jsonl")
    try:
        res = read_responses(path, prompt=default_prompt, skip_invalid=skip_invalid,
                             columns=columns or None)
    except InvalidInputError as e:
        present: set[str] = set()
        if any(p.kind == "missing_column" for p in e.problems):
            from prefkit.data.table import Table

            try:
                present = set(Table.of(path).header())
            except InvalidInputError:
                pass
        pairs = ("; this file holds pairs (chosen, rejected): prefkit reward eval DIR FILE "
                 "measures the model on them, or score one side with --column "
                 "response=chosen") if {"chosen", "rejected"} <= present else ""
        fail(e.for_cli() + pairs)
    report_skipped(path, res.skipped, res.n_skipped)
    data = res.data
    lines = list(data.source_line or range(1, len(data) + 1))
    if res.n_empty:
        note(f"{path}: {plural(res.n_empty, 'empty response')} kept and scored (an empty answer is "
             "data)", style="dim")
    if path.name.removesuffix(".gz").endswith(".txt"):
        blank = _blank_lines(path)
        if blank:
            shown = ", ".join(map(str, blank[:10])) + (", ..." if len(blank) > 10 else "")
            note(f"{path}: skipped {len(blank)} blank line{'s' if len(blank) > 1 else ''} "
                 f"(line{'s' if len(blank) > 1 else ''} {shown}): a .txt file holds one "
                 "response per line", style="dim")
    if default_prompt:
        used = sum(p == default_prompt for p in data.prompt)
        if not used:
            note(f"--prompt {default_prompt!r} was not used: every record of {path} has its "
                 "own prompt (--prompt is for responses without one)")
    return data.prompt, data.response, lines


def _blank_lines(path: Path) -> list[int]:
    """The blank lines of a .txt file (the reader skips them)."""
    from prefkit.data.table import Table

    with Table.of(path).open_text() as f:
        return [i for i, line in enumerate(f, 1) if not line.strip()]


def _prompt_text(p: Any) -> str:
    if isinstance(p, str):
        return p
    from prefkit.data.text import render_chat

    return render_chat(p)


def _short(s: str, n: int) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


@reward_app.command(epilog=_SCORE_EXAMPLES)
def score(
    model_dir: Annotated[Path, typer.Argument(metavar="DIR", help="Model folder written by `prefkit reward train`.")],
    texts: Annotated[Path, typer.Argument(metavar="TEXTS", help="Responses: JSONL/JSON/CSV/Parquet records with 'response' (+ optional 'prompt': a string or chat messages) or 'text'; or a .txt file, one response per line.")],
    prompt: Annotated[str, typer.Option(help="Prompt for responses that have none (every line of a .txt file).")] = "",
    column: Annotated[Optional[list[str]], typer.Option("--column", "-c", help="Column mapping KEY=NAME (keys: response, prompt, text), e.g. --column response=answer.")] = None,
    skip_invalid: SkipOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Score responses: one reward per response, and the best of N per shared prompt.

    Where several responses share a prompt, says which is the best of N (the first wins
    ties, as `RewardModel.best_of_n`).

    Accepted TEXTS: `{"prompt": "...", "response": "..."}` per JSONL line (or CSV columns
    prompt,response); `{"text": "..."}` for an already rendered prompt + response; a `.txt`
    file with one response per line (all answering --prompt). A prompt may also be a list
    of `{"role", "content"}` messages, rendered as in training ("User: ...").
    """
    from prefkit.reward.model import best_per_prompt

    _check_model_arg(model_dir, texts, "score", "TEXTS")
    # the responses before the model: a file that cannot be scored is said at once
    prompts, responses, lines = _read_texts(texts, prompt, skip_invalid,
                                            parse_mapping(column, "--column"))
    model = _load_model(model_dir)
    from prefkit.reward.backbones import response_texts

    note_cut(texts, response_texts(prompts, responses), *_reader(model))
    s = model.score(prompts, responses)
    best = [{"prompt": _prompt_text(prompts[k]), "n": len(idx), "best_line": lines[k],
             "best_index": k, "score": float(s[k])}
            for k, idx in best_per_prompt(prompts, s) if len(idx) > 1]
    best_rows = {b["best_index"] for b in best}
    if as_json:
        print_json({"model": str(model_dir), "file": str(texts), "scores": [
            {"line": lines[i], "prompt": _prompt_text(prompts[i]), "response": responses[i],
             "score": float(s[i]), "best_of_n": i in best_rows} for i in range(len(s))],
            "best_of_n": best})
        return
    t = Table(title=f"rewards from {model_dir}", title_justify="left", header_style="bold")
    for col, just in (("line", "right"), ("prompt", "left"), ("response", "left"),
                      ("reward", "right"), ("", "left")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for i in range(len(s)):
        t.add_row(str(lines[i]), Text(_short(_prompt_text(prompts[i]), 40)),
                  Text(_short(responses[i], 60)), f"{s[i]:+.4f}",
                  "best of N" if i in best_rows else "")
    out.print(t)
    for b in best:
        out.print(Text(f"best of {b['n']} for {_short(b['prompt'], 50)!r}: line "
                       f"{b['best_line']} (reward {b['score']:+.4f})"))
