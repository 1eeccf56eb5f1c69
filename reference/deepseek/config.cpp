#include "reference/deepseek/config.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace dsr1 {

bool Config::is_moe_layer(std::int64_t l) const {
  return n_routed_experts > 0 && l >= first_k_dense_replace && moe_layer_freq > 0 &&
         l % moe_layer_freq == 0;
}

// The multiples of moe_layer_freq in [first_k_dense_replace, L): the first is
// first_k_dense_replace rounded up to a multiple of the frequency, then one every
// moe_layer_freq layers. Equal to counting is_moe_layer(l) over l = 0..L-1 (tests/test_config.cpp).
std::int64_t Config::num_moe_layers() const {
  if (n_routed_experts <= 0 || moe_layer_freq <= 0 || num_hidden_layers <= 0) return 0;
  const std::int64_t k = std::max<std::int64_t>(first_k_dense_replace, 0);
  const std::int64_t first = (k + moe_layer_freq - 1) / moe_layer_freq * moe_layer_freq;
  if (first >= num_hidden_layers) return 0;
  return (num_hidden_layers - 1 - first) / moe_layer_freq + 1;
}

// ---------------------------------------------------------------------------------------------
// Presets. Full-scale values are spec §1.2 verbatim; R1 is V3's architecture (spec §1.1).

