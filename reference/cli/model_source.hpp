// Options shared by the commands that run a model: where the weights come from.
//   --model DIR                    a HuggingFace-layout checkpoint (config.json + safetensors)
//   --preset NAME [--seed S]       a built-in config with weights from the portable generator
//   --config FILE [--seed S]       a config.json with weights from the portable generator
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "reference/deepseek/config.hpp"
#include "reference/faults.hpp"
#include "reference/deepseek/loader.hpp"
#include "reference/deepseek/mla.hpp"
#include "reference/deepseek/model.hpp"

namespace dsr1::cli {

struct ModelSource {
  std::string model_dir;
  std::string preset_name;
  std::string config_path;
  std::uint64_t seed = 1;

  void add_options(CLI::App& sub);
  // The config alone (no weights), validated.
  Config config() const;
  // Config and weights. Refuses, with the number of bytes it would need, a model whose
  // double-precision weights do not fit in this machine's memory (use `dsr1 dry-run` then).
  LoadedModel load(bool with_mtp) const;
  std::string describe() const;
};

struct RunOptions {
  std::string attn = "naive";
  std::string rope_layout = "interleaved";
  void add_options(CLI::App& sub);
  ref::ForwardOptions forward_options() const;
};

// "1,2,3" -> {1, 2, 3}; throws naming the bad item.
std::vector<std::int64_t> parse_token_list(const std::string& text, const std::string& option);

}  // namespace dsr1::cli
