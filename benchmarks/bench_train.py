"""Training step of the conv: forward, and forward + backward, of causal_conv1d_kernels.dao
on training shapes, both layouts, in one run, against a copy of the same bytes in the same run.

CPU: beside plain PyTorch autograd of the same formulation (depthwise F.conv1d with left
padding, SiLU) where it has one; median of repeated runs.
CUDA: beside Dao-AILab's causal_conv1d 1.7 and fla-core 0.6 when installed, each called as its
users call it (Dao's causal_conv1d_fn on the same (batch, dim, seqlen) tensor, fla's
causal_conv1d on its (batch, seqlen, dim) view; fla only on the plain cases). Two figures per
call (SPEC 4): GPU time, the forward or the whole step (forward, then torch.autograd.grad)
captured in a CUDA graph of its own and replayed with the L2 flushed before every replay; and
host time, 1000 eager calls back to back without a sync, per call.

    python -m benchmarks train --name cpu-dev-xeon-2core-train
    python -m benchmarks train --device cuda --name gpu-h200-train

Writes <out-dir>/<name>.md, .json and .png.
"""

from __future__ import annotations

import dataclasses
import datetime

import torch
import torch.nn.functional as F
from causal_conv1d_kernels import __version__, cpu_isa, dao
from causal_conv1d_kernels.testing import benchmark
from causal_conv1d_kernels.testing.reference import dao_fn_ref

from . import report, subcommand_parser
from .peers import load_peer


@dataclasses.dataclass(frozen=True)
class TrainCase:
    batch: int
    seqlen: int
    dim: int
    layout: str  # "channel_last" or "channel_first"
    width: int = 4
    packed: bool = False  # seq_idx: sequences of random lengths packed in each row
    states: bool = False  # initial states in, final states out, and both their gradients

    @property
    def name(self) -> str:
        extras = [f"W {self.width}"] if self.width != 4 else []
        extras += ["seq_idx"] if self.packed else []
        extras += ["initial + final states"] if self.states else []
        layout = self.layout.replace("_", "-")
        return f"{self.batch}x{self.seqlen}, D {self.dim}, {', '.join([layout, *extras])}"


_SMALL, _LARGE = (4, 2048, 4096), (8, 4096, 8192)
CASES = {
    "cpu": [
        TrainCase(*_SMALL, "channel_last"),
        TrainCase(*_SMALL, "channel_first"),
        TrainCase(8, 1024, 2048, "channel_last"),
        TrainCase(8, 1024, 2048, "channel_last", packed=True),
        TrainCase(8, 1024, 2048, "channel_last", states=True),
    ],
    "cuda": [
        TrainCase(*_SMALL, "channel_last"),
        TrainCase(*_SMALL, "channel_first"),
        TrainCase(*_LARGE, "channel_last"),
        TrainCase(*_LARGE, "channel_first"),
        TrainCase(*_SMALL, "channel_last", width=2),
        TrainCase(*_SMALL, "channel_first", width=2),
        TrainCase(*_SMALL, "channel_last", width=3),
        TrainCase(*_SMALL, "channel_first", width=3),
        TrainCase(*_SMALL, "channel_last", packed=True),
        TrainCase(*_SMALL, "channel_last", states=True),
        TrainCase(*_LARGE, "channel_last", packed=True),
        TrainCase(*_LARGE, "channel_last", states=True),
    ],
}


def torch_forward(x, weight, bias, seq_idx=None, initial_states=None):
    """Plain autograd: depthwise conv1d over the left-padded input, SiLU (plain cases only)."""
    if seq_idx is not None or initial_states is not None:
        return None
    width = weight.shape[1]
    y = F.conv1d(F.pad(x, (width - 1, 0)), weight.unsqueeze(1), bias, groups=x.shape[1])
    return F.silu(y)


def _dao_api(fn):
    """A forward of Dao's causal_conv1d_fn API: out, or (out, final states) with states."""

    def forward(x, weight, bias, seq_idx=None, initial_states=None):
        return fn(
            x,
            weight,
            bias,
            seq_idx=seq_idx,
            initial_states=initial_states,
            return_final_states=initial_states is not None,
            activation="silu",
        )

    return forward


