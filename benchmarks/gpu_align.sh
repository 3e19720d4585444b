#!/usr/bin/env bash
# The whole GPU comparison of alignment speed (issue 15) in one call on one GPU: prefkit's
# align vs TRL 1.16 DPOTrainer with precompute_ref_log_probs vs TRL's defaults (live
# reference), in that order, one fresh process per run (benchmarks/align_speed.py), on
#   1. --size large (random Llama, 217M parameters, bf16): 8 pairs x 2 accumulation, 30 steps
#   2. --size large: 32 pairs x 1, 10 steps
#   3. --size 1b (Llama-3.2-1B's shape, 1.10B parameters): 16 pairs x 1, 10 steps
#   4. only with time left after those (it never shortens them): large_32x1_flex, leg 2
#      again for prefkit alone with --attention flex (FlexAttention: prompt trees through a
#      BlockMask that skips masked blocks instead of SDPA over the whole row; unmeasured on
#      a GPU so far)
# reporting per run the layout prefkit used (packing, attention implementation, the SDPA
# kernel), pairs/s, peak CUDA memory, tokens/s and MFU (6 x non-embedding params x tokens/s
# over 989 TFLOP/s, the H200's datasheet dense bf16; --peak-tflops changes it), and prefkit's
# ratio to TRL precompute.
#
#   bash benchmarks/gpu_align.sh prepare     # HERE, once: wheels + HH pairs into .gpu/
#   bash benchmarks/gpu_align.sh             # THERE: device run, timeout_s 590,
#                                            #   carry [".gpu/wheels", ".gpu/pairs"] (not all of
#                                            #   .gpu: gpu_prm.sh keeps a 47 MB model in .gpu/prm)
#   PYTHON=.venv/bin/python bash benchmarks/gpu_align.sh --dry-run   # here: the same legs,
#                # CPU, tiny models (the 1b leg: tiny_gqa, its head layout), 2 steps, leg 1
#                # in bf16; the wheels installed as THERE (--target), as THERE
#
# Time: one budget for the whole call (GPU_ALIGN_BUDGET, default 560 s of the device call's
# 590): each leg is cut by `timeout` at min(its cap, what is left less the floors of the legs
# after it), the 1b leg gets all that is left; each run's result is in the leg's JSON as soon
# as it ends, so a cut leg keeps its finished runs. Estimated on the H200 from issue 15's
# rates: ~125 s, ~85 s, ~175 s (benchmarks/README.md). A leg whose floor is 0 is optional:
# no floor is kept for it, it gets what the legs before it left (the 1b leg's "all that is
# left" less nothing) and runs only if that is at least OPTIONAL_MIN s (90; a dry run, x4).
# Model folders and run folders go to
# /dev/shm where it has 40 GiB free (a 1B run writes an 18 GB checkpoint + model), else disk.
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
TRAINERS=(prefkit trl_precompute trl)  # the fair peer first: a cut leg keeps that ratio
# name, cap in seconds (0: all that is left), floor kept for it, align_speed.py arguments
LEGS=(
    "large_8x2 170 90 --size large"
    "large_32x1 120 80 --size large --batch-size 32 --grad-accum 1 --steps 10"
    "1b_16x1 0 170 --size 1b"
    # optional (floor 0): prefkit alone (the later --trainers wins), FlexAttention
    "large_32x1_flex 0 0 --size large --batch-size 32 --grad-accum 1 --steps 10 --trainers prefkit --attention flex"
)
OPTIONAL_MIN=90  # seconds an optional leg needs (imports, model, compiling flex, 10 steps)

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
    # the pairs files each leg reads (align_speed.leg_pairs: the same arguments, the same n)
    GPU="$GPU" "$PY" - "${LEGS[@]}" <<'EOF'
import os, shutil, sys
sys.path.insert(0, "benchmarks")
import align_speed as a  # noqa: E402
for leg in sys.argv[1:]:
    n, max_length = a.leg_pairs(leg.split()[3:])
    shutil.copy(a.make_pairs(n, max_length), os.path.join(os.environ["GPU"], "pairs"))
