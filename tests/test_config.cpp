// Configuration: presets against spec §1.2, config.json parsing and round trip, and every
// invariant of validate() rejected with a message naming the field.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>

#include "reference/deepseek/config.hpp"
#include "tests/support/errors.hpp"

using dsr1::Config;

namespace {

using dsr1::test::contains;
using dsr1::test::error_of;

// The V2-Lite-Chat config.json as released (spec §1.2 values; q_lora_rank null, no gate bias).
const char* kV2LiteJson = R"({
  "architectures": ["DeepseekV2ForCausalLM"],
  "attention_bias": false, "attention_dropout": 0.0,
  "aux_loss_alpha": 0.001, "bos_token_id": 100000, "eos_token_id": 100001,
  "first_k_dense_replace": 1, "hidden_act": "silu", "hidden_size": 2048,
  "initializer_range": 0.02, "intermediate_size": 10944, "kv_lora_rank": 512,
  "max_position_embeddings": 163840, "model_type": "deepseek_v2",
  "moe_intermediate_size": 1408, "moe_layer_freq": 1, "n_group": 1, "n_routed_experts": 64,
  "n_shared_experts": 2, "norm_topk_prob": false, "num_attention_heads": 16,
  "num_experts_per_tok": 6, "num_hidden_layers": 27, "num_key_value_heads": 16,
  "pretraining_tp": 1, "q_lora_rank": null, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
  "rms_norm_eps": 1e-06,
  "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707,
                   "mscale_all_dim": 0.707, "original_max_position_embeddings": 4096, "type": "yarn"},
  "rope_theta": 10000, "routed_scaling_factor": 1.0, "scoring_func": "softmax", "seq_aux": true,
  "tie_word_embeddings": false, "topk_group": 1, "topk_method": "greedy",
  "torch_dtype": "bfloat16", "transformers_version": "4.33.1", "use_cache": true,
  "v_head_dim": 128, "vocab_size": 102400
})";

}  // namespace

TEST_CASE("presets hold the spec §1.2 values at full scale") {
  const Config v3 = dsr1::preset("deepseek-v3");
  CHECK(v3.vocab_size == 129280);
  CHECK(v3.hidden_size == 7168);
  CHECK(v3.intermediate_size == 18432);
  CHECK(v3.moe_intermediate_size == 2048);
  CHECK(v3.num_hidden_layers == 61);
  CHECK(v3.num_attention_heads == 128);
  CHECK(v3.n_shared_experts == 1);
  CHECK(v3.n_routed_experts == 256);
  CHECK(v3.num_experts_per_tok == 8);
  CHECK(v3.n_group == 8);
  CHECK(v3.topk_group == 4);
  CHECK(v3.routed_scaling_factor == 2.5);
  CHECK(v3.first_k_dense_replace == 3);
  CHECK(v3.q_lora_rank == 1536);
  CHECK(v3.kv_lora_rank == 512);
  CHECK(v3.d_qk() == 192);
  CHECK(v3.v_head_dim == 128);
  CHECK(v3.rope_scaling.type == "yarn");
  CHECK(v3.rope_scaling.factor == 40.0);
  CHECK(v3.rope_scaling.original_max_position_embeddings == 4096);
  CHECK(v3.rope_scaling.mscale_all_dim == 1.0);
  CHECK(v3.max_position_embeddings == 163840);
  CHECK(v3.scoring_func == "sigmoid");
  CHECK(v3.topk_method == "noaux_tc");
  CHECK(v3.norm_topk_prob);
  CHECK(v3.num_nextn_predict_layers == 1);
  CHECK(v3.fp8_weights);
  CHECK(v3.num_moe_layers() == 58);

  // R1 is V3's architecture (spec §1.1): every field but the name is equal.
  Config r1 = dsr1::preset("deepseek-r1");
  CHECK(r1.name == "deepseek-r1");
  r1.name = v3.name;
  CHECK(r1 == v3);

  const Config v2 = dsr1::preset("deepseek-v2");
  CHECK(v2.hidden_size == 5120);
  CHECK(v2.num_hidden_layers == 60);
  CHECK(v2.n_routed_experts == 160);
  CHECK(v2.num_experts_per_tok == 6);
  CHECK(v2.n_group == 8);
  CHECK(v2.topk_group == 3);
  CHECK(v2.routed_scaling_factor == 16.0);
  CHECK(v2.first_k_dense_replace == 1);
  CHECK(v2.rope_scaling.mscale == 0.707);  // spec §4.5 note: HF V2 config, not config_236B.json
  CHECK(v2.rope_scaling.mscale_all_dim == 0.707);
  CHECK(v2.topk_method == "group_limited_greedy");
  CHECK_FALSE(v2.norm_topk_prob);
  CHECK_FALSE(v2.has_gate_bias());
  CHECK(v2.num_nextn_predict_layers == 0);

  const Config lite = dsr1::preset("deepseek-v2-lite");
  CHECK(lite.hidden_size == 2048);
  CHECK(lite.intermediate_size == 10944);
  CHECK(lite.moe_intermediate_size == 1408);
  CHECK(lite.num_hidden_layers == 27);
  CHECK(lite.num_attention_heads == 16);
  CHECK(lite.n_routed_experts == 64);
  CHECK(lite.n_group == 1);
  CHECK(lite.q_lora_rank == 0);
  CHECK_FALSE(lite.has_q_lora());
  CHECK(lite.topk_method == "greedy");
  CHECK(lite.routed_scaling_factor == 1.0);
}

