"""vLLM 0.33's model code calling the vLLM dialect, call for call (CONTRACT 1.4).

Each ``site_*`` function below is one call site of vLLM 0.33's sdist, written with the
arguments the model passes there (positional order, keyword names, index views such as
``spec_state_indices_tensor[:, 0][:n]``, ``max_query_len=spec_state_indices_tensor.size(-1)``,
``out=`` buffers, ``metadata=`` objects, ``validate_data=True``), over tensors laid out as
vLLM keeps them:

- the conv cache is a view into per-block pages that also hold the SSM state (block stride
  larger than ``state_len * dim``): ``(num_blocks, state_len, dim)`` by default, which the
  layers pass as ``kv_cache[0].transpose(-1, -2)`` (channel stride 1), or ``(num_blocks, dim,
  state_len)`` with ``VLLM_SSM_CONV_STATE_LAYOUT=DS``; bf16 or fp32 states;
- x is a row-strided column view of the projection output, or a fresh product;
- indices are int32 views of a block table (strided), padded CUDA-graph rows hold the null
  block 0, ``query_start_loc`` repeats its last value past the real rows and
  ``num_accepted_tokens`` is 1 there.

On every device each call runs eagerly against the float64 reference (states bit-exact,
padded outputs exactly zero, the pages' SSM part untouched). On CUDA each decode call site
is also captured in a CUDA graph, as vLLM captures its uniform decode batches, and replayed
on new inputs (new tokens, lengths, acceptances and lines in the same buffers): outputs,
x and the whole pages compared bit for bit with an eager call on a copy.

The CPU backend of vLLM (``layers/mamba/ops/cpu/``) rebinds the two names to its own
functions; the calls its callers make (ShortConv's ``forward_native``, the GDN CPU core) are
replayed here too, with their arguments, against our dialect.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest
import torch
from causal_conv1d_kernels import vllm
from helpers import BF16, F32, devices, needs_cuda
from vllm_cases import check_fn, check_update, reference_args

WIDTH, NUM_SPEC, NUM_BLOCKS, SSM_ELEMS = 4, 3, 16, 40


# ---- Tensors as vLLM 0.33 keeps them ----


class Layer:
    """What a layer hands the conv: ``conv1d.weight`` ``(dim, 1, width)`` (viewed as
    ``(dim, width)`` by every caller), bias, activation and its bound cache pages."""

    def __init__(self, dim, state_len, x_dtype, w_dtype, s_dtype, layout, bias, device, seed):
        g = torch.Generator().manual_seed(seed)
        self.dim, self.state_len, self.layout = dim, state_len, layout
        self.conv1d = SimpleNamespace(
            weight=torch.randn(dim, 1, WIDTH, generator=g).to(w_dtype).to(device),
            bias=torch.randn(dim, generator=g).to(w_dtype).to(device) if bias else None,
        )
        self.activation = "silu"
        # One page per block: the conv state first, then (a stand-in for) the SSM state.
        page = state_len * dim + SSM_ELEMS
        self.pages = torch.randn(NUM_BLOCKS, page, generator=g).to(s_dtype).to(device)
        self.x_dtype = x_dtype

    @property
    def kv_cache(self):
        conv = self.pages[:, : self.state_len * self.dim]
        if self.layout == "DS":
            return (conv.view(NUM_BLOCKS, self.dim, self.state_len), None)
        return (conv.view(NUM_BLOCKS, self.state_len, self.dim), None)

    def conv_state(self):
        """The expression every vLLM layer writes (qwen_gdn_linear_attn.py and the rest)."""
        return self.kv_cache[0] if self.layout == "DS" else self.kv_cache[0].transpose(-1, -2)

    def conv_weights(self):
        return self.conv1d.weight.view(self.conv1d.weight.size(0), self.conv1d.weight.size(2))


def engine_tensors(layer, rows, device, seed, spec, lengths=None, padded_rows=0, null_row=None):
    """The metadata tensors of one step: a block table (num_reqs, 1 + num_spec) int32 whose
    rows past the real ones are the null block, its column 0 as vLLM views it, per-row token
    counts, query_start_loc with its tail repeated, num_accepted_tokens padded with 1, and the
    projection buffer the layer's x is a view of (4 spare columns: a row stride > dim)."""
    g = torch.Generator().manual_seed(seed)
    total = rows + padded_rows
    lines = (torch.randperm(NUM_BLOCKS - 1, generator=g)[:rows] + 1).tolist()
    if null_row is not None:
        lines[null_row] = 0  # a request on vLLM's null block: padding
    # A block table wider than its used columns, as vLLM allocates it (row stride > 1 + k).
    table = torch.randint(1, NUM_BLOCKS, (total, 2 + NUM_SPEC), generator=g, dtype=torch.int32)
    table[:rows, 0] = torch.tensor(lines, dtype=torch.int32)
    table[rows:] = 0
    q = 1 + NUM_SPEC if spec else 1
    if lengths is None:
        lengths = [q] * rows
    lengths = list(lengths) + [0] * padded_rows
    qsl = torch.zeros(total + 1, dtype=torch.int32)
    qsl[1:] = torch.tensor(lengths, dtype=torch.int32).cumsum(0)
    accepted = torch.randint(1, q + 1, (total,), generator=g, dtype=torch.int32)
    accepted[rows:] = 1
    tokens = total * q
    proj = torch.randn(tokens, layer.dim + 4, generator=g).to(layer.x_dtype)
    return SimpleNamespace(
        table=table.to(device),
        qsl=qsl.to(device),
        accepted=accepted.to(device),
        has_initial=(torch.rand(total, generator=g) < 0.6).to(device),
        proj=proj.to(device),
        rows=total,
        tokens=tokens,
        lengths=lengths,
    )


