"""PRM fine-tuning and scoring speed against the peer: a Hugging Face
``AutoModelForTokenClassification`` trained with ``transformers.Trainer`` on labels at the
step markers (what TRL's former PRMTrainer did), on the same backbone, windows, batches and
labels.

    OMP_NUM_THREADS=1 python benchmarks/prm_speed.py --rounds 2   # MiniLM, 134 GSM8K solutions
    OMP_NUM_THREADS=1 python benchmarks/prm_speed.py --backbone llama --rounds 1

Both sides see the same tokenized windows (prefkit.process.finetune.encode_solution /
windows, 256 tokens) and labels (1 right, 0 wrong at each step's marker, -100 / NaN elsewhere
and after the first error), batch size 8, fused AdamW at 5e-5 (Trainer's default optimizer
with torch >= 2.8), gradient clipping at 1.0, one epoch, dropout off on both (TRL's
``PRMConfig(disable_dropout=True)``, its default, and prefkit's). The peer's loss is the
2-class cross-entropy of token classification, prefkit's the binary cross-entropy of one
logit: the same objective (softmax over two logits is the sigmoid of their difference); both
are reported on the same windows after training. What differs: prefkit groups its batches by
length (Trainer's sampler is random; ``--peer-group-by-length`` gives the peer the same):
on these windows (85% of them a full 256 tokens) random batches are already 97.6% real
tokens, sorted ones 99.3%, so it is worth under 2%. Scoring: both in batches of 8, the peer
through ``Trainer.predict`` in the windows' order, prefkit sorted by length.

Reported: training windows/s and scored steps/s, wall and CPU time, and the ratios. The
sides are interleaved: each round runs both, the peer first in every second round; the ratios
are medians over the rounds. On the shared 2-core machine wall time swings with the others'
load (wall was 2-3x CPU here): read the CPU-time ratios. prefkit's training time is its
loop's without writing checkpoints (as ``Trainer.train()`` with ``save_strategy="no"``); its
end-to-end time (checkpoints, tuned threshold, saved folder) is reported beside it.

Where the time goes (torch.profiler, one training step of 8 random full windows and one
scoring batch of 8, one thread; the scripts stayed in the git-ignored benchmarks/_work/): the
peer's training step is 69% matrix products (aten::mm/addmm), 14.5% SDPA attention (forward
and backward), 4.4% GELU, 2.8% copies, 2.1% zero fills, 1.9% fused AdamW, 1.6% LayerNorm;
its scoring batch 77% matrix products, 15% attention, 6% GELU. MKL runs these products at
~90 GFLOP/s of CPU time on one core here (near the AVX2 peak), so the cost is the work
itself. prefkit removes what the step head does not need (prefkit.process._fastpath): the
last layer computes keys and values for every token but queries, attention output,
feed-forward and norms only at the markers (1.1% of the tokens; 2.7 a window), i.e. 10/12
of a sixth of the products; one Q/K/V product; no padding in the products; fused AdamW in
one group; no clip pass when the factor is 1; labelled markers only. Tried and measured
(CPU time of 2 training steps, 2 threads, median of 3, peer = 1.00x): peer with eager
attention 0.90x; prefkit's plain path (the backbone's own forward) 0.96x with SDPA, 0.82x
eager; the marker path 1.02x eager, 1.12x SDPA, so SDPA stays (attention alone, 8 x 12 heads
x 256 x 32 forward and backward on one core: SDPA 55 ms, eager 66, eager with q pre-scaled
62, eager contiguous 61, math 73). Packing or length grouping: < 2% here (windows nearly all
full). A different window plan would change both sides' work alike (they share the windows),
not the ratio. bf16: no AVX-512/AMX here, and not the same numbers.

Why 1.5x is out of reach for this backbone on CPU with the same numbers: with the peer's step
at 1 = products 0.70 + attention 0.145 + the rest 0.155, the marker path leaves products
0.70 x (1 - 10/72) = 0.60 and attention ~0.145 x 5/6 = 0.12; even with the rest at zero the
step would be 0.72 (1.38x). What remains is the encoder's own work on every token of every
window, which an encoder needs (every token is context for every marker).

Measured 2026-12-05 00:30-00:41 UTC (commit 97bec59; 134 solutions, 271 windows, 702 steps,
167 training windows; MiniLM; one thread; load average 7-12 on the 2 cores from other
work), two rounds: training loop 35.9 / 36.3 s CPU vs Trainer 42.1 / 42.4 s: 1.17x in CPU
time in both rounds (4.60 vs 3.94 windows per CPU-second); scoring 17.9 / 17.6 s CPU vs
21.2 / 21.2 s: 1.19x (rounds 1.18x, 1.20x; 39.8 vs 33.1 steps per CPU-second). Wall-clock
ratios: training 1.18x and 0.87x (median 1.02x), scoring 1.16x and 1.06x (median 1.11x):
each loop got 30-50% of a core in wall time, varying with the others' load. Held-out loss
after one epoch: 0.3653 (BCE) vs 0.3736 (2-class CE). The goal of 1.5x is NOT met (see
above); before this work (2026-12-04) it was 0.97x training, 0.99x scoring (wall).

``--backbone llama`` (a causal LM: prefkit cuts each window after its last labelled marker,
exact for a causal model, and runs transformers' own forward; the peer
``LlamaForTokenClassification`` from the same initial weights), 2026-12-05 00:41-00:49 UTC,
one round: training 48.3 s CPU vs 55.8 s (1.15x; wall 0.73x under the others' load),
scoring 26.3 vs 28.9 s CPU (1.10x; wall 1.12x); loss 0.2844 (BCE) vs 0.3012 (2-class CE).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import time
from typing import Any

import numpy as np
import torch
from _common import SHARED_DATA, WORK

from prefkit.process import load_prm, read_steps
from prefkit.process.finetune import (
    FinetunePRMConfig,
    _backbone_path,
    _examples,
    finetune_prm,
)
from prefkit.process.frozen import _split


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - t[0], time.process_time() - t[1]


def _no_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """TRL's PRMTrainer with PRMConfig(disable_dropout=True), its default."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


