// Work-item logic shared by every CPU ISA (see kernels.h): prefill items (a
// token chunk of one sequence x a channel slab) and decode items (one batch row
// x a channel slab), parameterised by an `Isa` policy that supplies fp16
// conversions and `conv_token`, the computation of one output token over a
// block of channels. Each ISA translation unit includes this file, compiled
// with that ISA's flags; everything here has internal linkage (an anonymous
// namespace), so no inline function compiled for one ISA can stand in for
// another's at link time.
//
// Prefill: the item holding a sequence's first tokens stages the window before
// the sequence (conv state or zeros) and those tokens in fp32, computes the
// first width-1 outputs from that, and writes the new state once it has read
// the old one; every other output reads its taps (the halo included) from x.
// Inside an item, blocks of kTokens tokens x kBlock channels: the SIMD ISAs
// walk each cache line of channels down the block's tokens with the taps and
// the window in registers.
//
// Both honour vLLM's front-aligned lines (ConvParams::front_window; the
// decode's varlen and speculative rows follow UpdateParams::line_plan).
//
// Decode: the SIMD ISAs do the common step (one token, a linear state of
// width-1 columns, channel-last) in registers (Isa::update_step). Otherwise the
// window and the new tokens are staged in fp32 first, so `out` may alias `x`;
// the state is then updated from x, then outputs are written.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels.h"

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

// Outputs of tokens [t0, t1) of one sequence, channels [c0, c1).
template <class Isa, typename scalar_t, typename state_t>
void fwd_item(const FwdParams& p, const CpuWeights& w, int64_t seq, int64_t t0, int64_t t1,
              int64_t c0, int64_t c1, float* scratch) {
  int64_t begin, end;
  p.token_range(seq, begin, end);
  const int64_t len = end - begin, n = c1 - c0, pitch = scratch_pitch(n);
  const int64_t x_dim = p.x_dim_stride, x_tok = p.x_tok_stride;
  const int64_t o_dim = p.out_dim_stride, o_tok = p.out_tok_stride;
  const scalar_t* x = static_cast<const scalar_t*>(p.x) + begin * x_tok + c0 * x_dim;
  scalar_t* out = static_cast<scalar_t*>(p.out) + begin * o_tok + c0 * o_dim;

  const int64_t line = p.cache_indices.present() ? p.cache_indices[seq] : seq;
  if (p.is_padding(line)) {
    for (int64_t t = t0; t < t1; ++t) fill_channels<Isa>(out + t * o_tok, o_dim, n);
    return;
  }

  // S: the columns the call reads and writes (the front width-1 in vLLM's convention).
  const int64_t H = p.width - 1, S = p.linear_len();
  const int64_t s_dim = p.state_dim_stride, s_tok = p.state_tok_stride;
  state_t* state = p.states == nullptr
                       ? nullptr
                       : static_cast<state_t*>(p.states) + line * p.state_line_stride + c0 * s_dim;
  const bool init = state != nullptr && p.has_initial_state != nullptr &&
                    p.has_initial_state[seq * p.has_initial_state_stride];

  if (t0 == 0) {
    // scratch rows 0..H-1: the window before the sequence; then its first tokens.
    const int64_t nhead = min64(len, H);
    for (int64_t k = 0; k < H; ++k) {
      if (init) {
        copy_channels<Isa>(scratch + k * pitch, 1, state + (S - H + k) * s_tok, s_dim, n);
      } else {
        fill_channels<Isa>(scratch + k * pitch, 1, n);
      }
    }
    for (int64_t k = 0; k < nhead; ++k)
      copy_channels<Isa>(scratch + (H + k) * pitch, 1, x + k * x_tok, x_dim, n);
    for (int64_t t = 0; t < nhead; ++t)
      for (int64_t cb = 0; cb < n; cb += kBlock)
        Isa::conv_token(p, w, c0 + cb, min64(kBlock, n - cb), scratch + t * pitch + cb, pitch, 1,
                        out + t * o_tok + cb * o_dim, o_dim);
  }

  // Blocks of kTokens tokens x kBlock channels, each cache line of channels
  // walking down the block's tokens (Isa::conv_tokens).
  for (int64_t tb = max64(t0, H); tb < t1; tb += kTokens)
    for (int64_t cb = 0; cb < n; cb += kBlock)
      Isa::conv_tokens(p, w, c0 + cb, min64(kBlock, n - cb), x + (tb - H) * x_tok + cb * x_dim,
                       x_tok, x_dim, out + tb * o_tok + cb * o_dim, o_tok, o_dim,
                       min64(kTokens, t1 - tb));

  if (t0 != 0 || state == nullptr) return;
  // New state: the last S columns of cat(old or zeros, tokens). Ascending j
  // reads old column j + len before anything overwrites it.
  for (int64_t j = 0; j < S; ++j) {
    const int64_t src = len - S + j;
    if (src >= 0) {
      copy_channels<Isa>(state + j * s_tok, s_dim, x + src * x_tok, x_dim, n);
    } else if (init) {
      copy_channels<Isa>(state + j * s_tok, s_dim, state + (j + len) * s_tok, s_dim, n);
    } else {
      fill_channels<Isa>(state + j * s_tok, s_dim, n);
    }
  }
}

