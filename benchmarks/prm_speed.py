"""PRM fine-tuning and scoring speed against the peer: a Hugging Face
``AutoModelForTokenClassification`` trained with ``transformers.Trainer`` on labels at the
step markers (what TRL's former PRMTrainer did), on the same backbone, windows, batches and
labels.

    OMP_NUM_THREADS=1 python benchmarks/prm_speed.py --rounds 2   # MiniLM, 134 GSM8K solutions
    OMP_NUM_THREADS=1 python benchmarks/prm_speed.py --backbone llama --rounds 1
    python benchmarks/prm_speed.py --device cuda --data math --solutions 1000 --rounds 3 [--bf16]
    bash benchmarks/gpu_prm.sh       # the GPU comparison in one call (its header says how)

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

On a GPU (``--device cuda``): both sides there (Trainer ``use_cpu=False``; prefkit
``FinetunePRMConfig(device=...)``), each phase timed between two ``torch.cuda.synchronize``,
after an untimed warm-up round of both sides on 16 solutions (``--warmup``); reported beside
the rates: optimizer steps/s and the peak CUDA memory of each phase above what was allocated
when it began (``torch.cuda.max_memory_allocated``). ``--bf16``: Trainer ``bf16=True`` and
prefkit ``precision="bf16"`` (bfloat16 autocast on both; for GPUs: on a CPU prefkit scores
in float32). ``--backbone-path``: a MiniLM folder
of any float dtype, loaded as float32 by both (benchmarks/gpu_prm.sh carries it as float16).
prefkit's scoring time includes making the windows (tokenizing), the peer is handed them:
``scoring_ratio_wall_same_work`` adds that time (measured once) to the peer's.

Where the time goes (torch.profiler, one training step of 8 random full windows and one
scoring batch of 8, one thread; the scripts stayed in the git-ignored benchmarks/_work/): the
peer's training step is 69% matrix products (aten::mm/addmm), 14.5% SDPA attention (forward
and backward), 4.4% GELU, 2.8% copies, 2.1% zero fills, 1.9% fused AdamW, 1.6% LayerNorm;
its scoring batch 77% matrix products, 15% attention, 6% GELU. MKL runs these products at
~90 GFLOP/s of CPU time on one core here (near the AVX2 peak), so the cost is the work
itself. prefkit removes what the step head does not need (prefkit.process._fastpath): the
last layer computes queries, attention output, feed-forward and norms only at the markers
(1.1% of the tokens; 2.7 a window), i.e. 10/12 of a sixth of the products, and folds the
keys and values of every token into the markers' queries (``_fastpath.folds``: the last
layer's attention 12 ms instead of 51 a training batch, ~2%); one Q/K/V product; no
padding in the products; fused AdamW in one group; no clip pass when the factor is 1;
labelled markers only. Tried and measured
(CPU time of 2 training steps, 2 threads, median of 3, peer = 1.00x): peer with eager
attention 0.90x; prefkit's plain path (the backbone's own forward) 0.96x with SDPA, 0.82x
eager; the marker path 1.02x eager, 1.12x SDPA, so SDPA stays (attention alone, 8 x 12 heads
x 256 x 32 forward and backward on one core: SDPA 55 ms, eager 66, eager with q pre-scaled
62, eager contiguous 61, math 73). Packing or length grouping: < 2% here (windows nearly all
full). A different window plan would change both sides' work alike (they share the windows),
not the ratio. bf16: no AVX-512/AMX here, and not the same numbers.

``torch.compile`` of prefkit's scorer (torch 2.13, inductor's C++ backend; 2026-12-05,
benchmarks/_work/d/: one process, eager and compiled steps interleaved on the same 4
batches of the longest windows, 12 timed steps a side after a warm-up pass, one thread, CPU
time; losses within 2e-7 of eager): training steps 1.02x (default and
``mode="max-autotune-no-cudagraphs"``), scoring batches 1.04x, 1.07x with inductor's
``freezing`` (weights prepacked for oneDNN; inference only). Compiling costs 12-17 s CPU in
the process (38 s for max-autotune) and 26-160 s wall with its compile workers, against a
36 s training loop and an 18 s scoring pass here: a loss at this size, and a few percent
for a user who amortizes it, so no option. It has little to fuse: prefkit's step is 73.5%
matrix products, 17% attention, ~10% the rest (GELU, copies, fills, LayerNorm, AdamW).
Attention kernels (8 x 12 heads x 256 x 32, forward and backward, one core): SDPA 62 ms,
eager 87, math 77, compiled eager 62 (inductor rewrites it to SDPA); FlexAttention has no
CPU backward (its compiled forward: 38 ms against SDPA's 16).

Why 1.5x is out of reach for this backbone on CPU with the same numbers: the products run
at 85-89 GFLOP/s of CPU time in isolation here (MKL, one core, the AVX2 FMA peak ~90), and
prefkit's step of 8 x 256 tokens still needs 110 GFLOP of them (the peer's 130 less the
last layer's) and five layers of attention (~0.31 s): ~1.55 s, against the peer's
2.0-2.15 s a step measured: 1.3-1.4x even with the rest at zero. What remains is the
encoder's own work on every token of every window, which an encoder needs (every token is
context for every marker).

Measured 2026-12-05 05:58-06:13 UTC (commit 8de0225, the folded last layer; one thread;
load average 2.5-4.5 on the 2 cores), ``--rounds 2``: training loop 35.7 / 36.0 s CPU vs
Trainer 41.9 / 47.3 s: 1.17x and 1.32x (median 1.24x; 4.64 vs 3.53 windows per CPU-second);
scoring 17.8 / 17.3 s CPU vs 21.2 / 21.8 s: 1.19x and 1.26x (median 1.22x; 40.6 vs 32.3
steps per CPU-second); wall medians 1.70x and 1.03x. Loss 0.36533394 (BCE; 0.36533397
before the fold) vs 0.3736 (2-class CE). The same command at commit 17be8d9 (before the
fold), 05:33-05:47 UTC under heavier load: 38.7 / 36.3 s vs 45.2 / 45.5 s (1.17x, 1.25x;
median 1.21x), scoring 20.5 / 21.1 s vs 24.0 / 23.6 s (1.17x, 1.12x; median 1.15x). The
peer's own CPU time moved 6-13% between rounds: the fold's ~2% is below what two rounds
resolve (it was measured on its own, above). The goal of 1.5x is NOT met.

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
from pathlib import Path
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


class _Clock:
    """Wall and CPU time of a phase; on a GPU the queued work is waited for at both ends
    (torch.cuda.synchronize) and the phase's peak CUDA memory above what was allocated when
    it began is kept (torch.cuda.max_memory_allocated)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        if self.cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            self.base = torch.cuda.memory_allocated(device)
        self.device = device
        self.t = time.perf_counter(), time.process_time()

    def stop(self) -> dict[str, float]:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        out = {"wall_s": time.perf_counter() - self.t[0], "cpu_s": time.process_time() - self.t[1]}
        if self.cuda:
            peak = torch.cuda.max_memory_allocated(self.device)
            out["cuda_peak_mib"] = (peak - self.base) / 2**20
        return out


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


