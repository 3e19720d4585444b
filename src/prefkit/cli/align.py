"""`prefkit align`: fine-tune a causal language model directly from preferences.

A thin command over :func:`prefkit.align.trainer.align` (the loop),
:func:`prefkit.align.data.read_alignment_data` / :func:`~prefkit.align.data.tokenize_alignment`
(the data, read here so that skipped rows and cut or dropped examples are reported before
training starts) and :data:`prefkit.align.losses.ALIGN_LOSSES`; no math here.
"""

from __future__ import annotations

import os
import time
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

_EXAMPLES = """Examples:

  prefkit align --loss dpo --model ./my-llama --data prefs.jsonl --output runs/dpo

  prefkit align --loss simpo --beta 2 -p gamma=1.0 --model ./my-llama --data prefs.jsonl --output runs/simpo

  prefkit align --loss kto --model ./my-llama --data unpaired.jsonl --output runs/kto --lora-r 16

  prefkit align --loss listwise --model ./my-llama --data ranked.jsonl --output runs/pl --max-steps 200

  prefkit align --loss dpo --model ./my-llama --data prefs.jsonl --output runs/dpo --stop-after 50

  prefkit align --loss dpo --model ./my-llama --data prefs.jsonl --output runs/dpo --resume

  prefkit align --loss dpo --model ./my-llama --data prefs.jsonl --output runs/dpo --attention flex

  prefkit align --list-losses
"""


def _losses_table() -> str:
    from prefkit.align.losses import ALIGN_LOSSES

    rows: list[tuple[str, str, str, str]] = []
    seen: set[int] = set()
    for spec in ALIGN_LOSSES.values():
        if id(spec) in seen:
            continue
        seen.add(id(spec))
        aliases = [k for k, v in ALIGN_LOSSES.items() if v is spec and k != spec.name]
        hyper = ", ".join(f"{k}={v}" for k, v in spec.defaults.items()) or "-"
        ref = "live" if spec.needs_token_kl else ("cached" if spec.needs_reference else "none")
        rows.append((spec.name + (f" ({', '.join(aliases)})" if aliases else ""), spec.kind,
                     ref, hyper))
    w = max(len(r[0]) for r in rows)
    head = f"{'loss':<{w}}  {'data':<9} {'reference':<10} hyper-parameters (defaults)"
    return "\n".join([head] + [f"{n:<{w}}  {k:<9} {r:<10} {h}" for n, k, r, h in rows])