// n channels' state lines in Dao's layout (each channel's S columns side by
// side, channels one after another) shifted left by L columns with the tokens
// of x (token t at x + t * x_tok, channels x_dim apart) entering last: one move
// of the whole block by L elements (a channel's last L columns then briefly
// hold the next channel's first), then the tokens, instead of S strided passes.
template <class Isa, typename state_t, typename x_t>
inline void shift_dao_lines(state_t* lines, int64_t n, int64_t S, int64_t L, const x_t* x,
                            int64_t x_tok, int64_t x_dim) {
  if (L < S) std::memmove(lines, lines + L, (n * S - L) * sizeof(state_t));
  for (int64_t j = L < S ? S - L : 0; j < S; ++j)
    copy_channels<Isa>(lines + j, S, x + (j + L - S) * x_tok, x_dim, n);
}

// One token of a row whose state line is Dao's layout (each channel's S
// columns side by side, channels one after another), width kW, S = kW - 1 or
// kW: per block of channels, the outputs from each channel's last kW-1
// columns and the token, then each channel's columns shifted by one with the
// token last. x and out have unit channel stride; out may be x (a block reads
// its x before it writes its out).
template <class Isa, int kW, int S, typename x_t, typename state_t>
void dao_line_step(const ConvParams& p, const CpuWeights& w, int64_t c0, int64_t n, const x_t* x,
                   state_t* state, x_t* out) {
  constexpr int H = kW - 1;
  const int64_t dim = p.dim;
  const float* const taps = w.taps + c0;
  for (int64_t cb = 0; cb < n; cb += kBlock) {
    const int64_t m = min64(kBlock, n - cb);
    state_t* const lines = state + cb * S;
    const float* const t = taps + cb;
    float acc[kBlock];
    if (w.bias != nullptr) {
      for (int64_t c = 0; c < m; ++c) acc[c] = w.bias[c0 + cb + c];
    } else {
      for (int64_t c = 0; c < m; ++c) acc[c] = 0.f;
    }
    for (int k = 0; k < H; ++k) accumulate_tap<Isa>(acc, t + k * dim, lines + S - H + k, S, m);
    accumulate_tap<Isa>(acc, t + H * dim, x + cb, 1, m);
    shift_dao_lines<Isa>(lines, m, S, 1, x + cb, 0, 1);
    store_output<Isa>(out + cb, 1, acc, m, p.silu);
  }
}

// All tokens of one batch row, channels [c0, c1).
template <class Isa, typename scalar_t, typename state_t>
void update_item(const UpdateParams& p, const CpuWeights& w, int64_t row, int64_t c0, int64_t c1,
                 float* buf) {
  int64_t begin, L;
  const bool valid = p.row_tokens(row, begin, L);
  if (L == 0) return;
  const int64_t n = c1 - c0, pitch = scratch_pitch(n);
  const int64_t x_dim = p.x_dim_stride, x_tok = p.x_tok_stride;
  const int64_t o_dim = p.out_dim_stride, o_tok = p.out_tok_stride;
  const scalar_t* x =
      static_cast<const scalar_t*>(p.x) + row * p.x_batch_stride + begin * x_tok + c0 * x_dim;
  scalar_t* out =
      static_cast<scalar_t*>(p.out) + row * p.out_batch_stride + begin * o_tok + c0 * o_dim;

  const int64_t line = p.state_indices.present() ? p.state_indices[row] : row;
  if (!valid || p.is_padding(line)) {
    for (int64_t t = 0; t < L; ++t) fill_channels<Isa>(out + t * o_tok, o_dim, n);
    return;
  }

  const int64_t H = p.width - 1, S = p.state_len;
  const int64_t s_dim = p.state_dim_stride, s_tok = p.state_tok_stride;
  state_t* state = static_cast<state_t*>(p.states) + line * p.state_line_stride + c0 * s_dim;
  if (Isa::update_step(p, w, c0, n, x, state, out)) return;
  if (L == 1 && p.width == 4 && s_tok == 1 && s_dim == S && x_dim == 1 && o_dim == 1 &&
      (p.mode == StateMode::kShift || p.mode == StateMode::kFront) &&
      !p.query_start_loc.present() && S == p.linear_len() && (S == 3 || S == 4)) {
    S == 3 ? dao_line_step<Isa, 4, 3>(p, w, c0, n, x, state, out)
           : dao_line_step<Isa, 4, 4>(p, w, c0, n, x, state, out);
    return;
  }
  const bool circular = p.mode == StateMode::kRing;
  const int64_t pos = circular ? wrap(p.cache_seqlens[row], S) : 0;
  const LinePlan plan = circular ? LinePlan{} : p.line_plan(row, L);

  // buf rows: the H window columns, then the L new tokens.
  for (int64_t k = 0; k < H; ++k) {
    const int64_t col = circular ? wrap(pos - H + k, S) : plan.base + plan.live - H + k;
    copy_channels<Isa>(buf + k * pitch, 1, state + col * s_tok, s_dim, n);
  }
  for (int64_t t = 0; t < L; ++t)
    copy_channels<Isa>(buf + (H + t) * pitch, 1, x + t * x_tok, x_dim, n);

  if (circular) {
    // Token j goes to ring position pos + j; with L > S later tokens win.
    for (int64_t j = 0; j < L; ++j)
      copy_channels<Isa>(state + ((pos + j) % S) * s_tok, s_dim, x + j * x_tok, x_dim, n);
  } else if (s_tok == 1 && s_dim == S && plan.base == 0 && plan.live == S && plan.ncols == S &&
             plan.shift == L) {
    shift_dao_lines<Isa>(state, n, S, L, x, x_tok, x_dim);  // Dao's layout
  } else {
    // Ascending j reads each source column before it is overwritten (LinePlan).
    for (int64_t j = 0; j < plan.ncols; ++j) {
      const int64_t src = j + plan.shift;
      if (src < plan.live) {
        copy_channels<Isa>(state + j * s_tok, s_dim, state + (plan.base + src) * s_tok, s_dim, n);
      } else {
        copy_channels<Isa>(state + j * s_tok, s_dim, x + (src - plan.live) * x_tok, x_dim, n);
      }
    }
  }

  for (int64_t t = 0; t < L; ++t)
    for (int64_t cb = 0; cb < n; cb += kBlock)
      Isa::conv_token(p, w, c0 + cb, min64(kBlock, n - cb), buf + t * pitch + cb, pitch, 1,
                      out + t * o_tok + cb * o_dim, o_dim);
}

