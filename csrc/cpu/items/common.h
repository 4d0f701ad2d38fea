// Pieces shared by every CPU work item (kernel_items.h): storage types and
// conversions, the branch-free exp, the channel loops and one output token
// computed with plain loops. Internal linkage (an anonymous namespace): each
// ISA translation unit compiles its own copy with its own flags.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../../dispatch.h"
#include "../kernels.h"

namespace causal_conv1d::cpu {
namespace {

constexpr int64_t kBlock = 256;  // channels per accumulator row
constexpr int64_t kTokens = 16;  // tokens per register-blocked run of the prefill

// Storage types, layout-compatible with float, c10::BFloat16 and c10::Half.
// Plain structs rather than c10's, whose inline members would otherwise be
// compiled with this ISA's flags.
struct bf16_t {
  uint16_t bits;
};
struct f16_t {
  uint16_t bits;
};

// The storage types of Half, BFloat16 and Float tensors (with_storage_type).
using CpuStorage = StorageTypes<f16_t, bf16_t, float>;

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max64(int64_t a, int64_t b) { return a < b ? b : a; }
inline int64_t wrap(int64_t v, int64_t n) { return ((v % n) + n) % n; }

inline float bits_to_float(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

inline uint32_t float_to_bits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

// Element conversions; fp32 to bf16 rounds to nearest even exactly as c10
// does, without branches so that the loops around it vectorise.
template <class Isa>
struct Convert {
  static float to_float(float v) { return v; }
  static float to_float(bf16_t v) { return bits_to_float(uint32_t{v.bits} << 16); }
  static float to_float(f16_t v) { return Isa::half_to_float(v.bits); }

  static void from_float(float v, float& out) { out = v; }
  static void from_float(float v, bf16_t& out) {
    const uint32_t bits = float_to_bits(v);
    const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
    const bool nan = (bits & 0x7FFFFFFFu) > 0x7F800000u;
    out.bits = static_cast<uint16_t>(nan ? 0x7FC0u : rounded);
  }
  static void from_float(float v, f16_t& out) { out.bits = Isa::float_to_half(v); }

  // Storage to storage through fp32; a plain copy when the types agree.
  template <typename To, typename From>
  static void convert(From v, To& out) {
    if constexpr (std::is_same_v<To, From>) {
      out = v;
    } else {
      from_float(to_float(v), out);
    }
  }
};

// exp(v) to about 2 ulp without branches, so that the loops around it
// vectorise: v = n ln2 + r with |r| <= ln2/2, e^r by a degree-7 polynomial,
// 2^n assembled in the exponent bits. Integer work is unsigned so that no
// input (NaN included) is undefined behaviour. The SIMD ISAs evaluate the
// same polynomial in vector registers. Past kExpHi, 2^n is 2^128, the
// infinity of its bit pattern: e^v overflows as it should, so that SiLU's
// v / (1 + e^-v) is -0 for large negative v and NaN for -inf, as
// v * sigmoid(v) is.
constexpr float kExpLo = -87.3f, kExpHi = 89.f;
constexpr float kLog2e = 1.44269504f, kRoundShift = 12582912.f;  // 1.5 * 2^23
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kExpPoly[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                               4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

inline float exp_fast(float v) {
  v = v < kExpLo ? kExpLo : (v > kExpHi ? kExpHi : v);
  const float shifted = v * kLog2e + kRoundShift;  // rounds v / ln2 to an integer n
  const float n = shifted - kRoundShift;
  const float r = (v - n * kLn2Hi) - n * kLn2Lo;
  float p = kExpPoly[0];
  for (int i = 1; i < 6; ++i) p = p * r + kExpPoly[i];
  p = p * (r * r) + r + 1.f;
  return p * bits_to_float((float_to_bits(shifted) - 0x4B400000u + 127u) << 23);
}

// SiLU of one value, for the scalar channel tails (store_output splits the
// same formula over two loops, which GCC vectorises).
inline float silu_one(float v) { return v / (1.f + exp_fast(-v)); }

// Channel loops come in a unit-stride (vectorised) and a strided flavour.

template <class Isa, typename To, typename From>
inline void copy_channels(To* dst, int64_t dst_stride, const From* src, int64_t src_stride,
                          int64_t n) {
  if (dst_stride == 1 && src_stride == 1) {
    for (int64_t c = 0; c < n; ++c) Convert<Isa>::convert(src[c], dst[c]);
  } else {
    for (int64_t c = 0; c < n; ++c) Convert<Isa>::convert(src[c * src_stride], dst[c * dst_stride]);
  }
}

template <class Isa, typename T>
inline void fill_channels(T* dst, int64_t stride, int64_t n) {
  for (int64_t c = 0; c < n; ++c) Convert<Isa>::from_float(0.f, dst[c * stride]);
}

template <class Isa, typename T>
inline void accumulate_tap(float* acc, const float* tap, const T* in, int64_t stride, int64_t n) {
  if (stride == 1) {
    for (int64_t c = 0; c < n; ++c) acc[c] += tap[c] * Convert<Isa>::to_float(in[c]);
  } else {
    for (int64_t c = 0; c < n; ++c) acc[c] += tap[c] * Convert<Isa>::to_float(in[c * stride]);
  }
}

// acc (n <= kBlock values) through the activation into out. SiLU runs as two
// loops: GCC schedules the fused exp-and-divide loop about 4x slower.
template <class Isa, typename T>
inline void store_output(T* out, int64_t stride, float* acc, int64_t n, bool act) {
  if (act) {
    float e[kBlock];
    for (int64_t c = 0; c < n; ++c) e[c] = exp_fast(-acc[c]);
    for (int64_t c = 0; c < n; ++c) acc[c] = acc[c] / (1.f + e[c]);
  }
  copy_channels<Isa>(out, stride, acc, 1, n);
}

// One output token over channels [c0, c0 + n), n <= kBlock, with plain loops.
// The window's column k lies at in + k * in_tok, channels at stride in_dim.
template <class Isa, typename in_t, typename out_t>
inline void conv_token_loops(const ConvParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                             const in_t* in, int64_t in_tok, int64_t in_dim, out_t* out,
                             int64_t out_dim) {
  float acc[kBlock];
  for (int64_t c = 0; c < n; ++c) acc[c] = w.bias == nullptr ? 0.f : w.bias[c0 + c];
  for (int64_t k = 0; k < p.width; ++k)
    accumulate_tap<Isa>(acc, w.taps + k * p.dim + c0, in + k * in_tok, in_dim, n);
  store_output<Isa>(out, out_dim, acc, n, p.silu);
}

// conv_token for `count` consecutive tokens, one at a time.
template <class Isa, typename in_t, typename out_t>
inline void conv_tokens_loops(const ConvParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                              const in_t* in, int64_t in_tok, int64_t in_dim, out_t* out,
                              int64_t out_tok, int64_t out_dim, int64_t count) {
  for (int64_t t = 0; t < count; ++t)
    Isa::conv_token(p, w, c0, n, in + t * in_tok, in_tok, in_dim, out + t * out_tok, out_dim);
}

// One channel's filter in fp32 (the dispatcher's copy).
struct ChannelTaps {
  float w[kMaxWidth];
  float bias;
  ChannelTaps(const ConvParams& p, const CpuWeights& cw, int64_t ch) {
    for (int64_t k = 0; k < p.width; ++k) w[k] = cw.taps[k * p.dim + ch];
    bias = cw.bias == nullptr ? 0.f : cw.bias[ch];
  }
};

// y[i] = bias + sum_k w[k] xs[i + k] for i < count, every tap.
inline void conv_row(const float* xs, const float* wk, float bias, int64_t width, int64_t count,
                     float* y) {
  for (int64_t i = 0; i < count; ++i) y[i] = bias;
  for (int64_t k = 0; k < width; ++k) {
    const float wkk = wk[k];
    const float* src = xs + k;
    for (int64_t i = 0; i < count; ++i) y[i] += wkk * src[i];
  }
}

}  // namespace
}  // namespace causal_conv1d::cpu
