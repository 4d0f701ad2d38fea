// CUDA prefill (causal_conv1d_fwd, causal_conv1d_fwd_out).
//
// Tiling: a program (block) owns `chunk` tokens of one sequence times
// kThreads * n channels, each thread n consecutive channels (n = 16 bytes of x
// on the vector path, 1 on the strided path). The grid is sized by an upper
// bound, cdiv(num_tokens, chunk) + batch programs along x: sequence i's chunks
// are programs floor(query_start_loc[i] / chunk) + i onwards, which never
// overlap the next sequence's, and each warp finds its sequence with a
// 32-ary search over query_start_loc. So the launch needs nothing from
// the host that depends on the data: no sync, graph-capturable. The chunk is
// chosen from the shapes so that the grid fills the GPU.
//
// A thread keeps the width-1 columns before its next token in registers: the
// first chunk takes them from the conv state (or zeros), later chunks from x
// (the halo). The first chunk also writes the new state, after its outputs;
// no other program of the sequence touches the state. In vLLM's convention
// (front_window) the state is the line's front width-1 columns and the rest
// of the line is never touched. In place (out == x, SGLang's CUDA API) a first
// launch stages every program's window (kStage), then the outputs follow.
#include <cuda_runtime.h>

#include <cstdlib>

#include "../ops.h"
#include "../settings.h"
#include "common.cuh"

