#!/usr/bin/env bash
# GPU check (issue 21): the device tests, inference and training throughput on CUDA, every figure in
# $OUT/gpu_check.json (see benchmarks/gpu_check.py and the README's "GPU check").
#
#   here, once (pip reaches the registry):  .venv/bin/python -m benchmarks.gpu_bundle   # builds .gpu/
#   on a lent GPU machine (run tool, carry [".gpu"]):  bash benchmarks/gpu_check.sh
#
# It uses the machine's own python3 and its CUDA build of torch, never replacing it: the packages that
# machine lacks come unpacked from .gpu/site.tar.xz onto PYTHONPATH, with this checkout (nothing is
# installed). Without CUDA it stops at once and says so. Extra arguments go to benchmarks.gpu_check.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-benchmarks/results/gpu_check}

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA device: $PYTHON's torch ($("$PYTHON" -c 'import torch; print(torch.__version__)' \
        2>/dev/null || echo 'not importable')) sees no GPU. Run this on a lent GPU machine (README, GPU check);" \
        "for a dry run of the same steps on the CPU: python -m benchmarks.gpu_check --device cpu" >&2
    exit 3
fi
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ -f .gpu/site.tar.xz ]]; then
    site=$(mktemp -d /tmp/atriumseg-site.XXXXXX)
    tar -xJf .gpu/site.tar.xz -C "$site"
    export PYTHONPATH="$PYTHONPATH:$site"  # only what the machine lacks: its torch and numpy stay in use
fi
missing=$("$PYTHON" - <<'EOF'
import importlib.util
names = ["monai", "nibabel", "isal", "SimpleITK", "safetensors", "numpy", "scipy", "skimage", "tqdm", "matplotlib",
         "trimesh", "pydicom", "highdicom", "pytest"]
print(" ".join(n for n in names if importlib.util.find_spec(n) is None))
EOF
)
if [[ -n "$missing" ]]; then
    echo "gpu_check: missing on this machine: $missing. Build .gpu/ with 'python -m benchmarks.gpu_bundle'" \
        "where pip works, and name .gpu in the run call's carry" >&2
    exit 2
fi

export PYTHONUNBUFFERED=1
timeout 560 "$PYTHON" -m benchmarks.gpu_check --device cuda --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"
