"""SGLang 0.5.23's JIT CUDA ops (``sglang.kernels.ops.mamba``): both write their outputs into
x (in place) and return None. Their rules: the prefill's state is the front ``width - 1``
columns of a line (as vLLM's), the decode's the last ``width - 1`` with the whole line shifting
(as Dao's), ``cache_seqlens`` making it a ring; ``pad_slot_id`` marks padding."""

from __future__ import annotations

import torch

from .._core import PAD_SLOT_ID, _prefill, _step

__all__ = ["causal_conv1d_fwd", "causal_conv1d_update"]


def causal_conv1d_fwd(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias_: torch.Tensor | None,
    conv_states: torch.Tensor | None,
    query_start_loc: torch.Tensor | None,
    cache_indices: torch.Tensor | None,
    has_initial_state: torch.Tensor | None,
    silu_activation: bool,
    pad_slot_id: int = PAD_SLOT_ID,
) -> None:
    """Prefill in place: x ``(dim, num_tokens)``, sequence i owning tokens
    ``[query_start_loc[i], query_start_loc[i+1])``, reading line ``cache_indices[i]``'s front
    ``width - 1`` columns when ``has_initial_state[i]`` and leaving there the sequence's last
    ``width - 1`` inputs. (SGLang's 3-D x without ``query_start_loc`` is not taken: no
    SGLang caller passes one; pass the tokens as ``(dim, num_tokens)``.)"""
    _prefill(
        "causal_conv1d_fwd",
        x=x,
        weight=weight,
        bias=bias_,
        conv_states=conv_states,
        query_start_loc=query_start_loc,
        cache_indices=cache_indices,
        has_initial_state=has_initial_state,
        activation=bool(silu_activation),
        pad_slot_id=pad_slot_id,
        front_window=True,
        out=x,
    )


def causal_conv1d_update(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias_: torch.Tensor | None,
    silu_activation,
    cache_seqlens: torch.Tensor | None,
    conv_state_indices: torch.Tensor | None,
    pad_slot_id: int = PAD_SLOT_ID,
) -> torch.Tensor:
    """Decode in place: x ``(batch, dim, seqlen)`` (or ``(batch, dim)``), row b on line
    ``conv_state_indices[b]`` (or b). Returns x (SGLang's op returns None; its wrapper x)."""
    return _step(
        "causal_conv1d_update",
        x=x,
        conv_state=conv_state,
        weight=weight,
        bias=bias_,
        out=x,
        activation=silu_activation,
        cache_seqlens=cache_seqlens,
        conv_state_indices=conv_state_indices,
        pad_slot_id=pad_slot_id,
    )