def gdn_metadata(t, spec):
    """GDNAttentionMetadata's fields the conv calls read (v1/attention/backends/gdn_attn.py);
    the launch-metadata fields of compute_causal_conv1d_metadata ride along unread."""
    q = 1 + NUM_SPEC if spec else 1
    return SimpleNamespace(
        num_actual_tokens=t.tokens,
        num_spec_decodes=t.rows if spec else 0,
        num_decodes=0 if spec else t.rows,
        num_prefills=0,
        spec_state_indices_tensor=t.table[:, :q] if spec else None,
        non_spec_state_indices_tensor=None if spec else t.table[:, 0],
        spec_query_start_loc=t.qsl if spec else None,
        non_spec_query_start_loc=None if spec else t.qsl,
        num_accepted_tokens=t.accepted if spec else None,
        has_initial_state=t.has_initial,
        nums_dict={8: {"tot": 0}},
        batch_ptr=torch.full((16,), -1, dtype=torch.int32),
        token_chunk_offset_ptr=torch.full((16,), -1, dtype=torch.int32),
    )


# ---- The dialect as the model code sees it: each call checked against the reference ----


def padded(lines, count, pad_ids):
    """The rows (sequences) among the first ``count`` whose line is a pad id."""
    if lines is None:
        return []
    return [b for b, v in enumerate(lines[:count].tolist()) if v in pad_ids]


class Checked:
    """Stands for ``from vllm...causal_conv1d import causal_conv1d_fn, causal_conv1d_update``:
    passes each call, exactly as made, to the dialect, and checks it against the float64
    reference on the same arguments (vllm_cases.check_update / check_fn)."""

    def __init__(self):
        self.calls = 0

    def causal_conv1d_update(self, *args, **kwargs):
        a = inspect.signature(vllm.causal_conv1d_update).bind(*args, **kwargs).arguments
        qsl = a.get("query_start_loc")
        rows = a["x"].shape[0] if qsl is None else qsl.shape[0] - 1
        lines = reference_args(a).get("conv_state_indices")
        self.calls += 1
        pads = padded(lines, rows, (0, -1))
        return check_update(a, pads, lambda: vllm.causal_conv1d_update(*args, **kwargs))

    def causal_conv1d_fn(self, *args, **kwargs):
        a = inspect.signature(vllm.causal_conv1d_fn).bind(*args, **kwargs).arguments
        sequences = a["query_start_loc"].shape[0] - 1
        pads = padded(a.get("cache_indices"), sequences, (0, a.get("pad_slot_id", -1)))
        self.calls += 1
        return check_fn(a, pads, lambda: vllm.causal_conv1d_fn(*args, **kwargs))


# ---- Decode call sites (captured in CUDA graphs by vLLM) ----
# Each takes (api, layer, t): the dialect (or Checked), the layer, the step's tensors; the
# body is the call site's code. Returns the output tensor.


def site_qwen_spec(api, layer, t):
    """qwen_gdn_linear_attn.py:1646, QwenGatedDeltaNetAttention._forward_core, spec decode
    (olmo_gdn_linear_attn.py:366 is the same call with bias None)."""
    attn_metadata = gdn_metadata(t, spec=True)
    spec_state_indices_tensor = attn_metadata.spec_state_indices_tensor
    conv_state = layer.conv_state()
    mixed_qkv_spec = t.proj[: attn_metadata.num_actual_tokens, : layer.dim]
    return api.causal_conv1d_update(
        mixed_qkv_spec,
        conv_state,
        layer.conv_weights(),
        layer.conv1d.bias,
        layer.activation,
        conv_state_indices=spec_state_indices_tensor[:, 0][: attn_metadata.num_spec_decodes],
        num_accepted_tokens=attn_metadata.num_accepted_tokens,
        query_start_loc=attn_metadata.spec_query_start_loc,
        max_query_len=spec_state_indices_tensor.size(-1),
        validate_data=False,
    )


