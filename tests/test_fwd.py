"""causal_conv1d_fn against the float64 reference (CONTRACT 1.1)."""

import pytest
import torch
from causal_conv1d_kernels import causal_conv1d_fn
from causal_conv1d_kernels.testing.reference import causal_conv1d_fn_ref
from helpers import (
    BF16,
    DTYPE_MIXES,
    F16,
    F32,
    WIDTHS,
    assert_close,
    assert_unused_lines_untouched,
    devices,
    fwd_case,
    mix_id,
    needs_cuda,
    rand,
)


def run_and_check(kwargs, pads, activation="silu"):
    """Runs op and reference on the same inputs and checks everything the contract says."""
    states = kwargs["conv_states"]
    before = None if states is None else states.clone()
    x_before = kwargs["x"].clone()
    expected_out, expected_states = causal_conv1d_fn_ref(**kwargs, activation=activation)
    out = causal_conv1d_fn(**kwargs, activation=activation)

    assert out.shape == kwargs["x"].shape and out.dtype == kwargs["x"].dtype
    assert torch.equal(kwargs["x"], x_before), "x must not be modified"
    assert_close(out, expected_out)
    qsl = kwargs["query_start_loc"].tolist()
    for i in pads:
        assert torch.equal(
            out[:, qsl[i] : qsl[i + 1]], torch.zeros_like(out[:, qsl[i] : qsl[i + 1]])
        )
    if states is not None:
        assert torch.equal(states, expected_states), "states must match the reference bit-exactly"
        used = {int(v) for v in kwargs["cache_indices"].tolist()}
        assert_unused_lines_untouched(states, before, used)
    return out


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("mix", DTYPE_MIXES, ids=mix_id)
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(
    "x_layout,state_layout,extra_state",
    [
        ("channel_last", "channel_last", 0),
        ("contiguous", "contiguous", 0),
        ("padded", "channel_last", 3),
        ("strided", "contiguous", 5),
    ],
)
def test_matches_reference(device, mix, width, x_layout, state_layout, extra_state):
    kwargs, pads = fwd_case(
        width, mix, device, x_layout=x_layout, state_layout=state_layout, extra_state=extra_state
    )
    run_and_check(kwargs, pads)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("activation", [None, False, True, "silu", "swish"])
@pytest.mark.parametrize("bias", [True, False])
def test_activation_and_bias(device, activation, bias):
    kwargs, pads = fwd_case(4, (BF16, BF16, BF16), device, bias=bias)
    run_and_check(kwargs, pads, activation=activation)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("width", [2, 4, 7])
def test_without_cache(device, index_dtype, width):
    kwargs, pads = fwd_case(
        width, (F16, F32, F32), device, with_cache=False, index_dtype=index_dtype
    )
    run_and_check(kwargs, pads)


@pytest.mark.parametrize("device", devices())
def test_pad_ids_without_cache(device):
    """cache_indices may mark padding even when no cache is given."""
    kwargs, _ = fwd_case(4, (F32, F32, F32), device, with_cache=False)
    batch = kwargs["query_start_loc"].numel() - 1
    kwargs["cache_indices"] = torch.arange(batch, device=device)
    kwargs["cache_indices"][5] = -1
    run_and_check(kwargs, [5])


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("width", [2, 4, 8])
def test_long_states_short_sequences(device, width):
    """state_len well beyond width-1 with sequences shorter than it: the old state shifts."""
    kwargs, pads = fwd_case(
        width, (F32, F32, BF16), device, extra_state=9, lengths=[1, 2, 3, 0, 4, 11, 6, 1]
    )
    run_and_check(kwargs, pads)


@pytest.mark.parametrize("device", devices())
def test_default_cache_lines(device):
    """Without cache_indices sequence i uses line i."""
    kwargs, _ = fwd_case(3, (F32, F32, F32), device)
    kwargs["cache_indices"] = None
    states = kwargs["conv_states"]
    before = states.clone()
    expected_out, expected_states = causal_conv1d_fn_ref(**kwargs)
    out = causal_conv1d_fn(**kwargs)
    assert_close(out, expected_out)
    assert torch.equal(states, expected_states)
    batch = kwargs["query_start_loc"].numel() - 1
    assert torch.equal(states[batch:], before[batch:])


@pytest.mark.parametrize("device", devices())
def test_output_layout_follows_x(device):
    for layout, channel_last in [("channel_last", True), ("padded", True), ("contiguous", False)]:
        kwargs, _ = fwd_case(4, (F32, F32, F32), device, x_layout=layout)
        out = causal_conv1d_fn(**kwargs)
        assert (out.stride(0) == 1) == channel_last, (layout, out.stride())
        assert (out.t() if channel_last else out).is_contiguous(), (layout, out.stride())


@pytest.mark.parametrize("device", devices())
def test_empty_inputs(device):
    """No tokens, no sequences, only empty sequences: nothing happens, no crash."""
    for lengths in ([], [0], [0, 0, 0]):
        kwargs, _ = fwd_case(4, (F32, F32, F32), device, lengths=lengths)
        states_before = kwargs["conv_states"].clone()
        out = causal_conv1d_fn(**kwargs)
        assert out.shape == (80, 0)
        assert torch.equal(kwargs["conv_states"], states_before)


