// AVX-512 kernels: fp32 math in 16-lane registers for every storage type, and,
// when x and the weights are bf16, the prefill's main loop as the VNNI
// micro-kernel: taps packed in bf16 pairs (kernels.h, CpuWeights::vnni), the
// activations of two consecutive window columns interleaved into pairs, and
// one _mm512_dpbf16_ps per pair of taps into fp32 accumulators preloaded with
// the bias; SiLU fused before the bf16 store. The bf16 decode steps with the
// filter read in place pair the window the same way (token_major_step,
// channel_major_step). Compiled with -mavx512f -mavx512bw -mavx512vl
// -mavx512dq -mavx512bf16 -mfma -mf16c only.
#include <immintrin.h>

#include <array>
#include <type_traits>

#include "kernel_simd.h"

namespace causal_conv1d::cpu {
namespace {

struct Avx512Bf16 : SimdOps<Avx512Bf16> {
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
  static V round(V a) {
    return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  // p * 2^floor(n), 0 or infinite where that is out of range (vscalefps).
  static V scale(V p, V n) { return _mm512_scalef_ps(p, n); }
  static constexpr bool kSplitsAtFloor = true;
  static V frac_above_floor(V z) {  // z - floor(z) (vreduceps, AVX512DQ); 0 for infinite z
    return _mm512_reduce_ps(z, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
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

  // The filter read in place by the decode step (update_reads_filter): a
  // bf16 (dim, kW) filter of width 2 or 4 holds kLanes channels' taps in
  // kW / 2 registers, channel i's taps 2j and 2j + 1 in dword kW / 2 * i + j;
  // dword permutes (one instruction each, where word permutes take three)
  // gather pair j of every lane, then the pair's low word shifted up and its
  // high word masked are the two taps' fp32 values.
  template <int kW, typename T>
  static constexpr bool kLoadsFilter = std::is_same_v<T, bf16_t> && (kW == 2 || kW == 4);

  // The filter's tap pairs as they lie (VNNI pairs: lane i of pair[j] holds
  // channel i's taps 2j, 2j + 1, low word first).
  template <int kW, typename T>
  static void filter_pairs(const T* w, __m512i (&pair)[kW / 2]) {
    static_assert(kLoadsFilter<kW, T>, "see kLoadsFilter");
    const __m512i lo = _mm512_loadu_si512(w);
    if constexpr (kW == 2) {
      pair[0] = lo;
    } else {
      const __m512i hi = _mm512_loadu_si512(w + 32);
      const __m512i even =
          _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
      pair[0] = _mm512_permutex2var_epi32(lo, even, hi);
      pair[1] = _mm512_permutex2var_epi32(lo, _mm512_add_epi32(even, _mm512_set1_epi32(1)), hi);
    }
  }

  template <int kW, typename T>
  static void load_filter(const T* w, V (&tap)[kW]) {
    __m512i pair[kW / 2];
    filter_pairs<kW>(w, pair);
    for (int j = 0; j < kW / 2; ++j) {
      tap[2 * j] = _mm512_castsi512_ps(_mm512_slli_epi32(pair[j], 16));
      tap[2 * j + 1] =
          _mm512_castsi512_ps(_mm512_and_si512(pair[j], _mm512_set1_epi32(int(0xFFFF0000u))));
    }
  }

  // Outputs in bf16 with one instruction (vcvtneps2bf16: nearest even, but
  // results below the smallest normal flush to zero, so states never take it).
  template <typename T>
  static void store_out(T* p, V v) {
    if constexpr (std::is_same_v<T, bf16_t>) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), (__m256i)_mm512_cvtneps_pbh(v));
    } else {
      store(p, v);
    }
  }

