// CUDA kernels of the Dao dialect's training ops (causal_conv1d_batch_fwd and
// causal_conv1d_batch_bwd, CONTRACT 1.5).
//
// Tiling: a thread owns one channel of one chunk of a row's tokens; a block
// holds kThreads consecutive channels of the same (row, chunk), so channel-last
// x is read in whole lines and channel-first x along each thread's own tokens.
// A thread walks its tokens upwards with the width-1 columns before the current
// token in registers: column j of cat(initial states or zeros, x), where
// negative j are the initial states' columns j + width - 1, which belong to the
// sequence of the row's first token.
//
// Backward: the thread walks tokens t0 .. t1 + width - 2 once. At token u it
// recomputes the pre-activation (from the columns u-H..u), forms the gradient g
// of the conv's output, adds g times the columns to its dweight and dbias
// shares, and, holding g of tokens u-H..u, finishes the gradient of column
// u - H, the last column those tokens read. Shares go to a buffer of one slot
// per (row, chunk), summed in slot order by a second kernel: the same bits on
// every run, whatever the schedule (the deterministic mode costs nothing).
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
__device__ __forceinline__ int64_t column_sequence(const BatchParams& p, int64_t b, int64_t j) {
  if (p.seqlen == 0) return 0;
  return p.sequence(b, j < 0 ? 0 : j);
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

template <typename T, int kW>
__global__ void __launch_bounds__(kThreads) batch_fwd_kernel(const BatchParams p) {
  await_producers();
  const int64_t b = blockIdx.z;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (c >= p.dim) return;
  constexpr int kT = kTaps<kW>;
  const int H = (kW > 0 ? kW : p.width) - 1;
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * kFwdChunk;
  const int64_t t1 = t0 + kFwdChunk < p.seqlen ? t0 + kFwdChunk : p.seqlen;
  const bool by_sequence = p.seq_idx != nullptr;
  float w[kT], bias;
  load_filter<kW>(p, c, w, bias);

  float window[kT - 1];
  int64_t window_seq[kT - 1];
#pragma unroll
  for (int k = 0; k < kT - 1; ++k) {
    window[k] = k < H ? column<T>(p, b, c, t0 - H + k, H) : 0.f;
    window_seq[k] = k < H && by_sequence ? column_sequence(p, b, t0 - H + k) : 0;
  }
  for (int64_t t = t0; t < t1; ++t) {
    const float xt = read<T>(p.x, b, c, t);
    const int64_t s = p.sequence(b, t);
    float acc = bias;
#pragma unroll
    for (int k = 0; k < kT; ++k) {
      if (k < H && (!by_sequence || window_seq[k] == s)) acc = fmaf(w[k], window[k], acc);
      if (k == H) acc = fmaf(w[k], xt, acc);
    }
    float y = p.silu ? silu(acc) : acc;
    if (s < 0) y = 0.f;
    write<T>(p.out, b, c, t, y);
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
  // The final states: the last width-1 columns, written by the row's last chunk.
  if (p.final_states.present() && t1 == p.seqlen) {
    for (int i = 0; i < H; ++i)
      write<T>(p.final_states, b, c, i, column<T>(p, b, c, p.seqlen - H + i, H));
  }
}

template <typename T, int kW>
__global__ void __launch_bounds__(kThreads)
    batch_bwd_kernel(const BatchParams p, int64_t chunks, float* __restrict__ shares) {
  await_producers();
  const int64_t b = blockIdx.z;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (c >= p.dim) return;
  constexpr int kT = kTaps<kW>;
  const int H = (kW > 0 ? kW : p.width) - 1;
  const int64_t L = p.seqlen;
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * kBwdChunk;
  const int64_t t1 = t0 + kBwdChunk < L ? t0 + kBwdChunk : L;
  const bool by_sequence = p.seq_idx != nullptr;
  float w[kT], bias;
  load_filter<kW>(p, c, w, bias);

  // Columns u-H..u (values and sequences) and the gradients g of tokens
  // u-H..u, at positions 0..H; g of tokens before the chunk are never needed
  // for its columns, and before the row they are zero.
  float col[kT], g[kT];
  int64_t col_seq[kT];
#pragma unroll
  for (int k = 0; k < kT; ++k) {
    col[k] = k < H ? column<T>(p, b, c, t0 - H + k, H) : 0.f;
    col_seq[k] = k < H && by_sequence ? column_sequence(p, b, t0 - H + k) : 0;
    g[k] = 0.f;
  }
  float dw[kT], db = 0.f;
#pragma unroll
  for (int k = 0; k < kT; ++k) dw[k] = 0.f;

  for (int64_t u = t0; u < t1 + H; ++u) {
    // Token u's column enters at position H.
    const bool token = u < L;
    const int64_t s = token ? p.sequence(b, u) : -1;
#pragma unroll
    for (int k = 0; k < kT; ++k)
      if (k == H) {
        col[k] = token ? read<T>(p.x, b, c, u) : 0.f;
        col_seq[k] = token && by_sequence ? s : 0;
      }
    float gu = 0.f;
    if (token && s >= 0) {
      float pre = bias;
#pragma unroll
      for (int k = 0; k < kT; ++k)
        if (k <= H && (!by_sequence || col_seq[k] == s)) pre = fmaf(w[k], col[k], pre);
      const float d = read<T>(p.dout, b, c, u);
      if (p.silu) {
        const float sig = 1.f / (1.f + __expf(-pre));
        gu = d * sig * (1.f + pre * (1.f - sig));
      } else {
        gu = d;
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
  // This chunk's shares: slot (b, chunk), width rows of dweight, then dbias.
  float* slot = shares + (b * chunks + blockIdx.y) * (p.width + 1) * p.dim;
  for (int k = 0; k < p.width; ++k) {
    float v = 0.f;
#pragma unroll
    for (int q = 0; q < kT; ++q)
      if (q == k) v = dw[q];
    slot[k * p.dim + c] = v;
  }
  slot[p.width * p.dim + c] = db;
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

// Calls f.template operator()<T, kW>() for x's storage type and the width (4
// compiled as such, others at run time).
template <typename F>
void dispatch_batch(c10::ScalarType x_type, int64_t width, F&& f) {
  with_storage_type(x_type, [&](auto tag) {
    using T = decltype(tag);
    if (width == 4) {
      f.template operator()<T, 4>();
    } else {
      f.template operator()<T, 0>();
    }
  });
}

dim3 batch_grid(const BatchParams& p, int64_t chunk) {
  const int64_t chunks = std::max<int64_t>(1, (p.seqlen + chunk - 1) / chunk);
  TORCH_CHECK(chunks <= 65535 && p.batch <= 65535,
              "causal_conv1d_batch: too many tokens or rows for one grid");
  return dim3((p.dim + kThreads - 1) / kThreads, chunks, p.batch);
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
  dispatch_batch(p.x_type, p.width, [&]<typename T, int kW>() {
    launch_kernel(batch_fwd_kernel<T, kW>, batch_grid(p, kFwdChunk), dim3(kThreads), target, p);
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
  dispatch_batch(p.x_type, p.width, [&]<typename T, int kW>() {
    launch_kernel(batch_bwd_kernel<T, kW>, grid, dim3(kThreads), target, p, chunks,
                  shares.data_ptr<float>());
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
