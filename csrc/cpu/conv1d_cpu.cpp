// The CPU backend (CpuBackend, ops.h): picks the ISA's kernels once per process (CPUID,
// or CAUSAL_CONV1D_CPU_ISA), prepares the filter, splits the call into work
// items (token chunks of each sequence, or batch rows, times channel slabs)
// and runs them on torch's intra-op threads (api::parallel_for).
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "../dispatch.h"
#include "../ops.h"
#include "../settings.h"
#include "kernels.h"
#include "output_pool.h"

namespace causal_conv1d::cpu {
namespace {

// Below this many output elements a call runs on one thread: waking the pool
// costs more than the work.
constexpr int64_t kMinElementsPerThread = 32768;

// Decode rows per thread up to which the filter is read in place where the
// kernels can (CpuKernelSet::update_reads_filter), rather than copied per call.
constexpr int64_t kInPlaceRowsPerThread = 8;

struct IsaEntry {
  const char* name;
  const char* features;  // CPU features it needs, space-separated
  CpuKernelSet (*kernels)();  // null where the build left the set out
};

// kernel_sets.def, best first.
const IsaEntry kIsas[] = {
#define CAUSAL_CONV1D_KERNEL_SET(name, source, flags, features) {#name, features, &name##_kernels},
#include "kernel_sets.def"
#undef CAUSAL_CONV1D_KERNEL_SET
};

// Whether this CPU has one feature of kernel_sets.def's lists.
bool cpu_has(const std::string& feature) {
#if defined(__x86_64__) || defined(_M_X64)
  if (feature == "avx2") return __builtin_cpu_supports("avx2");
  if (feature == "fma") return __builtin_cpu_supports("fma");
  if (feature == "f16c") return __builtin_cpu_supports("f16c");
  if (feature == "avx512f") return __builtin_cpu_supports("avx512f");
  if (feature == "avx512bw") return __builtin_cpu_supports("avx512bw");
  if (feature == "avx512vl") return __builtin_cpu_supports("avx512vl");
  if (feature == "avx512dq") return __builtin_cpu_supports("avx512dq");
  if (feature == "avx512bf16") return __builtin_cpu_supports("avx512bf16");
#endif
  CC1D_CHECK(false, "kernel_sets.def names a CPU feature cpu_has() cannot test: ", feature);
}

// Whether this CPU has every feature the set needs.
bool supported(const IsaEntry& isa) {
  std::string features = isa.features;
  for (size_t start = 0; start < features.size();) {
    size_t end = features.find(' ', start);
    if (end == std::string::npos) end = features.size();
    if (end > start && !cpu_has(features.substr(start, end - start))) return false;
    start = end + 1;
  }
  return true;
}

CpuKernelSet choose_kernels() {
  const std::string want = setting_text(Setting::kCpuIsa);
  std::string built = "auto";
  for (const IsaEntry& isa : kIsas) {
    if (isa.kernels == nullptr) continue;
    if (want == "auto" && supported(isa)) return isa.kernels();
    if (want == isa.name) {
      CC1D_CHECK(supported(isa), "CAUSAL_CONV1D_CPU_ISA=", want, ": this CPU lacks one of ",
                 isa.features);
      return isa.kernels();
    }
    built += std::string(", ") + isa.name;
  }
  CC1D_CHECK(false, "CAUSAL_CONV1D_CPU_ISA=", want,
             " is not available in this build; choose one of: ", built);
}

// A function-local static: an invalid environment raises on every call
// instead of leaving a half-initialised choice behind.
const CpuKernelSet& kernels() {
  static const CpuKernelSet chosen = choose_kernels();
  return chosen;
}

// 64-byte aligned storage for what the kernels load in full vectors: AVX-512
// accesses that straddle two cache lines are costly on Intel cores.
template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t{kScratchAlign}));
  }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t{kScratchAlign}); }
  template <typename U>
  bool operator==(const CacheLineAllocator<U>&) const {
    return true;
  }
  template <typename U>
  bool operator!=(const CacheLineAllocator<U>&) const {
    return false;
  }
};
template <typename T>
using AlignedVector = std::vector<T, CacheLineAllocator<T>>;

