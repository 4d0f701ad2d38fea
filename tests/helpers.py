"""Shared test inputs: fresh random data in every layout the contract names."""

from __future__ import annotations

import itertools

import causal_conv1d_kernels
import pytest
import torch
from causal_conv1d_kernels import PAD_SLOT_ID, has_cuda_backend
from causal_conv1d_kernels._core import _silu

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16

# The time limit of every subprocess a test starts: only a hang reaches it, never a slow or
# loaded machine (CI's whole run has 90 minutes).
HANG_GUARD_S = 3600

# What a bad dtype raises when torch.ops.causal_conv1d.* is called directly: a TypeError from a
# classic build; from a stable-ABI build a ValueError whose message ends in " [TypeError]"
# (torch's stable ABI carries no TypeError; the Python API turns it into one: csrc/torch_api.h).
OP_TYPE_ERROR = TypeError if causal_conv1d_kernels.abi() == "classic" else ValueError
WIDTHS = list(range(2, 9))

# (x, weight/bias, states): the combinations serving engines use, plus odd mixes.
DTYPE_MIXES = [
    (F32, F32, F32),
    (F16, F16, F16),
    (BF16, BF16, BF16),
    (BF16, BF16, F32),
    (F16, BF16, F32),
    (F32, F16, BF16),
]


def mix_id(mix) -> str:
    return "-".join(str(d).removeprefix("torch.") for d in mix)


needs_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and has_cuda_backend()),
    reason="needs a GPU and the CUDA backend",
)


def devices():
    return ["cpu", pytest.param("cuda", marks=needs_cuda)]


def assert_close(actual: torch.Tensor, expected: torch.Tensor, equal_nan=False) -> None:
    """Outputs are rounded once from an fp32 accumulation: a couple of ulps of the dtype."""
    tol = {F32: (2e-5, 2e-5), F16: (2e-3, 2e-3), BF16: (1.6e-2, 1.6e-2)}[expected.dtype]
    assert actual.dtype == expected.dtype
    torch.testing.assert_close(actual, expected, atol=tol[0], rtol=tol[1], equal_nan=equal_nan)


def assert_unused_lines_untouched(states, before, used) -> None:
    """Cache lines no row or sequence maps to keep their exact previous contents."""
    for line in range(states.shape[0]):
        if line not in used:
            assert torch.equal(states[line], before[line]), f"unused line {line} changed"


def rand(shape, dtype, device, layout="contiguous") -> torch.Tensor:
    """A random (d0, d1) or (d0, d1, d2) tensor with the given memory layout.

    contiguous: row-major. channel_last: dim 0 (channels) has stride 1 for 2-D tensors; for
    3-D tensors dim 1 has stride 1. padded: channel-last with the other stride larger than
    needed (a slice of a wider buffer). strided: every dim stepped by 2.
    """
    if layout == "contiguous":
        return torch.randn(shape, dtype=dtype, device=device)
    if layout == "strided":
        big = torch.randn([2 * s for s in shape], dtype=dtype, device=device)
        return big[tuple(slice(None, None, 2) for _ in shape)]
    if len(shape) == 2:
        d, t = shape
        extra = 3 if layout == "padded" else 0
        return torch.randn(t, d + extra, dtype=dtype, device=device)[:, :d].t()
    n, d, s = shape
    extra = 3 if layout == "padded" else 0
    return torch.randn(n, s, d + extra, dtype=dtype, device=device)[:, :, :d].transpose(1, 2)


def cumulative(lengths, dtype, device) -> torch.Tensor:
    return torch.tensor([0, *itertools.accumulate(lengths)], dtype=dtype, device=device)


