"""Training step of the conv: forward, and forward + backward, of causal_conv1d_kernels.dao
on training shapes, both layouts, in one run, against a copy of the same bytes in the same run.

CPU: beside plain PyTorch autograd of the same formulation (depthwise F.conv1d with left
padding, SiLU); median of repeated runs.
CUDA: beside Dao-AILab's causal_conv1d 1.7 and fla-core 0.6 when installed, each called as its
users call it (Dao's causal_conv1d_fn on the same (batch, dim, seqlen) tensor, fla's
causal_conv1d on its (batch, seqlen, dim) view); CONTRACT 4's timer (L2 flushed before every
call, direct launches).

    python -m benchmarks train --name cpu-dev-xeon-2core-train
    python -m benchmarks train --device cuda --name gpu-h200-train

Writes <out-dir>/<name>.md, .json and .png.
"""

from __future__ import annotations

import datetime

import torch
import torch.nn.functional as F
from causal_conv1d_kernels import __version__, cpu_isa, dao
from causal_conv1d_kernels.testing import benchmark

from . import report, subcommand_parser
from .peers import load_peer

# (batch, seqlen, dim, layout)
CASES = {
    "cpu": [
        (4, 2048, 4096, "channel_last"),
        (4, 2048, 4096, "channel_first"),
        (8, 1024, 2048, "channel_last"),
    ],
    "cuda": [
        (4, 2048, 4096, "channel_last"),
        (4, 2048, 4096, "channel_first"),
        (8, 4096, 8192, "channel_last"),
        (8, 4096, 8192, "channel_first"),
    ],
}


def torch_forward(x, weight, bias):
    """Plain autograd: depthwise conv1d over the left-padded input, SiLU."""
    width = weight.shape[1]
    y = F.conv1d(F.pad(x, (width - 1, 0)), weight.unsqueeze(1), bias, groups=x.shape[1])
    return F.silu(y)


def implementations(device) -> dict:
    """name -> forward(x, weight, bias) with autograd, as each library's users call it."""
    impls = {"ours": lambda x, w, b: dao.causal_conv1d_fn(x, w, b, activation="silu")}
    if device == "cpu":
        impls["torch"] = torch_forward
        return impls
    peer = load_peer(None, "causal_conv1d")
    if peer is not None:
        impls["dao 1.7"] = lambda x, w, b: peer.causal_conv1d_fn(x, w, b, activation="silu")
    fla = load_peer(None, "fla.modules.causal_conv1d")
    if fla is not None:
        # fla holds x as (batch, seqlen, dim); the output comes back in our view of it.
        impls["fla 0.6"] = lambda x, w, b: fla.causal_conv1d(
            x.transpose(1, 2), w, b, activation="silu"
        )[0].transpose(1, 2)
    return impls


def make(batch, seqlen, dim, layout, dtype, device):
    g = torch.Generator(device=device).manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g, device=device).to(dtype)

    x = (
        randn(batch, seqlen, dim).transpose(1, 2)
        if layout == "channel_last"
        else randn(batch, dim, seqlen)
    )
    weight = randn(dim, 4) / 2
    bias = randn(dim)
    dout = randn(*x.shape)
    if layout == "channel_last":  # the gradient arrives in the output's layout
        dout = dout.transpose(1, 2).contiguous().transpose(1, 2)
    return [t.requires_grad_() for t in (x, weight, bias)] + [dout]


def cases(device, dtype, only=None):
    """(name, inputs) of the device's cases whose name contains `only` (every case when None),
    each case's inputs made when it is reached."""
    for batch, seqlen, dim, layout in CASES[device]:
        shape = f"{batch}x{seqlen}, D {dim}, {layout.replace('_', '-')}"
        if only is None or only in shape:
            yield shape, make(batch, seqlen, dim, layout, dtype, device)


def step(forward, x, weight, bias, dout):
    return torch.autograd.grad(forward(x, weight, bias), (x, weight, bias), dout)


