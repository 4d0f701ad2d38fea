"""Every conv call SGLang 0.5.23's model backends make, replayed with its exact arguments
against the SGLang dialect: the Mamba2 mixer (srt/layers/attention/mamba/mamba.py, M*), the
Mamba1 mixer (P*), GDN (linear/gdn_backend.py, G*), KDA (linear/kda_backend.py, K*), LFM2's
short conv (S*) and the CPU ops (C*), with the engine's tensors: column slices of projection
outputs, transposed state pools, overlapping window caches, persistent index buffers longer
than the batch, -1 padding rows, int64 links in eager mode and int32 under CUDA graphs. Each
site runs eagerly on every device; the sites SGLang captures in CUDA graphs are also captured
here, then replayed on fresh data.

A site builds the engine's buffers (``build``), makes the engine's call from them (``call``,
views taken inside it, as the engine takes them) and says what the call must leave behind
(``expect``, from the float64 references on copies)."""

from __future__ import annotations

import random

import pytest
import torch
from causal_conv1d_kernels import sglang
from causal_conv1d_kernels.sglang import cpu, triton
from causal_conv1d_kernels.testing.reference import (
    causal_conv1d_update_ref,
    sglang_update_ref,
    vllm_fn_ref,
)
from helpers import assert_close, cumulative, needs_cuda
from test_sglang import tree_links, tree_parents

BF16, F32 = torch.bfloat16, torch.float32
K = 4  # conv width of every model here but LFM2
LENGTHS = [5, 1, 17, 0, 9]  # an extend batch: new tokens per request
HAS_PREFIX = [True, False, True, False, True]


def seeded(seed: int):
    torch.manual_seed(seed)
    return random.Random(seed)


def pool(lines, dim, hist, device, transposed=False, amx=False):
    """SGLang's conv-state pool of one layer: (lines, dim, K-1) contiguous; KDA keeps
    (lines, K-1, dim) and passes .transpose(-1, -2) (that view is taken in call); the CPU's
    AMX pool is (lines, dim, K-1) with strides ((K-1)*dim, 1, dim)."""
    if transposed or amx:
        buf = torch.randn(lines, hist, dim, dtype=BF16, device=device)
        return buf.transpose(1, 2) if amx else buf
    return torch.randn(lines, dim, hist, dtype=BF16, device=device)


def slots(batch, lines, device, dtype=torch.int32, pads=(), extra=0):
    """Cache slots of a batch (slot 0 is SGLang's reserved slot), -1 where padded, in a
    buffer `extra` entries longer than the batch (engine buffers)."""
    idx = torch.randperm(lines - 1)[: batch + extra] + 1
    idx[list(pads)] = -1
    return idx.to(device=device, dtype=dtype)


def clone(t: dict) -> dict:
    return {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in t.items()}


# ---- Prefill sites: SGLang's Triton causal_conv1d_fn (directly or through its wrapper) ----


def prefill_buffers(device, dim, row_width=None, weight_dtype=BF16, transposed=False, seed=0):
    seeded(seed)
    tokens = sum(LENGTHS)
    lines = 12
    return dict(
        proj=torch.randn(tokens, row_width or dim, dtype=BF16, device=device),
        w=torch.randn(dim, K, dtype=weight_dtype, device=device),
        b=torch.randn(dim, dtype=weight_dtype, device=device),
        conv=pool(lines, dim, K - 1, device, transposed=transposed),
        qsl=cumulative(LENGTHS, torch.int32, device),
        idx=slots(len(LENGTHS), lines, device, pads=[1]),
        prefix_lens=torch.tensor([3 if h else 0 for h in HAS_PREFIX], dtype=torch.int32).to(device),
    )


def prefill_expect(t, x, conv, silu=True, null=None):
    out, states = vllm_fn_ref(
        x, t["w"], t["b"], conv, t["qsl"], t["idx"], t["prefix_lens"] > 0, silu, -1, null
    )
    return out, states