def site_qwen_spec_fused(api, layer, t):
    """qwen_gdn_linear_attn.py:2059, _forward_core_decode_spec_fused_norm."""
    attn_metadata = gdn_metadata(t, spec=True)
    state_indices = attn_metadata.spec_state_indices_tensor
    cu_seqlens = attn_metadata.spec_query_start_loc
    num_accepted_tokens = attn_metadata.num_accepted_tokens
    num_requests = attn_metadata.num_spec_decodes
    num_actual_tokens = attn_metadata.num_actual_tokens
    mixed_qkv = t.proj[:, : layer.dim]
    return api.causal_conv1d_update(
        mixed_qkv[:num_actual_tokens],
        layer.conv_state(),
        layer.conv_weights(),
        layer.conv1d.bias,
        layer.activation,
        conv_state_indices=state_indices[:num_requests, 0],
        num_accepted_tokens=num_accepted_tokens[:num_requests],
        query_start_loc=cu_seqlens[: num_requests + 1],
        max_query_len=state_indices.size(1),
        validate_data=False,
    )


def site_kimi_spec(api, layer, t):
    """kimi_gdn_linear_attn.py:489, KimiGatedDeltaNetAttention._forward, spec decode into a
    fresh out= (fp32 conv weights, activation by keyword)."""
    m = gdn_metadata(t, spec=True)
    spec_state_indices_tensor = m.spec_state_indices_tensor
    mixed_qkv_spec = t.proj[: m.num_actual_tokens, : layer.dim]
    spec_conv_indices = spec_state_indices_tensor[:, 0][: m.num_spec_decodes]
    spec_max_query_len = spec_state_indices_tensor.size(-1)
    spec_conv_out = torch.empty(
        mixed_qkv_spec.shape, dtype=mixed_qkv_spec.dtype, device=mixed_qkv_spec.device
    )
    return api.causal_conv1d_update(
        mixed_qkv_spec,
        layer.conv_state(),
        layer.conv_weights(),
        layer.conv1d.bias,
        activation="silu",
        conv_state_indices=spec_conv_indices,
        num_accepted_tokens=m.num_accepted_tokens,
        query_start_loc=m.spec_query_start_loc,
        max_query_len=spec_max_query_len,
        validate_data=False,
        out=spec_conv_out,
    )


def site_bailing_spec(api, layer, t):
    """bailing_moe_v3.py:948/962/976, BailingMoeV3KimiDeltaAttention._forward, spec decode of
    q, k and v over conv_state.chunk(3, dim=-2) (fp32 weights, bias None)."""
    attn_metadata = gdn_metadata(t, spec=True)
    spec_state_indices = attn_metadata.spec_state_indices_tensor
    conv_states = layer.conv_state().chunk(3, dim=-2)
    weights = layer.conv_weights().chunk(3, dim=0)
    p = layer.dim // 3
    outs = []
    for j in range(3):
        proj_states_spec = t.proj[: attn_metadata.num_actual_tokens, j * p : (j + 1) * p]
        outs.append(
            api.causal_conv1d_update(
                proj_states_spec,
                conv_states[j],
                weights[j],
                None,
                activation="silu",
                conv_state_indices=spec_state_indices[:, 0][: attn_metadata.num_spec_decodes],
                num_accepted_tokens=attn_metadata.num_accepted_tokens,
                query_start_loc=attn_metadata.spec_query_start_loc,
                max_query_len=spec_state_indices.size(-1),
                validate_data=False,
            )
        )
    return outs[-1]


def site_qwen_decode(api, layer, t, validate_data=True):
    """qwen_gdn_linear_attn.py:1681 (validate_data=True; 2009, the packed fast path, is the
    same call with validate_data=False), non-spec decode, in place."""
    attn_metadata = gdn_metadata(t, spec=False)
    non_spec_state_indices_tensor = attn_metadata.non_spec_state_indices_tensor
    mixed_qkv_non_spec = t.proj[: attn_metadata.num_actual_tokens, : layer.dim]
    return api.causal_conv1d_update(
        mixed_qkv_non_spec,
        layer.conv_state(),
        layer.conv_weights(),
        layer.conv1d.bias,
        layer.activation,
        conv_state_indices=non_spec_state_indices_tensor[: attn_metadata.num_actual_tokens],
        validate_data=validate_data,
    )


def site_qwen_decode_packed(api, layer, t):
    return site_qwen_decode(api, layer, t, validate_data=False)


