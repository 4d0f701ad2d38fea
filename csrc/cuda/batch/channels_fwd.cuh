// The forward along channels (channels.cuh).
#pragma once

#include "channels.cuh"

namespace causal_conv1d::cuda {
namespace {

template <typename T, int kW, int n, bool kSeq>
__global__ void __launch_bounds__(kThreads, kChannelBlocks<kW>)
    batch_fwd_channels(const BatchParams p, const int64_t chunk, const VecFlags vec) {
  await_producers();
  const int64_t b = blockIdx.z, L = p.seqlen;
  const int64_t c = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) * n;
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * chunk;
  if (c >= p.dim || (t0 >= L && t0 > 0)) return;
  const int64_t t1 = t0 + chunk < L ? t0 + chunk : L;
  constexpr int kT = kTaps<kW>;
  const int H = (kW > 0 ? kW : p.width) - 1;
  constexpr bool by_sequence = kSeq;  // else every token is of sequence 0
  Filter<kW, n> f;
  f.load(p, c, vec);
  const Rows<const T, n> x = rows<const T, n>(p.x, b, c);
  const Rows<T, n> out = rows<T, n>(p.out, b, c);

  float window[kT - 1][n];
  int32_t window_seq[kT - 1];
#pragma unroll
  for (int k = 0; k < kT - 1; ++k) {
    window_seq[k] = 0;
    if (k >= H) continue;
    columns<T, n>(p, x, b, c, t0 - H + k, H, window[k]);
    if (by_sequence) window_seq[k] = column_sequence(p, b, t0 - H + k);
  }
  const auto step = [&](const float (&xt)[n], int32_t s, int64_t t) {
    float y[n];
#pragma unroll
    for (int e = 0; e < n; ++e) {
      float acc = f.b[e];
#pragma unroll
      for (int k = 0; k < kT; ++k) {
        if (k < H && (!by_sequence || window_seq[k] == s)) acc = fmaf(f.w[k][e], window[k][e], acc);
        if (k == H) acc = fmaf(f.w[k][e], xt[e], acc);
      }
      y[e] = s < 0 ? 0.f : (p.silu ? silu(acc) : acc);
    }
#pragma unroll
    for (int k = 0; k < kT - 1; ++k) {
      if (k + 1 < H) {
#pragma unroll
        for (int e = 0; e < n; ++e) window[k][e] = window[k + 1][e];
        window_seq[k] = window_seq[k + 1];
      } else if (k + 1 == H) {
#pragma unroll
        for (int e = 0; e < n; ++e) window[k][e] = xt[e];
        window_seq[k] = s;
      }
    }
    out.store(t, y);
  };
  const auto sequence = [&](int64_t t) {
    return by_sequence ? static_cast<int32_t>(p.sequence(b, t)) : 0;
  };
  int64_t t = t0;
  for (; t + kLoads <= t1; t += kLoads) {  // kLoads tokens' loads, then their outputs
    Packed<T, n> xs[kLoads];
    int32_t ss[kLoads];
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      xs[i] = x.load_packed(t + i);
      ss[i] = sequence(t + i);
    }
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      float xt[n];
      xs[i].unpack(xt);
      step(xt, ss[i], t + i);
    }
  }
  for (; t < t1; ++t) {
    float xt[n];
    x.load(t, xt);
    step(xt, sequence(t), t);
  }
  // The final states: the last width-1 columns, written by the row's last chunk.
  if (p.final_states.present() && t1 == L) {
    for (int i = 0; i < H; ++i) {
      float v[n];
      columns<T, n>(p, x, b, c, L - H + i, H, v);
      store_columns<T, n>(p.final_states, b, c, i, v);
    }
  }
}

}  // namespace
}  // namespace causal_conv1d::cuda
