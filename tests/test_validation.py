"""Bad input (CONTRACT 2): each rejection raises the documented exception naming the argument,
before any cache is modified."""

import os
import subprocess
import sys

import pytest
import torch
from causal_conv1d_kernels import causal_conv1d_fn, causal_conv1d_update
from helpers import (
    F32,
    HANG_GUARD_S,
    check_rejected,
    fwd_case,
    fwd_op_args,
    update_case,
    update_op_args,
)


def other_view_of(x):
    """x's memory seen with other strides (a dense 2-D x, transposed in place)."""
    strides = (1, x.shape[0]) if x.is_contiguous() else (x.shape[1], 1)
    return x.as_strided(x.shape, strides)


def fwd_kwargs():
    kwargs, _ = fwd_case(4, (F32, F32, F32), lengths=[3, 5, 0, 2], num_lines=6)
    return kwargs


def update_kwargs():
    kwargs, _ = update_case(4, (F32, F32, F32), seqlen=2, circular=True, batch=4, num_lines=6)
    return kwargs


def meta_like(t):
    return torch.empty_like(t, device="meta")


def validated_with(name, position, value):
    """A mutation that puts `value` at `position` of index tensor `name` and asks for validation."""

    def mutate(kwargs):
        kwargs[name][position] = value
        kwargs["validate"] = True

    return mutate


# (id, mutation of the kwargs, exception, words the message must contain)
FWD_ERRORS = [
    ("x-not-tensor", lambda k: k.update(x=k["x"].tolist()), TypeError, ["x", "Tensor"]),
    ("x-int", lambda k: k.update(x=k["x"].to(torch.int32)), TypeError, ["x", "int32"]),
    ("x-3d", lambda k: k.update(x=k["x"][None]), ValueError, ["x", "(dim, num_tokens)"]),
    ("weight-dim", lambda k: k.update(weight=k["weight"][:5]), ValueError, ["weight", "dim=80"]),
    ("weight-1d", lambda k: k.update(weight=k["weight"][:, 0]), ValueError, ["weight"]),
    ("width-9", lambda k: k.update(weight=torch.randn(80, 9)), ValueError, ["width", "9"]),
    ("width-1", lambda k: k.update(weight=torch.randn(80, 1)), ValueError, ["width", "1"]),
    ("weight-int", lambda k: k.update(weight=k["weight"].long()), TypeError, ["weight", "int64"]),
    (
        "weight-device",
        lambda k: k.update(weight=meta_like(k["weight"])),
        ValueError,
        ["weight", "device"],
    ),
    ("bias-shape", lambda k: k.update(bias=torch.randn(81)), ValueError, ["bias", "(80,)"]),
    (
        "bias-dtype",
        lambda k: k.update(bias=torch.randn(80).double()),
        TypeError,
        ["bias", "float64"],
    ),
    (
        "states-short",
        lambda k: k.update(conv_states=torch.randn(6, 80, 2)),
        ValueError,
        ["conv_states", "state_len >= 3"],
    ),
    (
        "states-dim",
        lambda k: k.update(conv_states=torch.randn(6, 79, 3)),
        ValueError,
        ["conv_states", "dim=80"],
    ),
    (
        "states-dtype",
        lambda k: k.update(conv_states=torch.randn(6, 80, 3).double()),
        TypeError,
        ["conv_states"],
    ),
    (
        "states-device",
        lambda k: k.update(conv_states=meta_like(k["conv_states"])),
        ValueError,
        ["conv_states", "device"],
    ),
    (
        "qsl-float",
        lambda k: k.update(query_start_loc=k["query_start_loc"].float()),
        TypeError,
        ["query_start_loc", "int32 or int64"],
    ),
    (
        "qsl-2d",
        lambda k: k.update(query_start_loc=k["query_start_loc"][None]),
        ValueError,
        ["query_start_loc", "(batch + 1,)"],
    ),
    (
        "qsl-empty",
        lambda k: k.update(query_start_loc=k["query_start_loc"][:0]),
        ValueError,
        ["query_start_loc"],
    ),
    (
        "indices-size",
        lambda k: k.update(cache_indices=k["cache_indices"][:2]),
        ValueError,
        ["cache_indices", "(4,)"],
    ),
    (
        "indices-float",
        lambda k: k.update(cache_indices=k["cache_indices"].float()),
        TypeError,
        ["cache_indices", "int32 or int64"],
    ),
    (
        "indices-bool",
        lambda k: k.update(cache_indices=k["cache_indices"] > 0),
        TypeError,
        ["cache_indices", "bool"],
    ),
    (
        "init-int",
        lambda k: k.update(has_initial_state=k["has_initial_state"].int()),
        TypeError,
        ["has_initial_state", "bool"],
    ),
    (
        "init-size",
        lambda k: k.update(has_initial_state=k["has_initial_state"][:3]),
        ValueError,
        ["has_initial_state", "(4,)"],
    ),
    (
        "init-without-cache",
        lambda k: k.update(conv_states=None, cache_indices=None),
        ValueError,
        ["has_initial_state", "conv_states"],
    ),
    ("activation", lambda k: k.update(activation="relu"), ValueError, ["activation", "relu"]),
    ("pad-slot-id", lambda k: k.update(pad_slot_id=-1.0), TypeError, ["pad_slot_id", "int"]),
    (
        "out-shape",
        lambda k: k.update(out=torch.empty(80, 9)),
        ValueError,
        ["out", "shape"],
    ),
    (
        "out-dtype",
        lambda k: k.update(out=torch.empty_like(k["x"], dtype=torch.float16)),
        ValueError,
        ["out", "dtype"],
    ),
    (
        "out-overlaps-x",
        lambda k: k.update(out=other_view_of(k["x"])),
        ValueError,
        ["out may be x itself"],
    ),
    # value checks, run because validate=True
    (
        "qsl-end",
        lambda k: k.update(validate=True, query_start_loc=k["query_start_loc"] - 1),
        ValueError,
        ["query_start_loc", "num_tokens=10"],
    ),
    (
        "qsl-decreasing",
        validated_with("query_start_loc", 2, 1),
        ValueError,
        ["query_start_loc", "never decrease"],
    ),
    (
        "index-too-big",
        validated_with("cache_indices", 0, 6),
        ValueError,
        ["cache_indices", "[0, 6)", "6"],
    ),
    ("index-negative", validated_with("cache_indices", 1, -3), ValueError, ["cache_indices", "-3"]),
    (
        "too-few-lines",
        lambda k: k.update(validate=True, cache_indices=None, conv_states=k["conv_states"][:2]),
        ValueError,
        ["conv_states", "(>= 4)"],
    ),
]