def site_kimi_decode(api, layer, t):
    """kimi_gdn_linear_attn.py:608, non-spec decode with validate_data=True into out=."""
    m = gdn_metadata(t, spec=False)
    mixed_qkv_ns = t.proj[: m.num_actual_tokens, : layer.dim]
    decode_conv_indices = m.non_spec_state_indices_tensor[: mixed_qkv_ns.size(0)]
    packed_conv_out = torch.empty(
        mixed_qkv_ns.shape, dtype=mixed_qkv_ns.dtype, device=mixed_qkv_ns.device
    )
    return api.causal_conv1d_update(
        mixed_qkv_ns,
        layer.conv_state(),
        layer.conv_weights(),
        layer.conv1d.bias,
        activation="silu",
        conv_state_indices=decode_conv_indices,
        validate_data=True,
        out=packed_conv_out,
    )


def site_olmo_decode(api, layer, t):
    """olmo_gdn_linear_attn.py:397, non-spec decode: bias None, the indices cut at
    num_decodes, validate_data=True, in place."""
    attn_metadata = gdn_metadata(t, spec=False)
    mixed_qkv_non_spec = t.proj[: attn_metadata.num_actual_tokens, : layer.dim]
    return api.causal_conv1d_update(
        mixed_qkv_non_spec,
        layer.conv_state(),
        layer.conv_weights(),
        None,
        layer.activation,
        conv_state_indices=attn_metadata.non_spec_state_indices_tensor[: attn_metadata.num_decodes],
        validate_data=True,
    )


def site_bailing_decode(api, layer, t):
    """bailing_moe_v3.py:1036/1045/1054, non-spec decode of q, k, v, validate_data=True."""
    attn_metadata = gdn_metadata(t, spec=False)
    state_indices = attn_metadata.non_spec_state_indices_tensor
    decode_indices = state_indices[: attn_metadata.num_actual_tokens]
    conv_states = layer.conv_state().chunk(3, dim=-2)
    weights = layer.conv_weights().chunk(3, dim=0)
    p = layer.dim // 3
    for j in range(3):
        out = api.causal_conv1d_update(
            t.proj[: attn_metadata.num_actual_tokens, j * p : (j + 1) * p],
            conv_states[j],
            weights[j],
            None,
            activation="silu",
            conv_state_indices=decode_indices,
            validate_data=True,
        )
    return out


def mamba_metadata(t, spec):
    """Mamba2/ShortConv metadata (v1/attention/backends/mamba_attn.py): the decode rows' block
    table rows as a 2-D (num_decodes, 1 + num_spec) int32 view."""
    q = 1 + NUM_SPEC if spec else 1
    return SimpleNamespace(
        state_indices_tensor_d=t.table[:, :q],
        query_start_loc_d=t.qsl if spec else None,
        num_accepted_tokens=t.accepted if spec else None,
    )


def site_mamba2_decode(api, layer, t, spec=False):
    """mamba_mixer2.py:949, MambaMixer2.conv_ssm_forward, decode: x a row-strided view of the
    in_proj output, 2-D state indices, in place."""
    m = mamba_metadata(t, spec)
    hidden_states_B_C_d = t.proj[: t.tokens, 2 : 2 + layer.dim]
    state_indices_tensor_d = m.state_indices_tensor_d
    return api.causal_conv1d_update(
        hidden_states_B_C_d,
        layer.conv_state(),
        layer.conv_weights(),
        layer.conv1d.bias,
        layer.activation,
        conv_state_indices=state_indices_tensor_d,
        num_accepted_tokens=m.num_accepted_tokens,
        query_start_loc=m.query_start_loc_d,
        max_query_len=state_indices_tensor_d.size(-1),
    )


def site_mamba2_spec(api, layer, t):
    return site_mamba2_decode(api, layer, t, spec=True)


def site_mamba1_decode(api, layer, t):
    """mamba_mixer.py:360, MambaMixer.forward_impl, decode: x the (tokens, dim) transpose of
    a (dim, tokens) view with strides (1, 2 dim), result transposed back."""
    m = mamba_metadata(t, spec=False)
    # in_proj's output (tokens, 2 dim), viewed as mamba_mixer.py:250 does.
    in_proj = torch.cat([t.proj[: t.tokens, : layer.dim], t.proj[: t.tokens, 4 : 4 + layer.dim]], 1)
    projected_states = in_proj.transpose(-2, -1)
    hidden_states_BC, _gate = projected_states.chunk(2, dim=-2)
    hidden_states_BC_d = hidden_states_BC[..., : t.tokens]
    conv_out_d = api.causal_conv1d_update(
        hidden_states_BC_d.transpose(0, 1),
        layer.conv_state(),
        layer.conv_weights(),
        layer.conv1d.bias,
        layer.activation,
        conv_state_indices=m.state_indices_tensor_d,
    ).transpose(0, 1)
    return conv_out_d


