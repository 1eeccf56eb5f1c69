// The fast path (reference/fast/) against the double-precision reference: every traced tensor on
// every tiny preset and on random configs with odd sizes, bit-identical results for 1, 2, 3 and
// 7 threads, and prefill followed by incremental decoding against one full forward pass.
//
// Tolerance: tests/support/fast_check.hpp.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "reference/deepseek/config.hpp"
#include "reference/fast/model.hpp"
#include "reference/fast/weights.hpp"
#include "reference/deepseek/loader.hpp"
#include "reference/deepseek/model.hpp"
#include "tests/support/check.hpp"
#include "tests/support/fast_check.hpp"

using namespace dsr1;
using dsr1::test::check_close;
using dsr1::test::Tol;
using namespace dsr1::test;

namespace {

void check_against_reference(const Config& c, std::uint64_t seed, std::int64_t T,
                             const fast::Options& opt) {
  const ModelWeights W = generate_weights(c, seed);
  dsr1::test::check_against_reference(W, fast::convert_weights(W, c), c,
                                      some_tokens(c, T, static_cast<unsigned>(seed)), opt);
}

// The generator's weights as a BF16 checkpoint stores them: written as BF16 and read back, so
// every value is a bfloat16 (the reference then computes in double with exactly those values).
ModelWeights bf16_checkpoint_weights(const Config& c, std::uint64_t seed) {
  const std::string dir = fmt::format("{}/fast_bf16_{}_{}", DSR1_BINARY_DIR, c.name, seed);
  write_checkpoint(dir, c, generate_weights(c, seed), safetensors::DType::BF16);
  return load_model_dir(dir, /*with_mtp=*/false).weights;
}

// A config with sizes that are odd, prime or just past a block boundary.
Config random_config(unsigned seed) {
  std::mt19937 rng(seed);
  auto pick = [&](int lo, int hi) { return static_cast<std::int64_t>(lo + rng() % (hi - lo + 1)); };
  Config c = preset("tiny-v3");
  c.name = fmt::format("random-{}", seed);
  c.hidden_size = pick(33, 71);
  c.num_attention_heads = pick(2, 5);
  c.num_key_value_heads = c.num_attention_heads;
  c.qk_nope_head_dim = pick(3, 13);
  c.qk_rope_head_dim = 2 * pick(1, 5);
  c.v_head_dim = pick(3, 17);
  c.kv_lora_rank = pick(17, 67);  // one to three 32-row panels, the last one partial
  c.q_lora_rank = seed % 2 ? pick(9, 40) : 0;
  c.intermediate_size = pick(20, 90);
  c.moe_intermediate_size = pick(5, 37);
  c.vocab_size = pick(40, 150);
  c.num_hidden_layers = 2;
  c.first_k_dense_replace = 1;
  c.num_nextn_predict_layers = 0;
  if (seed % 3 == 0) {  // V2-Lite rules
    c.scoring_func = "softmax";
    c.topk_method = "greedy";
    c.norm_topk_prob = false;
    c.n_group = 1;
    c.topk_group = 1;
    c.n_routed_experts = 7;
    c.num_experts_per_tok = 2;
    c.n_shared_experts = 0;
  }
  validate(c);
  return c;
}

}  // namespace

TEST_CASE("fast::forward matches ref::forward on every traced tensor of the tiny presets") {
  worst_scaled_error = 0.0;
  for (const char* name : {"tiny-v3", "tiny-v2-lite", "tiny-v2", "tiny-yarn"}) {
    const Config c = preset(name);
    // 37 tokens take the flash prefill path (n_h*T > 32); 5 tokens the key-parallel decode path.
    for (std::int64_t T : {37, 5}) {
      CAPTURE(name);
      CAPTURE(T);
      check_against_reference(c, 7, T, fast::Options{});
      check_against_reference(c, 7, T, odd_blocks(2));
    }
  }
  MESSAGE(fmt::format("worst |fast - ref| / rms(ref) over all traced tensors: {:.2e}", worst_scaled_error));
}

TEST_CASE("fast::forward matches ref::forward on random configs with sizes off the block grid") {
  worst_scaled_error = 0.0;
  for (unsigned seed : {1u, 2u, 3u, 4u, 5u, 6u}) {
    const Config c = random_config(seed);
    CAPTURE(c.name);
    check_against_reference(c, seed, 29, odd_blocks(3));
    check_against_reference(c, seed, 3, fast::Options{});
  }
  MESSAGE(fmt::format("worst |fast - ref| / rms(ref) over all traced tensors: {:.2e}", worst_scaled_error));
}

