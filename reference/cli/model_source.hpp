// Options shared by the commands that run a model: where the weights come from.
//   --model DIR                    a HuggingFace-layout checkpoint (config.json + safetensors)
//   --preset NAME [--seed S]       a built-in config with weights from the portable generator
//   --config FILE [--seed S]       a config.json with weights from the portable generator
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "reference/deepseek/config.hpp"
#include "reference/faults.hpp"
#include "reference/io/token_list.hpp"  // parse_token_list, for the commands that take --tokens
#include "reference/deepseek/loader.hpp"
#include "reference/deepseek/mla.hpp"
#include "reference/deepseek/model.hpp"
#include "reference/deepseek/weight_store.hpp"

namespace dsr1::cli {

struct ModelSource {
  std::string model_dir;
  std::string preset_name;
  std::string config_path;
  std::uint64_t seed = 1;

  void add_options(CLI::App& sub);
  // The config alone (no weights), validated.
  Config config() const;
  // Config and every weight in memory. Refuses, with the number of bytes it would need, a model
  // whose double-precision weights do not fit in this machine's memory.
  LoadedModel load(bool with_mtp) const;
  // Config and a weight store that fetches each layer when it runs (any size of model). Refuses
  // a model whose working set for T tokens (working_set_bytes) does not fit in memory (the fast
  // path fetches its weights as the reference does: fast::SourceModel).
  struct Opened {
    Config config;
    std::unique_ptr<TensorSource> source;  // the checkpoint or the generator
    std::unique_ptr<SourceStore> weights;
  };
  Opened open(bool with_mtp, std::int64_t T) const;
  std::string describe() const;
};

struct RunOptions {
  std::string attn = "naive";
  std::string rope_layout = "interleaved";
  void add_options(CLI::App& sub);
  ref::ForwardOptions forward_options() const;
};

// This process's peak resident set so far, in bytes (getrusage; file pages mapped and touched
// count too).
double peak_rss_bytes();

}  // namespace dsr1::cli
