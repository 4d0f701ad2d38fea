"""Runs chosen GPU benchmark cases twice each (the first a warm-up): ours, the seed's and vLLM
0.33's Triton kernels and the copy of the same bytes, for a profiler to capture. ncu flushes
the caches before each profiled kernel (--cache-control all, its default), as the bench
subcommand does:

    ncu --kernel-name regex:"fwd_kernel|update_kernel|_causal_conv1d|copy" \\
        python -m benchmarks profile --peers-dir .peers "update batch 1," "mixed"
"""

from __future__ import annotations

import torch
from causal_conv1d_kernels.testing import benchmark

from . import subcommand_parser
from .bench import peer_implementations
from .peers import PEERS, triton_peers


def main(argv=None) -> int:
    parser = subcommand_parser("profile", __doc__)
    parser.add_argument("--peers-dir", default=PEERS)
    parser.add_argument(
        "--impls", default="all", help="comma-separated: copy, ours and peer names, or all"
    )
    parser.add_argument("patterns", nargs="+", help="substrings of benchmark case names")
    args = parser.parse_args(argv)
    peers = triton_peers(args.peers_dir, vllm_pdl=False)
    for case in benchmark.GPU_CASES:
        if not any(p in case.name for p in args.patterns):
            continue
        inputs = benchmark.make_inputs(case, "cuda")
        impls = {
            "copy": benchmark.copy_floor(benchmark.bytes_moved(case, inputs), "cuda"),
            "ours": benchmark.implementations(case, inputs)["ours"],
        }
        impls.update(peer_implementations(case, inputs, peers, None))
        for name, fn in impls.items():
            if args.impls != "all" and name not in args.impls.split(","):
                continue
            print(f"profiling {case.name}: {name}", flush=True)
            for _ in range(2):
                fn()
            torch.cuda.synchronize()
    return 0
