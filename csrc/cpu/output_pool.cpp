#include "output_pool.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "../settings.h"

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

// Keeps a freed output's block for reuse while the pool is under its cap.
void give_back(void* ptr, size_t bytes) {
  Pool& p = pool();
  {
    const std::lock_guard<std::mutex> lock(p.mutex);
    if (p.cached + bytes <= cap_bytes()) {
      p.free_blocks[bytes].push_back(ptr);
      p.cached += bytes;
      return;
    }
  }
  std::free(ptr);
}

// A block of `bytes` (a multiple of kBlock): a freed one of that size, else a new one; null
// when none can be had.
void* take(size_t bytes) {
  {
    Pool& p = pool();
    const std::lock_guard<std::mutex> lock(p.mutex);
    auto it = p.free_blocks.find(bytes);
    if (it != p.free_blocks.end() && !it->second.empty()) {
      void* ptr = it->second.back();
      it->second.pop_back();
      p.cached -= bytes;
      return ptr;
    }
  }
  return new_block(bytes);
}

}  // namespace

api::Tensor empty_output(api::Sizes sizes, api::Sizes strides, ScalarType dtype) {
  int64_t span = 1;  // elements from the first to the last
  for (size_t d = 0; d < sizes.size(); ++d) {
    if (sizes[d] == 0) {
      span = 0;
      break;
    }
    span += (sizes[d] - 1) * strides[d];
  }
  const size_t n = static_cast<size_t>(span) * storage_bytes(dtype);
  if (n >= kPooledMin && cap_bytes() > 0) {
    const size_t bytes = (n + kBlock - 1) / kBlock * kBlock;
    if (void* ptr = take(bytes))
      return api::cpu_from_blob(ptr, n, sizes, strides, dtype,
                                [bytes](void* data) { give_back(data, bytes); });
  }
  return api::empty_strided_cpu(sizes, strides, dtype);
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
