"""causal_conv1d_update against the float64 reference (CONTRACT 1.2)."""

import pytest
import torch
from causal_conv1d_kernels import causal_conv1d_update
from causal_conv1d_kernels.testing.reference import causal_conv1d_update_ref
from helpers import (
    BF16,
    DTYPE_MIXES,
    F16,
    F32,
    WIDTHS,
    assert_close,
    assert_unused_lines_untouched,
    devices,
    mix_id,
    needs_cuda,
    update_case,
)


def run_and_check(kwargs, pads, inplace=False):
    state = kwargs["conv_state"]
    before = state.clone()
    x = kwargs["x"]
    expected_out, expected_state = causal_conv1d_update_ref(**kwargs)
    if inplace:
        out = causal_conv1d_update(**kwargs, out=x)
        assert out is x
    else:
        x_before = x.clone()
        out = causal_conv1d_update(**kwargs)
        assert torch.equal(x, x_before), "x must not be modified without out=x"
    assert out.shape == x.shape and out.dtype == x.dtype
    assert_close(out, expected_out)
    for row in pads:
        assert torch.equal(out[row], torch.zeros_like(out[row])), f"padded row {row} not zero"
    assert torch.equal(state, expected_state), "state must match the reference bit-exactly"
    indices = kwargs.get("conv_state_indices")
    used = set(range(x.shape[0])) if indices is None else {int(v) for v in indices.tolist()}
    assert_unused_lines_untouched(state, before, used)
    return out


def assert_rows_alone_match(kwargs, whole):
    """Each row of the call `kwargs` made alone (one-row calls, where the CPU decode reads the
    filter in place) gives the bits of `whole`, the outputs of the call on all rows."""
    kwargs = dict(kwargs)
    lines = kwargs.pop("conv_state_indices")
    x = kwargs.pop("x")
    for row in range(x.shape[0]):
        one = causal_conv1d_update(x[row : row + 1], **kwargs, conv_state_indices=lines[row:][:1])
        assert torch.equal(one[0], whole[row]), f"row {row}"


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("mix", DTYPE_MIXES, ids=mix_id)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("circular", [False, True], ids=["linear", "circular"])
@pytest.mark.parametrize(
    "seqlen,squeeze", [(1, True), (1, False), (3, False)], ids=["2d", "L1", "L3"]
)
def test_matches_reference(device, mix, width, circular, seqlen, squeeze):
    kwargs, pads = update_case(
        width, mix, device, seqlen=seqlen, squeeze=squeeze, circular=circular, extra_state=2
    )
    run_and_check(kwargs, pads)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("mix", DTYPE_MIXES, ids=mix_id)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("dim", [72, 75])
def test_decode_step(device, mix, width, dim):
    """The common serving step, which CPU and CUDA compute in registers of their own: one
    token, a linear state of exactly width-1 columns, channel-last; 75 channels leave a
    tail after every vector width."""
    kwargs, pads = update_case(width, mix, device, squeeze=True, dim=dim)
    run_and_check(kwargs, pads)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("width", [2, 4, 8])
@pytest.mark.parametrize("circular", [False, True], ids=["linear", "circular"])
@pytest.mark.parametrize("extra_state", [0, 5])
def test_more_tokens_than_state(device, width, circular, extra_state):
    """seqlen > state_len: only the newest tokens survive (ring: later tokens overwrite)."""
    state_len = width - 1 + extra_state
    kwargs, pads = update_case(
        width,
        (BF16, BF16, F32),
        device,
        seqlen=state_len + 3,
        circular=circular,
        extra_state=extra_state,
    )
    run_and_check(kwargs, pads)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("x_layout", ["contiguous", "channel_last", "padded", "strided"])