TEST_CASE("tiny presets exercise the paths they are named for") {
  const Config v3 = dsr1::preset("tiny-v3");
  CHECK(v3.scoring_func == "sigmoid");
  CHECK(v3.has_gate_bias());
  CHECK(v3.n_group > 1);
  CHECK(v3.has_q_lora());
  CHECK(v3.first_k_dense_replace == 1);
  CHECK(v3.num_nextn_predict_layers == 1);
  CHECK(v3.has_yarn());
  CHECK_FALSE(v3.is_moe_layer(0));
  CHECK(v3.is_moe_layer(1));

  const Config lite = dsr1::preset("tiny-v2-lite");
  CHECK(lite.scoring_func == "softmax");
  CHECK(lite.topk_method == "greedy");
  CHECK_FALSE(lite.has_q_lora());
  CHECK(lite.n_group == 1);

  const Config v2 = dsr1::preset("tiny-v2");
  CHECK(v2.topk_method == "group_limited_greedy");
  CHECK(v2.has_q_lora());
  CHECK(v2.routed_scaling_factor == 16.0);

  // mini-r1: R1's structure and vocabulary on a small body.
  const Config r1 = dsr1::preset("deepseek-r1"), mini = dsr1::preset("mini-r1");
  CHECK(mini.vocab_size == r1.vocab_size);
  CHECK(mini.model_type == r1.model_type);
  CHECK(mini.scoring_func == "sigmoid");
  CHECK(mini.topk_method == r1.topk_method);
  CHECK(mini.has_gate_bias());
  CHECK(mini.n_group > 1);
  CHECK(mini.topk_group < mini.n_group);
  CHECK(mini.n_shared_experts == 1);
  CHECK(mini.has_q_lora());
  CHECK(mini.rope_scaling == r1.rope_scaling);
  CHECK(mini.first_k_dense_replace >= 1);
  CHECK_FALSE(mini.is_moe_layer(0));
  CHECK(mini.is_moe_layer(mini.num_hidden_layers - 1));
  CHECK(mini.num_nextn_predict_layers == 1);
  CHECK(mini.routed_scaling_factor == r1.routed_scaling_factor);
  CHECK(mini.hidden_size * 16 <= r1.hidden_size);

  const Config y = dsr1::preset("tiny-yarn");
  CHECK(y.has_yarn());
  CHECK(y.rope_scaling.original_max_position_embeddings <= 32);
  CHECK(y.max_position_embeddings > y.rope_scaling.original_max_position_embeddings);

  for (const auto& name : dsr1::preset_names()) {
    CAPTURE(name);
    CHECK_NOTHROW(dsr1::validate(dsr1::preset(name)));
  }
  CHECK(contains(error_of([] { dsr1::preset("deepseek-v4"); }), "deepseek-v2-lite"));
}

TEST_CASE("the released V2-Lite config.json parses to the deepseek-v2-lite preset") {
  Config c = dsr1::config_from_json_text(kV2LiteJson, "v2-lite.json");
  CHECK(c.q_lora_rank == 0);  // null -> no query compression
  c.name = "deepseek-v2-lite";
  CHECK(c == dsr1::preset("deepseek-v2-lite"));
}

TEST_CASE("config_to_json_text round-trips every preset exactly") {
  for (const auto& name : dsr1::preset_names()) {
    CAPTURE(name);
    const Config c = dsr1::preset(name);
    Config back = dsr1::config_from_json_text(dsr1::config_to_json_text(c), name);
    CHECK(back == c);
  }
  // The JSON uses HF's spellings: null rank, quantization_config for FP8.
  const std::string lite = dsr1::config_to_json_text(dsr1::preset("deepseek-v2-lite"));
  CHECK(contains(lite, "\"q_lora_rank\": null"));
  CHECK_FALSE(contains(lite, "quantization_config"));
  const std::string v3 = dsr1::config_to_json_text(dsr1::preset("deepseek-v3"));
  CHECK(contains(v3, "\"quant_method\": \"fp8\""));
}

