// The prefill's work item: a token chunk of one sequence x a channel slab.
// The item holding a sequence's first tokens stages the window before the
// sequence (conv state or zeros) and those tokens in fp32, computes the first
// width-1 outputs from that, and writes the new state once it has read the old
// one; every other output reads its taps (the halo included) from x. Inside an
// item, blocks of kTokens tokens x kBlock channels: the SIMD ISAs walk each
// cache line of channels down the block's tokens with the taps and the window
// in registers. vLLM's front-aligned lines: ConvParams::front_window. In place
// (out == x, SGLang's CUDA API): fwd_item_in_place.
#pragma once

#include "common.h"

namespace causal_conv1d::cpu {
namespace {

// Sequence seq's cache line for channels from c0: padding, or its state
// (null without a cache) and whether the sequence starts from it.
template <typename state_t>
struct SequenceCache {
  bool padding = false;
  state_t* state = nullptr;
  bool init = false;
  SequenceCache(const FwdParams& p, int64_t seq, int64_t c0) {
    const int64_t line = p.cache_indices.present() ? p.cache_indices[seq] : seq;
    padding = p.is_padding(line);
    if (padding || p.states == nullptr) return;
    state = static_cast<state_t*>(p.states) + line * p.state_line_stride + c0 * p.state_dim_stride;
    init = p.has_initial_state != nullptr && p.has_initial_state[seq * p.has_initial_state_stride];
  }
};

// The width-1 columns before a sequence (the state's, or zeros without an
// initial state), n channels from `state`, as fp32 rows `pitch` apart.
template <class Isa, typename state_t>
inline void stage_window(const FwdParams& p, const state_t* state, bool init, int64_t n,
                         float* rows, int64_t pitch) {
  const int64_t H = p.width - 1, S = p.linear_len();
  for (int64_t k = 0; k < H; ++k) {
    if (init) {
      copy_channels<Isa>(rows + k * pitch, 1, state + (S - H + k) * p.state_tok_stride,
                         p.state_dim_stride, n);
    } else {
      fill_channels<Isa>(rows + k * pitch, 1, n);
    }
  }
}

// A sequence's new state, n channels from `state`: the last S columns of
// cat(old or zeros, its len tokens), S the columns the call reads and writes
// (the front width-1 in vLLM's convention). Ascending j reads old column
// j + len before anything overwrites it.
template <class Isa, typename state_t, typename x_t>
inline void write_new_state(const FwdParams& p, state_t* state, bool init, int64_t len,
                            const x_t* x, int64_t x_tok, int64_t x_dim, int64_t n) {
  const int64_t S = p.linear_len(), s_tok = p.state_tok_stride, s_dim = p.state_dim_stride;
  for (int64_t j = 0; j < S; ++j) {
    const int64_t src = len - S + j;
    if (src >= 0) {
      copy_channels<Isa>(state + j * s_tok, s_dim, x + src * x_tok, x_dim, n);
    } else if (init) {
      copy_channels<Isa>(state + j * s_tok, s_dim, state + (j + len) * s_tok, s_dim, n);
    } else {
      fill_channels<Isa>(state + j * s_tok, s_dim, n);
    }
  }
}

// The whole of one sequence, channels [c0, c1), with out == x: the window
// before the sequence is staged and the new state written before any output;
// then chunks from the last to the first, each staged (with the width-1
// tokens before it, still inputs: the chunks before it are not written yet)
// in fp32 before its outputs overwrite it.
template <class Isa, typename scalar_t, typename state_t>
void fwd_item_in_place(const FwdParams& p, const CpuWeights& w, int64_t seq, int64_t c0,
                       int64_t c1, float* scratch) {
  int64_t begin, end;
  p.token_range(seq, begin, end);
  const int64_t len = end - begin, n = c1 - c0, pitch = scratch_pitch(n);
  if (len == 0) return;  // no tokens: the line is left alone, as out of place
  const int64_t x_dim = p.x_dim_stride, x_tok = p.x_tok_stride;
  scalar_t* x = static_cast<scalar_t*>(p.out) + begin * x_tok + c0 * x_dim;
  const SequenceCache<state_t> cache(p, seq, c0);
  if (cache.padding) {
    for (int64_t t = 0; t < len; ++t) fill_channels<Isa>(x + t * x_tok, x_dim, n);
    return;
  }
  const int64_t H = p.width - 1;
  float* const before = scratch;            // H rows: the window before the sequence
  float* const rows = scratch + H * pitch;  // H + kInPlaceChunk rows: a chunk and its halo
  stage_window<Isa>(p, cache.state, cache.init, n, before, pitch);
  // The new state from inputs not yet overwritten.
  if (cache.state != nullptr)
    write_new_state<Isa>(p, cache.state, cache.init, len, x, x_tok, x_dim, n);
  for (int64_t t1 = len; t1 > 0; t1 -= kInPlaceChunk) {
    const int64_t t0 = max64(0, t1 - kInPlaceChunk);
    for (int64_t t = t0 - H; t < t1; ++t) {
      float* row = rows + (t - t0 + H) * pitch;
      if (t >= 0) {
        copy_channels<Isa>(row, 1, x + t * x_tok, x_dim, n);
      } else {
        std::memcpy(row, before + (H + t) * pitch, n * sizeof(float));
      }
    }
    for (int64_t t = t0; t < t1; ++t)
      for (int64_t cb = 0; cb < n; cb += kBlock)
        Isa::conv_token(p, w, c0 + cb, min64(kBlock, n - cb), rows + (t - t0) * pitch + cb, pitch,
                        1, x + t * x_tok + cb * x_dim, x_dim);
  }
}

// The whole of one sequence, channels [c0, c1), for channel-first x and out
// (FwdParams::channel_first): one channel at a time, the window before the
// sequence staged and the new state written before any output, then chunks of
// kRowChunk tokens from the last to the first, each staged in fp32 with the
// width-1 inputs before it (still inputs: the chunks before it are not written
// yet), so that out may be x. `scratch` holds kRowScratch floats.
template <class Isa, typename scalar_t, typename state_t>
void fwd_item_rows(const FwdParams& p, const CpuWeights& w, int64_t seq, int64_t c0, int64_t c1,
                   float* scratch) {
  int64_t begin, end;
  p.token_range(seq, begin, end);
  const int64_t len = end - begin, n = c1 - c0;
  if (len == 0) return;  // no tokens: the line is left alone
  const scalar_t* x = static_cast<const scalar_t*>(p.x) + begin + c0 * p.x_dim_stride;
  scalar_t* out = static_cast<scalar_t*>(p.out) + begin + c0 * p.out_dim_stride;
  const SequenceCache<state_t> cache(p, seq, c0);
  if (cache.padding) {
    for (int64_t c = 0; c < n; ++c) fill_channels<Isa>(out + c * p.out_dim_stride, 1, len);
    return;
  }
  const int64_t H = p.width - 1;
  float* const xs = scratch;                    // kMaxWidth + kRowChunk
  float* const y = xs + kRowChunk + kMaxWidth;  // kRowChunk
  for (int64_t c = 0; c < n; ++c) {
    const scalar_t* xc = x + c * p.x_dim_stride;
    scalar_t* oc = out + c * p.out_dim_stride;
    state_t* sc = cache.state == nullptr ? nullptr : cache.state + c * p.state_dim_stride;
    const ChannelTaps taps(p, w, c0 + c);
    float before[kMaxWidth];
    stage_window<Isa>(p, sc, cache.init, 1, before, 1);
    if (sc != nullptr) write_new_state<Isa>(p, sc, cache.init, len, xc, 1, 1, 1);
    for (int64_t t1 = len; t1 > 0; t1 -= kRowChunk) {
      const int64_t t0 = max64(0, t1 - kRowChunk), count = t1 - t0;
      for (int64_t i = 0; i < H; ++i) {
        const int64_t t = t0 - H + i;
        if (t >= 0) {
          copy_channels<Isa>(xs + i, 1, xc + t, 1, 1);
        } else {
          xs[i] = before[H + t];
        }
      }
      copy_channels<Isa>(xs + H, 1, xc + t0, 1, count);
      conv_row(xs, taps.w, taps.bias, p.width, count, y);
      if (p.silu) {  // two plain loops, which the compiler vectorises
        float* const e = xs;  // the staged inputs are spent
        for (int64_t i = 0; i < count; ++i) e[i] = exp_fast(-y[i]);
        for (int64_t i = 0; i < count; ++i) y[i] = y[i] / (1.f + e[i]);
      }
      copy_channels<Isa>(oc + t0, 1, y, 1, count);
    }
  }
}

// Outputs of tokens [t0, t1) of one sequence, channels [c0, c1) (in place or
// channel-first: the whole sequence, fwd_item_in_place / fwd_item_rows).
template <class Isa, typename scalar_t, typename state_t>
void fwd_item(const FwdParams& p, const CpuWeights& w, int64_t seq, int64_t t0, int64_t t1,
              int64_t c0, int64_t c1, float* scratch) {
  if (p.channel_first()) return fwd_item_rows<Isa, scalar_t, state_t>(p, w, seq, c0, c1, scratch);
  if (p.in_place()) return fwd_item_in_place<Isa, scalar_t, state_t>(p, w, seq, c0, c1, scratch);
  int64_t begin, end;
  p.token_range(seq, begin, end);
  const int64_t len = end - begin, n = c1 - c0, pitch = scratch_pitch(n);
  const int64_t x_dim = p.x_dim_stride, x_tok = p.x_tok_stride;
  const int64_t o_dim = p.out_dim_stride, o_tok = p.out_tok_stride;
  const scalar_t* x = static_cast<const scalar_t*>(p.x) + begin * x_tok + c0 * x_dim;
  scalar_t* out = static_cast<scalar_t*>(p.out) + begin * o_tok + c0 * o_dim;

  const SequenceCache<state_t> cache(p, seq, c0);
  if (cache.padding) {
    for (int64_t t = t0; t < t1; ++t) fill_channels<Isa>(out + t * o_tok, o_dim, n);
    return;
  }

  const int64_t H = p.width - 1;
  if (t0 == 0) {
    // scratch rows 0..H-1: the window before the sequence; then its first tokens.
    const int64_t nhead = min64(len, H);
    stage_window<Isa>(p, cache.state, cache.init, n, scratch, pitch);
    for (int64_t k = 0; k < nhead; ++k)
      copy_channels<Isa>(scratch + (H + k) * pitch, 1, x + k * x_tok, x_dim, n);
    for (int64_t t = 0; t < nhead; ++t)
      for (int64_t cb = 0; cb < n; cb += kBlock)
        Isa::conv_token(p, w, c0 + cb, min64(kBlock, n - cb), scratch + t * pitch + cb, pitch, 1,
                        out + t * o_tok + cb * o_dim, o_dim);
  }

  // Blocks of kTokens tokens x kBlock channels, each cache line of channels
  // walking down the block's tokens (Isa::conv_tokens).
  for (int64_t tb = max64(t0, H); tb < t1; tb += kTokens)
    for (int64_t cb = 0; cb < n; cb += kBlock)
      Isa::conv_tokens(p, w, c0 + cb, min64(kBlock, n - cb), x + (tb - H) * x_tok + cb * x_dim,
                       x_tok, x_dim, out + tb * o_tok + cb * o_dim, o_tok, o_dim,
                       min64(kTokens, t1 - tb));

  if (t0 == 0 && cache.state != nullptr)
    write_new_state<Isa>(p, cache.state, cache.init, len, x, x_tok, x_dim, n);
}

}  // namespace
}  // namespace causal_conv1d::cpu
