"""Bad values without validation (CONTRACT 2): no crash, nothing touched outside the tensors, and
an out-of-range cache index behaves like padding."""

import pytest
import torch
from causal_conv1d_kernels import causal_conv1d_fn, causal_conv1d_update
from causal_conv1d_kernels.testing.reference import causal_conv1d_fn_ref, causal_conv1d_update_ref
from helpers import BF16, F32, devices, fwd_case, update_case


def guarded(states):
    """`states` as a slice of a larger buffer whose surrounding lines act as canaries."""
    buffer = torch.randn(
        states.shape[0] + 4, *states.shape[1:], dtype=states.dtype, device=states.device
    )
    buffer[2:-2] = states
    return buffer, buffer[2:-2]


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("bad_index", [-2, -1000, 16, 2**40])
def test_fwd_out_of_range_index_is_padding(device, bad_index):
    kwargs, pads = fwd_case(4, (BF16, BF16, F32), device, index_dtype=torch.int64)
    buffer, kwargs["conv_states"] = guarded(kwargs["conv_states"])
    buffer_before = buffer.clone()
    kwargs["cache_indices"][3] = bad_index
    expected_out, expected_states = causal_conv1d_fn_ref(**kwargs)
    out = causal_conv1d_fn(**kwargs)
    qsl = kwargs["query_start_loc"].tolist()
    assert torch.equal(out[:, qsl[3] : qsl[4]], torch.zeros_like(out[:, qsl[3] : qsl[4]]))
    assert torch.equal(kwargs["conv_states"], expected_states)
    assert torch.equal(buffer[:2], buffer_before[:2]) and torch.equal(
        buffer[-2:], buffer_before[-2:]
    )
    torch.testing.assert_close(out, expected_out, atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("bad_index", [-2, 12, 2**31 - 1])
@pytest.mark.parametrize("circular", [False, True])
def test_update_out_of_range_index_is_padding(device, bad_index, circular):
    kwargs, pads = update_case(
        4, (F32, F32, F32), device, circular=circular, index_dtype=torch.int32, seqlen=2
    )
    buffer, kwargs["conv_state"] = guarded(kwargs["conv_state"])
    buffer_before = buffer.clone()
    kwargs["conv_state_indices"][4] = bad_index
    expected_out, expected_state = causal_conv1d_update_ref(**kwargs)
    out = causal_conv1d_update(**kwargs)
    assert torch.equal(out[4], torch.zeros_like(out[4]))
    assert torch.equal(kwargs["conv_state"], expected_state)
    assert torch.equal(buffer[:2], buffer_before[:2]) and torch.equal(
        buffer[-2:], buffer_before[-2:]
    )
    torch.testing.assert_close(out, expected_out)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize(
    "bounds",
    [[0, 3, 2, 10], [0, 5, 40, 10], [-7, 2, 5, 10], [0, 2, 4, 2**40]],
    ids=["decreasing", "overrun", "negative", "huge"],
)
def test_fwd_malformed_query_start_loc_stays_inside(device, bounds):
    """Without validation a malformed query_start_loc is clamped into x: no crash, x intact."""
    kwargs, _ = fwd_case(4, (F32, F32, F32), device, lengths=[3, 5, 2], index_dtype=torch.int64)
    buffer, kwargs["conv_states"] = guarded(kwargs["conv_states"])
    buffer_before = buffer.clone()
    x_before = kwargs["x"].clone()
    kwargs["query_start_loc"] = torch.tensor(bounds, device=device)
    out = causal_conv1d_fn(**kwargs)
    assert out.shape == x_before.shape
    assert torch.equal(kwargs["x"], x_before)
    assert torch.equal(buffer[:2], buffer_before[:2]) and torch.equal(
        buffer[-2:], buffer_before[-2:]
    )


@pytest.mark.parametrize("device", devices())
def test_update_negative_cache_seqlens_wrap(device):
    kwargs, pads = update_case(3, (F32, F32, F32), device, circular=True, seqlen=2)
    kwargs["cache_seqlens"] = -kwargs["cache_seqlens"] - 1
    expected_out, expected_state = causal_conv1d_update_ref(**kwargs)
    out = causal_conv1d_update(**kwargs)
    torch.testing.assert_close(out, expected_out)
    assert torch.equal(kwargs["conv_state"], expected_state)