namespace causal_conv1d::cuda {
namespace {

// Sequence seq's first program: sequence i's chunks are programs
// floor(start / chunk) + i on, start its first token (clamped).
__device__ __forceinline__ int64_t first_program(int64_t start, int64_t seq, int64_t chunk) {
  return start / chunk + seq;
}

// The last sequence whose first program is <= this block's, and its token
// range [begin, end) (clamped, as token_range), found by each warp on its own:
// each round every lane tests one of 32 evenly spaced candidates and a ballot
// counts the passing ones (a prefix), so batches up to 32 take one round and
// up to 1024 two, with no barrier. The last round (candidates one apart) also
// loads each candidate's end, and the range comes from the lane that tested the
// sequence: no load after the search. Malformed (decreasing) query_start_loc
// still ends in some sequence in range, whose clamped token range keeps every
// access inside x. Every lane of the warp must call it.
__device__ int64_t find_sequence(const FwdParams& p, int64_t program, int64_t chunk,
                                 int64_t& begin, int64_t& end) {
  const int lane = threadIdx.x % 32;
  int64_t lo = 0, hi = p.batch;
  bool ranged = false;
  while (hi - lo > 1) {
    const int64_t step = (hi - lo + 31) / 32;
    const int64_t candidate = lo + lane * step;
    const bool in = candidate < hi;
    int64_t start = 0, stop = 0;
    if (in) {
      start = p.query_start_loc[candidate];
      if (step == 1) stop = p.query_start_loc[candidate + 1];
    }
    const int64_t clamped = clamp_token(start, p.num_tokens);
    const bool before = in && first_program(clamped, candidate, chunk) <= program;
    const int count = __popc(__ballot_sync(0xffffffffu, before));  // a prefix of the lanes
    const int from = count > 0 ? count - 1 : 0;
    lo += from * step;
    hi = lo + step < hi ? lo + step : hi;
    if (step == 1) {
      begin = __shfl_sync(0xffffffffu, start, from);
      end = __shfl_sync(0xffffffffu, stop, from);
      clamp_range(begin, end, p.num_tokens);
      ranged = true;
    }
  }
  if (!ranged) p.token_range(lo, begin, end);
  return lo;
}

// kStage (in place, out == x): the program only stages its window in p.halo
// and, for a sequence's first program, writes the new state; the launch after
// it (p.halo set) reads its window from there and leaves the state alone, so
// no program reads an x another has overwritten.
template <typename scalar_t, typename state_t, int kW, int n, int kTokens, bool kStage = false>
__global__ void __launch_bounds__(kThreads)
    fwd_kernel(const FwdParams p, const int64_t chunk, const VecFlags vec) {
  await_producers();
  const int64_t program = blockIdx.x;
  const int64_t c = (static_cast<int64_t>(blockIdx.y) * kThreads + threadIdx.x) * n;
  const bool active = c < p.dim;
  Filter<kW, n> filter;
  if (active) filter.load(p, c, vec);  // in flight during the search
  int64_t begin, end;
  const int64_t seq = find_sequence(p, program, chunk, begin, end);
  if (!active) return;

  const int64_t len = end - begin;
  const int64_t t0 = (program - first_program(begin, seq, chunk)) * chunk;
  if (t0 < 0 || t0 >= len) return;  // a spare program of the upper bound
  const int64_t t1 = len < t0 + chunk ? len : t0 + chunk;

  const Rows<const scalar_t, n> x{
      static_cast<const scalar_t*>(p.x) + begin * p.x_tok_stride + c * p.x_dim_stride,
      p.x_tok_stride, p.x_dim_stride};
  const Rows<scalar_t, n> out{
      static_cast<scalar_t*>(p.out) + begin * p.out_tok_stride + c * p.out_dim_stride,
      p.out_tok_stride, p.out_dim_stride};
  // Padding zeroes the outputs; deciding that at the stores keeps the loads
  // of x from waiting for the cache index.
  const int64_t line = p.cache_indices.present() ? p.cache_indices[seq] : seq;
  const bool padding = p.is_padding(line);

  const int H = (kW > 0 ? kW : p.width) - 1;
  const int64_t S = p.linear_len();  // the front width-1 columns in vLLM's convention
  const bool has_state = p.states != nullptr && !padding;
  const StateLine<state_t, n> state{
      has_state
          ? static_cast<state_t*>(p.states) + line * p.state_line_stride + c * p.state_dim_stride
          : nullptr,
      p.state_tok_stride, p.state_dim_stride, vec.state};
  const bool init = has_state && p.has_initial_state != nullptr &&
                    p.has_initial_state[seq * p.has_initial_state_stride];

  Window<kW, n> window;
  float* const halo = p.halo == nullptr ? nullptr : p.halo + program * H * p.dim + c;
#pragma unroll
  for (int k = 0; k < kTaps<kW> - 1; ++k) {
    if (k >= H) continue;
    if (halo != nullptr && !kStage) {
      load_n<float, n>(halo + k * p.dim, 1, n > 1, window.v[k]);
    } else if (t0 > 0) {
      x.load(t0 - H + k, window.v[k]);
    } else if (init) {
      state.load(S - H + k, window.v[k]);
    } else {
      clear(window.v[k]);
    }
    if (kStage) store_n<float, n>(halo + k * p.dim, 1, n > 1, window.v[k]);
  }

  if (!kStage)
    conv_tokens<scalar_t, kW, n, kTokens>(p, filter, window, x, out, t0, t1, padding);

  if (t0 == 0 && has_state && (kStage || halo == nullptr)) {
    // New state: the last S columns of cat(old or zeros, the sequence's tokens).
    // After the outputs, so that the filter's registers are free; nothing else
    // of this sequence reads or writes the state.
    shift_state<state_t, n, true>(state, S, len, init,
                                  [&](int64_t t, float (&v)[n]) { x.load(t, v); });
  }
}

// Channel-first x (each channel's tokens contiguous: SGLang's JIT layout, Dao's
// channel-first batches): a warp owns kLanes * kPer consecutive tokens of one
// sequence and one channel, each lane kPer of them in one vector access; the
// width-1 inputs before a lane's first token come from the lanes before it
// (shuffles), before the warp's first from x, the conv state or zeros (or
// p.halo in place, staged as fwd_kernel stages it). A block is kWarps
// consecutive channels of the same program.
constexpr int kLanes = 32;
constexpr int kWarps = 4;

// The new state of a sequence (its first program): the last S columns of
// cat(old or zeros, tokens), lanes taking a column each, every round reading
// before it writes (sources lie right of their destinations).
template <typename scalar_t, typename state_t>
__device__ __forceinline__ void new_state(const FwdParams& p, const scalar_t* x, state_t* state,
                                          int64_t S, int64_t len, bool init, bool active,
                                          int lane) {
  if (!active) return;
  __syncwarp();
  for (int64_t j0 = 0; j0 < S; j0 += 32) {
    const int64_t j = j0 + lane, src = len - S + j;
    float v = 0.f;
    if (j < S) {
      if (src >= 0) {
        v = to_float(x[src]);
      } else if (init) {
        v = to_float(state[(j + len) * p.state_tok_stride]);
      }
    }
    __syncwarp();
    if (j < S) state[j * p.state_tok_stride] = from_float<state_t>(v);
    __syncwarp();
  }
}

template <typename scalar_t, typename state_t, int kW, int kPer, bool kStage = false>
__global__ void __launch_bounds__(kLanes * kWarps)
    fwd_tokens_kernel(const FwdParams p, const int64_t chunk) {
  constexpr int kT = kTaps<kW>;
  await_producers();
  const int64_t program = blockIdx.x;
  const int lane = threadIdx.x % kLanes;
  const int64_t c = static_cast<int64_t>(blockIdx.y) * kWarps + threadIdx.x / kLanes;
  int64_t begin, end;
  const int64_t seq = find_sequence(p, program, chunk, begin, end);
  if (c >= p.dim) return;
  const int64_t len = end - begin;
  const int64_t t0 = (program - first_program(begin, seq, chunk)) * chunk;
  if (t0 < 0 || t0 >= len) return;
  const int H = (kW > 0 ? kW : p.width) - 1;
  const int64_t line = p.cache_indices.present() ? p.cache_indices[seq] : seq;
  const bool padding = p.is_padding(line);
  const int64_t S = p.linear_len();
  const bool has_state = p.states != nullptr && !padding;
  state_t* const state = has_state ? static_cast<state_t*>(p.states) + line * p.state_line_stride +
                                         c * p.state_dim_stride
                                   : nullptr;
  const bool init = has_state && p.has_initial_state != nullptr &&
                    p.has_initial_state[seq * p.has_initial_state_stride];
  const scalar_t* const x = static_cast<const scalar_t*>(p.x) + begin + c * p.x_dim_stride;
  float* const halo = p.halo == nullptr ? nullptr : p.halo + program * H * p.dim + c;

  if (kStage) {  // the warp's window before t0, then (first program) the new state
    if (lane < H) {
      float v;
      if (t0 > 0) {
        v = to_float(x[t0 - H + lane]);
      } else {
        v = init ? to_float(state[(S - H + lane) * p.state_tok_stride]) : 0.f;
      }
      halo[lane * p.dim] = v;
    }
  }
  if (kStage) {
    new_state<scalar_t, state_t>(p, x, state, S, len, init, t0 == 0 && has_state, lane);
    return;
  }

  // The filter, then runs of kLanes * kPer tokens from t0, each lane kPer of
  // them in one vector access where they are whole and aligned. `before`: the
  // width-1 inputs before the run's first token (the window before t0, then
  // carried from the run before in registers: in place, x there is already out).
  float w[kT];
#pragma unroll
  for (int k = 0; k < kT; ++k) {
    float one[1] = {0.f};
    if (k <= H)
      load_n<1>(p.weight, p.weight_type, c * p.weight_dim_stride + k * p.weight_tap_stride, 1,
                false, one);
    w[k] = one[0];
  }
  float bias[1] = {0.f};
  if (p.bias != nullptr) load_n<1>(p.bias, p.bias_type, c * p.bias_stride, 1, false, bias);
  float carry[kT - 1];
#pragma unroll
  for (int k = 0; k < kT - 1; ++k) {
    carry[k] = 0.f;
    if (k >= H) continue;
    const int64_t back = H - k;  // tokens before t0
    if (halo != nullptr) {
      carry[k] = halo[k * p.dim];
    } else if (t0 > 0) {
      carry[k] = to_float(x[t0 - back]);
    } else if (init) {
      carry[k] = to_float(state[(S - back) * p.state_tok_stride]);
    }
  }
  // In place with one program per sequence (no halo staged): the new state now,
  // from x before any output overwrites it (the carry above read the old one).
  const bool state_first = halo == nullptr && p.in_place();
  if (state_first)
    new_state<scalar_t, state_t>(p, x, state, S, len, init, t0 == 0 && has_state, lane);
  scalar_t* const out = static_cast<scalar_t*>(p.out) + begin + c * p.out_dim_stride;
  const int64_t stop = t0 + chunk < len ? t0 + chunk : len;
  constexpr int kRun = kLanes * kPer;
  for (int64_t r0 = t0; r0 < stop; r0 += kRun) {
    const int64_t first = r0 + static_cast<int64_t>(lane) * kPer;
    const bool mine = first < stop;
    const bool vector = first + kPer <= stop && aligned16(x + first) && aligned16(out + first);
    float v[kPer];
    if (vector) {
      load_n<scalar_t, kPer>(x + first, 1, true, v);
    } else {
#pragma unroll
      for (int e = 0; e < kPer; ++e) v[e] = first + e < stop ? to_float(x[first + e]) : 0.f;
    }
    // The width-1 inputs before this lane's first token: token first - (H - k) is element
    // d * kPer - (H - k) of lane lane - d, or, before the run, carry[k'].
    float before[kT - 1];
#pragma unroll
    for (int k = 0; k < kT - 1; ++k) {
      before[k] = 0.f;
      if (k >= H) continue;
      const int back = H - k;
#pragma unroll
      for (int d = 1; d <= (kT - 1 + kPer - 1) / kPer; ++d) {
#pragma unroll
        for (int e = 0; e < kPer; ++e) {
          if (d * kPer - e != back) continue;
          const float got = __shfl_up_sync(0xffffffffu, v[e], d);
          if (lane >= d) before[k] = got;
        }
      }
      // Lanes whose window reaches before the run: carry[H - (back - lane * kPer)].
      const int outside = back - lane * kPer;  // > 0: that many tokens before r0
#pragma unroll
      for (int q = 0; q < kT - 1; ++q)
        if (outside > 0 && q == H - outside) before[k] = carry[q];
    }
    // The next run's carry: the last H inputs of this one (lane kLanes - 1 - d's elements).
    if (r0 + kRun < stop) {
#pragma unroll
      for (int k = 0; k < kT - 1; ++k) {
        if (k >= H) continue;
        const int pos = kRun - H + k;  // position in this run
#pragma unroll
        for (int e = 0; e < kPer; ++e) {
          if (pos % kPer != e) continue;
          carry[k] = __shfl_sync(0xffffffffu, v[e], pos / kPer);
        }
      }
    }
    float y[kPer];
#pragma unroll
    for (int e = 0; e < kPer; ++e) {
      float acc = bias[0];
#pragma unroll
      for (int k = 0; k < kT; ++k) {
        if (k > H) continue;
        const int idx = e - H + k;  // this lane's token e - (H - k)
        float in = 0.f;
#pragma unroll
        for (int q = 0; q < kPer; ++q)
          if (q == idx) in = v[q];
#pragma unroll
        for (int q = 0; q < kT - 1; ++q)
          if (idx < 0 && q == H + idx) in = before[q];
        acc = fmaf(w[k], in, acc);
      }
      y[e] = padding ? 0.f : (p.silu ? silu(acc) : acc);
    }
    if (vector) {
      store_n<scalar_t, kPer>(out + first, 1, true, y);
    } else if (mine) {
#pragma unroll
      for (int e = 0; e < kPer; ++e)
        if (first + e < stop) out[first + e] = from_float<scalar_t>(y[e]);
    }
  }
  // Not in place: the first program writes the new state after every lane has
  // read the old one (x is not written).
  if (halo == nullptr && !state_first)
    new_state<scalar_t, state_t>(p, x, state, S, len, init, t0 == 0 && has_state, lane);
}

// Tokens whose loads a thread issues together on the vector path: 8 (128
// bytes in flight per thread) measured 2-5% faster than 4 on an H100.
constexpr int kPrefillGroup = 8;

// Threads the GPU holds at once, a quarter of them: the grid size below which
// a launch leaves SMs short of loads in flight.
int64_t fill_threads(int device) {
  return static_cast<int64_t>(device_attribute<cudaDevAttrMultiProcessorCount>(device)) * 2048 / 4;
}

int64_t grid_threads(const FwdParams& p, int64_t chunk, int64_t channel_blocks) {
  return ((p.num_tokens + chunk - 1) / chunk + p.batch) * channel_blocks * kThreads;
}

constexpr int64_t kMinChunk = 8;

// CAUSAL_CONV1D_CUDA_CHUNK forces the tokens per program (0: chosen per call).
int64_t forced_chunk() {
  static const int64_t forced = setting_int(Setting::kCudaChunk);
  return forced;
}

// Tokens per program: the largest power of two from 128 down to kMinChunk
// whose grid still fills the GPU (fill_threads; each thread keeps up to
// kPrefillGroup tokens in flight), so that short batches spread over every SM.
int64_t tokens_per_program(const FwdParams& p, int64_t channel_blocks, int device) {
  if (forced_chunk() > 0) return forced_chunk();
  int64_t chunk = 128;
  while (chunk > kMinChunk && grid_threads(p, chunk, channel_blocks) < fill_threads(device))
    chunk /= 2;
  return chunk;
}

template <typename scalar_t, typename state_t, int kW, int n, int kTokens = kGroup>
void launch_n(const FwdParams& p, const LaunchTarget& target) {
  const int per_block = kThreads * n;
  const int64_t channel_blocks = (p.dim + per_block - 1) / per_block;
  const int64_t chunk = tokens_per_program(p, channel_blocks, target.device);
  const dim3 grid((p.num_tokens + chunk - 1) / chunk + p.batch, channel_blocks);
  CC1D_CHECK(grid.y <= 65535, "causal_conv1d_fwd: dim too large for one grid");
  const VecFlags vec =
      vec_flags(p, kW, storage_bytes(p.weight_type), storage_bytes(p.bias_type), sizeof(state_t));
  if (!p.in_place()) {
    launch_kernel(fwd_kernel<scalar_t, state_t, kW, n, kTokens>, grid, dim3(kThreads), target, p,
                  chunk, vec);
    return;
  }
  // In place: every program's window staged first (and the states written),
  // then the outputs. The halo is freed here, after the launches on the same
  // stream (the caching allocator reuses it only after them).
  const int64_t H = p.width - 1;
  const api::Tensor halo = api::cuda_floats(static_cast<int64_t>(grid.x) * H * p.dim, target.device);
  FwdParams q = p;
  q.halo = static_cast<float*>(halo.data_ptr());
  launch_kernel(fwd_kernel<scalar_t, state_t, kW, n, kTokens, true>, grid, dim3(kThreads), target,
                q, chunk, vec);
  launch_kernel(fwd_kernel<scalar_t, state_t, kW, n, kTokens>, grid, dim3(kThreads), target, q,
                chunk, vec);
}

// Channel-first x and out (tokens contiguous): fwd_tokens_kernel, a warp per
// kLanes * kPer tokens of a sequence and a channel (in place: staged first).
template <typename scalar_t, typename state_t, int kW>
void launch_tokens(const FwdParams& p, const LaunchTarget& target) {
  constexpr int kPer = 16 / sizeof(scalar_t);
  // Runs of kLanes * kPer tokens per warp: 4, so that a block has work enough to
  // pay for its launch (one run each: 1x8192 D 8192 in 259 us, 3.8x copy, H200).
  const int64_t chunk = 4 * kLanes * kPer;
  const dim3 grid((p.num_tokens + chunk - 1) / chunk + p.batch, (p.dim + kWarps - 1) / kWarps);
  const dim3 block(kLanes * kWarps);
  if (!p.in_place()) {
    launch_kernel(fwd_tokens_kernel<scalar_t, state_t, kW, kPer>, grid, block, target, p, chunk);
    return;
  }
  // In place, where a warp per sequence and channel fills the GPU: one program
  // per sequence (chunk >= every sequence), each walking its tokens in order
  // with the window carried in registers, so no program reads an x another has
  // overwritten and nothing needs staging (one launch, no halo buffer). Half
  // the threads the GPU holds at least: fewer, long sequences take the staged
  // launches below, whose programs spread a sequence over the SMs.
  if (p.batch * p.dim * kLanes >= 2 * fill_threads(target.device)) {
    const int64_t whole = std::max<int64_t>(p.num_tokens, 1);
    const dim3 per_sequence(static_cast<unsigned>(1 + p.batch), grid.y);
    launch_kernel(fwd_tokens_kernel<scalar_t, state_t, kW, kPer>, per_sequence, block, target, p,
                  whole);
    return;
  }
  const int64_t H = p.width - 1;
  const api::Tensor halo = api::cuda_floats(static_cast<int64_t>(grid.x) * H * p.dim, target.device);
  FwdParams q = p;
  q.halo = static_cast<float*>(halo.data_ptr());
  launch_kernel(fwd_tokens_kernel<scalar_t, state_t, kW, kPer, true>, grid, block, target, q,
                chunk);
  launch_kernel(fwd_tokens_kernel<scalar_t, state_t, kW, kPer>, grid, block, target, q, chunk);
}

// n channels per thread with vector accesses when x and out are channel-last
// and aligned for them, else one channel per thread; channel-first x and out
// take fwd_tokens_kernel.
template <typename scalar_t, typename state_t, int kW>
void launch(const FwdParams& p, const LaunchTarget& target) {
  if (p.x_tok_stride == 1 && p.out_tok_stride == 1 && p.dim > 1 &&
      (p.dim + kWarps - 1) / kWarps <= 65535)
    return launch_tokens<scalar_t, state_t, kW>(p, target);
  const int64_t n = 16 / static_cast<int64_t>(sizeof(scalar_t));
  const bool vector = p.x_dim_stride == 1 && p.out_dim_stride == 1 && p.dim % n == 0 &&
                      p.x_tok_stride % n == 0 && p.out_tok_stride % n == 0 && aligned16(p.x) &&
                      aligned16(p.out);
  if (!vector) return launch_n<scalar_t, state_t, kW, 1>(p, target);
  // A batch too short to fill the GPU even at the smallest chunk takes 8 bytes
  // per thread: twice the threads, each with half the outputs of its tokens
  // (one warp per scheduler runs its instructions back to back, so the
  // per-thread chain is the time). CAUSAL_CONV1D_CUDA_PREFILL_BYTES (8, 16)
  // forces one, for tuning.
  static const int forced = static_cast<int>(setting_int(Setting::kCudaPrefillBytes));
  constexpr int n16 = 16 / sizeof(scalar_t), n8 = 8 / sizeof(scalar_t);
  const int64_t blocks16 = (p.dim + kThreads * n16 - 1) / (kThreads * n16);
  const bool short_batch =
      forced == 8 || (forced == 0 && forced_chunk() == 0 &&
                      grid_threads(p, kMinChunk, blocks16) < fill_threads(target.device));
  if (short_batch) return launch_n<scalar_t, state_t, kW, n8, kPrefillGroup>(p, target);
  launch_n<scalar_t, state_t, kW, n16, kPrefillGroup>(p, target);
}

}  // namespace
}  // namespace causal_conv1d::cuda

namespace causal_conv1d {

api::Tensor CudaBackend::empty(api::Sizes sizes, api::Sizes strides, ScalarType dtype,
                               const api::Tensor& like) {
  return api::empty_strided(sizes, strides, dtype, like);
}

void CudaBackend::fwd(const FwdParams& p) {
  const cuda::LaunchTarget target = cuda::current_target();
  const c10::ScalarType state_type = p.states == nullptr ? p.x_type : p.state_type;
  cuda::dispatch(p.x_type, state_type, p.width, [&]<typename scalar_t, typename state_t, int kW>() {
    cuda::launch<scalar_t, state_t, kW>(p, target);
  });
}

}  // namespace causal_conv1d