namespace {

RopeScaling yarn(double factor, std::int64_t original, double mscale, double mscale_all_dim) {
  RopeScaling r;
  r.type = "yarn";
  r.factor = factor;
  r.original_max_position_embeddings = original;
  r.beta_fast = 32.0;
  r.beta_slow = 1.0;
  r.mscale = mscale;
  r.mscale_all_dim = mscale_all_dim;
  return r;
}

Config deepseek_v3(const std::string& name) {
  Config c;
  c.name = name;
  c.model_type = "deepseek_v3";
  c.vocab_size = 129280;
  c.hidden_size = 7168;
  c.intermediate_size = 18432;
  c.moe_intermediate_size = 2048;
  c.num_hidden_layers = 61;
  c.num_attention_heads = 128;
  c.num_key_value_heads = 128;
  c.n_shared_experts = 1;
  c.n_routed_experts = 256;
  c.num_experts_per_tok = 8;
  c.n_group = 8;
  c.topk_group = 4;
  c.routed_scaling_factor = 2.5;
  c.first_k_dense_replace = 3;
  c.moe_layer_freq = 1;
  c.q_lora_rank = 1536;
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.rope_scaling = yarn(40.0, 4096, 1.0, 1.0);
  c.max_position_embeddings = 163840;
  c.scoring_func = "sigmoid";
  c.topk_method = "noaux_tc";
  c.norm_topk_prob = true;
  c.num_nextn_predict_layers = 1;
  c.tie_word_embeddings = false;
  c.aux_loss_alpha = 0.001;
  c.seq_aux = true;
  c.torch_dtype = "bfloat16";
  c.fp8_weights = true;  // quantization_config: fp8 e4m3, 128x128 blocks (spec §10)
  c.weight_block_size = 128;
  return c;
}

Config deepseek_v2() {
  Config c;
  c.name = "deepseek-v2";
  c.model_type = "deepseek_v2";
  c.vocab_size = 102400;
  c.hidden_size = 5120;
  c.intermediate_size = 12288;
  c.moe_intermediate_size = 1536;
  c.num_hidden_layers = 60;
  c.num_attention_heads = 128;
  c.num_key_value_heads = 128;
  c.n_shared_experts = 2;
  c.n_routed_experts = 160;
  c.num_experts_per_tok = 6;
  c.n_group = 8;
  c.topk_group = 3;
  c.routed_scaling_factor = 16.0;
  c.first_k_dense_replace = 1;
  c.moe_layer_freq = 1;
  c.q_lora_rank = 1536;
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  // mscale 0.707 as in the HF V2 config; the official config_236B.json omits it (spec §4.5
  // note, P15), which would give a softmax factor of 1.8739 instead of 1.5896.
  c.rope_scaling = yarn(40.0, 4096, 0.707, 0.707);
  c.max_position_embeddings = 163840;
  c.scoring_func = "softmax";
  c.topk_method = "group_limited_greedy";
  c.norm_topk_prob = false;
  c.num_nextn_predict_layers = 0;
  c.tie_word_embeddings = false;
  c.aux_loss_alpha = 0.001;  // training only; V2's value was not read (spec §16): HF default
  c.seq_aux = true;
  c.torch_dtype = "bfloat16";
  c.fp8_weights = false;
  return c;
}

Config deepseek_v2_lite() {
  Config c = deepseek_v2();
  c.name = "deepseek-v2-lite";
  c.hidden_size = 2048;
  c.intermediate_size = 10944;
  c.moe_intermediate_size = 1408;
  c.num_hidden_layers = 27;
  c.num_attention_heads = 16;
  c.num_key_value_heads = 16;
  c.n_shared_experts = 2;
  c.n_routed_experts = 64;
  c.num_experts_per_tok = 6;
  c.n_group = 1;
  c.topk_group = 1;
  c.routed_scaling_factor = 1.0;
  c.q_lora_rank = 0;  // HF null: one direct q_proj (P9)
  c.topk_method = "greedy";
  c.aux_loss_alpha = 0.001;
  return c;
}

// Small configurations for tests: every code path of the real models at sizes a test can
// run in milliseconds. Dimensions share no common factor with 128 beyond what is needed, so
// FP8 edge blocks and uneven splits are exercised.
Config tiny_v3() {
  Config c;
  c.name = "tiny-v3";
  c.model_type = "deepseek_v3";
  c.vocab_size = 128;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.moe_intermediate_size = 32;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.n_shared_experts = 1;
  c.n_routed_experts = 8;
  c.num_experts_per_tok = 3;
  c.n_group = 4;
  c.topk_group = 2;
  c.routed_scaling_factor = 2.5;
  c.first_k_dense_replace = 1;
  c.moe_layer_freq = 1;
  c.q_lora_rank = 32;
  c.kv_lora_rank = 24;
  c.qk_nope_head_dim = 16;
  c.qk_rope_head_dim = 8;
  c.v_head_dim = 16;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.rope_scaling = yarn(4.0, 64, 1.0, 1.0);
  c.max_position_embeddings = 256;  // factor * original, as in the real configs
  c.scoring_func = "sigmoid";
  c.topk_method = "noaux_tc";
  c.norm_topk_prob = true;
  c.num_nextn_predict_layers = 1;
  c.tie_word_embeddings = false;
  c.aux_loss_alpha = 0.001;
  c.seq_aux = true;
  c.torch_dtype = "float32";
  c.fp8_weights = false;
  return c;
}

// What the two tiny V2-family presets share, as the real V2 and V2-Lite configs do: two
// layers, two shared experts, softmax scores without renormalisation, YaRN mscale 0.707, no MTP.
Config tiny_v2_family(const char* name) {
  Config c = tiny_v3();
  c.name = name;
  c.model_type = "deepseek_v2";
  c.num_hidden_layers = 2;
  c.n_shared_experts = 2;
  c.rope_scaling = yarn(4.0, 64, 0.707, 0.707);
  c.scoring_func = "softmax";
  c.norm_topk_prob = false;
  c.num_nextn_predict_layers = 0;
  return c;
}

// V2-Lite rules: no q-LoRA, plain greedy top-2 over all experts, no scaling.
Config tiny_v2_lite() {
  Config c = tiny_v2_family("tiny-v2-lite");
  c.q_lora_rank = 0;
  c.num_experts_per_tok = 2;
  c.n_group = 1;
  c.topk_group = 1;
  c.routed_scaling_factor = 1.0;
  c.topk_method = "greedy";
  return c;
}

// V2 rules: group-limited greedy (top-3 within the best 2 of 4 groups), scaling 16.
Config tiny_v2() {
  Config c = tiny_v2_family("tiny-v2");
  c.num_experts_per_tok = 3;
  c.n_group = 4;
  c.topk_group = 2;
  c.routed_scaling_factor = 16.0;
  c.topk_method = "group_limited_greedy";
  return c;
}

// YaRN with a short original context (32), so positions past it cost nothing in a test.
Config tiny_yarn() {
  Config c = tiny_v3();
  c.name = "tiny-yarn";
  c.num_hidden_layers = 2;
  c.num_experts_per_tok = 2;
  c.rope_scaling = yarn(8.0, 32, 1.0, 1.0);
  c.max_position_embeddings = 256;
  c.num_nextn_predict_layers = 0;
  return c;
}

// The classroom preset: R1's structure (MLA with q-LoRA and YaRN as R1 configures it, sigmoid
// routing with a bias inside expert groups, a shared expert, a dense first layer, MTP) on a body
// small enough that the reference answers at once, with R1's real vocabulary of 129280 so that
// real text goes in through DeepSeek's tokenizer and real words come out. Its weights come from
// the generator: the words it writes are a worked example, not language.
Config mini_r1() {
  Config c = deepseek_v3("mini-r1");
  c.hidden_size = 256;
  c.intermediate_size = 512;
  c.moe_intermediate_size = 128;
  c.num_hidden_layers = 4;  // one dense layer, then three MoE layers
  c.first_k_dense_replace = 1;
  c.num_attention_heads = 8;
  c.num_key_value_heads = 8;
  c.n_routed_experts = 16;
  c.num_experts_per_tok = 4;
  c.n_group = 4;     // top-4 experts within the best 2 of 4 groups
  c.topk_group = 2;
  c.q_lora_rank = 96;
  c.kv_lora_rank = 64;
  c.qk_nope_head_dim = 32;
  c.qk_rope_head_dim = 16;
  c.v_head_dim = 32;
  c.torch_dtype = "float32";  // generated weights, written exactly by init-model
  c.fp8_weights = false;
  return c;
}

struct PresetEntry {
  const char* name;
  std::function<Config()> make;
};

const std::vector<PresetEntry>& presets() {
  static const std::vector<PresetEntry> p = {
      {"deepseek-v2", deepseek_v2},
      {"deepseek-v2-lite", deepseek_v2_lite},
      {"deepseek-v3", [] { return deepseek_v3("deepseek-v3"); }},
      {"deepseek-r1", [] { return deepseek_v3("deepseek-r1"); }},
      {"mini-r1", mini_r1},
      {"tiny-v3", tiny_v3},
      {"tiny-v2-lite", tiny_v2_lite},
      {"tiny-v2", tiny_v2},
      {"tiny-yarn", tiny_yarn},
  };
  return p;
}

}  // namespace