def implementations(device) -> dict:
    """name -> forward(x, weight, bias, seq_idx, initial_states) with autograd, as each
    library's users call it; None where the library has no such call."""
    impls = {"ours": _dao_api(dao.causal_conv1d_fn)}
    if device == "cpu":
        impls["torch"] = torch_forward
        return impls
    peer = load_peer(None, "causal_conv1d")
    if peer is not None:
        impls["dao 1.7"] = _dao_api(peer.causal_conv1d_fn)
    fla = load_peer(None, "fla.modules.causal_conv1d")
    if fla is not None:

        def fla_forward(x, weight, bias, seq_idx=None, initial_states=None):
            if seq_idx is not None or initial_states is not None:
                return None  # fla packs sequences by cu_seqlens and keeps states its own way
            # fla holds x as (batch, seqlen, dim); the output comes back in our view of it.
            out = fla.causal_conv1d(x.transpose(1, 2), weight, bias, activation="silu")[0]
            return out.transpose(1, 2)

        impls["fla 0.6"] = fla_forward
    return impls


def _packed_ids(batch: int, seqlen: int, generator) -> torch.Tensor:
    """(batch, seqlen) int32: each row cut into sequences of random lengths (ids count up
    along the row, as a packed training batch's seq_idx does)."""
    ids = torch.empty(batch, seqlen, dtype=torch.int32)
    for b in range(batch):
        cuts = torch.randint(1, seqlen, (7,), generator=generator).unique().tolist()
        for i, (lo, hi) in enumerate(zip([0, *cuts], [*cuts, seqlen])):
            ids[b, lo:hi] = i
    return ids


def make(case: TrainCase, dtype, device) -> dict:
    """The step's tensors: x, weight, bias (and initial_states) requiring grad; dout (and
    dfinal, the final states' incoming gradient); seq_idx. Channel-last states, as Dao's
    API wants them."""
    g = torch.Generator().manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    b, s, d, w = case.batch, case.seqlen, case.dim, case.width
    channel_last = case.layout == "channel_last"
    x = randn(b, s, d).transpose(1, 2) if channel_last else randn(b, d, s)
    dout = randn(b, s, d).transpose(1, 2) if channel_last else randn(b, d, s)
    t = dict(x=x, weight=randn(d, w) / 2, bias=randn(d), dout=dout)
    if case.packed:
        t["seq_idx"] = _packed_ids(b, s, g).to(device)
    if case.states:
        t["initial_states"] = randn(b, w - 1, d).transpose(1, 2)
        t["dfinal"] = randn(b, w - 1, d).transpose(1, 2)
    for name in ("x", "weight", "bias", "initial_states"):
        if name in t:
            t[name].requires_grad_()
    return t


def cases(device, dtype, only=None):
    """(case, tensors) of the device's cases whose name contains `only` (every case when
    None), each case's tensors made when it is reached."""
    for case in CASES[device]:
        if only is None or only in case.name:
            yield case, make(case, dtype, device)


def _forward_call(forward, t):
    return forward(t["x"], t["weight"], t["bias"], t.get("seq_idx"), t.get("initial_states"))


def step(forward, t):
    """The training step: the forward, then the gradients of x, weight, bias (and the
    initial states) through torch.autograd.grad (nothing accumulates: capturable)."""
    result = _forward_call(forward, t)
    inputs = [t[n] for n in ("x", "weight", "bias", "initial_states") if n in t]
    if "initial_states" in t:
        return torch.autograd.grad(result, inputs, (t["dout"], t["dfinal"]))
    return torch.autograd.grad(result, inputs, t["dout"])


def _reference_grads(t):
    """The float64 reference's gradients (testing.reference.dao_fn_ref's autograd)."""
    leaves = {n: t[n].detach().double().requires_grad_() for n in ("x", "weight", "bias")}
    if "initial_states" in t:
        leaves["initial_states"] = t["initial_states"].detach().double().requires_grad_()
    out, final = dao_fn_ref(
        leaves["x"],
        leaves["weight"],
        leaves["bias"],
        seq_idx=t.get("seq_idx"),
        initial_states=leaves.get("initial_states"),
        activation="silu",
    )
    outputs, grads = [out], [t["dout"].double()]
    if "initial_states" in t:
        outputs.append(final)
        grads.append(t["dfinal"].double())
    return torch.autograd.grad(outputs, list(leaves.values()), grads)


def phase_bytes(case: TrainCase, t) -> dict:
    """The bytes each phase must move: forward x read and out written; forward + backward
    that plus x and dout read and dx written (the filter, seq_idx and states are small)."""
    size = t["x"].numel() * t["x"].element_size()
    return {"fwd": 2 * size, "fwd+bwd": 5 * size}


