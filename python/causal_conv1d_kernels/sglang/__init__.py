"""SGLang 0.5.23's conv1d APIs over the same ops (CONTRACT 1.6).

An SGLang user swaps imports module for module:

- ``sglang.srt.layers.attention.mamba.causal_conv1d`` -> ``causal_conv1d_kernels.sglang``
- ``sglang.kernels.ops.mamba`` (the JIT CUDA ops) -> ``causal_conv1d_kernels.sglang.jit``
- ``sglang.kernels.ops.mamba.causal_conv1d_triton`` -> ``causal_conv1d_kernels.sglang.triton``
- ``torch.ops.sgl_kernel.causal_conv1d_*_cpu`` (conv.cpp) -> ``causal_conv1d_kernels.sglang.cpu``

Every API runs on CPU and CUDA tensors alike. This module is SGLang's model-facing wrapper
(``causal_conv1d_fn``, ``causal_conv1d_update``): on CUDA SGLang sends a prefill whose x is a
strided view and comes with ``seq_lens_cpu`` to its Triton kernel (a new output), any other
prefill and every decode to its JIT kernels (in place into x); the same split here, over our
ops. What differs from SGLang on purpose: padded sequences and rows get exactly-zero outputs
(SGLang leaves x's values or uninitialised memory), cache indices outside the cache are
padding rather than out-of-bounds accesses, mixed dtypes (e.g. fp32 weights with bf16 x) and
widths 2-8 are accepted, and a bad argument is a ``ValueError``/``TypeError`` naming it.
"""

from __future__ import annotations

import torch

from .._core import Activation, _prefill
from . import cpu, jit, triton
from .triton import PAD_SLOT_ID

__all__ = ["PAD_SLOT_ID", "causal_conv1d_fn", "causal_conv1d_update", "cpu", "jit", "triton"]


def causal_conv1d_fn(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    query_start_loc: torch.Tensor | None = None,
    cache_indices: torch.Tensor | None = None,
    has_initial_state: torch.Tensor | None = None,
    conv_states: torch.Tensor | None = None,
    activation: Activation = "silu",
    pad_slot_id: int = PAD_SLOT_ID,
    **kwargs,
) -> torch.Tensor:
    """Prefill, SGLang's wrapper: x ``(dim, num_tokens)`` over packed sequences.

    A strided x (``x.stride(-1) != 1``) passed with ``seq_lens_cpu`` takes SGLang's Triton
    path: a new output (:func:`causal_conv1d_kernels.sglang.triton.causal_conv1d_fn`). Else
    the outputs are written into x and x is returned (SGLang's JIT path; a strided x without
    ``seq_lens_cpu`` gets a new output, as SGLang's ``x.contiguous()`` copy does). The other
    keyword arguments of the Triton path (``seq_lens_cpu``, ``block_table``,
    ``validate_data``) are accepted and need nothing here.
    """
    in_place = x.stride(-1) == 1 if isinstance(x, torch.Tensor) and x.dim() > 0 else True
    return _prefill(
        "causal_conv1d_fn",
        x=x,
        weight=weight,
        bias=bias,
        conv_states=conv_states,
        query_start_loc=query_start_loc,
        cache_indices=cache_indices,
        has_initial_state=has_initial_state,
        activation=activation,
        pad_slot_id=pad_slot_id,
        front_window=True,
        out=x if in_place and "seq_lens_cpu" not in kwargs else None,
    )


def causal_conv1d_update(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: Activation = None,
    cache_seqlens: torch.Tensor | None = None,
    conv_state_indices: torch.Tensor | None = None,
    pad_slot_id: int = PAD_SLOT_ID,
) -> torch.Tensor:
    """Decode, SGLang's wrapper (its JIT kernel on CUDA): x ``(batch, dim)`` or ``(batch,
    dim, seqlen)``, outputs written into x, which is returned. The window is the last
    ``width - 1`` columns of the line and the whole line shifts (Dao's rule); with
    ``cache_seqlens`` the line is a ring written from ``cache_seqlens[b] % state_len``."""
    return jit.causal_conv1d_update(
        x, conv_state, weight, bias, activation, cache_seqlens, conv_state_indices, pad_slot_id
    )
