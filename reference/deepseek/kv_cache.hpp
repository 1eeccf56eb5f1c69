// The latent KV cache of one MLA layer: per token, the normalised latent and the rotated RoPE key.
// Leaves out: paging, batching and quantisation; a model keeps one LatentKvCache per layer.
//
// What MLA caches (spec §4.3, P16): for every past token j
//   ĉ_j^KV = RMSNorm_kv(W^DKV h_j)   [r_kv]   (already normalised)
//   k_j^R  = RoPE(W^KR h_j, pos j)   [d_rope] (RoPE already applied, never normalised)
// and nothing else: per-head keys and values are rebuilt from ĉ^KV (naive form) or never built
// (absorbed form). That is r_kv + d_rope = 576 numbers per token and layer for every DeepSeek
// model, against 2 * n_h * d_h = 32768 for plain multi-head attention (spec §5, docs/kv-cache.md).
// Column j holds the token at absolute position j, so length() is also the next position.
#pragma once

#include <armadillo>
#include <cstdint>
#include <fmt/format.h>
#include <stdexcept>

#include "reference/deepseek/config.hpp"

namespace dsr1::ref {

// Numbers cached per token and layer by each scheme (spec §5), for a config's dimensions.
// MLA's latent cache: ĉ^KV and k^R, r_kv + d_rope (576 for every DeepSeek model).
inline std::int64_t latent_cache_elements(const Config& c) {
  return c.kv_lora_rank + c.qk_rope_head_dim;
}
// A naive cache of the materialised per-head keys [k_nope; k_rope] and values v (HF style):
// n_h (d_nope + d_rope + d_v) (40960 for V3).
inline std::int64_t naive_cache_elements(const Config& c) {
  return c.num_attention_heads * (c.qk_nope_head_dim + c.qk_rope_head_dim + c.v_head_dim);
}
// Plain multi-head attention with head width d_h = d_nope: 2 n_h d_h (32768 for V3).
inline std::int64_t mha_cache_elements(const Config& c) {
  return 2 * c.num_attention_heads * c.qk_nope_head_dim;
}

struct LatentKvCache {
  arma::mat c_kv_hat;  // [r_kv, T_cached]   RMS-normalised latent
  arma::mat k_rope;    // [d_rope, T_cached] RoPE already applied, never normalised

  // Number of cached tokens (= the absolute position of the next token).
  std::int64_t length() const { return static_cast<std::int64_t>(c_kv_hat.n_cols); }

  // Appends T new tokens: c_kv_hat_new [r_kv, T], k_rope_new [d_rope, T]. The first append
  // fixes r_kv and d_rope; later appends must match them.
  void append(const arma::mat& c_kv_hat_new, const arma::mat& k_rope_new) {
    if (c_kv_hat_new.n_cols != k_rope_new.n_cols)
      throw std::invalid_argument(fmt::format(
          "LatentKvCache::append: c_kv_hat_new has {} tokens but k_rope_new has {}",
          c_kv_hat_new.n_cols, k_rope_new.n_cols));
    if (length() > 0 &&
        (c_kv_hat_new.n_rows != c_kv_hat.n_rows || k_rope_new.n_rows != k_rope.n_rows))
      throw std::invalid_argument(fmt::format(
          "LatentKvCache::append: new entries are [{} ; {}] rows, the cache holds [r_kv={} ; "
          "d_rope={}]",
          c_kv_hat_new.n_rows, k_rope_new.n_rows, c_kv_hat.n_rows, k_rope.n_rows));
    if (length() == 0) {
      c_kv_hat = c_kv_hat_new;
      k_rope = k_rope_new;
      return;
    }
    c_kv_hat = arma::join_rows(c_kv_hat, c_kv_hat_new);
    k_rope = arma::join_rows(k_rope, k_rope_new);
  }

  // Numbers stored per token: r_kv + d_rope (576 for every DeepSeek model).
  std::int64_t elements_per_token() const {
    return static_cast<std::int64_t>(c_kv_hat.n_rows + k_rope.n_rows);
  }
};

}  // namespace dsr1::ref
