"""SGLang 0.5.23's CUDA causal conv1d kernels as benchmark peers, outside the package:

* its JIT CUDA kernel (sglang/kernels/jit/csrc/mamba/causal_conv1d.cuh: prefill and decode, in
  place into x), compiled the way SGLang's `load_jit` compiles it: the same nvcc flags (sm_XYa,
  -DSGL_CUDA_ARCH, -std=c++20 -O3 --expt-relaxed-constexpr, --use_fast_math on sm_90 only), the
  same generated tvm-ffi wrapper (TVM_FFI_DLL_EXPORT_TYPED_FUNC of causal_conv1d_fwd<T> and
  causal_conv1d_update<T>), one module per dtype, loaded with tvm_ffi.load_module;
* its Triton kernels (sglang/kernels/ops/mamba/causal_conv1d_triton.py: prefill, decode, EAGLE
  tree verify), imported from their source with its one `sglang` import replaced.

Both are read from the sglang==0.5.23 wheel at benchmark time (or from a folder holding FILES
at their wheel paths, which --extract writes: small enough to carry); the `sglang` package is
never imported and nothing of it is copied into the project. Needs nvcc (CUDA_HOME) and
apache-tvm-ffi==0.1.11, the version sglang 0.5.23 pins (for CPython 3.12, offline:
pip install --no-index --no-deps
.peers/apache_tvm_ffi-0.1.11-cp312-abi3-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl).

    python -m benchmarks sglang-cuda-peer --wheel sglang-0.5.23-...whl   # build and self-test
    python -m benchmarks sglang-cuda-peer --wheel W --extract .peers/sglang-0.5.23  # FILES only

From Python: ``jit = load_jit(wheel)``; ``jit.fwd(x, weight, bias, conv_states,
query_start_loc, cache_indices, has_initial_state, silu, pad_slot_id)`` and ``jit.update(x,
conv_state, weight, bias, silu, cache_seqlens, conv_state_indices, pad_slot_id)`` (both in
place into x, as sglang/kernels/ops/mamba/causal_conv1d.py calls them); ``tri =
load_triton(wheel)``; ``tri.causal_conv1d_fn(...)`` / ``tri.causal_conv1d_update(...)``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

import torch

from . import subcommand_parser

JIT = "sglang/kernels/jit/"
CUH = JIT + "csrc/mamba/causal_conv1d.cuh"
INCLUDE = JIT + "include/"  # sgl_kernel/*.h, *.cuh (the whole folder: about 0.5 MB)
TRITON = "sglang/kernels/ops/mamba/causal_conv1d_triton.py"
# sglang/kernels/jit/utils/compile/cpp_args.py: CPP_DTYPE_MAP
CPP_DTYPES = {torch.bfloat16: "bf16_t", torch.float16: "fp16_t", torch.float32: "fp32_t"}
# What SGLang's generated wrapper includes ahead of the kernel (compile/spec.py: _FFI_INCLUDES).
FFI_INCLUDES = [
    "tvm/ffi/container/tensor.h",
    "tvm/ffi/dtype.h",
    "tvm/ffi/error.h",
    "tvm/ffi/extra/c_env_api.h",
    "tvm/ffi/function.h",
]
# The Triton file's one `sglang` import, and what stands in for it (SGLang's own returns
# get_jit_cuda_arch().major >= 9 on CUDA, cached).
SGLANG_IMPORT = "from sglang.kernels.jit.utils import is_arch_support_pdl\n"
STAND_IN = """import functools


@functools.cache
def is_arch_support_pdl():  # stands in for sglang.kernels.jit.utils.is_arch_support_pdl
    return torch.version.hip is None and torch.cuda.get_device_capability()[0] >= 9
"""


def extract(wheel: str, dest: str) -> str:
    """Writes the files the peers need (the .cuh, the include folder, the Triton file) from
    the wheel, or from a folder holding them at their wheel paths, under dest; returns dest."""

    def wanted(name):
        return name in (CUH, TRITON) or (name.startswith(INCLUDE) and not name.endswith("/"))

    if os.path.isdir(wheel):
        names = [
            os.path.relpath(os.path.join(d, f), wheel).replace(os.sep, "/")
            for d, _, files in os.walk(os.path.join(wheel, "sglang"))
            for f in files
        ]
        for rel in filter(wanted, names):
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            if os.path.abspath(wheel) != os.path.abspath(dest):
                shutil.copyfile(os.path.join(wheel, rel), os.path.join(dest, rel))
    else:
        with zipfile.ZipFile(wheel) as whl:
            whl.extractall(dest, [n for n in whl.namelist() if wanted(n)])
    for rel in (CUH, TRITON, INCLUDE + "sgl_kernel/tensor.h"):
        if not os.path.isfile(os.path.join(dest, rel)):
            raise FileNotFoundError(f"{rel} is not in {wheel}")
    return dest


def _cuda_home() -> str:
    """The CUDA root, found the way SGLang (and tvm-ffi) find it."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    nvcc = shutil.which("nvcc")
    return home or (os.path.dirname(os.path.dirname(nvcc)) if nvcc else "/usr/local/cuda")