// ---- The Dao dialect's batch prefill and its backward (CONTRACT 1.5) ----
//
// A token is "clean" when its whole window lies in x and in its own sequence:
// its taps then read x in place (Isa::conv_tokens, plain channel loops in the
// backward). Other tokens stage their window in fp32 first: taps of another
// sequence are zero, taps before the row read initial_states (when the row's
// first token is of the same sequence) or zero.

// Row b, channel c of a batch tensor, or null when the tensor is absent.
template <typename T>
T* at(const View3& v, int64_t b, int64_t c) {
  return v.present() ? static_cast<T*>(v.data) + b * v.batch + c * v.dim : nullptr;
}

// Tracks, walking a row's tokens upwards, where the current run of equal
// sequence ids starts (only as far back as width-1 tokens matters).
struct SequenceRuns {
  const BatchParams& p;
  int64_t b, run;
  SequenceRuns(const BatchParams& params, int64_t row, int64_t t0) : p(params), b(row), run(0) {
    if (p.seq_idx == nullptr) return;
    const int64_t s = p.sequence(b, t0);
    run = t0;
    while (run > 0 && t0 - run < p.width - 1 && p.sequence(b, run - 1) == s) --run;
  }
  // Called for t0, t0 + 1, ... in order; whether token t is clean.
  bool clean(int64_t t) {
    if (p.seq_idx != nullptr && t > 0 && p.sequence(b, t) != p.sequence(b, t - 1)) run = t;
    return t - (p.width - 1) >= run;
  }
};

// Token t's window (width columns, the last one token t) in fp32 rows of
// `pitch`, channels [c0, c0 + n), taps outside its sequence zero.
template <class Isa, typename scalar_t>
void stage_batch_window(const BatchParams& p, int64_t b, int64_t t, const scalar_t* x,
                        const scalar_t* init, int64_t n, float* rows, int64_t pitch) {
  const int64_t H = p.width - 1, s = p.sequence(b, t);
  const bool init_ours = init != nullptr && p.sequence(b, 0) == s;
  for (int64_t k = 0; k <= H; ++k) {
    const int64_t pos = t - H + k;
    float* row = rows + k * pitch;
    if (pos >= 0 && p.sequence(b, pos) == s) {
      copy_channels<Isa>(row, 1, x + pos * p.x.tok, p.x.dim, n);
    } else if (pos < 0 && init_ours) {
      copy_channels<Isa>(row, 1, init + (pos + H) * p.initial_states.tok, p.initial_states.dim, n);
    } else {
      fill_channels<Isa>(row, 1, n);
    }
  }
}

// Tiles: rows of fp32 channels (row r at tile + r * pitch) for `count` tokens of
// a (token, channel)-strided tensor, read or written in the order that walks
// its unit stride, so that both layouts stream.
template <class Isa, typename T>
void load_tile(float* tile, int64_t pitch, const T* src, int64_t tok, int64_t dim, int64_t count,
               int64_t n) {
  if (dim == 1 || tok != 1) {
    for (int64_t r = 0; r < count; ++r)
      copy_channels<Isa>(tile + r * pitch, 1, src + r * tok, dim, n);
  } else {
    for (int64_t c = 0; c < n; ++c)
      for (int64_t r = 0; r < count; ++r)
        tile[r * pitch + c] = Convert<Isa>::to_float(src[c * dim + r]);
  }
}

template <class Isa, typename T>
void store_tile(T* dst, int64_t tok, int64_t dim, const float* tile, int64_t pitch, int64_t count,
                int64_t n) {
  if (dim == 1 || tok != 1) {
    for (int64_t r = 0; r < count; ++r)
      copy_channels<Isa>(dst + r * tok, dim, tile + r * pitch, 1, n);
  } else {
    for (int64_t c = 0; c < n; ++c)
      for (int64_t r = 0; r < count; ++r)
        Convert<Isa>::from_float(tile[r * pitch + c], dst[c * dim + r]);
  }
}