std::vector<std::string> preset_names() {
  std::vector<std::string> out;
  for (const auto& p : presets()) out.push_back(p.name);
  return out;
}

Config preset(const std::string& name) {
  for (const auto& p : presets())
    if (name == p.name) {
      Config c = p.make();
      validate(c);
      return c;
    }
  throw std::invalid_argument(fmt::format("unknown preset '{}' (known presets: {})", name,
                                          fmt::join(preset_names(), ", ")));
}

// ---------------------------------------------------------------------------------------------
// config.json

namespace {

using json = nlohmann::json;

[[noreturn]] void json_fail(const std::string& origin, const std::string& field,
                            const std::string& what) {
  throw std::invalid_argument(fmt::format("config '{}': field '{}': {}", origin, field, what));
}

// A present, non-null field, or nullptr.
const json* field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

std::int64_t get_int(const json& j, const char* key, const std::string& origin,
                     std::optional<std::int64_t> fallback) {
  const json* v = field(j, key);
  if (!v) {
    if (fallback) return *fallback;
    json_fail(origin, key, "is required (expected an integer)");
  }
  if (v->is_number_unsigned() && v->get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
    json_fail(origin, key, fmt::format("{} does not fit in a signed 64-bit integer", v->dump()));
  if (!v->is_number_integer()) {
    // HF writes some integers as floats (e.g. 4096.0); accept exact integers only.
    if (v->is_number_float()) {
      const double d = v->get<double>();
      if (std::floor(d) == d && std::fabs(d) < 9.0e15) return static_cast<std::int64_t>(d);
    }
    json_fail(origin, key, fmt::format("expected an integer, got {}", v->dump()));
  }
  return v->get<std::int64_t>();
}

double get_double(const json& j, const char* key, const std::string& origin, double fallback) {
  const json* v = field(j, key);
  if (!v) return fallback;
  if (!v->is_number()) json_fail(origin, key, fmt::format("expected a number, got {}", v->dump()));
  return v->get<double>();
}

bool get_bool(const json& j, const char* key, const std::string& origin, bool fallback) {
  const json* v = field(j, key);
  if (!v) return fallback;
  if (!v->is_boolean()) json_fail(origin, key, fmt::format("expected true or false, got {}", v->dump()));
  return v->get<bool>();
}

std::string get_string(const json& j, const char* key, const std::string& origin,
                       const std::string& fallback) {
  const json* v = field(j, key);
  if (!v) return fallback;
  if (!v->is_string()) json_fail(origin, key, fmt::format("expected a string, got {}", v->dump()));
  return v->get<std::string>();
}

}  // namespace

Config config_from_json_text(const std::string& text, const std::string& origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw std::invalid_argument(fmt::format("config '{}': not valid JSON: {}", origin, e.what()));
  }
  if (!j.is_object()) throw std::invalid_argument(fmt::format("config '{}': expected a JSON object", origin));

  Config c;
  c.name = origin;
  c.model_type = get_string(j, "model_type", origin, "");
  if (c.model_type != "deepseek_v2" && c.model_type != "deepseek_v3")
    json_fail(origin, "model_type",
              fmt::format("expected \"deepseek_v2\" or \"deepseek_v3\", got \"{}\"", c.model_type));
  const bool v3 = c.model_type == "deepseek_v3";

  // Dimensions that fix every tensor shape are required: a default here would be a silent
  // guess about the checkpoint.
  c.vocab_size = get_int(j, "vocab_size", origin, std::nullopt);
  c.hidden_size = get_int(j, "hidden_size", origin, std::nullopt);
  c.intermediate_size = get_int(j, "intermediate_size", origin, std::nullopt);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", origin, std::nullopt);
  c.num_attention_heads = get_int(j, "num_attention_heads", origin, std::nullopt);
  c.kv_lora_rank = get_int(j, "kv_lora_rank", origin, std::nullopt);
  c.qk_nope_head_dim = get_int(j, "qk_nope_head_dim", origin, std::nullopt);
  c.qk_rope_head_dim = get_int(j, "qk_rope_head_dim", origin, std::nullopt);
  c.v_head_dim = get_int(j, "v_head_dim", origin, std::nullopt);

