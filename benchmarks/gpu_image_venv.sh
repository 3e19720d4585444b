#!/usr/bin/env bash
# A CPU venv that mirrors the lent GPU machine's image (/work/.library/device/KINDS.md's pip
# list: Python 3.12.3, torch 2.11.0+cu130, triton 3.6.0, transformers 5.17.0, accelerate
# 1.15.0, tokenizers 0.23.2, huggingface_hub 1.33.0, safetensors 0.8.0, numpy 2.5.2,
# sentence-transformers 6.0.1, peft of an unknown version), so that gpu_align.sh --dry-run
# and the align tests run here under the versions the GPU run meets:
#
#   bash benchmarks/gpu_image_venv.sh [/work/venv_gpu]     # ~3 min, 5.6 GB
#   PYTHON=/work/venv_gpu/bin/python bash benchmarks/gpu_align.sh --dry-run
#   OMP_NUM_THREADS=1 PYTHONPATH=src /work/venv_gpu/bin/python -m pytest tests/align -q
#
# torch 2.11's CPU-only build is not on PyPI; its Linux wheel there IS the image's CUDA 13.0
# build (torch 2.11.0+cu130, with triton 3.6.0 and CUDA's libraries from PyPI) and runs on a
# machine without a GPU. Python: pyenv's 3.12 (3.12.1 here; the image has 3.12.3). TRL 1.16,
# datasets 5.2, dill, multiprocess: from the wheels `gpu_align.sh prepare` carries, with
# --no-deps as there (gpu_align.sh itself installs them again with --target, first on the
# path, as on the GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-/work/venv_gpu}
PY312=${PY312:-$(command -v python3.12 || ls /root/.pyenv/versions/3.12*/bin/python3.12 | tail -1)}
"$PY312" -m venv "$VENV"
"$VENV/bin/pip" install -q torch==2.11.0
"$VENV/bin/pip" install -q numpy==2.5.2 transformers==5.17.0 accelerate==1.15.0 \
    tokenizers==0.23.2 huggingface_hub==1.33.0 safetensors==0.8.0 sentence-transformers==6.0.1 \
    peft scipy pandas pyarrow xxhash "fsspec<=2026.9.0" requests tqdm pyyaml psutil jinja2 \
    typer rich pytest hypothesis
if ! compgen -G ".gpu/wheels/*.whl" >/dev/null; then
    PYTHON="$VENV/bin/python" bash benchmarks/gpu_align.sh prepare
fi
"$VENV/bin/pip" install -q --no-index --no-deps --no-compile .gpu/wheels/*.whl
"$VENV/bin/pip" check
"$VENV/bin/python" -c "import torch, transformers, trl, datasets; print(torch.__version__,
transformers.__version__, trl.__version__, datasets.__version__)"
