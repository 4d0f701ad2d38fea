"""Every fake (meta) kernel and autograd formula of the ops, registered when the package is
imported: the fakes let ``torch.compile(fullgraph=True)`` trace the ops (shapes only: the
checks are the wrappers' and the C++ ops'), the autograd makes the Dao dialect's training op
differentiable (CONTRACT 1.5)."""

from __future__ import annotations

import torch

from ._core import MAX_WIDTH, deterministic_requested


def _fwd_output_like(x: torch.Tensor) -> torch.Tensor:
    """The fwd op's output layout: channel-last when x is (mirrors empty_fwd_output in C++)."""
    if x.stride(0) == 1 and x.stride(1) != 1:
        return x.new_empty((x.shape[1], x.shape[0])).t()
    return x.new_empty(x.shape)


def _check_fake_devices(op: str, x, *tensors) -> None:
    """A call mixing meta tensors with real ones lands on the fake kernels: refuse it as the
    C++ checks refuse mixed devices."""
    for t in tensors:
        torch._check(
            t is None or t.device == x.device,
            lambda: f"{op}: every tensor must be on x's device",
        )


@torch.library.register_fake("causal_conv1d::causal_conv1d_fwd")
def _causal_conv1d_fwd_fake(
    x,
    weight,
    bias,
    conv_states,
    query_start_loc,
    cache_indices,
    has_initial_state,
    silu,
    pad_slot_id,
    null_block_id=-1,
    front_window=False,
):
    _check_fake_devices(
        "causal_conv1d_fwd",
        x,
        weight,
        bias,
        conv_states,
        query_start_loc,
        cache_indices,
        has_initial_state,
    )
    torch._check(x.dim() == 2, lambda: "causal_conv1d_fwd: x must be (dim, num_tokens)")
    torch._check(
        weight.dim() == 2 and weight.shape[0] == x.shape[0],
        lambda: "causal_conv1d_fwd: weight must be (dim, width)",
    )
    torch._check(
        2 <= weight.shape[1] <= MAX_WIDTH, lambda: "causal_conv1d_fwd: width must be in [2, 8]"
    )
    torch._check(query_start_loc.dim() == 1, lambda: "causal_conv1d_fwd: bad query_start_loc")
    if conv_states is not None:
        torch._check(
            conv_states.dim() == 3 and conv_states.shape[1] == x.shape[0],
            lambda: "causal_conv1d_fwd: conv_states must be (num_cache_lines, dim, state_len)",
        )
    return _fwd_output_like(x)


@torch.library.register_fake("causal_conv1d::causal_conv1d_fwd_out")
def _causal_conv1d_fwd_out_fake(
    x,
    weight,
    bias,
    conv_states,
    query_start_loc,
    cache_indices,
    has_initial_state,
    silu,
    pad_slot_id,
    out,
    null_block_id=-1,
    front_window=False,
):
    _causal_conv1d_fwd_fake(
        x,
        weight,
        bias,
        conv_states,
        query_start_loc,
        cache_indices,
        has_initial_state,
        silu,
        pad_slot_id,
    )
    _check_fake_devices("causal_conv1d_fwd", x, out)
    torch._check(out.shape == x.shape, lambda: "causal_conv1d_fwd: out must match x")


@torch.library.register_fake("causal_conv1d::causal_conv1d_update")
def _causal_conv1d_update_fake(
    x,
    conv_state,
    weight,
    bias,
    silu,
    cache_seqlens,
    conv_state_indices,
    pad_slot_id,
    out,
    num_accepted_tokens=None,
    query_start_loc=None,
    max_query_len=-1,
    null_block_id=-1,
    front_window=False,
):
    varlen = query_start_loc is not None
    _check_fake_devices(
        "causal_conv1d_update",
        x,
        conv_state,
        weight,
        bias,
        cache_seqlens,
        conv_state_indices,
        out,
        num_accepted_tokens,
        query_start_loc,
    )
    torch._check(
        x.dim() == 2 if varlen else x.dim() in (2, 3),
        lambda: "causal_conv1d_update: x must be (batch, dim[, seqlen]) or (num_tokens, dim)",
    )
    torch._check(out.shape == x.shape, lambda: "causal_conv1d_update: out must match x")
    torch._check(
        weight.dim() == 2 and weight.shape[0] == x.shape[1],
        lambda: "causal_conv1d_update: weight must be (dim, width)",
    )
    torch._check(
        conv_state.dim() == 3 and conv_state.shape[1] == x.shape[1],
        lambda: "causal_conv1d_update: conv_state must be (num_cache_lines, dim, state_len)",
    )