// At least n elements of v, kept by the thread for its next call: allocating
// (and zeroing) per call was a large part of a one-row decode. Contents are
// whatever the last call left.
template <typename T>
T* reuse(AlignedVector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// The filter as fp32 taps (width, dim) and bias (dim,), plus bf16 VNNI pairs
// when the kernels want them: one pass over the weights, cheaper than tensor
// ops for the small filters of decode. The storage is the calling thread's,
// valid until its next call.
class PreparedWeights {
 public:
  PreparedWeights(const ConvParams& p, const CpuKernelSet& k, bool want_vnni,
                  bool in_place = false) {
    if (in_place) return;  // the kernels read the filter in place
    thread_local AlignedVector<float> taps_storage, bias_storage;
    thread_local AlignedVector<uint16_t> vnni_storage;
    float* taps = reuse(taps_storage, p.width * p.dim);
    float* bias = p.bias != nullptr ? reuse(bias_storage, p.dim) : nullptr;
    k.widen_filter(p, taps, bias);
    view_.taps = taps;
    view_.bias = bias;
    if (want_vnni && p.weight_type == ScalarType::BFloat16 && p.x_type == ScalarType::BFloat16) {
      const int64_t pairs = (p.width + 1) / 2;
      uint16_t* vnni = reuse(vnni_storage, pairs * p.dim * 2);
      if (p.width % 2 == 0 && p.weight_tap_stride == 1 && p.weight_dim_stride == p.width) {
        // A contiguous filter of even width holds the pairs already, as 4-byte words:
        // (dim, pairs) transposed to (pairs, dim), a word per copy.
        const auto* w = static_cast<const char*>(p.weight);
        for (int64_t j = 0; j < pairs; ++j)
          for (int64_t c = 0; c < p.dim; ++c)
            std::memcpy(vnni + 2 * (j * p.dim + c), w + 4 * (c * pairs + j), 4);
      } else {
        std::fill_n(vnni, pairs * p.dim * 2, 0);  // an odd width's last pair ends in a zero tap
        const auto* w = static_cast<const c10::BFloat16*>(p.weight);
        for (int64_t k = 0; k < p.width; ++k)
          for (int64_t c = 0; c < p.dim; ++c)
            vnni[((k / 2) * p.dim + c) * 2 + k % 2] =
                w[c * p.weight_dim_stride + k * p.weight_tap_stride].x;
      }
      view_.vnni = vnni;
    }
  }
  CpuWeights view() const { return view_; }

 private:
  CpuWeights view_;
};

// The scratch rows of the work items a thread runs (see kernels.h).
float* thread_scratch(int64_t n) {
  thread_local AlignedVector<float> storage;
  return reuse(storage, n);
}

// Runs body(item) for items [0, n_items) whose total output is `elements`.
template <typename F>
void parallel_items(int64_t n_items, int64_t elements, const F& body) {
  const int64_t grain =
      std::max<int64_t>(1, n_items * kMinElementsPerThread / std::max<int64_t>(1, elements));
  api::parallel_for(0, n_items, grain, body);
}

// Channels per prefill item: kSlab, or fewer, in whole lines of 64 channels,
// when `chunks` token chunks x kSlab slabs would leave a thread with fewer
// than two items (a small prefill's 12 items on 16 threads: the slowest
// thread's share was 1.5x an even one).
int64_t prefill_slab(int64_t chunks, int64_t dim) {
  constexpr int64_t kLine = 64, kMinSlab = 256;
  const int64_t want = 2 * api::num_threads();
  int64_t slabs = (dim + kSlab - 1) / kSlab;
  if (chunks * slabs < want)
    slabs = std::max(slabs, std::min((want + chunks - 1) / chunks, dim / kMinSlab));
  const int64_t slab = ((dim + slabs - 1) / slabs + kLine - 1) / kLine * kLine;
  return std::min(slab, std::max<int64_t>(dim, 1));
}

// Runs body(begin, end) over items [0, n_items), whose total output is
// `elements`, in one contiguous range per thread, the ranges cut where the
// running sum of cost(i) crosses equal shares: a mixed batch's items differ
// in length, and equal counts of them (64 sequences of 1-128 tokens on 16
// threads) left the slowest thread about 1.5x the mean.
template <typename Cost, typename F>
void parallel_balanced(int64_t n_items, int64_t elements, const Cost& cost, const F& body) {
  const int64_t threads = std::min(
      {api::num_threads(), std::max<int64_t>(1, elements / kMinElementsPerThread), n_items});
  if (threads <= 1) {
    if (n_items > 0) body(0, n_items);
    return;
  }
  std::vector<int64_t> prefix(static_cast<size_t>(n_items) + 1, 0);
  for (int64_t i = 0; i < n_items; ++i) prefix[i + 1] = prefix[i] + cost(i);
  const int64_t total = prefix[n_items];
  // Thread t runs the items whose running sum starts in [total t / T, total (t + 1) / T).
  const auto first = [&](int64_t t) -> int64_t {
    if (t >= threads) return n_items;
    const int64_t share = total * t / threads;
    return std::lower_bound(prefix.begin(), prefix.begin() + n_items, share) - prefix.begin();
  };
  api::parallel_for(0, threads, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t begin = first(t), end = first(t + 1);
      if (begin < end) body(begin, end);
    }
  });
}

