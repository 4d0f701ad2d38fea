"""Benchmark machinery shared by ``python -m causal_conv1d_kernels`` and ``benchmarks/``:
the benchmark cases (CONTRACT 4), their inputs, the bytes each must move, and timers.

Every time is reported next to the copy floor: a device copy of half the bytes the op moves
(x read + out written + states read and written), so the copy moves as many bytes as the op.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import random
import statistics
import time
import warnings
from typing import Callable

import torch

from ..ops import causal_conv1d_fn, causal_conv1d_update
from . import baseline


@dataclasses.dataclass
class Case:
    name: str
    op: str  # "fwd" or "update"
    dim: int
    lengths: tuple = ()  # fwd: tokens per sequence
    batch: int = 0  # update: rows
    init_every: int = 1  # fwd: every n-th sequence has an initial state
    width: int = 4
    dtype: torch.dtype = torch.bfloat16
    # update: the states channel-major, (lines, dim, width-1) contiguous (Dao's layout,
    # SGLang's CUDA pool), instead of the engines' token-major stride(1) == 1
    channel_major: bool = False
    # update: speculative rows of this many tokens, x (batch, tokens, dim) with
    # num_accepted_tokens, as SGLang's CPU API takes them (0: one token per row)
    spec_tokens: int = 0


def _mixed_lengths(n: int, lo: int, hi: int, seed: int = 0) -> tuple:
    rng = random.Random(seed)
    return tuple(rng.randint(lo, hi) for _ in range(n))


GPU_CASES = [
    Case("prefill 1x8192, D 8192", "fwd", 8192, lengths=(8192,)),
    Case("prefill 16x1024, D 10240, half init", "fwd", 10240, lengths=(1024,) * 16, init_every=2),
    Case("mixed 256 seqs of 1-64, D 8192", "fwd", 8192, lengths=_mixed_lengths(256, 1, 64)),
    Case("small 4x128, D 5376", "fwd", 5376, lengths=(128,) * 4),
    Case("update batch 1, D 8192", "update", 8192, batch=1),
    Case("update batch 4, D 8192", "update", 8192, batch=4),
    Case("update batch 16, D 8192", "update", 8192, batch=16),
    Case("update batch 64, D 8192", "update", 8192, batch=64),
    Case("update batch 256, D 8192", "update", 8192, batch=256),
    Case("update batch 1024, D 8192", "update", 8192, batch=1024),
]

CPU_CASES = [
    Case("prefill 1x2048, D 8192", "fwd", 8192, lengths=(2048,)),
    Case("small 4x128, D 5376", "fwd", 5376, lengths=(128,) * 4),
    Case("update batch 1, D 8192", "update", 8192, batch=1),
    Case("update batch 256, D 8192", "update", 8192, batch=256),
]

# The shapes of the CPU side-by-side with SGLang's kernel (issue 14): bf16, W 4, D 8192.
CPU_PEER_CASES = [
    Case("prefill 1x2048, D 8192", "fwd", 8192, lengths=(2048,)),
    Case("prefill 8x256 with initial states, D 8192", "fwd", 8192, lengths=(256,) * 8),
    Case("mixed 64 seqs of 1-128, D 8192", "fwd", 8192, lengths=_mixed_lengths(64, 1, 128)),
    Case("small 4x128, D 5376", "fwd", 5376, lengths=(128,) * 4),
    Case("update batch 1, D 8192", "update", 8192, batch=1),
    Case("update batch 64, D 8192", "update", 8192, batch=64),
    Case("update batch 256, D 8192", "update", 8192, batch=256),
    *(
        Case(
            f"update batch {b}, D 8192, channel-major states",
            "update",
            8192,
            batch=b,
            channel_major=True,
        )
        for b in (1, 64, 256)
    ),
    *(
        Case(f"spec update batch {b}, 1+3 tokens, D 8192", "update", 8192, batch=b, spec_tokens=4)
        for b in (1, 16, 64)
    ),
]


def make_inputs(case: Case, device, state_dtype: torch.dtype | None = None, seed: int = 0):
    """Serving-engine layouts: channel-last x, conv states with stride(1) == 1 (or
    channel-major where the case says), cache lines in shuffled order."""
    g = torch.Generator().manual_seed(seed)
    state_dtype = state_dtype or case.dtype
    d, hist = case.dim, case.width - 1

    def randn(*shape, dtype):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    weight = randn(d, case.width, dtype=case.dtype)
    bias = randn(d, dtype=case.dtype)
    batch = len(case.lengths) if case.op == "fwd" else case.batch
    # Speculative rows keep tokens - 1 columns more (the window starts at accepted - 1).
    spec = case.op == "update" and case.spec_tokens > 0
    cols = hist + case.spec_tokens - 1 if spec else hist
    states = randn(batch, cols, d, dtype=state_dtype).transpose(1, 2)
    if case.channel_major:
        states = states.contiguous()
    lines = torch.randperm(batch, generator=g).to(device)
    if case.op == "fwd":
        qsl = torch.tensor([0, *torch.tensor(case.lengths).cumsum(0).tolist()], dtype=torch.int32)
        return dict(
            x=randn(sum(case.lengths), d, dtype=case.dtype).t(),
            weight=weight,
            bias=bias,
            conv_states=states,
            query_start_loc=qsl.to(device),
            cache_indices=lines,
            has_initial_state=(torch.arange(batch) % case.init_every == 0).to(device),
        )
    # Speculative rows: x (batch, tokens, dim), as SGLang's CPU API takes them.
    tokens = (case.spec_tokens,) if spec else ()
    inputs = dict(
        x=randn(case.batch, *tokens, d, dtype=case.dtype),
        conv_state=states,
        weight=weight,
        bias=bias,
        activation="silu",
        conv_state_indices=lines,
    )
    if spec:
        accepted = torch.randint(1, case.spec_tokens + 1, (batch,), generator=g)
        inputs["num_accepted_tokens"] = accepted.to(device=device, dtype=torch.int32)
    return inputs


def bytes_moved(case: Case, inputs) -> int:
    """Bytes the op must move: x read, out written, states read (when used) and written."""
    if case.op == "fwd":
        x, states = inputs["x"], inputs["conv_states"]
        tokens = 2 * x.numel() * x.element_size()
        line = states.shape[1] * states.shape[2] * states.element_size()
        reads = int(inputs["has_initial_state"].sum())
        return tokens + (reads + len(case.lengths)) * line
    x, state = inputs["x"], inputs["conv_state"]
    line = state.shape[1] * state.shape[2] * state.element_size()
    return 2 * x.numel() * x.element_size() + 2 * case.batch * line


def implementations(case: Case, inputs) -> dict:
    """name -> zero-argument callable, for this package and the plain-torch formulation."""
    if case.op == "fwd":
        # "ours" writes into a buffer reused across calls, as serving engines do; "ours new
        # out" returns a fresh tensor, which on CPU adds the page faults of new memory.
        out = torch.empty_like(inputs["x"].t()).t()
        return {
            "ours": lambda: causal_conv1d_fn(**inputs, out=out),
            "ours new out": lambda: causal_conv1d_fn(**inputs),
            "torch": lambda: baseline.causal_conv1d_fn_torch(**inputs),
        }
    if case.spec_tokens:
        return {}  # speculative rows: SGLang's CPU API only (bench.sglang_implementations)
    # A separate out: written into x, each call would feed its outputs to the next, and
    # the values drift towards subnormals, which cost Intel CPUs a microcode assist each.
    out = torch.empty_like(inputs["x"])
    return {
        "ours": lambda: causal_conv1d_update(**inputs, out=out),
        "torch": lambda: baseline.causal_conv1d_update_torch(**inputs),
    }


def copy_floor(nbytes: int, device) -> Callable[[], object]:
    src = torch.empty(max(1, nbytes // 2), dtype=torch.uint8, device=device).random_()
    dst = torch.empty_like(src)
    return lambda: dst.copy_(src)


def time_us(
    fn: Callable[[], object],
    device,
    threads: int | None = None,
    min_run_time: float = 0.5,
    info: dict | None = None,
) -> float:
    """Median time of one call in microseconds. On CUDA, info["graph"] (when info is given)
    says whether the calls were replayed from a CUDA graph or launched from Python."""
    if torch.device(device).type == "cuda":
        return _time_cuda_us(fn, min_run_time, info if info is not None else {})
    # torch.utils.benchmark imports cpp_extension, which warns when a CUDA build of torch
    # finds no GPU: irrelevant for CPU timing.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils.benchmark import Timer

    timer = Timer("fn()", globals={"fn": fn}, num_threads=threads or torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e6


_FLUSH = {}


def time_cuda_flushed_us(
    fn: Callable[[], object],
    min_run_time: float = 0.5,
    info: dict | None = None,
    graph: bool = True,
) -> float:
    """Median time of one call in microseconds with the L2 flushed before it (a 256 MiB
    buffer is zeroed between calls, outside the two events), so that every call reads its
    bytes from HBM as it does inside a model: what ``triton.testing.do_bench`` measures.

    The call is captured in a CUDA graph of its own and replayed, as engines run decode, so
    that a wrapper's host time (tens of us for a Triton launch) cannot leak into the device
    time of a few-us kernel; a callable that cannot be captured (it syncs with the host) is
    called directly, and info["graph"] says which. ``graph=False`` calls fn directly each
    time (as ``do_bench`` does; the flush, longer than any launch here, hides the host time)."""
    device = torch.cuda.current_device()
    if device not in _FLUSH:
        _FLUSH[device] = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    flush = _FLUSH[device]
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    replay = _graph_of(fn, 1) if graph else None
    if info is not None:
        info["graph"] = replay is not None
    fn = replay or fn
    probe = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    reps = max(20, min(2000, int(min_run_time / max(time.perf_counter() - probe, 1e-6))))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
    for start, end in zip(starts, ends):
        flush.zero_()
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends))


def host_us(fn: Callable[[], object], calls: int = 1000) -> float:
    """Host time of one call: `calls` back-to-back calls without synchronising, per call
    (the Python wrapper and the launch; the device work overlaps)."""
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed = time.perf_counter() - start
    torch.cuda.synchronize()
    return elapsed / calls * 1e6


def _time_cuda_us(fn, min_run_time: float, info: dict) -> float:
    """Median device time of one call: N back-to-back calls captured in a CUDA graph and
    replayed (so launch gaps and Python overhead stay out), or, for a callable that cannot be
    captured, N back-to-back calls between two events."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    calls = 20
    run = _graph_of(fn, calls)
    info["graph"] = run is not None
    if run is None:

        def run():
            for _ in range(calls):
                fn()

    run()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    run()
    end.record()
    end.synchronize()
    one = max(start.elapsed_time(end) / 1e3, 1e-6)
    reps = max(10, min(500, int(min_run_time / one)))
    times = []
    for _ in range(reps):
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / calls)
    return statistics.median(times)


def _graph_of(fn, calls: int):
    """A zero-argument replay of `calls` calls of fn captured in one CUDA graph, or None."""
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    try:
        with torch.cuda.stream(stream):
            fn()  # warm-up on the capture stream, as torch recommends
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an aborted capture warns that it is empty
            with torch.cuda.graph(graph):
                for _ in range(calls):
                    fn()
    except Exception:  # noqa: BLE001 (peers that sync on the host cannot be captured)
        torch.cuda.synchronize()
        return None
    return graph.replay


def machine(device) -> str:
    """A one-line description of the device that runs the benchmark."""
    if torch.device(device).type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                line.split(":", 1)[1].strip() for line in f if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
