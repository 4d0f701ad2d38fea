"""Times both ops over the benchmark shapes against the copy floor (CONTRACT 4), the plain-torch
formulation and, where importable, the seed's Triton kernels and Dao-AILab's causal-conv1d.

    python -m benchmarks bench --device cpu            # CPU_CASES, all threads
    python -m benchmarks bench --device cpu --isas portable,avx2,avx512_bf16
    python -m benchmarks bench --device cuda           # GPU_CASES
    python -m benchmarks bench --device cpu --cases cpu-peer --sglang-sdist vllm-0.33.0.tar.gz

With --isas each CPU kernel set runs in its own process (the set is chosen once per process)
and the table puts them side by side, each against the copy measured in its own run.

Writes <out-dir>/<name>.md, .json and .png (ratios to the copy of the same bytes).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import tempfile

import torch
from causal_conv1d_kernels import __version__, cpu_isa, has_cuda_backend
from causal_conv1d_kernels.testing import benchmark

from . import child_env, command, report, subcommand_parser
from .peers import PEERS, engine_metadata, load_peer, triton_peers


def fla_implementations(case, inputs, fla) -> dict:
    """fla-core 0.6 as its layers call it: x as (1, tokens, dim) with cu_seqlens and its chunk
    table prepared beforehand, one initial state per sequence in its (N, dim, width) layout and
    the final states returned; decode on a batch-ordered (batch, dim, width) cache (fla has no
    cache indices)."""
    weight, bias, width = inputs["weight"], inputs["bias"], inputs["weight"].shape[1]
    gen = torch.Generator(device=weight.device).manual_seed(1)
    if case.op == "fwd":
        from fla.ops.utils.index import prepare_chunk_indices

        x = inputs["x"].t()[None]  # (1, tokens, dim), channel-last as the engines hold it
        cu = inputs["query_start_loc"].long()
        chunks = prepare_chunk_indices(cu, 64, cu_seqlens_cpu=cu.cpu())
        init = torch.randn(len(case.lengths), case.dim, width, generator=gen, device=x.device).to(
            x.dtype
        )
        return {
            "fla 0.6": lambda: fla.causal_conv1d(
                x,
                weight,
                bias,
                initial_state=init,
                output_final_state=True,
                activation="silu",
                cu_seqlens=cu,
                cu_seqlens_cpu=cu.cpu(),
                chunk_indices=chunks,
            )
        }
    cache = torch.randn(case.batch, case.dim, width, generator=gen, device=weight.device)
    cache = cache.to(inputs["x"].dtype)
    x = inputs["x"].clone()
    return {
        "fla 0.6": lambda: fla.causal_conv1d_update(
            x, cache, weight=weight, bias=bias, activation="silu"
        )
    }


def peer_implementations(case, inputs, peers, dao) -> dict:
    """name -> callable for the peers that can run this case, called as engines call them
    (the prefill's launch table built beforehand), on fresh state copies so that their
    in-place updates never disturb our inputs."""
    impls = {}
    if case.op == "fwd":
        args = dict(inputs, conv_states=inputs["conv_states"].clone())
        meta = engine_metadata(inputs["query_start_loc"])
        for name, peer in peers.items():
            impls[name] = lambda p=peer: p.causal_conv1d_fn(
                **args, activation="silu", metadata=meta
            )
        if dao is not None:
            x = inputs["x"][None]
            seq_idx = torch.repeat_interleave(
                torch.arange(len(case.lengths), dtype=torch.int32, device=x.device),
                torch.tensor(case.lengths, device=x.device),
            )[None]
            impls["dao"] = lambda: dao.causal_conv1d_fn(
                x, inputs["weight"], inputs["bias"], seq_idx=seq_idx, activation="silu"
            )
    else:
        # A copy of x too: the seed writes its outputs into x.
        args = dict(inputs, conv_state=inputs["conv_state"].clone(), x=inputs["x"].clone())
        out = torch.empty_like(inputs["x"])
        for name, peer in peers.items():
            # vLLM 0.33 treats line 0 as its null block (these rows are all real) and takes
            # out=; the seed writes into x (then outputs feed the next call's input).
            extra = {"null_block_id": None, "out": out} if name == "vllm 0.33" else {}
            impls[name] = lambda p=peer, e=extra: p.causal_conv1d_update(**args, **e)
        if dao is not None:
            # Dao takes int32 cache indices only.
            dao_args = dict(args, conv_state_indices=args["conv_state_indices"].int())
            impls["dao"] = lambda: dao.causal_conv1d_update(**dao_args)
    return impls


def _agrees(peer: str, case, out, expected, states, expected_states) -> bool:
    """Whether a peer's first call matched the reference (outputs within a couple of bf16
    ulps, states bit for bit); says so when not, and the peer is not timed."""
    close = torch.allclose(out.double(), expected.double(), atol=1.6e-2, rtol=1.6e-2)
    if close and torch.equal(states, expected_states):
        return True
    print(f"{peer} peer disagrees with the reference on {case.name}: not timed")
    return False


def cudnn_implementations(case, inputs, cudnn_ops) -> dict:
    """cuDNN frontend 1.32's `cudnn.ops.causal_conv1d_update` (CuTe DSL kernels), called as
    Dao's API is: bf16 rows, the cache lines as contiguous int32 indices, a new output per call,
    its own copy of the states (the channel-last (lines, dim, 3) view it accepts). On sm_90 only
    its update runs (its cu_seqlens prefill raises NotImplementedError there; its dense forward
    and backward need a libcudnn with cudnnCausalConv1dForward). Empty for other cases, or when
    its outputs or states disagree with the reference."""
    from causal_conv1d_kernels.testing.reference import causal_conv1d_update_ref

    x, weight, bias = inputs["x"], inputs["weight"], inputs["bias"]
    if case.op != "update" or x.dtype != torch.bfloat16:
        return {}
    states = inputs["conv_state"].clone()
    lines = inputs["conv_state_indices"].to(torch.int32).contiguous()

    def call():
        return cudnn_ops.causal_conv1d_update(
            x, states, weight, bias, "silu", conv_state_indices=lines
        )

    expected, expected_states = causal_conv1d_update_ref(
        x, inputs["conv_state"], weight, bias, "silu", conv_state_indices=lines
    )
    try:
        out = call()
    except Exception as e:  # noqa: BLE001 (a peer that rejects a case is reported)
        print(f"cudnn peer rejects {case.name}: {type(e).__name__}: {str(e)[:120]}")
        return {}
    if not _agrees("cudnn", case, out, expected, states, expected_states):
        return {}
    states.copy_(inputs["conv_state"])
    return {"cudnn 1.32": call}


def _sglang_cpu_args(case, inputs, packed, states) -> tuple:
    """The arguments of SGLang's CPU call (conv.cpp's, and our CPU API's) for the case."""
    x, bias = inputs["x"], inputs["bias"]
    if case.op == "fwd":
        qsl, lines = inputs["query_start_loc"].int(), inputs["cache_indices"].int()
        return (x, packed, bias, states, qsl, lines, inputs["has_initial_state"], True, -1, True)
    accepted = inputs.get("num_accepted_tokens")  # speculative rows: x (batch, tokens, dim)
    return (x, states, packed, bias, True, accepted, inputs["conv_state_indices"].int(), -1, True)


