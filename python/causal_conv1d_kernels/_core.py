"""The internal core every dialect calls: one op call each, by keyword (:func:`_prefill`,
:func:`_decode`, :func:`_batch_fwd`, :func:`_batch_bwd`), and the checks the C++ ops cannot
make (CONTRACT 2).

The ops check every shape, stride, dtype, device and index length before they touch memory
and raise ``ValueError``/``TypeError`` naming the argument; the messages start with the C++
op's name, which :func:`_call` replaces with the dialect function's. What stays here: the
activation and integer arguments (the dispatcher takes a bool for an int), naming a non-tensor
argument the dispatcher refused, the refusal of calls autograd would record, and the value
checks. Those read index values (they sync with the device) and run when ``validate=True`` is
passed or ``CAUSAL_CONV1D_VALIDATE=1`` is set, never while a CUDA graph is being captured or
``torch.compile`` traces the call. Without them the kernels still stay inside the tensors they
were given: a cache index outside ``[0, num_cache_lines)`` is treated as padding.

The inference ops have no backward pass: a call that autograd would record (grad mode on and
an input that requires grad) is refused, naming the differentiable ``causal_conv1d_kernels.dao``.
"""

from __future__ import annotations

from typing import Union

import torch

PAD_SLOT_ID = -1
MAX_WIDTH = 8

_INDEX_DTYPES = (torch.int32, torch.int64)

Activation = Union[str, bool, None]


def _setting_on(name: str) -> bool:
    """A switch of the settings table (csrc/settings.h), read as the C++ code reads it."""
    return torch.ops.causal_conv1d.setting(name) != "0"


# Read once: an environment lookup per call cost 1.7 us of a 15 us CPU decode step.
_VALIDATE_FROM_ENV = _setting_on("CAUSAL_CONV1D_VALIDATE")


def _values_readable(x) -> bool:
    """Whether the value checks may read index values now: neither a CUDA graph capture (a
    host read is not allowed there) nor torch.compile's tracing (it would be a data-dependent
    guard) is in progress. Callers ask only when ``validate or _VALIDATE_FROM_ENV``."""
    if torch.compiler.is_compiling():
        return False
    return not (
        isinstance(x, torch.Tensor) and x.is_cuda and torch.cuda.is_current_stream_capturing()
    )


def _requires_grad(x, weight, bias, states) -> bool:
    """Whether any input requires grad (attribute reads inline: ~0.2 us of a decode call's
    ~6 us on the dev box, where a loop over the tensors cost ~0.35 us)."""
    try:
        return (
            x.requires_grad
            or weight.requires_grad
            or (states is not None and states.requires_grad)
            or (bias is not None and bias.requires_grad)
        )
    except AttributeError:
        return False  # not tensors: the op refuses them


def _refuse_grad(op: str, **tensors) -> None:
    """Refuses a call autograd would record (the caller saw grad mode on and an input that
    requires grad): the ops have no backward, so the output would carry a graph whose
    backward leaves the inputs' gradients silently None."""
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor) and t.requires_grad:
            raise ValueError(
                f"{op}: {name} requires grad, but this op has no backward pass (it serves "
                "inference). For training use causal_conv1d_kernels.dao.causal_conv1d_fn, "
                "which is differentiable; for inference call it under torch.no_grad() or "
                "torch.inference_mode(), or pass tensors that do not require grad."
            )


# name -> (the op's default overload, the builtin it calls, the prefix of its messages)
_OPS = {}


# The end of a type error's message from a stable-ABI build (csrc/torch_api.h kTypeErrorMark).
_TYPE_ERROR_MARK = " [TypeError]"


def _resolve(name: str):
    overload = getattr(torch.ops.causal_conv1d, name).default
    # The C++ messages name the op whose checks ran: causal_conv1d_fwd_out's and
    # causal_conv1d_update_step's are causal_conv1d_fwd's and causal_conv1d_update's.
    prefix = name.removesuffix("_out").removesuffix("_step") + ":"
    entry = _OPS[name] = (overload, overload._op, prefix)
    return entry


# True only while dynamo traces (it reads the call as True); eagerly a bare function returning
# False, 27 against torch.compiler.is_compiling's 69 ns on the dev box. (Outside dynamo, torch
# .export's non-strict tracing included, the builtin reaches its modes through the dispatcher.)
_tracing_with_dynamo = getattr(torch.compiler, "is_dynamo_compiling", torch.compiler.is_compiling)