TEST_CASE("missing optional fields take the HF defaults, null rope_scaling means none") {
  const std::string minimal = R"({"model_type": "deepseek_v3", "vocab_size": 100, "hidden_size": 32,
    "intermediate_size": 64, "num_hidden_layers": 4, "num_attention_heads": 2, "kv_lora_rank": 16,
    "qk_nope_head_dim": 8, "qk_rope_head_dim": 4, "v_head_dim": 8, "moe_intermediate_size": 16,
    "rope_scaling": null})";
  const Config c = dsr1::config_from_json_text(minimal, "minimal.json");
  CHECK(c.rope_scaling.type == "none");
  CHECK(c.n_routed_experts == 256);  // DeepseekV3Config defaults
  CHECK(c.num_experts_per_tok == 8);
  CHECK(c.n_group == 8);
  CHECK(c.topk_group == 4);
  CHECK(c.q_lora_rank == 1536);
  CHECK(c.scoring_func == "sigmoid");
  CHECK(c.num_key_value_heads == 2);
  CHECK(c.num_nextn_predict_layers == 0);
  CHECK_FALSE(c.fp8_weights);

  // The original V2 remote code's "gready" spelling is greedy (P9).
  std::string gready = kV2LiteJson;
  gready.replace(gready.find("\"greedy\""), 8, "\"gready\"");
  CHECK(dsr1::config_from_json_text(gready, "x").topk_method == "greedy");

  // A shape-defining dimension is never guessed.
  std::string no_hidden = kV2LiteJson;
  no_hidden.replace(no_hidden.find("\"hidden_size\": 2048,"), 20, "");
  CHECK(contains(error_of([&] { dsr1::config_from_json_text(no_hidden, "x.json"); }), "'hidden_size'"));
}

TEST_CASE("config.json with bad values or types is rejected naming the field") {
  struct Case {
    const char* from;
    const char* to;
    const char* field;
  };
  const Case cases[] = {
      {"\"model_type\": \"deepseek_v2\"", "\"model_type\": \"llama\"", "model_type"},
      {"\"hidden_size\": 2048", "\"hidden_size\": \"2048\"", "hidden_size"},
      {"\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", "hidden_act"},
      {"\"attention_bias\": false", "\"attention_bias\": true", "attention_bias"},
      {"\"type\": \"yarn\"", "\"type\": \"linear\"", "rope_scaling.type"},
      {"\"norm_topk_prob\": false", "\"norm_topk_prob\": 1", "norm_topk_prob"},
      {"\"vocab_size\": 102400", "\"vocab_size\": 1.5", "vocab_size"},
  };
  for (const auto& k : cases) {
    CAPTURE(k.field);
    std::string text = kV2LiteJson;
    const auto at = text.find(k.from);
    REQUIRE(at != std::string::npos);
    text.replace(at, std::string(k.from).size(), k.to);
    const std::string err = error_of([&] { dsr1::config_from_json_text(text, "bad.json"); });
    CHECK(contains(err, "bad.json"));
    CHECK(contains(err, k.field));
  }
  CHECK(contains(error_of([] { dsr1::config_from_json_text("{\"model_type\": ", "t.json"); }), "not valid JSON"));
  CHECK(contains(error_of([] { dsr1::load_config_json("/nonexistent/config.json"); }), "/nonexistent/config.json"));
}

