"""``python -m causal_conv1d_kernels``: what runs here, a self-check against the float64
reference on a Mamba2 shape (prefill, then decode), and a quick timing table.

Exits non-zero when the self-check fails.
"""

from __future__ import annotations

import argparse
import sys

import torch

from . import __version__, benchmark, cpu_isa, has_cuda_backend
from .ops import PAD_SLOT_ID, causal_conv1d_fn, causal_conv1d_update
from .reference import causal_conv1d_fn_ref, causal_conv1d_update_ref

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
    [(step, ok, max abs error)] comparing outputs (tolerance) and the cache (bit-exact)."""
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
    ok, err = _close(out, ref_out)
    results.append(("prefill", ok and torch.equal(states, ref_states), err))
    for step in range(3):
        token = randn(4, dim, dt=dtype)
        ref_out, ref_states = causal_conv1d_update_ref(
            token, states, weight, bias, "silu", conv_state_indices=lines
        )
        out = causal_conv1d_update(token, states, weight, bias, "silu", conv_state_indices=lines)
        ok, err = _close(out, ref_out)
        results.append((f"decode step {step + 1}", ok and torch.equal(states, ref_states), err))
    return results


def quick_benchmark(device, min_run_time: float) -> None:
    cases = benchmark.CPU_CASES if torch.device(device).type == "cpu" else benchmark.GPU_CASES
    print(f"\nTiming on {benchmark.machine(device)} (median us; x = time / copy of the same bytes)")
    print(f"{'case':38} {'copy':>9} {'ours':>9} {'x':>6} {'plain torch':>12} {'x':>7}")
    for case in cases:
        inputs = benchmark.make_inputs(case, device)
        copy = benchmark.time_us(
            benchmark.copy_floor(benchmark.bytes_moved(case, inputs), device),
            device,
            min_run_time=min_run_time,
        )
        times = {
            name: benchmark.time_us(fn, device, min_run_time=min_run_time)
            for name, fn in benchmark.implementations(case, inputs).items()
            if name in ("ours", "torch")
        }
        print(
            f"{case.name:38} {copy:9.1f} {times['ours']:9.1f} {times['ours'] / copy:6.2f} "
            f"{times['torch']:12.1f} {times['torch'] / copy:7.1f}"
        )


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
        for step, ok, err in self_check(device):
            print(f"  {step:14} {'ok' if ok else 'FAILED'}  max |out - ref| = {err:.2e}")
            failed |= not ok
    if not args.no_bench:
        for device in devices:
            quick_benchmark(device, args.min_run_time)
    print("\nself-check " + ("FAILED" if failed else "passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
