"""SGLang's conv calls (CONTRACT 1.6) timed as CONTRACT 4 says: ours (causal_conv1d_kernels.sglang)
beside SGLang 0.5.23's JIT CUDA kernel and its Triton kernels, each called as SGLang's backends
call them, against a device copy of the same bytes, in one run: GPU time with each call
replayed from a CUDA graph of its own and the L2 flushed before every replay (median), and
host time per call (1000 eager calls back to back) beside it.

    python -m benchmarks sglang --wheel sglang-0.5.23-*.whl

Cases (bf16 x, weights and states, W 4, bias, SiLU, D 8192, lines drawn from a 1024-line pool):
- tree verify: 64 requests, EAGLE trees of 8 draft tokens (random shapes), dense windows
  (SGLang's topk > 1 layout), int32 links: Triton only (SGLang's JIT kernel has no tree).
- chain verify: 64 requests of 4 draft tokens, the deduplicated (overlapping) window cache.
- decode batch 1 / 64 / 256 / 1024: JIT (in place, as FalconH1 and LFM2 call it) and Triton
  (a new output, as Mamba2, GDN and KDA call it).
- prefill 1 x 8192, 16 x 1024 (half initial) and 256 mixed sequences of 1-64: the JIT kernel on
  a contiguous x (dim, tokens) in place (LFM2's call), the Triton kernel on a transposed view
  with seq_lens_cpu (GDN's and Mamba2's).
Writes <out-dir>/<name>.md, .json and .png.
"""

from __future__ import annotations

import datetime
import random

import torch
from causal_conv1d_kernels import __version__
from causal_conv1d_kernels.sglang import jit, triton
from causal_conv1d_kernels.testing import benchmark

from . import report, subcommand_parser

DIM, WIDTH, LINES = 8192, 4, 1024
BF16 = torch.bfloat16


def randn(g, *shape):
    return torch.randn(*shape, device="cuda", generator=g).to(BF16)


def tree_links(parents):
    n = len(parents)
    nxt, sib = [-1] * n, [-1] * n
    for t in range(1, n):
        p = parents[t]
        if nxt[p] == -1:
            nxt[p] = t
        else:
            c = nxt[p]
            while sib[c] != -1:
                c = sib[c]
            sib[c] = t
    return nxt, sib


def verify_case(rows, drafts, tree, g):
    """Triton decode arguments of SGLang's target verify (mamba.py:673, gdn_backend.py:1047)."""
    hist, dmax, slots = WIDTH - 1, drafts, rows + 1
    x = randn(g, rows * drafts, DIM).view(rows, drafts, DIM).transpose(1, 2)
    kw = dict(
        x=x,
        conv_state=randn(g, LINES, DIM, hist),
        weight=randn(g, DIM, WIDTH),
        bias=randn(g, DIM),
        activation="silu",
        conv_state_indices=torch.randperm(LINES, device="cuda", generator=g)[:rows].int(),
        intermediate_state_indices=torch.arange(rows, dtype=torch.int32, device="cuda"),
    )
    if tree:
        kw["intermediate_conv_window"] = randn(g, slots, dmax, DIM, hist)
        rng = random.Random(0)
        links = [
            tree_links([0] + [rng.randrange(t) for t in range(1, drafts)]) for _ in range(rows)
        ]
        kw["retrieve_next_token"] = torch.tensor([a for a, _ in links], dtype=torch.int32).cuda()
        kw["retrieve_next_sibling"] = torch.tensor([b for _, b in links], dtype=torch.int32).cuda()
        kw["retrieve_parent_token"] = torch.zeros(rows, drafts, dtype=torch.int32, device="cuda")
    else:
        phys = randn(g, slots, DIM, dmax + hist - 1)
        kw["intermediate_conv_window"] = phys.as_strided(
            (slots, dmax, DIM, hist), (DIM * (dmax + hist - 1), 1, dmax + hist - 1, 1)
        )
    tokens = rows * drafts
    nbytes = 2 * DIM * (2 * tokens + 2 * rows * hist + tokens * hist)  # x, out, state, windows
    return kw, nbytes


def decode_case(rows, g):
    kw = dict(
        x=randn(g, rows, DIM),
        conv_state=randn(g, LINES, DIM, WIDTH - 1),
        weight=randn(g, DIM, WIDTH),
        bias=randn(g, DIM),
        conv_state_indices=torch.randperm(LINES, device="cuda", generator=g)[:rows].int(),
    )
    return kw, 2 * DIM * rows * (2 + 2 * (WIDTH - 1))


def prefill_case(lengths, initial, g):
    batch, tokens = len(lengths), sum(lengths)
    qsl = torch.zeros(batch + 1, dtype=torch.int32)
    qsl[1:] = torch.cumsum(torch.tensor(lengths), 0)
    kw = dict(
        x=randn(g, DIM, tokens),  # contiguous (dim, tokens): the JIT kernel's layout
        weight=randn(g, DIM, WIDTH),
        bias=randn(g, DIM),
        conv_states=randn(g, LINES, DIM, WIDTH - 1),
        query_start_loc=qsl.cuda(),
        cache_indices=torch.randperm(LINES, device="cuda", generator=g)[:batch].int(),
        has_initial_state=(
            torch.rand(batch, generator=torch.Generator().manual_seed(0)) < initial
        ).cuda(),
    )
    return kw, 2 * DIM * (2 * tokens + 2 * batch * (WIDTH - 1))


