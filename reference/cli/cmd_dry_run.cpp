// dsr1 dry-run: every traced stage of the full-scale model with its shape, FLOPs and bytes,
// without allocating any weight (reference/tools/dry_run.hpp).
#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "reference/cli/command.hpp"
#include "reference/cli/model_source.hpp"
#include "reference/deepseek/config.hpp"
#include "reference/tools/dry_run.hpp"
#include "reference/trace/trace_outputs.hpp"

namespace dsr1::cli {
namespace {

struct DryRunArgs {
  std::string preset_name;
  std::string model_dir;
  std::string config_path;
  DryRunOptions opt;
  bool no_mtp = false;
  std::vector<std::string> trace = {"*"};
  bool json = false;
};

int run(DryRunArgs a) {
  const int sources = !a.preset_name.empty() + !a.model_dir.empty() + !a.config_path.empty();
  if (sources != 1)
    throw std::invalid_argument("dsr1 dry-run: give exactly one of --preset NAME, --model DIR, --config FILE");
  ModelSource source;
  source.model_dir = a.model_dir;
  source.preset_name = a.preset_name;
  source.config_path = a.config_path;
  const Config c = source.config();  // read and validated; no weights are touched
  a.opt.mtp = !a.no_mtp;

  if (a.json) {
    RecordingTracer rec(a.trace);
    const DryRunTotals t = dry_run(c, a.opt, rec);
    rec.check_filter_matched();
    nlohmann::ordered_json j;
    j["model"] = c.name;
    j["tokens"] = a.opt.tokens;
    j["attn"] = a.opt.attn;
    j["stages"] = nlohmann::ordered_json::array();
    for (const auto& e : rec.entries())
      j["stages"].push_back({{"name", e.name}, {"shape", e.shape}, {"flops", e.cost.flops}, {"bytes", e.cost.bytes}, {"weight_bytes", e.cost.weight_bytes}});
    j["total_flops"] = t.flops;
    j["total_bytes"] = t.bytes;
    j["total_stages"] = t.stages;
    fmt::print("{}\n", j.dump(1));
    return 0;
  }

  fmt::print("dry run of {} ({} layers, {} tokens, {} attention): stage [shape on disk]  flops  bytes\n",
             c.name, c.num_hidden_layers, a.opt.tokens, a.opt.attn);
  PrintOptions po;
  po.shapes_only = true;
  PrintTracer printer(a.trace, po);
  const DryRunTotals t = dry_run(c, a.opt, printer);
  printer.finish();
  printer.check_filter_matched();
  fmt::print("total over all {} stages: {:.4g} FLOPs ({:.4g} per token), {:.4g} bytes read\n", t.stages,
             t.flops, t.flops / a.opt.tokens, t.bytes);
  return 0;
}

const Register reg{Command{
    "dry-run", "Walk the full-scale model's stages with shapes, FLOPs and bytes, allocating no weights",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<DryRunArgs>();
      sub.add_option("--preset", a->preset_name, "built-in config, e.g. deepseek-r1");
      sub.add_option("--model", a->model_dir, "checkpoint directory (only config.json is read)");
      sub.add_option("--config", a->config_path, "a config.json file");
      sub.add_option("--tokens", a->opt.tokens, "T, the number of prompt tokens (default 1)")
          ->check(CLI::PositiveNumber);
      sub.add_option("--attn", a->opt.attn, "naive | absorbed (default naive)")
          ->check(CLI::IsMember({"naive", "absorbed"}));
      sub.add_flag("--no-mtp", a->no_mtp, "leave out the MTP module");
      sub.add_option("--trace", a->trace, "glob filter on stage names (default '*')");
      sub.add_flag("--json", a->json, "print JSON: stages with name, shape, flops, bytes, and totals");
      return [a] { return run(*a); };
    }}};

}  // namespace
}  // namespace dsr1::cli