def sglang_implementations(case, inputs, peer) -> dict:
    """SGLang's CPU kernel (`python -m benchmarks sglang-peer`; None: not loaded) as the seed's
    API calls it: weights packed beforehand, int32 indices, a fresh output per call (its only
    mode), its own copy of the states; and the same call through our SGLang dialect's CPU API,
    with our packed weights and a copy of the states of its own. Empty where conv.cpp cannot
    run the case (it needs x's dtype for weights and bias, width 4, dim a multiple of 32); no
    'sglang' column where its outputs or states disagree with the reference."""
    from causal_conv1d_kernels.sglang import cpu as ours_cpu
    from causal_conv1d_kernels.testing.reference import (
        causal_conv1d_fn_ref,
        causal_conv1d_update_ref,
        sglang_update_ref,
    )

    weight, bias = inputs["weight"], inputs["bias"]
    if weight.shape[1] != 4 or weight.shape[0] % 32 or weight.dtype != torch.bfloat16:
        return {}
    key = "conv_states" if case.op == "fwd" else "conv_state"
    ours = ours_cpu.causal_conv1d_fwd_cpu if case.op == "fwd" else ours_cpu.causal_conv1d_update_cpu
    ours_packed = ours_cpu.causal_conv1d_weight_pack(weight)
    ours_args = _sglang_cpu_args(case, inputs, ours_packed, inputs[key].clone())
    impls = {"ours sglang api": lambda: ours(*ours_args)}
    if peer is None:
        return impls
    states = inputs[key].clone()
    args = _sglang_cpu_args(case, inputs, peer.pack(weight.contiguous()), states)
    if case.op == "fwd":
        expected, expected_states = causal_conv1d_fn_ref(
            *(inputs[k] for k in ("x", "weight", "bias", "conv_states", "query_start_loc")),
            inputs["cache_indices"],
            inputs["has_initial_state"],
            "silu",
        )
        call = peer.fwd
    elif case.spec_tokens:
        expected, expected_states, _, _ = sglang_update_ref(
            inputs["x"].transpose(1, 2),
            inputs["conv_state"],
            weight,
            bias,
            True,
            inputs["conv_state_indices"],
            inputs["num_accepted_tokens"],
        )
        expected = expected.transpose(1, 2)
        call = peer.update
    else:
        expected, expected_states = causal_conv1d_update_ref(
            inputs["x"],
            inputs["conv_state"],
            weight,
            bias,
            "silu",
            conv_state_indices=inputs["conv_state_indices"],
        )
        call = peer.update
    if not _agrees("sglang", case, call(*args), expected, states, expected_states):
        return impls
    states.copy_(inputs[key])
    return {"sglang": lambda: call(*args), **impls}


