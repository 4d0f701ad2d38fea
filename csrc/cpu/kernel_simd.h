// The vector half of the SIMD ISAs (AVX2, AVX-512): SiLU and conv_token over
// `Isa::V` registers of Isa::kLanes fp32 lanes, for the unit-stride layouts;
// other layouts and the channel tail take the plain loops of kernel_items.h.
// Included only by ISA translation units, after kernel_items.h.
#pragma once

#include "kernel_items.h"

namespace causal_conv1d::cpu {
namespace {

// 2^f on |f| <= 1/2 to a relative 1.0e-4 (minimax, degree 3): enough for
// 16-bit outputs (a bf16 ulp is 3.9e-3, an fp16 ulp 9.8e-4). Its constant
// term is exactly 1, so that z = kExp2Hi gives 1 * 2^128, infinite under
// either policy's scale (a constant below 1 would leave AVX-512's vscalefps a
// finite result there).
constexpr float kExp2Poly3[4] = {0.0550089329f, 0.242210969f, 0.693282902f, 1.f};
// 2^n stays normal above kExp2Lo and is infinite at kExp2Hi (see kExpHi).
constexpr float kExp2Lo = -126.f, kExp2Hi = 128.f;
// 2^f on 0 <= f < 1 to a relative 8.6e-5 (minimax, degree 3, constant term 1),
// for policies that split z at its floor (Isa::kSplitsAtFloor).
constexpr float kExp2Poly3Floor[4] = {0.0770671740f, 0.227644846f, 0.695116818f, 1.f};

// v / (1 + exp(-v)) as accurate as the output type keeps. exp(-v) = p * 2^n
// with n an integer, the policy supplying round(z) and scale(p, n) = p * 2^n.
// For fp32 outputs, the degree-7 e^r of items/common.h on the remainder of a
// two-part ln2 reduction and a reciprocal estimate refined by one Newton step
// (about 2 ulp; a division would be the slowest instruction of the loop); for
// 16-bit outputs 2^f on f = z - n with z = -v log2(e), and the bare reciprocal
// estimate (AVX2: relative 3.7e-4, AVX-512: 6e-5).
// The clamps keep 2^n normal below and let it overflow above, so that, as
// with v * sigmoid(v), large negative v give -0 and -inf gives NaN (the
// reciprocal of an infinite 1 + e is 0; the Newton factor, NaN there, is
// capped at 2). NaN lanes clamp (max/min return their second operand) and the
// NaN still reaches the result through the numerator.
template <class Isa, typename out_t = float>
inline typename Isa::V silu_vec(typename Isa::V v) {
  using V = typename Isa::V;
  V n, p;
  if constexpr (std::is_same_v<out_t, float>) {
    const V x = Isa::min(Isa::max(Isa::sub(Isa::zero(), v), Isa::set1(kExpLo)), Isa::set1(kExpHi));
    n = Isa::round(Isa::mul(x, Isa::set1(kLog2e)));
    V r = Isa::fmadd(n, Isa::set1(-kLn2Hi), x);
    r = Isa::fmadd(n, Isa::set1(-kLn2Lo), r);
    p = Isa::set1(kExpPoly[0]);
    for (int i = 1; i < 6; ++i) p = Isa::fmadd(p, r, Isa::set1(kExpPoly[i]));
    p = Isa::fmadd(p, Isa::mul(r, r), Isa::add(r, Isa::set1(1.f)));
  } else if constexpr (Isa::kSplitsAtFloor) {
    // z's fraction above its floor in one instruction, and scale(p, z) takes
    // floor(z) itself and saturates (0 far below, infinite far above; an
    // infinite z has fraction 0): no clamps, no rounding, 9 instructions
    // where the split below takes 12.
    n = Isa::mul(v, Isa::set1(-kLog2e));
    const V f = Isa::frac_above_floor(n);
    p = Isa::set1(kExp2Poly3Floor[0]);
    for (int i = 1; i < 4; ++i) p = Isa::fmadd(p, f, Isa::set1(kExp2Poly3Floor[i]));
  } else {
    const V z =
        Isa::min(Isa::max(Isa::mul(v, Isa::set1(-kLog2e)), Isa::set1(kExp2Lo)), Isa::set1(kExp2Hi));
    n = Isa::round(z);
    const V f = Isa::sub(z, n);
    p = Isa::set1(kExp2Poly3[0]);
    for (int i = 1; i < 4; ++i) p = Isa::fmadd(p, f, Isa::set1(kExp2Poly3[i]));
  }
  const V d = Isa::add(Isa::set1(1.f), Isa::scale(p, n));
  const V y = Isa::rcp(d);
  if constexpr (!std::is_same_v<out_t, float>) return Isa::mul(v, y);
  const V newton = Isa::min(Isa::fnmadd(d, y, Isa::set1(2.f)), Isa::set1(2.f));
  return Isa::mul(v, Isa::mul(y, newton));
}

// One output token over channels [c0, c0 + n): kLanes channels per register,
// bias then one fused multiply-add per tap, activation, one store.
template <class Isa, typename in_t, typename out_t>
inline void conv_token_vec(const ConvParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                           const in_t* in, int64_t in_tok, int64_t in_dim, out_t* out,
                           int64_t out_dim) {
  if (in_dim != 1 || out_dim != 1) {
    conv_token_loops<Isa>(p, w, c0, n, in, in_tok, in_dim, out, out_dim);
    return;
  }
  using V = typename Isa::V;
  const bool silu = p.silu;  // a local: the stores could otherwise alias it
  int64_t c = 0;
  for (; c + Isa::kLanes <= n; c += Isa::kLanes) {
    V acc = w.bias == nullptr ? Isa::zero() : Isa::load(w.bias + c0 + c);
    for (int64_t k = 0; k < p.width; ++k)
      acc = Isa::fmadd(Isa::load(w.taps + k * p.dim + c0 + c), Isa::load(in + k * in_tok + c), acc);
    Isa::store_out(out + c, silu ? silu_vec<Isa, out_t>(acc) : acc);
  }
  if (c < n) conv_token_loops<Isa>(p, w, c0 + c, n - c, in + c, in_tok, 1, out + c, 1);
}

// Registers of Isa::kLanes values of T that one 64-byte cache line holds (at least one).
template <class Isa, typename T>
constexpr int kLineRegs = 64 / (sizeof(T) * Isa::kLanes) > 0 ? 64 / (sizeof(T) * Isa::kLanes) : 1;

// Outputs of `count` consecutive tokens over the kCols registers of channels
// at c: the kW taps, the bias and the width-1 window in registers; per token
// and register one load of x, kW fused multiply-adds, the activation and one
// store. `in` points at the first window column (the token before the first
// output minus width-2), `out` at the first output; both unit-stride along
// channels and offset by c already.
template <class Isa, int kW, int kCols, typename in_t, typename out_t>
inline void conv_column_regs(const ConvParams& p, const CpuWeights& w, int64_t c, const in_t* in,
                             int64_t in_tok, out_t* out, int64_t out_tok, int64_t count) {
  using V = typename Isa::V;
  constexpr int H = kW - 1;
  const bool silu = p.silu;  // a local: the stores could otherwise alias it
  V tap[kW][kCols], bias[kCols], window[H][kCols];
  for (int j = 0; j < kCols; ++j) {
    const int64_t cj = c + j * Isa::kLanes;
    for (int k = 0; k < kW; ++k) tap[k][j] = Isa::load(w.taps + k * p.dim + cj);
    bias[j] = w.bias == nullptr ? Isa::zero() : Isa::load(w.bias + cj);
    for (int k = 0; k < H; ++k) window[k][j] = Isa::load(in + k * in_tok + j * Isa::kLanes);
  }
  for (int64_t t = 0; t < count; ++t) {
    for (int j = 0; j < kCols; ++j) {
      const V xt = Isa::load(in + (H + t) * in_tok + j * Isa::kLanes);
      V acc = bias[j];
      for (int k = 0; k < H; ++k) acc = Isa::fmadd(tap[k][j], window[k][j], acc);
      acc = Isa::fmadd(tap[H][j], xt, acc);
      for (int k = 0; k + 1 < H; ++k) window[k][j] = window[k + 1][j];
      window[H - 1][j] = xt;
      Isa::store_out(out + t * out_tok + j * Isa::kLanes, silu ? silu_vec<Isa, out_t>(acc) : acc);
    }
  }
}

// Outputs of `count` consecutive tokens over channels [c0, c0 + n), in
// columns of one cache line of x each walking down the tokens (see
// conv_column_regs). A column spans a whole line so that each line is used up
// while it is in L1: a row stride that is a multiple of 4 KiB puts the rows a
// column reads and writes in one cache set, which evicts them before the next
// column along the line could reuse them.
template <class Isa, int kW, typename in_t, typename out_t>
inline void conv_tokens_regs(const ConvParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                             const in_t* in, int64_t in_tok, out_t* out, int64_t out_tok,
                             int64_t count) {
  constexpr int kCols = kLineRegs<Isa, in_t>;
  int64_t c = 0;
  for (; c + kCols * Isa::kLanes <= n; c += kCols * Isa::kLanes)
    conv_column_regs<Isa, kW, kCols>(p, w, c0 + c, in + c, in_tok, out + c, out_tok, count);
  for (; c + Isa::kLanes <= n; c += Isa::kLanes)
    conv_column_regs<Isa, kW, 1>(p, w, c0 + c, in + c, in_tok, out + c, out_tok, count);
  if (c < n)
    for (int64_t t = 0; t < count; ++t)
      conv_token_loops<Isa>(p, w, c0 + c, n - c, in + t * in_tok + c, in_tok, 1,
                            out + t * out_tok + c, 1);
}

// conv_token for `count` consecutive tokens: the register-held window for
// unit-stride channels, one token at a time otherwise.
template <class Isa, typename in_t, typename out_t>
inline void conv_tokens_vec(const ConvParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                            const in_t* in, int64_t in_tok, int64_t in_dim, out_t* out,
                            int64_t out_tok, int64_t out_dim, int64_t count) {
  const bool done = in_dim == 1 && out_dim == 1 && with_width<CpuWidths>(p.width, [&]<int kW>() {
                      conv_tokens_regs<Isa, kW>(p, w, c0, n, in, in_tok, out, out_tok, count);
                    });
  if (!done) conv_tokens_loops<Isa>(p, w, c0, n, in, in_tok, in_dim, out, out_tok, out_dim, count);
}

// Isa::kLanes values from src to dst as they are.
template <class Isa, typename T>
inline void copy_lanes(T* dst, const T* src) {
  std::memcpy(dst, src, Isa::kLanes * sizeof(T));
}

// The filter and bias of a decode step over the channels from c0: read in
// place (kInPlace: the caller's filter and bias, of x's type, see
// update_reads_filter) or from the dispatcher's fp32 copy. Made a local of the
// step: its lane copies are byte copies, which may alias anything reachable,
// so fields read through p and w would be reloaded after every copy.
template <class Isa, int kW, bool kInPlace, typename x_t>
struct StepFilter {
  using V = typename Isa::V;
  using C = Convert<Isa>;
  int64_t dim;
  const float* taps;     // fp32 copy: taps[k * dim + c]
  const x_t* filter;     // in place: filter[c * kW + k]
  const float* bias;     // fp32 copy, or null
  const x_t* bias_in;    // in place, or null
  bool has_bias;