def _arch(arch: str | None) -> tuple[int, int]:
    if arch:
        major, minor = arch.split(".")
        return int(major), int(minor)
    return torch.cuda.get_device_capability()


def build_commands(src: str, obj: str, lib: str, arch: tuple[int, int]) -> list[list[str]]:
    """nvcc and link command lines of one module, as SGLang's build.ninja spells them
    (compile/ninja.py, toolchain.py, arch.py get_default_target_flags, and the
    causal_conv1d module's --use_fast_math on sm_90 only)."""
    from tvm_ffi.libinfo import find_dlpack_include_path, find_include_path, find_libtvm_ffi

    major, minor = arch
    # arch.py _cuda_arch_suffix: 9.x, 10.x+ -> a; 12.0 -> f (nvcc >= 12.9); below 9.0 none.
    suffix = "f" if (major, minor) == (12, 0) else "a" if major >= 9 else ""
    target = f"{major}{minor}{suffix}"
    includes = [find_include_path(), find_dlpack_include_path(), os.path.join(src, INCLUDE)]
    includes = list(dict.fromkeys(includes))
    cuda_home = _cuda_home()
    libtvm = find_libtvm_ffi()
    nvcc = [os.path.join(cuda_home, "bin", "nvcc"), "-Xcompiler", "-fPIC"]
    nvcc += [f"-gencode=arch=compute_{target},code=sm_{target}"]
    nvcc += [f"-DSGL_CUDA_ARCH={major * 100 + minor * 10}", "-std=c++20", "-O3"]
    nvcc += ["--expt-relaxed-constexpr"] + (["--use_fast_math"] if arch == (9, 0) else [])
    nvcc += [f"-I{path}" for path in includes]
    nvcc += ["-c", os.path.join(os.path.dirname(obj), "cuda.cu"), "-o", obj]
    link = [os.environ.get("CXX", "c++"), obj, "-shared", f"-L{os.path.dirname(libtvm)}"]
    link += ["-l" + os.path.basename(libtvm)[3:].split(".so")[0]]
    link += [f"-L{cuda_home}/lib64", "-lcudart", "-o", lib]
    return [nvcc, link]


