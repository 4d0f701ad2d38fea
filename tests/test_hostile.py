"""Hostile inputs (issue 5): non-finite values propagate as in the reference, degenerate
shapes do nothing, tensors on the wrong device and index tensors of the wrong kind are
rejected naming the argument, before any cache is modified."""

import pytest
import torch
from causal_conv1d_kernels import causal_conv1d_fn, causal_conv1d_update, has_cuda_backend
from causal_conv1d_kernels.testing.reference import causal_conv1d_fn_ref, causal_conv1d_update_ref
from helpers import (
    BF16,
    DTYPE_MIXES,
    F16,
    F32,
    check_rejected,
    devices,
    fwd_case,
    mix_id,
    update_case,
)

SPECIALS = [float("nan"), float("inf"), -float("inf")]


def sprinkle(t: torch.Tensor, count: int, seed: int) -> None:
    """Writes NaN, +inf and -inf at `count` random positions of t, in place."""
    g = torch.Generator().manual_seed(seed)
    for i in range(count):
        position = tuple(int(torch.randint(0, s, (1,), generator=g)) for s in t.shape)
        t[position] = SPECIALS[i % len(SPECIALS)]


def assert_same_values(actual, expected, what):
    """Equal, NaN where the reference has NaN, infinities of the same sign; 16-bit and fp32
    outputs within the tolerance of the finite tests."""
    tol = {F32: 2e-5, F16: 2e-3, BF16: 1.6e-2}[expected.dtype]
    torch.testing.assert_close(actual, expected, atol=tol, rtol=tol, equal_nan=True, msg=what)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("mix", DTYPE_MIXES, ids=mix_id)
@pytest.mark.parametrize("where", ["x", "weight", "bias", "conv_states"])
@pytest.mark.parametrize("activation", ["silu", None])
def test_fwd_nonfinite_like_reference(device, mix, where, activation):
    kwargs, _ = fwd_case(4, mix, device, lengths=[7, 1, 40, 3, 0, 18], dim=70)
    sprinkle(kwargs[where], 6, seed=len(where))
    kwargs["activation"] = activation
    expected_out, expected_states = causal_conv1d_fn_ref(**kwargs)
    out = causal_conv1d_fn(**kwargs)
    assert_same_values(out, expected_out, "outputs")
    torch.testing.assert_close(
        kwargs["conv_states"], expected_states, atol=0, rtol=0, equal_nan=True, msg="states"
    )


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("mix", DTYPE_MIXES, ids=mix_id)
@pytest.mark.parametrize("where", ["x", "weight", "bias", "conv_state"])
@pytest.mark.parametrize("seqlen", [1, 3])
def test_update_nonfinite_like_reference(device, mix, where, seqlen):
    kwargs, _ = update_case(4, mix, device, seqlen=seqlen, squeeze=seqlen == 1, batch=9)
    sprinkle(kwargs[where], 6, seed=len(where))
    expected_out, expected_state = causal_conv1d_update_ref(**kwargs)
    out = causal_conv1d_update(**kwargs)
    assert_same_values(out, expected_out, "outputs")
    torch.testing.assert_close(
        kwargs["conv_state"], expected_state, atol=0, rtol=0, equal_nan=True, msg="states"
    )


@pytest.mark.parametrize("device", devices())
def test_silu_of_extremes(device):
    """SiLU at the ends of the range: -0 for large negative inputs, NaN for -inf, +inf for
    +inf, the input itself for large positive ones; in every dtype."""
    values = [-float("inf"), -1e4, -200.0, -88.9, -30.0, 0.0, 30.0, 200.0, 1e4, float("inf")]
    tokens = [v for value in values for v in (value, 1.0)]  # a finite token after each
    for dtype in (F32, F16, BF16):
        x = torch.tensor(tokens, dtype=dtype, device=device).repeat(40, 1)  # (dim, tokens)
        weight = torch.zeros(40, 2, dtype=dtype, device=device)
        weight[:, 1] = 1  # out[t] = silu(x[t]) at the special tokens
        qsl = torch.tensor([0, x.shape[1]], dtype=torch.int32, device=device)
        out = causal_conv1d_fn(x, weight, None, None, qsl, activation="silu")
        expected, _ = causal_conv1d_fn_ref(x, weight, None, None, qsl, activation="silu")
        assert_same_values(out, expected, f"silu in {dtype}")


@pytest.mark.parametrize("device", devices())
def test_update_all_padding(device):
    kwargs, _ = update_case(4, (BF16, BF16, F32), device, seqlen=2, circular=True, batch=5)
    kwargs["conv_state_indices"].fill_(-1)
    before = kwargs["conv_state"].clone()
    out = causal_conv1d_update(**kwargs)
    assert torch.equal(out, torch.zeros_like(out))
    assert torch.equal(kwargs["conv_state"], before)


