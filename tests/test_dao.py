"""The Dao dialect (CONTRACT 1.5): causal_conv1d_kernels.dao against float64 references written
from the contract, forward and gradients, both layouts, seq_idx with padding, initial and final
states, widths 2-8, dtype mixes; determinism; the update and varlen-states functions; the opt-in
hook. The forward, gradient and short-row tests run on every device (CUDA where present)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys

import pytest
import torch
from causal_conv1d_kernels import dao
from causal_conv1d_kernels.testing.reference import causal_conv1d_update_ref, dao_fn_ref
from helpers import (
    BF16,
    F16,
    F32,
    HANG_GUARD_S,
    OP_TYPE_ERROR,
    WIDTHS,
    assert_close,
    devices,
    needs_cuda,
    rand,
)

# (x, weight/bias): Dao's own mixes, plus fp32 weights under half activations (training).
MIXES = [(F32, F32), (BF16, BF16), (F16, F16), (BF16, F32), (F16, F32)]
LAYOUTS = ["contiguous", "channel_last", "strided"]
# Gradient tolerances (atol, rtol) against float64 autograd, scaled by the gradient's size:
# fp32 to rounding, half dtypes as Dao's tests allow for their inputs' rounding.
GRAD_TOL = {F32: (1e-4, 1e-4), BF16: (3e-2, 3e-2), F16: (5e-3, 5e-3)}


def random_seq_idx(batch, seqlen, generator, padding=True):
    """Packed sequences per row (ids increasing), the tail of some rows padding (-1)."""
    rows = []
    for _ in range(batch):
        cuts = sorted(torch.randint(1, max(seqlen, 2), (3,), generator=generator).tolist())
        ids = torch.zeros(seqlen, dtype=torch.int32)
        for c in cuts:
            ids[c:] += 1
        if padding and seqlen > 2 and bool(torch.rand((), generator=generator) < 0.5):
            ids[seqlen - int(torch.randint(1, seqlen // 2 + 1, (), generator=generator)) :] = -1
        rows.append(ids)
    return torch.stack(rows)


def inputs(
    batch,
    dim,
    seqlen,
    width,
    mix,
    layout,
    *,
    bias=True,
    seq=False,
    init=False,
    seed=0,
    device="cpu",
):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x_dtype, w_dtype = mix
    x = rand((batch, dim, seqlen), x_dtype, device, layout)
    weight = (torch.randn(dim, width, dtype=w_dtype) / width**0.5).to(device)
    b = torch.randn(dim, dtype=w_dtype).to(device) if bias else None
    seq_idx = random_seq_idx(batch, seqlen, g).to(device) if seq else None
    initial = rand((batch, dim, width - 1), x_dtype, device, layout) if init else None
    return x, weight, b, seq_idx, initial


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("mix", MIXES, ids=lambda m: "-".join(str(d)[6:] for d in m))
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("seq,init", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("device", devices())
def test_forward_matches_reference(width, mix, layout, seq, init, device):
    x, weight, bias, seq_idx, initial = inputs(
        2, 24, 37, width, mix, layout, seq=seq, init=init, seed=width, device=device
    )
    want_final = not seq
    result = dao.causal_conv1d_fn(
        x, weight, bias, seq_idx, initial, return_final_states=want_final, activation="silu"
    )
    out, final = result if want_final else (result, None)
    ref_out, ref_final = dao_fn_ref(x, weight, bias, seq_idx, initial, "silu")
    assert out.shape == x.shape and out.stride() == x.stride() or layout == "strided"
    assert_close(out, ref_out.to(x.dtype))
    if seq:
        assert not out.masked_select((seq_idx < 0)[:, None, :]).any(), "padding is zero"
    if want_final:
        assert torch.equal(final, ref_final.to(x.dtype)), "final states must be exact copies"


@pytest.mark.parametrize("seqlen", [0, 1, 2, 3, 5])
@pytest.mark.parametrize("init", [False, True])
@pytest.mark.parametrize("device", devices())
def test_rows_shorter_than_the_window(seqlen, init, device):
    """Final states of rows shorter than width-1 take the initial states' last columns."""
    x, weight, bias, _, initial = inputs(
        3, 16, seqlen, 5, (F32, F32), "contiguous", init=init, device=device
    )
    out, final = dao.causal_conv1d_fn(x, weight, bias, None, initial, True, activation=None)
    ref_out, ref_final = dao_fn_ref(x, weight, bias, None, initial)
    assert_close(out, ref_out.float())
    assert torch.equal(final, ref_final.float())