def site_short_conv_spec(api, layer, t):
    """short_conv.py:313, ShortConv.forward_cuda, spec decode: a contiguous product, no
    activation, 2-D indices."""
    m = mamba_metadata(t, spec=True)
    B_d, x_d = t.proj[: t.tokens, : layer.dim], t.proj[: t.tokens, 4 : 4 + layer.dim]
    Bx_d = (B_d * x_d).contiguous()
    state_indices_tensor_d = m.state_indices_tensor_d
    return api.causal_conv1d_update(
        Bx_d,
        layer.conv_state(),
        layer.conv_weights(),
        layer.conv1d.bias,
        activation=None,
        conv_state_indices=state_indices_tensor_d,
        num_accepted_tokens=m.num_accepted_tokens,
        query_start_loc=m.query_start_loc_d,
        max_query_len=state_indices_tensor_d.size(-1),
    )


def site_short_conv_decode(api, layer, t):
    """short_conv.py:326, non-spec decode."""
    m = mamba_metadata(t, spec=False)
    B_d, x_d = t.proj[: t.tokens, : layer.dim], t.proj[: t.tokens, 4 : 4 + layer.dim]
    Bx_d = (B_d * x_d).contiguous()
    return api.causal_conv1d_update(
        Bx_d,
        layer.conv_state(),
        layer.conv_weights(),
        layer.conv1d.bias,
        activation=None,
        conv_state_indices=m.state_indices_tensor_d,
    )


# (site, spec, dim, weight dtype or None for x's, bias, varlen lengths of the real rows)
DECODE_SITES = {
    "qwen-spec": (site_qwen_spec, True, 64, None, False, None),
    "qwen-spec-fused": (site_qwen_spec_fused, True, 64, None, False, None),
    "kimi-spec": (site_kimi_spec, True, 96, F32, False, None),
    "bailing-spec": (site_bailing_spec, True, 96, F32, False, None),
    "qwen-decode-validated": (site_qwen_decode, False, 64, None, False, None),
    "qwen-decode-packed": (site_qwen_decode_packed, False, 64, None, False, None),
    "kimi-decode": (site_kimi_decode, False, 96, F32, False, None),
    "olmo-decode": (site_olmo_decode, False, 64, None, False, None),
    "bailing-decode": (site_bailing_decode, False, 96, F32, False, None),
    "mamba2-decode": (site_mamba2_decode, False, 64, None, True, None),
    "mamba2-spec": (site_mamba2_spec, True, 64, None, True, [1, 4, 2, 3, 4]),
    "mamba1-decode": (site_mamba1_decode, False, 64, None, True, None),
    "short-conv-spec": (site_short_conv_spec, True, 64, None, True, [4, 1, 3, 2, 4]),
    "short-conv-decode": (site_short_conv_decode, False, 64, None, True, None),
}
STATES = [("SD", BF16), ("SD", F32), ("DS", BF16), ("DS", F32)]


def state_id(s):
    return f"{s[0]}-{str(s[1]).removeprefix('torch.')}"


def decode_setup(name, layout, s_dtype, device, seed, padded_rows=0, null_row=None):
    site, spec, dim, w_dtype, bias, lengths = DECODE_SITES[name]
    state_len = WIDTH - 1 + NUM_SPEC  # GDN, KDA, Mamba2, ShortConv: width - 1 + num_spec
    if name.startswith("mamba1"):
        state_len = WIDTH - 1  # Mamba1 has no speculative term
    layer = Layer(dim, state_len, BF16, w_dtype or BF16, s_dtype, layout, bias, device, seed)
    t = engine_tensors(layer, 5, device, seed + 1, spec, lengths, padded_rows, null_row)
    return site, layer, t


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("state", STATES, ids=state_id)
@pytest.mark.parametrize("name", list(DECODE_SITES))
def test_decode_call_site_matches_reference(device, state, name):
    """Each decode call site eagerly, a null-block row and padded CUDA-graph rows included,
    against the float64 reference; the pages' SSM part untouched."""
    site, layer, t = decode_setup(name, *state, device, seed=3, padded_rows=2, null_row=1)
    ssm_before = layer.pages[:, layer.state_len * layer.dim :].clone()
    api = Checked()
    site(api, layer, t)
    assert api.calls >= 1
    assert torch.equal(layer.pages[:, layer.state_len * layer.dim :], ssm_before)


def refill(layer, t, seed, spec, lengths):
    """New step data written into the same buffers, as vLLM's builders do between replays:
    new tokens, new lines (a null row among them), new lengths and acceptances."""
    fresh = engine_tensors(layer, 5, t.proj.device, seed, spec, lengths, 2, null_row=seed % 5)
    for name in ("table", "qsl", "accepted", "has_initial", "proj"):
        getattr(t, name).copy_(getattr(fresh, name))
    g = torch.Generator().manual_seed(seed)
    layer.pages.copy_(torch.randn(layer.pages.shape, generator=g).to(layer.pages.dtype))


def clone_step(layer, t):
    twin = Layer.__new__(Layer)
    twin.__dict__.update(layer.__dict__)
    twin.pages = layer.pages.clone()
    return twin, SimpleNamespace(**{k: getattr(t, k) for k in vars(t)} | {"proj": t.proj.clone()})