def _row(x: tuple) -> dict[str, Any]:
    """A window as the peer's token-classification row: -100 except at labelled markers."""
    lab = [-100] * len(x[0])
    for p, y in zip(x[1], x[2]):
        if not math.isnan(y):
            lab[p] = int(y >= 0.5)
    return {"input_ids": x[0], "attention_mask": [1] * len(x[0]), "labels": lab}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--solutions", type=int, default=120)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2,
                    help="rounds of both sides, alternating which goes first")
    ap.add_argument("--peer-group-by-length", action="store_true",
                    help="give the peer Trainer's group_by_length=True as well")
    ap.add_argument("--backbone", choices=["minilm", "llama"], default="minilm",
                    help="llama: a causal LM of MiniLM's size (6 layers, 384 wide, random "
                    "weights, MiniLM's tokenizer) instead of the MiniLM encoder")
    args = ap.parse_args()
    torch.manual_seed(0)
    from transformers import (
        AutoModel,
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
    )

    data = read_steps(SHARED_DATA / "prm" / "processbench_gsm8k.json").data
    data = data.subset(range(0, len(data), max(1, len(data) // args.solutions)))
    path = _backbone_path(None)
    tok = AutoTokenizer.from_pretrained(path)
    cfg = FinetunePRMConfig(max_length=args.max_length, epochs=1, batch_size=8,
                            learning_rate=5e-5, val_fraction=0.25)
    items = _examples(tok, data, range(len(data)), args.max_length)
    n_steps = sum(len(x[1]) for x in items)
    tr, _va = _split(data.first_error, cfg.val_fraction, cfg.seed)
    train_windows = [x for x in _examples(tok, data, tr, args.max_length)
                     if any(not math.isnan(y) for y in x[2])]
    lengths = [len(x[0]) for x in train_windows]
    print(f"{len(data)} solutions, {len(items)} windows, {n_steps} steps, {args.backbone}, "
          f"max_length {args.max_length}; {len(train_windows)} training windows of "
          f"{min(lengths)}..{max(lengths)} tokens (mean {np.mean(lengths):.0f}); "
          f"torch threads {torch.get_num_threads()}")

    # -- the two sides, each a function run once per round ------------------------------------
    out = WORK / "prm_speed"
    state: dict[str, Any] = {}

    def backbone() -> torch.nn.Module:
        if args.backbone == "minilm":
            return AutoModel.from_pretrained(path)
        from transformers import LlamaConfig, LlamaModel

        torch.manual_seed(0)
        return LlamaModel(LlamaConfig(
            vocab_size=tok.vocab_size, hidden_size=384, intermediate_size=1536,
            num_hidden_layers=6, num_attention_heads=12, num_key_value_heads=12,
            max_position_embeddings=512, pad_token_id=tok.pad_token_id))

    def peer_model() -> torch.nn.Module:
        if args.backbone == "minilm":
            return AutoModelForTokenClassification.from_pretrained(path, num_labels=2)
        from transformers import LlamaForTokenClassification

        base = backbone()
        model = LlamaForTokenClassification(base.config.__class__(
            **{**base.config.to_dict(), "num_labels": 2}))
        model.model.load_state_dict(base.state_dict())  # the same initial backbone
        return model

    def ours_train() -> dict[str, Any]:
        shutil.rmtree(out, ignore_errors=True)
        t = _clock()
        summary = finetune_prm(cfg, out, data, model=backbone(), tokenizer=tok,
                               progress=False)
        wall, cpu = _since(t)
        return {"loop_wall_s": summary["train_loop_seconds"],
                "loop_cpu_s": summary["train_loop_cpu_seconds"],
                "checkpoint_wall_s": summary["checkpoint_seconds"],
                "end_to_end_wall_s": wall, "end_to_end_cpu_s": cpu,
                "windows": summary["n_train_windows"]}

    def ours_score() -> dict[str, Any]:
        prm = load_prm(out)
        t = _clock()
        state["ours_scores"] = prm.score(data.prompts, data.steps, batch_size=8)
        wall, cpu = _since(t)
        return {"wall_s": wall, "cpu_s": cpu}

    def peer_train() -> dict[str, Any]:
        torch.manual_seed(0)
        peer = _no_dropout(peer_model())
        targs = TrainingArguments(output_dir=str(WORK / "prm_speed_peer"),
                                  per_device_train_batch_size=8, per_device_eval_batch_size=8,
                                  learning_rate=5e-5, num_train_epochs=1, report_to=[],
                                  save_strategy="no", logging_strategy="no", use_cpu=True,
                                  dataloader_num_workers=0, seed=0,
                                  train_sampling_strategy="group_by_length"
                                  if args.peer_group_by_length else "random")
        trainer = Trainer(model=peer, args=targs,
                          train_dataset=[_row(x) for x in train_windows],
                          data_collator=DataCollatorForTokenClassification(tok))
        t = _clock()
        trainer.train()
        wall, cpu = _since(t)
        state["trainer"] = trainer
        return {"wall_s": wall, "cpu_s": cpu, "windows": len(train_windows),
                "optimizer": type(trainer.optimizer.optimizer
                                  if hasattr(trainer.optimizer, "optimizer")
                                  else trainer.optimizer).__name__ + (
                    " fused" if trainer.args.optim.endswith("fused") else "")}

    def peer_score() -> dict[str, Any]:
        t = _clock()
        state["peer_pred"] = state["trainer"].predict([_row(x) for x in items])
        wall, cpu = _since(t)
        return {"wall_s": wall, "cpu_s": cpu}

    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        got: dict[str, Any] = {}
        order = [("prefkit_train", ours_train), ("peer_train", peer_train),
                 ("prefkit_score", ours_score), ("peer_score", peer_score)]
        if r % 2:  # the peer first in odd rounds (each side's score needs its own training)
            order = [order[1], order[0], order[3], order[2]]
        for name, fn in order:
            got[name] = fn()
            print(f"round {r + 1} {name}: {json.dumps(got[name], default=float)}", flush=True)
        got["training_ratio_wall"] = got["peer_train"]["wall_s"] / \
            got["prefkit_train"]["loop_wall_s"]
        got["training_ratio_cpu"] = got["peer_train"]["cpu_s"] / \
            got["prefkit_train"]["loop_cpu_s"]
        got["scoring_ratio_wall"] = got["peer_score"]["wall_s"] / got["prefkit_score"]["wall_s"]
        got["scoring_ratio_cpu"] = got["peer_score"]["cpu_s"] / got["prefkit_score"]["cpu_s"]
        rounds.append(got)

    # -- the loss each reaches on all labelled markers (last round) ------------------------------
    logits = state["peer_pred"].predictions  # (N, T, 2), padded
    ce, ours_bce, n = 0.0, 0.0, 0
    scores = state["ours_scores"]
    for j, x in enumerate(items):
        for p, y, k in zip(x[1], x[2], x[4]):
            if math.isnan(y):
                continue
            z = torch.log_softmax(torch.tensor(logits[j, p], dtype=torch.float64), -1)
            ce -= float(z[int(y >= 0.5)])
            q = float(np.clip(scores[x[3]][k], 1e-12, 1 - 1e-12))
            ours_bce -= math.log(q if y >= 0.5 else 1 - q)
            n += 1
    med = {k: statistics.median(r[k] for r in rounds)
           for k in ("training_ratio_wall", "training_ratio_cpu", "scoring_ratio_wall",
                     "scoring_ratio_cpu")}
    last = rounds[-1]
    res = {
        "rounds": rounds, "median": med,
        "prefkit_train_windows_per_s": last["prefkit_train"]["windows"]
        / last["prefkit_train"]["loop_wall_s"],
        "peer_train_windows_per_s": last["peer_train"]["windows"] / last["peer_train"]["wall_s"],
        "prefkit_steps_scored_per_s": n_steps / last["prefkit_score"]["wall_s"],
        "peer_steps_scored_per_s": n_steps / last["peer_score"]["wall_s"],
        "per_cpu_second": {  # the rates in CPU time, which the others' load moves less
            "prefkit_train_windows": last["prefkit_train"]["windows"]
            / last["prefkit_train"]["loop_cpu_s"],
            "peer_train_windows": last["peer_train"]["windows"] / last["peer_train"]["cpu_s"],
            "prefkit_steps_scored": n_steps / last["prefkit_score"]["cpu_s"],
            "peer_steps_scored": n_steps / last["peer_score"]["cpu_s"]},
        "loss_after_one_epoch": {"prefkit_bce": ours_bce / n, "peer_ce": ce / n,
                                 "labelled_steps": n},
        "peer_group_by_length": args.peer_group_by_length,
    }
    print(json.dumps(res, indent=2, default=float))
    print(f"training {med['training_ratio_wall']:.2f}x wall, {med['training_ratio_cpu']:.2f}x "
          f"CPU; scoring {med['scoring_ratio_wall']:.2f}x wall, "
          f"{med['scoring_ratio_cpu']:.2f}x CPU (medians over {args.rounds} rounds; goal 1.5x)")


if __name__ == "__main__":
    main()
