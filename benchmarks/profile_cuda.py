"""Runs chosen GPU benchmark cases twice each (the first a warm-up): ours, the seed's and vLLM
0.33's Triton kernels and the copy of the same bytes, for a profiler to capture. ncu flushes
the caches before each profiled kernel (--cache-control all, its default), as bench.py does:

    ncu --kernel-name regex:"fwd_kernel|update_kernel|_causal_conv1d|copy" \\
        python benchmarks/profile_cuda.py --peers-dir .peers "update batch 1," "mixed"
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from causal_conv1d_kernels.testing import benchmark

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--peers-dir", default=bench.PEERS)
    parser.add_argument(
        "--impls", default="all", help="comma-separated: copy, ours and peer names, or all"
    )
    parser.add_argument("patterns", nargs="+", help="substrings of benchmark case names")
    args = parser.parse_args(argv)
    peers = {}
    for name, module in (("seed triton", "vllm_triton_seed"), ("vllm 0.33", "vllm_triton_0_33")):
        peer = bench.load_peer(args.peers_dir, module)
        if peer is not None:
            peers[name] = peer
    if "vllm 0.33" in peers:
        bench.set_pdl(peers["vllm 0.33"], False)
    for case in benchmark.GPU_CASES:
        if not any(p in case.name for p in args.patterns):
            continue
        inputs = benchmark.make_inputs(case, "cuda")
        impls = {
            "copy": benchmark.copy_floor(benchmark.bytes_moved(case, inputs), "cuda"),
            "ours": benchmark.implementations(case, inputs)["ours"],
        }
        impls.update(bench.peer_implementations(case, inputs, peers, None))
        for name, fn in impls.items():
            if args.impls != "all" and name not in args.impls.split(","):
                continue
            print(f"profiling {case.name}: {name}", flush=True)
            for _ in range(2):
                fn()
            torch.cuda.synchronize()


if __name__ == "__main__":
    main()