EOF
    ls -l "$GPU"/wheels "$GPU"/pairs
    # what the device call carries: the checkout's tracked and unignored files + these two
    tree=$(git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
    gpu=$(du -cb "$GPU"/wheels "$GPU"/pairs | tail -1 | cut -f1)
    echo "carry: checkout $((tree / 1048576)) MiB + .gpu/wheels and .gpu/pairs" \
         "$((gpu / 1048576)) MiB (limit 64 MiB): carry=[\".gpu/wheels\", \".gpu/pairs\"]"
    exit 0
fi

DEVICE=cuda
DRY=()
SHM_GIB=40
SCALE=1  # of the caps and floors
if [[ "${1:-}" == --dry-run ]]; then  # every leg, on the CPU, with a tiny model
    DEVICE=cpu
    DRY=(--vocab-size 128 --steps 2 --max-length 128 --threads 1)
    SHM_GIB=1
    SCALE=4  # a loaded 2-core CPU: ~20 s of imports per child
fi
BUDGET=${GPU_ALIGN_BUDGET:-$((560 * SCALE))}
DEADLINE=$((SECONDS + BUDGET))

{
    date -u
    echo "budget: ${BUDGET} s for the whole call; legs: ${LEGS[*]/%/;}"
    # -- the environment: carried wheels (as THERE: --target, first on the path), prefkit from
    # this tree, the HH pairs ----------------------------------------------------------------
    if compgen -G "$GPU/wheels/*.whl" >/dev/null; then
        SITE=$(mktemp -d /tmp/gpu_align_site.XXXXXX)
        t0=$SECONDS
        if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
                --disable-pip-version-check --target "$SITE" "$GPU"/wheels/*.whl; then
            # pure-Python wheels are zip files laid out as installed: unpacked, they import
            echo "pip install --target failed; unpacking the wheels into $SITE instead"
            "$PY" -c 'import sys, zipfile
for w in sys.argv[2:]:
    zipfile.ZipFile(w).extractall(sys.argv[1])' "$SITE" "$GPU"/wheels/*.whl || exit 1
        fi
        echo "wheels: $(cd "$GPU/wheels" && echo *.whl) into $SITE in $((SECONDS - t0)) s"
        export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
    elif [[ $DEVICE == cuda ]]; then
        echo "no wheels in $GPU/wheels: the TRL runs will fail (run 'prepare' here first)"
    fi
    export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
    mkdir -p benchmarks/_work/align_speed
    if compgen -G "$GPU/pairs/*.jsonl" >/dev/null; then
        cp -n "$GPU"/pairs/*.jsonl benchmarks/_work/align_speed/
    fi
    export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
    # model and run folders: /dev/shm where it has room (writes of GBs at memory speed)
    SCRATCH=$ROOT/benchmarks/_work/align_speed
    shm=$(df -B1G --output=avail /dev/shm 2>/dev/null | tail -1 | tr -d ' ')
    if [[ "$shm" =~ ^[0-9]+$ ]] && ((shm >= SHM_GIB)); then
        SCRATCH=/dev/shm/gpu_align_$$
    fi
    mkdir -p "$SCRATCH"
    echo "model and run folders: $SCRATCH (/dev/shm: ${shm:-?} GiB free)"

    [[ $DEVICE == cuda ]] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$PY" - <<'EOF'
import importlib, os, platform
v = {"python": platform.python_version()}
for m in ("torch", "transformers", "trl", "accelerate", "datasets", "peft", "triton",
          "tokenizers", "huggingface_hub", "safetensors", "numpy", "pyarrow", "pandas", "fsspec"):
    try:
        mod = importlib.import_module(m)
        v[m] = mod.__version__
        if m in ("trl", "datasets"):  # the carried wheels, not something else on the path
            v[m] += f" ({os.path.dirname(os.path.dirname(mod.__file__))})"
    except Exception as e:  # noqa: BLE001
        v[m] = f"MISSING ({e.__class__.__name__}: {e})"
print(v)
import torch
if torch.cuda.is_available():
    b = torch.backends.cuda
    print(f"CUDA: {torch.cuda.get_device_name()}, capability {torch.cuda.get_device_capability()}, "
          f"SDPA flash {b.flash_sdp_enabled()} / efficient {b.mem_efficient_sdp_enabled()} / "
          f"cudnn {b.cudnn_sdp_enabled()} / math {b.math_sdp_enabled()}; TF32 matmul "
          f"{b.matmul.allow_tf32}")
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

    # -- the three legs: one repeat each, each run's result written as it ends ---------------------
    floors_after() {  # the floors of the legs after leg $1
        local i sum=0
        for ((i = $1 + 1; i < ${#LEGS[@]}; i++)); do
            read -r _ _ f _ <<<"${LEGS[$i]}"
            sum=$((sum + f * SCALE))
        done
        echo $sum
    }
    for i in "${!LEGS[@]}"; do
        read -r name cap floor args <<<"${LEGS[$i]}"
        read -ra args <<<"$args"
        cap=$((cap * SCALE))
        left=$((DEADLINE - SECONDS - 15 - $(floors_after "$i")))  # 15 s: the table at the end
        limit=$left
        ((cap > 0 && cap < limit)) && limit=$cap
        need=30
        ((floor == 0)) && need=$((OPTIONAL_MIN * SCALE))  # an optional leg
        if ((limit < need)); then
            echo "== $name: skipped, ${left} s left of the budget (it needs ${need} s)"
            continue
        fi
        if [[ $DEVICE == cpu ]]; then  # tiny stand-ins: the 1b leg keeps its GQA head layout
            [[ $name == 1b* ]] && args+=(--size tiny_gqa) || args+=(--size tiny)
            # bf16 autocast through both trainers (a CPU without bf16 units: few pairs)
            ((i == 0)) && args+=(--precision bf16 --batch-size 2 --grad-accum 1)
        fi
        echo "== $name ($(date -u +%T), at most ${limit}s): ${args[*]}"
        t0=$SECONDS
        timeout -k 10 "$limit" "$PY" benchmarks/align_speed.py --device "$DEVICE" --repeats 1 \
            --trainers "${TRAINERS[@]}" "${args[@]}" "${DRY[@]}" --scratch "$SCRATCH" \
            --json "$OUT/$name.json"
        rc=$?
        ((rc == 124 || rc == 137)) && rc="$rc (cut at ${limit} s: the runs that ended are kept)"
        echo "== $name: exit $rc, $((SECONDS - t0)) s"
        rm -rf "$SCRATCH"/runs_*  # the next leg's room (the children remove theirs on CUDA)
    done
    [[ $SCRATCH == /dev/shm/* ]] && rm -rf "$SCRATCH"

    # -- one table of the three --------------------------------------------------------------------
    "$PY" benchmarks/gpu_align_table.py "$OUT" "${LEGS[@]%% *}" | tee "$OUT/summary.txt"
    date -u
} 2>&1 | tee "$OUT/gpu_align.log"

(cd benchmarks/_work/align_speed && tar -czf "$OUT/logs.tgz" logs_* 2>/dev/null) || true