// The columns before and including tokens [first, end) of row b as fp32 rows:
// row r holds position first - (width-1) + r, from x or, before the row, from
// the initial states (zeros without them). Masks are applied by the readers.
template <class Isa, typename scalar_t>
void load_window_tile(const BatchParams& p, const scalar_t* x, const scalar_t* init, int64_t first,
                      int64_t end, int64_t n, float* tile, int64_t pitch) {
  const int64_t H = p.width - 1;
  int64_t pos = first - H;
  for (; pos < 0 && pos < end; ++pos) {
    float* row = tile + (pos - first + H) * pitch;
    if (init != nullptr) {
      copy_channels<Isa>(row, 1, init + (pos + H) * p.initial_states.tok, p.initial_states.dim, n);
    } else {
      fill_channels<Isa>(row, 1, n);
    }
  }
  if (pos < end)
    load_tile<Isa>(tile + (pos - first + H) * pitch, pitch, x + pos * p.x.tok, p.x.tok, p.x.dim,
                   end - pos, n);
}

// Whether tap k of token t (sequence s) reads a column of its own sequence;
// positions before the row belong to the row's first token's sequence.
inline bool tap_in_sequence(const BatchParams& p, int64_t b, int64_t t, int64_t k, int64_t s) {
  const int64_t pos = t - (p.width - 1) + k;
  return p.sequence(b, pos < 0 ? 0 : pos) == s;
}

// Channel-last rows: clean runs of tokens read x in place (Isa::conv_tokens);
// other tokens stage their masked window.
template <class Isa, typename scalar_t>
void batch_fwd_in_place(const BatchParams& p, const CpuWeights& w, int64_t b, int64_t t0,
                        int64_t t1, int64_t c0, int64_t n, const scalar_t* x, const scalar_t* init,
                        scalar_t* out, float* scratch) {
  const int64_t pitch = scratch_pitch(n), H = p.width - 1;
  const int64_t x_tok = p.x.tok, x_dim = p.x.dim;
  const int64_t o_tok = p.out.tok, o_dim = p.out.dim;
  SequenceRuns runs(p, b, t0);
  for (int64_t t = t0; t < t1;) {
    if (runs.clean(t)) {
      int64_t end = t + 1;
      while (end < t1 && runs.clean(end)) ++end;
      if (p.sequence(b, t) < 0) {
        for (int64_t u = t; u < end; ++u) fill_channels<Isa>(out + u * o_tok, o_dim, n);
      } else {
        for (int64_t tb = t; tb < end; tb += kTokens)
          for (int64_t cb = 0; cb < n; cb += kBlock)
            Isa::conv_tokens(p, w, c0 + cb, min64(kBlock, n - cb),
                             x + (tb - H) * x_tok + cb * x_dim, x_tok, x_dim,
                             out + tb * o_tok + cb * o_dim, o_tok, o_dim, min64(kTokens, end - tb));
      }
      t = end;
      continue;
    }
    if (p.sequence(b, t) < 0) {
      fill_channels<Isa>(out + t * o_tok, o_dim, n);
    } else {
      stage_batch_window<Isa>(p, b, t, x, init, n, scratch, pitch);
      for (int64_t cb = 0; cb < n; cb += kBlock)
        Isa::conv_token(p, w, c0 + cb, min64(kBlock, n - cb), scratch + cb, pitch, 1,
                        out + t * o_tok + cb * o_dim, o_dim);
    }
    ++t;
  }
}

// ---- Other layouts (channel-first): one channel at a time along its tokens ----
//
// Each channel's tokens are a contiguous row (or a strided one), so every loop
// below runs along tokens with the channel's taps in scalars. Tokens whose
// window crosses a change of sequence (seq_idx) are computed as if it did not,
// then recomputed with their masks; padding tokens are zeroed.

enum TokenKind : uint8_t { kClean = 0, kMasked = 1, kPadding = 2 };

// What each token of [t0, end) of row b is for the forward (its window).
inline void classify_windows(const BatchParams& p, int64_t b, int64_t t0, int64_t end,
                             uint8_t* kind) {
  for (int64_t t = t0; t < end; ++t) {
    uint8_t k8 = kClean;
    if (p.seq_idx != nullptr) {
      const int64_t s = p.sequence(b, t);
      if (s < 0) {
        k8 = kPadding;
      } else {
        for (int64_t k = 0; k < p.width - 1; ++k)
          if (!tap_in_sequence(p, b, t, k, s)) k8 = kMasked;
      }
    }
    kind[t - t0] = k8;
  }
}

// Whether token q's gradient reads g of a later token of another sequence.
inline bool dx_masked(const BatchParams& p, int64_t b, int64_t q) {
  if (p.seq_idx == nullptr) return false;
  const int64_t s = p.sequence(b, q), last = min64(q + p.width - 1, p.seqlen - 1);
  for (int64_t t = q + 1; t <= last; ++t)
    if (p.sequence(b, t) != s) return true;
  return false;
}

