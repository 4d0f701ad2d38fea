// The backward of the Dao dialect's batch prefill on CUDA
// (causal_conv1d_batch_bwd, CONTRACT 1.5): the launch of the backward along
// tokens or along channels (batch/), whose dweight and dbias shares a second
// kernel sums in slot order.
#include "batch/channels_bwd.cuh"
#include "batch/tokens_bwd.cuh"

namespace causal_conv1d::cuda {
namespace {

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

// Launches the backward kernel; returns the number of share slots it wrote.
template <typename T, int kW>
int64_t launch_bwd(const BatchParams& p, const LaunchTarget& target, api::Tensor& shares) {
  const auto alloc = [&](const dim3& grid) {
    const int64_t slots = p.batch * static_cast<int64_t>(grid.y);
    shares = api::cuda_floats(slots * (p.width + 1) * p.dim, target.device);
    return slots;
  };
  const bool seq = p.seq_idx != nullptr;
  if (by_tokens(p)) {
    const int tiles = static_cast<int>(tiles_per_block(p, target.device));
    const dim3 grid = tokens_grid(p, tiles);
    const int64_t slots = alloc(grid);
    with_sequences<kW>(seq, [&]<bool kSeq>() {
      launch_kernel(batch_bwd_tokens<T, kW, kSeq>, grid, dim3(kThreads), target, p,
                    batch_vec(p, sizeof(T)), tiles, static_cast<float*>(shares.data_ptr()));
    });
    return slots;
  }
  // 8-byte accesses: x, dout, the columns and the gradients of n channels
  // stay in registers. 16-bit bf16 W 4 holds them in 128 registers only by
  // spilling 48 bytes: CAUSAL_CONV1D_CUDA_BWD_BYTES=4 takes half the channels
  // per thread (106 registers, no spills), to be measured against it.
  static const bool narrow = setting_int(Setting::kCudaBwdBytes) == 4;
  constexpr int n = (kW > 0 ? 8 : 4) / sizeof(T);
  constexpr int n_narrow = sizeof(T) == 2 && kW > 0 ? 2 : n;
  const auto vectorizable = [&](int m) {
    return channels_vectorizable(p.x, p.dim, m, sizeof(T)) &&
           channels_vectorizable(p.dout, p.dim, m, sizeof(T)) &&
           channels_vectorizable(p.dx, p.dim, m, sizeof(T));
  };
  const bool vector = vectorizable(n);
  int64_t slots = 0;
  const auto go = [&]<int kN, bool kSeq>() {
    const int64_t chunk = channel_chunk(p, kN, 256, 16, target.device);
    const dim3 grid = channels_grid(p, kN, chunk);
    slots = alloc(grid);
    launch_kernel(batch_bwd_channels<T, kW, kN, kSeq>, grid, dim3(kThreads), target, p, chunk,
                  filter_vec(p, kW), static_cast<float*>(shares.data_ptr()));
  };
  if (narrow && n_narrow != n && vectorizable(n_narrow)) {
    with_sequences<kW>(seq, [&]<bool kSeq>() { go.template operator()<n_narrow, kSeq>(); });
  } else if (!vector) {
    go.template operator()<1, true>();
  } else {
    with_sequences<kW>(seq, [&]<bool kSeq>() { go.template operator()<n, kSeq>(); });
  }
  return slots;
}

}  // namespace
}  // namespace causal_conv1d::cuda

namespace causal_conv1d {

void CudaBackend::batch_bwd(const BatchParams& p, bool /*deterministic: always*/) {
  const cuda::LaunchTarget target = cuda::current_target();
  api::Tensor shares;
  int64_t slots = 0;
  cuda::dispatch_batch(
      p, [&]<typename T, int kW>() { slots = cuda::launch_bwd<T, kW>(p, target, shares); });
  const dim3 sum_grid((p.dim + cuda::kThreads - 1) / cuda::kThreads, p.width + 1);
  with_storage_type<cuda::CudaStorage>(p.weight_type, [&](auto tag) {
    using W = decltype(tag);
    cuda::launch_kernel(cuda::sum_shares_kernel<W>, sum_grid, dim3(cuda::kThreads), target,
                        static_cast<const float*>(shares.data_ptr()), slots, p.dim,
                        static_cast<int>(p.width), static_cast<W*>(p.dweight), p.dweight_dim_stride,
                        p.dweight_tap_stride, p.dbias, p.bias_type);
  });
}

}  // namespace causal_conv1d
