// Shared by the CUDA kernels: storage conversions, 16-byte channel vectors,
// the dtype dispatch of the host wrappers and the launch constants.
#pragma once

#include <c10/core/ScalarType.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "../params.h"

namespace causal_conv1d::cuda {

constexpr int kThreads = 128;  // threads per block; each owns kVec<T> channels

// Channels per thread on the vector path: one 16-byte load of x per token.
template <typename T>
constexpr int kVec = 16 / sizeof(T);

template <typename T>
__device__ __forceinline__ float to_float(T v);
template <>
__device__ __forceinline__ float to_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float to_float<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

// fp32 to storage, rounding to nearest even (as c10 does).
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Storage to storage through fp32; a plain copy when the types agree.
template <typename To, typename From>
__device__ __forceinline__ To convert(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else {
    return from_float<To>(to_float(v));
  }
}

// One element of a tensor whose dtype is only known at run time (the filter:
// read once per thread, so the switch costs nothing that matters).
__device__ __forceinline__ float load_as_float(const void* base, c10::ScalarType type,
                                               int64_t index) {
  switch (type) {
    case c10::ScalarType::Half:
      return __half2float(static_cast<const __half*>(base)[index]);
    case c10::ScalarType::BFloat16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[index]);
    default:
      return static_cast<const float*>(base)[index];
  }
}

__device__ __forceinline__ float silu(float v) { return v / (1.f + __expf(-v)); }

// A thread's n channels of one token: n = kVec<T> consecutive elements in one
// 16-byte access on the vector path, one element otherwise.
template <typename T, int n>
__device__ __forceinline__ void load_row(const T* p, float (&out)[n]) {
  if constexpr (n > 1) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int i = 0; i < n; ++i) out[i] = to_float(v[i]);
  } else {
    out[0] = to_float(p[0]);
  }
}

template <typename T, int n>
__device__ __forceinline__ void store_row(T* p, const float (&in)[n]) {
  if constexpr (n > 1) {
    uint4 raw;
    T* v = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int i = 0; i < n; ++i) v[i] = from_float<T>(in[i]);
    *reinterpret_cast<uint4*>(p) = raw;
  } else {
    p[0] = from_float<T>(in[0]);
  }
}

// Taps held in registers: the width when it is fixed at compile time (kW > 0),
// else the largest width, with p.width read at run time.
template <int kW>
constexpr int kTaps = kW > 0 ? kW : kMaxWidth;

// The filter of this thread's channels [c, c + n) in registers, fp32.
template <int kW, int n>
struct Filter {
  float w[kTaps<kW>][n];
  float b[n];

  __device__ __forceinline__ Filter(const ConvParams& p, int64_t c) {
#pragma unroll
    for (int i = 0; i < n; ++i) {
#pragma unroll
      for (int k = 0; k < kTaps<kW>; ++k)
        w[k][i] = k < p.width
                      ? load_as_float(p.weight, p.weight_type,
                                      (c + i) * p.weight_dim_stride + k * p.weight_tap_stride)
                      : 0.f;
      b[i] = p.bias == nullptr ? 0.f : load_as_float(p.bias, p.bias_type, (c + i) * p.bias_stride);
    }
  }
};

// The width-1 columns before the next token, per channel, in registers.
template <int kW, int n>
struct Window {
  float v[kTaps<kW> - 1][n];
};

// out = act(bias + sum_k w[k] * window[k] + w[H] * x), then the window slides
// by one column. Only fixed indices, so everything stays in registers.
template <int kW, int n>
__device__ __forceinline__ void conv_step(const ConvParams& p, const Filter<kW, n>& f,
                                          Window<kW, n>& window, const float (&x)[n],
                                          float (&out)[n]) {
  constexpr int kT = kTaps<kW>;
  const int H = (kW > 0 ? kW : p.width) - 1;
#pragma unroll
  for (int i = 0; i < n; ++i) {
    float acc = f.b[i];
#pragma unroll
    for (int k = 0; k < kT - 1; ++k)
      if (k < H) acc = fmaf(f.w[k][i], window.v[k][i], acc);
#pragma unroll
    for (int k = 0; k < kT; ++k)
      if (k == H) acc = fmaf(f.w[k][i], x[i], acc);
    out[i] = p.silu ? silu(acc) : acc;
#pragma unroll
    for (int k = 0; k < kT - 1; ++k) {
      if (k + 1 < H) window.v[k][i] = window.v[k + 1][i];
      if (k + 1 == H) window.v[k][i] = x[i];
    }
  }
}

// Outputs of tokens [t0, t1) for this thread's channels: x and out point at
// token 0 of the row, the window holds the columns before t0.
template <typename scalar_t, int kW, int n>
__device__ __forceinline__ void conv_tokens(const ConvParams& p, const Filter<kW, n>& filter,
                                            Window<kW, n>& window, const scalar_t* x, int64_t x_tok,
                                            scalar_t* out, int64_t out_tok, int64_t t0,
                                            int64_t t1) {
  for (int64_t t = t0; t < t1; ++t) {
    float col[n], y[n];
    load_row<scalar_t, n>(x + t * x_tok, col);
    conv_step<kW, n>(p, filter, window, col, y);
    store_row<scalar_t, n>(out + t * out_tok, y);
  }
}

template <typename scalar_t, int n>
__device__ __forceinline__ void zero_tokens(scalar_t* out, int64_t out_tok, int64_t t0,
                                            int64_t t1) {
  const float zeros[n] = {};
  for (int64_t t = t0; t < t1; ++t) store_row<scalar_t, n>(out + t * out_tok, zeros);
}

// Calls f.template operator()<scalar_t, state_t, kW>() for the storage types
// of x and the states and the width (4 compiled as such, others at run time).
template <typename F>
void dispatch(c10::ScalarType x_type, c10::ScalarType state_type, int64_t width, F&& f) {
  with_storage_type(x_type, [&](auto x_tag) {
    with_storage_type(state_type, [&](auto s_tag) {
      using scalar_t = decltype(x_tag);
      using state_t = decltype(s_tag);
      if (width == 4) {
        f.template operator()<scalar_t, state_t, 4>();
      } else {
        f.template operator()<scalar_t, state_t, 0>();
      }
    });
  });
}

// Calls f with a value of the CUDA storage type named by t.
template <typename F>
auto with_storage_type(c10::ScalarType t, F&& f) {
  switch (t) {
    case c10::ScalarType::Half:
      return f(__half{});
    case c10::ScalarType::BFloat16:
      return f(__nv_bfloat16{});
    default:
      return f(float{});
  }
}

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace causal_conv1d::cuda
