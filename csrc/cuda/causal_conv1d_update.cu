// CUDA decode (causal_conv1d_update).
//
// Tiling: one block per (batch row, kThreads * n channels), each thread n
// consecutive channels (8 bytes of x on the vector paths; 1 channel
// otherwise). The one-token step has a kernel of its own (step_kernel) whose n
// follows the batch (step_bytes). A thread reads its window from the conv
// state into registers, then updates the state (reading x, before any output
// is written, so that out may be x), then computes the row's outputs. Linear
// states shift left by the row's length; ring buffers write token j at
// (cache_seqlens + j) % state_len; front-aligned lines (vLLM, CONTRACT 1.4)
// follow the row's LinePlan. Varlen rows find their tokens through
// query_start_loc on the device, so the launch depends on no data. Every group
// of loads is issued before the stores that follow it, so a row costs a few
// memory latencies, not one per element.

#include "../ops.h"
#include "../settings.h"
#include "common.cuh"

namespace causal_conv1d::cuda {
namespace {

__device__ __forceinline__ int64_t wrap(int64_t v, int64_t m) { return ((v % m) + m) % m; }

// The new state of a front-aligned line (LinePlan with live == width-1): the
// window holds the whole source, so column j takes window[j + shift] or token
// j + shift - H, with no reload of the line.
template <typename state_t, typename scalar_t, int kW, int n>
__device__ __forceinline__ void store_front_line(const StateLine<state_t, n>& state,
                                                 const Window<kW, n>& window, int H,
                                                 const LinePlan& plan,
                                                 const Rows<const scalar_t, n>& x, int64_t L) {
#pragma unroll
  for (int k = 0; k < kTaps<kW> - 1; ++k) {
    const int64_t j = k - plan.shift;
    if (k < H && j >= 0) state.store(j, window.v[k]);
  }
  for (int64_t t = plan.shift > H ? plan.shift - H : 0; t < L; ++t) {
    const int64_t j = H + t - plan.shift;
    if (j >= plan.ncols) break;
    float v[n];
    x.load(t, v);
    state.store(j, v);
  }
}

// Kernel variants, each compiled on its own so that the general paths cost the
// common ones no registers (occupancy is what hides a row's two latencies).
enum Mode : int {
  kGeneral = 0,  // any row: ring buffers, shifted lines, long rows
  kFrontMode,    // front-aligned lines (vLLM), at most kGroup tokens per row
};  // (the one-token step: step_kernel)

// Row `row`'s x and out from its token `begin`, channel c on.
template <typename scalar_t, int n>
__device__ __forceinline__ Rows<const scalar_t, n> x_rows(const UpdateParams& p, int64_t row,
                                                          int64_t c, int64_t begin = 0) {
  return {static_cast<const scalar_t*>(p.x) + row * p.x_batch_stride + begin * p.x_tok_stride +
              c * p.x_dim_stride,
          p.x_tok_stride, p.x_dim_stride};
}

template <typename scalar_t, int n>
__device__ __forceinline__ Rows<scalar_t, n> out_rows(const UpdateParams& p, int64_t row, int64_t c,
                                                      int64_t begin = 0) {
  return {static_cast<scalar_t*>(p.out) + row * p.out_batch_stride + begin * p.out_tok_stride +
              c * p.out_dim_stride,
          p.out_tok_stride, p.out_dim_stride};
}

template <typename scalar_t, typename state_t, int kW, int n, int kMode>
__global__ void __launch_bounds__(kThreads)
    update_kernel(const UpdateParams p, const VecFlags vec) {
  constexpr bool kFront = kMode == kFrontMode;
  await_producers();
  const int64_t row = blockIdx.x;
  const int64_t c = (static_cast<int64_t>(blockIdx.y) * kThreads + threadIdx.x) * n;
  if (c >= p.dim) return;
  int64_t begin = 0, L = p.seqlen;
  // (A front-mode launch guarantees L <= kGroup; a longer row would be padding.)
  const bool valid = p.row_tokens(row, begin, L) && (!kFront || L <= kGroup);
  if (L == 0) return;
  const Rows<const scalar_t, n> x = x_rows<scalar_t, n>(p, row, c, begin);
  const Rows<scalar_t, n> out = out_rows<scalar_t, n>(p, row, c, begin);

  // The first tokens (all of them when L <= kTokens: a decode or speculative
  // step), the cache index and the filter are loaded together, so that a row
  // costs two memory latencies (index, then window) before its stores.
  constexpr int kTokens = kGroup;
  Packed<scalar_t, n> xs[kTokens];
#pragma unroll
  for (int g = 0; g < kTokens; ++g)
    if (g < L) xs[g] = x.load_packed(g);
  const int64_t line = p.state_indices.present() ? p.state_indices[row] : row;
  Filter<kW, n> filter;
  filter.load(p, c, vec);
  if (!valid || p.is_padding(line)) {
    zero_tokens<scalar_t, n>(out, 0, L);
    return;
  }

  const int H = (kW > 0 ? kW : p.width) - 1;
  const int64_t S = p.state_len;
  const StateLine<state_t, n> state{
      static_cast<state_t*>(p.states) + line * p.state_line_stride + c * p.state_dim_stride,
      p.state_tok_stride, p.state_dim_stride, vec.state};
  const bool circular = kMode == kGeneral && p.mode == StateMode::kRing;
  const int64_t pos = circular ? wrap(p.cache_seqlens[row], S) : 0;
  const LinePlan plan = circular ? LinePlan{0, S, 1, S} : p.line_plan(row, L);
  const bool in_registers = kFront || L <= kTokens;

  Window<kW, n> window;
#pragma unroll
  for (int k = 0; k < kTaps<kW> - 1; ++k)
    if (k < H)
      state.load(circular ? wrap(pos - H + k, S) : plan.base + plan.live - H + k, window.v[k]);

  float col0[n];
  xs[0].unpack(col0);
  if (circular) {
    // With L > S later tokens overwrite earlier ones, as the contract says.
    state.store(pos, col0);
    for (int64_t j = 1; j < L; ++j) {
      float v[n];
      x.load(j, v);
      state.store((pos + j) % S, v);
    }
  } else if (kFront || (plan.live == H && in_registers)) {
    // Front-aligned line (vLLM): column j takes window[j + shift] or token
    // j + shift - H, all in registers.
#pragma unroll
    for (int k = 0; k < kTaps<kW> - 1; ++k) {
      const int64_t j = k - plan.shift;
      if (k < H && j >= 0) state.store(j, window.v[k]);
    }
#pragma unroll
    for (int g = 0; g < kTokens; ++g) {
      const int64_t j = H + g - plan.shift;
      if (g < L && j >= 0 && j < plan.ncols) {
        float v[n];
        xs[g].unpack(v);
        state.store(j, v);
      }
    }
  } else if (plan.live == H) {
    store_front_line<state_t, scalar_t, kW, n>(state, window, H, plan, x, L);
  } else {
    shift_state<state_t, n>(state, S, L, true, [&](int64_t t, float (&v)[n]) { x.load(t, v); });
  }

  if (in_registers) {
#pragma unroll
    for (int g = 0; g < kTokens; ++g) {
      if (g < L) {
        float col[n], y[n];
        xs[g].unpack(col);
        conv_step<kW, n>(p, filter, window, col, y);
        out.store(g, y);
      }
    }
  } else {
    conv_tokens<scalar_t, kW, n>(p, filter, window, x, out, 0, L);
  }
}

// One token per row on a linear state of width-1 columns (the decode step):
// each thread owns n channels of one row. x, the cache index and the filter
// are loaded together, then the window, so that a row costs two memory
// latencies (index, then window) before its stores.
template <typename scalar_t, typename state_t, int kW, int n>
__global__ void __launch_bounds__(kThreads) step_kernel(const UpdateParams p, const VecFlags vec) {
  await_producers();
  const int64_t row = blockIdx.x;
  const int64_t c = (static_cast<int64_t>(blockIdx.y) * kThreads + threadIdx.x) * n;
  if (c >= p.dim) return;
  const Packed<scalar_t, n> xs = x_rows<scalar_t, n>(p, row, c).load_packed(0);
  const int64_t line = p.state_indices.present() ? p.state_indices[row] : row;
  Filter<kW, n> filter;
  filter.load(p, c, vec);
  const Rows<scalar_t, n> out = out_rows<scalar_t, n>(p, row, c);
  if (p.is_padding(line)) {
    zero_tokens<scalar_t, n>(out, 0, 1);
    return;
  }

  const int H = (kW > 0 ? kW : p.width) - 1;
  const StateLine<state_t, n> state{
      static_cast<state_t*>(p.states) + line * p.state_line_stride + c * p.state_dim_stride,
      p.state_tok_stride, p.state_dim_stride, vec.state};
  float col[n], y[n];
  xs.unpack(col);
  if constexpr (kW > 1) {
    if (vec.state_rows) {
      // The channels' columns side by side: one run of wide loads, one of stores.
      Window<kW, n> window, next;
      load_rows<state_t, n, kW - 1>(state.base, window.v);
#pragma unroll
      for (int k = 0; k + 1 < kW - 1; ++k)
#pragma unroll
        for (int i = 0; i < n; ++i) next.v[k][i] = window.v[k + 1][i];
#pragma unroll
      for (int i = 0; i < n; ++i) next.v[kW - 2][i] = col[i];
      store_rows<state_t, n, kW - 1>(state.base, next.v);
      conv_step<kW, n>(p, filter, window, col, y);
      out.store(0, y);
      return;
    }
  }
  Window<kW, n> window;
#pragma unroll
  for (int k = 0; k < kTaps<kW> - 1; ++k)
    if (k < H) state.load(k, window.v[k]);

  // The window holds the whole old state: the shifted state needs no reloads.
#pragma unroll
  for (int k = 0; k + 1 < kTaps<kW> - 1; ++k)
    if (k + 1 < H) state.store(k, window.v[k + 1]);
  state.store(H - 1, col);
  conv_step<kW, n>(p, filter, window, col, y);
  out.store(0, y);
}

// The decode step's common case in a parameter block of its own (112 bytes,
// the fields in the order the kernel first reads them, against UpdateParams'
// 352): x, out and the filter in x's dtype, the filter (dim, width)
// contiguous, the cache index contiguous (or absent), a line of width-1 columns
// side by side per channel (kRows: SGLang's and Dao's pools) or channel-last
// columns (vLLM's). Small batches are latency chains (index, window, stores)
// in which each constant-bank line the kernel touches and each instruction
// between the loads is part of the time.
struct LeanStep {
  const void* x;
  const void* index;  // int32 or int64 (index64), or null: row b uses line b
  const void* weight;
  const void* bias;  // or null
  int32_t dim;
  bool silu, index64;
  void* states;
  void* out;
  int64_t x_row, out_row, line_stride, col_stride;  // col_stride: channel-last columns
  int64_t num_lines, pad_slot_id, null_block_id;
};

template <typename scalar_t, typename state_t, int kW, int n, bool kRows>
__global__ void __launch_bounds__(kThreads) lean_step_kernel(const LeanStep p) {
  static_assert(kW > 1);
  constexpr int H = kW - 1;
  await_producers();
  const int32_t c = (static_cast<int32_t>(blockIdx.y) * kThreads + threadIdx.x) * n;
  if (c >= p.dim) return;
  const int64_t row = blockIdx.x;
  float col[n];
  load_n<scalar_t, n>(static_cast<const scalar_t*>(p.x) + row * p.x_row + c, 1, true, col);
  float w[n * kW], b[n];
  load_n<scalar_t, n * kW>(static_cast<const scalar_t*>(p.weight) + c * kW, 1, true, w);
  if (p.bias != nullptr) {
    load_n<scalar_t, n>(static_cast<const scalar_t*>(p.bias) + c, 1, true, b);
  } else {
#pragma unroll
    for (int i = 0; i < n; ++i) b[i] = 0.f;
  }
  // The index last, after a barrier that keeps the compiler from sinking the
  // loads above below the padding test (which waits for the index): all four
  // are then in flight together.
  asm volatile("" ::: "memory");
  const int64_t line = p.index == nullptr ? row
                       : p.index64        ? static_cast<const int64_t*>(p.index)[row]
                                          : static_cast<const int32_t*>(p.index)[row];
  // A padded row reads no line and writes zeros; x and the filter are used on
  // both paths, so that their loads are issued before the index returns.
  const bool pad =
      line == p.pad_slot_id || line == p.null_block_id || line < 0 || line >= p.num_lines;
  state_t* const base = static_cast<state_t*>(p.states) + (pad ? 0 : line) * p.line_stride +
                        static_cast<int64_t>(c) * (kRows ? H : 1);
  float window[H][n], next[H][n], y[n];
#pragma unroll
  for (int k = 0; k < H; ++k)
#pragma unroll
    for (int i = 0; i < n; ++i) window[k][i] = 0.f;
  if (!pad) {
    if constexpr (kRows) {
      load_rows<state_t, n, H>(base, window);
    } else {
#pragma unroll
      for (int k = 0; k < H; ++k) load_n<state_t, n>(base + k * p.col_stride, 1, true, window[k]);
    }
  }
#pragma unroll
  for (int i = 0; i < n; ++i) {
#pragma unroll
    for (int k = 0; k + 1 < H; ++k) next[k][i] = window[k + 1][i];
    next[H - 1][i] = col[i];
    float acc = b[i];
#pragma unroll
    for (int k = 0; k < H; ++k) acc = fmaf(w[i * kW + k], window[k][i], acc);
    acc = fmaf(w[i * kW + H], col[i], acc);
    y[i] = pad ? 0.f : (p.silu ? silu(acc) : acc);
  }
  if (!pad) {
    if constexpr (kRows) {
      store_rows<state_t, n, H>(base, next);
    } else {
#pragma unroll
      for (int k = 0; k < H; ++k) store_n<state_t, n>(base + k * p.col_stride, 1, true, next[k]);
    }
  }
  scalar_t* const out = static_cast<scalar_t*>(p.out) + row * p.out_row + c;
  store_n<scalar_t, n>(out, 1, true, y);
}

// Token t's window, its H columns col(0) .. col(H - 1) (float[n] each), into
// dense per-token windows at `at` (step t's): the n channels' columns side by
// side (rows: a fixed width, vec.window_rows) or one column at a time.
template <typename state_t, int kW, int n, typename Col>
__device__ __forceinline__ void store_token_window(const UpdateParams& p, state_t* at, bool rows,
                                                   int H, const Col& col) {
  if constexpr (kW > 1) {
    if (rows) {
      Window<kW, n> w;
#pragma unroll
      for (int k = 0; k < kW - 1; ++k)
#pragma unroll
        for (int i = 0; i < n; ++i) w.v[k][i] = col(k)[i];
      store_rows<state_t, n, kW - 1>(at, w.v);
      return;
    }
  }
#pragma unroll
  for (int k = 0; k < kTaps<kW> - 1; ++k)
    if (k < H)
      store_n<state_t, n>(at + k * p.window_col_stride, p.window_dim_stride, false, col(k));
}

// Rows whose tokens are walked one by one (UpdateParams::walks_tokens: SGLang's
// tree verify and per-token windows), front-aligned lines, x (batch, dim,
// seqlen) and out apart. The block's first thread finds the row's parents
// (shared memory, with a tree); each thread then reads its window, writes the
// new state (LinePlan), and per token gathers the taps of the token's walk:
// the token, its parent, ... token 0, then the window's columns from the last
// (virtual token v < 0 is window column H + v). The windows of each token (its
// last H taps) go to the row's line of p.windows.
template <typename scalar_t, typename state_t, int kW, int n>
__global__ void __launch_bounds__(kThreads) walk_kernel(const UpdateParams p, const VecFlags vec) {
  extern __shared__ int32_t parent[];
  await_producers();
  const int64_t row = blockIdx.x;
  const int64_t L = p.seqlen;
  const bool tree = p.next_token.present();
  if (tree) {
    if (threadIdx.x == 0) p.parents(row, L, parent);
    __syncthreads();
  }
  const int64_t c = (static_cast<int64_t>(blockIdx.y) * kThreads + threadIdx.x) * n;
  if (c >= p.dim) return;
  const Rows<const scalar_t, n> x = x_rows<scalar_t, n>(p, row, c);
  const Rows<scalar_t, n> out = out_rows<scalar_t, n>(p, row, c);
  const int64_t line = p.state_indices.present() ? p.state_indices[row] : row;
  Filter<kW, n> filter;
  filter.load(p, c, vec);
  if (p.is_padding(line)) {
    zero_tokens<scalar_t, n>(out, 0, L);
    return;
  }
  constexpr int kT = kTaps<kW>;
  const int H = (kW > 0 ? kW : p.width) - 1;
  const StateLine<state_t, n> state{
      static_cast<state_t*>(p.states) + line * p.state_line_stride + c * p.state_dim_stride,
      p.state_tok_stride, p.state_dim_stride, vec.state};
  const LinePlan plan = p.line_plan(row, L);
  Window<kW, n> window;
  bool rows_done = false;
  if constexpr (kW > 1) {
    if (vec.state_rows) {  // a line of width-1 columns, side by side per channel
      load_rows<state_t, n, kW - 1>(state.base, window.v);
      Window<kW, n> next;  // the last width-1 columns of cat(window, x)
#pragma unroll
      for (int k = 0; k < kW - 1; ++k) {
        const int64_t src = k + L;
        if (src < kW - 1) {
#pragma unroll
          for (int j = 0; j < kW - 1; ++j)
            if (j == src)
#pragma unroll
              for (int i = 0; i < n; ++i) next.v[k][i] = window.v[j][i];
        } else {
          x.load(src - (kW - 1), next.v[k]);
        }
      }
      store_rows<state_t, n, kW - 1>(state.base, next.v);
      rows_done = true;
    }
  }
  if (!rows_done) {
#pragma unroll
    for (int k = 0; k < kT - 1; ++k)
      if (k < H) state.load(plan.base + plan.live - H + k, window.v[k]);
    store_front_line<state_t, scalar_t, kW, n>(state, window, H, plan, x, L);
  }

  const int64_t wl = p.windows_line(row);
  state_t* const windows = wl < 0 ? nullptr
                                  : static_cast<state_t*>(p.windows) + wl * p.window_line_stride +
                                        c * p.window_dim_stride;
  const bool window_rows = vec.window_rows;
  const bool window_rows_of_steps = !tree && p.window_step_stride == p.window_col_stride;
  for (int64_t t = 0; t < L; ++t) {
    float taps[kT][n];
    int64_t v = t;
#pragma unroll
    for (int k = kT - 1; k >= 0; --k) {
      if (k > H) continue;
      if (k < H) v = v > 0 && tree ? parent[v] : v - 1;
      if (v >= 0) {
        x.load(v, taps[k]);
      } else {
#pragma unroll
        for (int j = 0; j < kT - 1; ++j)
          if (j == H + v)
#pragma unroll
            for (int i = 0; i < n; ++i) taps[k][i] = window.v[j][i];
      }
    }
    float y[n];
#pragma unroll
    for (int i = 0; i < n; ++i) {
      float acc = filter.b[i];
#pragma unroll
      for (int k = 0; k < kT; ++k)
        if (k <= H) acc = fmaf(filter.w[k][i], taps[k][i], acc);
      y[i] = p.silu ? silu(acc) : acc;
    }
    out.store(t, y);
    if (windows != nullptr && !window_rows_of_steps)
      store_token_window<state_t, kW, n>(p, windows + t * p.window_step_stride, window_rows, H,
                                         [&](int k) -> const float (&)[n] { return taps[k + 1]; });
  }
  if (windows != nullptr && window_rows_of_steps) {
    // A chain's windows in a view whose step and column strides agree (SGLang's
    // deduplicated cache): element (t, k) is position t + k of the channel's
    // row, which holds cat(window, x)[t + k + 1] for every t: each position is
    // written once, with what every overlapping window would write there.
    for (int64_t j = 0; j < L + H - 1; ++j) {
      float v[n];
      if (j + 1 < H) {
#pragma unroll
        for (int k = 0; k < kT - 1; ++k)
          if (k == j + 1)
#pragma unroll
            for (int i = 0; i < n; ++i) v[i] = window.v[k][i];
      } else {
        x.load(j + 1 - H, v);
      }
      store_n<state_t, n>(windows + j * p.window_col_stride, p.window_dim_stride, false, v);
    }
  }
  if (tree && p.parent_token.present() && c == 0)
    for (int64_t t = 0; t < L; ++t) p.parent_token.set(row, t, parent[t]);
}

// The longest chain (a row walked without a tree) that chain_kernel keeps in
// registers.
constexpr int kChainTokens = 8;

// A chain (UpdateParams::walks_tokens without a tree: SGLang's chain verify,
// or a row whose per-token windows are asked for) of at most kChainTokens
// tokens on a line of exactly width-1 columns, the width fixed at compile
// time. The row's x, the cache index, the windows' index and the filter are
// loaded together, then the window; the row is then the sequence
// seq = cat(window, x) in registers: token t's taps are seq[t .. t + H], its
// window seq[t + 1 .. t + H], the new state seq[L .. L + H), all at indices
// fixed once the token loop is unrolled (walk_kernel finds a token's taps
// through its parents at run time, one load per tap).
template <typename scalar_t, typename state_t, int kW, int n>
__global__ void __launch_bounds__(kThreads) chain_kernel(const UpdateParams p, const VecFlags vec) {
  static_assert(kW > 1);
  constexpr int H = kW - 1, kT = kChainTokens;
  await_producers();
  const int64_t row = blockIdx.x;
  const int L = static_cast<int>(p.seqlen);  // 1 <= L <= kT (the launch checks)
  const int64_t c = (static_cast<int64_t>(blockIdx.y) * kThreads + threadIdx.x) * n;
  if (c >= p.dim) return;
  const Rows<const scalar_t, n> x = x_rows<scalar_t, n>(p, row, c);
  const Rows<scalar_t, n> out = out_rows<scalar_t, n>(p, row, c);
  Packed<scalar_t, n> xs[kT];
#pragma unroll
  for (int t = 0; t < kT; ++t)
    if (t < L) xs[t] = x.load_packed(t);
  const int64_t line = p.state_indices.present() ? p.state_indices[row] : row;
  const int64_t wl = p.windows_line(row);
  Filter<kW, n> filter;
  filter.load(p, c, vec);
  if (p.is_padding(line)) {
    zero_tokens<scalar_t, n>(out, 0, L);
    return;
  }
  const StateLine<state_t, n> state{
      static_cast<state_t*>(p.states) + line * p.state_line_stride + c * p.state_dim_stride,
      p.state_tok_stride, p.state_dim_stride, vec.state};
  float seq[H + kT][n];
  {
    Window<kW, n> window;
    if (vec.state_rows) {
      load_rows<state_t, n, H>(state.base, window.v);
    } else {
#pragma unroll
      for (int k = 0; k < H; ++k) state.load(k, window.v[k]);
    }
#pragma unroll
    for (int k = 0; k < H; ++k)
#pragma unroll
      for (int i = 0; i < n; ++i) seq[k][i] = window.v[k][i];
  }
#pragma unroll
  for (int t = 0; t < kT; ++t) {
    if (t < L) {
      xs[t].unpack(seq[H + t]);
    } else {
#pragma unroll
      for (int i = 0; i < n; ++i) seq[H + t][i] = 0.f;
    }
  }

  // The new state, seq[L .. L + H): read before any output is written (out may be x).
  Window<kW, n> next;
#pragma unroll
  for (int t = 1; t <= kT; ++t)
    if (t == L)
#pragma unroll
      for (int k = 0; k < H; ++k)
#pragma unroll
        for (int i = 0; i < n; ++i) next.v[k][i] = seq[t + k][i];
  if (vec.state_rows) {
    store_rows<state_t, n, H>(state.base, next.v);
  } else {
#pragma unroll
    for (int k = 0; k < H; ++k) state.store(k, next.v[k]);
  }

#pragma unroll
  for (int t = 0; t < kT; ++t) {
    if (t < L) {
      float y[n];
#pragma unroll
      for (int i = 0; i < n; ++i) {
        float acc = filter.b[i];
#pragma unroll
        for (int k = 0; k <= H; ++k) acc = fmaf(filter.w[k][i], seq[t + k][i], acc);
        y[i] = p.silu ? silu(acc) : acc;
      }
      out.store(t, y);
    }
  }
  if (wl < 0) return;
  state_t* const windows =
      static_cast<state_t*>(p.windows) + wl * p.window_line_stride + c * p.window_dim_stride;
  if (p.window_step_stride == p.window_col_stride) {
    // The deduplicated chain cache (see walk_kernel): position j of a channel's
    // row holds seq[j + 1]. With unit steps, an even row stride and 16-bit
    // elements, positions (j, j + 1) from an even j share one aligned 32-bit word.
    const int positions = L + H - 1;
    if (sizeof(state_t) == 2 && vec.window_pairs) {
#pragma unroll
      for (int j = 0; j < H + kT - 1; j += 2) {
        if (j < positions) {
#pragma unroll
          for (int i = 0; i < n; ++i) {
            state_t* const at = windows + i * p.window_dim_stride + j;
            if (j + 1 < positions) {
              const float pair[2] = {seq[j + 1][i], seq[j + 2][i]};
              const uint32_t word = pack32<state_t>(pair);
              store_word<4>(at, &word);
            } else {
              *at = from_float<state_t>(seq[j + 1][i]);
            }
          }
        }
      }
    } else {
#pragma unroll
      for (int j = 0; j < H + kT - 1; ++j)
        if (j < positions)
          store_n<state_t, n>(windows + j * p.window_col_stride, p.window_dim_stride, false,
                              seq[j + 1]);
    }
    return;
  }
#pragma unroll
  for (int t = 0; t < kT; ++t) {
    if (t < L)
      store_token_window<state_t, kW, n>(
          p, windows + t * p.window_step_stride, vec.window_rows, H,
          [&](int k) -> const float (&)[n] { return seq[t + 1 + k]; });
  }
}

// One block per (row, kThreads * n channels).
inline dim3 row_grid(const UpdateParams& p, int n) {
  const int per_block = kThreads * n;
  const dim3 grid(p.batch, (p.dim + per_block - 1) / per_block);
  CC1D_CHECK(grid.y <= 65535, "causal_conv1d_update: dim too large for one grid");
  return grid;
}

// Launches kernel (update_kernel or step_kernel, n channels per thread) over
// row_grid.
template <typename state_t, int kW, int n, typename Kernel>
void launch_rows(Kernel kernel, const UpdateParams& p, const LaunchTarget& target) {
  const VecFlags vec =
      vec_flags(p, kW, storage_bytes(p.weight_type), storage_bytes(p.bias_type), sizeof(state_t));
  launch_kernel(kernel, row_grid(p, n), dim3(kThreads), target, p, vec);
}

template <typename scalar_t, typename state_t, int kW, int n, int kMode = kGeneral>
void launch_n(const UpdateParams& p, const LaunchTarget& target) {
  launch_rows<state_t, kW, n>(update_kernel<scalar_t, state_t, kW, n, kMode>, p, target);
}

// Whether x and out are channel-last and aligned for n-channel vector accesses.
bool vector_ok(const UpdateParams& p, int64_t n) {
  // The token stride only matters for seqlen > 1 (a 2-D x has a stride-1 token dim).
  const bool tokens_aligned =
      p.seqlen == 1 || (p.x_tok_stride % n == 0 && p.out_tok_stride % n == 0);
  return p.x_dim_stride == 1 && p.out_dim_stride == 1 && p.dim % n == 0 &&
         p.x_batch_stride % n == 0 && p.out_batch_stride % n == 0 && tokens_aligned &&
         aligned16(p.x) && aligned16(p.out);
}

// Window flags of the walks: dense rows (store_rows per token), or 16-bit
// pairs of a deduplicated chain cache (chain_kernel).
inline void window_flags(const UpdateParams& p, int kW, size_t elem, VecFlags& vec) {
  vec.window_rows = kW > 1 && p.windows != nullptr && p.window_col_stride == 1 &&
                    p.window_dim_stride == p.width - 1 &&
                    aligned16(p.windows, p.window_line_stride, elem) &&
                    aligned16(p.windows, p.window_step_stride, elem);
  vec.window_pairs = elem == 2 && p.windows != nullptr && p.window_col_stride == 1 &&
                     p.window_step_stride == 1 && p.window_dim_stride % 2 == 0 &&
                     p.window_line_stride % 2 == 0 &&
                     reinterpret_cast<uintptr_t>(p.windows) % 4 == 0;
}

// Launches a walk (walk_kernel or chain_kernel) over row_grid: n channels per
// thread with vector accesses where x and out allow them (vector_kernel), else
// one (scalar_kernel).
template <typename state_t, int kW, int n, typename Kernel>
void launch_walk_kernel(Kernel vector_kernel, Kernel scalar_kernel, size_t shared,
                        const UpdateParams& p, const LaunchTarget& target) {
  const bool vector = vector_ok(p, n);
  VecFlags vec =
      vec_flags(p, kW, storage_bytes(p.weight_type), storage_bytes(p.bias_type), sizeof(state_t));
  window_flags(p, kW, sizeof(state_t), vec);
  launch_kernel_shared(vector ? vector_kernel : scalar_kernel, row_grid(p, vector ? n : 1),
                       dim3(kThreads), shared, target, p, vec);
}

template <typename scalar_t, typename state_t, int kW>
void launch_chain(const UpdateParams& p, const LaunchTarget& target) {
  constexpr int n = sizeof(scalar_t) < 4 ? 4 / sizeof(scalar_t) : 1;
  launch_walk_kernel<state_t, kW, n>(chain_kernel<scalar_t, state_t, kW, n>,
                                     chain_kernel<scalar_t, state_t, kW, 1>, 0, p, target);
}

// The longest row a tree walk takes on CUDA: its parents live in shared memory.
constexpr int64_t kMaxWalkTokens = 12288;

template <typename scalar_t, typename state_t, int kW>
void launch_walk(const UpdateParams& p, const LaunchTarget& target) {
  const bool tree = p.next_token.present();
  if constexpr (kW > 1) {
    const bool chain = !tree && p.seqlen >= 1 && p.seqlen <= kChainTokens &&
                       p.mode != StateMode::kFrontSpec && p.mode != StateMode::kRing &&
                       p.linear_len() == kW - 1 && p.states != nullptr;
    if (chain) return launch_chain<scalar_t, state_t, kW>(p, target);
  }
  CC1D_CHECK_VALUE(!tree || p.seqlen <= kMaxWalkTokens,
                   "causal_conv1d_update: retrieve_next_token with more than ", kMaxWalkTokens,
                   " tokens per row is not supported on CUDA, got ", p.seqlen);
  constexpr int n = sizeof(scalar_t) < 4 ? 4 / sizeof(scalar_t) : 1;
  launch_walk_kernel<state_t, kW, n>(walk_kernel<scalar_t, state_t, kW, n>,
                                     walk_kernel<scalar_t, state_t, kW, 1>,
                                     tree ? p.seqlen * sizeof(int32_t) : 0, p, target);
}

// Bytes of x per thread of the front-aligned kernel: 8 (7-11% faster than 4 on
// 256 rows of 4 tokens, H100). CAUSAL_CONV1D_CUDA_FRONT_BYTES (4, 8, 16) forces one.
template <typename scalar_t, typename state_t, int kW, int bytes>
bool launch_front_bytes(const UpdateParams& p, const LaunchTarget& target) {
  static const int chosen = static_cast<int>(setting_int(Setting::kCudaFrontBytes));
  constexpr int n = sizeof(scalar_t) < bytes ? bytes / sizeof(scalar_t) : 1;
  if ((chosen ? chosen : 8) != bytes || !vector_ok(p, n)) return false;
  launch_n<scalar_t, state_t, kW, n, kFrontMode>(p, target);
  return true;
}

// Bytes of x per thread of the decode step: 8 (9.2 / 19.9 / 56.7 us at batch
// 64 / 256 / 1024 against 10.0 / 21.1 / 65.6 at 4 bytes, H100, L2 flushed),
// except when that leaves SMs idle: a row's cost is then its latency chain
// (index, window, stores) plus its channels' instructions, one warp per
// scheduler, so fewer channels per thread over more SMs (down to one channel)
// cut the second part. CAUSAL_CONV1D_CUDA_STEP_BYTES (2, 4, 8) forces one, for
// tuning.
int step_bytes(const UpdateParams& p, int64_t elem, int device) {
  static const int forced = static_cast<int>(setting_int(Setting::kCudaStepBytes));
  if (forced) return forced;
  const int64_t sms = device_attribute<cudaDevAttrMultiProcessorCount>(device);
  int bytes = 8;
  while (bytes > elem) {
    const int64_t n = bytes / elem;
    if (p.batch * ((p.dim + kThreads * n - 1) / (kThreads * n)) >= sms) break;
    bytes /= 2;
  }
  return bytes;
}

template <typename scalar_t, typename state_t, int kW, int n>
void launch_step_n(const UpdateParams& p, const LaunchTarget& target) {
  launch_rows<state_t, kW, n>(step_kernel<scalar_t, state_t, kW, n>, p, target);
}

template <typename T>
constexpr c10::ScalarType kScalarType = std::is_same_v<T, float>    ? c10::ScalarType::Float
                                        : std::is_same_v<T, __half> ? c10::ScalarType::Half
                                                                    : c10::ScalarType::BFloat16;

// Whether a decode step takes lean_step_kernel with n channels per thread (see
// LeanStep), and the layout of its lines (rows: side by side per channel).
template <typename scalar_t, typename state_t, int kW>
bool lean_step_ok(const UpdateParams& p, int n, bool& rows) {
  constexpr auto type = kScalarType<scalar_t>;
  const size_t se = sizeof(state_t);
  const bool filter =
      p.weight_type == type && p.weight_dim_stride == kW && p.weight_tap_stride == 1 &&
      aligned16(p.weight) &&
      (p.bias == nullptr || (p.bias_type == type && p.bias_stride == 1 && aligned16(p.bias)));
  const bool index = !p.state_indices.present() || p.state_indices.stride == 1;
  rows = p.state_tok_stride == 1 && p.state_dim_stride == kW - 1 &&
         aligned16(p.states, p.state_line_stride, se);
  const bool columns = p.state_dim_stride == 1 && aligned16(p.states, p.state_line_stride, se) &&
                       aligned16(p.states, p.state_tok_stride, se);
  return filter && index && (rows || columns) && p.dim <= 2147483647 - 1024 &&
         p.states != nullptr && vector_ok(p, n);
}

template <typename scalar_t, typename state_t, int kW, int n>
bool launch_lean_step(const UpdateParams& p, const LaunchTarget& target) {
  bool rows = false;
  if constexpr (kW > 1) {
    if (!lean_step_ok<scalar_t, state_t, kW>(p, n, rows)) return false;
    const LeanStep q{p.x,
                     p.state_indices.data,
                     p.weight,
                     p.bias,
                     static_cast<int32_t>(p.dim),
                     p.silu,
                     p.state_indices.is_int64,
                     p.states,
                     p.out,
                     p.x_batch_stride,
                     p.out_batch_stride,
                     p.state_line_stride,
                     p.state_tok_stride,
                     p.num_cache_lines,
                     p.pad_slot_id,
                     p.null_block_id};
    launch_kernel(rows ? lean_step_kernel<scalar_t, state_t, kW, n, true>
                       : lean_step_kernel<scalar_t, state_t, kW, n, false>,
                  row_grid(p, n), dim3(kThreads), target, q);
    return true;
  }
  return false;
}

template <typename scalar_t, typename state_t, int kW>
void launch_step(const UpdateParams& p, const LaunchTarget& target) {
  constexpr int e = sizeof(scalar_t);
  constexpr int n4 = e < 4 ? 4 / e : 1, n8 = 8 / e;
  const int bytes = step_bytes(p, e, target.device);
  if (bytes == 8 && launch_lean_step<scalar_t, state_t, kW, n8>(p, target)) return;
  if (bytes == 4 && launch_lean_step<scalar_t, state_t, kW, n4>(p, target)) return;
  if (bytes == e && launch_lean_step<scalar_t, state_t, kW, 1>(p, target)) return;
  if (bytes == 8 && vector_ok(p, n8)) return launch_step_n<scalar_t, state_t, kW, n8>(p, target);
  if (bytes >= 4 && n4 > 1 && vector_ok(p, n4))
    return launch_step_n<scalar_t, state_t, kW, n4>(p, target);
  launch_step_n<scalar_t, state_t, kW, 1>(p, target);
}

// n channels per thread with vector accesses when x and out are channel-last
// and aligned for them, else one channel per thread.
template <typename scalar_t, typename state_t, int kW>
void launch(const UpdateParams& p, const LaunchTarget& target) {
  if (p.walks_tokens()) return launch_walk<scalar_t, state_t, kW>(p, target);
  if (p.single_step()) return launch_step<scalar_t, state_t, kW>(p, target);
  constexpr int n = sizeof(scalar_t) < 4 ? 4 / sizeof(scalar_t) : 1;
  if (!vector_ok(p, n)) return launch_n<scalar_t, state_t, kW, 1>(p, target);
  // Front-aligned rows of at most kGroup tokens: bounded by max_query_len when
  // longer speculative rows are padding, by seqlen without varlen rows.
  const bool varlen = p.query_start_loc.present();
  const int64_t longest =
      varlen ? (p.mode == StateMode::kFrontSpec ? p.max_query_len : -1) : p.seqlen;
  const bool front = (p.mode == StateMode::kFront || p.mode == StateMode::kFrontSpec) &&
                     longest >= 1 && longest <= kGroup;
  if (front && (launch_front_bytes<scalar_t, state_t, kW, 4>(p, target) ||
                launch_front_bytes<scalar_t, state_t, kW, 8>(p, target) ||
                launch_front_bytes<scalar_t, state_t, kW, 16>(p, target)))
    return;
  if (front) return launch_n<scalar_t, state_t, kW, n, kFrontMode>(p, target);
  launch_n<scalar_t, state_t, kW, n>(p, target);
}

}  // namespace
}  // namespace causal_conv1d::cuda

namespace causal_conv1d {

void CudaBackend::update(const UpdateParams& p) {
  CC1D_CHECK(p.batch <= 2147483647, "causal_conv1d_update: batch too large for one grid");
  const cuda::LaunchTarget target = cuda::current_target();
  cuda::dispatch(p.x_type, p.state_type, p.width,
                 [&]<typename scalar_t, typename state_t, int kW>() {
                   cuda::launch<scalar_t, state_t, kW>(p, target);
                 });
}

}  // namespace causal_conv1d