# Bound once: the module attribute lookup is ~20 ns of a call's few microseconds.
_grad_enabled = torch.is_grad_enabled

# The decode step's ops, (overload, builtin, prefix) as in _OPS: _step calls them directly.
_STEP = _resolve("causal_conv1d_update_step")
_STEP_OUT = _resolve("causal_conv1d_update_step_out")

# The ops _call takes, resolved here, at import: resolving one on its first call while dynamo
# traces would store its builtin in _OPS, a side effect dynamo cannot replay (torch 2.11
# then rejects the graph: "Reconstruction failure ... SkipFunctionVariable").
for _name in (
    "causal_conv1d_fwd",
    "causal_conv1d_fwd_out",
    "causal_conv1d_update",
    "causal_conv1d_batch_fwd",
    "causal_conv1d_batch_bwd",
):
    _resolve(_name)
del _name


def _call(op: str, name: str, *args):
    """Calls the op ``name`` (its default overload, resolved at import) with ``args``.

    Eagerly the overload's builtin is called directly (its ``__call__`` is a Python frame
    around it: ~0.3 us of a 4 us decode call on the dev box); while dynamo traces, the
    overload itself, which dynamo knows.

    A ``ValueError``/``TypeError`` of the op's checks comes back with the dialect's function
    name ``op`` in place of the C++ op's (``causal_conv1d_fwd_out`` reports as
    ``causal_conv1d_fwd``); on the stable ABI a type error arrives as a ``ValueError`` whose
    message ends in ``_TYPE_ERROR_MARK`` (csrc/torch_api.h) and leaves as a ``TypeError``. A
    ``RuntimeError`` of the dispatcher (an argument of the wrong kind) becomes a ``TypeError``
    naming the argument when a tensor argument is neither a tensor nor None (the op's schema
    says which arguments are tensors)."""
    overload, builtin, _ = _OPS[name]
    try:
        return overload(*args) if _tracing_with_dynamo() else builtin(*args)
    except (ValueError, TypeError, RuntimeError) as e:
        raise _translated(op, name, args, e) from None


def _translated(op: str, name: str, args: tuple, error: Exception) -> Exception:
    """The exception a failed call of the op ``name`` leaves :func:`_call` with (see there):
    ``error`` itself where there is nothing to translate."""
    overload, _, prefix = _OPS[name]
    if isinstance(error, RuntimeError):
        tensor = torch._C.OptionalType.ofTensor()
        for arg, value in zip(overload._schema.arguments, args):
            if (
                arg.type.isSubtypeOf(tensor)
                and value is not None
                and not isinstance(value, torch.Tensor)
            ):
                return TypeError(
                    f"{op}: {arg.name} must be a torch.Tensor, got {type(value).__name__}"
                )
        return error
    message, kind = str(error), type(error)
    if message.endswith(_TYPE_ERROR_MARK):
        message, kind = message[: -len(_TYPE_ERROR_MARK)], TypeError
    if not message.startswith(prefix):
        return error if kind is type(error) else kind(message)
    return kind(op + ":" + message[len(prefix) :])


def _silu(op: str, activation: Activation) -> bool:
    if activation is None or activation is False:
        return False
    if activation is True or (isinstance(activation, str) and activation in ("silu", "swish")):
        return True
    raise ValueError(
        f"{op}: activation must be None, 'silu', 'swish', True or False, got {activation!r}"
    )


def _integers(op: str, **values) -> None:
    """int arguments (the dispatcher would take a bool or an integer tensor for one). The
    decode and prefill calls test ``type(v) is int`` inline and call this only when one is
    not."""
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{op}: {name} must be an int, got {type(v).__name__}")


# ---- The value checks (they sync; only on request) ----
#
# They run before the op, on arguments the op has not checked yet: each looks only at
# tensors of the kind it reads (1-D integer indices, a 3-D cache) and leaves anything else
# to the op's checks.


def _is_index(t) -> bool:
    return isinstance(t, torch.Tensor) and t.dim() == 1 and t.dtype in _INDEX_DTYPES