@needs_cuda
@pytest.mark.parametrize("state", STATES, ids=state_id)
@pytest.mark.parametrize("name", list(DECODE_SITES))
def test_cuda_decode_call_site_captured_and_replayed(state, name):
    """As vLLM runs its uniform decode batches: the call site captured in a CUDA graph over
    the step's persistent buffers, then replayed twice on new data in them; each replay's
    output, x (the projection buffer) and pages bit for bit those of an eager call on a
    copy of the same data. Under CAUSAL_CONV1D_VALIDATE=1's value checks too (skipped inside
    the capture)."""
    from causal_conv1d_kernels import _core

    site, layer, t = decode_setup(name, *state, "cuda", seed=5, padded_rows=2)
    _, spec, *_, lengths = DECODE_SITES[name]
    # vLLM warms up on a side stream before capturing; then capture.
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        site(vllm, layer, t)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    saved = _core._VALIDATE_FROM_ENV
    try:
        _core._VALIDATE_FROM_ENV = True  # the value checks must stay out of the capture
        with torch.cuda.graph(graph):
            result = site(vllm, layer, t)
    finally:
        _core._VALIDATE_FROM_ENV = saved
    for seed in (11, 12):
        refill(layer, t, seed, spec, lengths)
        twin_layer, twin_t = clone_step(layer, t)
        expected = site(vllm, twin_layer, twin_t)
        graph.replay()
        torch.cuda.synchronize()
        # Every token a row owns; the others keep what their buffer held (for an out= from
        # torch.empty, whatever the allocator left there: compared through x instead).
        owned = torch.ones(result.shape[0], dtype=torch.bool)
        if spec:
            owned[:] = False
            bounds = t.qsl.tolist()
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                owned[lo:hi] = True
        assert owned.any()
        assert torch.equal(result[owned.cuda()], expected[owned.cuda()]), "output"
        assert torch.equal(t.proj, twin_t.proj), "projection buffer (x)"
        assert torch.equal(layer.pages, twin_layer.pages), "cache pages"
    # The replays computed the right thing, not only the same thing as eager.
    refill(layer, t, 13, spec, lengths)
    api = Checked()
    site(api, layer, t)


# ---- Prefill call sites (eager in vLLM: prefill and mixed batches are graph breaks) ----


def site_qwen_prefill(api, layer, t):
    """qwen_gdn_linear_attn.py:1668 (olmo_gdn_linear_attn.py:384 passes bias None)."""
    attn_metadata = gdn_metadata(t, spec=False)
    mixed_qkv_non_spec = t.proj[: t.qsl[-1].item(), : layer.dim]
    mixed_qkv_non_spec_T = mixed_qkv_non_spec.transpose(0, 1)
    return api.causal_conv1d_fn(
        mixed_qkv_non_spec_T,
        layer.conv_weights(),
        layer.conv1d.bias,
        activation=layer.activation,
        conv_states=layer.conv_state(),
        has_initial_state=attn_metadata.has_initial_state,
        cache_indices=attn_metadata.non_spec_state_indices_tensor,
        query_start_loc=attn_metadata.non_spec_query_start_loc,
        metadata=attn_metadata,
    ).transpose(0, 1)


def site_kimi_prefill(api, layer, t):
    """kimi_gdn_linear_attn.py:548, _prefill_conv for q, k and v: column slices of x,
    conv_state.split(p, dim=-2), conv_weights.split(p, dim=0), bias None."""
    m = gdn_metadata(t, spec=False)
    p = layer.dim // 3
    mixed_qkv_ns = t.proj[: t.qsl[-1].item(), : layer.dim]
    q_ns, k_ns, v_ns = mixed_qkv_ns.split(p, dim=-1)
    q_conv_weight, k_conv_weight, v_conv_weight = layer.conv_weights().split(p, dim=0)
    q_conv_state, k_conv_state, v_conv_state = layer.conv_state().split(p, dim=-2)

    def _prefill_conv(x, state, weight):
        return api.causal_conv1d_fn(
            x.transpose(0, 1),
            weight,
            None,
            activation="silu",
            conv_states=state,
            has_initial_state=m.has_initial_state,
            cache_indices=m.non_spec_state_indices_tensor,
            query_start_loc=m.non_spec_query_start_loc,
            metadata=m,
        ).transpose(0, 1)

    _prefill_conv(q_ns, q_conv_state, q_conv_weight)
    _prefill_conv(k_ns, k_conv_state, k_conv_weight)
    return _prefill_conv(v_ns, v_conv_state, v_conv_weight)