def run(
    device,
    cases,
    threads,
    min_run_time,
    peers_dir=None,
    timer="direct",
    sglang=None,
    rounds=1,
    sglang_api=False,
    columns=None,
):
    """The rows of `cases`. sglang: conv.cpp's ops (sglang_peer.load), which bring the
    'sglang' and 'ours sglang api' columns; sglang_api: the latter without the peer; columns:
    only these implementations (None: all)."""
    with_peers = peers_dir is not None and device == "cuda"
    # vLLM 0.33 without PDL: it only pays after a dependent kernel, which these single calls
    # do not have. (Turning it off did not explain the graph-timed 1x8192 prefill below the
    # copy floor: 45 us with PDL, 25 us without, 128 us called directly; check-peers.)
    peers = triton_peers(peers_dir if with_peers else None, vllm_pdl=False)
    dao = load_peer(None, "causal_conv1d") if with_peers else None
    # fla-core's Triton causal_conv1d.
    fla = load_peer(None, "fla.modules.causal_conv1d") if with_peers else None
    # cuDNN frontend 1.32's CuTe DSL ops: nvidia-cudnn-frontend, nvidia-cutlass-dsl and its
    # -libs-base/-core/-cu13 wheels, apache-tvm-ffi and cuda-bindings unpacked into one folder,
    # on PYTHONPATH after <folder>/nvidia_cutlass_dsl/dsl_packages (the wheel's .pth is not
    # read from PYTHONPATH). 71 MB with xz: on the GPU machine, carried in two parts over two
    # calls on one warm machine (docs/DESIGN_LOG.md, session 9).
    cudnn_ops = load_peer(None, "cudnn.ops") if with_peers else None
    ours_available = device == "cpu" or has_cuda_backend()
    flushed = device == "cuda" and timer in ("flushed", "direct")
    rows = []
    for case in cases:
        inputs = benchmark.make_inputs(case, device)
        nbytes = benchmark.bytes_moved(case, inputs)
        copy_fn = benchmark.copy_floor(nbytes, device)
        impls = benchmark.implementations(case, inputs)
        if not ours_available:
            impls = {name: fn for name, fn in impls.items() if not name.startswith("ours")}
        if device == "cuda":
            impls.pop("torch", None)  # minutes of plain torch per row tell nothing new
        impls.update(peer_implementations(case, inputs, peers, dao))
        if fla is not None:
            impls.update(fla_implementations(case, inputs, fla))
        if cudnn_ops is not None:
            impls.update(cudnn_implementations(case, inputs, cudnn_ops))
        if device == "cpu" and (sglang is not None or sglang_api):
            impls.update(sglang_implementations(case, inputs, sglang))
        if columns is not None:
            impls = {name: fn for name, fn in impls.items() if name in columns}

        def time_us(fn, info=None):
            if flushed:
                return benchmark.time_cuda_flushed_us(fn, min_run_time, info, timer != "direct")
            return benchmark.time_us(fn, device, threads, min_run_time, info)

        row = {"case": case.name, "bytes": nbytes}
        # rounds > 1: the copy and every implementation timed in turn, round after round,
        # each keeping its best median, so that a slow phase of a shared host (the 2-vCPU
        # dev box: two threads at one thread's speed for seconds at a time) does not land on
        # one column only.
        for _ in range(rounds):
            row["copy_us"] = min(row.get("copy_us", float("inf")), time_us(copy_fn))
            for name, fn in impls.items():
                if f"{name}_error" not in row:
                    _time_impl(row, name, fn, time_us, timer, flushed, case)
        rows.append(row)
        print(report.format_row(row), flush=True)
    return rows


