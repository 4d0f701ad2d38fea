// The vector half of the SIMD ISAs (AVX2, AVX-512): SiLU and conv_token over
// `Isa::V` registers of Isa::kLanes fp32 lanes, for the unit-stride layouts;
// other layouts and the channel tail take the plain loops of kernel_items.h.
// Included only by ISA translation units, after kernel_items.h.
#pragma once

#include "kernel_items.h"

namespace causal_conv1d::cpu {
namespace {

// v / (1 + exp(-v)) with the polynomial exp of kernel_items.h and a
// reciprocal estimate refined by one Newton step (a division would be the
// slowest instruction of the loop).
template <class Isa>
inline typename Isa::V silu_vec(typename Isa::V v) {
  using V = typename Isa::V;
  const V x = Isa::min(Isa::max(Isa::sub(Isa::zero(), v), Isa::set1(kExpLo)), Isa::set1(kExpHi));
  const V shifted = Isa::fmadd(x, Isa::set1(kLog2e), Isa::set1(kRoundShift));
  const V n = Isa::sub(shifted, Isa::set1(kRoundShift));
  V r = Isa::fmadd(n, Isa::set1(-kLn2Hi), x);
  r = Isa::fmadd(n, Isa::set1(-kLn2Lo), r);
  V p = Isa::set1(kExpPoly[0]);
  for (int i = 1; i < 6; ++i) p = Isa::fmadd(p, r, Isa::set1(kExpPoly[i]));
  p = Isa::fmadd(p, Isa::mul(r, r), Isa::add(r, Isa::set1(1.f)));
  const V e = Isa::mul(p, Isa::pow2_from_shifted(shifted));
  const V d = Isa::add(Isa::set1(1.f), e);
  const V y = Isa::rcp(d);
  return Isa::mul(v, Isa::mul(y, Isa::fnmadd(d, y, Isa::set1(2.f))));
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
  int64_t c = 0;
  for (; c + Isa::kLanes <= n; c += Isa::kLanes) {
    V acc = w.bias == nullptr ? Isa::zero() : Isa::load(w.bias + c0 + c);
    for (int64_t k = 0; k < p.width; ++k)
      acc = Isa::fmadd(Isa::load(w.taps + k * p.dim + c0 + c), Isa::load(in + k * in_tok + c), acc);
    Isa::store(out + c, p.silu ? silu_vec<Isa>(acc) : acc);
  }
  if (c < n) conv_token_loops<Isa>(p, w, c0 + c, n - c, in + c, in_tok, 1, out + c, 1);
}

}  // namespace
}  // namespace causal_conv1d::cpu
