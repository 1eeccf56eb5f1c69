// Full-scale accounting from a config alone: parameters (total and activated) per component,
// KV-cache bytes (MLA latent vs naive per-head cache vs plain MHA), and FLOPs per token.
// Leaves out: nothing is allocated or read; the checkpoint's own byte count is the catalogue's
// (loader.hpp). Formulas: spec §12.1 (parameters), §5 (KV cache); docs/accounting.md.
//
// Convention (spec §12.3): activated parameters exclude the input embedding (a lookup reads one
// row, it multiplies nothing) and count K of the N_r routed experts in every MoE layer. This is
// the only convention that reproduces all three published activated counts (21B, 2.4B, 37B).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "reference/deepseek/config.hpp"

namespace dsr1 {

struct ComponentParams {
  std::string name;     // "embedding", "attention + block norms", "dense FFNs", ...
  std::uint64_t total;  // parameters stored
  std::uint64_t active; // parameters used by one token
};

struct ParamReport {
  std::vector<ComponentParams> components;  // main model, in forward order
  std::uint64_t total_params = 0;           // main model (layers 0..L-1, embedding, head)
  std::uint64_t active_params = 0;          // excludes the input embedding (see above)
  std::uint64_t active_params_with_embedding = 0;
  // Per-layer values of spec §12.2.
  std::uint64_t mla_per_layer = 0;          // MLA without the block norms
  std::uint64_t dense_ffn_per_layer = 0;
  std::uint64_t expert_params = 0;          // one routed expert
  std::uint64_t shared_params = 0;          // the shared block (one MLP of width N_s*I_e)
  std::uint64_t gate_params = 0;            // router (+ bias)
  std::uint64_t moe_layer_total = 0;        // routed + shared + gate of one MoE layer
  std::uint64_t moe_layer_active = 0;       // K routed + shared + gate
  // MTP (spec §12.3): unique parameters (enorm, hnorm, eh_proj, one decoder block,
  // shared_head.norm), the same plus the stored embedding and head copies, and activated
  // (block with K experts, without embedding and head).
  std::uint64_t mtp_params = 0;
  std::uint64_t mtp_params_with_copies = 0;
  std::uint64_t mtp_active = 0;
};

ParamReport count_params(const Config& c);

// KV cache per token, spec §5. Elements are per token and layer; bytes use `bytes_per_element`
// (bf16 = 2) and all L layers of one sequence.
struct KvCacheReport {
  std::uint64_t bytes_per_element = 2;
  std::uint64_t mla_elements = 0;    // r_kv + d_rope: c_kv_hat and the rotated k_rope
  std::uint64_t naive_elements = 0;  // n_h * (d_nope + d_rope + d_v): materialized K and V
  std::uint64_t mha_elements = 0;    // 2 * n_h * d_h with d_h = d_nope: plain multi-head attention
  std::uint64_t mla_bytes_per_token = 0, naive_bytes_per_token = 0, mha_bytes_per_token = 0;
  std::uint64_t context_128k = 131072;  // "128K"
  std::uint64_t max_context = 0;        // max_position_embeddings
  std::uint64_t mla_bytes_128k = 0, naive_bytes_128k = 0, mha_bytes_128k = 0;
  std::uint64_t mla_bytes_max = 0, naive_bytes_max = 0, mha_bytes_max = 0;
};

KvCacheReport kv_cache_size(const Config& c, std::uint64_t bytes_per_element = 2);

// FLOPs of one token (a multiply-add counts 2). `linear` covers every matrix product of the
// main model for one token (attention projections, dense or K routed + shared experts, router,
// LM head): 2 * (activated parameters that are matrix entries). Attention against the cache
// adds `attention_per_context_token` per cached position, summed over layers and heads:
//   naive:    n_h * (2*(d_nope + d_rope) + 2*d_v)        scores on full keys, then values
//   absorbed: n_h * (2*(r_kv + d_rope) + 2*r_kv)         scores and z on the latent
struct FlopReport {
  double linear = 0;
  double attention_per_context_token_naive = 0;
  double attention_per_context_token_absorbed = 0;
  // Totals for one token generated at context length n (the 4K and maximum points).
  double at_4k_naive = 0, at_4k_absorbed = 0, at_max_naive = 0, at_max_absorbed = 0;
};

FlopReport flops_per_token(const Config& c);

// The convention sentence printed by `dsr1 info`.
std::string counting_convention();

}  // namespace dsr1
