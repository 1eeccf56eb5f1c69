#include "reference/tools/accounting.hpp"

#include <fmt/format.h>

namespace dsr1 {

using u64 = std::uint64_t;

namespace {

// MLA of one layer, spec §12.1 (without the two block norms).
u64 mla_params(const Config& c) {
  const u64 d = c.hidden_size, n_h = c.num_attention_heads, d_nope = c.qk_nope_head_dim,
            d_rope = c.qk_rope_head_dim, d_v = c.v_head_dim, r_q = c.q_lora_rank, r_kv = c.kv_lora_rank;
  const u64 query = c.has_q_lora() ? d * r_q + r_q + r_q * n_h * (d_nope + d_rope)  // q_a, q_a_norm, q_b
                                   : d * n_h * (d_nope + d_rope);                  // q_proj
  const u64 key_value = d * (r_kv + d_rope) + r_kv + r_kv * n_h * (d_nope + d_v);  // kv_a, kv_a_norm, kv_b
  const u64 output = n_h * d_v * d;                                                // o_proj
  return query + key_value + output;
}

// The matrix entries of MLA only (norm weights excluded), for FLOPs.
u64 mla_matrix_params(const Config& c) {
  return mla_params(c) - static_cast<u64>(c.q_lora_rank) - static_cast<u64>(c.kv_lora_rank);
}

}  // namespace

ParamReport count_params(const Config& c) {
  const u64 d = c.hidden_size, V = c.vocab_size, L = c.num_hidden_layers;
  const u64 n_moe = c.num_moe_layers(), n_dense = L - n_moe;
  const u64 N_r = c.n_routed_experts, K = c.num_experts_per_tok;
  ParamReport r;
  r.mla_per_layer = mla_params(c);
  r.dense_ffn_per_layer = 3 * d * c.intermediate_size;
  r.expert_params = 3 * d * c.moe_intermediate_size;
  r.shared_params = 3 * d * c.n_shared_experts * c.moe_intermediate_size;
  r.gate_params = N_r * d + (c.has_gate_bias() ? N_r : 0);
  r.moe_layer_total = N_r * r.expert_params + r.shared_params + r.gate_params;
  r.moe_layer_active = K * r.expert_params + r.shared_params + r.gate_params;

  const u64 embedding = V * d;
  const u64 attention = L * (r.mla_per_layer + 2 * d);  // with the two block norms
  const u64 head = c.tie_word_embeddings ? 0 : V * d;
  r.components = {
      {"embedding", embedding, 0},
      {"attention + block norms", attention, attention},
      {"dense FFNs", n_dense * r.dense_ffn_per_layer, n_dense * r.dense_ffn_per_layer},
      {"routed experts", n_moe * N_r * r.expert_params, n_moe * K * r.expert_params},
      {"shared experts", n_moe * r.shared_params, n_moe * r.shared_params},
      {"gates (+bias)", n_moe * r.gate_params, n_moe * r.gate_params},
      {"final norm", d, d},
      // A tied head is the embedding matrix: no parameters of its own, but it is used.
      {c.tie_word_embeddings ? "lm_head (tied to the embedding)" : "lm_head", head, V * d},
  };
  for (const auto& comp : r.components) {
    r.total_params += comp.total;
    r.active_params += comp.active;
  }
  r.active_params_with_embedding = r.active_params + (c.tie_word_embeddings ? 0 : embedding);

  if (c.num_nextn_predict_layers > 0) {
    const bool moe = c.is_moe_layer(c.num_hidden_layers);
    const u64 block_total = r.mla_per_layer + 2 * d + (moe ? r.moe_layer_total : r.dense_ffn_per_layer);
    const u64 block_active = r.mla_per_layer + 2 * d + (moe ? r.moe_layer_active : r.dense_ffn_per_layer);
    const u64 frame = d + d + 2 * d * d + d;  // enorm, hnorm, eh_proj [d, 2d], shared_head.norm
    r.mtp_params = frame + block_total;
    r.mtp_params_with_copies = r.mtp_params + 2 * V * d;
    r.mtp_active = frame + block_active;
  }
  return r;
}

KvCacheReport kv_cache_size(const Config& c, u64 bytes_per_element) {
  const u64 L = c.num_hidden_layers, n_h = c.num_attention_heads;
  KvCacheReport k;
  k.bytes_per_element = bytes_per_element;
  k.mla_elements = c.kv_lora_rank + c.qk_rope_head_dim;
  k.naive_elements = n_h * (c.qk_nope_head_dim + c.qk_rope_head_dim + c.v_head_dim);
  k.mha_elements = 2 * n_h * c.qk_nope_head_dim;
  k.mla_bytes_per_token = k.mla_elements * L * bytes_per_element;
  k.naive_bytes_per_token = k.naive_elements * L * bytes_per_element;
  k.mha_bytes_per_token = k.mha_elements * L * bytes_per_element;
  k.max_context = c.max_position_embeddings;
  k.mla_bytes_128k = k.mla_bytes_per_token * k.context_128k;
  k.naive_bytes_128k = k.naive_bytes_per_token * k.context_128k;
  k.mha_bytes_128k = k.mha_bytes_per_token * k.context_128k;
  k.mla_bytes_max = k.mla_bytes_per_token * k.max_context;
  k.naive_bytes_max = k.naive_bytes_per_token * k.max_context;
  k.mha_bytes_max = k.mha_bytes_per_token * k.max_context;
  return k;
}

FlopReport flops_per_token(const Config& c) {
  const ParamReport p = count_params(c);
  const double d = c.hidden_size, V = c.vocab_size, L = c.num_hidden_layers, n_h = c.num_attention_heads;
  const double n_moe = c.num_moe_layers(), n_dense = L - n_moe;
  const double routed_matrices = c.num_experts_per_tok * p.expert_params + p.shared_params +
                                 static_cast<double>(c.n_routed_experts) * d;  // experts, shared, W_g
  FlopReport f;
  f.linear = 2.0 * (L * mla_matrix_params(c) + n_dense * p.dense_ffn_per_layer +
                    n_moe * routed_matrices + V * d);
  const double d_qk = c.d_qk(), d_v = c.v_head_dim, r_kv = c.kv_lora_rank, d_rope = c.qk_rope_head_dim;
  f.attention_per_context_token_naive = L * n_h * (2 * d_qk + 2 * d_v);
  f.attention_per_context_token_absorbed = L * n_h * (2 * (r_kv + d_rope) + 2 * r_kv);
  const double max_ctx = c.max_position_embeddings;
  f.at_4k_naive = f.linear + 4096 * f.attention_per_context_token_naive;
  f.at_4k_absorbed = f.linear + 4096 * f.attention_per_context_token_absorbed;
  f.at_max_naive = f.linear + max_ctx * f.attention_per_context_token_naive;
  f.at_max_absorbed = f.linear + max_ctx * f.attention_per_context_token_absorbed;
  return f;
}

std::string counting_convention() {
  return "activated parameters exclude the input embedding (a lookup multiplies nothing) and "
         "count K of the N_r routed experts in each MoE layer; the LM head is counted (spec §12.3). "
         "The MTP module is reported separately and is not part of the main model's totals.";
}

}  // namespace dsr1
