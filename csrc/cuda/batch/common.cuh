// What the CUDA kernels of the Dao dialect's training ops share
// (causal_conv1d_batch_fwd and causal_conv1d_batch_bwd, CONTRACT 1.5): column
// reads, register caps, the choice of tiling and the compile-time dispatch.
// channels*.cuh and tokens*.cuh hold the kernels of each tiling;
// causal_conv1d_batch_fwd.cu and causal_conv1d_batch_bwd.cu launch them.
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
#pragma once

#include "../../dispatch.h"
#include "../../ops.h"
#include "../../settings.h"
#include "../common.cuh"

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

// Register caps (blocks per SM) at the fixed width: enough threads per SM to
// keep the memory system busy; the run-time width holds all kMaxWidth taps.
template <int kW>
constexpr int kChannelBlocks = kW > 0 ? 4 : 1;
template <int kW>
constexpr int kTokenBlocks = kW > 0 ? 7 : 1;
// Along tokens, 16-bit x without sequence ids: the forward's whole-tile loop
// fits 32 registers without spilling (16 blocks per SM, every warp slot: its
// general loop, for a row's last tile, spills a little), the backward 56 with
// no spill (9 blocks, was 7 at 72 registers).
template <typename T, int kW, bool kSeq>
constexpr bool kLeanTokens = kW > 0 && !kSeq && sizeof(T) == 2;
template <typename T, int kW, bool kSeq>
constexpr int kTokenFwdBlocks = kLeanTokens<T, kW, kSeq> ? 16 : kTokenBlocks<kW>;
template <typename T, int kW, bool kSeq>
constexpr int kTokenBwdBlocks = kLeanTokens<T, kW, kSeq> ? 9 : kTokenBlocks<kW>;

// Threads along tokens when x's tokens are contiguous and its channels are not
// (channel-first); along channels otherwise, or always with
// CAUSAL_CONV1D_CUDA_BATCH_BY_CHANNELS=1 (to compare the two).
inline bool by_tokens(const BatchParams& p) {
  static const bool channels_only = setting_on(Setting::kCudaBatchByChannels);
  return !channels_only && p.x.tok == 1 && p.x.dim != 1;
}

// Calls f.template operator()<T, kW>() for x's storage type and the width
// (CudaBatchWidths compiled as such, others at run time: kW = 0).
template <typename F>
void dispatch_batch(const BatchParams& p, F&& f) {
  with_storage_type<CudaStorage>(p.x_type, [&](auto tag) {
    with_width_or_run_time<CudaBatchWidths>(
        p.width, [&]<int kW>() { f.template operator()<decltype(tag), kW>(); });
  });
}

// Calls f.template operator()<kSeq>(): kSeq false (no sequence ids: every
// sequence test compiled away) only at a compiled width; true otherwise, which
// also serves rows without seq_idx (their ids read as 0).
template <int kW, typename F>
void with_sequences(bool seq, F&& f) {
  if constexpr (kW > 0) {
    with_flag(seq, f);
  } else {
    f.template operator()<true>();
  }
}

// grid.y of a launch: blocks along one row's tokens.
inline unsigned token_blocks(const BatchParams& p, int64_t span) {
  const int64_t blocks = std::max<int64_t>(1, (p.seqlen + span - 1) / span);
  CC1D_CHECK(blocks <= 65535 && p.batch <= 65535,
             "causal_conv1d_batch: too many tokens or rows for one grid");
  return static_cast<unsigned>(blocks);
}

inline VecFlags filter_vec(const BatchParams& p, int kW) {
  return vec_flags(p, kW, storage_bytes(p.weight_type), storage_bytes(p.bias_type), 1);
}

}  // namespace
}  // namespace causal_conv1d::cuda
