"""Dao-AILab causal-conv1d 1.7's Python API over this package's ops (CONTRACT 1.5), with
autograd. The training ops (``causal_conv1d_fn`` and its backward) have CPU kernels so far; the
update runs on CPUs and NVIDIA GPUs.

    from causal_conv1d_kernels.dao import causal_conv1d_fn, causal_conv1d_update

``causal_conv1d_fn`` is differentiable in x, weight, bias and initial_states (and takes the
gradient of the returned final states); its backward runs this package's kernels. For code
that imports Dao's package by name (HF transformers, mamba_ssm), :func:`install_as_causal_conv1d`
makes ``import causal_conv1d`` resolve to this module; importing this package never does it.

Where it differs from Dao 1.7: a bad argument is a ``ValueError``/``TypeError`` naming it
(Dao asserts or raises ``NotImplementedError``); every width from 2 to 8 and every dtype mix
runs in both layouts (Dao: widths 2-4, final states only channel-last); a cache index outside
the cache is padding as a negative one is.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import sys
import types

import torch

from ._core import PAD_SLOT_ID, _call, _decode, _integers, _silu, deterministic_requested

__all__ = [
    "causal_conv1d_fn",
    "causal_conv1d_update",
    "causal_conv1d_varlen_states",
    "install_as_causal_conv1d",
]

DAO_VERSION = "1.7.0"  # the API this module follows


def _into(op: str, name: str, buffer, result: torch.Tensor) -> torch.Tensor:
    """Copies an op's result into a caller's buffer (Dao writes these in place), after
    checking that the buffer can take it: a tensor on the result's device, of its dtype and
    shape."""
    if not isinstance(buffer, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(buffer).__name__}")
    if buffer.device != result.device:
        raise ValueError(f"{op}: {name} must be on x's device {result.device}, got {buffer.device}")
    if buffer.dtype != result.dtype:
        raise TypeError(f"{op}: {name} must have x's dtype {result.dtype}, got {buffer.dtype}")
    if buffer.shape != result.shape:
        raise ValueError(
            f"{op}: {name} must have shape {tuple(result.shape)}, got {tuple(buffer.shape)}"
        )
    return buffer.copy_(result)


def causal_conv1d_fn(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    seq_idx: torch.Tensor | None = None,
    initial_states: torch.Tensor | None = None,
    return_final_states: bool = False,
    final_states_out: torch.Tensor | None = None,
    activation: str | None = None,
):
    """Causal depthwise conv1d over a batch of rows, differentiable.

    Args:
        x: ``(batch, dim, seqlen)``, channel-first (``stride(2) == 1``) or channel-last
            (``stride(1) == 1``, a transposed ``(batch, seqlen, dim)``); any strides work.
        weight: ``(dim, width)``, width 2 to 8. bias: ``(dim,)`` or None.
        seq_idx: ``(batch, seqlen)`` int32 or None: packed sequences in each row; a tap never
            reads a token of another sequence, and tokens with a negative id are padding
            (output 0).
        initial_states: ``(batch, dim, width - 1)`` of x's dtype, or None (zeros): the columns
            before each row, read by the sequence of the row's first token.
        return_final_states: also return the last width-1 columns of each row (after the
            initial states); not with seq_idx.
        final_states_out: ``(batch, dim, width - 1)`` to write them into, or None.
        activation: None, ``"silu"`` or ``"swish"``.

    Returns:
        out ``(batch, dim, seqlen)`` with x's dtype and strides, and the final states when
        return_final_states.
    """
    op = "causal_conv1d_fn"
    silu = _silu(op, activation)
    if final_states_out is not None and not return_final_states:
        raise ValueError(f"{op}: final_states_out is given but return_final_states is False")
    out, final_states = _call(
        op,
        "causal_conv1d_batch_fwd",
        x,
        weight,
        bias,
        seq_idx,
        initial_states,
        bool(return_final_states),
        silu,
    )
    if not return_final_states:
        return out
    if final_states_out is not None:
        final_states = _into(op, "final_states_out", final_states_out, final_states)
    return out, final_states


def causal_conv1d_update(
    x: torch.Tensor,
    conv_state: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    activation: str | None = None,
    cache_seqlens: torch.Tensor | None = None,
    conv_state_indices: torch.Tensor | None = None,
) -> torch.Tensor:
    """Decode with Dao's rules: x ``(batch, dim)`` or ``(batch, dim, seqlen)``; conv_state
    ``(num_lines, dim, state_len)``, state_len >= width - 1, updated in place (a ring buffer
    written from ``cache_seqlens % state_len`` when cache_seqlens is given, else shifted left);
    row b uses line ``conv_state_indices[b]`` (or b), and a negative index is padding (output
    0, no line touched). Returns a new output tensor."""
    return _decode(
        "causal_conv1d_update",
        x=x,
        conv_state=conv_state,
        weight=weight,
        bias=bias,
        activation=activation,
        cache_seqlens=cache_seqlens,
        conv_state_indices=conv_state_indices,
        pad_slot_id=PAD_SLOT_ID,
    )


def causal_conv1d_varlen_states(
    x: torch.Tensor, cu_seqlens: torch.Tensor, state_len: int
) -> torch.Tensor:
    """The conv states after a packed prefill: x ``(total_tokens, dim)``, cu_seqlens
    ``(batch + 1,)`` sorted from 0. Returns ``(batch, dim, state_len)`` (channel-last) whose
    row i holds the last ``state_len`` tokens of sequence i, right-aligned, zeros before a
    shorter sequence's first token. Forward only, as in Dao 1.7; a few gather kernels, no
    host sync."""
    op = "causal_conv1d_varlen_states"
    for name, t in (("x", x), ("cu_seqlens", cu_seqlens)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError(f"{op}: x must be float32, float16 or bfloat16, got {x.dtype}")
    if x.dim() != 2:
        raise ValueError(f"{op}: x must have shape (total_tokens, dim), got {tuple(x.shape)}")
    if cu_seqlens.device != x.device:
        raise ValueError(
            f"{op}: cu_seqlens must be on x's device {x.device}, got {cu_seqlens.device}"
        )
    if cu_seqlens.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"{op}: cu_seqlens must be int32 or int64, got {cu_seqlens.dtype}")
    if not (cu_seqlens.dim() == 1 and cu_seqlens.shape[0] >= 1):
        raise ValueError(
            f"{op}: cu_seqlens must have shape (batch + 1,), got {tuple(cu_seqlens.shape)}"
        )
    _integers(op, state_len=state_len)
    if state_len < 0:
        raise ValueError(f"{op}: state_len must be >= 0, got {state_len}")
    starts, ends = cu_seqlens[:-1].long(), cu_seqlens[1:].long()
    cols = torch.arange(state_len, device=x.device) - state_len  # -state_len .. -1
    src = ends[:, None] + cols[None, :]  # (batch, state_len) token of each column
    valid = (src >= starts[:, None]) & (src >= 0) & (src < x.shape[0])
    if x.shape[0] == 0:
        return x.new_zeros((src.shape[0], x.shape[1], state_len))
    gathered = x[src.clamp(0, x.shape[0] - 1)]  # (batch, state_len, dim)
    states = torch.where(valid[..., None], gathered, gathered.new_zeros(()))
    return states.transpose(1, 2)


# ---- Dao's lower-level functions (causal_conv1d.cpp_functions), for mamba_ssm ----


def causal_conv1d_fwd_function(
    x, weight, bias, seq_idx, initial_states, final_states_out, silu_activation
):
    """Dao 1.7's ``cpp_functions.causal_conv1d_fwd_function``: the forward without autograd,
    final states written into final_states_out when it is given."""
    op = "causal_conv1d_fwd_function"
    want_final = final_states_out is not None
    out, final_states = _call(
        op,
        "causal_conv1d_batch_fwd",
        x,
        weight,
        bias,
        seq_idx,
        initial_states,
        want_final,
        bool(silu_activation),
    )
    if want_final:
        _into(op, "final_states_out", final_states_out, final_states)
    return out


def causal_conv1d_bwd_function(
    x,
    weight,
    bias,
    dout,
    seq_idx,
    initial_states,
    dfinal_states,
    dx,
    return_dinitial_states,
    silu_activation,
):
    """Dao 1.7's ``cpp_functions.causal_conv1d_bwd_function``: (dx, dweight, dbias or None,
    dinitial_states or None); dx is written into the given tensor when there is one."""
    op = "causal_conv1d_bwd_function"
    grads = _call(
        op,
        "causal_conv1d_batch_bwd",
        x,
        weight,
        bias,
        seq_idx,
        initial_states,
        dout,
        dfinal_states,
        bool(silu_activation),
        bool(return_dinitial_states),
        deterministic_requested(),
    )
    dx_new, dweight, dbias, dinit = grads
    if dx is not None:
        dx_new = _into(op, "dx", dx, dx_new)
    return (
        dx_new,
        dweight,
        dbias if bias is not None else None,
        dinit if return_dinitial_states else None,
    )


def causal_conv1d_update_function(
    x, conv_state, weight, bias, silu_activation, cache_seqlens, conv_state_indices
):
    """Dao 1.7's ``cpp_functions.causal_conv1d_update_function`` (x is 3-D there)."""
    return causal_conv1d_update(
        x, conv_state, weight, bias, bool(silu_activation), cache_seqlens, conv_state_indices
    )


