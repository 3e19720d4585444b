"""Align a causal language model from preferences: one flat loop, read top to bottom.

    result = align("models/tiny", "prefs.jsonl", config=AlignConfig(loss="dpo"),
                   output_dir="runs/dpo")
    model = AutoModelForCausalLM.from_pretrained("runs/dpo")      # (LoRA: peft's loaders)

The loop (nanoGPT style): seeded set-up (model, optional LoRA adapter) -> read and tokenize
the data -> reference log-probabilities, computed once and cached
(:mod:`prefkit.align.reference`) -> for each optimizer step, ``grad_accum`` micro-batches
of ``batch_size`` prompts, every response of a micro-batch scored in ONE forward pass
(:func:`~prefkit.align.logprobs.response_logps`), per-example losses from
:data:`~prefkit.align.losses.ALIGN_LOSSES` (plus ``sft_weight`` times the SFT term) summed
and divided by the prompts in the step -- so 4 micro-batches of 1 give the same update as
1 of 4 -- then gradient clipping, AdamW, linear warmup and linear decay to 0.

Which reference, when: losses that need one read the cache (the loop runs the reference
zero times per step); token-level DPO needs the reference's full distributions, so it runs
the reference live every step, as does ``precompute_reference=False``. The reference is
``reference_model`` when one is given; else, with LoRA, the model with its adapter disabled
(no second copy); else the model's initial weights (cached), or for a live reference a
second copy loaded from the model's folder. A loss that declares a step pass
(:class:`~prefkit.losses.StepPass`; KTO's reference point, the KL estimate) gets it over the
whole step's mismatched pairs, not per micro-batch, as the hyper-parameter the pass names
(``kl_estimate``; a number in ``loss_kwargs`` fixes it instead, and no pairs are scored):
the loop asks the spec and never names a loss.
Each prompt's mismatched completion (its ``kl_completion``) is fixed before training, as
TRL's KTO fixes it: the completions rotated by one within data-order chunks of
``batch_size`` (:func:`~prefkit.align.data.kl_partners`), whatever the shuffled order.

Several processes (``accelerate launch`` or ``torchrun``): each takes every ``world``-th
prompt of a step, gradients are summed across processes before the optimizer step (every
process divides by the step's global number of prompts), so a run on N GPUs makes the same
updates as one process with N times the accumulation. One process uses no distributed call.

The output folder:

* the model as ``save_pretrained`` writes it (weights and ``config.json``; with LoRA the
  adapter) and the tokenizer, so ``AutoModelForCausalLM`` / peft load it;
* ``prefkit_align.json`` -- the resolved :class:`AlignConfig`, the model source, the data
  and reference fingerprints, what reading and tokenizing left out or cut (``inputs``: rows
  per note), package versions and the final summary;
* ``metrics.jsonl`` -- one line per logged step (``kind="train"``: loss, rewards/chosen,
  rewards/rejected, margins, accuracy, kl, lr, grad_norm, elapsed_s) and per validation
  (``kind="val"``);
* ``checkpoint.pt`` -- trainable weights, optimizer, scheduler, RNG states, the epoch's
  order, counters, config and data fingerprints (:mod:`prefkit.runs`' format, written every
  ``checkpoint_every`` steps, every ``checkpoint_seconds`` of training and at
  SIGINT/SIGTERM); ``resume=True`` continues from it and, on CPU, gives the same weights
  bit for bit as an uninterrupted run;
* ``prefkit_run.json`` -- the marker that makes the folder a prefkit run (written first);
* ``reference_logps.pt`` (and ``.validation.pt``) -- the reference cache.

Set-up (model loading, LoRA, tokenizing, the metric tally, the model folder) lives in
:mod:`prefkit.align._trainer_setup`; the run folder, checkpoints, metrics file, progress bar,
AdamW and the LR schedule in :mod:`prefkit.runs`.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from prefkit.align._trainer_setup import (
    Tally,
    cached_references,
    check_checkpoint,
    check_kind,
    kl_only,
    live_reference,
    make_optimizer,
    setup_model,
    tokenized,
    trainable,
    versions,
    write_model_folder,
)
from prefkit.align.data import collate
from prefkit.align.logprobs import response_logps
from prefkit.align.losses import get_align_loss, sft_term
from prefkit.align.reference import (
    ReferenceLogps,
    data_fingerprint,
    mismatched_examples,
    sequence_logps,
)
from prefkit.align.types import LossOutput, SequenceLogps
from prefkit.runs import (
    CHECKPOINT_SECONDS,
    Checkpointing,
    ConfigIO,
    Metrics,
    RunFolder,
    json_num,
    progress_bar,
    renamed_fields,
    renamed_keyword_args,
    rng_state,
    set_rng_state,
)

__all__ = ["AlignConfig", "AlignResult", "align"]


@renamed_fields(total_steps="max_steps")
@dataclass(frozen=True)
class AlignConfig(ConfigIO):
    """Everything that decides an alignment run; saved in ``prefkit_align.json``.

    ``loss`` names an entry of :data:`~prefkit.align.losses.ALIGN_LOSSES`, ``loss_kwargs``
    its options (``beta``, ...); ``sft_weight`` adds that times the SFT loss (the chosen
    response's per-token NLL) to every example. ``batch_size`` is prompts per forward pass
    (per process), and KTO's chunk for its KL pairs (TRL's ``per_device_train_batch_size``);
    a step takes ``grad_accum`` of them. ``max_steps`` is the length of the run and of its
    LR schedule, as TRL's ``max_steps`` (None: ``epochs`` epochs); ``warmup`` is a fraction of the steps.
    ``max_length`` / ``max_prompt_length`` / ``truncation_mode`` tokenize text data.
    ``precision="bf16"``: forward passes under bfloat16 autocast, fp32 weights and optimizer.
    ``lora_r > 0`` trains a LoRA adapter (``lora_target_modules`` None: peft's default for
    the architecture, else all linear layers); the reference is then the adapter disabled.
    ``chunk_size`` is tokens per chunk of the output layer (None: automatic).
    ``eval_every`` / ``checkpoint_every`` / ``log_every`` are in optimizer steps (the first
    two 0: only at the end). Every field is checked here, so a bad value fails before any
    model is loaded.
    """

    loss: str = "dpo"
    loss_kwargs: Mapping[str, Any] = field(default_factory=dict)
    sft_weight: float = 0.0
    learning_rate: float = 1e-6
    batch_size: int = 8
    grad_accum: int = 1
    epochs: int = 1
    max_steps: int | None = None
    warmup: float = 0.0
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    max_length: int | None = 1024
    max_prompt_length: int | None = None
    truncation_mode: str = "keep_start"
    seed: int = 0
    precision: str = "fp32"
    lora_r: int = 0
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_target_modules: tuple[str, ...] | None = None
    disable_dropout: bool = True
    gradient_checkpointing: bool = False
    precompute_reference: bool = True
    chunk_size: int | None = None
    eval_batch_size: int = 16
    eval_every: int = 0
    checkpoint_every: int = 0
    log_every: int = 10
    shuffle: bool = True

    def __post_init__(self) -> None:
        get_align_loss(self.loss).resolve(**self.loss_kwargs)  # fail early on a typo
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        for name in ("batch_size", "grad_accum", "epochs", "eval_batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 (0: only at the end), got "
                                 f"{getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate} (typical: "
                             "1e-6 to 5e-6 for full fine-tuning, 1e-5 to 1e-4 with LoRA)")
        if not (math.isfinite(self.sft_weight) and self.sft_weight >= 0):
            raise ValueError(f"sft_weight must be >= 0 (0: no SFT term), got {self.sft_weight}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 (None: no clipping), got {self.grad_clip}")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"max_length must be at least 2 (a prompt token and a response "
                             f"token), got {self.max_length}")
        if self.max_prompt_length is not None and self.max_prompt_length < 1:
            raise ValueError(f"max_prompt_length must be at least 1, got "
                             f"{self.max_prompt_length}")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}")
        if self.lora_r < 0:
            raise ValueError(f"lora_r must be >= 0 (0: full fine-tuning), got {self.lora_r}")
        object.__setattr__(self, "loss_kwargs", dict(self.loss_kwargs))
        if self.lora_target_modules is not None:
            mods = self.lora_target_modules
            object.__setattr__(self, "lora_target_modules",
                               (mods,) if isinstance(mods, str) else tuple(mods))


@renamed_fields(out_dir="output_dir")
@dataclass(frozen=True)
class AlignResult:
    """What a run did: ``finished`` is False when it stopped at ``stop_after`` (resume it).
    ``metrics`` is the last train row of ``metrics.jsonl``, ``validation`` the last val row;
    ``reference_cached`` says the reference log-probs came from the cache file."""

    output_dir: Path
    step: int
    epoch: int
    finished: bool
    metrics: dict[str, Any]
    validation: dict[str, Any] | None
    history: list[dict[str, Any]]
    reference_cached: bool = False



# -- the loop --------------------------------------------------------------------------------------
@renamed_keyword_args(max_steps="stop_after")
def align(
    model: nn.Module | str | Path,
    data: Any,
    *,
    config: AlignConfig | None = None,
    output_dir: str | Path,
    tokenizer: Any = None,
    validation: Any = None,
    reference_model: nn.Module | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    device: str | torch.device | None = None,
    checkpoint_seconds: float | None = CHECKPOINT_SECONDS,
) -> AlignResult:
    """Align ``model`` (a causal LM, or its folder / Hub id) on ``data``; write ``output_dir``.

    A model object is trained in place (with ``lora_r``, peft injects the adapter into it).

    ``data`` / ``validation``: a file (:func:`~prefkit.align.data.read_alignment_data`),
    ``AlignmentData`` records (tokenized here with ``tokenizer``, by default the model
    folder's) or ``TokenizedAlignData``. Rows the reader skipped (``AlignmentData.skipped``)
    and rows tokenization here dropped or cut (``TokenizedAlignData.report``) are not
    silent: a ``UserWarning`` gives the counts and the first rows, and
    ``prefkit_align.json`` records the counts (``inputs``). ``reference_model``: a frozen
    reference for losses that run it live (default: see the module docstring).
    ``stop_after`` stops after that many optimizer steps (a checkpoint is written;
    ``resume=True`` continues; the LR schedule is the whole run's, ``config.max_steps``).
    ``device`` defaults to accelerate's (the process's GPU, else the CPU).

    ``output_dir`` must be a new or empty folder, or an earlier run of this function: that
    needs ``resume=True`` (a run stopped before its first checkpoint restarts) or
    ``overwrite=True`` (it is cleared first); any other folder is refused
    (:class:`prefkit.runs.RunError`). Checkpoints: every ``config.checkpoint_every`` steps,
    every ``checkpoint_seconds`` of training (None: never by time; one process only), and
    at SIGINT/SIGTERM (one process only), which then stop the run
    (:class:`prefkit.runs.RunInterrupted`).
    """
    from accelerate import PartialState

    config = config or AlignConfig()
    out = Path(output_dir)
    run = RunFolder(out, "align", resume=resume, overwrite=overwrite)  # looks, writes nothing
    given = None if isinstance(model, nn.Module) else str(model)
    loss = get_align_loss(config.loss)
    state = PartialState()  # joins the process group under accelerate launch / torchrun
    dist = torch.distributed
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    rank = dist.get_rank() if world > 1 else 0
    main = rank == 0
    device = torch.device(device) if device is not None else state.device

    def barrier() -> None:
        if world > 1:
            dist.barrier()

    barrier()  # every process has looked before the main one writes anything

    # -- model (seeded), adapter, tokenizer --------------------------------------------------------
    model, source, tokenizer, peft = setup_model(model, tokenizer, config, device)

    # -- data: tokenized, what was left out said out loud ------------------------------------------
    # the extra pass the loss declares (KTO: its reference point, estimated from mismatched
    # pairs) unless the config fixes its value; each row's partner is fixed here (rotation
    # within data-order chunks of batch_size, as TRL)
    step_pass = loss.step_pass if loss.step_pass and loss.step_pass.wanted(config.loss_kwargs) \
        else None
    if step_pass is not None and (step_pass.examples, step_pass.statistic) != (
            "mismatched", "mean_log_ratio"):
        raise ValueError(f"the {loss.name!r} loss needs the {step_pass.statistic!r} of "
                         f"{step_pass.examples!r} examples each step, which this trainer "
                         "does not compute")
    kl_pairs = step_pass is not None
    if step_pass is not None and config.batch_size < step_pass.min_batch_size:  # as TRL
        raise ValueError(f"the {loss.name!r} loss pairs each prompt with another completion of "
                         f"its chunk of batch_size rows for its {step_pass.hyper}: batch_size "
                         "1 would pair it with its own; use batch_size >= "
                         f"{step_pass.min_batch_size} (and grad_accum for memory), or fix the "
                         f"estimate with loss_kwargs={{{step_pass.hyper!r}: 0}}")
    kl_chunk = config.batch_size if kl_pairs else None
    train, train_counts, notes = tokenized(data, tokenizer, config, "data", kl_chunk)
    val, val_counts = None, None
    if validation is not None:
        val, val_counts, val_notes = tokenized(validation, tokenizer, config, "validation",
                                               kl_chunk)
        notes += val_notes
    for note in notes if main else ():
        warnings.warn(note, UserWarning, stacklevel=2)
    check_kind(loss, train, "data")
    if val is not None:
        check_kind(loss, val, "validation")
    pad_id = train.pad_token_id
    fingerprints = {"train": data_fingerprint(train),
                    "val": None if val is None else data_fingerprint(val)}


    # -- the reference: cached log-probs, or a live model ------------------------------------------
    live_ref = live_reference(loss, config, model, reference_model, peft, source, device)

    # -- resume (the checkpoint checked, its weights loaded below) or start fresh -----------------
    ck = run.load_checkpoint(config, fingerprints, main=main) if run.resuming else None
    if ck is None and main:
        run.start(config.to_dict(), versions=versions())  # an old run is cleared whole first
    barrier()
    ref_train: ReferenceLogps | None = None
    ref_val: ReferenceLogps | None = None
    if loss.needs_reference and live_ref is None:  # before any checkpoint weights are loaded
        ref_train, ref_val = cached_references(
            model, reference_model, peft, train, val, out, config=config, device=device,
            kl_pairs=kl_pairs, progress=progress and main, main=main, barrier=barrier)
    kl_train = mismatched_examples(train.examples, max_length=train.max_length) \
        if kl_pairs else []

    # -- optimizer, schedule, RNG ------------------------------------------------------------------
    n = len(train)
    per_step = config.batch_size * config.grad_accum * world  # prompts per optimizer step
    steps_per_epoch = math.ceil(n / per_step)
    total = config.max_steps or config.epochs * steps_per_epoch
    n_epochs = math.ceil(total / steps_per_epoch)
    params, opt, sched = make_optimizer(model, config, total)
    data_gen = torch.Generator().manual_seed(config.seed + 1)  # epoch order
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed + 2)
        dropout_state = rng_state(device)  # dropout draws from its own saved stream
    step, epoch, step_in_epoch = 0, 0, 0
    perm = torch.arange(n)

    if ck is not None:
        check_checkpoint(ck, run.checkpoint_path, model)
        step, epoch, step_in_epoch = run.restore(ck, model, opt, sched, data_gen, strict=False)
        dropout_state, perm = ck["rng"]["dropout"], ck["rng"]["epoch_perm"]
    metrics = Metrics(run.metrics_path, 0 if ck is None else ck["metrics_rows"], write=main)
    history, log = metrics.history, metrics.log

    def checkpoint() -> None:
        if main:
            run.save_checkpoint(
                config=config.to_dict(), model=trainable(model), optimizer=opt, scheduler=sched,
                rng={"data": data_gen.get_state(), "dropout": dropout_state, "epoch_perm": perm},
                step=step, epoch=epoch, step_in_epoch=step_in_epoch, data=fingerprints,
                metrics_rows=len(history), versions=versions())
        barrier()

    def score(examples: Sequence[Any], idx: list[int], ref: ReferenceLogps | None
              ) -> SequenceLogps:
        """Log-probs of examples ``idx``: one forward pass, the reference cached or live."""
        batch = collate([examples[i] for i in idx], pad_id)
        batch = dataclasses.replace(batch, kl_input_ids=None, kl_attention_mask=None,
                                    kl_loss_mask=None).to(device)  # KTO's pairs: kl_estimate
        with torch.autocast(device.type, dtype=torch.bfloat16,
                            enabled=config.precision == "bf16"):
            logps = response_logps(model, batch, chunk_size=config.chunk_size,
                                   reference=live_ref, token_kl=loss.needs_token_kl)
        if ref is not None:
            logps.reference = ref.take(idx, batch.num_responses, device)[0]
        return logps

    def example_losses(logps: SequenceLogps, stats: Mapping[str, Tensor]
                       ) -> tuple[LossOutput, Tensor]:
        """Per-example losses (b,), plus ``sft_weight`` times the SFT term; ``stats`` holds
        the result of the loss's step pass for the whole step (KTO: ``kl_estimate``)."""
        hyper = {**config.loss_kwargs, **stats} if stats else config.loss_kwargs
        out_ = loss(logps, **hyper)
        if config.sft_weight:
            return out_, out_.losses + config.sft_weight * sft_term(logps)
        return out_, out_.losses

    @torch.no_grad()
    def mean_log_ratio(idx: list[int], examples: Sequence[Any], ref: ReferenceLogps | None
                       ) -> Tensor:
        """The step pass's statistic over prompts ``idx`` (all processes): the mean of
        log pi_theta - log pi_ref over their ``examples`` (mismatched pairs), no gradient."""
        total_diff = torch.zeros(2, dtype=torch.float64, device=device)
        for mb in torch.tensor(idx, dtype=torch.long).split(config.eval_batch_size):
            rows = mb.tolist()
            b = collate([examples[i] for i in rows], pad_id).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16,
                                enabled=config.precision == "bf16"):
                got = sequence_logps(model, b.input_ids, b.attention_mask, b.loss_mask,
                                     chunk_size=config.chunk_size, reference=live_ref)
            r = got["reference"] if ref is None else ref.take(rows, 1, device)[1]
            total_diff += torch.stack([(got["policy"] - r).double().sum(),
                                       torch.tensor(float(len(rows)), device=device)])
        if world > 1:
            dist.all_reduce(total_diff)
        return (total_diff[0] / total_diff[1].clamp(min=1)).float()

    @torch.no_grad()
    def evaluate() -> dict[str, Any]:
        """Validation metrics, in eval mode, over this process's share (then summed)."""
        assert val is not None
        model.eval()
        tally = Tally(device)
        idx = list(range(rank, len(val), world))
        stats: dict[str, Tensor] = {}
        if step_pass is not None:
            kl_val = mismatched_examples(val.examples, max_length=val.max_length)
            stats = {step_pass.hyper: mean_log_ratio(idx, kl_val, kl_only(ref_val))}
        for mb in torch.tensor(idx, dtype=torch.long).split(config.eval_batch_size):
            logps = score(val.examples, mb.tolist(), ref_val)
            tally.add_output(*example_losses(logps, stats), logps)
        model.train()
        return {f"val_{k}": v for k, v in tally.means(world).items()}

    bar = progress_bar(total, "aligning", step, enabled=progress and main)
    # by time and at signals only in one process: several must agree on every checkpoint
    due = Checkpointing(config.checkpoint_every, checkpoint_seconds, clock=world == 1)
    t0 = time.perf_counter()

    # -- epochs and steps --------------------------------------------------------------------------
    with due:  # SIGINT/SIGTERM: checkpoint, then stop
        while epoch < n_epochs and step < total:
            if step_in_epoch == 0:
                perm = torch.randperm(n, generator=data_gen) if config.shuffle else torch.arange(n)
            for s in range(step_in_epoch, steps_per_epoch):
                idx = perm[s * per_step:(s + 1) * per_step]  # this step's prompts (all processes)
                mine = idx[rank::world]  # this process's share, split into micro-batches
                opt.zero_grad(set_to_none=True)
                tally = Tally(device)
                with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                    set_rng_state(device, dropout_state)
                    # the loss's step pass (KTO: one reference point for the whole step)
                    stats = {} if step_pass is None else {step_pass.hyper: mean_log_ratio(
                        mine.tolist(), kl_train, kl_only(ref_train))}
                    for mb in mine.split(config.batch_size):
                        logps = score(train.examples, mb.tolist(), ref_train)
                        out_, losses = example_losses(logps, stats)  # (b,)
                        (losses.sum() / len(idx)).backward()  # the mean over the step's prompts
                        tally.add_output(out_, losses, logps)
                    dropout_state = rng_state(device)
                if world > 1:  # sum the processes' shares of the mean
                    for p in params:
                        if p.grad is None:
                            p.grad = torch.zeros_like(p)
                        dist.all_reduce(p.grad)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip or math.inf)
                opt.step()
                sched.step()
                step, step_in_epoch = step + 1, s + 1

                # -- log, validate, checkpoint --------------------------------------------------
                last = step == total or s == steps_per_epoch - 1
                stopping = stop_after is not None and step >= stop_after
                if step % config.log_every == 0 or last or stopping:
                    row = {"kind": "train", "step": step, "epoch": epoch, **tally.means(world),
                           "lr": sched.get_last_lr()[0], "grad_norm": json_num(float(grad_norm)),
                           "elapsed_s": round(time.perf_counter() - t0, 3)}
                    log(row)
                    bar.update(step, f"epoch {epoch + 1}/{n_epochs} loss {row['loss']:.4f}")
                else:
                    bar.update(step, f"epoch {epoch + 1}/{n_epochs}")
                if val is not None and ((config.eval_every and step % config.eval_every == 0)
                                        or step == total):
                    log({"kind": "val", "step": step, "epoch": epoch, **evaluate()})
                if due(step):  # every checkpoint_every steps, checkpoint_seconds, or a signal
                    checkpoint()
                    due.raise_if_interrupted(step, out, bar)
                if stop_after is not None and step >= stop_after and step < total:
                    checkpoint()
                    bar.close()
                    return _result(out, step, epoch, False, history, ref_train)
                if step >= total:
                    break
            epoch, step_in_epoch = (epoch + 1, 0) if step_in_epoch >= steps_per_epoch \
                else (epoch, step_in_epoch)
    bar.close()

    # -- finish: checkpoint, a Hugging Face folder that describes itself ---------------------------
    checkpoint()
    result = _result(out, step, epoch, True, history, ref_train)
    if main:
        write_model_folder(out, model, tokenizer, {
            "kind": "prefkit-align", "config": config.to_dict(), "model": source,
            "model_given": given,  # as given; "model" is the absolute path of a local folder
            "loss": {"name": loss.name, "hyper": loss.resolve(**config.loss_kwargs),
                     "paper": loss.paper},
            "lora": peft, "data": fingerprints,
            "inputs": {"data": train_counts, "validation": val_counts},
            "reference": None if ref_train is None else ref_train.key,
            "versions": versions(),
            "summary": {"step": step, "epochs_run": epoch, "metrics": result.metrics,
                        "validation": result.validation}})
        run.finish(config.to_dict(), {"step": step, "epochs_run": epoch})
    return result


def _result(out: Path, step: int, epoch: int, finished: bool, history: list[dict[str, Any]],
            ref: ReferenceLogps | None) -> AlignResult:
    train_rows = [r for r in history if r.get("kind") == "train"]
    val_rows = [r for r in history if r.get("kind") == "val"]
    return AlignResult(out, step, epoch, finished, train_rows[-1] if train_rows else {},
                       val_rows[-1] if val_rows else None, list(history),
                       bool(ref is not None and ref.loaded))
