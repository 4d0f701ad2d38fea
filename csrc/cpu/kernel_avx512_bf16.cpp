// AVX-512 kernels: fp32 math in 16-lane registers for every storage type, and,
// when x and the weights are bf16, the prefill's main loop as the VNNI
// micro-kernel: taps packed in bf16 pairs (kernels.h, CpuWeights::vnni), the
// activations of two consecutive window columns interleaved into pairs, and
// one _mm512_dpbf16_ps per pair of taps into fp32 accumulators preloaded with
// the bias; SiLU fused before the bf16 store. Compiled with -mavx512f
// -mavx512bw -mavx512vl -mavx512bf16 -mfma -mf16c only.
#include <immintrin.h>

#include <type_traits>

#include "kernel_simd.h"

namespace causal_conv1d::cpu {
namespace {

struct Avx512Bf16 {
  using V = __m512;
  static constexpr int64_t kLanes = 16;

  static float half_to_float(uint16_t h) { return _cvtsh_ss(h); }
  static uint16_t float_to_half(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float v) { return _mm512_set1_ps(v); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V rcp(V a) { return _mm512_rcp14_ps(a); }                      // 1/a to 14 bits
  static V fnmadd(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a * b
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  // max/min return the second operand for NaN lanes: NaN inputs clamp, and the
  // NaN still reaches the result through SiLU's numerator.
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static V pow2_from_shifted(V shifted) {
    const __m512i n =
        _mm512_sub_epi32(_mm512_castps_si512(shifted), _mm512_set1_epi32(0x4B400000 - 127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(n, 23));
  }

  static __m512i widen16(const void* p) {
    return _mm512_cvtepu16_epi32(_mm256_loadu_si256(static_cast<const __m256i*>(p)));
  }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load(const bf16_t* p) { return _mm512_castsi512_ps(_mm512_slli_epi32(widen16(p), 16)); }
  static V load(const f16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }

  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static void store(bf16_t* p, V v) {
    const __m512i bits = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7FFF)), lsb);
    r = _mm512_srli_epi32(r, 16);
    r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(r));
  }
  static void store(f16_t* p, V v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                        _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }

  // The VNNI micro-kernel: bf16 window columns straight from x, bf16 taps.
  static void conv_token_vnni(const ConvParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                              const bf16_t* in, int64_t in_tok, bf16_t* out) {
    const int64_t pairs = (p.width + 1) / 2;
    int64_t c = 0;
    for (; c + kLanes <= n; c += kLanes) {
      V acc = w.bias == nullptr ? zero() : load(w.bias + c0 + c);
      for (int64_t j = 0; j < pairs; ++j) {
        // Lane i: column 2j of channel i in the low half, column 2j+1 (or a zero
        // for the padding tap of an odd width) in the high half.
        const __m512i even = widen16(in + 2 * j * in_tok + c);
        const __m512i odd =
            2 * j + 1 < p.width ? widen16(in + (2 * j + 1) * in_tok + c) : _mm512_setzero_si512();
        const __m512i a = _mm512_or_si512(even, _mm512_slli_epi32(odd, 16));
        const __m512i b = _mm512_loadu_si512(w.vnni + 2 * (j * p.dim + c0 + c));
        acc = _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
      }
      store(out + c, p.silu ? silu_vec<Avx512Bf16>(acc) : acc);
    }
    if (c < n) conv_token_loops<Avx512Bf16>(p, w, c0 + c, n - c, in + c, in_tok, 1, out + c, 1);
  }

  template <typename in_t, typename out_t>
  static void conv_token(const ConvParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                         const in_t* in, int64_t in_tok, int64_t in_dim, out_t* out,
                         int64_t out_dim) {
    if constexpr (std::is_same_v<in_t, bf16_t> && std::is_same_v<out_t, bf16_t>) {
      if (w.vnni != nullptr && in_dim == 1 && out_dim == 1) {
        conv_token_vnni(p, w, c0, n, in, in_tok, out);
        return;
      }
    }
    conv_token_vec<Avx512Bf16>(p, w, c0, n, in, in_tok, in_dim, out, out_dim);
  }
};

}  // namespace

CpuKernelSet avx512_bf16_kernels() {
  return {"avx512_bf16", true, &select_fwd<Avx512Bf16>, &select_update<Avx512Bf16>};
}

}  // namespace causal_conv1d::cpu
