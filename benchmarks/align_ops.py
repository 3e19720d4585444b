"""Operator counts of one alignment training step: what a step costs the host, not the chip.

On a GPU, a step whose operator count (and so kernel launches), autograd nodes or host
synchronisations grow with the number of prompts or of LM-head chunks stops scaling with the
batch long before the arithmetic does. On a CPU the same overhead is visible in
``torch.profiler``: this script profiles ONE optimizer step of prefkit's trainer
(:func:`prefkit.align.trainer._train_step`, after one unprofiled warm-up step) on the tiny
random Llama and the HH pairs of ``align_speed.py`` (hidden 256, 4 layers; ``--vocab-size``,
default 32,000; max_length 256; DPO with the cached reference) at 8 and at 32 pairs per step
(one micro-batch), for each ``--packing`` mode, and prints per step:

* ``ops``: aten operator calls (every level: what the dispatcher runs);
* ``top``: top-level aten calls (not inside another aten call or an autograd node) --
  on a GPU roughly the launches the Python side issues;
* ``nodes``: autograd nodes evaluated in the backward pass;
* ``syncs``: calls that wait for the device on a GPU (``aten::_local_scalar_dense`` -- ``.item()``,
  ``.tolist()``, ``int(t)`` -- and ``aten::nonzero``);
* ``host_ms``: wall time of the step inside no operator (Python between ops), profiled;
* ``tokens``: the tokens the forward pass runs (rows x columns, padding included);
* ``step_ms`` / ``cpu_ms``: one unprofiled step's wall and process CPU time.

A flat step keeps ``ops``, ``top``, ``nodes`` and ``syncs`` the same at 8 and 32 pairs except for
what the LM head's chunk count adds (``chunks``: 16M logits per chunk by default, so a 32k
vocabulary takes about 512 scored tokens per chunk).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/align_ops.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/align_ops.py --vocab-size 128 --packing none prefix
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SYNC_OPS = ("aten::_local_scalar_dense", "aten::nonzero")


def _covered_us(intervals: list[tuple[float, float]]) -> float:
    """Total length of the union of ``(start, end)`` intervals."""
    total, end = 0.0, -float("inf")
    for s, e in sorted(intervals):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total


def profile_step(st: Any, idx: Any) -> dict[str, Any]:
    """Operator counts and host time of one ``_train_step`` (see the module docstring)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from prefkit.align.trainer import _train_step

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        _train_step(st, idx)
        wall_us = (time.perf_counter() - t0) * 1e6
    events = [e for e in prof.events() if e.device_type.name == "CPU"]
    aten = [e for e in events if e.name.startswith("aten::")]
    nodes = [e for e in events if e.name.startswith("autograd::engine::evaluate_function")]

    def top_level(e: Any) -> bool:
        p = e.cpu_parent
        while p is not None:
            if p.name.startswith(("aten::", "autograd::engine::evaluate_function")):
                return False
            p = p.cpu_parent
        return True

    top = [e for e in aten if top_level(e)]
    busy = _covered_us([(e.time_range.start, e.time_range.end) for e in aten + nodes])
    del torch
    return {"ops": len(aten), "top": len(top), "nodes": len(nodes),
            "syncs": sum(e.name in SYNC_OPS for e in aten),
            "host_ms": max(wall_us - busy, 0.0) / 1e3, "profiled_ms": wall_us / 1e3,
            "by_op": _top_counts(aten), "all_top": _top_counts(top, 10**6),
            "sync_sites": _sync_sites(prof)}


def _sync_sites(prof: Any) -> dict[str, int]:
    """Where the synchronising calls come from: the innermost prefkit / torch frame."""
    out: dict[str, int] = {}
    for e in prof.events():
        if e.name in SYNC_OPS:
            p, site = e.cpu_parent, e.name
            while p is not None:
                if not p.name.startswith("aten::"):
                    site = f"{p.name} > {e.name}"
                    break
                p = p.cpu_parent
            out[site] = out.get(site, 0) + 1
    return out


