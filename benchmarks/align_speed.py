"""DPO training speed and memory: prefkit's ``align`` against TRL 1.16's ``DPOTrainer``,
side by side in one run on the same model, data, batches, optimizer and steps.

Contestants, each run in a FRESH subprocess (``_align_speed_worker.py``), interleaved and
repeated (prefkit, TRL, TRL-precompute, prefkit, ...) so background load hits all alike:

* ``prefkit`` -- :func:`prefkit.align.trainer.align` with ``loss="dpo"``: reference
  log-probs computed once before the loop (its default), the LM head applied only at the
  response positions, in chunks;
* ``trl`` -- ``DPOTrainer`` with its defaults: a second (reference) model run every step;
* ``trl_precompute`` -- ``DPOTrainer`` with ``precompute_ref_log_probs=True`` (the fair peer).

**The same run for all.** One randomly initialised ``LlamaForCausalLM``
(:func:`prefkit.align.tiny.tiny_llama`, seed 0; preset ``tiny``: hidden 256, 4 layers, 4
heads, MLP 768, 19.8M parameters with the 32k vocabulary) saved once under
``benchmarks/_work/align_speed/model_*`` with the character-level tokenizer
(:func:`prefkit.align.tiny.char_tokenizer`, 103 ids); the model's vocabulary is larger
(``--vocab-size``, default 32,000): the tokenizer only produces the first 103 ids, but the LM
head is full size, as in a real model. Every child loads that folder in float32. The pairs:
the first ``steps x batch x accumulation`` pairs of Anthropic HH-RLHF harmless-base (test
file, ``../shared/data/reward/``) whose prompt has at most ``max_length / 2`` characters,
written in file order to ``_work/align_speed/pairs_*.jsonl`` as ``prompt/chosen/rejected``
text (the prompt is the shared start of the two transcripts). Both trainers tokenize that
text themselves; the TRL child checks that its token ids, truncated as its collator does,
equal prefkit's (``token_ids_identical``). Same batch size, gradient accumulation and steps
(``tiny``: 4 pairs x 2 accumulation x 8 steps = 64 pairs, max_length 256), learning rate
(``--lr``, default 1e-4, decaying linearly to 0, no warmup), AdamW (betas 0.9/0.999,
eps 1e-8, no weight decay), gradient clipping at 1.0, beta 0.1, fp32 on CPU (``--precision
bf16``: autocast for both), dropout off, no shuffling (TRL:
``train_sampling_strategy="sequential"``; prefkit: ``shuffle=False``), no evaluation, no
checkpoint inside the loop, a log line every step in both (their per-step losses are the
loss curves compared). ``torch.set_num_threads(--threads)`` in every child.

TRL 1.16 ``DPOConfig`` is left at its defaults except: ``per_device_train_batch_size``,
``gradient_accumulation_steps``, ``learning_rate``, ``max_steps``, ``max_length``, ``beta``
(= its default 0.1), ``bf16=False`` (its default is True), ``gradient_checkpointing=False``
(its default is True; prefkit's is False; ``--gradient-checkpointing`` turns it on in both),
``train_sampling_strategy="sequential"``, ``logging_steps=1``, ``save_strategy="no"``,
``report_to="none"``, ``disable_tqdm=True``, ``use_cpu`` and ``precompute_ref_log_probs``.
Its optimizer stays ``adamw_torch_fused`` (transformers' default on torch >= 2.8): the same
AdamW update as prefkit's ``torch.optim.AdamW`` (on CPU its per-tensor loop), fused.
prefkit: ``AlignConfig`` defaults except the same shared settings, ``log_every=1``,
``checkpoint_every=0`` and ``eval_batch_size`` = the batch size (TRL's reference pass batch).

**Measured.** Training throughput = pairs / the training loop's own time, from just before
the first step to the end of the last optimizer step (prefkit: the last ``elapsed_s`` of
``metrics.jsonl``; TRL: a callback's ``on_train_begin`` to the last ``on_step_end``); the
"steady" figure leaves out the first step. End to end = pairs / the whole trainer call
(prefkit: ``align()``, which tokenizes, precomputes and caches the reference, trains, writes a
checkpoint and the model; TRL: ``DPOTrainer(...)`` (tokenizing, precomputing) + ``train()`` +
``save_model()``). Peak memory (CPU): the peak RSS of the trainer call above the RSS after
imports, model load and data read (``VmHWM`` after resetting it; exact), and the peak inside
the training loop only (5 ms RSS sampling); absolute peak RSS too. CUDA: peak allocated above
the model's own allocation. Loss curves: max |prefkit - TRL| over the per-step losses.

    .venv/bin/python benchmarks/align_speed.py                  # ~6.5 min on a quiet 2-core CPU
    .venv/bin/python benchmarks/align_speed.py --vocab-size 128   # a small vocabulary, ~2 min
    .venv/bin/python benchmarks/align_speed.py --repeats 1 --steps 3 --trainers prefkit trl_precompute   # smoke, ~40 s
    .venv/bin/python benchmarks/align_speed.py --size large --device cuda   # one GPU
    bash benchmarks/gpu_align.sh     # the whole GPU comparison (large at 2 batch settings, 1b)

On a 2-core machine shared with other jobs (load average 4-6) the first command took 28 min
and single runs slowed by up to 5x: compare only figures from the same run (the ratios),
and check the load average it prints.

Prints a table and the ratios; writes ``benchmarks/_work/align_speed.json`` (``--json``);
each child's output goes to ``_work/align_speed/logs_*/``. ``--size large`` (hidden 1024, 12
layers, 217M parameters, max_length 1024, 8 pairs x 2 accumulation, 30 steps, bf16 autocast
on CUDA) is for a GPU; on CUDA, TRL scores only the response positions with its Triton kernel.
``--size 1b`` (Llama-3.2-1B's shape, 16 pairs x 1, 10 steps) too. Every run also reports
tokens/s (both rows of every pair, no padding) and, on CUDA, model-FLOPs utilisation: 6 x
non-embedding parameters x tokens/s / ``--peak-tflops`` (default 989, the H100/H200 SXM
datasheet's dense bf16). Each run also records its **layout** (``layout``: prefkit's packing
as it resolved, the attention implementation, and the SDPA kernel its calls got; printed
under the run's line; ``--attention flex`` gives the prefkit contestants FlexAttention:
packed and prefix rows through a BlockMask, see :mod:`prefkit.align.packing`), and the JSON
is rewritten after every run (``"complete": false``
until the last), so a run cut short by a time limit keeps the runs before it. On CUDA the
model's random weights are drawn on the GPU; ``--scratch`` puts the model and run folders
elsewhere (gpu_align.sh: ``/dev/shm``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WORK = Path(__file__).resolve().parent / "_work"
HERE = WORK / "align_speed"
HH = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "reward" / \
    "hh_rlhf_harmless_base_test.jsonl.gz"
WORKER = Path(__file__).resolve().parent / "_align_speed_worker.py"
TRAINERS = ("prefkit", "trl", "trl_precompute", "prefkit_none", "prefkit_pack", "prefkit_prefix")

#: Model and run presets. ``tiny``: measurable on 2 CPU cores in minutes; ``large``: for a GPU.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(model=dict(hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                            num_attention_heads=4, num_key_value_heads=4),
                 max_length=256, batch_size=4, grad_accum=2, steps=8, precision="fp32"),
    # the 1b preset's head layout (GQA 4 query heads per key/value head) at tiny's cost: what
    # gpu_align.sh --dry-run runs for the 1b leg on a CPU
    "tiny_gqa": dict(model=dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                                num_attention_heads=8, num_key_value_heads=2),
                     max_length=256, batch_size=4, grad_accum=2, steps=8, precision="fp32"),
    "large": dict(model=dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=12,
                             num_attention_heads=16, num_key_value_heads=16),
                  max_length=1024, batch_size=8, grad_accum=2, steps=30, precision="bf16"),
    # Llama-3.2-1B's shape (GQA 32/8 heads) with the 32k vocabulary: 1.10B parameters, 0.97B
    # outside the embeddings; for one GPU (benchmarks/gpu_align.sh)
    "1b": dict(model=dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                          num_attention_heads=32, num_key_value_heads=8),
               max_length=1024, batch_size=16, grad_accum=1, steps=10, precision="bf16"),
}
#: the chip's dense bf16 peak for MFU: the H100/H200 SXM datasheet's 989 TFLOP/s
#: (``--peak-tflops``; a matrix product measured 770-800 on the H200 lent here)
PEAK_TFLOPS = 989.0
#: issue 15's goal: prefkit's pairs/s over TRL precompute's, at no more peak memory
GOAL_SPEED = 1.5


# -- inputs: one model folder, one pairs file ------------------------------------------------
def make_model(size: str, vocab_size: int, max_length: int, where: Path = HERE,
               device: str = "cpu") -> Path:
    """The randomly initialised model (seed 0) + tokenizer folder every child loads, under
    ``where``. On CUDA its weights are drawn there (the CPU draws the 1b preset's 1.1B
    normals in ~40 s, one thread; a GPU in well under 1 s) and saved as float32."""
    import torch

    from prefkit.align.tiny import char_tokenizer, tiny_llama

    cfg = dict(SIZES[size]["model"], max_position_embeddings=max_length)
    folder = where / f"model_{size}_v{vocab_size}_L{max_length}"
    stamp = folder / "bench_spec.json"
    want = json.dumps({"vocab_size": vocab_size, "seed": 0, **cfg}, sort_keys=True)
    if stamp.exists() and stamp.read_text() == want:
        return folder
    tok = char_tokenizer()
    t0 = time.perf_counter()
    try:
        with torch.device(device):
            model = tiny_llama(max(vocab_size, len(tok)), seed=0, **cfg)
    except Exception as e:  # noqa: BLE001 -- the CPU draws it too, only slower
        print(f"(drawing the model's weights on {device} failed: {e!r}; on the CPU)")
        device, model = "cpu", tiny_llama(max(vocab_size, len(tok)), seed=0, **cfg)
    t1 = time.perf_counter()
    with torch.no_grad():
        model.save_pretrained(folder)
    tok.save_pretrained(folder)
    stamp.write_text(want)
    del model
    if device != "cpu":
        torch.cuda.empty_cache()
    print(f"model {folder.name}: weights drawn on {device} in {t1 - t0:.1f} s, saved in "
          f"{time.perf_counter() - t1:.1f} s", flush=True)
    return folder


def make_pairs(n: int, max_length: int) -> Path:
    """The first ``n`` HH harmless-base pairs (file order) whose prompt has at most
    ``max_length // 2`` characters, as ``prompt/chosen/rejected`` text."""
    from prefkit.align.data import read_alignment_data

    path = HERE / f"pairs_n{n}_L{max_length}.jsonl"
    if path.exists():
        return path
    data = read_alignment_data(HH)
    rows = [{"prompt": p, "chosen": r[0], "rejected": r[1]}
            for p, r in zip(data.prompts, data.responses) if len(p) <= max_length // 2]
    if len(rows) < n:
        raise SystemExit(f"only {len(rows)} HH pairs have a prompt of <= {max_length // 2} "
                         f"characters; ask for fewer steps x batch x accumulation than {n}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:n]))
    return path


def flop_counts(model_dir: Path, pairs: Path, max_length: int) -> dict[str, int]:
    """The model's parameters outside its input and output embeddings, and the tokens the
    run trains on: every non-padding position of every pair's two rows (prompt + chosen,
    prompt + rejected, cut at ``max_length`` as both trainers cut them) -- what a trainer that
    pads, packs or shares prompts must all process in the standard formulation."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from prefkit.align.data import read_alignment_data, tokenize_alignment

    with torch.device("meta"):  # shapes only, no memory
        m = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    emb = {id(m.get_input_embeddings().weight), id(m.get_output_embeddings().weight)}
    params = list(m.parameters())
    toks = tokenize_alignment(read_alignment_data(pairs), AutoTokenizer.from_pretrained(
        model_dir), max_length=max_length)
    return {"params": sum(p.numel() for p in params),
            "non_embedding_params": sum(p.numel() for p in params if id(p) not in emb),
            "tokens": sum(len(e.prompt_ids) + len(r) for e in toks.examples for r in e.responses)}


def add_flops(r: dict[str, Any], counts: dict[str, int], peak_tflops: float) -> None:
    """``tokens_per_s`` (the training loop) and ``mfu``: model FLOPs utilisation, 6 x
    non-embedding parameters x tokens/s over the chip's peak (the policy's forward and
    backward; attention scores, the LM head and a live reference's forward not counted)."""
    r["tokens_per_s"] = counts["tokens"] / r["loop_s"]
    r["mfu"] = 6 * counts["non_embedding_params"] * r["tokens_per_s"] / (peak_tflops * 1e12)


# -- running the children ------------------------------------------------------------------------
def run_child(trainer: str, spec_path: Path, log_dir: Path, tag: str) -> dict[str, Any]:
    out = log_dir / f"{tag}_{trainer}.json"
    out.unlink(missing_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(json.loads(spec_path.read_text())["threads"]))
    with open(log_dir / f"{tag}_{trainer}.log", "w") as log:
        p = subprocess.run([sys.executable, str(WORKER), trainer, str(spec_path), str(out)],
                           stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
    if p.returncode != 0 or not out.exists():
        tail = (log_dir / f"{tag}_{trainer}.log").read_text().strip().splitlines()[-3:]
        return {"trainer": trainer, "error": tail}
    return json.loads(out.read_text())


def describe_layout(r: dict[str, Any]) -> str:
    """One line: the packing the run used, the attention implementation and the SDPA
    kernels its first calls got (``_align_speed_worker.SdpaKernels``)."""
    lay = r.get("layout") or {}
    packing = lay.get("packing", "?")
    asked = lay.get("packing_asked")
    words = {"none": "padded rows", "pack": "packed sequences", "prefix": "prompt trees"}
    out = f"{words.get(packing, packing)} (packing {packing}"
    out += f", asked {asked})" if asked and asked != packing else ")"
    out += f", attention {lay.get('attn_implementation')}"
    kernels = lay.get("sdpa_kernels") or {}
    if kernels:
        out += "; SDPA: " + "; ".join(f"{k} x{n}" for k, n in sorted(
            kernels.items(), key=lambda kv: -kv[1]))
    return out


def mib(x: float) -> str:
    return f"{x / 2**20:9.1f}"


def peak(r: dict[str, Any], loop: bool = False) -> float:
    """Peak memory increase of a run: CUDA allocations on a GPU, else RSS (the whole
    trainer call, exact; ``loop``: inside the training loop, sampled)."""
    m = r["memory"]
    if "cuda_peak_increase" in m:
        return m["cuda_peak_increase"]
    return m["loop_peak_increase_sampled"] if loop else m["peak_increase"]


def summarise(runs: list[dict[str, Any]], trainers: list[str]) -> dict[str, Any]:
    """Median ratios (paired within a repeat) and loss-curve agreement."""
    by: dict[str, list[dict[str, Any]]] = {t: [r for r in runs if r["trainer"] == t
                                               and "error" not in r] for t in trainers}
    out: dict[str, Any] = {}
    if "prefkit" not in trainers or not by["prefkit"]:
        return out
    ref_curve = by["prefkit"][0]["loss"]
    out["prefkit_repeat_max_loss_diff"] = max(
        (max(abs(a - b) for a, b in zip(r["loss"], ref_curve)) for r in by["prefkit"]), default=0)
    for peer in (t for t in trainers if t != "prefkit" and by[t]):
        n = min(len(by["prefkit"]), len(by[peer]))
        pk, pe = by["prefkit"][:n], by[peer][:n]
        def ratios(key: str) -> list[float]:
            return [a[key] / b[key] for a, b in zip(pk, pe)]

        mem = [peak(a) / peak(b) for a, b in zip(pk, pe)]
        loop_mem = [peak(a, loop=True) / peak(b, loop=True) for a, b in zip(pk, pe)]
        diffs = [abs(a - b) for a, b in zip(ref_curve, pe[0]["loss"])]
        gn = [abs(a - b) / max(abs(b), 1e-12) for a, b in zip(pk[0]["grad_norm"], pe[0]["grad_norm"])]
        # prefkit logs the LR after the step's scheduler update (the next step's), TRL the
        # LR the step used: prefkit's row k is TRL's row k + 1
        lr = [abs(a - b) for a, b in zip(pk[0]["lr"], pe[0]["lr"][1:])]
        out[peer] = {
            "speed_ratios": ratios("pairs_per_s"),
            "speed_ratio_median": statistics.median(ratios("pairs_per_s")),
            "steady_ratio_median": statistics.median(ratios("steady_pairs_per_s")),
            "end_to_end_ratio_median": statistics.median(ratios("end_to_end_pairs_per_s")),
            "peak_memory_ratio_median": statistics.median(mem),
            "loop_peak_memory_ratio_median": statistics.median(loop_mem),
            "loss_max_abs_diff": max(diffs),
            "loss_diff_by_step": diffs,
            "grad_norm_max_rel_diff": max(gn),
            "lr_max_abs_diff": max(lr),
            "steps_compared": len(diffs),
        }
    return out


def leg_pairs(argv: list[str]) -> tuple[int, int]:
    """(pairs, max_length) a run with these arguments trains on: ``gpu_align.sh prepare``
    writes those pairs files for the GPU machine, which has no HH file."""
    args = parser().parse_args(argv)
    preset = SIZES[args.size]
    n = ((args.steps or preset["steps"]) * (args.batch_size or preset["batch_size"])
         * (args.grad_accum or preset["grad_accum"]))
    return n, args.max_length or preset["max_length"]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--trainers", nargs="+", choices=TRAINERS, default=list(TRAINERS[:3]))
    ap.add_argument("--vocab-size", type=int, default=32000)
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps (preset's)")
    ap.add_argument("--batch-size", type=int, default=None, help="pairs per micro-batch")
    ap.add_argument("--grad-accum", type=int, default=None)
    ap.add_argument("--max-length", type=int, default=None, help="prompt + response tokens")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default=None)
    ap.add_argument("--gradient-checkpointing", action="store_true", help="in both")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads per child (default: 2 on CPU, all cores on CUDA)")
    ap.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS,
                    help="the chip's dense bf16 TFLOP/s for MFU (CUDA only)")
    ap.add_argument("--packing", default="auto", choices=("auto", "none", "pack", "prefix"),
                    help="the prefkit contestant's AlignConfig.packing (prefkit_none, "
                         "prefkit_pack, prefkit_prefix: prefkit with that layout, as peers)")
    ap.add_argument("--attention", default=None, choices=("sdpa", "eager", "flex"),
                    help="the prefkit contestants' attention implementation (flex: "
                         "FlexAttention, a BlockMask for packed and prefix rows; it trains on "
                         "CUDA only); TRL's runs keep the model's default (SDPA)")
    ap.add_argument("--json", type=Path, default=WORK / "align_speed.json",
                    help="the report, rewritten as each run ends (a run cut short keeps the "
                         "runs before it)")
    ap.add_argument("--scratch", type=Path, default=HERE,
                    help="where the model folder and the runs' folders go (default: "
                         "_work/align_speed; gpu_align.sh: /dev/shm where it has room)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    preset = SIZES[args.size]
    steps = args.steps or preset["steps"]
    bs = args.batch_size or preset["batch_size"]
    ga = args.grad_accum or preset["grad_accum"]
    max_length = args.max_length or preset["max_length"]
    cuda = args.device.startswith("cuda")
    precision = args.precision or (preset["precision"] if cuda else "fp32")
    threads = args.threads or (os.cpu_count() or 1 if cuda else 2)
    HERE.mkdir(parents=True, exist_ok=True)
    args.scratch.mkdir(parents=True, exist_ok=True)
    model = make_model(args.size, args.vocab_size, max_length, args.scratch,
                       args.device if cuda else "cpu")
    pairs = make_pairs(steps * bs * ga, max_length)
    tag = f"{args.size}_v{args.vocab_size}_{args.device.replace(':', '')}"
    spec = {"model": str(model), "pairs": str(pairs), "steps": steps, "batch_size": bs,
            "grad_accum": ga, "max_length": max_length, "lr": args.lr, "beta": 0.1,
            "precision": precision, "gradient_checkpointing": args.gradient_checkpointing,
            "device": args.device, "threads": threads, "runs": str(args.scratch / f"runs_{tag}"),
            "packing": args.packing, "attention": args.attention}
    spec_path = HERE / f"spec_{tag}.json"
    spec_path.write_text(json.dumps(spec, indent=1))
    logs = HERE / f"logs_{tag}"
    logs.mkdir(exist_ok=True)
    counts = flop_counts(model, pairs, max_length)
    print(f"model: {model.name} ({json.dumps(preset['model'])}, vocab {args.vocab_size}); "
          f"{steps} steps x {bs} pairs x {ga} accumulation = {steps * bs * ga} HH pairs, "
          f"max_length {max_length}, lr {args.lr}, {precision}, {args.device}, prefkit's "
          f"attention {args.attention or 'the model default (sdpa)'}, "
          f"{threads} threads per child; load average {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs")

    runs: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def report(final: bool) -> dict[str, Any]:
        """The JSON report, written after every run: a leg cut short keeps what finished."""
        doc = {"spec": spec, "size": args.size, "vocab_size": args.vocab_size,
               "model_config": preset["model"], "runs": runs,
               "summary": summarise(runs, args.trainers), "flop_counts": counts,
               "peak_tflops": args.peak_tflops, "complete": final,
               "wall_s": time.perf_counter() - t0,
               "machine": {"python": platform.python_version(),
                           "platform": platform.platform(), "cpus": os.cpu_count(),
                           "loadavg_end": os.getloadavg()}}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=float) + "\n")
        tmp.replace(args.json)  # whole or not at all, even when the leg is cut mid-write
        return doc

    for rep in range(args.repeats):
        for trainer in args.trainers:
            r = run_child(trainer, spec_path, logs, f"r{rep}")
            r["repeat"] = rep
            runs.append(r)
            if "error" in r:
                print(f"  {trainer} (repeat {rep + 1}) FAILED: {r['error']}")
                report(False)
                continue
            add_flops(r, counts, args.peak_tflops)
            report(False)
            print(f"  repeat {rep + 1} {trainer:15s} {r['pairs_per_s']:7.2f} pairs/s "
                  f"(steady {r['steady_pairs_per_s']:6.2f}, end to end "
                  f"{r['end_to_end_pairs_per_s']:6.2f})  peak +{peak(r) / 2**20:7.1f} MiB"
                  f"  loop peak +{peak(r, loop=True) / 2**20:7.1f} MiB  "
                  f"{r['tokens_per_s']:8.0f} tokens/s"
                  + (f"  MFU {100 * r['mfu']:5.2f}%" if cuda else "")
                  + f"  loop CPU {r.get('loop_cpu_s', float('nan')):6.1f} s / wall "
                  f"{r['loop_s']:6.1f} s  load {r['loadavg_start'][0]:.2f}", flush=True)
            print(f"      layout: {describe_layout(r)}; call {r['call_s']:.1f} s, process "
                  f"set-up {r['setup_s']:.1f} s", flush=True)
    wall = time.perf_counter() - t0

    ok = [r for r in runs if "error" not in r]
    print(f"\n{'trainer':15s} {'rep':>3s} {'pairs/s':>8s} {'steady':>7s} {'e2e':>7s} "
          f"{'loop s':>7s} {'call s':>7s} {'peak+MiB':>9s} {'loop+MiB':>9s} {'peakMiB':>9s} "
          f"{'tokens/s':>9s} {'MFU%':>6s}")
    for r in ok:
        print(f"{r['trainer']:15s} {r['repeat'] + 1:3d} {r['pairs_per_s']:8.2f} "
              f"{r['steady_pairs_per_s']:7.2f} {r['end_to_end_pairs_per_s']:7.2f} "
              f"{r['loop_s']:7.1f} {r['call_s']:7.1f} {mib(peak(r))} "
              f"{mib(peak(r, loop=True))} {mib(r['memory']['peak_rss'])} "
              f"{r['tokens_per_s']:9.0f} {100 * r['mfu'] if cuda else float('nan'):6.2f}")
    print(f"tokens: {counts['tokens']:,} trained (both rows of every pair, no padding); "
          f"{counts['non_embedding_params']:,} non-embedding parameters of "
          f"{counts['params']:,}; "
          f"MFU = 6 x non-embedding params x tokens/s / {args.peak_tflops:g} TFLOP/s "
          "(dense bf16 peak; CUDA only)")
    summary = summarise(runs, args.trainers)
    if cuda:
        print("(pairs/s: the training loop; steady: without step 1; e2e: the whole trainer call, "
              "reference precompute and saving included; peak+ and loop+: peak CUDA allocation "
              "of the call above the model's own; peakMiB: the process's peak RSS)")
    else:
        print("(pairs/s: the training loop; steady: without step 1; e2e: the whole trainer call, "
              "reference precompute and saving included; peak+: peak RSS of the call above the "
              "RSS after imports + model load, exact; loop+: the same inside the loop, sampled "
              "every 5 ms; peakMiB: the process's peak RSS)")
    for peer, s in summary.items():
        if not isinstance(s, dict):
            continue
        print(f"\nprefkit / {peer}: speed {s['speed_ratio_median']:.2f}x (median of "
              f"{', '.join(f'{x:.2f}' for x in s['speed_ratios'])}; steady "
              f"{s['steady_ratio_median']:.2f}x; end to end {s['end_to_end_ratio_median']:.2f}x), "
              f"peak memory {s['peak_memory_ratio_median']:.2f}x (loop only "
              f"{s['loop_peak_memory_ratio_median']:.2f}x)")
        print(f"  loss curves over {s['steps_compared']} steps: max |diff| = "
              f"{s['loss_max_abs_diff']:.2e}; grad norm max rel diff "
              f"{s['grad_norm_max_rel_diff']:.2e}; lr max diff {s['lr_max_abs_diff']:.1e}")
        if peer == "trl_precompute":  # issue 15's goal, against the fair peer
            speed_ok = s["speed_ratio_median"] >= GOAL_SPEED
            mem_ok = s["peak_memory_ratio_median"] <= 1.0
            print(f"  goal (>= {GOAL_SPEED}x TRL precompute's throughput at no more memory): "
                  f"{'PASS' if speed_ok and mem_ok else 'FAIL'}")
    if "prefkit_repeat_max_loss_diff" in summary:
        print(f"prefkit's own repeats agree to {summary['prefkit_repeat_max_loss_diff']:.1e}")
    ids = {r["trainer"]: r.get("token_ids_identical") for r in ok if r["trainer"] != "prefkit"}
    if ids:
        print(f"TRL's token ids identical to prefkit's: {ids}")
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on "
          f"{os.cpu_count()} CPUs; {wall:.0f} s in all")

    report(True)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
