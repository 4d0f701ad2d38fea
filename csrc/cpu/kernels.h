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

// One work item of the prefill: sequence `seq`, channels [c0, c1).
using FwdBlockFn = void (*)(const FwdParams&, const CpuWeights&, int64_t seq, int64_t c0,
                            int64_t c1);
// One work item of the decode: batch row `row`, channels [c0, c1). `scratch`
// holds (width - 1 + seqlen) * block floats.
using UpdateBlockFn = void (*)(const UpdateParams&, const CpuWeights&, int64_t row, int64_t c0,
                               int64_t c1, float* scratch);

struct CpuKernelSet {
  const char* name;
  int64_t block;  // channels per work item
  FwdBlockFn (*fwd)(const FwdParams&);
  UpdateBlockFn (*update)(const UpdateParams&);
};

CpuKernelSet portable_kernels();

}  // namespace causal_conv1d::cpu
