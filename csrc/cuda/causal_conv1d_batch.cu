// CUDA kernels of the Dao dialect's training ops (causal_conv1d_batch_fwd and
// causal_conv1d_batch_bwd, CONTRACT 1.5).
//
// Two tilings, chosen by x's layout, each moving 16 (forward) or 8 (backward)
// contiguous bytes per access where the strides allow:
// - Along channels (channel-last x, or any x without contiguous tokens): a
//   thread owns n consecutive channels of one chunk of a row's tokens, so a
//   warp reads each token's channels in whole lines, and walks its tokens with
//   the width-1 columns before the current one in registers. Loads of several
//   tokens are issued before any is used.
// - Along tokens (channel-first x): a block owns one channel of a row for
//   consecutive tiles of kThreads * kTok tokens, walked in order; in a tile
//   each thread owns kTok consecutive tokens, consecutive threads consecutive
//   runs, so a warp reads one stretch of the channel. The columns before a
//   thread's run (and, backward, the tokens after it) come from its neighbour
//   lanes by shuffles, a warp's edge lanes from the neighbouring warps through
//   shared memory; only the block's first lane (at its first tile) and, backward,
//   its last lane read them from memory.
// Column j of a row is column j of cat(initial states or zeros, x): negative
// j are the initial states' columns j + width - 1, which belong to the
// sequence of the row's first token.
//
// Backward: g(u), the gradient of token u's pre-activation, is recomputed from
// the columns u-H..u and dout; dx of column j = sum over d = 0..H of tap H-d
// times g(j + d) (tokens of j's sequence). dweight and dbias shares go to a
// buffer of one slot per (row, block of tokens) (along tokens: the block's
// threads' shares summed in a fixed order first), summed in slot order by a
// second kernel: the same bits on every run, whatever the schedule (the
// deterministic mode costs nothing).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include "../ops.h"
#include "../settings.h"
#include "common.cuh"

