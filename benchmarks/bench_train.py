"""Training step of the conv on the CPU: forward + backward of causal_conv1d_kernels.dao
against plain PyTorch autograd of the same formulation (depthwise F.conv1d with left padding,
SiLU), on training shapes, both layouts, in one run, median of repeated runs, against a copy
of the bytes the backward must move (x, dout read; dx written) in the same run.

    python benchmarks/bench_train.py --out-dir benchmarks/results --name cpu-dev-epyc-2core-train

Writes <out-dir>/<name>.md, .json and .png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

import torch
import torch.nn.functional as F
from causal_conv1d_kernels import __version__, benchmark, cpu_isa, dao

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench import plot  # noqa: E402

# (batch, seqlen, dim, layout)
CASES = [
    (4, 2048, 4096, "channel_last"),
    (4, 2048, 4096, "channel_first"),
    (8, 1024, 2048, "channel_last"),
]


def torch_step(x, weight, bias, dout):
    """Plain autograd: depthwise conv1d over the left-padded input, SiLU."""
    width = weight.shape[1]
    y = F.conv1d(F.pad(x, (width - 1, 0)), weight.unsqueeze(1), bias, groups=x.shape[1])
    out = F.silu(y)
    return torch.autograd.grad(out, (x, weight, bias), dout)


def ours_step(x, weight, bias, dout):
    out = dao.causal_conv1d_fn(x, weight, bias, activation="silu")
    return torch.autograd.grad(out, (x, weight, bias), dout)


def make(batch, seqlen, dim, layout, dtype):
    g = torch.Generator().manual_seed(0)
    if layout == "channel_last":
        x = torch.randn(batch, seqlen, dim, generator=g).to(dtype).transpose(1, 2)
    else:
        x = torch.randn(batch, dim, seqlen, generator=g).to(dtype)
    weight = (torch.randn(dim, 4, generator=g) / 2).to(dtype)
    bias = torch.randn(dim, generator=g).to(dtype)
    dout = torch.randn(x.shape, generator=g).to(dtype)
    if layout == "channel_last":  # the gradient arrives in the output's layout
        dout = dout.transpose(1, 2).contiguous().transpose(1, 2)
    return [t.requires_grad_() for t in (x, weight, bias)] + [dout]


def run(dtype, min_run_time):
    rows = []
    for batch, seqlen, dim, layout in CASES:
        args = make(batch, seqlen, dim, layout, dtype)
        x = args[0]
        name = f"fwd+bwd {batch}x{seqlen}, D {dim}, {layout.replace('_', '-')}"
        nbytes = 3 * x.numel() * x.element_size()  # what the backward alone must move
        row = {"case": name, "bytes": nbytes}
        row["copy_us"] = benchmark.time_us(
            benchmark.copy_floor(nbytes, "cpu"), "cpu", None, min_run_time
        )
        row["ours_us"] = benchmark.time_us(lambda a=args: ours_step(*a), "cpu", None, min_run_time)
        row["torch_us"] = benchmark.time_us(
            lambda a=args: torch_step(*a), "cpu", None, min_run_time
        )
        x, weight, bias, dout = args
        expected = torch_step(
            *[t.detach().float().requires_grad_() for t in (x, weight, bias)], dout.float()
        )
        got = ours_step(x, weight, bias, dout)
        row["max_rel_err"] = max(
            float((a.float() - e).abs().max() / (e.abs().max() + 1e-30))
            for a, e in zip(got, expected)
        )
        rows.append(row)
        print(
            f"{name}: copy {row['copy_us']:.0f} us, ours {row['ours_us']:.0f} us, torch "
            f"{row['torch_us']:.0f} us ({row['torch_us'] / row['ours_us']:.1f}x), rel err "
            f"{row['max_rel_err']:.1e}",
            flush=True,
        )
    return rows


def markdown(rows, header) -> str:
    lines = [
        header,
        "",
        "| case | copy us | ours us (x copy) | torch autograd us (x copy) | torch / ours "
        "| max rel err vs fp32 torch |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ours, torch_us, copy = r["ours_us"], r["torch_us"], r["copy_us"]
        lines.append(
            f"| {r['case']} | {copy:.0f} | {ours:.0f} ({ours / copy:.2f}x) "
            f"| {torch_us:.0f} ({torch_us / copy:.2f}x) | {torch_us / ours:.1f}x "
            f"| {r['max_rel_err']:.1e} |"
        )
    lines += [
        "",
        "x copy = time / time of a copy of the bytes the backward alone moves (x and dout read, dx "
        "written), same run. Each step: forward, then dx, dweight and dbias.",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--min-run-time", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--name", default="cpu-train")
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    machine = benchmark.machine("cpu")
    header = (
        f"## cpu training step (forward + backward): {machine}, CPU kernels {cpu_isa()}\n\n"
        f"causal_conv1d_kernels {__version__}, torch {torch.__version__}, {datetime.date.today()}; "
        f"{args.dtype}, width 4, bias, SiLU, {torch.get_num_threads()} threads; median times"
    )
    print(header, flush=True)
    rows = run(dtype, args.min_run_time)
    os.makedirs(args.out_dir, exist_ok=True)
    base = os.path.join(args.out_dir, args.name)
    with open(base + ".md", "w") as f:
        f.write(markdown(rows, header))
    with open(base + ".json", "w") as f:
        json.dump(
            {
                "machine": machine,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "rows": rows,
            },
            f,
            indent=1,
        )
    plot(rows, f"cpu training step: {machine}", base + ".png")
    print(markdown(rows, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