def _time_impl(row, name, fn, time_us, timer, flushed, case):
    """One timing of one implementation into row (its best median so far, or its error)."""
    try:
        info = {}
        best = row.get(f"{name}_us") or float("inf")
        row[f"{name}_us"] = min(best, time_us(fn, info))
        if timer != "direct" and not info.get("graph", True):
            row[f"{name}_timing"] = "python"
        if flushed and case.op == "update" and case.batch == 1:
            host = benchmark.host_us(fn)
            row[f"{name}_host_us"] = min(row.get(f"{name}_host_us", host), host)
    except Exception as e:  # noqa: BLE001 (a peer that rejects a case is reported)
        row[f"{name}_us"] = None
        row[f"{name}_error"] = f"{type(e).__name__}: {str(e)[:120]}"


def _every_cpu() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, range(os.cpu_count() or 1))


def _child_rows(out_dir: str, name: str, argv: list, **settings) -> list:
    """The rows of `bench` run with argv in a child process (its results in out_dir as name),
    with this process's thread count and every CPU: under OMP_PROC_BIND, loading torch bound
    this process to CPU 0, which a child would inherit (and run one thread)."""
    argv = [*argv, "--threads", str(torch.get_num_threads()), "--out-dir", out_dir]
    child = command("bench", *argv, "--name", name)
    subprocess.run(child, env=child_env(**settings), check=True, preexec_fn=_every_cpu)
    with open(os.path.join(out_dir, f"{name}.json")) as f:
        return json.load(f)["rows"]