TEST_CASE("BF16 weights: the fast path matches the reference on the same bfloat16 values") {
  // A BF16 checkpoint's weights are bfloat16 values, so packing them as BF16 is exact and the
  // fast path differs from the reference by float32 arithmetic only: the same tolerance as F32.
  worst_scaled_error = 0.0;
  for (const char* name : {"tiny-v3", "tiny-v2-lite", "tiny-v2"}) {
    const Config c = preset(name);
    CAPTURE(name);
    const ModelWeights W = bf16_checkpoint_weights(c, 8);
    const fast::ModelWeightsF F = fast::convert_weights(W, c, fast::WeightType::BF16);
    CHECK(F.type == fast::WeightType::BF16);
    CHECK(F.W_head.bytes() == c.vocab_size * c.d() * 2);
    for (std::int64_t T : {37, 5}) {
      check_against_reference(W, F, c, some_tokens(c, T, 8), fast::Options{});
      check_against_reference(W, F, c, some_tokens(c, T, 8), odd_blocks(3));
    }
    // Packing rounds as the checkpoint writer does: from the unrounded weights every packed
    // matrix holds the same bfloat16 bits as from the checkpoint's weights.
    const fast::ModelWeightsF F_direct =
        fast::convert_weights(generate_weights(c, 8), c, fast::WeightType::BF16);
    std::size_t matrices = 0;
    for_each_matrix_pair(F, F_direct, [&](const fast::PackedMatrix& x, const fast::PackedMatrix& y) {
      CHECK(x.panels_bf16 == y.panels_bf16);
      CHECK(x.panels.empty());
      ++matrices;
    });
    CHECK(matrices >= 10);
    // generate_weights(..., BF16) gives the checkpoint's values without writing a file.
    const ModelWeights W_mem = generate_weights(c, 8, safetensors::DType::BF16);
    CHECK(arma::approx_equal(W_mem.E, W.E, "absdiff", 0.0));
    CHECK(arma::approx_equal(W_mem.layers.back().w_ffn_norm, W.layers.back().w_ffn_norm, "absdiff", 0.0));
    for_each_matrix_pair(F, fast::convert_weights(W_mem, c, fast::WeightType::BF16),
                         [&](const fast::PackedMatrix& x, const fast::PackedMatrix& y) {
                           CHECK(x.panels_bf16 == y.panels_bf16);
                         });
    // Thread-count invariance holds for BF16 weights too.
    const auto tokens = some_tokens(c, 23, 4);
    const arma::fmat a = fast::forward(F, c, tokens, 0, nullptr, odd_blocks(2), nullptr);
    const arma::fmat one = fast::forward(F, c, tokens, 0, nullptr, odd_blocks(1), nullptr);
    CHECK(std::memcmp(a.memptr(), one.memptr(), a.n_elem * sizeof(float)) == 0);
    const arma::fmat inc1 = fast::forward_incremental(F, c, tokens, 9, odd_blocks(1), nullptr);
    const arma::fmat inc3 = fast::forward_incremental(F, c, tokens, 9, odd_blocks(3), nullptr);
    CHECK(std::memcmp(inc1.memptr(), inc3.memptr(), inc1.n_elem * sizeof(float)) == 0);
  }
  MESSAGE(fmt::format("worst |fast - ref| / rms(ref) over all traced tensors (BF16 weights): {:.2e}",
                      worst_scaled_error));
}

