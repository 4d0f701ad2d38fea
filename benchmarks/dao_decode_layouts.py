"""The CPU decode step through the Dao dialect with each state layout: Dao's (lines, dim,
state_len) contiguous, as HF transformers and mamba_ssm keep it, against the engines' (lines,
state_len, dim) with channels contiguous. bf16, D 8192, width 4, bias, SiLU; median and
minimum of 15 runs of 100 calls.

    python -m benchmarks dao-layouts [threads]
"""

import time

import torch
from causal_conv1d_kernels import dao

from . import subcommand_parser

LAYOUTS = (
    (4, "dao (lines, dim, 4) contiguous"),
    (3, "dao (lines, dim, 3) contiguous"),
    (3, "engine (lines, 3, dim) transposed"),
)


def main(argv=None) -> int:
    parser = subcommand_parser("dao-layouts", __doc__)
    parser.add_argument("threads", nargs="?", type=int, default=2)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    dim, width = 8192, 4
    for batch in (1, 16, 64):
        for state_len, layout in LAYOUTS:
            x = torch.randn(batch, dim, dtype=torch.bfloat16)
            if layout.startswith("engine"):
                state = torch.randn(batch, state_len, dim, dtype=torch.bfloat16).transpose(1, 2)
            else:
                state = torch.randn(batch, dim, state_len, dtype=torch.bfloat16)
            weight = torch.randn(dim, width, dtype=torch.bfloat16)
            bias = torch.randn(dim, dtype=torch.bfloat16)
            for _ in range(50):
                dao.causal_conv1d_update(x, state, weight, bias, "silu")
            times = []
            for _ in range(15):
                start = time.perf_counter()
                for _ in range(100):
                    dao.causal_conv1d_update(x, state, weight, bias, "silu")
                times.append((time.perf_counter() - start) / 100 * 1e6)
            times.sort()
            print(
                f"batch {batch:3d} {layout:36s} median {times[len(times) // 2]:7.1f} us"
                f"  min {times[0]:7.1f}"
            )
    return 0
