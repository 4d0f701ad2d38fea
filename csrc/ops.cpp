// The ops: their schemas (TORCH_LIBRARY), the checks every call passes before
// any memory is touched, and the dispatcher-facing functions, written once as
// templates over a backend (ops.h) and registered for CPU and CUDA. A bad
// argument is a ValueError or TypeError (TORCH_CHECK_VALUE / _TYPE) whose
// message starts with the op's name and names the argument (CONTRACT 2); the
// Python dialects put their own function's name in its place.
#include "ops.h"

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <tuple>
#include <vector>

#include "settings.h"
#include "torch_api.h"

namespace causal_conv1d {
namespace {

using api::OptTensor;
using api::Sizes;
using api::Tensor;

// Integers reach error messages as strings formatted here, never through
// iostreams: with some installs (seen with the torch 2.11 wheel and GCC 13.3)
// an extension that streams an integer into c10::str crashes.
std::string num(int64_t v) { return std::to_string(v); }

// A shape as Python prints a tuple: (2,), (6, 80, 3).
std::string dims(Sizes sizes) {
  std::string s = "(";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i == 0 ? "" : ", ") + std::to_string(sizes[i]);
  return s + (sizes.size() == 1 ? ",)" : ")");
}

// Whether two shapes are equal.
bool same_sizes(Sizes a, Sizes b) { return std::equal(a.begin(), a.end(), b.begin(), b.end()); }

bool is_float_type(ScalarType t) {
  return t == ScalarType::Float || t == ScalarType::Half || t == ScalarType::BFloat16;
}

bool is_index_type(ScalarType t) { return t == ScalarType::Int || t == ScalarType::Long; }

void check_device(const char* op, const char* name, const Tensor& t, const Tensor& x) {
  CC1D_CHECK_VALUE(api::same_device(t, x), op, ": ", name, " must be on x's device ",
                   api::device_text(x), ", got ", api::device_text(t));
}

void check_float(const char* op, const char* name, const Tensor& t) {
  CC1D_CHECK_TYPE(is_float_type(t.scalar_type()), op, ": ", name,
                  " must be float32, float16 or bfloat16, got ", api::dtype_text(t.scalar_type()));
}

// On x's device and of a float dtype.
void check_floating(const char* op, const char* name, const Tensor& t, const Tensor& x) {
  check_device(op, name, t, x);
  check_float(op, name, t);
}

// `expected` is the pieces of the shape's text (strings and integers), put together only when
// the check fails: a decode step passes a dozen checks, and building their texts up front was
// a tenth of its host time.
template <typename... Expected>
void check_shape(const char* op, const char* name, bool ok, const Tensor& t,
                 const Expected&... expected) {
  CC1D_CHECK_VALUE(ok, op, ": ", name, " must have shape ", expected..., ", got ", dims(t.sizes()));
}

// out: x's shape, dtype and device.
void check_like_x(const char* op, const char* name, const Tensor& t, const Tensor& x) {
  check_device(op, name, t, x);
  CC1D_CHECK_VALUE(same_sizes(t.sizes(), x.sizes()) && t.scalar_type() == x.scalar_type(), op, ": ",
                   name, " must have x's shape ", dims(x.sizes()), " and dtype ",
                   api::dtype_text(x.scalar_type()), ", got ", dims(t.sizes()), " and ",
                   api::dtype_text(t.scalar_type()));
}

// A 1-D int32/int64 tensor (`dtype_ok`/`expected` for other kinds) on x's
// device with at least `size` entries: engines pass persistent buffers longer
// than the batch; entries past it are never read.
IndexVec index_vec(const char* op, const char* name, const Tensor& t, int64_t size,
                   const Tensor& x) {
  check_device(op, name, t, x);
  CC1D_CHECK_TYPE(is_index_type(t.scalar_type()), op, ": ", name, " must be int32 or int64, got ",
                  api::dtype_text(t.scalar_type()));
  check_shape(op, name, t.dim() == 1 && t.size(0) >= size, t, "(", size, ",) or be longer");
  IndexVec v;
  v.data = t.data_ptr();
  v.stride = t.stride(0);
  v.is_int64 = t.scalar_type() == ScalarType::Long;
  return v;
}

// query_start_loc: (batch + 1,) int32/int64 on x's device.
IndexVec query_starts(const char* op, const Tensor& q, const Tensor& x) {
  check_device(op, "query_start_loc", q, x);
  CC1D_CHECK_TYPE(is_index_type(q.scalar_type()), op,
                  ": query_start_loc must be int32 or int64, got ",
                  api::dtype_text(q.scalar_type()));
  check_shape(op, "query_start_loc", q.dim() == 1 && q.size(0) >= 1, q, "(batch + 1,)");
  return index_vec(op, "query_start_loc", q, q.size(0), x);
}

// A 2-D int32/int64 table on x's device with at least rows x cols entries
// (SGLang's EAGLE tree links: (batch, draft tokens), or longer buffers).
IndexMat index_mat(const char* op, const char* name, const Tensor& t, int64_t rows, int64_t cols,
                   const Tensor& x) {
  check_device(op, name, t, x);
  CC1D_CHECK_TYPE(is_index_type(t.scalar_type()), op, ": ", name, " must be int32 or int64, got ",
                  api::dtype_text(t.scalar_type()));
  check_shape(op, name, t.dim() == 2 && t.size(0) >= rows && t.size(1) >= cols, t, "(", rows, ", ",
              cols, ") or be larger");
  IndexMat m;
  m.data = t.data_ptr();
  m.row_stride = t.stride(0);
  m.col_stride = t.stride(1);
  m.is_int64 = t.scalar_type() == ScalarType::Long;
  return m;
}

// x's channel count (x.size(axis)) checked against weight's and the states'
// before either is checked on its own: where they disagree, the argument
// most likely wrong is named (x when weight and the states agree on another
// dim, or when x has weight's dim on another axis, as an untransposed
// (num_tokens, dim) prefill x has), with the layout x must have. Otherwise
// the checks of weight and the states that follow name them.
void check_channels(const char* op, const Tensor& x, int64_t axis, const char* layout,
                    const Tensor& weight, const char* states_name, const Tensor* states) {
  const int64_t dim = x.size(axis);
  if (weight.dim() != 2 || weight.size(0) == dim) return;
  const int64_t wanted = weight.size(0);
  const int64_t state_dim = states != nullptr && states->dim() == 3 ? states->size(1) : -1;
  if (state_dim == dim) return;  // x and the states agree: weight is named
  bool swapped = false;
  for (int64_t i = 0; i < x.dim(); ++i) swapped |= i != axis && x.size(i) == wanted;
  if (!swapped && state_dim != wanted) return;
  std::string source = "weight " + dims(weight.sizes());
  if (state_dim == wanted) source += std::string(" and ") + states_name + " " + dims(states->sizes());
  CC1D_CHECK_VALUE(false, op, ": x must have shape ", layout, " with dim=", num(wanted),
                   " (the dim of ", source, "), got ", dims(x.sizes()),
                   swapped ? ": it looks transposed; pass x.t() (a view, no copy)" : "");
}

// Fills the filter and cache fields for x's `dim` channels; `states` may be
// null (no cache).
void fill_conv_params(ConvParams& p, const char* op, const Tensor& x, int64_t dim,
                      const Tensor& weight, const OptTensor& bias, const Tensor* states,
                      const char* states_name, bool silu, int64_t pad_slot_id,
                      int64_t null_block_id, bool front_window) {
  check_floating(op, "weight", weight, x);
  if (!(weight.dim() == 2 && weight.size(0) == dim)) {
    const bool transposed = weight.dim() == 2 && weight.size(1) == dim;
    CC1D_CHECK_VALUE(false, op, ": weight must have shape (dim=", num(dim),
                     ", width), dim being x's, got ", dims(weight.sizes()),
                     transposed ? ": it looks transposed, (width, dim)" : "");
  }
  const int64_t width = weight.size(1);
  CC1D_CHECK_VALUE(width >= 2 && width <= kMaxWidth, op, ": weight width must be in [2, ",
                   num(kMaxWidth), "], got ", num(width));
  p.dim = dim;
  p.width = width;
  p.silu = silu;
  p.pad_slot_id = pad_slot_id;
  p.null_block_id = null_block_id;
  p.front_window = front_window;
  p.x_type = x.scalar_type();
  p.weight = weight.data_ptr();
  p.weight_type = weight.scalar_type();
  p.weight_dim_stride = weight.stride(0);
  p.weight_tap_stride = weight.stride(1);

  if (bias.has_value()) {
    check_floating(op, "bias", *bias, x);
    check_shape(op, "bias", bias->dim() == 1 && bias->size(0) == dim, *bias, "(", dim, ",)");
    p.bias = bias->data_ptr();
    p.bias_type = bias->scalar_type();
    p.bias_stride = bias->stride(0);
  }

  if (states != nullptr) {
    const Tensor& s = *states;
    check_floating(op, states_name, s, x);
    check_shape(op, states_name, s.dim() == 3 && s.size(1) == dim && s.size(2) >= width - 1, s,
                "(num_cache_lines, dim=", dim, ", state_len >= ", width - 1, " = width-1)");
    p.states = s.data_ptr();
    p.state_type = s.scalar_type();
    p.num_cache_lines = s.size(0);
    p.state_len = s.size(2);
    p.state_line_stride = s.stride(0);
    p.state_dim_stride = s.stride(1);
    p.state_tok_stride = s.stride(2);
  }
}

// causal_conv1d_fwd_out's checks (CONTRACT 1.1); out must have x's shape and dtype.
FwdParams make_fwd_params(const Tensor& x, const Tensor& weight, const OptTensor& bias,
                          const OptTensor& conv_states, const Tensor& query_start_loc,
                          const OptTensor& cache_indices, const OptTensor& has_initial_state,
                          bool silu, int64_t pad_slot_id, const Tensor& out, int64_t null_block_id,
                          bool front_window) {
  constexpr const char* op = "causal_conv1d_fwd";
  constexpr const char* layout = "(dim, num_tokens)";
  check_float(op, "x", x);
  check_shape(op, "x", x.dim() == 2, x, layout);
  const Tensor* states = conv_states.has_value() ? &*conv_states : nullptr;
  check_channels(op, x, 0, layout, weight, "conv_states", states);
  FwdParams p;
  fill_conv_params(p, op, x, x.size(0), weight, bias, states, "conv_states", silu, pad_slot_id,
                   null_block_id, front_window);
  p.query_start_loc = query_starts(op, query_start_loc, x);
  p.batch = query_start_loc.size(0) - 1;
  if (cache_indices.has_value()) {
    p.cache_indices = index_vec(op, "cache_indices", *cache_indices, p.batch, x);
  }
  if (has_initial_state.has_value()) {
    const Tensor& h = *has_initial_state;
    CC1D_CHECK_VALUE(conv_states.has_value(), op,
                     ": has_initial_state needs conv_states to read the initial state from");
    check_device(op, "has_initial_state", h, x);
    CC1D_CHECK_TYPE(h.scalar_type() == ScalarType::Bool, op,
                    ": has_initial_state must be bool, got ", api::dtype_text(h.scalar_type()));
    check_shape(op, "has_initial_state", h.dim() == 1 && h.size(0) >= p.batch, h, "(", p.batch,
                ",) or be longer");
    p.has_initial_state = static_cast<const bool*>(h.data_ptr());
    p.has_initial_state_stride = h.stride(0);
  }
  check_like_x(op, "out", out, x);
  // In place (SGLang's CUDA API writes the outputs into x): out is x exactly.
  CC1D_CHECK_VALUE(out.numel() == 0 || out.data_ptr() != x.data_ptr() ||
                       same_sizes(out.strides(), x.strides()),
                   op, ": out may be x itself (in place) but not another view of its memory");
  p.x = x.data_ptr();
  p.num_tokens = x.size(1);
  p.x_dim_stride = x.stride(0);
  p.x_tok_stride = x.stride(1);
  p.out = out.data_ptr();
  p.out_dim_stride = out.stride(0);
  p.out_tok_stride = out.stride(1);
  return p;
}

// SGLang's tree verify and per-token windows (CONTRACT 1.6): front-aligned
// rows of x (batch, dim, seqlen), not varlen, not ring buffers; out a buffer
// of its own (the walk reads a parent's x after the parent's output is out).
void fill_token_walk(UpdateParams& p, const Tensor& x, const Tensor& out, const OptTensor& windows,
                     const OptTensor& window_indices, const OptTensor& next_token,
                     const OptTensor& next_sibling, const OptTensor& parent_token,
                     const Tensor& conv_state) {
  constexpr const char* op = "causal_conv1d_update";
  const bool tree = next_token.has_value();
  CC1D_CHECK_VALUE(!next_sibling.has_value() || tree, op,
                   ": retrieve_next_sibling needs retrieve_next_token");
  CC1D_CHECK_VALUE(!parent_token.has_value() || tree, op,
                   ": retrieve_parent_token needs retrieve_next_token");
  CC1D_CHECK_VALUE(!window_indices.has_value() || windows.has_value(), op,
                   ": intermediate_state_indices needs intermediate_conv_window");
  if (!tree && !windows.has_value()) return;
  const char* what = tree ? "retrieve_next_token" : "intermediate_conv_window";
  CC1D_CHECK_VALUE(p.front_window && p.mode != StateMode::kRing && !p.query_start_loc.present(),
                   op, ": ", what,
                   " needs front-aligned lines (the vLLM/SGLang convention) and x of shape "
                   "(batch, dim[, seqlen]): not cache_seqlens, not query_start_loc");
  CC1D_CHECK_VALUE(out.numel() == 0 || out.data_ptr() != x.data_ptr(), op, ": with ", what,
                   ", out must not be x (a token's window reads its parents' x)");
  if (tree) {
    p.next_token = index_mat(op, "retrieve_next_token", *next_token, p.batch, p.seqlen, x);
    if (next_sibling.has_value())
      p.next_sibling = index_mat(op, "retrieve_next_sibling", *next_sibling, p.batch, p.seqlen, x);
    if (parent_token.has_value())
      p.parent_token =
          index_mat(op, "retrieve_parent_token", *parent_token, p.batch, p.seqlen, x);
  }
  if (windows.has_value()) {
    const Tensor& w = *windows;
    check_device(op, "intermediate_conv_window", w, x);
    CC1D_CHECK_TYPE(w.scalar_type() == conv_state.scalar_type(), op,
                    ": intermediate_conv_window must have conv_state's dtype ",
                    api::dtype_text(conv_state.scalar_type()), ", got ",
                    api::dtype_text(w.scalar_type()));
    check_shape(op, "intermediate_conv_window",
                w.dim() == 4 && w.size(1) >= p.seqlen && w.size(2) == p.dim &&
                    w.size(3) >= p.width - 1,
                w, "(num_lines, steps >= ", p.seqlen, ", dim=", p.dim, ", >= width-1=", p.width - 1,
                ")");
    p.windows = w.data_ptr();
    p.window_type = w.scalar_type();
    p.window_lines = w.size(0);
    p.window_line_stride = w.stride(0);
    p.window_step_stride = w.stride(1);
    p.window_dim_stride = w.stride(2);
    p.window_col_stride = w.stride(3);
    if (window_indices.has_value()) {
      p.window_indices =
          index_vec(op, "intermediate_state_indices", *window_indices, p.batch, x);
    } else {
      CC1D_CHECK_VALUE(p.window_lines >= p.batch, op,
                       ": without intermediate_state_indices, intermediate_conv_window needs a "
                       "line per row (>= ",
                       num(p.batch), "), got ", dims(w.sizes()));
    }
  }
}

// causal_conv1d_update's checks (CONTRACT 1.2, and 1.4's varlen and
// speculative rows), and the state mode they decide.
UpdateParams make_update_params(const Tensor& x_in, const Tensor& conv_state, const Tensor& weight,
                                const OptTensor& bias, bool silu, const OptTensor& cache_seqlens,
                                const OptTensor& conv_state_indices, int64_t pad_slot_id,
                                const Tensor& out_in, const OptTensor& num_accepted_tokens,
                                const OptTensor& query_start_loc, int64_t max_query_len,
                                int64_t null_block_id, bool front_window,
                                const OptTensor& intermediate_conv_window,
                                const OptTensor& intermediate_state_indices,
                                const OptTensor& retrieve_next_token,
                                const OptTensor& retrieve_next_sibling,
                                const OptTensor& retrieve_parent_token) {
  constexpr const char* op = "causal_conv1d_update";
  const bool varlen = query_start_loc.has_value();
  const char* layout =
      varlen ? "(num_tokens, dim) with query_start_loc" : "(batch, dim) or (batch, dim, seqlen)";
  check_float(op, "x", x_in);
  check_shape(op, "x", varlen ? x_in.dim() == 2 : x_in.dim() == 2 || x_in.dim() == 3, x_in,
              layout);
  check_channels(op, x_in, 1, layout, weight, "conv_state", &conv_state);
  UpdateParams p;
  fill_conv_params(p, op, x_in, x_in.size(1), weight, bias, &conv_state, "conv_state", silu,
                   pad_slot_id, null_block_id, front_window);
  check_like_x(op, "out", out_in, x_in);
  // x and out as (rows, dim, tokens), from their own strides (no view is made: on the stable
  // ABI a view is a dispatcher call, about as long as the rest of the op layer): varlen
  // (num_tokens, dim) is one row of num_tokens tokens, (batch, dim) rows of one token.
  struct RowStrides {
    int64_t batch, dim, tok;
  };
  const auto row_strides = [&](const Tensor& t) -> RowStrides {
    if (varlen) return {0, t.stride(1), t.stride(0)};
    return {t.stride(0), t.stride(1), t.dim() == 3 ? t.stride(2) : 1};
  };
  const RowStrides xs = row_strides(x_in), os = row_strides(out_in);
  p.x = x_in.data_ptr();
  p.x_batch_stride = xs.batch;
  p.x_dim_stride = xs.dim;
  p.x_tok_stride = xs.tok;
  p.out = out_in.data_ptr();
  p.out_batch_stride = os.batch;
  p.out_dim_stride = os.dim;
  p.out_tok_stride = os.tok;
  p.seqlen = varlen ? x_in.size(0) : x_in.dim() == 3 ? x_in.size(2) : 1;
  if (varlen) {
    p.query_start_loc = query_starts(op, *query_start_loc, x_in);
    p.batch = query_start_loc->size(0) - 1;
    p.num_tokens = p.seqlen;
    p.max_query_len = max_query_len;
  } else {
    p.batch = x_in.size(0);
    p.max_query_len = p.seqlen;
  }

  CC1D_CHECK_VALUE(
      !cache_seqlens.has_value() || (!varlen && !num_accepted_tokens.has_value() && !front_window),
      op, ": cache_seqlens (ring buffers) cannot be combined with query_start_loc, ",
      "num_accepted_tokens or front-aligned windows");
  if (cache_seqlens.has_value()) {
    p.cache_seqlens = index_vec(op, "cache_seqlens", *cache_seqlens, p.batch, x_in);
  }
  if (conv_state_indices.has_value()) {
    p.state_indices = index_vec(op, "conv_state_indices", *conv_state_indices, p.batch, x_in);
  } else {
    CC1D_CHECK_VALUE(p.num_cache_lines >= p.batch, op,
                     ": without conv_state_indices, conv_state needs a line per row (>= ",
                     num(p.batch), "), got ", num(p.num_cache_lines));
  }
  if (num_accepted_tokens.has_value()) {
    p.num_accepted_tokens =
        index_vec(op, "num_accepted_tokens", *num_accepted_tokens, p.batch, x_in);
    CC1D_CHECK_VALUE(p.max_query_len >= 1, op,
                     ": num_accepted_tokens with query_start_loc needs max_query_len >= 1, got ",
                     num(max_query_len));
    CC1D_CHECK_VALUE(p.state_len >= p.width - 2 + p.max_query_len, op,
                     ": with num_accepted_tokens, conv_state needs width - 1 + max_query_len - 1"
                     " = ",
                     num(p.width - 2 + p.max_query_len), " columns (state_len), got ",
                     dims(conv_state.sizes()));
  }
  p.mode = cache_seqlens.has_value()         ? StateMode::kRing
           : num_accepted_tokens.has_value() ? StateMode::kFrontSpec
           : front_window                    ? StateMode::kFront
                                             : StateMode::kShift;
  fill_token_walk(p, x_in, out_in, intermediate_conv_window, intermediate_state_indices,
                  retrieve_next_token, retrieve_next_sibling, retrieve_parent_token, conv_state);
  return p;
}

// causal_conv1d_update_step_out: causal_conv1d_update without the dialects' speculative and tree
// arguments, the plain decode step. Its host time is the point: every argument of a call costs
// the dispatcher and the stable ABI's boxing about as much as a check of ours.
UpdateParams make_step_params(const Tensor& x, const Tensor& conv_state, const Tensor& weight,
                              const OptTensor& bias, bool silu, const OptTensor& cache_seqlens,
                              const OptTensor& conv_state_indices, int64_t pad_slot_id,
                              const Tensor& out, int64_t null_block_id, bool front_window) {
  return make_update_params(x, conv_state, weight, bias, silu, cache_seqlens, conv_state_indices,
                            pad_slot_id, out, {}, {}, -1, null_block_id, front_window, {}, {}, {},
                            {}, {});
}

// A (batch, dim, width-1) tensor of x's dtype and device.
void check_batch_states(const char* op, const char* name, const Tensor& t, const Tensor& x,
                        int64_t width) {
  check_floating(op, name, t, x);
  CC1D_CHECK_TYPE(t.scalar_type() == x.scalar_type(), op, ": ", name, " must have x's dtype ",
                  api::dtype_text(x.scalar_type()), ", got ", api::dtype_text(t.scalar_type()));
  const std::vector<int64_t> expected{x.size(0), x.size(1), width - 1};
  check_shape(op, name, same_sizes(t.sizes(), expected), t, dims(expected));
}

View3 view3(const Tensor& t) { return {t.data_ptr(), t.stride(0), t.stride(1), t.stride(2)}; }

// x, the filter, seq_idx and the initial states of both batch ops.
BatchParams batch_params(const char* op, const Tensor& x, const Tensor& weight,
                         const OptTensor& bias, const OptTensor& seq_idx,
                         const OptTensor& initial_states, bool silu) {
  constexpr const char* layout = "(batch, dim, seqlen)";
  check_float(op, "x", x);
  check_shape(op, "x", x.dim() == 3, x, layout);
  check_channels(op, x, 1, layout, weight, "initial_states",
                 initial_states.has_value() ? &*initial_states : nullptr);
  BatchParams p;
  fill_conv_params(p, op, x, x.size(1), weight, bias, nullptr, "", silu, -1, -1, false);
  p.batch = x.size(0);
  p.seqlen = x.size(2);
  p.x = view3(x);
  if (seq_idx.has_value()) {
    const Tensor& q = *seq_idx;
    check_device(op, "seq_idx", q, x);
    CC1D_CHECK_TYPE(q.scalar_type() == ScalarType::Int, op, ": seq_idx must be int32, got ",
                    api::dtype_text(q.scalar_type()));
    check_shape(op, "seq_idx", q.dim() == 2 && q.size(0) == p.batch && q.size(1) == p.seqlen,
                q, dims({p.batch, p.seqlen}));
    p.seq_idx = static_cast<const int32_t*>(q.data_ptr());
    p.seq_batch_stride = q.stride(0);
    p.seq_tok_stride = q.stride(1);
  }
  if (initial_states.has_value()) {
    check_batch_states(op, "initial_states", *initial_states, x, p.width);
    p.initial_states = view3(*initial_states);
  }
  return p;
}

// causal_conv1d_batch_fwd's checks (CONTRACT 1.5); final_states may be
// undefined (not returned).
BatchParams make_batch_fwd_params(const Tensor& x, const Tensor& weight, const OptTensor& bias,
                                  const OptTensor& seq_idx, const OptTensor& initial_states,
                                  bool silu, const Tensor& out, const Tensor& final_states) {
  constexpr const char* op = "causal_conv1d_batch_fwd";
  BatchParams p = batch_params(op, x, weight, bias, seq_idx, initial_states, silu);
  check_like_x(op, "out", out, x);
  CC1D_CHECK_VALUE(out.numel() == 0 || out.data_ptr() != x.data_ptr(), op, ": out must not be x");
  p.out = view3(out);
  if (final_states.defined()) {
    CC1D_CHECK_VALUE(!seq_idx.has_value(), op,
                     ": return_final_states: final states are not returned with seq_idx (as "
                     "in Dao's causal_conv1d 1.7)");
    check_batch_states(op, "final_states_out", final_states, x, p.width);
    p.final_states = view3(final_states);
  }
  return p;
}

// The same for causal_conv1d_batch_bwd: dx has x's shape, dinitial_states may
// be undefined (not wanted).
BatchParams make_batch_bwd_params(const Tensor& x, const Tensor& weight, const OptTensor& bias,
                                  const OptTensor& seq_idx, const OptTensor& initial_states,
                                  const Tensor& dout, const OptTensor& dfinal_states, bool silu,
                                  const Tensor& dx, const Tensor& dinitial_states) {
  constexpr const char* op = "causal_conv1d_batch_bwd";
  BatchParams p = batch_params(op, x, weight, bias, seq_idx, initial_states, silu);
  check_like_x(op, "dout", dout, x);
  check_like_x(op, "dx", dx, x);
  p.dout = view3(dout);
  p.dx = view3(dx);
  if (dfinal_states.has_value()) {
    CC1D_CHECK_VALUE(!seq_idx.has_value(), op,
                     ": dfinal_states with seq_idx (final states are not returned with seq_idx)");
    check_batch_states(op, "dfinal_states", *dfinal_states, x, p.width);
    p.dfinal_states = view3(*dfinal_states);
  }
  if (dinitial_states.defined()) {
    CC1D_CHECK_VALUE(initial_states.has_value(), op,
                     ": dinitial_states asked for without initial_states");
    check_batch_states(op, "dinitial_states", dinitial_states, x, p.width);
    p.dinitial_states = view3(dinitial_states);
  }
  return p;
}

// ---- Outputs ----

std::vector<int64_t> row_major_strides(Sizes sizes) {
  std::vector<int64_t> strides(sizes.size(), 1);
  for (int64_t d = static_cast<int64_t>(sizes.size()) - 2; d >= 0; --d)
    strides[d] = strides[d + 1] * std::max<int64_t>(sizes[d + 1], 1);
  return strides;
}

// An output on x's device, from the backend's allocator. Outputs are made
// before the checks (they take part in them); where x is not on the backend's
// device (another tensor of the call sent it here), the checks that follow
// name the tensor on the wrong device, so a plain allocation serves.
template <class B>
Tensor output(const Tensor& x, Sizes sizes, Sizes strides) {
  if (!B::owns(x)) return api::empty_strided(sizes, strides, x.scalar_type(), x);
  return B::empty(sizes, strides, x.scalar_type(), x);
}

// The fwd op's output: channel-last when x is, else contiguous.
template <class B>
Tensor fwd_output(const Tensor& x) {
  if (x.dim() == 2 && x.stride(0) == 1 && x.stride(1) != 1)
    return output<B>(x, x.sizes(), {1, x.size(0)});
  return output<B>(x, x.sizes(), row_major_strides(x.sizes()));
}

// Shaped like x: x's strides when x is dense and non-overlapping, else
// contiguous (as torch.empty_like).
template <class B>
Tensor like_x(const Tensor& x) {
  if (api::dense(x)) return output<B>(x, x.sizes(), x.strides());
  return output<B>(x, x.sizes(), row_major_strides(x.sizes()));
}

// An empty (0,) tensor of t's dtype and device: an output not asked for.
Tensor nothing_like(const Tensor& t) {
  return api::empty_strided(std::vector<int64_t>{0}, std::vector<int64_t>{1}, t.scalar_type(), t);
}

// The batch ops' states: (batch, dim, width-1) channel-last as Dao allocates
// them, or an empty (0,) tensor where not asked for.
Tensor batch_states(const Tensor& x, int64_t width, bool wanted) {
  if (!wanted) return nothing_like(x);
  const int64_t dim = x.size(1);
  return api::empty_strided(std::vector<int64_t>{x.size(0), dim, width - 1},
                            std::vector<int64_t>{(width - 1) * dim, 1, dim}, x.scalar_type(), x);
}

// ---- The dispatcher-facing functions, over a backend B ----

// x's device is current while the backend runs (CUDA: its stream is the one launched on).
template <class B>
struct DeviceScope {
  explicit DeviceScope(const Tensor& x) : current((check(x), x)) {}
  static void check(const Tensor& x) {
    CC1D_CHECK_VALUE(B::owns(x), "causal_conv1d: x must be on a ", B::kName, " device here, got ",
                     api::device_text(x));
  }
  api::CurrentDevice current;
};

bool nothing_to_do(const FwdParams& p) { return p.batch == 0 || p.dim == 0 || p.num_tokens == 0; }
bool nothing_to_do(const UpdateParams& p) { return p.batch == 0 || p.dim == 0 || p.seqlen == 0; }

template <class B>
void run(const Tensor& x, const FwdParams& p) {
  const DeviceScope<B> scope(x);
  if (!nothing_to_do(p)) B::fwd(p);
}
template <class B>
void run(const Tensor& x, const UpdateParams& p) {
  const DeviceScope<B> scope(x);
  if (!nothing_to_do(p)) B::update(p);
}

// The op whose arguments are exactly Make's (x first): its checks, then the
// backend's kernels. The argument list is written once, in Make.
template <class B, auto Make>
struct Entry;
template <class B, class P, class... Rest, P (*Make)(const Tensor&, Rest...)>
struct Entry<B, Make> {
  static void call(const Tensor& x, Rest... rest) { run<B>(x, Make(x, rest...)); }
};

// causal_conv1d_fwd: causal_conv1d_fwd_out into a new output.
template <class B>
Tensor fwd(const Tensor& x, const Tensor& weight, const OptTensor& bias,
           const OptTensor& conv_states, const Tensor& query_start_loc,
           const OptTensor& cache_indices, const OptTensor& has_initial_state, bool silu,
           int64_t pad_slot_id, int64_t null_block_id, bool front_window) {
  Tensor out = fwd_output<B>(x);
  run<B>(x, make_fwd_params(x, weight, bias, conv_states, query_start_loc, cache_indices,
                            has_initial_state, silu, pad_slot_id, out, null_block_id,
                            front_window));
  return out;
}

// causal_conv1d_update_step: causal_conv1d_update_step_out into a new output shaped like x
// (torch.empty_like's layout). Allocated here, through the C shim, the output costs a decode
// call about 0.3 us less host time than torch.empty_like in Python and an `out` argument (dev
// box, one thread: the SGLang CPU API 5.57 -> 5.28 us at D 64).
template <class B>
Tensor step(const Tensor& x, const Tensor& conv_state, const Tensor& weight,
            const OptTensor& bias, bool silu, const OptTensor& cache_seqlens,
            const OptTensor& conv_state_indices, int64_t pad_slot_id, int64_t null_block_id,
            bool front_window) {
  Tensor out = like_x<B>(x);
  run<B>(x, make_step_params(x, conv_state, weight, bias, silu, cache_seqlens,
                             conv_state_indices, pad_slot_id, out, null_block_id, front_window));
  return out;
}

template <class B>
std::tuple<Tensor, Tensor> batch_fwd(const Tensor& x, const Tensor& weight, const OptTensor& bias,
                                     const OptTensor& seq_idx, const OptTensor& initial_states,
                                     bool return_final_states, bool silu) {
  const int64_t width = weight.dim() == 2 ? weight.size(1) : 0;
  Tensor out = like_x<B>(x);
  Tensor final_states = batch_states(x, width, return_final_states);
  const BatchParams p = make_batch_fwd_params(x, weight, bias, seq_idx, initial_states, silu, out,
                                              return_final_states ? final_states : Tensor());
  const DeviceScope<B> scope(x);
  if (p.batch > 0 && p.dim > 0) B::batch_fwd(p);
  return {out, final_states};
}

// dweight has weight's dtype; dbias bias's, or is an empty (0,) tensor without bias.
template <class B>
std::tuple<Tensor, Tensor, Tensor, Tensor> batch_bwd(
    const Tensor& x, const Tensor& weight, const OptTensor& bias, const OptTensor& seq_idx,
    const OptTensor& initial_states, const Tensor& dout, const OptTensor& dfinal_states, bool silu,
    bool return_dinitial_states, bool deterministic) {
  Tensor dx = like_x<B>(x);
  const bool want_dinit = return_dinitial_states && initial_states.has_value();
  Tensor dinit = want_dinit ? like_x<B>(*initial_states) : nothing_like(x);
  BatchParams p = make_batch_bwd_params(x, weight, bias, seq_idx, initial_states, dout,
                                        dfinal_states, silu, dx, want_dinit ? dinit : Tensor());
  Tensor dweight = api::empty_strided(std::vector<int64_t>{p.dim, p.width},
                                      std::vector<int64_t>{p.width, 1}, weight.scalar_type(), x);
  Tensor dbias = bias.has_value()
                     ? api::empty_strided(std::vector<int64_t>{p.dim}, std::vector<int64_t>{1},
                                          bias->scalar_type(), x)
                     : nothing_like(weight);
  p.dweight = dweight.data_ptr();
  p.dweight_dim_stride = dweight.stride(0);
  p.dweight_tap_stride = dweight.stride(1);
  if (bias.has_value()) {
    p.dbias = dbias.data_ptr();
    p.dbias_stride = dbias.stride(0);
  }
  const DeviceScope<B> scope(x);
  if (p.dim == 0) return {dx, dweight, dbias, dinit};
  if (p.batch == 0) {
    api::zero(dweight);
    api::zero(dbias);
    return {dx, dweight, dbias, dinit};
  }
  B::batch_bwd(p, deterministic);
  return {dx, dweight, dbias, dinit};
}

template <class B>
void register_backend(api::Library& m) {
  CAUSAL_CONV1D_IMPL(m, "causal_conv1d_fwd", &fwd<B>);
  constexpr auto fwd_out = &Entry<B, &make_fwd_params>::call;
  constexpr auto update = &Entry<B, &make_update_params>::call;
  CAUSAL_CONV1D_IMPL(m, "causal_conv1d_fwd_out", fwd_out);
  CAUSAL_CONV1D_IMPL(m, "causal_conv1d_update", update);
  constexpr auto step_out = &Entry<B, &make_step_params>::call;
  CAUSAL_CONV1D_IMPL(m, "causal_conv1d_update_step", &step<B>);
  CAUSAL_CONV1D_IMPL(m, "causal_conv1d_update_step_out", step_out);
  CAUSAL_CONV1D_IMPL(m, "causal_conv1d_batch_fwd", &batch_fwd<B>);
  CAUSAL_CONV1D_IMPL(m, "causal_conv1d_batch_bwd", &batch_bwd<B>);
}

std::atomic<bool>& pdl_setting() {
  static std::atomic<bool> on{setting_on(Setting::kPdl)};
  return on;
}

}  // namespace

