"""The vLLM dialect (CONTRACT 1.4) against the float64 reference written from the spec: plain,
varlen and speculative decode, front-aligned prefill, null block and pad rows, index buffers
longer than the batch, in place and into `out`; states bit-exact, untouched columns, lines and
tokens untouched. Then hostile values, opcheck and torch.compile of the dialect."""

import inspect

import causal_conv1d_kernels as ck
import pytest
import torch
from causal_conv1d_kernels import _core, vllm
from helpers import DTYPE_MIXES, WIDTHS, assert_close, devices, mix_id
from torch.utils._python_dispatch import TorchDispatchMode
from vllm_cases import (
    NULL,
    PAD,
    REAL,
    build_fn,
    build_update,
    check_fn,
    check_update,
    fn_config,
    padding_rows,
    update_config,
)

MODES = [
    ("2d", False),
    ("3d", False),
    ("varlen", False),
    ("2d", True),
    ("3d", True),
    ("varlen", True),
]


def mode_id(mode):
    return mode[0] + ("-spec" if mode[1] else "")


def test_signatures_are_vllm_0_33s():
    """Positional order, names and defaults of vLLM 0.33's two functions."""
    fn = inspect.signature(vllm.causal_conv1d_fn)
    assert list(fn.parameters) == [
        "x",
        "weight",
        "bias",
        "conv_states",
        "query_start_loc",
        "cache_indices",
        "has_initial_state",
        "activation",
        "pad_slot_id",
        "null_block_id",
        "metadata",
        "validate_data",
    ]
    defaults = {k: p.default for k, p in fn.parameters.items() if p.default is not p.empty}
    assert defaults == dict(
        cache_indices=None,
        has_initial_state=None,
        activation="silu",
        pad_slot_id=-1,
        null_block_id=0,
        metadata=None,
        validate_data=False,
    )
    upd = inspect.signature(vllm.causal_conv1d_update)
    assert list(upd.parameters) == [
        "x",
        "conv_state",
        "weight",
        "bias",
        "activation",
        "conv_state_indices",
        "num_accepted_tokens",
        "query_start_loc",
        "max_query_len",
        "null_block_id",
        "validate_data",
        "out",
    ]
    defaults = {k: p.default for k, p in upd.parameters.items() if p.default is not p.empty}
    assert defaults == dict(
        bias=None,
        activation=None,
        conv_state_indices=None,
        num_accepted_tokens=None,
        query_start_loc=None,
        max_query_len=-1,
        null_block_id=0,
        validate_data=False,
        out=None,
    )


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("mode", MODES, ids=mode_id)
@pytest.mark.parametrize("mix", DTYPE_MIXES, ids=mix_id)
@pytest.mark.parametrize("width", WIDTHS)
def test_update_matches_reference(device, mode, mix, width):
    layout = ["channel_last", "contiguous"][width % 2]
    c = update_config(
        width=width,
        mix=mix,
        mode=mode[0],
        spec=mode[1],
        state_layout=layout,
        x_layout=["contiguous", "channel_last", "strided"][width % 3],
        index_dtype=[torch.int32, torch.int64][width % 2],
        seed=width,
    )
    check_update(build_update(c, device), padding_rows(c))


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("mode", MODES, ids=mode_id)
@pytest.mark.parametrize("lmax", [1, 2, 5])
@pytest.mark.parametrize("out", ["in place", "buffer"])
def test_update_every_length_and_acceptance(device, mode, lmax, out):
    """q_b from 0 to Lmax and num_accepted from 1 to Lmax, each in some row."""
    batch = (lmax + 1) * lmax
    c = update_config(
        mode=mode[0],
        spec=mode[1],
        lmax=lmax,
        batch=batch,
        lengths=[b % (lmax + 1) for b in range(batch)],
        accepted=[b // (lmax + 1) for b in range(batch)],
        kinds=[[REAL, REAL, REAL, NULL, PAD][b % 5] for b in range(batch)],
        num_lines=batch + 2,
        out=out,
        extra_state=0,
    )
    check_update(build_update(c, device), padding_rows(c))


@pytest.mark.parametrize("device", devices())
def test_update_without_null_block_uses_line_0(device):
    c = update_config(null_block_id=None, kinds=[NULL, REAL, PAD, REAL, REAL, REAL])
    kwargs = build_update(c, device)
    assert int(kwargs["conv_state_indices"][0]) == 0
    check_update(kwargs, padding_rows(c))


@pytest.mark.parametrize("device", devices())
def test_update_without_indices_uses_line_b(device):
    c = update_config(mode="3d", null_block_id=None)
    kwargs = build_update(c, device)
    kwargs["conv_state_indices"] = None
    check_update(kwargs, [])


@pytest.mark.parametrize("device", devices())
def test_spec_decode_steps_chain(device):
    """Three speculative steps on one cache, each accepting some of the last drafts: every
    step's window is where the previous step's verification says."""
    c = update_config(mode="varlen", spec=True, lengths=[4, 4, 4, 4, 4, 4], batch=6, extra=0)
    kwargs = build_update(c, device)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        accepted = torch.randint(1, 5, (6,), generator=gen, dtype=torch.int32)
        kwargs["num_accepted_tokens"] = accepted.to(device)
        kwargs["x"] = torch.randn_like(kwargs["x"])
        check_update(kwargs, padding_rows(c))


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("mix", DTYPE_MIXES, ids=mix_id)
@pytest.mark.parametrize("width", WIDTHS)
def test_fn_matches_reference(device, mix, width):
    c = fn_config(
        width=width,
        mix=mix,
        state_layout=["channel_last", "contiguous"][width % 2],
        x_layout=["channel_last", "contiguous", "padded"][width % 3],
        index_dtype=[torch.int64, torch.int32][width % 2],
        extra_state=width % 3,
        seed=width,
    )
    check_fn(build_fn(c, device), padding_rows(c))


@pytest.mark.parametrize("device", devices())
def test_fn_then_spec_decode(device):
    """The engine's sequence: a front-aligned prefill, then decode steps reading the window
    it left (num_accepted 1 means columns [0, W-1))."""
    c = fn_config(extra_state=3, kinds=[REAL] * 8, null_block_id=None)
    kwargs = build_fn(c, device)
    check_fn(kwargs, [])
    lines = kwargs["cache_indices"][:8]
    x = torch.randn(8 * 4, kwargs["x"].shape[0], device=device, dtype=kwargs["x"].dtype)
    qsl = torch.arange(0, 33, 4, dtype=torch.int32, device=device)
    upd = dict(
        x=x,
        conv_state=kwargs["conv_states"],
        weight=kwargs["weight"],
        bias=kwargs["bias"],
        activation="silu",
        conv_state_indices=lines,
        num_accepted_tokens=torch.ones(8, dtype=torch.int32, device=device),
        query_start_loc=qsl,
        max_query_len=4,
        null_block_id=None,
    )
    check_update(upd, [])


@pytest.mark.parametrize("device", devices())
def test_fn_without_null_block_or_initial_states(device):
    c = fn_config(null_block_id=None, kinds=[NULL, REAL, PAD, REAL, REAL, REAL, REAL, REAL])
    kwargs = build_fn(c, device)
    kwargs["has_initial_state"] = None
    check_fn(kwargs, padding_rows(c))


@pytest.mark.parametrize("device", devices())
def test_fn_metadata_is_ignored(device):
    c = fn_config()
    kwargs = build_fn(c, device)
    kwargs["metadata"] = object()
    check_fn(kwargs, padding_rows(c))


# --- bad input -------------------------------------------------------------------------


def rejected(call, kwargs, exc, words):
    states = kwargs.get("conv_state", kwargs.get("conv_states"))
    before = states.clone()
    with pytest.raises(exc) as info:
        call(**kwargs)
    for word in words:
        assert word in str(info.value), f"{word!r} not in {info.value!r}"
    assert torch.equal(states, before), "a rejected call modified the cache"


UPDATE_REJECTIONS = [
    (
        "accepted-dtype",
        lambda k: k.update(num_accepted_tokens=k["num_accepted_tokens"].float()),
        TypeError,
        ["num_accepted_tokens", "int32 or int64"],
    ),
    (
        "accepted-short",
        lambda k: k.update(num_accepted_tokens=k["num_accepted_tokens"][:2]),
        ValueError,
        ["num_accepted_tokens", "(6,)"],
    ),
    (
        "accepted-2d",
        lambda k: k.update(num_accepted_tokens=k["num_accepted_tokens"][:, None]),
        ValueError,
        ["num_accepted_tokens"],
    ),
    (
        "qsl-dtype",
        lambda k: k.update(query_start_loc=k["query_start_loc"].float()),
        TypeError,
        ["query_start_loc"],
    ),
    (
        "qsl-2d",
        lambda k: k.update(query_start_loc=k["query_start_loc"][None]),
        ValueError,
        ["query_start_loc"],
    ),
    ("varlen-3d-x", lambda k: k.update(x=k["x"][None]), ValueError, ["x", "num_tokens"]),
    ("max-len-type", lambda k: k.update(max_query_len=2.0), TypeError, ["max_query_len"]),
    ("max-len-missing", lambda k: k.update(max_query_len=-1), ValueError, ["max_query_len"]),
    ("state-too-short", lambda k: k.update(max_query_len=9), ValueError, ["conv_state", "columns"]),
    (
        "indices-short",
        lambda k: k.update(conv_state_indices=k["conv_state_indices"][:3]),
        ValueError,
        ["conv_state_indices", "(6,)"],
    ),
    ("null-type", lambda k: k.update(null_block_id="0"), TypeError, ["null_block_id"]),
    ("out-shape", lambda k: k.update(out=k["x"][:-1]), ValueError, ["out"]),
    (
        "validated-accepted",
        lambda k: k["num_accepted_tokens"].__setitem__(1, 5),
        ValueError,
        ["num_accepted_tokens", "[1, 4]"],
    ),
    (
        "validated-accepted-0",
        lambda k: k["num_accepted_tokens"].__setitem__(0, 0),
        ValueError,
        ["num_accepted_tokens"],
    ),
    (
        "validated-long-row",
        lambda k: k.update(max_query_len=3),
        ValueError,
        ["query_start_loc", "max_query_len=3"],
    ),
    (
        "validated-qsl-order",
        lambda k: k["query_start_loc"].__setitem__(2, 0),
        ValueError,
        ["query_start_loc"],
    ),
    (
        "validated-qsl-end",
        lambda k: k["query_start_loc"].__setitem__(6, 10_000),
        ValueError,
        ["query_start_loc"],
    ),
    (
        "validated-index",
        lambda k: k["conv_state_indices"].__setitem__(3, 99),
        ValueError,
        ["conv_state_indices", "99"],
    ),
]


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize(
    "mutate,exc,words", [r[1:] for r in UPDATE_REJECTIONS], ids=[r[0] for r in UPDATE_REJECTIONS]
)
def test_update_rejects(device, mutate, exc, words, request, monkeypatch):
    """Every rejection once without validate_data (the op's checks, relabelled) and once with
    it (the Python checks first). The "validated" cases are value checks: they run under
    CAUSAL_CONV1D_VALIDATE=1 (set here as the import would read it), never for
    validate_data=True alone (test_validate_data_never_reads_values)."""
    build = lambda: build_update(update_config(), device)  # noqa: E731
    rejected_either_way(vllm.causal_conv1d_update, build, mutate, exc, words, request, monkeypatch)


def rejected_either_way(call, build, mutate, exc, words, request, monkeypatch):
    if "validated" in request.node.callspec.id:
        monkeypatch.setattr(_core, "_VALIDATE_FROM_ENV", True)
    for validate_data in (False, True):
        kwargs = build()
        mutate(kwargs)
        kwargs["validate_data"] = validate_data
        rejected(call, kwargs, exc, words)


FN_REJECTIONS = [
    (
        "indices-short",
        lambda k: k.update(cache_indices=k["cache_indices"][:3]),
        ValueError,
        ["cache_indices", "(8,)"],
    ),
    (
        "init-short",
        lambda k: k.update(has_initial_state=k["has_initial_state"][:3]),
        ValueError,
        ["has_initial_state", "(8,)"],
    ),
    (
        "init-dtype",
        lambda k: k.update(has_initial_state=k["has_initial_state"].int()),
        TypeError,
        ["has_initial_state", "bool"],
    ),
    ("null-type", lambda k: k.update(null_block_id=0.0), TypeError, ["null_block_id"]),
    (
        "validated-index",
        lambda k: k["cache_indices"].__setitem__(0, 50),
        ValueError,
        ["cache_indices", "50"],
    ),
    (
        "validated-qsl",
        lambda k: k["query_start_loc"].__setitem__(3, 0),
        ValueError,
        ["query_start_loc"],
    ),
]


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize(
    "mutate,exc,words", [r[1:] for r in FN_REJECTIONS], ids=[r[0] for r in FN_REJECTIONS]
)
def test_fn_rejects(device, mutate, exc, words, request, monkeypatch):
    """As test_update_rejects, for the prefill."""
    build = lambda: build_fn(fn_config(), device)  # noqa: E731
    rejected_either_way(vllm.causal_conv1d_fn, build, mutate, exc, words, request, monkeypatch)


@pytest.mark.parametrize("device", devices())
def test_validated_call_accepts_null_and_pad_ids(device, monkeypatch):
    """The value checks (CAUSAL_CONV1D_VALIDATE=1) pass vLLM's pad slot and null block."""
    monkeypatch.setattr(_core, "_VALIDATE_FROM_ENV", True)
    c = update_config(validate=True)
    check_update(build_update(c, device), padding_rows(c))
    c = fn_config(validate=True)
    check_fn(build_fn(c, device), padding_rows(c))


class HostReads(TorchDispatchMode):
    """Fails any op that hands a tensor value to the host (item(), bool(), int() of a tensor,
    torch.equal): what a CUDA graph capture forbids and torch.compile(fullgraph=True) cannot
    trace."""

    READS = ("aten::_local_scalar_dense", "aten::item", "aten::is_nonzero", "aten::equal")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func._schema.name in self.READS:
            raise AssertionError(f"host read of a tensor value: {func._schema.name}")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("device", devices())
def test_validate_data_never_reads_values(device):
    """validate_data=True is vLLM's: shape, stride, dtype and length checks only. Calls with
    it run under HostReads, values that the value checks would refuse included (they are
    padding or clamped, as without it); the core API's validate=True under the same mode is
    caught (the mode sees what the value checks do)."""
    kwargs = build_update(update_config(), device)
    kwargs["num_accepted_tokens"][1] = 99  # clamped into [1, Lmax]
    kwargs["conv_state_indices"][3] = 10**6  # outside the cache: padding
    kwargs["validate_data"] = True
    f = build_fn(fn_config(), device)
    f["cache_indices"][0] = -7
    f["validate_data"] = True
    plain = build_update(update_config(mode="2d", spec=False), device)
    plain["validate_data"] = True
    with HostReads():
        vllm.causal_conv1d_update(**kwargs)
        vllm.causal_conv1d_update(**plain)
        vllm.causal_conv1d_fn(**f)
    core = build_update(update_config(mode="2d", spec=False), device)
    with HostReads(), pytest.raises(AssertionError, match="host read"):
        ck.causal_conv1d_update(
            core["x"],
            core["conv_state"],
            core["weight"],
            core["bias"],
            conv_state_indices=core["conv_state_indices"],
            validate=True,
        )


class ValidatedDecode(torch.nn.Module):
    """vLLM 0.33's Qwen3-Next non-speculative decode: in place, validate_data=True."""

    def forward(self, x, state, weight, bias, lines):
        return vllm.causal_conv1d_update(
            x, state, weight, bias, "silu", conv_state_indices=lines, validate_data=True
        )


class ValidatedPrefill(torch.nn.Module):
    def forward(self, x, weight, bias, states, qsl, lines, init):
        return vllm.causal_conv1d_fn(
            x, weight, bias, states, qsl, lines, init, "silu", validate_data=True
        )


@pytest.mark.parametrize("device", devices())
def test_validate_data_compiles_fullgraph(device):
    """torch.compile(fullgraph=True) of validate_data=True calls: no data-dependent guard
    (the value checks are skipped while tracing), the same outputs and cache as eager."""
    torch._dynamo.reset()
    c = update_config(mode="2d", spec=False, mix=(torch.float32,) * 3)
    k = build_update(c, device)
    args = [k["x"], k["conv_state"], k["weight"], k["bias"], k["conv_state_indices"]]
    eager_args = [a.clone() for a in args]
    expected = ValidatedDecode()(*eager_args)
    got = torch.compile(ValidatedDecode(), fullgraph=True, backend="aot_eager")(*args)
    assert torch.equal(got, expected)
    assert torch.equal(args[1], eager_args[1])
    f = build_fn(fn_config(mix=(torch.float32,) * 3), device)
    fargs = [f[n] for n in ("x", "weight", "bias", "conv_states", "query_start_loc")]
    fargs += [f["cache_indices"], f["has_initial_state"]]
    eager_fargs = [a.clone() for a in fargs]
    expected = ValidatedPrefill()(*eager_fargs)
    got = torch.compile(ValidatedPrefill(), fullgraph=True, backend="aot_eager")(*fargs)
    assert torch.equal(got, expected)
    assert torch.equal(fargs[3], eager_fargs[3])


def guarded(t, lead=2):
    """t's values inside a larger buffer: `lead` slabs of sentinels before and after along
    dim 0, which no call may change."""
    big = torch.randn((t.shape[0] + 2 * lead, *t.shape[1:]), dtype=t.dtype, device=t.device)
    inner = big[lead : lead + t.shape[0]]
    inner.copy_(t)
    return big, inner


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize(
    "accepted", [[-5, 0, 5, 1000, -(2**31), 2**31 - 1], [1, 2, 3, 4, 4, 4]], ids=["wild", "ok"]
)
@pytest.mark.parametrize(
    "starts",
    [[0, 4, 2, 9, 8, 12, 14], [-7, 4, 4, 30, 99, 10**9, -1], [0, 4, 4, 7, 8, 12, 14]],
    ids=["decreasing", "outside", "ok"],
)
@pytest.mark.parametrize("index_2d", [False, True], ids=["indices-1d", "block-table"])
def test_update_hostile_values_stay_inside(device, accepted, starts, index_2d):
    """Without validation, any num_accepted_tokens and query_start_loc: no access outside the
    tensors (sentinels around the cache, x and out stay as they were), lines no row names
    untouched; in-range accepted counts clamp as the reference does."""
    c = update_config(batch=6, extra=0, tail_tokens=0, index_2d=index_2d)
    kwargs = build_update(c, device)
    kwargs["num_accepted_tokens"] = torch.tensor(accepted, dtype=torch.int32, device=device)
    kwargs["query_start_loc"] = torch.tensor(starts, dtype=torch.int64, device=device)
    big_state, kwargs["conv_state"] = guarded(kwargs["conv_state"])
    big_x, kwargs["x"] = guarded(kwargs["x"])
    big_out, kwargs["out"] = guarded(torch.randn_like(kwargs["x"]))
    before = [t.clone() for t in (big_state, big_x, big_out)]
    vllm.causal_conv1d_update(**kwargs)
    if device == "cuda":
        torch.cuda.synchronize()
    for big, old in zip((big_state, big_x, big_out), before):
        assert torch.equal(big[:2], old[:2]) and torch.equal(big[-2:], old[-2:]), "sentinel hit"
    assert torch.equal(big_x, before[1]), "x changed"
    indices = kwargs["conv_state_indices"]
    used = {int(v) for v in (indices[:, 0] if index_2d else indices)[:6].tolist()}
    for line in range(c["num_lines"]):
        if line not in used:
            assert torch.equal(big_state[2 + line], before[0][2 + line])
    if starts == [0, 4, 4, 7, 8, 12, 14] and accepted[0] == 1:  # well-formed: exact semantics
        kwargs.pop("out")
        check_update(kwargs, padding_rows(c))


@pytest.mark.parametrize("device", devices())
def test_update_hostile_block_table_is_padding(device):
    """A 2-D block table (vLLM's Mamba layers) whose column 0 holds lines outside the cache
    (negative, past the end, 2^31-1) and whose other columns hold anything: those rows are
    padding (zero output), no access outside the cache, the other columns never read."""
    c = update_config(mode="2d", spec=False, kinds=[REAL] * 6, extra=0, index_2d=True)
    kwargs = build_update(c, device)
    table = kwargs["conv_state_indices"]
    table[[1, 3, 4], 0] = torch.tensor([-3, 10**6, 2**31 - 1], dtype=table.dtype, device=device)
    table[:, 1:] = -(2**31)
    big, kwargs["conv_state"] = guarded(kwargs["conv_state"])
    before = big.clone()
    out = vllm.causal_conv1d_update(**kwargs)
    assert torch.equal(big[:2], before[:2]) and torch.equal(big[-2:], before[-2:])
    for b in (1, 3, 4):
        assert torch.equal(out[b], torch.zeros_like(out[b]))
    used = {int(v) for v in table[:, 0].tolist()}
    for line in range(c["num_lines"]):
        if line not in used:
            assert torch.equal(big[2 + line], before[2 + line])


def test_update_rejects_3d_indices():
    kwargs = build_update(update_config(mode="2d", spec=False), "cpu")
    kwargs["conv_state_indices"] = kwargs["conv_state_indices"][:, None, None]
    rejected(vllm.causal_conv1d_update, kwargs, ValueError, ["conv_state_indices"])


@pytest.mark.parametrize("device", devices())
def test_fn_hostile_indices_are_padding(device):
    c = fn_config(kinds=[REAL] * 8)
    kwargs = build_fn(c, device)
    kwargs["cache_indices"][[1, 3]] = torch.tensor([-3, 10**6], dtype=torch.int32, device=device)
    big, kwargs["conv_states"] = guarded(kwargs["conv_states"])
    before = big.clone()
    out = vllm.causal_conv1d_fn(**kwargs)
    bounds = kwargs["query_start_loc"].tolist()
    assert torch.equal(
        out[:, bounds[3] : bounds[4]], torch.zeros_like(out[:, bounds[3] : bounds[4]])
    )
    assert torch.equal(big[:2], before[:2]) and torch.equal(big[-2:], before[-2:])


@pytest.mark.parametrize("device", devices())
def test_nonfinite_values_propagate(device):
    c = update_config(kinds=[REAL] * 6)
    kwargs = build_update(c, device)
    kwargs["x"][1, :3] = float("nan")
    kwargs["x"][2, 3:6] = float("inf")
    kwargs["conv_state"][int(kwargs["conv_state_indices"][3]), :2] = float("-inf")
    check_update(kwargs, [])


# --- registration ----------------------------------------------------------------------


def update_op_args(kwargs):
    return (
        kwargs["x"],
        kwargs["conv_state"],
        kwargs["weight"],
        kwargs["bias"],
        True,
        None,
        kwargs["conv_state_indices"],
        -1,
        torch.empty_like(kwargs["x"]),
        kwargs.get("num_accepted_tokens"),
        kwargs.get("query_start_loc"),
        kwargs.get("max_query_len", -1),
        0,
        True,
    )


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("mode", MODES, ids=mode_id)
def test_opcheck_update(device, mode):
    kwargs = build_update(update_config(mode=mode[0], spec=mode[1]), device)
    torch.library.opcheck(
        torch.ops.causal_conv1d.causal_conv1d_update.default, update_op_args(kwargs)
    )


@pytest.mark.parametrize("device", devices())
def test_opcheck_fwd_front_window(device):
    k = build_fn(fn_config(), device)
    args = (
        k["x"],
        k["weight"],
        k["bias"],
        k["conv_states"],
        k["query_start_loc"],
        k["cache_indices"],
        k["has_initial_state"],
        True,
        -1,
        0,
        True,
    )
    torch.library.opcheck(torch.ops.causal_conv1d.causal_conv1d_fwd.default, args)


class VllmLayer(torch.nn.Module):
    """A gated-DeltaNet conv as vLLM runs it: prefill, then a speculative varlen decode."""

    def forward(self, x, weight, bias, states, qsl, lines, init, tokens, dqsl, accepted):
        y = vllm.causal_conv1d_fn(x, weight, bias, states, qsl, lines, init)
        z = vllm.causal_conv1d_update(
            tokens, states, weight, bias, "silu", lines, accepted, dqsl, 4
        )
        return y * 2, z + 1


@pytest.mark.parametrize("device", devices())
def test_torch_compile_fullgraph(device):
    torch._dynamo.reset()
    k = build_fn(fn_config(extra_state=3, mix=(torch.float32,) * 3), device)
    tokens = torch.randn(8 * 4, k["x"].shape[0], device=device)
    dqsl = torch.arange(0, 33, 4, dtype=torch.int32, device=device)
    accepted = torch.randint(1, 5, (10,), dtype=torch.int32, device=device)
    args = [
        k["x"],
        k["weight"],
        k["bias"],
        k["conv_states"],
        k["query_start_loc"],
        k["cache_indices"],
        k["has_initial_state"],
        tokens,
        dqsl,
        accepted,
    ]
    eager_args = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    eager = VllmLayer()(*eager_args)
    compiled = torch.compile(VllmLayer(), fullgraph=True, backend="aot_eager")(*args)
    assert_close(compiled[0], eager[0])
    assert_close(compiled[1], eager[1])
    assert torch.equal(args[3], eager_args[3]), "the compiled call must update the cache"


def test_core_api_accepts_longer_index_buffers():
    """The seed's API takes engine buffers too; entries past the batch are never read."""
    from helpers import update_case

    kwargs, pads = update_case(4, (torch.float32,) * 3, "cpu")
    from causal_conv1d_kernels.testing.reference import causal_conv1d_update_ref

    expected, expected_state = causal_conv1d_update_ref(**kwargs)
    kwargs["conv_state_indices"] = torch.cat(
        [kwargs["conv_state_indices"], torch.tensor([10**6, -7])]
    )
    out = ck.causal_conv1d_update(**kwargs)
    assert_close(out, expected)
    assert torch.equal(kwargs["conv_state"], expected_state)


def test_op_checks_vllm_arguments():
    """The C++ op's checks of the vLLM arguments."""
    k = build_update(update_config(), "cpu")
    op = torch.ops.causal_conv1d.causal_conv1d_update
    args = list(update_op_args(k))
    for index, bad, words in [
        (9, k["num_accepted_tokens"][:2], r"num_accepted_tokens must have shape \(6,\)"),
        (9, k["num_accepted_tokens"].float(), "num_accepted_tokens must be int32 or int64"),
        (10, k["query_start_loc"][None], "query_start_loc must have shape"),
        (11, 9, r"with num_accepted_tokens, conv_state needs .* = 11 columns"),
        (11, 0, "num_accepted_tokens with query_start_loc needs max_query_len >= 1"),
        (0, k["x"][None], r"x must have shape \(num_tokens, dim\) with query_start_loc"),
    ]:
        bad_args = list(args)
        bad_args[index] = bad
        if index == 0:
            bad_args[8] = torch.empty_like(bad)
        with pytest.raises((ValueError, TypeError), match=f"causal_conv1d_update: {words}"):
            op(*bad_args)
    bad_args = list(args)
    bad_args[5] = torch.zeros(6, dtype=torch.int64)  # ring buffers with varlen rows
    with pytest.raises(ValueError, match="cache_seqlens .* cannot be combined"):
        op(*bad_args)


def load_vllm_peer():
    """vLLM 0.33's Triton kernels (../shared/peers beside the checkout, or .peers/ inside it)."""
    import os
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for where in (os.path.join(root, "..", "shared", "peers"), os.path.join(root, ".peers")):
        if os.path.exists(os.path.join(where, "vllm_triton_0_33.py")):
            sys.path.insert(0, where)
            try:
                import vllm_triton_0_33

                return vllm_triton_0_33
            except Exception:  # noqa: BLE001 (no triton: skip)
                return None
    return None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("width", [2, 3, 4])
@pytest.mark.parametrize("mode", MODES, ids=mode_id)
def test_cuda_agrees_with_vllm_0_33(width, mode):
    """Semantics beside the peer itself (fp32 everywhere, so that vLLM's cast of x to the state
    dtype changes nothing): same cache bit for bit, same outputs on non-padding rows. Rows of
    vLLM's varlen plain mode are skipped: 0.33 only uses varlen with num_accepted_tokens."""
    peer = load_vllm_peer()
    if peer is None or not ck.has_cuda_backend():
        pytest.skip("needs vLLM 0.33's Triton peer and the CUDA backend")
    if mode == ("varlen", False):
        pytest.skip("vLLM 0.33 has no plain varlen decode")
    c = update_config(
        width=width,
        mode=mode[0],
        spec=mode[1],
        mix=(torch.float32,) * 3,
        extra_state=0,
        kinds=[REAL, REAL, NULL, REAL, REAL, REAL],
        tail_tokens=0,
        batch=6,
        extra=0,
    )
    ours = build_update(c, "cuda")
    theirs = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in ours.items()}
    theirs.pop("validate_data")
    vllm.causal_conv1d_update(**ours)
    peer.causal_conv1d_update(**theirs)
    torch.cuda.synchronize()
    assert torch.equal(ours["conv_state"], theirs["conv_state"])
    keep = torch.ones(ours["x"].shape[0], dtype=torch.bool, device="cuda")
    if mode[0] == "varlen":
        q = ours["query_start_loc"].tolist()
        keep[q[2] : q[3]] = False
    else:
        keep[2] = False
    assert_close(ours["x"][keep], theirs["x"][keep])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("width", [2, 3, 4])
