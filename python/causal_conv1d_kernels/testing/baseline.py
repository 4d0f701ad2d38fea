"""The plain-PyTorch formulation of both ops, in the storage dtype: what a model author writes
without this library (grouped ``F.conv1d`` per sequence, gather/scatter of the cache). The
benchmarks compare against it. Linear states only; padding is not modelled."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def causal_conv1d_fn_torch(
    x,
    weight,
    bias,
    conv_states,
    query_start_loc,
    cache_indices,
    has_initial_state,
    activation="silu",
):
    """Prefill with one grouped conv1d per sequence; reads the lengths on the host."""
    dim, width = weight.shape
    w = weight.to(x.dtype)[:, None, :]
    b = None if bias is None else bias.to(x.dtype)
    out = torch.empty_like(x)
    bounds = query_start_loc.tolist()
    lines = cache_indices.tolist()
    init = has_initial_state.tolist()
    for i, line in enumerate(lines):
        tokens = x[:, bounds[i] : bounds[i + 1]]
        old = conv_states[line] if init[i] else torch.zeros_like(conv_states[line])
        xx = torch.cat([old[:, old.shape[1] - (width - 1) :].to(x.dtype), tokens], dim=1)
        y = F.conv1d(xx[None], w, b, groups=dim)[0]
        out[:, bounds[i] : bounds[i + 1]] = F.silu(y) if activation else y
        conv_states[line] = torch.cat([old, tokens.to(old.dtype)], dim=1)[:, -old.shape[1] :]
    return out


def causal_conv1d_update_torch(x, conv_state, weight, bias, activation, conv_state_indices):
    """Decode for a whole batch at once: gather the lines, one grouped conv1d, scatter back."""
    dim, width = weight.shape
    x3 = x.unsqueeze(-1) if x.dim() == 2 else x
    states = conv_state[conv_state_indices]
    full = torch.cat([states, x3.to(states.dtype)], dim=-1)
    window = full[..., full.shape[-1] - (width - 1 + x3.shape[-1]) :].to(x.dtype)
    b = None if bias is None else bias.to(x.dtype)
    y = F.conv1d(window, weight.to(x.dtype)[:, None, :], b, groups=dim)
    conv_state[conv_state_indices] = full[..., full.shape[-1] - states.shape[-1] :]
    y = F.silu(y) if activation else y
    return y.view_as(x)