namespace causal_conv1d::cuda {
namespace {

// Element (b, c, t) of a (batch, dim, tokens) view, as float.
template <typename T>
__device__ __forceinline__ float read(const View3& v, int64_t b, int64_t c, int64_t t) {
  return to_float(static_cast<const T*>(v.data)[b * v.batch + c * v.dim + t * v.tok]);
}

template <typename T>
__device__ __forceinline__ void write(const View3& v, int64_t b, int64_t c, int64_t t, float x) {
  static_cast<T*>(v.data)[b * v.batch + c * v.dim + t * v.tok] = from_float<T>(x);
}

// Column j of cat(initial states or zeros, x) for row b, channel c (H = width-1).
template <typename T>
__device__ __forceinline__ float column(const BatchParams& p, int64_t b, int64_t c, int64_t j,
                                        int H) {
  if (j >= 0) return read<T>(p.x, b, c, j);
  return p.initial_states.present() ? read<T>(p.initial_states, b, c, j + H) : 0.f;
}

// The sequence of column j (an initial-state column: that of the row's first
// token); 0 for a row without tokens, whose columns meet no token.
__device__ __forceinline__ int32_t column_sequence(const BatchParams& p, int64_t b, int64_t j) {
  if (p.seqlen == 0) return 0;
  return static_cast<int32_t>(p.sequence(b, j < 0 ? 0 : j));
}

// The gradient of a pre-activation from its output's: dy times SiLU's
// derivative sig * (1 + pre * (1 - sig)), or dy itself without the activation.
// Computed either way and then selected, so that a caller's loop needs no branch.
__device__ __forceinline__ float output_grad_to_pre(float dy, float pre, bool silu) {
  const float sig = 1.f / (1.f + __expf(-pre));
  const float through = dy * sig * (1.f + pre * (1.f - sig));
  return silu ? through : dy;
}

// ---------------------------------------------------------------------------
// Along channels: a thread owns channels [c, c + n) of tokens [t0, t1).

constexpr int kLoads = 8;     // tokens whose loads are issued together (forward)
constexpr int kBwdLoads = 4;  // the same, backward (twice the streams, more registers)

// Channels [c, c + n) of row b of a (batch, dim, tokens) view: vector accesses
// when n > 1 (the launch checked contiguity and alignment).
template <typename T, int n>
__device__ __forceinline__ Rows<T, n> rows(const View3& v, int64_t b, int64_t c) {
  using U = std::remove_const_t<T>;
  return {static_cast<T*>(static_cast<U*>(v.data)) + b * v.batch + c * v.dim, v.tok, v.dim};
}

// Column j (< 0: an initial-state column) of channels [c, c + n).
template <typename T, int n>
__device__ __forceinline__ void columns(const BatchParams& p, const Rows<const T, n>& x, int64_t b,
                                        int64_t c, int64_t j, int H, float (&v)[n]) {
  if (j >= 0) return x.load(j, v);
  if (!p.initial_states.present()) return clear(v);
  const View3& s = p.initial_states;
  load_n<T, n>(static_cast<const T*>(s.data) + b * s.batch + c * s.dim + (j + H) * s.tok, s.dim,
               false, v);
}

template <typename T, int n>
__device__ __forceinline__ void store_columns(const View3& v, int64_t b, int64_t c, int64_t j,
                                              const float (&in)[n]) {
  store_n<T, n>(static_cast<T*>(v.data) + b * v.batch + c * v.dim + j * v.tok, v.dim, false, in);
}

// Register caps (blocks per SM) at the fixed width: enough threads per SM to
// keep the memory system busy; the run-time width holds all kMaxWidth taps.
template <int kW>
constexpr int kChannelBlocks = kW > 0 ? 4 : 1;
template <int kW>
constexpr int kTokenBlocks = kW > 0 ? 7 : 1;
// The forward along tokens of 16-bit x without sequence ids fits 48 registers
// without spilling: 10 blocks per SM.
template <typename T, int kW, bool kSeq>
constexpr int kTokenFwdBlocks = kW > 0 && !kSeq && sizeof(T) == 2 ? 10 : kTokenBlocks<kW>;

template <typename T, int kW, int n, bool kSeq>
__global__ void __launch_bounds__(kThreads, kChannelBlocks<kW>)
    batch_fwd_channels(const BatchParams p, const int64_t chunk, const VecFlags vec) {
  await_producers();
  const int64_t b = blockIdx.z, L = p.seqlen;
  const int64_t c = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) * n;
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * chunk;
  if (c >= p.dim || (t0 >= L && t0 > 0)) return;
  const int64_t t1 = t0 + chunk < L ? t0 + chunk : L;
  constexpr int kT = kTaps<kW>;
  const int H = (kW > 0 ? kW : p.width) - 1;
  constexpr bool by_sequence = kSeq;  // else every token is of sequence 0
  Filter<kW, n> f;
  f.load(p, c, vec);
  const Rows<const T, n> x = rows<const T, n>(p.x, b, c);
  const Rows<T, n> out = rows<T, n>(p.out, b, c);

  float window[kT - 1][n];
  int32_t window_seq[kT - 1];
#pragma unroll
  for (int k = 0; k < kT - 1; ++k) {
    window_seq[k] = 0;
    if (k >= H) continue;
    columns<T, n>(p, x, b, c, t0 - H + k, H, window[k]);
    if (by_sequence) window_seq[k] = column_sequence(p, b, t0 - H + k);
  }
  const auto step = [&](const float (&xt)[n], int32_t s, int64_t t) {
    float y[n];
#pragma unroll
    for (int e = 0; e < n; ++e) {
      float acc = f.b[e];
#pragma unroll
      for (int k = 0; k < kT; ++k) {
        if (k < H && (!by_sequence || window_seq[k] == s)) acc = fmaf(f.w[k][e], window[k][e], acc);
        if (k == H) acc = fmaf(f.w[k][e], xt[e], acc);
      }
      y[e] = s < 0 ? 0.f : (p.silu ? silu(acc) : acc);
    }
#pragma unroll
    for (int k = 0; k < kT - 1; ++k) {
      if (k + 1 < H) {
#pragma unroll
        for (int e = 0; e < n; ++e) window[k][e] = window[k + 1][e];
        window_seq[k] = window_seq[k + 1];
      } else if (k + 1 == H) {
#pragma unroll
        for (int e = 0; e < n; ++e) window[k][e] = xt[e];
        window_seq[k] = s;
      }
    }
    out.store(t, y);
  };
  const auto sequence = [&](int64_t t) {
    return by_sequence ? static_cast<int32_t>(p.sequence(b, t)) : 0;
  };
  int64_t t = t0;
  for (; t + kLoads <= t1; t += kLoads) {  // kLoads tokens' loads, then their outputs
    Packed<T, n> xs[kLoads];
    int32_t ss[kLoads];
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      xs[i] = x.load_packed(t + i);
      ss[i] = sequence(t + i);
    }
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      float xt[n];
      xs[i].unpack(xt);
      step(xt, ss[i], t + i);
    }
  }
  for (; t < t1; ++t) {
    float xt[n];
    x.load(t, xt);
    step(xt, sequence(t), t);
  }
  // The final states: the last width-1 columns, written by the row's last chunk.
  if (p.final_states.present() && t1 == L) {
    for (int i = 0; i < H; ++i) {
      float v[n];
      columns<T, n>(p, x, b, c, L - H + i, H, v);
      store_columns<T, n>(p.final_states, b, c, i, v);
    }
  }
}