@pytest.mark.parametrize("device", devices())
def test_many_sequences_parallel_split(device):
    """Enough work to split over threads: many sequences and channel blocks."""
    lengths = [
        int(v) for v in torch.randint(0, 40, (150,), generator=torch.Generator().manual_seed(3))
    ]
    kwargs, pads = fwd_case(4, (BF16, BF16, F32), device, lengths=lengths, dim=300, num_lines=200)
    run_and_check(kwargs, pads)


@pytest.mark.parametrize("device", devices())
def test_all_padding(device):
    kwargs, _ = fwd_case(4, (F16, F16, F16), device)
    kwargs["cache_indices"].fill_(-1)
    batch = kwargs["query_start_loc"].numel() - 1
    out = run_and_check(kwargs, list(range(batch)))
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("device", devices())
def test_custom_pad_slot_id(device):
    kwargs, _ = fwd_case(4, (F32, F32, F32), device)
    kwargs["cache_indices"][kwargs["cache_indices"] == -1] = 99
    kwargs["pad_slot_id"] = 99
    expected_out, expected_states = causal_conv1d_fn_ref(**kwargs)
    out = causal_conv1d_fn(**kwargs)
    assert_close(out, expected_out)
    assert torch.equal(kwargs["conv_states"], expected_states)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("out_layout", ["channel_last", "contiguous", "strided"])
def test_out_buffer(device, out_layout):
    """out=: every element written (the buffer starts as NaN), any strides, same results."""
    kwargs, pads = fwd_case(4, (BF16, BF16, F32), device)
    expected_out, expected_states = causal_conv1d_fn_ref(**kwargs)
    out = rand(tuple(kwargs["x"].shape), BF16, device, out_layout).fill_(float("nan"))
    result = causal_conv1d_fn(**kwargs, out=out)
    assert result is out
    assert_close(out, expected_out)
    assert torch.equal(kwargs["conv_states"], expected_states)


@needs_cuda
@pytest.mark.parametrize("mix", DTYPE_MIXES, ids=mix_id)
@pytest.mark.parametrize("width", [3, 4])
@pytest.mark.parametrize(
    "lengths", [(5, 130, 0, 40), (4100, 37, 1, 3)], ids=["short_batch", "fills_gpu"]
)
def test_cuda_prefill_thread_widths(mix, width, lengths):
    """Both widths of the CUDA prefill's vector path: 8 bytes of x per thread for a batch too
    short to fill the GPU, 16 bytes once the grid fills it (csrc/cuda/causal_conv1d_fwd.cu),
    with a channel tail after the last full block and initial states on some sequences."""
    kwargs, pads = fwd_case(width, mix, "cuda", lengths=list(lengths), dim=2056, seed=4)
    run_and_check(kwargs, pads)


@needs_cuda
@pytest.mark.parametrize("width", [2, 4])
@pytest.mark.parametrize("fills", [False, True], ids=["short_batch", "fills_gpu"])
def test_cuda_prefill_every_tail(width, fills):
    """Sequences of every length from 1 to 33 in one batch: a program's tokens end in every
    combination of whole groups of 8 (loaded together) and the tokens after them, on both
    thread widths of the CUDA prefill (a long sequence makes the grid fill the GPU, and its
    last program ends past a whole group too), with padded and initial-state sequences among
    them and the new states written after the outputs."""
    lengths = list(range(1, 34)) + ([8192 + 7] if fills else [])
    kwargs, pads = fwd_case(
        width, (BF16, BF16, BF16), "cuda", lengths=lengths, dim=2048, num_lines=40, seed=6
    )
    run_and_check(kwargs, pads)


@needs_cuda
@pytest.mark.parametrize("x_layout", ["channel_last", "channel_first"])
@pytest.mark.parametrize("batch", [1, 2, 31, 32, 33, 1024, 1025, 1300])
def test_cuda_sequence_search_at_every_round_count(batch, x_layout):
    """Each CUDA prefill program finds its sequence by a warp's 32-way search over
    query_start_loc: one round up to 32 sequences, two up to 1024, three past that, the
    range taken from the last round's lanes (or loaded, when the search ends early). Empty,
    one-token, padded and initial-state sequences among them, both x layouts (two kernels)."""
    g = torch.Generator().manual_seed(batch)
    lengths = [int(v) for v in torch.randint(0, 12, (batch,), generator=g)]
    lengths[-1] += 40  # programs after a long last sequence
    kwargs, pads = fwd_case(
        4,
        (BF16, BF16, BF16),
        "cuda",
        x_layout,
        lengths=lengths,
        dim=64,
        num_lines=batch + 3,
        seed=batch,
    )
    run_and_check(kwargs, pads)


@pytest.mark.parametrize("threads", [1, 2, 3, 7, 16])
def test_cpu_prefill_split_across_threads(threads):
    """The CPU prefill cuts its items (token chunks x channel slabs, narrower slabs when there
    are few) into one range per thread by their cost: at every thread count each item runs
    once (a state updated twice would differ), with outputs and states matching the
    reference, over lengths that leave chunks of every size."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        lengths = [1, 300, 7, 0, 64, 2, 257, 90, 3, 513]
        kwargs, pads = fwd_case(4, (BF16, BF16, BF16), "cpu", lengths=lengths, dim=1000)
        run_and_check(kwargs, pads)
    finally:
        torch.set_num_threads(before)
