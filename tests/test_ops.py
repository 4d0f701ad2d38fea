"""Op registration: schemas, fake kernels (opcheck) and torch.compile(fullgraph=True)."""

import os
import subprocess
import sys

import causal_conv1d_kernels as ck
import pytest
import torch
from helpers import (
    BF16,
    F16,
    F32,
    assert_close,
    devices,
    fwd_case,
    fwd_op_args,
    update_case,
    update_op_args,
)

FWD_SAMPLES = [
    dict(width=4, mix=(BF16, BF16, F32)),
    dict(width=3, mix=(F32, F32, F32), x_layout="contiguous", state_layout="contiguous"),
    dict(width=4, mix=(F16, F16, F16), with_cache=False),
]
UPDATE_SAMPLES = [
    dict(width=4, mix=(BF16, BF16, BF16)),
    dict(width=5, mix=(F32, F32, F32), seqlen=3, circular=True),
    dict(width=2, mix=(F16, F32, F16), squeeze=True, with_indices=False),
]


def test_schemas_annotate_writes():
    fwd = torch.ops.causal_conv1d.causal_conv1d_fwd.default._schema
    upd = torch.ops.causal_conv1d.causal_conv1d_update.default._schema
    written = lambda s: [a.name for a in s.arguments if a.alias_info and a.alias_info.is_write]  # noqa: E731
    fwd_out = torch.ops.causal_conv1d.causal_conv1d_fwd_out.default._schema
    step = torch.ops.causal_conv1d.causal_conv1d_update_step.default._schema
    step_out = torch.ops.causal_conv1d.causal_conv1d_update_step_out.default._schema
    assert written(fwd) == ["conv_states"]
    assert written(step) == ["conv_state"]
    assert written(step_out) == ["conv_state", "out"]
    assert written(fwd_out) == ["conv_states", "out"]
    assert written(upd) == [
        "conv_state",
        "out",
        "intermediate_conv_window",
        "retrieve_parent_token",
    ]


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("sample", range(len(FWD_SAMPLES)))
def test_opcheck_fwd(device, sample):
    kwargs, _ = fwd_case(device=device, lengths=[3, 0, 9, 1], **FWD_SAMPLES[sample])
    torch.library.opcheck(torch.ops.causal_conv1d.causal_conv1d_fwd.default, fwd_op_args(kwargs))


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("sample", range(len(FWD_SAMPLES)))
def test_opcheck_fwd_out(device, sample):
    kwargs, _ = fwd_case(device=device, lengths=[3, 0, 9, 1], **FWD_SAMPLES[sample])
    out = torch.empty_like(kwargs["x"])
    torch.library.opcheck(
        torch.ops.causal_conv1d.causal_conv1d_fwd_out.default, (*fwd_op_args(kwargs), out)
    )


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("sample", range(len(UPDATE_SAMPLES)))
def test_opcheck_update(device, sample):
    kwargs, _ = update_case(device=device, **UPDATE_SAMPLES[sample])
    out = torch.empty_like(kwargs["x"])
    torch.library.opcheck(
        torch.ops.causal_conv1d.causal_conv1d_update.default, update_op_args(kwargs, out)
    )


