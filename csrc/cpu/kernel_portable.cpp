// Portable CPU kernels: the shared work items (kernel_items.h) with plain
// loops that compilers vectorise for the baseline ISA of any CPU.
// Baseline flags only: the 16-bit float types may be compiled here.
#define CAUSAL_CONV1D_FLOAT16_TYPES
#include "../torch_types.h"
#include "kernel_items.h"

namespace causal_conv1d::cpu {
namespace {

struct Portable {
  static float half_to_float(uint16_t h) { return c10::detail::fp16_ieee_to_fp32_value(h); }
  static uint16_t float_to_half(float f) { return c10::detail::fp16_ieee_from_fp32_value(f); }

  template <typename in_t, typename out_t>
  static void conv_token(const ConvParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                         const in_t* in, int64_t in_tok, int64_t in_dim, out_t* out,
                         int64_t out_dim) {
    conv_token_loops<Portable>(p, w, c0, n, in, in_tok, in_dim, out, out_dim);
  }

  // No register-held decode steps: update_item's general path does them.
  template <typename x_t, typename state_t>
  static bool update_step(const UpdateParams&, const CpuWeights&, int64_t, int64_t, const x_t*,
                          state_t*, x_t*) {
    return false;
  }
  template <typename x_t, typename state_t>
  static bool spec_step(const UpdateParams&, const CpuWeights&, int64_t, int64_t, int64_t,
                        const x_t*, state_t*, x_t*, int64_t) {
    return false;
  }

  template <typename in_t, typename out_t>
  static void conv_tokens(const ConvParams& p, const CpuWeights& w, int64_t c0, int64_t n,
                          const in_t* in, int64_t in_tok, int64_t in_dim, out_t* out,
                          int64_t out_tok, int64_t out_dim, int64_t count) {
    conv_tokens_loops<Portable>(p, w, c0, n, in, in_tok, in_dim, out, out_tok, out_dim, count);
  }
};

}  // namespace

CpuKernelSet portable_kernels() {
  return {"portable",
          false,
          &select_fwd<Portable>,
          &select_update<Portable>,
          &select_batch_fwd<Portable>,
          &select_batch_bwd<Portable>,
          &widen_filter<Portable>,
          &never_reads_filter};
}

}  // namespace causal_conv1d::cpu
