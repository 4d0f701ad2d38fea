// Plain descriptions of one call, handed from the op wrappers to the kernels.
// Kernels never see at::Tensor: only pointers, sizes and element strides, all
// 64-bit so that tensors over 2^31 elements index correctly.
#pragma once

#include <cstdint>

#include "torch_types.h"

// Every function here is forced inline: the CPU kernel sets include this header
// in translation units compiled with their own ISA flags, and an out-of-line
// copy emitted there (a weak symbol) could be the one the linker keeps for code
// that runs on CPUs without that ISA.
#define CAUSAL_CONV1D_INLINE C10_HOST_DEVICE C10_ALWAYS_INLINE

namespace causal_conv1d {

// Largest kernel width any backend supports (widths 2..kMaxWidth).
constexpr int kMaxWidth = 8;

// A 1-D int32 or int64 index tensor, read in place (no host copy, no cast).
struct IndexVec {
  const void* data = nullptr;
  int64_t stride = 1;
  bool is_int64 = false;

  CAUSAL_CONV1D_INLINE bool present() const { return data != nullptr; }
  CAUSAL_CONV1D_INLINE int64_t operator[](int64_t i) const {
    return is_int64 ? static_cast<const int64_t*>(data)[i * stride]
                    : static_cast<int64_t>(static_cast<const int32_t*>(data)[i * stride]);
  }
};

// A 2-D int32 or int64 index table (rows, columns), read or written in place.
struct IndexMat {
  void* data = nullptr;
  int64_t row_stride = 0, col_stride = 1;
  bool is_int64 = false;

  CAUSAL_CONV1D_INLINE bool present() const { return data != nullptr; }
  CAUSAL_CONV1D_INLINE int64_t get(int64_t r, int64_t c) const {
    const int64_t i = r * row_stride + c * col_stride;
    return is_int64 ? static_cast<const int64_t*>(data)[i]
                    : static_cast<int64_t>(static_cast<const int32_t*>(data)[i]);
  }
  CAUSAL_CONV1D_INLINE void set(int64_t r, int64_t c, int64_t v) const {
    const int64_t i = r * row_stride + c * col_stride;
    if (is_int64) {
      static_cast<int64_t*>(data)[i] = v;
    } else {
      static_cast<int32_t*>(data)[i] = static_cast<int32_t>(v);
    }
  }
};

// What both ops share: the filter and the conv-state cache.
struct ConvParams {
  int64_t dim = 0;
  int64_t width = 0;
  bool silu = false;
  int64_t pad_slot_id = -1;
  int64_t null_block_id = -1;  // a second padding id (vLLM's null block); pad_slot_id if unused
  // vLLM's convention (CONTRACT 1.4): the window is read from the front columns of
  // a line and only the columns the call defines are written; otherwise the
  // window is the last width-1 columns and the whole line shifts.
  bool front_window = false;

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

  // A cache line that is a pad id, or outside the cache, is padding.
  CAUSAL_CONV1D_INLINE bool is_padding(int64_t line) const {
    return line == pad_slot_id || line == null_block_id ||
           (states != nullptr && (line < 0 || line >= num_cache_lines));
  }

  // Columns of a line that a linear (non-ring) call treats as the state: the
  // front width-1 in vLLM's convention, all of them otherwise.
  CAUSAL_CONV1D_INLINE int64_t linear_len() const { return front_window ? width - 1 : state_len; }
};

// Clamps [begin, end) into [0, n] with begin <= end, so that a malformed
// query_start_loc can never address outside x.
CAUSAL_CONV1D_INLINE int64_t clamp_token(int64_t t, int64_t n) {
  return t < 0 ? 0 : (t > n ? n : t);
}

CAUSAL_CONV1D_INLINE void clamp_range(int64_t& begin, int64_t& end, int64_t n) {
  begin = clamp_token(begin, n);
  end = end < begin ? begin : (end > n ? n : end);
}

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

  // CUDA in place: each program's window, staged before any output is
  // written ((programs, width-1, dim) fp32; cuda/causal_conv1d_fwd.cu).
  float* halo = nullptr;

  // Whether each channel's tokens are contiguous in x and out (channel-first:
  // SGLang's JIT layout): the CPU walks such x a channel at a time.
  CAUSAL_CONV1D_INLINE bool channel_first() const {
    return x_tok_stride == 1 && out_tok_stride == 1 && x_dim_stride != 1 && dim > 1;
  }

