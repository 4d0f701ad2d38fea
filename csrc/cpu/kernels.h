// The interface between the CPU dispatcher (conv1d_cpu.cpp) and one ISA's
// kernels. An ISA file exports a CpuKernelSet and nothing else: no
// registrations and no static initialisers, so that it can be compiled with
// its own instruction-set flags and only called after a CPUID check.
#pragma once

#include <cstdint>

#include "../params.h"

namespace causal_conv1d::cpu {

// The filter widened to fp32 by the dispatcher, once per call.
struct CpuWeights {
  const float* taps = nullptr;  // (width, dim): taps[k * dim + c]
  const float* bias = nullptr;  // (dim,) or null
};

// One work item of the prefill: tokens [t0, t1) of sequence `seq` (counted
// from its start), channels [c0, c1). `scratch` holds 2 * (width - 1) * slab
// floats.
using FwdItemFn = void (*)(const FwdParams&, const CpuWeights&, int64_t seq, int64_t t0, int64_t t1,
                           int64_t c0, int64_t c1, float* scratch);
// One work item of the decode: batch row `row`, channels [c0, c1). `scratch`
// holds (width - 1 + seqlen) * slab floats.
using UpdateItemFn = void (*)(const UpdateParams&, const CpuWeights&, int64_t row, int64_t c0,
                              int64_t c1, float* scratch);

struct CpuKernelSet {
  const char* name;
  int64_t slab;   // channels per work item
  int64_t chunk;  // prefill tokens per work item (at least kMaxWidth)
  FwdItemFn (*fwd)(const FwdParams&);
  UpdateItemFn (*update)(const UpdateParams&);
};

CpuKernelSet portable_kernels();

}  // namespace causal_conv1d::cpu
