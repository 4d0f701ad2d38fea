"""SGLang's CPU conv1d ops (``sgl-kernel/csrc/cpu/mamba/conv.cpp``, vendored in vLLM 0.33 as
``csrc/cpu/sgl-kernels/conv.cpp``) over the same ops, any width 2-8, any float dtype.

Layouts as conv.cpp's: the prefill's x is channel-last ``(dim, num_tokens)`` with
``query_start_loc``, or ``(batch, dim, seqlen)`` with strides ``(seqlen*dim, 1, dim)``
without; the decode's x is ``(batch, dim)``, or ``(batch, seqlen, dim)`` with
``num_accepted_tokens`` (speculative rows); both return a new output. Lines follow vLLM's
rule (the window is the front ``width - 1`` columns, from ``num_accepted_tokens[b] - 1`` in
speculative rows). ``pad_slot_id`` marks padding (conv.cpp ignores it).

Packed weights: :func:`causal_conv1d_weight_pack` returns the filter in the layout our kernels
read directly, which is the plain contiguous ``(dim, width)`` one (the decode step reads it in
place; the prefill's bf16 VNNI pairs are 4-byte words of it), so ``is_weight_packed`` changes
nothing: any filter, in any strides, gives the same result. Weights packed by SGLang's own
``causal_conv1d_weight_pack`` are in conv.cpp's VNNI block order and are not valid here: pack
with this module's.
"""

from __future__ import annotations

import torch

from .._core import PAD_SLOT_ID, _decode, _prefill, _step

__all__ = ["causal_conv1d_fwd_cpu", "causal_conv1d_update_cpu", "causal_conv1d_weight_pack"]


def causal_conv1d_weight_pack(weight: torch.Tensor) -> torch.Tensor:
    """The filter ``(dim, width)`` in the layout the kernels read: a new contiguous tensor
    of weight's shape and dtype (packing it again changes nothing)."""
    op = "causal_conv1d_weight_pack"
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{op}: weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dim() != 2 or not 2 <= weight.shape[1] <= 8:
        raise ValueError(
            f"{op}: weight must have shape (dim, width) with width 2-8, got {tuple(weight.shape)}"
        )
    if weight.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"{op}: weight must be float32, float16 or bfloat16, got {weight.dtype}")
    return weight.clone(memory_format=torch.contiguous_format)


def causal_conv1d_fwd_cpu(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    conv_states: torch.Tensor | None,
    query_start_loc: torch.Tensor | None,
    cache_indices: torch.Tensor | None,
    has_initial_state: torch.Tensor | None,
    silu_activation: bool,
    pad_slot_id: int = PAD_SLOT_ID,
    is_weight_packed: bool = False,
) -> torch.Tensor:
    """Prefill: a new output with x's shape and (channel-last) strides."""
    op = "causal_conv1d_fwd_cpu"
    batched = query_start_loc is None and isinstance(x, torch.Tensor) and x.dim() == 3
    if batched:
        # (batch, dim, seqlen) channel-last with dense rows is the token-major buffer
        # (batch * seqlen, dim): the same tokens as varlen x, sequences of seqlen each.
        b, d, s = x.shape
        if x.stride() != (s * d, 1, d) and x.numel() > 0:
            raise ValueError(
                f"{op}: x (batch, dim, seqlen) must be channel-last with strides "
                f"(seqlen*dim, 1, dim) = {(s * d, 1, d)}, got {x.stride()}"
            )
        x = x.transpose(1, 2).reshape(b * s, d).t()
        query_start_loc = torch.arange(0, (b + 1) * s, max(s, 1), device=x.device)[: b + 1]
        query_start_loc = query_start_loc.to(torch.int32)
    out = _prefill(
        op,
        x=x,
        weight=weight,
        bias=bias,
        conv_states=conv_states,
        query_start_loc=query_start_loc,
        cache_indices=cache_indices,
        has_initial_state=has_initial_state,
        activation=bool(silu_activation),
        pad_slot_id=pad_slot_id,
        front_window=True,
    )
    if batched:
        return out.t().reshape(b, s, d).transpose(1, 2)
    return out


def causal_conv1d_update_cpu(
    x: torch.Tensor,
    conv_states: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    silu_activation: bool,
    num_accepted_tokens: torch.Tensor | None = None,
    conv_state_indices: torch.Tensor | None = None,
    pad_slot_id: int = PAD_SLOT_ID,
    is_weight_packed: bool = False,
) -> torch.Tensor:
    """Decode: x ``(batch, dim)``, or ``(batch, seqlen, dim)`` (token-major) with
    ``num_accepted_tokens``; a new output of x's shape (and layout, where x is dense)."""
    op = "causal_conv1d_update_cpu"
    # A new output with x's layout where x is dense, else contiguous (conv.cpp's empty_like):
    # the step op allocates it for (batch, dim) rows; speculative rows (batch, seqlen, dim)
    # reach the op transposed, into an output allocated here in x's own shape.
    token_major = isinstance(x, torch.Tensor) and x.dim() == 3
    if num_accepted_tokens is None and not token_major:
        return _step(
            op,
            x=x,
            conv_state=conv_states,
            weight=weight,
            bias=bias,
            activation=bool(silu_activation),
            conv_state_indices=conv_state_indices,
            pad_slot_id=pad_slot_id,
            front_window=True,
        )
    out = torch.empty_like(x) if token_major else None
    result = _decode(
        op,
        x=x.mT if token_major else x,  # (.mT: ~0.25 us less than .transpose(1, 2))
        conv_state=conv_states,
        weight=weight,
        bias=bias,
        out=out.mT if token_major else None,
        activation=bool(silu_activation),
        conv_state_indices=conv_state_indices,
        pad_slot_id=pad_slot_id,
        num_accepted_tokens=num_accepted_tokens,
        front_window=True,
    )
    return out if token_major else result
