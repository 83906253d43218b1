#!/usr/bin/env bash
# Run the GPU parity suite and the GPU benchmarks in one go, in under five minutes
# (time limits of 60 + 45 + 180 s, plus a few seconds for nvidia-smi).
#
# Usage, from the repository root on a machine where torch and JAX both see a
# CUDA GPU:   bash benchmarks/gpu_check.sh [PYTHON]
# PYTHON defaults to python3; the project need not be installed, because the
# repository root goes on PYTHONPATH. Results go to benchmarks/results/gpu/:
#   nvidia-smi.txt          the GPU, driver and clocks before the run
#   versions.txt            python, torch, jax, flax, optax versions and devices
#   pytest-gpu.txt          python -m pytest -m gpu parity_tests
#   parity-gpu.json/.txt    twins parity --device cuda --device cpu/cuda
#   cuda.json, cuda.md, cuda_*.png   python -m benchmarks --quick --device cuda
#   status.txt              each step's exit status
# When $OUT is set (a folder whose files are copied back), everything is also
# packed into $OUT/gpu-results.tar.gz. Each step has its own time limit, so one
# hung step cannot use up the others' time; the script exits non-zero when any
# step failed.
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON=${1:-python3}
RESULTS=benchmarks/results/gpu
mkdir -p "$RESULTS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
: > "$RESULTS/status.txt"
failed=0

# step NAME LIMIT_SECONDS LOG COMMAND...: run COMMAND with a time limit, copy its
# output to LOG, and record its exit status (124 when it ran out of time).
step() {
    local name=$1 limit=$2 log=$3
    shift 3
    local start=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$log"
    local status=${PIPESTATUS[0]}
    echo "$name: exit $status after $((SECONDS - start)) s (limit $limit s)" | tee -a "$RESULTS/status.txt"
    if [ "$status" -ne 0 ]; then
        failed=1
    fi
}

nvidia-smi > "$RESULTS/nvidia-smi.txt" 2>&1
"$PYTHON" - > "$RESULTS/versions.txt" 2>&1 <<'EOF'
import platform
import flax, jax, optax, torch
print("python", platform.python_version())
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
print("jax", jax.__version__, "devices", jax.devices())
print("flax", flax.__version__, "optax", optax.__version__)
EOF

# pytest exits 5 when no test carries the gpu mark; that is recorded, not hidden.
step "pytest -m gpu" 60 "$RESULTS/pytest-gpu.txt" \
    "$PYTHON" -m pytest -q -m gpu parity_tests -p no:cacheprovider

step "twins parity cuda, cpu/cuda" 45 "$RESULTS/parity-gpu.txt" \
    "$PYTHON" -m twins parity --device cuda --device cpu/cuda --json "$RESULTS/parity-gpu.json"

# --quick keeps the sizes small; torch.compile is left out because its first
# compile (Triton kernels) alone can take minutes. NetKet is not on the GPU
# machine, so its variant is skipped with that reason.
step "benchmarks --device cuda" 180 "$RESULTS/benchmarks-cuda.txt" \
    "$PYTHON" -m benchmarks --quick --device cuda --no-torch-compile --out "$RESULTS"

if [ -n "${OUT:-}" ]; then
    tar czf "$OUT/gpu-results.tar.gz" -C benchmarks/results gpu
fi
exit $failed
