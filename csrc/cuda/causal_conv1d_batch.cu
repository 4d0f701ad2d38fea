// CUDA kernels of the Dao dialect's training ops (causal_conv1d_batch_fwd and
// causal_conv1d_batch_bwd, CONTRACT 1.5).
//
// Tiling: a thread owns one channel of one run of a row's tokens. Channel-last
// x: a block holds kThreads consecutive channels of the same (row, chunk), so
// each token's channels are read in whole lines. Channel-first x: a block holds
// one channel, its threads consecutive runs of kRun tokens, so a warp reads one
// stretch of the channel (kLoads tokens per thread at once, one vector access
// where aligned). Either way a thread issues the loads of several tokens
// before it uses them, then walks its tokens upwards with the width-1 columns
// before the current token in registers: column j of cat(initial states or
// zeros, x), where negative j are the initial states' columns j + width - 1,
// which belong to the sequence of the row's first token.
//
// Backward: the thread walks tokens t0 .. t1 + width - 2 once. At token u it
// recomputes the pre-activation (from the columns u-H..u), forms the gradient g
// of the conv's output, adds g times the columns to its dweight and dbias
// shares, and, holding g of tokens u-H..u, finishes the gradient of column
// u - H, the last column those tokens read. Shares go to a buffer of one slot
// per (row, block of tokens) (channel-first: the block's threads' shares
// summed in a fixed order first), summed in slot order by a second kernel: the
// same bits on every run, whatever the schedule (the deterministic mode costs
// nothing).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../ops.h"
#include "common.cuh"

