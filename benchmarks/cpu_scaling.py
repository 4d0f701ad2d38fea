"""How the CPU kernels scale with threads, and what SiLU and the decode's filter copy cost:
for each kernel set (one process each, forced with CAUSAL_CONV1D_CPU_ISA) and thread count,
the bf16 width-4 cases (CONTRACT 4, or with --cases cpu-peer the shapes compared with SGLang)
with and without SiLU, and decode calls with an fp32 bias (which makes the dispatcher copy the
filter to fp32 on the calling thread, as every call did before the decode step read it in
place), each as a ratio to a copy of the same bytes timed at the same thread count.

    python -m benchmarks cpu-scaling --isas avx2,avx512_bf16 --threads 1,8,16
    python -m benchmarks cpu-scaling --cases cpu-peer --threads 1,4,16
"""

from __future__ import annotations

import subprocess

import torch
from causal_conv1d_kernels import causal_conv1d_fn, causal_conv1d_update, cpu_isa
from causal_conv1d_kernels.testing import benchmark

from . import child_env, command, subcommand_parser


def call(case, inputs, activation):
    if case.op == "fwd":
        out = torch.empty_like(inputs["x"].t()).t()
        return lambda: causal_conv1d_fn(**inputs, out=out, activation=activation)
    out = torch.empty_like(inputs["x"])
    args = dict(inputs, activation=activation)
    return lambda: causal_conv1d_update(**args, out=out)


def measure(cases, threads: list[int], min_run_time: float) -> None:
    for case in cases:
        inputs = benchmark.make_inputs(case, "cpu")
        copy = benchmark.copy_floor(benchmark.bytes_moved(case, inputs), "cpu")
        calls = {"silu": call(case, inputs, "silu"), "no act": call(case, inputs, None)}
        if case.op == "update":
            calls["filter copied"] = call(case, dict(inputs, bias=inputs["bias"].float()), "silu")
        for n in threads:
            copy_us = benchmark.time_us(copy, "cpu", n, min_run_time)
            times = ", ".join(
                f"{name} {us:9.1f} us ({us / copy_us:5.2f}x)"
                for name, us in (
                    (name, benchmark.time_us(fn, "cpu", n, min_run_time))
                    for name, fn in calls.items()
                )
            )
            print(
                f"{cpu_isa():12s} {case.name:26s} threads {n:2d}: copy {copy_us:9.1f} us, {times}",
                flush=True,
            )


def main(argv=None) -> int:
    parser = subcommand_parser("cpu-scaling", __doc__)
    parser.add_argument("--isas", default="")
    parser.add_argument("--cases", choices=["cpu", "cpu-peer"], default="cpu")
    parser.add_argument("--threads", default="1,16")
    parser.add_argument("--min-run-time", type=float, default=0.5)
    args = parser.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    if not args.isas:
        cases = benchmark.CPU_CASES if args.cases == "cpu" else benchmark.CPU_PEER_CASES
        measure(cases, threads, args.min_run_time)
        return 0
    status = 0
    for isa in args.isas.split(","):
        cmd = command("cpu-scaling", "--threads", args.threads, "--cases", args.cases)
        cmd += ["--min-run-time", str(args.min_run_time)]
        status |= subprocess.call(cmd, env=child_env(CAUSAL_CONV1D_CPU_ISA=isa))
    return status