def site_bailing_prefill(api, layer, t):
    """bailing_moe_v3.py:997/1008/1019: conv_state.chunk(3, dim=-2), fp32 weights."""
    attn_metadata = gdn_metadata(t, spec=False)
    state_indices = attn_metadata.non_spec_state_indices_tensor
    query_start_loc = attn_metadata.non_spec_query_start_loc
    conv_states = layer.conv_state().chunk(3, dim=-2)
    weights = layer.conv_weights().chunk(3, dim=0)
    p = layer.dim // 3
    for j in range(3):
        proj_states_non_spec = t.proj[: t.qsl[-1].item(), j * p : (j + 1) * p]
        out = api.causal_conv1d_fn(
            proj_states_non_spec.transpose(0, 1),
            weights[j],
            None,
            activation="silu",
            conv_states=conv_states[j],
            has_initial_state=attn_metadata.has_initial_state,
            cache_indices=state_indices,
            query_start_loc=query_start_loc,
            metadata=attn_metadata,
        ).transpose(0, 1)
    return out


def site_mamba2_prefill(api, layer, t):
    """mamba_mixer2.py:832: x the transpose of a row-strided view after the decode tokens;
    metadata before query_start_loc; the result cut at num_prefill_tokens."""
    num_prefill_tokens = int(t.qsl[-1])
    num_decode_tokens = 2
    hidden_states_B_C = t.proj[: num_decode_tokens + num_prefill_tokens, 2 : 2 + layer.dim]
    _, hidden_states_B_C_p = torch.split(
        hidden_states_B_C, [num_decode_tokens, num_prefill_tokens], dim=0
    )
    x = hidden_states_B_C_p.transpose(0, 1)  # this is the form that causal-conv see
    attn_metadata = SimpleNamespace(nums_dict=None, batch_ptr=None)
    return api.causal_conv1d_fn(
        x,
        layer.conv_weights(),
        layer.conv1d.bias,
        activation=layer.activation,
        conv_states=layer.conv_state(),
        has_initial_state=t.has_initial,
        cache_indices=t.table[:, 0],
        metadata=attn_metadata,
        query_start_loc=t.qsl,
    ).transpose(0, 1)[:num_prefill_tokens]


def site_mamba1_prefill(api, layer, t):
    """mamba_mixer.py:318: x already (dim, tokens) with strides (1, 2 dim) and an offset."""
    num_decode_tokens, num_prefill_tokens = 2, int(t.qsl[-1])
    total = num_decode_tokens + num_prefill_tokens
    projected = torch.cat([t.proj[:total, : layer.dim], t.proj[:total, 4 : 4 + layer.dim]], 1)
    hidden_states_BC, _gate = projected.transpose(-2, -1).chunk(2, dim=-2)
    _, hidden_states_BC_p = torch.split(
        hidden_states_BC[..., :total], [num_decode_tokens, num_prefill_tokens], dim=-1
    )
    return api.causal_conv1d_fn(
        hidden_states_BC_p,
        layer.conv_weights(),
        layer.conv1d.bias,
        activation=layer.activation,
        conv_states=layer.conv_state(),
        has_initial_state=t.has_initial,
        cache_indices=t.table[:, 0],
        query_start_loc=t.qsl,
        metadata=SimpleNamespace(),
    )


def site_short_conv_prefill(api, layer, t):
    """short_conv.py:290: a fresh product transposed, activation=None."""
    num_prefill_tokens = int(t.qsl[-1])
    B_p = t.proj[:num_prefill_tokens, : layer.dim]
    x_p = t.proj[:num_prefill_tokens, 4 : 4 + layer.dim]
    Bx_p = (B_p * x_p).transpose(0, 1)
    return api.causal_conv1d_fn(
        Bx_p,
        layer.conv_weights(),
        layer.conv1d.bias,
        activation=None,
        conv_states=layer.conv_state(),
        has_initial_state=t.has_initial,
        cache_indices=t.table[:, 0],
        metadata=SimpleNamespace(),
        query_start_loc=t.qsl,
    ).transpose(0, 1)[:num_prefill_tokens]


def site_warmup(api, layer, t):
    """warmup/qwen_triton_warmup.py:197: one token on the null block, uninitialised weight and
    has_initial_state, metadata=None, every keyword spelled out."""
    conv_dim = layer.dim
    x_storage = torch.empty((1, conv_dim), dtype=layer.x_dtype, device=t.proj.device)
    x = x_storage.t()
    weight = torch.empty((conv_dim, WIDTH), dtype=layer.x_dtype, device=t.proj.device)
    return api.causal_conv1d_fn(
        x,
        weight,
        None,
        layer.conv_state(),
        torch.tensor([0, 1], dtype=torch.int32, device=t.proj.device),
        cache_indices=torch.full((1,), 0, dtype=torch.int32, device=t.proj.device),
        has_initial_state=torch.empty(1, dtype=torch.bool, device=t.proj.device),
        activation="silu",
        pad_slot_id=vllm.PAD_SLOT_ID,
        null_block_id=vllm.NULL_BLOCK_ID,
        metadata=None,
        validate_data=False,
    )


