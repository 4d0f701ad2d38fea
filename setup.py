"""Builds causal_conv1d_kernels._C from source with torch's BuildExtension.

Build switches (environment):
  CAUSAL_CONV1D_BUILD_CUDA=0|1   force the CUDA backend off or on; by default it is
                                 built when torch is a CUDA build, nvcc is found, the
                                 tree has CUDA sources and a GPU is visible or
                                 TORCH_CUDA_ARCH_LIST names architectures.
  CAUSAL_CONV1D_SANITIZE=1       build the C++ sources (CPU backend only, no CUDA)
                                 with AddressSanitizer and UndefinedBehaviorSanitizer,
                                 any undefined behaviour fatal; run Python with
                                 LD_PRELOAD="$(g++ -print-file-name=libasan.so)
                                 $(g++ -print-file-name=libstdc++.so)" (libstdc++ for
                                 C++ exceptions) ASAN_OPTIONS=detect_leaks=0 (see .ci/run).
  CAUSAL_CONV1D_ABI=stable|classic  which torch C++ API to build on (csrc/torch_api.h); by
                                 default torch's stable ABI where torch >= 2.11 (the build
                                 then loads into that torch and every later one), the
                                 classic ATen API on older torch (only that torch).
  TORCH_CUDA_ARCH_LIST=auto|all|<list>  the GPU architectures compiled for: by default (auto)
                                 those of the visible GPUs, every one (8.0, 9.0, 10.0) when
                                 none is visible or with "all"; a list as torch takes it.
  MAX_JOBS                       honoured as torch's BuildExtension does.
"""

import glob
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
PACKAGE_DIR = os.path.join(ROOT, "python", "causal_conv1d_kernels")


def _find_cuda_home():
    """A CUDA toolkit folder (with headers), or None.

    torch guesses CUDA_HOME from the nvcc on PATH, which is wrong when that
    nvcc is a wrapper script outside the toolkit (e.g. /usr/local/bin/nvcc).
    """
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            return os.environ[var]
    candidates = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates.append("/usr/local/cuda")
    for home in candidates:
        if os.path.isfile(os.path.join(home, "include", "cuda_runtime.h")) and os.path.isfile(
            os.path.join(home, "bin", "nvcc")
        ):
            return home
    return None


def _switch(name):
    value = os.environ.get(name)
    if value not in (None, "", "0", "1"):
        raise ValueError(f"{name} must be 0 or 1, got {value!r}")
    return value or None


SANITIZE = _switch("CAUSAL_CONV1D_SANITIZE") == "1"


def _build_cuda(cuda_sources):
    forced = _switch("CAUSAL_CONV1D_BUILD_CUDA")
    if forced == "1" and SANITIZE:
        raise RuntimeError("CAUSAL_CONV1D_SANITIZE=1 builds the CPU backend only")
    if forced == "0" or SANITIZE:
        return False
    available = torch.version.cuda is not None and os.environ.get("CUDA_HOME") is not None
    if forced == "1":
        if not available:
            raise RuntimeError(
                "CAUSAL_CONV1D_BUILD_CUDA=1 needs a CUDA build of torch and a CUDA toolkit "
                f"(torch.version.cuda={torch.version.cuda}, CUDA_HOME not found)"
            )
        if not cuda_sources:
            raise RuntimeError("CAUSAL_CONV1D_BUILD_CUDA=1 but the tree has no CUDA sources")
        return True
    # By default only where the kernels can run or were asked for: a CUDA build links torch's
    # CUDA libraries, so it cannot load beside a CPU build of torch, which is what `pip install
    # .` meets when it compiles against the (CUDA) torch it downloads for the build.
    asked = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip() not in ("", "auto")
    wanted = asked or torch.cuda.is_available()
    return available and bool(cuda_sources) and wanted


cuda_home = _find_cuda_home()
if cuda_home is not None:
    os.environ["CUDA_HOME"] = cuda_home

import torch  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _oldest_stable_torch():
    """(major, minor) of the oldest torch a stable-ABI build serves, from csrc/torch_types.h;
    passed to the compiler as TORCH_TARGET_VERSION, which keeps newer APIs out of the build."""
    with open(os.path.join(ROOT, "csrc", "torch_types.h")) as f:
        found = re.search(r"#define CAUSAL_CONV1D_OLDEST_STABLE_TORCH (\d+)\.(\d+)", f.read())
    return int(found[1]), int(found[2])


STABLE_SINCE = _oldest_stable_torch()


def _torch_release():
    return tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2])


def _abi():
    forced = os.environ.get("CAUSAL_CONV1D_ABI") or None
    if forced not in (None, "stable", "classic"):
        raise ValueError(f"CAUSAL_CONV1D_ABI must be stable or classic, got {forced!r}")
    if forced == "stable" and _torch_release() < STABLE_SINCE:
        raise RuntimeError(
            f"CAUSAL_CONV1D_ABI=stable needs torch >= {STABLE_SINCE[0]}.{STABLE_SINCE[1]}, "
            f"this is torch {torch.__version__}"
        )
    return forced or ("stable" if _torch_release() >= STABLE_SINCE else "classic")


