"""The SGLang dialect (CONTRACT 1.6): its three APIs against float64 references written from
SGLang 0.5.23's definitions (testing/reference.py), the EAGLE tree verify on trees of every
shape up to 8 draft tokens, the per-token windows, the in-place prefill, the CPU API's packed
weights, bad input, opcheck and torch.compile. The engine's own calls:
test_sglang_engine_calls.py."""

from __future__ import annotations

import random

import pytest
import torch
from causal_conv1d_kernels import sglang
from causal_conv1d_kernels.sglang import cpu, jit, triton
from causal_conv1d_kernels.testing.reference import (
    causal_conv1d_update_ref,
    sglang_tree_parents,
    sglang_update_ref,
    vllm_fn_ref,
)
from helpers import DTYPE_MIXES, WIDTHS, assert_close, cumulative, devices, mix_id, needs_cuda, rand

BF16, F32 = torch.bfloat16, torch.float32


# ---- Trees ----


def tree_links(parents: list) -> tuple:
    """First-child / next-sibling links of a tree given by its parents (parent[t] < t), as
    SGLang's build_tree_kernel_efficient lays them out: children in increasing order."""
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


def tree_parents(kind: str, n: int, rng: random.Random) -> list:
    if kind == "chain":
        return [0] + list(range(n - 1))
    if kind == "star":
        return [0] * n
    if kind == "binary":
        return [0] + [(t - 1) // 2 for t in range(1, n)]
    return [0] + [rng.randrange(t) for t in range(1, n)]  # random


TREE_KINDS = ["chain", "star", "binary", "random"]


def tree_case(
    width,
    mix,
    device,
    n=8,
    kind="random",
    batch=5,
    dim=40,
    num_lines=9,
    spec=False,
    windows="dense",
    tree=True,
    index_dtype=torch.int64,
    state_layout="channel_last",
    seed=0,
):
    """Arguments of sglang.triton.causal_conv1d_update for a tree (or chain) verify step."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    x_dtype, w_dtype, s_dtype = mix
    hist = width - 1
    state_len = hist + (n - 1 if spec else 0)
    x = rand((batch, dim, n), x_dtype, device, "channel_last")
    lines = torch.randperm(num_lines)[:batch]
    lines[1] = -1  # a padded row
    kw = dict(
        x=x,
        conv_state=rand((num_lines, dim, state_len), s_dtype, device, state_layout),
        weight=torch.randn(dim, width, dtype=w_dtype, device=device),
        bias=torch.randn(dim, dtype=w_dtype, device=device),
        activation="silu",
        conv_state_indices=lines.to(device=device, dtype=index_dtype),
    )
    if spec:
        kw["num_accept_tokens"] = torch.randint(1, n + 1, (batch,), dtype=torch.int32).to(device)
    if windows is not None:
        steps = n + 2
        if windows == "dense":
            buf = torch.randn(batch + 2, steps, dim, hist, dtype=s_dtype, device=device)
        else:  # the transposed layout of SGLang's KDA pools
            buf = torch.randn(batch + 2, steps, hist, dim, dtype=s_dtype, device=device)
            buf = buf.transpose(2, 3)
        kw["intermediate_conv_window"] = buf
        order = torch.randperm(batch + 2)[:batch]
        kw["intermediate_state_indices"] = order.to(device=device, dtype=torch.int32)
    if tree:
        nxt, sib = [], []
        for _ in range(batch):
            a, b = tree_links(tree_parents(kind, n, rng))
            nxt.append(a)
            sib.append(b)
        kw["retrieve_next_token"] = torch.tensor(nxt, dtype=index_dtype, device=device)
        kw["retrieve_next_sibling"] = torch.tensor(sib, dtype=index_dtype, device=device)
        kw["retrieve_parent_token"] = torch.full((batch, n), 77, dtype=index_dtype, device=device)
    return kw


def check_tree_call(kw):
    """Runs the dialect on copies and compares with the reference: outputs close, state,
    windows and parents bit-exact, padded rows zero."""
    ref_kw = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    out_ref, state_ref, win_ref, par_ref = sglang_update_ref(**ref_kw)
    out = triton.causal_conv1d_update(**kw)
    assert_close(out, out_ref)
    assert torch.equal(kw["conv_state"], state_ref)
    if win_ref is not None:
        assert torch.equal(kw["intermediate_conv_window"], win_ref)
    if par_ref is not None:
        assert torch.equal(kw["retrieve_parent_token"], par_ref)
    pads = (kw["conv_state_indices"] == -1).nonzero().flatten().tolist()
    for b in pads:
        assert torch.equal(out[b], torch.zeros_like(out[b]))
    return out


def test_tree_parents_follow_sglangs_links():
    # SGLang's example: tree 0 -> (1 -> 3), 2.
    assert sglang_tree_parents([1, 3, -1, -1], [-1, 2, -1, -1], 4) == [0, 0, 0, 1]
    rng = random.Random(3)
    for n in range(1, 9):
        for kind in TREE_KINDS:
            parents = tree_parents(kind, n, rng)
            nxt, sib = tree_links(parents)
            assert sglang_tree_parents(nxt, sib, n) == parents


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("kind", TREE_KINDS)
@pytest.mark.parametrize("n", [1, 2, 5, 8, 12])  # 12: past the CUDA walk's short-row preload
def test_tree_verify_matches_reference(device, width, kind, n):
    check_tree_call(tree_case(width, (BF16, BF16, BF16), device, n=n, kind=kind, seed=n))


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("mix", DTYPE_MIXES, ids=mix_id)
@pytest.mark.parametrize("spec", [False, True], ids=["front", "num_accept_tokens"])
@pytest.mark.parametrize("windows", ["dense", "transposed", None])
def test_tree_verify_dtypes_layouts(device, mix, spec, windows):
    for width in (2, 4, 7):
        kw = tree_case(width, mix, device, n=6, spec=spec, windows=windows, seed=width)
        check_tree_call(kw)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("n", [1, 3, 8, 9, 12])  # 9, 12: past the CUDA walk's short-row preload
def test_chain_verify_windows(device, width, n):
    """Target verify without a tree (SGLang's topk 1): a chain, windows only; int32 indices,
    the state read through a transposed view (KDA's pools)."""
    kw = tree_case(
        width,
        (BF16, F32, BF16),
        device,
        n=n,
        tree=False,
        index_dtype=torch.int32,
        state_layout="contiguous",
        seed=n,
    )
    check_tree_call(kw)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("width", [2, 4, 6])
def test_chain_windows_into_overlapping_view(device, width):
    """SGLang's deduplicated window cache on CUDA: (lines, steps, dim, width-1) as an
    overlapping view of (lines, dim, steps + width - 2), step stride 1."""
    n, dmax, dim, lines = 5, 6, 24, 4
    kw = tree_case(width, (BF16, BF16, BF16), device, n=n, dim=dim, tree=False, windows=None)
    phys = overlapping_windows(kw, dmax, lines, seed=0)
    batch = kw["x"].shape[0]
    kw["intermediate_state_indices"] = torch.tensor(
        [3, 0, 1, 2, 3][:batch], dtype=torch.int32, device=device
    )
    kw["intermediate_state_indices"][-1] = 9  # outside: nothing written for that row
    check_overlapping_call(kw, phys, n)


def overlapping_windows(kw, dmax, lines, seed):
    """SGLang's deduplicated chain cache in place of kw's windows: (lines, dmax, dim, hist)
    viewed on (lines, dim, dmax + hist - 1) with step stride 1; returns the backing tensor."""
    batch, dim, _ = kw["x"].shape
    hist = kw["weight"].shape[1] - 1
    dtype = kw["conv_state"].dtype
    g = torch.Generator().manual_seed(seed)
    phys = torch.randn(lines, dim, dmax + hist - 1, generator=g).to(dtype).to(kw["x"].device)
    kw["intermediate_conv_window"] = phys.as_strided(
        (lines, dmax, dim, hist), (dim * (dmax + hist - 1), 1, dmax + hist - 1, 1)
    )
    order = torch.randperm(lines, generator=g)[:batch]
    kw["intermediate_state_indices"] = order.to(device=kw["x"].device, dtype=torch.int32)
    return phys


def check_overlapping_call(kw, phys, n):
    """Runs the dialect into kw's overlapping window view (on phys) and compares with the
    reference: outputs close, state bit-exact, each written line's first n steps bit-exact,
    lines no row writes (padded rows, indices outside) untouched."""
    before = phys.clone()
    ref_kw = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    out_ref, state_ref, win_ref, _ = sglang_update_ref(**ref_kw)
    out = triton.causal_conv1d_update(**kw)
    assert_close(out, out_ref)
    assert torch.equal(kw["conv_state"], state_ref)
    view, lines, written = kw["intermediate_conv_window"], phys.shape[0], set()
    for b in range(kw["x"].shape[0]):
        wl = int(kw["intermediate_state_indices"][b])
        if int(kw["conv_state_indices"][b]) == -1 or not 0 <= wl < lines:
            continue
        written.add(wl)
        assert torch.equal(view[wl, :n], win_ref[wl, :n])
    for wl in range(lines):
        if wl not in written:
            assert torch.equal(phys[wl], before[wl])


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("mix", DTYPE_MIXES, ids=mix_id)
@pytest.mark.parametrize("state_layout", ["contiguous", "channel_last", "strided"])
@pytest.mark.parametrize("windows", ["dense", "transposed", "overlapping", None])
def test_chain_verify_layouts(device, mix, state_layout, windows):
    """Chains of 1 to 9 tokens (CUDA keeps those up to 8 in registers at width 4) in every
    dtype mix, state layout and window layout, padded rows among them; the overlapping cache
    with even and odd row lengths (pairs of 16-bit positions stored as one word, or not)."""
    for width in (4, 3):
        for n in (1, 2, 4, 7, 8, 9):
            seed = 10 * n + width
            kw = tree_case(
                width,
                mix,
                device,
                n=n,
                tree=False,
                windows="dense" if windows is None else windows,
                state_layout=state_layout,
                seed=seed,
            )
            if windows is None:
                kw["intermediate_conv_window"] = None
                kw["intermediate_state_indices"] = None
            if windows != "overlapping":
                check_tree_call(kw)
                continue
            phys = overlapping_windows(kw, n + seed % 2, kw["x"].shape[0] + 2, seed)
            check_overlapping_call(kw, phys, n)


@pytest.mark.parametrize("device", devices())
def test_bad_tree_links_stay_inside(device):
    """Links outside the row, to earlier tokens or to themselves are ignored (the walk then
    always ends in the window): never an access outside the tensors, results as the
    reference's rule."""
    kw = tree_case(4, (BF16, BF16, BF16), device, n=8, seed=5)
    g = torch.Generator().manual_seed(1)
    for name in ("retrieve_next_token", "retrieve_next_sibling"):
        bad = torch.randint(-(2**40), 2**40, kw[name].shape, generator=g)
        bad[:, ::3] = torch.randint(-2, 9, bad[:, ::3].shape, generator=g)
        kw[name] = bad.to(device)
    kw["intermediate_state_indices"][0] = -5
    kw["num_accept_tokens"] = None
    check_tree_call(kw)


@pytest.mark.parametrize("device", devices())
def test_tree_links_longer_buffers(device):
    """Persistent engine buffers: link tables and index vectors longer than the batch."""
    kw = tree_case(3, (BF16, BF16, F32), device, n=4, seed=2)
    batch, n = kw["x"].shape[0], kw["x"].shape[2]
    for name in ("retrieve_next_token", "retrieve_next_sibling"):
        big = torch.full((batch + 3, n + 4), -1, dtype=torch.int32, device=device)
        big[:batch, :n] = kw[name]
        kw[name] = big
    kw["retrieve_parent_token"] = torch.full(
        (batch + 3, n + 4), 5, dtype=torch.int32, device=device
    )
    check_tree_call(kw)
    assert (kw["retrieve_parent_token"][batch:] == 5).all()
    assert (kw["retrieve_parent_token"][:, n:] == 5).all()


# ---- The JIT API and SGLang's wrapper (in place) ----


def prefill_case(width, mix, device, lengths, x_layout="contiguous", seed=0, dim=48, lines=12):
    torch.manual_seed(seed)
    x_dtype, w_dtype, s_dtype = mix
    batch = len(lengths)
    idx = torch.randperm(lines)[:batch]
    idx[batch // 2] = -1
    return dict(
        x=rand((dim, sum(lengths)), x_dtype, device, x_layout),
        weight=torch.randn(dim, width, dtype=w_dtype, device=device),
        bias=torch.randn(dim, dtype=w_dtype, device=device),
        conv_states=rand((lines, dim, width - 1), s_dtype, device, "contiguous"),
        query_start_loc=cumulative(lengths, torch.int32, device),
        cache_indices=idx.to(device=device, dtype=torch.int32),
        has_initial_state=(torch.arange(batch) % 3 != 0).to(device),
    )


LENGTHS = [[1, 200, 0, 70, 3, 65], [5], [129, 1, 2, 64, 63]]


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("lengths", LENGTHS, ids=["mixed", "one", "chunks"])
@pytest.mark.parametrize("x_layout", ["contiguous", "channel_last"])
def test_jit_fwd_in_place(device, width, lengths, x_layout):
    mix = (BF16, BF16, BF16) if width != 3 else (F32, BF16, F32)
    kw = prefill_case(width, mix, device, lengths, x_layout, seed=width)
    ref_kw = {k: v.clone() for k, v in kw.items()}
    out_ref, states_ref = vllm_fn_ref(**ref_kw, activation=True, null_block_id=None)
    x = kw["x"]
    args = [kw[k] for k in ("x", "weight", "bias", "conv_states", "query_start_loc")]
    assert (
        jit.causal_conv1d_fwd(*args, kw["cache_indices"], kw["has_initial_state"], True, -1) is None
    )
    assert_close(x, out_ref)
    assert torch.equal(kw["conv_states"], states_ref)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("width", [2, 4, 5])
def test_jit_fwd_in_place_many_channels(device, width):
    """In place with sequences x channels enough to fill a GPU (CUDA: one program per
    sequence and channel walking its tokens in order, no staging launch); the small cases
    above take the staged launches."""
    lengths = [300, 1, 0, 700, 65, 2]
    mix = (BF16, BF16, F32) if width != 5 else (F32, BF16, F32)
    kw = prefill_case(width, mix, device, lengths, "contiguous", seed=width, dim=2048, lines=8)
    ref_kw = {k: v.clone() for k, v in kw.items()}
    out_ref, states_ref = vllm_fn_ref(**ref_kw, activation=True, null_block_id=None)
    args = [kw[k] for k in ("x", "weight", "bias", "conv_states", "query_start_loc")]
    jit.causal_conv1d_fwd(*args, kw["cache_indices"], kw["has_initial_state"], True, -1)
    assert_close(kw["x"], out_ref)
    assert torch.equal(kw["conv_states"], states_ref)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("width", [2, 4, 8])
@pytest.mark.parametrize("seqlen", [1, 3])
@pytest.mark.parametrize("circular", [False, True])
def test_jit_update_in_place(device, width, seqlen, circular):
    torch.manual_seed(width)
    batch, dim, lines, state_len = 6, 40, 9, width - 1 + 2
    x = rand((batch, dim, seqlen), BF16, device, "padded")
    state = torch.randn(lines, dim, state_len, dtype=BF16, device=device)
    w = torch.randn(dim, width, dtype=BF16, device=device)
    idx = torch.randperm(lines)[:batch].to(device=device, dtype=torch.int32)
    idx[2] = -1
    seqlens = torch.randint(0, 20, (batch,), dtype=torch.int32, device=device) if circular else None
    out_ref, state_ref = causal_conv1d_update_ref(
        x.clone(), state.clone(), w, None, "silu", seqlens, idx
    )
    r = jit.causal_conv1d_update(x, state, w, None, True, seqlens, idx, -1)
    assert r is x
    assert_close(x, out_ref)
    assert torch.equal(state, state_ref)


@pytest.mark.parametrize("device", devices())
def test_wrapper_paths(device):
    """SGLang's model-facing wrapper: a strided x with seq_lens_cpu gets a new output (its
    Triton path), a contiguous x is written in place (its JIT path); decode in place."""
    for strided in (False, True):
        kw = prefill_case(
            4, (BF16, BF16, BF16), device, [3, 9, 1], "channel_last" if strided else "contiguous"
        )
        ref_kw = {k: v.clone() for k, v in kw.items()}
        out_ref, states_ref = vllm_fn_ref(**ref_kw, activation="silu", null_block_id=None)
        x_before = kw["x"].clone()
        extra = {"seq_lens_cpu": [3, 9, 1]} if strided else {}
        out = sglang.causal_conv1d_fn(**kw, activation="silu", **extra)
        assert_close(out, out_ref)
        assert (out is kw["x"]) != strided
        if strided:
            assert torch.equal(kw["x"], x_before)
        assert torch.equal(kw["conv_states"], states_ref)
    x = torch.randn(4, 32, dtype=BF16, device=device)
    state = torch.randn(6, 32, 3, dtype=BF16, device=device)
    w = torch.randn(32, 4, dtype=BF16, device=device)
    idx = torch.tensor([4, -1, 0, 2], dtype=torch.int64, device=device)
    out_ref, state_ref = causal_conv1d_update_ref(
        x.clone(), state.clone(), w, None, None, None, idx
    )
    assert sglang.causal_conv1d_update(x, state, w, conv_state_indices=idx) is x
    assert_close(x, out_ref)
    assert torch.equal(state, state_ref)


# ---- The CPU API (conv.cpp's) ----


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("width", WIDTHS)
def test_cpu_api_fwd_and_packed_weights(device, width):
    kw = prefill_case(width, (BF16, BF16, BF16), device, [4, 1, 33, 0, 7], "channel_last")
    kw["conv_states"] = rand((12, 48, width - 1), BF16, device, "channel_last")  # AMX layout
    ref_kw = {k: v.clone() for k, v in kw.items()}
    out_ref, states_ref = vllm_fn_ref(**ref_kw, activation="silu", null_block_id=None)
    packed = cpu.causal_conv1d_weight_pack(kw["weight"])
    assert torch.equal(cpu.causal_conv1d_weight_pack(packed), packed)  # idempotent
    args = [kw[k] for k in ("x", "bias", "conv_states", "query_start_loc", "cache_indices")]
    out = cpu.causal_conv1d_fwd_cpu(
        kw["x"], packed, *args[1:], kw["has_initial_state"], True, -1, True
    )
    assert out.stride() == kw["x"].stride()
    assert_close(out, out_ref)
    assert torch.equal(kw["conv_states"], states_ref)


@pytest.mark.parametrize("device", devices())
def test_cpu_api_fwd_batched_x(device):
    b, d, s = 3, 32, 11
    x = torch.randn(b, s, d, dtype=BF16, device=device).transpose(1, 2)
    w = torch.randn(d, 4, dtype=BF16, device=device)
    states = torch.randn(5, d, 3, dtype=BF16, device=device)
    idx = torch.tensor([4, 0, 2], dtype=torch.int32, device=device)
    init = torch.tensor([True, False, True], device=device)
    qsl = cumulative([s] * b, torch.int32, device)
    x2 = x.transpose(1, 2).reshape(b * s, d).t()
    out_ref, states_ref = vllm_fn_ref(
        x2.clone(), w, None, states.clone(), qsl, idx, init, True, -1, None
    )
    out = cpu.causal_conv1d_fwd_cpu(x, w, None, states, None, idx, init, True, -1, False)
    assert out.shape == x.shape and out.stride() == x.stride()
    assert_close(out.transpose(1, 2).reshape(b * s, d).t(), out_ref)
    assert torch.equal(states, states_ref)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("width", [2, 4, 5])
def test_cpu_api_update(device, width):
    torch.manual_seed(width)
    b, d, n = 4, 64, 3
    hist = width - 1
    w = cpu.causal_conv1d_weight_pack(torch.randn(d, width, dtype=BF16, device=device))
    bias = torch.randn(d, dtype=BF16, device=device)
    idx = torch.tensor([3, 0, -1, 5], dtype=torch.int32, device=device)
    # (batch, dim): one token per row.
    x = torch.randn(b, d, dtype=BF16, device=device)
    states = rand((6, d, hist), BF16, device, "channel_last")
    out_ref, states_ref, _, _ = sglang_update_ref(x, states.clone(), w, bias, True, idx)
    out = cpu.causal_conv1d_update_cpu(x, states, w, bias, True, None, idx, -1, True)
    assert_close(out, out_ref)
    assert torch.equal(states, states_ref)
    # (batch, seqlen, dim) with num_accepted_tokens (speculative rows).
    x = torch.randn(b, n, d, dtype=BF16, device=device)
    states = torch.randn(6, d, hist + n - 1, dtype=BF16, device=device)
    acc = torch.tensor([1, 3, 2, 2], dtype=torch.int32, device=device)
    out_ref, states_ref, _, _ = sglang_update_ref(
        x.transpose(1, 2), states.clone(), w, bias, True, idx, acc
    )
    out = cpu.causal_conv1d_update_cpu(x, states, w, bias, True, acc, idx, -1, True)
    assert out.shape == x.shape and out.is_contiguous()
    assert_close(out.transpose(1, 2), out_ref)
    assert torch.equal(states, states_ref)


@pytest.mark.parametrize("device", devices())
def test_cpu_api_is_weight_packed_changes_nothing(device):
    """is_weight_packed is not checked (CONTRACT 1.6): a filter in other strides, flagged
    packed or not, gives the result of the packed one, bit for bit."""
    torch.manual_seed(5)
    d, width = 64, 4
    base = torch.randn(width, d, dtype=BF16, device=device)
    strided = base.t()  # (dim, width) with strides (1, dim)
    packed = cpu.causal_conv1d_weight_pack(strided)
    assert packed.is_contiguous() and not strided.is_contiguous()
    bias = torch.randn(d, dtype=BF16, device=device)
    idx = torch.tensor([2, -1, 0], dtype=torch.int32, device=device)
    x = torch.randn(3, d, dtype=BF16, device=device)
    states = rand((4, d, width - 1), BF16, device, "channel_last")
    results = []
    for w, flag in ((packed, True), (strided, True), (strided, False)):
        s = states.clone()
        results.append((cpu.causal_conv1d_update_cpu(x, s, w, bias, True, None, idx, -1, flag), s))
    out_ref, states_ref, _, _ = sglang_update_ref(x, states.clone(), packed, bias, True, idx)
    assert_close(results[0][0], out_ref)
    assert torch.equal(results[0][1], states_ref)
    for out, s in results[1:]:
        assert torch.equal(out, results[0][0]) and torch.equal(s, results[0][1])
    qsl = cumulative([5, 2], torch.int32, device)
    xs = torch.randn(7, d, dtype=BF16, device=device).t()
    lines = torch.tensor([1, 3], dtype=torch.int32, device=device)
    init = torch.tensor([True, False], device=device)
    outs = [
        cpu.causal_conv1d_fwd_cpu(xs, w, bias, states.clone(), qsl, lines, init, True, -1, True)
        for w in (packed, strided)
    ]
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("state_len", [3, 4])
@pytest.mark.parametrize("dim", [48, 75])
def test_cpu_api_update_channel_major_pool(device, state_len, dim):
    """The decode on SGLang's CUDA-style pool, (lines, dim, S) contiguous (conv.cpp restrides
    such a pool in place on its first call; ours keeps the caller's strides): the front window
    and the new state bit-exact, across calls, with a tail of channels at dim 75."""
    torch.manual_seed(state_len + dim)
    w = torch.randn(dim, 4, dtype=BF16, device=device)
    bias = torch.randn(dim, dtype=BF16, device=device)
    states = torch.randn(6, dim, state_len, dtype=BF16, device=device)
    idx = torch.tensor([3, 0, -1, 5], dtype=torch.int32, device=device)
    for step in range(3):
        x = torch.randn(4, dim, dtype=BF16, device=device)
        out_ref, states_ref, _, _ = sglang_update_ref(x, states.clone(), w, bias, True, idx)
        out = cpu.causal_conv1d_update_cpu(x, states, w, bias, True, None, idx, -1, False)
        assert_close(out, out_ref)
        assert torch.equal(out[2], torch.zeros_like(out[2]))
        assert torch.equal(states, states_ref), f"step {step}"
        assert states.is_contiguous()


@pytest.mark.parametrize("width", [2, 3, 4])
@pytest.mark.parametrize("dim", [64, 75, 117])
def test_cpu_api_speculative_rows_filter_in_place_or_copied(width, dim):
    """Speculative rows ((batch, seqlen, dim) x with num_accepted_tokens) through the CPU's
    register-held speculative step: 20 rows on one thread (the fp32 filter copy) against the
    reference, states bit-exact, and each row alone (the filter read in place where the kernel
    set can) giving the same bits; 75 channels leave a tail, 117 take the step over two
    registers and one and a tail."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(width * dim)
        b, n, hist = 20, 4, width - 1
        w = torch.randn(dim, width, dtype=BF16)
        bias = torch.randn(dim, dtype=BF16)
        x = torch.randn(b, n, dim, dtype=BF16)
        states = rand((24, dim, hist + n - 1), BF16, "cpu", "channel_last")
        idx = torch.randperm(24)[:b].to(torch.int32)
        idx[3] = -1
        acc = torch.randint(1, n + 1, (b,), dtype=torch.int32)
        out_ref, states_ref, _, _ = sglang_update_ref(
            x.transpose(1, 2), states.clone(), w, bias, True, idx, acc
        )
        before = states.clone()
        out = cpu.causal_conv1d_update_cpu(x, states, w, bias, True, acc, idx, -1, False)
        assert_close(out.transpose(1, 2), out_ref)
        assert torch.equal(out[3], torch.zeros_like(out[3]))
        assert torch.equal(states, states_ref)
        for row in range(b):
            alone = before.clone()
            one = cpu.causal_conv1d_update_cpu(
                x[row : row + 1], alone, w, bias, True, acc[row:][:1], idx[row:][:1], -1, False
            )
            assert torch.equal(one[0], out[row]), f"row {row}"
    finally:
        torch.set_num_threads(threads)


# ---- Bad input ----


@pytest.mark.parametrize("device", devices())
def test_bad_tree_arguments_are_named(device):
    base = tree_case(4, (BF16, BF16, BF16), device, n=4)

    def rejects(exc, words, **change):
        kw = {**base, **change}
        state = kw["conv_state"].clone()
        with pytest.raises(exc) as info:
            triton.causal_conv1d_update(**kw)
        for w in words:
            assert w in str(info.value)
        assert torch.equal(kw["conv_state"], state)

    rejects(
        ValueError,
        ["retrieve_next_token", "(5, 4)"],
        retrieve_next_token=base["retrieve_next_token"][:, :3],
    )
    rejects(
        TypeError,
        ["retrieve_next_sibling", "int32 or int64"],
        retrieve_next_sibling=base["retrieve_next_sibling"].float(),
    )
    rejects(
        ValueError,
        ["retrieve_next_sibling needs retrieve_next_token"],
        retrieve_next_token=None,
        retrieve_parent_token=None,
    )
    rejects(
        ValueError,
        ["intermediate_conv_window", "dim=40"],
        intermediate_conv_window=base["intermediate_conv_window"][:, :, :8],
    )
    rejects(
        ValueError,
        ["intermediate_conv_window", "steps >= 4"],
        intermediate_conv_window=base["intermediate_conv_window"][:, :2],
    )
    rejects(
        TypeError,
        ["intermediate_conv_window", "conv_state's dtype"],
        intermediate_conv_window=base["intermediate_conv_window"].float(),
    )
    rejects(
        ValueError,
        ["intermediate_state_indices"],
        intermediate_state_indices=base["intermediate_state_indices"][:2],
    )
    rejects(TypeError, ["retrieve_next_token", "torch.Tensor"], retrieve_next_token=[1, 2])
    x = base["x"]
    with pytest.raises(ValueError, match="out must not be x"):
        torch.ops.causal_conv1d.causal_conv1d_update(
            x,
            base["conv_state"],
            base["weight"],
            None,
            True,
            None,
            None,
            -1,
            x,
            None,
            None,
            -1,
            -1,
            True,
            base["intermediate_conv_window"],
        )
    with pytest.raises(ValueError, match="front-aligned"):
        torch.ops.causal_conv1d.causal_conv1d_update(
            x,
            base["conv_state"],
            base["weight"],
            None,
            True,
            None,
            None,
            -1,
            torch.empty_like(x),
            None,
            None,
            -1,
            -1,
            False,
            base["intermediate_conv_window"],
        )


@pytest.mark.parametrize("device", devices())
def test_in_place_prefill_refuses_partial_overlap(device):
    kw = prefill_case(4, (BF16, BF16, BF16), device, [3, 4])
    x = kw["x"]
    other = x.as_strided(x.shape, (1, x.shape[0]))  # x's memory, transposed in place
    with pytest.raises(ValueError, match="out may be x itself"):
        torch.ops.causal_conv1d.causal_conv1d_fwd_out(
            x,
            kw["weight"],
            None,
            None,
            kw["query_start_loc"],
            None,
            None,
            True,
            -1,
            other,
            -1,
            True,
        )
    with pytest.raises(ValueError):
        jit.causal_conv1d_fwd(
            x.t(), kw["weight"], None, None, kw["query_start_loc"], None, None, True, -1
        )


# ---- opcheck, torch.compile, CUDA graphs ----


@pytest.mark.parametrize("device", devices())
def test_opcheck_tree_update(device):
    kw = tree_case(4, (BF16, BF16, F32), device, n=4, batch=3, dim=16)
    kw["intermediate_conv_window"] = kw["intermediate_conv_window"].float()
    out = torch.empty_like(kw["x"])
    args = (
        kw["x"],
        kw["conv_state"],
        kw["weight"],
        kw["bias"],
        True,
        None,
        kw["conv_state_indices"],
        -1,
        out,
        None,
        None,
        -1,
        -1,
        True,
        kw["intermediate_conv_window"],
        kw["intermediate_state_indices"],
        kw["retrieve_next_token"],
        kw["retrieve_next_sibling"],
        kw["retrieve_parent_token"],
    )
    torch.library.opcheck(torch.ops.causal_conv1d.causal_conv1d_update.default, args)


@pytest.mark.parametrize("device", devices())
def test_compile_fullgraph_tree_update(device):
    kw = tree_case(4, (BF16, BF16, BF16), device, n=5, batch=3, dim=32)
    ref_kw = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    out_ref, state_ref, win_ref, par_ref = sglang_update_ref(**ref_kw)
    torch._dynamo.reset()
    fn = torch.compile(triton.causal_conv1d_update, fullgraph=True, backend="aot_eager")
    out = fn(**kw)
    assert_close(out, out_ref)
    assert torch.equal(kw["conv_state"], state_ref)
    assert torch.equal(kw["intermediate_conv_window"], win_ref)
    assert torch.equal(kw["retrieve_parent_token"], par_ref)


@needs_cuda
@pytest.mark.parametrize("kind", TREE_KINDS)
def test_cuda_graph_tree_verify(kind):
    """Captured once, replayed on new data (the engine's verify step)."""
    kw = tree_case(4, (BF16, BF16, BF16), "cuda", n=8, kind=kind, batch=6, dim=256)
    static = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    triton.causal_conv1d_update(
        **{k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in static.items()}
    )
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = triton.causal_conv1d_update(**static)
    for seed in range(3):
        fresh = tree_case(
            4, (BF16, BF16, BF16), "cuda", n=8, kind=kind, batch=6, dim=256, seed=seed + 10
        )
        for k, v in fresh.items():
            if isinstance(v, torch.Tensor):
                static[k].copy_(v)
        ref_kw = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in static.items()}
        out_ref, state_ref, win_ref, par_ref = sglang_update_ref(**ref_kw)
        graph.replay()
        torch.cuda.synchronize()
        assert_close(out, out_ref)
        assert torch.equal(static["conv_state"], state_ref)
        assert torch.equal(static["intermediate_conv_window"], win_ref)
        assert torch.equal(static["retrieve_parent_token"], par_ref)


@needs_cuda
def test_cuda_graph_in_place_prefill():
    kw = prefill_case(4, (BF16, BF16, BF16), "cuda", [100, 3, 0, 300], dim=256)
    static = {k: v.clone() for k, v in kw.items()}

    def args(d):
        names = ("x", "weight", "bias", "conv_states", "query_start_loc", "cache_indices")
        return (*(d[k] for k in names), d["has_initial_state"], True, -1)

    jit.causal_conv1d_fwd(*args({k: v.clone() for k, v in static.items()}))
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        jit.causal_conv1d_fwd(*args(static))
    fresh = prefill_case(4, (BF16, BF16, BF16), "cuda", [100, 3, 0, 300], dim=256, seed=7)
    for k, v in fresh.items():
        static[k].copy_(v)
    out_ref, states_ref = vllm_fn_ref(
        **{k: v.clone() for k, v in static.items()}, activation=True, null_block_id=None
    )
    graph.replay()
    torch.cuda.synchronize()
    assert_close(static["x"], out_ref)
    assert torch.equal(static["conv_states"], states_ref)
