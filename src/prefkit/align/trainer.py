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

Several processes (``accelerate launch`` or ``torchrun``; :mod:`prefkit.processes`): each
takes every ``world``-th prompt of a step and trains through accelerate's prepared model
(DDP), which averages the gradients over the processes in the backward of a step's last
micro-batch only (the others run under ``no_sync``); every process divides its loss by the
step's global number of prompts and multiplies it by ``world``, so a run on N GPUs makes the
same updates as one process with N times the accumulation. A process left without prompts
(a last step of fewer prompts than processes) joins the all-reduce with a pass of weight 0.
Checkpoints keep :mod:`prefkit.runs`' one-file format (the main process writes them; every
process resumes from it). One process uses no distributed call.
With FSDP2 (``accelerate launch --use_fsdp --fsdp_version 2``; :mod:`prefkit.processes`) the
weights, gradients and AdamW state are sharded over the processes. A model given as a folder
or Hub id is loaded whole by the main process only, on the host (CPU memory); every process
builds the model it trains on the meta device, shards it and receives its shard from the main
process, one tensor at a time through the device
(:meth:`~prefkit.processes.PreparedModel.load_full`), so no accelerator ever holds the whole
model and the other processes do not hold it at all. The reference cache is then scored
through the shards, every process a share, and keyed by the main process's whole host copy
(the key a single process computes: either run reuses the other's file); a live reference
is a second copy sharded the same way; a ``reference_model`` object is the caller's, whole on
every process, and is used as in one process. A model object given to :func:`align` is
already whole on every process: it is sharded in place. Every process
makes the same number of passes (a process with fewer prompts pads with passes of weight 0,
in training, validation and KTO's step pass), gradients are reduce-scattered in every
micro-batch, and the checkpoint and the model folder get the full weights and optimizer state
gathered onto the main process, in the layout one process writes.
With DeepSpeed ZeRO-3 (``accelerate launch --use_deepspeed --zero_stage 3``; DeepSpeed
installed) the same, through DeepSpeed's engine: every process loads the model whole, makes
the checks and the reference cache, then ``deepspeed.initialize`` partitions it with AdamW
(:meth:`~prefkit.processes.PreparedModel.attach`); the step's backward and optimizer step go
through :meth:`~prefkit.processes.PreparedModel.backward` and
:meth:`~prefkit.processes.PreparedModel.step`, which are the engine's there.

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

The code reads in that order: :func:`align` is the loop; :func:`_setup` builds the run's
:class:`AlignState` (everything the loop's functions share); :func:`_train_step` is one
optimizer step (forward, backward, update); then logging, :func:`_evaluate`,
:func:`_checkpoint` and :func:`_finish`. Model loading and LoRA live in
:mod:`prefkit.align.model` (public, shared with prefkit.rl); the other set-up parts
(tokenizing, the metric tally, the model folder) in :mod:`prefkit.align._trainer_setup`; the
run folder, checkpoints, metrics file, progress bar, AdamW and the LR schedule in
:mod:`prefkit.runs`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
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
    check_kind,
    checked_step_pass,
    compile_layers,
    kl_only,
    live_reference,
    load_checkpoint,
    make_optimizer,
    meta_causal_lm,
    model_checks,
    sharded_references,
    tokenized,
    trainable,
    versions,
    write_model_folder,
)
from prefkit.align.data import AlignBatch, TokenizedAlignData, collate
from prefkit.align.logprobs import response_logps
from prefkit.align.losses import AlignLoss, get_align_loss, sft_term
from prefkit.align.model import prepare_causal_lm
from prefkit.align.packing import PACKING_MODES, PackedBatch, pack_examples, resolve_packing
from prefkit.align.reference import (
    ReferenceLogps,
    data_fingerprint,
    mismatched_examples,
)
from prefkit.align.types import LossOutput, SequenceLogps
from prefkit.losses import StepPass
from prefkit.processes import (
    FSDP2,
    PreparedModel,
    Processes,
    ZeRO3,
    join_processes,
    prepare_model,
    training_accelerator,
)
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
    ``packing`` lays out a micro-batch's sequences (:mod:`prefkit.align.packing`): ``"none"``
    padded rows, ``"pack"`` without padding, ``"prefix"`` also each prompt once for all its
    responses (a tree mask); ``"auto"`` is ``"prefix"`` when the model takes 4D masks
    (eager / SDPA attention), else ``"none"`` -- the same numbers every way (to float rounding).
    ``torch_compile`` compiles each transformer layer (``torch.compile``, dynamic shapes; as
    transformers' ``TrainingArguments.torch_compile``): a one-off compile of tens of seconds,
    then faster steps (on a CPU ~1.08x at 8 and at 32 pairs, the tiny Llama of
    ``benchmarks/align_speed.py``); not with FSDP2 or ZeRO-3.
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
    packing: str = "auto"
    torch_compile: bool = False
    eval_batch_size: int = 16
    eval_every: int = 0
    checkpoint_every: int = 0
    log_every: int = 10
    shuffle: bool = True

    def __post_init__(self) -> None:
        get_align_loss(self.loss).resolve(**self.loss_kwargs)  # fail early on a typo
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.packing not in ("auto", *PACKING_MODES):
            raise ValueError(f"packing must be one of auto, {', '.join(PACKING_MODES)}; got "
                             f"{self.packing!r}")
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



# -- the run's state -------------------------------------------------------------------------------
@dataclass(eq=False)
class AlignState:
    """What the loop's functions share, set up once by :func:`_setup`; only the counters,
    ``perm`` and ``dropout_state`` change as the run goes."""

    config: AlignConfig
    loss: AlignLoss
    step_pass: StepPass | None  # the loss's extra pass per step (KTO: kl_estimate), or None
    run: RunFolder
    device: torch.device
    procs: Processes  # this process is ``procs.rank`` of ``procs.world``, the main one rank 0
    # the model (as loaded, and as prepared for the processes) and its reference
    model: nn.Module
    prepared: PreparedModel  # training forward passes go through it (DDP on several)
    source: str | None  # where the model was loaded from (absolute path / Hub id)
    given: str | None  # the model argument as given (None: a model object)
    tokenizer: Any
    peft: bool
    live_ref: Any  # a reference run at every step, or None (cached or no reference)
    ref_train: ReferenceLogps | None
    ref_val: ReferenceLogps | None
    # the data
    train: TokenizedAlignData
    val: TokenizedAlignData | None
    counts: dict[str, Any]  # what reading and tokenizing left out, per input
    fingerprints: dict[str, Any]
    kl_train: list[Any]  # each training prompt's mismatched pair (step pass), else []
    # optimization: the schedule's length, AdamW, the epoch order and dropout's RNG
    per_step: int  # prompts per optimizer step, all processes
    steps_per_epoch: int
    total: int
    n_epochs: int
    params: list[nn.Parameter]
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    data_gen: torch.Generator
    dropout_state: Any
    perm: Tensor
    metrics: Metrics
    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0

    @property
    def main(self) -> bool:
        return self.procs.main


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
    config = config or AlignConfig()
    st = _setup(model, data, config, output_dir=output_dir, tokenizer=tokenizer,
                validation=validation, reference_model=reference_model, resume=resume,
                overwrite=overwrite, progress=progress, device=device)
    bar = progress_bar(st.total, "aligning", st.step, enabled=progress and st.main)
    # by time and at signals only in one process: several must agree on every checkpoint
    due = Checkpointing(config.checkpoint_every, checkpoint_seconds, clock=st.procs.world == 1)
    t0 = time.perf_counter()

    with due:  # SIGINT/SIGTERM: checkpoint, then stop
        while st.epoch < st.n_epochs and st.step < st.total:
            if st.step_in_epoch == 0:
                st.perm = torch.randperm(len(st.train), generator=st.data_gen) \
                    if config.shuffle else torch.arange(len(st.train))
            for s in range(st.step_in_epoch, st.steps_per_epoch):
                idx = st.perm[s * st.per_step:(s + 1) * st.per_step]  # this step's prompts
                tally, grad_norm = _train_step(st, idx)  # forward, backward, AdamW
                st.step, st.step_in_epoch = st.step + 1, s + 1

                # -- log, validate, checkpoint --------------------------------------------------
                last = st.step == st.total or s == st.steps_per_epoch - 1
                stopping = stop_after is not None and st.step >= stop_after
                _log_step(st, tally, grad_norm, bar, t0, row=st.step % config.log_every == 0
                          or last or stopping)
                if st.val is not None and ((config.eval_every
                                            and st.step % config.eval_every == 0)
                                           or st.step == st.total):
                    st.metrics.log({"kind": "val", "step": st.step, "epoch": st.epoch,
                                    **_evaluate(st)})
                if due(st.step):  # every checkpoint_every steps, checkpoint_seconds, or a signal
                    _checkpoint(st)
                    due.raise_if_interrupted(st.step, st.run.path, bar)
                if stopping and st.step < st.total:
                    _checkpoint(st)
                    bar.close()
                    return _result(st, finished=False)
                if st.step >= st.total:
                    break
            if st.step_in_epoch >= st.steps_per_epoch:
                st.epoch, st.step_in_epoch = st.epoch + 1, 0
    bar.close()
    return _finish(st)


# -- set-up ----------------------------------------------------------------------------------------
def _setup(model: nn.Module | str | Path, data: Any, config: AlignConfig, *,
           output_dir: str | Path, tokenizer: Any, validation: Any,
           reference_model: nn.Module | None, resume: bool, overwrite: bool, progress: bool,
           device: str | torch.device | None) -> AlignState:
    """Everything before the first step: the processes, the run folder, the model (seeded),
    the data (tokenized, what was left out warned about), the reference (cached log-probs or
    a live model), AdamW and its schedule, the RNG streams -- and a checkpoint's state when
    resuming."""
    out = Path(output_dir)
    run = RunFolder(out, "align", resume=resume, overwrite=overwrite)  # looks, writes nothing
    given = None if isinstance(model, nn.Module) else str(model)
    loss = get_align_loss(config.loss)
    procs, default_device = join_processes()  # accelerate launch / torchrun: the group
    accelerator = training_accelerator(procs)  # several: DDP (refuses what it cannot run)
    if config.torch_compile and isinstance(accelerator, (FSDP2, ZeRO3)):
        raise ValueError("torch_compile is not supported with FSDP2 or DeepSpeed ZeRO-3 here "
                         "(their hooks would be traced into the compiled layers): train "
                         "without it, or with DDP")
    main = procs.main
    device = torch.device(device) if device is not None else default_device
    procs.barrier()  # every process has looked before the main one writes anything

    # -- model (seeded), adapter, tokenizer --------------------------------------------------------
    # FSDP2 from a folder / Hub id: every process builds the model it trains on the meta
    # device; only the main process loads the weights (``whole``), on the host (CPU memory),
    # which fill the shards: no accelerator ever holds the whole model
    whole: nn.Module | None = None
    on_meta = isinstance(accelerator, FSDP2) and not isinstance(model, nn.Module)
    if on_meta:
        skeleton, source, tokenizer, peft = meta_causal_lm(model, tokenizer, config)
    if main or not on_meta:
        model, source, tokenizer, peft = prepare_causal_lm(
            model, tokenizer, device=torch.device("cpu") if on_meta else device,
            seed=config.seed, lora_r=config.lora_r,
            lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
            lora_target_modules=config.lora_target_modules,
            disable_dropout=config.disable_dropout,
            gradient_checkpointing=config.gradient_checkpointing)
    if on_meta:
        whole, model = (model if main else None), skeleton

    # -- data: tokenized, what was left out said out loud ------------------------------------------
    # the extra pass the loss declares (KTO: its reference point, estimated from mismatched
    # pairs) unless the config fixes its value; each row's partner is fixed here (rotation
    # within data-order chunks of batch_size, as TRL)
    step_pass = checked_step_pass(loss, config)
    kl_pairs = step_pass is not None
    train, val, counts = _inputs(data, validation, tokenizer, config, loss, kl_pairs=kl_pairs,
                                 main=main)
    fingerprints = {"train": data_fingerprint(train),
                    "val": None if val is None else data_fingerprint(val)}

    # -- the reference: cached log-probs, or a live model ------------------------------------------
    # (FSDP2 from a folder: a second copy is built on the meta device and sharded with the
    # model; ``whole_ref``: the main process's whole copy on the host, to fill the shards)
    live_ref, whole_ref = live_reference(loss, config, model, reference_model, peft, source,
                                         device, on_meta=on_meta, main=main)
    shard_ref = on_meta and isinstance(live_ref, nn.Module) and any(
        p.is_meta for p in live_ref.parameters())

    # -- resume (the checkpoint checked, its weights loaded below) or start fresh -----------------
    # (FSDP2: only the main process reads the weights and optimizer state; see loaders below)
    ck = load_checkpoint(run, config, fingerprints, model, procs,
                         sharded=isinstance(accelerator, (FSDP2, ZeRO3))) if run.resuming else None
    if ck is None and main:
        run.start(config.to_dict(), versions=versions())  # an old run is cleared whole first
    procs.barrier()
    ref_train: ReferenceLogps | None = None
    ref_val: ReferenceLogps | None = None
    # the cached reference log-probs, before any checkpoint weights are loaded; FSDP2 from a
    # folder with the model as its own reference: through the shards, once they are filled
    cache_refs = loss.needs_reference and live_ref is None
    through_shards = cache_refs and on_meta and reference_model is None
    if cache_refs and not through_shards:
        ref_train, ref_val = cached_references(
            model, reference_model, peft, train, val, out, config=config, device=device,
            kl_pairs=kl_pairs, progress=progress and main, main=main, barrier=procs.barrier)
    kl_train = mismatched_examples(train.examples, max_length=train.max_length) \
        if kl_pairs else []
    if isinstance(accelerator, (FSDP2, ZeRO3)) and not on_meta:
        # the log-prob engine and the packing check a model once, by forwards of their own: on
        # every process before sharding (after, a process whose reference came from the cache
        # would make them alone, collectives the others never join; ZeRO-3 likewise)
        model_checks(model, train, config, device)

    # -- optimizer, schedule, RNG ------------------------------------------------------------------
    n = len(train)
    per_step = config.batch_size * config.grad_accum * procs.world  # prompts per optimizer step
    steps_per_epoch = math.ceil(n / per_step)
    total = config.max_steps or config.epochs * steps_per_epoch
    # DDP / FSDP2 on several processes (FSDP2 shards the parameters: the optimizer comes after)
    prepared = prepare_model(model, accelerator, reference=live_ref if shard_ref else None)
    if on_meta:  # the main process's weights fill every shard (the live reference's too)
        prepared.load_full(whole, device, reference=whole_ref)
        # the same checks, through the root on every process at once (the shards gathered:
        # no process holds a whole model on its device to check before)
        prepared(functools.partial(model_checks, data=train, config=config, device=device))
        if through_shards:  # every process scores a share; the main one keys it by ``whole``
            ref_train, ref_val = sharded_references(
                prepared, whole, peft, train, val, out, config=config, device=device,
                kl_pairs=kl_pairs, progress=progress, procs=procs)
        whole = whole_ref = None
        prepared.reshard()  # the root's weights back to their shards, for the optimizer
    if config.torch_compile:  # after the reference cache and the checks: they run once
        compile_layers(model)
        if isinstance(live_ref, nn.Module):
            compile_layers(live_ref)
    params, opt, sched = make_optimizer(model, config, total)
    # ZeRO-3: DeepSpeed's engine takes the model and AdamW and partitions both (else nothing)
    prepared.attach(opt, grad_clip=config.grad_clip)
    data_gen = torch.Generator().manual_seed(config.seed + 1)  # epoch order
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed + 2)
        dropout_state = rng_state(device)  # dropout draws from its own saved stream
    step, epoch, step_in_epoch = 0, 0, 0
    perm = torch.arange(n)
    if ck is not None:
        # FSDP2: the main process's full weights and optimizer state broadcast into the shards
        into_model, into_opt = prepared.loaders(opt)
        step, epoch, step_in_epoch = run.restore(ck, into_model, into_opt, sched, data_gen,
                                                 strict=False)
        dropout_state, perm = ck["rng"]["dropout"], ck["rng"]["epoch_perm"]
    metrics = Metrics(run.metrics_path, 0 if ck is None else ck["metrics_rows"], write=main)

    return AlignState(
        config=config, loss=loss, step_pass=step_pass, run=run, device=device, procs=procs,
        model=model, prepared=prepared, source=source, given=given, tokenizer=tokenizer, peft=peft,
        live_ref=live_ref, ref_train=ref_train, ref_val=ref_val, train=train, val=val,
        counts=counts, fingerprints=fingerprints,
        kl_train=kl_train, per_step=per_step, steps_per_epoch=steps_per_epoch, total=total,
        n_epochs=math.ceil(total / steps_per_epoch), params=params, opt=opt, sched=sched,
        data_gen=data_gen, dropout_state=dropout_state, perm=perm, metrics=metrics, step=step,
        epoch=epoch, step_in_epoch=step_in_epoch)


def _inputs(data: Any, validation: Any, tokenizer: Any, config: AlignConfig, loss: AlignLoss,
            *, kl_pairs: bool, main: bool
            ) -> tuple[TokenizedAlignData, TokenizedAlignData | None, dict[str, Any]]:
    """The training and validation data tokenized (unpaired rows given their KL partner
    when ``kl_pairs``), checked against the loss's kind; what reading and tokenizing left out
    is warned about (the main process) and counted (``prefkit_align.json``'s ``inputs``)."""
    kl_chunk = config.batch_size if kl_pairs else None
    train, train_counts, notes = tokenized(data, tokenizer, config, "data", kl_chunk)
    val, val_counts = None, None
    if validation is not None:
        val, val_counts, val_notes = tokenized(validation, tokenizer, config, "validation",
                                               kl_chunk)
        notes += val_notes
    for note in notes if main else ():
        warnings.warn(note, UserWarning, stacklevel=5)  # align()'s caller
    check_kind(loss, train, "data")
    if val is not None:
        check_kind(loss, val, "validation")
    return train, val, {"data": train_counts, "validation": val_counts}


# -- one optimizer step ----------------------------------------------------------------------------
def _train_step(st: AlignState, idx: Tensor) -> tuple[Tally, Tensor]:
    """One optimizer step on prompts ``idx`` (all processes'): this process's share in
    micro-batches of ``batch_size``, each loss divided by the step's prompts and
    backpropagated through the prepared model -- whose gradients are averaged over the
    processes in the last micro-batch's backward, the others under ``no_sync`` -- then
    clipped, AdamW and the schedule stepped. Returns the step's metric tally and the
    gradient norm before clipping."""
    config, device, procs = st.config, st.device, st.procs
    mine = idx[procs.rank::procs.world]  # this process's share, split into micro-batches
    # DDP averages the processes' gradients: a loss times ``world`` makes that their sum
    share = procs.world if st.prepared.averaged else 1
    # (micro-batch, weight); FSDP2: as many as process 0 has, a process with fewer pads with
    # passes of weight 0 (every pass gathers weights); else a process without prompts makes
    # one such pass to join DDP's all-reduce
    micro = [(mb, share) for mb in mine.split(config.batch_size)] if len(mine) else []
    micro += [(idx[:1], 0)] * (_rounds(st, len(idx), config.batch_size) - len(micro))
    st.opt.zero_grad(set_to_none=True)
    tally = Tally(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        set_rng_state(device, st.dropout_state)
        # the loss's step pass (KTO: one reference point for the whole step)
        stats = {} if st.step_pass is None else {st.step_pass.hyper: _mean_log_ratio(
            st, mine.tolist(), st.kl_train, kl_only(st.ref_train), n_all=len(idx))}
        for i, (mb, weight) in enumerate(micro):
            # all but the last micro-batch keep their gradients local (DDP)
            with st.prepared.no_sync() if i < len(micro) - 1 else contextlib.nullcontext():
                logps = _score(st, st.train.examples, mb.tolist(), st.ref_train)
                out, losses = _example_losses(st, logps, stats)  # (b,)
                # the mean over the step's prompts (ZeRO-3: through DeepSpeed's engine)
                st.prepared.backward(losses.sum() * weight / len(idx))
            if weight:
                tally.add_output(out, losses, logps)
        st.dropout_state = rng_state(device)
    # clipped, AdamW (ZeRO-3: the engine's step), the schedule
    grad_norm = st.prepared.step(st.opt, st.params, config.grad_clip)
    st.sched.step()
    return tally, grad_norm


def _rounds(st: AlignState, n_all: int, size: int) -> int:
    """How many passes of ``size`` rows this process makes over its share of ``n_all``
    rows (every ``world``-th from its rank): with FSDP2 process 0's number (the most), as
    every pass is collective; else its own, at least one (DDP's all-reduce)."""
    procs = st.procs
    if st.prepared.sharded:
        return math.ceil(math.ceil(n_all / procs.world) / size)
    return max(1, math.ceil(len(range(procs.rank, n_all, procs.world)) / size))


def _batch(st: AlignState, examples: Sequence[Any], idx: list[int]) -> AlignBatch | PackedBatch:
    """Examples ``idx`` as one batch on the device, in the run's layout (``packing``:
    padded rows, or packed without padding). KTO's mismatched pairs are left out: the step
    pass scores them for the whole step (kl_estimate)."""
    chosen = [examples[i] for i in idx]
    mode = resolve_packing(st.config.packing, st.model)
    if mode != "none":
        return pack_examples(chosen, st.train.pad_token_id, mode=mode,
                             kl_pairs=False).to(st.device)
    batch = collate(chosen, st.train.pad_token_id)
    return dataclasses.replace(batch, kl_input_ids=None, kl_attention_mask=None,
                               kl_loss_mask=None).to(st.device)


def _score(st: AlignState, examples: Sequence[Any], idx: list[int],
           ref: ReferenceLogps | None, *, token_kl: bool | None = None) -> SequenceLogps:
    """Log-probs of examples ``idx``: one forward pass, the reference cached or live
    (``token_kl`` None: when the loss needs it)."""
    device = st.device
    batch = _batch(st, examples, idx)
    with torch.autocast(device.type, dtype=torch.bfloat16,
                        enabled=st.config.precision == "bf16"):
        logps = st.prepared(functools.partial(
            response_logps, batch=batch, chunk_size=st.config.chunk_size,
            reference=st.live_ref,
            token_kl=st.loss.needs_token_kl if token_kl is None else token_kl))
    if ref is not None:
        logps.reference = ref.take(idx, batch.num_responses, device)[0]
    return logps


def _example_losses(st: AlignState, logps: SequenceLogps, stats: Mapping[str, Tensor]
                    ) -> tuple[LossOutput, Tensor]:
    """Per-example losses (b,), plus ``sft_weight`` times the SFT term; ``stats`` holds
    the result of the loss's step pass for the whole step (KTO: ``kl_estimate``)."""
    config = st.config
    hyper = {**config.loss_kwargs, **stats} if stats else config.loss_kwargs
    out = st.loss(logps, **hyper)
    if config.sft_weight:
        return out, out.losses + config.sft_weight * sft_term(logps)
    return out, out.losses


@torch.no_grad()
def _mean_log_ratio(st: AlignState, idx: list[int], examples: Sequence[Any],
                    ref: ReferenceLogps | None, *, n_all: int) -> Tensor:
    """The step pass's statistic over prompts ``idx`` (this process's share of ``n_all``):
    the mean over all processes of log pi_theta - log pi_ref over their ``examples``
    (mismatched pairs: one unlabelled response each), no gradient; in the run's layout
    (packed without padding unless ``packing`` resolves to ``"none"``: a pair's prompt and
    completion come from different rows, so prefix sharing has nothing to share here)."""
    config, device = st.config, st.device
    size = config.eval_batch_size
    total_diff = torch.zeros(2, dtype=torch.float64, device=device)
    # a process without prompts makes none; with FSDP2, as many as process 0 (rows [0], unused)
    rounds = _rounds(st, n_all, size) if st.prepared.sharded else math.ceil(len(idx) / size)
    for i in range(0, rounds * size, size):
        rows = idx[i:i + size]
        got = _score(st, examples, rows or [0], None, token_kl=False)  # (b, 1)
        if not rows:
            continue
        r = got.reference[:, 0] if ref is None else ref.take(rows, 1, device)[1]
        total_diff += torch.stack([(got.policy[:, 0] - r).double().sum(),
                                   torch.tensor(float(len(rows)), device=device)])
    st.procs.all_reduce_(total_diff)
    return (total_diff[0] / total_diff[1].clamp(min=1)).float()


# -- logging, validation, checkpoints, the end -----------------------------------------------------
def _log_step(st: AlignState, tally: Tally, grad_norm: Tensor, bar: Any, t0: float, *,
              row: bool) -> None:
    """The progress bar, and (``row``) a train row of ``metrics.jsonl``."""
    where = f"epoch {st.epoch + 1}/{st.n_epochs}"
    if not row:
        bar.update(st.step, where)
        return
    values = {"kind": "train", "step": st.step, "epoch": st.epoch, **tally.means(st.procs),
              "lr": st.sched.get_last_lr()[0], "grad_norm": json_num(float(grad_norm)),
              "elapsed_s": round(time.perf_counter() - t0, 3)}
    st.metrics.log(values)
    bar.update(st.step, f"{where} loss {values['loss']:.4f}")


@torch.no_grad()
def _evaluate(st: AlignState) -> dict[str, Any]:
    """Validation metrics, in eval mode, over this process's share (then summed)."""
    val = st.val
    assert val is not None
    st.model.eval()
    tally = Tally(st.device)
    idx = list(range(st.procs.rank, len(val), st.procs.world))
    stats: dict[str, Tensor] = {}
    if st.step_pass is not None:
        kl_val = mismatched_examples(val.examples, max_length=val.max_length)
        stats = {st.step_pass.hyper: _mean_log_ratio(st, idx, kl_val, kl_only(st.ref_val),
                                                     n_all=len(val))}
    size = st.config.eval_batch_size
    # none: fewer rows than processes; FSDP2: as many passes as process 0 (row 0, unused)
    rounds = _rounds(st, len(val), size) if st.prepared.sharded else math.ceil(len(idx) / size)
    for i in range(0, rounds * size, size):
        rows = idx[i:i + size]
        logps = _score(st, val.examples, rows or [0], st.ref_val)
        if rows:
            tally.add_output(*_example_losses(st, logps, stats), logps)
    st.model.train()
    return {f"val_{k}": v for k, v in tally.means(st.procs).items()}


def _checkpoint(st: AlignState) -> None:
    """``checkpoint.pt`` (the main process), then every process waits for it. FSDP2: the
    full weights and optimizer state gathered first (every process takes part)."""
    weights, optim = st.prepared.full_state(st.opt) if st.prepared.sharded else (None, None)
    if st.main:
        st.run.save_checkpoint(
            config=st.config.to_dict(),
            model=trainable(st.model) if weights is None else weights,
            optimizer=st.opt if optim is None else optim,
            scheduler=st.sched,
            rng={"data": st.data_gen.get_state(), "dropout": st.dropout_state,
                 "epoch_perm": st.perm},
            step=st.step, epoch=st.epoch, step_in_epoch=st.step_in_epoch,
            data=st.fingerprints, metrics_rows=len(st.metrics.history), versions=versions())
    st.procs.barrier()


def _relative_to(source: str | None, run: Path) -> str | None:
    """A local base model's path relative to the run folder (None for a Hub name or a model
    given as an object), so a run and its base moved together still find each other
    (:func:`prefkit.align.load_aligned`)."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    path = Path(source)
    if not path.is_dir():
        return None
    return os.path.relpath(path.resolve(), Path(run).resolve())


def _finish(st: AlignState) -> AlignResult:
    """The last checkpoint, and a Hugging Face folder that describes itself."""
    _checkpoint(st)
    result = _result(st, finished=True)
    # FSDP2: the whole model's weights gathered onto the main process for save_pretrained
    weights = st.prepared.full_state(st.opt, trainable_only=False)[0] if st.prepared.sharded \
        else None
    if st.main:
        config, loss = st.config, st.loss
        write_model_folder(st.run.path, st.model, st.tokenizer, state_dict=weights, info={
            "kind": "prefkit-align", "config": config.to_dict(), "model": st.source,
            "model_given": st.given,  # as given; "model" is the absolute path of a local folder
            "model_from_run": _relative_to(st.source, st.run.path),  # moves with the run
            "loss": {"name": loss.name, "hyper": loss.resolve(**config.loss_kwargs),
                     "paper": loss.paper},
            "lora": st.peft, "data": st.fingerprints, "inputs": st.counts,
            "reference": None if st.ref_train is None else st.ref_train.key,
            "versions": versions(),
            "summary": {"step": st.step, "epochs_run": st.epoch, "metrics": result.metrics,
                        "validation": result.validation}})
        st.run.finish(config.to_dict(), {"step": st.step, "epochs_run": st.epoch})
    return result


def _result(st: AlignState, *, finished: bool) -> AlignResult:
    history = st.metrics.history
    train_rows = [r for r in history if r.get("kind") == "train"]
    val_rows = [r for r in history if r.get("kind") == "val"]
    ref = st.ref_train
    return AlignResult(st.run.path, st.step, st.epoch, finished,
                       train_rows[-1] if train_rows else {},
                       val_rows[-1] if val_rows else None, list(history),
                       bool(ref is not None and ref.loaded))
