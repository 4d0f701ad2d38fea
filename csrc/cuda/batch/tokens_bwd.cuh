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

// g of the H tokens from u0 on (zero past the row or past H), from memory:
// token u's pre-activation reads columns u-H..u.
template <typename T, int kT, int kH>
__device__ __forceinline__ void g_from_memory(const BatchParams& p, const T* x, const T* dout,
                                              int64_t u0, int H, const float (&rw)[kT],
                                              float bias, float (&g)[kH]) {
#pragma unroll
  for (int e = 0; e < kH; ++e) {
    const int64_t u = u0 + e;
    g[e] = 0.f;
    if (e >= H || u >= p.seqlen) continue;
    float pre = bias;
#pragma unroll
    for (int d = 0; d < kT; ++d)
      if (d <= H) pre = fmaf(rw[d], to_float(x[u - d]), pre);
    g[e] = output_grad_to_pre(to_float(dout[u]), pre, p.silu);
  }
}

// A run's gradients from g (g[q]: token t0 + q's, q < kTok + kH) and the
// columns (col[kH + q]: column t0 + q, from q = -kH on): the dweight and dbias
// shares of its kTok tokens into rdw and db, then dx of its kTok columns
// (tokens j .. j + H read column j). With kSeq, only within a token's sequence
// (seq indexed as col); without, seq is not read.
template <bool kSeq, int kT, int kH, int kN>
__device__ __forceinline__ void run_grads(const float (&g)[kTok + kH], const float (&col)[kN],
                                          const int32_t* seq, int H, const float (&rw)[kT],
                                          float (&rdw)[kT], float& db, float (&dxs)[kTok]) {
#pragma unroll
  for (int i = 0; i < kTok; ++i) {
    const int32_t s = kSeq ? seq[kH + i] : 0;
#pragma unroll
    for (int d = 0; d < kT; ++d)
      if (d <= H && (!kSeq || seq[kH + i - d] == s)) rdw[d] = fmaf(g[i], col[kH + i - d], rdw[d]);
    db += g[i];
  }
#pragma unroll
  for (int i = 0; i < kTok; ++i) {
    float dc = 0.f;
#pragma unroll
    for (int d = 0; d < kT; ++d)
      if (d <= H && (!kSeq || seq[kH + i + d] == seq[kH + i])) dc = fmaf(rw[d], g[i + d], dc);
    dxs[i] = dc;
  }
}

// The run's columns that dfinal_states reads (the row's last H) take its
// values into dx. kWhole: the run is inside the row (the lean loop's), which
// is then longer than H.
template <typename T, bool kWhole>
__device__ __forceinline__ void add_dfinal(const BatchParams& p, int64_t b, int64_t c, int64_t t0,
                                           int H, float (&dxs)[kTok]) {
  const int64_t L = p.seqlen;
  if (p.dfinal_states.present() && t0 + kTok > L - H && (kWhole || t0 < L)) {
#pragma unroll
    for (int i = 0; i < kTok; ++i)
      if (t0 + i >= L - H && (kWhole || t0 + i < L))
        dxs[i] += read<T>(p.dfinal_states, b, c, t0 + i - (L - H));
  }
}

// dinitial_states, by the thread of token 0: columns -H .. -1 (with kSeq,
// within token 0's sequence), plus dfinal_states where the row is shorter
// than H (never with kWhole, as in add_dfinal). g and seq as in run_grads.
template <typename T, bool kSeq, bool kWhole, int kT, int kH>
__device__ __forceinline__ void write_dinitial(const BatchParams& p, int64_t b, int64_t c,
                                               int64_t t0, const float (&g)[kTok + kH],
                                               const int32_t* seq, int H, const float (&rw)[kT]) {
  if (t0 != 0 || !p.dinitial_states.present()) return;
  const int64_t L = p.seqlen;
#pragma unroll
  for (int e = 1; e <= kH; ++e) {
    if (e > H) continue;
    float dc = 0.f;
#pragma unroll
    for (int d = 0; d < kT; ++d)
      if (d >= e && d <= H && (!kSeq || seq[kH + d - e] == seq[kH - e]))
        dc = fmaf(rw[d], g[d - e < 0 ? 0 : d - e], dc);
    if (!kWhole && p.dfinal_states.present() && -e >= L - H)
      dc += read<T>(p.dfinal_states, b, c, -e - (L - H));
    write<T>(p.dinitial_states, b, c, H - e, dc);
  }
}