@pytest.mark.parametrize("device", devices())
def test_zero_size_dims(device):
    """dim 0, no tokens, seqlen 0: empty results, caches untouched, no crash."""
    kwargs, _ = fwd_case(4, (F32, F32, F32), device, dim=0, lengths=[3, 0, 2])
    assert causal_conv1d_fn(**kwargs).shape == (0, 5)
    kwargs, _ = update_case(4, (F32, F32, F32), device, dim=0)
    assert causal_conv1d_update(**kwargs).shape == (7, 0, 1)
    kwargs, _ = update_case(4, (F32, F32, F32), device, seqlen=0)
    before = kwargs["conv_state"].clone()
    assert causal_conv1d_update(**kwargs).shape == (7, 72, 0)
    assert torch.equal(kwargs["conv_state"], before)


def move(name):
    """A mutation putting argument `name` on the other device (CPU <-> GPU)."""

    def mutate(kwargs):
        t = kwargs[name]
        kwargs[name] = t.cpu() if t.is_cuda else t.cuda()

    return mutate


def replace(name, make):
    """A mutation replacing argument `name` with make(it)."""

    def mutate(kwargs):
        kwargs[name] = make(kwargs[name])

    return mutate


cuda_only = pytest.mark.skipif(
    not (torch.cuda.is_available() and has_cuda_backend()),
    reason="needs a GPU and the CUDA backend",
)


@cuda_only
@pytest.mark.parametrize(
    "moved", ["weight", "bias", "conv_states", "query_start_loc", "cache_indices", "x"]
)
def test_fwd_mixed_cpu_cuda_devices_rejected(moved):
    """One argument on the other device (CPU tensors in a CUDA call and the reverse)."""
    kwargs, _ = fwd_case(4, (F32, F32, F32), "cuda", lengths=[3, 5, 2])
    # x on the CPU makes a CPU call with everything else on the GPU: the first argument
    # checked against x's device, weight, is named.
    named = "weight" if moved == "x" else moved
    check_rejected(causal_conv1d_fn, kwargs, move(moved), ValueError, [named, "device"])


@cuda_only
@pytest.mark.parametrize("moved", ["weight", "conv_state", "conv_state_indices", "cache_seqlens"])
def test_update_mixed_cpu_cuda_devices_rejected(moved):
    kwargs, _ = update_case(4, (F32, F32, F32), "cuda", circular=True)
    check_rejected(causal_conv1d_update, kwargs, move(moved), ValueError, [moved, "device"])


@pytest.mark.parametrize(
    "name,make,exc,words",
    [
        ("query_start_loc", lambda t: t.bool(), TypeError, ["query_start_loc", "bool"]),
        ("query_start_loc", lambda t: t.double(), TypeError, ["query_start_loc"]),
        ("cache_indices", lambda t: t.to(torch.int16), TypeError, ["cache_indices", "int16"]),
        ("cache_indices", lambda t: t[:, None], ValueError, ["cache_indices"]),
        ("has_initial_state", lambda t: t.float(), TypeError, ["has_initial_state"]),
        ("x", lambda t: t.to(torch.uint8), TypeError, ["x", "uint8"]),
        ("x", lambda t: t.to(torch.complex64), TypeError, ["x", "complex64"]),
        ("weight", lambda t: t.to(torch.int8), TypeError, ["weight", "int8"]),
        ("weight", lambda t: t[None], ValueError, ["weight"]),
        ("bias", lambda t: t.bool(), TypeError, ["bias", "bool"]),
        ("conv_states", lambda t: t.to(torch.int32), TypeError, ["conv_states", "int32"]),
        ("conv_states", lambda t: t[0], ValueError, ["conv_states"]),
    ],
)
def test_fwd_wrong_kinds_rejected(name, make, exc, words):
    kwargs, _ = fwd_case(4, (F32, F32, F32), lengths=[3, 5, 2])
    check_rejected(causal_conv1d_fn, kwargs, replace(name, make), exc, words)


@pytest.mark.parametrize(
    "name,make,exc,words",
    [
        ("x", lambda t: t.to(torch.int8), TypeError, ["x", "int8"]),
        ("x", lambda t: t[0, 0], ValueError, ["x"]),
        ("conv_state_indices", lambda t: t.bool(), TypeError, ["conv_state_indices", "bool"]),
        ("conv_state_indices", lambda t: t[:, None], ValueError, ["conv_state_indices"]),
        ("cache_seqlens", lambda t: t.bool(), TypeError, ["cache_seqlens", "bool"]),
        ("cache_seqlens", lambda t: t.half(), TypeError, ["cache_seqlens"]),
        ("weight", lambda t: t.to(torch.int32), TypeError, ["weight", "int32"]),
        ("bias", lambda t: t.to(torch.int64), TypeError, ["bias", "int64"]),
    ],
)
def test_update_wrong_kinds_rejected(name, make, exc, words):
    kwargs, _ = update_case(4, (F32, F32, F32), circular=True)
    check_rejected(causal_conv1d_update, kwargs, replace(name, make), exc, words)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("bad_index", [-3, 12, 2**40])
def test_update_bad_index_with_validation_rejected(device, bad_index):
    kwargs, _ = update_case(4, (F32, F32, F32), device, index_dtype=torch.int64)
    kwargs["conv_state_indices"][2] = bad_index
    check_rejected(
        causal_conv1d_update,
        kwargs,
        lambda k: k.update(validate=True),
        ValueError,
        ["conv_state_indices"],
    )
