// The one TORCH_LIBRARY(causal_conv1d): op schemas and the checks every
// backend runs before it touches memory. Backends register their kernels with
// TORCH_LIBRARY_IMPL in their own folders.
#include "ops.h"

#include <ATen/ATen.h>
#include <torch/library.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace causal_conv1d {
namespace {

// Integers reach error messages as strings formatted here, never through
// iostreams: with some installs (seen with the torch 2.11 wheel and GCC 13.3)
// an extension that streams an integer into c10::str crashes.
std::string num(int64_t v) { return std::to_string(v); }

std::string dims(at::IntArrayRef sizes) {
  std::string s = "(";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i == 0 ? "" : ", ") + std::to_string(sizes[i]);
  return s + (sizes.size() == 1 ? ",)" : ")");
}

bool is_float_type(c10::ScalarType t) {
  return t == at::kFloat || t == at::kHalf || t == at::kBFloat16;
}

bool is_index_type(c10::ScalarType t) { return t == at::kInt || t == at::kLong; }

void check_float(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(is_float_type(t.scalar_type()), op, ": ", name,
              " must be float32, float16 or bfloat16, got ", t.scalar_type());
}

void check_device(const char* op, const char* name, const at::Tensor& t, const at::Tensor& x) {
  TORCH_CHECK(t.device() == x.device(), op, ": ", name, " must be on x's device ", x.device(),
              ", got ", t.device());
}

// A 1-D int32/int64 tensor on x's device with at least `size` entries:
// engines pass persistent buffers longer than the batch; entries past it are
// never read.
IndexVec index_vec(const char* op, const char* name, const at::Tensor& t, int64_t size,
                   const at::Tensor& x) {
  check_device(op, name, t, x);
  TORCH_CHECK(is_index_type(t.scalar_type()), op, ": ", name, " must be int32 or int64, got ",
              t.scalar_type());
  TORCH_CHECK(t.dim() == 1 && t.size(0) >= size, op, ": ", name, " must have shape (", num(size),
              ",) or be longer, got ", dims(t.sizes()));
  IndexVec v;
  v.data = t.data_ptr();
  v.stride = t.stride(0);
  v.is_int64 = t.scalar_type() == at::kLong;
  return v;
}

// query_start_loc: (batch + 1,) int32/int64 on x's device.
IndexVec query_starts(const char* op, const at::Tensor& q, const at::Tensor& x) {
  TORCH_CHECK(q.dim() == 1 && q.size(0) >= 1, op,
              ": query_start_loc must have shape (batch + 1,), got ", dims(q.sizes()));
  return index_vec(op, "query_start_loc", q, q.size(0), x);
}

// Fills the filter and cache fields; `states` may be undefined (no cache).
void fill_conv_params(ConvParams& p, const char* op, const at::Tensor& x, int64_t dim,
                      const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                      const at::Tensor* states, const char* states_name, bool silu,
                      int64_t pad_slot_id, int64_t null_block_id, bool front_window) {
  check_float(op, "x", x);
  check_float(op, "weight", weight);
  check_device(op, "weight", weight, x);
  TORCH_CHECK(weight.dim() == 2 && weight.size(0) == dim, op,
              ": weight must have shape (dim=", num(dim), ", width), got ", dims(weight.sizes()));
  const int64_t width = weight.size(1);
  TORCH_CHECK(width >= 2 && width <= kMaxWidth, op, ": weight width must be in [2, ",
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
    check_float(op, "bias", *bias);
    check_device(op, "bias", *bias, x);
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == dim, op,
                ": bias must have shape (dim=", num(dim), ",), got ", dims(bias->sizes()));
    p.bias = bias->data_ptr();
    p.bias_type = bias->scalar_type();
    p.bias_stride = bias->stride(0);
  }

  if (states != nullptr) {
    const at::Tensor& s = *states;
    check_float(op, states_name, s);
    check_device(op, states_name, s, x);
    TORCH_CHECK(s.dim() == 3 && s.size(1) == dim && s.size(2) >= width - 1, op, ": ", states_name,
                " must have shape (num_cache_lines, dim=", num(dim),
                ", state_len >= width-1=", num(width - 1), "), got ", dims(s.sizes()));
    p.states = s.data_ptr();
    p.state_type = s.scalar_type();
    p.num_cache_lines = s.size(0);
    p.state_len = s.size(2);
    p.state_line_stride = s.stride(0);
    p.state_dim_stride = s.stride(1);
    p.state_tok_stride = s.stride(2);
  }
}

}  // namespace

at::Tensor empty_fwd_output(const at::Tensor& x) {
  const bool channel_last = x.dim() == 2 && x.stride(0) == 1 && x.stride(1) != 1;
  if (channel_last) return at::empty({x.size(1), x.size(0)}, x.options()).t();
  return at::empty(x.sizes(), x.options());
}