namespace causal_conv1d::cuda {
namespace {

constexpr int64_t kFwdChunk = 64;   // tokens per thread, forward
constexpr int64_t kBwdChunk = 256;  // tokens per thread, backward (one share slot each)

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

// The filter of channel c in fp32: taps (kTaps<kW> of them, zero past the
// width) and the bias.
template <int kW>
__device__ __forceinline__ void load_filter(const BatchParams& p, int64_t c, float (&w)[kTaps<kW>],
                                            float& bias) {
#pragma unroll
  for (int k = 0; k < kTaps<kW>; ++k) {
    float v[1] = {0.f};
    if (k < p.width)
      load_n<1>(p.weight, p.weight_type, c * p.weight_dim_stride + k * p.weight_tap_stride, 1,
                false, v);
    w[k] = v[0];
  }
  float b[1] = {0.f};
  if (p.bias != nullptr) load_n<1>(p.bias, p.bias_type, c * p.bias_stride, 1, false, b);
  bias = b[0];
}

// Which thread owns which tokens. Channel-last x (kByTokens false): a block
// holds kThreads consecutive channels of one chunk of `chunk` tokens, so each
// token's channels are read in whole lines. Channel-first x (kByTokens true):
// a block holds one channel, each thread a run of kRun consecutive tokens, so
// a warp reads one stretch of that channel's tokens (8 at a time, one vector
// access where aligned).
constexpr int64_t kRun = 16;  // tokens per thread, channel-first
constexpr int kLoads = 8;     // tokens whose loads are issued together (forward)
constexpr int kBwdLoads = 4;  // the same, backward (twice the streams, more registers)

struct Work {
  int64_t b, c, t0, t1;
  bool active;  // owns a channel and tokens (or the initial columns of an empty row)
};

template <bool kByTokens>
__device__ __forceinline__ Work work_of(const BatchParams& p, int64_t chunk) {
  Work w;
  w.b = blockIdx.z;
  if constexpr (kByTokens) {
    w.c = blockIdx.x;
    w.t0 = (static_cast<int64_t>(blockIdx.y) * kThreads + threadIdx.x) * kRun;
    chunk = kRun;
  } else {
    w.c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
    w.t0 = static_cast<int64_t>(blockIdx.y) * chunk;
  }
  w.t1 = w.t0 + chunk < p.seqlen ? w.t0 + chunk : p.seqlen;
  w.active = w.c < p.dim && (w.t0 < p.seqlen || w.t0 == 0);
  return w;
}

// Tokens t .. t+n-1 (n <= kLoads) of row b, channel c, as fp32; vec: the view
// is channel-first and 16-byte aligned at every multiple of kLoads tokens.
template <typename T, int N>
__device__ __forceinline__ void read_tokens(const View3& v, int64_t b, int64_t c, int64_t t, int n,
                                            bool vec, float (&out)[N]) {
  const T* base = static_cast<const T*>(v.data) + b * v.batch + c * v.dim + t * v.tok;
  if (vec && n == N) {
    load_n<T, N>(base, 1, true, out);
    return;
  }
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = i < n ? to_float(base[i * v.tok]) : 0.f;
}

template <typename T>
__device__ __forceinline__ void write_tokens(const View3& v, int64_t b, int64_t c, int64_t t, int n,
                                             bool vec, const float (&in)[kLoads]) {
  T* base = static_cast<T*>(v.data) + b * v.batch + c * v.dim + t * v.tok;
  if (vec && n == kLoads) {
    store_n<T, kLoads>(base, 1, true, in);
    return;
  }
#pragma unroll
  for (int i = 0; i < kLoads; ++i)
    if (i < n) base[i * v.tok] = from_float<T>(in[i]);
}

// The sequence ids of tokens t .. t+n-1 (0 without seq_idx).
template <int N>
__device__ __forceinline__ void read_sequences(const BatchParams& p, int64_t b, int64_t t, int n,
                                               int32_t (&out)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = i < n ? static_cast<int32_t>(p.sequence(b, t + i)) : 0;
}

// Per-launch vector flags: which views take one access per kLoads tokens.
struct BatchVec {
  bool x = false, out = false, dout = false;
};

template <typename T, int kW, bool kByTokens>
__global__ void __launch_bounds__(kThreads) batch_fwd_kernel(const BatchParams p, BatchVec vec) {
  await_producers();
  const Work work = work_of<kByTokens>(p, kFwdChunk);
  if (!work.active) return;
  const int64_t b = work.b, c = work.c, t0 = work.t0, t1 = work.t1;
  constexpr int kT = kTaps<kW>;
  const int H = (kW > 0 ? kW : p.width) - 1;
  const bool by_sequence = p.seq_idx != nullptr;
  float w[kT], bias;
  load_filter<kW>(p, c, w, bias);

  float window[kT - 1];
  int32_t window_seq[kT - 1];
#pragma unroll
  for (int k = 0; k < kT - 1; ++k) {
    window[k] = k < H ? column<T>(p, b, c, t0 - H + k, H) : 0.f;
    window_seq[k] = k < H && by_sequence ? column_sequence(p, b, t0 - H + k) : 0;
  }
  for (int64_t t = t0; t < t1; t += kLoads) {
    const int n = t1 - t < kLoads ? static_cast<int>(t1 - t) : kLoads;
    float xs[kLoads], ys[kLoads];
    int32_t ss[kLoads];
    read_tokens<T>(p.x, b, c, t, n, vec.x, xs);
    read_sequences(p, b, t, n, ss);
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      const float xt = xs[i];
      const int32_t s = ss[i];
      float acc = bias;
#pragma unroll
      for (int k = 0; k < kT; ++k) {
        if (k < H && (!by_sequence || window_seq[k] == s)) acc = fmaf(w[k], window[k], acc);
        if (k == H) acc = fmaf(w[k], xt, acc);
      }
      float y = p.silu ? silu(acc) : acc;
      ys[i] = s < 0 ? 0.f : y;
#pragma unroll
      for (int k = 0; k < kT - 1; ++k) {
        if (k + 1 < H) {
          window[k] = window[k + 1];
          window_seq[k] = window_seq[k + 1];
        } else if (k + 1 == H) {
          window[k] = xt;
          window_seq[k] = s;
        }
      }
    }
    write_tokens<T>(p.out, b, c, t, n, vec.out, ys);
  }
  // The final states: the last width-1 columns, written by the row's last thread.
  if (p.final_states.present() && t1 == p.seqlen) {
    for (int i = 0; i < H; ++i)
      write<T>(p.final_states, b, c, i, column<T>(p, b, c, p.seqlen - H + i, H));
  }
}

// dweight and dbias shares of a channel-first block (one channel): the
// threads' values summed in a fixed order (warp butterflies, then the warps in
// order), the same bits on every run.
template <int kT>
__device__ __forceinline__ void block_sum_shares(const float (&dw)[kT], float db, int width,
                                                 float* slot, int64_t dim, int64_t c) {
  __shared__ float partial[kThreads / 32][kMaxWidth + 1];
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
    for (int q = 0; q < kThreads / 32; ++q) sum += partial[q][from];
    slot[k * dim + c] = sum;
  }
}

