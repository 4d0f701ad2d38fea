"""The conv inside a layer: GEMM -> conv -> GEMM captured in one CUDA graph (in_proj, the conv,
out_proj of a Mamba layer, bf16, hidden 4096, D 8192, W 4), replayed with the L2 flushed before
each replay, median. Ours with programmatic dependent launch (PDL) on and off, the seed's and
vLLM 0.33's Triton convs in the same sequence (vLLM with PDL, as vLLM launches it), and the two
GEMMs alone; "conv us" is the sequence minus the GEMMs alone.

    python -m benchmarks pdl --peers-dir .peers

Writes <out-dir>/<name>.md, .json and .png.
"""

from __future__ import annotations

import datetime

import torch
from causal_conv1d_kernels import (
    __version__,
    causal_conv1d_fn,
    causal_conv1d_update,
    set_pdl,
)
from causal_conv1d_kernels.testing import benchmark

from . import report, subcommand_parser
from .peers import engine_metadata, triton_peers

HIDDEN, DIM = 4096, 8192
CASES = [
    benchmark.Case("decode batch 1", "update", DIM, batch=1),
    benchmark.Case("decode batch 16", "update", DIM, batch=16),
    benchmark.Case("decode batch 64", "update", DIM, batch=64),
    benchmark.Case("decode batch 256", "update", DIM, batch=256),
    benchmark.Case("prefill 4x512", "fwd", DIM, lengths=(512,) * 4),
]


def layer(case, peers):
    """name -> a zero-argument call of in_proj, the conv (or none) and out_proj, out_proj
    reading what the conv wrote."""
    inputs = benchmark.make_inputs(case, "cuda")
    tokens = case.batch if case.op == "update" else sum(case.lengths)
    g = torch.Generator(device="cuda").manual_seed(1)
    h = torch.randn(tokens, HIDDEN, device="cuda", generator=g, dtype=torch.bfloat16)
    w_in = torch.randn(HIDDEN, DIM, device="cuda", generator=g, dtype=torch.bfloat16) / 64
    w_out = torch.randn(DIM, HIDDEN, device="cuda", generator=g, dtype=torch.bfloat16) / 90
    xz = torch.empty(tokens, DIM, device="cuda", dtype=torch.bfloat16)
    y = torch.empty_like(xz)
    o = torch.empty(tokens, HIDDEN, device="cuda", dtype=torch.bfloat16)

    def with_conv(conv):
        """conv() returns the (tokens, DIM) tensor it wrote."""

        def call():
            torch.matmul(h, w_in, out=xz)
            torch.matmul(conv(), w_out, out=o)

        return call

    calls = {"gemms alone": with_conv(lambda: xz)}
    if case.op == "update":
        args = dict(
            conv_state=inputs["conv_state"],
            weight=inputs["weight"],
            bias=inputs["bias"],
            activation="silu",
            conv_state_indices=inputs["conv_state_indices"],
        )
        calls["ours"] = with_conv(lambda: causal_conv1d_update(xz, **args, out=y))
        if "seed triton" in peers:  # writes its outputs into x
            seed = peers["seed triton"]
            calls["seed triton"] = with_conv(lambda: seed.causal_conv1d_update(xz, **args))
        if "vllm 0.33" in peers:
            vllm = peers["vllm 0.33"]
            calls["vllm 0.33"] = with_conv(
                lambda: vllm.causal_conv1d_update(xz, **args, out=y, null_block_id=None)
            )
    else:
        args = {k: v for k, v in inputs.items() if k != "x"}
        x = xz.t()  # (DIM, tokens), channel-last
        calls["ours"] = with_conv(lambda: causal_conv1d_fn(x, **args, out=y.t()).t())
        meta = engine_metadata(inputs["query_start_loc"])
        for name in ("seed triton", "vllm 0.33"):
            if name in peers:
                peer = peers[name]
                calls[name] = with_conv(
                    lambda p=peer: p.causal_conv1d_fn(
                        x, **args, activation="silu", metadata=meta
                    ).t()
                )
    return calls


def run(peers_dir, min_run_time):
    peers = triton_peers(peers_dir, vllm_pdl=True)  # as vLLM launches it on Hopper
    rows = []
    for case in CASES:
        calls = layer(case, peers)
        row = {"case": case.name}
        for name, call in calls.items():
            if name == "ours":
                for enabled in (True, False):
                    previous = set_pdl(enabled)  # the graph keeps the setting it was captured with
                    key = "ours pdl" if enabled else "ours no pdl"
                    row[f"{key}_us"] = benchmark.time_cuda_flushed_us(call, min_run_time)
                    set_pdl(previous)
            else:
                row[f"{name}_us"] = benchmark.time_cuda_flushed_us(call, min_run_time)
        rows.append(row)
        print(row, flush=True)
    return rows


def main(argv=None) -> int:
    parser = subcommand_parser("pdl", __doc__)
    parser.add_argument("--peers-dir", default=None, help="folder holding the Triton peers")
    parser.add_argument("--min-run-time", type=float, default=0.5)
    parser.add_argument("--name", default=None)
    parser.add_argument("--out-dir", default=report.RESULTS)
    args = parser.parse_args(argv)
    machine = benchmark.machine("cuda")
    header = (
        f"## GEMM -> conv -> GEMM in one CUDA graph: {machine}\n\ncausal_conv1d_kernels "
        f"{__version__}, torch {torch.__version__}, {datetime.date.today()}; bf16, hidden "
        f"{HIDDEN}, D {DIM}, W 4, bias, SiLU; L2 flushed before each replay, median; conv us = "
        "layer - GEMMs alone"
    )
    print(header, flush=True)
    rows = run(args.peers_dir, args.min_run_time)
    text = report.markdown(rows, header, kind="layer")
    meta = {"machine": machine, "torch": torch.__version__}
    title = f"GEMM -> conv -> GEMM: {machine}"
    stem = args.name or "gpu-pdl"
    report.write(args.out_dir, stem, text, meta, rows, title, base="gemms alone", per_copy=False)
    print(text)
    return 0
