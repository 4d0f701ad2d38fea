"""SGLang's AVX-512 CPU causal conv1d (the seed's CPU kernel, vendored in vLLM 0.33 as
csrc/cpu/sgl-kernels/conv.cpp) built as a benchmark peer, outside the package: its sources are
taken from vLLM 0.33's sdist at benchmark time and compiled with SGLang's AVX-512/AMX flags as
a small torch extension of their own (nothing of it is copied into the project).

    python -m benchmarks sglang-peer --sdist vllm-0.33.0.tar.gz   # build and self-test

From Python: ``peer = load(sdist)``; ``peer.fwd(...)`` / ``peer.update(...)`` /
``peer.pack(weight)`` call its ops (weights pre-packed outside the timed call).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile

import torch

from . import subcommand_parser

SOURCES = [
    "csrc/cpu/sgl-kernels/conv.cpp",
    "csrc/cpu/sgl-kernels/conv_arm.h",
    "csrc/cpu/sgl-kernels/common.h",
    "csrc/cpu/sgl-kernels/gemm.h",
    "csrc/cpu/sgl-kernels/blas_gemm.h",
    "csrc/cpu/sgl-kernels/vec.h",
    "csrc/cpu/cpu_types_riscv_defs.hpp",
]
# SGLang's (and vLLM's CPU build's) flags for its AVX-512 + AMX kernels.
FLAGS = [
    "-O3",
    "-fopenmp",
    "-mavx512f",
    "-mavx512vl",
    "-mavx512bw",
    "-mavx512dq",
    "-mavx512bf16",
    "-mavx512vnni",
    "-mamx-bf16",
    "-mamx-tile",
]
# The three entry points of conv.cpp, registered under a namespace of our own.
BINDING = r"""
#include <torch/library.h>
#include <ATen/ATen.h>
#include <optional>

at::Tensor causal_conv1d_weight_pack(const at::Tensor& weight);
at::Tensor causal_conv1d_fwd_cpu(const at::Tensor& x, const at::Tensor& weight,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& conv_states,
    const std::optional<at::Tensor>& query_start_loc,
    const std::optional<at::Tensor>& conv_state_indices,
    const std::optional<at::Tensor>& has_initial_state, bool silu_activation,
    int64_t pad_slot_id, bool is_weight_packed);
at::Tensor causal_conv1d_update_cpu(const at::Tensor& x, const at::Tensor& conv_states,
    const at::Tensor& weight, const std::optional<at::Tensor>& bias, bool silu_activation,
    const std::optional<at::Tensor>& num_accepted_tokens,
    const std::optional<at::Tensor>& conv_state_indices, int64_t pad_slot_id,
    bool is_weight_packed);

TORCH_LIBRARY(sglang_conv_peer, m) {
  m.def("pack(Tensor weight) -> Tensor", &causal_conv1d_weight_pack);
  m.def("fwd(Tensor x, Tensor weight, Tensor? bias, Tensor? conv_states, "
        "Tensor? query_start_loc, Tensor? conv_state_indices, Tensor? has_initial_state, "
        "bool silu, int pad_slot_id, bool is_weight_packed) -> Tensor",
        &causal_conv1d_fwd_cpu);
  m.def("update(Tensor x, Tensor conv_states, Tensor weight, Tensor? bias, bool silu, "
        "Tensor? num_accepted_tokens, Tensor? conv_state_indices, int pad_slot_id, "
        "bool is_weight_packed) -> Tensor",
        &causal_conv1d_update_cpu);
}
"""


def load(sdist: str, build_dir: str | None = None, verbose: bool = False):
    """Builds (or reuses) the peer from vLLM 0.33's sdist (the .tar.gz, or a folder holding
    SOURCES at their sdist paths, small enough to carry to another machine); returns
    torch.ops.sglang_conv_peer."""
    from torch.utils.cpp_extension import load as load_extension

    build_dir = build_dir or os.path.join(tempfile.gettempdir(), "sglang_conv_peer")
    src_dir = os.path.join(build_dir, "src")
    os.makedirs(src_dir, exist_ok=True)
    if os.path.isdir(sdist):  # the sdist's tree, or just the SOURCES under it
        for rel in SOURCES:
            os.makedirs(os.path.dirname(os.path.join(src_dir, rel)), exist_ok=True)
            shutil.copyfile(os.path.join(sdist, rel), os.path.join(src_dir, rel))
    else:
        with tarfile.open(sdist) as tar:
            root = tar.getnames()[0].split("/")[0]
            for rel in SOURCES:
                member = tar.getmember(f"{root}/{rel}")
                member.name = rel
                tar.extract(member, src_dir)
    binding = os.path.join(src_dir, "binding.cpp")
    with open(binding, "w") as f:
        f.write(BINDING)
    load_extension(
        name="sglang_conv_peer",
        sources=[os.path.join(src_dir, "csrc/cpu/sgl-kernels/conv.cpp"), binding],
        extra_cflags=FLAGS,
        extra_ldflags=["-fopenmp"],
        build_directory=build_dir,
        is_python_module=False,
        verbose=verbose,
    )
    return torch.ops.sglang_conv_peer


def main(argv=None) -> int:
    parser = subcommand_parser("sglang-peer", __doc__)
    parser.add_argument("--sdist", required=True, help="vllm-0.33.0.tar.gz, or a folder of SOURCES")
    args = parser.parse_args(argv)
    peer = load(args.sdist, verbose=True)
    dim, width = 256, 4
    weight = torch.randn(dim, width, dtype=torch.bfloat16)
    packed = peer.pack(weight)
    print("built; packed weight", tuple(packed.shape))
    return 0
