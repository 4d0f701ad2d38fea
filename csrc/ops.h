// The op contract shared by every backend: argument checks and the
// translation of tensors into the plain params structs of params.h.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "params.h"

namespace causal_conv1d {

// Checks the arguments of causal_conv1d_fwd (CONTRACT 1.1) and describes the call.
// `out` must already have x's shape and dtype.
FwdParams make_fwd_params(const at::Tensor& x, const at::Tensor& weight,
                          const std::optional<at::Tensor>& bias,
                          const std::optional<at::Tensor>& conv_states,
                          const at::Tensor& query_start_loc,
                          const std::optional<at::Tensor>& cache_indices,
                          const std::optional<at::Tensor>& has_initial_state, bool silu,
                          int64_t pad_slot_id, const at::Tensor& out, int64_t null_block_id,
                          bool front_window);

// Checks the arguments of causal_conv1d_update (CONTRACT 1.2, and 1.4's varlen
// and speculative rows) and describes the call.
UpdateParams make_update_params(const at::Tensor& x, const at::Tensor& conv_state,
                                const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                bool silu, const std::optional<at::Tensor>& cache_seqlens,
                                const std::optional<at::Tensor>& conv_state_indices,
                                int64_t pad_slot_id, const at::Tensor& out,
                                const std::optional<at::Tensor>& num_accepted_tokens,
                                const std::optional<at::Tensor>& query_start_loc,
                                int64_t max_query_len, int64_t null_block_id, bool front_window);

// Checks the arguments of causal_conv1d_batch_fwd (CONTRACT 1.5) and describes
// the call; `final_states` may be undefined (not returned).
BatchParams make_batch_fwd_params(const at::Tensor& x, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias,
                                  const std::optional<at::Tensor>& seq_idx,
                                  const std::optional<at::Tensor>& initial_states, bool silu,
                                  const at::Tensor& out, const at::Tensor& final_states);

// The same for causal_conv1d_batch_bwd: dx has x's shape, dinitial_states may
// be undefined (not wanted).
BatchParams make_batch_bwd_params(const at::Tensor& x, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias,
                                  const std::optional<at::Tensor>& seq_idx,
                                  const std::optional<at::Tensor>& initial_states,
                                  const at::Tensor& dout,
                                  const std::optional<at::Tensor>& dfinal_states, bool silu,
                                  const at::Tensor& dx, const at::Tensor& dinitial_states);

// The outputs of causal_conv1d_batch_fwd / _bwd: out and dx with x's strides,
// final states (batch, dim, width-1) channel-last as Dao allocates them, or
// empty (0,) tensors where not asked for.
at::Tensor empty_batch_states(const at::Tensor& x, int64_t width, bool wanted);

// The output of causal_conv1d_fwd: x's shape and dtype, channel-last when x is.
at::Tensor empty_fwd_output(const at::Tensor& x);

// Name of the CPU kernel set chosen for this process (defined by the CPU backend).
std::string cpu_isa_name();

// Frees the blocks the CPU backend keeps for large outputs (cpu/output_pool.h);
// returns the bytes given back.
int64_t release_cpu_pool();

// Programmatic dependent launch of the CUDA kernels (sm_90 and newer): on
// unless CAUSAL_CONV1D_PDL=0 was set when the library loaded. set_pdl switches
// it for the process and returns the previous setting; launches captured in a
// CUDA graph keep the setting they were captured with.
bool pdl_enabled();
bool set_pdl(bool enabled);

}  // namespace causal_conv1d