  // Whether out is x (SGLang's CUDA API runs in place): a token's output may
  // only be written once no other output needs its input.
  CAUSAL_CONV1D_INLINE bool in_place() const { return out == x; }

  // Token range [begin, end) of sequence i, clamped into [0, num_tokens] so
  // that a malformed query_start_loc can never address outside x.
  CAUSAL_CONV1D_INLINE void token_range(int64_t i, int64_t& begin, int64_t& end) const {
    begin = query_start_loc[i];
    end = query_start_loc[i + 1];
    clamp_range(begin, end, num_tokens);
  }
};

// How one decode row moves its line (linear modes): the window is columns
// [base + live - (width-1), base + live) and, after the call, column j < ncols
// holds cat(line[base, base + live), x_row)[j + shift]; other columns keep
// their values. Every source column is right of its destination, so an
// ascending walk over j reads each column before it is overwritten.
struct LinePlan {
  int64_t base, live, shift, ncols;
};

// How a decode call keeps its lines (CONTRACT 1.2, 1.4), decided once from the
// arguments by make_update_params.
enum class StateMode : int8_t {
  kShift,      // the window is a line's last width-1 columns; the whole line shifts
  kRing,       // cache_seqlens: a ring buffer written from cache_seqlens[b] % state_len
  kFront,      // vLLM: the window is the front width-1 columns; only those are written
  kFrontSpec,  // vLLM speculative rows: the window starts at num_accepted_tokens[b] - 1
};

// causal_conv1d_update: x is (batch, dim, seqlen); out may alias x.
struct UpdateParams : ConvParams {
  StateMode mode = StateMode::kShift;

  const void* x = nullptr;
  int64_t batch = 0, seqlen = 0;
  int64_t x_batch_stride = 0, x_dim_stride = 0, x_tok_stride = 0;
  void* out = nullptr;
  int64_t out_batch_stride = 0, out_dim_stride = 0, out_tok_stride = 0;

  IndexVec cache_seqlens;  // (>= batch,): kRing only
  IndexVec state_indices;  // (>= batch,) or absent: row b uses line b

  // Varlen decode (vLLM): x is (num_tokens, dim) seen as (1, dim, num_tokens)
  // with x_batch_stride 0, and row b owns tokens [qsl[b], qsl[b+1]).
  IndexVec query_start_loc;  // (batch + 1,) or absent: row b owns x[b], seqlen tokens
  int64_t num_tokens = 0;    // tokens of x (varlen)
  // Speculative decoding (kFrontSpec): the window starts at column
  // num_accepted_tokens[b] - 1, clamped into [0, max_query_len - 1].
  IndexVec num_accepted_tokens;  // (>= batch,): kFrontSpec only
  int64_t max_query_len = 1;     // Lmax: longest row (x's seqlen unless varlen)

  // SGLang's EAGLE tree verify (CONTRACT 1.6): the tokens of row b are a tree
  // given as first-child (next_token) and next-sibling links; token t's taps
  // follow its parent chain back to token 0, then the window. parent_token
  // receives the parents. Links are (>= batch, >= seqlen) tables; -1 is none.
  IndexMat next_token, next_sibling, parent_token;
  // Per-token windows: the width-1 inputs ending at each token t of row b are
  // written to windows[windows_line(b), t, :, 0..width-2] (SGLang's
  // intermediate_conv_window), the line from window_indices (or b).
  void* windows = nullptr;
  c10::ScalarType window_type = c10::ScalarType::Float;
  int64_t window_lines = 0;
  int64_t window_line_stride = 0, window_step_stride = 0, window_dim_stride = 0,
          window_col_stride = 0;
  IndexVec window_indices;  // (>= batch,) or absent

  // Whether rows walk their tokens one by one (a tree, or windows to write).
  CAUSAL_CONV1D_INLINE bool walks_tokens() const {
    return next_token.present() || windows != nullptr;
  }

  // The line of row b's windows, or -1 where none is written (no windows, or
  // an index outside them).
  CAUSAL_CONV1D_INLINE int64_t windows_line(int64_t b) const {
    if (windows == nullptr) return -1;
    const int64_t l = window_indices.present() ? window_indices[b] : b;
    return l >= 0 && l < window_lines ? l : -1;
  }

