// The Dao dialect's batch prefill: work items of tokens [t0, t1) of a row x a
// channel slab; channel-last rows by token blocks, other layouts one channel at
// a time along its tokens (batch.h).
#pragma once

#include "batch.h"

namespace causal_conv1d::cpu {
namespace {

// Channel-last rows: clean runs of tokens read x in place (Isa::conv_tokens);
// other tokens stage their masked window.
template <class Isa, typename scalar_t>
void batch_fwd_in_place(const BatchParams& p, const CpuWeights& w, int64_t b, int64_t t0,
                        int64_t t1, int64_t c0, int64_t n, const scalar_t* x, const scalar_t* init,
                        scalar_t* out, float* scratch) {
  const int64_t pitch = scratch_pitch(n), H = p.width - 1;
  const int64_t x_tok = p.x.tok, x_dim = p.x.dim;
  const int64_t o_tok = p.out.tok, o_dim = p.out.dim;
  SequenceRuns runs(p, b, t0);
  for (int64_t t = t0; t < t1;) {
    if (runs.clean(t)) {
      int64_t end = t + 1;
      while (end < t1 && runs.clean(end)) ++end;
      if (p.sequence(b, t) < 0) {
        for (int64_t u = t; u < end; ++u) fill_channels<Isa>(out + u * o_tok, o_dim, n);
      } else {
        for (int64_t tb = t; tb < end; tb += kTokens)
          for (int64_t cb = 0; cb < n; cb += kBlock)
            Isa::conv_tokens(p, w, c0 + cb, min64(kBlock, n - cb),
                             x + (tb - H) * x_tok + cb * x_dim, x_tok, x_dim,
                             out + tb * o_tok + cb * o_dim, o_tok, o_dim, min64(kTokens, end - tb));
      }
      t = end;
      continue;
    }
    if (p.sequence(b, t) < 0) {
      fill_channels<Isa>(out + t * o_tok, o_dim, n);
    } else {
      stage_batch_window<Isa>(p, b, t, x, init, n, scratch, pitch);
      for (int64_t cb = 0; cb < n; cb += kBlock)
        Isa::conv_token(p, w, c0 + cb, min64(kBlock, n - cb), scratch + cb, pitch, 1,
                        out + t * o_tok + cb * o_dim, o_dim);
    }
    ++t;
  }
}

template <class Isa, typename scalar_t>
void batch_fwd_rows(const BatchParams& p, const CpuWeights& w, int64_t b, int64_t t0, int64_t t1,
                    int64_t c0, int64_t n, const scalar_t* x, scalar_t* out, float* scratch) {
  const int64_t count = t1 - t0;
  float* xs = scratch;                    // kRowChunk + kMaxWidth
  float* y = xs + kRowChunk + kMaxWidth;  // kRowChunk
  float* e = y + kRowChunk;               // kRowChunk
  auto* kind = reinterpret_cast<uint8_t*>(e + kRowChunk);
  classify_windows(p, b, t0, t1, kind);
  const bool masked = p.seq_idx != nullptr;
  for (int64_t c = 0; c < n; ++c) {
    const ChannelTaps taps(p, w, c0 + c);
    const float* wk = taps.w;
    const float bias = taps.bias;
    load_channel_window<Isa>(p, x + c * p.x.dim, at<const scalar_t>(p.initial_states, b, c0 + c),
                             t0, t1, xs);
    conv_row(xs, wk, bias, p.width, count, y);
    if (masked)
      for (int64_t i = 0; i < count; ++i)
        if (kind[i] == kMasked) y[i] = conv_masked(p, b, t0 + i, xs + i, wk, bias);
    if (p.silu) {
      for (int64_t i = 0; i < count; ++i) e[i] = exp_fast(-y[i]);
      for (int64_t i = 0; i < count; ++i) y[i] = y[i] / (1.f + e[i]);
    }
    if (masked)
      for (int64_t i = 0; i < count; ++i)
        if (kind[i] == kPadding) y[i] = 0.f;
    copy_channels<Isa>(out + c * p.out.dim + t0 * p.out.tok, p.out.tok, y, 1, count);
  }
}

// Outputs of tokens [t0, t1) of row b, channels [c0, c1); the item holding the
// row's last token also writes its final states.
template <class Isa, typename scalar_t>
void batch_fwd_item(const BatchParams& p, const CpuWeights& w, int64_t b, int64_t t0, int64_t t1,
                    int64_t c0, int64_t c1, float* scratch) {
  const int64_t n = c1 - c0, H = p.width - 1;
  const int64_t x_tok = p.x.tok, x_dim = p.x.dim;
  const scalar_t* x = at<const scalar_t>(p.x, b, c0);
  scalar_t* out = at<scalar_t>(p.out, b, c0);
  const scalar_t* init = at<const scalar_t>(p.initial_states, b, c0);
  if (x_dim == 1) {
    batch_fwd_in_place<Isa>(p, w, b, t0, t1, c0, n, x, init, out, scratch);
  } else {
    batch_fwd_rows<Isa>(p, w, b, t0, t1, c0, n, x, out, scratch);
  }

  if (!p.final_states.present() || t1 != p.seqlen) return;
  // The last width-1 columns of cat(initial state or zeros, x).
  scalar_t* fin = at<scalar_t>(p.final_states, b, c0);
  for (int64_t j = 0; j < H; ++j) {
    const int64_t src = p.seqlen - H + j;
    scalar_t* dst = fin + j * p.final_states.tok;
    if (src >= 0) {
      copy_channels<Isa>(dst, p.final_states.dim, x + src * x_tok, x_dim, n);
    } else if (init != nullptr) {
      copy_channels<Isa>(dst, p.final_states.dim, init + (src + H) * p.initial_states.tok,
                         p.initial_states.dim, n);
    } else {
      fill_channels<Isa>(dst, p.final_states.dim, n);
    }
  }
}

}  // namespace
}  // namespace causal_conv1d::cpu
