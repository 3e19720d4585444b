#!/usr/bin/env bash
# The whole GPU comparison of alignment speed (issue 15) in one call on one GPU: prefkit's
# align vs TRL 1.16 DPOTrainer (its defaults: live reference) vs TRL with
# precompute_ref_log_probs, one fresh process per run (benchmarks/align_speed.py), on
#   1. --size large (random Llama, 217M parameters, bf16): 8 pairs x 2 accumulation, 30 steps
#   2. --size large: 32 pairs x 1, 10 steps
#   3. --size 1b (Llama-3.2-1B's shape, 1.10B parameters): 16 pairs x 1, 10 steps
# reporting pairs/s, peak CUDA memory, tokens/s and MFU (6 x non-embedding params x tokens/s
# over 989 TFLOP/s, the H200's datasheet dense bf16; --peak-tflops changes it). Budget on one
# H200: under 8 minutes (each leg is also cut by `timeout`).
#
#   bash benchmarks/gpu_align.sh prepare     # HERE, once: wheels + HH pairs into .gpu/
#   bash benchmarks/gpu_align.sh             # THERE: device run, carry [".gpu"], timeout_s 590
#   PYTHON=.venv/bin/python bash benchmarks/gpu_align.sh --dry-run   # here: the same legs,
#                                            # CPU, tiny model, 2 steps (catches typos)
#
# The GPU machine reaches no registry and its image has no TRL or `datasets` (Python 3.12,
# torch 2.11, transformers 5.17, accelerate 1.15): `prepare` downloads their wheels for it,
# and writes the HH pairs files the legs read (../shared/data does not travel). Results:
# $OUT (the device tool's folder; here benchmarks/_work/gpu_align): gpu_align.log, one JSON
# per leg (align_speed.py's report), summary.txt, and the children's logs (logs.tgz).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
GPU=$ROOT/.gpu
PY=${PYTHON:-python3}
OUT=${OUT:-$ROOT/benchmarks/_work/gpu_align}
mkdir -p "$OUT"

if [[ "${1:-}" == prepare ]]; then
    set -e
    mkdir -p "$GPU/wheels" "$GPU/pairs"
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    # pure-Python wheels; their other needs (pyarrow, pandas, xxhash, fsspec, requests, tqdm,
    # huggingface-hub, accelerate, transformers) are in the GPU image already
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$GPU/wheels" \
        trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
    GPU="$GPU" "$PY" - <<'EOF'
import os, shutil, sys
sys.path.insert(0, "benchmarks")
import align_speed as a  # noqa: E402
for n in (30 * 8 * 2, 10 * 32 * 1, 10 * 16 * 1):  # the legs' steps x pairs x accumulation
    shutil.copy(a.make_pairs(n, 1024), os.path.join(os.environ["GPU"], "pairs"))
EOF
    ls -l "$GPU"/wheels "$GPU"/pairs
    du -sh "$GPU"
    exit 0
fi

DEVICE=cuda
DRY=()
if [[ "${1:-}" == --dry-run ]]; then  # every leg, on the CPU, with a tiny model
    DEVICE=cpu
    DRY=(--size tiny --vocab-size 128 --steps 2 --max-length 128 --threads 1)
fi

# -- the environment: carried wheels, prefkit from this tree, the HH pairs --------------------
if compgen -G "$GPU/wheels/*.whl" >/dev/null && [[ $DEVICE == cuda ]]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$GPU"/wheels/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
mkdir -p benchmarks/_work/align_speed
if compgen -G "$GPU/pairs/*.jsonl" >/dev/null; then
    cp -n "$GPU"/pairs/*.jsonl benchmarks/_work/align_speed/
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

{
    date -u
    [[ $DEVICE == cuda ]] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$PY" - <<'EOF'
import importlib, platform
v = {"python": platform.python_version()}
for m in ("torch", "transformers", "trl", "accelerate", "datasets", "peft"):
    try:
        v[m] = importlib.import_module(m).__version__
    except Exception as e:  # noqa: BLE001
        v[m] = f"MISSING ({e.__class__.__name__}: {e})"
print(v)
EOF
    if [[ $DEVICE == cpu ]]; then  # the 1b preset is too big for a CPU: check its shape only
        "$PY" - <<'EOF'
import sys
sys.path.insert(0, "benchmarks")
import torch, transformers
import align_speed as a
cfg = transformers.LlamaConfig(vocab_size=32000, tie_word_embeddings=False,
                               **a.SIZES["1b"]["model"])
with torch.device("meta"):
    m = transformers.LlamaForCausalLM(cfg)
n = sum(p.numel() for p in m.parameters())
emb = m.get_input_embeddings().weight.numel() + m.get_output_embeddings().weight.numel()
print(f"1b preset: {n:,} parameters, {n - emb:,} outside the embeddings")
EOF
    fi

    # -- the three legs: one repeat each, results written as each ends --------------------------
    leg() {  # name, seconds, align_speed.py arguments
        local name=$1 limit=$2
        shift 2
        echo "== $name ($(date -u +%T), at most ${limit}s): $*"
        local t0=$SECONDS
        timeout "$limit" "$PY" benchmarks/align_speed.py --device "$DEVICE" --repeats 1 "$@" \
            "${DRY[@]}" --json "$OUT/$name.json"
        echo "== $name: exit $?, $((SECONDS - t0)) s"
    }
    leg large_8x2 180 --size large
    leg large_32x1 150 --size large --batch-size 32 --grad-accum 1 --steps 10
    leg 1b_16x1 220 --size 1b

    # -- one table of the three --------------------------------------------------------------------
    "$PY" - "$OUT" <<'EOF' | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
peak = None
print(f"{'leg':11s} {'trainer':15s} {'pairs/s':>8s} {'peak+MiB':>9s} {'tokens/s':>9s} "
      f"{'MFU%':>6s}  prefkit/this (speed, memory)")
for leg in ("large_8x2", "large_32x1", "1b_16x1"):
    f = out / f"{leg}.json"
    if not f.exists():
        print(f"{leg:11s} (no result: see gpu_align.log)")
        continue
    rep = json.loads(f.read_text())
    peak = rep["peak_tflops"]
    for r in rep["runs"]:
        if "error" in r:
            print(f"{leg:11s} {r['trainer']:15s} FAILED: {r['error'][-1] if r['error'] else ''}")
            continue
        m = r["memory"]
        mem = m.get("cuda_peak_increase", m["peak_increase"]) / 2**20
        s = rep["summary"].get(r["trainer"], {})
        ratio = (f"{s['speed_ratio_median']:.2f}x, {s['peak_memory_ratio_median']:.2f}x"
                 if isinstance(s, dict) and s else "")
        print(f"{leg:11s} {r['trainer']:15s} {r['pairs_per_s']:8.2f} {mem:9.0f} "
              f"{r['tokens_per_s']:9.0f} {100 * r['mfu']:6.2f}  {ratio}")
if peak:
    print(f"MFU against {peak:g} TFLOP/s (dense bf16 peak); prefkit/this: median speed and "
          "peak-memory ratios")
EOF
    date -u
} 2>&1 | tee "$OUT/gpu_align.log"

(cd benchmarks/_work/align_speed && tar -czf "$OUT/logs.tgz" logs_* 2>/dev/null) || true
