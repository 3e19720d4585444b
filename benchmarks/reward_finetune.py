"""Fully fine-tuned MiniLM reward models on Anthropic HH-RLHF harmless-base, and prefkit's
fine-tuning loop against TRL's ``RewardTrainer``.

Measures, in one run on one machine:

(a) **Held-out accuracy** of the offline MiniLM fine-tuned whole (mean pooling + a linear
    head, Bradley-Terry loss) by :func:`prefkit.reward.finetune.finetune_reward_model` on
    the fixed HH harmless-base train split (:func:`prefkit.data.text.hh_harmless_split`,
    1,850 train / 462 test pairs), for ``--steps`` optimizer steps, scored on the 462 test
    pairs through the folder loaded back (:func:`prefkit.reward.scorer.load_scorer`).
    Wilson 95% intervals; ties count 0.5. Time per epoch is extrapolated from the steps run.
(b) **Speed against TRL 1.16**, interleaved and repeated: each of ``--repeats`` rounds
    trains prefkit, TRL with its defaults (gradient checkpointing on) and TRL with
    checkpointing off, each from a fresh model loaded with the same seed, the order rotated
    from round to round (so a busy neighbour or a warm cache favours no one). TRL's model is
    the same local MiniLM as ``AutoModelForSequenceClassification(num_labels=1)``. Both read
    the SAME batches (one fixed shuffled order; TRL's sampler made sequential, prefkit's
    ``shuffle=False``) of the same token ids (prefkit's tokenization, left-truncated to
    ``--max-length``, handed to TRL pre-tokenized so it neither adds an EOS nor drops long
    pairs), with the same batch size, lr, linear decay, no warmup, grad clip 1.0, dropout
    off (TRL's default), steps and precision (``--precision``, bf16 autocast by default as
    TRL's ``RewardConfig``). Pairs/s is over each trainer's loop: from its start (after the
    model, data and optimizer are set up) to the end of the last optimizer step (prefkit:
    the loop's ``elapsed_s``; TRL: a callback from ``on_train_begin`` to the last
    ``on_step_end``). Reported: every round's pairs/s and ratios, the median of the
    per-round ratios and the best-of ratio, against both TRL settings.
(c) **Same accuracy** (``--accuracy-steps N``): both trainers for the same N steps of
    ``--batch-size`` pairs on the same batches (consecutive seeded epochs of the train
    split), ``--accuracy-max-length`` tokens, 10% warmup then linear decay (prefkit's
    warmup ramps from lr/(w+1), TRL's from 0), then both scored on the 462 test pairs with
    the same token ids: loss curves, test accuracy, loop time (run one after the other,
    not interleaved: indicative only).

The two heads differ as each library builds them (prefkit: mean pooling + linear; TRL's
BERT classifier: the [CLS] pooler + linear). prefkit's speed comes from doing less work for
the same update: length-bucketed forwards, fused AdamW, eager attention on CPU
(``FinetuneConfig.bucket_overhead`` / ``attention``; ``--no-buckets``, ``--attention sdpa``
and ``--trl-attention eager`` take each apart).

    # the final comparison: (b) 3 interleaved rounds + (c) 2 epochs at 256 tokens for both;
    # ~12-15 min on 2 quiet cores (estimated from separate runs: b ~1 min; c: prefkit
    # ~3-4 min at ~20 pairs/s, TRL with checkpointing ~7-8 min at ~9 pairs/s, plus scoring)
    .venv/bin/python benchmarks/reward_finetune.py --skip-a --repeats 3 --accuracy-steps 232 \
        --json benchmarks/_work/reward_finetune_final.json
    .venv/bin/python benchmarks/reward_finetune.py --skip-a --repeats 5 --threads 1  # busy machine
    .venv/bin/python benchmarks/reward_finetune.py --skip-b --steps 232 --max-length 256  # (a)
    .venv/bin/python benchmarks/reward_finetune.py --skip-a --trl-attention eager   # like for like
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(__file__).resolve().parent / "_work"
HH = ROOT.parent / "shared" / "data" / "reward" / "hh_rlhf_harmless_base_test.jsonl.gz"


def fmt(acc) -> str:  # an AccuracyReport
    return f"{acc.accuracy:.3f} [{acc.low:.3f}, {acc.high:.3f}] (n={acc.n})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=40, help="(a) optimizer steps")
    ap.add_argument("--batch-size", type=int, default=16, help="(a) pairs per step")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--max-length", type=int, default=128, help="tokens per text (<= 256)")
    ap.add_argument("--compare-steps", type=int, default=8, help="(b) steps per trainer")
    ap.add_argument("--compare-batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3, help="(b) interleaved repeats")
    ap.add_argument("--bucket-overhead", type=int, default=64,
                    help="prefkit's length bucketing (FinetuneConfig.bucket_overhead)")
    ap.add_argument("--no-buckets", action="store_true",
                    help="prefkit without length bucketing (one padded forward per batch)")
    ap.add_argument("--attention", default="auto",
                    help="prefkit's FinetuneConfig.attention (auto: eager on CPU)")
    ap.add_argument("--trl-attention", default=None,
                    help="attn_implementation of TRL's model (default: transformers' own, sdpa)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads for both trainers (0: all CPUs; 1 is steadier on a "
                         "busy machine)")
    ap.add_argument("--accuracy-steps", type=int, default=0,
                    help="(c) steps of the same-batches accuracy run of both trainers "
                         "(batch --batch-size; 0: skip)")
    ap.add_argument("--accuracy-max-length", type=int, default=256)
    ap.add_argument("--accuracy-trl-no-gc", action="store_true",
                    help="(c) TRL without gradient checkpointing (same math, faster)")
    ap.add_argument("--runs", type=Path, default=WORK / "reward_finetune_runs")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="bf16",
                    help="both trainers' forward precision (TRL's RewardConfig defaults to bf16)")
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--skip-b", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch
    import transformers

    from prefkit.data.text import hh_harmless_split
    from prefkit.reward import pairwise_accuracy
    from prefkit.reward.finetune import FinetuneConfig, finetune_reward_model
    from prefkit.reward.scorer import SequenceScorer, load_scorer

    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    report: dict[str, object] = {"machine": {"python": platform.python_version(),
                                             "cpus": os.cpu_count(),
                                             "threads": torch.get_num_threads(),
                                             "torch": torch.__version__,
                                             "loadavg_start": os.getloadavg()}}
    train, test = hh_harmless_split(HH)
    print(f"HH harmless-base: {len(train)} train / {len(test)} test pairs; max_length "
          f"{args.max_length}, left truncation (load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs)")

    def test_accuracy(scorer: SequenceScorer):
        s_c = scorer.score(test.prompt, test.chosen, batch_size=64)
        s_r = scorer.score(test.prompt, test.rejected, batch_size=64)
        return pairwise_accuracy(s_c, s_r)

    # -- (a) fine-tune MiniLM, test accuracy --------------------------------------------------
    if not args.skip_a:
        cfg = FinetuneConfig(max_length=args.max_length, batch_size=args.batch_size,
                             learning_rate=args.lr, max_steps=args.steps, warmup=0.1, seed=0,
                             precision=args.precision,
                             bucket_overhead=None if args.no_buckets else args.bucket_overhead)
        out = args.runs / "minilm_hh"
        t0 = time.perf_counter()
        res = finetune_reward_model(train, config=cfg, output_dir=out, overwrite=True)
        t_fit = time.perf_counter() - t0
        loop_s = [r for r in res.history if r["kind"] == "train"][-1]["elapsed_s"]
        steps_per_epoch = -(-len(train) // args.batch_size)
        t0 = time.perf_counter()
        acc = test_accuracy(load_scorer(out))
        t_eval = time.perf_counter() - t0
        per_epoch = loop_s / res.step * steps_per_epoch
        print(f"\n(a) MiniLM fine-tuned {res.step} steps x {args.batch_size} pairs "
              f"({res.step * args.batch_size / len(train):.2f} epochs) in {t_fit:.0f} s "
              f"(loop {loop_s:.0f} s; {per_epoch / 60:.1f} min per epoch of {len(train)} "
              f"pairs): test accuracy {fmt(acc)}; scoring the test set {t_eval:.0f} s")
        report["a"] = {**acc.to_dict(), "steps": res.step, "batch_size": args.batch_size,
                       "lr": args.lr, "max_length": args.max_length, "fit_s": t_fit,
                       "loop_s": loop_s, "s_per_epoch": per_epoch, "eval_s": t_eval}

    # -- (b) prefkit vs TRL, same batches ------------------------------------------------------
    if not args.skip_b:
        report["b"] = compare_speed(args, train)
    if args.accuracy_steps:
        report["c"] = compare_accuracy(args, train, test, test_accuracy)

    report["machine"]["loadavg_end"] = os.getloadavg()  # type: ignore[index]
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=float) + "\n")
        print(f"\nwrote {args.json}")


# -- (b) and (c): prefkit and TRL on the same batches ----------------------------------------
def _same_batches(train, n: int, seed: int):
    """The first ``n`` pairs of concatenated seeded permutations of ``train`` (one per
    epoch): the one fixed order both trainers read, prefkit with ``shuffle=False`` and TRL
    through a sequential sampler."""
    rng = np.random.default_rng(seed)
    reps = -(-n // len(train))
    order = np.concatenate([rng.permutation(len(train)) for _ in range(reps)])[:n]
    return train.select(order)


def _run_prefkit(args, pairs, *, steps, bs, max_length, warmup, out):  # type: ignore[no-untyped-def]
    from prefkit.reward.finetune import FinetuneConfig, finetune_reward_model

    cfg = FinetuneConfig(max_length=max_length, batch_size=bs, learning_rate=args.lr,
                         max_steps=steps,
                         warmup=warmup, shuffle=False, seed=0, precision=args.precision,
                         log_every=1, attention=args.attention,
                         bucket_overhead=None if args.no_buckets else args.bucket_overhead)
    res = finetune_reward_model(pairs, config=cfg, output_dir=out, overwrite=True,
                                progress=False)
    train_rows = [r for r in res.history if r["kind"] == "train"]  # one per step
    loop_s = train_rows[-1]["elapsed_s"]  # loop start -> after the last optimizer step
    w = max(1, steps // 20)  # mean losses over the windows TRL logs (logging_steps = w)
    losses = [(k, float(np.mean([r["loss"] for r in train_rows[k - w: k]])))
              for k in range(w, steps + 1, w)]
    return {"loop_s": loop_s, "pairs_per_s": steps * bs / loop_s,  # steps * bs == len(pairs)
            "losses": losses}


def _run_trl(args, ids_c, ids_r, path, *, steps, bs, warmup_steps, gc, keep=False):  # type: ignore[no-untyped-def]
    """TRL's RewardTrainer on pre-tokenized pairs in the given order; the loop is timed by a
    callback from ``on_train_begin`` to the last ``on_step_end`` (as prefkit's loop)."""
    import torch
    from datasets import Dataset
    from torch.utils.data import SequentialSampler
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer,
                              PrinterCallback, TrainerCallback)
    from trl import RewardConfig, RewardTrainer

    class SequentialRewardTrainer(RewardTrainer):
        def _get_train_sampler(self, train_dataset=None):  # the given order, as prefkit
            return SequentialSampler(train_dataset if train_dataset is not None
                                     else self.train_dataset)

    class LoopTimer(TrainerCallback):
        def on_train_begin(self, *a, **k):  # type: ignore[no-untyped-def]
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):  # type: ignore[no-untyped-def]
            self.t1 = time.perf_counter()

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        extra = {"attn_implementation": args.trl_attention} if args.trl_attention else {}
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, local_files_only=True, dtype=torch.float32, **extra)
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    ds = Dataset.from_dict({"chosen_ids": ids_c, "rejected_ids": ids_r})
    timer = LoopTimer()
    with tempfile.TemporaryDirectory() as tmp:
        targs = RewardConfig(output_dir=tmp, per_device_train_batch_size=bs,
                             gradient_accumulation_steps=1, learning_rate=args.lr,
                             max_steps=steps, lr_scheduler_type="linear",
                             warmup_steps=warmup_steps, weight_decay=0.0, max_grad_norm=1.0,
                             max_length=None, disable_dropout=True, save_strategy="no",
                             report_to=[], bf16=args.precision == "bf16",
                             gradient_checkpointing=gc, logging_steps=max(1, steps // 20),
                             use_cpu=True, seed=0, dataloader_num_workers=0,
                             disable_tqdm=True)
        trainer = SequentialRewardTrainer(model=model, args=targs, train_dataset=ds,
                                          processing_class=tok, callbacks=[timer])
        trainer.remove_callback(PrinterCallback)  # no log dict printed per logging step
        out = trainer.train()
    loop_s = timer.t1 - timer.t0
    res = {"loop_s": loop_s, "pairs_per_s": steps * bs / loop_s,
           "train_runtime_s": float(out.metrics["train_runtime"]), "gradient_checkpointing": gc,
           "attention": model.config._attn_implementation, "threads": torch.get_num_threads(),
           "losses": [(r["step"], r["loss"]) for r in trainer.state.log_history if "loss" in r]}
    return (res, model.eval()) if keep else res


def _trl_accuracy(model, scorer, test):  # type: ignore[no-untyped-def]
    """Test accuracy of a TRL-trained classifier on prefkit's (left-truncated) token ids."""
    import torch

    from prefkit.reward import pairwise_accuracy
    from prefkit.reward.backbones import response_texts

    @torch.no_grad()
    def scores(texts: list[str]) -> np.ndarray:
        ids = scorer.tokenize(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.zeros(len(ids))
        for s in range(0, len(ids), 64):
            idx = order[s: s + 64]
            input_ids, mask = scorer.collate([ids[i] for i in idx])
            out[idx] = model(input_ids=input_ids, attention_mask=mask).logits[:, 0].double().numpy()
        return out

    return pairwise_accuracy(scores(response_texts(test.prompt, test.chosen)),
                             scores(response_texts(test.prompt, test.rejected)))


def compare_speed(args, train) -> dict[str, object]:
    """(b) interleaved, repeated: each repeat runs prefkit, TRL (defaults) and TRL without
    gradient checkpointing, each from a fresh seeded model, the order rotated per repeat."""
    import gc as pygc

    import torch

    from prefkit.reward.scorer import SequenceScorer

    bs, steps = args.compare_batch_size, args.compare_steps
    pairs = _same_batches(train, bs * steps, seed=0)
    scorer = SequenceScorer.from_backbone(max_length=args.max_length)
    ids_c, ids_r = scorer.tokenize(pairs.texts("chosen")), scorer.tokenize(pairs.texts("rejected"))
    path = scorer.source["path"]
    runs = {
        "prefkit": lambda: _run_prefkit(args, pairs, steps=steps, bs=bs,
                                        max_length=args.max_length, warmup=0.0,
                                        out=args.runs / "compare_prefkit"),
        "trl": lambda: _run_trl(args, ids_c, ids_r, path, steps=steps, bs=bs, warmup_steps=0,
                                gc=True),
        "trl_no_gc": lambda: _run_trl(args, ids_c, ids_r, path, steps=steps, bs=bs,
                                      warmup_steps=0, gc=False),
    }
    names = list(runs)
    print(f"\n(b) speed: {steps} steps x {bs} pairs, max_length {args.max_length}, "
          f"{args.precision}, same batches, {torch.get_num_threads()} threads; "
          f"{args.repeats} interleaved repeats (pairs/s over each trainer's loop); prefkit: "
          f"attention {args.attention!r}, length buckets "
          f"{'off' if args.no_buckets else args.bucket_overhead}; TRL: attention "
          f"{args.trl_attention or 'transformers default'}")
    per: dict[str, list[dict[str, object]]] = {k: [] for k in names}
    for rep in range(args.repeats):
        for name in names[rep % 3:] + names[: rep % 3]:  # rotated: no trainer always first
            pygc.collect()
            load = os.getloadavg()[0]
            per[name].append({**runs[name](), "load": load})
        ratio = {k: per["prefkit"][-1]["pairs_per_s"] / per[k][-1]["pairs_per_s"]  # type: ignore[operator]
                 for k in ("trl", "trl_no_gc")}
        print(f"    repeat {rep + 1}: prefkit {per['prefkit'][-1]['pairs_per_s']:.2f}, "
              f"TRL {per['trl'][-1]['pairs_per_s']:.2f}, TRL no-ckpt "
              f"{per['trl_no_gc'][-1]['pairs_per_s']:.2f} pairs/s -> prefkit/TRL "
              f"{ratio['trl']:.2f}x, prefkit/TRL-no-ckpt {ratio['trl_no_gc']:.2f}x "
              f"(load {os.getloadavg()[0]:.1f})")
    med = {k: float(np.median([r["pairs_per_s"] for r in v])) for k, v in per.items()}
    best = {k: float(max(r["pairs_per_s"] for r in v)) for k, v in per.items()}
    ratios = {k: [p["pairs_per_s"] / t["pairs_per_s"] for p, t in zip(per["prefkit"], per[k])]
              for k in ("trl", "trl_no_gc")}
    import trl

    print(f"    median pairs/s: prefkit {med['prefkit']:.2f}; TRL {trl.__version__} "
          f"RewardTrainer (bf16={args.precision == 'bf16'}, gradient checkpointing on, its "
          f"default) {med['trl']:.2f}; with checkpointing off {med['trl_no_gc']:.2f}")
    for k, label, note in (("trl", "TRL defaults", " (issue goal >= 1.2x)"),
                           ("trl_no_gc", "TRL, no checkpointing", "")):
        print(f"    prefkit / {label}: median of per-repeat ratios "
              f"{np.median(ratios[k]):.2f}x, best-of {best['prefkit'] / best[k]:.2f}x{note}")
    first = {k: v[0]["losses"][-1] for k, v in per.items()}
    print(f"    last logged training loss of repeat 1 (step, loss): {first}; TRL's attention: "
          f"{per['trl'][0]['attention']}, threads {per['trl'][0]['threads']}")
    return {"batch_size": bs, "steps": steps, "lr": args.lr, "max_length": args.max_length,
            "precision": args.precision, "repeats": per, "median_pairs_per_s": med,
            "best_pairs_per_s": best, "ratios": ratios,
            "median_ratio": {k: float(np.median(v)) for k, v in ratios.items()}}


def compare_accuracy(args, train, test, test_accuracy) -> dict[str, object]:
    """(c) both trainers, the same longer run on the same batches: loss curves, test
    accuracy, loop time (run one after the other: the times are indicative only)."""
    from prefkit.reward.scorer import SequenceScorer, load_scorer

    bs, steps, L = args.batch_size, args.accuracy_steps, args.accuracy_max_length
    pairs = _same_batches(train, bs * steps, seed=1)
    scorer = SequenceScorer.from_backbone(max_length=L)
    ids_c, ids_r = scorer.tokenize(pairs.texts("chosen")), scorer.tokenize(pairs.texts("rejected"))
    warm = round(0.1 * steps)
    print(f"\n(c) accuracy: {steps} steps x {bs} pairs ({steps * bs / len(train):.2f} epochs), "
          f"max_length {L}, lr {args.lr}, {warm} warmup steps then linear decay, "
          f"{args.precision}, same batches for both")
    out = args.runs / "accuracy_prefkit"
    pk = _run_prefkit(args, pairs, steps=steps, bs=bs, max_length=L, warmup=0.1, out=out)
    pk.update(test_accuracy(load_scorer(out)).to_dict())
    tr, model = _run_trl(args, ids_c, ids_r, scorer.source["path"], steps=steps, bs=bs,
                         warmup_steps=warm, gc=not args.accuracy_trl_no_gc, keep=True)
    tr.update(_trl_accuracy(model, scorer, test).to_dict())
    for name, r in (("prefkit", pk), ("TRL", tr)):
        curve = " ".join(f"{loss:.3f}" for _, loss in r["losses"])  # window means
        lo, hi = r["interval"]
        print(f"    {name:7s} loop {r['loop_s']:.0f} s ({r['pairs_per_s']:.2f} pairs/s); test "
              f"accuracy {r['accuracy']:.3f} [{lo:.3f}, {hi:.3f}] (n={r['n']})\n"
              f"            mean training loss per {max(1, steps // 20)} steps: {curve}")
    return {"steps": steps, "batch_size": bs, "max_length": L, "prefkit": pk, "trl": tr,
            "trl_gradient_checkpointing": not args.accuracy_trl_no_gc}


if __name__ == "__main__":
    sys.exit(main())