template <typename T, int kW, int n, bool kSeq>
__global__ void __launch_bounds__(kThreads, kChannelBlocks<kW>)
    batch_bwd_channels(const BatchParams p, const int64_t chunk, const VecFlags vec,
                       float* __restrict__ shares) {
  await_producers();
  const int64_t b = blockIdx.z, L = p.seqlen;
  const int64_t c = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) * n;
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * chunk;
  if (c >= p.dim) return;
  const int64_t t1 = t0 + chunk < L ? t0 + chunk : L;
  constexpr int kT = kTaps<kW>;
  const int H = (kW > 0 ? kW : p.width) - 1;
  constexpr bool by_sequence = kSeq;  // else every token is of sequence 0
  float dw[kT][n], db[n];
#pragma unroll
  for (int e = 0; e < n; ++e) {
    db[e] = 0.f;
#pragma unroll
    for (int k = 0; k < kT; ++k) dw[k][e] = 0.f;
  }

  if (t0 < L || t0 == 0) {
    Filter<kW, n> f;
    f.load(p, c, vec);
    const Rows<const T, n> x = rows<const T, n>(p.x, b, c);
    const Rows<const T, n> dout = rows<const T, n>(p.dout, b, c);
    const Rows<T, n> dx = rows<T, n>(p.dx, b, c);
    // Columns u-H..u (values and sequences) and the gradients g of tokens
    // u-H..u, at positions 0..H; g of tokens before the chunk are never needed
    // for its columns, and before the row they are zero.
    float col[kT][n], g[kT][n];
    int32_t col_seq[kT];
#pragma unroll
    for (int k = 0; k < kT; ++k) {
      col_seq[k] = 0;
      clear(g[k]);
      clear(col[k]);
      if (k < H) {
        columns<T, n>(p, x, b, c, t0 - H + k, H, col[k]);
        if (by_sequence) col_seq[k] = column_sequence(p, b, t0 - H + k);
      }
    }
    const int64_t u_end = t1 + H;  // tokens t1 .. t1+H-1 only complete the chunk's columns
    for (int64_t u0 = t0; u0 < u_end; u0 += kBwdLoads) {
      const int64_t in_row = (L < u_end ? L : u_end) - u0;
      const int m = in_row <= 0 ? 0 : (in_row < kBwdLoads ? static_cast<int>(in_row) : kBwdLoads);
      Packed<T, n> xs[kBwdLoads], ds[kBwdLoads];
      int32_t ss[kBwdLoads];
#pragma unroll
      for (int i = 0; i < kBwdLoads; ++i) {
        if (i < m) {
          xs[i] = x.load_packed(u0 + i);
          ds[i] = dout.load_packed(u0 + i);
        }
        ss[i] = i < m && by_sequence ? static_cast<int32_t>(p.sequence(b, u0 + i)) : 0;
      }
#pragma unroll
      for (int i = 0; i < kBwdLoads; ++i) {
        const int64_t u = u0 + i;
        if (u >= u_end) break;
        // Token u's column enters at position H.
        const bool token = i < m;
        const int32_t s = token ? ss[i] : -1;
        float xt[n], dt[n];
        if (token) {
          xs[i].unpack(xt);
          ds[i].unpack(dt);
        } else {
          clear(xt);
          clear(dt);
        }
#pragma unroll
        for (int k = 0; k < kT; ++k)
          if (k == H) {
#pragma unroll
            for (int e = 0; e < n; ++e) col[k][e] = xt[e];
            col_seq[k] = token && by_sequence ? s : 0;
          }
        float gu[n];
#pragma unroll
        for (int e = 0; e < n; ++e) {
          gu[e] = 0.f;
          if (token && s >= 0) {
            float pre = f.b[e];
#pragma unroll
            for (int k = 0; k < kT; ++k)
              if (k <= H && (!by_sequence || col_seq[k] == s))
                pre = fmaf(f.w[k][e], col[k][e], pre);
            gu[e] = output_grad_to_pre(dt[e], pre, p.silu);
          }
        }
        // g of tokens u-H..u at positions 0..H.
#pragma unroll
        for (int k = 0; k + 1 < kT; ++k)
          if (k < H) {
#pragma unroll
            for (int e = 0; e < n; ++e) g[k][e] = g[k + 1][e];
          }
#pragma unroll
        for (int k = 0; k < kT; ++k)
          if (k == H) {
#pragma unroll
            for (int e = 0; e < n; ++e) g[k][e] = gu[e];
          }
        if (token && u < t1) {
#pragma unroll
          for (int k = 0; k < kT; ++k)
            if (k <= H && (!by_sequence || col_seq[k] == s)) {
#pragma unroll
              for (int e = 0; e < n; ++e) dw[k][e] = fmaf(gu[e], col[k][e], dw[k][e]);
            }
#pragma unroll
          for (int e = 0; e < n; ++e) db[e] += gu[e];
        }
        // Column j = u - H is complete: tokens j..u read it, through taps H..0.
        const int64_t j = u - H;
        if ((j >= t0 && j < t1) || (t0 == 0 && j < 0)) {
          float dc[n];
          clear(dc);
#pragma unroll
          for (int k = 0; k < kT; ++k) {
            // Token u - k, at position H - k, reads column j = u - H through tap k.
            if (k <= H) {
              const int pos = H - k;
#pragma unroll
              for (int q = 0; q < kT; ++q)
                if (q == pos && (!by_sequence || col_seq[q] == col_seq[0])) {
#pragma unroll
                  for (int e = 0; e < n; ++e) dc[e] = fmaf(f.w[k][e], g[q][e], dc[e]);
                }
            }
          }
          if (p.dfinal_states.present() && j >= L - H) {
            const View3& v = p.dfinal_states;
            float df[n];
            load_n<T, n>(
                static_cast<const T*>(v.data) + b * v.batch + c * v.dim + (j - (L - H)) * v.tok,
                v.dim, false, df);
#pragma unroll
            for (int e = 0; e < n; ++e) dc[e] += df[e];
          }
          if (j >= 0) {
            dx.store(j, dc);
          } else if (p.dinitial_states.present()) {
            store_columns<T, n>(p.dinitial_states, b, c, j + H, dc);
          }
        }
        // Slide the columns: position k takes k + 1.
#pragma unroll
        for (int k = 0; k + 1 < kT; ++k)
          if (k < H) {
#pragma unroll
            for (int e = 0; e < n; ++e) col[k][e] = col[k + 1][e];
            col_seq[k] = col_seq[k + 1];
          }
      }
    }
  }
  // This chunk's shares: slot (b, blockIdx.y), width rows of dweight, then dbias.
  float* slot = shares + (b * gridDim.y + blockIdx.y) * (p.width + 1) * p.dim + c;
  for (int k = 0; k < p.width; ++k) {
#pragma unroll
    for (int q = 0; q < kT; ++q)
      if (q == k) store_n<float, n>(slot + k * p.dim, 1, true, dw[q]);
  }
  store_n<float, n>(slot + p.width * p.dim, 1, true, db);
}

