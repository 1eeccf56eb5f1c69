// The hand-sized MLA cases of golden/mla/ (hand_case.json, kv_cache_decode.json), read into a
// Config, MLA weights and inputs. Shared by walkthroughs 10 and 13.
// Leaves out: the expected outputs (tests/test_mla.cpp checks those).
#pragma once

#include <cstdint>
#include <string>

#include "reference/deepseek/config.hpp"
#include "reference/io/golden_json.hpp"
#include "reference/deepseek/weights.hpp"

namespace dsr1::walk {

struct MlaHandCase {
  Config c;
  MlaWeights W;
  arma::mat x;            // [d, T], already RMSNorm_attn-ed
  std::int64_t pos0 = 0;  // absolute position of the first token
};

// `file` is relative to golden/mla/, e.g. "hand_case.json".
inline MlaHandCase load_mla_hand_case(const std::string& file) {
  const GoldenFile g = GoldenFile::load(std::string(DSR1_SOURCE_DIR) + "/golden/mla/" + file);
  MlaHandCase k;
  auto i64 = [&](const char* f) { return static_cast<std::int64_t>(g.number(f)); };
  k.c.name = "hand case";
  k.c.hidden_size = i64("parameters.hidden_size");
  k.c.num_attention_heads = i64("parameters.num_attention_heads");
  k.c.qk_nope_head_dim = i64("parameters.qk_nope_head_dim");
  k.c.qk_rope_head_dim = i64("parameters.qk_rope_head_dim");
  k.c.v_head_dim = i64("parameters.v_head_dim");
  k.c.kv_lora_rank = i64("parameters.kv_lora_rank");
  k.c.q_lora_rank = i64("parameters.q_lora_rank");
  k.c.rms_norm_eps = g.number("parameters.rms_norm_eps");
  k.c.rope_theta = g.number("parameters.rope_theta");
  k.c.rope_scaling.type = g.text("parameters.rope_scaling.type");
  k.c.rope_scaling.factor = g.number("parameters.rope_scaling.factor");
  k.c.rope_scaling.original_max_position_embeddings =
      i64("parameters.rope_scaling.original_max_position_embeddings");
  k.c.rope_scaling.mscale = g.number("parameters.rope_scaling.mscale");
  k.c.rope_scaling.mscale_all_dim = g.number("parameters.rope_scaling.mscale_all_dim");
  k.W.W_UQ = g.matrix("parameters.W_UQ");
  k.W.W_QR = g.matrix("parameters.W_QR");
  k.W.W_DKV = g.matrix("parameters.W_DKV");
  k.W.w_kv = g.vec("parameters.w_kv");
  k.W.W_KR = g.matrix("parameters.W_KR");
  k.W.W_UK = g.matrix("parameters.W_UK");
  k.W.W_UV = g.matrix("parameters.W_UV");
  k.W.W_O = g.matrix("parameters.W_O");
  k.x = g.tokens("inputs.x");
  if (g.has("inputs.pos0")) k.pos0 = i64("inputs.pos0");
  return k;
}

}  // namespace dsr1::walk