FwdParams make_fwd_params(const at::Tensor& x, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias,
                          const std::optional<at::Tensor>& conv_states,
                          const at::Tensor& query_start_loc,
                          const std::optional<at::Tensor>& cache_indices,
                          const std::optional<at::Tensor>& has_initial_state, bool silu,
                          int64_t pad_slot_id, const at::Tensor& out, int64_t null_block_id,
                          bool front_window) {
  constexpr const char* op = "causal_conv1d_fwd";
  TORCH_CHECK(x.dim() == 2, op, ": x must have shape (dim, num_tokens), got ", dims(x.sizes()));
  TORCH_CHECK(out.sizes() == x.sizes() && out.scalar_type() == x.scalar_type() &&
                  out.device() == x.device(),
              op, ": out must have x's shape ", dims(x.sizes()), " and dtype ", x.scalar_type(),
              ", got ", dims(out.sizes()), " ", out.scalar_type());
  TORCH_CHECK(out.numel() == 0 || out.data_ptr() != x.data_ptr(), op,
              ": out must not be x (the prefill reads earlier tokens after writing later ones)");
  FwdParams p;
  fill_conv_params(p, op, x, x.size(0), weight, bias,
                   conv_states.has_value() ? &*conv_states : nullptr, "conv_states", silu,
                   pad_slot_id, null_block_id, front_window);
  p.x = x.data_ptr();
  p.num_tokens = x.size(1);
  p.x_dim_stride = x.stride(0);
  p.x_tok_stride = x.stride(1);
  p.out = out.data_ptr();
  p.out_dim_stride = out.stride(0);
  p.out_tok_stride = out.stride(1);

  p.query_start_loc = query_starts(op, query_start_loc, x);
  p.batch = query_start_loc.size(0) - 1;
  if (cache_indices.has_value()) {
    p.cache_indices = index_vec(op, "cache_indices", *cache_indices, p.batch, x);
  }
  if (has_initial_state.has_value()) {
    const at::Tensor& h = *has_initial_state;
    TORCH_CHECK(conv_states.has_value(), op,
                ": has_initial_state needs conv_states to read the initial state from");
    check_device(op, "has_initial_state", h, x);
    TORCH_CHECK(h.scalar_type() == at::kBool, op, ": has_initial_state must be bool, got ",
                h.scalar_type());
    TORCH_CHECK(h.dim() == 1 && h.size(0) >= p.batch, op, ": has_initial_state must have shape (",
                num(p.batch), ",) or be longer, got ", dims(h.sizes()));
    p.has_initial_state = h.data_ptr<bool>();
    p.has_initial_state_stride = h.stride(0);
  }
  return p;
}

