"""Causal depthwise conv1d for Mamba-family inference.

Two ops, registered as ``torch.ops.causal_conv1d.*`` when this package is imported:
prefill over packed variable-length sequences (:func:`causal_conv1d_fn`) and decode over a
conv-state cache (:func:`causal_conv1d_update`); vLLM 0.33's API in
:mod:`causal_conv1d_kernels.vllm`. ``docs/CONTRACT.md`` in the repository is the contract.
"""

import torch  # noqa: F401  (loads libtorch, which _C links against)

from ._load import load_extension

load_extension()  # imports _C, whose static initialisers register the ops

from . import _registrations  # noqa: E402, F401  (fakes and autograd of the registered ops)
from .ops import (  # noqa: E402
    PAD_SLOT_ID,
    abi,
    causal_conv1d_fn,
    causal_conv1d_update,
    cpu_isa,
    has_cuda_backend,
    release_cpu_pool,
    set_pdl,
    settings,
)

__all__ = [
    "PAD_SLOT_ID",
    "abi",
    "causal_conv1d_fn",
    "causal_conv1d_update",
    "cpu_isa",
    "has_cuda_backend",
    "release_cpu_pool",
    "set_pdl",
    "settings",
]
__version__ = "0.1.0"