// How a batch op (the Dao dialect) splits its rows into work items: token
// chunks of each row times channel slabs. Channel-last rows and other layouts
// take their own sizes. Every row has at least one (maybe empty) chunk: it
// still has final states and initial-state gradients.
struct BatchSplit {
  int64_t chunk_len, slab, per_row, slabs;
  BatchSplit(const BatchParams& p, int64_t channel_last_chunk, int64_t channel_last_slab) {
    const bool channel_last = p.x.dim == 1;
    chunk_len = channel_last ? channel_last_chunk : kRowChunk;
    slab = channel_last ? channel_last_slab : kRowSlab;
    per_row = std::max<int64_t>(1, (p.seqlen + chunk_len - 1) / chunk_len);
    slabs = (p.dim + slab - 1) / slab;
  }
};

// Token ranges whose dweight/dbias shares are summed separately, then added in
// range order: a fixed number, so that the bits do not depend on the thread
// count or on which thread ran what.
constexpr int64_t kBwdRanges = 32;

// Stores v into element i of a float32/float16/bfloat16 buffer.
void store_as(c10::ScalarType type, void* data, int64_t i, float v) {
  with_storage_type<StorageTypes<c10::Half, c10::BFloat16, float>>(type, [&](auto tag) {
    using T = decltype(tag);
    static_cast<T*>(data)[i] = T(v);
  });
}

}  // namespace
}  // namespace causal_conv1d::cpu

