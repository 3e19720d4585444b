"""A process reward model on a frozen text encoder: fast to train on CPU.

Step ``k`` of a solution is read as the text of the problem and the steps up to it,
``problem + sep + step_1 + sep + ... + step_k`` (``sep`` = :data:`SEPARATOR`, two line
breaks, as ProcessBench's own PRM script joins them), embedded by the frozen encoder (the
offline MiniLM by default) with **left truncation**: a prefix longer than the encoder's window
(256 word pieces for MiniLM) keeps its end, the step being scored, so every step gets a score
(each prefix is its own window). The head reads ``[e_k, e_k - e_{k-1}, log(1 + k)]`` -- the
prefix, what step ``k`` changed, and its position -- and gives a logit; ``sigmoid`` of it is
P(step right). It trains with a step loss of :data:`~prefkit.process.losses.PROCESS_LOSSES`
on every labelled step (hard or soft labels).

The loop: split off ``val_fraction`` of the *solutions* (seeded) -> epochs of shuffled
mini-batches of steps (AdamW) -> validation loss per epoch, early stopping, the best epoch's
weights -> the ProcessBench threshold tuned on the validation solutions (never on data scored
later) -> the folder: ``config.json`` (config, threshold, summary), ``model.safetensors``,
``backbone.json``, ``metrics.jsonl``, ``checkpoint.pt`` (:mod:`prefkit.runs`; ``resume``
continues from the last epoch).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prefkit.data.steps import StepSolutions
from prefkit.process.losses import get_process_loss
from prefkit.process.processbench import DEFAULT_THRESHOLD, evaluate_steps, tune_threshold
from prefkit.runs import (
    ConfigIO,
    Metrics,
    RunFolder,
    json_num,
    package_versions,
    progress_bar,
    write_json,
)

__all__ = [
    "SEPARATOR",
    "FrozenPRM",
    "FrozenPRMConfig",
    "prefix_texts",
    "step_features",
    "train_frozen_prm",
]

#: what joins the problem and the steps into the text a step is read in
SEPARATOR = "\n\n"
KIND = "prm-train"


@dataclass(frozen=True)
class FrozenPRMConfig(ConfigIO):
    """A frozen-encoder PRM run (saved in ``config.json``). ``hidden=0`` is a linear head;
    ``val_fraction`` of the solutions tune early stopping and the threshold."""

    encoder: str | None = None
    separator: str = SEPARATOR
    max_seq_length: int | None = None
    hidden: int = 256
    dropout: float = 0.1
    loss: str = "step_bce"
    epochs: int = 60
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.2
    patience: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        get_process_loss(self.loss)
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1), got {self.val_fraction}: the "
                             "threshold is tuned on it")
        for name, ok, rule in (("epochs", self.epochs >= 1, ">= 1"),
                               ("batch_size", self.batch_size >= 1, ">= 1"),
                               ("learning_rate", self.learning_rate > 0, "> 0")):
            if not ok:
                raise ValueError(f"{name} must be {rule}, got {getattr(self, name)}")


def prefix_texts(prompt: str, steps: Sequence[str], separator: str = SEPARATOR) -> list[str]:
    """The text each step is read in: the problem and the steps up to it.

    >>> prefix_texts("1+1+1?", ["1+1 = 2", "2+1 = 3"], "\\n")
    ['1+1+1?\\n1+1 = 2', '1+1+1?\\n1+1 = 2\\n2+1 = 3']
    """
    out, cur = [], prompt
    for s in steps:
        cur = cur + separator + s
        out.append(cur)
    return out


def step_features(encoder: Any, prompts: Sequence[str], steps: Sequence[Sequence[str]], *,
                  separator: str = SEPARATOR, progress: bool = False) -> list[np.ndarray]:
    """Per solution, ``(n_steps, 2 * dim + 1)`` float32 head inputs (module docstring)."""
    texts, sizes = [], []
    for p, st in zip(prompts, steps):
        texts.extend(prefix_texts(p, st, separator))
        sizes.append(len(st))
    emb = encoder.encode(texts, progress=progress)  # (N, dim)
    first = encoder.encode(list(prompts))  # (n_solutions, dim): before step 1
    out, at = [], 0
    for j, n in enumerate(sizes):
        e = emb[at:at + n]
        at += n
        prev = np.vstack([first[j:j + 1], e[:-1]])
        pos = np.log1p(np.arange(n, dtype=np.float32))[:, None]
        out.append(np.hstack([e, e - prev, pos]).astype(np.float32))
    return out


def _head(dim: int, hidden: int, dropout: float) -> nn.Module:
    if hidden <= 0:
        return nn.Linear(dim, 1)
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, 1))


class FrozenPRM:
    """A trained frozen-encoder PRM: :meth:`score` gives P(step right) per step."""

    def __init__(self, encoder: Any, head: nn.Module, config: FrozenPRMConfig,
                 threshold: float = DEFAULT_THRESHOLD,
                 train_stats: dict[str, list[int]] | None = None) -> None:
        self.encoder, self.head, self.config, self.threshold = encoder, head, config, threshold
        #: the training solutions' step counts and first wrong steps (the position prior)
        self.train_stats = train_stats or {}
        self.head.eval()

    def score_features(self, feats: Sequence[np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            return [torch.sigmoid(self.head(torch.from_numpy(f)).squeeze(-1)).double().numpy()
                    if len(f) else np.zeros(0) for f in feats]

    def score(self, prompts: Sequence[str], steps: Sequence[Sequence[str]], *,
              progress: bool = False) -> list[np.ndarray]:
        feats = step_features(self.encoder, prompts, steps, separator=self.config.separator,
                              progress=progress)
        return self.score_features(feats)

    @classmethod
    def load(cls, folder: str | Path, **encoder_kwargs: Any) -> FrozenPRM:
        from safetensors.torch import load_file

        from prefkit.reward.backbones import FrozenEncoder

        folder = Path(folder)
        info = json.loads((folder / "config.json").read_text())
        config = FrozenPRMConfig.from_dict(info["config"])
        encoder = FrozenEncoder.from_description(
            json.loads((folder / "backbone.json").read_text()), **encoder_kwargs)
        head = _head(int(info["input_dim"]), config.hidden, config.dropout)
        head.load_state_dict(load_file(str(folder / "model.safetensors")))
        return cls(encoder, head, config, float(info["threshold"]), info.get("train_stats"))


def _split(first_error: Sequence[int], fraction: float, seed: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, validation) solution indices, stratified by correct / erroneous so
    that the validation part holds both kinds whenever the data does."""
    rng = np.random.default_rng(seed)
    kinds = np.asarray(first_error) == -1
    tr, va = [], []
    for group in (np.flatnonzero(kinds), np.flatnonzero(~kinds)):
        perm = rng.permutation(group)
        n_val = min(len(perm) - 1, max(1, round(fraction * len(perm)))) if len(perm) > 1 else 0
        va.extend(perm[:n_val])
        tr.extend(perm[n_val:])
    if not va:
        raise ValueError(f"too few solutions ({len(kinds)}) to hold out a validation part "
                         "for tuning the threshold; give at least two erroneous or two "
                         "correct solutions")
    return np.sort(np.asarray(tr, dtype=np.int64)), np.sort(np.asarray(va, dtype=np.int64))