def _top_counts(aten: list[Any], n: int = 8) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in aten:
        counts[e.name] = counts.get(e.name, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:n])


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(model_dir: Path, pairs_path: Path, *, pairs: int, packing: str, max_length: int,
            chunk_size: int | None) -> dict[str, Any]:
    import dataclasses

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prefkit.align import trainer as tr
    from prefkit.align.data import read_alignment_data, tokenize_alignment

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    data = tokenize_alignment(read_alignment_data(pairs_path), tok, max_length=max_length)
    extra = {"packing": packing} if any(f.name == "packing"
                                        for f in dataclasses.fields(tr.AlignConfig)) else {}
    if packing != "none" and not extra:
        raise SystemExit(f"--packing {packing}: this prefkit has no AlignConfig.packing")
    cfg = tr.AlignConfig(loss="dpo", learning_rate=1e-4, batch_size=pairs, grad_accum=1,
                         max_steps=3, max_length=max_length, shuffle=False, log_every=1,
                         eval_batch_size=pairs, chunk_size=chunk_size, **extra)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st = tr._setup(model, data, cfg, output_dir=Path(tmp) / "run", tokenizer=tok,
                       validation=None, reference_model=None, resume=False, overwrite=True,
                       progress=False, device="cpu")
        idx = torch.arange(pairs)
        tr._train_step(st, idx)  # warm-up: the split check, allocator
        w0, c0 = time.perf_counter(), _cpu_s()
        tr._train_step(st, idx)
        step_ms, cpu_ms = (time.perf_counter() - w0) * 1e3, (_cpu_s() - c0) * 1e3
        got = profile_step(st, idx)
    ex = [data.examples[i] for i in range(pairs)]
    tokens = _forward_tokens(ex, packing, tok.pad_token_id)
    vocab = model.get_output_embeddings().weight.shape[0]
    scored = sum(len(r) for e in ex for r in e.responses)
    chunk = chunk_size or max(1, (1 << 24) // vocab)
    return {"pairs": pairs, "packing": packing, "step_ms": step_ms, "cpu_ms": cpu_ms,
            "tokens": tokens, "scored": scored, "chunks": -(-scored // chunk), **got}


def interleaved(model_dir: Path, pairs_path: Path, *, pairs: int, modes: list[str],
                max_length: int, rounds: int) -> dict[str, list[float]]:
    """Thread CPU seconds of one training step per layout, the layouts' steps interleaved in
    ``rounds`` rounds (same weights, same prompts: each mode trains its own copy), so a
    machine's changing load falls on all alike."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prefkit.align import trainer as tr
    from prefkit.align.data import read_alignment_data, tokenize_alignment

    tok = AutoTokenizer.from_pretrained(model_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    data = tokenize_alignment(read_alignment_data(pairs_path), tok, max_length=max_length)
    states, out = {}, {m: [] for m in modes}
    tmp = tempfile.TemporaryDirectory()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for m in modes:
            cfg = tr.AlignConfig(loss="dpo", learning_rate=1e-4, batch_size=pairs,
                                 max_steps=rounds + 1, max_length=max_length, shuffle=False,
                                 eval_batch_size=pairs, packing=m)
            states[m] = tr._setup(copy.deepcopy(base), data, cfg,
                                  output_dir=Path(tmp.name) / m, tokenizer=tok,
                                  validation=None, reference_model=None, resume=False,
                                  overwrite=True, progress=False, device="cpu")
            tr._train_step(states[m], torch.arange(pairs))  # warm-up
        for _ in range(rounds):
            for m in modes:
                c0 = time.thread_time()
                tr._train_step(states[m], torch.arange(pairs))
                out[m].append(time.thread_time() - c0)
    tmp.cleanup()
    return out


def _forward_tokens(examples: list[Any], packing: str, pad: int) -> int:
    """Rows x columns of the forward pass that the trainer runs for these examples."""
    if packing == "none":
        from prefkit.align.data import collate

        return int(collate(examples, pad).input_ids.numel())
    from prefkit.align.packing import pack_examples

    return int(pack_examples(examples, pad, mode=packing).input_ids.numel())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--packing", nargs="+", default=["none", "pack", "prefix"])
    ap.add_argument("--vocab-size", type=int, default=32000)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--interleave", type=int, default=0, metavar="ROUNDS",
                    help="instead: thread CPU time per step of each --packing layout, their "
                         "steps interleaved for ROUNDS rounds (medians and ratios to the first)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    import align_speed as spd

    spd.HERE.mkdir(parents=True, exist_ok=True)
    model_dir = spd.make_model("tiny", args.vocab_size, args.max_length)
    pairs_path = spd.make_pairs(max(args.pairs), args.max_length)
    print(f"tiny Llama (hidden 256, 4 layers), vocab {args.vocab_size}, HH pairs, max_length "
          f"{args.max_length}, DPO, one micro-batch per step, {args.threads} thread(s); load "
          f"average {os.getloadavg()[0]:.2f}")
    if args.interleave:
        import statistics

        for n in args.pairs:
            got = interleaved(model_dir, pairs_path, pairs=n, modes=args.packing,
                              max_length=args.max_length, rounds=args.interleave)
            first = statistics.median(got[args.packing[0]])
            for m, xs in got.items():
                med = statistics.median(xs)
                print(f"{n:3d} pairs {m:7s} median {med * 1e3:8.1f} ms CPU per step "
                      f"({', '.join(f'{x * 1e3:.0f}' for x in xs)}); {first / med:.2f}x "
                      f"{args.packing[0]}'s speed", flush=True)
            if args.json:
                args.json.write_text(json.dumps({"pairs": n, "cpu_s": got}) + "\n")
        return 0
    print(f"{'packing':8s} {'pairs':>5s} {'tokens':>7s} {'chunks':>6s} {'ops':>6s} {'top':>6s} "
          f"{'nodes':>6s} {'syncs':>5s} {'host_ms':>8s} {'step_ms':>8s} {'cpu_ms':>8s}")
    rows = []
    for packing in args.packing:
        for n in args.pairs:
            r = measure(model_dir, pairs_path, pairs=n, packing=packing,
                        max_length=args.max_length, chunk_size=args.chunk_size)
            rows.append(r)
            print(f"{packing:8s} {n:5d} {r['tokens']:7d} {r['chunks']:6d} {r['ops']:6d} "
                  f"{r['top']:6d} {r['nodes']:6d} {r['syncs']:5d} {r['host_ms']:8.1f} "
                  f"{r['step_ms']:8.1f} {r['cpu_ms']:8.1f}", flush=True)
    for r in rows:
        print(f"  {r['packing']} {r['pairs']}: most called {json.dumps(r['by_op'])}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
