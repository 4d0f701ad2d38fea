"""The conv inside a layer: GEMM -> conv -> GEMM captured in one CUDA graph (in_proj, the conv,
out_proj of a Mamba layer, bf16, hidden 4096, D 8192, W 4), replayed with the L2 flushed before
each replay, median. Ours with programmatic dependent launch (PDL) on and off, the seed's and
vLLM 0.33's Triton convs in the same sequence (vLLM with PDL, as vLLM launches it), and the two
GEMMs alone; "conv us" is the sequence minus the GEMMs alone.

    python benchmarks/bench_pdl.py --peers-dir .peers --out-dir benchmarks/results

Writes <out-dir>/<name>.md, .json and .png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import torch
from causal_conv1d_kernels import (
    __version__,
    causal_conv1d_fn,
    causal_conv1d_update,
    set_pdl,
)
from causal_conv1d_kernels.testing import benchmark

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import engine_metadata, load_peer  # noqa: E402
from bench import set_pdl as set_vllm_pdl  # noqa: E402

HIDDEN, DIM = 4096, 8192
CASES = [
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
    peers = {}
    for name, module in (("seed triton", "vllm_triton_seed"), ("vllm 0.33", "vllm_triton_0_33")):
        peer = load_peer(peers_dir, module) if peers_dir else None
        if peer is not None:
            peers[name] = peer
    if "vllm 0.33" in peers:
        set_vllm_pdl(peers["vllm 0.33"], True)  # as vLLM launches it on Hopper
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


def markdown(rows, header) -> str:
    names = [k[:-3] for k in rows[0] if k.endswith("_us") and k != "gemms alone_us"]
    lines = [
        header,
        "",
        "| case | GEMMs alone us | " + " | ".join(f"{n}: layer us (conv us)" for n in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for row in rows:
        base = row["gemms alone_us"]
        cells = [
            f"{row[f'{n}_us']:.1f} ({row[f'{n}_us'] - base:.1f})" if row.get(f"{n}_us") else "n/a"
            for n in names
        ]
        lines.append(f"| {row['case']} | {base:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows, title, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k[:-3] for k in rows[0] if k.endswith("_us") and k != "gemms alone_us"]
    fig, ax = plt.subplots(figsize=(9, 1.2 * len(rows) + 1.5))
    height = 0.8 / len(names)
    for j, name in enumerate(names):
        ys = [i + j * height for i in range(len(rows))]
        ax.barh(
            ys, [(r.get(f"{name}_us") or 0) - r["gemms alone_us"] for r in rows], height, label=name
        )
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(rows))])
    ax.set_yticklabels([r["case"] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("layer time - GEMMs alone (us, lower is better)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--peers-dir", default=None, help="folder holding the Triton peers")
    parser.add_argument("--min-run-time", type=float, default=0.5)
    parser.add_argument("--name", default=None)
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"))
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
    stem = args.name or "gpu-pdl"
    base = os.path.join(args.out_dir, stem)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(base + ".md", "w") as f:
        f.write(markdown(rows, header))
    with open(base + ".json", "w") as f:
        json.dump({"machine": machine, "torch": torch.__version__, "rows": rows}, f, indent=1)
    plot(rows, f"GEMM -> conv -> GEMM: {machine}", base + ".png")
    print(markdown(rows, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