  // The decode step on channel-major lines (Dao's state layout, SGLang's CUDA
  // pool: each channel's S columns side by side, channels S apart), bf16 x
  // and states, width 4, S = 3 or 4 columns of which the first `kLive`
  // (linear_len: 3, or 4 for Dao's shift of a 4-column line) are the line: the
  // window is columns kLive-3 .. kLive-1, the new line columns 1 .. kLive-1
  // then the token, columns past kLive untouched. 16 channels' lines are
  // S * 16 words in two registers. The new lines: where kLive == S, the old
  // words one word on (two unaligned loads) with x's words permuted into the
  // token columns, else two more permutes of the old words first. The sums:
  // with the filter read in place (bf16), two VNNI dot products, of the taps'
  // pairs as they lie with (window column 0, column 1) gathered from the old
  // lines and (column 2, token) from the new, one word permute each; with the
  // dispatcher's fp32 copy, one masked word permute per window column widens
  // it to fp32 (the word into a dword's high half) for four FMAs. Outputs as
  // update_step_regs. Where not (channel_major_applies), false.
  static bool channel_major_applies(const UpdateParams& p) {
    const int64_t S = p.state_len, live = p.linear_len();
    return (p.mode == StateMode::kShift || p.mode == StateMode::kFront) &&
           !p.query_start_loc.present() && p.seqlen == 1 && !p.walks_tokens() && p.width == 4 &&
           p.x_type == ScalarType::BFloat16 && p.state_type == ScalarType::BFloat16 &&
           p.state_tok_stride == 1 && p.state_dim_stride == S && (S == 3 || S == 4) && live >= 3 &&
           live <= S && p.x_dim_stride == 1 && p.out_dim_stride == 1;
  }

  // The word indices of channel_major_step's permutes for lines of S words.
  template <int S, int kLive>
  struct LineWords {
    uint16_t col[3][32];    // window column k into word 2i+1 of lane i (even words masked)
    uint16_t next[2][32];   // the new lines' words 0-31 and 32-63 from the old (as A|B)
    uint16_t token[2][32];  // x's word i into the new lines at i*S + kLive-1
    uint32_t token_mask[2];
    // VNNI pairs, lane i: (window column 0, column 1) of the old lines, (column 2, token)
    // of the new.
    uint16_t pair[2][32];
    constexpr LineWords() : col{}, next{}, token{}, token_mask{}, pair{} {
      for (int k = 0; k < 3; ++k)
        for (int i = 0; i < 16; ++i)
          col[k][2 * i + 1] = static_cast<uint16_t>(i * S + kLive - 3 + k);
      for (int j = 0; j < 2; ++j)
        for (int i = 0; i < 16; ++i)
          for (int h = 0; h < 2; ++h)
            pair[j][2 * i + h] = static_cast<uint16_t>(i * S + kLive - 3 + j + h);
      for (int h = 0; h < 2; ++h)
        for (int j = 0; j < 32; ++j) {
          const int q = h * 32 + j, i = q / S, m = q % S;
          next[h][j] = static_cast<uint16_t>(m + 1 < kLive ? q + 1 : q);
          if (i < 16 && m == kLive - 1) {
            token[h][j] = static_cast<uint16_t>(i);
            token_mask[h] |= 1u << j;
          }
        }
    }
  };

