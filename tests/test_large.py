"""Tensors over 2^31 elements (issue 5): a prefill whose x has more than 2^31 elements and a
cache with more than 2^31 elements, checked on sampled sequences and lines against the
reference. On CUDA when the GPU has the memory (about 22 GB); on the CPU only when
CAUSAL_CONV1D_LARGE_CPU=1 (the same memory in RAM, and minutes of work)."""

from __future__ import annotations

import os

import pytest
import torch
from causal_conv1d_kernels import causal_conv1d_fn, causal_conv1d_update, has_cuda_backend
from causal_conv1d_kernels.testing.reference import causal_conv1d_fn_ref, causal_conv1d_update_ref
from helpers import BF16, assert_close, cumulative

DIM, WIDTH = 4096, 4
TOKENS = 2**31 // DIM + 3000  # x: 2^31 + 12.3M elements
LINES = 2**31 // (DIM * (WIDTH - 1)) + 1000  # cache: 2^31 + 12.3M elements
NEEDED = 2 * 2 * TOKENS * DIM + 2 * LINES * DIM * (WIDTH - 1) + 2**30  # bytes, with slack


def large_devices():
    cuda_ok = (
        torch.cuda.is_available()
        and has_cuda_backend()
        and torch.cuda.get_device_properties(0).total_memory > NEEDED
    )
    cpu_ok = os.environ.get("CAUSAL_CONV1D_LARGE_CPU") == "1"
    return [
        pytest.param("cpu", marks=pytest.mark.skipif(not cpu_ok, reason="CAUSAL_CONV1D_LARGE_CPU")),
        pytest.param("cuda", marks=pytest.mark.skipif(not cuda_ok, reason="needs a large GPU")),
    ]


def filled(shape, device, seed):
    """Random bf16 values, generated in slabs (a whole fp32 tensor would not fit)."""
    g = torch.Generator(device=device).manual_seed(seed)
    t = torch.empty(shape, dtype=BF16, device=device)
    flat = t.view(-1)
    step = 2**27
    for i in range(0, flat.numel(), step):
        n = min(step, flat.numel() - i)
        flat[i : i + n] = torch.randn(n, generator=g, device=device, dtype=torch.float32)
    return t


@pytest.mark.parametrize("device", large_devices())
def test_prefill_and_decode_beyond_2_31_elements(device):
    # x channel-last: (TOKENS, DIM) memory, seen as (DIM, TOKENS).
    x = filled((TOKENS, DIM), device, 1).t()
    states = filled((LINES, WIDTH - 1, DIM), device, 2).transpose(1, 2)
    weight = torch.randn(DIM, WIDTH, device=device).to(BF16)
    bias = torch.randn(DIM, device=device).to(BF16)
    # The last sequences start past element 2^31 of x; their lines lie past element 2^31 of
    # the cache.
    lengths = [TOKENS - 700, 500, 7, 193]
    lines = [0, LINES - 1, LINES - 7, LINES // 2]
    qsl = cumulative(lengths, torch.int64, device)
    indices = torch.tensor(lines, device=device)
    init = torch.tensor([True, True, False, True], device=device)
    sampled = list(range(1, 4))
    before = {line: states[line].clone() for line in lines}

    out = causal_conv1d_fn(x, weight, bias, states, qsl, indices, init, activation="silu")
    assert out.shape == x.shape
    bounds = qsl.tolist()
    for seq in sampled:
        begin, end = bounds[seq], bounds[seq + 1]
        assert begin * DIM > 2**31
        local = torch.stack([before[lines[seq]]])
        expected, expected_states = causal_conv1d_fn_ref(
            x[:, begin:end],
            weight,
            bias,
            local,
            cumulative([end - begin], torch.int64, device),
            torch.tensor([0], device=device),
            init[seq : seq + 1],
            activation="silu",
        )
        assert_close(out[:, begin:end], expected)
        assert torch.equal(states[lines[seq]], expected_states[0]), f"line {lines[seq]}"
    # The first sequence's head and tail, far apart in x.
    head, _ = causal_conv1d_fn_ref(
        x[:, :64],
        weight,
        bias,
        torch.stack([before[0]]),
        cumulative([64], torch.int64, device),
        torch.tensor([0], device=device),
        init[:1],
        activation="silu",
    )
    assert_close(out[:, :64], head)

    # Decode on lines past element 2^31 of the cache.
    rows = torch.tensor([LINES - 1, LINES - 3, 5], device=device)
    xd = torch.randn(3, DIM, device=device).to(BF16)
    local = states[rows].clone()
    expected, expected_local = causal_conv1d_update_ref(xd, local, weight, bias, "silu")
    got = causal_conv1d_update(xd, states, weight, bias, "silu", conv_state_indices=rows)
    assert_close(got, expected)
    for i, row in enumerate(rows.tolist()):
        assert torch.equal(states[row], expected_local[i]), f"line {row}"