ABI = _abi()
ABI_MACROS = (
    [
        ("CAUSAL_CONV1D_STABLE_ABI", None),
        ("TORCH_TARGET_VERSION", f"0x{STABLE_SINCE[0]:02x}{STABLE_SINCE[1]:02x}000000000000"),
    ]
    if ABI == "stable"
    else [("CAUSAL_CONV1D_CLASSIC_ABI", None)]
)
print(f"causal_conv1d_kernels: building on torch {torch.__version__}'s {ABI} C++ API", flush=True)

# The torch this build compiles against and the API it uses, checked when the package is
# imported (python/causal_conv1d_kernels/_load.py): a classic build loads only into that torch,
# a stable one into it and every later one; the check says why and how to rebuild.
with open(os.path.join(PACKAGE_DIR, "_build_info.py"), "w") as f:
    f.write(
        "# Written by setup.py when the extension is built; not in version control.\n"
        f"TORCH_VERSION = {torch.__version__!r}\n"
        f"ABI = {ABI!r}\n"
        + (f"OLDEST_TORCH = '{STABLE_SINCE[0]}.{STABLE_SINCE[1]}'\n" if ABI == "stable" else "")
    )


def _sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


def _kernel_sets():
    """csrc/cpu/kernel_sets.def: {source: (name, flags)} of the CPU kernel sets that need
    their own flags (the others compile as every source does)."""
    pattern = re.compile(r'^CAUSAL_CONV1D_KERNEL_SET\((\w+), "([^"]+)", "([^"]*)", "[^"]*"\)$')
    with open(os.path.join(ROOT, "csrc", "cpu", "kernel_sets.def")) as f:
        rows = [pattern.match(line.strip()) for line in f]
    return {m[2]: (m[1], m[3].split()) for m in rows if m and m[3]}


# Each CPU kernel set that needs flags lives in its own translation unit, compiled with
# only its flags (never -march=native) and linked in as objects; the dispatcher checks
# CPUID before calling it.
ISA_SOURCES = _kernel_sets()
IS_X86 = platform.machine().lower() in ("x86_64", "amd64")
cpp_sources = [
    s for s in _sources("csrc/*.cpp") + _sources("csrc/cpu/*.cpp") if s not in ISA_SOURCES
]
cuda_sources = _sources("csrc/cuda/*.cu") + _sources("csrc/cuda/*.cpp")
cxx_flags = ["-O3", "-std=c++20", "-fno-math-errno", "-fno-trapping-math"]
nvcc_flags = ["-O3", "-std=c++20", "--use_fast_math"]
if ABI == "stable":
    # Nothing but PyInit__C (marked for export) leaves the library: its C++ symbols never
    # meet another build's, and torch's stable types (hidden) can be members of ours.
    cxx_flags.append("-fvisibility=hidden")
    nvcc_flags += ["-Xcompiler", "-fvisibility=hidden"]
link_flags = []
if SANITIZE:
    sanitizers = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
    cxx_flags += sanitizers + ["-fno-omit-frame-pointer", "-g", "-O1"]
    link_flags += sanitizers
if torch.backends.openmp.is_available():
    # The classic build inlines at::parallel_for into our code: without OpenMP it runs
    # serially. (The stable build calls torch's own, through its C shim.)
    cxx_flags.append("-fopenmp")
    link_flags.append("-fopenmp")


def _all_cuda_archs(cuda_home):
    """8.0, 9.0 and 10.0, as far as this nvcc can compile for them."""
    nvcc = os.path.join(cuda_home, "bin", "nvcc")
    try:
        listed = subprocess.check_output([nvcc, "--list-gpu-arch"], text=True).split()
    except (OSError, subprocess.CalledProcessError):
        return "8.0;9.0"
    return ";".join(a for a in ("8.0", "9.0", "10.0") if f"compute_{a.replace('.', '')}" in listed)


def _cuda_archs(cuda_home):
    """TORCH_CUDA_ARCH_LIST as given; unset or "auto": the visible GPUs' architectures (one
    compile each instead of three), or every architecture when no GPU is visible; "all": every
    architecture."""
    asked = os.environ.get("TORCH_CUDA_ARCH_LIST", "auto").strip() or "auto"
    if asked not in ("auto", "all"):
        return asked
    if asked == "auto" and torch.cuda.is_available():
        found = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
        return ";".join(f"{major}.{minor}" for major, minor in sorted(found))
    return _all_cuda_archs(cuda_home)


# A stable-ABI build's Python module uses Python's limited API (csrc/module.cpp): _C.abi3.so
# and a cp39-abi3 wheel, for every CPython from 3.9 on.
LIMITED_API = {"py_limited_api": True} if ABI == "stable" else {}