UPDATE_ERRORS = [
    ("x-4d", lambda k: k.update(x=k["x"][None]), ValueError, ["x", "(batch, dim)"]),
    ("x-1d", lambda k: k.update(x=k["x"][0, :, 0]), ValueError, ["x"]),
    ("x-bool", lambda k: k.update(x=k["x"] > 0), TypeError, ["x", "bool"]),
    ("state-2d", lambda k: k.update(conv_state=k["conv_state"][0]), ValueError, ["conv_state"]),
    (
        "state-short",
        lambda k: k.update(conv_state=torch.randn(6, 72, 2)),
        ValueError,
        ["conv_state", "state_len >= 3"],
    ),
    (
        "state-device",
        lambda k: k.update(conv_state=meta_like(k["conv_state"])),
        ValueError,
        ["conv_state", "device"],
    ),
    ("weight-dim", lambda k: k.update(weight=torch.randn(71, 4)), ValueError, ["weight", "dim=72"]),
    ("width-10", lambda k: k.update(weight=torch.randn(72, 10)), ValueError, ["width", "10"]),
    ("bias-2d", lambda k: k.update(bias=torch.randn(72, 1)), ValueError, ["bias"]),
    (
        "seqlens-float",
        lambda k: k.update(cache_seqlens=k["cache_seqlens"].float()),
        TypeError,
        ["cache_seqlens"],
    ),
    (
        "seqlens-size",
        lambda k: k.update(cache_seqlens=k["cache_seqlens"][:1]),
        ValueError,
        ["cache_seqlens", "(4,)"],
    ),
    (
        "indices-size",
        lambda k: k.update(conv_state_indices=k["conv_state_indices"][:3]),
        ValueError,
        ["conv_state_indices", "(4,)"],
    ),
    (
        "indices-float",
        lambda k: k.update(conv_state_indices=k["conv_state_indices"].double()),
        TypeError,
        ["conv_state_indices"],
    ),
    (
        "too-few-lines",
        lambda k: k.update(conv_state_indices=None, conv_state=k["conv_state"][:3]),
        ValueError,
        ["conv_state", "(>= 4)"],
    ),
    ("out-shape", lambda k: k.update(out=torch.empty(4, 72)), ValueError, ["out", "shape"]),
    (
        "out-dtype",
        lambda k: k.update(out=torch.empty_like(k["x"], dtype=torch.float16)),
        ValueError,
        ["out", "dtype"],
    ),
    ("out-device", lambda k: k.update(out=meta_like(k["x"])), ValueError, ["out", "device"]),
    ("activation", lambda k: k.update(activation="gelu"), ValueError, ["activation", "gelu"]),
    ("pad-slot-id", lambda k: k.update(pad_slot_id=None), TypeError, ["pad_slot_id"]),
    (
        "index-too-big",
        validated_with("conv_state_indices", 2, 40),
        ValueError,
        ["conv_state_indices", "40"],
    ),
]


