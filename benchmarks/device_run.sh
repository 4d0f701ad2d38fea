#!/usr/bin/env bash
# One call on the GPU machine: build, run the whole suite (every CPU kernel set the host can
# run, and CUDA when built), the self-check and both benchmarks. Everything goes to $OUT
# (or ./device-out): log.txt and the benchmark tables, JSON and plots.
#   bash benchmarks/device_run.sh            # from the repository root
# The seed's Triton kernels are taken from .peers/ (a copy of shared/peers, not committed).
set -uo pipefail
OUT="${OUT:-$PWD/device-out}"
mkdir -p "$OUT"
LOG="$OUT/log.txt"
export PYTHONUNBUFFERED=1
{
  nproc; lscpu | grep -E "Model name|Flags" | cut -c1-2000; nvidia-smi -L
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
} > "$LOG" 2>&1
head -3 "$LOG"
TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}" \
  python3 -m pip install --no-build-isolation -e . >> "$LOG" 2>&1 || { tail -40 "$LOG"; exit 1; }
python3 -m pytest -q -rs tests -p no:cacheprovider 2>&1 | tee -a "$LOG" | grep -E "passed|failed|SKIPPED.*test_isa|Error" | tail -8
python3 -m causal_conv1d_kernels 2>&1 | tee -a "$LOG" | tail -9
python3 benchmarks/bench.py --device cpu --threads 16 --min-run-time 1 --isas portable,avx2,avx512_bf16 \
  --name cpu-xeon-16t --out-dir "$OUT" 2>&1 | tee -a "$LOG" | grep -v "^wrote" | tail -3
cat "$OUT/cpu-xeon-16t.md"
python3 benchmarks/bench.py --device cuda --min-run-time 0.5 --peers-dir .peers --name gpu-h100 \
  --out-dir "$OUT" 2>&1 | tee -a "$LOG" | tail -9
