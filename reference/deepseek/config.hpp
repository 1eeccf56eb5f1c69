// Model configuration: every dimension under its HuggingFace config.json name.
// Leaves out: nothing of the forward pass; training-only fields are kept for the balance losses.
//
// Field names are HF's (spec §1.2), so a config.json maps onto this struct one to one. The
// spec's short names are noted beside each field: d, n_h, d_nope, d_rope, d_v, r_q, r_kv, V,
// L, N_r, N_s, K, I, I_e.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dsr1 {

struct RopeScaling {
  std::string type = "none";                        // "none" or "yarn"
  double factor = 1.0;                              // s in the YaRN paper (40 for all DeepSeek)
  std::int64_t original_max_position_embeddings = 4096;  // L0
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 1.0;          // scales cos/sin by mscale(f, mscale)/mscale(f, mscale_all_dim)
  double mscale_all_dim = 0.0;  // enters the softmax scale squared (spec §4.5)
  bool operator==(const RopeScaling&) const = default;
};

struct Config {
  std::string name;                 // preset name or the config file's path, for messages
  std::string model_type = "deepseek_v3";  // deepseek_v2 | deepseek_v3
  std::int64_t vocab_size = 0;              // V
  std::int64_t hidden_size = 0;             // d
  std::int64_t intermediate_size = 0;       // I (dense FFN)
  std::int64_t moe_intermediate_size = 0;   // I_e (per routed expert)
  std::int64_t num_hidden_layers = 0;       // L
  std::int64_t num_attention_heads = 0;     // n_h
  std::int64_t num_key_value_heads = 0;     // nominal only; MLA has no KV groups
  std::int64_t n_shared_experts = 0;        // N_s
  std::int64_t n_routed_experts = 0;        // N_r (0 = no MoE layers at all)
  std::int64_t num_experts_per_tok = 0;     // K
  std::int64_t n_group = 1;
  std::int64_t topk_group = 1;
  double routed_scaling_factor = 1.0;
  std::int64_t first_k_dense_replace = 0;
  std::int64_t moe_layer_freq = 1;
  std::int64_t q_lora_rank = 0;             // r_q; 0 = no query compression (HF null)
  std::int64_t kv_lora_rank = 0;            // r_kv
  std::int64_t qk_nope_head_dim = 0;        // d_nope
  std::int64_t qk_rope_head_dim = 0;        // d_rope
  std::int64_t v_head_dim = 0;              // d_v
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  std::int64_t max_position_embeddings = 0;
  std::string scoring_func = "sigmoid";     // softmax (V2) | sigmoid (V3)
  std::string topk_method = "noaux_tc";     // greedy | group_limited_greedy | noaux_tc
  bool norm_topk_prob = true;
  std::int64_t num_nextn_predict_layers = 0;  // MTP depth (V3: 1)
  bool tie_word_embeddings = false;
  double aux_loss_alpha = 0.0;              // training only
  bool seq_aux = false;                     // training only
  std::string torch_dtype = "bfloat16";     // dtype of the released weights (for byte counts)
  bool fp8_weights = false;                 // quantization_config: fp8 e4m3, 128x128 blocks
  std::int64_t weight_block_size = 128;

  // Derived quantities, named as in the spec.
  std::int64_t d() const { return hidden_size; }
  std::int64_t n_h() const { return num_attention_heads; }
  std::int64_t d_qk() const { return qk_nope_head_dim + qk_rope_head_dim; }  // 192
  bool has_q_lora() const { return q_lora_rank > 0; }
  bool has_gate_bias() const { return topk_method == "noaux_tc"; }
  // Layer l uses the MoE block iff l >= first_k_dense_replace and l % moe_layer_freq == 0.
  bool is_moe_layer(std::int64_t l) const;
  // Number of MoE layers among 0..L-1, counted without a loop over the layers.
  std::int64_t num_moe_layers() const;
  bool has_yarn() const { return rope_scaling.type == "yarn"; }

  bool operator==(const Config&) const = default;  // every field, the name included
};

// Built-in configurations: deepseek-v2, deepseek-v2-lite, deepseek-v3, deepseek-r1 at full
// scale (spec §1.2), plus small test configs (names start with "tiny-").
std::vector<std::string> preset_names();
Config preset(const std::string& name);  // throws, listing the known names

// Reads a HuggingFace config.json (model_type deepseek_v2 / deepseek_v3).
Config load_config_json(const std::string& path);
Config config_from_json_text(const std::string& text, const std::string& origin);
// Writes the HF-style JSON text of a config.
std::string config_to_json_text(const Config& c);

// Size limits, checked by validate() before anything proportional to a size is allocated or
// looped over (docs/reliability.md). Each is a power of two well above the largest released
// model (V3 in the comments), so that a typo or a hostile config.json -- 2^31 layers, a vocabulary
// of 2^40 -- is refused at once with the field, the value and the limit, instead of a table of
// 2^31 layers being built first.
namespace limits {
inline constexpr std::int64_t vocab_size = std::int64_t{1} << 22;         // V3: 129,280
inline constexpr std::int64_t hidden_size = std::int64_t{1} << 16;        // V3: 7,168
inline constexpr std::int64_t intermediate_size = std::int64_t{1} << 18;  // also I_e; V3: 18,432
inline constexpr std::int64_t num_hidden_layers = std::int64_t{1} << 10;  // V3: 61
inline constexpr std::int64_t num_attention_heads = std::int64_t{1} << 10;  // V3: 128
inline constexpr std::int64_t head_dim = std::int64_t{1} << 12;   // d_nope, d_rope, d_v; V3: 128, 64, 128
inline constexpr std::int64_t lora_rank = std::int64_t{1} << 16;  // r_q, r_kv; V3: 1,536, 512
inline constexpr std::int64_t experts = std::int64_t{1} << 12;    // N_r, N_s per layer; V3: 256, 1
// MoE layers x N_r: the routed experts of the whole model, each three tensors in a checkpoint
// and in the catalogue `dsr1 info` lists. V3: 58 x 256 = 14,848.
inline constexpr std::int64_t routed_experts_in_model = std::int64_t{1} << 17;
inline constexpr std::int64_t positions = std::int64_t{1} << 24;  // max_position_embeddings; V3: 163,840
inline constexpr std::int64_t weight_block_size = std::int64_t{1} << 16;  // V3: 128
// Parameters of the whole model, counted in 64-bit arithmetic that detects overflow. V3: 6.7e11.
inline constexpr std::uint64_t parameters = std::uint64_t{1} << 46;
}  // namespace limits

// Checks every invariant and limit; throws std::invalid_argument naming the field, the value and
// the expectation. Costs a few microseconds whatever the sizes: nothing is allocated or looped
// over per layer or per expert.
void validate(const Config& c);
// An upper bound on the parameters of the main model and the MTP module, in checked 64-bit
// arithmetic (every matrix, norm and bias; the accounting of reference/tools/ counts exactly).
// Throws std::invalid_argument naming the product that overflows 64 bits.
std::uint64_t parameter_bound(const Config& c);

// One paragraph naming the conventions in effect: RoPE layout, YaRN on/off and its scale,
// the softmax scale, the gating rule.
std::string describe_conventions(const Config& c);

}  // namespace dsr1