def grads(fn, tensors, dout, dfinal):
    """Gradients of sum(out * dout) + sum(final * dfinal) w.r.t. tensors (None kept)."""
    out, final = fn()
    loss = (out.double() * dout.double()).sum()
    if dfinal is not None:
        loss = loss + (final.double() * dfinal.double()).sum()
    live = [t for t in tensors if t is not None]
    found = iter(torch.autograd.grad(loss, live))
    return [None if t is None else next(found) for t in tensors]


def check_gradients(x, weight, bias, seq_idx, initial, activation, with_final):
    leaves = [t.detach().requires_grad_() if t is not None else None for t in (x, weight, bias)]
    init_leaf = initial.detach().requires_grad_() if initial is not None else None
    ref_leaves = [
        t.detach().double().requires_grad_() if t is not None else None
        for t in (x, weight, bias, initial)
    ]
    dout = torch.randn(x.shape, dtype=x.dtype).to(x.device)
    dfinal = (
        torch.randn(x.shape[0], x.shape[1], weight.shape[1] - 1, dtype=x.dtype).to(x.device)
        if with_final
        else None
    )

    def ours():
        r = dao.causal_conv1d_fn(*leaves, seq_idx, init_leaf, with_final, activation=activation)
        return r if with_final else (r, None)

    def ref():
        return dao_fn_ref(*ref_leaves[:3], seq_idx, ref_leaves[3], activation)

    got = grads(ours, [*leaves, init_leaf], dout, dfinal)
    expected = grads(ref, ref_leaves, dout, dfinal)
    names = ["dx", "dweight", "dbias", "dinitial_states"]
    for name, a, e, t in zip(names, got, expected, [*leaves, init_leaf]):
        if t is None:
            assert a is None
            continue
        assert a.dtype == t.dtype and a.shape == t.shape, name
        atol, rtol = GRAD_TOL[t.dtype]
        scale = e.abs().max().item() + 1e-30
        torch.testing.assert_close(a.double(), e, atol=atol * scale, rtol=rtol, msg=name)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("mix", MIXES, ids=lambda m: "-".join(str(d)[6:] for d in m))
