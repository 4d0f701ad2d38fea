"""Plain-PyTorch float64 references of both ops, written from docs/CONTRACT.md section 1.

They never modify their inputs: each returns ``(out, new_states)``, ``out`` in x's dtype and
``new_states`` a copy of the cache (in its own dtype) holding what the op must leave there.
Slow by design (a Python loop over sequences); used by the tests, the self-check and to
validate benchmarks.
"""

from __future__ import annotations

import torch

from .._core import PAD_SLOT_ID, Activation, _silu


def _conv(window: torch.Tensor, tokens: torch.Tensor, weight, bias, silu: bool) -> torch.Tensor:
    """out[:, t] = act(bias + sum_k weight[:, k] * cat(window, tokens)[:, t + k]), in float64."""
    width = weight.shape[1]
    xx = torch.cat([window.double(), tokens.double()], dim=1)
    n = tokens.shape[1]
    w = weight.double()
    y = sum(w[:, k : k + 1] * xx[:, k : k + n] for k in range(width))
    if bias is not None:
        y = y + bias.double()[:, None]
    return y * torch.sigmoid(y) if silu else y


def _is_padding(line: int, pad_slot_id: int, states: torch.Tensor | None) -> bool:
    return line == pad_slot_id or (states is not None and not 0 <= line < states.shape[0])


def causal_conv1d_fn_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    conv_states: torch.Tensor | None,
    query_start_loc: torch.Tensor,
    cache_indices: torch.Tensor | None = None,
    has_initial_state: torch.Tensor | None = None,
    activation: Activation = "silu",
    pad_slot_id: int = PAD_SLOT_ID,
):
    """Reference of :func:`causal_conv1d_fn`; returns ``(out, new_conv_states or None)``."""
    silu = _silu("causal_conv1d_fn_ref", activation)
    dim, _ = x.shape
    width = weight.shape[1]
    out = torch.zeros(x.shape, dtype=torch.float64, device=x.device)
    new_states = None if conv_states is None else conv_states.clone()
    bounds = query_start_loc.tolist()
    for i in range(len(bounds) - 1):
        begin, end = bounds[i], bounds[i + 1]
        if end <= begin:
            continue
        line = int(cache_indices[i]) if cache_indices is not None else i
        if _is_padding(line, pad_slot_id, conv_states):
            continue
        tokens = x[:, begin:end]
        init = has_initial_state is not None and bool(has_initial_state[i])
        if conv_states is None or not init:
            state_len = width - 1 if conv_states is None else conv_states.shape[2]
            dtype = x.dtype if conv_states is None else conv_states.dtype
            old = torch.zeros(dim, state_len, dtype=dtype, device=x.device)
        else:
            old = conv_states[line]
        out[:, begin:end] = _conv(old[:, old.shape[1] - (width - 1) :], tokens, weight, bias, silu)
        if new_states is not None:
            full = torch.cat([old, tokens.to(old.dtype)], dim=1)
            new_states[line] = full[:, full.shape[1] - old.shape[1] :]
    return out.to(x.dtype), new_states


def causal_conv1d_update_ref(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: Activation = None,
    cache_seqlens: torch.Tensor | None = None,
    conv_state_indices: torch.Tensor | None = None,
    pad_slot_id: int = PAD_SLOT_ID,
):
    """Reference of :func:`causal_conv1d_update`; returns ``(out, new_conv_state)``."""
    silu = _silu("causal_conv1d_update_ref", activation)
    x3 = x.unsqueeze(-1) if x.dim() == 2 else x
    batch, _, seqlen = x3.shape
    state_len = conv_state.shape[2]
    hist = weight.shape[1] - 1
    out = torch.zeros(x3.shape, dtype=torch.float64, device=x.device)
    new_state = conv_state.clone()
    for b in range(batch):
        line = int(conv_state_indices[b]) if conv_state_indices is not None else b
        if _is_padding(line, pad_slot_id, conv_state):
            continue
        state = conv_state[line]
        tokens = x3[b]
        if cache_seqlens is None:
            window = state[:, state_len - hist :]
            full = torch.cat([state, tokens.to(state.dtype)], dim=1)
            new_state[line] = full[:, full.shape[1] - state_len :]
        else:
            pos = int(cache_seqlens[b]) % state_len
            window = state[:, [(pos - hist + k) % state_len for k in range(hist)]]
            for j in range(seqlen):
                new_state[line, :, (pos + j) % state_len] = tokens[:, j].to(state.dtype)
        out[b] = _conv(window, tokens, weight, bias, silu)
    out = out.to(x.dtype)
    return (out.squeeze(-1) if x.dim() == 2 else out), new_state


