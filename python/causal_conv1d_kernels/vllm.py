"""vLLM 0.33's API over the same ops (CONTRACT 1.4).

An engine swaps ``from vllm.model_executor.layers.mamba.ops.causal_conv1d import
causal_conv1d_fn, causal_conv1d_update`` for ``from causal_conv1d_kernels.vllm import ...``;
signatures, keyword names, defaults and positional order are vLLM 0.33's. What follows vLLM
on purpose:

- State columns: the window is read from the FRONT of a cache line (columns ``[0, W-1)``, or
  ``[o, o + W-1)`` with ``o = num_accepted_tokens[b] - 1`` in speculative decoding) and only
  the columns the call defines are written; the rest of the line is left alone.
- Padding: a cache index equal to ``pad_slot_id`` (prefill) or ``null_block_id`` (line 0 by
  default, vLLM's null block) marks a padding sequence or row.
- Index buffers (``cache_indices``, ``has_initial_state``, ``conv_state_indices``,
  ``num_accepted_tokens``) may be longer than the batch; entries past it are ignored.
- ``causal_conv1d_update`` without ``out`` writes into x and returns it.

What differs, also on purpose: padded rows and sequences get exactly-zero outputs (vLLM leaves
them as they were or uninitialised); index values outside the cache are padding rather than
out-of-bounds accesses; ``metadata`` is accepted and ignored (no host-built launch table is
needed, nothing syncs with the host). ``validate_data=True`` means what it means in vLLM
(shape, stride, dtype and index-length checks that never read a tensor value on the host, so
that a call with it captures in a CUDA graph and traces under ``torch.compile(fullgraph=True)``),
and here those checks always run, in the op before it touches memory, each a ``ValueError`` or
``TypeError`` naming the argument instead of an assert: the flag changes nothing. The value
checks (index ranges, ``query_start_loc`` order) are ``CAUSAL_CONV1D_VALIDATE=1``'s, or the core
API's ``validate=True``.
"""

from __future__ import annotations

import torch

from ._core import Activation, _decode, _prefill

PAD_SLOT_ID = -1
NULL_BLOCK_ID = 0

__all__ = ["NULL_BLOCK_ID", "PAD_SLOT_ID", "causal_conv1d_fn", "causal_conv1d_update"]


def causal_conv1d_fn(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    conv_states: torch.Tensor,
    query_start_loc: torch.Tensor,
    cache_indices: torch.Tensor | None = None,
    has_initial_state: torch.Tensor | None = None,
    activation: Activation = "silu",
    pad_slot_id: int = PAD_SLOT_ID,
    null_block_id: int | None = NULL_BLOCK_ID,
    metadata=None,
    validate_data: bool = False,
) -> torch.Tensor:
    """Prefill over packed variable-length sequences, vLLM 0.33's signature.

    Args:
        x: ``(dim, num_tokens)``, channel-last the fast layout (any strides work).
        weight: ``(dim, width)``, width 2 to 8. bias: ``(dim,)`` or None.
        conv_states: ``(num_cache_lines, dim, state_len)``, ``state_len >= width - 1``.
            Sequence i reads its initial window from columns ``[0, width-1)`` of line
            ``cache_indices[i]`` (when ``has_initial_state[i]``) and leaves there the last
            ``width - 1`` columns of ``cat(window or zeros, tokens)``.
        query_start_loc: ``(batch + 1,)`` int32/int64, cumulative sequence starts.
        cache_indices: ``(>= batch,)`` cache line per sequence, or None (line i).
        has_initial_state: ``(>= batch,)`` bool, or None (all False).
        activation: None/False or "silu"/"swish"/True.
        pad_slot_id, null_block_id: cache indices that mark padding (zero output, line
            untouched); ``null_block_id=None`` disables the second.
        metadata: accepted for vLLM's callers and ignored.
        validate_data: accepted; the sync-free checks it asks for always run.

    Returns:
        A new tensor with x's shape and dtype (channel-last when x is).
    """
    del metadata  # launch metadata is computed on the device
    del validate_data  # the op's checks always run (see the module's docstring)
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
        null_block_id=null_block_id,
        front_window=True,
    )


def causal_conv1d_update(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: Activation = None,
    conv_state_indices: torch.Tensor | None = None,
    num_accepted_tokens: torch.Tensor | None = None,
    query_start_loc: torch.Tensor | None = None,
    max_query_len: int = -1,
    null_block_id: int | None = NULL_BLOCK_ID,
    validate_data: bool = False,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Decode (plain, speculative, varlen), vLLM 0.33's signature.

    Args:
        x: ``(batch, dim)``, ``(batch, dim, seqlen)``, or with ``query_start_loc``
            ``(num_tokens, dim)`` where row b owns tokens ``[qsl[b], qsl[b+1])``.
        conv_state: ``(num_cache_lines, dim, state_len)``, updated in place (front-aligned).
        weight: ``(dim, width)``. bias: ``(dim,)`` or None.
        activation: None/False or "silu"/"swish"/True.
        conv_state_indices: ``(>= batch,)`` cache line per row, or None (line b); a
            ``(>= batch, k)`` block table (vLLM's Mamba layers) uses its column 0.
        num_accepted_tokens: ``(>= batch,)`` int32/int64 or None. Given (speculative
            decoding), row b's window is columns ``[o, o + width-1)``,
            ``o = num_accepted_tokens[b] - 1``, and afterwards columns
            ``[0, width-2+q_b)`` hold ``cat(window, x_b)[1:]``; the line needs
            ``width - 1 + max_query_len - 1`` columns.
        query_start_loc: ``(batch + 1,)`` int32/int64 (varlen rows) or None.
        max_query_len: longest row with ``query_start_loc`` (needed with
            ``num_accepted_tokens``; a longer row is treated as padding).
        null_block_id: cache index of padding rows (None: only indices outside the cache
            and -1 are padding).
        validate_data: accepted; the sync-free checks it asks for always run.
        out: optional output with x's shape and dtype; None writes into x.

    Returns:
        ``out``, or x itself holding the outputs.
    """
    del validate_data  # the op's checks always run (see the module's docstring)
    if out is None:
        out = x
    if isinstance(conv_state_indices, torch.Tensor) and conv_state_indices.dim() == 2:
        # vLLM's Mamba, Mamba2 and ShortConv layers pass their (rows, 1 + num_spec) block
        # table; vLLM's kernel reads column 0 (a view: no copy).
        conv_state_indices = conv_state_indices[:, 0]
    return _decode(
        "causal_conv1d_update",
        x=x,
        conv_state=conv_state,
        weight=weight,
        bias=bias,
        out=out,
        activation=activation,
        conv_state_indices=conv_state_indices,
        num_accepted_tokens=num_accepted_tokens,
        query_start_loc=query_start_loc,
        max_query_len=max_query_len,
        null_block_id=null_block_id,
        front_window=True,
    )