def test_cuda_fn_agrees_with_vllm_0_33(width):
    peer = load_vllm_peer()
    if peer is None or not ck.has_cuda_backend():
        pytest.skip("needs vLLM 0.33's Triton peer and the CUDA backend")
    c = fn_config(width=width, mix=(torch.float32,) * 3, kinds=[REAL, REAL, NULL] + [REAL] * 5)
    ours = build_fn(c, "cuda")
    theirs = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in ours.items()}
    out = vllm.causal_conv1d_fn(**ours)
    peer_out = peer.causal_conv1d_fn(**theirs)
    torch.cuda.synchronize()
    assert torch.equal(ours["conv_states"], theirs["conv_states"])
    q = ours["query_start_loc"].tolist()
    for i in range(len(q) - 1):
        if i not in padding_rows(c):
            assert_close(out[:, q[i] : q[i + 1]], peer_out[:, q[i] : q[i + 1]])


@pytest.mark.skipif(
    not (torch.cuda.is_available() and ck.has_cuda_backend()), reason="needs a GPU and CUDA"
)
@pytest.mark.parametrize(
    "moved", ["num_accepted_tokens", "query_start_loc", "conv_state_indices", "conv_state", "out"]
)
def test_update_mixed_cpu_cuda_devices_rejected(moved):
    """Each tensor argument of the dialect left on the CPU in a CUDA call: a ValueError
    naming it, the cache untouched."""
    kwargs = build_update(update_config(out="buffer"), "cuda")
    kwargs[moved] = kwargs[moved].cpu()
    rejected(vllm.causal_conv1d_update, kwargs, ValueError, [moved, "device"])


@pytest.mark.skipif(
    not (torch.cuda.is_available() and ck.has_cuda_backend()), reason="needs a GPU and CUDA"
)
@pytest.mark.parametrize("moved", ["cache_indices", "has_initial_state", "conv_states"])
def test_fn_mixed_cpu_cuda_devices_rejected(moved):
    kwargs = build_fn(fn_config(), "cuda")
    kwargs[moved] = kwargs[moved].cpu()
    rejected(vllm.causal_conv1d_fn, kwargs, ValueError, [moved, "device"])
