// Compile-time dispatch shared by the CPU and CUDA backends: a run-time width,
// storage type or flag turned into a template argument. Which widths each
// backend compiles as constants is decided here, in one table; a width outside
// a backend's set runs on that backend's run-time-width path.
#pragma once

#include <cstdint>
#include <utility>

#include "params.h"

namespace causal_conv1d {

// A set of widths compiled as template constants.
template <int... kWs>
struct WidthSet {};

template <int... kOffsets>
WidthSet<(2 + kOffsets)...> widths_from_two(std::integer_sequence<int, kOffsets...>);

// The policy, one row per backend:
// - CPU: every width 2..kMaxWidth. The SIMD decode step and the contiguous
//   filter read keep a channel's window in registers, which needs the width at
//   compile time; each width costs little code there.
// - CUDA: width 4, the width of every Mamba-family and gated-DeltaNet model
//   served; any other width runs the kW = 0 instantiation, which reads the
//   width at run time and holds kMaxWidth taps. Each further width would add
//   one instantiation of every kernel (about a fifth more build time and binary).
// - CUDA training ops (the Dao dialect's batch forward and backward): widths 2,
//   3 and 4, the widths Dao's kernels compile, which trainers pass; a training
//   step's kernels are few, so the extra instantiations stay small.
using CpuWidths = decltype(widths_from_two(std::make_integer_sequence<int, kMaxWidth - 1>{}));
using CudaWidths = WidthSet<4>;
using CudaBatchWidths = WidthSet<2, 3, 4>;

// Calls f.template operator()<kW>() with kW the member of Set equal to width;
// false (f not called) when no member is.
template <class Set, typename F>
bool with_width(int64_t width, F&& f) {
  return [&]<int... kWs>(WidthSet<kWs...>) {
    return ((width == kWs ? (f.template operator()<kWs>(), true) : false) || ...);
  }(Set{});
}

// with_width, else f.template operator()<0>(): the run-time width.
template <class Set, typename F>
void with_width_or_run_time(int64_t width, F&& f) {
  if (!with_width<Set>(width, f)) f.template operator()<0>();
}

// Calls f.template operator()<flag>() with the flag as a constant.
template <typename F>
decltype(auto) with_flag(bool flag, F&& f) {
  return flag ? f.template operator()<true>() : f.template operator()<false>();
}

// A backend's storage types for Half, BFloat16 and Float tensors.
template <typename Half, typename BFloat16, typename Float>
struct StorageTypes {
  using half_type = Half;
  using bfloat16_type = BFloat16;
  using float_type = Float;
};

// Calls f with a value of Types' storage type for t (x, states, filter: Half,
// BFloat16 or Float, which the op layer checked).
template <class Types, typename F>
decltype(auto) with_storage_type(c10::ScalarType t, F&& f) {
  switch (t) {
    case c10::ScalarType::Half:
      return f(typename Types::half_type{});
    case c10::ScalarType::BFloat16:
      return f(typename Types::bfloat16_type{});
    default:
      return f(typename Types::float_type{});
  }
}

}  // namespace causal_conv1d