// Channel c's positions first - (width-1) .. end - 1 in fp32 (before the row:
// its initial state, or zeros).
template <class Isa, typename scalar_t>
void load_channel_window(const BatchParams& p, const scalar_t* xc, const scalar_t* initc,
                         int64_t first, int64_t end, float* xs) {
  const int64_t H = p.width - 1;
  int64_t pos = first - H;
  for (; pos < 0 && pos < end; ++pos)
    xs[pos - first + H] =
        initc == nullptr ? 0.f : Convert<Isa>::to_float(initc[(pos + H) * p.initial_states.tok]);
  if (pos < end)
    copy_channels<Isa>(xs + (pos - first + H), 1, xc + pos * p.x.tok, p.x.tok, end - pos);
}

// sum_i a[i] * b[i] (b null: sum_i a[i]) in 16 fixed lanes, summed in a fixed
// order: vectorised without reassociation, the same bits on every run.
inline float dot_row(const float* a, const float* b, int64_t count) {
  constexpr int64_t kLanes = 16;
  float lanes[kLanes] = {};
  int64_t i = 0;
  if (b == nullptr) {
    for (; i + kLanes <= count; i += kLanes)
      for (int64_t j = 0; j < kLanes; ++j) lanes[j] += a[i + j];
    for (; i < count; ++i) lanes[i % kLanes] += a[i];
  } else {
    for (; i + kLanes <= count; i += kLanes)
      for (int64_t j = 0; j < kLanes; ++j) lanes[j] += a[i + j] * b[i + j];
    for (; i < count; ++i) lanes[i % kLanes] += a[i] * b[i];
  }
  float sum = 0.f;
  for (int64_t j = 0; j < kLanes; ++j) sum += lanes[j];
  return sum;
}

// One channel's taps and bias, in scalars.
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

// The same for one token with its masks.
inline float conv_masked(const BatchParams& p, int64_t b, int64_t t, const float* window,
                         const float* wk, float bias) {
  const int64_t s = p.sequence(b, t);
  float acc = bias;
  for (int64_t k = 0; k < p.width; ++k)
    if (tap_in_sequence(p, b, t, k, s)) acc += wk[k] * window[k];
  return acc;
}

template <class Isa, typename scalar_t>
void batch_fwd_rows(const BatchParams& p, const CpuWeights& w, int64_t b, int64_t t0, int64_t t1,
                    int64_t c0, int64_t n, const scalar_t* x, scalar_t* out, float* scratch) {
  const int64_t count = t1 - t0;
  float* xs = scratch;                    // kRowChunk + kMaxWidth
  float* y = xs + kRowChunk + kMaxWidth;  // kRowChunk
  float* e = y + kRowChunk;               // kRowChunk
  auto* kind = reinterpret_cast<uint8_t*>(e + kRowChunk);
  classify_windows(p, b, t0, t1, kind);
  const bool masked = p.seq_idx != nullptr;
  for (int64_t c = 0; c < n; ++c) {
    const ChannelTaps taps(p, w, c0 + c);
    const float* wk = taps.w;
    const float bias = taps.bias;
    load_channel_window<Isa>(p, x + c * p.x.dim, at<const scalar_t>(p.initial_states, b, c0 + c),
                             t0, t1, xs);
    conv_row(xs, wk, bias, p.width, count, y);
    if (masked)
      for (int64_t i = 0; i < count; ++i)
        if (kind[i] == kMasked) y[i] = conv_masked(p, b, t0 + i, xs + i, wk, bias);
    if (p.silu) {
      for (int64_t i = 0; i < count; ++i) e[i] = exp_fast(-y[i]);
      for (int64_t i = 0; i < count; ++i) y[i] = y[i] / (1.f + e[i]);
    }
    if (masked)
      for (int64_t i = 0; i < count; ++i)
        if (kind[i] == kPadding) y[i] = 0.f;
    copy_channels<Isa>(out + c * p.out.dim + t0 * p.out.tok, p.out.tok, y, 1, count);
  }
}

