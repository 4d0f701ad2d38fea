"""Copy Dao-AILab causal-conv1d 1.7's sdist tree with its CUDA kernels instantiated for bf16 x
and bf16 weights only: the same kernel code for the bf16 rows of `python -m benchmarks train`
and `bench`, built in about a fifth of the full build's time (77 s on 2 cores against 4-6 min
on 16), so that a short device call can build the peer beside its tests. Any other dtype then
raises in Dao's dispatch. Used by benchmarks/device_run.sh (DAO_BF16_ONLY=1).

    python benchmarks/dao_bf16_only.py SRC_DIR DST_DIR
"""

from __future__ import annotations

import re
import shutil
import sys

BF16 = "<at::BFloat16, at::BFloat16>"


def dispatch_bf16_only(source: str) -> str:
    """The two dtype dispatch macros of csrc/causal_conv1d.cpp reduced to their bf16 branch."""
    for macro, alias in (("ITYPE", "input_t"), ("WTYPE", "weight_t")):
        name = f"DISPATCH_{macro}_FLOAT_AND_HALF_AND_BF16"
        head = re.compile(rf"#define {name}\({macro}, NAME, \.\.\.\)[^\n]*\n")
        found = head.search(source)
        if not found:
            raise SystemExit(f"{name} not found: not Dao 1.7's sources?")
        end = source.index("\n\n", found.end())
        body = (
            f"    if ({macro} == at::ScalarType::BFloat16) {{ \\\n"
            f"        using {alias} = at::BFloat16; \\\n"
            "        __VA_ARGS__(); \\\n"
            "    } else { \\\n"
            '        AT_ERROR(#NAME, " (bf16-only build) not implemented for ", '
            f"toString({macro})); \\\n"
            "    }"
        )
        source = source[: found.end()] + body + source[end:]
    return source


def main(src: str, dst: str) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)
    path = f"{dst}/csrc/causal_conv1d.cpp"
    with open(path) as f:
        text = dispatch_bf16_only(f.read())
    with open(path, "w") as f:
        f.write(text)
    for name in ("causal_conv1d_fwd.cu", "causal_conv1d_bwd.cu", "causal_conv1d_update.cu"):
        path = f"{dst}/csrc/{name}"
        with open(path) as f:
            lines = f.read().split("\n")
        kept = [ln for ln in lines if not (ln.startswith("template void") and BF16 not in ln)]
        with open(path, "w") as f:
            f.write("\n".join(kept))
        print(f"{name}: {len(lines) - len(kept)} instantiations dropped")


if __name__ == "__main__":
    main(*sys.argv[1:3])