// The lean loop over a block's first `full` tiles, every run of which is whole,
// for 16-bit x, dout and dx moved in 16-byte words and no sequence ids; the
// tiles walked last to first (as Dao's kernel walks its chunks), so that the
// gradients g of the tokens after a tile were computed with the tile before:
// each token's g is computed once. Per tile: the run's x word to the next
// thread and its first g's to the previous one, through shared memory (two
// barriers); the block's first lane reads the word before the tile from memory
// (the initial states before the row), its last lane takes the g's after the
// tile from the tile after (its first lane's, read before this tile's
// barriers), or, for the block's last whole tile, computes them from memory
// before the loop. dweight and dbias shares add into rdw, db.
template <typename T, int kW, int kT, int kH>
__device__ __forceinline__ void bwd_whole_tiles(const BatchParams& p, int64_t b, int64_t c,
                                                const T* x, const T* dout, T* dx, int64_t first,
                                                int full, int H, const float (&rw)[kT],
                                                float bias, float (&rdw)[kT], float& db) {
  static_assert(sizeof(T) * kTok == 16, "16-byte runs");
  static_assert(kH <= 4, "the g's after a run travel in one float4");
  __shared__ uint4 xwords[2][kThreads];
  __shared__ float4 gwords[2][kThreads];
  const int tid = threadIdx.x;
  const uint4* xsrc = reinterpret_cast<const uint4*>(x + first) + tid;
  const uint4* dsrc = reinterpret_cast<const uint4*>(dout + first) + tid;
  uint4* dst = reinterpret_cast<uint4*>(dx + first) + tid;
  // The block's first lane: the word before each tile (the tile before's last).
  const uint4* before_src = reinterpret_cast<const uint4*>(x + first) - 1;
  uint4 x_next = xsrc[(full - 1) * kThreads], d_next = dsrc[(full - 1) * kThreads];
  uint4 before_next = make_uint4(0, 0, 0, 0);
  const bool row_start = first == 0;  // tile 0's columns before it are the initial states
  if (tid == 0 && (full > 1 || !row_start)) before_next = before_src[(full - 1) * kThreads];
  float g_after[kH];  // the block's last lane: the g's of the tokens after the tile
  if (tid == kThreads - 1)
    g_from_memory<T>(p, x, dout, first + static_cast<int64_t>(full) * kTileSpan, H, rw, bias,
                     g_after);
#pragma unroll 1
  for (int k = full - 1; k >= 0; --k) {
    const int64_t t0 = first + static_cast<int64_t>(k) * kTileSpan + tid * kTok;
    const uint4 xword = x_next, dword = d_next, bword = before_next;
    if (k > 0) {
      x_next = xsrc[(k - 1) * kThreads];
      d_next = dsrc[(k - 1) * kThreads];
      if (tid == 0 && (k > 1 || !row_start)) before_next = before_src[(k - 1) * kThreads];
    }
    const int buf = k & 1;
    if (tid == kThreads - 1 && k < full - 1) {
      const float4 after = gwords[buf ^ 1][0];  // the tile after's first g's
      const float a[4] = {after.x, after.y, after.z, after.w};
#pragma unroll
      for (int e = 0; e < kH; ++e) g_after[e] = a[e];
    }
    xwords[buf][tid] = xword;
    __syncthreads();
    // col[kH - d] = column t0 - d, then the run's tokens.
    float col[kH + kTok];
    {
      Packed<T, kTok> prev;
      *reinterpret_cast<uint4*>(&prev) = tid > 0 ? xwords[buf][tid - 1] : bword;
#pragma unroll
      for (int d = 1; d <= kH; ++d) col[kH - d] = d > H ? 0.f : to_float(prev.v[kTok - d]);
      if (tid == 0 && k == 0 && row_start) {
#pragma unroll
        for (int d = 1; d <= kH; ++d) col[kH - d] = d > H ? 0.f : column<T>(p, b, c, -d, H);
      }
    }
    float ds[kTok];
    {
      Packed<T, kTok> run;
      *reinterpret_cast<uint4*>(&run) = xword;
      float xs[kTok];
      run.unpack(xs);
#pragma unroll
      for (int i = 0; i < kTok; ++i) col[kH + i] = xs[i];
      *reinterpret_cast<uint4*>(&run) = dword;
      run.unpack(ds);
    }
    // g of the run's tokens, each once.
    float g[kTok + kH];
#pragma unroll
    for (int i = 0; i < kTok; ++i) {
      float pre = bias;
#pragma unroll
      for (int d = 0; d < kT; ++d)
        if (d <= H) pre = fmaf(rw[d], col[kH + i - d], pre);
      g[i] = output_grad_to_pre(ds[i], pre, p.silu);
    }
    gwords[buf][tid] = make_float4(g[0], g[1], g[2], g[3]);
    __syncthreads();
    if (tid < kThreads - 1) {
      const float4 next = gwords[buf][tid + 1];
      const float a[4] = {next.x, next.y, next.z, next.w};
#pragma unroll
      for (int e = 0; e < kH; ++e) g[kTok + e] = a[e];
    } else {
#pragma unroll
      for (int e = 0; e < kH; ++e) g[kTok + e] = g_after[e];
    }
    float dxs[kTok];
    run_grads<false, kT, kH>(g, col, nullptr, H, rw, rdw, db, dxs);
    add_dfinal<T, true>(p, b, c, t0, H, dxs);
    store_n<T, kTok>(reinterpret_cast<T*>(dst + k * kThreads), 1, true, dxs);
    write_dinitial<T, false, true, kT, kH>(p, b, c, t0, g, nullptr, H, rw);
  }
}