// ---------------------------------------------------------------------------
// Along tokens: a block owns channel blockIdx.x of row blockIdx.z for
// `tiles` consecutive tiles of kThreads * kTok tokens, walked in order; in a
// tile each thread owns tokens [t0, t0 + kTok). The columns before a thread's
// run come from lane - 1 by a shuffle, for a warp's first lane from the
// previous warp through shared memory, and for the block's first lane from
// the previous tile's last warp the same way (from memory for the block's
// first tile). Backward, the tokens after a run come the same way from the
// other side, the block's last lane reading them from memory. Forward, the
// next two tiles' loads are in flight while a tile is computed.

constexpr int kTok = 8;  // tokens per thread in a tile: 16 bytes of 16-bit x
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

// dweight (dim, width) and dbias (dim,): the shares of every slot, summed in
// slot order (kSumLoads slots' loads in flight at once).
constexpr int kSumLoads = 8;

template <typename W>
__global__ void __launch_bounds__(kThreads)
    sum_shares_kernel(const float* __restrict__ shares, int64_t slots, int64_t dim, int width,
                      W* __restrict__ dweight, int64_t dw_dim, int64_t dw_tap, void* dbias,
                      c10::ScalarType bias_type) {
  await_producers();
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int k = blockIdx.y;  // 0..width-1: a tap; width: the bias
  if (c >= dim) return;
  const int64_t stride = (width + 1) * dim;
  const float* share = shares + k * dim + c;
  float sum = 0.f;
  int64_t s = 0;
  for (; s + kSumLoads <= slots; s += kSumLoads) {
    float v[kSumLoads];
#pragma unroll
    for (int q = 0; q < kSumLoads; ++q) v[q] = share[(s + q) * stride];
#pragma unroll
    for (int q = 0; q < kSumLoads; ++q) sum += v[q];
  }
  for (; s < slots; ++s) sum += share[s * stride];
  if (k < width) {
    dweight[c * dw_dim + k * dw_tap] = from_float<W>(sum);
  } else if (dbias != nullptr) {
    switch (bias_type) {
      case c10::ScalarType::Half:
        static_cast<__half*>(dbias)[c] = from_float<__half>(sum);
        break;
      case c10::ScalarType::BFloat16:
        static_cast<__nv_bfloat16*>(dbias)[c] = from_float<__nv_bfloat16>(sum);
        break;
      default:
        static_cast<float*>(dbias)[c] = sum;
    }
  }
}

