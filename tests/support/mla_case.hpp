// Small MLA configurations and seeded random weights for the attention tests.
// Leaves out: checkpoint naming (the loader's tests cover HF tensor names).
#pragma once

#include <armadillo>
#include <cstdint>
#include <string>

#include "reference/deepseek/config.hpp"
#include "reference/deepseek/weights.hpp"

namespace dsr1::test {

// A small MLA configuration with every dimension different, so a transposed or mixed-up
// dimension cannot go unnoticed: d=24, n_h=3, d_nope=5, d_rope=8, d_v=6, r_kv=7, r_q=9 (0 for
// the no-q-LoRA variant). YaRN with factor 40 over an original context of 64 positions, so the
// frequency blend (pairs 0 kept, 1 blended, 2-3 divided by 40) and mscale^2 both matter at the
// positions the tests use (37, 70, 5000).
inline Config small_mla_config(std::int64_t q_lora_rank = 9) {
  Config c;
  c.name = "test-mla-small";
  c.hidden_size = 24;
  c.num_attention_heads = 3;
  c.num_key_value_heads = 3;
  c.qk_nope_head_dim = 5;
  c.qk_rope_head_dim = 8;
  c.v_head_dim = 6;
  c.kv_lora_rank = 7;
  c.q_lora_rank = q_lora_rank;
  c.rms_norm_eps = 1e-6;
  c.rope_theta = 10000.0;
  c.rope_scaling.type = "yarn";
  c.rope_scaling.factor = 40.0;
  c.rope_scaling.original_max_position_embeddings = 64;
  c.rope_scaling.beta_fast = 32.0;
  c.rope_scaling.beta_slow = 1.0;
  c.rope_scaling.mscale = 1.0;
  c.rope_scaling.mscale_all_dim = 1.0;
  c.max_position_embeddings = 64 * 40;
  return c;
}

// Weights with entries ~ N(0, 1/in) (unit-scale activations) and norm gains in [0.75, 1.25].
inline MlaWeights random_mla_weights(const Config& c, unsigned seed) {
  arma::arma_rng::set_seed(seed);
  const arma::uword d = c.hidden_size, n_h = c.num_attention_heads, d_nope = c.qk_nope_head_dim,
                    d_rope = c.qk_rope_head_dim, d_v = c.v_head_dim, r_kv = c.kv_lora_rank,
                    r_q = c.q_lora_rank;
  auto linear = [](arma::uword out, arma::uword in) {
    return arma::mat(arma::randn<arma::mat>(out, in) / std::sqrt(static_cast<double>(in)));
  };
  auto gain = [](arma::uword n) { return arma::vec(0.75 + 0.5 * arma::randu<arma::vec>(n)); };
  MlaWeights W;
  const arma::uword q_in = r_q > 0 ? r_q : d;
  if (r_q > 0) {
    W.W_DQ = linear(r_q, d);
    W.w_q = gain(r_q);
  }
  W.W_UQ = linear(n_h * d_nope, q_in);
  W.W_QR = linear(n_h * d_rope, q_in);
  W.W_DKV = linear(r_kv, d);
  W.W_KR = linear(d_rope, d);
  W.w_kv = gain(r_kv);
  W.W_UK = linear(n_h * d_nope, r_kv);
  W.W_UV = linear(n_h * d_v, r_kv);
  W.W_O = linear(d, n_h * d_v);
  return W;
}

// T tokens of unit-scale input, x: [d, T].
inline arma::mat random_tokens(const Config& c, arma::uword T, unsigned seed) {
  arma::arma_rng::set_seed(seed);
  return arma::randn<arma::mat>(c.hidden_size, T);
}

}  // namespace dsr1::test
