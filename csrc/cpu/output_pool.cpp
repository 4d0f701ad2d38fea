#include "output_pool.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>

#include "../settings.h"
#endif

namespace causal_conv1d::cpu {
namespace {

constexpr size_t kBlock = size_t{2} << 20;      // blocks are multiples of 2 MiB (a huge page)
constexpr size_t kPooledMin = size_t{1} << 20;  // outputs below 1 MiB are not pooled

size_t cap_bytes() {
  static const size_t cap = static_cast<size_t>(setting_int(Setting::kCpuPoolMb)) << 20;
  return cap;
}

// Freed blocks by size, and their total; one lock for both.
struct Pool {
  std::mutex mutex;
  std::map<size_t, std::vector<void*>> free_blocks;
  size_t cached = 0;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: deleters may run during exit
  return *p;
}

void* new_block(size_t bytes) {
  void* ptr = nullptr;
  if (posix_memalign(&ptr, kBlock, bytes) != 0) return nullptr;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  madvise(ptr, bytes, MADV_HUGEPAGE);  // fewer first-touch faults where THP allows
#endif
  return ptr;
}

struct Block {
  void* ptr;
  size_t bytes;
};

void free_block(void* ctx) {
  auto* block = static_cast<Block*>(ctx);
  Pool& p = pool();
  {
    const std::lock_guard<std::mutex> lock(p.mutex);
    if (p.cached + block->bytes <= cap_bytes()) {
      p.free_blocks[block->bytes].push_back(block->ptr);
      p.cached += block->bytes;
      block->ptr = nullptr;
    }
  }
  std::free(block->ptr);
  delete block;
}

class PoolAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    if (n < kPooledMin || cap_bytes() == 0) return c10::GetCPUAllocator()->allocate(n);
    const size_t bytes = (n + kBlock - 1) / kBlock * kBlock;
    void* ptr = nullptr;
    {
      Pool& p = pool();
      const std::lock_guard<std::mutex> lock(p.mutex);
      auto it = p.free_blocks.find(bytes);
      if (it != p.free_blocks.end() && !it->second.empty()) {
        ptr = it->second.back();
        it->second.pop_back();
        p.cached -= bytes;
      }
    }
    if (ptr == nullptr) ptr = new_block(bytes);
    if (ptr == nullptr) return c10::GetCPUAllocator()->allocate(n);
    return {ptr, new Block{ptr, bytes}, &free_block, c10::Device(c10::DeviceType::CPU)};
  }
  // (No `override`: older torch versions do not declare it.)
  void copy_data(void* dest, const void* src, std::size_t count) const {
    std::memcpy(dest, src, count);
  }
};

PoolAllocator& allocator() {
  static PoolAllocator* a = new PoolAllocator();
  return *a;
}

}  // namespace

at::Tensor empty_output(at::IntArrayRef sizes, at::IntArrayRef strides, at::ScalarType dtype) {
  return at::detail::empty_strided_generic(sizes, strides, &allocator(),
                                           c10::DispatchKeySet(c10::DispatchKey::CPU), dtype);
}

at::Tensor empty_output_like(const at::Tensor& x) {
  if (x.is_non_overlapping_and_dense())
    return empty_output(x.sizes(), x.strides(), x.scalar_type());
  std::vector<int64_t> strides(x.dim(), 1);
  for (int64_t d = x.dim() - 2; d >= 0; --d)
    strides[d] = strides[d + 1] * std::max<int64_t>(x.size(d + 1), 1);
  return empty_output(x.sizes(), strides, x.scalar_type());
}

int64_t release_output_pool() {
  Pool& p = pool();
  std::vector<void*> blocks;
  int64_t freed = 0;
  {
    const std::lock_guard<std::mutex> lock(p.mutex);
    for (auto& [bytes, list] : p.free_blocks) {
      blocks.insert(blocks.end(), list.begin(), list.end());
      freed += static_cast<int64_t>(bytes * list.size());
    }
    p.free_blocks.clear();
    p.cached = 0;
  }
  for (void* b : blocks) std::free(b);
  return freed;
}

}  // namespace causal_conv1d::cpu