// Threads along tokens when x's tokens are contiguous and its channels are not
// (channel-first); along channels otherwise, or always with
// CAUSAL_CONV1D_CUDA_BATCH_BY_CHANNELS=1 (to compare the two).
bool by_tokens(const BatchParams& p) {
  static const bool channels_only = setting_on(Setting::kCudaBatchByChannels);
  return !channels_only && p.x.tok == 1 && p.x.dim != 1;
}

// Calls f.template operator()<T, kW>() for x's storage type and the width (4
// compiled as such, others at run time).
template <typename F>
void dispatch_batch(const BatchParams& p, F&& f) {
  with_storage_type(p.x_type, [&](auto tag) {
    using T = decltype(tag);
    p.width == 4 ? f.template operator()<T, 4>() : f.template operator()<T, 0>();
  });
}

// Calls f.template operator()<kSeq>(): kSeq false (no sequence ids: every
// sequence test compiled away) for the fixed width without seq_idx; true
// otherwise, which also serves rows without seq_idx (their ids read as 0).
template <int kW, typename F>
void with_sequences(bool seq, F&& f) {
  if constexpr (kW > 0) {
    if (!seq) return f.template operator()<false>();
  }
  f.template operator()<true>();
}

// grid.y of a launch: blocks along one row's tokens.
unsigned token_blocks(const BatchParams& p, int64_t span) {
  const int64_t blocks = std::max<int64_t>(1, (p.seqlen + span - 1) / span);
  TORCH_CHECK(blocks <= 65535 && p.batch <= 65535,
              "causal_conv1d_batch: too many tokens or rows for one grid");
  return static_cast<unsigned>(blocks);
}

