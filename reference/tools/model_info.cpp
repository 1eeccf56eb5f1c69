#include "reference/tools/model_info.hpp"

#include <filesystem>

#include "reference/deepseek/loader.hpp"
#include "reference/io/checkpoint.hpp"
#include "reference/tools/accounting.hpp"

namespace dsr1 {

StoredCounts stored_counts(const std::string& dir, const Config& c) {
  namespace fs = std::filesystem;
  StoredCounts s;
  if (!fs::exists(fs::path(dir) / "model.safetensors") &&
      !fs::exists(fs::path(dir) / "model.safetensors.index.json"))
    return s;
  CheckpointOptions opt;
  opt.weight_block_size = c.weight_block_size;
  const Checkpoint ck(dir, opt);
  s.present = true;
  for (const auto& name : ck.names()) {
    const auto& info = ck.info(name);
    ++s.tensors;
    s.elements += info.numel();
    s.bytes += info.end - info.begin;
  }
  return s;
}

nlohmann::ordered_json model_info_json(const Config& c, const std::string& model_dir) {
  const ParamReport p = count_params(c);
  const KvCacheReport kv = kv_cache_size(c, 2);
  const FlopReport f = flops_per_token(c);
  std::uint64_t cat_tensors = 0, cat_bytes = 0;
  for (const auto& e : checkpoint_catalogue(c)) {
    ++cat_tensors;
    cat_bytes += e.bytes();
  }
  const StoredCounts stored = model_dir.empty() ? StoredCounts{} : stored_counts(model_dir, c);
  nlohmann::ordered_json j;
  j["model"] = c.name;
  j["config"] = nlohmann::json::parse(config_to_json_text(c));  // the config.json it describes
  j["model_type"] = c.model_type;
  j["convention"] = counting_convention();
  j["total_params"] = p.total_params;
  j["active_params"] = p.active_params;
  j["active_params_with_embedding"] = p.active_params_with_embedding;
  j["components"] = nlohmann::ordered_json::array();
  for (const auto& comp : p.components)
    j["components"].push_back({{"name", comp.name}, {"total", comp.total}, {"active", comp.active}});
  j["per_layer"] = {{"mla", p.mla_per_layer},          {"dense_ffn", p.dense_ffn_per_layer},
                    {"routed_expert", p.expert_params}, {"shared_experts", p.shared_params},
                    {"gate", p.gate_params},            {"moe_layer_total", p.moe_layer_total},
                    {"moe_layer_active", p.moe_layer_active}};
  if (c.num_nextn_predict_layers > 0)
    j["mtp"] = {{"params", p.mtp_params},
                {"params_with_embedding_and_head_copies", p.mtp_params_with_copies},
                {"active_params", p.mtp_active}};
  j["checkpoint_catalogue"] = {{"tensors", cat_tensors}, {"bytes", cat_bytes},
                               {"fp8", c.fp8_weights}};
  if (stored.present)
    j["checkpoint_stored"] = {{"tensors", stored.tensors}, {"elements", stored.elements},
                              {"bytes", stored.bytes}};
  j["kv_cache"] = {{"bytes_per_element", kv.bytes_per_element},
                   {"layers", c.num_hidden_layers},
                   {"mla_elements_per_token_layer", kv.mla_elements},
                   {"naive_elements_per_token_layer", kv.naive_elements},
                   {"mha_elements_per_token_layer", kv.mha_elements},
                   {"mla_bytes_per_token", kv.mla_bytes_per_token},
                   {"naive_bytes_per_token", kv.naive_bytes_per_token},
                   {"mha_bytes_per_token", kv.mha_bytes_per_token},
                   {"context_128k", kv.context_128k},
                   {"mla_bytes_128k", kv.mla_bytes_128k},
                   {"naive_bytes_128k", kv.naive_bytes_128k},
                   {"mha_bytes_128k", kv.mha_bytes_128k},
                   {"max_context", kv.max_context},
                   {"mla_bytes_max", kv.mla_bytes_max},
                   {"naive_bytes_max", kv.naive_bytes_max},
                   {"mha_bytes_max", kv.mha_bytes_max}};
  j["flops_per_token"] = {{"linear", f.linear},
                          {"attention_per_context_token_naive", f.attention_per_context_token_naive},
                          {"attention_per_context_token_absorbed", f.attention_per_context_token_absorbed},
                          {"at_4k_naive", f.at_4k_naive},
                          {"at_4k_absorbed", f.at_4k_absorbed},
                          {"at_max_naive", f.at_max_naive},
                          {"at_max_absorbed", f.at_max_absorbed}};
  return j;
}

}  // namespace dsr1