UpdateParams make_update_params(const at::Tensor& x_in, const at::Tensor& conv_state,
                                const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                bool silu, const std::optional<at::Tensor>& cache_seqlens,
                                const std::optional<at::Tensor>& conv_state_indices,
                                int64_t pad_slot_id, const at::Tensor& out_in,
                                const std::optional<at::Tensor>& num_accepted_tokens,
                                const std::optional<at::Tensor>& query_start_loc,
                                int64_t max_query_len, int64_t null_block_id, bool front_window) {
  constexpr const char* op = "causal_conv1d_update";
  const bool varlen = query_start_loc.has_value();
  if (varlen) {
    TORCH_CHECK(x_in.dim() == 2, op,
                ": with query_start_loc, x must have shape (num_tokens, dim), got ",
                dims(x_in.sizes()));
  } else {
    TORCH_CHECK(x_in.dim() == 2 || x_in.dim() == 3, op,
                ": x must have shape (batch, dim) or (batch, dim, seqlen), got ",
                dims(x_in.sizes()));
  }
  TORCH_CHECK(out_in.sizes() == x_in.sizes() && out_in.scalar_type() == x_in.scalar_type() &&
                  out_in.device() == x_in.device(),
              op, ": out must have x's shape ", dims(x_in.sizes()), " and dtype ",
              x_in.scalar_type(), ", got ", dims(out_in.sizes()), " ", out_in.scalar_type());
  // Varlen x (num_tokens, dim) is one row of num_tokens tokens: (1, dim, num_tokens).
  const auto as_rows = [&](const at::Tensor& t) {
    if (varlen) return t.t().unsqueeze(0);
    return t.dim() == 2 ? t.unsqueeze(-1) : t;
  };
  const at::Tensor x = as_rows(x_in);
  const at::Tensor out = as_rows(out_in);

  UpdateParams p;
  fill_conv_params(p, op, x, x.size(1), weight, bias, &conv_state, "conv_state", silu, pad_slot_id,
                   null_block_id, front_window);
  p.x = x.data_ptr();
  p.seqlen = x.size(2);
  p.x_batch_stride = x.stride(0);
  p.x_dim_stride = x.stride(1);
  p.x_tok_stride = x.stride(2);
  p.out = out.data_ptr();
  p.out_batch_stride = out.stride(0);
  p.out_dim_stride = out.stride(1);
  p.out_tok_stride = out.stride(2);
  if (varlen) {
    p.query_start_loc = query_starts(op, *query_start_loc, x_in);
    p.batch = query_start_loc->size(0) - 1;
    p.num_tokens = x.size(2);
    p.x_batch_stride = p.out_batch_stride = 0;
    p.max_query_len = max_query_len;
  } else {
    p.batch = x.size(0);
    p.max_query_len = p.seqlen;
  }

  TORCH_CHECK(
      !cache_seqlens.has_value() || (!varlen && !num_accepted_tokens.has_value() && !front_window),
      op, ": cache_seqlens (ring buffers) cannot be combined with query_start_loc, ",
      "num_accepted_tokens or front-aligned windows");
  if (cache_seqlens.has_value()) {
    p.cache_seqlens = index_vec(op, "cache_seqlens", *cache_seqlens, p.batch, x_in);
  }
  if (num_accepted_tokens.has_value()) {
    p.num_accepted_tokens =
        index_vec(op, "num_accepted_tokens", *num_accepted_tokens, p.batch, x_in);
    TORCH_CHECK(p.max_query_len >= 1, op,
                ": num_accepted_tokens with query_start_loc needs max_query_len >= 1, got ",
                num(max_query_len));
    TORCH_CHECK(p.state_len >= p.width - 2 + p.max_query_len, op,
                ": with num_accepted_tokens, conv_state needs width - 1 + max_query_len - 1 = ",
                num(p.width - 2 + p.max_query_len), " columns, got ", num(p.state_len));
  }
  if (conv_state_indices.has_value()) {
    p.state_indices = index_vec(op, "conv_state_indices", *conv_state_indices, p.batch, x_in);
  } else {
    TORCH_CHECK(p.num_cache_lines >= p.batch, op,
                ": without conv_state_indices, conv_state needs a line per row (>= ", num(p.batch),
                "), got ", num(p.num_cache_lines));
  }
  return p;
}

namespace {

// A (batch, dim, width-1) tensor of x's dtype and device, or undefined.
void check_batch_states(const char* op, const char* name, const at::Tensor& t, const at::Tensor& x,
                        int64_t width) {
  check_device(op, name, t, x);
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), op, ": ", name, " must have x's dtype ",
              x.scalar_type(), ", got ", t.scalar_type());
  TORCH_CHECK(
      t.dim() == 3 && t.size(0) == x.size(0) && t.size(1) == x.size(1) && t.size(2) == width - 1,
      op, ": ", name, " must have shape (batch=", num(x.size(0)), ", dim=", num(x.size(1)),
      ", width-1=", num(width - 1), "), got ", dims(t.sizes()));
}

View3 view3(const at::Tensor& t) { return {t.data_ptr(), t.stride(0), t.stride(1), t.stride(2)}; }

// x, the filter and seq_idx of both batch ops.
BatchParams batch_params(const char* op, const at::Tensor& x, const at::Tensor& weight,
                         const std::optional<at::Tensor>& bias,
                         const std::optional<at::Tensor>& seq_idx,
                         const std::optional<at::Tensor>& initial_states, bool silu) {
  TORCH_CHECK(x.dim() == 3, op, ": x must have shape (batch, dim, seqlen), got ", dims(x.sizes()));
  BatchParams p;
  fill_conv_params(p, op, x, x.size(1), weight, bias, nullptr, "", silu, -1, -1, false);
  p.batch = x.size(0);
  p.seqlen = x.size(2);
  p.x = view3(x);
  if (seq_idx.has_value()) {
    const at::Tensor& q = *seq_idx;
    check_device(op, "seq_idx", q, x);
    TORCH_CHECK(q.scalar_type() == at::kInt, op, ": seq_idx must be int32, got ", q.scalar_type());
    TORCH_CHECK(q.dim() == 2 && q.size(0) == p.batch && q.size(1) == p.seqlen, op,
                ": seq_idx must have shape (batch=", num(p.batch), ", seqlen=", num(p.seqlen),
                "), got ", dims(q.sizes()));
    p.seq_idx = q.data_ptr<int32_t>();
    p.seq_batch_stride = q.stride(0);
    p.seq_tok_stride = q.stride(1);
  }
  if (initial_states.has_value()) {
    const at::Tensor& t = *initial_states;
    check_batch_states(op, "initial_states", t, x, p.width);
    p.initial_states = view3(t);
  }
  return p;
}

