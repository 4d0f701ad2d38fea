// The interface between the CPU dispatcher (conv1d_cpu.cpp) and one ISA's
// kernels. An ISA file exports a CpuKernelSet and nothing else: no
// registrations and no static initialisers, so that it can be compiled with
// its own instruction-set flags and only called after a CPUID check. The
// dispatcher splits a call into work items (kernel_items.h) and runs them.
#pragma once

#include <cstdint>

#include "../params.h"

namespace causal_conv1d::cpu {

// The filter prepared by the dispatcher, once per call.
struct CpuWeights {
  // (width, dim) in fp32: taps[k * dim + c]; null when the items read the
  // filter in place (CpuKernelSet::update_reads_filter).
  const float* taps = nullptr;
  const float* bias = nullptr;  // (dim,) in fp32, or null
  // bf16 weights only: the taps as bf16 VNNI pairs (ceil(width / 2), dim, 2),
  // an odd width padded with a zero tap; null otherwise.
  const uint16_t* vnni = nullptr;
};

// One work item of the prefill: tokens [t0, t1) of sequence `seq` (counted
// from its start), channels [c0, c1). `scratch` holds 2 * (width - 1) rows of
// scratch_pitch(slab) floats, 64-byte aligned.
using FwdItemFn = void (*)(const FwdParams&, const CpuWeights&, int64_t seq, int64_t t0, int64_t t1,
                           int64_t c0, int64_t c1, float* scratch);
// One work item of the decode: batch row `row`, channels [c0, c1). `scratch`
// holds (width - 1 + seqlen) rows of scratch_pitch(slab) floats, 64-byte aligned.
using UpdateItemFn = void (*)(const UpdateParams&, const CpuWeights&, int64_t row, int64_t c0,
                              int64_t c1, float* scratch);

// One work item of the Dao dialect's batch prefill: tokens [t0, t1) of row b,
// channels [c0, c1); `scratch` holds width rows of scratch_pitch(c1 - c0)
// floats for channel-last x, else kRowScratch floats (t1 - t0 <= kRowChunk).
using BatchFwdItemFn = void (*)(const BatchParams&, const CpuWeights&, int64_t b, int64_t t0,
                                int64_t t1, int64_t c0, int64_t c1, float* scratch);
// One work item of its backward: dx of tokens [t0, t1) of row b (and the row's
// dinitial_states when t0 == 0), channels [c0, c1), c1 - c0 <= kBwdSlab; adds
// the chunk's share of dweight (width rows of c1 - c0) and dbias into dw, db.
// Channel-last x: t1 - t0 <= kBwdChunk, c1 - c0 <= kBwdSlab and `scratch` holds
// kBwdScratchRows rows of scratch_pitch(kBwdSlab) floats; else as the forward's.
using BatchBwdItemFn = void (*)(const BatchParams&, const CpuWeights&, int64_t b, int64_t t0,
                                int64_t t1, int64_t c0, int64_t c1, float* scratch, float* dw,
                                float* db);

constexpr int64_t kSlab = 2048;       // channels per work item (decode: when rows are few)

// Tokens per staged chunk of the in-place prefill (items/prefill.h).
constexpr int64_t kInPlaceChunk = 64;

// Scratch rows of an in-place prefill item: the window before the sequence, a
// chunk and the width-1 tokens before it.
inline int64_t in_place_scratch_rows(int64_t width) { return 2 * (width - 1) + kInPlaceChunk; }

// Scratch rows a decode item needs beyond its window and tokens when it walks
// them (items/decode.h walk_tokens): the gathered taps, then the parents
// (int32, one per token).
inline int64_t walk_scratch_rows(int64_t width, int64_t tokens, int64_t pitch) {
  return width + (tokens + pitch - 1) / pitch;
}
constexpr size_t kScratchAlign = 64;  // bytes; scratch rows start on cache lines

// Floats from one scratch row to the next for n channels: rows start on cache lines.
inline int64_t scratch_pitch(int64_t n) { return (n + 15) / 16 * 16; }
constexpr int64_t kChunk = 256;    // prefill tokens per work item (more than kMaxWidth)
constexpr int64_t kBwdChunk = 64;  // backward tokens per work item (channel-last)
constexpr int64_t kBwdSlab = 256;  // backward channels per work item (channel-last)
// Backward scratch (batch_bwd_item): tiles of x with its window, of dout and g
// (plus width-1 tokens after the chunk), of dx.
// Other layouts than channel-last (batch_*_rows in items/batch_fwd.h and
// items/batch_bwd.h): items of kRowChunk tokens x kRowSlab channels, walked one
// channel at a time along its tokens, in kRowScratch floats of scratch.
constexpr int64_t kRowChunk = 1024;
constexpr int64_t kRowSlab = 64;
constexpr int64_t kRowScratch = 6 * (kRowChunk + 2 * kMaxWidth);
constexpr int64_t kBwdScratchRows =
    (kBwdChunk + 2 * kMaxWidth) + (kBwdChunk + kMaxWidth) + kBwdChunk;

struct CpuKernelSet {
  const char* name;
  bool packs_vnni;  // wants CpuWeights::vnni for bf16 x and weights
  FwdItemFn (*fwd)(const FwdParams&);
  UpdateItemFn (*update)(const UpdateParams&);
  BatchFwdItemFn (*batch_fwd)(const BatchParams&);
  BatchBwdItemFn (*batch_bwd)(const BatchParams&);
  // CpuWeights::taps of the filter, (width, dim) fp32, and CpuWeights::bias
  // (dim,) fp32 when the call has a bias.
  void (*widen_filter)(const ConvParams&, float* taps, float* bias);
  // Whether the decode items of this call can read the filter and bias in
  // place; where the dispatcher lets them (a few rows per thread) it prepares
  // no CpuWeights (all null) and they do.
  bool (*update_reads_filter)(const UpdateParams&);
};

// <name>_kernels() of each set in kernel_sets.def, defined in its source. Weak:
// a set the build left out resolves to null, and the dispatcher skips it.
#define CAUSAL_CONV1D_KERNEL_SET(name, source, flags, features) \
  __attribute__((weak)) CpuKernelSet name##_kernels();
#include "kernel_sets.def"
#undef CAUSAL_CONV1D_KERNEL_SET

}  // namespace causal_conv1d::cpu