dim3 tokens_grid(const BatchParams& p, int tiles) {
  TORCH_CHECK(p.dim <= INT32_MAX, "causal_conv1d_batch: dim too large for one grid");
  return dim3(static_cast<unsigned>(p.dim), token_blocks(p, tiles * kTileSpan),
              static_cast<unsigned>(p.batch));
}

// Tokens per thread along channels: the largest power of two from `most` down
// to `least` whose grid still holds a quarter of the threads the GPU can run
// at once, so that short batches spread over every SM (as the prefill does).
int64_t channel_chunk(const BatchParams& p, int n, int64_t most, int64_t least, int device) {
  const int64_t fill =
      static_cast<int64_t>(device_attribute<cudaDevAttrMultiProcessorCount>(device)) * 2048 / 4;
  const int64_t per_range = p.batch * ((p.dim + n * kThreads - 1) / (n * kThreads)) * kThreads;
  int64_t chunk = most;
  while (chunk > least && per_range * ((p.seqlen + chunk - 1) / chunk) < fill) chunk /= 2;
  while ((p.seqlen + chunk - 1) / chunk > 65535) chunk *= 2;
  return chunk;
}

dim3 channels_grid(const BatchParams& p, int n, int64_t chunk) {
  const int64_t blocks = (p.dim + n * kThreads - 1) / (n * kThreads);
  return dim3(static_cast<unsigned>(blocks), token_blocks(p, chunk),
              static_cast<unsigned>(p.batch));
}

// A view whose tokens can be moved kTok at a time in 16-byte accesses: tokens
// contiguous, every run of a channel starting on a 16-byte boundary.
bool tokens_vectorizable(const View3& v, size_t elem) {
  const auto bytes = [&](int64_t stride) {
    return (stride * static_cast<int64_t>(elem)) % 16 == 0;
  };
  return v.present() && v.tok == 1 && aligned16(v.data) && bytes(v.dim) && bytes(v.batch);
}

BatchVec batch_vec(const BatchParams& p, size_t elem) {
  BatchVec vec;
  vec.x = tokens_vectorizable(p.x, elem);
  vec.out = tokens_vectorizable(p.out, elem);
  vec.dout = tokens_vectorizable(p.dout, elem);
  vec.dx = tokens_vectorizable(p.dx, elem);
  vec.seq = p.seq_idx != nullptr && p.seq_tok_stride == 1 && p.seq_batch_stride % 4 == 0 &&
            aligned16(p.seq_idx);
  return vec;
}

// A view whose channels [c, c + n) (c a multiple of n) take one access of n
// elements at every token: channels contiguous, strides multiples of n, the
// data aligned to the access.
bool channels_vectorizable(const View3& v, int64_t dim, int n, size_t elem) {
  return v.present() && v.dim == 1 && dim % n == 0 && v.tok % n == 0 && v.batch % n == 0 &&
         reinterpret_cast<uintptr_t>(v.data) % (n * elem) == 0;
}

VecFlags filter_vec(const BatchParams& p, int kW) {
  return vec_flags(p, kW, c10::elementSize(p.weight_type), c10::elementSize(p.bias_type), 1);
}

template <typename T, int kW>
void launch_fwd(const BatchParams& p, const LaunchTarget& target) {
  const bool seq = p.seq_idx != nullptr;
  if (by_tokens(p)) {
    const int tiles = static_cast<int>(tiles_per_block(p, target.device));
    with_sequences<kW>(seq, [&]<bool kSeq>() {
      launch_kernel(batch_fwd_tokens<T, kW, kSeq>, tokens_grid(p, tiles), dim3(kThreads), target, p,
                    batch_vec(p, sizeof(T)), tiles);
    });
    return;
  }
  // 16-byte accesses at the fixed width, 8-byte ones at the run-time width
  // (whose kMaxWidth taps per channel take the registers).
  constexpr int n = (kW > 0 ? 16 : 8) / sizeof(T);
  const bool vector = channels_vectorizable(p.x, p.dim, n, sizeof(T)) &&
                      channels_vectorizable(p.out, p.dim, n, sizeof(T));
  const auto go = [&]<int kN, bool kSeq>() {
    const int64_t chunk = channel_chunk(p, kN, 128, 8, target.device);
    launch_kernel(batch_fwd_channels<T, kW, kN, kSeq>, channels_grid(p, kN, chunk), dim3(kThreads),
                  target, p, chunk, filter_vec(p, kW));
  };
  if (!vector) return go.template operator()<1, true>();
  with_sequences<kW>(seq, [&]<bool kSeq>() { go.template operator()<n, kSeq>(); });
}

