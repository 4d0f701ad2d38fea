"""The core API (CONTRACT 1.1-1.3): the seed's two functions over the ops, and the package's
process-wide switches. The checks and the op calls are the internal core's (``_core``)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ._core import PAD_SLOT_ID, Activation, _prefill, _step

__all__ = [
    "PAD_SLOT_ID",
    "causal_conv1d_fn",
    "causal_conv1d_update",
    "cpu_isa",
    "has_cuda_backend",
    "release_cpu_pool",
    "set_pdl",
    "settings",
]


class Setting(NamedTuple):
    """One run-time setting: an environment variable the library reads."""

    name: str
    values: str  # "0|1" (a switch), "a|b|c" (one of these), "N >= k" (an integer from k)
    default: str  # "auto": chosen per call
    read: str  # when the library reads it
    meaning: str
    value: str | None  # the environment's text now, None when unset


def settings() -> list[Setting]:
    """Every environment variable the library reads at run time, from its one table
    (``csrc/settings.cpp``), with the value set now. Unset or empty means the default; a
    value outside ``values`` is ignored, except ``CAUSAL_CONV1D_CPU_ISA``'s (an error
    naming the kernel sets available). Most are read once (``read`` says when)."""
    rows = torch.ops.causal_conv1d.settings()
    return [Setting(*rows[i : i + 5], rows[i + 5] or None) for i in range(0, len(rows), 6)]


def abi() -> str:
    """The torch C++ API this build is on: ``"stable"`` (torch's stable ABI, torch >= 2.11:
    the build loads into the torch it was built against and every later one) or
    ``"classic"`` (only into the torch it was built against)."""
    return torch.ops.causal_conv1d.abi()


def cpu_isa() -> str:
    """Name of the CPU kernel set this process uses (``CAUSAL_CONV1D_CPU_ISA`` forces one)."""
    return torch.ops.causal_conv1d.cpu_isa()


def release_cpu_pool() -> int:
    """Frees the memory the CPU backend keeps for large outputs; returns the bytes freed.

    A fresh output of 1 MiB or more (a prefill without ``out=``, the Dao dialect's outputs
    and input gradients) comes from a pool of blocks that outputs freed earlier left mapped,
    so that it costs no page faults; the pool holds at most ``CAUSAL_CONV1D_CPU_POOL_MB``
    MiB (512 by default, 0 turns it off) besides what live tensors hold."""
    return torch.ops.causal_conv1d.release_cpu_pool()


def set_pdl(enabled: bool) -> bool:
    """Turns programmatic dependent launch (PDL) of the CUDA kernels on or off for this
    process; returns the previous setting.

    With PDL (on by default, sm_90 and newer, CUDA 12.3+) a kernel may be launched while the
    kernel before it on the stream is finishing: its blocks start and wait on the device for
    their producers instead of waiting for the launch, which saves a few microseconds per
    call inside a model. It never changes results. ``CAUSAL_CONV1D_PDL=0`` in the environment
    turns it off from the start. A CUDA graph keeps the setting it was captured with."""
    if not isinstance(enabled, bool):
        raise TypeError(f"set_pdl: enabled must be a bool, got {type(enabled).__name__}")
    return torch.ops.causal_conv1d.set_pdl(enabled)


def has_cuda_backend() -> bool:
    """Whether the extension was built with its CUDA kernels."""
    return torch._C._dispatch_has_kernel_for_dispatch_key(
        "causal_conv1d::causal_conv1d_fwd", "CUDA"
    )


def causal_conv1d_fn(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    conv_states: torch.Tensor | None,
    query_start_loc: torch.Tensor,
    cache_indices: torch.Tensor | None = None,
    has_initial_state: torch.Tensor | None = None,
    activation: Activation = "silu",
    pad_slot_id: int = PAD_SLOT_ID,
    validate: bool = False,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal depthwise conv1d over packed variable-length sequences (prefill).

    Args:
        x: ``(dim, num_tokens)``, the tokens of all sequences concatenated along dim 1.
            Channel-last (``x.stride(0) == 1``, a transposed ``(num_tokens, dim)`` view) is the
            fast layout; any strides work.
        weight: ``(dim, width)``, width 2 to 8. bias: ``(dim,)`` or None.
        conv_states: ``(num_cache_lines, dim, state_len)`` with ``state_len >= width - 1``, or
            None (no cache is read or written). Updated in place: each sequence's line ends
            holding the last ``state_len`` columns of ``cat(initial state or zeros, tokens)``.
        query_start_loc: ``(batch + 1,)`` int32/int64: 0, cumulative sequence ends.
        cache_indices: ``(>= batch,)`` int32/int64 cache line per sequence, or None (line i);
            entries past the batch (an engine's longer buffer) are never read.
        has_initial_state: ``(>= batch,)`` bool, or None (all False). Needs ``conv_states``.
        activation: None/False (identity) or "silu"/"swish"/True.
        pad_slot_id: a sequence whose cache index equals it is padding: zero output, its
            state untouched.
        validate: also check index values (syncs with the device).
        out: optional buffer with x's shape and dtype (any strides) to write into instead of
            a new tensor, e.g. one a serving engine reuses; it must not overlap x.

    Returns:
        ``out``, or a new tensor with x's shape and dtype (channel-last when x is).
    """
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
        validate=validate,
        out=out,
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
    out: torch.Tensor | None = None,
    validate: bool = False,
) -> torch.Tensor:
    """Causal depthwise conv1d for one or a few new tokens per sequence (decode).

    Args:
        x: ``(batch, dim)`` or ``(batch, dim, seqlen)``, any strides.
        conv_state: ``(num_cache_lines, dim, state_len)``, ``state_len >= width - 1``, any
            strides and dtype; updated in place.
        weight: ``(dim, width)``, width 2 to 8. bias: ``(dim,)`` or None.
        activation: None/False (identity) or "silu"/"swish"/True.
        cache_seqlens: ``(>= batch,)`` int32/int64 or None. Given, each line is a ring buffer
            whose next write position is ``cache_seqlens[b] % state_len`` (the caller
            advances it). None: the state is shifted left by seqlen and x appended.
        conv_state_indices: ``(>= batch,)`` int32/int64 cache line per row, or None (line b);
            entries past the batch (an engine's longer buffer) are never read.
        pad_slot_id: rows whose index equals it get zero output and keep their state.
        out: optional output with x's shape and dtype; may be x itself (in place).
        validate: also check index values (syncs with the device).

    Returns:
        ``out`` (a new tensor when not given), x's shape and dtype.
    """
    return _step(
        "causal_conv1d_update",
        x=x,
        conv_state=conv_state,
        weight=weight,
        bias=bias,
        out=out,
        activation=activation,
        cache_seqlens=cache_seqlens,
        conv_state_indices=conv_state_indices,
        pad_slot_id=pad_slot_id,
        validate=validate,
    )