# ---- The opt-in hook (CONTRACT 1.5) ----

_HOOKED = (
    "causal_conv1d",
    "causal_conv1d.causal_conv1d_interface",
    "causal_conv1d.causal_conv1d_varlen",
    "causal_conv1d.cpp_functions",
)


def _shim_modules() -> dict:
    """Module objects standing in for Dao's package and the submodules libraries import."""
    this = sys.modules[__name__]
    interface = types.ModuleType("causal_conv1d.causal_conv1d_interface")
    interface.causal_conv1d_fn = causal_conv1d_fn
    interface.causal_conv1d_update = causal_conv1d_update
    varlen = types.ModuleType("causal_conv1d.causal_conv1d_varlen")
    varlen.causal_conv1d_varlen_states = causal_conv1d_varlen_states
    cpp = types.ModuleType("causal_conv1d.cpp_functions")
    cpp.causal_conv1d_fwd_function = causal_conv1d_fwd_function
    cpp.causal_conv1d_bwd_function = causal_conv1d_bwd_function
    cpp.causal_conv1d_update_function = causal_conv1d_update_function
    package = types.ModuleType("causal_conv1d")
    package.__version__ = DAO_VERSION
    package.__path__ = []  # a package, so that its submodules import
    package.causal_conv1d_fn = causal_conv1d_fn
    package.causal_conv1d_update = causal_conv1d_update
    package.causal_conv1d_varlen_states = causal_conv1d_varlen_states
    package.causal_conv1d_interface = interface
    package.causal_conv1d_varlen = varlen
    package.cpp_functions = cpp
    package.implementation = this  # which library answers
    modules = dict(zip(_HOOKED, (package, interface, varlen, cpp)))
    for name, module in modules.items():
        # What the import system gives a module it loaded from a file, the file being this
        # one (where the functions live): code that reports where a module came from
        # (module.__file__, inspect.getfile, importlib.util.find_spec) finds it.
        is_package = name == "causal_conv1d"
        spec = importlib.machinery.ModuleSpec(
            name, _Finder, origin=this.__file__, is_package=is_package
        )
        spec.has_location = True
        if is_package:
            spec.submodule_search_locations = []
        module.__spec__ = spec
        module.__loader__ = _Finder
        module.__file__ = this.__file__
        module.__package__ = "causal_conv1d"
        if module.__doc__ is None:
            module.__doc__ = f"causal_conv1d_kernels.dao standing in for {name} {DAO_VERSION}."
    return modules