namespace causal_conv1d {
using namespace cpu;

api::Tensor CpuBackend::empty(api::Sizes sizes, api::Sizes strides, ScalarType dtype,
                              const api::Tensor& /*like: on the CPU*/) {
  return empty_output(sizes, strides, dtype);
}

void CpuBackend::fwd(const FwdParams& p) {
  const CpuKernelSet& k = kernels();
  const PreparedWeights weights(p, k, k.packs_vnni);
  const CpuWeights w = weights.view();
  const FwdItemFn fn = k.fwd(p);

  if (p.in_place() || p.channel_first()) {
    // Whole sequences (fwd_item_in_place, fwd_item_rows) times channel slabs of whole
    // 64-channel lines, small enough for four items per thread (channel-first: kRowSlab).
    const int64_t fair = p.batch * p.dim / (4 * api::num_threads());
    const int64_t widest = p.channel_first() ? kRowSlab : kSlab;
    const int64_t slab = std::min(p.dim, std::clamp<int64_t>(fair / 64 * 64, 64, widest));
    const int64_t slabs = (p.dim + slab - 1) / slab;
    const int64_t scratch_size =
        p.channel_first() ? kRowScratch : in_place_scratch_rows(p.width) * scratch_pitch(slab);
    const auto cost = [&](int64_t i) {
      int64_t begin, end;
      p.token_range(i / slabs, begin, end);
      return (end - begin + p.width) * slab;
    };
    parallel_balanced(p.batch * slabs, p.num_tokens * p.dim, cost, [&](int64_t b, int64_t e) {
      float* scratch = thread_scratch(scratch_size);
      for (int64_t i = b; i < e; ++i) {
        const int64_t c0 = (i % slabs) * slab;
        fn(p, w, i / slabs, 0, 0, c0, std::min(p.dim, c0 + slab), scratch);
      }
    });
    return;
  }
  // Token chunks of every sequence; a sequence's first chunk also owns its state.
  struct Chunk {
    int64_t seq, t0, t1;
  };
  std::vector<Chunk> chunks;
  for (int64_t seq = 0; seq < p.batch; ++seq) {
    int64_t begin, end;
    p.token_range(seq, begin, end);
    for (int64_t t0 = 0; t0 < end - begin; t0 += kChunk)
      chunks.push_back({seq, t0, std::min(end - begin, t0 + kChunk)});
  }
  const int64_t slab = prefill_slab(static_cast<int64_t>(chunks.size()), p.dim);
  const int64_t slabs = (p.dim + slab - 1) / slab;
  const int64_t n_items = static_cast<int64_t>(chunks.size()) * slabs;
  const int64_t scratch_size = 2 * (p.width - 1) * scratch_pitch(slab);
  // An item's cost: its outputs, and the window it stages or reads before them.
  const auto cost = [&](int64_t i) {
    const Chunk& c = chunks[i / slabs];
    const int64_t c0 = (i % slabs) * slab;
    return (c.t1 - c.t0 + p.width) * (std::min(p.dim, c0 + slab) - c0);
  };
  parallel_balanced(n_items, p.num_tokens * p.dim, cost, [&](int64_t begin, int64_t end) {
    float* scratch = thread_scratch(scratch_size);
    for (int64_t i = begin; i < end; ++i) {
      const Chunk& c = chunks[i / slabs];
      const int64_t c0 = (i % slabs) * slab;
      fn(p, w, c.seq, c.t0, c.t1, c0, std::min(p.dim, c0 + slab), scratch);
    }
  });
}

void CpuBackend::update(const UpdateParams& p) {
  const bool varlen = p.query_start_loc.present();
  const CpuKernelSet& k = kernels();
  // Decode stages fp32 rows, or, where the kernels can and a thread has a few
  // rows only, reads the filter in place: per row that costs a few
  // instructions per register of channels, the copy costs the calling thread
  // the whole filter per call (dev box, one thread, D 8192: one row 14.1 us
  // with the copy, 10.1 in place; 256 rows 1258 with it, 1364 in place).
  const bool in_place =
      k.update_reads_filter(p) && p.batch <= kInPlaceRowsPerThread * api::num_threads();
  const PreparedWeights weights(p, k, /*want_vnni=*/false, in_place);
  const CpuWeights w = weights.view();
  const UpdateItemFn fn = k.update(p);
  // Whole rows when there are rows enough for every thread: a row's state
  // columns are then streams long enough for the hardware prefetchers.
  const int64_t slab = p.batch >= api::num_threads() ? p.dim : std::min(kSlab, p.dim);
  const int64_t slabs = (p.dim + slab - 1) / slab;
  // A row stages at most seqlen tokens (varlen: all of x, or max_query_len
  // when longer speculative rows are padding).
  const int64_t row_tokens =
      varlen && p.mode == StateMode::kFrontSpec ? std::min(p.seqlen, p.max_query_len) : p.seqlen;
  const int64_t pitch = scratch_pitch(slab);
  const int64_t scratch_size =
      (p.width - 1 + row_tokens +
       (p.walks_tokens() ? walk_scratch_rows(p.width, row_tokens, pitch) : 0)) *
      pitch;
  const int64_t tokens = varlen ? p.num_tokens : p.batch * p.seqlen;
  parallel_items(p.batch * slabs, tokens * p.dim, [&](int64_t begin, int64_t end) {
    float* scratch = thread_scratch(scratch_size);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t c0 = (i % slabs) * slab;
      fn(p, w, i / slabs, c0, std::min(p.dim, c0 + slab), scratch);
    }
  });
}

