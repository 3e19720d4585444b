"""A process reward model that fine-tunes a Hugging Face backbone and scores at step markers
(token classification, as TRL's former PRMTrainer and Math-Shepherd do).

**Input.** ``[CLS/BOS] problem`` then, per step, ``step`` followed by one **marker** token:
the tokenizer's ``sep_token`` (BERT-style encoders such as the offline MiniLM), else its
``eos_token`` (causal LMs); a linear head on the backbone's last hidden state at the marker
gives the step's logit, ``sigmoid`` of it P(step right). Only the marker positions are
projected and scored; the loss is a step loss of
:data:`~prefkit.process.losses.PROCESS_LOSSES` over the labelled steps (hard or soft).

**Windows.** A solution longer than ``max_length`` tokens is cut into windows of
``max_length`` tokens every ``max_length // 2``; each marker is scored in the first window
that contains it (the one that gives it the most context before it), so every step is scored
and windows after the first start inside the solution (they do not see the problem). Training
uses the same windows, so a step is trained as it is scored.

**Speed** (the same loss and scores, less work; ``benchmarks/prm_speed.py``): for a
BERT-family encoder (the offline MiniLM) the forward computes only what the head reads
(:mod:`prefkit.process._fastpath`: the last layer at the markers only, no padding in the
matrix products, one Q/K/V product, PyTorch's SDPA attention kernel); for a causal LM the
tokens after a window's last marker that counts (labelled, in training) are cut, which
changes nothing a causal model computes before them. Training batches are grouped by
length, AdamW is the fused kernel, dropout is off by default (as TRL's ``PRMConfig``:
``disable_dropout=True``), and a marker without a label is not projected while training
(it adds nothing to the loss).

**Devices** (:mod:`prefkit.process.device`): ``device="auto"`` trains and scores on the GPU
when there is one, else on the CPU (``"cpu"``, ``"cuda"``, ``"cuda:N"`` choose). On a GPU
the loop reads nothing back to the host between steps: batches and their index plans are
built on the host and copied ahead (pinned memory), the gradient clip always scales (by a
factor clamped to 1, as ``clip_grad_norm_``; the CPU skips that pass when the factor is 1),
and the step losses are read every 25 steps for ``metrics.jsonl`` and the progress bar
(every step on the CPU; :data:`LOG_EVERY`). ``precision="bf16"`` runs the forward passes under
bfloat16 autocast (the loss in float32); the default ``"fp32"`` keeps the numbers of the
CPU and of ``transformers.Trainer``'s default (``bf16=False``).

The run folder (:mod:`prefkit.runs`): ``config.json`` (kind ``"finetune"``, the config, the
threshold tuned on the held-out solutions), ``backbone/`` (the fine-tuned backbone and its
tokenizer, ``save_pretrained``), ``head.safetensors``, ``metrics.jsonl``, ``checkpoint.pt``.
A folder trained on a GPU loads on any machine (safetensors; the checkpoint is read with
``map_location="cpu"`` and copied to the run's device), and a run resumes on another device
(the same run up to float rounding: ``device`` is not compared on resume).

Beside this module (the config, the loop, the loaded PRM): the solutions' tokens, windows and
batches in :mod:`prefkit.process._finetune_data`, the scorer (backbone and head) in
:mod:`prefkit.process._finetune_scorer`; their names used outside are importable from here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from prefkit.data.steps import StepSolutions
from prefkit.process._finetune_data import (  # noqa: F401  (re-exported)
    _batch,
    _epoch_batches,
    _examples,
    _trim,
    encode_solution,
    windows,
)
from prefkit.process._finetune_scorer import (
    _backbone_path,
    _clip,
    _prepare_backbone,
    _Scorer,
    is_causal,
)
from prefkit.process.device import (
    PRECISIONS,
    autocast,
    check_device_name,
    resolve_device,
)
from prefkit.process.frozen import _split
from prefkit.process.losses import get_process_loss
from prefkit.process.processbench import DEFAULT_THRESHOLD, tune_threshold
from prefkit.runs import (
    CHECKPOINT_SECONDS,
    Checkpointing,
    ConfigIO,
    Metrics,
    RunFolder,
    adamw,
    package_versions,
    progress_bar,
    write_json,
)

__all__ = ["FinetunePRMConfig", "FinetunedPRM", "encode_solution", "finetune_prm"]

KIND = "prm-finetune"
#: how often the step losses are read back (metrics.jsonl, the progress bar), by device
#: type: every step on the CPU, every 25 on a GPU (each read waits for the queued work)
LOG_EVERY = {"cpu": 1, "cuda": 25}


@dataclass(frozen=True)
class FinetunePRMConfig(ConfigIO):
    """A fine-tuned PRM run (saved in ``config.json``); ``backbone`` None is the offline
    MiniLM's transformer. ``group_by_length``: each epoch's shuffled windows are sorted by
    length within chunks of 32 batches and the batches shuffled again (less padding; the
    same examples per epoch). ``disable_dropout`` zeroes every dropout probability of the
    backbone (TRL's ``PRMConfig`` default). ``attention``: the attention kernel, "default"
    (the backbone's own: transformers' SDPA where the model has it), "sdpa" or "eager" (in
    float32 on an AVX2 CPU SDPA is the faster: a MiniLM step takes ~10% longer with
    "eager"). ``fast_path``: compute only what the head reads
    where the backbone allows it (module docstring); False runs the backbone's own forward
    (the same numbers, up to float rounding). ``device``: where it trains, "auto" (the GPU
    if there is one, else the CPU), "cpu", "cuda" or "cuda:N" (:mod:`prefkit.process.device`;
    not compared on resume). ``precision``: "fp32" (the default: the CPU's and
    Trainer's default numbers) or "bf16" (bfloat16 autocast on the forward passes, float32
    weights, optimizer and loss; the faster on a GPU with bf16 tensor cores; the PRM scores
    in it on a GPU, in float32 on a CPU)."""

    backbone: str | None = None
    max_length: int = 256
    loss: str = "step_bce"
    epochs: int = 2
    batch_size: int = 8
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    val_fraction: float = 0.2
    seed: int = 0
    group_by_length: bool = True
    disable_dropout: bool = True
    attention: str = "default"
    fast_path: bool = True
    device: str = "auto"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        get_process_loss(self.loss)
        check_device_name(self.device)
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.attention not in ("eager", "sdpa", "default"):
            raise ValueError(f"attention must be 'default', 'eager' or 'sdpa', got "
                             f"{self.attention!r}")
        if self.max_length < 8:
            raise ValueError(f"max_length must be >= 8 tokens, got {self.max_length}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1), got {self.val_fraction}")


class FinetunedPRM:
    """A fine-tuned PRM: :meth:`score` gives P(step right) per step, on the device its
    scorer's weights are on (:meth:`load`'s ``device``)."""

    def __init__(self, scorer: _Scorer, tokenizer: Any, config: FinetunePRMConfig,
                 threshold: float = DEFAULT_THRESHOLD,
                 train_stats: dict[str, list[int]] | None = None) -> None:
        self.scorer, self.tokenizer, self.config = scorer.eval(), tokenizer, config
        self.threshold, self.train_stats = threshold, train_stats or {}

    @property
    def device(self) -> torch.device:
        return next(self.scorer.parameters()).device

    def score(self, prompts: Sequence[str], steps: Sequence[Sequence[str]], *,
              progress: bool = False, batch_size: int = 16) -> list[np.ndarray]:
        """P(step right) per step of each solution. ``batch_size`` counts **windows** per
        forward pass (a solution longer than ``max_length`` tokens is several windows, one
        shorter is one), sorted by length."""
        data = StepSolutions()
        for i, (p, st) in enumerate(zip(prompts, steps)):
            data.add(i + 1, p, list(st), [math.nan] * len(st))
        items = _trim(_examples(self.tokenizer, data, range(len(data)), self.config.max_length),
                      labelled=False, causal=is_causal(self.scorer.backbone))
        out = [np.full(len(st), np.nan) for st in steps]
        order = sorted(range(len(items)), key=lambda j: len(items[j][0]))
        bar = progress_bar(len(items), "scoring", enabled=progress)
        pad = self.tokenizer.pad_token_id or 0
        dev, parts, probs = self.device, [], []
        precision = self.config.precision if dev.type == "cuda" else "fp32"  # bf16: GPUs
        with torch.inference_mode():
            for b in range(0, len(order), batch_size):
                part = [items[j] for j in order[b:b + batch_size]]
                ids, attn, rows, cols, _, plan = self.scorer.batch(part, pad, dev)
                with autocast(dev, precision):
                    logits = self.scorer(ids, attn, rows, cols, plan)  # (n_markers,)
                probs.append(torch.sigmoid(logits.float()))  # kept on the device
                parts.append(part)
                bar.advance(len(part))
            # one read back to the host for the whole call
            p = torch.cat(probs).double().cpu().numpy() if probs else np.zeros(0)
        at = 0
        for part in parts:
            for it in part:
                out[it[3]][it[4]] = p[at:at + len(it[4])]
                at += len(it[4])
        bar.close()
        return out

    @classmethod
    def load(cls, folder: str | Path, *, device: str | torch.device | None = None
             ) -> FinetunedPRM:
        """The PRM in ``folder`` on ``device`` (None or "auto": the GPU if there is one, else
        the CPU, wherever it was trained)."""
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        folder = Path(folder)
        info = json.loads((folder / "config.json").read_text())
        config = FinetunePRMConfig.from_dict(info["config"])
        dev = resolve_device(device)
        backbone = AutoModel.from_pretrained(str(folder / "backbone"))
        scorer = _Scorer(backbone, attention=config.attention, fast=config.fast_path)
        scorer.head.load_state_dict(load_file(str(folder / "head.safetensors"), device="cpu"))
        tok = AutoTokenizer.from_pretrained(str(folder / "backbone"))
        return cls(scorer.to(dev), tok, config, float(info["threshold"]),
                   info.get("train_stats"))


def finetune_prm(config: FinetunePRMConfig, output_dir: str | Path, data: StepSolutions, *,
                 resume: bool = False, overwrite: bool = False, progress: bool = True,
                 model: nn.Module | None = None, tokenizer: Any = None,
                 stop_after: int | None = None,
                 checkpoint_seconds: float | None = CHECKPOINT_SECONDS) -> dict[str, Any]:
    """Fine-tune ``config.backbone`` (or the given ``model``/``tokenizer``: an encoder or a
    causal LM's base model) with a step head on ``data`` on ``config.device``; write
    ``output_dir``; return the summary (``finished``, ``steps``, ``threshold``, ``device``).

    ``stop_after`` stops after that many optimizer steps in total, with a checkpoint (the
    summary says ``finished: False``); ``resume=True`` continues it, and the run equals an
    uninterrupted one (the epoch's batches are drawn again from the saved generator state).
    Checkpoints: at every epoch end, every ``checkpoint_seconds`` of training (None: never by
    time), and at SIGINT/SIGTERM, which then stop the run
    (:class:`prefkit.runs.RunInterrupted`)."""
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoTokenizer

    out = Path(output_dir)
    run = RunFolder(out, KIND, resume=resume, overwrite=overwrite)
    dev = resolve_device(config.device)
    cuda = dev.type == "cuda"
    # -- model, data ------------------------------------------------------------------------
    # the backbone's folder only when it is loaded (the offline MiniLM need not be installed)
    path = _backbone_path(config.backbone) if model is None or tokenizer is None else ""
    torch.manual_seed(config.seed)
    tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
    backbone = _prepare_backbone(model if model is not None else AutoModel.from_pretrained(path),
                                 config.disable_dropout)
    scorer = _Scorer(backbone, attention=config.attention, fast=config.fast_path).to(dev)
    tr, va = _split(data.first_error, config.val_fraction, config.seed)
    train = _trim(_examples(tokenizer, data, tr, config.max_length), labelled=True,
                  causal=is_causal(backbone))
    if not train:
        raise ValueError("no labelled training steps: every step of the training solutions "
                         "has no label (NaN); give solutions with step labels")
    pad = tokenizer.pad_token_id or 0
    params = [p for p in scorer.parameters() if p.requires_grad]
    # one fused kernel call when nothing decays (the same update as two parameter groups)
    opt = adamw(params, lr=config.learning_rate, weight_decay=config.weight_decay,
                decay_1d=config.weight_decay == 0.0)
    loss_fn = get_process_loss(config.loss)
    gen = torch.Generator().manual_seed(config.seed + 1)  # each epoch's batches
    dropout_state = torch.Generator().manual_seed(config.seed + 2).get_state()
    # on a GPU dropout draws from the GPU's generator: its own saved stream too (if it draws)
    gpu_draws = cuda and any(isinstance(m, nn.Dropout) and m.p > 0 for m in scorer.modules())
    dropout_gpu = torch.Generator(dev).manual_seed(config.seed + 2).get_state() \
        if gpu_draws else None
    digest = {"n_train_windows": len(train), "n_val": len(va),
              "n_tokens": sum(len(x[0]) for x in train)}
    same = dataclasses.replace(config, device="auto")  # what a resumed run must equal
    step, epoch, step_in_epoch = 0, 0, 0
    ck = run.load_checkpoint(same, digest) if run.resuming else None  # map_location="cpu"
    if ck is not None:
        step, epoch, step_in_epoch = run.restore(ck, scorer, opt, None, gen)
        dropout_state = ck["rng"]["dropout"]
        if gpu_draws and "dropout_gpu" in ck["rng"]:
            dropout_gpu = ck["rng"]["dropout_gpu"]
        run.adopt(config.to_dict())
    else:
        run.start(config.to_dict())
    metrics = Metrics(run.metrics_path, 0 if ck is None else ck["metrics_rows"])
    per_epoch = math.ceil(len(train) / config.batch_size)
    total = config.epochs * per_epoch
    bar = progress_bar(total, "fine-tuning", step, enabled=progress)
    due = Checkpointing(0, checkpoint_seconds)
    epoch_state = gen.get_state()  # the generator at the start of the current epoch
    pending: list[tuple[int, int, Tensor]] = []  # (step, epoch, loss) not yet read back

    def flush() -> None:  # the losses read back: one read for all of them
        if pending:
            values = torch.stack([v for _, _, v in pending]).tolist()
            for (s, e, _), v in zip(pending, values):
                metrics.log({"kind": "train", "step": s, "epoch": e, "loss": v})
            bar.update(pending[-1][0], f"epoch {pending[-1][1] + 1} loss {values[-1]:.4f}")
            pending.clear()

    saving = [0.0, 0.0]  # wall and CPU seconds spent writing checkpoints

    def checkpoint() -> None:
        flush()
        if cuda:  # the queued steps belong to the loop's time, not to the checkpoint's
            torch.cuda.synchronize(dev)
        t = time.perf_counter(), time.process_time()
        # mid-epoch: the state the epoch's batches are drawn from again; at its end: the next
        rng = {"data": epoch_state if step_in_epoch else gen.get_state(),
               "dropout": dropout_state}
        if dropout_gpu is not None:
            rng["dropout_gpu"] = dropout_gpu
        run.save_checkpoint(config=same.to_dict(), model=scorer.state_dict(), optimizer=opt,
                            rng=rng, step=step, epoch=epoch, step_in_epoch=step_in_epoch,
                            data=digest, metrics_rows=len(metrics.history))
        saving[0] += time.perf_counter() - t[0]
        saving[1] += time.process_time() - t[1]

    def draws() -> Any:  # the context dropout draws in: its own saved stream
        if not cuda:
            return torch.random.fork_rng(devices=[])
        return torch.random.fork_rng(devices=[dev.index]) if gpu_draws \
            else contextlib.nullcontext()  # nothing draws on the GPU

    # -- epochs ------------------------------------------------------------------------------
    loop_seconds, loop_cpu = 0.0, 0.0
    with due:  # SIGINT/SIGTERM: checkpoint, then stop
        while epoch < config.epochs:
            t_epoch, c_epoch = time.perf_counter(), time.process_time()
            scorer.train()
            epoch_state = gen.get_state()
            batches = _epoch_batches(train, config.batch_size, gen, config.group_by_length)
            for b in range(step_in_epoch, per_epoch):
                ids, attn, rows, cols, y, plan = scorer.batch(
                    [train[j] for j in batches[b]], pad, dev)
                with draws():
                    torch.set_rng_state(dropout_state)
                    if dropout_gpu is not None:
                        torch.cuda.set_rng_state(dropout_gpu, dev)
                    with autocast(dev, config.precision):
                        logits = scorer(ids, attn, rows, cols, plan)  # (n_markers,)
                    loss = loss_fn(logits.float()[None], y[None]).reduce()  # float32
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    dropout_state = torch.get_rng_state()
                    if dropout_gpu is not None:
                        dropout_gpu = torch.cuda.get_rng_state(dev)
                _clip(params, 1.0, always=cuda)
                opt.step()
                step, step_in_epoch = step + 1, b + 1
                pending.append((step, epoch, loss.detach()))
                if len(pending) >= LOG_EVERY.get(dev.type, 1):
                    flush()
                if step_in_epoch == per_epoch:
                    epoch, step_in_epoch = epoch + 1, 0
                if due(step) or step_in_epoch == 0:
                    checkpoint()
                    due.raise_if_interrupted(step, out, bar)
                if stop_after is not None and step >= stop_after and step < total:
                    if step_in_epoch:  # (an epoch end was just written)
                        checkpoint()
                    bar.close()
                    return {"finished": False, "steps": step, "epochs_run": epoch}
            flush()
            if cuda:
                torch.cuda.synchronize(dev)
            loop_seconds += time.perf_counter() - t_epoch
            loop_cpu += time.process_time() - c_epoch
    bar.close()
    # -- threshold on the held-out solutions, the folder ---------------------------------------
    prm = FinetunedPRM(scorer, tokenizer, config)
    val = data.subset(va)
    scores = prm.score(val.prompts, val.steps)
    both = -1 in val.first_error and any(x != -1 for x in val.first_error)
    threshold = tune_threshold(scores, val.first_error) if both else DEFAULT_THRESHOLD
    scorer.backbone.save_pretrained(str(out / "backbone"))
    tokenizer.save_pretrained(str(out / "backbone"))
    save_file({k: v.detach().cpu().contiguous() for k, v in scorer.head.state_dict().items()},
              str(out / "head.safetensors"))
    summary = {"finished": True, "steps": step, "epochs_run": epoch, "threshold": threshold,
               # the loop's time without writing checkpoints (as Trainer with no saving)
               "train_loop_seconds": round(loop_seconds - saving[0], 3),
               "train_loop_cpu_seconds": round(loop_cpu - saving[1], 3),
               "checkpoint_seconds": round(saving[0], 3),
               "n_train_windows": len(train), "n_val_solutions": len(va),
               "device": str(dev), "precision": config.precision}
    write_json(out / "config.json", {
        "kind": "finetune", "config": config.to_dict(), "threshold": threshold,
        "train_stats": {"n_steps": [len(s) for s in data.steps], "labels": data.first_error},
        "versions": package_versions(), "summary": summary})
    run.finish(config.to_dict(), summary)
    return summary
