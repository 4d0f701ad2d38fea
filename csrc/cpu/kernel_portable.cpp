// Portable CPU kernels: plain C++ that compilers vectorise for the baseline
// ISA. Work items are a token chunk of one sequence (prefill) or one batch row
// (decode) times a slab of channels; inside an item tokens are the outer loop
// and channels the inner one, so channel-last rows stream through contiguously.
// Each output token is computed kBlock channels at a time in an fp32
// accumulator row: bias, then one fused multiply-add row per tap.
//
// Prefill: the item holding a sequence's first tokens stages the window before
// the sequence (conv state or zeros) and those tokens in fp32, computes the
// first width-1 outputs from that, and writes the new state once it has read
// the old one; every other output reads its taps (the halo included) from x.
//
// Decode: the window and the new tokens are staged in fp32 first, so `out`
// may alias `x`; the state is then updated from x, then outputs are written.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels.h"

namespace causal_conv1d::cpu {
namespace {

constexpr int64_t kBlock = 256;  // channels per accumulator row
constexpr int64_t kSlab = 2048;  // channels per work item
constexpr int64_t kChunk = 256;  // tokens per prefill work item

// exp(v) to about 2 ulp without branches, so that the loops around it
// vectorise: v = n ln2 + r with |r| <= ln2/2, e^r by a degree-7 polynomial,
// 2^n assembled in the exponent bits. Integer work is unsigned so that no
// input (NaN included) is undefined behaviour.
inline float exp_fast(float v) {
  v = std::min(std::max(v, -87.3f), 88.3f);
  const float shifted = v * 1.44269504f + 12582912.f;  // 1.5 * 2^23: rounds to an integer
  const float n = shifted - 12582912.f;
  const float r = (v - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.f;
  uint32_t bits;
  std::memcpy(&bits, &shifted, sizeof(bits));
  bits = (bits - 0x4B400000u + 127u) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// fp32 to a storage type, rounding to nearest even. The bf16 rounding is
// c10's, written without branches so that the loops around it vectorise.
template <typename T>
inline T from_float(float v) {
  return static_cast<T>(v);
}

template <>
inline c10::BFloat16 from_float<c10::BFloat16>(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
  const bool nan = (bits & 0x7FFFFFFFu) > 0x7F800000u;
  return c10::BFloat16(static_cast<uint16_t>(nan ? 0x7FC0u : rounded), c10::BFloat16::from_bits());
}

// Storage-to-storage conversion through fp32; a plain copy when the types agree.
template <typename To, typename From>
inline To convert(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else {
    return from_float<To>(static_cast<float>(v));
  }
}

inline int64_t wrap(int64_t v, int64_t n) { return ((v % n) + n) % n; }

// Channel loops come in a unit-stride (vectorised) and a strided flavour.

template <typename To, typename From>
inline void copy_channels(To* dst, int64_t dst_stride, const From* src, int64_t src_stride,
                          int64_t n) {
  if (dst_stride == 1 && src_stride == 1) {
    for (int64_t c = 0; c < n; ++c) dst[c] = convert<To>(src[c]);
  } else {
    for (int64_t c = 0; c < n; ++c) dst[c * dst_stride] = convert<To>(src[c * src_stride]);
  }
}

template <typename T>
inline void fill_channels(T* dst, int64_t stride, int64_t n) {
  for (int64_t c = 0; c < n; ++c) dst[c * stride] = from_float<T>(0.f);
}

template <typename T>
inline void accumulate_tap(float* acc, const float* tap, const T* in, int64_t stride, int64_t n) {
  if (stride == 1) {
    for (int64_t c = 0; c < n; ++c) acc[c] += tap[c] * static_cast<float>(in[c]);
  } else {
    for (int64_t c = 0; c < n; ++c) acc[c] += tap[c] * static_cast<float>(in[c * stride]);
  }
}

// acc (n <= kBlock values) through the activation into out. SiLU runs as two
// loops: GCC schedules the fused exp-and-divide loop about 4x slower.
template <typename T>
inline void store_output(T* out, int64_t stride, float* acc, int64_t n, bool act) {
  if (act) {
    float e[kBlock];
    for (int64_t c = 0; c < n; ++c) e[c] = exp_fast(-acc[c]);
    for (int64_t c = 0; c < n; ++c) acc[c] = acc[c] / (1.f + e[c]);
  }
  copy_channels(out, stride, acc, 1, n);
}

// One output token over channels [c0, c0 + n) of the slab, n <= kBlock. The
// window's column k lies at in + k * in_tok, channels at stride in_dim.
template <typename in_t, typename out_t>
inline void conv_token(const ConvParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                       const in_t* in, int64_t in_tok, int64_t in_dim, out_t* out,
                       int64_t out_dim) {
  float acc[kBlock];
  if (w.bias != nullptr) {
    std::copy(w.bias + c0, w.bias + c0 + n, acc);
  } else {
    std::fill(acc, acc + n, 0.f);
  }
  for (int64_t k = 0; k < p.width; ++k)
    accumulate_tap(acc, w.taps + k * p.dim + c0, in + k * in_tok, in_dim, n);
  store_output(out, out_dim, acc, n, p.silu);
}

// Outputs of tokens [t0, t1) of one sequence, channels [c0, c1).
template <typename scalar_t, typename state_t>
void fwd_item(const FwdParams& p, const CpuWeights& w, int64_t seq, int64_t t0, int64_t t1,
              int64_t c0, int64_t c1, float* scratch) {
  int64_t begin, end;
  p.token_range(seq, begin, end);
  const int64_t len = end - begin, n = c1 - c0;
  const int64_t x_dim = p.x_dim_stride, x_tok = p.x_tok_stride;
  const int64_t o_dim = p.out_dim_stride, o_tok = p.out_tok_stride;
  const scalar_t* x = static_cast<const scalar_t*>(p.x) + begin * x_tok + c0 * x_dim;
  scalar_t* out = static_cast<scalar_t*>(p.out) + begin * o_tok + c0 * o_dim;

  const int64_t line = p.cache_indices.present() ? p.cache_indices[seq] : seq;
  if (p.is_padding(line)) {
    for (int64_t t = t0; t < t1; ++t) fill_channels(out + t * o_tok, o_dim, n);
    return;
  }

  const int64_t H = p.width - 1, S = p.state_len;
  const int64_t s_dim = p.state_dim_stride, s_tok = p.state_tok_stride;
  state_t* state = p.states == nullptr
                       ? nullptr
                       : static_cast<state_t*>(p.states) + line * p.state_line_stride + c0 * s_dim;
  const bool init = state != nullptr && p.has_initial_state != nullptr &&
                    p.has_initial_state[seq * p.has_initial_state_stride];

  if (t0 == 0) {
    // scratch rows 0..H-1: the window before the sequence; then its first tokens.
    const int64_t nhead = std::min(len, H);
    for (int64_t k = 0; k < H; ++k) {
      if (init) {
        copy_channels(scratch + k * n, 1, state + (S - H + k) * s_tok, s_dim, n);
      } else {
        fill_channels(scratch + k * n, 1, n);
      }
    }
    for (int64_t k = 0; k < nhead; ++k)
      copy_channels(scratch + (H + k) * n, 1, x + k * x_tok, x_dim, n);
    for (int64_t t = 0; t < nhead; ++t)
      for (int64_t cb = 0; cb < n; cb += kBlock)
        conv_token(p, w, c0 + cb, std::min(kBlock, n - cb), scratch + t * n + cb, n, 1,
                   out + t * o_tok + cb * o_dim, o_dim);
  }

  for (int64_t t = std::max(t0, H); t < t1; ++t)
    for (int64_t cb = 0; cb < n; cb += kBlock)
      conv_token(p, w, c0 + cb, std::min(kBlock, n - cb), x + (t - H) * x_tok + cb * x_dim, x_tok,
                 x_dim, out + t * o_tok + cb * o_dim, o_dim);

  if (t0 != 0 || state == nullptr) return;
  // New state: the last S columns of cat(old or zeros, tokens). Ascending j
  // reads old column j + len before anything overwrites it.
  for (int64_t j = 0; j < S; ++j) {
    const int64_t src = len - S + j;
    if (src >= 0) {
      copy_channels(state + j * s_tok, s_dim, x + src * x_tok, x_dim, n);
    } else if (init) {
      copy_channels(state + j * s_tok, s_dim, state + (j + len) * s_tok, s_dim, n);
    } else {
      fill_channels(state + j * s_tok, s_dim, n);
    }
  }
}

// All tokens of one batch row, channels [c0, c1).
template <typename scalar_t, typename state_t>
void update_item(const UpdateParams& p, const CpuWeights& w, int64_t row, int64_t c0, int64_t c1,
                 float* buf) {
  const int64_t n = c1 - c0, L = p.seqlen;
  const int64_t x_dim = p.x_dim_stride, x_tok = p.x_tok_stride;
  const int64_t o_dim = p.out_dim_stride, o_tok = p.out_tok_stride;
  const scalar_t* x = static_cast<const scalar_t*>(p.x) + row * p.x_batch_stride + c0 * x_dim;
  scalar_t* out = static_cast<scalar_t*>(p.out) + row * p.out_batch_stride + c0 * o_dim;

  const int64_t line = p.state_indices.present() ? p.state_indices[row] : row;
  if (p.is_padding(line)) {
    for (int64_t t = 0; t < L; ++t) fill_channels(out + t * o_tok, o_dim, n);
    return;
  }

  const int64_t H = p.width - 1, S = p.state_len;
  const int64_t s_dim = p.state_dim_stride, s_tok = p.state_tok_stride;
  state_t* state = static_cast<state_t*>(p.states) + line * p.state_line_stride + c0 * s_dim;
  const bool circular = p.cache_seqlens.present();
  const int64_t pos = circular ? wrap(p.cache_seqlens[row], S) : 0;

  // buf rows: the H window columns, then the L new tokens.
  for (int64_t k = 0; k < H; ++k) {
    const int64_t col = circular ? wrap(pos - H + k, S) : S - H + k;
    copy_channels(buf + k * n, 1, state + col * s_tok, s_dim, n);
  }
  for (int64_t t = 0; t < L; ++t) copy_channels(buf + (H + t) * n, 1, x + t * x_tok, x_dim, n);

  if (circular) {
    // Token j goes to ring position pos + j; with L > S later tokens win.
    for (int64_t j = 0; j < L; ++j)
      copy_channels(state + ((pos + j) % S) * s_tok, s_dim, x + j * x_tok, x_dim, n);
  } else {
    // Shift left by L and append: ascending j reads column j + L before it is overwritten.
    for (int64_t j = 0; j < S; ++j) {
      const int64_t src = j + L;
      if (src < S) {
        copy_channels(state + j * s_tok, s_dim, state + src * s_tok, s_dim, n);
      } else {
        copy_channels(state + j * s_tok, s_dim, x + (src - S) * x_tok, x_dim, n);
      }
    }
  }

  for (int64_t t = 0; t < L; ++t)
    for (int64_t cb = 0; cb < n; cb += kBlock)
      conv_token(p, w, c0 + cb, std::min(kBlock, n - cb), buf + t * n + cb, n, 1,
                 out + t * o_tok + cb * o_dim, o_dim);
}

// Calls f with a value of the storage type named by t.
template <typename F>
auto with_storage_type(c10::ScalarType t, F&& f) {
  switch (t) {
    case c10::ScalarType::Half:
      return f(c10::Half{});
    case c10::ScalarType::BFloat16:
      return f(c10::BFloat16{});
    default:
      return f(float{});
  }
}

FwdItemFn select_fwd(const FwdParams& p) {
  // Without a cache the state type is irrelevant: reuse x's instantiation.
  const c10::ScalarType state_type = p.states == nullptr ? p.x_type : p.state_type;
  return with_storage_type(p.x_type, [&](auto x_tag) {
    return with_storage_type(state_type, [&](auto s_tag) -> FwdItemFn {
      return &fwd_item<decltype(x_tag), decltype(s_tag)>;
    });
  });
}

UpdateItemFn select_update(const UpdateParams& p) {
  return with_storage_type(p.x_type, [&](auto x_tag) {
    return with_storage_type(p.state_type, [&](auto s_tag) -> UpdateItemFn {
      return &update_item<decltype(x_tag), decltype(s_tag)>;
    });
  });
}

}  // namespace

CpuKernelSet portable_kernels() { return {"portable", kSlab, kChunk, &select_fwd, &select_update}; }

}  // namespace causal_conv1d::cpu