  StepFilter(const ConvParams& p, const CpuWeights& w, int64_t c0)
      : dim(p.dim),
        taps(kInPlace ? nullptr : w.taps + c0),
        filter(kInPlace ? static_cast<const x_t*>(p.weight) + c0 * kW : nullptr),
        bias(kInPlace || w.bias == nullptr ? nullptr : w.bias + c0),
        bias_in(kInPlace && p.bias != nullptr ? static_cast<const x_t*>(p.bias) + c0 : nullptr),
        has_bias(kInPlace ? p.bias != nullptr : w.bias != nullptr) {}

  // Isa::kLanes channels from c: the kW taps, the bias (or zeros).
  void load(int64_t c, V (&tap)[kW]) const {
    if constexpr (kInPlace) {
      Isa::template load_filter<kW>(filter + c * kW, tap);
    } else {
      for (int k = 0; k < kW; ++k) tap[k] = Isa::load(taps + k * dim + c);
    }
  }
  V load_bias(int64_t c) const {
    return !has_bias ? Isa::zero() : kInPlace ? Isa::load(bias_in + c) : Isa::load(bias + c);
  }
  // Channel c alone.
  float tap(int64_t c, int k) const {
    return kInPlace ? C::to_float(filter[c * kW + k]) : taps[k * dim + c];
  }
  float bias_at(int64_t c) const {
    return !has_bias ? 0.f : kInPlace ? C::to_float(bias_in[c]) : bias[c];
  }
};

// The common decode step in registers: one token, a linear state of exactly
// width-1 columns, unit-stride channels. Per register of channels: the window
// from the state and the token, the shifted state written back, the output.
// Each register reads x before it writes out, so out may be x. kInPlace: the
// taps and bias are read from the caller's filter (x's type, see
// update_reads_filter) instead of the dispatcher's fp32 copy.
template <class Isa, int kW, bool kInPlace, typename x_t, typename state_t>
inline void update_step_regs(const ConvParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                             const x_t* x, state_t* state, int64_t s_tok, x_t* out) {
  using V = typename Isa::V;
  using C = Convert<Isa>;
  using out_t = x_t;
  constexpr int H = kW - 1;
  // Locals, not reads through p and w: the lane copies below are byte copies,
  // which may alias anything reachable, so the compiler would have to reload
  // such fields after every copy.
  const bool silu = p.silu;
  const StepFilter<Isa, kW, kInPlace, x_t> f(p, w, c0);
  // kRegs registers of channels from c: every load first (out may be x), then
  // the state, then the outputs, whose SiLU chains are long enough in latency
  // that two side by side made the step faster than one at a time (dev box,
  // one thread, D 8192: one row 11.4 -> 10.1 us, 256 rows 1445 -> 1258), and
  // four than two (op call, one row 6.80 -> 6.57 us, 64 rows 205 -> 188, 256
  // rows 897 -> 842; AVX2's 16 registers no slower: 12.7 -> 12.4 at one row).
  // Inlined by force: left a call (as GCC 13 chose once the filter became a
  // StepFilter), the bf16 step took 7.9 against 7.0 us (one row, D 8192).
  const auto step = [&]<int kRegs>(int64_t c) __attribute__((always_inline)) {
    V acc[kRegs], xt[kRegs], window[kRegs][H];
    for (int r = 0; r < kRegs; ++r) {
      const int64_t cr = c + r * Isa::kLanes;
      V tap[kW];
      f.load(cr, tap);
      for (int k = 0; k < H; ++k) window[r][k] = Isa::load(state + k * s_tok + cr);
      xt[r] = Isa::load(x + cr);
      acc[r] = f.load_bias(cr);
      for (int k = 0; k < H; ++k) acc[r] = Isa::fmadd(tap[k], window[r][k], acc[r]);
      acc[r] = Isa::fmadd(tap[H], xt[r], acc[r]);
    }
    for (int r = 0; r < kRegs; ++r) {
      const int64_t cr = c + r * Isa::kLanes;
      if constexpr (std::is_same_v<state_t, x_t>) {  // the stored values, no rounding to redo
        for (int k = 0; k + 1 < H; ++k)
          copy_lanes<Isa>(state + k * s_tok + cr, state + (k + 1) * s_tok + cr);
        copy_lanes<Isa>(state + (H - 1) * s_tok + cr, x + cr);
      } else {
        for (int k = 0; k + 1 < H; ++k) Isa::store(state + k * s_tok + cr, window[r][k + 1]);
        Isa::store(state + (H - 1) * s_tok + cr, xt[r]);
      }
    }
    for (int r = 0; r < kRegs; ++r)
      Isa::store_out(out + c + r * Isa::kLanes, silu ? silu_vec<Isa, out_t>(acc[r]) : acc[r]);
  };
  int64_t c = 0;
  for (; c + 4 * Isa::kLanes <= n; c += 4 * Isa::kLanes) step.template operator()<4>(c);
  for (; c + 2 * Isa::kLanes <= n; c += 2 * Isa::kLanes) step.template operator()<2>(c);
  for (; c + Isa::kLanes <= n; c += Isa::kLanes) step.template operator()<1>(c);
  for (; c < n; ++c) {  // the channel tail, the same steps one channel at a time
    float window[H];
    for (int k = 0; k < H; ++k) window[k] = C::to_float(state[k * s_tok + c]);
    const float xt = C::to_float(x[c]);
    float acc = f.bias_at(c);
    for (int k = 0; k < H; ++k) acc += f.tap(c, k) * window[k];
    acc += f.tap(c, H) * xt;
    for (int k = 0; k + 1 < H; ++k) C::from_float(window[k + 1], state[k * s_tok + c]);
    C::from_float(xt, state[(H - 1) * s_tok + c]);
    C::from_float(silu ? silu_one(acc) : acc, out[c]);
  }
}

// Whether spec_step_regs applies to the call: speculative rows (vLLM's and
// SGLang's num_accepted_tokens: the window starts at column
// num_accepted_tokens[b] - 1) with unit-stride channels in x, out and the state.
inline bool spec_step_applies(const UpdateParams& p) {
  return p.mode == StateMode::kFrontSpec && !p.walks_tokens() && p.x_dim_stride == 1 &&
         p.out_dim_stride == 1 && p.state_dim_stride == 1;
}

// A speculative row of L tokens in registers, Isa::kLanes channels at a time:
// the filter and the window (columns base .. base + H - 1 of the line) loaded
// once, the line's columns 0 .. H - 2 written from the window's last H - 1,
// then per token, in order, its output from the window and the token, the
// window moving on by the token, which goes to column H - 1 + t (kFrontSpec's
// LinePlan). A token's x is read before its out is written (out may be x).
// kInPlace as in update_step_regs. Not inlined: inlined into update_item (beside
// the force-inlined step) it ran 25% slower (16 rows of 1+3 tokens, D 8192, one
// thread: 271 against 213 us).
template <class Isa, int kW, bool kInPlace, typename x_t, typename state_t>
__attribute__((noinline)) void spec_step_regs(const UpdateParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                           const x_t* x, state_t* state, x_t* out, int64_t L, int64_t base) {
  using V = typename Isa::V;
  using C = Convert<Isa>;
  constexpr int H = kW - 1;
  const bool silu = p.silu;
  const int64_t s_tok = p.state_tok_stride, x_tok = p.x_tok_stride, o_tok = p.out_tok_stride;
  const StepFilter<Isa, kW, kInPlace, x_t> f(p, w, c0);
  const state_t* const window = state + base * s_tok;
  // Column j of the line takes `from`'s kRegs registers of channels from c: their
  // bits where the types agree (no rounding to redo), else the fp32 values stored.
  const auto to_column = [&]<int kRegs>(int64_t j, int64_t c, const auto* from, int64_t from_tok,
                                        int64_t col, const V (&v)[kRegs])
                             __attribute__((always_inline)) {
    for (int r = 0; r < kRegs; ++r) {
      const int64_t cr = c + r * Isa::kLanes;
      if constexpr (std::is_same_v<state_t, std::remove_cvref_t<decltype(*from)>>)
        copy_lanes<Isa>(state + j * s_tok + cr, from + col * from_tok + cr);
      else
        Isa::store(state + j * s_tok + cr, v[r]);
    }
  };
  // kRegs registers of channels side by side (two SiLU chains in flight: one row of
  // 1 + 3 tokens, D 8192, one thread, op call 14.6 -> 13.1 us).
  const auto rows = [&]<int kRegs>(int64_t c) __attribute__((always_inline)) {
    V tap[kRegs][kW], win[kRegs][H], b[kRegs];
    for (int r = 0; r < kRegs; ++r) {
      const int64_t cr = c + r * Isa::kLanes;
      f.load(cr, tap[r]);
      b[r] = f.load_bias(cr);
      for (int k = 0; k < H; ++k) win[r][k] = Isa::load(window + k * s_tok + cr);
    }
    for (int k = 0; k + 1 < H; ++k) {  // columns 0 .. H - 2: the window's last H - 1
      V v[kRegs];
      for (int r = 0; r < kRegs; ++r) v[r] = win[r][k + 1];
      to_column.template operator()<kRegs>(k, c, window, s_tok, k + 1, v);
    }
    for (int64_t t = 0; t < L; ++t) {
      V xt[kRegs], acc[kRegs];
      for (int r = 0; r < kRegs; ++r) {
        xt[r] = Isa::load(x + t * x_tok + c + r * Isa::kLanes);
        acc[r] = b[r];
        for (int k = 0; k < H; ++k) acc[r] = Isa::fmadd(tap[r][k], win[r][k], acc[r]);
        acc[r] = Isa::fmadd(tap[r][H], xt[r], acc[r]);
        for (int k = 0; k + 1 < H; ++k) win[r][k] = win[r][k + 1];
        win[r][H - 1] = xt[r];
      }
      to_column.template operator()<kRegs>(H - 1 + t, c, x, x_tok, t, xt);  // before out: out may be x
      for (int r = 0; r < kRegs; ++r)
        Isa::store_out(out + t * o_tok + c + r * Isa::kLanes,
                       silu ? silu_vec<Isa, x_t>(acc[r]) : acc[r]);
    }
  };
  int64_t c = 0;
  for (; c + 2 * Isa::kLanes <= n; c += 2 * Isa::kLanes) rows.template operator()<2>(c);
  for (; c + Isa::kLanes <= n; c += Isa::kLanes) rows.template operator()<1>(c);
  for (; c < n; ++c) {  // the channel tail, the same steps one channel at a time
    float tap[kW], win[H];
    for (int k = 0; k < kW; ++k) tap[k] = f.tap(c, k);
    const float b = f.bias_at(c);
    for (int k = 0; k < H; ++k) win[k] = C::to_float(window[k * s_tok + c]);
    for (int k = 0; k + 1 < H; ++k) C::from_float(win[k + 1], state[k * s_tok + c]);
    for (int64_t t = 0; t < L; ++t) {
      const float xt = C::to_float(x[t * x_tok + c]);
      float acc = b;
      for (int k = 0; k < H; ++k) acc += tap[k] * win[k];
      acc += tap[H] * xt;
      for (int k = 0; k + 1 < H; ++k) win[k] = win[k + 1];
      win[H - 1] = xt;
      C::from_float(xt, state[(H - 1 + t) * s_tok + c]);
      C::from_float(silu ? silu_one(acc) : acc, out[t * o_tok + c]);
    }
  }
}

// Whether update_step_regs applies to the call: one token per row, a linear
// state of width-1 columns, unit-stride channels.
inline bool update_step_applies(const UpdateParams& p) {
  return p.single_step() && p.x_dim_stride == 1 && p.out_dim_stride == 1 &&
         p.state_dim_stride == 1;
}

// Whether the decode items of a call may read its filter and bias in place (where
// the dispatcher lets them, it prepares no fp32 copy: CpuWeights::taps null): a
// contiguous (dim, width) filter the policy loads (Isa::kLoadsFilter) and a bias,
// if any, with unit stride, both of x's type. A policy's decode steps decide
// whether the rest of the call suits them (update_reads_filter).
// A copy made per call cost a one-row decode a quarter of its time, and its
// lines, written by the calling thread, had to move to every other core
// (docs/DESIGN_LOG.md).
template <class Isa>
bool filter_readable(const UpdateParams& p) {
  bool loads = false;
  with_storage_type<CpuStorage>(p.x_type, [&](auto tag) {
    with_width<CpuWidths>(p.width,
                          [&]<int kW>() { loads = Isa::template kLoadsFilter<kW, decltype(tag)>; });
  });
  return loads && p.weight_type == p.x_type && p.weight_tap_stride == 1 &&
         p.weight_dim_stride == p.width &&
         (p.bias == nullptr || (p.bias_type == p.x_type && p.bias_stride == 1));
}

// Whether the decode items of this call read the filter in place: the steps of
// update_step_regs and spec_step_regs with a filter_readable filter.
template <class Isa>
bool update_reads_filter(const UpdateParams& p) {
  return filter_readable<Isa>(p) && (update_step_applies(p) || spec_step_applies(p));
}

// Calls step.template operator()<kW, kInPlace>() for the call's width, kInPlace
// where the filter and bias are read in place (update_reads_filter held: the
// dispatcher made no fp32 copy, and Isa loads such a filter); false for a width
// not compiled as such.
template <class Isa, typename x_t, typename F>
inline bool with_step_filter(const UpdateParams& p, const CpuWeights& w, const F& step) {
  return with_width<CpuWidths>(p.width, [&]<int kW>() {
    if constexpr (Isa::template kLoadsFilter<kW, x_t>) {
      if (w.taps == nullptr) {
        step.template operator()<kW, true>();
        return;
      }
    }
    step.template operator()<kW, false>();
  });
}

// update_step_regs where it applies (see update_item); false otherwise.
template <class Isa, typename x_t, typename state_t>
inline bool update_step_vec(const UpdateParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                            const x_t* x, state_t* state, x_t* out) {
  if (!update_step_applies(p)) return false;
  return with_step_filter<Isa, x_t>(p, w, [&]<int kW, bool kInPlace>() {
    update_step_regs<Isa, kW, kInPlace>(p, w, c0, n, x, state, p.state_tok_stride, out);
  });
}

// spec_step_regs where it applies (see update_item): row `row`'s L tokens;
// false otherwise.
template <class Isa, typename x_t, typename state_t>
inline bool spec_step_vec(const UpdateParams& p, const CpuWeights& w, int64_t row, int64_t c0,
                          int64_t n, const x_t* x, state_t* state, x_t* out, int64_t L) {
  if (!spec_step_applies(p)) return false;
  const int64_t base = p.line_plan(row, L).base;
  return with_step_filter<Isa, x_t>(p, w, [&]<int kW, bool kInPlace>() {
    spec_step_regs<Isa, kW, kInPlace>(p, w, c0, n, x, state, out, L, base);
  });
}

// What an ISA policy `struct Isa : SimdOps<Isa>` gets from the vector code
// above; a policy may hide any of these with its own (AVX-512's VNNI kernels).
template <class Isa>
struct SimdOps {
  // Whether Isa::load_filter<kW> reads kLanes channels' taps of a contiguous
  // filter of width kW and type T in place (update_reads_filter): never here.
  template <int kW, typename T>
  static constexpr bool kLoadsFilter = false;

