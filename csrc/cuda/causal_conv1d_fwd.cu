// CUDA prefill (causal_conv1d_fwd, causal_conv1d_fwd_out).
//
// Tiling: a program (block) owns kTokens tokens of one sequence times
// kThreads * n channels, each thread n consecutive channels (n = 16 bytes of x
// on the vector path, 1 on the strided path). The grid is sized by an upper
// bound, cdiv(num_tokens, kTokens) + batch programs along x: sequence i's
// chunks are programs floor(query_start_loc[i] / kTokens) + i onwards, which
// never overlap the next sequence's, and each program finds its sequence by
// binary search over query_start_loc. So the launch needs nothing from the
// host that depends on the data: no sync, graph-capturable.
//
// A thread keeps the width-1 columns before its next token in registers: the
// first chunk takes them from the conv state (or zeros), later chunks from x
// (the halo). The first chunk also writes the new state, after it has read
// the old one; no other program of the sequence touches the state.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../ops.h"
#include "common.cuh"

namespace causal_conv1d::cuda {
namespace {

constexpr int64_t kTokens = 64;  // tokens per program

__device__ __forceinline__ int64_t first_program(const FwdParams& p, int64_t seq) {
  int64_t start = p.query_start_loc[seq];
  start = start < 0 ? 0 : (start > p.num_tokens ? p.num_tokens : start);
  return start / kTokens + seq;
}

template <typename scalar_t, typename state_t, int kW, int n>
__global__ void __launch_bounds__(kThreads) fwd_kernel(const FwdParams p) {
  const int64_t program = blockIdx.x;
  int64_t lo = 0, hi = p.batch;  // the last sequence whose first program is <= this one
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (first_program(p, mid) <= program) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  const int64_t seq = lo;
  int64_t begin, end;
  p.token_range(seq, begin, end);
  const int64_t t0 = (program - first_program(p, seq)) * kTokens;
  if (t0 < 0 || t0 >= end - begin) return;  // a spare program of the upper bound
  const int64_t t1 = end - begin < t0 + kTokens ? end - begin : t0 + kTokens;
  const int64_t c = (static_cast<int64_t>(blockIdx.y) * kThreads + threadIdx.x) * n;
  if (c >= p.dim) return;

  const scalar_t* x =
      static_cast<const scalar_t*>(p.x) + begin * p.x_tok_stride + c * p.x_dim_stride;
  scalar_t* out = static_cast<scalar_t*>(p.out) + begin * p.out_tok_stride + c * p.out_dim_stride;
  const int64_t line = p.cache_indices.present() ? p.cache_indices[seq] : seq;
  if (p.is_padding(line)) {
    zero_tokens<scalar_t, n>(out, p.out_tok_stride, t0, t1);
    return;
  }

  const int H = (kW > 0 ? kW : p.width) - 1;
  const int64_t S = p.state_len, s_dim = p.state_dim_stride, s_tok = p.state_tok_stride;
  state_t* state = p.states == nullptr
                       ? nullptr
                       : static_cast<state_t*>(p.states) + line * p.state_line_stride + c * s_dim;
  const bool init = state != nullptr && p.has_initial_state != nullptr &&
                    p.has_initial_state[seq * p.has_initial_state_stride];

  const Filter<kW, n> filter(p, c);
  Window<kW, n> window;
#pragma unroll
  for (int k = 0; k < kTaps<kW> - 1; ++k) {
    if (k >= H) continue;
    if (t0 > 0) {
      float col[n];
      load_row<scalar_t, n>(x + (t0 - H + k) * p.x_tok_stride, col);
#pragma unroll
      for (int i = 0; i < n; ++i) window.v[k][i] = col[i];
    } else {
#pragma unroll
      for (int i = 0; i < n; ++i)
        window.v[k][i] = init ? to_float(state[i * s_dim + (S - H + k) * s_tok]) : 0.f;
    }
  }

  if (t0 == 0 && state != nullptr) {
    // New state: the last S columns of cat(old or zeros, tokens). Ascending j
    // reads old column j + len before this thread overwrites it.
    const int64_t len = end - begin;
    for (int64_t j = 0; j < S; ++j) {
      const int64_t src = len - S + j;
#pragma unroll
      for (int i = 0; i < n; ++i) {
        state_t v;
        if (src >= 0) {
          v = convert<state_t>(x[src * p.x_tok_stride + i * p.x_dim_stride]);
        } else if (init) {
          v = state[i * s_dim + (j + len) * s_tok];
        } else {
          v = from_float<state_t>(0.f);
        }
        state[i * s_dim + j * s_tok] = v;
      }
    }
  }

  conv_tokens<scalar_t, kW, n>(p, filter, window, x, p.x_tok_stride, out, p.out_tok_stride, t0, t1);
}

template <typename scalar_t, typename state_t, int kW>
void launch(const FwdParams& p, cudaStream_t stream) {
  constexpr int n = kVec<scalar_t>;
  const bool vector = p.x_dim_stride == 1 && p.out_dim_stride == 1 && p.dim % n == 0 &&
                      p.x_tok_stride % n == 0 && p.out_tok_stride % n == 0 && aligned16(p.x) &&
                      aligned16(p.out);
  const int per_block = kThreads * (vector ? n : 1);
  const dim3 grid((p.num_tokens + kTokens - 1) / kTokens + p.batch,
                  (p.dim + per_block - 1) / per_block);
  if (vector) {
    fwd_kernel<scalar_t, state_t, kW, n><<<grid, kThreads, 0, stream>>>(p);
  } else {
    fwd_kernel<scalar_t, state_t, kW, 1><<<grid, kThreads, 0, stream>>>(p);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void causal_conv1d_fwd_out_cuda(const at::Tensor& x, const at::Tensor& weight,
                                const std::optional<at::Tensor>& bias,
                                const std::optional<at::Tensor>& conv_states,
                                const at::Tensor& query_start_loc,
                                const std::optional<at::Tensor>& cache_indices,
                                const std::optional<at::Tensor>& has_initial_state, bool silu,
                                int64_t pad_slot_id, const at::Tensor& out) {
  TORCH_CHECK(x.is_cuda(), "causal_conv1d_fwd: x must be a CUDA tensor, got ", x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  const FwdParams p = make_fwd_params(x, weight, bias, conv_states, query_start_loc, cache_indices,
                                      has_initial_state, silu, pad_slot_id, out);
  if (p.batch == 0 || p.dim == 0 || p.num_tokens == 0) return;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const c10::ScalarType state_type = p.states == nullptr ? p.x_type : p.state_type;
  dispatch(p.x_type, state_type, p.width, [&]<typename scalar_t, typename state_t, int kW>() {
    launch<scalar_t, state_t, kW>(p, stream);
  });
}

at::Tensor causal_conv1d_fwd_cuda(const at::Tensor& x, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias,
                                  const std::optional<at::Tensor>& conv_states,
                                  const at::Tensor& query_start_loc,
                                  const std::optional<at::Tensor>& cache_indices,
                                  const std::optional<at::Tensor>& has_initial_state, bool silu,
                                  int64_t pad_slot_id) {
  at::Tensor out = empty_fwd_output(x);
  causal_conv1d_fwd_out_cuda(x, weight, bias, conv_states, query_start_loc, cache_indices,
                             has_initial_state, silu, pad_slot_id, out);
  return out;
}

}  // namespace
}  // namespace causal_conv1d::cuda

TORCH_LIBRARY_IMPL(causal_conv1d, CUDA, m) {
  m.impl("causal_conv1d_fwd", &causal_conv1d::cuda::causal_conv1d_fwd_cuda);
  m.impl("causal_conv1d_fwd_out", &causal_conv1d::cuda::causal_conv1d_fwd_out_cuda);
}