template <typename T, int kW, bool kByTokens>
__global__ void __launch_bounds__(kThreads)
    batch_bwd_kernel(const BatchParams p, BatchVec vec, float* __restrict__ shares) {
  await_producers();
  const Work work = work_of<kByTokens>(p, kBwdChunk);
  if (!kByTokens && !work.active) return;  // channel-first: every thread sums its block's shares
  const int64_t b = work.b, c = work.c, t0 = work.t0, t1 = work.t1;
  constexpr int kT = kTaps<kW>;
  const int H = (kW > 0 ? kW : p.width) - 1;
  const int64_t L = p.seqlen;
  const bool by_sequence = p.seq_idx != nullptr;
  float dw[kT], db = 0.f;
#pragma unroll
  for (int k = 0; k < kT; ++k) dw[k] = 0.f;

  if (work.active) {
    float w[kT], bias;
    load_filter<kW>(p, c, w, bias);
    // Columns u-H..u (values and sequences) and the gradients g of tokens
    // u-H..u, at positions 0..H; g of tokens before the run are never needed
    // for its columns, and before the row they are zero.
    float col[kT], g[kT];
    int32_t col_seq[kT];
#pragma unroll
    for (int k = 0; k < kT; ++k) {
      col[k] = k < H ? column<T>(p, b, c, t0 - H + k, H) : 0.f;
      col_seq[k] = k < H && by_sequence ? column_sequence(p, b, t0 - H + k) : 0;
      g[k] = 0.f;
    }
    const int64_t u_end = t1 + H;  // tokens t1 .. t1+H-1 only complete the run's columns
    for (int64_t u0 = t0; u0 < u_end; u0 += kBwdLoads) {
      const int64_t in_row = (L < u_end ? L : u_end) - u0;
      const int n = in_row <= 0 ? 0 : (in_row < kBwdLoads ? static_cast<int>(in_row) : kBwdLoads);
      float xs[kBwdLoads], ds[kBwdLoads];
      int32_t ss[kBwdLoads];
      read_tokens<T>(p.x, b, c, u0, n, vec.x, xs);
      read_tokens<T>(p.dout, b, c, u0, n, vec.dout, ds);
      read_sequences(p, b, u0, n, ss);
#pragma unroll
      for (int i = 0; i < kBwdLoads; ++i) {
        const int64_t u = u0 + i;
        if (u >= u_end) break;
        // Token u's column enters at position H.
        const bool token = i < n;
        const int32_t s = token ? ss[i] : -1;
#pragma unroll
        for (int k = 0; k < kT; ++k)
          if (k == H) {
            col[k] = token ? xs[i] : 0.f;
            col_seq[k] = token && by_sequence ? s : 0;
          }
        float gu = 0.f;
        if (token && s >= 0) {
          float pre = bias;
#pragma unroll
          for (int k = 0; k < kT; ++k)
            if (k <= H && (!by_sequence || col_seq[k] == s)) pre = fmaf(w[k], col[k], pre);
          if (p.silu) {
            const float sig = 1.f / (1.f + __expf(-pre));
            gu = ds[i] * sig * (1.f + pre * (1.f - sig));
          } else {
            gu = ds[i];
          }
        }
        // g of tokens u-H..u at positions 0..H.
#pragma unroll
        for (int k = 0; k + 1 < kT; ++k)
          if (k < H) g[k] = g[k + 1];
#pragma unroll
        for (int k = 0; k < kT; ++k)
          if (k == H) g[k] = gu;
        if (token && u < t1) {
#pragma unroll
          for (int k = 0; k < kT; ++k)
            if (k <= H && (!by_sequence || col_seq[k] == s)) dw[k] = fmaf(gu, col[k], dw[k]);
          db += gu;
        }
        // Column j = u - H is complete: tokens j..u read it, through taps H..0.
        const int64_t j = u - H;
        if ((j >= t0 && j < t1) || (t0 == 0 && j < 0)) {
          float dc = 0.f;
#pragma unroll
          for (int k = 0; k < kT; ++k) {
            // Token u - k, at position H - k, reads column j = u - H through tap k.
            if (k <= H) {
              const int pos = H - k;
              float gk = 0.f, same = 1.f;
#pragma unroll
              for (int q = 0; q < kT; ++q)
                if (q == pos) {
                  gk = g[q];
                  same = !by_sequence || col_seq[q] == col_seq[0] ? 1.f : 0.f;
                }
              dc = fmaf(w[k] * same, gk, dc);
            }
          }
          if (p.dfinal_states.present() && j >= L - H)
            dc += read<T>(p.dfinal_states, b, c, j - (L - H));
          if (j >= 0) {
            write<T>(p.dx, b, c, j, dc);
          } else if (p.dinitial_states.present()) {
            write<T>(p.dinitial_states, b, c, j + H, dc);
          }
        }
        // Slide the columns: position k takes k + 1.
#pragma unroll
        for (int k = 0; k + 1 < kT; ++k)
          if (k < H) {
            col[k] = col[k + 1];
            col_seq[k] = col_seq[k + 1];
          }
      }
    }
  }
  // This block's shares: slot (b, blockIdx.y), width rows of dweight, then dbias.
  float* slot = shares + (b * gridDim.y + blockIdx.y) * (p.width + 1) * p.dim;
  if constexpr (kByTokens) {
    block_sum_shares<kT>(dw, db, p.width, slot, p.dim, c);
  } else {
    for (int k = 0; k < p.width; ++k) {
      float v = 0.f;
#pragma unroll
      for (int q = 0; q < kT; ++q)
        if (q == k) v = dw[q];
      slot[k * p.dim + c] = v;
    }
    slot[p.width * p.dim + c] = db;
  }
}

