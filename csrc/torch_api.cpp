// torch_api.h's out-of-line half, for both builds.
#include "torch_api.h"

#ifndef CAUSAL_CONV1D_STABLE_ABI
#include <c10/core/CPUAllocator.h>
#endif

#include <algorithm>
#include <cctype>
#include <numeric>
#include <stdexcept>

namespace causal_conv1d::api {

void fail(ErrorKind kind, const std::string& message) {
#ifdef CAUSAL_CONV1D_STABLE_ABI
  switch (kind) {
    case ErrorKind::kValue:
      throw std::invalid_argument(message);
    case ErrorKind::kType:
      throw std::invalid_argument(message + kTypeErrorMark);
    default:
      throw std::runtime_error(message);
  }
#else
  switch (kind) {
    case ErrorKind::kValue:
      TORCH_CHECK_VALUE(false, message);
    case ErrorKind::kType:
      TORCH_CHECK_TYPE(false, message);
    default:
      TORCH_CHECK(false, message);
  }
#endif
}

std::string device_text(const Tensor& t) {
  std::string name;
  switch (t.device().type()) {
    case c10::DeviceType::CPU:
      return "cpu";
    case c10::DeviceType::CUDA:
      name = "cuda";
      break;
    case c10::DeviceType::Meta:
      name = "meta";
      break;
    default:
      name = "device type " + std::to_string(static_cast<int>(t.device().type()));
  }
  return t.get_device() >= 0 ? name + ":" + std::to_string(t.get_device()) : name;
}

std::string dtype_text(ScalarType t) {
  switch (t) {
    case ScalarType::Float:
      return "torch.float32";
    case ScalarType::Half:
      return "torch.float16";
    case ScalarType::Double:
      return "torch.float64";
    case ScalarType::Int:
      return "torch.int32";
    case ScalarType::Long:
      return "torch.int64";
    case ScalarType::Short:
      return "torch.int16";
    case ScalarType::Char:
      return "torch.int8";
    case ScalarType::Byte:
      return "torch.uint8";
    case ScalarType::ComplexHalf:
      return "torch.complex32";
    case ScalarType::ComplexFloat:
      return "torch.complex64";
    case ScalarType::ComplexDouble:
      return "torch.complex128";
    default: {
      std::string name = c10::toString(t);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      return "torch." + name;
    }
  }
}

namespace {

// Dimensions in order of decreasing stride (ties: the later dimension inner).
std::vector<int64_t> outer_to_inner(Sizes strides) {
  std::vector<int64_t> order(strides.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return strides[a] > strides[b]; });
  return order;
}

}  // namespace

bool dense(const Tensor& t) {
  const auto sizes = t.sizes();
  const auto strides = t.strides();
  const std::vector<int64_t> order = outer_to_inner(strides);
  int64_t expected = 1;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    const int64_t d = *it;
    if (sizes[d] == 1) continue;
    if (strides[d] != expected) return false;
    expected *= sizes[d];
  }
  return true;
}

#ifdef CAUSAL_CONV1D_STABLE_ABI
namespace {

// aoti_torch_empty_strided: one call of the C shim straight to at::empty_strided
// (torch::stable::empty goes through the boxed dispatcher, looking aten::empty
// up by name on every call: 2.1 against 0.9 us for Python's torch.empty_like on
// the dev box), with the layout asked for, so no transposes afterwards.
Tensor empty_on(Sizes sizes, Sizes strides, ScalarType dtype, torch::stable::Device device) {
  using torch::stable::detail::from;
  using torch::stable::detail::to;
  AtenTensorHandle handle = nullptr;
  STABLE_TORCH_ERROR_CODE_CHECK(aoti_torch_empty_strided(
      static_cast<int64_t>(sizes.size()), sizes.data(), strides.data(), to<int32_t>(from(dtype)),
      to<int32_t>(from(device.type())), device.index(), &handle));
  return Tensor(handle);
}

}  // namespace

Tensor empty_strided(Sizes sizes, Sizes strides, ScalarType dtype, const Tensor& like) {
  return empty_on(sizes, strides, dtype, like.device());
}

Tensor empty_strided_cpu(Sizes sizes, Sizes strides, ScalarType dtype) {
  return empty_on(sizes, strides, dtype, torch::stable::Device(c10::DeviceType::CPU));
}

Tensor cpu_from_blob(void* data, size_t /*nbytes: from_blob's storage is the view's*/, Sizes sizes,
                     Sizes strides, ScalarType dtype, std::function<void(void*)> deleter) {
  return torch::stable::from_blob(data, sizes, strides, torch::stable::Device(c10::DeviceType::CPU),
                                  dtype, std::move(deleter));
}
#else
Tensor empty_strided(Sizes sizes, Sizes strides, ScalarType dtype, const Tensor& like) {
  return at::empty_strided(sizes, strides, like.options().dtype(dtype));
}

Tensor empty_strided_cpu(Sizes sizes, Sizes strides, ScalarType dtype) {
  return at::empty_strided(sizes, strides, at::TensorOptions().dtype(dtype).device(at::kCPU));
}

Tensor cpu_from_blob(void* data, size_t nbytes, Sizes sizes, Sizes strides, ScalarType dtype,
                     std::function<void(void*)> deleter) {
  // A resizable storage (at::from_blob's is not): growing it takes torch's CPU allocator and
  // frees this block through the deleter, as any storage would.
  struct Owner {
    void* data;
    std::function<void(void*)> deleter;
  };
  const auto release = [](void* ctx) {
    auto* owner = static_cast<Owner*>(ctx);
    owner->deleter(owner->data);
    delete owner;
  };
  c10::DataPtr block(data, new Owner{data, std::move(deleter)}, release,
                     c10::Device(c10::DeviceType::CPU));
  c10::Storage storage(c10::Storage::use_byte_size_t(), nbytes, std::move(block),
                       c10::GetCPUAllocator(), /*resizable=*/true);
  return at::empty({0}, at::TensorOptions().dtype(dtype)).set_(storage, 0, sizes, strides);
}
#endif

Tensor cuda_floats(int64_t n, int device) {
#ifdef CAUSAL_CONV1D_STABLE_ABI
  const std::vector<int64_t> sizes{n};
  return torch::stable::empty(
      sizes, ScalarType::Float, std::nullopt,
      torch::stable::Device(c10::DeviceType::CUDA,
                            static_cast<torch::stable::DeviceIndex>(device)));
#else
  return at::empty({n}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, device));
#endif
}

}  // namespace causal_conv1d::api
