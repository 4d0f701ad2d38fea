"""Inputs of the vLLM dialect (CONTRACT 1.4) from one config dict, shared by the parametrized
tests, the fuzz tests and the hostile-input tests, and the checks every call gets."""

from __future__ import annotations

import torch
from causal_conv1d_kernels import vllm
from causal_conv1d_kernels.testing.reference import vllm_fn_ref, vllm_update_ref
from helpers import assert_close, cumulative, rand

# A row's cache index: a real line, vLLM's pad slot (-1) or the null block (line 0).
REAL, PAD, NULL = "real", "pad", "null"


def _lines(c, batch, device):
    """Distinct lines from 1 on for real rows, -1 for pad rows, line 0 for null rows (with no
    null block the first such row really uses line 0, later ones a line of their own), and
    `extra` junk entries past the batch as an engine's persistent buffer holds."""
    real = (torch.randperm(c["num_lines"] - 1)[:batch] + 1).tolist()
    ids, zero_taken = [], False
    for b in range(batch):
        kind = c["kinds"][b]
        if kind == PAD:
            ids.append(-1)
        elif kind == NULL and (c["null_block_id"] == 0 or not zero_taken):
            ids.append(0)
            zero_taken = True
        else:
            ids.append(real[b])
    junk = [int(v) for v in torch.randint(0, c["num_lines"], (c["extra"],))]
    return torch.tensor(ids + junk, dtype=c["index_dtype"], device=device)


def padding_rows(c) -> list[int]:
    return [
        b
        for b, kind in enumerate(c["kinds"])
        if kind == PAD or (kind == NULL and c["null_block_id"] == 0)
    ]


def build_update(c, device):
    """kwargs of vllm.causal_conv1d_update for config c (see update_config)."""
    torch.manual_seed(c["seed"])
    x_dtype, w_dtype, s_dtype = c["mix"]
    dim, batch, width = c["dim"], c["batch"], c["width"]
    lmax = 1 if c["mode"] == "2d" else c["lmax"]
    state_len = width - 1 + (lmax - 1 if c["spec"] else 0) + c["extra_state"]
    kwargs = dict(
        conv_state=rand((c["num_lines"], dim, state_len), s_dtype, device, c["state_layout"]),
        weight=torch.randn(dim, width, dtype=w_dtype, device=device),
        bias=torch.randn(dim, dtype=w_dtype, device=device) if c["bias"] else None,
        activation=c["activation"],
        conv_state_indices=_lines(c, batch, device),
        null_block_id=c["null_block_id"],
        validate_data=c["validate"],
    )
    if c["mode"] == "varlen":
        lengths = c["lengths"][:batch]
        total = sum(lengths) + c["tail_tokens"]  # an engine's x is padded past the rows
        kwargs["x"] = rand((dim, total), x_dtype, device, "channel_last").t()
        kwargs["query_start_loc"] = cumulative(lengths, c["index_dtype"], device)
        kwargs["max_query_len"] = lmax
    elif c["mode"] == "3d":
        kwargs["x"] = rand((batch, dim, lmax), x_dtype, device, c["x_layout"])
    else:
        kwargs["x"] = rand((batch, dim), x_dtype, device, "contiguous")
    if c.get("index_2d"):
        # vLLM's Mamba layers pass a (rows, 1 + num_spec) block table, strided (a wider
        # allocation); column 0 holds the lines, the other columns junk.
        lines = kwargs["conv_state_indices"]
        table = torch.randint(0, c["num_lines"], (lines.shape[0], 2 + lmax), device=device)
        table = table.to(lines.dtype)
        table[:, 0] = lines
        kwargs["conv_state_indices"] = table[:, : 1 + lmax]
    if c["spec"]:
        accepted = [1 + a % lmax for a in c["accepted"][:batch]] + [7] * c["extra"]
        kwargs["num_accepted_tokens"] = torch.tensor(accepted, dtype=torch.int32, device=device)
    if c["out"] == "buffer":
        kwargs["out"] = torch.randn_like(kwargs["x"])
    return kwargs


def assert_same(states, expected):
    """Bit-exact states; NaN where the reference has NaN (torch.equal never matches NaN)."""
    torch.testing.assert_close(states, expected, rtol=0, atol=0, equal_nan=True)


def assert_unchanged(actual, before, what):
    """The very bits (NaN payloads of never-written memory included)."""
    ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}[actual.element_size()]
    assert torch.equal(actual.view(ints), before.view(ints)), what


def reference_args(kwargs):
    drop = ("validate_data", "out", "metadata")
    args = {k: v for k, v in kwargs.items() if k not in drop}
    indices = args.get("conv_state_indices")
    if indices is not None and indices.dim() == 2:
        args["conv_state_indices"] = indices[:, 0]  # what the dialect reads of a block table
    return args