// dweight (dim, width) and dbias (dim,): the shares of every slot, summed in
// slot order.
template <typename W>
__global__ void __launch_bounds__(kThreads)
    sum_shares_kernel(const float* __restrict__ shares, int64_t slots, int64_t dim, int width,
                      W* __restrict__ dweight, int64_t dw_dim, int64_t dw_tap, void* dbias,
                      c10::ScalarType bias_type) {
  await_producers();
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  const int k = blockIdx.y;  // 0..width-1: a tap; width: the bias
  if (c >= dim) return;
  float sum = 0.f;
  for (int64_t s = 0; s < slots; ++s) sum += shares[(s * (width + 1) + k) * dim + c];
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
  static const bool channels_only = env_choice("CAUSAL_CONV1D_CUDA_BATCH_BY_CHANNELS", {1}) == 1;
  return !channels_only && p.x.tok == 1 && p.x.dim != 1;
}

// Calls f.template operator()<T, kW, kByTokens>() for x's storage type, the
// width (4 compiled as such, others at run time) and the thread mapping.
template <typename F>
void dispatch_batch(const BatchParams& p, F&& f) {
  with_storage_type(p.x_type, [&](auto tag) {
    using T = decltype(tag);
    const bool tokens = by_tokens(p);
    if (p.width == 4) {
      tokens ? f.template operator()<T, 4, true>() : f.template operator()<T, 4, false>();
    } else {
      tokens ? f.template operator()<T, 0, true>() : f.template operator()<T, 0, false>();
    }
  });
}

// One block per (channels or channel, token range, row): `chunk` tokens per
// thread along channels; kThreads runs of kRun tokens along tokens.
dim3 batch_grid(const BatchParams& p, int64_t chunk) {
  const bool tokens = by_tokens(p);
  const int64_t span = tokens ? kThreads * kRun : chunk;
  const int64_t ranges = std::max<int64_t>(1, (p.seqlen + span - 1) / span);
  const int64_t blocks = tokens ? p.dim : (p.dim + kThreads - 1) / kThreads;
  TORCH_CHECK(ranges <= 65535 && p.batch <= 65535 && blocks <= INT32_MAX,
              "causal_conv1d_batch: too many tokens or rows for one grid");
  return dim3(static_cast<unsigned>(blocks), static_cast<unsigned>(ranges),
              static_cast<unsigned>(p.batch));
}

// A view whose tokens can be moved kLoads at a time in 16-byte accesses: tokens
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
  return vec;
}

at::Tensor empty_like_strided(const at::Tensor& x) {
  if (x.is_non_overlapping_and_dense())
    return at::empty_strided(x.sizes(), x.strides(), x.options());
  return at::empty(x.sizes(), x.options());
}

