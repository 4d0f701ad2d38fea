// Along channels: the tiling of channel-last x (or any x without contiguous
// tokens), its column helpers and launch geometry; the kernels are in
// channels_fwd.cuh and channels_bwd.cuh.
#pragma once

#include "common.cuh"

namespace causal_conv1d::cuda {
namespace {

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

// Tokens per thread along channels: the largest power of two from `most` down
// to `least` whose grid still holds a quarter of the threads the GPU can run
// at once, so that short batches spread over every SM (as the prefill does).
inline int64_t channel_chunk(const BatchParams& p, int n, int64_t most, int64_t least, int device) {
  const int64_t fill =
      static_cast<int64_t>(device_attribute<cudaDevAttrMultiProcessorCount>(device)) * 2048 / 4;
  const int64_t per_range = p.batch * ((p.dim + n * kThreads - 1) / (n * kThreads)) * kThreads;
  int64_t chunk = most;
  while (chunk > least && per_range * ((p.seqlen + chunk - 1) / chunk) < fill) chunk /= 2;
  while ((p.seqlen + chunk - 1) / chunk > 65535) chunk *= 2;
  return chunk;
}

inline dim3 channels_grid(const BatchParams& p, int n, int64_t chunk) {
  const int64_t blocks = (p.dim + n * kThreads - 1) / (n * kThreads);
  return dim3(static_cast<unsigned>(blocks), token_blocks(p, chunk),
              static_cast<unsigned>(p.batch));
}

// A view whose channels [c, c + n) (c a multiple of n) take one access of n
// elements at every token: channels contiguous, strides multiples of n, the
// data aligned to the access.
inline bool channels_vectorizable(const View3& v, int64_t dim, int n, size_t elem) {
  return v.present() && v.dim == 1 && dim % n == 0 && v.tok % n == 0 && v.batch % n == 0 &&
         reinterpret_cast<uintptr_t>(v.data) % (n * elem) == 0;
}

}  // namespace
}  // namespace causal_conv1d::cuda
