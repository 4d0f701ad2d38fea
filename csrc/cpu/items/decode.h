// The decode's work item: one batch row x a channel slab. The SIMD ISAs do the
// common step (one token, a linear state of width-1 columns, channel-last) and
// speculative rows (unit-stride channels) in registers (Isa::update_step,
// Isa::spec_step). Otherwise the window and the new tokens are
// staged in fp32 first, so `out` may alias `x`; the state is then updated from
// x, then outputs are written. vLLM's varlen and speculative rows follow
// UpdateParams::line_plan; SGLang's tree verify and per-token windows walk the
// staged rows (walk_tokens).
#pragma once

#include "common.h"

namespace causal_conv1d::cpu {
namespace {

// n channels' state lines in Dao's layout (each channel's S columns side by
// side, channels one after another) shifted left by L columns with the tokens
// of x (token t at x + t * x_tok, channels x_dim apart) entering last: one move
// of the whole block by L elements (a channel's last L columns then briefly
// hold the next channel's first), then the tokens, instead of S strided passes.
template <class Isa, typename state_t, typename x_t>
inline void shift_dao_lines(state_t* lines, int64_t n, int64_t S, int64_t L, const x_t* x,
                            int64_t x_tok, int64_t x_dim) {
  if (L < S) std::memmove(lines, lines + L, (n * S - L) * sizeof(state_t));
  for (int64_t j = L < S ? S - L : 0; j < S; ++j)
    copy_channels<Isa>(lines + j, S, x + (j + L - S) * x_tok, x_dim, n);
}

// One token of a row whose state line is Dao's layout (each channel's S
// columns side by side, channels one after another), width kW, S = kW - 1 or
// kW: per block of channels, the outputs from each channel's last kW-1
// columns and the token, then each channel's columns shifted by one with the
// token last. x and out have unit channel stride; out may be x (a block reads
// its x before it writes its out).
template <class Isa, int kW, int S, typename x_t, typename state_t>
void dao_line_step(const ConvParams& p, const CpuWeights& w, int64_t c0, int64_t n, const x_t* x,
                   state_t* state, x_t* out) {
  constexpr int H = kW - 1;
  const int64_t dim = p.dim;
  const float* const taps = w.taps + c0;
  for (int64_t cb = 0; cb < n; cb += kBlock) {
    const int64_t m = min64(kBlock, n - cb);
    state_t* const lines = state + cb * S;
    const float* const t = taps + cb;
    float acc[kBlock];
    if (w.bias != nullptr) {
      for (int64_t c = 0; c < m; ++c) acc[c] = w.bias[c0 + cb + c];
    } else {
      for (int64_t c = 0; c < m; ++c) acc[c] = 0.f;
    }
    for (int k = 0; k < H; ++k) accumulate_tap<Isa>(acc, t + k * dim, lines + S - H + k, S, m);
    accumulate_tap<Isa>(acc, t + H * dim, x + cb, 1, m);
    shift_dao_lines<Isa>(lines, m, S, 1, x + cb, 0, 1);
    store_output<Isa>(out + cb, 1, acc, m, p.silu);
  }
}

// The outputs of a row whose tokens are walked one by one (UpdateParams::
// walks_tokens: SGLang's tree verify, per-token windows). buf holds the
// window's H rows then the L tokens, fp32, pitch apart: virtual token v (v < 0
// the window's column H + v) is row H + v. Token t's taps are the rows of its
// walk (t, parent(t), ... down to 0, then the window's columns from the last),
// gathered where they are not consecutive; its windows get the last H of them.
// After buf's rows the scratch has walk_scratch_rows(width, L) rows more.
template <class Isa, typename scalar_t, typename state_t>
void walk_tokens(const UpdateParams& p, const CpuWeights& w, int64_t row, int64_t c0, int64_t n,
                 float* buf, int64_t pitch, int64_t L, scalar_t* out) {
  const int64_t H = p.width - 1;
  float* const taps = buf + (H + L) * pitch;  // width rows
  int32_t* const parent = reinterpret_cast<int32_t*>(taps + p.width * pitch);  // L entries
  p.parents(row, L, parent);
  const int64_t wl = p.windows_line(row);
  state_t* windows = wl < 0 ? nullptr
                            : static_cast<state_t*>(p.windows) + wl * p.window_line_stride +
                                  c0 * p.window_dim_stride;
  const float* rows[kMaxWidth];
  for (int64_t t = 0; t < L; ++t) {
    int64_t v = t;
    bool consecutive = true;
    rows[H] = buf + (H + v) * pitch;
    for (int64_t k = H - 1; k >= 0; --k) {
      const int64_t next = v > 0 ? parent[v] : v - 1;
      consecutive &= next == v - 1;
      v = next;
      rows[k] = buf + (H + v) * pitch;
    }
    const float* in = rows[0];
    if (!consecutive) {
      for (int64_t k = 0; k <= H; ++k) std::memcpy(taps + k * pitch, rows[k], n * sizeof(float));
      in = taps;
    }
    for (int64_t cb = 0; cb < n; cb += kBlock)
      Isa::conv_token(p, w, c0 + cb, min64(kBlock, n - cb), in + cb, pitch, 1,
                      out + t * p.out_tok_stride + cb * p.out_dim_stride, p.out_dim_stride);
    if (windows != nullptr)
      for (int64_t k = 0; k < H; ++k)
        copy_channels<Isa>(windows + t * p.window_step_stride + k * p.window_col_stride,
                           p.window_dim_stride, rows[k + 1], 1, n);
  }
  if (p.parent_token.present() && c0 == 0)
    for (int64_t t = 0; t < L; ++t) p.parent_token.set(row, t, parent[t]);
}

// All tokens of one batch row, channels [c0, c1).
template <class Isa, typename scalar_t, typename state_t>
void update_item(const UpdateParams& p, const CpuWeights& w, int64_t row, int64_t c0, int64_t c1,
                 float* buf) {
  int64_t begin, L;
  const bool valid = p.row_tokens(row, begin, L);
  if (L == 0) return;
  const int64_t n = c1 - c0, pitch = scratch_pitch(n);
  const int64_t x_dim = p.x_dim_stride, x_tok = p.x_tok_stride;
  const int64_t o_dim = p.out_dim_stride, o_tok = p.out_tok_stride;
  const scalar_t* x =
      static_cast<const scalar_t*>(p.x) + row * p.x_batch_stride + begin * x_tok + c0 * x_dim;
  scalar_t* out =
      static_cast<scalar_t*>(p.out) + row * p.out_batch_stride + begin * o_tok + c0 * o_dim;

  const int64_t line = p.state_indices.present() ? p.state_indices[row] : row;
  if (!valid || p.is_padding(line)) {
    for (int64_t t = 0; t < L; ++t) fill_channels<Isa>(out + t * o_tok, o_dim, n);
    return;
  }

  const int64_t H = p.width - 1, S = p.state_len;
  const int64_t s_dim = p.state_dim_stride, s_tok = p.state_tok_stride;
  state_t* state = static_cast<state_t*>(p.states) + line * p.state_line_stride + c0 * s_dim;
  if (Isa::update_step(p, w, c0, n, x, state, out)) return;
  if (Isa::spec_step(p, w, row, c0, n, x, state, out, L)) return;
  if (!p.walks_tokens() && L == 1 && p.width == 4 && s_tok == 1 && s_dim == S && x_dim == 1 && o_dim == 1 &&
      (p.mode == StateMode::kShift || p.mode == StateMode::kFront) &&
      !p.query_start_loc.present() && S == p.linear_len() && (S == 3 || S == 4)) {
    S == 3 ? dao_line_step<Isa, 4, 3>(p, w, c0, n, x, state, out)
           : dao_line_step<Isa, 4, 4>(p, w, c0, n, x, state, out);
    return;
  }
  const bool circular = p.mode == StateMode::kRing;
  const int64_t pos = circular ? wrap(p.cache_seqlens[row], S) : 0;
  const LinePlan plan = circular ? LinePlan{} : p.line_plan(row, L);

  // buf rows: the H window columns, then the L new tokens.
  for (int64_t k = 0; k < H; ++k) {
    const int64_t col = circular ? wrap(pos - H + k, S) : plan.base + plan.live - H + k;
    copy_channels<Isa>(buf + k * pitch, 1, state + col * s_tok, s_dim, n);
  }
  for (int64_t t = 0; t < L; ++t)
    copy_channels<Isa>(buf + (H + t) * pitch, 1, x + t * x_tok, x_dim, n);

  if (circular) {
    // Token j goes to ring position pos + j; with L > S later tokens win.
    for (int64_t j = 0; j < L; ++j)
      copy_channels<Isa>(state + ((pos + j) % S) * s_tok, s_dim, x + j * x_tok, x_dim, n);
  } else if (s_tok == 1 && s_dim == S && plan.base == 0 && plan.live == S && plan.ncols == S &&
             plan.shift == L) {
    shift_dao_lines<Isa>(state, n, S, L, x, x_tok, x_dim);  // Dao's layout
  } else {
    // Ascending j reads each source column before it is overwritten (LinePlan).
    for (int64_t j = 0; j < plan.ncols; ++j) {
      const int64_t src = j + plan.shift;
      if (src < plan.live) {
        copy_channels<Isa>(state + j * s_tok, s_dim, state + (plan.base + src) * s_tok, s_dim, n);
      } else {
        copy_channels<Isa>(state + j * s_tok, s_dim, x + (src - plan.live) * x_tok, x_dim, n);
      }
    }
  }

  if (p.walks_tokens())
    return walk_tokens<Isa, scalar_t, state_t>(p, w, row, c0, n, buf, pitch, L, out);
  for (int64_t t = 0; t < L; ++t)
    for (int64_t cb = 0; cb < n; cb += kBlock)
      Isa::conv_token(p, w, c0 + cb, min64(kBlock, n - cb), buf + t * pitch + cb, pitch, 1,
                      out + t * o_tok + cb * o_dim, o_dim);
}

}  // namespace
}  // namespace causal_conv1d::cpu
