#include "settings.h"

#include <cstdlib>
#include <cstring>
#include <vector>

namespace causal_conv1d {
namespace {

constexpr SettingInfo kSettings[] = {
    {Setting::kCpuIsa, "CAUSAL_CONV1D_CPU_ISA",
     "auto"
#define CAUSAL_CONV1D_KERNEL_SET(name, source, flags, features) "|" #name
#include "cpu/kernel_sets.def"
#undef CAUSAL_CONV1D_KERNEL_SET
     ,
     "auto",
     "on the first CPU op call",
     "the CPU kernel set; a set this build or CPU lacks is an error naming the available "
     "ones. cpu_isa() names the one in use"},
    {Setting::kCpuPoolMb, "CAUSAL_CONV1D_CPU_POOL_MB", "N >= 0", "512",
     "on the first large CPU output",
     "MiB of freed CPU outputs of 1 MiB or more kept mapped for later outputs (no page "
     "faults), besides live tensors; 0 turns the pool off. release_cpu_pool() frees it"},
    {Setting::kPdl, "CAUSAL_CONV1D_PDL", "0|1", "1", "when the library loads",
     "programmatic dependent launch of the CUDA kernels (sm_90+); set_pdl() changes it later"},
    {Setting::kValidate, "CAUSAL_CONV1D_VALIDATE", "0|1", "0", "at import",
     "the value checks (they sync) on every call of every API, as the core API's "
     "validate=True; never while a CUDA graph is captured or torch.compile traces"},
    {Setting::kDeterministic, "CAUSAL_CONV1D_DETERMINISTIC", "0|1", "0", "on every backward call",
     "Dao's switch: backward passes that give the same bits on every run, as under "
     "torch.use_deterministic_algorithms(True) (the CPU ones always do)"},
    {Setting::kSkipTorchCheck, "CAUSAL_CONV1D_SKIP_TORCH_CHECK", "0|1", "0",
     "at import, before the library loads (by the loader, _load.py)",
     "load the extension even when it was built against another torch (at your own risk)"},
    {Setting::kCudaChunk, "CAUSAL_CONV1D_CUDA_CHUNK", "N >= 1", "auto",
     "on the first CUDA prefill",
     "tuning: tokens per CUDA prefill program (auto: the largest of 128..8 whose grid fills "
     "the GPU)"},
    {Setting::kCudaPrefillBytes, "CAUSAL_CONV1D_CUDA_PREFILL_BYTES", "8|16", "auto",
     "on the first CUDA prefill",
     "tuning: bytes of x per thread in the CUDA prefill (auto: 16, 8 for batches too short "
     "to fill the GPU)"},
    {Setting::kCudaStepBytes, "CAUSAL_CONV1D_CUDA_STEP_BYTES", "2|4|8", "auto",
     "on the first CUDA decode",
     "tuning: bytes of x per thread in the one-token CUDA decode step (auto: 8, fewer while "
     "the grid has fewer blocks than SMs)"},
    {Setting::kCudaFrontBytes, "CAUSAL_CONV1D_CUDA_FRONT_BYTES", "4|8|16", "auto",
     "on the first CUDA decode",
     "tuning: bytes of x per thread in the CUDA decode of front-aligned (vLLM) rows of up to "
     "4 tokens (auto: 8)"},
    {Setting::kCudaBatchTiles, "CAUSAL_CONV1D_CUDA_BATCH_TILES", "1|2|4|8|16", "auto",
     "on the first CUDA training call",
     "tuning: tiles of 1024 tokens per CUDA block of the Dao dialect's channel-first "
     "training kernels (auto: up to 16 while the grid still fills the GPU)"},
    {Setting::kCudaBatchByChannels, "CAUSAL_CONV1D_CUDA_BATCH_BY_CHANNELS", "0|1", "0",
     "on the first CUDA training call",
     "testing: the Dao dialect's CUDA training kernels put threads along channels for every "
     "layout of x"},
    {Setting::kCudaBwdBytes, "CAUSAL_CONV1D_CUDA_BWD_BYTES", "4|8", "8",
     "on the first CUDA training backward",
     "tuning: bytes of x per thread in the CUDA training backward along channels (channel-last "
     "x; 16-bit: 2 or 4 channels per thread)"},
};
static_assert(sizeof(kSettings) / sizeof(kSettings[0]) == static_cast<int>(Setting::kCount),
              "one table row per setting");

constexpr bool rows_in_order() {
  for (int i = 0; i < static_cast<int>(Setting::kCount); ++i)
    if (static_cast<int>(kSettings[i].id) != i) return false;
  return true;
}
static_assert(rows_in_order(), "table rows in the enum's order");

// An integer from text, or `fallback` when the text is not exactly one.
int64_t parse_int(const std::string& text, int64_t fallback) {
  if (text.empty()) return fallback;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  return *end == '\0' ? static_cast<int64_t>(v) : fallback;
}

// Whether text is one of the '|'-separated alternatives.
bool one_of(const std::string& text, const char* alternatives) {
  const std::string all = std::string("|") + alternatives + "|";
  return all.find("|" + text + "|") != std::string::npos;
}

int64_t default_int(const SettingInfo& info) {
  return std::strcmp(info.fallback, "auto") == 0 ? 0 : parse_int(info.fallback, 0);
}

}  // namespace

const SettingInfo& setting_info(Setting s) { return kSettings[static_cast<int>(s)]; }

std::string setting_text(Setting s) {
  const SettingInfo& info = setting_info(s);
  const char* v = std::getenv(info.name);
  return v == nullptr || *v == '\0' ? info.fallback : v;
}

bool setting_on(Setting s) { return setting_text(s) != "0"; }

int64_t setting_int(Setting s) {
  const SettingInfo& info = setting_info(s);
  const std::string text = setting_text(s);
  const int64_t fallback = default_int(info);
  if (std::strncmp(info.values, "N >= ", 5) == 0) {
    const int64_t v = parse_int(text, fallback);
    return v >= parse_int(info.values + 5, 0) ? v : fallback;
  }
  return one_of(text, info.values) ? parse_int(text, fallback) : fallback;
}

std::optional<std::string> setting_text(const std::string& name) {
  for (const SettingInfo& info : kSettings)
    if (name == info.name) return setting_text(info.id);
  return std::nullopt;
}

std::vector<std::string> settings_table() {
  std::vector<std::string> rows;
  for (const SettingInfo& info : kSettings) {
    const char* v = std::getenv(info.name);
    rows.insert(rows.end(), {info.name, info.values, info.fallback, info.read, info.meaning,
                             v == nullptr ? "" : v});
  }
  return rows;
}

}  // namespace causal_conv1d