def run(device, dtype, min_run_time, threads, only=None):
    def time_us(fn):
        if device == "cuda":
            return benchmark.time_cuda_flushed_us(fn, min_run_time, graph=False)
        return benchmark.time_us(fn, device, threads, min_run_time)

    impls = implementations(device)
    rows = []
    for shape, args in cases(device, dtype, only):
        x, weight, bias, dout = args
        expected = step(
            torch_forward,
            *[t.detach().float().requires_grad_() for t in (x, weight, bias)],
            dout.float(),
        )
        size = x.numel() * x.element_size()
        # forward: x read, out written; backward: x and dout read, dx written.
        for phase, nbytes in (("fwd", 2 * size), ("fwd+bwd", 5 * size)):
            row = {"case": f"{phase} {shape}", "bytes": nbytes}
            row["copy_us"] = time_us(benchmark.copy_floor(nbytes, device))
            for name, forward in impls.items():
                if phase == "fwd":
                    fn = lambda f=forward, a=args: f(*a[:3])  # noqa: E731
                else:
                    fn = lambda f=forward, a=args: step(f, *a)  # noqa: E731
                try:
                    row[f"{name}_us"] = time_us(fn)
                except Exception as e:  # noqa: BLE001 (a peer that rejects a case is reported)
                    row[f"{name}_us"] = None
                    row[f"{name}_error"] = f"{type(e).__name__}: {str(e)[:120]}"
                    continue
                if phase == "fwd+bwd":
                    got = step(forward, *args)
                    row[f"{name}_rel_err"] = max(
                        float((a.float() - e).abs().max() / (e.abs().max() + 1e-30))
                        for a, e in zip(got, expected)
                    )
            rows.append(row)
            print(report.format_row(row, digits=0), flush=True)
    return rows


def profile(device, dtype, pattern, kernels) -> None:
    """Each implementation on the chosen cases: the forward and the step twice each, for ncu;
    or (kernels) a torch.profiler table of the kernels of one step."""
    impls = {n: f for n, f in implementations(device).items() if not n.startswith("fla")}
    for shape, args in cases(device, dtype, pattern):
        for name, forward in impls.items():
            step(forward, *args)  # warm-up: compilation, allocator
            if kernels:
                with torch.profiler.profile() as prof:
                    step(forward, *args)
                    torch.cuda.synchronize()
                print(f"kernels of {name}, fwd+bwd {shape}:", flush=True)
                table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=12)
                print(table, flush=True)
                continue
            for phase in ("fwd", "fwd+bwd"):
                print(f"profiling {name}, {phase} {shape}", flush=True)
                for _ in range(2):
                    forward(*args[:3]) if phase == "fwd" else step(forward, *args)
                torch.cuda.synchronize()


def main(argv=None) -> int:
    parser = subcommand_parser("train", __doc__)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--min-run-time", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--name", default=None)
    parser.add_argument("--out-dir", default=report.RESULTS)
    parser.add_argument("--only", help="only the cases whose name contains this substring")
    parser.add_argument(
        "--profile",
        metavar="SUBSTRING",
        help="no timing: run each implementation's forward and forward + backward twice, for "
        "ncu to capture; only the cases whose name contains SUBSTRING",
    )
    parser.add_argument(
        "--kernels",
        action="store_true",
        help="with --profile: list the kernels of one forward + backward (torch.profiler) instead",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    if args.profile is not None:
        profile(args.device, dtype, args.profile, args.kernels)
        return 0
    machine = benchmark.machine(args.device)
    if args.device == "cuda":
        kernels, timing = "CUDA", "L2 flushed before every call, direct launches; median"
    else:
        kernels = f"CPU kernels {cpu_isa()}"
        timing = f"{torch.get_num_threads()} threads; median"
    header = (
        f"## {args.device} training step (forward + backward): {machine}, {kernels}\n\n"
        f"causal_conv1d_kernels {__version__}, torch {torch.__version__}, {datetime.date.today()}; "
        f"{args.dtype}, width 4, bias, SiLU; {timing}"
    )
    print(header, flush=True)
    rows = run(args.device, dtype, args.min_run_time, args.threads, args.only)
    text = report.markdown(rows, header, kind="train")
    meta = {"machine": machine, "torch": torch.__version__, "threads": torch.get_num_threads()}
    title = f"{args.device} training step: {machine}"
    report.write(args.out_dir, args.name or f"{args.device}-train", text, meta, rows, title)
    print(text)
    return 0