def _num_lines(states) -> int | None:
    if isinstance(states, torch.Tensor) and states.dim() == 3:
        return states.shape[0]
    return None


def _starts_in_range(op: str, q, num_tokens: int, exact_end: bool) -> int | None:
    """query_start_loc's values: from 0, never decreasing, ending at num_tokens (prefill) or
    within it (decode, whose x may be an engine's padded buffer). Returns the batch."""
    if not (_is_index(q) and q.shape[0] >= 1):
        return None
    last = int(q[-1])
    bad_end = last != num_tokens if exact_end else last > num_tokens
    if int(q[0]) != 0 or bad_end or bool((q[1:] < q[:-1]).any()):
        end = f"end at num_tokens={num_tokens}" if exact_end else f"end <= {num_tokens}"
        raise ValueError(
            f"{op}: query_start_loc must start at 0, never decrease and {end}, "
            f"got {q.tolist()[:16]}"
        )
    return q.shape[0] - 1


def _cache_lines_in_range(
    op: str, name: str, indices, batch, states, pad_slot_id: int, null_block_id: int
) -> None:
    num_lines = _num_lines(states)
    if batch is None or num_lines is None or not _is_index(indices):
        return
    indices = indices[:batch]
    pad = (indices == pad_slot_id) | (indices == null_block_id)
    bad = ~pad & ((indices < 0) | (indices >= num_lines))
    if bool(bad.any()):
        raise ValueError(
            f"{op}: {name} must hold values in [0, {num_lines}) or pad_slot_id="
            f"{pad_slot_id}, got {indices[bad][:8].tolist()}"
        )


def _check_prefill_values(op, x, conv_states, query_start_loc, cache_indices, pad, null):
    if not (isinstance(x, torch.Tensor) and x.dim() == 2):
        return
    batch = _starts_in_range(op, query_start_loc, x.shape[1], exact_end=True)
    if cache_indices is not None:
        _cache_lines_in_range(op, "cache_indices", cache_indices, batch, conv_states, pad, null)
    else:
        lines = _num_lines(conv_states)
        if batch is not None and lines is not None and lines < batch:
            raise ValueError(
                f"{op}: without cache_indices, conv_states needs a line per sequence "
                f"(>= {batch}), got {lines}"
            )


def _check_decode_values(
    op, x, conv_state, conv_state_indices, num_accepted_tokens, query_start_loc, lmax, pad, null
):
    if not (isinstance(x, torch.Tensor) and x.dim() in (2, 3)):
        return
    if query_start_loc is None:
        batch = x.shape[0]
        lmax = x.shape[2] if x.dim() == 3 else 1
    else:
        batch = _starts_in_range(op, query_start_loc, x.shape[0], exact_end=False)
        if batch is not None and num_accepted_tokens is not None:
            lengths = query_start_loc[1 : batch + 1] - query_start_loc[:batch]
            if bool((lengths > lmax).any()):
                raise ValueError(
                    f"{op}: query_start_loc gives rows longer than max_query_len={lmax}: "
                    f"{lengths[lengths > lmax][:8].tolist()}"
                )
    if conv_state_indices is not None:
        _cache_lines_in_range(
            op, "conv_state_indices", conv_state_indices, batch, conv_state, pad, null
        )
    if batch is not None and _is_index(num_accepted_tokens):
        accepted = num_accepted_tokens[:batch]
        bad = (accepted < 1) | (accepted > lmax)
        if bool(bad.any()):
            raise ValueError(
                f"{op}: num_accepted_tokens must hold values in [1, {lmax}], "
                f"got {accepted[bad][:8].tolist()}"
            )


# ---- The op calls ----