template <class Isa, typename scalar_t>
void batch_bwd_rows(const BatchParams& p, const CpuWeights& w, int64_t b, int64_t t0, int64_t t1,
                    int64_t c0, int64_t n, float* scratch, float* dw, float* db) {
  const int64_t H = p.width - 1, L = p.seqlen, count = t1 - t0;
  const int64_t te = min64(L, t1 + H), rows = te - t0;
  const scalar_t* x = at<const scalar_t>(p.x, b, 0);
  const scalar_t* dout = at<const scalar_t>(p.dout, b, 0);
  scalar_t* dx = at<scalar_t>(p.dx, b, 0);
  const scalar_t* dfinal = at<const scalar_t>(p.dfinal_states, b, 0);
  scalar_t* dinit = at<scalar_t>(p.dinitial_states, b, 0);

  float* xs = scratch;                        // positions t0 - H .. te - 1
  float* g = xs + kRowChunk + 2 * kMaxWidth;  // tokens t0 .. t1 + H - 1 (zero past te)
  float* pre = g + kRowChunk + kMaxWidth;     // tokens t0 .. te - 1
  float* gm = pre + kRowChunk + kMaxWidth;    // g with masked tokens zeroed
  float* acc = gm + kRowChunk + kMaxWidth;    // dx of tokens t0 .. t1 - 1
  auto* kind = reinterpret_cast<uint8_t*>(acc + kRowChunk);
  auto* dx_kind = kind + kRowChunk + kMaxWidth;
  const bool masked = p.seq_idx != nullptr;
  classify_windows(p, b, t0, te, kind);
  for (int64_t q = t0; q < t1; ++q) dx_kind[q - t0] = dx_masked(p, b, q) ? kMasked : kClean;
  const int64_t s0 = L > 0 ? p.sequence(b, 0) : 0;

  for (int64_t c = 0; c < n; ++c) {
    const int64_t ch = c0 + c;
    const ChannelTaps taps(p, w, ch);
    const float* wk = taps.w;
    const float bias = taps.bias;
    load_channel_window<Isa>(p, x + ch * p.x.dim, at<const scalar_t>(p.initial_states, b, ch), t0,
                             te, xs);
    copy_channels<Isa>(g, 1, dout + ch * p.dout.dim + t0 * p.dout.tok, p.dout.tok, rows);
    for (int64_t i = rows; i < count + H; ++i) g[i] = 0.f;

    // g = dout * act'(pre) at the pre-activation, zero for padding.
    conv_row(xs, wk, bias, p.width, rows, pre);
    if (masked)
      for (int64_t i = 0; i < rows; ++i)
        if (kind[i] == kMasked) pre[i] = conv_masked(p, b, t0 + i, xs + i, wk, bias);
    if (p.silu) {
      for (int64_t i = 0; i < rows; ++i) gm[i] = exp_fast(-pre[i]);
      for (int64_t i = 0; i < rows; ++i) {
        const float sig = 1.f / (1.f + gm[i]);
        g[i] *= sig * (1.f + pre[i] * (1.f - sig));
      }
    }
    if (masked)
      for (int64_t i = 0; i < rows; ++i)
        if (kind[i] == kPadding) g[i] = 0.f;

    // dbias and dweight over the chunk's own tokens; masked tokens add their valid taps.
    const float dbc = dot_row(g, nullptr, count);
    for (int64_t i = 0; i < count; ++i) gm[i] = masked && kind[i] != kClean ? 0.f : g[i];
    for (int64_t k = 0; k < p.width; ++k) {
      const float* col = xs + k;
      float sum = dot_row(gm, col, count);
      if (masked)
        for (int64_t i = 0; i < count; ++i)
          if (kind[i] == kMasked && tap_in_sequence(p, b, t0 + i, k, p.sequence(b, t0 + i)))
            sum += g[i] * col[i];
      dw[k * n + c] += sum;
    }
    db[c] += dbc;

    // dx[q] = sum_k w[k] g[q + H - k] (g is zero past the row), masked where needed.
    for (int64_t i = 0; i < count; ++i) acc[i] = 0.f;
    for (int64_t k = 0; k < p.width; ++k) {
      const float wkk = wk[k];
      const float* src = g + H - k;
      for (int64_t i = 0; i < count; ++i) acc[i] += wkk * src[i];
    }
    if (masked) {
      for (int64_t i = 0; i < count; ++i) {
        if (dx_kind[i] == kClean) continue;
        const int64_t q = t0 + i, s = p.sequence(b, q);
        float v = 0.f;
        for (int64_t k = 0; k < p.width; ++k) {
          const int64_t t = q + H - k;
          if (t < L && p.sequence(b, t) == s) v += wk[k] * g[t - t0];
        }
        acc[i] = v;
      }
    }
    if (dfinal != nullptr)
      for (int64_t q = max64(t0, L - H); q < t1; ++q)
        acc[q - t0] += Convert<Isa>::to_float(
            dfinal[ch * p.dfinal_states.dim + (q - (L - H)) * p.dfinal_states.tok]);
    copy_channels<Isa>(dx + ch * p.dx.dim + t0 * p.dx.tok, p.dx.tok, acc, 1, count);

    if (t0 != 0 || dinit == nullptr) continue;
    for (int64_t i = 0; i < H; ++i) {
      float v = 0.f;
      for (int64_t k = 0; k <= i; ++k) {
        const int64_t t = i - k;
        if (t < L && (!masked || p.sequence(b, t) == s0)) v += wk[k] * g[t];
      }
      if (dfinal != nullptr && i >= L)
        v += Convert<Isa>::to_float(
            dfinal[ch * p.dfinal_states.dim + (i - L) * p.dfinal_states.tok]);
      Convert<Isa>::from_float(v, dinit[ch * p.dinitial_states.dim + i * p.dinitial_states.tok]);
    }
  }
}