@pytest.mark.parametrize("state_layout", ["contiguous", "channel_last", "strided"])
def test_layouts(device, x_layout, state_layout):
    kwargs, pads = update_case(
        4,
        (F16, F16, F16),
        device,
        seqlen=4,
        x_layout=x_layout,
        state_layout=state_layout,
        extra_state=1,
        circular=x_layout == "padded",
    )
    run_and_check(kwargs, pads)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("seqlen,squeeze", [(1, True), (1, False), (5, False)])
@pytest.mark.parametrize("circular", [False, True], ids=["linear", "circular"])
@pytest.mark.parametrize("x_layout", ["contiguous", "channel_last"])
def test_in_place(device, seqlen, squeeze, circular, x_layout):
    """out=x: every output token is computed from the original x, and the state too."""
    kwargs, pads = update_case(
        4,
        (BF16, BF16, BF16),
        device,
        seqlen=seqlen,
        squeeze=squeeze,
        circular=circular,
        x_layout=x_layout,
    )
    run_and_check(kwargs, pads, inplace=True)


@pytest.mark.parametrize("device", devices())
def test_out_buffer(device):
    kwargs, pads = update_case(4, (F32, F32, F32), device, seqlen=2)
    out = torch.full_like(kwargs["x"], float("nan"))
    expected_out, expected_state = causal_conv1d_update_ref(**kwargs)
    result = causal_conv1d_update(**kwargs, out=out)
    assert result is out
    assert_close(out, expected_out)
    assert torch.equal(kwargs["conv_state"], expected_state)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("circular", [False, True], ids=["linear", "circular"])
def test_without_indices(device, circular):
    kwargs, pads = update_case(
        3, (F32, BF16, F16), device, seqlen=2, with_indices=False, circular=circular
    )
    assert pads == []
    run_and_check(kwargs, pads)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("activation", [None, False, True, "silu", "swish"])
@pytest.mark.parametrize("bias", [True, False])
def test_activation_and_bias(device, activation, bias):
    kwargs, pads = update_case(4, (F32, F32, F32), device, bias=bias)
    kwargs["activation"] = activation
    run_and_check(kwargs, pads)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
def test_index_dtypes(device, index_dtype):
    kwargs, pads = update_case(
        4, (BF16, BF16, BF16), device, circular=True, index_dtype=index_dtype
    )
    run_and_check(kwargs, pads)


@pytest.mark.parametrize("device", devices())
def test_large_batch_parallel_split(device):
    kwargs, pads = update_case(
        4, (BF16, BF16, BF16), device, batch=300, num_lines=400, dim=256, seqlen=2
    )
    run_and_check(kwargs, pads)