def run_isas(args, isas, stem):
    """Runs this subcommand once per CPU kernel set; returns rows with one column per set."""
    merged = None
    argv = ["--device", "cpu", "--no-peers", "--min-run-time", str(args.min_run_time)]
    argv += ["--only", args.only] if args.only else []
    with tempfile.TemporaryDirectory(prefix="bench-isas-") as out_dir:
        for isa in isas:
            rows = _child_rows(out_dir, f"{stem}-{isa}", argv, CAUSAL_CONV1D_CPU_ISA=isa)
            if merged is None:
                keep = ("case", "bytes", "copy_us", "torch_us")
                merged = [{k: v for k, v in row.items() if k in keep} for row in rows]
            for row, own in zip(merged, rows):
                # Scaled to the first run's copy, so every column reads against one copy time.
                row[f"{isa}_us"] = own["ours_us"] * row["copy_us"] / own["copy_us"]
    return merged


def run_isolated(args, stem):
    """The CPU rows with conv.cpp timed in a process of its own, so that its OpenMP runtime
    (the system's libgomp) never runs beside torch's in the process that times ours. Ours (and
    our SGLang API) in one child, conv.cpp in another, each beside its own copy; conv.cpp's
    times are its own, unscaled."""
    argv = ["--device", "cpu", "--cases", args.cases or "cpu-peer"]
    argv += ["--min-run-time", str(args.min_run_time), "--rounds", str(args.rounds)]
    argv += ["--only", args.only] if args.only else []
    with tempfile.TemporaryDirectory(prefix="bench-isolated-") as out_dir:
        ours = _child_rows(out_dir, f"{stem}-ours", [*argv, "--sglang-api", "--no-peers"])
        peer_argv = [*argv, "--sglang-sdist", args.sglang_sdist, "--columns", "sglang"]
        peer = _child_rows(out_dir, f"{stem}-peer", [*peer_argv, "--no-peers"])
    for row, peer_row in zip(ours, peer):
        for key in ("sglang_us", "sglang_error"):
            if key in peer_row:
                row[key] = peer_row[key]
        row["sglang_own_copy"] = peer_row["copy_us"]  # us; no "_us": not a column
    return ours