// Launches the backward kernel; returns the number of share slots it wrote.
template <typename T, int kW>
int64_t launch_bwd(const BatchParams& p, const LaunchTarget& target, at::Tensor& shares) {
  const auto alloc = [&](const dim3& grid) {
    const int64_t slots = p.batch * static_cast<int64_t>(grid.y);
    shares = at::empty({slots, p.width + 1, p.dim},
                       at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, target.device));
    return slots;
  };
  const bool seq = p.seq_idx != nullptr;
  if (by_tokens(p)) {
    const int tiles = static_cast<int>(tiles_per_block(p, target.device));
    const dim3 grid = tokens_grid(p, tiles);
    const int64_t slots = alloc(grid);
    with_sequences<kW>(seq, [&]<bool kSeq>() {
      launch_kernel(batch_bwd_tokens<T, kW, kSeq>, grid, dim3(kThreads), target, p,
                    batch_vec(p, sizeof(T)), tiles, shares.data_ptr<float>());
    });
    return slots;
  }
  // 8-byte accesses: x, dout, the columns and the gradients of n channels
  // stay in registers.
  constexpr int n = (kW > 0 ? 8 : 4) / sizeof(T);
  const bool vector = channels_vectorizable(p.x, p.dim, n, sizeof(T)) &&
                      channels_vectorizable(p.dout, p.dim, n, sizeof(T)) &&
                      channels_vectorizable(p.dx, p.dim, n, sizeof(T));
  int64_t slots = 0;
  const auto go = [&]<int kN, bool kSeq>() {
    const int64_t chunk = channel_chunk(p, kN, 256, 16, target.device);
    const dim3 grid = channels_grid(p, kN, chunk);
    slots = alloc(grid);
    launch_kernel(batch_bwd_channels<T, kW, kN, kSeq>, grid, dim3(kThreads), target, p, chunk,
                  filter_vec(p, kW), shares.data_ptr<float>());
  };
  if (!vector) {
    go.template operator()<1, true>();
  } else {
    with_sequences<kW>(seq, [&]<bool kSeq>() { go.template operator()<n, kSeq>(); });
  }
  return slots;
}

}  // namespace
}  // namespace causal_conv1d::cuda

namespace causal_conv1d {

at::Tensor CudaBackend::empty(at::IntArrayRef sizes, at::IntArrayRef strides,
                              const at::TensorOptions& options) {
  return at::empty_strided(sizes, strides, options);
}

void CudaBackend::batch_fwd(const BatchParams& p) {
  const cuda::LaunchTarget target = cuda::current_target();
  cuda::dispatch_batch(p, [&]<typename T, int kW>() { cuda::launch_fwd<T, kW>(p, target); });
}

void CudaBackend::batch_bwd(const BatchParams& p, bool /*deterministic: always*/) {
  const cuda::LaunchTarget target = cuda::current_target();
  at::Tensor shares;
  int64_t slots = 0;
  cuda::dispatch_batch(
      p, [&]<typename T, int kW>() { slots = cuda::launch_bwd<T, kW>(p, target, shares); });
  const dim3 sum_grid((p.dim + cuda::kThreads - 1) / cuda::kThreads, p.width + 1);
  cuda::with_storage_type(p.weight_type, [&](auto tag) {
    using W = decltype(tag);
    cuda::launch_kernel(cuda::sum_shares_kernel<W>, sum_grid, dim3(cuda::kThreads), target,
                        static_cast<const float*>(shares.data_ptr<float>()), slots, p.dim,
                        static_cast<int>(p.width), static_cast<W*>(p.dweight),
                        p.dweight_dim_stride, p.dweight_tap_stride, p.dbias, p.bias_type);
  });
}

}  // namespace causal_conv1d