def _prefill(
    op: str,
    *,
    x,
    weight,
    bias,
    conv_states,
    query_start_loc,
    cache_indices=None,
    has_initial_state=None,
    activation: Activation = "silu",
    pad_slot_id: int = PAD_SLOT_ID,
    null_block_id: int | None = None,
    front_window: bool = False,
    validate: bool = False,
    out=None,
) -> torch.Tensor:
    """One fwd op call (into ``out`` when given), named ``op`` in its errors.

    ``validate`` asks for the value checks (they sync); ``null_block_id`` None means
    ``pad_slot_id`` (no second pad id)."""
    silu = activation is True or _silu(op, activation)
    if null_block_id is None:
        null_block_id = pad_slot_id
    if not (type(pad_slot_id) is int and type(null_block_id) is int):  # noqa: E721 (bool is an int)
        _integers(op, pad_slot_id=pad_slot_id, null_block_id=null_block_id)
    if _grad_enabled() and _requires_grad(x, weight, bias, conv_states):
        _refuse_grad(op, x=x, weight=weight, bias=bias, conv_states=conv_states)
    if (validate or _VALIDATE_FROM_ENV) and _values_readable(x):
        _check_prefill_values(
            op, x, conv_states, query_start_loc, cache_indices, pad_slot_id, null_block_id
        )
    args = (x, weight, bias, conv_states, query_start_loc, cache_indices, has_initial_state)
    if out is None:
        return _call(op, "causal_conv1d_fwd", *args, silu, pad_slot_id, null_block_id, front_window)
    _call(op, "causal_conv1d_fwd_out", *args, silu, pad_slot_id, out, null_block_id, front_window)
    return out


def _checks_apply(validate: bool, pad_slot_id, null_block_id, max_query_len=-1) -> bool:
    """Whether one of :func:`_check_decode`'s checks can apply: not for an engine's call in
    inference mode with int arguments and no validation, which goes straight to the op."""
    return (
        validate
        or _VALIDATE_FROM_ENV
        or _grad_enabled()
        or not (type(pad_slot_id) is int and type(null_block_id) is int)  # noqa: E721
        or type(max_query_len) is not int  # noqa: E721
    )


def _check_decode(
    op: str,
    x,
    conv_state,
    weight,
    bias,
    conv_state_indices,
    pad_slot_id,
    null_block_id,
    validate: bool,
    num_accepted_tokens=None,
    query_start_loc=None,
    max_query_len=-1,
) -> None:
    """The decode's checks the op cannot make: int arguments, a call autograd would record,
    and (validate, or CAUSAL_CONV1D_VALIDATE) the index values."""
    if not (type(pad_slot_id) is int and type(null_block_id) is int and type(max_query_len) is int):  # noqa: E721
        _integers(
            op, pad_slot_id=pad_slot_id, null_block_id=null_block_id, max_query_len=max_query_len
        )
    if _grad_enabled() and _requires_grad(x, weight, bias, conv_state):
        _refuse_grad(op, x=x, weight=weight, bias=bias, conv_state=conv_state)
    if (validate or _VALIDATE_FROM_ENV) and _values_readable(x):
        _check_decode_values(
            op,
            x,
            conv_state,
            conv_state_indices,
            num_accepted_tokens,
            query_start_loc,
            max_query_len,
            pad_slot_id,
            null_block_id,
        )


def _step(
    op: str,
    *,
    x,
    conv_state,
    weight,
    bias,
    out=None,
    activation: Activation = None,
    cache_seqlens=None,
    conv_state_indices=None,
    pad_slot_id: int = PAD_SLOT_ID,
    null_block_id: int | None = None,
    front_window: bool = False,
    validate: bool = False,
) -> torch.Tensor:
    """The plain decode step (no speculative or tree arguments): one call of the step ops,
    which allocate the output when ``out`` is None (``torch.empty_like``'s layout); returns
    the output.

    The dialects whose call is always a plain step (the core API, SGLang's JIT and, without
    ``num_accepted_tokens``, CPU decodes) call it directly; :func:`_decode` takes it for the
    rest. Its host time is the point: the step op has 10-11 arguments, not 19, and this
    frame does only the checks the op cannot (about 0.75 us less per call than through
    :func:`_decode` on the dev box, one thread)."""
    silu = activation is True or _silu(op, activation)
    if null_block_id is None:
        null_block_id = pad_slot_id
    if _checks_apply(validate, pad_slot_id, null_block_id):
        _check_decode(
            op,
            x,
            conv_state,
            weight,
            bias,
            conv_state_indices,
            pad_slot_id,
            null_block_id,
            validate,
        )
    # The ops are called here, not through _call (one Python frame less), resolved once, and
    # with their arguments listed, not splatted from a tuple: ~0.25 us less per call.
    # 1: the entry's builtin; 0: its overload. An int, not a bool: dynamo (torch 2.11)
    # rejects a list indexed by a bool.
    eager = 0 if _tracing_with_dynamo() else 1
    try:
        if out is None:
            return _STEP[eager](
                x,
                conv_state,
                weight,
                bias,
                silu,
                cache_seqlens,
                conv_state_indices,
                pad_slot_id,
                null_block_id,
                front_window,
            )
        _STEP_OUT[eager](
            x,
            conv_state,
            weight,
            bias,
            silu,
            cache_seqlens,
            conv_state_indices,
            pad_slot_id,
            out,
            null_block_id,
            front_window,
        )
        return out
    except (ValueError, TypeError, RuntimeError) as e:
        head = (x, conv_state, weight, bias, silu, cache_seqlens, conv_state_indices, pad_slot_id)
        if out is None:
            name, args = "causal_conv1d_update_step", head + (null_block_id, front_window)
        else:
            name, args = "causal_conv1d_update_step_out", head + (out, null_block_id, front_window)
        raise _translated(op, name, args, e) from None