def vllm_fn_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    conv_states: torch.Tensor | None,
    query_start_loc: torch.Tensor,
    cache_indices: torch.Tensor | None = None,
    has_initial_state: torch.Tensor | None = None,
    activation: Activation = "silu",
    pad_slot_id: int = PAD_SLOT_ID,
    null_block_id: int | None = 0,
):
    """Reference of :func:`causal_conv1d_kernels.vllm.causal_conv1d_fn` (CONTRACT 1.4): the
    core prefill on the front ``width - 1`` columns of each line, the rest untouched."""
    width = weight.shape[1]
    batch = query_start_loc.shape[0] - 1
    pads = {pad_slot_id} if null_block_id is None else {pad_slot_id, null_block_id}
    if cache_indices is not None:
        cache_indices = cache_indices[:batch].clone()
        cache_indices[[int(v) in pads for v in cache_indices.tolist()]] = pad_slot_id
    elif null_block_id is not None and conv_states is not None and 0 <= null_block_id < batch:
        cache_indices = torch.arange(batch, device=x.device)
        cache_indices[null_block_id] = pad_slot_id
    if has_initial_state is not None:
        has_initial_state = has_initial_state[:batch]
    front = None if conv_states is None else conv_states[:, :, : width - 1].clone()
    out, new_front = causal_conv1d_fn_ref(
        x,
        weight,
        bias,
        front,
        query_start_loc,
        cache_indices,
        has_initial_state,
        activation,
        pad_slot_id,
    )
    if conv_states is None:
        return out, None
    new_states = conv_states.clone()
    new_states[:, :, : width - 1] = new_front
    return out, new_states


def vllm_update_ref(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: Activation = None,
    conv_state_indices: torch.Tensor | None = None,
    num_accepted_tokens: torch.Tensor | None = None,
    query_start_loc: torch.Tensor | None = None,
    max_query_len: int = -1,
    null_block_id: int | None = 0,
):
    """Reference of :func:`causal_conv1d_kernels.vllm.causal_conv1d_update` (CONTRACT 1.4);
    returns ``(out, new_conv_state)`` without touching its inputs. Tokens of x that no row
    owns (varlen) come back as they were in x."""
    silu = _silu("vllm_update_ref", activation)
    width = weight.shape[1]
    hist = width - 1
    if query_start_loc is not None:
        batch = query_start_loc.shape[0] - 1
        starts = query_start_loc.tolist()
        rows = [(starts[b], starts[b + 1]) for b in range(batch)]
        tokens = [x[a:e].t() for a, e in rows]
        lmax = max_query_len
        out = x.double().clone()
    else:
        x3 = x.unsqueeze(-1) if x.dim() == 2 else x
        batch = x3.shape[0]
        tokens = [x3[b] for b in range(batch)]
        lmax = x3.shape[2]
        out = torch.zeros(x3.shape, dtype=torch.float64, device=x.device)
    new_state = conv_state.clone()
    for b in range(batch):
        q = tokens[b].shape[1]
        line = int(conv_state_indices[b]) if conv_state_indices is not None else b
        padding = (
            _is_padding(line, PAD_SLOT_ID, conv_state)
            or line == null_block_id
            or (num_accepted_tokens is not None and q > lmax)
        )
        if q == 0:
            continue
        if padding:
            y = torch.zeros(tokens[b].shape, dtype=torch.float64, device=x.device)
        else:
            state = conv_state[line]
            if num_accepted_tokens is None:
                window = state[:, :hist]
                full = torch.cat([window, tokens[b].to(state.dtype)], dim=1)
                new_state[line, :, :hist] = full[:, full.shape[1] - hist :]
            else:
                o = int(num_accepted_tokens[b]) - 1
                window = state[:, o : o + hist]
                full = torch.cat([window, tokens[b].to(state.dtype)], dim=1)
                new_state[line, :, : hist - 1 + q] = full[:, 1:]
            y = _conv(window, tokens[b], weight, bias, silu)
        if query_start_loc is not None:
            out[rows[b][0] : rows[b][1]] = y.t()
        else:
            out[b] = y
    out = out.to(x.dtype)
    if query_start_loc is None and x.dim() == 2:
        out = out.squeeze(-1)
    return out, new_state


def dao_fn_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    seq_idx: torch.Tensor | None = None,
    initial_states: torch.Tensor | None = None,
    activation: Activation = None,
):
    """Reference of :func:`causal_conv1d_kernels.dao.causal_conv1d_fn` (CONTRACT 1.5), in
    float64 and differentiable (its autograd is the gradients' reference): returns
    ``(out, final_states)``, both float64. Tap k of token t reads column t - (width-1) + k of
    cat(initial states or zeros, x), zero when that column belongs to another sequence (the
    initial columns belong to the sequence of the row's first token); tokens with a negative
    sequence id output 0. The final states are the last width-1 columns of that cat."""
    silu = _silu("dao_fn_ref", activation)
    batch, dim, seqlen = x.shape
    width = weight.shape[1]
    hist = width - 1
    x64 = x.double()
    init = (
        initial_states.double() if initial_states is not None else x64.new_zeros((batch, dim, hist))
    )
    full = torch.cat([init, x64], dim=2)  # (batch, dim, hist + seqlen)
    w = weight.double()
    y = x64.new_zeros((batch, dim, seqlen))
    if seq_idx is not None:
        first = seq_idx[:, :1] if seqlen > 0 else seq_idx.new_zeros((batch, 1))
        ids = torch.cat([first.expand(batch, hist), seq_idx], dim=1)
    for k in range(width):
        tap = w[None, :, k, None] * full[:, :, k : k + seqlen]
        if seq_idx is not None:
            same = ids[:, k : k + seqlen] == seq_idx  # (batch, seqlen)
            tap = tap * same[:, None, :]
        y = y + tap
    if bias is not None:
        y = y + bias.double()[None, :, None]
    if silu:
        y = y * torch.sigmoid(y)
    if seq_idx is not None:
        y = y * (seq_idx >= 0)[:, None, :]
    return y, full[:, :, seqlen : seqlen + hist]