def step_batch(shape: str, sms: int) -> int:
    """A batch that puts a 1032-channel bf16 decode step on each of the CUDA step kernel's
    widths (csrc/cuda/causal_conv1d_update.cu, step_bytes) on a GPU of `sms` SMs: 3 blocks
    per row at 8 bytes per thread, 5 at 4 bytes, 9 at one channel."""
    return {"spread": 1, "half": max(1, sms // 4), "one_row": sms, "many_rows": 6 * sms + 1}[shape]


@needs_cuda
@pytest.mark.parametrize("mix", DTYPE_MIXES, ids=mix_id)
@pytest.mark.parametrize("width", [3, 4])
@pytest.mark.parametrize("shape", ["spread", "half", "one_row", "many_rows"])
def test_cuda_step_shapes(mix, width, shape):
    """Each width of the CUDA decode step (one channel per thread over many SMs for a small
    batch, 4 bytes, 8 bytes for a batch that fills the GPU), against the reference with a
    padded row among them."""
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    batch = step_batch(shape, sms)
    kwargs, pads = update_case(
        width, mix, "cuda", squeeze=True, batch=batch, num_lines=batch + 5, dim=1032, seed=3
    )
    run_and_check(kwargs, pads)


@pytest.mark.parametrize("device", devices())
def test_empty_batch(device):
    kwargs, _ = update_case(4, (F32, F32, F32), device, batch=0)
    before = kwargs["conv_state"].clone()
    out = causal_conv1d_update(**kwargs)
    assert out.shape == (0, 72, 1)
    assert torch.equal(kwargs["conv_state"], before)


@pytest.mark.parametrize("device", devices())
def test_decode_continues_prefill(device):
    """A prefill followed by single-token decodes equals one prefill over all tokens."""
    from causal_conv1d_kernels import causal_conv1d_fn
    from helpers import cumulative

    torch.manual_seed(1)
    dim, width, steps = 64, 4, 5
    x = torch.randn(20 + steps, dim, device=device).t()
    weight = torch.randn(dim, width, device=device)
    bias = torch.randn(dim, device=device)
    states = torch.zeros(2, dim, width - 1, device=device)
    qsl = cumulative([20], torch.int32, device)
    lines = torch.tensor([1], device=device)
    whole = causal_conv1d_fn(x, weight, bias, None, cumulative([20 + steps], torch.int32, device))
    head = causal_conv1d_fn(x[:, :20], weight, bias, states, qsl, lines)
    assert_close(head, whole[:, :20])
    for t in range(20, 20 + steps):
        y = causal_conv1d_update(
            x[:, t][None], states, weight, bias, "silu", conv_state_indices=lines
        )
        assert_close(y[0], whole[:, t])
    assert torch.equal(states[1], x[:, -(width - 1) :])


@pytest.mark.parametrize("width", [2, 3, 4])
@pytest.mark.parametrize("s_dtype", [BF16, F32], ids=["bf16_state", "f32_state"])
@pytest.mark.parametrize("activation", [None, "silu"])
def test_cpu_decode_filter_in_place_or_copied(width, s_dtype, activation):
    """The CPU decode step reads a bf16 filter and bias in place when each thread has a few
    rows (up to 8), and works from an fp32 copy made per call otherwise or when the bias is
    of another type. The paths give the same bits: a 20-row call on one thread (copied) row
    by row against one-row calls (in place, at widths 2 and 4 with AVX-512), and against the
    same call with the bias given in fp32 (copied); 75 channels leave a tail."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        kwargs, pads = update_case(
            width, (BF16, BF16, s_dtype), "cpu", squeeze=True, batch=20, num_lines=24, dim=75
        )
        kwargs["activation"] = activation
        states = kwargs["conv_state"].clone()
        whole = run_and_check(kwargs, pads)
        kwargs["conv_state"] = states.clone()
        f32_bias = causal_conv1d_update(**dict(kwargs, bias=kwargs["bias"].float()))
        assert torch.equal(f32_bias, whole)
        kwargs["conv_state"] = states
        assert_rows_alone_match(kwargs, whole)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("extra_state", [0, 1], ids=["S3", "S4"])
@pytest.mark.parametrize("dim", [64, 75, 117])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("activation", [None, "silu"])
def test_cpu_decode_channel_major_lines(extra_state, dim, bias, activation):
    """Dao's state layout, each channel's S columns side by side ((lines, dim, S) contiguous,
    S = 3 or HF's 4): bf16 width-4 steps go through the AVX-512 set's channel-major step
    (where it runs). Against the reference with bit-exact states, for 20 rows on one thread
    (the fp32 filter copy) and row by row (the filter read in place); 75 channels leave a
    tail after the 16-channel blocks, 117 take the step over 4, 2 and 1 registers and a tail."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        kwargs, pads = update_case(
            4,
            (BF16, BF16, BF16),
            "cpu",
            squeeze=True,
            batch=20,
            num_lines=24,
            dim=dim,
            extra_state=extra_state,
            state_layout="contiguous",
            bias=bias,
        )
        kwargs["activation"] = activation
        states = kwargs["conv_state"].clone()
        whole = run_and_check(kwargs, pads)
        kwargs["conv_state"] = states
        assert_rows_alone_match(kwargs, whole)
    finally:
        torch.set_num_threads(threads)