std::tuple<at::Tensor, at::Tensor> causal_conv1d_batch_fwd_cuda(
    const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& seq_idx, const std::optional<at::Tensor>& initial_states,
    bool return_final_states, bool silu) {
  TORCH_CHECK(x.is_cuda(), "causal_conv1d_batch_fwd: x must be a CUDA tensor, got ", x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t width = weight.dim() == 2 ? weight.size(1) : 0;
  at::Tensor out = empty_like_strided(x);
  at::Tensor final_states = empty_batch_states(x, width, return_final_states);
  const BatchParams p = make_batch_fwd_params(x, weight, bias, seq_idx, initial_states, silu, out,
                                              return_final_states ? final_states : at::Tensor());
  if (p.batch == 0 || p.dim == 0) return {out, final_states};
  const LaunchTarget target{c10::cuda::getCurrentCUDAStream(), x.get_device()};
  dispatch_batch(p, [&]<typename T, int kW, bool kByTokens>() {
    launch_kernel(batch_fwd_kernel<T, kW, kByTokens>, batch_grid(p, kFwdChunk), dim3(kThreads),
                  target, p, batch_vec(p, sizeof(T)));
  });
  return {out, final_states};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> causal_conv1d_batch_bwd_cuda(
    const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
    const std::optional<at::Tensor>& seq_idx, const std::optional<at::Tensor>& initial_states,
    const at::Tensor& dout, const std::optional<at::Tensor>& dfinal_states, bool silu,
    bool return_dinitial_states, bool /*deterministic: always*/) {
  TORCH_CHECK(x.is_cuda(), "causal_conv1d_batch_bwd: x must be a CUDA tensor, got ", x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor dx = empty_like_strided(x);
  const bool want_dinit = return_dinitial_states && initial_states.has_value();
  at::Tensor dinit = want_dinit ? at::empty_like(*initial_states) : at::empty({0}, x.options());
  const BatchParams p =
      make_batch_bwd_params(x, weight, bias, seq_idx, initial_states, dout, dfinal_states, silu, dx,
                            want_dinit ? dinit : at::Tensor());
  at::Tensor dweight = at::empty({p.dim, p.width}, weight.options());
  at::Tensor dbias =
      bias.has_value() ? at::empty({p.dim}, bias->options()) : at::empty({0}, weight.options());
  if (p.dim == 0) return {dx, dweight, dbias, dinit};
  if (p.batch == 0) {
    dweight.zero_();
    dbias.zero_();
    return {dx, dweight, dbias, dinit};
  }
  const LaunchTarget target{c10::cuda::getCurrentCUDAStream(), x.get_device()};
  const dim3 grid = batch_grid(p, kBwdChunk);
  const int64_t chunks = grid.y, slots = p.batch * chunks;
  at::Tensor shares = at::empty({slots, p.width + 1, p.dim}, x.options().dtype(at::kFloat));
  dispatch_batch(p, [&]<typename T, int kW, bool kByTokens>() {
    launch_kernel(batch_bwd_kernel<T, kW, kByTokens>, grid, dim3(kThreads), target, p,
                  batch_vec(p, sizeof(T)), shares.data_ptr<float>());
  });
  const dim3 sum_grid((p.dim + kThreads - 1) / kThreads, p.width + 1);
  with_storage_type(p.weight_type, [&](auto tag) {
    using W = decltype(tag);
    launch_kernel(sum_shares_kernel<W>, sum_grid, dim3(kThreads), target,
                  static_cast<const float*>(shares.data_ptr<float>()), slots, p.dim,
                  static_cast<int>(p.width), static_cast<W*>(dweight.data_ptr()), dweight.stride(0),
                  dweight.stride(1), bias.has_value() ? dbias.data_ptr() : nullptr,
                  dbias.scalar_type());
  });
  return {dx, dweight, dbias, dinit};
}

}  // namespace
}  // namespace causal_conv1d::cuda

TORCH_LIBRARY_IMPL(causal_conv1d, CUDA, m) {
  m.impl("causal_conv1d_batch_fwd", &causal_conv1d::cuda::causal_conv1d_batch_fwd_cuda);
  m.impl("causal_conv1d_batch_bwd", &causal_conv1d::cuda::causal_conv1d_batch_bwd_cuda);
}