STEP = torch.ops.causal_conv1d.causal_conv1d_update_step_out.default
NEW_STEP = torch.ops.causal_conv1d.causal_conv1d_update_step.default
UPDATE = torch.ops.causal_conv1d.causal_conv1d_update.default


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("sample", range(len(UPDATE_SAMPLES)))
@pytest.mark.parametrize("front_window", [False, True])
def test_opcheck_update_step(device, sample, front_window):
    if front_window and UPDATE_SAMPLES[sample].get("circular"):
        pytest.skip("ring buffers (cache_seqlens) have no front-aligned window")
    kwargs, _ = update_case(device=device, **UPDATE_SAMPLES[sample])
    out = torch.empty_like(kwargs["x"])
    torch.library.opcheck(STEP, (*update_op_args(kwargs, out), -1, front_window))
    args = update_op_args(kwargs, out)
    torch.library.opcheck(NEW_STEP, (*args[:8], -1, front_window))


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("sample", range(len(UPDATE_SAMPLES)))
@pytest.mark.parametrize("extra_state", [0, 2])
@pytest.mark.parametrize("front_window", [False, True])
def test_update_step_is_the_update_op_without_its_dialect_arguments(
    device, sample, extra_state, front_window
):
    """The plain step op writes the same bits, out and cache, as the full op called with the
    same arguments and the defaults of the rest (the speculative and tree ones None)."""
    case = dict(UPDATE_SAMPLES[sample], extra_state=extra_state)
    if front_window and case.get("circular"):
        pytest.skip("ring buffers (cache_seqlens) have no front-aligned window")
    kwargs, _ = update_case(device=device, **case)
    results = []
    for op in (STEP, NEW_STEP, UPDATE):
        states = kwargs["conv_state"].clone()
        out = torch.full_like(kwargs["x"], float("nan"))
        args = list(update_op_args(kwargs, out))
        args[1] = states
        pad_slot_id = 3  # a real line read as padding: both ops must agree on it too
        args[7] = pad_slot_id
        if op is STEP:
            op(*args, -1, front_window)
        elif op is NEW_STEP:
            out = op(*args[:8], -1, front_window)
            assert out.shape == kwargs["x"].shape and out.stride() == kwargs["x"].stride()
        else:
            op(*args, None, None, -1, -1, front_window)
        results.append((out, states))
    (out_step, states_step), *others = results
    for out_other, states_other in others:
        assert torch.equal(out_step, out_other)
        assert torch.equal(states_step, states_other)
    assert not torch.equal(states_step, kwargs["conv_state"]), "the step must write the cache"


def _ops_called(fn) -> list:
    """The causal_conv1d ops a call reaches, in order."""
    from torch.utils._python_dispatch import TorchDispatchMode

    called = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == "causal_conv1d":
                called.append(func.__name__.split(".")[0])
            return func(*args, **(kwargs or {}))

    with Record():
        fn()
    return called


def test_plain_decode_calls_take_the_step_op():
    """The dialects' plain decode calls reach the lean step op (its host time is the point);
    a call with speculative rows or a tree reaches the full op."""
    from causal_conv1d_kernels import dao, vllm
    from causal_conv1d_kernels.sglang import cpu as sglang_cpu_api

    kwargs, _ = update_case(4, (F32, F32, F32))
    x, state, weight = kwargs["x"], kwargs["conv_state"], kwargs["weight"]
    lines = kwargs["conv_state_indices"]
    plain = lambda: ck.causal_conv1d_update(  # noqa: E731
        x, state, weight, None, "silu", conv_state_indices=lines
    )
    assert _ops_called(plain) == ["causal_conv1d_update_step"]  # a new output: the op's
    into = lambda: ck.causal_conv1d_update(  # noqa: E731
        x, state, weight, None, "silu", conv_state_indices=lines, out=torch.empty_like(x)
    )
    assert _ops_called(into) == ["causal_conv1d_update_step_out"]
    vllm_plain = lambda: vllm.causal_conv1d_update(x, state, weight, conv_state_indices=lines)  # noqa: E731
    assert _ops_called(vllm_plain) == ["causal_conv1d_update_step_out"]  # in place: out is x
    rows = update_case(4, (F32, F32, F32), squeeze=True)[0]["x"]  # (batch, dim), SGLang's
    sglang_cpu = lambda: sglang_cpu_api.causal_conv1d_update_cpu(  # noqa: E731
        rows, state, weight, None, True, conv_state_indices=lines
    )
    assert _ops_called(sglang_cpu) == ["causal_conv1d_update_step"]
    assert _ops_called(lambda: dao.causal_conv1d_update(x, state, weight)) == [
        "causal_conv1d_update_step"
    ]
    accepted = torch.ones(x.shape[0], dtype=torch.int32)
    wide = torch.randn(state.shape[0], state.shape[1], 4)
    spec = lambda: vllm.causal_conv1d_update(  # noqa: E731
        x, wide, weight, conv_state_indices=lines, num_accepted_tokens=accepted
    )
    assert _ops_called(spec) == ["causal_conv1d_update"]


