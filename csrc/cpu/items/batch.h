// What the Dao dialect's batch prefill (batch_fwd.h) and its backward
// (batch_bwd.h) share, CONTRACT 1.5.
//
// A token is "clean" when its whole window lies in x and in its own sequence:
// its taps then read x in place (Isa::conv_tokens, plain channel loops in the
// backward). Other tokens stage their window in fp32 first: taps of another
// sequence are zero, taps before the row read initial_states (when the row's
// first token is of the same sequence) or zero.
#pragma once

#include "common.h"

namespace causal_conv1d::cpu {
namespace {

// Row b, channel c of a batch tensor, or null when the tensor is absent.
template <typename T>
T* at(const View3& v, int64_t b, int64_t c) {
  return v.present() ? static_cast<T*>(v.data) + b * v.batch + c * v.dim : nullptr;
}

// Tracks, walking a row's tokens upwards, where the current run of equal
// sequence ids starts (only as far back as width-1 tokens matters).
struct SequenceRuns {
  const BatchParams& p;
  int64_t b, run;
  SequenceRuns(const BatchParams& params, int64_t row, int64_t t0) : p(params), b(row), run(0) {
    if (p.seq_idx == nullptr) return;
    const int64_t s = p.sequence(b, t0);
    run = t0;
    while (run > 0 && t0 - run < p.width - 1 && p.sequence(b, run - 1) == s) --run;
  }
  // Called for t0, t0 + 1, ... in order; whether token t is clean.
  bool clean(int64_t t) {
    if (p.seq_idx != nullptr && t > 0 && p.sequence(b, t) != p.sequence(b, t - 1)) run = t;
    return t - (p.width - 1) >= run;
  }
};

// Token t's window (width columns, the last one token t) in fp32 rows of
// `pitch`, channels [c0, c0 + n), taps outside its sequence zero.
template <class Isa, typename scalar_t>
void stage_batch_window(const BatchParams& p, int64_t b, int64_t t, const scalar_t* x,
                        const scalar_t* init, int64_t n, float* rows, int64_t pitch) {
  const int64_t H = p.width - 1, s = p.sequence(b, t);
  const bool init_ours = init != nullptr && p.sequence(b, 0) == s;
  for (int64_t k = 0; k <= H; ++k) {
    const int64_t pos = t - H + k;
    float* row = rows + k * pitch;
    if (pos >= 0 && p.sequence(b, pos) == s) {
      copy_channels<Isa>(row, 1, x + pos * p.x.tok, p.x.dim, n);
    } else if (pos < 0 && init_ours) {
      copy_channels<Isa>(row, 1, init + (pos + H) * p.initial_states.tok, p.initial_states.dim, n);
    } else {
      fill_channels<Isa>(row, 1, n);
    }
  }
}

// Tiles: rows of fp32 channels (row r at tile + r * pitch) for `count` tokens of
// a (token, channel)-strided tensor, read or written in the order that walks
// its unit stride, so that both layouts stream.
template <class Isa, typename T>
void load_tile(float* tile, int64_t pitch, const T* src, int64_t tok, int64_t dim, int64_t count,
               int64_t n) {
  if (dim == 1 || tok != 1) {
    for (int64_t r = 0; r < count; ++r)
      copy_channels<Isa>(tile + r * pitch, 1, src + r * tok, dim, n);
  } else {
    for (int64_t c = 0; c < n; ++c)
      for (int64_t r = 0; r < count; ++r)
        tile[r * pitch + c] = Convert<Isa>::to_float(src[c * dim + r]);
  }
}

template <class Isa, typename T>
void store_tile(T* dst, int64_t tok, int64_t dim, const float* tile, int64_t pitch, int64_t count,
                int64_t n) {
  if (dim == 1 || tok != 1) {
    for (int64_t r = 0; r < count; ++r)
      copy_channels<Isa>(dst + r * tok, dim, tile + r * pitch, 1, n);
  } else {
    for (int64_t c = 0; c < n; ++c)
      for (int64_t r = 0; r < count; ++r)
        Convert<Isa>::from_float(tile[r * pitch + c], dst[c * dim + r]);
  }
}

// The columns before and including tokens [first, end) of row b as fp32 rows:
// row r holds position first - (width-1) + r, from x or, before the row, from
// the initial states (zeros without them). Masks are applied by the readers.
template <class Isa, typename scalar_t>
void load_window_tile(const BatchParams& p, const scalar_t* x, const scalar_t* init, int64_t first,
                      int64_t end, int64_t n, float* tile, int64_t pitch) {
  const int64_t H = p.width - 1;
  int64_t pos = first - H;
  for (; pos < 0 && pos < end; ++pos) {
    float* row = tile + (pos - first + H) * pitch;
    if (init != nullptr) {
      copy_channels<Isa>(row, 1, init + (pos + H) * p.initial_states.tok, p.initial_states.dim, n);
    } else {
      fill_channels<Isa>(row, 1, n);
    }
  }
  if (pos < end)
    load_tile<Isa>(tile + (pos - first + H) * pitch, pitch, x + pos * p.x.tok, p.x.tok, p.x.dim,
                   end - pos, n);
}

// Whether tap k of token t (sequence s) reads a column of its own sequence;
// positions before the row belong to the row's first token's sequence.
inline bool tap_in_sequence(const BatchParams& p, int64_t b, int64_t t, int64_t k, int64_t s) {
  const int64_t pos = t - (p.width - 1) + k;
  return p.sequence(b, pos < 0 ? 0 : pos) == s;
}

// ---- Other layouts (channel-first): one channel at a time along its tokens ----
//
// Each channel's tokens are a contiguous row (or a strided one), so every loop
// below runs along tokens with the channel's taps in scalars. Tokens whose
// window crosses a change of sequence (seq_idx) are computed as if it did not,
// then recomputed with their masks; padding tokens are zeroed.

enum TokenKind : uint8_t { kClean = 0, kMasked = 1, kPadding = 2 };

// What each token of [t0, end) of row b is for the forward (its window).
inline void classify_windows(const BatchParams& p, int64_t b, int64_t t0, int64_t end,
                             uint8_t* kind) {
  for (int64_t t = t0; t < end; ++t) {
    uint8_t k8 = kClean;
    if (p.seq_idx != nullptr) {
      const int64_t s = p.sequence(b, t);
      if (s < 0) {
        k8 = kPadding;
      } else {
        for (int64_t k = 0; k < p.width - 1; ++k)
          if (!tap_in_sequence(p, b, t, k, s)) k8 = kMasked;
      }
    }
    kind[t - t0] = k8;
  }
}

// Whether token q's gradient reads g of a later token of another sequence.
inline bool dx_masked(const BatchParams& p, int64_t b, int64_t q) {
  if (p.seq_idx == nullptr) return false;
  const int64_t s = p.sequence(b, q), last = min64(q + p.width - 1, p.seqlen - 1);
  for (int64_t t = q + 1; t <= last; ++t)
    if (p.sequence(b, t) != s) return true;
  return false;
}

// Channel c's positions first - (width-1) .. end - 1 in fp32 (before the row:
// its initial state, or zeros).
template <class Isa, typename scalar_t>
void load_channel_window(const BatchParams& p, const scalar_t* xc, const scalar_t* initc,
                         int64_t first, int64_t end, float* xs) {
  const int64_t H = p.width - 1;
  int64_t pos = first - H;
  for (; pos < 0 && pos < end; ++pos)
    xs[pos - first + H] =
        initc == nullptr ? 0.f : Convert<Isa>::to_float(initc[(pos + H) * p.initial_states.tok]);
  if (pos < end)
    copy_channels<Isa>(xs + (pos - first + H), 1, xc + pos * p.x.tok, p.x.tok, end - pos);
}

// sum_i a[i] * b[i] (b null: sum_i a[i]) in 16 fixed lanes, summed in a fixed
// order: vectorised without reassociation, the same bits on every run.
inline float dot_row(const float* a, const float* b, int64_t count) {
  constexpr int64_t kLanes = 16;
  float lanes[kLanes] = {};
  int64_t i = 0;
  if (b == nullptr) {
    for (; i + kLanes <= count; i += kLanes)
      for (int64_t j = 0; j < kLanes; ++j) lanes[j] += a[i + j];
    for (; i < count; ++i) lanes[i % kLanes] += a[i];
  } else {
    for (; i + kLanes <= count; i += kLanes)
      for (int64_t j = 0; j < kLanes; ++j) lanes[j] += a[i + j] * b[i + j];
    for (; i < count; ++i) lanes[i % kLanes] += a[i] * b[i];
  }
  float sum = 0.f;
  for (int64_t j = 0; j < kLanes; ++j) sum += lanes[j];
  return sum;
}

// conv_row (items/common.h) for one token, with its masks.
inline float conv_masked(const BatchParams& p, int64_t b, int64_t t, const float* window,
                         const float* wk, float bias) {
  const int64_t s = p.sequence(b, t);
  float acc = bias;
  for (int64_t k = 0; k < p.width; ++k)
    if (tap_in_sequence(p, b, t, k, s)) acc += wk[k] * window[k];
  return acc;
}

}  // namespace
}  // namespace causal_conv1d::cpu
