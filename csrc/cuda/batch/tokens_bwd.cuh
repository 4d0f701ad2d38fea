// The backward along tokens (tokens.cuh): dx, dinitial_states and the block's
// dweight and dbias shares, summed over its threads in a fixed order.
#pragma once

#include "tokens.cuh"

namespace causal_conv1d::cuda {
namespace {

// dweight and dbias shares of a block along tokens (one channel): the
// threads' values summed in a fixed order (warp butterflies, then the warps in
// order), the same bits on every run.
template <int kT>
__device__ __forceinline__ void block_sum_shares(const float (&dw)[kT], float db, int width,
                                                 float* slot, int64_t dim, int64_t c) {
  __shared__ float partial[kWarps][kMaxWidth + 1];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int k = 0; k <= kT; ++k) {
    float v = k < kT ? dw[k] : db;
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    if (lane == 0) partial[warp][k < kT ? k : kMaxWidth] = v;
  }
  __syncthreads();
  const int k = threadIdx.x;
  if (k <= width) {
    const int from = k < width ? k : kMaxWidth;
    float sum = 0.f;
    for (int q = 0; q < kWarps; ++q) sum += partial[q][from];
    slot[k * dim + c] = sum;
  }
}

template <typename T, int kW, bool kSeq>
__global__ void __launch_bounds__(kThreads, kTokenBlocks<kW>)
    batch_bwd_tokens(const BatchParams p, BatchVec vec, const int tiles,
                     float* __restrict__ shares) {
  await_producers();
  constexpr int kT = kTaps<kW>, kH = kT - 1;
  const int H = (kW > 0 ? kW : p.width) - 1;
  const int64_t b = blockIdx.z, c = blockIdx.x, L = p.seqlen;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __shared__ Edges<kH> tails, heads;
  __shared__ float head_d[2][kWarps][kH];
  float rw[kT], bias;
  load_reversed_filter<kW>(p, c, H, rw, bias);
  const TokenRow<T, kSeq> row(p, b, c);
  T* const dxr = static_cast<T*>(p.dx.data) + b * p.dx.batch + c * p.dx.dim;
  const bool dfinal = p.dfinal_states.present();
  float rdw[kT], db = 0.f;  // rdw[d]: the share of tap H - d
#pragma unroll
  for (int d = 0; d < kT; ++d) rdw[d] = 0.f;
  const int64_t first = static_cast<int64_t>(blockIdx.y) * tiles * kTileSpan;
  // The columns before the block's first tile (its first lane's).
  float halo[kH] = {};
  int32_t halo_seq[kH] = {};
  if (threadIdx.x == 0) load_halo<T, kSeq>(p, b, c, first, H, halo, halo_seq);

#pragma unroll 1
  for (int k = 0; k < tiles; ++k) {
    const int64_t ts = first + k * kTileSpan;
    if (ts >= L && ts > 0) break;  // the same for the whole block
    const int64_t t0 = ts + threadIdx.x * kTok;
    const int m = run_length(t0, L);
    float xs[kTok], ds[kTok], ext_x[kH], ext_d[kH];
    int32_t ss[kTok], ext_seq[kH];
    read_run<T>(row.x, p.x.tok, t0, m, vec.x, xs);
    read_run<T>(row.dout, p.dout.tok, t0, m, vec.dout, ds);
    read_sequences<kSeq>(row.seq, p.seq_tok_stride, vec.seq, t0, m, ss);
#pragma unroll
    for (int e = 0; e < kH; ++e) {
      ext_x[e] = ext_d[e] = 0.f;
      ext_seq[e] = 0;
    }
    // The block's last lane reads the tokens after the tile (up to H of them,
    // inside the row).
    if (threadIdx.x == kThreads - 1) {
#pragma unroll
      for (int e = 0; e < kH; ++e) {
        const int64_t u = t0 + kTok + e;
        if (e < H && u < L) {
          ext_x[e] = to_float(row.x[u * p.x.tok]);
          ext_d[e] = to_float(row.dout[u * p.dout.tok]);
          if (kSeq && row.seq != nullptr) ext_seq[e] = row.seq[u * p.seq_tok_stride];
        }
      }
    }
    const int buf = k & 1;
    if (lane == 31) {
#pragma unroll
      for (int d = 1; d <= kH; ++d) {
        tails.v[buf][warp][d - 1] = xs[kTok - d];
        if (kSeq) tails.s[buf][warp][d - 1] = ss[kTok - d];
      }
    }
    if (lane == 0) {
#pragma unroll
      for (int e = 0; e < kH; ++e) {
        heads.v[buf][warp][e] = xs[e];
        head_d[buf][warp][e] = ds[e];
        if (kSeq) heads.s[buf][warp][e] = ss[e];
      }
    }
    if (threadIdx.x == 0 && k > 0) halo_from_previous<kSeq>(tails, k, halo, halo_seq);
    __syncthreads();
    // Positions: col/seq[kH + q] = column t0 + q for q = -H .. kTok + H - 1;
    // g[q] and dout for tokens t0 + q, q = 0 .. kTok + H - 1.
    constexpr int kN = kH + kTok + kH;
    float col[kN], dy[kTok + kH], g[kTok + kH];
    int32_t seq[kN];
    gather_before<kSeq, kH>(xs, ss, tails, buf, halo, halo_seq, H, col, seq);
#pragma unroll
    for (int i = 0; i < kTok; ++i) dy[i] = ds[i];
#pragma unroll
    for (int e = 0; e < kH; ++e) {
      float v = __shfl_down_sync(0xffffffffu, xs[e], 1);
      float dv = __shfl_down_sync(0xffffffffu, ds[e], 1);
      int32_t sv = kSeq ? __shfl_down_sync(0xffffffffu, ss[e], 1) : 0;
      if (lane == 31) {
        const bool next_warp = warp + 1 < kWarps;
        v = next_warp ? heads.v[buf][warp + 1][e] : ext_x[e];
        dv = next_warp ? head_d[buf][warp + 1][e] : ext_d[e];
        if (kSeq) sv = next_warp ? heads.s[buf][warp + 1][e] : ext_seq[e];
      }
      col[kH + kTok + e] = v;
      dy[kTok + e] = dv;
      seq[kH + kTok + e] = sv;
    }
    // g of tokens t0 .. t0 + kTok + H - 1, computed at every position and then
    // zeroed outside the row and for padding (no branch per token).
    const int64_t left = L - t0;  // tokens of the row from t0 on
    const int in_row = left < kTok + kH ? static_cast<int>(left) : kTok + kH;
#pragma unroll
    for (int q = 0; q < kTok + kH; ++q) {
      const int32_t s = seq[kH + q];
      float pre = bias;
#pragma unroll
      for (int d = 0; d < kT; ++d)
        if (d <= H && (!kSeq || seq[kH + q - d] == s)) pre = fmaf(rw[d], col[kH + q - d], pre);
      const float gq = output_grad_to_pre(dy[q], pre, p.silu);
      g[q] = q < kTok + H && q < in_row && (!kSeq || s >= 0) ? gq : 0.f;
    }
    // dweight and dbias shares of the run's tokens (g is zero past the row,
    // where the columns are zeros).
#pragma unroll
    for (int i = 0; i < kTok; ++i) {
      const int32_t s = seq[kH + i];
#pragma unroll
      for (int d = 0; d < kT; ++d)
        if (d <= H && (!kSeq || seq[kH + i - d] == s)) rdw[d] = fmaf(g[i], col[kH + i - d], rdw[d]);
      db += g[i];
    }
    // dx of the run's columns: tokens j .. j + H of j's sequence read column j.
    float dxs[kTok];
#pragma unroll
    for (int i = 0; i < kTok; ++i) {
      float dc = 0.f;
#pragma unroll
      for (int d = 0; d < kT; ++d)
        if (d <= H && (!kSeq || seq[kH + i + d] == seq[kH + i])) dc = fmaf(rw[d], g[i + d], dc);
      dxs[i] = dc;
    }
    if (dfinal && t0 + kTok > L - H && t0 < L) {  // columns read by dfinal_states
#pragma unroll
      for (int i = 0; i < kTok; ++i)
        if (t0 + i >= L - H && t0 + i < L)
          dxs[i] += read<T>(p.dfinal_states, b, c, t0 + i - (L - H));
    }
    if (m > 0) write_run<T>(dxr, p.dx.tok, t0, m, vec.dx, dxs);
    // dinitial_states: columns -H .. -1, by the thread of token 0.
    if (t0 == 0 && p.dinitial_states.present()) {
#pragma unroll
      for (int e = 1; e <= kH; ++e) {
        if (e > H) continue;
        float dc = 0.f;
#pragma unroll
        for (int d = 0; d < kT; ++d)
          if (d >= e && d <= H && (!kSeq || seq[kH + d - e] == seq[kH - e]))
            dc = fmaf(rw[d], g[d - e < 0 ? 0 : d - e], dc);
        if (dfinal && -e >= L - H) dc += read<T>(p.dfinal_states, b, c, -e - (L - H));
        write<T>(p.dinitial_states, b, c, H - e, dc);
      }
    }
  }
  float dw[kT];
#pragma unroll
  for (int k = 0; k < kT; ++k) {
    dw[k] = 0.f;
#pragma unroll
    for (int d = 0; d < kT; ++d)
      if (d == H - k) dw[k] = rdw[d];
  }
  float* slot = shares + (b * gridDim.y + blockIdx.y) * (p.width + 1) * p.dim;
  block_sum_shares<kT>(dw, db, p.width, slot, p.dim, c);
}

}  // namespace
}  // namespace causal_conv1d::cuda