@pytest.mark.parametrize(
    "mutate,exc,words", [e[1:] for e in FWD_ERRORS], ids=[e[0] for e in FWD_ERRORS]
)
def test_fn_rejects(mutate, exc, words):
    check_rejected(causal_conv1d_fn, fwd_kwargs(), mutate, exc, ["causal_conv1d_fn", *words])


@pytest.mark.parametrize(
    "mutate,exc,words", [e[1:] for e in UPDATE_ERRORS], ids=[e[0] for e in UPDATE_ERRORS]
)
def test_update_rejects(mutate, exc, words):
    check_rejected(
        causal_conv1d_update, update_kwargs(), mutate, exc, ["causal_conv1d_update", *words]
    )


def test_validate_environment_variable():
    """CAUSAL_CONV1D_VALIDATE=1, set before the import (the wrappers read it once), turns the
    value checks on for every call."""
    script = (
        "import pytest, torch\n"
        "from causal_conv1d_kernels import causal_conv1d_fn, causal_conv1d_update\n"
        "from test_validation import fwd_kwargs, update_kwargs\n"
        "kwargs = fwd_kwargs()\n"
        "kwargs['cache_indices'][0] = 17\n"
        "with pytest.raises(ValueError, match='cache_indices'):\n"
        "    causal_conv1d_fn(**kwargs)\n"
        "kwargs = update_kwargs()\n"
        "kwargs['conv_state_indices'][0] = -5\n"
        "with pytest.raises(ValueError, match='conv_state_indices'):\n"
        "    causal_conv1d_update(**kwargs)\n"
        "print('rejected both')\n"
    )
    here = os.path.dirname(os.path.abspath(__file__))
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=dict(
            os.environ,
            CAUSAL_CONV1D_VALIDATE="1",
            PYTHONPATH=os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]),
        ),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert result.returncode == 0 and "rejected both" in result.stdout, result.stderr[-3000:]


def test_validate_accepts_good_input():
    causal_conv1d_fn(**fwd_kwargs(), validate=True)
    causal_conv1d_update(**update_kwargs(), validate=True)


# The C++ ops make the checks, for callers of torch.ops.causal_conv1d.* as for the dialects.
def test_op_checks_fwd():
    k = fwd_kwargs()
    args = list(fwd_op_args(k))
    op = torch.ops.causal_conv1d.causal_conv1d_fwd
    for index, bad, words in [
        (1, torch.randn(80, 9), r"weight width must be in \[2, 8\], got 9"),
        (3, torch.randn(6, 80, 1), r"conv_states must have shape .* got \(6, 80, 1\)"),
        (4, k["query_start_loc"].float(), "query_start_loc must be int32 or int64"),
        (5, k["cache_indices"][:1], r"cache_indices must have shape \(4,\) or be longer, got"),
        (6, k["has_initial_state"].int(), "has_initial_state must be bool"),
    ]:
        bad_args = list(args)
        bad_args[index] = bad
        with pytest.raises((ValueError, TypeError), match=f"causal_conv1d_fwd: {words}"):
            op(*bad_args)