  // The rest default as in HF's DeepseekV2Config / DeepseekV3Config.
  c.num_key_value_heads = get_int(j, "num_key_value_heads", origin, c.num_attention_heads);
  c.n_routed_experts = get_int(j, "n_routed_experts", origin, v3 ? 256 : 0);  // V2: None
  c.moe_intermediate_size =
      get_int(j, "moe_intermediate_size", origin, c.n_routed_experts > 0 ? std::nullopt
                                                                         : std::optional<std::int64_t>(0));
  c.n_shared_experts = get_int(j, "n_shared_experts", origin, v3 ? 1 : 0);
  c.num_experts_per_tok = get_int(j, "num_experts_per_tok", origin, v3 ? 8 : 0);
  c.n_group = get_int(j, "n_group", origin, v3 ? 8 : 1);
  c.topk_group = get_int(j, "topk_group", origin, v3 ? 4 : 1);
  c.routed_scaling_factor = get_double(j, "routed_scaling_factor", origin, v3 ? 2.5 : 1.0);
  c.first_k_dense_replace = get_int(j, "first_k_dense_replace", origin, v3 ? 3 : 0);
  c.moe_layer_freq = get_int(j, "moe_layer_freq", origin, 1);
  // q_lora_rank: null means "no query compression" (V2-Lite, P9); model.py writes 0.
  if (j.contains("q_lora_rank") && j["q_lora_rank"].is_null())
    c.q_lora_rank = 0;
  else
    c.q_lora_rank = get_int(j, "q_lora_rank", origin, 1536);
  c.rms_norm_eps = get_double(j, "rms_norm_eps", origin, 1e-6);
  c.rope_theta = get_double(j, "rope_theta", origin, 10000.0);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", origin, v3 ? 4096 : 2048);
  c.scoring_func = get_string(j, "scoring_func", origin, v3 ? "sigmoid" : "softmax");
  c.topk_method = get_string(j, "topk_method", origin, v3 ? "noaux_tc" : "greedy");
  // The original V2 remote code spells greedy "gready" (P9); it means the same rule.
  if (c.topk_method == "gready") c.topk_method = "greedy";
  c.norm_topk_prob = get_bool(j, "norm_topk_prob", origin, v3);
  // transformers' DeepseekV3 ignores the MTP layer, so an absent field means no MTP.
  c.num_nextn_predict_layers = get_int(j, "num_nextn_predict_layers", origin, 0);
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", origin, false);
  c.aux_loss_alpha = get_double(j, "aux_loss_alpha", origin, 0.001);
  c.seq_aux = get_bool(j, "seq_aux", origin, true);
  c.torch_dtype = get_string(j, "torch_dtype", origin, "bfloat16");

  // Fields this implementation supports in one value only: reject anything else rather than
  // compute something the checkpoint did not mean.
  const std::string act = get_string(j, "hidden_act", origin, "silu");
  if (act != "silu") json_fail(origin, "hidden_act", fmt::format("expected \"silu\", got \"{}\"", act));
  if (get_bool(j, "attention_bias", origin, false))
    json_fail(origin, "attention_bias", "expected false (DeepSeek attention has no biases)");

  if (const json* rs = field(j, "rope_scaling")) {
    if (!rs->is_object()) json_fail(origin, "rope_scaling", "expected an object or null");
    RopeScaling r;
    // Newer transformers write "rope_type", older ones "type".
    r.type = get_string(*rs, "type", origin, get_string(*rs, "rope_type", origin, ""));
    if (r.type != "yarn")
      json_fail(origin, "rope_scaling.type",
                fmt::format("expected \"yarn\" (or rope_scaling null), got \"{}\"", r.type));
    r.factor = get_double(*rs, "factor", origin, 1.0);
    r.original_max_position_embeddings =
        get_int(*rs, "original_max_position_embeddings", origin, 4096);
    r.beta_fast = get_double(*rs, "beta_fast", origin, 32.0);
    r.beta_slow = get_double(*rs, "beta_slow", origin, 1.0);
    r.mscale = get_double(*rs, "mscale", origin, 1.0);
    r.mscale_all_dim = get_double(*rs, "mscale_all_dim", origin, 0.0);
    c.rope_scaling = r;
  } else {
    c.rope_scaling = RopeScaling{};  // type "none"
  }

  if (const json* qc = field(j, "quantization_config")) {
    if (!qc->is_object()) json_fail(origin, "quantization_config", "expected an object or null");
    const std::string method = get_string(*qc, "quant_method", origin, "");
    if (method != "fp8")
      json_fail(origin, "quantization_config.quant_method",
                fmt::format("expected \"fp8\", got \"{}\"", method));
    const std::string fmt_name = get_string(*qc, "fmt", origin, "e4m3");
    if (fmt_name != "e4m3")
      json_fail(origin, "quantization_config.fmt", fmt::format("expected \"e4m3\", got \"{}\"", fmt_name));
    c.fp8_weights = true;
    if (const json* bs = field(*qc, "weight_block_size")) {
      if (!bs->is_array() || bs->size() != 2 || !(*bs)[0].is_number_integer() ||
          (*bs)[0] != (*bs)[1])
        json_fail(origin, "quantization_config.weight_block_size",
                  fmt::format("expected two equal integers like [128, 128], got {}", bs->dump()));
      c.weight_block_size = (*bs)[0].get<std::int64_t>();
    }
  }
  validate(c);
  return c;
}

Config load_config_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("cannot open config '{}'", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return config_from_json_text(ss.str(), path);
}