  // The parent of each of row b's first L tokens: t - 1 without a tree (a
  // chain); with one, token 0 is the root and, in token order, t's first
  // child gets parent t and t's next sibling gets t's parent. A link that is
  // not to a later token (in [t + 1, L)) is ignored, so parent[u] < u for
  // u > 0 and every walk ends in the window.
  CAUSAL_CONV1D_INLINE void parents(int64_t b, int64_t L, int32_t* parent) const {
    const bool tree = next_token.present();
    for (int64_t t = 0; t < L; ++t) parent[t] = tree ? 0 : static_cast<int32_t>(t - 1);
    if (!tree) return;
    for (int64_t t = 0; t < L; ++t) {
      const int64_t child = next_token.get(b, t);
      if (child > t && child < L) parent[child] = static_cast<int32_t>(t);
      if (next_sibling.present()) {
        const int64_t sibling = next_sibling.get(b, t);
        if (sibling > t && sibling < L) parent[sibling] = parent[t];
      }
    }
  }

  // Token range of row b ([begin, begin + len) of x's token dim, in varlen
  // rows; [0, seqlen) of row b otherwise). False when the row must be treated
  // as padding: a speculative row longer than max_query_len.
  CAUSAL_CONV1D_INLINE bool row_tokens(int64_t b, int64_t& begin, int64_t& len) const {
    if (!query_start_loc.present()) {
      begin = 0;
      len = seqlen;
      return true;
    }
    begin = query_start_loc[b];
    int64_t end = query_start_loc[b + 1];
    clamp_range(begin, end, num_tokens);
    len = end - begin;
    return mode != StateMode::kFrontSpec || len <= max_query_len;
  }

  // Whether the line is linear (shifted or front-aligned, not a ring).
  CAUSAL_CONV1D_INLINE bool linear() const { return mode != StateMode::kRing; }

  // Whether every row is one plain decode step on a line of exactly width-1
  // columns (no varlen rows, no ring, no speculative window): the fast paths'
  // case, where all linear modes agree.
  CAUSAL_CONV1D_INLINE bool single_step() const {
    return linear() && !query_start_loc.present() && seqlen == 1 && state_len == width - 1 &&
           !walks_tokens();
  }

  // The linear plan of row b with len tokens (see LinePlan).
  CAUSAL_CONV1D_INLINE LinePlan line_plan(int64_t b, int64_t len) const {
    const int64_t H = width - 1;
    if (mode == StateMode::kFrontSpec) {
      int64_t o = num_accepted_tokens[b] - 1;
      o = o < 0 ? 0 : (o > max_query_len - 1 ? max_query_len - 1 : o);
      return {o, H, 1, H - 1 + len};
    }
    const int64_t live = linear_len();
    return {0, live, len, live};
  }
};

// causal_conv1d_batch_fwd / causal_conv1d_batch_bwd (the Dao dialect,
// CONTRACT 1.5): x is (batch, dim, seqlen) with any strides; row b's tokens
// start from initial_states[b] (or zeros) and, with seq_idx, a tap reads only
// tokens of its own token's sequence (the initial state belongs to the
// sequence of the row's first token; a negative id is padding). The states
// tensors have x's dtype. The cache fields of ConvParams are unused.
// A (batch, dim, token) tensor as its data and element strides.
struct View3 {
  void* data = nullptr;
  int64_t batch = 0, dim = 0, tok = 0;
  CAUSAL_CONV1D_INLINE bool present() const { return data != nullptr; }
};

struct BatchParams : ConvParams {
  int64_t batch = 0, seqlen = 0;
  View3 x;    // (batch, dim, seqlen)
  View3 out;  // forward: (batch, dim, seqlen)

  const int32_t* seq_idx = nullptr;  // (batch, seqlen) or null
  int64_t seq_batch_stride = 0, seq_tok_stride = 0;

  // (batch, dim, width-1) each, or absent.
  View3 initial_states;
  View3 final_states;  // forward: written

  // Backward: dout and dfinal_states in, dx and dinitial_states out (the
  // states ones may be absent).
  View3 dout, dfinal_states, dx, dinitial_states;
  // Backward: the filter's gradients, written (weight_type, bias_type).
  void* dweight = nullptr;  // (dim, width)
  int64_t dweight_dim_stride = 0, dweight_tap_stride = 0;
  void* dbias = nullptr;  // (dim,) or null without bias
  int64_t dbias_stride = 0;

  // The sequence id of token t of row b (0 without seq_idx).
  CAUSAL_CONV1D_INLINE int64_t sequence(int64_t b, int64_t t) const {
    return seq_idx == nullptr ? 0 : seq_idx[b * seq_batch_stride + t * seq_tok_stride];
  }
};

}  // namespace causal_conv1d