# ---- The Dao dialect's training ops (CONTRACT 1.5): fake kernels and autograd ----


def _batch_states_like(x: torch.Tensor, width: int, wanted: bool) -> torch.Tensor:
    """(batch, dim, width-1) channel-last as Dao allocates final states, or empty (0,)
    (mirrors empty_batch_states in C++)."""
    if not wanted:
        return x.new_empty((0,))
    return x.new_empty((x.shape[0], width - 1, x.shape[1])).transpose(1, 2)


def _check_batch_fake(op: str, x, weight) -> None:
    torch._check(x.dim() == 3, lambda: f"{op}: x must be (batch, dim, seqlen)")
    torch._check(
        weight.dim() == 2 and weight.shape[0] == x.shape[1],
        lambda: f"{op}: weight must be (dim, width)",
    )
    torch._check(2 <= weight.shape[1] <= MAX_WIDTH, lambda: f"{op}: width must be in [2, 8]")


@torch.library.register_fake("causal_conv1d::causal_conv1d_batch_fwd")
def _causal_conv1d_batch_fwd_fake(
    x, weight, bias, seq_idx, initial_states, return_final_states, silu
):
    _check_batch_fake("causal_conv1d_batch_fwd", x, weight)
    return torch.empty_like(x), _batch_states_like(x, weight.shape[1], return_final_states)


@torch.library.register_fake("causal_conv1d::causal_conv1d_batch_bwd")
def _causal_conv1d_batch_bwd_fake(
    x,
    weight,
    bias,
    seq_idx,
    initial_states,
    dout,
    dfinal_states,
    silu,
    return_dinitial_states,
    deterministic,
):
    _check_batch_fake("causal_conv1d_batch_bwd", x, weight)
    torch._check(dout.shape == x.shape, lambda: "causal_conv1d_batch_bwd: dout must match x")
    dbias = bias.new_empty(bias.shape) if bias is not None else weight.new_empty((0,))
    want = return_dinitial_states and initial_states is not None
    dinit = torch.empty_like(initial_states) if want else x.new_empty((0,))
    return torch.empty_like(x), weight.new_empty(weight.shape), dbias, dinit


def _batch_fwd_setup_context(ctx, inputs, output):
    x, weight, bias, seq_idx, initial_states, return_final_states, silu = inputs
    ctx.save_for_backward(x, weight, bias, seq_idx, initial_states)
    ctx.return_final_states = return_final_states
    ctx.silu = silu
    ctx.want_dinitial = initial_states is not None and ctx.needs_input_grad[4]


def _batch_fwd_backward(ctx, dout, dfinal_states):
    x, weight, bias, seq_idx, initial_states = ctx.saved_tensors
    if not ctx.return_final_states:
        dfinal_states = None
    dx, dweight, dbias, dinit = torch.ops.causal_conv1d.causal_conv1d_batch_bwd(
        x,
        weight,
        bias,
        seq_idx,
        initial_states,
        dout,
        dfinal_states,
        ctx.silu,
        ctx.want_dinitial,
        deterministic_requested(),
    )
    return (
        dx,
        dweight,
        dbias if bias is not None else None,
        None,
        dinit if ctx.want_dinitial else None,
        None,
        None,
    )


torch.library.register_autograd(
    "causal_conv1d::causal_conv1d_batch_fwd",
    _batch_fwd_backward,
    setup_context=_batch_fwd_setup_context,
)