def _number(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _hyper(spec: Any, given: dict[str, str]) -> dict[str, Any]:
    """The ``-p KEY=VALUE`` options as the loss takes them: a number where its default is a
    number (or None: a value the run estimates, e.g. KTO's kl_estimate), true/false where
    it is a bool, else the text; refused in flags' words otherwise, before any slow work."""
    from prefkit.align.losses import HYPER_RANGES

    out: dict[str, Any] = {}
    for key, text in given.items():
        default = spec.defaults.get(key)
        value = _number(text)
        if isinstance(default, bool):
            if not isinstance(value, bool) and value not in (0, 1):
                fail(f"-p {key}={text}: {key} of the {spec.name!r} loss is true or false "
                     f"(e.g. -p {key}=true)")
            value = bool(value)
        elif isinstance(default, (int, float)) or key in HYPER_RANGES or (
                key in spec.defaults and default is None):
            if default is None and text.lower() == "none":
                value = None
            elif isinstance(value, (bool, str)):
                example = default if default is not None else 0.1
                fail(f"-p {key}={text}: {key} of the {spec.name!r} loss must be a number "
                     f"(e.g. -p {key}={example})")
        out[key] = value
    return out


#: AlignConfig's fields as the command line names them: its errors are said in flags
CONFIG_FLAGS = {
    "max_steps": "--max-steps", "learning_rate": "--learning-rate",
    "batch_size": "--batch-size", "grad_accum": "--grad-accum", "epochs": "--epochs",
    "warmup": "--warmup", "max_length": "--max-length",
    "max_prompt_length": "--max-prompt-length", "sft_weight": "--sft-weight",
    "lora_r": "--lora-r", "lora_alpha": "--lora-alpha", "precision": "--precision",
    "eval_every": "--eval-every", "checkpoint_every": "--checkpoint-every",
    "log_every": "--log-every", "seed": "--seed", "packing": "--packing",
    "torch_compile": "--torch-compile",
}


def _check_model(model: str) -> None:
    """Refuse, in words and before loading anything, a --model that is a file, a prefkit
    reward model, or a folder holding no causal language model (transformers would say
    "cannot load its tokenizer" with an unrelated fix)."""
    import json

    path = Path(model)
    what = ("give the folder of a causal language model (config.json, the weights and the "
            "tokenizer, as save_pretrained writes them) or a Hub id in the local cache")
    if path.is_file():
        fail(f"--model {model} is a file, not a model folder; {what}")
    if not path.is_dir():
        return  # a Hub id (loaded below) or a missing folder (said below)
    from prefkit.runs import run_kind

    run = run_kind(path)
    cfg: Any = None
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    cfg = cfg if isinstance(cfg, dict) else {}
    if run in ("reward-train", "reward-finetune") or cfg.get("kind") == "sequence-scorer" \
            or (path / "backbone.json").is_file():
        fail(f"--model {model} holds a prefkit reward model (from `prefkit reward "
             f"{'finetune' if run == 'reward-finetune' else 'train'}`: an encoder and a "
             "reward head), not a causal language model; align fine-tunes a causal language "
             f"model, so {what}; use the reward model with `prefkit reward score {model} "
             "TEXTS`")
    if not (path / "config.json").is_file():
        if (path / "adapter_config.json").is_file():
            return  # a peft adapter folder: loaded with its base model
        if run == "align":
            fail(f"--model {model} holds a `prefkit align` run that has not finished (no "
                 f"model yet): continue it with `prefkit align ... --output {model} "
                 f"--resume`, or {what}")
        fail(f"--model {model}: no config.json in this folder, so it is not a model folder; "
             f"{what}")
    archs = [str(a) for a in cfg.get("architectures") or []]
    causal = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")
    if archs and not any(a.endswith(causal) for a in archs):
        fail(f"--model {model} holds a {', '.join(archs)} (model_type "
             f"{cfg.get('model_type', '?')!r}), not a causal language model (a "
             f"...ForCausalLM); {what}")


def _kind_mismatch(path: Path, records: Any, spec: Any, kind: str) -> str:
    """Data of one kind for a loss (or --kind) of another: what to choose instead."""
    from prefkit.align.losses import ALIGN_LOSSES

    fits = sorted({s.name for s in ALIGN_LOSSES.values() if s.kind == records.kind})
    head = f"{path} holds {records.kind} data (format {records.format!r}), but "
    if kind != "auto":
        return (head + f"--kind {kind} asks for {kind} data; pairs convert to unpaired or "
                "listwise, nothing else converts: use --kind auto")
    fits = sorted(fits, key=lambda n: n != "kto")  # the common one first
    shown = " or ".join(f"--loss {n}" for n in fits[:3]) + (", ..." if len(fits) > 3 else "")
    return (head + f"--loss {spec.name} takes {spec.kind} data; choose a loss for "
            f"{records.kind} data ({shown}; see --list-losses), or give "
            + ("pairs (prompt, chosen, rejected)" if spec.kind == "pairwise" else
               f"{spec.kind} data"))


def align_command(
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="A causal LM: a local folder (config, weights, tokenizer) or a cached Hub id.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="Preference data: pairs (TRL prompt/chosen/rejected, text or chat), unpaired (prompt/completion/label), listwise (prompt/completions/ranks) or Step-DPO; JSONL, CSV, Parquet or a datasets folder.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Folder to write the aligned model, metrics.jsonl and checkpoints to.")] = None,
    loss: Annotated[str, typer.Option(help="Loss name (see --list-losses); TRL's loss_type names work too.")] = "dpo",
    beta: Annotated[Optional[float], typer.Option(help="The loss's beta (default: the loss's own, e.g. 0.1 for DPO).")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", "-p", help="Another loss hyper-parameter KEY=VALUE (e.g. -p label_smoothing=0.1, -p gamma=1.0).")] = None,
    sft_weight: Annotated[float, typer.Option(help="Weight of the SFT term (mean NLL of the chosen response) added to the loss.")] = 0.0,
    learning_rate: Annotated[float, typer.Option("--learning-rate", "--lr", help="AdamW learning rate.")] = 1e-6,
    batch_size: Annotated[int, typer.Option(help="Prompts per forward pass (each with all its responses).")] = 8,
    grad_accum: Annotated[int, typer.Option(help="Forward passes per optimizer step.")] = 1,
    epochs: Annotated[int, typer.Option(help="Epochs over --data.")] = 1,
    max_steps: Annotated[Optional[int], typer.Option(help="Length of the run, and of its LR schedule, in optimizer steps (overrides --epochs), as TRL's max_steps.")] = None,
    stop_after: Annotated[Optional[int], typer.Option(help="Stop after this many optimizer steps of the run (a checkpoint is written; --resume continues it).")] = None,
    warmup: Annotated[float, typer.Option(help="Linear warmup, as a fraction of the steps.")] = 0.0,
    max_length: Annotated[Optional[int], typer.Option(help="Tokens per prompt+response; longer examples are cut (each cut is reported).")] = 1024,
    max_prompt_length: Annotated[Optional[int], typer.Option(help="Tokens kept from the end of each prompt.")] = None,
    kind: Annotated[str, typer.Option(help="Read --data as auto, pairwise, unpaired or listwise (default: what the loss takes; pairs convert to unpaired/listwise).")] = "auto",
    fmt: Annotated[str, typer.Option("--format", "-f", help="Input format; auto-detected by default.")] = "auto",
    column: Annotated[Optional[list[str]], typer.Option("--column", "-c", help="Column mapping ROLE=NAME (e.g. -c chosen=better).")] = None,
    validation: Annotated[Optional[Path], typer.Option(help="Held-out data of the same kind, evaluated every --eval-every steps and at the end.")] = None,
    eval_every: Annotated[int, typer.Option(help="Evaluate --validation every N optimizer steps (0: at the end only).")] = 0,
    lora_r: Annotated[int, typer.Option(help="LoRA rank (0: full fine-tuning). With LoRA the reference is the model with its adapter off.")] = 0,
    lora_alpha: Annotated[float, typer.Option(help="LoRA alpha.")] = 16.0,
    precision: Annotated[str, typer.Option(help="fp32, or bf16 (autocast on the forward pass; fp32 weights).")] = "fp32",
    gradient_checkpointing: Annotated[bool, typer.Option("--gradient-checkpointing", help="Trade compute for activation memory.")] = False,
    packing: Annotated[str, typer.Option(help="Layout of a forward pass: none (padded rows), pack (no padding), prefix (no padding, each prompt once for all its responses), auto (prefix when the model's attention takes it, else none); the same numbers every way.")] = "auto",
    attention: Annotated[Optional[str], typer.Option(help="The model's attention: sdpa, eager, or flex (FlexAttention: packed and prefix rows through a block mask whose masked blocks are skipped; trains on a CUDA GPU only). Default: the model's own (SDPA).")] = None,
    torch_compile: Annotated[bool, typer.Option("--torch-compile", help="Compile each transformer layer with torch.compile (dynamic shapes): a one-off compile of tens of seconds, then faster steps; the same numbers to float rounding. Not with FSDP2.")] = False,
    checkpoint_every: Annotated[int, typer.Option(help="Write checkpoint.pt every N optimizer steps (0: by time only); one is also written every few minutes of training, at --stop-after, at Ctrl-C / SIGTERM and at the end.")] = 0,
    log_every: Annotated[int, typer.Option(help="Write a metrics.jsonl row every N optimizer steps.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of the data order, dropout and any new weights.", envvar="PREFKIT_SEED")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --output from its last checkpoint (a run stopped before its first one restarts).")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Start again in an --output that already holds a run.")] = False,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid", help="Skip bad rows (each is reported) instead of stopping.")] = False,
    list_losses: Annotated[bool, typer.Option("--list-losses", help="List the losses, the data each takes and their hyper-parameters, and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Fine-tune a causal language model from preferences (DPO and its family, SimPO/ORPO,
    KTO, token-level DPO, listwise Plackett-Luce).

    The reference log-probabilities are computed once and cached in --output; training shows
    a progress bar and writes metrics.jsonl (loss, rewards, margins, accuracy, KL). The output
    folder loads with transformers' AutoModelForCausalLM (with --lora-r, with peft).
    """
    if list_losses:
        typer.echo(_losses_table())
        return
    missing = [f"--{n}" for n, v in (("model", model), ("data", data), ("output", output)) if v is None]
    if missing:
        fail(f"missing {', '.join(missing)} (e.g. prefkit align --loss dpo --model ./my-llama "
             "--data prefs.jsonl --output runs/dpo)")
    assert model is not None and data is not None and output is not None
    t0 = time.perf_counter()
    check_output(output, "align", resume, overwrite)  # before loading the model

    from prefkit.align.data import read_alignment_data, tokenize_alignment
    from prefkit.align.losses import get_align_loss
    from prefkit.align.trainer import AlignConfig, align
    from prefkit.data.alignment import convert_kind

    try:
        spec = get_align_loss(loss)
    except ValueError as e:
        fail(str(e))
    hyper = _hyper(spec, parse_mapping(param, "--param"))
    if beta is not None:
        hyper["beta"] = beta
    try:
        spec.resolve(**hyper)
    except (ValueError, TypeError) as e:
        fail(str(e))
    try:
        config = AlignConfig(
            loss=spec.name, loss_kwargs=hyper, sft_weight=sft_weight, learning_rate=learning_rate,
            batch_size=batch_size, grad_accum=grad_accum, epochs=epochs, max_steps=max_steps,
            warmup=warmup, max_length=max_length, max_prompt_length=max_prompt_length,
            seed=seed, precision=precision, lora_r=lora_r, lora_alpha=lora_alpha,
            gradient_checkpointing=gradient_checkpointing, eval_every=eval_every,
            checkpoint_every=checkpoint_every, log_every=log_every, packing=packing,
            torch_compile=torch_compile)
    except (ValueError, TypeError) as e:
        fail(flag_words(str(e), CONFIG_FLAGS))
    from prefkit.align.model import ATTENTION, attention_implementation

    if attention is not None and attention not in ATTENTION:
        fail(f"--attention must be {', '.join(ATTENTION)} (or left out: the model's own), "
             f"got {attention!r}")
    if kind not in ("auto", "pairwise", "unpaired", "listwise"):
        fail(f"--kind must be auto, pairwise, unpaired or listwise, got {kind!r}")
    if stop_after is not None and stop_after < 1:
        fail(f"--stop-after must be at least 1 (optimizer steps), got {stop_after}")
    if eval_every and validation is None:
        note(f"--eval-every {eval_every} has no effect without --validation (nothing to "
             "evaluate); give --validation FILE to evaluate held-out data")

    for flag, path in (("--data", data), ("--validation", validation)):
        if path is not None and not path.exists():  # before the model: loading it is slow
            no_such_input(path, "preference data", "prefs.jsonl", flag=flag)
    model_path = Path(model)
    if not model_path.exists() and (model.startswith((".", "/", "~")) or model.count("/") > 1):
        fail(f"--model {model}: no such folder (give a folder with config.json, the weights and "
             "the tokenizer, or a Hub id that is in the local cache)")
    _check_model(model)
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as e:
        fail(f"--model {model}: cannot load its tokenizer ({e})")

    def read(path: Path) -> Any:  # path exists: checked before the model loaded
        want = spec.kind if kind == "auto" else kind
        with input_errors(path):
            records = read_alignment_data(path, kind="auto", format=fmt,
                                          columns=parse_mapping(column, "--column") or None,
                                          skip_invalid=skip_invalid)
        try:
            converted = convert_kind(records, want)
        except ValueError:
            fail(_kind_mismatch(path, records, spec, kind))
        report_skipped(path, records.skipped, records.n_skipped)
        if records.n_empty:
            from prefkit.runs import plural

            rows = plural(records.n_empty, "pair" if records.kind == "pairwise" else "row")
            note(f"{path}: {rows} with an empty response, kept (an empty answer is data)",
                 style="dim")
        records = converted
        try:
            tokens = tokenize_alignment(records, tokenizer, max_length=max_length,
                                        max_prompt_length=max_prompt_length)
        except ValueError as e:
            fail(f"{path}: {flag_words(str(e), CONFIG_FLAGS)}")
        if tokens.report:
            note(f"{path}: {tokens.summary()}")
            for item in tokens.report[:20]:
                console.print(f"  {item}", highlight=False, markup=False)
            if len(tokens.report) > 20:
                console.print(f"  ... and {len(tokens.report) - 20} more", highlight=False)
        if not len(tokens):
            fail(f"{path}: no example left to train on after tokenization (raise --max-length)")
        return records, tokens

    records, tokens = read(data)
    val_tokens = None if validation is None else read(validation)[1]
    try:
        with run_errors(), attention_implementation(attention):
            result = align(model, tokens, config=config, output_dir=output,
                           tokenizer=tokenizer, validation=val_tokens, resume=resume,
                           overwrite=overwrite, progress=not as_json, stop_after=stop_after)
    except (ValueError, TypeError, OSError) as e:
        fail(str(e))
    if int(os.environ.get("RANK", "0")) != 0:  # accelerate launch / torchrun: one report
        return
    if stop_after is not None and result.finished and result.step <= stop_after:
        note(f"--stop-after {stop_after} had no effect: the run has {result.step} steps "
             "and finished")
    summary = {
        "output": str(output), "loss": spec.name, "hyper": spec.resolve(**hyper),
        "kind": tokens.kind, "n_train": len(tokens), "steps": result.step,
        "finished": result.finished, "metrics": result.metrics,
        "validation": result.validation, "reference_cached": result.reference_cached,
        "attention": ATTENTION.get(attention or "", "the model's own"),
        "input": {"file": str(data), "format": records.format,
                  "skipped_rows": records.n_skipped, "token_notes": len(tokens.report)},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if as_json:
        print_json(summary)
        return
    m = result.metrics or {}
    parts = [f"{k} {m[k]:.4g}" for k in ("loss", "accuracy", "margins", "kl") if isinstance(m.get(k), (int, float))]
    steps = f"{result.step} step{'' if result.step == 1 else 's'}"
    out.print(f"aligned on {len(tokens):,} {tokens.kind} examples for {steps}"
                  + (f" ({', '.join(parts)})" if parts else "")
                  + (f"; model written to {output}" if result.finished else
                     f"; stopped at --stop-after: a checkpoint (no model yet) is in {output}, "
                     "and the same command with --resume continues"))
    if result.validation:
        v = result.validation
        acc = v.get("accuracy")
        console.print(f"validation: loss {v.get('loss', float('nan')):.4g}"
                      + (f", implicit-reward accuracy {acc:.3f}" if acc is not None else ""))
