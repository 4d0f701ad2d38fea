"""Runs chosen GPU benchmark cases twice each, ours and the seed's Triton kernels, for a
profiler to capture (the first run is a warm-up):

    ncu --kernel-name regex:"fwd_kernel|update_kernel|_causal_conv1d" \\
        python benchmarks/profile_cuda.py "update batch 1," "mixed"
"""

from __future__ import annotations

import os
import sys

import torch
from causal_conv1d_kernels import benchmark

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def main(patterns) -> None:
    seed = bench.load_seed(os.path.join(os.path.dirname(__file__), "..", ".peers"))
    for case in benchmark.GPU_CASES:
        if not any(p in case.name for p in patterns):
            continue
        inputs = benchmark.make_inputs(case, "cuda")
        impls = {"ours": benchmark.implementations(case, inputs)["ours"]}
        impls.update(bench.peer_implementations(case, inputs, seed, None))
        for name, fn in impls.items():
            for _ in range(2):
                fn()
            torch.cuda.synchronize()
            print(f"profiled {case.name}: {name}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
