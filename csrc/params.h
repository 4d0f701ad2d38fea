// Plain descriptions of one call, handed from the op wrappers to the kernels.
// Kernels never see at::Tensor: only pointers, sizes and element strides, all
// 64-bit so that tensors over 2^31 elements index correctly.
#pragma once

#include <c10/core/ScalarType.h>
#include <c10/macros/Macros.h>

#include <cstdint>

namespace causal_conv1d {

// Largest kernel width any backend supports (widths 2..kMaxWidth).
constexpr int kMaxWidth = 8;

// A 1-D int32 or int64 index tensor, read in place (no host copy, no cast).
struct IndexVec {
  const void* data = nullptr;
  int64_t stride = 1;
  bool is_int64 = false;

  C10_HOST_DEVICE bool present() const { return data != nullptr; }
  C10_HOST_DEVICE int64_t operator[](int64_t i) const {
    return is_int64 ? static_cast<const int64_t*>(data)[i * stride]
                    : static_cast<int64_t>(static_cast<const int32_t*>(data)[i * stride]);
  }
};

// What both ops share: the filter and the conv-state cache.
struct ConvParams {
  int64_t dim = 0;
  int64_t width = 0;
  bool silu = false;
  int64_t pad_slot_id = -1;

  c10::ScalarType x_type = c10::ScalarType::Float;  // x and out

  const void* weight = nullptr;  // (dim, width)
  c10::ScalarType weight_type = c10::ScalarType::Float;
  int64_t weight_dim_stride = 0, weight_tap_stride = 0;

  const void* bias = nullptr;  // (dim,) or null
  c10::ScalarType bias_type = c10::ScalarType::Float;
  int64_t bias_stride = 0;

  void* states = nullptr;  // (num_cache_lines, dim, state_len) or null
  c10::ScalarType state_type = c10::ScalarType::Float;
  int64_t num_cache_lines = 0, state_len = 0;
  int64_t state_line_stride = 0, state_dim_stride = 0, state_tok_stride = 0;

  // A cache line that is the pad id, or outside the cache, is padding.
  C10_HOST_DEVICE bool is_padding(int64_t line) const {
    return line == pad_slot_id || (states != nullptr && (line < 0 || line >= num_cache_lines));
  }
};

// causal_conv1d_fwd: x is (dim, num_tokens), sequences packed along tokens.
struct FwdParams : ConvParams {
  const void* x = nullptr;
  int64_t num_tokens = 0, x_dim_stride = 0, x_tok_stride = 0;
  void* out = nullptr;
  int64_t out_dim_stride = 0, out_tok_stride = 0;

  int64_t batch = 0;
  IndexVec query_start_loc;                 // (batch + 1,)
  IndexVec cache_indices;                   // (batch,) or absent: sequence i uses line i
  const bool* has_initial_state = nullptr;  // (batch,) or null: all false
  int64_t has_initial_state_stride = 0;

  // Token range [begin, end) of sequence i, clamped into [0, num_tokens] so
  // that a malformed query_start_loc can never address outside x.
  C10_HOST_DEVICE void token_range(int64_t i, int64_t& begin, int64_t& end) const {
    begin = query_start_loc[i];
    end = query_start_loc[i + 1];
    begin = begin < 0 ? 0 : (begin > num_tokens ? num_tokens : begin);
    end = end < begin ? begin : (end > num_tokens ? num_tokens : end);
  }
};

// causal_conv1d_update: x is (batch, dim, seqlen); out may alias x.
struct UpdateParams : ConvParams {
  const void* x = nullptr;
  int64_t batch = 0, seqlen = 0;
  int64_t x_batch_stride = 0, x_dim_stride = 0, x_tok_stride = 0;
  void* out = nullptr;
  int64_t out_batch_stride = 0, out_dim_stride = 0, out_tok_stride = 0;

  IndexVec cache_seqlens;  // (batch,) or absent: linear (shifting) state
  IndexVec state_indices;  // (batch,) or absent: row b uses line b
};

}  // namespace causal_conv1d