def _decode(
    op: str,
    *,
    x,
    conv_state,
    weight,
    bias,
    out=None,
    activation: Activation = None,
    cache_seqlens=None,
    conv_state_indices=None,
    pad_slot_id: int = PAD_SLOT_ID,
    validate: bool = False,
    num_accepted_tokens=None,
    query_start_loc=None,
    max_query_len: int = -1,
    null_block_id: int | None = None,
    front_window: bool = False,
    intermediate_conv_window=None,
    intermediate_state_indices=None,
    retrieve_next_token=None,
    retrieve_next_sibling=None,
    retrieve_parent_token=None,
) -> torch.Tensor:
    """One update op call writing into ``out`` (None: a new output shaped like x, with
    ``torch.empty_like``'s layout), named ``op`` in its errors; returns the output.

    ``validate`` and ``null_block_id`` as in :func:`_prefill`; the ``intermediate_*`` and
    ``retrieve_*`` tensors are SGLang's tree verify (CONTRACT 1.6). Without the speculative
    and tree arguments the call is :func:`_step`'s (max_query_len only counts with
    query_start_loc)."""
    if (
        num_accepted_tokens is None
        and query_start_loc is None
        and intermediate_conv_window is None
        and intermediate_state_indices is None
        and retrieve_next_token is None
        and retrieve_next_sibling is None
        and retrieve_parent_token is None
    ):
        if type(max_query_len) is not int:  # noqa: E721
            _integers(op, max_query_len=max_query_len)
        return _step(
            op,
            x=x,
            conv_state=conv_state,
            weight=weight,
            bias=bias,
            out=out,
            activation=activation,
            cache_seqlens=cache_seqlens,
            conv_state_indices=conv_state_indices,
            pad_slot_id=pad_slot_id,
            null_block_id=null_block_id,
            front_window=front_window,
            validate=validate,
        )
    if null_block_id is None:
        null_block_id = pad_slot_id
    silu = activation is True or _silu(op, activation)
    if _checks_apply(validate, pad_slot_id, null_block_id, max_query_len):
        _check_decode(
            op,
            x,
            conv_state,
            weight,
            bias,
            conv_state_indices,
            pad_slot_id,
            null_block_id,
            validate,
            num_accepted_tokens,
            query_start_loc,
            max_query_len,
        )
    if out is None:
        out = torch.empty_like(x) if isinstance(x, torch.Tensor) else x  # x: the op names it
    _call(
        op,
        "causal_conv1d_update",
        x,
        conv_state,
        weight,
        bias,
        silu,
        cache_seqlens,
        conv_state_indices,
        pad_slot_id,
        out,
        num_accepted_tokens,
        query_start_loc,
        max_query_len,
        null_block_id,
        front_window,
        intermediate_conv_window,
        intermediate_state_indices,
        retrieve_next_token,
        retrieve_next_sibling,
        retrieve_parent_token,
    )
    return out


def deterministic_requested() -> bool:
    """Whether backward passes must give the same bits on every run: under
    ``torch.use_deterministic_algorithms(True)`` or with ``CAUSAL_CONV1D_DETERMINISTIC=1``
    (Dao's switch). The CPU kernels always are."""
    return torch.are_deterministic_algorithms_enabled() or _setting_on(
        "CAUSAL_CONV1D_DETERMINISTIC"
    )