class PrefillThenDecode(torch.nn.Module):
    """What a Mamba layer does with the ops: prefill a batch, decode one token in place, then
    one more into a new output."""

    def __init__(self, weight, bias):
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.bias = torch.nn.Parameter(bias, requires_grad=False)

    def forward(self, x, states, qsl, lines, has_init, token, buf):
        y = ck.causal_conv1d_fn(x, self.weight, self.bias, states, qsl, lines, has_init, out=buf)
        z = ck.causal_conv1d_update(
            token, states, self.weight, self.bias, "silu", conv_state_indices=lines, out=token
        )
        # A second step into a new output: the functional step op.
        n = ck.causal_conv1d_update(
            z * 2, states, self.weight, None, None, conv_state_indices=lines
        )
        return y.sum(dim=0), z * 2, n


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph(device, backend):
    torch._dynamo.reset()
    kwargs, _ = fwd_case(4, (F32, F32, F32), device, lengths=[5, 0, 17, 2])
    kwargs["cache_indices"] = kwargs["cache_indices"].abs()  # no padding: decode every line
    batch = 4
    token = torch.randn(batch, kwargs["x"].shape[0], device=device)
    model = PrefillThenDecode(kwargs["weight"], kwargs["bias"])
    args = (
        kwargs["x"],
        kwargs["conv_states"],
        kwargs["query_start_loc"],
        kwargs["cache_indices"],
        kwargs["has_initial_state"],
    )

    eager_states, eager_token = args[1].clone(), token.clone()
    eager = model(args[0], eager_states, *args[2:], eager_token, torch.empty_like(args[0]))
    compiled_fn = torch.compile(model, fullgraph=True, backend=backend)
    buf = torch.empty_like(args[0])
    compiled = compiled_fn(*args, token, buf)

    assert_close(compiled[0], eager[0])
    assert_close(compiled[1], eager[1])
    assert_close(compiled[2], eager[2])
    assert torch.equal(args[1], eager_states), "compiled call must update the cache in place"
    assert torch.equal(token, eager_token), "compiled call must write out=token in place"
    assert_close(buf.sum(dim=0), eager[0]), "compiled call must fill the prefill's out buffer"


def test_set_pdl_switches_and_returns_the_previous_setting():
    from causal_conv1d_kernels import set_pdl

    previous = set_pdl(False)
    try:
        assert set_pdl(True) is False
        assert set_pdl(True) is True
        with pytest.raises(TypeError, match="enabled"):
            set_pdl(1)
    finally:
        set_pdl(previous)


@pytest.mark.parametrize("value,expected", [("0", "False"), ("1", "True"), (None, "True")])
def test_pdl_default_follows_the_environment(value, expected):
    env = {k: v for k, v in os.environ.items() if k != "CAUSAL_CONV1D_PDL"}
    if value is not None:
        env["CAUSAL_CONV1D_PDL"] = value
    probe = "import causal_conv1d_kernels as c; print(c.set_pdl(True))"
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == expected


def test_fresh_large_outputs_reuse_freed_memory_within_the_cap():
    """Outputs of 1 MiB or more come from the CPU output pool: correct, never shared between
    live tensors, resizable within their size (and beyond it in a classic build; a stable-ABI
    build's pooled storage is torch's from_blob kind, which cannot grow); freed ones are kept
    (at most the cap) and release_cpu_pool frees them."""
    from causal_conv1d_kernels import dao, release_cpu_pool

    release_cpu_pool()
    x = torch.randn(2, 512, 600)  # 2.3 MiB of fp32
    weight, bias = torch.randn(512, 4), torch.randn(512)
    first = dao.causal_conv1d_fn(x, weight, bias, activation="silu")
    second = dao.causal_conv1d_fn(x * 2, weight, bias, activation="silu")
    assert first.data_ptr() != second.data_ptr()
    assert torch.equal(first, dao.causal_conv1d_fn(x, weight, bias, activation="silu"))
    del first, second
    freed = release_cpu_pool()
    assert freed >= 2 * x.numel() * 4
    assert release_cpu_pool() == 0
    out = dao.causal_conv1d_fn(x, weight, bias, activation="silu")
    out.resize_(1, 512, 600)  # a storage like any other within its size
    if ck.abi() == "classic":
        out.resize_(3, 512, 600)
    else:
        with pytest.raises(RuntimeError, match="not resizable"):
            out.resize_(3, 512, 600)
    for _ in range(50):  # many sizes: what stays cached is bounded by the cap (512 MiB)
        dao.causal_conv1d_fn(torch.randn(1, 512, 600 + 100 * _), weight, bias)
    assert release_cpu_pool() <= 512 << 20


def test_output_pool_can_be_turned_off():
    env = {**os.environ, "CAUSAL_CONV1D_CPU_POOL_MB": "0"}
    probe = (
        "import torch, causal_conv1d_kernels as c; from causal_conv1d_kernels import dao;"
        "o = dao.causal_conv1d_fn(torch.randn(2, 512, 600), torch.randn(512, 4)); del o;"
        "print(c.release_cpu_pool())"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "0"
