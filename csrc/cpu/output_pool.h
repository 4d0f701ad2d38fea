// Memory for the large outputs the CPU ops return (a fresh prefill output, the
// Dao dialect's out and dx). A new tensor of tens of MiB costs a page fault per
// 4 KiB page on first touch, several times the op itself; this pool keeps the
// blocks of freed outputs, still mapped, and hands them out again, up to a cap
// (CAUSAL_CONV1D_CPU_POOL_MB, 512 by default, 0: off). Smaller outputs come
// from torch's allocator as before.
#pragma once

#include <cstdint>

#include "../torch_api.h"

namespace causal_conv1d::cpu {

// An uninitialised CPU tensor of `dtype` with these sizes and strides (which
// must describe a dense, non-overlapping layout).
api::Tensor empty_output(api::Sizes sizes, api::Sizes strides, ScalarType dtype);

// Frees every cached block; returns the bytes given back.
int64_t release_output_pool();

}  // namespace causal_conv1d::cpu