@pytest.mark.parametrize("layout", ["contiguous", "channel_last"])
@pytest.mark.parametrize("seq,init", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("device", devices())
def test_gradients_match_float64_autograd(width, mix, layout, seq, init, device):
    x, weight, bias, seq_idx, initial = inputs(
        2, 20, 45, width, mix, layout, seq=seq, init=init, seed=10 + width, device=device
    )
    check_gradients(x, weight, bias, seq_idx, initial, "silu", with_final=not seq)


@pytest.mark.parametrize("activation", [None, "silu"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("device", devices())
def test_gradients_without_activation_or_bias(activation, bias, device):
    x, weight, b, _, initial = inputs(
        3, 300, 150, 4, (F32, F32), "channel_last", bias=bias, init=True, device=device
    )
    check_gradients(x, weight, b, None, initial, activation, with_final=True)


@pytest.mark.parametrize("device", devices())
def test_gradients_of_long_rows_over_many_chunks_and_channel_slabs(device):
    """Rows over several backward chunks and more channels than one slab (CPU) or block
    (CUDA), sequences that start inside a chunk: the chunks' shares and the halo between
    chunks."""
    x, weight, bias, seq_idx, initial = inputs(
        2, 600, 333, 6, (F32, F32), "channel_last", seq=True, init=True, device=device
    )
    check_gradients(x, weight, bias, seq_idx, initial, "silu", with_final=False)


@pytest.mark.filterwarnings("ignore:Input #")
@pytest.mark.parametrize("device", devices())
def test_gradcheck_in_float32(device):
    """torch.autograd.gradcheck of the op against finite differences (the kernels compute in
    fp32, so fp32 inputs with matching tolerances)."""
    x, weight, bias, seq_idx, initial = inputs(
        1, 6, 9, 3, (F32, F32), "contiguous", seq=True, init=True, device=device
    )
    args = [t.detach().requires_grad_() for t in (x, weight, bias, initial)]

    def fn(x, weight, bias, initial):
        return dao.causal_conv1d_fn(x, weight, bias, seq_idx, initial, activation="silu")

    assert torch.autograd.gradcheck(fn, args, eps=1e-2, atol=2e-3, rtol=2e-3, fast_mode=True)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("layout", ["channel_last", "contiguous"])
def test_backward_is_deterministic_across_runs_and_thread_counts(device, layout):
    """The same bits run to run (CUDA: dweight/dbias shares summed in a fixed order, long rows
    so that many blocks contribute to each channel)."""
    x, weight, bias, seq_idx, initial = inputs(
        4,
        520,
        5000 if device == "cuda" else 300,
        4,
        (BF16, F32),
        layout,
        seq=True,
        init=True,
        device=device,
    )
    leaves = [t.detach().requires_grad_() for t in (x, weight, bias, initial)]
    dout = torch.randn(x.shape, dtype=x.dtype).to(device)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (threads, 1, threads):
            torch.set_num_threads(n)
            out = dao.causal_conv1d_fn(
                leaves[0], leaves[1], leaves[2], seq_idx, leaves[3], activation="silu"
            )
            results.append(torch.autograd.grad(out, leaves, dout))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@pytest.mark.parametrize("device", devices())
def test_final_states_out_is_written_and_returned(device):
    x, weight, bias, _, initial = inputs(
        2, 16, 20, 4, (BF16, BF16), "channel_last", init=True, device=device
    )
    buffer = torch.full((2, 16, 3), float("nan"), dtype=BF16, device=device)
    out, final = dao.causal_conv1d_fn(x, weight, bias, None, initial, True, buffer, "silu")
    assert final.data_ptr() == buffer.data_ptr()
    assert torch.equal(buffer, x[:, :, -3:])


@pytest.mark.parametrize(
    "change,exc,words",
    [
        (dict(x=torch.randn(4, 8)), ValueError, ["x", "(batch, dim, seqlen)"]),
        (dict(x=torch.randn(2, 8, 5).int()), TypeError, ["x", "float32"]),
        (dict(weight=torch.randn(8, 9)), ValueError, ["width", "[2, 8]"]),
        (dict(weight=torch.randn(7, 4)), ValueError, ["weight", "dim=8"]),
        (dict(bias=torch.randn(5)), ValueError, ["bias"]),
        (dict(seq_idx=torch.zeros(2, 5, dtype=torch.int64)), TypeError, ["seq_idx", "int32"]),
        (dict(seq_idx=torch.zeros(2, 4, dtype=torch.int32)), ValueError, ["seq_idx", "(2, 5)"]),
        (dict(initial_states=torch.randn(2, 8, 4)), ValueError, ["initial_states", "(2, 8, 3)"]),
        (dict(initial_states=torch.randn(2, 8, 3).half()), TypeError, ["initial_states", "dtype"]),
        (dict(activation="relu"), ValueError, ["activation", "relu"]),
        (
            dict(seq_idx=torch.zeros(2, 5, dtype=torch.int32), return_final_states=True),
            ValueError,
            ["return_final_states", "seq_idx"],
        ),
        (dict(final_states_out=torch.randn(2, 8, 3)), ValueError, ["final_states_out"]),
        (
            dict(final_states_out=torch.randn(2, 8, 2), return_final_states=True),
            ValueError,
            ["final_states_out", "(2, 8, 3)"],
        ),
    ],
)
def test_bad_arguments_are_named(change, exc, words):
    kwargs = dict(x=torch.randn(2, 8, 5), weight=torch.randn(8, 4), bias=torch.randn(8))
    kwargs.update(change)
    with pytest.raises(exc) as info:
        dao.causal_conv1d_fn(**kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_op_checks_repeat_the_wrapper_checks():
    """Callers of torch.ops.causal_conv1d.* get the refusals the dialect's callers get (a type
    error as OP_TYPE_ERROR: a stable-ABI build raises it as a marked ValueError)."""
    x, weight = torch.randn(2, 8, 5), torch.randn(8, 4)
    with pytest.raises(OP_TYPE_ERROR, match="seq_idx must be int32"):
        torch.ops.causal_conv1d.causal_conv1d_batch_fwd(
            x, weight, None, torch.zeros(2, 5, dtype=torch.int64), None, False, True
        )
    with pytest.raises(ValueError, match="dout must have x's shape"):
        torch.ops.causal_conv1d.causal_conv1d_batch_bwd(
            x, weight, None, None, None, torch.randn(2, 8, 4), None, True, False, False
        )
    with pytest.raises(ValueError, match="final states are not returned with seq_idx"):
        torch.ops.causal_conv1d.causal_conv1d_batch_fwd(
            x, weight, None, torch.zeros(2, 5, dtype=torch.int32), None, True, True
        )


@pytest.mark.parametrize("device", devices())
def test_non_finite_inputs_propagate_like_the_reference(device):
    x, weight, bias, _, initial = inputs(
        1, 8, 12, 4, (F32, F32), "contiguous", init=True, device=device
    )
    x[0, 2, 5] = float("nan")
    x[0, 3, 7] = float("inf")
    out = dao.causal_conv1d_fn(x, weight, bias, None, initial, activation="silu")
    ref, _ = dao_fn_ref(x, weight, bias, None, initial, "silu")
    assert_close(out, ref.float(), equal_nan=True)


@pytest.mark.parametrize("indices", [None, "shuffled", "padded"])
@pytest.mark.parametrize("circular", [False, True])
def test_update_follows_dao_rules(indices, circular):
    """Dao's update: a negative conv_state_indices entry is padding (output 0, no line
    touched); cache_seqlens makes the state a ring buffer."""
    g = torch.Generator().manual_seed(3)
    batch, dim, width, state_len, lines = 4, 32, 4, 6, 7
    x = torch.randn(batch, dim, 2, generator=g)
    state = torch.randn(lines, dim, state_len, generator=g)
    weight, bias = torch.randn(dim, width, generator=g), torch.randn(dim, generator=g)
    idx = None
    if indices is not None:
        idx = torch.randperm(lines, generator=g)[:batch].int()
        if indices == "padded":
            idx[1], idx[3] = -1, -7
    seqlens = torch.randint(0, 20, (batch,), generator=g, dtype=torch.int32) if circular else None
    ref_idx = None if idx is None else torch.where(idx < 0, -1, idx)
    expected, expected_state = causal_conv1d_update_ref(
        x, state, weight, bias, "silu", seqlens, ref_idx
    )
    out = dao.causal_conv1d_update(x, state, weight, bias, "silu", seqlens, idx)
    assert_close(out, expected)
    assert torch.equal(state, expected_state)
    if indices == "padded":
        assert not out[1].any() and not out[3].any()


@pytest.mark.parametrize(
    "seqlen, state_len, plain",
    [(1, 3, False), (1, 4, False), (1, 4, True), (3, 4, False), (4, 4, False), (6, 4, False)],
)
@pytest.mark.parametrize("dtype", [BF16, F32])
@pytest.mark.parametrize("device", devices())
def test_update_of_contiguous_state_lines(seqlen, state_len, plain, dtype, device):
    """Dao's state layout, each channel's state_len columns contiguous and channels one after
    another (the CPU shifts such a line as one block, and steps one token of width 4 with
    state_len 3 or 4 without staging): fewer, as many and more tokens than columns, with and
    without bias and SiLU, channels over several CPU work items, lines picked out of order;
    unused lines and the returned state compare bit-exactly."""
    batch, dim, width, lines = 3, 4200, 4, 5
    x = rand((batch, dim, seqlen), dtype, device)
    state = rand((lines, dim, state_len), dtype, device)
    weight = rand((dim, width), dtype, device)
    bias = None if plain else rand((dim,), dtype, device)
    activation = None if plain else "silu"
    idx = torch.tensor([3, 0, 4], dtype=torch.int32, device=device)
    expected, expected_state = causal_conv1d_update_ref(
        x, state, weight, bias, activation, None, idx
    )
    out = dao.causal_conv1d_update(x, state, weight, bias, activation, None, idx)
    assert_close(out, expected)
    assert torch.equal(state, expected_state)


@pytest.mark.parametrize("state_len", [1, 3, 8])
def test_varlen_states(state_len):
    g = torch.Generator().manual_seed(4)
    lengths = [5, 0, 1, 9, 2]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    x = torch.randn(int(cu[-1]), 12, generator=g, dtype=BF16)
    states = dao.causal_conv1d_varlen_states(x, cu, state_len)
    assert states.shape == (len(lengths), 12, state_len) and states.stride(1) == 1
    for i, n in enumerate(lengths):
        take = min(n, state_len)
        expected = torch.zeros(12, state_len, dtype=BF16)
        if take:
            expected[:, state_len - take :] = x[int(cu[i + 1]) - take : int(cu[i + 1])].t()
        assert torch.equal(states[i], expected)


@pytest.mark.parametrize("device", devices())
def test_opcheck_with_autograd(device):
    x, weight, bias, seq_idx, initial = inputs(
        2, 16, 11, 4, (F32, F32), "channel_last", seq=True, init=True, device=device
    )
    args = [t.requires_grad_() for t in (x, weight, bias)] + [seq_idx, initial.requires_grad_()]
    torch.library.opcheck(
        torch.ops.causal_conv1d.causal_conv1d_batch_fwd.default, (*args, False, True)
    )
    x, weight, bias, _, initial = inputs(
        2, 16, 11, 5, (BF16, F32), "contiguous", init=True, device=device
    )
    args = [t.requires_grad_() for t in (x, weight, bias)] + [None, initial.requires_grad_()]
    torch.library.opcheck(
        torch.ops.causal_conv1d.causal_conv1d_batch_fwd.default, (*args, True, True)
    )
    dout = torch.randn(x.shape, dtype=x.dtype).to(device)
    torch.library.opcheck(
        torch.ops.causal_conv1d.causal_conv1d_batch_bwd.default,
        (
            x.detach(),
            weight.detach(),
            bias.detach(),
            None,
            initial.detach(),
            dout,
            None,
            True,
            True,
            False,
        ),
    )


@pytest.mark.parametrize("device", devices())
def test_torch_compile_fullgraph_forward_and_backward(device):
    x, weight, bias, _, initial = inputs(
        2, 16, 23, 4, (F32, F32), "channel_last", init=True, device=device
    )
    leaves = [t.detach().requires_grad_() for t in (x, weight, bias, initial)]

    def step(x, weight, bias, initial):
        out, final = dao.causal_conv1d_fn(x, weight, bias, None, initial, True, activation="silu")
        return out.sum() + final.float().square().sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    eager = torch.autograd.grad(step(*leaves), leaves)
    traced = torch.autograd.grad(compiled(*leaves), leaves)
    for a, b in zip(eager, traced):
        assert torch.equal(a, b)


HOOK_PROBE = """
import importlib.metadata, sys
import causal_conv1d_kernels
try:
    import causal_conv1d
    print("before: importable")
except ImportError:
    print("before: absent")
from causal_conv1d_kernels import dao
dao.install_as_causal_conv1d()
from causal_conv1d import causal_conv1d_fn, causal_conv1d_update
from causal_conv1d.causal_conv1d_interface import causal_conv1d_fn as f2
from causal_conv1d.causal_conv1d_varlen import causal_conv1d_varlen_states
from causal_conv1d.cpp_functions import causal_conv1d_fwd_function, causal_conv1d_bwd_function
import causal_conv1d
print("routed:", causal_conv1d_fn is dao.causal_conv1d_fn and f2 is dao.causal_conv1d_fn
      and causal_conv1d_update is dao.causal_conv1d_update)
print("version:", importlib.metadata.version("causal_conv1d"), causal_conv1d.__version__)
dao.uninstall()
print("after:", "causal_conv1d" in sys.modules)
"""


HOOK_MODULE_PROBE = """
import importlib, importlib.util, inspect, os, sys
from causal_conv1d_kernels import dao
dao.install_as_causal_conv1d()
import causal_conv1d, causal_conv1d.causal_conv1d_interface, causal_conv1d.cpp_functions
here = os.path.realpath(dao.__file__)
for name in dao._HOOKED:
    m = sys.modules[name]
    assert os.path.realpath(m.__file__) == here, (name, m.__file__)
    assert os.path.realpath(inspect.getfile(m)) == here, name
    assert inspect.getsourcefile(m) is not None, name
    spec = importlib.util.find_spec(name)
    assert spec is m.__spec__ and spec.origin == m.__file__ and spec.has_location, name
    assert m.__loader__ is spec.loader and m.__package__ == "causal_conv1d", name
    assert m.__doc__, name
    assert importlib.reload(m) is m and m.__file__ == spec.origin, name
assert causal_conv1d.__path__ == [] and causal_conv1d.__spec__.submodule_search_locations == []
assert causal_conv1d.causal_conv1d_fn is dao.causal_conv1d_fn
assert inspect.getmodule(causal_conv1d.causal_conv1d_fn) is dao
print("module attributes ok")
"""


def test_install_hook_modules_look_loaded_from_a_file():
    """The stand-in modules have what the import system gives a module it loaded (__file__,
    a spec with an origin, __loader__, __package__), so inspect and importlib work on them;
    a reload keeps them the stand-ins."""
    result = subprocess.run(
        [sys.executable, "-c", HOOK_MODULE_PROBE],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "module attributes ok"


def test_install_hook_routes_dao_imports_to_this_dialect():
    """Never a side effect of importing the package; after install_as_causal_conv1d the names
    HF transformers and mamba_ssm import resolve here, with metadata; uninstall undoes it."""
    result = subprocess.run(
        [sys.executable, "-c", HOOK_PROBE], capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    if lines[0] == "before: importable":
        pytest.skip("a real causal_conv1d is installed here")
    assert lines == ["before: absent", "routed: True", "version: 1.7.0 1.7.0", "after: False"]
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("causal_conv1d")


@pytest.mark.parametrize("device", devices())
def test_cpp_functions_match_the_autograd_path(device):
    x, weight, bias, _, initial = inputs(
        2, 24, 30, 4, (F32, F32), "channel_last", init=True, device=device
    )
    final = torch.empty(2, 24, 3, device=device)
    out = dao.causal_conv1d_fwd_function(x, weight, bias, None, initial, final, True)
    ref_out, ref_final = dao.causal_conv1d_fn(
        x, weight, bias, None, initial, True, activation="silu"
    )
    assert torch.equal(out, ref_out) and torch.equal(final, ref_final)
    dout = torch.randn_like(x)
    dx = torch.empty_like(x)
    got = dao.causal_conv1d_bwd_function(x, weight, bias, dout, None, initial, None, dx, True, True)
    assert got[0].data_ptr() == dx.data_ptr()
    leaves = [t.detach().requires_grad_() for t in (x, weight, bias, initial)]
    o = dao.causal_conv1d_fn(leaves[0], leaves[1], leaves[2], None, leaves[3], activation="silu")
    expected = torch.autograd.grad(o, leaves, dout)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


@pytest.mark.parametrize("shape", [(0, 8, 5), (2, 0, 5), (2, 8, 0)])
@pytest.mark.parametrize("device", devices())
def test_zero_size_dimensions(shape, device):
    x = torch.randn(shape, device=device, requires_grad=True)
    weight = torch.randn(shape[1], 4, device=device, requires_grad=True)
    bias = torch.randn(shape[1], device=device, requires_grad=True)
    init = torch.randn(shape[0], shape[1], 3, device=device, requires_grad=True)
    out, final = dao.causal_conv1d_fn(x, weight, bias, None, init, True, activation="silu")
    assert out.shape == shape and final.shape == (shape[0], shape[1], 3)
    ref_out, ref_final = dao_fn_ref(x, weight, bias, None, init, "silu")
    assert torch.equal(final, ref_final.float())
    loss = out.sum() + final.sum()
    dx, dw, db, dinit = torch.autograd.grad(loss, (x, weight, bias, init))
    ref = torch.autograd.grad(
        ref_out.sum() + ref_final.sum(), (x, weight, bias, init), allow_unused=True
    )
    for a, e in zip((dx, dw, db, dinit), ref):
        e = torch.zeros_like(a) if e is None else e
        torch.testing.assert_close(a, e.to(a.dtype))


@pytest.mark.parametrize("ids", ["extremes", "all_padding", "alternating"])
@pytest.mark.parametrize("device", devices())
def test_hostile_sequence_ids(ids, device):
    """int32 extremes, rows of padding only, a new sequence at every token: the masks of
    the forward and the backward agree with the reference."""
    batch, seqlen = 2, 40
    if ids == "extremes":
        pattern = [2**31 - 1] * 10 + [-(2**31)] * 5 + [0] * 10 + [2**31 - 1] * 15
        seq_idx = torch.tensor([pattern, pattern[::-1]], dtype=torch.int32)
    elif ids == "all_padding":
        seq_idx = torch.full((batch, seqlen), -3, dtype=torch.int32)
    else:
        seq_idx = torch.arange(batch * seqlen, dtype=torch.int32).reshape(batch, seqlen)
    seq_idx = seq_idx.to(device)
    x, weight, bias, _, initial = inputs(
        batch, 16, seqlen, 5, (F32, F32), "channel_last", init=True, device=device
    )
    check_gradients(x, weight, bias, seq_idx, initial, "silu", with_final=False)
    out = dao.causal_conv1d_fn(x, weight, bias, seq_idx, initial, activation="silu")
    ref, _ = dao_fn_ref(x, weight, bias, seq_idx, initial, "silu")
    assert_close(out, ref.float())


@pytest.mark.parametrize("where", ["x", "weight", "bias", "initial_states"])
@pytest.mark.parametrize("device", devices())
def test_non_finite_values_in_each_input(where, device):
    x, weight, bias, _, initial = inputs(
        1, 8, 12, 4, (F32, F32), "contiguous", init=True, device=device
    )
    target = {"x": x, "weight": weight, "bias": bias, "initial_states": initial}[where]
    target.view(-1)[1] = float("nan")
    target.view(-1)[-1] = float("-inf")
    out, final = dao.causal_conv1d_fn(x, weight, bias, None, initial, True, activation="silu")
    ref_out, ref_final = dao_fn_ref(x, weight, bias, None, initial, "silu")
    assert_close(out, ref_out.float(), equal_nan=True)
    assert torch.equal(final.isnan(), ref_final.isnan())


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("layout", ["contiguous", "channel_last"])
def test_long_rows_cross_chunks(device, layout):
    """Rows long enough for several of a backend's token chunks (CUDA, channel-last: up to 256
    tokens per thread backward, 128 forward; contiguous: tiles of 1024 tokens, several per
    block with CAUSAL_CONV1D_CUDA_BATCH_TILES), sequences and padding crossing the chunk
    edges."""
    x, weight, bias, seq_idx, initial = inputs(
        2, 40, 2100, 4, (F32, F32), layout, seq=True, init=True, seed=7, device=device
    )
    check_gradients(x, weight, bias, seq_idx, initial, "silu", with_final=False)
    x, weight, bias, _, initial = inputs(
        2, 40, 4500, 3, (BF16, F32), layout, init=True, seed=8, device=device
    )
    check_gradients(x, weight, bias, None, initial, "silu", with_final=True)
    # Width 4 without seq_idx: CUDA's kernels compiled for that case (no sequence tests).
    x, weight, bias, _, initial = inputs(
        2, 40, 4500, 4, (BF16, BF16), layout, init=True, seed=9, device=device
    )
    check_gradients(x, weight, bias, None, initial, "silu", with_final=True)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("seqlen", [2048, 4608])
@pytest.mark.parametrize("width", [2, 3, 4])
def test_long_rows_of_whole_tiles(device, seqlen, width):
    """Channel-first rows of 16-bit x whose tokens move in 16-byte words (seqlen a multiple
    of 8), with and without a partial last tile: CUDA's lean loops over whole tiles of 1024
    tokens (the backward walks them last to first), initial and final states, the gradients
    of both."""
    for mix, seed in (((BF16, BF16), 11), ((F16, F32), 12)):
        x, weight, bias, _, initial = inputs(
            2, 24, seqlen, width, mix, "contiguous", init=True, seed=seed + width, device=device
        )
        check_gradients(x, weight, bias, None, initial, "silu", with_final=True)
    x, weight, bias, _, _ = inputs(
        3, 24, seqlen, width, (BF16, BF16), "contiguous", init=False, seed=13, device=device
    )
    check_gradients(x, weight, bias, None, None, None, with_final=False)


@needs_cuda
def test_cuda_channel_last_backward_at_four_bytes_per_thread():
    """CAUSAL_CONV1D_CUDA_BWD_BYTES=4 (read once per process: a process of its own): the
    channel-last backward with 2 channels of 16-bit x per thread, widths 2-4, with and without
    seq_idx, initial and final states, against the reference."""
    code = """
import sys
sys.path.insert(0, sys.argv[1])
from test_dao import BF16, F16, F32, check_gradients, inputs
for width in (2, 3, 4):
    for mix, seq in (((BF16, BF16), False), ((F16, F32), True), ((BF16, BF16), True)):
        x, w, b, s, init = inputs(2, 48, 700, width, mix, "channel_last", seq=seq, init=True,
                                  seed=20 + width, device="cuda")
        check_gradients(x, w, b, s, init, "silu", with_final=not seq)
print("ok")
"""
    env = {**os.environ, "CAUSAL_CONV1D_CUDA_BWD_BYTES": "4"}
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    result = subprocess.run(
        [sys.executable, "-c", code, tests_dir], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