class JitPeer:
    """SGLang's JIT causal conv1d, one tvm-ffi module per dtype (built on first use)."""

    def __init__(self, src: str, build_dir: str, arch: str | None = None, verbose=False):
        self.src, self.build_dir = os.path.abspath(src), os.path.abspath(build_dir)
        self.verbose = verbose
        self.arch = _arch(arch)
        self._fwd, self._update = {}, {}

    def module_dir(self, dtype: torch.dtype) -> tuple[str, str]:
        # compile/spec.py: module_name = "sgl_kernel_jit_" + "_".join(load_jit's args)
        mode = "fast_math" if self.arch == (9, 0) else "precise_math"
        name = f"sgl_kernel_jit_causal_conv1d_{mode}_{CPP_DTYPES[dtype]}"
        return name, os.path.join(self.build_dir, f"sm{self.arch[0]}{self.arch[1]}", name)

    def build(self, dtypes, load: bool = True) -> None:
        """Compiles the modules of dtypes not built yet (side by side), then loads them."""
        jobs = []
        for dtype in dtypes:
            name, out = self.module_dir(dtype)
            lib = os.path.join(out, name + ".so")
            # compile/spec.py _wrapper_source, with the .cuh at its absolute path.
            args = CPP_DTYPES[dtype]
            wrapper = [f"#include <{h}>" for h in FFI_INCLUDES]
            wrapper += [f'#include "{os.path.abspath(os.path.join(self.src, CUH))}"']
            wrapper += ["namespace sglang {"]
            wrapper += [
                f"TVM_FFI_DLL_EXPORT_TYPED_FUNC({f}, ({f}<{args}>));"
                for f in ("causal_conv1d_fwd", "causal_conv1d_update")
            ]
            wrapper += ["}  // namespace sglang", ""]
            commands = build_commands(self.src, os.path.join(out, "cuda_0.o"), lib, self.arch)
            stamp = "\n".join(wrapper) + "\n".join(map(" ".join, commands))
            stamp_file = os.path.join(out, "build.txt")
            if os.path.isfile(lib) and _read(stamp_file) == stamp:
                continue
            os.makedirs(out, exist_ok=True)
            with open(os.path.join(out, "cuda.cu"), "w") as f:
                f.write("\n".join(wrapper))
            if self.verbose:
                print(" ".join(commands[0]), flush=True)
            jobs.append((subprocess.Popen(commands[0], cwd=out), commands[1], stamp_file, stamp))
        failed = [stamp_file for nvcc, _, stamp_file, _ in jobs if nvcc.wait() != 0]
        if failed:
            raise RuntimeError(f"nvcc failed for {failed}")
        for _, link, stamp_file, stamp in jobs:
            subprocess.run(link, check=True)
            with open(stamp_file, "w") as f:
                f.write(stamp)
        if load:
            for dtype in dtypes:
                self._load(dtype)

    def _load(self, dtype: torch.dtype) -> None:
        import tvm_ffi

        name, out = self.module_dir(dtype)
        module = tvm_ffi.load_module(os.path.join(out, name + ".so"))
        self._fwd[dtype] = module.causal_conv1d_fwd
        self._update[dtype] = module.causal_conv1d_update

    def fwd(
        self,
        x,
        weight,
        bias,
        conv_states,
        query_start_loc,
        cache_indices,
        has_initial_state,
        silu,
        pad_slot_id=-1,
    ):
        """Prefill, in place into x: (batch, dim, seqlen), or (dim, total) with query_start_loc;
        x unit-stride along tokens, cache_indices int32, has_initial_state bool."""
        if x.dtype not in self._fwd:
            self.build([x.dtype])
        self._fwd[x.dtype](
            x,
            weight,
            bias,
            conv_states,
            query_start_loc,
            cache_indices,
            has_initial_state,
            silu,
            pad_slot_id,
        )
        return x

    def update(
        self,
        x,
        conv_state,
        weight,
        bias,
        silu,
        cache_seqlens=None,
        conv_state_indices=None,
        pad_slot_id=-1,
    ):
        """Decode, in place into x (batch, dim, seqlen); conv_state_indices int32."""
        if x.dtype not in self._update:
            self.build([x.dtype])
        self._update[x.dtype](
            x, conv_state, weight, bias, silu, cache_seqlens, conv_state_indices, pad_slot_id
        )
        return x


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _default_build_dir() -> str:
    return os.path.join(tempfile.gettempdir(), "sglang_cuda_peer")


def _sources(wheel: str, build_dir: str) -> str:
    if os.path.isdir(wheel):
        return extract(wheel, wheel)  # checks that the files are there
    return extract(wheel, os.path.join(build_dir, "src"))


def load_jit(
    wheel: str,
    build_dir: str | None = None,
    dtypes=(torch.bfloat16,),
    arch: str | None = None,
    verbose: bool = False,
) -> JitPeer:
    """Builds (or reuses) SGLang's JIT causal conv1d for dtypes (others are built on first
    use) for this GPU, or for arch ("9.0") without one; returns the peer (fwd, update)."""
    build_dir = build_dir or _default_build_dir()
    peer = JitPeer(_sources(wheel, build_dir), build_dir, arch, verbose)
    peer.build(dtypes)
    return peer


