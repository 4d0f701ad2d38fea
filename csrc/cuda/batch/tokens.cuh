// Along tokens: the tiling of channel-first x, its tile machinery and launch
// geometry; the kernels are in tokens_fwd.cuh and tokens_bwd.cuh.
//
// A block owns channel blockIdx.x of row blockIdx.z for
// `tiles` consecutive tiles of kThreads * kTok tokens, walked in order; in a
// tile each thread owns tokens [t0, t0 + kTok). The columns before a thread's
// run come from lane - 1 by a shuffle, for a warp's first lane from the
// previous warp through shared memory, and for the block's first lane from
// the previous tile's last warp the same way (from memory for the block's
// first tile). Backward, the tokens after a run come the same way from the
// other side, the block's last lane reading them from memory. Forward, the
// next two tiles' loads are in flight while a tile is computed.

constexpr int kTok = 8;  // tokens per thread in a tile: 16 bytes of 16-bit x
#pragma once

#include "common.cuh"

namespace causal_conv1d::cuda {
namespace {

constexpr int kWarps = kThreads / 32;
constexpr int64_t kTileSpan = int64_t{kThreads} * kTok;

// Per-launch vector flags: which views take one access per kTok tokens.
struct BatchVec {
  bool x = false, out = false, dout = false, dx = false, seq = false;
};

// Tokens t .. t+m-1 (m <= N) of a channel's row (base: its token 0, tok: the
// token stride), as fp32 (zeros past m); vec: one access per N tokens.
template <typename T, int N>
__device__ __forceinline__ void read_run(const T* base, int64_t tok, int64_t t, int m, bool vec,
                                         float (&out)[N]) {
  if (vec && m == N) return load_n<T, N>(base + t, 1, true, out);
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = i < m ? to_float(base[(t + i) * tok]) : 0.f;
}

template <typename T, int N>
__device__ __forceinline__ void write_run(T* base, int64_t tok, int64_t t, int m, bool vec,
                                          const float (&in)[N]) {
  if (vec && m == N) return store_n<T, N>(base + t, 1, true, in);
#pragma unroll
  for (int i = 0; i < N; ++i)
    if (i < m) base[(t + i) * tok] = from_float<T>(in[i]);
}

// The sequence ids of tokens t .. t+m-1 of a row (row: its seq_idx, or null
// for none; 0 past m, and without kSeq).
template <bool kSeq, int N>
__device__ __forceinline__ void read_sequences(const int32_t* row, int64_t tok, bool vec, int64_t t,
                                               int m, int32_t (&out)[N]) {
  if (!kSeq || row == nullptr) {
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = 0;
    return;
  }
  if constexpr (N % 4 == 0) {
    if (vec && m == N) {
#pragma unroll
      for (int w = 0; w < N / 4; ++w) {
        const int4 v = reinterpret_cast<const int4*>(row + t)[w];
        out[4 * w] = v.x;
        out[4 * w + 1] = v.y;
        out[4 * w + 2] = v.z;
        out[4 * w + 3] = v.w;
      }
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = i < m ? row[(t + i) * tok] : 0;
}

// Taps in reverse, rw[d] = tap H - d (d = 0..H, zero past H), and the bias of
// channel c in fp32: token u reads column u - d through rw[d].
template <int kW>
__device__ __forceinline__ void load_reversed_filter(const BatchParams& p, int64_t c, int H,
                                                     float (&rw)[kTaps<kW>], float& bias) {
#pragma unroll
  for (int d = 0; d < kTaps<kW>; ++d) {
    float v[1] = {0.f};
    if (d <= H)
      load_n<1>(p.weight, p.weight_type, c * p.weight_dim_stride + (H - d) * p.weight_tap_stride, 1,
                false, v);
    rw[d] = v[0];
  }
  float v[1] = {0.f};
  if (p.bias != nullptr) load_n<1>(p.bias, p.bias_type, c * p.bias_stride, 1, false, v);
  bias = v[0];
}

__device__ __forceinline__ int run_length(int64_t t0, int64_t L) {
  return L - t0 <= 0 ? 0 : (L - t0 < kTok ? static_cast<int>(L - t0) : kTok);
}

// A channel's row: x (and the backward's dout) from token 0, and its seq_idx.
template <typename T, bool kSeq>
struct TokenRow {
  const T* x;
  const T* dout;
  const int32_t* seq;
  __device__ __forceinline__ TokenRow(const BatchParams& p, int64_t b, int64_t c) {
    x = static_cast<const T*>(p.x.data) + b * p.x.batch + c * p.x.dim;
    dout = p.dout.present() ? static_cast<const T*>(p.dout.data) + b * p.dout.batch + c * p.dout.dim
                            : nullptr;
    seq = kSeq && p.seq_idx != nullptr ? p.seq_idx + b * p.seq_batch_stride : nullptr;
  }
};

// Columns ts - d (d = 1..H) before a tile starting at ts, from memory (the
// block's first lane), with their sequences.
template <typename T, bool kSeq, int kH>
__device__ __forceinline__ void load_halo(const BatchParams& p, int64_t b, int64_t c, int64_t ts,
                                          int H, float (&v)[kH], int32_t (&s)[kH]) {
#pragma unroll
  for (int d = 1; d <= kH; ++d) {
    const int64_t j = ts - d;
    const bool in = d <= H && j < p.seqlen;
    v[d - 1] = in ? column<T>(p, b, c, j, H) : 0.f;
    s[d - 1] = kSeq && in && p.seq_idx != nullptr ? column_sequence(p, b, j) : 0;
  }
}

// Values a warp passes to its neighbours through shared memory, per tile
// (two buffers by tile parity, so one barrier per tile suffices).
template <int kH>
struct Edges {
  float v[2][kWarps][kH];
  int32_t s[2][kWarps][kH];
};

// col[kH - d] = column t0 - d for d = 1..H: lane - 1's last tokens; a warp's
// first lane: the previous warp's (`edges`, written before the barrier), or
// for warp 0 `halo`; col[kH + i] = own token i.
template <bool kSeq, int kH, int kN>
__device__ __forceinline__ void gather_before(const float (&xs)[kTok], const int32_t (&ss)[kTok],
                                              const Edges<kH>& tails, int buf,
                                              const float (&halo)[kH],
                                              const int32_t (&halo_seq)[kH], int H,
                                              float (&col)[kN], int32_t (&seq)[kN]) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int d = 1; d <= kH; ++d) {
    float v = __shfl_up_sync(0xffffffffu, xs[kTok - d], 1);
    int32_t s = kSeq ? __shfl_up_sync(0xffffffffu, ss[kTok - d], 1) : 0;
    if (lane == 0) {
      v = warp > 0 ? tails.v[buf][warp - 1][d - 1] : halo[d - 1];
      if (kSeq) s = warp > 0 ? tails.s[buf][warp - 1][d - 1] : halo_seq[d - 1];
    }
    col[kH - d] = d > H ? 0.f : v;
    seq[kH - d] = d > H ? 0 : s;
  }
#pragma unroll
  for (int i = 0; i < kTok; ++i) {
    col[kH + i] = xs[i];
    seq[kH + i] = ss[i];
  }
}

// Tokens t .. t+m-1 (m <= kTok) of a channel's row as stored (zeros past m);
// vec: one access per kTok tokens.
template <typename T>
__device__ __forceinline__ Packed<T, kTok> read_packed(const T* base, int64_t tok, int64_t t, int m,
                                                       bool vec) {
  Packed<T, kTok> r;
  using W = Word<kWordBytes<T, kTok>>;
  if (vec && m == kTok) {
#pragma unroll
    for (int w = 0; w < static_cast<int>(sizeof(r) / sizeof(W)); ++w)
      reinterpret_cast<W*>(&r)[w] = reinterpret_cast<const W*>(base + t)[w];
    return r;
  }
#pragma unroll
  for (int i = 0; i < kTok; ++i) r.v[i] = i < m ? base[(t + i) * tok] : from_float<T>(0.f);
  return r;
}

// A tile loaded ahead of its use: a thread's run as stored, its sequence ids.
template <typename T>
struct TileAhead {
  Packed<T, kTok> x;
  int32_t s[kTok] = {};
};

// The block's first lane, from its second tile on: the columns before tile k
// are tile k-1's last tokens, which its last warp put in `tails` (tile k-1's
// buffer, written again only after tile k's barrier: read before it).
template <bool kSeq, int kH>
__device__ __forceinline__ void halo_from_previous(const Edges<kH>& tails, int k, float (&halo)[kH],
                                                   int32_t (&halo_seq)[kH]) {
  const int prev = (k - 1) & 1;
#pragma unroll
  for (int d = 0; d < kH; ++d) {
    halo[d] = tails.v[prev][kWarps - 1][d];
    halo_seq[d] = kSeq ? tails.s[prev][kWarps - 1][d] : 0;
  }
}

// Tiles per block along tokens: CAUSAL_CONV1D_CUDA_BATCH_TILES (1, 2, 4, 8, 16)
// forces it; else the most, up to 16, that keep the grid at the threads the
// GPU can hold (a block walks its tiles in order, as the row's only block when
// rows are many).
int64_t tiles_per_block(const BatchParams& p, int device) {
  static const int forced = static_cast<int>(setting_int(Setting::kCudaBatchTiles));
  const int64_t tiles = std::max<int64_t>(1, (p.seqlen + kTileSpan - 1) / kTileSpan);
  if (forced > 0) return std::min<int64_t>(forced, tiles);
  const int64_t hold =
      static_cast<int64_t>(device_attribute<cudaDevAttrMultiProcessorCount>(device)) * 2048;
  int64_t per = 16;
  while (per > 1 && p.batch * p.dim * kThreads * ((tiles + per - 1) / per) < hold) per /= 2;
  return std::min(per, tiles);
}

inline dim3 tokens_grid(const BatchParams& p, int tiles) {
  CC1D_CHECK(p.dim <= INT32_MAX, "causal_conv1d_batch: dim too large for one grid");
  return dim3(static_cast<unsigned>(p.dim), token_blocks(p, tiles * kTileSpan),
              static_cast<unsigned>(p.batch));
}

// A view whose tokens can be moved kTok at a time in 16-byte accesses: tokens
// contiguous, every run of a channel starting on a 16-byte boundary.
inline bool tokens_vectorizable(const View3& v, size_t elem) {
  const auto bytes = [&](int64_t stride) {
    return (stride * static_cast<int64_t>(elem)) % 16 == 0;
  };
  return v.present() && v.tok == 1 && aligned16(v.data) && bytes(v.dim) && bytes(v.batch);
}

inline BatchVec batch_vec(const BatchParams& p, size_t elem) {
  BatchVec vec;
  vec.x = tokens_vectorizable(p.x, elem);
  vec.out = tokens_vectorizable(p.out, elem);
  vec.dout = tokens_vectorizable(p.dout, elem);
  vec.dx = tokens_vectorizable(p.dx, elem);
  vec.seq = p.seq_idx != nullptr && p.seq_tok_stride == 1 && p.seq_batch_stride % 4 == 0 &&
            aligned16(p.seq_idx);
  return vec;
}

}  // namespace
}  // namespace causal_conv1d::cuda
