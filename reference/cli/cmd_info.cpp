// dsr1 info: parameters (total and activated, per component), KV-cache bytes and FLOPs per
// token of a model, computed from its config alone (reference/tools/accounting.hpp).
#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "reference/tools/accounting.hpp"
#include "reference/tools/model_info.hpp"
#include "reference/io/checkpoint.hpp"
#include "reference/cli/command.hpp"
#include "reference/cli/model_source.hpp"
#include "reference/deepseek/config.hpp"
#include "reference/deepseek/loader.hpp"

namespace dsr1::cli {
namespace {

struct InfoArgs {
  std::string preset_name;
  std::string model_dir;
  std::string config_path;
  bool json = false;
};

// 671026419200 -> "671,026,419,200"
std::string grouped(std::uint64_t v) {
  std::string s = std::to_string(v), out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (i > 0 && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

std::string gib(std::uint64_t bytes) { return fmt::format("{:.3f} GiB", bytes / 1073741824.0); }

int run(const InfoArgs& a) {
  const int sources = !a.preset_name.empty() + !a.model_dir.empty() + !a.config_path.empty();
  if (sources != 1)
    throw std::invalid_argument("dsr1 info: give exactly one of --preset NAME, --model DIR, --config FILE");
  ModelSource source;
  source.model_dir = a.model_dir;
  source.preset_name = a.preset_name;
  source.config_path = a.config_path;
  const Config c = source.config();  // read and validated; no weights are touched

  const ParamReport p = count_params(c);
  const KvCacheReport kv = kv_cache_size(c, 2);
  const FlopReport f = flops_per_token(c);
  std::uint64_t cat_tensors = 0, cat_bytes = 0;
  for (const auto& e : checkpoint_catalogue(c)) {
    ++cat_tensors;
    cat_bytes += e.bytes();
  }
  const StoredCounts stored = a.model_dir.empty() ? StoredCounts{} : stored_counts(a.model_dir, c);

  if (a.json) {
    fmt::print("{}\n", model_info_json(c, a.model_dir).dump(2));
    return 0;
  }

  fmt::print("model {} ({}), {} layers ({} MoE), d = {}, {} heads, vocab {}\n", c.name, c.model_type,
             c.num_hidden_layers, c.num_moe_layers(), c.hidden_size, c.num_attention_heads, c.vocab_size);
  fmt::print("{}\n\n", describe_conventions(c));
  fmt::print("Parameters. Convention: {}\n", counting_convention());
  fmt::print("  {:<34} {:>20} {:>20}\n", "component", "total", "activated");
  for (const auto& comp : p.components)
    fmt::print("  {:<34} {:>20} {:>20}\n", comp.name, grouped(comp.total), grouped(comp.active));
  fmt::print("  {:<34} {:>20} {:>20}\n", "main model", grouped(p.total_params), grouped(p.active_params));
  fmt::print("  ({:.2f}B total, {:.2f}B activated; {:.2f}B activated with the input embedding)\n",
             p.total_params / 1e9, p.active_params / 1e9, p.active_params_with_embedding / 1e9);
  if (c.num_nextn_predict_layers > 0)
    fmt::print("  MTP module (layer {}): {} unique, {} with its embedding and head copies, {} activated\n",
               c.num_hidden_layers, grouped(p.mtp_params), grouped(p.mtp_params_with_copies),
               grouped(p.mtp_active));
  fmt::print("  checkpoint as the config describes it: {} tensors, {} bytes ({}{})\n", grouped(cat_tensors),
             grouped(cat_bytes), c.fp8_weights ? "FP8 e4m3 linear weights with F32 block scales, " : "",
             c.torch_dtype);
  if (stored.present)
    fmt::print("  checkpoint on disk: {} tensors, {} elements, {} bytes\n", grouped(stored.tensors),
               grouped(stored.elements), grouped(stored.bytes));

  fmt::print("\nKV cache per sequence, bf16 ({} bytes per element), all {} layers:\n", kv.bytes_per_element,
             c.num_hidden_layers);
  fmt::print("  {:<40} {:>10} {:>14} {:>30} {:>30}\n", "cache", "elem/tok/L", "bytes/token",
             fmt::format("at {} tokens", kv.context_128k), fmt::format("at {} tokens", kv.max_context));
  auto row = [&](const char* name, std::uint64_t e, std::uint64_t b, std::uint64_t b128, std::uint64_t bmax) {
    fmt::print("  {:<40} {:>10} {:>14} {:>30} {:>30}\n", name, grouped(e), grouped(b),
               fmt::format("{} ({})", grouped(b128), gib(b128)), fmt::format("{} ({})", grouped(bmax), gib(bmax)));
  };
  row("MLA latent (c_kv_hat + k_rope)", kv.mla_elements, kv.mla_bytes_per_token, kv.mla_bytes_128k, kv.mla_bytes_max);
  row("naive per-head K (d_nope+d_rope) and V", kv.naive_elements, kv.naive_bytes_per_token, kv.naive_bytes_128k,
      kv.naive_bytes_max);
  row("plain MHA (2 n_h d_h, d_h = d_nope)", kv.mha_elements, kv.mha_bytes_per_token, kv.mha_bytes_128k,
      kv.mha_bytes_max);

  fmt::print("\nFLOPs per generated token (multiply-add = 2):\n");
  fmt::print("  matrix products (projections, {} experts + shared, router, head): {:.4g}\n",
             c.num_experts_per_tok, f.linear);
  fmt::print("  attention per cached position: naive {:.4g}, absorbed {:.4g}\n",
             f.attention_per_context_token_naive, f.attention_per_context_token_absorbed);
  fmt::print("  at 4096 cached positions: naive {:.4g}, absorbed {:.4g}\n", f.at_4k_naive, f.at_4k_absorbed);
  fmt::print("  at {} cached positions: naive {:.4g}, absorbed {:.4g}\n", c.max_position_embeddings,
             f.at_max_naive, f.at_max_absorbed);
  return 0;
}

const Register reg{Command{
    "info", "Parameters, KV-cache bytes and FLOPs per token of a model, from its config",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<InfoArgs>();
      sub.add_option("--preset", a->preset_name, "built-in config: " + fmt::format("{}", fmt::join(preset_names(), ", ")));
      sub.add_option("--model", a->model_dir, "checkpoint directory (config.json; safetensors headers if present)");
      sub.add_option("--config", a->config_path, "a config.json file");
      sub.add_flag("--json", a->json, "print JSON (keys include total_params, active_params)");
      return [a] { return run(*a); };
    }}};

}  // namespace
}  // namespace dsr1::cli