def check_update(kwargs, pads, call=None):
    """One call against the reference: outputs close, padded rows exactly zero, tokens no row
    owns untouched, the whole cache bit-exact (lines and columns the call must not write
    included). ``call`` makes the call (by default ``causal_conv1d_update(**kwargs)``), for
    callers that pass the arguments positionally. Returns the result."""
    x, state, out = kwargs["x"], kwargs["conv_state"], kwargs.get("out")
    expected, expected_state = vllm_update_ref(**reference_args(kwargs))
    target_before = (x if out is None else out).clone()
    x_before = x.clone()
    result = call() if call else vllm.causal_conv1d_update(**kwargs)
    assert result is (x if out is None else out)
    if out is not None:
        assert_unchanged(x, x_before, "x must not change when out is given")
    assert_same(state, expected_state)
    qsl = kwargs.get("query_start_loc")
    if qsl is None:
        assert_close(result, expected, equal_nan=True)
        for b in pads:
            assert torch.equal(result[b], torch.zeros_like(result[b])), f"padded row {b}"
        return result
    bounds = qsl.tolist()
    owned = torch.zeros(x.shape[0], dtype=torch.bool)
    for b in range(len(bounds) - 1):
        owned[bounds[b] : bounds[b + 1]] = True
        if b in pads:
            rows = result[bounds[b] : bounds[b + 1]]
            assert torch.equal(rows, torch.zeros_like(rows)), f"padded row {b}"
    owned = owned.to(x.device)
    assert_close(result[owned], expected[owned], equal_nan=True)
    assert_unchanged(result[~owned], target_before[~owned], "tokens of no row changed")
    return result


def build_fn(c, device):
    """kwargs of vllm.causal_conv1d_fn for config c (see fn_config)."""
    torch.manual_seed(c["seed"])
    x_dtype, w_dtype, s_dtype = c["mix"]
    dim, width, lengths = c["dim"], c["width"], c["lengths"]
    batch = len(lengths)
    state_len = width - 1 + c["extra_state"]
    init = [bool(v) for v in c["init"][:batch]] + [True] * c["extra"]
    return dict(
        x=rand((dim, sum(lengths)), x_dtype, device, c["x_layout"]),
        weight=torch.randn(dim, width, dtype=w_dtype, device=device),
        bias=torch.randn(dim, dtype=w_dtype, device=device) if c["bias"] else None,
        conv_states=rand((c["num_lines"], dim, state_len), s_dtype, device, c["state_layout"]),
        query_start_loc=cumulative(lengths, c["index_dtype"], device),
        cache_indices=_lines(c, batch, device),
        has_initial_state=torch.tensor(init, dtype=torch.bool, device=device),
        activation=c["activation"],
        null_block_id=c["null_block_id"],
        validate_data=c["validate"],
    )


def check_fn(kwargs, pads, call=None):
    """As check_update, for the prefill. Returns the output."""
    states = kwargs["conv_states"]
    expected, expected_states = vllm_fn_ref(**reference_args(kwargs))
    x_before = kwargs["x"].clone()
    out = call() if call else vllm.causal_conv1d_fn(**kwargs)
    assert_unchanged(kwargs["x"], x_before, "x changed")
    assert out.shape == kwargs["x"].shape and out.dtype == kwargs["x"].dtype
    assert_close(out, expected, equal_nan=True)
    bounds = kwargs["query_start_loc"].tolist()
    for i in pads:
        cols = out[:, bounds[i] : bounds[i + 1]]
        assert torch.equal(cols, torch.zeros_like(cols)), f"padded sequence {i}"
    assert_same(states, expected_states)
    return out


def update_config(**over):
    c = dict(
        width=4,
        mix=(torch.bfloat16, torch.bfloat16, torch.float32),
        dim=72,
        batch=6,
        lmax=4,
        mode="varlen",
        spec=True,
        lengths=[4, 0, 3, 1, 4, 2, 1, 2, 3],
        accepted=[0, 1, 2, 3, 1, 0, 2, 3, 0],
        kinds=[REAL, REAL, NULL, REAL, PAD, REAL, REAL, REAL, REAL],
        null_block_id=0,
        num_lines=13,
        extra=3,
        extra_state=1,
        tail_tokens=2,
        state_layout="channel_last",
        x_layout="contiguous",
        index_dtype=torch.int32,
        bias=True,
        activation="silu",
        out="in place",
        validate=False,
        index_2d=False,
        seed=0,
    )
    c.update(over)
    return c


def fn_config(**over):
    c = dict(
        width=4,
        mix=(torch.bfloat16, torch.bfloat16, torch.float32),
        dim=80,
        lengths=[5, 0, 1, 2, 3, 129, 4, 9],
        init=[1, 0, 1, 1, 0, 1, 1, 0],
        kinds=[REAL, REAL, NULL, REAL, PAD, REAL, REAL, REAL],
        null_block_id=0,
        num_lines=12,
        extra=2,
        extra_state=2,
        x_layout="channel_last",
        state_layout="channel_last",
        index_dtype=torch.int32,
        bias=True,
        activation="silu",
        validate=False,
        seed=0,
    )
    c.update(over)
    return c