def _flat(feats: Sequence[np.ndarray], labels: Sequence[Sequence[float]]
          ) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.vstack(feats))
    y = torch.tensor([v for row in labels for v in row], dtype=torch.float32)
    keep = ~torch.isnan(y)
    return x[keep], y[keep]


def train_frozen_prm(config: FrozenPRMConfig, output_dir: str | Path, data: StepSolutions, *,
                     encoder: Any = None, resume: bool = False, overwrite: bool = False,
                     progress: bool = True, stop_after: int | None = None,
                     device: str = "cpu") -> dict[str, Any]:
    """Train the frozen-encoder PRM on ``data``; write ``output_dir``; return the summary
    (``threshold``, best epoch, validation loss and ProcessBench F1 at both thresholds).
    ``device``: where the encoder embeds the texts (unless ``encoder`` is given); the small
    head trains on the CPU.

    ``stop_after`` stops after that many epochs in total, with a checkpoint (the summary
    says ``finished: False``); ``resume=True`` continues it, and the result equals an
    uninterrupted run's (data order and dropout draw from their own saved generators)."""
    from safetensors.torch import save_file

    from prefkit.reward.backbones import FrozenEncoder

    out = Path(output_dir)
    run = RunFolder(out, KIND, resume=resume, overwrite=overwrite)
    # -- data: embed every prefix (cached), split solutions --------------------------------
    if encoder is None:
        encoder = FrozenEncoder(config.encoder, max_seq_length=config.max_seq_length,
                                truncation_side="left", device=device)
    feats = step_features(encoder, data.prompts, data.steps, separator=config.separator,
                          progress=progress)
    tr, va = _split(data.first_error, config.val_fraction, config.seed)
    x_tr, y_tr = _flat([feats[i] for i in tr], [data.labels[i] for i in tr])
    x_va, y_va = _flat([feats[i] for i in va], [data.labels[i] for i in va])
    if len(y_tr) == 0:
        raise ValueError("no labelled training steps")
    digest = {"train": float(x_tr.double().sum()), "n": len(y_tr)}
    # -- model, optimizer -------------------------------------------------------------------
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        head = _head(x_tr.shape[1], config.hidden, config.dropout)
    opt = torch.optim.AdamW(head.parameters(), lr=config.learning_rate,
                            weight_decay=config.weight_decay)
    loss_fn = get_process_loss(config.loss)
    gen = torch.Generator().manual_seed(config.seed + 1)
    dropout_state = torch.Generator().manual_seed(config.seed + 2).get_state()
    step, epoch = 0, 0
    best: dict[str, Any] = {"val_loss": None, "epoch": None, "state": None}
    bad = 0
    ck = run.load_checkpoint(config, digest) if run.resuming else None
    if ck is not None:
        step, epoch, _ = run.restore(ck, head, opt, None, gen)
        best, bad = ck["best"], ck["bad_epochs"]
        dropout_state = ck["rng"]["dropout"]
    else:
        run.start(config.to_dict())
    metrics = Metrics(run.metrics_path, 0 if ck is None else ck["metrics_rows"])
    per_epoch = math.ceil(len(y_tr) / config.batch_size)
    bar = progress_bar(config.epochs * per_epoch, "training", step, enabled=progress)
    # -- epochs -----------------------------------------------------------------------------
    while epoch < config.epochs and bad < config.patience:
        head.train()
        perm = torch.randperm(len(y_tr), generator=gen)
        for b in range(per_epoch):
            idx = perm[b * config.batch_size:(b + 1) * config.batch_size]
            with torch.random.fork_rng(devices=[]):  # dropout from its own saved stream
                torch.set_rng_state(dropout_state)
                logits = head(x_tr[idx])  # (B, 1): one step per row
                dropout_state = torch.get_rng_state()
            loss = loss_fn(logits, y_tr[idx, None]).reduce()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            bar.update(step, f"epoch {epoch + 1} loss {loss.item():.4f}")
        head.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(head(x_va), y_va[:, None]).reduce()) if len(y_va) else 0.0
        metrics.log({"kind": "val", "step": step, "epoch": epoch, "val_loss": json_num(val_loss)})
        if best["val_loss"] is None or val_loss < best["val_loss"] - 1e-6:
            best, bad = {"val_loss": val_loss, "epoch": epoch,
                         "state": copy.deepcopy(head.state_dict())}, 0
        else:
            bad += 1
        epoch += 1
        run.save_checkpoint(config=config.to_dict(), model=head.state_dict(), optimizer=opt,
                            rng={"data": gen.get_state(), "dropout": dropout_state},
                            step=step, epoch=epoch,
                            step_in_epoch=0, data=digest, metrics_rows=len(metrics.history),
                            best=best, bad_epochs=bad)
        if stop_after is not None and epoch >= stop_after and epoch < config.epochs:
            bar.close()
            return {"finished": False, "epochs_run": epoch, "steps": step}
    bar.close()
    # -- finish: best weights, threshold on the validation solutions, the folder -------------
    if best["state"] is not None:
        head.load_state_dict(best["state"])
    prm = FrozenPRM(encoder, head, config)
    val_scores = prm.score_features([feats[i] for i in va])
    val_first = [data.first_error[i] for i in va]
    both = -1 in val_first and any(x != -1 for x in val_first)
    threshold = tune_threshold(val_scores, val_first) if both else DEFAULT_THRESHOLD
    summary = {"finished": True, "best_epoch": best["epoch"],
               "val_loss": json_num(best["val_loss"]),
               "epochs_run": epoch, "steps": step, "threshold": threshold,
               "n_train_solutions": len(tr), "n_val_solutions": len(va)}
    try:
        summary["val_f1_fixed"] = evaluate_steps(val_scores, val_first).f1
        summary["val_f1_tuned"] = evaluate_steps(val_scores, val_first, threshold=threshold).f1
    except ValueError:  # a validation split without both kinds of solution
        pass
    save_file({k: v.contiguous() for k, v in head.state_dict().items()},
              str(out / "model.safetensors"))
    write_json(out / "backbone.json", encoder.describe())
    write_json(out / "config.json", {"kind": "frozen", "config": config.to_dict(),
                                     "input_dim": int(x_tr.shape[1]), "threshold": threshold,
                                     "train_stats": {"n_steps": [len(s) for s in data.steps],
                                                     "labels": data.first_error},
                                     "versions": package_versions(), "summary": summary})
    run.finish(config.to_dict(), summary)
    return summary