TEST_CASE("validate rejects each broken invariant, naming the field and the expected value") {
  struct Case {
    const char* what;
    std::function<void(Config&)> breaks;
    const char* field;
    const char* expected;
  };
  const std::vector<Case> cases = {
      {"zero hidden size", [](Config& c) { c.hidden_size = 0; }, "hidden_size", "positive"},
      {"negative heads", [](Config& c) { c.num_attention_heads = -4; }, "num_attention_heads", "positive"},
      {"zero v_head_dim", [](Config& c) { c.v_head_dim = 0; }, "v_head_dim", "positive"},
      {"KV head groups", [](Config& c) { c.num_key_value_heads = 2; }, "num_key_value_heads", "num_attention_heads = 4"},
      {"odd RoPE dim", [](Config& c) { c.qk_rope_head_dim = 7; }, "qk_rope_head_dim", "even"},
      {"experts not divisible by groups", [](Config& c) { c.n_group = 3; }, "n_group", "divisor of n_routed_experts = 8"},
      {"K above N_r", [](Config& c) { c.num_experts_per_tok = 9; }, "num_experts_per_tok", "<= n_routed_experts = 8"},
      {"topk_group above n_group", [](Config& c) { c.topk_group = 5; }, "topk_group", "<= n_group = 4"},
      {"K above the kept groups", [](Config& c) { c.num_experts_per_tok = 5; }, "num_experts_per_tok", "= 4"},
      {"unknown scoring", [](Config& c) { c.scoring_func = "relu"; }, "scoring_func", "softmax or sigmoid"},
      {"unknown topk_method", [](Config& c) { c.topk_method = "random"; }, "topk_method", "noaux_tc"},
      {"noaux_tc with softmax", [](Config& c) { c.scoring_func = "softmax"; }, "scoring_func", "sigmoid with topk_method noaux_tc"},
      {"unknown model type", [](Config& c) { c.model_type = "deepseek_v4"; }, "model_type", "deepseek_v3"},
      {"eps zero", [](Config& c) { c.rms_norm_eps = 0; }, "rms_norm_eps", "> 0"},
      {"rope factor below 1", [](Config& c) { c.rope_scaling.factor = 0.5; }, "rope_scaling.factor", ">= 1"},
      {"betas swapped", [](Config& c) { std::swap(c.rope_scaling.beta_fast, c.rope_scaling.beta_slow); }, "rope_scaling.beta_fast", "beta_fast > beta_slow"},
      {"dense layers past L", [](Config& c) { c.first_k_dense_replace = 4; }, "first_k_dense_replace", "0 .. num_hidden_layers = 3"},
      {"MTP depth 2", [](Config& c) { c.num_nextn_predict_layers = 2; }, "num_nextn_predict_layers", "0 or 1"},
      {"moe_layer_freq 0", [](Config& c) { c.moe_layer_freq = 0; }, "moe_layer_freq", ">= 1"},
      {"zero routed scaling", [](Config& c) { c.routed_scaling_factor = 0; }, "routed_scaling_factor", "> 0"},
      {"negative q rank", [](Config& c) { c.q_lora_rank = -1; }, "q_lora_rank", "0/null"},
      {"zero kv rank", [](Config& c) { c.kv_lora_rank = 0; }, "kv_lora_rank", "positive"},
      {"unknown torch_dtype", [](Config& c) { c.torch_dtype = "int8"; }, "torch_dtype", "bfloat16"},
      {"one expert per group under noaux_tc", [](Config& c) { c.n_group = 8; c.topk_group = 4; c.num_experts_per_tok = 3; }, "n_group", "at least 2 experts per group"},
  };
  for (const auto& k : cases) {
    CAPTURE(k.what);
    Config c = dsr1::preset("tiny-v3");
    k.breaks(c);
    const std::string err = error_of([&] { dsr1::validate(c); });
    CHECK(contains(err, "tiny-v3"));
    CHECK(contains(err, k.field));
    CHECK(contains(err, k.expected));
  }
  // Greedy selection with groups would leave the groups silently unused.
  Config g = dsr1::preset("tiny-v2-lite");
  g.n_group = 4;
  CHECK(contains(error_of([&] { dsr1::validate(g); }), "greedy"));
  // V2 routing needs softmax.
  Config s = dsr1::preset("tiny-v2");
  s.scoring_func = "sigmoid";
  CHECK(contains(error_of([&] { dsr1::validate(s); }), "softmax with topk_method group_limited_greedy"));
}

TEST_CASE("describe_conventions states the layout, YaRN scale and gating rule") {
  const std::string v3 = dsr1::describe_conventions(dsr1::preset("deepseek-v3"));
  CHECK(contains(v3, "interleaved"));
  CHECK(contains(v3, "YaRN on"));
  // spec §4.5 table: s_eff = 0.13523378 for V3 (mscale_all_dim 1, factor 40).
  const double s_eff = std::pow(192.0, -0.5) * std::pow(0.1 * std::log(40.0) + 1.0, 2);
  CHECK(std::fabs(s_eff - 0.13523378) < 5e-9);
  CHECK(contains(v3, fmt::format("{:.8f}", s_eff)));
  CHECK(contains(v3, "selection only"));
  const std::string v2 = dsr1::describe_conventions(dsr1::preset("deepseek-v2"));
  CHECK(contains(v2, "0.11472139"));  // spec §4.5 table, mscale_all_dim 0.707
  CHECK(contains(v2, "largest score"));
  Config none = dsr1::preset("tiny-v3");
  none.rope_scaling = dsr1::RopeScaling{};
  CHECK(contains(dsr1::describe_conventions(none), "YaRN off"));
  CHECK(contains(dsr1::describe_conventions(dsr1::preset("deepseek-v2-lite")), "greedily"));
}