def run(device, dtype, min_run_time, threads, only=None, host_calls=1000, columns=None):
    impls = implementations(device)
    if columns is not None:
        impls = {n: f for n, f in impls.items() if n in columns}
    rows = []
    for case, t in cases(device, dtype, only):
        expected = _reference_grads(t)
        # The libraries that have this call (one forward each; None: no such call).
        able = {n: f for n, f in impls.items() if _forward_call(f, t) is not None}
        for phase, nbytes in phase_bytes(case, t).items():
            row = {"case": f"{phase} {case.name}", "bytes": nbytes, "reference": "float64"}
            copy = benchmark.copy_floor(nbytes, device)
            if device == "cuda":
                row["copy_us"] = benchmark.time_cuda_flushed_us(copy, min_run_time)
            else:
                row["copy_us"] = benchmark.time_us(copy, device, threads, min_run_time)
            for name, forward in able.items():
                if phase == "fwd":
                    fn = lambda f=forward, t=t: _forward_call(f, t)  # noqa: E731
                else:
                    fn = lambda f=forward, t=t: step(f, t)  # noqa: E731
                try:
                    if device == "cuda":
                        info = {}
                        row[f"{name}_us"] = benchmark.time_cuda_flushed_us(fn, min_run_time, info)
                        if not info["graph"]:
                            row[f"{name}_timing"] = "python"
                        row[f"{name}_host_us"] = benchmark.host_us(fn, host_calls)
                    else:
                        row[f"{name}_us"] = benchmark.time_us(fn, device, threads, min_run_time)
                except Exception as e:  # noqa: BLE001 (a peer that rejects a case is reported)
                    row[f"{name}_us"] = None
                    row[f"{name}_error"] = f"{type(e).__name__}: {str(e)[:120]}"
                    continue
                if phase == "fwd+bwd":
                    got = step(forward, t)
                    row[f"{name}_rel_err"] = max(
                        float((a.double() - e).abs().max() / (e.abs().max() + 1e-30))
                        for a, e in zip(got, expected)
                    )
            rows.append(row)
            print(report.format_row(row, digits=0), flush=True)
    return rows


def profile(device, dtype, pattern, kernels) -> None:
    """Each implementation on the chosen cases: the forward and the step twice each, for ncu;
    or (kernels) a torch.profiler table of the kernels of one step."""
    impls = {n: f for n, f in implementations(device).items() if not n.startswith("fla")}
    for case, t in cases(device, dtype, pattern):
        for name, forward in impls.items():
            step(forward, t)  # warm-up: compilation, allocator
            if kernels:
                with torch.profiler.profile() as prof:
                    step(forward, t)
                    torch.cuda.synchronize()
                print(f"kernels of {name}, fwd+bwd {case.name}:", flush=True)
                table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=12)
                print(table, flush=True)
                continue
            for phase in ("fwd", "fwd+bwd"):
                print(f"profiling {name}, {phase} {case.name}", flush=True)
                for _ in range(2):
                    _forward_call(forward, t) if phase == "fwd" else step(forward, t)
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
    parser.add_argument("--columns", help="comma-separated: only these implementations")
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
        kernels = "CUDA"
        timing = (
            "GPU time: each call captured in a CUDA graph of its own, replayed with the L2 "
            "flushed before every replay; median"
        )
    else:
        kernels = f"CPU kernels {cpu_isa()}"
        timing = f"{torch.get_num_threads()} threads; median"
    header = (
        f"## {args.device} training step (forward + backward): {machine}, {kernels}\n\n"
        f"causal_conv1d_kernels {__version__}, torch {torch.__version__}, {datetime.date.today()}; "
        f"{args.dtype}, width 4 unless the case says, bias, SiLU; {timing}"
    )
    print(header, flush=True)
    columns = args.columns.split(",") if args.columns else None
    rows = run(args.device, dtype, args.min_run_time, args.threads, args.only, columns=columns)
    text = report.markdown(rows, header, kind="train")
    meta = {"machine": machine, "torch": torch.__version__, "threads": torch.get_num_threads()}
    title = f"{args.device} training step: {machine}"
    report.write(args.out_dir, args.name or f"{args.device}-train", text, meta, rows, title)
    print(text)
    return 0
