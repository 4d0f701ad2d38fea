// The header-only part of torch that kernels and Params use: ScalarType and the
// inline/host-device macros, from torch/headeronly in a stable-ABI build
// (CAUSAL_CONV1D_STABLE_ABI, see torch_api.h), from c10 otherwise; the same
// names in both. The 16-bit float types (c10::Half, c10::BFloat16) come with
// CAUSAL_CONV1D_FLOAT16_TYPES defined before including this header: never in a
// CPU kernel set's translation unit, where their inline members would be
// compiled with that set's flags.
#pragma once

// The oldest torch a stable-ABI build serves, given to the compiler as TORCH_TARGET_VERSION by
// setup.py and CMakeLists.txt, which read it from this line: torch::stable::from_blob with a
// deleter (the CPU output pool's) came in 2.11.
#define CAUSAL_CONV1D_OLDEST_STABLE_TORCH 2.11
#if defined(CAUSAL_CONV1D_STABLE_ABI) && !defined(TORCH_TARGET_VERSION)
#error "a stable-ABI build needs TORCH_TARGET_VERSION (setup.py and CMakeLists.txt set it)"
#endif

#ifdef CAUSAL_CONV1D_STABLE_ABI
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/macros/Macros.h>
#ifdef CAUSAL_CONV1D_FLOAT16_TYPES
#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>
#endif
#else
#include <c10/core/ScalarType.h>
#include <c10/macros/Macros.h>
#ifdef CAUSAL_CONV1D_FLOAT16_TYPES
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#endif
#endif

#include <cstddef>

namespace causal_conv1d {

using ScalarType = c10::ScalarType;

// Bytes per element of a float tensor (x, weight, bias, states): float32,
// float16 or bfloat16, as the op layer checked.
inline size_t storage_bytes(ScalarType t) { return t == ScalarType::Float ? 4 : 2; }

}  // namespace causal_conv1d