template <typename T, int kW, bool kSeq>
__global__ void __launch_bounds__(kThreads, kTokenBwdBlocks<T, kW, kSeq>)
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
  float rdw[kT], db = 0.f;  // rdw[d]: the share of tap H - d
#pragma unroll
  for (int d = 0; d < kT; ++d) rdw[d] = 0.f;
  const int64_t first = static_cast<int64_t>(blockIdx.y) * tiles * kTileSpan;
  // The columns before the block's first tile (its first lane's).
  float halo[kH] = {};
  int32_t halo_seq[kH] = {};
  // Whole tiles take the lean loop where it applies; the general loop the rest
  // (the row's last, partial tile), its first lane reading its halo from memory.
  int full = 0;
  if constexpr (!kSeq && sizeof(T) * kTok == 16 && kH <= 4) {
    if (vec.x && vec.dout && vec.dx) {
      const int64_t whole = L > first ? (L - first) / kTileSpan : 0;
      full = static_cast<int>(whole < tiles ? whole : tiles);
      if (full > 0)
        bwd_whole_tiles<T, kW, kT, kH>(p, b, c, row.x, row.dout, dxr, first, full, H, rw, bias, rdw,
                                       db);
    }
  }
  if (threadIdx.x == 0) load_halo<T, kSeq>(p, b, c, first + full * kTileSpan, H, halo, halo_seq);

#pragma unroll 1
  for (int k = full; k < tiles; ++k) {
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
    if (threadIdx.x == 0 && k > full) halo_from_previous<kSeq>(tails, k, halo, halo_seq);
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
    // dweight and dbias shares and dx of the run (g is zero past the row, where
    // the columns are zeros).
    float dxs[kTok];
    run_grads<kSeq, kT, kH>(g, col, seq, H, rw, rdw, db, dxs);
    add_dfinal<T, false>(p, b, c, t0, H, dxs);
    if (m > 0) write_run<T>(dxr, p.dx.tok, t0, m, vec.dx, dxs);
    write_dinitial<T, kSeq, false, kT, kH>(p, b, c, t0, g, seq, H, rw);
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
