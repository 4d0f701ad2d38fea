// The Dao dialect's batch prefill on CUDA (causal_conv1d_batch_fwd, CONTRACT
// 1.5): the launch of the forward along tokens or along channels (batch/).
#include "batch/channels_fwd.cuh"
#include "batch/tokens_fwd.cuh"

namespace causal_conv1d::cuda {
namespace {

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

}  // namespace
}  // namespace causal_conv1d::cuda

namespace causal_conv1d {

void CudaBackend::batch_fwd(const BatchParams& p) {
  const cuda::LaunchTarget target = cuda::current_target();
  cuda::dispatch_batch(p, [&]<typename T, int kW>() { cuda::launch_fwd<T, kW>(p, target); });
}

}  // namespace causal_conv1d
