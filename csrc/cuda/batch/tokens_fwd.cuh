// The forward along tokens (tokens.cuh).
#pragma once

#include "tokens.cuh"

namespace causal_conv1d::cuda {
namespace {

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
  // The next two tiles' tokens are in flight while a tile is computed: two
  // loads per thread, held as stored.
  TileAhead<T> next, after;
  const auto fetch = [&](TileAhead<T>& a, int64_t ts) {
    const int64_t t0 = ts + threadIdx.x * kTok;
    const int m = run_length(t0, L);
    a.x = read_packed<T>(row.x, p.x.tok, t0, m, vec.x);
    read_sequences<kSeq>(row.seq, p.seq_tok_stride, vec.seq, t0, m, a.s);
  };
  // The columns before the block's first tile (its first lane's).
  float halo[kH] = {};
  int32_t halo_seq[kH] = {};
  if (block_first) load_halo<T, kSeq>(p, b, c, first, H, halo, halo_seq);
  fetch(next, first);
  if (tiles > 1) fetch(after, first + kTileSpan);
#pragma unroll 1
  for (int k = 0; k < tiles; ++k) {
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
    if (block_first && k > 0) halo_from_previous<kSeq>(tails, k, halo, halo_seq);
    __syncthreads();
    float col[kH + kTok];
    int32_t seq[kH + kTok];
    gather_before<kSeq, kH>(xs, ss, tails, buf, halo, halo_seq, H, col, seq);
    float ys[kTok];
#pragma unroll
    for (int i = 0; i < kTok; ++i) {
      const int32_t s = seq[kH + i];
      float acc = bias;
#pragma unroll
      for (int d = 0; d < kT; ++d)
        if (d <= H && (!kSeq || seq[kH + i - d] == s)) acc = fmaf(rw[d], col[kH + i - d], acc);
      ys[i] = kSeq && s < 0 ? 0.f : (p.silu ? silu(acc) : acc);
    }
    if (m > 0) write_run<T>(out, p.out.tok, t0, m, vec.out, ys);
    // The final states, by the thread of the row's last token (of an empty row: token 0's).
    const bool last = L > 0 ? t0 < L && L <= t0 + kTok : t0 == 0;
    if (p.final_states.present() && last) {
      for (int i = 0; i < H; ++i)
        write<T>(p.final_states, b, c, i, column<T>(p, b, c, L - H + i, H));
    }
  }
}

}  // namespace
}  // namespace causal_conv1d::cuda
