// Shared by the CUDA kernels: storage conversions, 16-byte channel vectors,
// the dtype dispatch of the host wrappers and the launch constants.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <type_traits>
#include <utility>

#include "../dispatch.h"
#include "../ops.h"
#include "../params.h"
#include "../torch_api.h"

#ifdef CAUSAL_CONV1D_STABLE_ABI
// torch's C shim (libtorch_cuda), stable across versions: the current stream of a device.
extern "C" int32_t aoti_torch_get_current_cuda_stream(int32_t device_index, void** ret_stream);
#else
#include <c10/cuda/CUDAStream.h>
#endif

// A CUDA runtime call that must succeed: else a RuntimeError with the CUDA error's text.
#define CAUSAL_CONV1D_CUDA_CHECK(expr)                                   \
  do {                                                                   \
    const cudaError_t causal_conv1d_error = (expr);                      \
    CC1D_CHECK(causal_conv1d_error == cudaSuccess,                       \
               "CUDA error: ", cudaGetErrorString(causal_conv1d_error)); \
  } while (0)

namespace causal_conv1d::cuda {

constexpr int kThreads = 128;  // threads per block; each owns n channels

// The widest access that moves `bytes` (a power of two, at most 16) at once.
template <int bytes>
using Word = std::conditional_t<
    bytes >= 16, uint4,
    std::conditional_t<bytes == 8, uint2, std::conditional_t<bytes == 4, uint32_t, uint16_t>>>;

template <typename T>
__device__ __forceinline__ float to_float(T v);
template <>
__device__ __forceinline__ float to_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float to_float<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

// fp32 to storage, rounding to nearest even (as c10 does).
template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Storage to storage through fp32; a plain copy when the types agree.
template <typename To, typename From>
__device__ __forceinline__ To convert(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else {
    return from_float<To>(to_float(v));
  }
}

// n elements p[0], p[s], ..., p[(n-1)s] as fp32. With vec (s == 1 and p
// aligned to the access) and a power-of-two number of bytes up to 16 or a
// multiple of 16, vector accesses; else one access per element.
// The word: 16 bytes where they divide the run, else 8 or 4 (a thread's n * 3
// state columns of bf16, 24 bytes, move as three 8-byte words).
template <typename T, int n>
constexpr int kWordBytes = n * sizeof(T) % 16 == 0  ? 16
                           : n * sizeof(T) % 8 == 0 ? 8
                           : n * sizeof(T) % 4 == 0 ? 4
                                                    : n * sizeof(T);

template <typename T, int n>
constexpr bool kVectorizable =
    n * sizeof(T) % 4 == 0 || (n * sizeof(T) & (n * sizeof(T) - 1)) == 0;

template <typename T, int n>
__device__ __forceinline__ void load_n(const T* p, int64_t s, bool vec, float (&out)[n]) {
  if constexpr (n > 1 && kVectorizable<T, n>) {
    if (vec) {
      using W = Word<kWordBytes<T, n>>;
      constexpr int kPerWord = sizeof(W) / sizeof(T);
#pragma unroll
      for (int w = 0; w < n / kPerWord; ++w) {
        const W raw = reinterpret_cast<const W*>(p)[w];
        const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int i = 0; i < kPerWord; ++i) out[w * kPerWord + i] = to_float(v[i]);
      }
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < n; ++i) out[i] = to_float(p[i * s]);
}

// The 32 bits of storage holding in[0 .. 4 / sizeof(T)), rounded as from_float
// rounds (16-bit types: both halves in one conversion).
template <typename T>
__device__ __forceinline__ uint32_t pack32(const float* in) {
  uint32_t u;
  if constexpr (std::is_same_v<T, float>) {
    u = __float_as_uint(in[0]);
  } else if constexpr (std::is_same_v<T, __half>) {
    const __half2 h = __floats2half2_rn(in[0], in[1]);
    memcpy(&u, &h, 4);
  } else {
    const __nv_bfloat162 h = __floats2bfloat162_rn(in[0], in[1]);
    memcpy(&u, &h, 4);
  }
  return u;
}

// Stores a word of 4, 8 or 16 bytes given as its 32-bit parts, as one plain
// global store: through a C++ assignment the compiler split the 16-byte stores
// of some kernels (the training backward) into 4-byte ones. kAssign: the C++
// assignment all the same, where the inline store costs registers and splits
// nothing: as the prefill's new-state stores, after its token loop, it took
// the 16-byte prefill kernel from 128 to 165 registers (3 blocks per SM
// instead of 4) and the 8-byte one from 80 to 93 (SASS, sm_90).
template <int kBytes, bool kAssign = false>
__device__ __forceinline__ void store_word(void* p, const uint32_t* u) {
  if constexpr (kAssign) {
    Word<kBytes> word;
    memcpy(&word, u, kBytes);
    *static_cast<Word<kBytes>*>(p) = word;
  } else if constexpr (kBytes == 16) {
    asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(u[0]), "r"(u[1]),
                 "r"(u[2]), "r"(u[3])
                 : "memory");
  } else if constexpr (kBytes == 8) {
    asm volatile("st.global.v2.b32 [%0], {%1, %2};" ::"l"(p), "r"(u[0]), "r"(u[1]) : "memory");
  } else {
    static_assert(kBytes == 4);
    asm volatile("st.global.b32 [%0], %1;" ::"l"(p), "r"(u[0]) : "memory");
  }
}

