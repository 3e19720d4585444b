"""Train a reward head on frozen embeddings: one flat loop, read top to bottom.

    result = train_reward_model(RewardTrainConfig(), "runs/hh", train_pairs)  # text pairs
    features = embed_pairs(train_pairs, FrozenEncoder(features=("joint", "stats")))  # or these
    result = train_reward_model(RewardTrainConfig(), "runs/hh2", features)  # cached: seconds
    model = RewardModel.load("runs/hh")

The loop (nanoGPT style): seeded set-up -> for each epoch: shuffle with a
``torch.Generator``, step through batches (score both sides, per-example loss from
:data:`~prefkit.reward.losses.REWARD_LOSSES`, mean, AdamW step) -> validate -> early
stopping on the monitored validation metric. The output folder describes itself:

* ``config.json`` -- the resolved :class:`RewardTrainConfig`, the head's spec, package
  versions and the final summary;
* ``model.safetensors`` -- the head's weights (the best epoch's, with ``restore_best``);
* ``backbone.json`` -- the encoder that made the embeddings (name, path, fingerprint);
* ``metrics.jsonl`` -- one line per logged step (``kind="train"``) and per epoch
  (``kind="val"``);
* ``checkpoint.pt`` -- weights, optimizer, RNG states (data order and dropout), the epoch's
  permutation, counters, config, data hashes and versions, every ``checkpoint_every``
  steps and at each epoch end.

``resume=True`` reloads ``checkpoint.pt`` and continues; on CPU a resumed run gives the
same losses and weights, bit for bit, as an uninterrupted one (dropout draws from its own
saved RNG state, never from the caller's global one). The folder, the checkpoint format,
the metrics file and when to checkpoint (also every few minutes and at SIGINT/SIGTERM) are
:mod:`prefkit.runs`'.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from prefkit.reward.backbones import FrozenEncoder
from prefkit.reward.heads import (
    HEADS,
    PairFeatures,
    RewardHead,
    build_head,
    embed_pairs,
    score_pairs,
)
from prefkit.reward.losses import get_reward_loss
from prefkit.runs import (
    CHECKPOINT_SECONDS,
    Checkpointing,
    ConfigIO,
    Metrics,
    RunFolder,
    json_num,
    package_versions,
    progress_bar,
    renamed_fields,
    renamed_keyword_args,
    write_json,
)

__all__ = ["HEAD_PRESETS", "RewardTrainConfig", "TrainResult", "package_versions",
           "train_reward_model"]


@renamed_fields(lr="learning_rate")
@dataclass(frozen=True)
class RewardTrainConfig(ConfigIO):
    """Everything that decides a training run; saved as ``config.json``.

    ``monitor`` is ``"val_loss"`` (lower is better) or ``"val_accuracy"`` (higher);
    ``patience`` epochs without improvement stop the run (0: never stop early).
    ``checkpoint_every`` is in optimizer steps (0: only at epoch ends). ``init_from`` is a
    previous run's folder whose head weights start this run (e.g. ArmoRM's gating stage
    after its attribute stage, or HelpSteer2-Preference's Scaled BT after regression).
    ``encoder`` / ``truncation_side`` / ``max_seq_length`` / ``features`` say how texts
    become the head's input when :func:`train_reward_model` is given text pairs (given
    :class:`PairFeatures`, their own ``backbone`` says it and is what the folder records).

    **The defaults** (what ``prefkit reward train`` runs): a linear Bradley-Terry head on
    ``features=("joint", "stats")`` -- the frozen MiniLM embedding of prompt + response
    plus eleven surface statistics of the response (:mod:`prefkit.reward.features`:
    log length in characters/words/lines, list items, code, repetition, prompt overlap, a
    cut-off ending) -- AdamW learning rate 1e-2, batch 64, up to 200 epochs, early stopping after 10
    epochs without a better validation loss on a seeded 10% of the pairs, no weight decay.
    The embedding alone cannot see length (it is mean-pooled to unit norm), which is the
    strongest cue on helpfulness data; with the statistics the head weighs length against
    content. In ``benchmarks/reward_default.py`` this raised HH-harmless held-out accuracy
    from 0.645 to 0.686 (frozen logistic regression 0.636, McNemar p = 0.02) and PandaLM's
    human labels (cross-fitted by instruction) from 0.536 to 0.696, against 0.674 for "the
    longer answer wins" (p = 0.14) and 0.689 on pairs within 10% in length. A model trained
    on one helpfulness dataset and scored on another still does not beat "longer wins".
    The statistics cost milliseconds: training takes as long as before (embedding dominates).
    """

    head: str = "linear"
    head_kwargs: Mapping[str, Any] = field(default_factory=dict)
    loss: str = "bradley_terry"
    loss_kwargs: Mapping[str, Any] = field(default_factory=dict)
    epochs: int = 200
    batch_size: int = 64
    learning_rate: float = 1e-2
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    val_fraction: float = 0.1
    monitor: str = "val_loss"
    patience: int = 10
    restore_best: bool = True
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0
    init_from: str | None = None
    encoder: str | None = None
    truncation_side: str = "left"
    max_seq_length: int | None = None
    features: tuple[str, ...] = ("joint", "stats")

    def __post_init__(self) -> None:
        if self.monitor not in ("val_loss", "val_accuracy"):
            raise ValueError(f"monitor must be 'val_loss' or 'val_accuracy', got {self.monitor!r}")
        if self.batch_size < 1 or self.epochs < 1:
            raise ValueError("batch_size and epochs must be >= 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate} (the linear "
                             "head: 1e-2)")
        get_reward_loss(self.loss)  # fail early on a typo
        from prefkit.reward.features import check_features

        object.__setattr__(self, "features", check_features(self.features))
        if self.head not in HEADS:
            raise ValueError(f"unknown reward head {self.head!r}; choose one of {sorted(HEADS)}")
        object.__setattr__(self, "head_kwargs", dict(self.head_kwargs))
        object.__setattr__(self, "loss_kwargs", dict(self.loss_kwargs))

    @classmethod
    def preset(cls, head: str = "linear", **overrides: Any) -> RewardTrainConfig:
        """The config for ``head`` with what that head changes from the defaults
        (:data:`HEAD_PRESETS`; ``prefkit reward train --head``), then ``overrides``."""
        if head not in HEAD_PRESETS:
            raise ValueError(f"no preset for head {head!r}; presets: {sorted(HEAD_PRESETS)}")
        return cls.from_dict({**HEAD_PRESETS[head], "head": head}, **overrides)


#: what each head changes from :class:`RewardTrainConfig`'s defaults (the linear head
#: changes nothing: its defaults are the config's, see benchmarks/reward_default.py)
HEAD_PRESETS: dict[str, dict[str, Any]] = {
    "linear": {},
    "mlp": {"head_kwargs": {"hidden": 256, "dropout": 0.2}, "learning_rate": 1e-3},
}

@renamed_fields(out_dir="output_dir")
@dataclass(frozen=True)
class TrainResult:
    """What a run did: ``finished`` is False when it stopped at ``stop_after`` (resume it)."""

    output_dir: Path
    step: int
    epoch: int
    finished: bool
    stopped_early: bool
    best_epoch: int | None
    best: dict[str, float | None]
    history: list[dict[str, Any]]


# -- small helpers -------------------------------------------------------------------------
def _better(value: float | None, best: float | None, monitor: str) -> bool:
    if value is None:
        return False
    if best is None:
        return True
    return value < best if monitor == "val_loss" else value > best


@torch.no_grad()
def _evaluate(head: RewardHead, data: PairFeatures, loss_fn: Any,
              loss_kwargs: Mapping[str, Any], chunk: int = 4096) -> tuple[float, float | None]:
    """Mean loss and mean accuracy over ``data`` (accuracy None for multi-output heads)."""
    head.eval()
    losses, accs = [], []
    for s in range(0, len(data), chunk):
        part = data.select(torch.arange(s, min(s + chunk, len(data))))
        r_c, r_r = score_pairs(head, part.chosen, part.rejected, part.prompt)
        fit = loss_fn(r_c, r_r, part.batch(), **loss_kwargs)  # a LossOutput
        losses.append(fit.losses)
        if fit.accuracy is not None:  # a tie counts 0.5 (prefkit.losses.preference_accuracy)
            accs.append(fit.accuracy)
    head.train()
    if not losses:
        return float("nan"), None
    acc = float(torch.cat(accs).mean()) if accs else None
    return float(torch.cat(losses).mean()), acc


# -- the loop ----------------------------------------------------------------------------
@renamed_keyword_args(out_dir="output_dir", max_steps="stop_after")
def train_reward_model(
    config: RewardTrainConfig,
    output_dir: str | Path,
    train: PairFeatures | Any,
    val: PairFeatures | Any | None = None,
    *,
    encoder: FrozenEncoder | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
    checkpoint_seconds: float | None = CHECKPOINT_SECONDS,
) -> TrainResult:
    """Train ``config.head`` with ``config.loss`` on ``train``; write ``output_dir``.

    ``train``/``val`` are :class:`PairFeatures` or text pairs (embedded first with
    ``encoder``, default ``FrozenEncoder(config.encoder, ...)`` with the default cache).
    Without ``val``, a seeded ``config.val_fraction`` of ``train`` is held out.
    ``stop_after`` stops after that many optimizer steps in total (a checkpoint is written;
    ``resume=True`` continues from it). ``output_dir`` must be a new or empty folder, or an
    earlier run of this function: that needs ``resume=True`` (a run stopped before its
    first checkpoint restarts) or ``overwrite=True`` (it is cleared first); any other
    folder is refused (:class:`prefkit.runs.RunError`). Besides every
    ``config.checkpoint_every`` steps, a checkpoint is written every
    ``checkpoint_seconds`` of training (None: never by time) and at SIGINT/SIGTERM, which
    then stop the run (:class:`prefkit.runs.RunInterrupted`).
    """
    out = Path(output_dir)
    run = RunFolder(out, "reward-train", resume=resume, overwrite=overwrite)

    # -- data: embed text if needed, split off validation --------------------------------
    def features(pairs: Any) -> PairFeatures:
        nonlocal encoder
        if isinstance(pairs, PairFeatures):
            return pairs
        if encoder is None:
            encoder = FrozenEncoder(config.encoder, truncation_side=config.truncation_side,
                                    max_seq_length=config.max_seq_length,
                                    features=config.features)
        elif tuple(encoder.features) != config.features:  # the config says what the head reads
            encoder = copy.copy(encoder)
            encoder.features = config.features
        return embed_pairs(pairs, encoder, prompts=HEADS[config.head].needs_prompt,
                           progress=progress)

    train = features(train)
    val = None if val is None else features(val)
    if val is None:
        perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.seed))
        n_val = int(round(config.val_fraction * len(train)))
        val = train.select(perm[:n_val].sort().values)
        train = train.select(perm[n_val:].sort().values)
    if len(train) == 0:
        raise ValueError("no training pairs")
    data_hash = {"train": train.digest(), "val": val.digest()}

    # -- model, optimizer, RNG ------------------------------------------------------------
    with torch.random.fork_rng(devices=[]):  # initial weights from the seed; global RNG kept
        torch.manual_seed(config.seed)
        head = build_head(config.head, train.dim, **config.head_kwargs)
    if config.init_from:
        from safetensors.torch import load_file

        head.load_state_dict(load_file(str(Path(config.init_from) / "model.safetensors")))
    params = [p for p in head.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    loss_fn = get_reward_loss(config.loss)
    data_gen = torch.Generator().manual_seed(config.seed + 1)  # epoch order
    dropout_state = torch.Generator().manual_seed(config.seed + 2).get_state()
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    step, epoch, batch_in_epoch = 0, 0, 0
    perm = torch.arange(len(train))
    best: dict[str, Any] = {"metric": None, "epoch": None, "state": None,
                            "val_loss": None, "val_accuracy": None}
    bad_epochs, stopped_early, finished = 0, False, False

    # -- resume or start fresh (prefkit.runs: the folder, the checkpoint format) ------------------
    ck = run.load_checkpoint(config, data_hash) if run.resuming else None
    if ck is not None:
        step, epoch, batch_in_epoch = run.restore(ck, head, opt, None, data_gen)
        dropout_state, perm = ck["rng"]["dropout"], ck["rng"]["epoch_perm"]
        best = ck["best"]
        bad_epochs, stopped_early = ck["bad_epochs"], ck["stopped_early"]
        finished = ck["finished"]
    else:
        run.start(config.to_dict())
    metrics = Metrics(run.metrics_path, 0 if ck is None else ck["metrics_rows"])
    history, log = metrics.history, metrics.log
    backbone = dict(train.backbone) if train.backbone else {"kind": "unknown"}

    def checkpoint() -> None:
        run.save_checkpoint(
            config=config.to_dict(), model=head.state_dict(), optimizer=opt,
            rng={"data": data_gen.get_state(), "dropout": dropout_state, "epoch_perm": perm},
            step=step, epoch=epoch, step_in_epoch=batch_in_epoch, data=data_hash,
            metrics_rows=len(history), head_spec=head.spec(), best=best,
            bad_epochs=bad_epochs, stopped_early=stopped_early, finished=finished,
            backbone=backbone)

    bar = progress_bar(config.epochs * steps_per_epoch, "training", step, enabled=progress)
    due = Checkpointing(config.checkpoint_every, checkpoint_seconds)
    t0 = time.perf_counter()
    head.train()

    # -- epochs ------------------------------------------------------------------------------
    with due:  # SIGINT/SIGTERM: checkpoint, then stop
        while not finished and epoch < config.epochs:
            if batch_in_epoch == 0:
                perm = torch.randperm(len(train), generator=data_gen)
            for b in range(batch_in_epoch, steps_per_epoch):
                part = train.select(perm[b * config.batch_size:(b + 1) * config.batch_size])
                with torch.random.fork_rng(devices=[]):  # dropout draws from its own saved stream
                    torch.set_rng_state(dropout_state)
                    r_c, r_r = score_pairs(head, part.chosen, part.rejected, part.prompt)  # (B,) x2
                    dropout_state = torch.get_rng_state()
                lfit = loss_fn(r_c, r_r, part.batch(), **config.loss_kwargs)  # LossOutput (B,)
                loss = lfit.reduce()  # () the sum over the pairs / their number
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                opt.step()
                step, batch_in_epoch = step + 1, b + 1
                if step % config.log_every == 0 or b == steps_per_epoch - 1:
                    acc = None if lfit.accuracy is None else float(lfit.accuracy.mean())
                    log({"kind": "train", "step": step, "epoch": epoch, "loss": loss.item(),
                         "accuracy": json_num(acc),
                         "elapsed_s": round(time.perf_counter() - t0, 3)})
                bar.update(step, f"epoch {epoch + 1}/{config.epochs} loss {loss.item():.4f}")
                if due(step):  # every checkpoint_every steps, checkpoint_seconds, or a signal
                    checkpoint()
                    due.raise_if_interrupted(step, out, bar)
                if stop_after is not None and step >= stop_after:
                    checkpoint()
                    bar.close()
                    return _result(out, step, epoch, False, stopped_early, best, history)

            # -- validation and early stopping ---------------------------------------------------
            val_loss, val_acc = _evaluate(head, val, loss_fn, config.loss_kwargs)
            row = {"kind": "val", "step": step, "epoch": epoch, "val_loss": json_num(val_loss),
                   "val_accuracy": json_num(val_acc)}
            log(row)
            value = row[config.monitor]
            if len(val) == 0:  # nothing to monitor: keep the latest weights
                best.update(epoch=epoch, state=None)
            elif _better(value, best["metric"], config.monitor):
                best = {"metric": value, "epoch": epoch, "state": copy.deepcopy(head.state_dict()),
                        "val_loss": row["val_loss"], "val_accuracy": row["val_accuracy"]}
                bad_epochs = 0
            else:
                bad_epochs += 1
            epoch, batch_in_epoch = epoch + 1, 0
            bar.update(step, f"epoch {epoch}/{config.epochs} val_loss {val_loss:.4f}"
                             + (f" val_acc {val_acc:.3f}" if val_acc is not None else ""))
            if config.patience and bad_epochs >= config.patience:
                stopped_early = True
                break
            checkpoint()
            due.raise_if_interrupted(step, out, bar)
    bar.close()

    # -- finish: best weights, self-describing folder ----------------------------------------
    finished = True
    if config.restore_best and best["state"] is not None:
        head.load_state_dict(best["state"])
    checkpoint()
    result = _result(out, step, epoch, True, stopped_early, best, history)
    _save_folder(out, head, config, backbone, result)
    run.finish(config.to_dict(), {"step": result.step, "epochs_run": result.epoch})
    return result


def _result(out: Path, step: int, epoch: int, finished: bool, stopped_early: bool,
            best: Mapping[str, Any], history: list[dict[str, Any]]) -> TrainResult:
    return TrainResult(out, step, epoch, finished, stopped_early, best["epoch"],
                       {"val_loss": best["val_loss"], "val_accuracy": best["val_accuracy"]},
                       list(history))


def _save_folder(out: Path, head: RewardHead, config: RewardTrainConfig,
                 backbone: Mapping[str, Any], result: TrainResult) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in head.state_dict().items()}
    save_file(state, str(out / "model.safetensors"),
              metadata={"head": json.dumps(head.spec()), "format": "prefkit-reward-head/1"})
    write_json(out / "backbone.json", dict(backbone))
    write_json(out / "config.json", {
        "config": config.to_dict(), "head": head.spec(), "versions": package_versions(),
        "summary": {"step": result.step, "epochs_run": result.epoch,
                    "stopped_early": result.stopped_early, "best_epoch": result.best_epoch,
                    **result.best},
    })