  // Whether silu_vec's 16-bit path splits z at its floor: Isa::frac_above_floor(z)
  // = z - floor(z), and Isa::scale(p, z) = p * 2^floor(z), saturating. Not here.
  static constexpr bool kSplitsAtFloor = false;

  // Stores of outputs (never of states): a policy may round them more cheaply.
  template <typename T, typename V>
  static void store_out(T* p, V v) {
    Isa::store(p, v);
  }

  template <typename in_t, typename out_t>
  static void conv_token(const ConvParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                         const in_t* in, int64_t in_tok, int64_t in_dim, out_t* out,
                         int64_t out_dim) {
    conv_token_vec<Isa>(p, w, c0, n, in, in_tok, in_dim, out, out_dim);
  }

  template <typename in_t, typename out_t>
  static void conv_tokens(const ConvParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                          const in_t* in, int64_t in_tok, int64_t in_dim, out_t* out,
                          int64_t out_tok, int64_t out_dim, int64_t count) {
    conv_tokens_vec<Isa>(p, w, c0, n, in, in_tok, in_dim, out, out_tok, out_dim, count);
  }

  template <typename x_t, typename state_t>
  static bool update_step(const UpdateParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                          const x_t* x, state_t* state, x_t* out) {
    return update_step_vec<Isa>(p, w, c0, n, x, state, out);
  }

  template <typename x_t, typename state_t>
  static bool spec_step(const UpdateParams& p, const CpuWeights& w, int64_t row, int64_t c0,
                        int64_t n, const x_t* x, state_t* state, x_t* out, int64_t L) {
    return spec_step_vec<Isa>(p, w, row, c0, n, x, state, out, L);
  }
};

}  // namespace
}  // namespace causal_conv1d::cpu