void check_like_x(const char* op, const char* name, const at::Tensor& t, const at::Tensor& x) {
  TORCH_CHECK(
      t.sizes() == x.sizes() && t.scalar_type() == x.scalar_type() && t.device() == x.device(), op,
      ": ", name, " must have x's shape ", dims(x.sizes()), " and dtype ", x.scalar_type(),
      ", got ", dims(t.sizes()), " ", t.scalar_type());
}

std::atomic<bool>& pdl_setting() {
  static std::atomic<bool> on{[] {
    const char* v = std::getenv("CAUSAL_CONV1D_PDL");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }()};
  return on;
}
}  // namespace

at::Tensor empty_batch_states(const at::Tensor& x, int64_t width, bool wanted) {
  if (!wanted) return at::empty({0}, x.options());
  return at::empty({x.size(0), width - 1, x.size(1)}, x.options()).transpose(1, 2);
}

BatchParams make_batch_fwd_params(const at::Tensor& x, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias,
                                  const std::optional<at::Tensor>& seq_idx,
                                  const std::optional<at::Tensor>& initial_states, bool silu,
                                  const at::Tensor& out, const at::Tensor& final_states) {
  constexpr const char* op = "causal_conv1d_batch_fwd";
  BatchParams p = batch_params(op, x, weight, bias, seq_idx, initial_states, silu);
  check_like_x(op, "out", out, x);
  TORCH_CHECK(out.numel() == 0 || out.data_ptr() != x.data_ptr(), op, ": out must not be x");
  p.out = view3(out);
  if (final_states.defined()) {
    TORCH_CHECK(!seq_idx.has_value(), op,
                ": final states are not returned with seq_idx (as in Dao's causal_conv1d 1.7)");
    check_batch_states(op, "final_states_out", final_states, x, p.width);
    p.final_states = view3(final_states);
  }
  return p;
}

BatchParams make_batch_bwd_params(const at::Tensor& x, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias,
                                  const std::optional<at::Tensor>& seq_idx,
                                  const std::optional<at::Tensor>& initial_states,
                                  const at::Tensor& dout,
                                  const std::optional<at::Tensor>& dfinal_states, bool silu,
                                  const at::Tensor& dx, const at::Tensor& dinitial_states) {
  constexpr const char* op = "causal_conv1d_batch_bwd";
  BatchParams p = batch_params(op, x, weight, bias, seq_idx, initial_states, silu);
  check_like_x(op, "dout", dout, x);
  check_like_x(op, "dx", dx, x);
  p.dout = view3(dout);
  p.dx = view3(dx);
  if (dfinal_states.has_value()) {
    TORCH_CHECK(!seq_idx.has_value(), op,
                ": dfinal_states with seq_idx (final states are not returned with seq_idx)");
    check_batch_states(op, "dfinal_states", *dfinal_states, x, p.width);
    p.dfinal_states = view3(*dfinal_states);
  }
  if (dinitial_states.defined()) {
    TORCH_CHECK(initial_states.has_value(), op,
                ": dinitial_states asked for without initial_states");
    check_batch_states(op, "dinitial_states", dinitial_states, x, p.width);
    p.dinitial_states = view3(dinitial_states);
  }
  return p;
}

bool pdl_enabled() { return pdl_setting().load(std::memory_order_relaxed); }

bool set_pdl(bool enabled) { return pdl_setting().exchange(enabled); }

}  // namespace causal_conv1d

TORCH_LIBRARY(causal_conv1d, m) {
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
  // front_window carry the vLLM dialect (CONTRACT 1.4); their defaults are the core API.
  m.def(
      "causal_conv1d_update(Tensor x, Tensor(a!) conv_state, Tensor weight, Tensor? bias, "
      "bool silu, Tensor? cache_seqlens, Tensor? conv_state_indices, int pad_slot_id, "
      "Tensor(b!) out, Tensor? num_accepted_tokens=None, Tensor? query_start_loc=None, "
      "int max_query_len=-1, int null_block_id=-1, bool front_window=False) -> ()");
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
  m.def("cpu_isa() -> str", &causal_conv1d::cpu_isa_name);
  // Frees the memory the CPU backend keeps for large outputs; returns the bytes freed.
  m.def("release_cpu_pool() -> int", &causal_conv1d::release_cpu_pool);
  // Programmatic dependent launch on or off for later CUDA launches; returns the previous setting.
  m.def("set_pdl(bool enabled) -> bool", &causal_conv1d::set_pdl);
}
