// dsr1 init-model: write a HuggingFace-layout checkpoint whose weights come from the portable
// generator (docs/generator.md), for tests and for validating other implementations.
#include <fmt/format.h>

#include <filesystem>
#include <memory>

#include "reference/cli/command.hpp"
#include "reference/cli/model_source.hpp"
#include "reference/deepseek/loader.hpp"
#include "reference/io/safetensors.hpp"

namespace dsr1::cli {
namespace {

struct InitArgs {
  ModelSource source;
  std::string out;
  std::string dtype = "f32";
  int shards = 1;
};

safetensors::DType parse_dtype(const std::string& d) {
  if (d == "f64") return safetensors::DType::F64;
  if (d == "f32") return safetensors::DType::F32;
  if (d == "bf16") return safetensors::DType::BF16;
  if (d == "f16") return safetensors::DType::F16;
  return safetensors::DType::F8_E4M3;  // "fp8", the only other value CLI11 lets through
}

int init_model(const InitArgs& a) {
  if (!a.source.model_dir.empty())
    throw std::invalid_argument("init-model: give --preset or --config, not --model");
  const LoadedModel m = a.source.load(true);
  std::filesystem::create_directories(a.out);
  write_checkpoint(a.out, m.config, m.weights, parse_dtype(a.dtype), a.shards);
  fmt::print("wrote {} ({}, {} weights, {} shard{}) to {}\n", m.config.name, a.source.describe(),
             a.dtype, a.shards, a.shards == 1 ? "" : "s", a.out);
  return 0;
}

const Register reg{Command{
    "init-model",
    "write a checkpoint directory (config.json + safetensors, HF names) with generator weights",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<InitArgs>();
      a->source.add_options(sub);
      sub.add_option("--out", a->out, "output directory")->required();
      sub.add_option("--dtype", a->dtype,
                     "storage dtype: f64, f32, bf16, f16, or fp8 (e4m3 with 128x128 block "
                     "scales, as the V3 release)")
          ->check(CLI::IsMember({"f64", "f32", "bf16", "f16", "fp8"}))
          ->capture_default_str();
      sub.add_option("--shards", a->shards, "number of safetensors shards (> 1 writes an index)")
          ->check(CLI::Range(1, 1000))
          ->capture_default_str();
      return [a] { return init_model(*a); };
    }}};

}  // namespace
}  // namespace dsr1::cli
