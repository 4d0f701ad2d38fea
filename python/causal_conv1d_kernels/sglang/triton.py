"""SGLang 0.5.23's Triton API (``sglang.kernels.ops.mamba.causal_conv1d_triton``), with its
EAGLE tree verify, over the same ops: no Triton runs here.

Both functions return a new output. Lines keep vLLM's rule (the window is the front
``width - 1`` columns; with ``num_accept_tokens`` it starts at ``num_accept_tokens[b] - 1``).
Tree verify: row b's ``seqlen`` draft tokens form a tree given by ``retrieve_next_token``
(first child) and ``retrieve_next_sibling`` (next sibling), ``(>= batch, >= seqlen)``, -1 for
none, token 0 the root; token t's taps are t, its parent, its grandparent, ... then the window,
and the parents are written to ``retrieve_parent_token`` (root: 0). A link that does not point
to a later token of the row is ignored (SGLang's trees only link forward). Without a tree the
tokens are a chain. ``intermediate_conv_window[intermediate_state_indices[b], t, :, 0:width-1]``
receives the ``width - 1`` inputs ending at token t (its conv window after t), overlapping
views included; an index outside it writes nothing. ``cache_seqlens``, ``metadata``,
``seq_lens_cpu``, ``block_table`` and ``validate_data`` are accepted and ignored, as SGLang's
kernels ignore the first (its checks are always made here, without a host read).
"""

from __future__ import annotations

import torch

from .._core import Activation, _decode, _prefill

PAD_SLOT_ID = -1

__all__ = ["PAD_SLOT_ID", "causal_conv1d_fn", "causal_conv1d_update"]


def causal_conv1d_fn(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    conv_states: torch.Tensor | None,
    query_start_loc: torch.Tensor,
    seq_lens_cpu=None,
    cache_indices: torch.Tensor | None = None,
    has_initial_state: torch.Tensor | None = None,
    activation: Activation = "silu",
    pad_slot_id: int = PAD_SLOT_ID,
    validate_data: bool = False,
    block_table: torch.Tensor | None = None,
    **kwargs,
) -> torch.Tensor:
    """Prefill: x ``(dim, num_tokens)`` (channel-last the fast layout), a new output with
    x's layout. ``seq_lens_cpu`` and ``block_table`` (SGLang's launch grid) are not needed:
    the launch depends on no host data."""
    del seq_lens_cpu, validate_data, block_table, kwargs
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
    )


def causal_conv1d_update(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: Activation = None,
    cache_seqlens: torch.Tensor | None = None,
    conv_state_indices: torch.Tensor | None = None,
    num_accept_tokens: torch.Tensor | None = None,
    intermediate_conv_window: torch.Tensor | None = None,
    intermediate_state_indices: torch.Tensor | None = None,
    retrieve_next_token: torch.Tensor | None = None,
    retrieve_next_sibling: torch.Tensor | None = None,
    retrieve_parent_token: torch.Tensor | None = None,
    pad_slot_id: int = PAD_SLOT_ID,
    metadata=None,
    validate_data: bool = False,
) -> torch.Tensor:
    """Decode, speculative decode and tree verify: x ``(batch, dim)`` or ``(batch, dim,
    seqlen)``; returns a new output shaped like x (the module's docstring has the rules)."""
    del cache_seqlens, metadata, validate_data
    return _decode(
        "causal_conv1d_update",
        x=x,
        conv_state=conv_state,
        weight=weight,
        bias=bias,
        activation=activation,
        conv_state_indices=conv_state_indices,
        pad_slot_id=pad_slot_id,
        num_accepted_tokens=num_accept_tokens,
        front_window=True,
        intermediate_conv_window=intermediate_conv_window,
        intermediate_state_indices=intermediate_state_indices,
        retrieve_next_token=retrieve_next_token,
        retrieve_next_sibling=retrieve_next_sibling,
        retrieve_parent_token=retrieve_parent_token,
    )
