// Portable CPU kernels: plain C++ that any compiler vectorises for the
// baseline ISA. Work items are (sequence or batch row) x a block of kBlock
// channels; the channel loop is innermost so channel-last tensors stream.
//
// Prefill: the first width-1 outputs of a sequence read the window before it
// (conv state or zeros), so that window and the first tokens are staged in an
// fp32 buffer; later outputs read their taps straight from x. The state is
// written after every output of the item has been computed.
//
// Decode: the window and the new tokens are staged in fp32 first, so `out`
// may alias `x`; the state is then updated from x, then outputs are written.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "kernels.h"

namespace causal_conv1d::cpu {
namespace {

constexpr int64_t kBlock = 64;

inline float silu(float v) { return v / (1.f + std::exp(-v)); }

// Storage-to-storage conversion through fp32; a plain copy when the types agree.
template <typename To, typename From>
inline To convert(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else {
    return static_cast<To>(static_cast<float>(v));
  }
}

inline int64_t wrap(int64_t v, int64_t n) { return ((v % n) + n) % n; }

// kUnitDim: x and out have channel stride 1 (the vectorisable case).
template <typename scalar_t, typename state_t, bool kUnitDim>
void fwd_block(const FwdParams& p, const CpuWeights& w, int64_t seq, int64_t c0, int64_t c1) {
  int64_t begin, end;
  p.token_range(seq, begin, end);
  const int64_t len = end - begin;
  if (len == 0) return;
  const int64_t n = c1 - c0;
  const int64_t x_dim = kUnitDim ? 1 : p.x_dim_stride, x_tok = p.x_tok_stride;
  const int64_t o_dim = kUnitDim ? 1 : p.out_dim_stride, o_tok = p.out_tok_stride;
  const scalar_t* x = static_cast<const scalar_t*>(p.x) + c0 * x_dim + begin * x_tok;
  scalar_t* out = static_cast<scalar_t*>(p.out) + c0 * o_dim + begin * o_tok;

  const int64_t line = p.cache_indices.present() ? p.cache_indices[seq] : seq;
  if (p.is_padding(line)) {
    for (int64_t t = 0; t < len; ++t)
      for (int64_t c = 0; c < n; ++c) out[t * o_tok + c * o_dim] = scalar_t(0.f);
    return;
  }

  const int64_t W = p.width, H = W - 1, S = p.state_len;
  const int64_t s_dim = p.state_dim_stride, s_tok = p.state_tok_stride;
  state_t* state = p.states == nullptr
                  ? nullptr
                  : static_cast<state_t*>(p.states) + line * p.state_line_stride + c0 * s_dim;
  const bool init = state != nullptr && p.has_initial_state != nullptr &&
                    p.has_initial_state[seq * p.has_initial_state_stride];
  const float* taps = w.taps + c0;
  const float* bias = w.bias == nullptr ? nullptr : w.bias + c0;

  // Rows 0..H-1: the window before the sequence; rows H..: its first tokens.
  float head[2 * (kMaxWidth - 1)][kBlock];
  const int64_t nhead = std::min(len, H);
  for (int64_t k = 0; k < H; ++k)
    for (int64_t c = 0; c < n; ++c)
      head[k][c] = init ? static_cast<float>(state[(S - H + k) * s_tok + c * s_dim]) : 0.f;
  for (int64_t k = 0; k < nhead; ++k)
    for (int64_t c = 0; c < n; ++c) head[H + k][c] = static_cast<float>(x[k * x_tok + c * x_dim]);

  float acc[kBlock];
  for (int64_t t = 0; t < len; ++t) {
    for (int64_t c = 0; c < n; ++c) acc[c] = bias == nullptr ? 0.f : bias[c];
    if (t < H) {
      for (int64_t k = 0; k < W; ++k)
        for (int64_t c = 0; c < n; ++c) acc[c] += taps[k * p.dim + c] * head[t + k][c];
    } else {
      const scalar_t* xw = x + (t - H) * x_tok;
      for (int64_t k = 0; k < W; ++k)
        for (int64_t c = 0; c < n; ++c)
          acc[c] += taps[k * p.dim + c] * static_cast<float>(xw[k * x_tok + c * x_dim]);
    }
    for (int64_t c = 0; c < n; ++c) out[t * o_tok + c * o_dim] = scalar_t(p.silu ? silu(acc[c]) : acc[c]);
  }

  if (state == nullptr) return;
  // New state: the last S columns of cat(old or zeros, tokens). Ascending j
  // reads old column j + len before anything overwrites it.
  for (int64_t j = 0; j < S; ++j) {
    const int64_t src = len - S + j;
    state_t* col = state + j * s_tok;
    if (src >= 0) {
      for (int64_t c = 0; c < n; ++c) col[c * s_dim] = convert<state_t>(x[src * x_tok + c * x_dim]);
    } else if (init) {
      for (int64_t c = 0; c < n; ++c) col[c * s_dim] = state[(j + len) * s_tok + c * s_dim];
    } else {
      for (int64_t c = 0; c < n; ++c) col[c * s_dim] = state_t(0.f);
    }
  }
}

template <typename scalar_t, typename state_t>
void update_block(const UpdateParams& p, const CpuWeights& w, int64_t row, int64_t c0,
                  int64_t c1, float* buf) {
  const int64_t n = c1 - c0, L = p.seqlen;
  const int64_t x_dim = p.x_dim_stride, x_tok = p.x_tok_stride;
  const int64_t o_dim = p.out_dim_stride, o_tok = p.out_tok_stride;
  const scalar_t* x = static_cast<const scalar_t*>(p.x) + row * p.x_batch_stride + c0 * x_dim;
  scalar_t* out = static_cast<scalar_t*>(p.out) + row * p.out_batch_stride + c0 * o_dim;

  const int64_t line = p.state_indices.present() ? p.state_indices[row] : row;
  if (p.is_padding(line)) {
    for (int64_t t = 0; t < L; ++t)
      for (int64_t c = 0; c < n; ++c) out[t * o_tok + c * o_dim] = scalar_t(0.f);
    return;
  }

  const int64_t W = p.width, H = W - 1, S = p.state_len;
  const int64_t s_dim = p.state_dim_stride, s_tok = p.state_tok_stride;
  state_t* state = static_cast<state_t*>(p.states) + line * p.state_line_stride + c0 * s_dim;
  const bool circular = p.cache_seqlens.present();
  const int64_t pos = circular ? wrap(p.cache_seqlens[row], S) : 0;

  // buf rows: the H window columns, then the L new tokens.
  for (int64_t k = 0; k < H; ++k) {
    const int64_t col = circular ? wrap(pos - H + k, S) : S - H + k;
    for (int64_t c = 0; c < n; ++c) buf[k * kBlock + c] = static_cast<float>(state[col * s_tok + c * s_dim]);
  }
  for (int64_t t = 0; t < L; ++t)
    for (int64_t c = 0; c < n; ++c) buf[(H + t) * kBlock + c] = static_cast<float>(x[t * x_tok + c * x_dim]);

  if (circular) {
    // Token j goes to ring position pos + j; with L > S later tokens win.
    for (int64_t j = 0; j < L; ++j) {
      state_t* col = state + ((pos + j) % S) * s_tok;
      for (int64_t c = 0; c < n; ++c) col[c * s_dim] = convert<state_t>(x[j * x_tok + c * x_dim]);
    }
  } else {
    // Shift left by L and append: ascending j reads column j + L before it is overwritten.
    for (int64_t j = 0; j < S; ++j) {
      const int64_t src = j + L;
      state_t* col = state + j * s_tok;
      if (src < S) {
        for (int64_t c = 0; c < n; ++c) col[c * s_dim] = state[src * s_tok + c * s_dim];
      } else {
        for (int64_t c = 0; c < n; ++c) col[c * s_dim] = convert<state_t>(x[(src - S) * x_tok + c * x_dim]);
      }
    }
  }

  const float* taps = w.taps + c0;
  const float* bias = w.bias == nullptr ? nullptr : w.bias + c0;
  float acc[kBlock];
  for (int64_t t = 0; t < L; ++t) {
    for (int64_t c = 0; c < n; ++c) acc[c] = bias == nullptr ? 0.f : bias[c];
    for (int64_t k = 0; k < W; ++k)
      for (int64_t c = 0; c < n; ++c) acc[c] += taps[k * p.dim + c] * buf[(t + k) * kBlock + c];
    for (int64_t c = 0; c < n; ++c) out[t * o_tok + c * o_dim] = scalar_t(p.silu ? silu(acc[c]) : acc[c]);
  }
}

// Calls f with a value of the storage type named by t.
template <typename F>
auto with_storage_type(c10::ScalarType t, F&& f) {
  switch (t) {
    case c10::ScalarType::Half:
      return f(c10::Half{});
    case c10::ScalarType::BFloat16:
      return f(c10::BFloat16{});
    default:
      return f(float{});
  }
}

FwdBlockFn select_fwd(const FwdParams& p) {
  const bool unit_dim = p.x_dim_stride == 1 && p.out_dim_stride == 1;
  // Without a cache the state type is irrelevant: reuse x's instantiation.
  const c10::ScalarType state_type = p.states == nullptr ? p.x_type : p.state_type;
  return with_storage_type(p.x_type, [&](auto x_tag) {
    return with_storage_type(state_type, [&](auto s_tag) -> FwdBlockFn {
      using scalar_t = decltype(x_tag);
      using state_t = decltype(s_tag);
      return unit_dim ? &fwd_block<scalar_t, state_t, true> : &fwd_block<scalar_t, state_t, false>;
    });
  });
}

UpdateBlockFn select_update(const UpdateParams& p) {
  return with_storage_type(p.x_type, [&](auto x_tag) {
    return with_storage_type(p.state_type, [&](auto s_tag) -> UpdateBlockFn {
      return &update_block<decltype(x_tag), decltype(s_tag)>;
    });
  });
}

}  // namespace

CpuKernelSet portable_kernels() { return {"portable", kBlock, &select_fwd, &select_update}; }

}  // namespace causal_conv1d::cpu
