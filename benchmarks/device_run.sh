#!/usr/bin/env bash
# One call on the GPU machine: build, run the whole suite (CPU and, when built, CUDA), the
# self-check and both benchmarks. Logs and results go to $OUT (or ./device-out).
#   bash benchmarks/device_run.sh            # from the repository root
# The seed's Triton kernels are taken from .peers/ (a copy of shared/peers, not committed).
set -uo pipefail
OUT="${OUT:-$PWD/device-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
{
  nproc; lscpu | grep -E "Model name|Flags" | cut -c1-400; nvidia-smi -L
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
} 2>&1 | tee "$OUT/machine.log"
TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}" \
  python3 -m pip install --no-build-isolation -e . > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
python3 -m pytest -q tests -p no:cacheprovider 2>&1 | tee "$OUT/tests.log" | tail -5
python3 -m causal_conv1d_kernels 2>&1 | tee "$OUT/main.log" | tail -14
python3 benchmarks/bench.py --device cpu --threads 16 --min-run-time 1 --name cpu-xeon-16t --out-dir "$OUT" 2>&1 | tail -6
python3 benchmarks/bench.py --device cuda --min-run-time 0.5 --peers-dir .peers --name gpu-h100 --out-dir "$OUT" 2>&1 | tail -10
