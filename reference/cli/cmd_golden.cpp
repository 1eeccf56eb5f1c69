// `dsr1 golden`: writes a golden set (reference/tools/golden_set.hpp).
#include <fmt/format.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "reference/cli/command.hpp"
#include "reference/cli/text_input.hpp"
#include "reference/deepseek/config.hpp"
#include "reference/io/token_list.hpp"
#include "reference/tools/golden_set.hpp"

namespace dsr1::cli {
namespace {

struct GoldenArgs {
  std::string preset, config_path, out, dtype = "f64";
  PromptOptions prompt;  // --text, --chat or --tokens
  std::uint64_t seed = 1;
  std::int64_t decode_from = -1;
};

// A golden set's ids are also >= 0.
void check_non_negative(const std::vector<std::int64_t>& out) {
  for (const std::int64_t v : out)
    if (v < 0)
      throw std::invalid_argument(fmt::format("--tokens: '{}' is not a non-negative integer token id", v));
}

int run_golden(const GoldenArgs& a) {
  if (a.preset.empty() == a.config_path.empty())
    throw std::invalid_argument("golden: give exactly one of --preset NAME or --config FILE");
  GoldenSpec spec;
  spec.config = a.preset.empty() ? load_config_json(a.config_path) : preset(a.preset);
  // A config file is named by its stem in the manifest ("tiny-yarn-16"), not by a local path.
  if (a.preset.empty()) spec.config.name = std::filesystem::path(a.config_path).stem().string();
  spec.seed = a.seed;
  ModelSource source;  // for the tokenizer's choice (text_input.hpp): the preset or config named
  source.preset_name = a.preset;
  source.config_path = a.config_path;
  const Prompt prompt = read_prompt(a.prompt, source, spec.config);
  spec.tokens = prompt.ids;
  check_non_negative(spec.tokens);
  if (prompt.kind != "token ids") {
    spec.prompt.kind = prompt.kind;
    spec.prompt.text = prompt.text;
    for (const std::int64_t id : prompt.ids) spec.prompt.token_strings.push_back(prompt.tokenizer->token_bytes(id));
    spec.prompt.tokenizer = prompt.tokenizer->origin();
    if (prompt.format) spec.prompt.chat_format = text::to_string(*prompt.format);
  }
  const auto T = static_cast<std::int64_t>(spec.tokens.size());
  spec.decode_from = a.decode_from >= 0 ? a.decode_from : T / 2;
  spec.dtype = a.dtype == "f32" ? safetensors::DType::F32 : safetensors::DType::F64;
  write_golden_set(a.out, spec);
  fmt::print("wrote golden set {}: {} tokens, decoding from position {}, seed {}\n", a.out, T, spec.decode_from,
             spec.seed);
  return 0;
}

const Register reg{Command{
    "golden",
    "Write a golden set: config, generator weights, inputs and every traced tensor, with a manifest",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<GoldenArgs>();
      sub.add_option("--preset", a->preset, "built-in configuration (tiny-v3, tiny-v2-lite, tiny-yarn, ...)");
      sub.add_option("--config", a->config_path, "a HuggingFace config.json");
      sub.add_option("--seed", a->seed, "seed of the portable weight generator (docs/generator.md)");
      a->prompt.add_options(sub, "--tokens");
      sub.add_option("--out", a->out, "output directory")->required();
      sub.add_option("--dtype", a->dtype, "dtype of the traced tensors: f64 (default) or f32")
          ->check(CLI::IsMember({"f64", "f32"}));
      sub.add_option("--decode-from", a->decode_from,
                     "positions >= P are decoded one at a time through the cache (default T/2)");
      return [a] { return run_golden(*a); };
    }}};

}  // namespace
}  // namespace dsr1::cli
