// Work items shared by every CPU ISA (see kernels.h), one header per op family
// under items/: the prefill (a token chunk of one sequence x a channel slab),
// the decode (one batch row x a channel slab) and the Dao dialect's batch
// prefill and its backward, parameterised by an `Isa` policy that supplies fp16
// conversions and `conv_token`, the computation of one output token over a
// block of channels. Each ISA translation unit includes this file, compiled
// with that ISA's flags; everything here has internal linkage (an anonymous
// namespace), so no inline function compiled for one ISA can stand in for
// another's at link time. This file turns a call's Params into its items and
// widens the filter.
#pragma once

#include "items/batch_bwd.h"
#include "items/batch_fwd.h"
#include "items/decode.h"
#include "items/prefill.h"

namespace causal_conv1d::cpu {
namespace {

// The filter as fp32 taps, taps[k * dim + c] (CpuWeights::taps). A contiguous
// (dim, width) filter is read as one interleaved group per channel with the
// width fixed at compile time, which the compiler vectorises with this set's
// instructions (read with run-time strides, a decode call's filter took 18 of
// its 45 us: docs/DESIGN_LOG.md).
template <class Isa, int kW, typename T>
void widen_contiguous(const T* w, int64_t dim, float* taps) {
  for (int64_t c = 0; c < dim; ++c)
#pragma GCC unroll 8
    for (int k = 0; k < kW; ++k) taps[k * dim + c] = Convert<Isa>::to_float(w[c * kW + k]);
}

template <class Isa>
void widen_filter(const ConvParams& p, float* taps, float* bias) {
  with_storage_type<CpuStorage>(p.weight_type, [&](auto tag) {
    using T = decltype(tag);
    const T* w = static_cast<const T*>(p.weight);
    if (p.weight_tap_stride == 1 && p.weight_dim_stride == p.width &&
        with_width<CpuWidths>(p.width,
                              [&]<int kW>() { widen_contiguous<Isa, kW>(w, p.dim, taps); }))
      return;
    for (int64_t k = 0; k < p.width; ++k)
      for (int64_t c = 0; c < p.dim; ++c)
        taps[k * p.dim + c] =
            Convert<Isa>::to_float(w[c * p.weight_dim_stride + k * p.weight_tap_stride]);
  });
  if (p.bias == nullptr) return;
  // With this set's conversions (a scalar loop in the dispatcher's baseline code took ~1.6
  // of a one-row decode call's ~17 us).
  with_storage_type<CpuStorage>(p.bias_type, [&](auto tag) {
    using T = decltype(tag);
    const T* b = static_cast<const T*>(p.bias);
    if (p.bias_stride == 1) {
      for (int64_t c = 0; c < p.dim; ++c) bias[c] = Convert<Isa>::to_float(b[c]);
    } else {
      for (int64_t c = 0; c < p.dim; ++c) bias[c] = Convert<Isa>::to_float(b[c * p.bias_stride]);
    }
  });
}

// CpuKernelSet::update_reads_filter of a set whose decode items always read
// the dispatcher's fp32 filter.
inline bool never_reads_filter(const UpdateParams&) { return false; }

template <class Isa>
FwdItemFn select_fwd(const FwdParams& p) {
  // Without a cache the state type is irrelevant: reuse x's instantiation.
  const c10::ScalarType state_type = p.states == nullptr ? p.x_type : p.state_type;
  return with_storage_type<CpuStorage>(p.x_type, [&](auto x_tag) {
    return with_storage_type<CpuStorage>(state_type, [&](auto s_tag) -> FwdItemFn {
      return &fwd_item<Isa, decltype(x_tag), decltype(s_tag)>;
    });
  });
}

template <class Isa>
UpdateItemFn select_update(const UpdateParams& p) {
  return with_storage_type<CpuStorage>(p.x_type, [&](auto x_tag) {
    return with_storage_type<CpuStorage>(p.state_type, [&](auto s_tag) -> UpdateItemFn {
      return &update_item<Isa, decltype(x_tag), decltype(s_tag)>;
    });
  });
}

template <class Isa>
BatchFwdItemFn select_batch_fwd(const BatchParams& p) {
  return with_storage_type<CpuStorage>(p.x_type, [&](auto x_tag) -> BatchFwdItemFn {
    return &batch_fwd_item<Isa, decltype(x_tag)>;
  });
}

template <class Isa>
BatchBwdItemFn select_batch_bwd(const BatchParams& p) {
  return with_storage_type<CpuStorage>(p.x_type, [&](auto x_tag) -> BatchBwdItemFn {
    return &batch_bwd_item<Isa, decltype(x_tag)>;
  });
}

}  // namespace
}  // namespace causal_conv1d::cpu
