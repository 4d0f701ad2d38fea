// The backward along channels (channels.cuh): dx, dinitial_states and this
// chunk's dweight and dbias shares.
#pragma once

#include "channels.cuh"

namespace causal_conv1d::cuda {
namespace {

template <typename T, int kW, int n, bool kSeq>
__global__ void __launch_bounds__(kThreads, kChannelBlocks<kW>)
    batch_bwd_channels(const BatchParams p, const int64_t chunk, const VecFlags vec,
                       float* __restrict__ shares) {
  await_producers();
  const int64_t b = blockIdx.z, L = p.seqlen;
  const int64_t c = (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x) * n;
  const int64_t t0 = static_cast<int64_t>(blockIdx.y) * chunk;
  if (c >= p.dim) return;
  const int64_t t1 = t0 + chunk < L ? t0 + chunk : L;
  constexpr int kT = kTaps<kW>;
  const int H = (kW > 0 ? kW : p.width) - 1;
  constexpr bool by_sequence = kSeq;  // else every token is of sequence 0
  float dw[kT][n], db[n];
#pragma unroll
  for (int e = 0; e < n; ++e) {
    db[e] = 0.f;
#pragma unroll
    for (int k = 0; k < kT; ++k) dw[k][e] = 0.f;
  }

  if (t0 < L || t0 == 0) {
    Filter<kW, n> f;
    f.load(p, c, vec);
    const Rows<const T, n> x = rows<const T, n>(p.x, b, c);
    const Rows<const T, n> dout = rows<const T, n>(p.dout, b, c);
    const Rows<T, n> dx = rows<T, n>(p.dx, b, c);
    // Columns u-H..u (values and sequences) and the gradients g of tokens
    // u-H..u, at positions 0..H; g of tokens before the chunk are never needed
    // for its columns, and before the row they are zero.
    float col[kT][n], g[kT][n];
    int32_t col_seq[kT];
#pragma unroll
    for (int k = 0; k < kT; ++k) {
      col_seq[k] = 0;
      clear(g[k]);
      clear(col[k]);
      if (k < H) {
        columns<T, n>(p, x, b, c, t0 - H + k, H, col[k]);
        if (by_sequence) col_seq[k] = column_sequence(p, b, t0 - H + k);
      }
    }
    const int64_t u_end = t1 + H;  // tokens t1 .. t1+H-1 only complete the chunk's columns
    // One group of kBwdLoads tokens from u0. Interior groups (no sequence ids, every token in
    // the chunk, every completed column the chunk's and in the row: no state columns) drop the
    // per-token guards at compile time.
    const auto group = [&](int64_t u0, auto interior) {
      constexpr bool kInterior = decltype(interior)::value;
      const int64_t in_row = (L < u_end ? L : u_end) - u0;
      const int m = kInterior ? kBwdLoads
                    : in_row <= 0 ? 0
                                  : (in_row < kBwdLoads ? static_cast<int>(in_row) : kBwdLoads);
      Packed<T, n> xs[kBwdLoads], ds[kBwdLoads];
      int32_t ss[kBwdLoads];
#pragma unroll
      for (int i = 0; i < kBwdLoads; ++i) {
        if (kInterior || i < m) {
          xs[i] = x.load_packed(u0 + i);
          ds[i] = dout.load_packed(u0 + i);
        }
        ss[i] = i < m && by_sequence ? static_cast<int32_t>(p.sequence(b, u0 + i)) : 0;
      }
#pragma unroll
      for (int i = 0; i < kBwdLoads; ++i) {
        const int64_t u = u0 + i;
        if (!kInterior && u >= u_end) break;
        // Token u's column enters at position H.
        const bool token = kInterior || i < m;
        const int32_t s = token ? ss[i] : -1;
        float xt[n], dt[n];
        if (token) {
          xs[i].unpack(xt);
          ds[i].unpack(dt);
        } else {
          clear(xt);
          clear(dt);
        }
#pragma unroll
        for (int k = 0; k < kT; ++k)
          if (k == H) {
#pragma unroll
            for (int e = 0; e < n; ++e) col[k][e] = xt[e];
            col_seq[k] = token && by_sequence ? s : 0;
          }
        float gu[n];
#pragma unroll
        for (int e = 0; e < n; ++e) {
          gu[e] = 0.f;
          if (token && s >= 0) {
            float pre = f.b[e];
#pragma unroll
            for (int k = 0; k < kT; ++k)
              if (k <= H && (!by_sequence || col_seq[k] == s))
                pre = fmaf(f.w[k][e], col[k][e], pre);
            gu[e] = output_grad_to_pre(dt[e], pre, p.silu);
          }
        }
        // g of tokens u-H..u at positions 0..H.
#pragma unroll
        for (int k = 0; k + 1 < kT; ++k)
          if (k < H) {
#pragma unroll
            for (int e = 0; e < n; ++e) g[k][e] = g[k + 1][e];
          }
#pragma unroll
        for (int k = 0; k < kT; ++k)
          if (k == H) {
#pragma unroll
            for (int e = 0; e < n; ++e) g[k][e] = gu[e];
          }
        if (kInterior || (token && u < t1)) {
#pragma unroll
          for (int k = 0; k < kT; ++k)
            if (k <= H && (!by_sequence || col_seq[k] == s)) {
#pragma unroll
              for (int e = 0; e < n; ++e) dw[k][e] = fmaf(gu[e], col[k][e], dw[k][e]);
            }
#pragma unroll
          for (int e = 0; e < n; ++e) db[e] += gu[e];
        }
        // Column j = u - H is complete: tokens j..u read it, through taps H..0.
        const int64_t j = u - H;
        if (kInterior || (j >= t0 && j < t1) || (t0 == 0 && j < 0)) {
          float dc[n];
          clear(dc);
#pragma unroll
          for (int k = 0; k < kT; ++k) {
            // Token u - k, at position H - k, reads column j = u - H through tap k.
            if (k <= H) {
              const int pos = H - k;
#pragma unroll
              for (int q = 0; q < kT; ++q)
                if (q == pos && (!by_sequence || col_seq[q] == col_seq[0])) {
#pragma unroll
                  for (int e = 0; e < n; ++e) dc[e] = fmaf(f.w[k][e], g[q][e], dc[e]);
                }
            }
          }
          if (!kInterior && p.dfinal_states.present() && j >= L - H) {
            const View3& v = p.dfinal_states;
            float df[n];
            load_n<T, n>(
                static_cast<const T*>(v.data) + b * v.batch + c * v.dim + (j - (L - H)) * v.tok,
                v.dim, false, df);
#pragma unroll
            for (int e = 0; e < n; ++e) dc[e] += df[e];
          }
          if (kInterior || j >= 0) {
            dx.store(j, dc);
          } else if (p.dinitial_states.present()) {
            store_columns<T, n>(p.dinitial_states, b, c, j + H, dc);
          }
        }
        // Slide the columns: position k takes k + 1.
#pragma unroll
        for (int k = 0; k + 1 < kT; ++k)
          if (k < H) {
#pragma unroll
            for (int e = 0; e < n; ++e) col[k][e] = col[k + 1][e];
            col_seq[k] = col_seq[k + 1];
          }
      }
    };
    for (int64_t u0 = t0; u0 < u_end; u0 += kBwdLoads) {
      if (!by_sequence && u0 - H >= t0 && u0 + kBwdLoads <= t1) {
        group(u0, std::true_type{});
      } else {
        group(u0, std::false_type{});
      }
    }
  }
  // This chunk's shares: slot (b, blockIdx.y), width rows of dweight, then dbias.
  float* slot = shares + (b * gridDim.y + blockIdx.y) * (p.width + 1) * p.dim + c;
  for (int k = 0; k < p.width; ++k) {
#pragma unroll
    for (int q = 0; q < kT; ++q)
      if (q == k) store_n<float, n>(slot + k * p.dim, 1, true, dw[q]);
  }
  store_n<float, n>(slot + p.width * p.dim, 1, true, db);
}

}  // namespace
}  // namespace causal_conv1d::cuda