class _Distribution(importlib.metadata.Distribution):
    """Metadata of the stand-in, so that ``importlib.metadata.version("causal_conv1d")`` (HF
    transformers' availability check) finds it."""

    def read_text(self, filename):
        if filename == "METADATA":
            return (
                f"Metadata-Version: 2.1\nName: causal_conv1d\nVersion: {DAO_VERSION}\n"
                "Summary: causal_conv1d_kernels.dao standing in for causal-conv1d\n"
            )
        return None

    def locate_file(self, path):
        return None


class _Finder(importlib.abc.MetaPathFinder):
    """Resolves the hooked names to the stand-in modules."""

    modules: dict = {}

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        module = cls.modules.get(fullname)
        return None if module is None else module.__spec__

    @classmethod
    def create_module(cls, spec):
        return cls.modules[spec.name]

    @classmethod
    def exec_module(cls, module):
        pass

    @classmethod
    def find_distributions(cls, context=None):
        name = getattr(context, "name", None) or ""
        name = name.replace("-", "_").lower()
        if cls.modules and name in ("", "causal_conv1d"):
            return iter([_Distribution()])
        return iter([])


def install_as_causal_conv1d() -> None:
    """Makes ``import causal_conv1d`` (and ``causal_conv1d.causal_conv1d_interface``,
    ``.causal_conv1d_varlen``, ``.cpp_functions``) resolve to this module, for libraries that
    import Dao's package by name; ``importlib.metadata`` reports it as causal_conv1d 1.7.0.
    Call it before importing them. A ``causal_conv1d`` that is already imported is replaced in
    ``sys.modules``, never edited; modules that kept a reference to it keep it. No package is
    installed: the hook lasts for this process. :func:`uninstall` undoes it."""
    _Finder.modules = _shim_modules()
    if _Finder not in sys.meta_path:
        sys.meta_path.insert(0, _Finder)
    sys.modules.update(_Finder.modules)


def uninstall() -> None:
    """Undoes :func:`install_as_causal_conv1d` (the stand-in modules leave sys.modules)."""
    if _Finder in sys.meta_path:
        sys.meta_path.remove(_Finder)
    for name, module in _Finder.modules.items():
        if sys.modules.get(name) is module:
            del sys.modules[name]
    _Finder.modules = {}
