// What ops.cpp needs from a backend. ops.cpp owns every dispatcher-facing
// function: it checks the arguments, allocates the outputs through the
// backend and hands the backend one Params struct (params.h). A backend sees
// no argument list: a new op argument touches ops.cpp, params.h and the
// kernels that read it, never a backend's entry points.
#pragma once

#include <cstdint>
#include <string>

#include "params.h"
#include "torch_api.h"

namespace causal_conv1d {

// The CPU backend (cpu/): kernel sets per ISA, work items over torch's threads.
// Each backend supplies the same functions; ops.cpp's templates call them.
struct CpuBackend {
  static constexpr const char* kName = "CPU";
  static bool owns(const api::Tensor& t) { return t.is_cpu(); }
  // An uninitialised tensor with these sizes and (dense) strides, on like's
  // device; large ones come from the backend's pool of freed outputs
  // (cpu/output_pool.h).
  static api::Tensor empty(api::Sizes sizes, api::Sizes strides, ScalarType dtype,
                           const api::Tensor& like);
  static void fwd(const FwdParams& p);
  static void update(const UpdateParams& p);
  static void batch_fwd(const BatchParams& p);
  // Writes dx, dinitial_states (when present), dweight and dbias (when present).
  static void batch_bwd(const BatchParams& p, bool deterministic);
};

// The CUDA backend (cuda/): called with x's device current; launches on its
// current stream.
struct CudaBackend {
  static constexpr const char* kName = "CUDA";
  static bool owns(const api::Tensor& t) { return t.is_cuda(); }
  // On like's device.
  static api::Tensor empty(api::Sizes sizes, api::Sizes strides, ScalarType dtype,
                           const api::Tensor& like);
  static void fwd(const FwdParams& p);
  static void update(const UpdateParams& p);
  static void batch_fwd(const BatchParams& p);
  static void batch_bwd(const BatchParams& p, bool deterministic);
};

// "stable" or "classic": which torch API this build is on (torch_api.h).
std::string abi_name();

// Name of the CPU kernel set chosen for this process (defined by the CPU backend).
std::string cpu_isa_name();

// The text of the run-time setting called `name` (settings.h); a ValueError
// for a name that is not a setting.
std::string setting(const std::string& name);

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
