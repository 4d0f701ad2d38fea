"""Every fake (meta) kernel and autograd formula of the ops, registered when the package is
imported: the fakes let ``torch.compile(fullgraph=True)`` trace the ops (the checks are the
C++ ops'; the fakes repeat only those their output shapes need), the autograd makes the Dao
dialect's training op differentiable (CONTRACT 1.5)."""

from __future__ import annotations

import torch

from ._core import MAX_WIDTH, deterministic_requested


def _fwd_output_like(x: torch.Tensor) -> torch.Tensor:
    """The fwd op's output layout: channel-last when x is (mirrors empty_fwd_output in C++)."""
    if x.stride(0) == 1 and x.stride(1) != 1:
        return x.new_empty((x.shape[1], x.shape[0])).t()
    return x.new_empty(x.shape)


def _check_fake_devices(op: str, x, **tensors) -> None:
    """A call mixing meta tensors with real ones lands on the fake kernels: refuse it as the
    C++ checks refuse mixed devices, naming the argument."""
    for name, t in tensors.items():
        if t is not None and t.device != x.device:
            raise ValueError(f"{op}: {name} must be on x's device {x.device}, got {t.device}")


def _check(op: str, ok, message: str) -> None:
    """A shape check of a fake kernel: a ValueError as the C++ op's (``torch._check_value``
    also records the condition as a guard where the sizes are symbolic)."""
    torch._check_value(ok, lambda: f"{op}: {message}")


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
    op = "causal_conv1d_fwd"
    _check_fake_devices(
        op,
        x,
        weight=weight,
        bias=bias,
        conv_states=conv_states,
        query_start_loc=query_start_loc,
        cache_indices=cache_indices,
        has_initial_state=has_initial_state,
    )
    _check(op, x.dim() == 2, "x must have shape (dim, num_tokens)")
    _check(op, weight.dim() == 2 and weight.shape[0] == x.shape[0], "weight must be (dim, width)")
    _check(op, 2 <= weight.shape[1] <= MAX_WIDTH, f"weight width must be in [2, {MAX_WIDTH}]")
    _check(op, query_start_loc.dim() == 1, "query_start_loc must have shape (batch + 1,)")
    if conv_states is not None:
        _check(
            op,
            conv_states.dim() == 3 and conv_states.shape[1] == x.shape[0],
            "conv_states must have shape (num_cache_lines, dim, state_len)",
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
    _check_fake_devices("causal_conv1d_fwd", x, out=out)
    _check("causal_conv1d_fwd", out.shape == x.shape, "out must have x's shape")


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
    intermediate_conv_window=None,
    intermediate_state_indices=None,
    retrieve_next_token=None,
    retrieve_next_sibling=None,
    retrieve_parent_token=None,
):
    op = "causal_conv1d_update"
    varlen = query_start_loc is not None
    _check_fake_devices(
        op,
        x,
        conv_state=conv_state,
        weight=weight,
        bias=bias,
        cache_seqlens=cache_seqlens,
        conv_state_indices=conv_state_indices,
        out=out,
        num_accepted_tokens=num_accepted_tokens,
        query_start_loc=query_start_loc,
        intermediate_conv_window=intermediate_conv_window,
        intermediate_state_indices=intermediate_state_indices,
        retrieve_next_token=retrieve_next_token,
        retrieve_next_sibling=retrieve_next_sibling,
        retrieve_parent_token=retrieve_parent_token,
    )
    _check(
        op,
        x.dim() == 2 if varlen else x.dim() in (2, 3),
        "x must have shape (batch, dim[, seqlen]) or (num_tokens, dim)",
    )
    _check(op, out.shape == x.shape, "out must have x's shape")
    _check(op, weight.dim() == 2 and weight.shape[0] == x.shape[1], "weight must be (dim, width)")
    _check(
        op,
        conv_state.dim() == 3 and conv_state.shape[1] == x.shape[1],
        "conv_state must have shape (num_cache_lines, dim, state_len)",
    )


@torch.library.register_fake("causal_conv1d::causal_conv1d_update_step_out")
def _causal_conv1d_update_step_out_fake(*args, **kwargs):
    """The full op's fake: the step's first nine arguments are the full op's, its last two
    (null_block_id, front_window) are keywords there."""
    kwargs.update(zip(("null_block_id", "front_window"), args[9:]))
    _causal_conv1d_update_fake(*args[:9], **kwargs)


@torch.library.register_fake("causal_conv1d::causal_conv1d_update_step")
def _causal_conv1d_update_step_fake(
    x, conv_state, weight, bias, silu, cache_seqlens, conv_state_indices, pad_slot_id, *rest, **kw
):
    """The step into a new output shaped like x (empty_like's layout, as like_x in C++)."""
    out = torch.empty_like(x)
    args = (x, conv_state, weight, bias, silu, cache_seqlens, conv_state_indices, pad_slot_id)
    _causal_conv1d_update_step_out_fake(*args, out, *rest, **kw)
    return out


# ---- The Dao dialect's training ops (CONTRACT 1.5): fake kernels and autograd ----


def _batch_states_like(x: torch.Tensor, width: int, wanted: bool) -> torch.Tensor:
    """(batch, dim, width-1) channel-last as Dao allocates final states, or empty (0,)
    (mirrors empty_batch_states in C++)."""
    if not wanted:
        return x.new_empty((0,))
    return x.new_empty((x.shape[0], width - 1, x.shape[1])).transpose(1, 2)


def _check_batch_fake(op: str, x, weight, **tensors) -> None:
    _check_fake_devices(op, x, weight=weight, **tensors)
    _check(op, x.dim() == 3, "x must have shape (batch, dim, seqlen)")
    _check(op, weight.dim() == 2 and weight.shape[0] == x.shape[1], "weight must be (dim, width)")
    _check(op, 2 <= weight.shape[1] <= MAX_WIDTH, f"weight width must be in [2, {MAX_WIDTH}]")


@torch.library.register_fake("causal_conv1d::causal_conv1d_batch_fwd")
def _causal_conv1d_batch_fwd_fake(
    x, weight, bias, seq_idx, initial_states, return_final_states, silu
):
    _check_batch_fake(
        "causal_conv1d_batch_fwd",
        x,
        weight,
        bias=bias,
        seq_idx=seq_idx,
        initial_states=initial_states,
    )
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
    op = "causal_conv1d_batch_bwd"
    _check_batch_fake(
        op,
        x,
        weight,
        bias=bias,
        seq_idx=seq_idx,
        initial_states=initial_states,
        dout=dout,
        dfinal_states=dfinal_states,
    )
    _check(op, dout.shape == x.shape, "dout must have x's shape")
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