DATA_FILES = {"gsm8k": "processbench_gsm8k.json", "math": "processbench_math.json.gz"}


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--solutions", type=int, default=120,
                    help="about this many solutions, every k-th of the file (all of them when "
                    "at least the file's: ProcessBench gsm8k has 400, math 1000)")
    ap.add_argument("--data", choices=sorted(DATA_FILES), default="gsm8k",
                    help="the ProcessBench split the solutions come from")
    ap.add_argument("--data-dir", type=Path, default=SHARED_DATA / "prm",
                    help="the folder holding the ProcessBench files")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2,
                    help="rounds of both sides, alternating which goes first")
    ap.add_argument("--peer-group-by-length", action="store_true",
                    help="give the peer Trainer's group_by_length=True as well")
    ap.add_argument("--backbone", choices=["minilm", "llama"], default="minilm",
                    help="llama: a causal LM of MiniLM's size (6 layers, 384 wide, random "
                    "weights, MiniLM's tokenizer) instead of the MiniLM encoder")
    ap.add_argument("--backbone-path", default=None,
                    help="the MiniLM folder (tokenizer, config, weights of any float dtype, "
                    "loaded as float32 by both sides); default the offline MiniLM package's")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:n] (both sides)")
    ap.add_argument("--bf16", action="store_true",
                    help="bfloat16 autocast on both sides (Trainer bf16=True, prefkit "
                    "precision='bf16'); float32 by default")
    ap.add_argument("--warmup", type=int, default=None,
                    help="solutions of an untimed first round of both sides (CUDA context, "
                    "kernels, allocator); default 16 on a GPU, 0 on the CPU")
    ap.add_argument("--json", type=Path, default=None, help="also write the report here")
    return ap.parse_args()