def engine_prefill(fn, x, t, **extra):
    """The prefill call of SGLang's Mamba2 mixer (mamba.py:592) and GDN backend
    (gdn_backend.py:929), through `fn` (its Triton kernel or its wrapper)."""
    return fn(
        x,
        t["w"],
        t["b"],
        activation="silu",
        conv_states=t["conv"],
        has_initial_state=t["prefix_lens"] > 0,
        cache_indices=t["idx"],
        query_start_loc=t["qsl"],
        seq_lens_cpu=list(LENGTHS),
        **extra,
    ).transpose(0, 1)[: sum(LENGTHS)]


def prefill_site(device, seed, dim, row, off, fn, **extra):
    """x a column slice [off, off + dim) of a (tokens, row) projection output, transposed;
    `extra` maps further keywords of the call to the names of their buffers."""
    t = prefill_buffers(device, dim, row, seed=seed)

    def x_of(t):
        return t["proj"][:, off : off + dim].transpose(0, 1)

    def call(t):
        return engine_prefill(fn, x_of(t), t, **{k: t[v] for k, v in extra.items()})

    def expect(c):
        out, states = prefill_expect(c, x_of(c), c["conv"])
        return out.transpose(0, 1), {"conv": states}

    return t, call, expect


def site_m1(device, seed=0):
    """Mamba2 mixer prefill (mamba.py:592): x a column slice of in_proj's output, transposed."""
    return prefill_site(device, seed, 48, 80, 16, triton.causal_conv1d_fn)


def site_m1_falcon(device, seed=0):
    """FalconH1 prefill: through SGLang's wrapper, which sends a strided x with seq_lens_cpu
    to its Triton kernel."""
    return prefill_site(device, seed, 48, 80, 16, sglang.causal_conv1d_fn)


