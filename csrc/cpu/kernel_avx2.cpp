// AVX2 kernels: fp32 math in 8-lane registers for every storage type. bf16 is
// widened with a shift and rounded to nearest even in integer lanes, fp16 goes
// through F16C. Compiled with -mavx2 -mfma -mf16c only (every AVX2 CPU has
// FMA and F16C; the dispatcher checks all three).
#include <immintrin.h>

#include "kernel_simd.h"

namespace causal_conv1d::cpu {
namespace {

struct Avx2 : SimdOps<Avx2> {
  using V = __m256;
  static constexpr int64_t kLanes = 8;

  static float half_to_float(uint16_t h) { return _cvtsh_ss(h); }
  static uint16_t float_to_half(float f) { return _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT); }

  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float v) { return _mm256_set1_ps(v); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V rcp(V a) { return _mm256_rcp_ps(a); }                        // 1/a to 12 bits
  static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }  // c - a * b
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  // max/min return the second operand for NaN lanes: NaN inputs clamp, and the
  // NaN still reaches the result through SiLU's numerator.
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static V round(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // p * 2^n for integral n in [-126, 128], assembled in the exponent bits (n = 128: infinity).
  static V scale(V p, V n) {
    const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(e, 23)));
  }

  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V load(const bf16_t* p) {
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
  }
  static V load(const f16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }

  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static void store(bf16_t* p, V v) {
    const __m256i bits = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7FFF)), lsb);
    r = _mm256_srli_epi32(r, 16);
    const __m256 nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
    r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), _mm256_castps_si256(nan));
    const __m128i packed =
        _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), packed);
  }
  static void store(f16_t* p, V v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
};

}  // namespace

CpuKernelSet avx2_kernels() {
  return {"avx2",
          false,
          &select_fwd<Avx2>,
          &select_update<Avx2>,
          &select_batch_fwd<Avx2>,
          &select_batch_bwd<Avx2>,
          &widen_filter<Avx2>,
          &update_reads_filter<Avx2>};
}

}  // namespace causal_conv1d::cpu
