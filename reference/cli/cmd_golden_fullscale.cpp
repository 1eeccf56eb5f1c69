// `dsr1 golden-fullscale`: writes a full-scale golden set (reference/tools/fullscale.hpp): one MLA and
// one MoE layer at the real dimensions, inputs and outputs only, weights from the generator.
#include <fmt/format.h>

#include <cstdint>
#include <string>

#include "reference/cli/command.hpp"
#include "reference/deepseek/config.hpp"
#include "reference/tools/fullscale.hpp"

namespace dsr1::cli {
namespace {

struct FullscaleArgs {
  std::string preset = "deepseek-v3", out;
  std::uint64_t seed = 2024;
  std::int64_t layer = 3, pos0 = 5000, T = 4;
};

int run_golden_fullscale(const FullscaleArgs& a) {
  FullscaleSpec s;
  s.config = preset(a.preset);
  s.seed = a.seed;
  s.layer = a.layer;
  s.pos0 = a.pos0;
  s.T = a.T;
  write_fullscale_golden(a.out, s);
  fmt::print("wrote full-scale golden set {}: {} layer {}, {} tokens at positions {}..{}, seed {}\n", a.out,
             s.config.name, s.layer, s.T, s.pos0, s.pos0 + s.T - 1, s.seed);
  return 0;
}

const Register reg{Command{
    "golden-fullscale",
    "Write a full-scale golden set: one MLA and one MoE layer at the real dimensions, weights from the "
    "generator (only the chosen experts are generated), storing only inputs and outputs",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<FullscaleArgs>();
      sub.add_option("--preset", a->preset, "built-in configuration (default deepseek-v3)");
      sub.add_option("--seed", a->seed, "seed of the portable weight generator (docs/generator.md; default 2024)");
      sub.add_option("--layer", a->layer, "MoE layer whose MLA and MoE weights are used (default 3)");
      sub.add_option("--pos0", a->pos0, "position of the first token (default 5000: past 4096, so YaRN matters)");
      sub.add_option("--tokens", a->T, "number of tokens T at positions pos0..pos0+T-1 (default 4)");
      sub.add_option("--out", a->out, "output directory, e.g. golden/fullscale/v3-mla-moe")->required();
      return [a] { return run_golden_fullscale(*a); };
    }}};

}  // namespace
}  // namespace dsr1::cli