def main(argv=None) -> int:
    parser = subcommand_parser("bench", __doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds per timing")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="time the copy and every implementation in turn this many times, keeping each "
        "one's best median (for shared, noisy hosts)",
    )
    parser.add_argument(
        "--cases",
        choices=["cpu", "cpu-peer", "gpu"],
        default=None,
        help="case list (default: by device; cpu-peer: the CPU shapes compared with SGLang)",
    )
    parser.add_argument(
        "--only", default=None, help="comma-separated substrings: run the cases whose name has one"
    )
    parser.add_argument("--name", default=None, help="output file stem (default: by machine)")
    parser.add_argument("--out-dir", default=report.RESULTS)
    parser.add_argument("--peers-dir", default=PEERS, help="folder holding vllm_triton_seed.py")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument(
        "--sglang-sdist",
        default=None,
        help="CPU: vLLM 0.33's sdist (vllm-0.33.0.tar.gz), to build SGLang's kernel as a peer",
    )
    parser.add_argument(
        "--isolate-peer",
        action="store_true",
        help="CPU, with --sglang-sdist: conv.cpp timed in a process of its own",
    )
    parser.add_argument(
        "--sglang-api",
        action="store_true",
        help="CPU: our SGLang CPU API's column without conv.cpp loaded",
    )
    parser.add_argument(
        "--columns", default=None, help="comma-separated: only these implementations"
    )
    parser.add_argument(
        "--timer",
        choices=["direct", "flushed", "graph"],
        default="direct",
        help="CUDA: L2 flushed before every call and each call launched directly, as "
        "triton.testing.do_bench does (CONTRACT 4, the default); the same with each call "
        "replayed from a graph of its own (as engines run decode); or CUDA graphs of 20 calls "
        "replayed (warm L2)",
    )
    parser.add_argument(
        "--isas", default=None, help="CPU only: comma-separated kernel sets to run side by side"
    )
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    kind = args.cases or ("cpu" if args.device == "cpu" else "gpu")
    cases = {
        "cpu": benchmark.CPU_CASES,
        "cpu-peer": benchmark.CPU_PEER_CASES,
        "gpu": benchmark.GPU_CASES,
    }[kind]
    if args.only:
        cases = [c for c in cases if any(part and part in c.name for part in args.only.split(","))]
    machine = benchmark.machine(args.device)
    isa = f", CPU kernels {cpu_isa()}" if args.device == "cpu" else ""
    header = (
        f"## {args.device}: {machine}{isa}\n\ncausal_conv1d_kernels {__version__}, torch "
        f"{torch.__version__}, {datetime.date.today()}; bf16, width 4, bias, SiLU; "
        "median times; every call under torch.inference_mode(), as engines make them"
    )
    if args.rounds > 1:
        header += f"; best median of {args.rounds} interleaved rounds per column"
    if args.device == "cpu":
        # Unbound, two OpenMP threads on the 2-vCPU dev box ran at one thread's speed in
        # about a third of the processes (decode batch 64: 131 or 200 us); bound (as SGLang's
        # CPU backend binds its threads to cores), 126-134 in short processes, though the slow
        # mode still came back for whole timings in long runs (docs/DESIGN_LOG.md).
        bind = os.environ.get("OMP_PROC_BIND")
        header += f"; OpenMP threads {f'bound (OMP_PROC_BIND={bind})' if bind else 'unbound'}"
    if args.device == "cuda":
        header += (
            "; L2 flushed before every call (a 256 MiB buffer zeroed between calls, outside "
            "the events), each call replayed from a CUDA graph of its own (as engines run "
            "decode; host time stays out), Triton peers given their launch table beforehand "
            "as engines do (vLLM 0.33 without PDL, which has no preceding kernel to overlap "
            "here)"
            if args.timer == "flushed"
            else "; L2 flushed before every call (a 256 MiB buffer zeroed between calls, "
            "outside the events), each call launched directly as triton.testing.do_bench does "
            "(CONTRACT 4), Triton peers given their launch table beforehand as engines do "
            "(vLLM 0.33 without PDL)"
            if args.timer == "direct"
            else "; CUDA graphs of 20 calls replayed (warm L2)"
        )
    stem = args.name or f"{args.device}-{kind}"
    if args.isas:
        isas = args.isas.split(",")
        header = header.replace(f", CPU kernels {cpu_isa()}", "")
        header += (
            f"; CPU kernel sets {', '.join(isas)} each in its own run, its time scaled "
            "to the first run's copy (x copy is against its own run's copy)"
        )
        rows = run_isas(args, isas, stem)
    elif args.isolate_peer and args.sglang_sdist and args.device == "cpu":
        header += (
            "; conv.cpp ('sglang') timed in a process of its own (no second OpenMP runtime "
            "beside ours; its x copy is against this table's copy, its own process's copy is "
            "sglang_own_copy in the JSON)"
        )
        print(header, flush=True)
        rows = run_isolated(args, stem)
    else:
        print(header, flush=True)
        peers_dir = None if args.no_peers else args.peers_dir
        sglang = None
        if args.sglang_sdist and args.device == "cpu":
            from . import sglang_peer

            sglang = sglang_peer.load(args.sglang_sdist)
        # Under inference mode, as engines' model runners call the ops (SGLang's scheduler
        # loop, vLLM's worker): grad mode is off and the tensors carry no autograd keys.
        with torch.inference_mode():
            rows = run(
                args.device,
                cases,
                args.threads,
                args.min_run_time,
                peers_dir,
                args.timer,
                sglang,
                args.rounds,
                args.sglang_api,
                args.columns.split(",") if args.columns else None,
            )

    meta = {
        "device": args.device,
        "machine": machine,
        "torch": torch.__version__,
        "version": __version__,
        "date": str(datetime.date.today()),
        "threads": torch.get_num_threads(),
        "omp_proc_bind": os.environ.get("OMP_PROC_BIND"),
    }
    report.write(
        args.out_dir, stem, report.markdown(rows, header), meta, rows, f"{args.device}: {machine}"
    )
    return 0