def load_triton(wheel: str, build_dir: str | None = None):
    """SGLang's causal_conv1d_triton.py, its `sglang` import replaced by a local stand-in,
    written under build_dir and imported as a module of its own."""
    build_dir = build_dir or _default_build_dir()
    with open(os.path.join(_sources(wheel, build_dir), TRITON)) as f:
        source = f.read()
    if SGLANG_IMPORT not in source:
        raise RuntimeError(f"{TRITON}: its sglang import is not the one expected")
    source = source.replace(SGLANG_IMPORT, STAND_IN)
    if re.search(r"^\s*(from|import)\s+sglang\b", source, re.MULTILINE):
        raise RuntimeError(f"{TRITON} imports more of sglang than is replaced")
    name = "sglang_causal_conv1d_triton"
    path = os.path.join(build_dir, name + ".py")
    os.makedirs(build_dir, exist_ok=True)
    if _read(path) != source:
        with open(path, "w") as f:
            f.write(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# The self-test: float64 references.


def _conv(xs, weight, bias, silu):
    """xs (dim, width - 1 + n) -> (dim, n): the causal depthwise conv over the window."""
    y = (xs.unfold(1, weight.shape[1], 1) * weight[:, None, :]).sum(-1) + bias[:, None]
    return y * torch.sigmoid(y) if silu else y


def _ref_prefill(x, weight, bias, states, qsl, idx, has_init, silu):
    out, states, width = torch.empty_like(x), states.clone(), weight.shape[1]
    for s in range(len(idx)):
        lo, hi = qsl[s], qsl[s + 1]
        init = states[idx[s]] if has_init[s] else torch.zeros_like(states[0])
        xs = torch.cat([init, x[:, lo:hi]], 1)
        out[:, lo:hi] = _conv(xs, weight, bias, silu)
        states[idx[s]] = xs[:, xs.shape[1] - (width - 1) :]
    return out, states


def _ref_decode(x, weight, bias, states, idx, silu):
    out, states, width = torch.empty_like(x), states.clone(), weight.shape[1]
    for b in range(x.shape[0]):
        xs = torch.cat([states[idx[b]], x[b]], 1)
        out[b] = _conv(xs, weight, bias, silu)
        states[idx[b]] = xs[:, xs.shape[1] - (width - 1) :]
    return out, states


def _ref_tree(x, weight, bias, states, idx, parents, silu):
    """EAGLE tree verify: token i convolves over itself, its parent, grandparent, ..., then
    the conv state (last column first); also the window each token leaves behind."""
    batch, dim, n = x.shape
    width = weight.shape[1]
    out = torch.empty_like(x)
    window = torch.empty(batch, n, dim, width - 1, dtype=x.dtype, device=x.device)
    for b in range(batch):
        state = states[idx[b]]
        for i in range(n):
            chain, t = [], i
            while len(chain) < width:
                chain.append(x[b, :, t] if t >= 0 else state[:, width - 1 + t])
                t = -1 if t == 0 else parents[b][t] if t > 0 else t - 1
            xs = torch.stack(chain[::-1], 1)
            out[b, :, i] = _conv(xs, weight, bias, silu)[:, 0]
            window[b, i] = xs[:, 1:]
    return out, window


def _check(what, got, ref, dtype) -> bool:
    tol = {torch.bfloat16: 2e-2, torch.float16: 2e-3, torch.float32: 1e-4}[dtype]
    err = (got.double() - ref).abs().max().item()
    ok = torch.allclose(got.double(), ref, rtol=tol, atol=tol)
    print(f"  {what:40s} max abs err {err:.3g}  {'ok' if ok else 'FAIL'}")
    return ok


def self_test(jit: JitPeer | None, tri, dtype=torch.bfloat16, dim=384, width=4) -> bool:
    """One varlen prefill with conv states and one decode through both peers, and one
    tree-verify call of the Triton update, against float64 references."""
    dev, ok = "cuda", True
    torch.manual_seed(0)
    weight = (torch.randn(dim, width, device=dev) / width).to(dtype)
    bias = (torch.randn(dim, device=dev) * 0.1).to(dtype)
    w64, b64 = weight.double(), bias.double()
    slots = 8
    states = torch.randn(slots, dim, width - 1, device=dev).to(dtype)

    # Varlen prefill: 4 sequences, states gathered by cache index, one starting from zeros.
    lens, idx, has_init = [37, 5, 1, 130], [6, 2, 5, 0], [True, False, True, True]
    qsl = [0]
    for n in lens:
        qsl.append(qsl[-1] + n)
    x = torch.randn(dim, qsl[-1], device=dev).to(dtype)
    ref, ref_states = _ref_prefill(x.double(), w64, b64, states.double(), qsl, idx, has_init, True)
    qsl_t = torch.tensor(qsl, dtype=torch.int32, device=dev)
    idx_t = torch.tensor(idx, dtype=torch.int32, device=dev)
    init_t = torch.tensor(has_init, device=dev)
    if jit is not None:
        got, got_states = x.clone(), states.clone()
        jit.fwd(got, weight, bias, got_states, qsl_t, idx_t, init_t, True, -1)
        ok &= _check("jit fwd (varlen, conv states)", got, ref, dtype)
        ok &= _check("jit fwd: conv states", got_states, ref_states, dtype)
    # SGLang hands the Triton prefill x channel-last: (total, dim) transposed.
    xt, got_states = x.t().contiguous().t(), states.clone()
    got = tri.causal_conv1d_fn(
        xt, weight, bias, got_states, qsl_t, lens, idx_t, init_t, activation="silu"
    )
    ok &= _check("triton causal_conv1d_fn (varlen)", got, ref, dtype)
    ok &= _check("triton causal_conv1d_fn: conv states", got_states, ref_states, dtype)

    # Decode: one token per sequence, states gathered by index.
    idx = [3, 7, 1, 4]
    idx_t = torch.tensor(idx, dtype=torch.int32, device=dev)
    x = torch.randn(len(idx), dim, 1, device=dev).to(dtype)
    ref, ref_states = _ref_decode(x.double(), w64, b64, states.double(), idx, True)
    if jit is not None:
        got, got_states = x.clone(), states.clone()
        jit.update(got, got_states, weight, bias, True, None, idx_t, -1)
        ok &= _check("jit update (decode)", got, ref, dtype)
        ok &= _check("jit update: conv state", got_states, ref_states, dtype)
    got_states = states.clone()
    got = tri.causal_conv1d_update(x, got_states, weight, bias, "silu", conv_state_indices=idx_t)
    ok &= _check("triton causal_conv1d_update (decode)", got, ref, dtype)
    ok &= _check("triton causal_conv1d_update: conv state", got_states, ref_states, dtype)

    # EAGLE tree verify (as sglang's mamba layer calls it): 4 draft tokens, x a transposed view
    # of (batch, tokens, dim); one tree (0 -> 1 -> 3, 0 -> 2) and one chain.
    n, idx = 4, [5, 2]
    next_token = [[1, 3, -1, -1], [1, 2, 3, -1]]
    next_sibling = [[-1, 2, -1, -1], [-1, -1, -1, -1]]
    parents = [[0, 0, 0, 1], [0, 0, 1, 2]]
    x = torch.randn(len(idx), n, dim, device=dev).to(dtype).transpose(1, 2)
    ref, ref_window = _ref_tree(x.double(), w64, b64, states.double(), idx, parents, True)
    window = torch.zeros(slots, n, dim, width - 1, device=dev, dtype=dtype)
    parent_out = torch.full((len(idx), n), -7, dtype=torch.int32, device=dev)

    def i32(v):
        return torch.tensor(v, dtype=torch.int32, device=dev)

    got = tri.causal_conv1d_update(
        x,
        states.clone(),
        weight,
        bias,
        "silu",
        conv_state_indices=i32(idx),
        intermediate_conv_window=window,
        intermediate_state_indices=i32([0, 1]),
        retrieve_next_token=i32(next_token),
        retrieve_next_sibling=i32(next_sibling),
        retrieve_parent_token=parent_out,
    )
    ok &= _check("triton update (EAGLE tree verify)", got, ref, dtype)
    ok &= _check("triton update: intermediate windows", window[:2], ref_window, dtype)
    same = parent_out.tolist() == parents
    print(
        f"  {'triton update: retrieve_parent_token':40s} {parent_out.tolist()}  "
        f"{'ok' if same else 'FAIL'}"
    )
    return ok and same


def main(argv=None) -> int:
    parser = subcommand_parser("sglang-cuda-peer", __doc__)
    parser.add_argument("--wheel", required=True, help="the sglang 0.5.23 wheel, or a folder")
    parser.add_argument("--extract", metavar="DIR", help="only write the files needed to DIR")
    parser.add_argument("--build-dir", help="default: $TMPDIR/sglang_cuda_peer")
    parser.add_argument("--dtypes", default="bfloat16", help="comma-separated (bfloat16)")
    parser.add_argument("--arch", help='compile for this arch ("9.0") and do not run')
    args = parser.parse_args(argv)
    if args.extract:
        print("wrote", extract(args.wheel, args.extract))
        return 0
    dtypes = [getattr(torch, name) for name in args.dtypes.split(",")]
    start = time.perf_counter()
    jit = load_jit(args.wheel, args.build_dir, [], args.arch, verbose=True)
    jit.build(dtypes, load=not args.arch)
    print(f"built {len(dtypes)} module(s) in {time.perf_counter() - start:.1f} s:")
    for dtype in dtypes:
        print("  ", jit.module_dir(dtype)[1])
    tri = load_triton(args.wheel, args.build_dir)
    print("imported", tri.__file__)
    if args.arch:
        return 0
    ok = True
    for dtype in dtypes:
        print(f"self-test, {dtype}:")
        ok &= self_test(jit, tri, dtype)
    print("all ok" if ok else "FAILED")
    return 0 if ok else 1
