// The backward of the Dao dialect's batch prefill: dx, dinitial_states and the
// item's shares of dweight and dbias, on fp32 tiles (channel-last) or one
// channel at a time along its tokens (other layouts, batch.h).
#pragma once

#include "batch.h"

namespace causal_conv1d::cpu {
namespace {

template <class Isa, typename scalar_t>
void batch_bwd_rows(const BatchParams& p, const CpuWeights& w, int64_t b, int64_t t0, int64_t t1,
                    int64_t c0, int64_t n, float* scratch, float* dw, float* db) {
  const int64_t H = p.width - 1, L = p.seqlen, count = t1 - t0;
  const int64_t te = min64(L, t1 + H), rows = te - t0;
  const scalar_t* x = at<const scalar_t>(p.x, b, 0);
  const scalar_t* dout = at<const scalar_t>(p.dout, b, 0);
  scalar_t* dx = at<scalar_t>(p.dx, b, 0);
  const scalar_t* dfinal = at<const scalar_t>(p.dfinal_states, b, 0);
  scalar_t* dinit = at<scalar_t>(p.dinitial_states, b, 0);

  float* xs = scratch;                        // positions t0 - H .. te - 1
  float* g = xs + kRowChunk + 2 * kMaxWidth;  // tokens t0 .. t1 + H - 1 (zero past te)
  float* pre = g + kRowChunk + kMaxWidth;     // tokens t0 .. te - 1
  float* gm = pre + kRowChunk + kMaxWidth;    // g with masked tokens zeroed
  float* acc = gm + kRowChunk + kMaxWidth;    // dx of tokens t0 .. t1 - 1
  auto* kind = reinterpret_cast<uint8_t*>(acc + kRowChunk);
  auto* dx_kind = kind + kRowChunk + kMaxWidth;
  const bool masked = p.seq_idx != nullptr;
  classify_windows(p, b, t0, te, kind);
  for (int64_t q = t0; q < t1; ++q) dx_kind[q - t0] = dx_masked(p, b, q) ? kMasked : kClean;
  const int64_t s0 = L > 0 ? p.sequence(b, 0) : 0;

  for (int64_t c = 0; c < n; ++c) {
    const int64_t ch = c0 + c;
    const ChannelTaps taps(p, w, ch);
    const float* wk = taps.w;
    const float bias = taps.bias;
    load_channel_window<Isa>(p, x + ch * p.x.dim, at<const scalar_t>(p.initial_states, b, ch), t0,
                             te, xs);
    copy_channels<Isa>(g, 1, dout + ch * p.dout.dim + t0 * p.dout.tok, p.dout.tok, rows);
    for (int64_t i = rows; i < count + H; ++i) g[i] = 0.f;

    // g = dout * act'(pre) at the pre-activation, zero for padding.
    conv_row(xs, wk, bias, p.width, rows, pre);
    if (masked)
      for (int64_t i = 0; i < rows; ++i)
        if (kind[i] == kMasked) pre[i] = conv_masked(p, b, t0 + i, xs + i, wk, bias);
    if (p.silu) {
      for (int64_t i = 0; i < rows; ++i) gm[i] = exp_fast(-pre[i]);
      for (int64_t i = 0; i < rows; ++i) {
        const float sig = 1.f / (1.f + gm[i]);
        g[i] *= sig * (1.f + pre[i] * (1.f - sig));
      }
    }
    if (masked)
      for (int64_t i = 0; i < rows; ++i)
        if (kind[i] == kPadding) g[i] = 0.f;

    // dbias and dweight over the chunk's own tokens; masked tokens add their valid taps.
    const float dbc = dot_row(g, nullptr, count);
    for (int64_t i = 0; i < count; ++i) gm[i] = masked && kind[i] != kClean ? 0.f : g[i];
    for (int64_t k = 0; k < p.width; ++k) {
      const float* col = xs + k;
      float sum = dot_row(gm, col, count);
      if (masked)
        for (int64_t i = 0; i < count; ++i)
          if (kind[i] == kMasked && tap_in_sequence(p, b, t0 + i, k, p.sequence(b, t0 + i)))
            sum += g[i] * col[i];
      dw[k * n + c] += sum;
    }
    db[c] += dbc;

    // dx[q] = sum_k w[k] g[q + H - k] (g is zero past the row), masked where needed.
    for (int64_t i = 0; i < count; ++i) acc[i] = 0.f;
    for (int64_t k = 0; k < p.width; ++k) {
      const float wkk = wk[k];
      const float* src = g + H - k;
      for (int64_t i = 0; i < count; ++i) acc[i] += wkk * src[i];
    }
    if (masked) {
      for (int64_t i = 0; i < count; ++i) {
        if (dx_kind[i] == kClean) continue;
        const int64_t q = t0 + i, s = p.sequence(b, q);
        float v = 0.f;
        for (int64_t k = 0; k < p.width; ++k) {
          const int64_t t = q + H - k;
          if (t < L && p.sequence(b, t) == s) v += wk[k] * g[t - t0];
        }
        acc[i] = v;
      }
    }
    if (dfinal != nullptr)
      for (int64_t q = max64(t0, L - H); q < t1; ++q)
        acc[q - t0] += Convert<Isa>::to_float(
            dfinal[ch * p.dfinal_states.dim + (q - (L - H)) * p.dfinal_states.tok]);
    copy_channels<Isa>(dx + ch * p.dx.dim + t0 * p.dx.tok, p.dx.tok, acc, 1, count);

    if (t0 != 0 || dinit == nullptr) continue;
    for (int64_t i = 0; i < H; ++i) {
      float v = 0.f;
      for (int64_t k = 0; k <= i; ++k) {
        const int64_t t = i - k;
        if (t < L && (!masked || p.sequence(b, t) == s0)) v += wk[k] * g[t];
      }
      if (dfinal != nullptr && i >= L)
        v += Convert<Isa>::to_float(
            dfinal[ch * p.dfinal_states.dim + (i - L) * p.dfinal_states.tok]);
      Convert<Isa>::from_float(v, dinit[ch * p.dinitial_states.dim + i * p.dinitial_states.tok]);
    }
  }
}

// dx of tokens [t0, t1) of row b, channels [c0, c1); dinitial_states of the
// row when t0 == 0; the chunk's dweight and dbias added into dw, db. All of it
// on fp32 tiles in scratch (x with its window, dout, the gradient g at the
// pre-activation, dx), filled and drained in the order of each tensor's unit
// stride: channel-last and channel-first inputs both stream.
template <class Isa, typename scalar_t>
void batch_bwd_item(const BatchParams& p, const CpuWeights& w, int64_t b, int64_t t0, int64_t t1,
                    int64_t c0, int64_t c1, float* scratch, float* dw, float* db) {
  if (p.x.dim != 1)
    return batch_bwd_rows<Isa, scalar_t>(p, w, b, t0, t1, c0, c1 - c0, scratch, dw, db);
  const int64_t n = c1 - c0, pitch = scratch_pitch(kBwdSlab), H = p.width - 1, L = p.seqlen;
  const scalar_t* x = at<const scalar_t>(p.x, b, c0);
  const scalar_t* dout = at<const scalar_t>(p.dout, b, c0);
  const scalar_t* init = at<const scalar_t>(p.initial_states, b, c0);
  const scalar_t* dfinal = at<const scalar_t>(p.dfinal_states, b, c0);
  const float* taps = w.taps + c0;
  const bool masked = p.seq_idx != nullptr;

  // Tokens [t0, te) need g (dx of token q reads g up to q + H).
  const int64_t te = min64(L, t1 + H), rows = te - t0;
  float* xs = scratch;                                  // positions t0 - H .. te - 1
  float* g = xs + (kBwdChunk + 2 * kMaxWidth) * pitch;  // tokens t0 .. te - 1 (dout first)
  float* dxs = g + (kBwdChunk + kMaxWidth) * pitch;     // tokens t0 .. t1 - 1
  load_window_tile<Isa>(p, x, init, t0, te, n, xs, pitch);
  load_tile<Isa>(g, pitch, dout + t0 * p.dout.tok, p.dout.tok, p.dout.dim, rows, n);

  float pre[kBwdSlab];
  for (int64_t t = t0; t < te; ++t) {
    float* gt = g + (t - t0) * pitch;
    const float* window = xs + (t - t0) * pitch;  // tap k at window + k * pitch
    const int64_t s = p.sequence(b, t);
    if (s < 0) {
      fill_channels<Isa>(gt, 1, n);
      continue;
    }
    bool valid[kMaxWidth];
    for (int64_t k = 0; k <= H; ++k) valid[k] = !masked || tap_in_sequence(p, b, t, k, s);
    for (int64_t c = 0; c < n; ++c) pre[c] = w.bias == nullptr ? 0.f : w.bias[c0 + c];
    for (int64_t k = 0; k <= H; ++k) {
      if (!valid[k]) continue;
      const float* tap = taps + k * p.dim;
      const float* col = window + k * pitch;
      for (int64_t c = 0; c < n; ++c) pre[c] += tap[c] * col[c];
    }
    if (p.silu) {
      float e[kBwdSlab];
      for (int64_t c = 0; c < n; ++c) e[c] = exp_fast(-pre[c]);
      for (int64_t c = 0; c < n; ++c) {
        const float sig = 1.f / (1.f + e[c]);
        gt[c] *= sig * (1.f + pre[c] * (1.f - sig));
      }
    }
    if (t >= t1) continue;  // a later chunk's token: its dweight share is that chunk's
    for (int64_t c = 0; c < n; ++c) db[c] += gt[c];
    for (int64_t k = 0; k <= H; ++k) {
      if (!valid[k]) continue;
      float* dwk = dw + k * n;
      const float* col = window + k * pitch;
      for (int64_t c = 0; c < n; ++c) dwk[c] += gt[c] * col[c];
    }
  }

  // dx[q] = sum_k w[k] g[q + H - k] over taps of q's sequence, + dfinal_states.
  for (int64_t q = t0; q < t1; ++q) {
    float* acc = dxs + (q - t0) * pitch;
    for (int64_t c = 0; c < n; ++c) acc[c] = 0.f;
    const int64_t s = p.sequence(b, q);
    for (int64_t k = 0; k <= H; ++k) {
      const int64_t t = q + H - k;
      if (t >= L || (masked && p.sequence(b, t) != s)) continue;
      const float* gt = g + (t - t0) * pitch;
      const float* tap = taps + k * p.dim;
      for (int64_t c = 0; c < n; ++c) acc[c] += tap[c] * gt[c];
    }
    if (dfinal != nullptr && q >= L - H) {
      const scalar_t* col = dfinal + (q - (L - H)) * p.dfinal_states.tok;
      for (int64_t c = 0; c < n; ++c)
        acc[c] += Convert<Isa>::to_float(col[c * p.dfinal_states.dim]);
    }
  }
  scalar_t* dx = at<scalar_t>(p.dx, b, c0);
  store_tile<Isa>(dx + t0 * p.dx.tok, p.dx.tok, p.dx.dim, dxs, pitch, t1 - t0, n);

  if (t0 != 0 || !p.dinitial_states.present()) return;
  // Initial-state column i (position i - H) feeds tap k of token i - k, when
  // that token's sequence is the row's first; and, for short rows, final column i - L.
  scalar_t* dinit = at<scalar_t>(p.dinitial_states, b, c0);
  const int64_t s0 = L > 0 ? p.sequence(b, 0) : 0;
  float acc[kBwdSlab];
  for (int64_t i = 0; i < H; ++i) {
    for (int64_t c = 0; c < n; ++c) acc[c] = 0.f;
    for (int64_t k = 0; k <= i; ++k) {
      const int64_t t = i - k;
      if (t >= L || (masked && p.sequence(b, t) != s0)) continue;
      const float* gt = g + t * pitch;
      const float* tap = taps + k * p.dim;
      for (int64_t c = 0; c < n; ++c) acc[c] += tap[c] * gt[c];
    }
    if (dfinal != nullptr && i >= L) {
      const scalar_t* col = dfinal + (i - L) * p.dfinal_states.tok;
      for (int64_t c = 0; c < n; ++c)
        acc[c] += Convert<Isa>::to_float(col[c * p.dfinal_states.dim]);
    }
    copy_channels<Isa>(dinit + i * p.dinitial_states.tok, p.dinitial_states.dim, acc, 1, n);
  }
}

}  // namespace
}  // namespace causal_conv1d::cpu