def main() -> None:
    args = _args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: torch.cuda.is_available() is False")
    torch.manual_seed(0)
    from transformers import (
        AutoModel,
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainingArguments,
    )

    data = read_steps(args.data_dir / DATA_FILES[args.data]).data
    data = data.subset(range(0, len(data), max(1, len(data) // args.solutions)))
    path = args.backbone_path or _backbone_path(None)
    tok = AutoTokenizer.from_pretrained(path)
    cfg = FinetunePRMConfig(max_length=args.max_length, epochs=1, batch_size=args.batch_size,
                            learning_rate=5e-5, val_fraction=0.25, device=str(device),
                            precision="bf16" if args.bf16 else "fp32")

    def windows_of(data: Any) -> dict[str, Any]:
        items = _examples(tok, data, range(len(data)), args.max_length)
        tr, _va = _split(data.first_error, cfg.val_fraction, cfg.seed)
        train = [x for x in _examples(tok, data, tr, args.max_length)
                 if any(not math.isnan(y) for y in x[2])]
        return {"data": data, "items": items, "train_windows": train,
                "n_steps": sum(len(x[1]) for x in items)}

    main_set = windows_of(data)
    t_tok = time.perf_counter()
    _examples(tok, data, range(len(data)), args.max_length)  # the windows score() makes
    tokenize_s = time.perf_counter() - t_tok
    items, train_windows, n_steps = (main_set["items"], main_set["train_windows"],
                                     main_set["n_steps"])
    lengths = [len(x[0]) for x in train_windows]
    print(f"{len(data)} solutions of {args.data}, {len(items)} windows, {n_steps} steps, "
          f"{args.backbone}, max_length {args.max_length}; {len(train_windows)} training "
          f"windows of {min(lengths)}..{max(lengths)} tokens (mean {np.mean(lengths):.0f}); "
          f"batch {args.batch_size}; {device}{' bf16' if args.bf16 else ''}; "
          f"torch threads {torch.get_num_threads()}")

    # -- the two sides, each a function run once per round ------------------------------------
    out = WORK / "prm_speed"
    state: dict[str, Any] = {}

    def backbone() -> torch.nn.Module:
        if args.backbone == "minilm":
            return AutoModel.from_pretrained(path, dtype=torch.float32)
        from transformers import LlamaConfig, LlamaModel

        torch.manual_seed(0)
        return LlamaModel(LlamaConfig(
            vocab_size=tok.vocab_size, hidden_size=384, intermediate_size=1536,
            num_hidden_layers=6, num_attention_heads=12, num_key_value_heads=12,
            max_position_embeddings=512, pad_token_id=tok.pad_token_id))

    def peer_model() -> torch.nn.Module:
        if args.backbone == "minilm":
            return AutoModelForTokenClassification.from_pretrained(path, num_labels=2,
                                                                   dtype=torch.float32)
        from transformers import LlamaForTokenClassification

        base = backbone()
        model = LlamaForTokenClassification(base.config.__class__(
            **{**base.config.to_dict(), "num_labels": 2}))
        model.model.load_state_dict(base.state_dict())  # the same initial backbone
        return model

    def ours_train(ws: dict[str, Any]) -> dict[str, Any]:
        shutil.rmtree(out, ignore_errors=True)
        clock = _Clock(device)
        summary = finetune_prm(cfg, out, ws["data"], model=backbone(), tokenizer=tok,
                               progress=False)
        t = clock.stop()
        return {"loop_wall_s": summary["train_loop_seconds"],
                "loop_cpu_s": summary["train_loop_cpu_seconds"],
                "checkpoint_wall_s": summary["checkpoint_seconds"],
                "end_to_end_wall_s": t["wall_s"], "end_to_end_cpu_s": t["cpu_s"],
                **({"cuda_peak_mib": t["cuda_peak_mib"]} if cuda else {}),
                "windows": summary["n_train_windows"], "optimizer_steps": summary["steps"]}

    def ours_score(ws: dict[str, Any]) -> dict[str, Any]:
        prm = load_prm(out, device=device)
        clock = _Clock(device)
        state["ours_scores"] = prm.score(ws["data"].prompts, ws["data"].steps,
                                         batch_size=args.batch_size)
        return clock.stop()

    def peer_train(ws: dict[str, Any]) -> dict[str, Any]:
        state.pop("trainer", None)
        if cuda:
            torch.cuda.empty_cache()
        torch.manual_seed(0)
        peer = _no_dropout(peer_model())
        targs = TrainingArguments(output_dir=str(WORK / "prm_speed_peer"),
                                  per_device_train_batch_size=args.batch_size,
                                  per_device_eval_batch_size=args.batch_size,
                                  learning_rate=5e-5, num_train_epochs=1, report_to=[],
                                  save_strategy="no", logging_strategy="no", use_cpu=not cuda,
                                  bf16=args.bf16, dataloader_num_workers=0, seed=0,
                                  train_sampling_strategy="group_by_length"
                                  if args.peer_group_by_length else "random")
        trainer = Trainer(model=peer, args=targs,
                          train_dataset=[_row(x) for x in ws["train_windows"]],
                          data_collator=DataCollatorForTokenClassification(tok))
        clock = _Clock(device)
        trainer.train()
        t = clock.stop()
        state["trainer"] = trainer
        return {**t, "windows": len(ws["train_windows"]),
                "optimizer_steps": trainer.state.global_step,
                "device": str(next(peer.parameters()).device),
                "optimizer": type(trainer.optimizer.optimizer
                                  if hasattr(trainer.optimizer, "optimizer")
                                  else trainer.optimizer).__name__ + (
                    " fused" if trainer.args.optim.endswith("fused") else "")}

    def peer_score(ws: dict[str, Any]) -> dict[str, Any]:
        clock = _Clock(device)
        state["peer_pred"] = state["trainer"].predict([_row(x) for x in ws["items"]])
        return clock.stop()

    sides = {"prefkit_train": ours_train, "peer_train": peer_train,
             "prefkit_score": ours_score, "peer_score": peer_score}
    warmup = (16 if cuda else 0) if args.warmup is None else args.warmup
    if warmup:  # untimed: the first use of CUDA, cuBLAS and the allocator, on both sides
        ws = windows_of(data.subset(range(min(warmup, len(data)))))
        t0 = time.perf_counter()
        for fn in sides.values():
            fn(ws)
        print(f"warm-up on {len(ws['data'])} solutions: {time.perf_counter() - t0:.1f} s",
              flush=True)

    def report() -> dict[str, Any]:
        """The results of the rounds run so far (the losses of the last one)."""
        # -- the loss each reaches on all labelled markers (last round) --------------------------
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
                         "scoring_ratio_cpu", "scoring_ratio_wall_same_work")}
        last = rounds[-1]
        res = {
            "rounds": rounds, "median": med,
            "prefkit_train_windows_per_s": last["prefkit_train"]["windows"]
            / last["prefkit_train"]["loop_wall_s"],
            "peer_train_windows_per_s": last["peer_train"]["windows"]
            / last["peer_train"]["wall_s"],
            "prefkit_optimizer_steps_per_s": last["prefkit_train"]["optimizer_steps"]
            / last["prefkit_train"]["loop_wall_s"],
            "peer_optimizer_steps_per_s": last["peer_train"]["optimizer_steps"]
            / last["peer_train"]["wall_s"],
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
            "setup": {"device": str(device), "bf16": args.bf16, "data": args.data,
                      "solutions": len(data), "windows": len(items),
                      "training_windows": len(train_windows), "steps": n_steps,
                      "batch_size": args.batch_size, "max_length": args.max_length,
                      "backbone": args.backbone, "backbone_path": str(path),
                      "torch": torch.__version__, "warmup_solutions": warmup,
                      "tokenize_windows_s": tokenize_s,
                      **({"gpu": torch.cuda.get_device_name(device)} if cuda else {})},
        }
        if cuda:
            res["cuda_peak_mib_median"] = {
                k: statistics.median(r[k]["cuda_peak_mib"] for r in rounds)
                for k in ("prefkit_train", "peer_train", "prefkit_score", "peer_score")}
        return res

    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        got: dict[str, Any] = {}
        order = list(sides)
        if r % 2:  # the peer first in odd rounds (each side's score needs its own training)
            order = [order[1], order[0], order[3], order[2]]
        for name in order:
            got[name] = sides[name](main_set)
            print(f"round {r + 1} {name}: {json.dumps(got[name], default=float)}", flush=True)
        got["training_ratio_wall"] = got["peer_train"]["wall_s"] / \
            got["prefkit_train"]["loop_wall_s"]
        got["training_ratio_cpu"] = got["peer_train"]["cpu_s"] / \
            got["prefkit_train"]["loop_cpu_s"]
        got["scoring_ratio_wall"] = got["peer_score"]["wall_s"] / got["prefkit_score"]["wall_s"]
        got["scoring_ratio_cpu"] = got["peer_score"]["cpu_s"] / got["prefkit_score"]["cpu_s"]
        # prefkit's scoring time includes tokenizing and windowing the solutions; the peer's
        # is given the windows already made: with that work added to the peer's time too
        got["scoring_ratio_wall_same_work"] = (got["peer_score"]["wall_s"] + tokenize_s) / \
            got["prefkit_score"]["wall_s"]
        rounds.append(got)
        if args.json is not None:  # after each round (a run cut short keeps them)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({**report(), "partial": r + 1 < args.rounds},
                                            indent=2, default=float))

    res = report()
    med = res["median"]
    print(json.dumps(res, indent=2, default=float))
    timing = "wall (synchronized)" if cuda else "wall"
    print(f"training {med['training_ratio_wall']:.2f}x {timing}, "
          f"{med['training_ratio_cpu']:.2f}x CPU; scoring {med['scoring_ratio_wall']:.2f}x "
          f"{timing}, {med['scoring_ratio_cpu']:.2f}x CPU (medians over {args.rounds} rounds; "
          "goal 1.5x)")
    if cuda:
        m = res["cuda_peak_mib_median"]
        print(f"scoring with the peer's tokenizing counted too: "
              f"{med['scoring_ratio_wall_same_work']:.2f}x ({tokenize_s:.2f} s to make the "
              "windows)")
        print(f"peak CUDA MiB above the start (median): train prefkit {m['prefkit_train']:.0f}"
              f" vs peer {m['peer_train']:.0f}; score prefkit {m['prefkit_score']:.0f} vs "
              f"peer {m['peer_score']:.0f}; optimizer steps/s prefkit "
              f"{res['prefkit_optimizer_steps_per_s']:.1f} vs peer "
              f"{res['peer_optimizer_steps_per_s']:.1f}")


if __name__ == "__main__":
    main()
