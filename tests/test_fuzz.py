"""Property tests (issue 5): random configurations across the whole contract against the
float64 reference: every output close, padded outputs exactly zero, every cache line
bit-exact (lines no sequence uses untouched).

Example counts are bounded so that CI stays fast: CAUSAL_CONV1D_FUZZ_EXAMPLES per test (200 by
default), drawn from a fixed seed unless CAUSAL_CONV1D_FUZZ_RANDOM=1.
"""

from __future__ import annotations

import os

import pytest
import torch
import vllm_cases  # noqa: E402  (after helpers, as a test module)
from causal_conv1d_kernels import causal_conv1d_fn, causal_conv1d_update
from causal_conv1d_kernels.testing.reference import causal_conv1d_fn_ref, causal_conv1d_update_ref
from helpers import DTYPE_MIXES, assert_close, cumulative, devices, rand

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES = int(os.environ.get("CAUSAL_CONV1D_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("CAUSAL_CONV1D_FUZZ_RANDOM") != "1",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
    database=None,
)
LAYOUTS = ["contiguous", "channel_last", "padded", "strided"]
# Short sequences mostly, and some long enough to span several CPU work items (256 tokens)
# and CUDA programs (up to 128 tokens).
LENGTHS = st.one_of(st.integers(0, 9), st.integers(10, 40), st.integers(200, 600))


@st.composite
def fwd_configs(draw):
    width = draw(st.integers(2, 8))
    lengths = draw(st.lists(LENGTHS, min_size=0, max_size=7))
    batch = len(lengths)
    with_cache = draw(st.booleans())
    num_lines = batch + draw(st.integers(0, 3))
    return dict(
        width=width,
        mix=draw(st.sampled_from(DTYPE_MIXES)),
        dim=draw(st.one_of(st.integers(1, 40), st.integers(41, 300))),
        lengths=lengths,
        x_layout=draw(st.sampled_from(LAYOUTS)),
        state_layout=draw(st.sampled_from(LAYOUTS)),
        state_len=width - 1 + draw(st.integers(0, 4)),
        with_cache=with_cache,
        with_indices=draw(st.booleans()),
        num_lines=max(num_lines, 1),
        lines=draw(st.permutations(range(max(num_lines, 1))))[:batch],
        pads=draw(st.lists(st.booleans(), min_size=batch, max_size=batch)),
        init=draw(st.lists(st.booleans(), min_size=batch, max_size=batch)),
        pad_slot_id=draw(st.sampled_from([-1, 1000])),
        bias=draw(st.booleans()),
        activation=draw(st.sampled_from(["silu", None])),
        index_dtype=draw(st.sampled_from([torch.int32, torch.int64])),
        out_buffer=draw(st.booleans()),
        validate=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


@st.composite
def update_configs(draw):
    width = draw(st.integers(2, 8))
    batch = draw(st.integers(0, 9))
    num_lines = batch + draw(st.integers(0, 3))
    seqlen = draw(st.integers(1, 6))
    return dict(
        width=width,
        mix=draw(st.sampled_from(DTYPE_MIXES)),
        dim=draw(st.one_of(st.integers(1, 40), st.integers(41, 300))),
        batch=batch,
        seqlen=seqlen,
        squeeze=seqlen == 1 and draw(st.booleans()),
        x_layout=draw(st.sampled_from(LAYOUTS)),
        state_layout=draw(st.sampled_from(LAYOUTS)),
        state_len=width - 1 + draw(st.integers(0, 5)),
        num_lines=max(num_lines, 1),
        with_indices=draw(st.booleans()),
        lines=draw(st.permutations(range(max(num_lines, 1))))[:batch],
        pads=draw(st.lists(st.booleans(), min_size=batch, max_size=batch)),
        pad_slot_id=draw(st.sampled_from([-1, 1000])),
        # Ring positions anywhere, several laps past the end and negative ones included.
        positions=draw(
            st.one_of(
                st.none(),
                st.lists(st.integers(-50, 1000), min_size=batch, max_size=batch),
            )
        ),
        bias=draw(st.booleans()),
        activation=draw(st.sampled_from(["silu", None])),
        index_dtype=draw(st.sampled_from([torch.int32, torch.int64])),
        out=draw(st.sampled_from(["new", "buffer", "in place"])),
        validate=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def build_fwd(c, device):
    torch.manual_seed(c["seed"])
    x_dtype, w_dtype, s_dtype = c["mix"]
    dim, lengths, width = c["dim"], c["lengths"], c["width"]
    kwargs = dict(
        x=rand((dim, sum(lengths)), x_dtype, device, c["x_layout"]),
        weight=torch.randn(dim, width, dtype=w_dtype, device=device),
        bias=torch.randn(dim, dtype=w_dtype, device=device) if c["bias"] else None,
        conv_states=None,
        query_start_loc=cumulative(lengths, c["index_dtype"], device),
        activation=c["activation"],
        pad_slot_id=c["pad_slot_id"],
        validate=c["validate"],
    )
    pads = [i for i, pad in enumerate(c["pads"]) if pad]
    if c["with_cache"]:
        lines = torch.tensor(c["lines"], dtype=torch.int64)
        lines[pads] = c["pad_slot_id"]
        kwargs.update(
            conv_states=rand(
                (c["num_lines"], dim, c["state_len"]), s_dtype, device, c["state_layout"]
            ),
            has_initial_state=torch.tensor(c["init"], dtype=torch.bool, device=device),
        )
    if c["with_cache"] and c["with_indices"]:
        kwargs["cache_indices"] = lines.to(device=device, dtype=c["index_dtype"])
    else:
        pads = []  # sequence i uses line i, or there is no cache
    return kwargs, pads


def build_update(c, device):
    torch.manual_seed(c["seed"])
    x_dtype, w_dtype, s_dtype = c["mix"]
    dim, batch = c["dim"], c["batch"]
    x = rand((batch, dim, c["seqlen"]), x_dtype, device, c["x_layout"])
    kwargs = dict(
        x=x[:, :, 0] if c["squeeze"] else x,
        conv_state=rand((c["num_lines"], dim, c["state_len"]), s_dtype, device, c["state_layout"]),
        weight=torch.randn(dim, c["width"], dtype=w_dtype, device=device),
        bias=torch.randn(dim, dtype=w_dtype, device=device) if c["bias"] else None,
        activation=c["activation"],
        pad_slot_id=c["pad_slot_id"],
        validate=c["validate"],
    )
    pads = []
    if c["with_indices"]:
        pads = [i for i, pad in enumerate(c["pads"]) if pad]
        lines = torch.tensor(c["lines"], dtype=torch.int64)
        lines[pads] = c["pad_slot_id"]
        kwargs["conv_state_indices"] = lines.to(device=device, dtype=c["index_dtype"])
    if c["positions"] is not None:
        kwargs["cache_seqlens"] = torch.tensor(
            c["positions"], dtype=c["index_dtype"], device=device
        )
    return kwargs, pads


def reference_kwargs(kwargs):
    return {k: v for k, v in kwargs.items() if k != "validate"}


@pytest.mark.parametrize("device", devices())
@FUZZ
@given(config=fwd_configs())
def test_fwd_matches_reference(device, config):
    kwargs, pads = build_fwd(config, device)
    expected_out, expected_states = causal_conv1d_fn_ref(**reference_kwargs(kwargs))
    x_before = kwargs["x"].clone()
    if config["out_buffer"]:
        out = causal_conv1d_fn(**kwargs, out=torch.full_like(kwargs["x"], float("nan")))
    else:
        out = causal_conv1d_fn(**kwargs)
    assert_close(out, expected_out)
    bounds = kwargs["query_start_loc"].tolist()
    for seq in pads:
        padded = out[:, bounds[seq] : bounds[seq + 1]]
        assert torch.equal(padded, torch.zeros_like(padded)), f"padded sequence {seq} not zero"
    if expected_states is not None:
        assert torch.equal(kwargs["conv_states"], expected_states), "cache differs"
    assert torch.equal(kwargs["x"], x_before), "x modified"


@pytest.mark.parametrize("device", devices())
@FUZZ
@given(config=update_configs())
def test_update_matches_reference(device, config):
    kwargs, pads = build_update(config, device)
    expected_out, expected_state = causal_conv1d_update_ref(**reference_kwargs(kwargs))
    if config["out"] == "in place":
        out = causal_conv1d_update(**kwargs, out=kwargs["x"])
    elif config["out"] == "buffer":
        out = causal_conv1d_update(**kwargs, out=torch.full_like(kwargs["x"], float("nan")))
    else:
        out = causal_conv1d_update(**kwargs)
    assert_close(out, expected_out)
    for row in pads:
        assert torch.equal(out[row], torch.zeros_like(out[row])), f"padded row {row} not zero"
    assert torch.equal(kwargs["conv_state"], expected_state), "cache differs"


# The vLLM dialect (CONTRACT 1.4): the same properties over its arguments.
KINDS = st.sampled_from([vllm_cases.REAL, vllm_cases.REAL, vllm_cases.PAD, vllm_cases.NULL])


@st.composite
def vllm_update_configs(draw):
    lmax = draw(st.integers(1, 6))
    batch = draw(st.integers(0, 8))
    n = batch
    return vllm_cases.update_config(
        width=draw(st.integers(2, 8)),
        mix=draw(st.sampled_from(DTYPE_MIXES)),
        dim=draw(st.one_of(st.integers(1, 40), st.integers(41, 300))),
        batch=batch,
        lmax=lmax,
        mode=draw(st.sampled_from(["2d", "3d", "varlen"])),
        spec=draw(st.booleans()),
        lengths=draw(st.lists(st.integers(0, lmax), min_size=n, max_size=n)),
        accepted=draw(st.lists(st.integers(0, lmax - 1), min_size=n, max_size=n)),
        kinds=draw(st.lists(KINDS, min_size=n, max_size=n)),
        null_block_id=draw(st.sampled_from([0, None])),
        num_lines=batch + 1 + draw(st.integers(0, 3)),
        extra=draw(st.integers(0, 3)),
        extra_state=draw(st.integers(0, 3)),
        tail_tokens=draw(st.integers(0, 3)),
        state_layout=draw(st.sampled_from(LAYOUTS)),
        x_layout=draw(st.sampled_from(LAYOUTS)),
        index_dtype=draw(st.sampled_from([torch.int32, torch.int64])),
        bias=draw(st.booleans()),
        activation=draw(st.sampled_from(["silu", None])),
        out=draw(st.sampled_from(["in place", "buffer"])),
        validate=draw(st.booleans()),
        index_2d=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


@st.composite
def vllm_fn_configs(draw):
    lengths = draw(st.lists(LENGTHS, min_size=0, max_size=7))
    n = len(lengths)
    return vllm_cases.fn_config(
        width=draw(st.integers(2, 8)),
        mix=draw(st.sampled_from(DTYPE_MIXES)),
        dim=draw(st.one_of(st.integers(1, 40), st.integers(41, 300))),
        lengths=lengths,
        init=draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        kinds=draw(st.lists(KINDS, min_size=n, max_size=n)),
        null_block_id=draw(st.sampled_from([0, None])),
        num_lines=n + 1 + draw(st.integers(0, 3)),
        extra=draw(st.integers(0, 3)),
        extra_state=draw(st.integers(0, 4)),
        x_layout=draw(st.sampled_from(LAYOUTS)),
        state_layout=draw(st.sampled_from(LAYOUTS)),
        index_dtype=draw(st.sampled_from([torch.int32, torch.int64])),
        bias=draw(st.booleans()),
        activation=draw(st.sampled_from(["silu", None])),
        validate=draw(st.booleans()),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


@pytest.mark.parametrize("device", devices())
@FUZZ
@given(config=vllm_update_configs())
def test_vllm_update_matches_reference(device, config):
    vllm_cases.check_update(
        vllm_cases.build_update(config, device), vllm_cases.padding_rows(config)
    )


@pytest.mark.parametrize("device", devices())
@FUZZ
@given(config=vllm_fn_configs())
def test_vllm_fn_matches_reference(device, config):
    vllm_cases.check_fn(vllm_cases.build_fn(config, device), vllm_cases.padding_rows(config))


@st.composite
def dao_configs(draw):
    width = draw(st.integers(2, 8))
    batch = draw(st.integers(0, 3))
    seqlen = draw(LENGTHS)
    with_seq = draw(st.booleans())
    # Any int32 ids, in any order, negative ones padding: runs of equal ids are sequences.
    ids = st.lists(st.integers(-2, 3), min_size=seqlen, max_size=seqlen)
    return dict(
        width=width,
        x_dtype=draw(st.sampled_from([torch.float32, torch.float16, torch.bfloat16])),
        w_dtype=draw(st.sampled_from([None, torch.float32])),  # None: x's dtype
        dim=draw(st.one_of(st.integers(1, 40), st.integers(41, 300))),
        batch=batch,
        seqlen=seqlen,
        layout=draw(st.sampled_from(LAYOUTS)),
        bias=draw(st.booleans()),
        seq_idx=[draw(ids) for _ in range(batch)] if with_seq else None,
        init=draw(st.booleans()),
        silu=draw(st.booleans()),
        grads=draw(st.booleans()),
    )


@FUZZ
@given(config=dao_configs())
def test_dao_fn_matches_reference(config):
    """The Dao dialect's forward (and, for half the examples, its gradients) against float64
    autograd of the reference: outputs close, padding exactly zero, final states exact."""
    from causal_conv1d_kernels import dao
    from causal_conv1d_kernels.testing.reference import dao_fn_ref

    c = config
    w_dtype = c["w_dtype"] or c["x_dtype"]
    x = rand((c["batch"], c["dim"], c["seqlen"]), c["x_dtype"], "cpu", c["layout"])
    weight = torch.randn(c["dim"], c["width"], dtype=w_dtype) / c["width"] ** 0.5
    bias = torch.randn(c["dim"], dtype=w_dtype) if c["bias"] else None
    seq_idx = None
    if c["seq_idx"] is not None:
        seq_idx = torch.tensor(c["seq_idx"], dtype=torch.int32).reshape(c["batch"], c["seqlen"])
    init = None
    if c["init"]:
        init = rand((c["batch"], c["dim"], c["width"] - 1), c["x_dtype"], "cpu", c["layout"])
    activation = "silu" if c["silu"] else None
    with_final = seq_idx is None
    leaves = [
        t.detach().requires_grad_() if t is not None else None for t in (x, weight, bias, init)
    ]
    result = dao.causal_conv1d_fn(
        leaves[0], leaves[1], leaves[2], seq_idx, leaves[3], with_final, activation=activation
    )
    out, final = result if with_final else (result, None)
    ref_leaves = [
        t.detach().double().requires_grad_() if t is not None else None
        for t in (x, weight, bias, init)
    ]
    ref_out, ref_final = dao_fn_ref(
        ref_leaves[0], ref_leaves[1], ref_leaves[2], seq_idx, ref_leaves[3], activation
    )
    assert_close(out.detach(), ref_out.detach().to(x.dtype))
    if seq_idx is not None:
        assert not out.detach().masked_select((seq_idx < 0)[:, None, :]).any()
    else:
        assert torch.equal(final.detach(), ref_final.detach().to(x.dtype))
    if not c["grads"] or x.numel() == 0:
        return
    dout = torch.randn(x.shape).to(x.dtype)
    loss = (out.double() * dout.double()).sum()
    ref_loss = (ref_out * dout.double()).sum()
    if with_final:
        dfinal = torch.randn(final.shape).to(x.dtype)
        loss = loss + (final.double() * dfinal.double()).sum()
        ref_loss = ref_loss + (ref_final * dfinal.double()).sum()
    live = [t for t in leaves if t is not None]
    got = torch.autograd.grad(loss, live)
    expected = torch.autograd.grad(ref_loss, [t for t in ref_leaves if t is not None])
    tol = {torch.float32: 1e-4, torch.bfloat16: 3e-2, torch.float16: 5e-3}
    for a, e, t in zip(got, expected, live):
        scale = e.abs().max().item() + 1e-30
        torch.testing.assert_close(a.double(), e, atol=tol[t.dtype] * scale, rtol=tol[t.dtype])


# ---- The SGLang dialect (CONTRACT 1.6): tree verify with any links, in-place prefill ----


def distinct_or_outside(draw, size, outside, batch):
    values = draw(st.permutations(range(size)))[:batch]
    swap = draw(st.lists(st.sampled_from([None, *outside]), min_size=batch, max_size=batch))
    return [v if o is None else o for v, o in zip(values, swap)]


@st.composite
def sglang_tree_configs(draw):
    n = draw(st.integers(1, 12))  # past 8: the CUDA walk without its short-row preload
    batch = draw(st.integers(0, 5))
    links = st.lists(
        st.one_of(st.integers(-1, n), st.integers(-(2**40), 2**40)), min_size=n, max_size=n
    )
    return dict(
        width=draw(st.integers(2, 8)),
        mix=draw(st.sampled_from(DTYPE_MIXES)),
        dim=draw(st.one_of(st.integers(1, 40), st.integers(41, 300))),
        n=n,
        batch=batch,
        kind=draw(st.sampled_from(["chain", "star", "binary", "random", "garbage", "none"])),
        garbage=[(draw(links), draw(links)) for _ in range(batch)],
        spec=draw(st.booleans()),
        windows=draw(st.sampled_from(["dense", "transposed", None])),
        index_dtype=draw(st.sampled_from([torch.int32, torch.int64])),
        # Distinct lines (rows sharing a line race, in any implementation), some of them
        # padding or outside the cache / the windows.
        lines=distinct_or_outside(draw, 9, [-1, -3, 9, 2**31 - 1], batch),
        window_lines=distinct_or_outside(draw, 7, [-2, 7, 100], batch),
        state_layout=draw(st.sampled_from(LAYOUTS)),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


@pytest.mark.parametrize("device", devices())
@FUZZ
@given(config=sglang_tree_configs())
def test_sglang_tree_update_matches_reference(device, config):
    import test_sglang as sg

    c = config
    tree = c["kind"] != "none"
    kw = sg.tree_case(
        c["width"],
        c["mix"],
        device,
        n=c["n"],
        kind="random" if c["kind"] == "garbage" else c["kind"] if tree else "chain",
        batch=max(c["batch"], 2),
        dim=c["dim"],
        spec=c["spec"],
        windows=c["windows"],
        tree=tree,
        index_dtype=c["index_dtype"],
        state_layout=c["state_layout"],
        seed=c["seed"],
    )
    batch = c["batch"]
    for name, v in kw.items():  # trim the batch (0 rows allowed)
        if name in ("x", "conv_state_indices", "num_accept_tokens", "intermediate_state_indices"):
            kw[name] = v[:batch] if v is not None else v
        elif name.startswith("retrieve"):
            kw[name] = v[:batch]
    kw["conv_state_indices"] = torch.tensor(c["lines"], dtype=c["index_dtype"], device=device)
    if c["windows"] is not None:
        kw["intermediate_state_indices"] = torch.tensor(
            c["window_lines"], dtype=torch.int32, device=device
        )
    if tree and c["kind"] == "garbage":
        kw["retrieve_next_token"] = torch.tensor(
            [g[0] for g in c["garbage"]], dtype=torch.int64, device=device
        ).reshape(batch, c["n"])
        kw["retrieve_next_sibling"] = torch.tensor(
            [g[1] for g in c["garbage"]], dtype=torch.int64, device=device
        ).reshape(batch, c["n"])
    sg.check_tree_call(kw)


@st.composite
def sglang_prefill_configs(draw):
    lengths = draw(st.lists(LENGTHS, min_size=1, max_size=6))
    return dict(
        width=draw(st.integers(2, 8)),
        mix=draw(st.sampled_from(DTYPE_MIXES)),
        dim=draw(st.one_of(st.integers(1, 40), st.integers(41, 300))),
        lengths=lengths,
        x_layout=draw(st.sampled_from(LAYOUTS)),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


@pytest.mark.parametrize("device", devices())
@FUZZ
@given(config=sglang_prefill_configs())
def test_sglang_in_place_prefill_matches_reference(device, config):
    import test_sglang as sg
    from causal_conv1d_kernels.sglang import jit
    from causal_conv1d_kernels.testing.reference import vllm_fn_ref

    c = config
    kw = sg.prefill_case(
        c["width"],
        c["mix"],
        device,
        c["lengths"],
        c["x_layout"],
        seed=c["seed"],
        dim=c["dim"],
        lines=len(c["lengths"]) + 2,
    )
    out_ref, states_ref = vllm_fn_ref(
        **{k: v.clone() for k, v in kw.items()}, activation=True, null_block_id=None
    )
    jit.causal_conv1d_fwd(
        kw["x"],
        kw["weight"],
        kw["bias"],
        kw["conv_states"],
        kw["query_start_loc"],
        kw["cache_indices"],
        kw["has_initial_state"],
        True,
        -1,
    )
    assert_close(kw["x"], out_ref)
    assert torch.equal(kw["conv_states"], states_ref)