// Outputs of tokens [t0, t1) of row b, channels [c0, c1); the item holding the
// row's last token also writes its final states.
template <class Isa, typename scalar_t>
void batch_fwd_item(const BatchParams& p, const CpuWeights& w, int64_t b, int64_t t0, int64_t t1,
                    int64_t c0, int64_t c1, float* scratch) {
  const int64_t n = c1 - c0, H = p.width - 1;
  const int64_t x_tok = p.x.tok, x_dim = p.x.dim;
  const scalar_t* x = at<const scalar_t>(p.x, b, c0);
  scalar_t* out = at<scalar_t>(p.out, b, c0);
  const scalar_t* init = at<const scalar_t>(p.initial_states, b, c0);
  if (x_dim == 1) {
    batch_fwd_in_place<Isa>(p, w, b, t0, t1, c0, n, x, init, out, scratch);
  } else {
    batch_fwd_rows<Isa>(p, w, b, t0, t1, c0, n, x, out, scratch);
  }

  if (!p.final_states.present() || t1 != p.seqlen) return;
  // The last width-1 columns of cat(initial state or zeros, x).
  scalar_t* fin = at<scalar_t>(p.final_states, b, c0);
  for (int64_t j = 0; j < H; ++j) {
    const int64_t src = p.seqlen - H + j;
    scalar_t* dst = fin + j * p.final_states.tok;
    if (src >= 0) {
      copy_channels<Isa>(dst, p.final_states.dim, x + src * x_tok, x_dim, n);
    } else if (init != nullptr) {
      copy_channels<Isa>(dst, p.final_states.dim, init + (src + H) * p.initial_states.tok,
                         p.initial_states.dim, n);
    } else {
      fill_channels<Isa>(dst, p.final_states.dim, n);
    }
  }
}

// dx of tokens [t0, t1) of row b, channels [c0, c1); dinitial_states of the
// row when t0 == 0; the chunk's dweight and dbias added into dw, db. All of it
// on fp32 tiles in scratch (x with its window, dout, the gradient g at the
// pre-activation, dx), filled and drained in the order of each tensor's unit
// stride: channel-last and channel-first inputs both stream.
template <class Isa, typename scalar_t>
void batch_bwd_item(const BatchParams& p, const CpuWeights& w, int64_t b, int64_t t0, int64_t t1,
                    int64_t c0, int64_t c1, float* scratch, float* dw, float* db) {
  if (p.x.dim != 1)
    return batch_bwd_rows<Isa, scalar_t>(p, w, b, t0, t1, c0, c1 - c0, scratch, dw, db);
  const int64_t n = c1 - c0, pitch = scratch_pitch(kBwdSlab), H = p.width - 1, L = p.seqlen;
  const scalar_t* x = at<const scalar_t>(p.x, b, c0);
  const scalar_t* dout = at<const scalar_t>(p.dout, b, c0);
  const scalar_t* init = at<const scalar_t>(p.initial_states, b, c0);
  const scalar_t* dfinal = at<const scalar_t>(p.dfinal_states, b, c0);
  const float* taps = w.taps + c0;
  const bool masked = p.seq_idx != nullptr;

  // Tokens [t0, te) need g (dx of token q reads g up to q + H).
  const int64_t te = min64(L, t1 + H), rows = te - t0;
  float* xs = scratch;                                  // positions t0 - H .. te - 1
  float* g = xs + (kBwdChunk + 2 * kMaxWidth) * pitch;  // tokens t0 .. te - 1 (dout first)
  float* dxs = g + (kBwdChunk + kMaxWidth) * pitch;     // tokens t0 .. t1 - 1
  load_window_tile<Isa>(p, x, init, t0, te, n, xs, pitch);
  load_tile<Isa>(g, pitch, dout + t0 * p.dout.tok, p.dout.tok, p.dout.dim, rows, n);

  float pre[kBwdSlab];
  for (int64_t t = t0; t < te; ++t) {
    float* gt = g + (t - t0) * pitch;
    const float* window = xs + (t - t0) * pitch;  // tap k at window + k * pitch
    const int64_t s = p.sequence(b, t);
    if (s < 0) {
      fill_channels<Isa>(gt, 1, n);
      continue;
    }
    bool valid[kMaxWidth];
    for (int64_t k = 0; k <= H; ++k) valid[k] = !masked || tap_in_sequence(p, b, t, k, s);
    for (int64_t c = 0; c < n; ++c) pre[c] = w.bias == nullptr ? 0.f : w.bias[c0 + c];
    for (int64_t k = 0; k <= H; ++k) {
      if (!valid[k]) continue;
      const float* tap = taps + k * p.dim;
      const float* col = window + k * pitch;
      for (int64_t c = 0; c < n; ++c) pre[c] += tap[c] * col[c];
    }
    if (p.silu) {
      float e[kBwdSlab];
      for (int64_t c = 0; c < n; ++c) e[c] = exp_fast(-pre[c]);
      for (int64_t c = 0; c < n; ++c) {
        const float sig = 1.f / (1.f + e[c]);
        gt[c] *= sig * (1.f + pre[c] * (1.f - sig));
      }
    }
    if (t >= t1) continue;  // a later chunk's token: its dweight share is that chunk's
    for (int64_t c = 0; c < n; ++c) db[c] += gt[c];
    for (int64_t k = 0; k <= H; ++k) {
      if (!valid[k]) continue;
      float* dwk = dw + k * n;
      const float* col = window + k * pitch;
      for (int64_t c = 0; c < n; ++c) dwk[c] += gt[c] * col[c];
    }
  }

  // dx[q] = sum_k w[k] g[q + H - k] over taps of q's sequence, + dfinal_states.
  for (int64_t q = t0; q < t1; ++q) {
    float* acc = dxs + (q - t0) * pitch;
    for (int64_t c = 0; c < n; ++c) acc[c] = 0.f;
    const int64_t s = p.sequence(b, q);
    for (int64_t k = 0; k <= H; ++k) {
      const int64_t t = q + H - k;
      if (t >= L || (masked && p.sequence(b, t) != s)) continue;
      const float* gt = g + (t - t0) * pitch;
      const float* tap = taps + k * p.dim;
      for (int64_t c = 0; c < n; ++c) acc[c] += tap[c] * gt[c];
    }
    if (dfinal != nullptr && q >= L - H) {
      const scalar_t* col = dfinal + (q - (L - H)) * p.dfinal_states.tok;
      for (int64_t c = 0; c < n; ++c)
        acc[c] += Convert<Isa>::to_float(col[c * p.dfinal_states.dim]);
    }
  }
  scalar_t* dx = at<scalar_t>(p.dx, b, c0);
  store_tile<Isa>(dx + t0 * p.dx.tok, p.dx.tok, p.dx.dim, dxs, pitch, t1 - t0, n);

  if (t0 != 0 || !p.dinitial_states.present()) return;
  // Initial-state column i (position i - H) feeds tap k of token i - k, when
  // that token's sequence is the row's first; and, for short rows, final column i - L.
  scalar_t* dinit = at<scalar_t>(p.dinitial_states, b, c0);
  const int64_t s0 = L > 0 ? p.sequence(b, 0) : 0;
  float acc[kBwdSlab];
  for (int64_t i = 0; i < H; ++i) {
    for (int64_t c = 0; c < n; ++c) acc[c] = 0.f;
    for (int64_t k = 0; k <= i; ++k) {
      const int64_t t = i - k;
      if (t >= L || (masked && p.sequence(b, t) != s0)) continue;
      const float* gt = g + t * pitch;
      const float* tap = taps + k * p.dim;
      for (int64_t c = 0; c < n; ++c) acc[c] += tap[c] * gt[c];
    }
    if (dfinal != nullptr && i >= L) {
      const scalar_t* col = dfinal + (i - L) * p.dfinal_states.tok;
      for (int64_t c = 0; c < n; ++c)
        acc[c] += Convert<Isa>::to_float(col[c * p.dfinal_states.dim]);
    }
    copy_channels<Isa>(dinit + i * p.dinitial_states.tok, p.dinitial_states.dim, acc, 1, n);
  }
}