template <typename T, int n, bool kAssign = false>
__device__ __forceinline__ void store_n(T* p, int64_t s, bool vec, const float (&in)[n]) {
  if constexpr (n > 1 && kVectorizable<T, n>) {
    if (vec) {
      using W = Word<kWordBytes<T, n>>;
      static_assert(sizeof(W) >= 4);
      constexpr int kPerWord = sizeof(W) / sizeof(T), kPer32 = 4 / sizeof(T);
#pragma unroll
      for (int w = 0; w < n / kPerWord; ++w) {
        uint32_t parts[sizeof(W) / 4];
#pragma unroll
        for (int q = 0; q < static_cast<int>(sizeof(W) / 4); ++q)
          parts[q] = pack32<T>(in + w * kPerWord + q * kPer32);
        store_word<sizeof(W), kAssign>(reinterpret_cast<W*>(p) + w, parts);
      }
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < n; ++i) p[i * s] = from_float<T>(in[i]);
}

// load_n for a tensor whose dtype is only known at run time (the filter).
template <int n>
__device__ __forceinline__ void load_n(const void* base, c10::ScalarType type, int64_t index,
                                       int64_t s, bool vec, float (&out)[n]) {
  switch (type) {
    case c10::ScalarType::Half:
      return load_n<__half, n>(static_cast<const __half*>(base) + index, s, vec, out);
    case c10::ScalarType::BFloat16:
      return load_n<__nv_bfloat16, n>(static_cast<const __nv_bfloat16*>(base) + index, s, vec, out);
    default:
      return load_n<float, n>(static_cast<const float*>(base) + index, s, vec, out);
  }
}

__device__ __forceinline__ float silu(float v) { return v / (1.f + __expf(-v)); }

// Which operands take vector accesses, decided once per launch: a tensor
// qualifies when its channels are contiguous and 16-byte aligned (every
// thread's first element then is aligned to its access; x and out: by the
// kernel's choice of n).
struct VecFlags {
  bool weight = false;  // (dim, width) contiguous, width fixed at compile time
  bool bias = false;
  bool state = false;
  // Lines of exactly width-1 columns, each channel's columns side by side
  // (SGLang's and Dao's (lines, dim, width-1) contiguous pools), width fixed at
  // compile time: a thread's n channels are n * (width-1) consecutive elements.
  bool state_rows = false;
  // The same for the per-token windows of UpdateParams (dense (lines, steps,
  // dim, width-1)).
  bool window_rows = false;
  // A deduplicated chain cache (unit steps and columns) of 16-bit elements
  // whose rows start on 32-bit words: positions (j, j + 1), j even, as one word.
  bool window_pairs = false;
};

__host__ __device__ inline bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

inline bool aligned16(const void* p, int64_t stride, size_t elem) {
  return aligned16(p) && (stride * static_cast<int64_t>(elem)) % 16 == 0;
}

inline VecFlags vec_flags(const ConvParams& p, int fixed_width, size_t weight_elem,
                          size_t bias_elem, size_t state_elem) {
  VecFlags f;
  f.weight = fixed_width > 0 && p.weight_dim_stride == p.width && p.weight_tap_stride == 1 &&
             aligned16(p.weight);
  f.bias = p.bias != nullptr && p.bias_stride == 1 && aligned16(p.bias);
  f.state = p.states != nullptr && p.state_dim_stride == 1 &&
            aligned16(p.states, p.state_line_stride, state_elem) &&
            aligned16(p.states, p.state_tok_stride, state_elem);
  f.state_rows = fixed_width > 0 && p.states != nullptr && p.state_len == p.width - 1 &&
                 p.state_tok_stride == 1 && p.state_dim_stride == p.width - 1 &&
                 aligned16(p.states, p.state_line_stride, state_elem);
  return f;
}

// Taps held in registers: the width when it is fixed at compile time (kW > 0),
// else the largest width, with p.width read at run time.
template <int kW>
constexpr int kTaps = kW > 0 ? kW : kMaxWidth;

// The filter of this thread's channels [c, c + n) in registers, fp32.
template <int kW, int n>
struct Filter {
  float w[kTaps<kW>][n];
  float b[n];

  __device__ __forceinline__ void load(const ConvParams& p, int64_t c, const VecFlags& vec) {
    if constexpr (kW > 0) {
      if (vec.weight) {  // n * kW contiguous elements, channel-major
        float flat[n * kW];
        load_n<n * kW>(p.weight, p.weight_type, c * kW, 1, true, flat);
#pragma unroll
        for (int i = 0; i < n; ++i)
#pragma unroll
          for (int k = 0; k < kW; ++k) w[k][i] = flat[i * kW + k];
      }
    }
    if (kW == 0 || !vec.weight) {
#pragma unroll
      for (int k = 0; k < kTaps<kW>; ++k) {
        if (k < p.width) {
          load_n<n>(p.weight, p.weight_type, c * p.weight_dim_stride + k * p.weight_tap_stride,
                    p.weight_dim_stride, false, w[k]);
        } else {
#pragma unroll
          for (int i = 0; i < n; ++i) w[k][i] = 0.f;
        }
      }
    }
    if (p.bias != nullptr) {
      load_n<n>(p.bias, p.bias_type, c * p.bias_stride, p.bias_stride, vec.bias, b);
    } else {
#pragma unroll
      for (int i = 0; i < n; ++i) b[i] = 0.f;
    }
  }
};

// The width-1 columns before the next token, per channel, in registers.
template <int kW, int n>
struct Window {
  float v[kTaps<kW> - 1][n];
};

// out = act(bias + sum_k w[k] * window[k] + w[H] * x), then the window slides
// by one column. Only fixed indices, so everything stays in registers.
template <int kW, int n>
__device__ __forceinline__ void conv_step(const ConvParams& p, const Filter<kW, n>& f,
                                          Window<kW, n>& window, const float (&x)[n],
                                          float (&out)[n]) {
  constexpr int kT = kTaps<kW>;
  const int H = (kW > 0 ? kW : p.width) - 1;
#pragma unroll
  for (int i = 0; i < n; ++i) {
    float acc = f.b[i];
#pragma unroll
    for (int k = 0; k < kT - 1; ++k)
      if (k < H) acc = fmaf(f.w[k][i], window.v[k][i], acc);
#pragma unroll
    for (int k = 0; k < kT; ++k)
      if (k == H) acc = fmaf(f.w[k][i], x[i], acc);
    out[i] = p.silu ? silu(acc) : acc;
#pragma unroll
    for (int k = 0; k < kT - 1; ++k) {
      if (k + 1 < H) window.v[k][i] = window.v[k + 1][i];
      if (k + 1 == H) window.v[k][i] = x[i];
    }
  }
}

template <int n>
__device__ __forceinline__ void clear(float (&v)[n]) {
#pragma unroll
  for (int i = 0; i < n; ++i) v[i] = 0.f;
}

// Tokens (or state columns) whose loads are issued together before any of
// their results is used: memory latency is paid once per group.
constexpr int kGroup = 4;

// n elements of T as stored, held in registers until they are converted.
template <typename T, int n>
struct alignas(kVectorizable<T, n> ? kWordBytes<T, n> : alignof(T)) Packed {
  T v[n];
  __device__ __forceinline__ void unpack(float (&out)[n]) const {
#pragma unroll
    for (int i = 0; i < n; ++i) out[i] = to_float(v[i]);
  }
};

// A thread's n channels of one token of x or out: vector accesses when n > 1
// (the vector path guarantees contiguity and alignment), one element otherwise.
template <typename T, int n>
struct Rows {
  using value_type = std::remove_const_t<T>;
  T* base;  // token 0, channel c
  int64_t tok, dim;
  __device__ __forceinline__ Packed<value_type, n> load_packed(int64_t t) const {
    Packed<value_type, n> r;
    if constexpr (n > 1) {
      using W = Word<kWordBytes<value_type, n>>;
      static_assert(kVectorizable<value_type, n> && sizeof(r) % sizeof(W) == 0);
#pragma unroll
      for (int w = 0; w < static_cast<int>(sizeof(r) / sizeof(W)); ++w)
        reinterpret_cast<W*>(&r)[w] = reinterpret_cast<const W*>(base + t * tok)[w];
    } else {
      r.v[0] = base[t * tok];
    }
    return r;
  }
  __device__ __forceinline__ void load(int64_t t, float (&v)[n]) const { load_packed(t).unpack(v); }
  __device__ __forceinline__ void store(int64_t t, const float (&v)[n]) const {
    store_n<value_type, n>(base + t * tok, dim, n > 1, v);
  }
};

// Outputs of tokens [t0, t1) for this thread's channels (zeros when `zero`);
// the window holds the columns before t0. x may be out (decode): each group
// reads before it writes.
template <typename scalar_t, int kW, int n, int kTokens = kGroup>
__device__ __forceinline__ void conv_tokens(const ConvParams& p, const Filter<kW, n>& filter,
                                            Window<kW, n>& window, const Rows<const scalar_t, n>& x,
                                            const Rows<scalar_t, n>& out, int64_t t0, int64_t t1,
                                            bool zero = false) {
  int64_t t = t0;
  for (; t + kTokens <= t1; t += kTokens) {
    Packed<scalar_t, n> cols[kTokens];
#pragma unroll
    for (int g = 0; g < kTokens; ++g) cols[g] = x.load_packed(t + g);
#pragma unroll
    for (int g = 0; g < kTokens; ++g) {
      float col[n], y[n];
      cols[g].unpack(col);
      conv_step<kW, n>(p, filter, window, col, y);
      if (zero) clear(y);
      out.store(t + g, y);
    }
  }
  for (; t < t1; ++t) {
    float col[n], y[n];
    x.load(t, col);
    conv_step<kW, n>(p, filter, window, col, y);
    if (zero) clear(y);
    out.store(t, y);
  }
}

template <typename scalar_t, int n>
__device__ __forceinline__ void zero_tokens(const Rows<scalar_t, n>& out, int64_t t0, int64_t t1) {
  const float zeros[n] = {};
  for (int64_t t = t0; t < t1; ++t) out.store(t, zeros);
}

// A thread's n channels of one cache line.
template <typename state_t, int n>
struct StateLine {
  state_t* base;  // column 0, channel c
  int64_t tok, dim;
  bool vec;
  __device__ __forceinline__ void load(int64_t col, float (&v)[n]) const {
    load_n<state_t, n>(base + col * tok, dim, vec, v);
  }
  template <bool kAssign = false>
  __device__ __forceinline__ void store(int64_t col, const float (&v)[n]) const {
    store_n<state_t, n, kAssign>(base + col * tok, dim, vec, v);
  }
};

// A thread's n channels of a line whose columns sit side by side per channel
// (VecFlags::state_rows): all kH columns of the n channels in one run of
// wide accesses, v[k][i] column k of channel i.
template <typename state_t, int n, int kH>
__device__ __forceinline__ void load_rows(const state_t* base, float (&v)[kH][n]) {
  float flat[n * kH];
  load_n<state_t, n * kH>(base, 1, true, flat);
#pragma unroll
  for (int i = 0; i < n; ++i)
#pragma unroll
    for (int k = 0; k < kH; ++k) v[k][i] = flat[i * kH + k];
}
template <typename state_t, int n, int kH>
__device__ __forceinline__ void store_rows(state_t* base, const float (&v)[kH][n]) {
  float flat[n * kH];
#pragma unroll
  for (int i = 0; i < n; ++i)
#pragma unroll
    for (int k = 0; k < kH; ++k) flat[i * kH + k] = v[k][i];
  store_n<state_t, n * kH>(base, 1, true, flat);
}

// Linear state update: new column j = column j + shift of cat(old, x), for
// j < S, where x column t is source(t). Loads of each group of columns are
// issued before its stores; later groups read columns beyond those written.
// kAssign: the stores as C++ assignments (store_word).
template <typename state_t, int n, bool kAssign = false, typename Source>
__device__ __forceinline__ void shift_state(const StateLine<state_t, n>& state, int64_t S,
                                            int64_t shift, bool keep_old, Source&& source) {
  for (int64_t j0 = 0; j0 < S; j0 += kGroup) {
    float v[kGroup][n];
#pragma unroll
    for (int g = 0; g < kGroup; ++g) {
      const int64_t j = j0 + g, src = j + shift;
      if (j >= S) continue;
      if (src >= S) {
        source(src - S, v[g]);
      } else if (keep_old) {
        state.load(src, v[g]);
      } else {
#pragma unroll
        for (int i = 0; i < n; ++i) v[g][i] = 0.f;
      }
    }
#pragma unroll
    for (int g = 0; g < kGroup; ++g)
      if (j0 + g < S) state.template store<kAssign>(j0 + g, v[g]);
  }
}

// The storage types of Half, BFloat16 and Float tensors (with_storage_type).
using CudaStorage = StorageTypes<__half, __nv_bfloat16, float>;

// Calls f.template operator()<scalar_t, state_t, kW>() for the storage types
// of x and the states and the width (CudaWidths compiled as such, others at
// run time: kW = 0).
template <typename F>
void dispatch(c10::ScalarType x_type, c10::ScalarType state_type, int64_t width, F&& f) {
  with_storage_type<CudaStorage>(x_type, [&](auto x_tag) {
    with_storage_type<CudaStorage>(state_type, [&](auto s_tag) {
      with_width_or_run_time<CudaWidths>(
          width, [&]<int kW>() { f.template operator()<decltype(x_tag), decltype(s_tag), kW>(); });
    });
  });
}

// An attribute of a device, queried once per process (SM count, compute capability).
template <cudaDeviceAttr kAttr>
int device_attribute(int device) {
  static std::array<std::atomic<int>, 64> cached{};
  if (device < 0 || device >= static_cast<int>(cached.size())) {
    int value = 0;
    CAUSAL_CONV1D_CUDA_CHECK(cudaDeviceGetAttribute(&value, kAttr, device));
    return value;
  }
  int value = cached[device].load(std::memory_order_relaxed);
  if (value == 0) {
    CAUSAL_CONV1D_CUDA_CHECK(cudaDeviceGetAttribute(&value, kAttr, device));
    cached[device].store(value, std::memory_order_relaxed);
  }
  return value;
}

// Programmatic dependent launch (PDL, sm_90+). A kernel launched with it may
// start while the kernel before it on the stream is still running; every
// kernel here therefore waits for its producers (griddepcontrol.wait) before
// its first access to global memory, and then lets its own dependents launch
// (they wait for this grid's completion in turn). Without PDL both are no-ops.
__device__ __forceinline__ void await_producers() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Where a kernel runs: the caller's current stream and its device.
struct LaunchTarget {
  cudaStream_t stream;
  int device;
};

// The current device (ops.cpp made it x's) and torch's current stream on it.
inline LaunchTarget current_target() {
#ifdef CAUSAL_CONV1D_STABLE_ABI
  int device = 0;
  CAUSAL_CONV1D_CUDA_CHECK(cudaGetDevice(&device));
  void* stream = nullptr;
  CC1D_CHECK(aoti_torch_get_current_cuda_stream(device, &stream) == 0,
             "causal_conv1d: torch has no current CUDA stream for device ", device);
  return {static_cast<cudaStream_t>(stream), device};
#else
  const c10::cuda::CUDAStream stream = c10::cuda::getCurrentCUDAStream();
  return {stream.stream(), static_cast<int>(stream.device_index())};
#endif
}

// Launches kernel<<<grid, block, 0, stream>>>(args...), with PDL where the
// device (sm_90+), the CUDA runtime (12.3+, which captures such launches into
// graphs) and the process setting (set_pdl, CAUSAL_CONV1D_PDL) allow it.
// With `shared` bytes of dynamic shared memory per block.
template <typename... Params, typename... Args>
void launch_kernel_shared(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared,
                          const LaunchTarget& target, Args&&... args) {
#if defined(CUDART_VERSION) && CUDART_VERSION >= 12030
  if (pdl_enabled() && device_attribute<cudaDevAttrComputeCapabilityMajor>(target.device) >= 9) {
    cudaLaunchAttribute attribute{};
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = shared;
    config.stream = target.stream;
    config.attrs = &attribute;
    config.numAttrs = 1;
    CAUSAL_CONV1D_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
    return;
  }
#endif
  kernel<<<grid, block, shared, target.stream>>>(std::forward<Args>(args)...);
  CAUSAL_CONV1D_CUDA_CHECK(cudaGetLastError());
}

template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, const LaunchTarget& target,
                   Args&&... args) {
  launch_kernel_shared(kernel, grid, block, 0, target, std::forward<Args>(args)...);
}

}  // namespace causal_conv1d::cuda
