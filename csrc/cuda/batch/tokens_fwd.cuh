// The forward along tokens (tokens.cuh).
#pragma once

#include "tokens.cuh"

namespace causal_conv1d::cuda {
namespace {

// The outputs of a thread's run: col holds the H columns before it, then its
// own kTok tokens; seq their sequences (compiled away without kSeq).
template <bool kSeq, int kT, int kN>
__device__ __forceinline__ void conv_run(const float (&rw)[kT], float bias, int H, bool silu_on,
                                         const float (&col)[kN], const int32_t (&seq)[kN],
                                         float (&ys)[kTok]) {
  constexpr int kH = kN - kTok;
#pragma unroll
  for (int i = 0; i < kTok; ++i) {
    const int32_t s = seq[kH + i];
    float acc = bias;
#pragma unroll
    for (int d = 0; d < kT; ++d)
      if (d <= H && (!kSeq || seq[kH + i - d] == s)) acc = fmaf(rw[d], col[kH + i - d], acc);
    ys[i] = kSeq && s < 0 ? 0.f : (silu_on ? silu(acc) : acc);
  }
}

// The lean loop over a block's first `full` tiles, every run of which is whole
// (the row goes on past the tile), for 16-bit x and out moved in 16-byte words
// and no sequence ids: no run bounds, the look-ahead ring as raw words (no
// repacking), the words addressed by pointers advanced a tile at a time. Each
// thread passes its run's word to the next through shared memory (one store
// and one load of 16 bytes, buffers by tile parity, one barrier per tile); the
// block's first lane takes the previous tile's last word, before the barrier
// (the tile after writes that buffer again). On return `halo` holds the
// columns before tile `full`, for the general loop to take over.
template <typename T, int kW, int kT, int kH>
__device__ __forceinline__ void fwd_whole_tiles(const T* x, T* out, int full, int H,
                                                const float (&rw)[kT], float bias, bool silu_on,
                                                float (&halo)[kH]) {
  static_assert(sizeof(T) * kTok == 16, "16-byte runs");
  __shared__ uint4 words[2][kThreads];
  const int tid = threadIdx.x;
  const uint4* src = reinterpret_cast<const uint4*>(x) + tid;
  uint4* dst = reinterpret_cast<uint4*>(out) + tid;
  // v[d - 1] = token kTok - d of a run's word, d = 1..kH.
  const auto last_tokens = [](const uint4& word, float (&v)[kH]) {
    Packed<T, kTok> run;
    *reinterpret_cast<uint4*>(&run) = word;
#pragma unroll
    for (int d = 1; d <= kH; ++d) v[d - 1] = to_float(run.v[kTok - d]);
  };
  uint4 next = src[0];
  uint4 after = full > 1 ? src[kThreads] : next;
#pragma unroll 1
  for (int k = 0; k < full; ++k) {
    const uint4 word = next;
    next = after;
    if (k + 2 < full) after = src[(k + 2) * kThreads];
    const int buf = k & 1;
    words[buf][tid] = word;
    if (tid == 0 && k > 0) last_tokens(words[buf ^ 1][kThreads - 1], halo);
    __syncthreads();
    float before[kH];
    if (tid > 0) {
      last_tokens(words[buf][tid - 1], before);
    } else {
#pragma unroll
      for (int d = 0; d < kH; ++d) before[d] = halo[d];
    }
    // col[kH - d] = column t0 - d, then the run's own tokens.
    float col[kH + kTok];
#pragma unroll
    for (int d = 1; d <= kH; ++d) col[kH - d] = d > H ? 0.f : before[d - 1];
    Packed<T, kTok> run;
    *reinterpret_cast<uint4*>(&run) = word;
    float xs[kTok];
    run.unpack(xs);
#pragma unroll
    for (int i = 0; i < kTok; ++i) col[kH + i] = xs[i];
    const int32_t no_seq[kH + kTok] = {};
    float ys[kTok];
    conv_run<false>(rw, bias, H, silu_on, col, no_seq, ys);
    store_n<T, kTok>(reinterpret_cast<T*>(dst + k * kThreads), 1, true, ys);
  }
  if (tid == 0 && full > 0) last_tokens(words[(full - 1) & 1][kThreads - 1], halo);
}

template <typename T, int kW, bool kSeq>
__global__ void __launch_bounds__(kThreads, kTokenFwdBlocks<T, kW, kSeq>)
    batch_fwd_tokens(const BatchParams p, BatchVec vec, const int tiles) {
  await_producers();
  constexpr int kT = kTaps<kW>, kH = kT - 1;
  const int H = (kW > 0 ? kW : p.width) - 1;
  const int64_t b = blockIdx.z, c = blockIdx.x, L = p.seqlen;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const bool block_first = threadIdx.x == 0;
  __shared__ Edges<kH> tails;
  float rw[kT], bias;
  load_reversed_filter<kW>(p, c, H, rw, bias);
  const TokenRow<T, kSeq> row(p, b, c);
  T* const out = static_cast<T*>(p.out.data) + b * p.out.batch + c * p.out.dim;
  const int64_t first = static_cast<int64_t>(blockIdx.y) * tiles * kTileSpan;
  // The columns before the block's first tile (its first lane's).
  float halo[kH] = {};
  int32_t halo_seq[kH] = {};
  if (block_first) load_halo<T, kSeq>(p, b, c, first, H, halo, halo_seq);
  // Tiles whose runs are all whole take the lean loop where it applies; the
  // general loop below takes the rest (the row's last, partial tile).
  int full = 0;
  if constexpr (!kSeq && sizeof(T) * kTok == 16) {
    if (vec.x && vec.out) {
      const int64_t whole = L > first ? (L - first) / kTileSpan : 0;
      full = static_cast<int>(whole < tiles ? whole : tiles);
      if (full > 0)
        fwd_whole_tiles<T, kW>(row.x + first, out + first, full, H, rw, bias, p.silu, halo);
    }
  }
  // The next two tiles' tokens are in flight while a tile is computed: two
  // loads per thread, held as stored.
  TileAhead<T> next, after;
  const auto fetch = [&](TileAhead<T>& a, int64_t ts) {
    const int64_t t0 = ts + threadIdx.x * kTok;
    const int m = run_length(t0, L);
    a.x = read_packed<T>(row.x, p.x.tok, t0, m, vec.x);
    read_sequences<kSeq>(row.seq, p.seq_tok_stride, vec.seq, t0, m, a.s);
  };
  if (full < tiles) {
    fetch(next, first + full * kTileSpan);
    if (full + 1 < tiles) fetch(after, first + (full + 1) * kTileSpan);
  }
#pragma unroll 1
  for (int k = full; k < tiles; ++k) {
    const int64_t ts = first + k * kTileSpan;
    if (ts >= L && ts > 0) break;  // the same for the whole block
    const int64_t t0 = ts + threadIdx.x * kTok;
    const int m = run_length(t0, L);
    float xs[kTok];
    int32_t ss[kTok];
    next.x.unpack(xs);
#pragma unroll
    for (int i = 0; i < kTok; ++i) ss[i] = next.s[i];
    next = after;
    if (k + 2 < tiles) fetch(after, ts + 2 * kTileSpan);
    const int buf = k & 1;
    if (lane == 31) {
#pragma unroll
      for (int d = 1; d <= kH; ++d) {
        tails.v[buf][warp][d - 1] = xs[kTok - d];
        if (kSeq) tails.s[buf][warp][d - 1] = ss[kTok - d];
      }
    }
    // (At tile `full` the lean loop above has left the halo.)
    if (block_first && k > 0 && k != full) halo_from_previous<kSeq>(tails, k, halo, halo_seq);
    __syncthreads();
    float col[kH + kTok];
    int32_t seq[kH + kTok];
    gather_before<kSeq, kH>(xs, ss, tails, buf, halo, halo_seq, H, col, seq);
    float ys[kTok];
    conv_run<kSeq>(rw, bias, H, p.silu, col, seq, ys);
    if (m > 0) write_run<T>(out, p.out.tok, t0, m, vec.out, ys);
  }
  // The final states, once, by the thread of the row's last token (of an empty
  // row: token 0's), from memory (x, or the initial states for short rows).
  if (p.final_states.present()) {
    const int64_t owner = L > 0 ? L - 1 : 0;
    const bool mine = owner >= first && owner < first + tiles * kTileSpan &&
                      (owner - first) % kTileSpan / kTok == threadIdx.x;
    if (mine) {
      for (int i = 0; i < H; ++i)
        write<T>(p.final_states, b, c, i, column<T>(p, b, c, L - H + i, H));
    }
  }
}

}  // namespace
}  // namespace causal_conv1d::cuda
