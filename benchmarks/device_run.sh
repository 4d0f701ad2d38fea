#!/usr/bin/env bash
# One call on the GPU machine: build, run the whole suite (every CPU kernel set the host can
# run, and CUDA when built), the self-check and both benchmarks. Everything goes to $OUT
# (or ./device-out): log.txt and the benchmark tables, JSON and plots.
#   bash benchmarks/device_run.sh            # from the repository root
#   STAGES="cuda-tests gpu-bench" bash benchmarks/device_run.sh   # a subset
# Stages: return-build (the built extension to $OUT/prebuilt: carry it back as .prebuilt/), dao-tests, train-bench, cpu-train, dao-build and dao-wait (see below), hf-mamba2, tests (whole suite), cuda-tests (tests whose id names cuda: every GPU-only test does),
# cuda-quick (the CUDA tests of test_cuda, test_ops, test_fwd, test_update, test_vllm), timers (the
# decode and small prefill rows under both flushed timers), pdl-bench (python -m benchmarks
# pdl), selfcheck, cpu-bench, cpu-scaling (python -m benchmarks cpu-scaling), gpu-bench (python
# -m benchmarks bench, L2 flushed), check-peers (the Triton peers' outputs against the
# reference), vllm-bench (python -m benchmarks vllm: vLLM's spec/varlen/plain decode calls
# beside vLLM 0.33), reliability (CUDA hostile, fuzz,
# stress and large tests), gpu-bench, profile (ncu over a few cases, ours and the seed),
# chunk-sweep (prefill at each forced tokens-per-program), step-sweep (decode step shapes), bwd-sweep (the channel-last training rows at 8 and 4 bytes per thread), sanitize (compute-sanitizer memcheck,
# racecheck and initcheck over a reduced CUDA run, side by side; on the H100 memcheck and
# initcheck take about 5 minutes each and racecheck longer than one 10-minute call: give it a
# call of its own, SANITIZERS=racecheck, with fewer tests through SANITIZE_K).
# The seed's and vLLM 0.33's Triton kernels are taken from .peers/ (a copy of ../shared/peers,
# git-ignored: carry it).
set -uo pipefail
OUT="${OUT:-$PWD/device-out}"
mkdir -p "$OUT"
LOG="$OUT/log.txt"
export PYTHONUNBUFFERED=1
{
  nproc; lscpu | grep -vE "^Vulnerab" | cut -c1-2000; nvidia-smi -L
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
} > "$LOG" 2>&1
head -3 "$LOG"
# hypothesis for tests/test_fuzz.py: the machine has no network, so wheels come along in
# .wheels/ (carry it; `pip download hypothesis --python-version 3.12 --only-binary=:all: -d .wheels`).
ls .wheels/*.whl > /dev/null 2>&1 && python3 -m pip install --no-index -q .wheels/*.whl >> "$LOG" 2>&1
STAGES=" ${STAGES:-tests selfcheck cpu-bench gpu-bench} "
want() { [[ "$STAGES" == *" $1 "* ]]; }
# Peers carried as wheels in .whl/ (git-ignored: fla-core, mamba_ssm built without its CUDA
# extension, a Dao causal-conv1d build) go to /tmp/site, ahead of nothing the image has.
if ls .whl/*.whl > /dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl >> "$LOG" 2>&1
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
# dao-build: Dao-AILab causal-conv1d 1.7 from its sdist in .peers/src (../shared/peers/README.md),
# beside everything else; stages that time it wait for it (dao-wait). The wheel
# comes back in pieces of 15 MiB ($OUT's per-file limit): cat them into .whl/ to carry it.
# DAO_BF16_ONLY=1: its kernels for bf16 x and weights only (benchmarks/dao_bf16_only.py), about a
# fifth of the build time; enough for the bf16 tables, any other dtype raises in Dao's dispatch.
if want dao-build && ! ls .whl/causal_conv1d-*.whl > /dev/null 2>&1; then
  DAO_SRC=.peers/src/causal_conv1d-1.7.0
  if [ "${DAO_BF16_ONLY:-0}" = 1 ]; then
    python3 benchmarks/dao_bf16_only.py "$DAO_SRC" /tmp/dao-bf16-src > /dev/null && DAO_SRC=/tmp/dao-bf16-src
  fi
  ( bash .peers/build_dao.sh "$DAO_SRC" /tmp/dao-wheel > "$OUT/dao-build.txt" 2>&1 \
    && python3 -m pip install -q --no-index --no-deps --target /tmp/site /tmp/dao-wheel/*.whl >> "$OUT/dao-build.txt" 2>&1 \
    && split -b 15M /tmp/dao-wheel/*.whl "$OUT/dao-wheel.part-" && basename /tmp/dao-wheel/*.whl > "$OUT/dao-wheel.name" ) &
  DAO_PID=$!
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
# A build returned by an earlier call (stage return-build) and carried in .prebuilt/ (git-ignored)
# skips the four-minute compile: the package then runs from python/ on PYTHONPATH.
if ls .prebuilt/_C*.so > /dev/null 2>&1; then
  cp .prebuilt/_C*.so .prebuilt/_build_info.py python/causal_conv1d_kernels/
  export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
  echo "prebuilt extension from .prebuilt/ (sources $(cat .prebuilt/commit 2>/dev/null), these" \
    "$(find csrc setup.py -type f | sort | xargs cat | sha1sum | cut -c1-12))"
else
  TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}" \
    python3 -m pip install --no-build-isolation -e . >> "$LOG" 2>&1 || { tail -40 "$LOG"; exit 1; }
  echo "built at $(date +%T)"
fi
# return-build: the extension (debug info stripped, gzipped: gunzip it into .prebuilt/) for later
# calls of the same tree.
if want return-build; then
  mkdir -p "$OUT/prebuilt"
  strip --strip-debug -o /tmp/_C.so python/causal_conv1d_kernels/_C*.so
  gzip -c /tmp/_C.so > "$OUT/prebuilt/$(basename python/causal_conv1d_kernels/_C*.so).gz"
  cp python/causal_conv1d_kernels/_build_info.py "$OUT/prebuilt/"
  find csrc setup.py -type f | sort | xargs cat | sha1sum | cut -c1-12 > "$OUT/prebuilt/commit"
  ls -la "$OUT/prebuilt"
fi
SAN_PIDS=
before_bench() { if [ -n "$SAN_PIDS" ]; then wait $SAN_PIDS; SAN_PIDS=; fi; }
# sanitize: compute-sanitizer memcheck, racecheck and initcheck side by side (SANITIZE_ENV:
# settings for them, e.g. CAUSAL_CONV1D_CUDA_BATCH_TILES=2), started right after the build so
# that the test stages run beside them; benchmark stages wait for them (before_bench).
if want sanitize; then
  for tool in ${SANITIZERS:-memcheck racecheck initcheck}; do
    ( CAUSAL_CONV1D_STRESS_CALLS=200 CAUSAL_CONV1D_FUZZ_EXAMPLES=30 \
      env ${SANITIZE_ENV:-} timeout "${SANITIZE_TIMEOUT:-300}" compute-sanitizer --tool "$tool" --error-exitcode 9 python3 -m pytest -q \
      tests/test_fwd.py tests/test_update.py tests/test_vllm.py tests/test_cuda.py tests/test_safety.py tests/test_hostile.py \
      tests/test_fuzz.py tests/test_stress.py tests/test_dao.py tests/test_ops.py tests/test_sglang.py \
      tests/test_sglang_engine_calls.py -p no:cacheprovider \
      -k "${SANITIZE_K:-cuda and not compile and not opcheck and (not matches_reference or bfloat16-bfloat16-float32 or float32-float16-bfloat16)}" \
      > "$OUT/sanitize-$tool.txt" 2>&1
      echo "compute-sanitizer $tool: exit $? (124: timed out)" >> "$OUT/sanitize-$tool.txt" ) &
    SAN_PIDS="$SAN_PIDS $!"
  done
fi
# Result files are named after the GPU (gpu-h200, ...).
GPU="${GPU:-gpu-$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | awk '{print tolower($2)}')}"
want tests && python3 -m pytest -q -rs tests -p no:cacheprovider 2>&1 | tee -a "$LOG" | grep -E "passed|failed|SKIPPED.*test_isa|Error" | tail -8
want cuda-tests && python3 -m pytest -q tests -k cuda -p no:cacheprovider 2>&1 | tee -a "$LOG" \
  | grep -E "passed|failed|Error|FAILED" | tail -30
# dao-tests: the Dao dialect's CUDA tests (forward, gradients, determinism, opcheck, compile)
# under each kernel setting the defaults may not reach on small test shapes (DAO_TEST_ENVS):
# threads along channels for every layout, several tiles per block along tokens.
if want dao-tests; then
  for setting in ${DAO_TEST_ENVS:-CAUSAL_CONV1D_CUDA_BATCH_BY_CHANNELS=0 CAUSAL_CONV1D_CUDA_BATCH_BY_CHANNELS=1 CAUSAL_CONV1D_CUDA_BATCH_TILES=4}; do
    echo "dao tests, $setting:"
    env "$setting" python3 -m pytest -q tests/test_dao.py -k cuda \
      -p no:cacheprovider 2>&1 | tee -a "$LOG" | grep -E "passed|failed|Error|FAILED" | tail -20
  done
fi
want cuda-quick && python3 -m pytest -q -x tests/test_cuda.py tests/test_ops.py tests/test_fwd.py tests/test_update.py \
  tests/test_vllm.py -k cuda -p no:cacheprovider 2>&1 | tee -a "$LOG" | grep -E "passed|failed|Error|FAILED" | tail -20
want selfcheck && python3 -m causal_conv1d_kernels 2>&1 | tee -a "$LOG" | tail -9
want cpu-bench && before_bench
want cpu-bench && python3 -m benchmarks bench --device cpu --threads 16 --min-run-time 1 --isas portable,avx2,avx512_bf16 \
  --name cpu-xeon-16t --out-dir "$OUT" 2>&1 | tee -a "$LOG" | grep -v "^wrote" | tail -3
want cpu-bench && cat "$OUT/cpu-xeon-16t.md"
# SGLang's kernel beside ours on the host CPU: .sglang/ holds the SOURCES of
# benchmarks/sglang_peer.py at their sdist paths (git-ignored; carry it).
want cpu-sglang && before_bench
want cpu-sglang && python3 -m benchmarks bench --device cpu --threads 16 --min-run-time 1 --no-peers --cases cpu-peer \
  --sglang-sdist .sglang --name cpu-xeon-16t-sglang --out-dir "$OUT" 2>&1 | tee -a "$LOG" | grep -E "^(prefill|small|update)"
want cpu-scaling && before_bench
want cpu-scaling && python3 -m benchmarks cpu-scaling --isas "${SCALING_ISAS:-avx2,avx512_bf16}" \
  --threads "${SCALING_THREADS:-1,8,16}" --cases "${SCALING_CASES:-cpu}" 2>&1 | tee -a "$LOG" "$OUT/cpu-scaling.txt"
if want dao-wait && [ -n "${DAO_PID:-}" ]; then
  wait "$DAO_PID"; echo "dao build: exit $? at $(date +%T)"; tail -3 "$OUT/dao-build.txt"
fi
# gpu-bench: the whole table under CONTRACT 4's timer (direct launches, L2 flushed), then under
# graph replay with the L2 flushed (as engines run decode).
want gpu-bench && before_bench
want gpu-bench && python3 -m benchmarks bench --device cuda --min-run-time 0.5 --peers-dir .peers --name "$GPU" \
  --out-dir "$OUT" 2>&1 | tee -a "$LOG" | tail -9
want gpu-bench && python3 -m benchmarks bench --device cuda --min-run-time 0.5 --peers-dir .peers --timer flushed \
  --name "$GPU-graph-flushed" --out-dir "$OUT" 2>&1 | tee -a "$LOG" | grep -E "^(prefill|mixed|small|update)"
# The decode and small-prefill rows under each flushed timer (graph-replayed, direct launch).
want timers && before_bench
if want timers; then
  for timer in flushed direct; do
    python3 -m benchmarks bench --device cuda --min-run-time 0.3 --peers-dir .peers --timer $timer \
      --only "${TIMER_ONLY:-update,small}" --name "$GPU-timer-$timer" --out-dir "$OUT/timers" 2>&1 \
      | tee -a "$LOG" | grep -E "^\| (update|small|prefill|mixed)"
  done
fi
# hf-mamba2 (issue 13): HF transformers' Mamba2 through the Dao hook against Dao's package, with
# mamba_ssm's Triton kernels from its sources in .peers/mamba (git-ignored; carry .peers).
want hf-mamba2 && PYTHONPATH=".peers/mamba${PYTHONPATH:+:$PYTHONPATH}" python3 examples/hf_mamba2.py \
  --device cuda --reference dao --stub-selective-scan 2>&1 | tee -a "$LOG" "$OUT/hf-mamba2.txt" | grep -v -i warn | tail -8
# train-bench (issue 13): forward and forward + backward beside Dao 1.7 and fla 0.6 (carried in
# .whl/); cpu-train: the same on the host CPU beside plain torch autograd.
want train-bench && before_bench
want train-bench && python3 -m benchmarks train --device cuda --min-run-time 0.5 --name "$GPU-train" \
  --out-dir "$OUT" 2>&1 | tee -a "$LOG" | grep -E "^(fwd|peer)"
# bwd-sweep: the training rows along channels (channel-last x) at each CAUSAL_CONV1D_CUDA_BWD_BYTES.
want bwd-sweep && before_bench
if want bwd-sweep; then
  for bytes in 8 4; do
    echo "backward bytes $bytes:"
    CAUSAL_CONV1D_CUDA_BWD_BYTES=$bytes python3 -m benchmarks train --device cuda --min-run-time 0.3 \
      --only channel-last --name "bwd-$bytes" --out-dir "$OUT/sweep" 2>&1 | tee -a "$LOG" | grep -E "^fwd"
  done
fi
want cpu-train && before_bench
want cpu-train && python3 -m benchmarks train --threads 16 --min-run-time 1 --name cpu-xeon-16t-train \
  --out-dir "$OUT" 2>&1 | tee -a "$LOG" | grep -E "^(fwd|peer)"
want pdl-bench && before_bench
want pdl-bench && python3 -m benchmarks pdl --peers-dir .peers --name "$GPU-pdl" --out-dir "$OUT" 2>&1 \
  | tee -a "$LOG" | grep -E "^\| "
want check-peers && python3 -m benchmarks check-peers --peers-dir .peers 2>&1 | tee -a "$LOG" \
  "$OUT/$GPU-check-peers.txt" | grep -v "^peer"
want vllm-bench && before_bench
want vllm-bench && python3 -m benchmarks vllm --peers-dir .peers --out-dir "$OUT" 2>&1 | tee -a "$LOG" \
  | grep "^| [svp]"
# The ncu report sections of the profile stages.
NCU_SECTIONS=(--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats
  --section MemoryWorkloadAnalysis --section SchedulerStats)
want profile && before_bench
if want profile; then  # PROFILE_CASES: ';'-separated substrings of case names
  IFS=';' read -ra cases <<< "${PROFILE_CASES:-update batch 1,;update batch 256;mixed;prefill 1x8192}"
  ncu --clock-control none --cache-control all \
    --kernel-name regex:"fwd_kernel|update_kernel|step_kernel|_causal_conv1d|elementwise" \
    "${NCU_SECTIONS[@]}" --metrics "$(for r in imc_miss no_instruction long_scoreboard drain barrier wait; do
      printf 'smsp__average_warps_issue_stalled_%s_per_issue_active.ratio,' $r; done)gpu__time_duration.sum" \
    python3 -m benchmarks profile --peers-dir .peers --impls "${PROFILE_IMPLS:-all}" "${cases[@]}" \
    > "$OUT/ncu.txt" 2>&1
  grep -E "profiling|^  [a-zA-Z_:<>]*(kernel|copy)|Duration|DRAM Throughput|Achieved Occupancy|Registers Per|stall|Warp Cycles Per Issued|Block Size|Grid Size" \
    "$OUT/ncu.txt" | cut -c1-160 | head -${PROFILE_LINES:-120}
fi
# train-profile (issue 13): the kernels of one training step of each implementation
# (torch.profiler), then ncu over the forward and backward kernels, ours and Dao's, on the cases
# matching TRAIN_PROFILE (a substring of the train subcommand's case names).
want train-profile && before_bench
if want train-profile; then
  python3 -m benchmarks train --device cuda --profile "${TRAIN_PROFILE:-8x4096}" --kernels \
    > "$OUT/train-kernels.txt" 2>&1
  grep -E "^kernels|batch_|sum_shares|causal_conv1d|Self CUDA time" "$OUT/train-kernels.txt" | cut -c1-60,100-200
  ncu --clock-control none --cache-control all --kernel-name regex:"batch_|sum_shares|causal_conv1d_" \
    "${NCU_SECTIONS[@]}" python3 -m benchmarks train --device cuda --profile "${TRAIN_PROFILE:-8x4096}" \
    > "$OUT/train-ncu.txt" 2>&1
  grep -E "profiling|^  [a-zA-Z_:<>]*(kernel|copy)|Duration|DRAM Throughput|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Grid Size|L1/TEX Hit|Mem Busy|Max Bandwidth" \
    "$OUT/train-ncu.txt" | cut -c1-160 | head -${PROFILE_LINES:-150}
fi
# step-sweep: the decode step at each forced width of x per thread (bytes) and the default's
# choice; the short prefills at 8 and 16 bytes per thread (csrc/cuda/*.cu).
want step-sweep && before_bench
if want step-sweep; then
  for bytes in auto 2 4 8; do
    echo "step bytes $bytes:"
    env $( [ "$bytes" = auto ] || echo "CAUSAL_CONV1D_CUDA_STEP_BYTES=$bytes" ) \
      python3 -m benchmarks bench --device cuda --min-run-time 0.3 --no-peers --only update \
      --name "step-$bytes" --out-dir "$OUT/sweep" 2>&1 | tee -a "$LOG" | grep -E "^update" | cut -d, -f1-3
  done
  for bytes in auto 8 16; do
    echo "prefill bytes $bytes:"
    env $( [ "$bytes" = auto ] || echo "CAUSAL_CONV1D_CUDA_PREFILL_BYTES=$bytes" ) \
      python3 -m benchmarks bench --device cuda --min-run-time 0.3 --no-peers --only small,mixed \
      --name "prefill-$bytes" --out-dir "$OUT/sweep" 2>&1 | tee -a "$LOG" | grep -E "^(small|mixed)" | cut -d, -f1-3
  done
fi
want chunk-sweep && before_bench
if want chunk-sweep; then
  for chunk in 8 16 32 64 128; do
    echo "tokens per program $chunk:"
    CAUSAL_CONV1D_CUDA_CHUNK=$chunk python3 -m benchmarks bench --device cuda --min-run-time 0.3 \
      --no-peers --only prefill,mixed,small --name "sweep-$chunk" --out-dir "$OUT" 2>&1 \
      | tee -a "$LOG" | grep -E "^(prefill|mixed|small)" | cut -d: -f2 | cut -d, -f1-3
  done
fi
if want reliability; then  # issue 5's CUDA runs: hostile inputs, fuzzing, stress, >2^31 elements
  CAUSAL_CONV1D_STRESS_CALLS="${STRESS_CALLS:-10000}" CAUSAL_CONV1D_FUZZ_EXAMPLES="${FUZZ_EXAMPLES:-500}" \
    python3 -m pytest -q -rs --durations=8 tests/test_hostile.py tests/test_fuzz.py tests/test_stress.py \
    tests/test_large.py -k cuda -p no:cacheprovider 2>&1 | tee -a "$LOG" "$OUT/reliability.txt" | tail -25
fi
wait
if want sanitize; then
  for tool in ${SANITIZERS:-memcheck racecheck initcheck}; do
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|failed|^compute-sanitizer" "$OUT/sanitize-$tool.txt" | tail -4
  done
fi
# bundle: every result under $OUT except the log and the Dao wheel's pieces in one tar file
# ($OUT returns 8 files at most).
if want bundle; then
  (cd "$OUT" && find . -type f ! -name log.txt ! -name 'dao-wheel*' ! -name results.tar ! -path './prebuilt/*' -print0 \
    | tar -cf results.tar --null -T - --remove-files)
fi
