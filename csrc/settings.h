// The run-time settings: every environment variable the library reads, in one
// table (settings.cpp) with its values, default, when it is read and what it
// does. Code reads them only through these functions, which parse every
// setting the same way: unset or empty is the default; a value outside the
// setting's values is ignored (the default), except where the reader says
// otherwise (CAUSAL_CONV1D_CPU_ISA names the kernel sets it accepts).
// causal_conv1d_kernels.settings() lists the table; the README documents it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace causal_conv1d {

enum class Setting : int {
  kCpuIsa,
  kCpuPoolMb,
  kPdl,
  kValidate,
  kDeterministic,
  kSkipTorchCheck,
  kCudaChunk,
  kCudaPrefillBytes,
  kCudaStepBytes,
  kCudaFrontBytes,
  kCudaBatchTiles,
  kCudaBatchByChannels,
  kCudaBwdBytes,
  kCount,
};

struct SettingInfo {
  Setting id;
  const char* name;
  // "0|1" (a switch), "a|b|c" (one of these), "N >= k" (an integer from k).
  const char* values;
  const char* fallback;  // the default, one of the values ("auto": chosen per call)
  const char* read;      // when the library reads it
  const char* meaning;
};

const SettingInfo& setting_info(Setting s);

// The environment's text for s, or s's default when unset or empty.
std::string setting_text(Setting s);

// A switch ("0|1"): off for "0", on for any other text, the default when unset or empty.
bool setting_on(Setting s);

// An integer setting: the environment's value when it is one of s's values,
// else the default; "auto" is 0.
int64_t setting_int(Setting s);

// The environment's text for the setting called `name` (as setting_text), or
// nullopt when no setting has that name.
std::optional<std::string> setting_text(const std::string& name);

// The table, flattened for the op that Python reads it through: name, values,
// default, read, meaning, then the environment's text ("" when unset) for each.
std::vector<std::string> settings_table();

}  // namespace causal_conv1d