void CpuBackend::batch_fwd(const BatchParams& p) {
  const CpuKernelSet& k = kernels();
  const PreparedWeights weights(p, k, k.packs_vnni);
  const CpuWeights w = weights.view();
  const BatchFwdItemFn fn = k.batch_fwd(p);
  // Channel-last rows read x in place in wide slabs; other layouts run one
  // channel at a time along long token rows.
  const BatchSplit split(p, kChunk, kSlab);
  const int64_t chunk_len = split.chunk_len, slab = split.slab;
  const int64_t per_row = split.per_row, slabs = split.slabs;
  const int64_t scratch_size =
      p.x.dim == 1 ? kMaxWidth * scratch_pitch(std::min(slab, p.dim)) : kRowScratch;
  parallel_items(p.batch * per_row * slabs, p.batch * p.seqlen * p.dim,
                 [&](int64_t begin, int64_t end) {
                   float* scratch = thread_scratch(scratch_size);
                   for (int64_t i = begin; i < end; ++i) {
                     const int64_t chunk = i / slabs, c0 = (i % slabs) * slab;
                     const int64_t b = chunk / per_row, t0 = (chunk % per_row) * chunk_len;
                     fn(p, w, b, t0, std::min(p.seqlen, t0 + chunk_len), c0,
                        std::min(p.dim, c0 + slab), scratch);
                   }
                 });
}

void CpuBackend::batch_bwd(const BatchParams& p, bool /*deterministic: always*/) {
  const CpuKernelSet& k = kernels();
  const PreparedWeights weights(p, k, /*want_vnni=*/false);
  const CpuWeights w = weights.view();
  const BatchBwdItemFn fn = k.batch_bwd(p);

  const BatchSplit split(p, kBwdChunk, kBwdSlab);
  const int64_t chunk_len = split.chunk_len, slab = split.slab;
  const int64_t per_row = split.per_row, slabs = split.slabs;
  const int64_t chunks = p.batch * per_row;
  const int64_t ranges = std::min(kBwdRanges, std::max<int64_t>(1, chunks));
  // Per (range, slab): width rows of dweight shares, then one of dbias, `slab` floats each.
  const int64_t share = (p.width + 1) * slab;
  std::vector<float> shares(static_cast<size_t>(ranges * slabs * share), 0.f);
  const int64_t scratch_size =
      p.x.dim == 1 ? kBwdScratchRows * scratch_pitch(kBwdSlab) : kRowScratch;
  parallel_items(ranges * slabs, p.batch * p.seqlen * p.dim, [&](int64_t begin, int64_t end) {
    float* scratch = thread_scratch(scratch_size);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t r = i / slabs, c0 = (i % slabs) * slab;
      const int64_t n = std::min(p.dim, c0 + slab) - c0;
      float* dw = shares.data() + i * share;
      for (int64_t chunk = r * chunks / ranges; chunk < (r + 1) * chunks / ranges; ++chunk) {
        const int64_t b = chunk / per_row, t0 = (chunk % per_row) * chunk_len;
        fn(p, w, b, t0, std::min(p.seqlen, t0 + chunk_len), c0, c0 + n, scratch, dw,
           dw + p.width * n);
      }
    }
  });
  // Sum the shares in range order (fp32, as the kernels accumulate), then store.
  std::vector<float> dw32(static_cast<size_t>(p.dim * p.width), 0.f);
  std::vector<float> db32(static_cast<size_t>(p.dim), 0.f);
  api::parallel_for(0, slabs, 1, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      const int64_t c0 = s * slab, n = std::min(p.dim, c0 + slab) - c0;
      for (int64_t r = 0; r < ranges; ++r) {
        const float* dw = shares.data() + (r * slabs + s) * share;
        for (int64_t kk = 0; kk < p.width; ++kk)
          for (int64_t c = 0; c < n; ++c) dw32[(c0 + c) * p.width + kk] += dw[kk * n + c];
        for (int64_t c = 0; c < n; ++c) db32[c0 + c] += dw[p.width * n + c];
      }
    }
  });
  for (int64_t c = 0; c < p.dim; ++c) {
    for (int64_t kk = 0; kk < p.width; ++kk)
      store_as(p.weight_type, p.dweight, c * p.dweight_dim_stride + kk * p.dweight_tap_stride,
               dw32[c * p.width + kk]);
    if (p.dbias != nullptr) store_as(p.bias_type, p.dbias, c * p.dbias_stride, db32[c]);
  }
}

std::string cpu_isa_name() { return cpu::kernels().name; }
int64_t release_cpu_pool() { return cpu::release_output_pool(); }
}  // namespace causal_conv1d