  template <int S, int kLive, bool kInPlace>
  static void channel_major_step(const UpdateParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                                 const bf16_t* x, bf16_t* state, bf16_t* out) {
    static constexpr LineWords<S, kLive> kWords{};
    const auto idx = [](const uint16_t(&words)[32]) { return _mm512_loadu_si512(words); };
    const __m512i col0 = idx(kWords.col[0]), col1 = idx(kWords.col[1]), col2 = idx(kWords.col[2]);
    const __m512i next0 = idx(kWords.next[0]), next1 = idx(kWords.next[1]);
    const __m512i tok0 = idx(kWords.token[0]), tok1 = idx(kWords.token[1]);
    const __m512i pair0 = idx(kWords.pair[0]), pair1 = idx(kWords.pair[1]);
    constexpr __mmask32 kHigh = 0xAAAAAAAAu;
    // The words past a register of a 16-channel group, less the first (the old
    // words one on): 15 of S = 3's 48, 31 of S = 4's 64.
    constexpr __mmask32 kRest = (1u << (16 * S - 33)) - 1;
    const auto widened = [](__m512i words) { return _mm512_castsi512_ps(words); };
    const bool silu = p.silu;
    const StepFilter<Avx512Bf16, 4, kInPlace, bf16_t> f(p, w, c0);
    // kRegs registers of channels side by side (SiLU chains in flight together; one at a
    // time the step waited on each chain): one row, D 8192, op call 7.05 -> 6.65 us
    // (6.73 at two registers), 64 rows 201 us (210 at two). The VNNI sums and the
    // unaligned loads for the new lines (per register 15 vector instructions out: 5 word
    // permutes, 2 widenings, 4 FMAs, 4 filter masks; 4 in): 6.75 -> 5.90 us, 64 rows
    // 200 -> 188.
    const auto step = [&]<int kRegs>(int64_t c) __attribute__((always_inline)) {
      __m512i na[kRegs], nb[kRegs];
      V acc[kRegs];
      for (int r = 0; r < kRegs; ++r) {
        const int64_t cr = c + r * kLanes;
        const bf16_t* const line = state + cr * S;
        const __m512i a = _mm512_loadu_si512(line);
        const __m512i b = S == 4 ? _mm512_loadu_si512(line + 32)
                                 : _mm512_zextsi256_si512(_mm256_loadu_si256(
                                       reinterpret_cast<const __m256i*>(line + 32)));
        const __m512i xw =
            _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + cr)));
        // The new lines (every old word and token read before out is written: out may be x).
        __m512i ha, hb;  // the old words each new word takes (a token's is overwritten)
        if constexpr (kLive == S) {
          ha = _mm512_loadu_si512(line + 1);
          hb = _mm512_maskz_loadu_epi16(kRest, line + 33);
        } else {
          ha = _mm512_permutex2var_epi16(a, next0, b);
          hb = _mm512_permutex2var_epi16(a, next1, b);
        }
        na[r] = _mm512_mask_permutexvar_epi16(ha, kWords.token_mask[0], tok0, xw);
        nb[r] = _mm512_mask_permutexvar_epi16(hb, kWords.token_mask[1], tok1, xw);
        acc[r] = f.load_bias(cr);
        if constexpr (kInPlace) {
          __m512i taps[2];
          filter_pairs<4>(f.filter + cr * 4, taps);
          acc[r] = dot_pairs(acc[r], _mm512_permutex2var_epi16(a, pair0, b), taps[0]);
          acc[r] = dot_pairs(acc[r], _mm512_permutex2var_epi16(na[r], pair1, nb[r]), taps[1]);
        } else {
          V tap[4];
          f.load(cr, tap);
          acc[r] =
              fmadd(tap[0], widened(_mm512_maskz_permutex2var_epi16(kHigh, a, col0, b)), acc[r]);
          acc[r] =
              fmadd(tap[1], widened(_mm512_maskz_permutex2var_epi16(kHigh, a, col1, b)), acc[r]);
          acc[r] =
              fmadd(tap[2], widened(_mm512_maskz_permutex2var_epi16(kHigh, a, col2, b)), acc[r]);
          acc[r] = fmadd(tap[3], load(x + cr), acc[r]);
        }
      }
      for (int r = 0; r < kRegs; ++r) {
        bf16_t* const line = state + (c + r * kLanes) * S;
        _mm512_storeu_si512(line, na[r]);
        if constexpr (S == 4) {
          _mm512_storeu_si512(line + 32, nb[r]);
        } else {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(line + 32), _mm512_castsi512_si256(nb[r]));
        }
      }
      for (int r = 0; r < kRegs; ++r)
        store_out(out + c + r * kLanes, silu ? silu_vec<Avx512Bf16, bf16_t>(acc[r]) : acc[r]);
    };
    int64_t c = 0;
    for (; c + 4 * kLanes <= n; c += 4 * kLanes) step.template operator()<4>(c);
    for (; c + 2 * kLanes <= n; c += 2 * kLanes) step.template operator()<2>(c);
    for (; c + kLanes <= n; c += kLanes) step.template operator()<1>(c);
    using C = Convert<Avx512Bf16>;
    for (; c < n; ++c) {  // the channel tail, one channel at a time
      bf16_t* const line = state + c * S;
      float acc = f.bias_at(c);
      for (int k = 0; k < 3; ++k) acc += f.tap(c, k) * C::to_float(line[kLive - 3 + k]);
      const bf16_t xt = x[c];
      acc += f.tap(c, 3) * C::to_float(xt);
      for (int m = 0; m + 1 < kLive; ++m) line[m] = line[m + 1];
      line[kLive - 1] = xt;
      C::from_float(silu ? silu_one(acc) : acc, out[c]);
    }
  }

  // 16 bf16 words, zero-extended to a register.
  static __m512i words16(const bf16_t* q) {
    return _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q)));
  }
  // The word indices that pair two registers' first 16 words: lane i = (lo's word i,
  // hi's word i), low word first (paired).
  static __m512i pair_words() {
    static constexpr auto kWords = [] {
      std::array<uint16_t, 32> words{};
      for (int i = 0; i < 16; ++i) {
        words[2 * i] = static_cast<uint16_t>(i);
        words[2 * i + 1] = static_cast<uint16_t>(32 + i);
      }
      return words;
    }();
    return _mm512_loadu_si512(kWords.data());
  }
  static __m512i paired(__m512i lo, __m512i words, __m512i hi) {
    return _mm512_permutex2var_epi16(lo, words, hi);
  }
  // acc + the VNNI dot product of bf16 pairs (per lane: low words' product, high words').
  static V dot_pairs(V acc, __m512i a, __m512i b) {
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
  }

  // update_step_regs's step (token-major lines: a column's channels side by
  // side) for bf16 x, states and filter, the filter read in place: the window
  // columns and the token interleaved in pairs (column 2j's word low, 2j+1's
  // high; one word permute each) for one VNNI dot product per pair of taps, the
  // taps' pairs as they lie; the new line is the loaded columns one on and the
  // token, stored as loaded. Every load of a register before its stores (out
  // may be x). 12 vector instructions fewer per register than update_step_regs's
  // (widening, filter masks, FMAs): one row, D 8192, op call 6.52 -> 5.58 us.
  template <int kW>
  static void token_major_step(const UpdateParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                               const bf16_t* x, bf16_t* state, int64_t s_tok, bf16_t* out) {
    constexpr int H = kW - 1;
    const __m512i interleave = pair_words();
    const bool silu = p.silu;
    const StepFilter<Avx512Bf16, kW, true, bf16_t> f(p, w, c0);
    const auto step = [&]<int kRegs>(int64_t c) __attribute__((always_inline)) {
      __m512i col[kRegs][kW];  // the window's columns, then the token
      V acc[kRegs];
      for (int r = 0; r < kRegs; ++r) {
        const int64_t cr = c + r * kLanes;
        for (int k = 0; k < H; ++k) col[r][k] = words16(state + k * s_tok + cr);
        col[r][H] = words16(x + cr);
        __m512i taps[kW / 2];
        filter_pairs<kW>(f.filter + cr * kW, taps);
        acc[r] = f.load_bias(cr);
        for (int j = 0; j < kW / 2; ++j)
          acc[r] = dot_pairs(acc[r], paired(col[r][2 * j], interleave, col[r][2 * j + 1]), taps[j]);
      }
      for (int r = 0; r < kRegs; ++r)
        for (int k = 0; k < H; ++k)
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(state + k * s_tok + c + r * kLanes),
                              _mm512_castsi512_si256(col[r][k + 1]));
      for (int r = 0; r < kRegs; ++r)
        store_out(out + c + r * kLanes, silu ? silu_vec<Avx512Bf16, bf16_t>(acc[r]) : acc[r]);
    };
    int64_t c = 0;
    for (; c + 4 * kLanes <= n; c += 4 * kLanes) step.template operator()<4>(c);
    for (; c + 2 * kLanes <= n; c += 2 * kLanes) step.template operator()<2>(c);
    for (; c + kLanes <= n; c += kLanes) step.template operator()<1>(c);
    if (c < n)
      update_step_regs<Avx512Bf16, kW, true>(p, w, c0 + c, n - c, x + c, state + c, s_tok, out + c);
  }

  // spec_step_regs's speculative row (token-major lines) for bf16 x, states
  // and filter, the filter read in place, as token_major_step: token t's
  // window and token are the sequence's words t .. t + kW - 1 (the window's
  // columns, then the tokens), paired as (t, t + 1), (t + 2, t + 3): each
  // token pairs one new column, the one before it with itself, and takes the
  // pair before from two tokens back (width 4). The line's columns as
  // spec_step_regs writes them, from the loaded words.
  template <int kW>
  static void spec_token_major(const UpdateParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                               const bf16_t* x, bf16_t* state, bf16_t* out, int64_t L,
                               int64_t base) {
    static_assert(kW == 2 || kW == 4, "pairs of taps");
    constexpr int H = kW - 1;
    const int64_t s_tok = p.state_tok_stride, x_tok = p.x_tok_stride, o_tok = p.out_tok_stride;
    const __m512i interleave = pair_words();
    const bool silu = p.silu;
    const StepFilter<Avx512Bf16, kW, true, bf16_t> f(p, w, c0);
    const bf16_t* const window = state + base * s_tok;
    const auto rows = [&]<int kRegs>(int64_t c) __attribute__((always_inline)) {
      __m512i taps[kRegs][kW / 2], last[kRegs], pair[kRegs][2];
      V b[kRegs];
      for (int r = 0; r < kRegs; ++r) {
        const int64_t cr = c + r * kLanes;
        filter_pairs<kW>(f.filter + cr * kW, taps[r]);
        b[r] = f.load_bias(cr);
        __m512i win[H];
        for (int k = 0; k < H; ++k) win[k] = words16(window + k * s_tok + cr);
        if constexpr (kW == 4) {  // the pairs of tokens 0 and 1 from the window
          pair[r][0] = paired(win[0], interleave, win[1]);
          pair[r][1] = paired(win[1], interleave, win[2]);
        }
        last[r] = win[H - 1];
        // Columns 0 .. H - 2: the window's last H - 1, every column loaded before.
        for (int k = 0; k + 1 < H; ++k)
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(state + k * s_tok + cr),
                              _mm512_castsi512_si256(win[k + 1]));
      }
      for (int64_t t = 0; t < L; ++t) {
        V acc[kRegs];
        for (int r = 0; r < kRegs; ++r) {
          const int64_t cr = c + r * kLanes;
          const __m512i xt = words16(x + t * x_tok + cr);
          const __m512i fresh = paired(last[r], interleave, xt);  // (t + kW - 2, t + kW - 1)
          if constexpr (kW == 4) {
            acc[r] = dot_pairs(dot_pairs(b[r], pair[r][0], taps[r][0]), fresh, taps[r][1]);
            pair[r][0] = pair[r][1];
            pair[r][1] = fresh;
          } else {
            acc[r] = dot_pairs(b[r], fresh, taps[r][0]);
          }
          last[r] = xt;
          // Column H - 1 + t takes the token, before out is written (out may be x).
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(state + (H - 1 + t) * s_tok + cr),
                              _mm512_castsi512_si256(xt));
        }
        for (int r = 0; r < kRegs; ++r)
          store_out(out + t * o_tok + c + r * kLanes,
                    silu ? silu_vec<Avx512Bf16, bf16_t>(acc[r]) : acc[r]);
      }
    };
    int64_t c = 0;
    for (; c + 2 * kLanes <= n; c += 2 * kLanes) rows.template operator()<2>(c);
    for (; c + kLanes <= n; c += kLanes) rows.template operator()<1>(c);
    if (c < n)
      spec_step_regs<Avx512Bf16, kW, true>(p, w, c0 + c, n - c, x + c, state + c, out + c, L, base);
  }

  template <typename x_t, typename state_t>
  static bool spec_step(const UpdateParams& p, const CpuWeights& w, int64_t row, int64_t c0,
                        int64_t n, const x_t* x, state_t* state, x_t* out, int64_t L) {
    if constexpr (std::is_same_v<x_t, bf16_t> && std::is_same_v<state_t, bf16_t>) {
      // The filter in place (update_reads_filter), width 2 or 4: VNNI.
      if (w.taps == nullptr && spec_step_applies(p) && (p.width == 4 || p.width == 2)) {
        const int64_t base = p.line_plan(row, L).base;
        if (p.width == 4) {
          spec_token_major<4>(p, w, c0, n, x, state, out, L, base);
        } else {
          spec_token_major<2>(p, w, c0, n, x, state, out, L, base);
        }
        return true;
      }
    }
    return spec_step_vec<Avx512Bf16>(p, w, row, c0, n, x, state, out, L);
  }

  template <typename x_t, typename state_t>
  static bool update_step(const UpdateParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                          const x_t* x, state_t* state, x_t* out) {
    if constexpr (std::is_same_v<x_t, bf16_t> && std::is_same_v<state_t, bf16_t>) {
      if (channel_major_applies(p)) {
        // The filter and bias read in place where the dispatcher made no fp32 copy.
        const auto run = [&]<bool kInPlace>() {
          if (p.state_len == 3) {
            channel_major_step<3, 3, kInPlace>(p, w, c0, n, x, state, out);
          } else if (p.linear_len() == 3) {
            channel_major_step<4, 3, kInPlace>(p, w, c0, n, x, state, out);
          } else {
            channel_major_step<4, 4, kInPlace>(p, w, c0, n, x, state, out);
          }
        };
        w.taps == nullptr ? run.template operator()<true>() : run.template operator()<false>();
        return true;
      }
    }
    if constexpr (std::is_same_v<x_t, bf16_t> && std::is_same_v<state_t, bf16_t>) {
      if (w.taps == nullptr && update_step_applies(p)) {  // the filter in place: VNNI
        if (p.width == 4) {
          token_major_step<4>(p, w, c0, n, x, state, p.state_tok_stride, out);
          return true;
        }
        if (p.width == 2) {
          token_major_step<2>(p, w, c0, n, x, state, p.state_tok_stride, out);
          return true;
        }
      }
    }
    return update_step_vec<Avx512Bf16>(p, w, c0, n, x, state, out);
  }

  // The VNNI micro-kernel for `count` consecutive tokens over the kCols
  // registers of channels at c, with the taps and the window in registers.
  // Q(s) interleaves x[s] (low halves) and x[s + 1] (high halves); token t's
  // pair j is Q(t - H + 2j), or x[t] alone for the padding pair of an odd
  // width, so each token builds one new pair, Q(t - 1). `in` and `out` are
  // offset by c already.
  template <int kW, int kCols>
  static void conv_column_vnni(const ConvParams& p, const CpuWeights& w, int64_t c,
                               const bf16_t* in, int64_t in_tok, bf16_t* out, int64_t out_tok,
                               int64_t count) {
    constexpr int H = kW - 1, kPairs = (kW + 1) / 2;
    const bool silu = p.silu;
    __m512i tap[kPairs][kCols], q[H][kCols], prev[kCols];
    V bias[kCols];
    for (int i = 0; i < kCols; ++i) {
      const int64_t ci = c + i * kLanes;
      for (int j = 0; j < kPairs; ++j)
        tap[j][i] = _mm512_loadu_si512(w.vnni + 2 * (j * p.dim + ci));
      bias[i] = w.bias == nullptr ? zero() : load(w.bias + ci);
      prev[i] = widen16(in + i * kLanes);
      for (int k = 0; k + 1 < H; ++k) {
        const __m512i next = widen16(in + (k + 1) * in_tok + i * kLanes);
        q[k][i] = _mm512_or_si512(prev[i], _mm512_slli_epi32(next, 16));
        prev[i] = next;
      }
    }
    // The line this column reads one token block later, fetched into L2 now;
    // computed in integers, as the row may lie past x's end (a prefetch of any
    // address is a hint).
    const uintptr_t ahead = reinterpret_cast<uintptr_t>(in + H * in_tok) +
                            static_cast<uintptr_t>(kTokens * in_tok * sizeof(bf16_t));
    for (int64_t t = 0; t < count; ++t) {
      if constexpr (kCols == 2)
        _mm_prefetch(reinterpret_cast<const char*>(ahead + t * in_tok * sizeof(bf16_t)),
                     _MM_HINT_T1);
      __m256i y[kCols];
      for (int i = 0; i < kCols; ++i) {
        const __m512i cur = widen16(in + (H + t) * in_tok + i * kLanes);
        q[H - 1][i] = _mm512_or_si512(prev[i], _mm512_slli_epi32(cur, 16));
        V acc = bias[i];
        for (int j = 0; j < kPairs; ++j) {
          const __m512i a = 2 * j + 1 < kW ? q[2 * j][i] : cur;
          acc = dot_pairs(acc, a, tap[j][i]);
        }
        y[i] = (__m256i)_mm512_cvtneps_pbh(silu ? silu_vec<Avx512Bf16, bf16_t>(acc) : acc);
        for (int k = 0; k + 1 < H; ++k) q[k][i] = q[k + 1][i];
        prev[i] = cur;
      }
      // A cache line of outputs in one store where the column spans one.
      bf16_t* const o = out + t * out_tok;
      if constexpr (kCols == 2) {
        _mm512_storeu_si512(o, _mm512_inserti64x4(_mm512_castsi256_si512(y[0]), y[1], 1));
      } else {
        for (int i = 0; i < kCols; ++i)
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + i * kLanes), y[i]);
      }
    }
  }

  // conv_column_vnni over channels [c0, c0 + n), a cache line of x per column
  // (see conv_tokens_regs).
  template <int kW>
  static void conv_tokens_vnni(const ConvParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                               const bf16_t* in, int64_t in_tok, bf16_t* out, int64_t out_tok,
                               int64_t count) {
    constexpr int kCols = kLineRegs<Avx512Bf16, bf16_t>;
    int64_t c = 0;
    for (; c + kCols * kLanes <= n; c += kCols * kLanes)
      conv_column_vnni<kW, kCols>(p, w, c0 + c, in + c, in_tok, out + c, out_tok, count);
    for (; c + kLanes <= n; c += kLanes)
      conv_column_vnni<kW, 1>(p, w, c0 + c, in + c, in_tok, out + c, out_tok, count);
    if (c < n)
      for (int64_t t = 0; t < count; ++t)
        conv_token_loops<Avx512Bf16>(p, w, c0 + c, n - c, in + t * in_tok + c, in_tok, 1,
                                     out + t * out_tok + c, 1);
  }

  template <typename in_t, typename out_t>
  static void conv_tokens(const ConvParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                          const in_t* in, int64_t in_tok, int64_t in_dim, out_t* out,
                          int64_t out_tok, int64_t out_dim, int64_t count) {
    if constexpr (std::is_same_v<in_t, bf16_t> && std::is_same_v<out_t, bf16_t>) {
      const bool done = w.vnni != nullptr && in_dim == 1 && out_dim == 1 &&
                        with_width<CpuWidths>(p.width, [&]<int kW>() {
                          conv_tokens_vnni<kW>(p, w, c0, n, in, in_tok, out, out_tok, count);
                        });
      if (done) return;
    }
    conv_tokens_vec<Avx512Bf16>(p, w, c0, n, in, in_tok, in_dim, out, out_tok, out_dim, count);
  }
};

// The decode steps of this set read the filter in place where it is readable:
// update_step_regs's, spec_step_regs's and channel_major_step's.
bool reads_filter(const UpdateParams& p) {
  return update_reads_filter<Avx512Bf16>(p) ||
         (filter_readable<Avx512Bf16>(p) && Avx512Bf16::channel_major_applies(p));
}

}  // namespace

CpuKernelSet avx512_bf16_kernels() {
  return {"avx512_bf16",
          true,
          &select_fwd<Avx512Bf16>,
          &select_update<Avx512Bf16>,
          &select_batch_fwd<Avx512Bf16>,
          &select_batch_bwd<Avx512Bf16>,
          &widen_filter<Avx512Bf16>,
          &reads_filter};
}

}  // namespace causal_conv1d::cpu
