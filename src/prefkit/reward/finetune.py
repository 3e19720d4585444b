"""Fine-tune a whole Hugging Face encoder or decoder as a reward model: one flat loop.

    result = finetune_reward_model(train_pairs, config=FinetuneConfig(epochs=2),
                                   output_dir="runs/ft", validation=val_pairs)
    scorer = load_scorer("runs/ft")          # a SequenceScorer; .score(prompts, responses)

The loop (nanoGPT style): seeded set-up -> tokenize every text once (left truncation by
default) -> for each epoch: shuffle with a ``torch.Generator``; for each optimizer step,
``grad_accum`` micro-batches, each scored together (chosen and rejected,
:meth:`SequenceScorer.score_pairs`), per-example loss from
:data:`~prefkit.reward.losses.REWARD_LOSSES` summed and divided by the pairs in the step
(the mean over the effective batch), gradient clipping, AdamW, linear warmup then linear
decay to 0 -> validation accuracy -> early stopping on it.

**Speed** (the same update, computed with less work; MiniLM on 2 CPU cores, bf16,
``benchmarks/reward_finetune.py``): a micro-batch's 2B texts are sorted by length and run as
a few forwards, each padded only to its own longest (:func:`~prefkit.reward.scorer.
length_buckets`; HH texts at 256 tokens are 54% real tokens when padded together); AdamW is
the fused kernel (the per-tensor loop took ~10x longer per step on CPU); on CPU the
attention is transformers' "eager" one, whose backward is faster there than PyTorch's fused
SDPA kernel. The scores, losses and gradients equal those of one padded forward up to
float rounding (tests/reward/test_finetune.py).

The output folder:

* ``config.json`` -- ``"kind": "sequence-scorer"``, the scorer's spec, the resolved
  :class:`FinetuneConfig`, package versions and the final summary;
* ``model.safetensors`` + ``backbone/`` -- the fine-tuned weights and the backbone's
  Hugging Face config and tokenizer (:meth:`SequenceScorer.save_pretrained`);
* ``metrics.jsonl`` -- one line per logged step (``kind="train"``) and per epoch
  (``kind="val"``);
* ``checkpoint.pt`` -- weights, optimizer, scheduler, RNG states (data order, dropout),
  the epoch's permutation, counters, config and data hashes; ``best.safetensors`` -- the
  best epoch's weights while early stopping watches.

``resume=True`` continues from ``checkpoint.pt``; on CPU a resumed run gives the same
losses and weights, bit for bit, as an uninterrupted one. The folder, the checkpoint format,
the metrics file, when to checkpoint (also every few minutes and at SIGINT/SIGTERM), AdamW
and the LR schedule are :mod:`prefkit.runs`'.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from prefkit.reward.losses import get_reward_loss
from prefkit.reward.scorer import SequenceScorer, load_scorer
from prefkit.reward.train import TrainResult, _better
from prefkit.runs import (
    CHECKPOINT_SECONDS,
    Checkpointing,
    ConfigIO,
    Metrics,
    RunFolder,
    adamw,
    json_num,
    linear_schedule,
    package_versions,
    progress_bar,
    renamed_fields,
    renamed_keyword_args,
)

__all__ = ["FINETUNE_PRESETS", "FinetuneConfig", "finetune_reward_model", "SequenceScorer", "load_scorer"]


@renamed_fields(lr="learning_rate", total_steps="max_steps")
@dataclass(frozen=True)
class FinetuneConfig(ConfigIO):
    """Everything that decides a fine-tuning run; saved in ``config.json``.

    ``backbone`` is a local folder or a locally cached Hub id (None: the offline MiniLM).
    ``batch_size`` is pairs per forward pass (2x texts); an optimizer step takes
    ``grad_accum`` of them. ``max_steps`` is the length of the run (and of the LR schedule)
    in optimizer steps, as TRL's ``max_steps`` (None: ``epochs`` full epochs). ``warmup`` is a fraction of the steps.
    ``patience`` epochs without a better ``monitor`` stop the run (0: never), and with
    ``restore_best`` the best epoch's weights are the ones saved. ``disable_dropout`` (as
    TRL's ``RewardConfig``) zeroes every dropout probability of the backbone.
    ``shuffle=False`` keeps the given pair order every epoch (for like-for-like timings).
    """

    backbone: str | None = None
    pooling: str = "auto"
    max_length: int = 256
    truncation_side: str = "left"
    loss: str = "bradley_terry"
    loss_kwargs: Mapping[str, Any] = field(default_factory=dict)
    epochs: int = 1
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float = 2e-5
    weight_decay: float = 0.0
    warmup: float = 0.1
    grad_clip: float | None = 1.0
    disable_dropout: bool = True
    shuffle: bool = True
    monitor: str = "val_accuracy"
    patience: int = 0
    restore_best: bool = True
    eval_batch_size: int = 32
    checkpoint_every: int = 0
    log_every: int = 10
    seed: int = 0
    #: length bucketing of each micro-batch's 2B texts (:func:`~prefkit.reward.scorer.
    #: length_buckets`): sorted by length, run as a few forwards each padded to its own
    #: longest; one more forward is charged this many tokens. None: one forward padded to
    #: the longest text. The scores, loss and gradient are the same either way.
    bucket_overhead: int | None = 64
    #: the backbone's attention kernel while training: "auto" is "eager" on CPU (there
    #: PyTorch's fused SDPA kernel has a slow backward: a MiniLM step ~25% longer in bf16)
    #: and the backbone's own elsewhere; "default" keeps the backbone's own; or any
    #: ``attn_implementation`` name of transformers ("sdpa", "eager", ...)
    attention: str = "auto"
    #: LoRA: 0 trains every weight; r > 0 freezes the backbone and trains rank-r adapters
    #: (peft; ``lora_target_modules`` None: peft's default for the model type) and the
    #: head; the adapters are merged into the weights at the end (a plain scorer folder)
    lora_r: int = 0
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_target_modules: tuple[str, ...] | None = None
    #: "fp32", or "bf16": the forward pass under bfloat16 autocast (weights, optimizer
    #: state and the loss stay fp32), as TRL's RewardConfig does by default (bf16=True)
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.monitor not in ("val_loss", "val_accuracy"):
            raise ValueError(f"monitor must be 'val_loss' or 'val_accuracy', got {self.monitor!r}")
        if self.bucket_overhead is not None and self.bucket_overhead < 0:
            raise ValueError(f"bucket_overhead must be >= 0 or None, got {self.bucket_overhead}")
        if self.lora_r < 0:
            raise ValueError(f"lora_r must be >= 0 (0: full fine-tuning), got {self.lora_r}")
        if self.lora_target_modules is not None:  # a JSON list reads back as the same tuple
            object.__setattr__(self, "lora_target_modules", tuple(self.lora_target_modules))
        for name in ("batch_size", "grad_accum", "epochs", "max_length", "eval_batch_size",
                     "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate} (typical: "
                             "1e-5 to 5e-5)")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup is a fraction of the steps in [0, 1), got {self.warmup}")
        if self.truncation_side not in ("left", "right"):
            raise ValueError(f"truncation_side must be 'left' or 'right', got "
                             f"{self.truncation_side!r}")
        get_reward_loss(self.loss)  # fail early on a typo
        object.__setattr__(self, "loss_kwargs", dict(self.loss_kwargs))

    @classmethod
    def preset(cls, name: str = "default", **overrides: Any) -> FinetuneConfig:
        """A named preset of :data:`FINETUNE_PRESETS`, then ``overrides``."""
        if name not in FINETUNE_PRESETS:
            raise ValueError(f"no fine-tuning preset {name!r}; presets: "
                             f"{sorted(FINETUNE_PRESETS)}")
        return cls.from_dict(FINETUNE_PRESETS[name], **overrides)


#: named changes from :class:`FinetuneConfig`'s defaults (which are TRL's RewardConfig's:
#: one epoch, learning rate 2e-5). "minilm": what ``prefkit reward finetune`` runs -- 2
#: epochs of 16 pairs at 5e-5, for the small offline MiniLM on CPU (on the fixed HH split
#: at max length 256, bf16: 0.656 test accuracy in ~6 minutes on 2 cores,
#: benchmarks/reward_finetune.py)
FINETUNE_PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "minilm": {"epochs": 2, "batch_size": 16, "learning_rate": 5e-5},
}


# -- helpers ---------------------------------------------------------------------------
def _tokenized(scorer: SequenceScorer, pairs: Any) -> tuple[list[list[int]], list[list[int]]]:
    return scorer.tokenize(pairs.texts("chosen")), scorer.tokenize(pairs.texts("rejected"))


def _digest(chosen: list[list[int]], rejected: list[list[int]]) -> str:
    h = hashlib.sha256()
    for side in (chosen, rejected):
        for ids in side:
            h.update(json.dumps(ids).encode() + b"\n")
    return h.hexdigest()


def _batch(pairs: Any) -> dict[str, torch.Tensor]:
    margin = getattr(pairs, "margin", None)
    return {} if margin is None else {"margin": torch.as_tensor(margin, dtype=torch.float32)}


def _set_attention(scorer: SequenceScorer, attention: str, device: str) -> None:
    """Switch the backbone's attention kernel (:attr:`FinetuneConfig.attention`); the same
    scores up to float rounding, and nothing of it is saved with the folder."""
    if attention == "auto":
        attention = "eager" if torch.device(device).type == "cpu" else "default"
    if attention != "default" and hasattr(scorer.backbone, "set_attn_implementation"):
        scorer.backbone.set_attn_implementation(attention)


@torch.no_grad()
def _evaluate(scorer: SequenceScorer, chosen: list[list[int]], rejected: list[list[int]],
              batch: Mapping[str, torch.Tensor], loss_fn: Any, loss_kwargs: Mapping[str, Any],
              batch_size: int) -> tuple[float | None, float | None]:
    """Mean loss and accuracy (a tie counts 0.5: :func:`prefkit.losses.preference_accuracy`)
    over validation pairs, in eval mode."""
    if not chosen:
        return None, None
    r = torch.as_tensor(scorer.score_ids([*chosen, *rejected], batch_size=batch_size),
                        dtype=torch.float32)
    fit = loss_fn(r[: len(chosen)], r[len(chosen):], batch, **loss_kwargs)
    return float(fit.reduce()), float(fit.accuracy.mean())


# -- the loop ----------------------------------------------------------------------------
@renamed_keyword_args(max_steps="stop_after")
def finetune_reward_model(
    train_pairs: Any,
    *,
    config: FinetuneConfig,
    output_dir: str | Path,
    validation: Any | None = None,
    resume: bool = False,
    overwrite: bool = False,
    scorer: SequenceScorer | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    device: str = "cpu",
    checkpoint_seconds: float | None = CHECKPOINT_SECONDS,
) -> TrainResult:
    """Fine-tune ``config.backbone`` (or the given ``scorer``) on ``train_pairs``
    (:class:`~prefkit.data.text.TextPairs`); write ``output_dir``.

    ``validation`` pairs are scored after every epoch (accuracy, loss; early stopping);
    without them every epoch runs and the last weights are kept. ``stop_after`` stops after
    that many optimizer steps (a checkpoint is written; ``resume=True`` continues it; the
    LR schedule is that of the whole run). ``output_dir`` must be a new or empty folder, or
    an earlier run of this function: that needs ``resume=True`` (a run stopped before its
    first checkpoint restarts) or ``overwrite=True`` (it is cleared first); any other folder
    is refused (:class:`prefkit.runs.RunError`). Checkpoints: every
    ``config.checkpoint_every`` steps, every ``checkpoint_seconds`` of training (None: never
    by time), at epoch ends, and at SIGINT/SIGTERM, which then stop the run
    (:class:`prefkit.runs.RunInterrupted`).
    """
    out = Path(output_dir)
    run = RunFolder(out, "reward-finetune", resume=resume, overwrite=overwrite)
    best_path = out / "best.safetensors"

    # -- model (seeded), tokens --------------------------------------------------------------
    if scorer is None:
        scorer = SequenceScorer.from_backbone(
            config.backbone, pooling=config.pooling, max_length=config.max_length,
            truncation_side=config.truncation_side, seed=config.seed)
    else:  # the config's reading of texts wins over the scorer's own
        scorer.max_length, scorer.truncation_side = config.max_length, config.truncation_side
    if config.disable_dropout:
        for m in scorer.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    _set_attention(scorer, config.attention, device)
    if config.lora_r:
        scorer.add_lora(config.lora_r, alpha=config.lora_alpha, dropout=config.lora_dropout,
                        target_modules=config.lora_target_modules, seed=config.seed)
    scorer.to(device).train()
    tr_c, tr_r = _tokenized(scorer, train_pairs)
    tr_batch = _batch(train_pairs)
    va_c, va_r = _tokenized(scorer, validation) if validation is not None else ([], [])
    va_batch = _batch(validation) if validation is not None else {}
    n = len(tr_c)
    if n == 0:
        raise ValueError("no training pairs")
    data_hash = {"train": _digest(tr_c, tr_r), "val": _digest(va_c, va_r)}

    # -- optimizer, schedule, RNG ----------------------------------------------------------
    micro_per_epoch = math.ceil(n / config.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / config.grad_accum)
    total = config.max_steps or config.epochs * steps_per_epoch
    n_epochs = math.ceil(total / steps_per_epoch)
    params = [p for p in scorer.parameters() if p.requires_grad]
    opt = adamw(params, lr=config.learning_rate, weight_decay=config.weight_decay)  # none on biases/norms
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, linear_schedule(total, round(config.warmup * total)))
    loss_fn = get_reward_loss(config.loss)
    data_gen = torch.Generator().manual_seed(config.seed + 1)  # epoch order
    dropout_state = torch.Generator().manual_seed(config.seed + 2).get_state()
    step, epoch, step_in_epoch = 0, 0, 0
    perm = torch.arange(n)
    best: dict[str, Any] = {"metric": None, "epoch": None, "val_loss": None,
                            "val_accuracy": None}
    bad_epochs, stopped_early, finished = 0, False, False

    # -- resume or start fresh (prefkit.runs: the folder, the checkpoint format) -----------------
    ck = run.load_checkpoint(config, data_hash, map_location=device) if run.resuming else None
    if ck is not None:
        step, epoch, step_in_epoch = run.restore(ck, scorer, opt, sched, data_gen)
        dropout_state, perm = ck["rng"]["dropout"], ck["rng"]["epoch_perm"]
        best, bad_epochs = ck["best"], ck["bad_epochs"]
        stopped_early, finished = ck["stopped_early"], ck["finished"]
    else:
        run.start(config.to_dict())
    metrics = Metrics(run.metrics_path, 0 if ck is None else ck["metrics_rows"])
    history, log = metrics.history, metrics.log

    def checkpoint() -> None:
        run.save_checkpoint(
            config=config.to_dict(), model=scorer.state_dict(), optimizer=opt, scheduler=sched,
            rng={"data": data_gen.get_state(), "dropout": dropout_state, "epoch_perm": perm},
            step=step, epoch=epoch, step_in_epoch=step_in_epoch, data=data_hash,
            metrics_rows=len(history), scorer=scorer.describe(), best=best,
            bad_epochs=bad_epochs, stopped_early=stopped_early, finished=finished)

    bar = progress_bar(total, "fine-tuning", step, enabled=progress)
    due = Checkpointing(config.checkpoint_every, checkpoint_seconds)
    t0 = time.perf_counter()

    # -- epochs --------------------------------------------------------------------------------
    with due:  # SIGINT/SIGTERM: checkpoint, then stop
        while not finished and epoch < n_epochs and step < total:
            if step_in_epoch == 0:
                perm = torch.randperm(n, generator=data_gen) if config.shuffle else torch.arange(n)
            t_epoch = time.perf_counter()
            for s in range(step_in_epoch, steps_per_epoch):
                # the pairs of this optimizer step, split into micro-batches
                lo = s * config.grad_accum * config.batch_size
                idx = perm[lo: lo + config.grad_accum * config.batch_size]  # (<= A*B,)
                opt.zero_grad(set_to_none=True)
                sums = torch.zeros(2, device=device)  # loss, accuracy: read once per step
                with torch.random.fork_rng(devices=[]):  # dropout draws from its own saved stream
                    torch.set_rng_state(dropout_state)
                    for mb in idx.split(config.batch_size):
                        rows = mb.tolist()
                        with torch.autocast(device_type=torch.device(device).type,
                                            dtype=torch.bfloat16,
                                            enabled=config.precision == "bf16"):
                            r_c, r_r = scorer.score_pairs(
                                [tr_c[i] for i in rows], [tr_r[i] for i in rows],
                                bucket_overhead=config.bucket_overhead)  # (b,) x2
                        r_c, r_r = r_c.float(), r_r.float()  # the loss in fp32
                        part = {k: v[mb].to(device) for k, v in tr_batch.items()}
                        fit = loss_fn(r_c, r_r, part, **config.loss_kwargs)  # LossOutput (b,)
                        # the step's normaliser: its pairs (the sum of the micro-batches')
                        (fit.losses.sum() / len(idx)).backward()
                        sums += torch.stack([fit.losses.detach().sum(), fit.accuracy.sum()])
                    dropout_state = torch.get_rng_state()
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                opt.step()
                sched.step()
                step, step_in_epoch = step + 1, s + 1
                loss_sum, acc_sum = sums.tolist()
                loss = loss_sum / len(idx)
                if step % config.log_every == 0 or s == steps_per_epoch - 1 or step == total:
                    log({"kind": "train", "step": step, "epoch": epoch, "loss": loss,
                         "accuracy": acc_sum / len(idx), "lr": sched.get_last_lr()[0],
                         "elapsed_s": round(time.perf_counter() - t0, 3)})
                bar.update(step, f"epoch {epoch + 1}/{n_epochs} loss {loss:.4f}")
                if due(step):  # every checkpoint_every steps, checkpoint_seconds, or a signal
                    checkpoint()
                    due.raise_if_interrupted(step, out, bar)
                if stop_after is not None and step >= stop_after and step < total:
                    checkpoint()
                    bar.close()
                    return TrainResult(out, step, epoch, False, stopped_early, best["epoch"],
                                       _best_metrics(best), list(history))
                if step >= total:
                    break

            # -- validation and early stopping --------------------------------------------------
            val_loss, val_acc = _evaluate(scorer, va_c, va_r, va_batch, loss_fn,
                                          config.loss_kwargs, config.eval_batch_size)
            row = {"kind": "val", "step": step, "epoch": epoch, "val_loss": json_num(val_loss),
                   "val_accuracy": json_num(val_acc),
                   "epoch_s": round(time.perf_counter() - t_epoch, 3)}
            log(row)
            if va_c and _better(row[config.monitor], best["metric"], config.monitor):
                best = {"metric": row[config.monitor], "epoch": epoch, "val_loss": row["val_loss"],
                        "val_accuracy": row["val_accuracy"]}
                bad_epochs = 0
                if config.restore_best:
                    from safetensors.torch import save_model

                    save_model(scorer, str(best_path))
            elif va_c:
                bad_epochs += 1
            epoch, step_in_epoch = epoch + 1, 0
            if val_acc is not None:
                bar.update(step, f"epoch {epoch}/{n_epochs} val_acc {val_acc:.3f}")
            if config.patience and bad_epochs >= config.patience:
                stopped_early = True
                break
            checkpoint()
            due.raise_if_interrupted(step, out, bar)
    bar.close()

    # -- finish: best weights, self-describing folder ---------------------------------------
    finished = True
    if config.restore_best and best["epoch"] is not None and best_path.exists():
        from safetensors.torch import load_model

        load_model(scorer, str(best_path), device=device)
    checkpoint()
    scorer.merge_lora()  # a LoRA run's folder holds the merged weights
    result = TrainResult(out, step, epoch, True, stopped_early, best["epoch"],
                         _best_metrics(best), list(history))
    scorer.eval()
    scorer.save_pretrained(out, extra={
        "config": config.to_dict(), "versions": package_versions(),
        "summary": {"step": step, "epochs_run": epoch, "stopped_early": stopped_early,
                    "best_epoch": best["epoch"], **_best_metrics(best)}})
    run.finish(config.to_dict(), {"step": step, "epochs_run": epoch})
    return result


def _best_metrics(best: Mapping[str, Any]) -> dict[str, float | None]:
    return {"val_loss": best["val_loss"], "val_accuracy": best["val_accuracy"]}