std::string config_to_json_text(const Config& c) {
  nlohmann::ordered_json j;
  j["architectures"] = {c.model_type == "deepseek_v2" ? "DeepseekV2ForCausalLM" : "DeepseekV3ForCausalLM"};
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["moe_intermediate_size"] = c.moe_intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["n_shared_experts"] = c.n_shared_experts;
  j["n_routed_experts"] = c.n_routed_experts;
  j["num_experts_per_tok"] = c.num_experts_per_tok;
  j["n_group"] = c.n_group;
  j["topk_group"] = c.topk_group;
  j["routed_scaling_factor"] = c.routed_scaling_factor;
  j["first_k_dense_replace"] = c.first_k_dense_replace;
  j["moe_layer_freq"] = c.moe_layer_freq;
  if (c.q_lora_rank > 0)
    j["q_lora_rank"] = c.q_lora_rank;
  else
    j["q_lora_rank"] = nullptr;
  j["kv_lora_rank"] = c.kv_lora_rank;
  j["qk_nope_head_dim"] = c.qk_nope_head_dim;
  j["qk_rope_head_dim"] = c.qk_rope_head_dim;
  j["v_head_dim"] = c.v_head_dim;
  j["hidden_act"] = "silu";
  j["attention_bias"] = false;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.type == "yarn") {
    const RopeScaling& r = c.rope_scaling;
    j["rope_scaling"] = {{"type", "yarn"},
                         {"factor", r.factor},
                         {"original_max_position_embeddings", r.original_max_position_embeddings},
                         {"beta_fast", r.beta_fast},
                         {"beta_slow", r.beta_slow},
                         {"mscale", r.mscale},
                         {"mscale_all_dim", r.mscale_all_dim}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["scoring_func"] = c.scoring_func;
  j["topk_method"] = c.topk_method;
  j["norm_topk_prob"] = c.norm_topk_prob;
  j["num_nextn_predict_layers"] = c.num_nextn_predict_layers;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["aux_loss_alpha"] = c.aux_loss_alpha;
  j["seq_aux"] = c.seq_aux;
  j["torch_dtype"] = c.torch_dtype;
  if (c.fp8_weights)
    j["quantization_config"] = {{"activation_scheme", "dynamic"},
                                {"fmt", "e4m3"},
                                {"quant_method", "fp8"},
                                {"weight_block_size", {c.weight_block_size, c.weight_block_size}}};
  return j.dump(2) + "\n";
}

// ---------------------------------------------------------------------------------------------
// Invariants

namespace {

[[noreturn]] void invalid(const Config& c, const std::string& field, const std::string& what) {
  throw std::invalid_argument(fmt::format("config '{}': {}: {}", c.name, field, what));
}

void require_positive(const Config& c, const char* field, std::int64_t v) {
  if (v <= 0) invalid(c, field, fmt::format("expected a positive integer, got {}", v));
}

// A size within its limit, refused with the value and the limit otherwise.
void require_at_most(const Config& c, const char* field, std::int64_t v, std::int64_t limit) {
  if (v > limit)
    invalid(c, field, fmt::format("{} exceeds the limit of {} (docs/reliability.md: larger than "
                                  "any model this implementation can serve)", v, limit));
}

// Checked 64-bit arithmetic: `what` names the quantity in the message if it overflows.
struct Checked {
  const Config& c;
  std::uint64_t mul(std::uint64_t a, std::uint64_t b, const char* what) const {
    std::uint64_t r = 0;
    if (__builtin_mul_overflow(a, b, &r))
      invalid(c, what, fmt::format("{} x {} overflows 64 bits", a, b));
    return r;
  }
  std::uint64_t add(std::uint64_t a, std::uint64_t b, const char* what) const {
    std::uint64_t r = 0;
    if (__builtin_add_overflow(a, b, &r))
      invalid(c, what, fmt::format("{} + {} overflows 64 bits", a, b));
    return r;
  }
};

// The per-field limits (config.hpp, namespace limits); before any product is formed, so the
// products below see bounded factors. The sizes are known positive here.
void check_limits(const Config& c) {
  require_at_most(c, "vocab_size", c.vocab_size, limits::vocab_size);
  require_at_most(c, "hidden_size", c.hidden_size, limits::hidden_size);
  require_at_most(c, "intermediate_size", c.intermediate_size, limits::intermediate_size);
  require_at_most(c, "moe_intermediate_size", c.moe_intermediate_size, limits::intermediate_size);
  require_at_most(c, "num_hidden_layers", c.num_hidden_layers, limits::num_hidden_layers);
  require_at_most(c, "num_attention_heads", c.num_attention_heads, limits::num_attention_heads);
  require_at_most(c, "qk_nope_head_dim", c.qk_nope_head_dim, limits::head_dim);
  require_at_most(c, "qk_rope_head_dim", c.qk_rope_head_dim, limits::head_dim);
  require_at_most(c, "v_head_dim", c.v_head_dim, limits::head_dim);
  require_at_most(c, "q_lora_rank", c.q_lora_rank, limits::lora_rank);
  require_at_most(c, "kv_lora_rank", c.kv_lora_rank, limits::lora_rank);
  require_at_most(c, "n_routed_experts", c.n_routed_experts, limits::experts);
  require_at_most(c, "n_shared_experts", c.n_shared_experts, limits::experts);
  require_at_most(c, "max_position_embeddings", c.max_position_embeddings, limits::positions);
  require_at_most(c, "rope_scaling.original_max_position_embeddings",
                  c.rope_scaling.original_max_position_embeddings, limits::positions);
  require_at_most(c, "quantization_config.weight_block_size", c.weight_block_size,
                  limits::weight_block_size);
}

}  // namespace

std::uint64_t parameter_bound(const Config& c) {
  const Checked k{c};
  // Sizes as unsigned; a negative one (refused by validate) counts as 0 here.
  const auto u = [](std::int64_t x) { return x > 0 ? static_cast<std::uint64_t>(x) : std::uint64_t{0}; };
  const std::uint64_t d = u(c.hidden_size), V = u(c.vocab_size), n_h = u(c.num_attention_heads);
  const std::uint64_t d_nope = u(c.qk_nope_head_dim), d_rope = u(c.qk_rope_head_dim), d_v = u(c.v_head_dim);
  const std::uint64_t r_q = u(c.q_lora_rank), r_kv = u(c.kv_lora_rank);
  // Without routed experts there is no MoE block, whatever the other MoE fields say.
  const std::uint64_t N_r = u(c.n_routed_experts), N_s = N_r > 0 ? u(c.n_shared_experts) : 0;
  const std::uint64_t I = u(c.intermediate_size), I_e = u(c.moe_intermediate_size);
  // Embedding and head: V x d each.
  const std::uint64_t vocab = k.mul(2, k.mul(V, d, "vocab_size x hidden_size"), "vocab_size x hidden_size");
  // MLA of one layer: W_DQ, W_UQ (or one direct query map), W_DKV + W_KR, W_UK + W_UV, W_O,
  // and the norms (d each for the block norms, r_q and r_kv for the latents).
  const std::uint64_t d_qk = d_nope + d_rope;
  const std::uint64_t q_heads = k.mul(n_h, d_qk, "num_attention_heads x (qk_nope_head_dim + qk_rope_head_dim)");
  const std::uint64_t w_q = r_q > 0 ? k.add(k.mul(d, r_q, "hidden_size x q_lora_rank"),
                                            k.mul(r_q, q_heads, "q_lora_rank x num_attention_heads x d_qk"),
                                            "query projections")
                                    : k.mul(d, q_heads, "hidden_size x num_attention_heads x d_qk");
  const std::uint64_t w_kv = k.add(k.mul(d, r_kv + d_rope, "hidden_size x (kv_lora_rank + qk_rope_head_dim)"),
                                   k.mul(r_kv, k.mul(n_h, d_nope + d_v, "num_attention_heads x (d_nope + d_v)"),
                                         "kv_lora_rank x num_attention_heads x (d_nope + d_v)"),
                                   "key/value projections");
  const std::uint64_t w_o = k.mul(k.mul(n_h, d_v, "num_attention_heads x v_head_dim"), d,
                                  "num_attention_heads x v_head_dim x hidden_size");
  const std::uint64_t norms = k.add(2 * d, r_q + r_kv, "norm widths");  // each term < 2^64
  const std::uint64_t mla = k.add(k.add(w_q, w_kv, "attention"), k.add(w_o, norms, "attention"), "attention");
  // FFN of one layer, the larger of the dense FFN (3 d I) and the MoE block: N_r routed and N_s
  // shared experts of 3 d I_e each, plus the router W_g and its bias.
  const std::uint64_t dense = k.mul(3, k.mul(d, I, "hidden_size x intermediate_size"), "dense FFN");
  const std::uint64_t expert = k.mul(3, k.mul(d, I_e, "hidden_size x moe_intermediate_size"), "one expert");
  const std::uint64_t moe = k.add(k.mul(N_r + N_s, expert, "(n_routed_experts + n_shared_experts) x expert size"),
                                  k.mul(N_r, d + 1, "n_routed_experts x hidden_size"), "MoE block");
  const std::uint64_t layer = k.add(mla, std::max(dense, moe), "one layer");
  // L layers and the MTP module (one more layer, eh_proj [d, 2d] and its three norms), and the
  // main model's final norm.
  const std::uint64_t layers = k.mul(k.add(u(c.num_hidden_layers), 1, "num_hidden_layers"), layer,
                                     "num_hidden_layers x parameters per layer");
  const std::uint64_t mtp_extra = k.add(k.mul(2 * d, d, "MTP eh_proj"), k.mul(4, d, "norms"), "MTP");
  return k.add(k.add(vocab, layers, "parameters"), mtp_extra, "parameters");
}

void validate(const Config& c) {
  if (c.model_type != "deepseek_v2" && c.model_type != "deepseek_v3")
    invalid(c, "model_type", fmt::format("expected deepseek_v2 or deepseek_v3, got '{}'", c.model_type));
  require_positive(c, "vocab_size", c.vocab_size);
  require_positive(c, "hidden_size", c.hidden_size);
  require_positive(c, "intermediate_size", c.intermediate_size);
  require_positive(c, "num_hidden_layers", c.num_hidden_layers);
  require_positive(c, "num_attention_heads", c.num_attention_heads);
  require_positive(c, "kv_lora_rank", c.kv_lora_rank);
  require_positive(c, "qk_nope_head_dim", c.qk_nope_head_dim);
  require_positive(c, "qk_rope_head_dim", c.qk_rope_head_dim);
  require_positive(c, "v_head_dim", c.v_head_dim);
  require_positive(c, "max_position_embeddings", c.max_position_embeddings);
  check_limits(c);
  if (c.q_lora_rank < 0)
    invalid(c, "q_lora_rank", fmt::format("expected a positive rank or 0/null (no query compression), got {}", c.q_lora_rank));
  // MLA has no key/value head groups: every query head attends with its own W_UK/W_UV block.
  if (c.num_key_value_heads != c.num_attention_heads)
    invalid(c, "num_key_value_heads",
            fmt::format("expected num_attention_heads = {} (MLA has no KV head groups), got {}",
                        c.num_attention_heads, c.num_key_value_heads));
  // RoPE rotates pairs of channels (spec §4.6).
  if (c.qk_rope_head_dim % 2 != 0)
    invalid(c, "qk_rope_head_dim", fmt::format("expected an even number (RoPE rotates pairs), got {}", c.qk_rope_head_dim));
  if (!(c.rms_norm_eps > 0) || !std::isfinite(c.rms_norm_eps))
    invalid(c, "rms_norm_eps", fmt::format("expected a finite value > 0, got {}", c.rms_norm_eps));
  if (!(c.rope_theta > 1) || !std::isfinite(c.rope_theta))
    invalid(c, "rope_theta", fmt::format("expected a finite value > 1, got {}", c.rope_theta));

  const RopeScaling& r = c.rope_scaling;
  if (r.type != "none" && r.type != "yarn")
    invalid(c, "rope_scaling.type", fmt::format("expected none or yarn, got '{}'", r.type));
  if (r.type == "yarn") {
    if (!(r.factor >= 1) || !std::isfinite(r.factor))
      invalid(c, "rope_scaling.factor", fmt::format("expected a finite value >= 1, got {}", r.factor));
    if (r.original_max_position_embeddings <= 0)
      invalid(c, "rope_scaling.original_max_position_embeddings",
              fmt::format("expected a positive integer, got {}", r.original_max_position_embeddings));
    if (!(r.beta_fast > r.beta_slow) || !(r.beta_slow > 0))
      invalid(c, "rope_scaling.beta_fast",
              fmt::format("expected beta_fast > beta_slow > 0, got beta_fast {} and beta_slow {}",
                          r.beta_fast, r.beta_slow));
    if (!(r.mscale >= 0) || !(r.mscale_all_dim >= 0))
      invalid(c, "rope_scaling.mscale",
              fmt::format("expected mscale and mscale_all_dim >= 0, got {} and {}", r.mscale, r.mscale_all_dim));
  }

  // Layers and MTP.
  if (c.first_k_dense_replace < 0 || c.first_k_dense_replace > c.num_hidden_layers)
    invalid(c, "first_k_dense_replace",
            fmt::format("expected 0 .. num_hidden_layers = {}, got {}", c.num_hidden_layers, c.first_k_dense_replace));
  if (c.moe_layer_freq < 1)
    invalid(c, "moe_layer_freq", fmt::format("expected an integer >= 1, got {}", c.moe_layer_freq));
  if (c.num_nextn_predict_layers < 0 || c.num_nextn_predict_layers > 1)
    invalid(c, "num_nextn_predict_layers",
            fmt::format("expected 0 or 1 (the released models have depth 1), got {}", c.num_nextn_predict_layers));
  if (c.num_nextn_predict_layers > 0 && c.n_routed_experts == 0)
    invalid(c, "num_nextn_predict_layers", "expected 0 when n_routed_experts is 0 (the MTP block is a MoE layer)");

  // Routing.
  if (c.scoring_func != "softmax" && c.scoring_func != "sigmoid")
    invalid(c, "scoring_func", fmt::format("expected softmax or sigmoid, got '{}'", c.scoring_func));
  if (c.topk_method != "greedy" && c.topk_method != "group_limited_greedy" && c.topk_method != "noaux_tc")
    invalid(c, "topk_method",
            fmt::format("expected greedy, group_limited_greedy or noaux_tc, got '{}'", c.topk_method));
  if (c.n_routed_experts < 0)
    invalid(c, "n_routed_experts", fmt::format("expected >= 0, got {}", c.n_routed_experts));
  if (c.n_routed_experts > 0) {
    require_positive(c, "moe_intermediate_size", c.moe_intermediate_size);
    require_positive(c, "num_experts_per_tok", c.num_experts_per_tok);
    require_positive(c, "n_group", c.n_group);
    require_positive(c, "topk_group", c.topk_group);
    if (c.n_shared_experts < 0)
      invalid(c, "n_shared_experts", fmt::format("expected >= 0, got {}", c.n_shared_experts));
    if (c.num_experts_per_tok > c.n_routed_experts)
      invalid(c, "num_experts_per_tok",
              fmt::format("expected <= n_routed_experts = {}, got {}", c.n_routed_experts, c.num_experts_per_tok));
    if (c.n_routed_experts % c.n_group != 0)
      invalid(c, "n_group",
              fmt::format("expected a divisor of n_routed_experts = {}, got {}", c.n_routed_experts, c.n_group));
    if (c.topk_group > c.n_group)
      invalid(c, "topk_group", fmt::format("expected <= n_group = {}, got {}", c.n_group, c.topk_group));
    const std::int64_t per_group = c.n_routed_experts / c.n_group;
    const bool grouped = c.topk_method != "greedy";
    if (grouped && c.num_experts_per_tok > c.topk_group * per_group)
      invalid(c, "num_experts_per_tok",
              fmt::format("expected <= topk_group * n_routed_experts / n_group = {} * {} = {} "
                          "(the kept groups must hold K experts), got {}",
                          c.topk_group, per_group, c.topk_group * per_group, c.num_experts_per_tok));
    // Greedy selection ignores groups; a grouping would be silently unused.
    if (!grouped && (c.n_group != 1 || c.topk_group != 1))
      invalid(c, "n_group",
              fmt::format("expected n_group = topk_group = 1 with topk_method greedy, got {} and {}",
                          c.n_group, c.topk_group));
    // The V3 group score is the sum of the two largest biased scores (spec §7.2, P5).
    if (c.topk_method == "noaux_tc" && per_group < 2)
      invalid(c, "n_group",
              fmt::format("expected at least 2 experts per group for noaux_tc (top-2 group score), "
                          "got n_routed_experts / n_group = {}", per_group));
    if (c.topk_method == "noaux_tc" && c.scoring_func != "sigmoid")
      invalid(c, "scoring_func", fmt::format("expected sigmoid with topk_method noaux_tc, got '{}'", c.scoring_func));
    if (c.topk_method != "noaux_tc" && c.scoring_func != "softmax")
      invalid(c, "scoring_func",
              fmt::format("expected softmax with topk_method {}, got '{}'", c.topk_method, c.scoring_func));
    if (!(c.routed_scaling_factor > 0) || !std::isfinite(c.routed_scaling_factor))
      invalid(c, "routed_scaling_factor",
              fmt::format("expected a finite value > 0, got {}", c.routed_scaling_factor));
  }

  if (c.torch_dtype != "bfloat16" && c.torch_dtype != "float16" && c.torch_dtype != "float32" &&
      c.torch_dtype != "float64")
    invalid(c, "torch_dtype",
            fmt::format("expected bfloat16, float16, float32 or float64, got '{}'", c.torch_dtype));
  if (c.fp8_weights && c.weight_block_size <= 0)
    invalid(c, "quantization_config.weight_block_size",
            fmt::format("expected a positive block size, got {}", c.weight_block_size));

  // Products of sizes that are each within their limits but together cannot be served.
  require_at_most(c, "num_moe_layers x n_routed_experts", c.num_moe_layers() * c.n_routed_experts,
                  limits::routed_experts_in_model);
  const std::uint64_t params = parameter_bound(c);
  if (params > limits::parameters)
    invalid(c, "parameters", fmt::format("the config describes about {:.3g} parameters, beyond the "
                                         "limit of {:.3g} (docs/reliability.md)",
                                         static_cast<double>(params),
                                         static_cast<double>(limits::parameters)));
}

// ---------------------------------------------------------------------------------------------

namespace {
double mscale_of(double factor, double m) {  // spec §4.5
  return factor <= 1.0 ? 1.0 : 0.1 * m * std::log(factor) + 1.0;
}
}  // namespace

std::string describe_conventions(const Config& c) {
  std::string s;
  s += fmt::format("Model {} ({}): ", c.name, c.model_type);
  s += fmt::format("RoPE on d_rope = {} channels in the interleaved pair layout (x[2i], x[2i+1]) "
                   "of the official weights, theta = {}; ",
                   c.qk_rope_head_dim, c.rope_theta);
  const double base = 1.0 / std::sqrt(static_cast<double>(c.d_qk()));
  if (c.has_yarn()) {
    const RopeScaling& r = c.rope_scaling;
    const double m = mscale_of(r.factor, r.mscale_all_dim);
    s += fmt::format("YaRN on (factor {}, original context {}, beta_fast {}, beta_slow {}), "
                     "frequencies corrected at every position; softmax scale = (d_nope + d_rope)^-1/2 "
                     "* mscale(factor, mscale_all_dim)^2 = {:.8f} * {:.6f}^2 = {:.8f}; cos/sin scaled by "
                     "mscale(factor, mscale) / mscale(factor, mscale_all_dim) = {:.6f}; ",
                     r.factor, r.original_max_position_embeddings, r.beta_fast, r.beta_slow, base, m,
                     base * m * m, mscale_of(r.factor, r.mscale) / m);
  } else {
    s += fmt::format("YaRN off; softmax scale = (d_nope + d_rope)^-1/2 = {:.8f}; ", base);
  }
  s += c.has_q_lora() ? fmt::format("queries compressed to r_q = {}; ", c.q_lora_rank)
                      : std::string("queries projected directly (no q-LoRA); ");
  if (c.n_routed_experts == 0) {
    s += "dense FFN in every layer.";
    return s;
  }
  s += fmt::format("layers {}..{} use MoE ({} routed experts, top {}, {} shared), the first {} are dense; ",
                   c.first_k_dense_replace, c.num_hidden_layers - 1, c.n_routed_experts,
                   c.num_experts_per_tok, c.n_shared_experts, c.first_k_dense_replace);
  if (c.topk_method == "noaux_tc")
    s += fmt::format("gating: s = sigmoid(W_g x), experts chosen on s + e_score_correction_bias "
                     "(selection only) within the top {} of {} groups ranked by the sum of their two "
                     "largest biased scores, weights g = s / sum(s over chosen){} * {}.",
                     c.topk_group, c.n_group, c.norm_topk_prob ? "" : " (not renormalized)",
                     c.routed_scaling_factor);
  else if (c.topk_method == "group_limited_greedy")
    s += fmt::format("gating: s = softmax(W_g x), experts chosen within the top {} of {} groups "
                     "ranked by their largest score, weights g = s{} * {}.",
                     c.topk_group, c.n_group, c.norm_topk_prob ? " / sum(s over chosen)" : " (no renormalization)",
                     c.routed_scaling_factor);
  else
    s += fmt::format("gating: s = softmax(W_g x), the top {} experts chosen greedily, weights g = s{} * {}.",
                     c.num_experts_per_tok,
                     c.norm_topk_prob ? " / sum(s over chosen)" : " (no renormalization)",
                     c.routed_scaling_factor);
  return s;
}

}  // namespace dsr1