# vLLM's CPU backend (layers/mamba/ops/cpu/) rebinds both names; its callers' calls:


def site_cpu_short_conv(api, layer, t):
    """short_conv.py:96, ShortConv.forward_native: prefill positionally with flattened
    indices, then decode with flattened 2-D decode indices."""
    num_prefill_tokens = int(t.qsl[-1])
    Bx_p = (t.proj[:num_prefill_tokens, : layer.dim] * 2).transpose(0, 1)
    conv_state = layer.conv_state()
    api.causal_conv1d_fn(
        Bx_p,
        layer.conv_weights(),
        layer.conv1d.bias,
        conv_state,
        t.qsl,
        t.table[:, :1].flatten(),
        t.has_initial,
        activation=None,
    ).transpose(0, 1)[:num_prefill_tokens]
    Bx_d = (t.proj[: t.rows, : layer.dim] * 3).contiguous()
    return api.causal_conv1d_update(
        Bx_d,
        conv_state,
        layer.conv_weights(),
        layer.conv1d.bias,
        activation=None,
        conv_state_indices=t.table[:, :1].flatten(),
    )


def site_cpu_gdn(api, layer, t):
    """ops/cpu/gdn_attention.py, the unpacked-weight path: everything by keyword, the prefill
    on a query_start_loc rebased past the decodes, the decode on the front width - 1 columns
    of the spec-aware buffer."""
    num_decodes, num_decode_tokens = 2, 2
    num_prefills = t.rows - num_decodes
    conv_buf = layer.conv_state()
    mixed_qkv = t.proj[:, : layer.dim].contiguous()
    # Two one-token decodes first, then the prefills (their lengths from t).
    lengths = [1] * num_decodes + t.lengths[num_decodes:]
    query_start_loc = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    query_start_loc = query_start_loc.to(dtype=torch.int32, device=t.qsl.device)
    has_initial_state = t.has_initial
    state_indices_tensor = t.table[:, 0]
    api.causal_conv1d_update(
        x=mixed_qkv[:num_decode_tokens],
        conv_state=conv_buf[:, :, : WIDTH - 1],
        weight=layer.conv_weights(),
        bias=layer.conv1d.bias,
        activation=layer.activation,
        conv_state_indices=state_indices_tensor[:num_decodes],
    )
    prefill_mixed_qkv = mixed_qkv[num_decode_tokens : int(query_start_loc[-1])]
    return api.causal_conv1d_fn(
        x=prefill_mixed_qkv.transpose(0, 1),
        weight=layer.conv_weights(),
        bias=layer.conv1d.bias,
        conv_states=conv_buf,
        query_start_loc=query_start_loc[num_decodes : num_decodes + num_prefills + 1]
        - num_decode_tokens,
        cache_indices=state_indices_tensor[num_decodes : num_decodes + num_prefills],
        has_initial_state=has_initial_state[num_decodes : num_decodes + num_prefills],
        activation=layer.activation,
    )


PREFILL_SITES = {
    "qwen-prefill": (site_qwen_prefill, 64, None, False),
    "kimi-prefill": (site_kimi_prefill, 96, F32, False),
    "bailing-prefill": (site_bailing_prefill, 96, F32, False),
    "mamba2-prefill": (site_mamba2_prefill, 64, None, True),
    "mamba1-prefill": (site_mamba1_prefill, 64, None, True),
    "short-conv-prefill": (site_short_conv_prefill, 64, None, True),
    "qwen-warmup": (site_warmup, 64, None, False),
    "cpu-backend-short-conv": (site_cpu_short_conv, 64, None, True),
    "cpu-backend-gdn": (site_cpu_gdn, 64, None, False),
}


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("state", STATES, ids=state_id)
@pytest.mark.parametrize("name", list(PREFILL_SITES))
def test_prefill_call_site_matches_reference(device, state, name):
    """Each prefill call site (and the CPU backend's callers) eagerly against the float64
    reference: sequences of 0 to 9 tokens, a null-block sequence, initial states on and off."""
    site, dim, w_dtype, bias = PREFILL_SITES[name]
    layout, s_dtype = state
    state_len = WIDTH - 1 + (0 if name.startswith("mamba1") else NUM_SPEC)
    layer = Layer(dim, state_len, BF16, w_dtype or BF16, s_dtype, layout, bias, device, seed=7)
    t = engine_tensors(layer, 6, device, 8, spec=True, lengths=[5, 0, 1, 9, 3, 2], null_row=2)
    ssm_before = layer.pages[:, layer.state_len * layer.dim :].clone()
    api = Checked()
    site(api, layer, t)
    assert api.calls >= 1
    assert torch.equal(layer.pages[:, layer.state_len * layer.dim :], ssm_before)