def fresh(kw):
    """Copies of the arguments in their layouts: a view is re-made on a copy of its base, so
    that the chain's overlapping window view stays overlapping (clone() would make it a
    dense (slots, dim, steps, width-1) tensor: another layout, another kernel path)."""

    def copy(v):
        if not isinstance(v, torch.Tensor):
            return v
        if v._base is None:
            return v.clone()
        return v._base.clone().as_strided(v.shape, v.stride(), v.storage_offset())

    return {k: copy(v) for k, v in kw.items()}


def time_both(fn):
    return benchmark.time_cuda_flushed_us(fn, min_run_time=0.5), benchmark.host_us(fn, 1000)


def run(wheel):
    from . import sglang_cuda_peer

    peer_jit = sglang_cuda_peer.load_jit(wheel) if wheel else None
    peer_triton = sglang_cuda_peer.load_triton(wheel) if wheel else None
    g = torch.Generator(device="cuda").manual_seed(0)
    rows = []

    def record(name, nbytes, calls):
        src = torch.empty(nbytes // 2, dtype=torch.uint8, device="cuda").random_()
        dst = torch.empty_like(src)
        row = dict(case=name, bytes=nbytes)
        row["copy_us"], _ = time_both(lambda: dst.copy_(src))
        for label, fn in calls.items():
            if fn is None:
                continue
            row[f"{label}_us"], row[f"{label} host_us"] = time_both(fn)
        rows.append(row)
        print(row, flush=True)

    for name, n, drafts, tree in [
        ("tree verify 64 x 8", 64, 8, True),
        ("chain verify 64 x 4", 64, 4, False),
    ]:
        kw, nbytes = verify_case(n, drafts, tree, g)
        ours, theirs = fresh(kw), fresh(kw)
        record(
            name,
            nbytes,
            {
                "ours triton": lambda a=ours: triton.causal_conv1d_update(**a),
                "sglang triton": peer_triton
                and (lambda a=theirs: peer_triton.causal_conv1d_update(**a)),
            },
        )

    for n in (1, 64, 256, 1024):
        kw, nbytes = decode_case(n, g)
        a, b, c, d = (fresh(kw) for _ in range(4))
        x3, y3 = a["x"].unsqueeze(-1), b["x"].unsqueeze(-1)  # (batch, dim, 1), as SGLang's wrapper
        record(
            f"decode batch {n}",
            nbytes,
            {
                "ours jit": lambda a=a, x=x3: jit.causal_conv1d_update(
                    x,
                    a["conv_state"],
                    a["weight"],
                    a["bias"],
                    True,
                    None,
                    a["conv_state_indices"],
                    -1,
                ),
                "sglang jit": peer_jit
                and (
                    lambda b=b, x=y3: peer_jit.update(
                        x,
                        b["conv_state"],
                        b["weight"],
                        b["bias"],
                        True,
                        None,
                        b["conv_state_indices"],
                        -1,
                    )
                ),
                "ours triton": lambda c=c: triton.causal_conv1d_update(**c, activation="silu"),
                "sglang triton": peer_triton
                and (lambda d=d: peer_triton.causal_conv1d_update(**d, activation="silu")),
            },
        )

    lengths_rng = random.Random(1)  # one generator: 256 draws, not 256 first draws of seed 1
    mixed = [lengths_rng.randint(1, 64) for _ in range(256)]
    for name, lengths, initial in [
        ("prefill 1 x 8192", [8192], 0.0),
        ("prefill 16 x 1024, half initial", [1024] * 16, 0.5),
        ("mixed 256 seqs of 1-64, half initial", mixed, 0.5),
    ]:
        kw, nbytes = prefill_case(lengths, initial, g)
        a, b, c, d = (fresh(kw) for _ in range(4))
        for t in (c, d):  # the Triton path's x: a transposed (tokens, dim) buffer
            t["x"] = t["x"].t().contiguous().t()

        def jit_args(t):
            return (
                t["x"],
                t["weight"],
                t["bias"],
                t["conv_states"],
                t["query_start_loc"],
                t["cache_indices"],
                t["has_initial_state"],
                True,
                -1,
            )

        record(
            name,
            nbytes,
            {
                "ours jit": lambda a=a: jit.causal_conv1d_fwd(*jit_args(a)),
                "sglang jit": peer_jit and (lambda b=b: peer_jit.fwd(*jit_args(b))),
                "ours triton": lambda c=c, n=lengths: triton.causal_conv1d_fn(**c, seq_lens_cpu=n),
                "sglang triton": peer_triton
                and (lambda d=d, n=lengths: peer_triton.causal_conv1d_fn(**d, seq_lens_cpu=n)),
            },
        )
    return rows


def main(argv=None) -> int:
    parser = subcommand_parser("sglang", __doc__)
    parser.add_argument("--wheel", default=None, help="the sglang 0.5.23 wheel (peers)")
    parser.add_argument("--name", default="gpu-h200-sglang")
    parser.add_argument("--out-dir", default=report.RESULTS)
    args = parser.parse_args(argv)
    rows = run(args.wheel)
    device = torch.cuda.get_device_name()
    header = (
        f"# SGLang's conv calls, {device}\n\n{datetime.date.today()}, causal_conv1d_kernels "
        f"{__version__}, torch {torch.__version__}. GPU time: median, each call replayed from "
        "a CUDA graph of its own, L2 flushed before every replay; host time: 1000 eager calls "
        "back to back, per call. SGLang 0.5.23's JIT kernel (built from its wheel) and Triton "
        "kernels, called with SGLang's arguments.\n"
    )
    text = report.markdown(rows, header)
    meta = dict(device=device, torch=torch.__version__)
    report.write(args.out_dir, args.name, text, meta, rows, f"SGLang conv calls, {device}")
    print(text)
    return 0