if _build_cuda(cuda_sources):
    os.environ["TORCH_CUDA_ARCH_LIST"] = _cuda_archs(os.environ["CUDA_HOME"])
    print(
        "causal_conv1d_kernels: compiling the CUDA kernels for "
        f"{os.environ['TORCH_CUDA_ARCH_LIST']} (TORCH_CUDA_ARCH_LIST)",
        flush=True,
    )
    extension = CUDAExtension(
        "causal_conv1d_kernels._C",
        cpp_sources + cuda_sources,
        extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
        extra_link_args=link_flags,
        define_macros=[("CAUSAL_CONV1D_WITH_CUDA", None)] + ABI_MACROS,
        **LIMITED_API,
    )
else:
    extension = CppExtension(
        "causal_conv1d_kernels._C",
        cpp_sources,
        extra_compile_args=cxx_flags,
        extra_link_args=link_flags,
        define_macros=ABI_MACROS,
        **LIMITED_API,
    )


class BuildWithIsaKernels(BuildExtension):
    """BuildExtension, plus the ISA translation units compiled each with its own flags
    (which BuildExtension cannot do per file) and linked in as objects. An ISA whose
    flags the compiler rejects is left out; the dispatcher then never offers it."""

    def build_extensions(self):
        # An extension of another name left by an earlier build (_C.cpython-3xx-*.so of a
        # classic build, _C.abi3.so of a stable one), in build/lib or in the source package
        # (editable builds), would be packaged or imported in place of this build's: every one
        # goes, and the build puts its own back.
        for extension in self.extensions:
            places = {os.path.dirname(self.get_ext_fullpath(extension.name)), PACKAGE_DIR}
            for stale in (path for place in places for path in glob.glob(place + "/_C*.so")):
                os.remove(stale)
        if IS_X86:
            for extension in self.extensions:
                for source, (name, flags) in ISA_SOURCES.items():
                    if not self._compiler_accepts(flags):
                        print(f"causal_conv1d_kernels: compiler lacks {flags}; no {name} kernels")
                        continue
                    extension.extra_objects += self._compile_isa(source, extension, flags)
        super().build_extensions()

    def _compiler_accepts(self, flags):
        with tempfile.TemporaryDirectory() as tmp:
            probe = os.path.join(tmp, "probe.cpp")
            with open(probe, "w") as f:
                f.write("int main() { return 0; }\n")
            try:
                self.compiler.compile([probe], output_dir=tmp, extra_postargs=flags)
            except Exception:  # noqa: BLE001 (any compiler failure means: not supported)
                return False
        return True

    def _compile_isa(self, source, extension, flags):
        """The ISA unit's object, compiled unless the build folder holds one made by the same
        command (compiler, macros, include folders, flags, torch) after every file under csrc/
        and setup.py last changed: ninja does this for the other units, distutils does not."""
        import torch.utils.cpp_extension as cpp

        abi = f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"
        include_dirs = cpp.include_paths() + extension.include_dirs
        # -Wno-*uninitialized: GCC 12 warns inside its own AVX-512 intrinsic headers
        # (`__Y = __Y`), thousands of lines that would bury a `pip install -v` log.
        postargs = cxx_flags + ["-fPIC", abi, "-Wno-uninitialized", "-Wno-maybe-uninitialized"]
        postargs += flags
        (obj,) = self.compiler.object_filenames([source], output_dir=self.build_temp)
        command = json.dumps(
            [self.compiler.compiler_so, ABI_MACROS, include_dirs, postargs, torch.__version__]
        )
        stamp = obj + ".command"
        if _built_after_sources(obj) and _read(stamp) == command:
            print(f"causal_conv1d_kernels: {source} up to date")
            return [obj]
        if os.path.exists(stamp):  # a compile cut short must not leave a matching stamp
            os.remove(stamp)
        objects = self.compiler.compile(
            [source],
            output_dir=self.build_temp,
            include_dirs=include_dirs,
            macros=ABI_MACROS,
            extra_postargs=postargs,
        )
        with open(stamp, "w") as f:
            f.write(command)
        return objects


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _built_after_sources(obj):
    """Whether obj exists and is newer than setup.py and every file under csrc/ but the CUDA
    backend's (headers included: a unit's includes are not tracked one by one; no CPU unit
    includes csrc/cuda/)."""
    if not os.path.exists(obj):
        return False
    cuda = os.path.join(ROOT, "csrc", "cuda")
    sources = [
        f
        for f in glob.glob(os.path.join(ROOT, "csrc", "**", "*"), recursive=True)
        if os.path.isfile(f) and not f.startswith(cuda + os.sep)
    ]
    newest = max(os.path.getmtime(f) for f in [*sources, os.path.join(ROOT, "setup.py")])
    return os.path.getmtime(obj) > newest


setup(
    ext_modules=[extension],
    cmdclass={"build_ext": BuildWithIsaKernels},
    options={"bdist_wheel": {"py_limited_api": "cp39"}} if ABI == "stable" else {},
)