@pytest.mark.parametrize("name", ["causal_conv1d_update", "causal_conv1d_update_step_out"])
def test_op_checks_update(name):
    """The full op and the plain step op (the same checks, reported as the full op's)."""
    k = update_kwargs()
    out = torch.empty_like(k["x"])
    args = list(update_op_args(k, out))
    op = getattr(torch.ops.causal_conv1d, name)
    for index, bad, words in [
        (2, torch.randn(72, 1), "weight width"),
        (1, torch.randn(6, 72, 2), r"conv_state must have shape .*state_len >= 3 = width-1"),
        (5, k["cache_seqlens"][:2], "cache_seqlens must have shape"),
        (8, torch.empty(4, 72, 3), r"out must have x's shape \(4, 72, 2\)"),
    ]:
        bad_args = list(args)
        bad_args[index] = bad
        with pytest.raises((ValueError, TypeError), match=f"causal_conv1d_update: {words}"):
            op(*bad_args)


def test_op_checks_update_step_into_a_new_output():
    """The functional step op (no out) checks as the full op does, before it writes."""
    k = update_kwargs()
    args = list(update_op_args(k, torch.empty_like(k["x"])))[:8]
    state = args[1].clone()
    for index, bad, words in [
        (2, torch.randn(72, 1), "weight width"),
        (1, torch.randn(6, 72, 2), r"conv_state must have shape .*state_len >= 3 = width-1"),
        (5, k["cache_seqlens"][:2], "cache_seqlens must have shape"),
        (0, k["x"].int(), "x must be"),
    ]:
        bad_args = list(args)
        bad_args[index] = bad
        with pytest.raises((ValueError, TypeError), match=f"causal_conv1d_update: {words}"):
            torch.ops.causal_conv1d.causal_conv1d_update_step(*bad_args)
    assert torch.equal(args[1], state)


def test_op_rejects_out_overlapping_x():
    """out may be x itself (SGLang's in-place prefill), never another view of x's memory."""
    k = fwd_kwargs()
    args = [*fwd_op_args(k), other_view_of(k["x"])]
    with pytest.raises(ValueError, match="causal_conv1d_fwd: out may be x itself"):
        torch.ops.causal_conv1d.causal_conv1d_fwd_out(*args)


# ---- The argument most likely wrong, when x, weight and the states disagree on dim ----

MISMATCHES = [
    # (id, call, mutation, words the message must hold, words it must not start with)
    (
        "fn-x-untransposed",
        "fn",
        lambda k: k.update(x=k["x"].t().contiguous()),  # (num_tokens, dim)
        ["x must have shape (dim, num_tokens) with dim=80", "(10, 80)", "x.t()"],
    ),
    (
        "fn-x-untransposed-no-cache",
        "fn",
        lambda k: k.update(
            x=k["x"].t().contiguous(), conv_states=None, cache_indices=None, has_initial_state=None
        ),
        ["x must have shape (dim, num_tokens) with dim=80", "x.t()"],
    ),
    (
        "fn-x-wrong-dim",
        "fn",
        lambda k: k.update(x=torch.randn(40, 10)),
        ["x must have shape (dim, num_tokens) with dim=80", "conv_states", "(40, 10)"],
    ),
    (
        "fn-weight-transposed",
        "fn",
        lambda k: k.update(weight=k["weight"].t().contiguous()),
        ["weight must have shape (dim=80, width)", "(4, 80)", "transposed"],
    ),
    (
        "update-x-wrong-dim",
        "update",
        lambda k: k.update(x=torch.randn(4, 70, 2)),
        ["x must have shape (batch, dim) or (batch, dim, seqlen) with dim=72", "(4, 70, 2)"],
    ),
    (
        "update-x-2d-wrong-dim",
        "update",
        lambda k: k.update(x=torch.randn(4, 9)),
        ["x must have shape", "dim=72", "conv_state", "(4, 9)"],
    ),
    (
        "update-weight-wrong-dim",
        "update",
        lambda k: k.update(weight=torch.randn(70, 4)),
        ["weight must have shape (dim=72, width)", "(70, 4)"],
    ),
]


