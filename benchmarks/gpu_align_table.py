"""The table at the end of ``gpu_align.sh``: one block per leg from its ``align_speed.py``
JSON (written as each run ends, so a leg cut short shows the runs that finished).

    python benchmarks/gpu_align_table.py OUT_DIR large_8x2 large_32x1 1b_16x1 large_32x1_flex

Per run: the layout it used (prefkit's packing as resolved -- ``prefix`` prompt trees,
``pack`` packed sequences, ``none`` padded rows -- the attention implementation and the SDPA
kernel most of its calls got), pairs/s over the training loop and without its first step
(``steady``: TRL's Triton kernels compile in it), peak memory above the model's own (CUDA
allocations on a GPU), tokens/s (both rows of every pair, no padding), MFU, and prefkit's
ratios to that run. A leg with prefkit alone (large_32x1_flex: ``--attention flex``) has no
ratio; compare its pairs/s with large_32x1's prefkit line. Then prefkit against TRL precompute, the issue's goal (>= 1.5x the
throughput at no more memory).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

GOAL_SPEED, GOAL_MEMORY = 1.5, 1.0
WORDS = {"none": "padded", "pack": "packed", "prefix": "prompt trees"}


def layout(r: dict[str, Any]) -> str:
    lay = r.get("layout") or {}
    kernels = lay.get("sdpa_kernels") or {}
    train = {k: n for k, n in kernels.items() if k.endswith("training")} or kernels
    top = max(train, key=train.get).split(",")[0] if train else "?"  # the training calls'
    top = top.replace("efficient_attention", "efficient").replace("flash_attention", "flash")
    packing = lay.get("packing", "?")
    if not train and lay.get("attn_implementation") == "flex_attention":
        top = "flex"  # FlexAttention calls no SDPA kernel
    return f"{WORDS.get(packing, packing)}, {lay.get('attn_implementation', '?')}:{top}"


def memory(r: dict[str, Any]) -> float:
    m = r["memory"]
    return m.get("cuda_peak_increase", m["peak_increase"])


def block(name: str, rep: dict[str, Any]) -> list[str]:
    spec = rep["spec"]
    runs = rep["runs"]
    done = [r for r in runs if "error" not in r]
    state = "complete" if rep.get("complete") else f"CUT SHORT: {len(runs)} run(s) ended"
    out = [f"{name}: {rep['size']} ({rep['flop_counts']['params'] / 1e6:.0f}M parameters), "
           f"{spec['steps']} steps x {spec['batch_size']} pairs x {spec['grad_accum']} "
           f"accumulation, {spec['precision']}, {spec['device']} -- {state}",
           f"  {'trainer':15s} {'layout: packing, attention:kernel':34s} {'pairs/s':>8s} "
           f"{'steady':>7s} {'peak+MiB':>9s} {'tokens/s':>9s} {'MFU%':>6s}  prefkit/this "
           "(pairs/s, steady, memory)"]
    pk = next((r for r in done if r["trainer"] == "prefkit"), None)
    for r in runs:
        if "error" in r:
            out.append(f"  {r['trainer']:15s} FAILED: {r['error'][-1] if r['error'] else ''}")
            continue
        ratio = ""
        if pk is not None and r is not pk:
            ratio = (f"{pk['pairs_per_s'] / r['pairs_per_s']:.2f}x, "
                     f"{pk['steady_pairs_per_s'] / r['steady_pairs_per_s']:.2f}x, "
                     f"{memory(pk) / memory(r):.2f}x")
        mfu = f"{100 * r['mfu']:6.2f}" if spec["device"].startswith("cuda") else f"{'-':>6s}"
        out.append(f"  {r['trainer']:15s} {layout(r):34s} {r['pairs_per_s']:8.2f} "
                   f"{r['steady_pairs_per_s']:7.2f} {memory(r) / 2**20:9.0f} "
                   f"{r['tokens_per_s']:9.0f} {mfu}  {ratio}")
    pre = next((r for r in done if r["trainer"] == "trl_precompute"), None)
    if pk is not None and pre is not None:
        speed, steady = pk["pairs_per_s"] / pre["pairs_per_s"], \
            pk["steady_pairs_per_s"] / pre["steady_pairs_per_s"]
        mem = memory(pk) / memory(pre)
        ok = speed >= GOAL_SPEED and mem <= GOAL_MEMORY
        out.append(f"  prefkit / TRL precompute: {speed:.2f}x pairs/s (steady {steady:.2f}x), "
                   f"{mem:.2f}x peak memory; goal >= {GOAL_SPEED}x at <= {GOAL_MEMORY}x "
                   f"memory: {'PASS' if ok else 'FAIL'}")
    elif pk is None:
        out.append("  prefkit did not finish: no ratio")
    elif not any(r["trainer"] == "trl_precompute" for r in runs):
        out.append("  prefkit alone in this leg (no TRL run): no ratio")
    else:
        out.append("  TRL precompute did not finish: no ratio to it")
    return out


def main(argv: list[str]) -> int:
    out_dir, legs = Path(argv[0]), argv[1:]
    peak = None
    lines: list[str] = []
    for name in legs:
        f = out_dir / f"{name}.json"
        if not f.exists():
            lines += [f"{name}: no result (see gpu_align.log)", ""]
            continue
        rep = json.loads(f.read_text())
        peak = rep["peak_tflops"]
        lines += block(name, rep) + [""]
    if peak:
        lines.append(f"MFU: 6 x non-embedding parameters x tokens/s over {peak:g} TFLOP/s "
                     "(dense bf16 peak; attention and the LM head not counted); tokens: both "
                     "rows of every pair, no padding; peak+: CUDA allocations above the model's "
                     "own (CPU: RSS); steady: without the first step")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