def sglang_tree_parents(next_token, next_sibling, n: int) -> list:
    """The parent of each of a row's n draft tokens, as SGLang's tree verify derives them
    (CONTRACT 1.6): token 0 is the root (parent 0); in token order, t's first child
    ``next_token[t]`` gets parent t and t's next sibling ``next_sibling[t]`` gets t's parent.
    Links that are not to a later token of the row are ignored. Without links: a chain."""
    if next_token is None:
        return [t - 1 for t in range(n)]
    parent = [0] * n
    for t in range(n):
        child = int(next_token[t])
        if t < child < n:
            parent[child] = t
        if next_sibling is not None:
            sibling = int(next_sibling[t])
            if t < sibling < n:
                parent[sibling] = parent[t]
    return parent


def sglang_update_ref(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: Activation = None,
    conv_state_indices: torch.Tensor | None = None,
    num_accept_tokens: torch.Tensor | None = None,
    intermediate_conv_window: torch.Tensor | None = None,
    intermediate_state_indices: torch.Tensor | None = None,
    retrieve_next_token: torch.Tensor | None = None,
    retrieve_next_sibling: torch.Tensor | None = None,
    retrieve_parent_token: torch.Tensor | None = None,
    pad_slot_id: int = PAD_SLOT_ID,
):
    """Reference of :func:`causal_conv1d_kernels.sglang.triton.causal_conv1d_update` (SGLang's
    Triton decode with tree verify, CONTRACT 1.6). Returns ``(out, new_conv_state, windows,
    parents)``: copies of the intermediate windows and the parent table holding what the call
    must leave there (None where not given). Token t of row b convolves the taps of its walk:
    t, parent(t), ... 0, then the window's columns from the last."""
    silu = _silu("sglang_update_ref", activation)
    width = weight.shape[1]
    hist = width - 1
    x3 = x.unsqueeze(-1) if x.dim() == 2 else x
    batch, _, n = x3.shape
    out = torch.zeros(x3.shape, dtype=torch.float64, device=x.device)
    new_state = conv_state.clone()
    windows = None if intermediate_conv_window is None else intermediate_conv_window.clone()
    parents = None if retrieve_parent_token is None else retrieve_parent_token.clone()
    w = weight.double()
    for b in range(batch):
        line = int(conv_state_indices[b]) if conv_state_indices is not None else b
        if _is_padding(line, pad_slot_id, conv_state) or n == 0:
            continue
        state = conv_state[line]
        o = 0 if num_accept_tokens is None else int(num_accept_tokens[b]) - 1
        window = state[:, o : o + hist]
        full = torch.cat([window, x3[b].to(state.dtype)], dim=1)
        if num_accept_tokens is None:
            new_state[line, :, :hist] = full[:, full.shape[1] - hist :]
        else:
            new_state[line, :, : hist - 1 + n] = full[:, 1:]
        rows = torch.cat([window.double(), x3[b].double()], dim=1)  # virtual token v: column H + v
        tree = retrieve_next_token is not None
        parent = sglang_tree_parents(
            retrieve_next_token[b] if tree else None,
            retrieve_next_sibling[b] if tree and retrieve_next_sibling is not None else None,
            n,
        )
        wl = -1
        if windows is not None:
            wl = int(intermediate_state_indices[b]) if intermediate_state_indices is not None else b
            wl = wl if 0 <= wl < windows.shape[0] else -1
        for t in range(n):
            walk = [t]
            for _ in range(hist):
                v = walk[-1]
                walk.append(parent[v] if v > 0 else v - 1)
            taps = torch.stack([rows[:, hist + v] for v in reversed(walk)], dim=1)  # (dim, width)
            y = (w * taps).sum(dim=1)
            if bias is not None:
                y = y + bias.double()
            out[b, :, t] = y * torch.sigmoid(y) if silu else y
            if wl >= 0:
                windows[wl, t, :, :hist] = taps[:, 1:].to(windows.dtype)
        if parents is not None and tree:
            parents[b, :n] = torch.tensor(parent, dtype=parents.dtype)
    out = out.to(x.dtype)
    if x.dim() == 2:
        out = out.squeeze(-1)
    return out, new_state, windows, parents
