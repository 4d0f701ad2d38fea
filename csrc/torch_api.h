// The one seam between this library and torch's C++ API. setup.py builds it one
// of two ways:
// - On torch's stable ABI (CAUSAL_CONV1D_STABLE_ABI, torch >= 2.11):
//   torch::stable::Tensor, torch's C shim and header-only types. The build
//   loads into the torch it was compiled against and every later one
//   (TORCH_TARGET_VERSION names the oldest it may use).
// - On the classic ATen API (CAUSAL_CONV1D_CLASSIC_ABI, older torch): loads
//   only into the torch it was compiled against.
// ops.cpp and the backends are written once against the names below; kernels
// see only Params (params.h) and torch_types.h.
#pragma once

#define CAUSAL_CONV1D_FLOAT16_TYPES
#include "torch_types.h"

#ifdef CAUSAL_CONV1D_STABLE_ABI
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#else
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/DeviceGuard.h>
#include <torch/library.h>
#endif

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace causal_conv1d::api {

#ifdef CAUSAL_CONV1D_STABLE_ABI
using Tensor = torch::stable::Tensor;
using Sizes = torch::headeronly::IntHeaderOnlyArrayRef;
using Library = torch::stable::detail::StableLibrary;
constexpr const char* kAbi = "stable";
#else
using Tensor = at::Tensor;
using Sizes = at::IntArrayRef;
using Library = torch::Library;
constexpr const char* kAbi = "classic";
#endif
using OptTensor = std::optional<Tensor>;

// ---- Errors ----

// A bad argument is a ValueError or a TypeError in Python, anything else a
// RuntimeError (CONTRACT 2). The classic build raises them as such. On the
// stable ABI an exception reaches Python through pybind11's translation of
// std:: types: std::invalid_argument is a ValueError, and a type error is one
// whose message ends in kTypeErrorMark, which the Python API raises as a
// TypeError (_core._call); other callers of torch.ops see a ValueError.
enum class ErrorKind { kValue, kType, kRuntime };
constexpr const char* kTypeErrorMark = " [TypeError]";
[[noreturn]] void fail(ErrorKind kind, const std::string& message);

inline std::string piece(const std::string& s) { return s; }
inline std::string piece(const char* s) { return s; }
template <typename T, std::enable_if_t<std::is_integral_v<T>, int> = 0>
std::string piece(T v) {
  return std::to_string(v);
}

// The message from its pieces (strings and integers), with no iostreams.
template <typename... Args>
std::string cat(const Args&... args) {
  std::string s;
  ((s += piece(args)), ...);
  return s;
}

#define CAUSAL_CONV1D_FAIL_UNLESS(cond, kind, ...)                                         \
  do {                                                                                     \
    if (!(cond)) ::causal_conv1d::api::fail(kind, ::causal_conv1d::api::cat(__VA_ARGS__)); \
  } while (0)
#define CC1D_CHECK_VALUE(cond, ...) \
  CAUSAL_CONV1D_FAIL_UNLESS(cond, ::causal_conv1d::api::ErrorKind::kValue, __VA_ARGS__)
#define CC1D_CHECK_TYPE(cond, ...) \
  CAUSAL_CONV1D_FAIL_UNLESS(cond, ::causal_conv1d::api::ErrorKind::kType, __VA_ARGS__)
#define CC1D_CHECK(cond, ...) \
  CAUSAL_CONV1D_FAIL_UNLESS(cond, ::causal_conv1d::api::ErrorKind::kRuntime, __VA_ARGS__)

// ---- Devices ----

inline bool same_device(const Tensor& a, const Tensor& b) { return a.device() == b.device(); }

// As Python prints it: cpu, cuda:0.
std::string device_text(const Tensor& t);

// A dtype as Python prints it: torch.float32.
std::string dtype_text(ScalarType t);

// Makes t's device current for its lifetime (nothing for a CPU tensor).
class CurrentDevice {
 public:
  explicit CurrentDevice(const Tensor& t) {
    if (!t.is_cpu()) guard_.emplace(guard_argument(t));
  }

 private:
#ifdef CAUSAL_CONV1D_STABLE_ABI
  using Guard = torch::stable::accelerator::DeviceGuard;
  static torch::stable::accelerator::DeviceIndex guard_argument(const Tensor& t) {
    return t.get_device();
  }
#else
  using Guard = c10::DeviceGuard;
  static c10::Device guard_argument(const Tensor& t) { return t.device(); }
#endif
  std::optional<Guard> guard_;
};

// ---- New tensors ----

// Whether t's elements fill its storage span with no two at one address.
bool dense(const Tensor& t);

// Uninitialised, on like's device; strides a permutation of a dense layout
// (row-major, channel-last, or like's own when like is dense).
Tensor empty_strided(Sizes sizes, Sizes strides, ScalarType dtype, const Tensor& like);

// The same on the CPU.
Tensor empty_strided_cpu(Sizes sizes, Sizes strides, ScalarType dtype);

// A CPU tensor over `nbytes` at data that deleter(data) frees when the last
// reference goes. Classic build: its storage grows like any other (into torch's
// allocator); the stable ABI's from_blob storage cannot grow.
Tensor cpu_from_blob(void* data, size_t nbytes, Sizes sizes, Sizes strides, ScalarType dtype,
                     std::function<void(void*)> deleter);

// A contiguous float32 tensor of n elements on CUDA device `device`.
Tensor cuda_floats(int64_t n, int device);

inline void zero(Tensor& t) {
#ifdef CAUSAL_CONV1D_STABLE_ABI
  torch::stable::zero_(t);
#else
  t.zero_();
#endif
}

// ---- CPU threads ----

inline int64_t num_threads() {
#ifdef CAUSAL_CONV1D_STABLE_ABI
  return static_cast<int64_t>(torch::stable::get_num_threads());
#else
  return at::get_num_threads();
#endif
}

// f(begin, end) over chunks of [begin, end) on torch's intra-op threads.
template <typename F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
#ifdef CAUSAL_CONV1D_STABLE_ABI
  torch::stable::parallel_for(begin, end, grain, f);
#else
  at::parallel_for(begin, end, grain, f);
#endif
}

}  // namespace causal_conv1d::api

// ---- Registration ----

#ifdef CAUSAL_CONV1D_STABLE_ABI
#define CAUSAL_CONV1D_LIBRARY(ns, m) STABLE_TORCH_LIBRARY(ns, m)
#define CAUSAL_CONV1D_LIBRARY_IMPL(ns, key, m) STABLE_TORCH_LIBRARY_IMPL(ns, key, m)
#define CAUSAL_CONV1D_IMPL(m, name, fn) (m).impl(name, TORCH_BOX(fn))
#else
#define CAUSAL_CONV1D_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)
#define CAUSAL_CONV1D_LIBRARY_IMPL(ns, key, m) TORCH_LIBRARY_IMPL(ns, key, m)
#define CAUSAL_CONV1D_IMPL(m, name, fn) (m).impl(name, fn)
#endif
