// The figures of `dsr1 info` as one JSON object: parameters (total and activated, per
// component), the checkpoint's catalogue and what a checkpoint directory stores, KV-cache bytes
// and FLOPs per token, all from the config (accounting.hpp) and, for a directory, the safetensors
// headers. `dsr1 info --json` prints it; the Python module returns it as a dict.
// Leaves out: the text layout of `dsr1 info` (reference/cli/cmd_info.cpp).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "reference/deepseek/config.hpp"

namespace dsr1 {

// What a checkpoint directory actually holds (safetensors headers only; no tensor data is read);
// present is false when it holds no model.safetensors(.index.json).
struct StoredCounts {
  bool present = false;
  std::uint64_t tensors = 0, elements = 0, bytes = 0;
};
StoredCounts stored_counts(const std::string& dir, const Config& c);

// `model_dir`: the checkpoint directory the config came from, or "" (no stored counts).
nlohmann::ordered_json model_info_json(const Config& c, const std::string& model_dir);

}  // namespace dsr1
