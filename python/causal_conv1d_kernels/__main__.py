"""``python -m causal_conv1d_kernels``: what runs here, a self-check against the float64
reference on a Mamba2 shape (prefill, then decode), and a quick timing table.

Exits non-zero when the self-check fails.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from . import __version__, cpu_isa, has_cuda_backend
from .ops import PAD_SLOT_ID, causal_conv1d_fn, causal_conv1d_update
from .testing import benchmark
from .testing.reference import causal_conv1d_fn_ref, causal_conv1d_update_ref

# Mamba2-2.7B: d_inner 5120 + 2 * d_state 128 conv channels, width 4.
MAMBA2_DIM, MAMBA2_WIDTH = 5376, 4
TOLERANCE = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def _close(actual, expected) -> tuple[bool, float]:
    tol = TOLERANCE[expected.dtype]
    diff = (actual.double() - expected.double()).abs()
    ok = bool((diff <= tol + tol * expected.double().abs()).all())
    return ok, float(diff.max()) if diff.numel() else 0.0


def self_check(device, dtype=torch.bfloat16, state_dtype=torch.float32) -> list:
    """Prefill a varlen batch into a cache, then decode three steps; returns
    [(step, outputs within tolerance, max abs error, cache bit-exact)]."""
    g = torch.Generator().manual_seed(0)

    def randn(*shape, dt):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dt)

    dim, width = MAMBA2_DIM, MAMBA2_WIDTH
    lengths = [128, 77, 1, 300]
    lines = torch.tensor([3, 0, PAD_SLOT_ID, 5], device=device)
    weight, bias = randn(dim, width, dt=dtype), randn(dim, dt=dtype)
    states = randn(8, width - 1, dim, dt=state_dtype).transpose(1, 2)
    x = randn(sum(lengths), dim, dt=dtype).t()
    qsl = torch.tensor([0, 128, 205, 206, 506], dtype=torch.int32, device=device)
    init = torch.tensor([False, True, True, False], device=device)

    results = []
    ref_out, ref_states = causal_conv1d_fn_ref(x, weight, bias, states, qsl, lines, init)
    out = causal_conv1d_fn(x, weight, bias, states, qsl, lines, init)
    results.append(("prefill", *_close(out, ref_out), torch.equal(states, ref_states)))
    for step in range(3):
        token = randn(4, dim, dt=dtype)
        ref_out, ref_states = causal_conv1d_update_ref(
            token, states, weight, bias, "silu", conv_state_indices=lines
        )
        out = causal_conv1d_update(token, states, weight, bias, "silu", conv_state_indices=lines)
        results.append(
            (f"decode step {step + 1}", *_close(out, ref_out), torch.equal(states, ref_states))
        )
    return results


# Rounds of timings per case: at least MIN_ROUNDS, more (up to MAX_ROUNDS) until the last
# MIN_ROUNDS agree within STABLE; a spread above BUSY_SPREAD, or a many-thread copy much
# slower than a one-thread copy, means the machine is busy and the ratios unreliable.
MIN_ROUNDS, MAX_ROUNDS, STABLE, BUSY_SPREAD, BUSY_THREADS = 3, 6, 0.10, 0.25, 1.5


def spread(samples) -> float:
    """max / min - 1 of positive timings."""
    return max(samples) / min(samples) - 1.0


def stable_rounds(measure) -> list:
    """Calls measure() (one round: a dict name -> us) until MIN_ROUNDS in a row agree."""
    rounds = []
    while len(rounds) < MAX_ROUNDS:
        rounds.append(measure())
        last = rounds[-MIN_ROUNDS:]
        if len(last) == MIN_ROUNDS and all(
            spread([r[name] for r in last]) <= STABLE for name in last[0]
        ):
            break
    return rounds


def busy_warnings(spreads, threads=1, copy_1t_us=None, copy_nt_us=None) -> list:
    """Warnings for a timing table: spreads (case -> worst spread of its rounds) above
    BUSY_SPREAD, or a copy on every thread slower than BUSY_THREADS x the one-thread copy
    (threads waiting for descheduled siblings)."""
    warnings = []
    noisy = {case: s for case, s in spreads.items() if s > BUSY_SPREAD}
    if noisy:
        worst = max(noisy.values())
        warnings.append(
            f"timings moved by up to {worst:.0%} between rounds ({', '.join(noisy)}): this "
            "machine looks busy, so the ratios are unreliable; rerun on a quiet machine"
        )
    if threads > 1 and copy_1t_us and copy_nt_us and copy_nt_us > BUSY_THREADS * copy_1t_us:
        warnings.append(
            f"a copy on {threads} threads took {copy_nt_us / copy_1t_us:.1f}x as long as on 1 "
            "thread: the threads wait for descheduled siblings (other load on this machine); "
            "the multi-threaded times are unreliable"
        )
    return warnings


def quick_benchmark(device, min_run_time: float) -> list:
    """Prints the timing table of one device; returns its warnings."""
    cpu = torch.device(device).type == "cpu"
    cases = benchmark.CPU_CASES if cpu else benchmark.GPU_CASES
    threads = torch.get_num_threads() if cpu else None
    where = "" if cpu else ", CUDA graph replays (warm L2)"
    print(
        f"\nTiming on {benchmark.machine(device)}{where}: median us over {MIN_ROUNDS}-"
        f"{MAX_ROUNDS} rounds, lower is better. x = time / time of a copy of the same bytes "
        "(1.0 would be as fast as memory allows); spread = max/min - 1 over the rounds."
    )
    print(
        f"{'case':38} {'copy':>9} {'ours':>9} {'x':>6} {'plain torch':>12} {'x':>7} {'spread':>7}"
    )
    spreads, copy_1t, copy_nt = {}, None, None
    for case in cases:
        inputs = benchmark.make_inputs(case, device)
        copy_fn = benchmark.copy_floor(benchmark.bytes_moved(case, inputs), device)
        impls = benchmark.implementations(case, inputs)
        fns = {"copy": copy_fn, "ours": impls["ours"], "torch": impls["torch"]}

        def measure(fns=fns):
            return {
                name: benchmark.time_us(fn, device, min_run_time=min_run_time)
                for name, fn in fns.items()
            }

        rounds = stable_rounds(measure)
        med = {name: statistics.median(r[name] for r in rounds) for name in fns}
        spreads[case.name] = max(spread([r[name] for r in rounds]) for name in ("copy", "ours"))
        if cpu and threads > 1 and copy_nt is None:
            # The first (largest) case's copy on every thread against one thread.
            copy_nt = med["copy"]
            copy_1t = benchmark.time_us(copy_fn, device, threads=1, min_run_time=min_run_time)
        print(
            f"{case.name:38} {med['copy']:9.1f} {med['ours']:9.1f} "
            f"{med['ours'] / med['copy']:6.2f} {med['torch']:12.1f} "
            f"{med['torch'] / med['copy']:7.1f} {spreads[case.name]:6.0%}"
        )
    warnings = busy_warnings(spreads, threads or 1, copy_1t, copy_nt)
    for warning in warnings:
        print(f"WARNING: {warning}")
    return warnings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m causal_conv1d_kernels", description=__doc__)
    parser.add_argument("--no-bench", action="store_true", help="only the self-check")
    parser.add_argument("--min-run-time", type=float, default=0.2, help="seconds per timing")
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    print(
        f"causal_conv1d_kernels {__version__}, torch {torch.__version__}, "
        f"Python {sys.version.split()[0]}"
    )
    print(f"CPU: {benchmark.machine('cpu')}; kernels: {cpu_isa()}")
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    print(
        f"CUDA: {', '.join(gpus) if gpus else 'no GPU'}; "
        f"CUDA backend {'built' if has_cuda_backend() else 'not built'}"
    )

    devices = ["cpu"] + (["cuda"] if cuda and has_cuda_backend() else [])
    failed = False
    for device in devices:
        print(
            f"\nSelf-check on {device}: Mamba2 D={MAMBA2_DIM}, W={MAMBA2_WIDTH}, bf16 x, "
            "fp32 states, 4 sequences (one padded)"
        )
        tol = TOLERANCE[torch.bfloat16]
        print(
            f"  outputs: |out - ref| <= {tol:.1e} + {tol:.1e} * |ref| per element (a couple "
            "of bf16 ulps of the fp32 result); cache: every line compared bit for bit"
        )
        for step, ok, err, cache_ok in self_check(device):
            print(
                f"  {step:14} {'ok' if ok and cache_ok else 'FAILED'}  max |out - ref| = "
                f"{err:.2e} ({'within' if ok else 'OUTSIDE'} tolerance), cache "
                f"{'bit-exact' if cache_ok else 'DIFFERS'}"
            )
            failed |= not (ok and cache_ok)
    if not args.no_bench:
        for device in devices:
            quick_benchmark(device, args.min_run_time)
    print("\nself-check " + ("FAILED" if failed else "passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