bool pdl_enabled() { return pdl_setting().load(std::memory_order_relaxed); }

bool set_pdl(bool enabled) { return pdl_setting().exchange(enabled); }

std::string abi_name() { return api::kAbi; }

std::string setting(const std::string& name) {
  const std::optional<std::string> text = setting_text(name);
  CC1D_CHECK_VALUE(text.has_value(), "setting: no setting is called ", name,
                   "; causal_conv1d_kernels.settings() lists them");
  return *text;
}

}  // namespace causal_conv1d

CAUSAL_CONV1D_LIBRARY(causal_conv1d, m) {
  m.def(
      "causal_conv1d_fwd(Tensor x, Tensor weight, Tensor? bias, Tensor(a!)? conv_states, "
      "Tensor query_start_loc, Tensor? cache_indices, Tensor? has_initial_state, bool silu, "
      "int pad_slot_id, int null_block_id=-1, bool front_window=False) -> Tensor");
  // The same into a caller's buffer (x's shape and dtype, any strides, not overlapping x).
  m.def(
      "causal_conv1d_fwd_out(Tensor x, Tensor weight, Tensor? bias, Tensor(a!)? conv_states, "
      "Tensor query_start_loc, Tensor? cache_indices, Tensor? has_initial_state, bool silu, "
      "int pad_slot_id, Tensor(b!) out, int null_block_id=-1, bool front_window=False) -> ()");
  // num_accepted_tokens, query_start_loc, max_query_len, null_block_id and
  // front_window carry the vLLM dialect (CONTRACT 1.4), the intermediate_* and
  // retrieve_* arguments SGLang's EAGLE tree verify (CONTRACT 1.6); their
  // defaults are the core API.
  m.def(
      "causal_conv1d_update(Tensor x, Tensor(a!) conv_state, Tensor weight, Tensor? bias, "
      "bool silu, Tensor? cache_seqlens, Tensor? conv_state_indices, int pad_slot_id, "
      "Tensor(b!) out, Tensor? num_accepted_tokens=None, Tensor? query_start_loc=None, "
      "int max_query_len=-1, int null_block_id=-1, bool front_window=False, "
      "Tensor(c!)? intermediate_conv_window=None, Tensor? intermediate_state_indices=None, "
      "Tensor? retrieve_next_token=None, Tensor? retrieve_next_sibling=None, "
      "Tensor(d!)? retrieve_parent_token=None) -> ()");
  // The same without the speculative and tree arguments: the plain decode step, whose host
  // time per call is most of the step at small batches; into a new output shaped like x, or
  // into a caller's (_out).
  m.def(
      "causal_conv1d_update_step(Tensor x, Tensor(a!) conv_state, Tensor weight, Tensor? bias, "
      "bool silu, Tensor? cache_seqlens, Tensor? conv_state_indices, int pad_slot_id, "
      "int null_block_id=-1, bool front_window=False) -> Tensor");
  m.def(
      "causal_conv1d_update_step_out(Tensor x, Tensor(a!) conv_state, Tensor weight, "
      "Tensor? bias, bool silu, Tensor? cache_seqlens, Tensor? conv_state_indices, "
      "int pad_slot_id, Tensor(b!) out, int null_block_id=-1, bool front_window=False) -> ()");
  // The Dao dialect's training ops (CONTRACT 1.5): x (batch, dim, seqlen), seq_idx, initial
  // and final states of their own; functional, so that autograd can be registered on them.
  // final_states is (batch, dim, width-1) when return_final_states, else empty (0,).
  m.def(
      "causal_conv1d_batch_fwd(Tensor x, Tensor weight, Tensor? bias, Tensor? seq_idx, "
      "Tensor? initial_states, bool return_final_states, bool silu) -> (Tensor, Tensor)");
  // dbias is empty (0,) without bias, dinitial_states without return_dinitial_states.
  // deterministic: the same bits on every run (the CPU kernels always are).
  m.def(
      "causal_conv1d_batch_bwd(Tensor x, Tensor weight, Tensor? bias, Tensor? seq_idx, "
      "Tensor? initial_states, Tensor dout, Tensor? dfinal_states, bool silu, "
      "bool return_dinitial_states, bool deterministic) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("cpu_isa() -> str");
  // Frees the memory the CPU backend keeps for large outputs; returns the bytes freed.
  m.def("release_cpu_pool() -> int");
  // Programmatic dependent launch on or off for later CUDA launches; returns the previous setting.
  m.def("set_pdl(bool enabled) -> bool");
  // The run-time settings (settings.h): the table, six strings per setting, and one
  // setting's text as the library reads it.
  m.def("settings() -> str[]");
  m.def("setting(str name) -> str");
  // The build: "stable" (torch's stable ABI: loads into this torch and every later one) or
  // "classic" (only into the torch it was built against).
  m.def("abi() -> str");
}

// The ops without tensors: one kernel for every device.
CAUSAL_CONV1D_LIBRARY_IMPL(causal_conv1d, CompositeExplicitAutograd, m) {
  CAUSAL_CONV1D_IMPL(m, "cpu_isa", &causal_conv1d::cpu_isa_name);
  CAUSAL_CONV1D_IMPL(m, "release_cpu_pool", &causal_conv1d::release_cpu_pool);
  CAUSAL_CONV1D_IMPL(m, "set_pdl", &causal_conv1d::set_pdl);
  CAUSAL_CONV1D_IMPL(m, "settings", &causal_conv1d::settings_table);
  CAUSAL_CONV1D_IMPL(m, "setting", &causal_conv1d::setting);
  CAUSAL_CONV1D_IMPL(m, "abi", &causal_conv1d::abi_name);
}

CAUSAL_CONV1D_LIBRARY_IMPL(causal_conv1d, CPU, m) {
  causal_conv1d::register_backend<causal_conv1d::CpuBackend>(m);
}

#ifdef CAUSAL_CONV1D_WITH_CUDA
CAUSAL_CONV1D_LIBRARY_IMPL(causal_conv1d, CUDA, m) {
  causal_conv1d::register_backend<causal_conv1d::CudaBackend>(m);
}
#endif