TEST_CASE("fast::forward is bit-identical for 1, 2, 3 and 7 threads") {
  for (const Config& c : {preset("tiny-v3"), random_config(5)}) {
    const ModelWeights W = generate_weights(c, 11);
    const fast::ModelWeightsF F = fast::convert_weights(W, c);
    const auto tokens = some_tokens(c, 41, 3);
    for (const fast::Options& base : {fast::Options{}, odd_blocks(1)}) {
      RecordingTracer one;
      fast::Options o1 = base;
      o1.threads = 1;
      const arma::fmat want = fast::forward(F, c, tokens, 0, nullptr, o1, &one);
      for (int threads : {2, 3, 7}) {
        CAPTURE(c.name);
        CAPTURE(threads);
        fast::Options o = base;
        o.threads = threads;
        RecordingTracer many;
        const arma::fmat got = fast::forward(F, c, tokens, 0, nullptr, o, &many);
        CHECK(std::memcmp(got.memptr(), want.memptr(), want.n_elem * sizeof(float)) == 0);
        REQUIRE(many.entries().size() == one.entries().size());
        for (std::size_t i = 0; i < one.entries().size(); ++i) {
          CAPTURE(one.entries()[i].name);
          CHECK(many.entries()[i].data == one.entries()[i].data);
        }
        // Incremental decoding goes through the key-parallel path: the same guarantee holds.
        const arma::fmat inc1 = fast::forward_incremental(F, c, tokens, 30, o1, nullptr);
        const arma::fmat incn = fast::forward_incremental(F, c, tokens, 30, o, nullptr);
        CHECK(std::memcmp(inc1.memptr(), incn.memptr(), inc1.n_elem * sizeof(float)) == 0);
      }
    }
  }
}

TEST_CASE("fast prefill plus incremental decode agrees with one full forward and with the reference") {
  for (const Config& c : {preset("tiny-v3"), preset("tiny-v2-lite"), random_config(4)}) {
    CAPTURE(c.name);
    const ModelWeights W = generate_weights(c, 5);
    const fast::ModelWeightsF F = fast::convert_weights(W, c);
    const auto tokens = some_tokens(c, 24, 9);
    const arma::fmat full = fast::forward(F, c, tokens, 0, nullptr, odd_blocks(2), nullptr);
    const arma::fmat inc = fast::forward_incremental(F, c, tokens, 10, odd_blocks(2), nullptr);
    const arma::mat want = ref::forward(W, c, tokens, 0, nullptr, ref::ForwardOptions{}, nullptr);
    check_f32(arma::conv_to<arma::mat>::from(inc), arma::conv_to<arma::mat>::from(full),
              c.name + ": incremental vs full (fast)");
    check_f32(arma::conv_to<arma::mat>::from(inc), want, c.name + ": incremental (fast) vs full (reference)");
    // decode-from 0: no prefill, every token decoded from an empty cache (as the reference allows).
    const arma::fmat all_decoded = fast::forward_incremental(F, c, tokens, 0, odd_blocks(2), nullptr);
    check_f32(arma::conv_to<arma::mat>::from(all_decoded), want, c.name + ": decode-from 0 (fast) vs reference");
    CHECK_THROWS_WITH_AS(fast::forward_incremental(F, c, tokens, 25, odd_blocks(2), nullptr),
                         doctest::Contains("outside the 24 given tokens"), std::invalid_argument);
    // A chunked prefill at pos0 > 0 through the cache (flash path with an offset).
    fast::ModelCache cache = fast::make_cache(c);
    const std::vector<std::int64_t> first(tokens.begin(), tokens.begin() + 7),
        rest(tokens.begin() + 7, tokens.end());
    fast::forward(F, c, first, 0, &cache, odd_blocks(2), nullptr);
    const arma::fmat chunk = fast::forward(F, c, rest, 7, &cache, odd_blocks(2), nullptr);
    check_f32(arma::conv_to<arma::mat>::from(chunk), arma::mat(want.cols(7, want.n_cols - 1)),
              c.name + ": chunked prefill at pos0 = 7");
  }
}

TEST_CASE("fast::forward rejects bad input with a message") {
  const Config c = preset("tiny-v3");
  const fast::ModelWeightsF F = fast::convert_weights(generate_weights(c, 1), c);
  CHECK_THROWS_WITH_AS(fast::forward(F, c, {1, 128}, 0, nullptr, {}, nullptr),
                       doctest::Contains("outside the vocabulary"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(fast::forward(F, c, {1, 2}, 255, nullptr, {}, nullptr),
                       doctest::Contains("max_position_embeddings"), std::invalid_argument);
  fast::ModelCache cache = fast::make_cache(c);
  CHECK_THROWS_WITH_AS(fast::forward(F, c, {1, 2}, 3, &cache, {}, nullptr),
                       doctest::Contains("cache holds 0 tokens"), std::invalid_argument);
  fast::Options bad;
  bad.threads = 0;
  CHECK_THROWS_WITH_AS(fast::forward(F, c, {1, 2}, 0, nullptr, bad, nullptr),
                       doctest::Contains("threads"), std::invalid_argument);
}