@pytest.mark.parametrize(
    "call,mutate,words", [m[1:] for m in MISMATCHES], ids=[m[0] for m in MISMATCHES]
)
def test_dim_mismatch_names_the_likely_argument(call, mutate, words):
    """An untransposed prefill x, a decode x of the wrong dim: x is named, with the layout it
    must have, not weight (weight and the states agree); a transposed weight is named."""
    fn = causal_conv1d_fn if call == "fn" else causal_conv1d_update
    kwargs = fwd_kwargs() if call == "fn" else update_kwargs()
    check_rejected(fn, kwargs, mutate, ValueError, words)


def test_dim_mismatch_in_every_dialect():
    from causal_conv1d_kernels import dao, vllm

    k = fwd_kwargs()
    with pytest.raises(ValueError, match=r"x must have shape \(dim, num_tokens\) with dim=80"):
        vllm.causal_conv1d_fn(**{**k, "x": k["x"].t().contiguous()})
    u = update_kwargs()
    u.pop("cache_seqlens")
    with pytest.raises(ValueError, match=r"x must have shape .* with dim=72"):
        vllm.causal_conv1d_update(**{**u, "x": torch.randn(4, 70)})
    x = torch.randn(2, 64, 80)  # (batch, seqlen, dim), not transposed to (batch, dim, seqlen)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, dim, seqlen\) with dim=80"):
        dao.causal_conv1d_fn(x, torch.randn(80, 4))


# ---- No backward: refused where autograd would record the call ----


# (api module, op, the tensor made to require grad); vLLM's update has no cache_seqlens.
GRAD_CASES = [
    ("core", "fn", "x"),
    ("core", "fn", "weight"),
    ("core", "fn", "bias"),
    ("vllm", "fn", "x"),
    ("core", "update", "x"),
    ("core", "update", "weight"),
    ("vllm", "update", "x"),
    ("vllm", "update", "conv_state"),
    ("dao", "update", "weight"),
]


def grad_call(api_name, op, arg):
    """A call of the core, vLLM or Dao API with ``arg`` requiring grad."""
    import causal_conv1d_kernels as core
    from causal_conv1d_kernels import dao, vllm

    api = {"core": core, "vllm": vllm, "dao": dao}[api_name]
    k = fwd_kwargs() if op == "fn" else update_kwargs()
    if api_name == "vllm" and op == "update":
        k.pop("cache_seqlens")
    k[arg] = k[arg].detach().requires_grad_()
    fn = api.causal_conv1d_fn if op == "fn" else api.causal_conv1d_update
    return lambda: fn(**k)


@pytest.mark.parametrize("api_name,op,arg", GRAD_CASES, ids=["-".join(c) for c in GRAD_CASES])
def test_inputs_requiring_grad_are_refused_naming_dao(api_name, op, arg):
    """Never a silently missing gradient: with grad mode on, a call whose inputs require grad
    raises, naming the argument and the differentiable dialect, before touching the cache;
    under no_grad and inference_mode the same call runs."""
    call = grad_call(api_name, op, arg)
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert f"{arg} requires grad" in message and "causal_conv1d_kernels.dao" in message
    assert "no backward" in message
    with torch.no_grad():
        out = call()
    assert out.grad_fn is None  # (vLLM's in-place update returns x itself, a leaf)
    with torch.inference_mode():
        call()


def test_cache_untouched_when_grad_refused():
    k = fwd_kwargs()
    k["weight"].requires_grad_()
    before = k["conv_states"].clone()
    with pytest.raises(ValueError, match="weight requires grad"):
        causal_conv1d_fn(**k)
    assert torch.equal(k["conv_states"], before)