def site_g3(device, seed=0, block_table=False):
    """GDN prefill (gdn_backend.py:929): the wrapper with seq_lens_cpu, x mixed_qkv.T (a
    Qwen3.5 column slice), optionally the conv block table of a ragged batch."""
    extra = {"block_table": "blocks"} if block_table else {}
    t, call, expect = prefill_site(device, seed, 64, 96, 0, sglang.causal_conv1d_fn, **extra)
    if block_table:
        rows = [(s, c) for s, n in enumerate(LENGTHS) for c in range((n + 7) // 8)]
        t["blocks"] = torch.tensor(rows, dtype=torch.int32, device=device)
    return t, call, expect


def site_g4(device, seed=0):
    """GDN multi-item scoring: item segments on a gathered copy of their states (has_initial
    all true, indices arange), through SGLang's wrapper."""
    dim = 32
    t = prefill_buffers(device, dim, seed=seed)
    t["items"] = torch.tensor([3, 7, 1, 4, 9], dtype=torch.int64, device=device)

    def call(t):
        gathered = t["conv"][t["items"]]
        out = sglang.causal_conv1d_fn(
            t["proj"].transpose(0, 1),
            t["w"],
            t["b"],
            activation="silu",
            conv_states=gathered,
            has_initial_state=torch.ones(5, dtype=torch.bool, device=gathered.device),
            cache_indices=torch.arange(5, dtype=torch.int32, device=gathered.device),
            query_start_loc=t["qsl"],
            seq_lens_cpu=list(LENGTHS),
        ).transpose(0, 1)
        t["gathered"] = gathered
        return out

    def expect(c):
        gathered = c["conv"][c["items"]]
        init = torch.ones(5, dtype=torch.bool, device=gathered.device)
        idx = torch.arange(5, dtype=torch.int32, device=gathered.device)
        out, _ = vllm_fn_ref(
            c["proj"].t(), c["w"], c["b"], gathered, c["qsl"], idx, init, True, -1, None
        )
        return out.t(), {}

    return t, call, expect


def site_k2(device, seed=0):
    """KDA prefill (kda_backend.py:1031): fp32 weights, the transposed pool."""
    dim = 48
    t = prefill_buffers(device, dim, weight_dtype=F32, transposed=True, seed=seed)
    t["b"] = None

    def call(t):
        return triton.causal_conv1d_fn(
            t["proj"].transpose(0, 1),
            t["w"],
            None,
            activation="silu",
            conv_states=t["conv"].transpose(-1, -2),
            has_initial_state=t["prefix_lens"] > 0,
            cache_indices=t["idx"],
            query_start_loc=t["qsl"],
            seq_lens_cpu=list(LENGTHS),
        ).transpose(0, 1)

    def expect(c):
        out, states = prefill_expect(c, c["proj"].t(), c["conv"].transpose(-1, -2))
        return out.t(), {"conv": states.transpose(-1, -2)}

    return t, call, expect


def site_k4(device, seed=0):
    """KDA prefill inside a prefill CUDA graph (kda_prefill_graph.py:343): a token bucket,
    static buffers padded past the batch (query_start_loc's tail the total, cache indices -1,
    has_initial_state False), seq_lens_cpu None, the block table with (-1, 0) pad rows."""
    dim, bucket, max_seqs = 48, 40, 8
    t = prefill_buffers(device, dim, weight_dtype=F32, transposed=True, seed=seed)
    n = len(LENGTHS)
    total = sum(LENGTHS)
    t["proj"] = torch.randn(bucket, dim, dtype=BF16, device=device)
    t["qsl"] = torch.full((max_seqs + 1,), total, dtype=torch.int32, device=device)
    t["qsl"][: n + 1] = cumulative(LENGTHS, torch.int32, device)
    idx = torch.full((max_seqs,), -1, dtype=torch.int32, device=device)
    idx[:n] = t["idx"]
    t["idx"] = idx
    init = torch.zeros(max_seqs, dtype=torch.bool, device=device)
    init[:n] = torch.tensor(HAS_PREFIX)
    t["init"] = init
    blocks = torch.tensor([(-1, 0)] * ((bucket + 7) // 8 + max_seqs), dtype=torch.int32)
    rows = [(s, c) for s, m in enumerate(LENGTHS) for c in range((m + 7) // 8)]
    blocks[: len(rows)] = torch.tensor(rows, dtype=torch.int32)
    t["blocks"] = blocks.to(device)

    def call(t):
        return triton.causal_conv1d_fn(
            t["proj"].transpose(0, 1),
            t["w"],
            None,
            activation="silu",
            conv_states=t["conv"].transpose(-1, -2),
            has_initial_state=t["init"],
            cache_indices=t["idx"],
            query_start_loc=t["qsl"],
            seq_lens_cpu=None,
            block_table=t["blocks"],
        ).transpose(0, 1)[:total]

    def expect(c):
        out, states = vllm_fn_ref(
            c["proj"][:total].t(),
            c["w"],
            None,
            c["conv"].transpose(-1, -2),
            c["qsl"][: n + 1],
            c["idx"][:n],
            c["init"][:n],
            True,
            -1,
            None,
        )
        return out.t(), {"conv": states.transpose(-1, -2)}

    return t, call, expect


def site_s2(device, seed=0):
    """LFM2 prefill (lfm2.py:358): the wrapper's JIT path, x contiguous (d, T) written in
    place, int64 cache indices, no activation, width 3."""
    seeded(seed)
    d, width, lines = 40, 3, 10
    t = dict(
        bx=torch.randn(sum(LENGTHS), d, dtype=BF16, device=device),
        w=torch.randn(d, width, dtype=BF16, device=device),
        b=torch.randn(d, dtype=BF16, device=device),
        conv=pool(lines, d, width - 1, device),
        qsl=cumulative(LENGTHS, torch.int32, device),
        idx=slots(len(LENGTHS), lines, device, torch.int64, pads=[2]),
        init=torch.tensor(HAS_PREFIX, device=device),
    )

    def call(t):
        bx_t = t["bx"].transpose(0, 1).contiguous()
        out = sglang.causal_conv1d_fn(
            bx_t,
            t["w"],
            t["b"],
            query_start_loc=t["qsl"],
            cache_indices=t["idx"],
            has_initial_state=t["init"],
            conv_states=t["conv"],
            activation=None,
        )
        assert out is bx_t  # in place, as SGLang's JIT kernel
        return out.transpose(0, 1)

    def expect(c):
        out, states = vllm_fn_ref(
            c["bx"].t(), c["w"], c["b"], c["conv"], c["qsl"], c["idx"], c["init"], None, -1, None
        )
        return out.t(), {"conv": states}

    return t, call, expect


# ---- Decode sites ----


def decode_buffers(
    device,
    dim,
    batch=6,
    row_width=None,
    weight_dtype=BF16,
    transposed=False,
    index_dtype=torch.int32,
    seed=0,
):
    seeded(seed)
    lines = 12
    return dict(
        proj=torch.randn(batch, row_width or dim, dtype=BF16, device=device),
        w=torch.randn(dim, K, dtype=weight_dtype, device=device),
        b=torch.randn(dim, dtype=weight_dtype, device=device),
        conv=pool(lines, dim, K - 1, device, transposed=transposed),
        idx=slots(batch, lines, device, index_dtype, pads=[batch - 1, 2]),  # graph padding rows
    )


def site_m2(device, seed=0):
    """Mamba2 decode (mamba.py:695), Triton: x a column slice (strides (W, 1))."""
    dim, row, off = 48, 80, 8
    t = decode_buffers(device, dim, row_width=row, seed=seed)

    def x_of(t):
        return t["proj"][:, off : off + dim]

    def call(t):
        return triton.causal_conv1d_update(
            x_of(t), t["conv"], t["w"], t["b"], "silu", conv_state_indices=t["idx"]
        )

    def expect(c):
        out, states, _, _ = sglang_update_ref(x_of(c), c["conv"], c["w"], c["b"], "silu", c["idx"])
        return out, {"conv": states}

    return t, call, expect


def site_m2_falcon(device, seed=0):
    """FalconH1 decode: SGLang's wrapper, its JIT kernel, in place into the projection."""
    dim, row, off = 48, 80, 8
    t = decode_buffers(device, dim, row_width=row, seed=seed)

    def call(t):
        x = t["proj"][:, off : off + dim]
        out = sglang.causal_conv1d_update(
            x, t["conv"], t["w"], t["b"], "silu", conv_state_indices=t["idx"]
        )
        assert out is x
        return t["proj"]

    def expect(c):
        x = c["proj"][:, off : off + dim]
        out, states = causal_conv1d_update_ref(x, c["conv"], c["w"], c["b"], "silu", None, c["idx"])
        proj = c["proj"].clone()
        proj[:, off : off + dim] = out
        return proj, {"conv": states}

    return t, call, expect


def site_g1(device, seed=0):
    """GDN decode (gdn_backend.py:855): contiguous mixed_qkv, no bias."""
    t = decode_buffers(device, 64, seed=seed)
    t["b"] = None

    def call(t):
        return triton.causal_conv1d_update(
            t["proj"], t["conv"], t["w"], None, "silu", conv_state_indices=t["idx"]
        )

    def expect(c):
        out, states, _, _ = sglang_update_ref(c["proj"], c["conv"], c["w"], None, "silu", c["idx"])
        return out, {"conv": states}

    return t, call, expect


def site_k1(device, seed=0):
    """KDA decode (kda_backend.py:955): the transposed pool, fp32 weights."""
    t = decode_buffers(device, 48, weight_dtype=F32, transposed=True, seed=seed)
    t["b"] = None

    def call(t):
        return triton.causal_conv1d_update(
            t["proj"],
            t["conv"].transpose(-1, -2),
            t["w"],
            None,
            activation="silu",
            conv_state_indices=t["idx"],
        )

    def expect(c):
        out, states, _, _ = sglang_update_ref(
            c["proj"], c["conv"].transpose(-1, -2), c["w"], None, "silu", c["idx"]
        )
        return out, {"conv": states.transpose(-1, -2)}

    return t, call, expect


def site_s1(device, seed=0):
    """LFM2 decode (lfm2.py:343): the wrapper's JIT kernel in place, int64 indices, width 3,
    no activation."""
    seeded(seed)
    d, width, batch, lines = 40, 3, 5, 9
    t = dict(
        bx=torch.randn(batch, d, dtype=BF16, device=device),
        w=torch.randn(d, width, dtype=BF16, device=device),
        b=torch.randn(d, dtype=BF16, device=device),
        conv=pool(lines, d, width - 1, device),
        idx=slots(batch, lines, device, torch.int64, pads=[3], extra=3),  # persistent buffer
    )

    def call(t):
        out = sglang.causal_conv1d_update(
            t["bx"],
            t["conv"],
            t["w"],
            t["b"],
            activation=None,
            conv_state_indices=t["idx"][:batch],
        )
        assert out is t["bx"]
        return out

    def expect(c):
        out, states = causal_conv1d_update_ref(
            c["bx"], c["conv"], c["w"], c["b"], None, None, c["idx"][:batch]
        )
        return out, {"conv": states}

    return t, call, expect


# ---- Target verify: chains (windows only) and EAGLE trees ----


def verify_buffers(
    device,
    dim,
    width=K,
    batch=4,
    drafts=4,
    dmax=6,
    row_width=None,
    weight_dtype=BF16,
    transposed=False,
    window="dedup",
    tree=False,
    link_dtype=torch.int64,
    index_dtype=torch.int32,
    seed=0,
):
    rng = seeded(seed)
    lines, spec_slots = 10, 7
    hist = width - 1
    t = dict(
        proj=torch.randn(batch * drafts, row_width or dim, dtype=BF16, device=device),
        w=torch.randn(dim, width, dtype=weight_dtype, device=device),
        b=torch.randn(dim, dtype=weight_dtype, device=device),
        conv=pool(lines, dim, hist, device, transposed=transposed),
        idx=slots(batch, lines, device, index_dtype, pads=[1], extra=2),
        # SGLang's verify_intermediate_state_indices: arange(pool) padded with pool_size.
        inter_idx=torch.cat(
            [torch.randperm(spec_slots - 1)[:batch] + 1, torch.full((2,), spec_slots - 1)]
        ).to(device=device, dtype=torch.int32),
    )
    if window == "dedup":  # (S+1, Dmax, D, K-1) over (S+1, D, Dmax+K-2), overlapping
        t["win"] = torch.zeros(spec_slots, dim, dmax + hist - 1, dtype=BF16, device=device)
    elif window == "kda":  # (S+1, Dmax, K-1, D), passed transposed
        t["win"] = torch.zeros(spec_slots, dmax, hist, dim, dtype=BF16, device=device)
    else:  # dense (S+1, Dmax, D, K-1)
        t["win"] = torch.zeros(spec_slots, dmax, dim, hist, dtype=BF16, device=device)
    if tree:
        links = torch.full((3, batch, drafts), -1, dtype=link_dtype)
        for b in range(batch):
            nxt, sib = tree_links(tree_parents("random", drafts, rng))
            links[0, b] = torch.tensor(nxt)
            links[1, b] = torch.tensor(sib)
        t["links"] = links.to(device)
    return t


def window_view(t, window, dim, width, dmax=6):
    hist = width - 1
    if window == "dedup":
        w = t["win"]
        return w.as_strided(
            (w.shape[0], dmax, dim, hist), (dim * (dmax + hist - 1), 1, dmax + hist - 1, 1)
        )
    if window == "kda":
        return t["win"].transpose(-1, -2)
    return t["win"]


def verify_site(
    device,
    seed,
    *,
    dim=48,
    width=K,
    row_width=None,
    off=0,
    window="dedup",
    tree=False,
    transposed=False,
    weight_dtype=BF16,
    activation="silu",
    index_dtype=torch.int32,
    link_dtype=torch.int64,
):
    batch, drafts = 4, 4
    t = verify_buffers(
        device,
        dim,
        width,
        batch,
        drafts,
        row_width=row_width,
        weight_dtype=weight_dtype,
        transposed=transposed,
        window=window,
        tree=tree,
        index_dtype=index_dtype,
        link_dtype=link_dtype,
        seed=seed,
    )

    def args(t):
        x = t["proj"][:, off : off + dim].view(batch, drafts, -1).transpose(1, 2)
        conv = t["conv"].transpose(-1, -2) if transposed else t["conv"]
        kw = dict(
            conv_state_indices=t["idx"][:batch],
            intermediate_conv_window=window_view(t, window, dim, width),
            intermediate_state_indices=t["inter_idx"][:batch],
        )
        if tree:
            kw.update(
                retrieve_next_token=t["links"][0],
                retrieve_next_sibling=t["links"][1],
                retrieve_parent_token=t["links"][2],
            )
        return x, conv, kw

    def call(t):
        x, conv, kw = args(t)
        out = triton.causal_conv1d_update(x, conv, t["w"], t["b"], activation, **kw)
        return out.transpose(1, 2).reshape(batch * drafts, -1)

    def expect(c):
        x, conv, kw = args(c)
        out, states, windows, parents = sglang_update_ref(x, conv, c["w"], c["b"], activation, **kw)
        mutated = {"conv": states.transpose(-1, -2) if transposed else states}
        if tree:
            links = c["links"].clone()
            links[2] = parents
            mutated["links"] = links

        def check_windows(t):
            # The rows the call wrote, read through the engine's view of the windows.
            view = window_view(t, window, dim, width)
            for b in range(batch):
                if int(c["idx"][b]) != -1:
                    wl = int(c["inter_idx"][b])
                    assert torch.equal(view[wl, :drafts], windows[wl, :drafts]), f"row {b}"

        return out.transpose(1, 2).reshape(batch * drafts, -1), mutated, check_windows

    return t, call, expect


SITES = {
    # name: (site, captured in CUDA graphs by SGLang)
    "M1-mamba2-prefill": (site_m1, False),
    "M1-falconh1-prefill": (site_m1_falcon, False),
    "M2-mamba2-decode": (site_m2, True),
    "M2-falconh1-decode": (site_m2_falcon, True),
    "M3-mamba2-verify-chain": (lambda d, s=0: verify_site(d, s, row_width=80, off=8), True),
    "M3-mamba2-verify-tree": (
        lambda d, s=0: verify_site(d, s, row_width=80, off=8, window="dense", tree=True),
        True,
    ),
    "M3-mamba2-verify-tree-graph-int32": (
        lambda d, s=0: verify_site(d, s, window="dense", tree=True, link_dtype=torch.int32),
        True,
    ),
    "P1-mamba1-prefill": (site_m1, False),
    "P2-mamba1-decode": (site_g1, True),
    "G1-gdn-decode": (site_g1, True),
    "G2-gdn-verify-chain": (lambda d, s=0: verify_site(d, s, dim=64), True),
    "G2-gdn-verify-tree": (
        lambda d, s=0: verify_site(d, s, dim=64, window="dense", tree=True),
        True,
    ),
    "G3-gdn-prefill": (site_g3, False),
    "G3-gdn-prefill-block-table": (lambda d, s=0: site_g3(d, s, block_table=True), False),
    "G4-gdn-multi-item-scoring": (site_g4, False),
    "K1-kda-decode": (site_k1, True),
    "K2-kda-prefill": (site_k2, False),
    "K3-kda-verify-chain": (
        lambda d, s=0: verify_site(d, s, window="kda", transposed=True, weight_dtype=F32),
        True,
    ),
    "K3-kda-verify-tree": (
        lambda d, s=0: verify_site(
            d, s, window="kda", transposed=True, weight_dtype=F32, tree=True
        ),
        True,
    ),
    "K4-kda-prefill-graph": (site_k4, True),
    "S1-lfm2-decode": (site_s1, True),
    "S2-lfm2-prefill": (site_s2, False),
    "S3-lfm2-verify": (
        lambda d, s=0: verify_site(d, s, dim=40, width=3, activation=None, index_dtype=torch.int64),
        True,
    ),
}


def run_site(name, device):
    site, _ = SITES[name]
    t, call, expect = site(device)
    before = clone(t)
    out = call(t)
    check_all(t, before, out, expect, name)


def check_all(t, before, out, expect, name):
    expected = expect(clone(before))
    assert_close(out, expected[0])
    for key, value in expected[1].items():
        assert torch.equal(t[key], value), f"{name}: {key}"
    if len(expected) > 2:
        expected[2](t)  # the per-token windows


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
@pytest.mark.parametrize("name", list(SITES))
def test_engine_call(name, device):
    run_site(name, device)


@needs_cuda
@pytest.mark.parametrize("name", [n for n, (_, captured) in SITES.items() if captured])
def test_engine_call_in_cuda_graph(name):
    """Captured once on the engine's static buffers, replayed after they are refilled."""
    site, _ = SITES[name]
    t, call, expect = site("cuda", 0)
    call(clone(t))  # warm-up outside the capture, as SGLang's graph runner does
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = call(t)
    for seed in (1, 2):
        fresh, _, _ = site("cuda", seed)
        for k, v in fresh.items():
            if isinstance(v, torch.Tensor):
                t[k].copy_(v)
        before = clone(t)
        graph.replay()
        torch.cuda.synchronize()
        check_all(t, before, out, expect, name)


# ---- The CPU ops (sgl_kernel's, conv.cpp's API), as SGLang's CPU backends call them ----


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_cpu_ops_as_sglang_calls_them(device):
    """amx_utils packs the weight at load time and copies the packed data back into the
    parameter; GDN's prefill then calls fwd_cpu on mixed_qkv.T and the AMX-strided pool, and
    its decode update_cpu, both with -1 and is_weight_packed=True."""
    seeded(3)
    dim, lines = 64, 9
    weight = torch.randn(dim, 1, K, dtype=BF16, device=device)  # the conv1d parameter
    reference_weight = weight.view(-1, K).clone()
    packed = cpu.causal_conv1d_weight_pack(weight.view(-1, weight.size(-1)))
    weight.view(-1, K).copy_(packed)
    w = weight.squeeze(1)
    conv = pool(lines, dim, K - 1, device, amx=True)
    mixed = torch.randn(sum(LENGTHS), dim, dtype=BF16, device=device)
    qsl = cumulative(LENGTHS, torch.int32, device)
    idx = slots(len(LENGTHS), lines, device)
    init = torch.tensor(HAS_PREFIX, device=device)
    out_ref, conv_ref = vllm_fn_ref(
        mixed.t(), reference_weight, None, conv.clone(), qsl, idx, init, True, -1, None
    )
    out = cpu.causal_conv1d_fwd_cpu(
        mixed.transpose(0, 1), w, None, conv, qsl, idx, init, True, -1, True
    )
    assert_close(out, out_ref)
    assert torch.equal(conv, conv_ref)
    x = torch.randn(5, dim, dtype=BF16, device=device)
    idx = slots(5, lines, device)
    out_ref, conv_ref, _, _ = sglang_update_ref(x, conv.clone(), reference_weight, None, True, idx)
    out = cpu.causal_conv1d_update_cpu(x, conv, w, None, True, None, idx, -1, True)
    assert_close(out, out_ref)
    assert torch.equal(conv, conv_ref)