// Calls f.template operator()<kW>() with the width as a compile-time constant;
// false for a width outside kW..kMaxWidth.
template <int kW = 2, typename F>
bool with_width(int64_t width, F&& f) {
  if (width == kW) {
    f.template operator()<kW>();
    return true;
  }
  if constexpr (kW < kMaxWidth) {
    return with_width<kW + 1>(width, f);
  } else {
    return false;
  }
}

// Calls f with a value of the storage type named by t.
template <typename F>
auto with_storage_type(c10::ScalarType t, F&& f) {
  switch (t) {
    case c10::ScalarType::Half:
      return f(f16_t{});
    case c10::ScalarType::BFloat16:
      return f(bf16_t{});
    default:
      return f(float{});
  }
}

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
  with_storage_type(p.weight_type, [&](auto tag) {
    using T = decltype(tag);
    const T* w = static_cast<const T*>(p.weight);
    if (p.weight_tap_stride == 1 && p.weight_dim_stride == p.width &&
        with_width(p.width, [&]<int kW>() { widen_contiguous<Isa, kW>(w, p.dim, taps); }))
      return;
    for (int64_t k = 0; k < p.width; ++k)
      for (int64_t c = 0; c < p.dim; ++c)
        taps[k * p.dim + c] =
            Convert<Isa>::to_float(w[c * p.weight_dim_stride + k * p.weight_tap_stride]);
  });
  if (p.bias == nullptr) return;
  // With this set's conversions (a scalar loop in the dispatcher's baseline code took ~1.6
  // of a one-row decode call's ~17 us).
  with_storage_type(p.bias_type, [&](auto tag) {
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
  return with_storage_type(p.x_type, [&](auto x_tag) {
    return with_storage_type(state_type, [&](auto s_tag) -> FwdItemFn {
      return &fwd_item<Isa, decltype(x_tag), decltype(s_tag)>;
    });
  });
}

template <class Isa>
UpdateItemFn select_update(const UpdateParams& p) {
  return with_storage_type(p.x_type, [&](auto x_tag) {
    return with_storage_type(p.state_type, [&](auto s_tag) -> UpdateItemFn {
      return &update_item<Isa, decltype(x_tag), decltype(s_tag)>;
    });
  });
}

template <class Isa>
BatchFwdItemFn select_batch_fwd(const BatchParams& p) {
  return with_storage_type(p.x_type, [&](auto x_tag) -> BatchFwdItemFn {
    return &batch_fwd_item<Isa, decltype(x_tag)>;
  });
}

template <class Isa>
BatchBwdItemFn select_batch_bwd(const BatchParams& p) {
  return with_storage_type(p.x_type, [&](auto x_tag) -> BatchBwdItemFn {
    return &batch_bwd_item<Isa, decltype(x_tag)>;
  });
}

}  // namespace
}  // namespace causal_conv1d::cpu