def fwd_case(
    width,
    mix,
    device="cpu",
    x_layout="channel_last",
    state_layout="channel_last",
    extra_state=0,
    lengths=None,
    index_dtype=torch.int32,
    dim=80,
    num_lines=16,
    bias=True,
    with_cache=True,
    seed=0,
):
    """Arguments of causal_conv1d_fn for a varlen batch mixing every interesting length,
    initial states and padding. Returns (kwargs, info) where info lists padded sequences."""
    torch.manual_seed(seed)
    x_dtype, w_dtype, s_dtype = mix
    if lengths is None:
        lengths = [0, 1, 2, width - 1, width, 129, 5, width + 1, 3]
    batch = len(lengths)
    x = rand((dim, sum(lengths)), x_dtype, device, x_layout)
    weight = torch.randn(dim, width, dtype=w_dtype, device=device)
    b = torch.randn(dim, dtype=w_dtype, device=device) if bias else None
    kwargs = dict(
        x=x,
        weight=weight,
        bias=b,
        conv_states=None,
        query_start_loc=cumulative(lengths, index_dtype, device),
    )
    pads = [i for i in range(batch) if i % 4 == 2] if with_cache else []
    if with_cache:
        lines = torch.randperm(num_lines)[:batch]
        lines[pads] = PAD_SLOT_ID
        states = rand((num_lines, dim, width - 1 + extra_state), s_dtype, device, state_layout)
        kwargs.update(
            conv_states=states,
            cache_indices=lines.to(device=device, dtype=index_dtype),
            has_initial_state=(torch.arange(batch) % 3 != 1).to(device),
        )
    return kwargs, pads


def update_case(
    width,
    mix,
    device="cpu",
    seqlen=1,
    squeeze=False,
    circular=False,
    extra_state=0,
    x_layout="contiguous",
    state_layout="channel_last",
    index_dtype=torch.int64,
    batch=7,
    dim=72,
    num_lines=12,
    with_indices=True,
    bias=True,
    seed=0,
):
    """Arguments of causal_conv1d_update (a padded row included when with_indices)."""
    torch.manual_seed(seed)
    x_dtype, w_dtype, s_dtype = mix
    state_len = width - 1 + extra_state
    x = rand((batch, dim, seqlen), x_dtype, device, x_layout)
    if squeeze:
        x = x[:, :, 0]
    kwargs = dict(
        x=x,
        conv_state=rand((num_lines, dim, state_len), s_dtype, device, state_layout),
        weight=torch.randn(dim, width, dtype=w_dtype, device=device),
        bias=torch.randn(dim, dtype=w_dtype, device=device) if bias else None,
        activation="silu",
    )
    pads = []
    if with_indices:
        lines = torch.randperm(num_lines)[:batch]
        pads = [1] if batch > 1 else []
        lines[pads] = PAD_SLOT_ID
        kwargs["conv_state_indices"] = lines.to(device=device, dtype=index_dtype)
    if circular:
        # Positions past several laps of the ring, so the window wraps around.
        kwargs["cache_seqlens"] = torch.randint(
            0, 4 * state_len, (batch,), dtype=index_dtype, device=device
        )
    return kwargs, pads


def fwd_op_args(kwargs, activation="silu"):
    """Positional arguments of torch.ops.causal_conv1d.causal_conv1d_fwd for fwd_case kwargs."""
    return (
        kwargs["x"],
        kwargs["weight"],
        kwargs["bias"],
        kwargs["conv_states"],
        kwargs["query_start_loc"],
        kwargs.get("cache_indices"),
        kwargs.get("has_initial_state"),
        _silu("test", activation),
        -1,
    )


def update_op_args(kwargs, out):
    """Positional arguments of torch.ops.causal_conv1d.causal_conv1d_update."""
    return (
        kwargs["x"],
        kwargs["conv_state"],
        kwargs["weight"],
        kwargs["bias"],
        _silu("test", kwargs["activation"]),
        kwargs.get("cache_seqlens"),
        kwargs.get("conv_state_indices"),
        -1,
        out,
    )


def check_rejected(call, kwargs, mutate, exc, words):
    mutate(kwargs)
    states = kwargs.get("conv_states", kwargs.get("conv_state"))
    before = None if states is None or states.is_meta else states.clone()
    with pytest.raises(exc) as info:
        call(**kwargs)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    if before is not None:
        assert torch.equal(states, before), "a rejected call modified the cache"
