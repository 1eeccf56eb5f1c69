// MLA: naive = absorbed, cached decode = full forward, the causal rule at pos0 > 0, q-LoRA off,
// the latent cache's contents, the P16 fault, and a hand-computed case (golden/mla/).
#include <doctest/doctest.h>
#include <fmt/format.h>

#include "reference/deepseek/config.hpp"
#include "reference/io/golden_json.hpp"
#include "reference/deepseek/kv_cache.hpp"
#include "reference/deepseek/loader.hpp"
#include "reference/deepseek/mla.hpp"
#include "reference/deepseek/rmsnorm.hpp"
#include "reference/deepseek/rope.hpp"
#include "tests/support/check.hpp"
#include "tests/support/mla_case.hpp"

using namespace dsr1;
using namespace dsr1::ref;
using dsr1::test::check_close;
using dsr1::test::exact_vs_ref;
using dsr1::test::same_math_reordered;

namespace {

MlaOptions form(AttnForm f) {
  MlaOptions o;
  o.form = f;
  return o;
}

// The config and weights of golden/mla/hand_case.json and kv_cache_decode.json.
Config golden_config(const GoldenFile& g) {
  Config c;
  c.name = g.path();
  c.hidden_size = static_cast<std::int64_t>(g.number("parameters.hidden_size"));
  c.num_attention_heads = static_cast<std::int64_t>(g.number("parameters.num_attention_heads"));
  c.qk_nope_head_dim = static_cast<std::int64_t>(g.number("parameters.qk_nope_head_dim"));
  c.qk_rope_head_dim = static_cast<std::int64_t>(g.number("parameters.qk_rope_head_dim"));
  c.v_head_dim = static_cast<std::int64_t>(g.number("parameters.v_head_dim"));
  c.kv_lora_rank = static_cast<std::int64_t>(g.number("parameters.kv_lora_rank"));
  c.q_lora_rank = static_cast<std::int64_t>(g.number("parameters.q_lora_rank"));
  c.rms_norm_eps = g.number("parameters.rms_norm_eps");
  c.rope_theta = g.number("parameters.rope_theta");
  c.rope_scaling.type = g.text("parameters.rope_scaling.type");
  c.rope_scaling.factor = g.number("parameters.rope_scaling.factor");
  c.rope_scaling.original_max_position_embeddings = static_cast<std::int64_t>(
      g.number("parameters.rope_scaling.original_max_position_embeddings"));
  c.rope_scaling.beta_fast = g.number("parameters.rope_scaling.beta_fast");
  c.rope_scaling.beta_slow = g.number("parameters.rope_scaling.beta_slow");
  c.rope_scaling.mscale = g.number("parameters.rope_scaling.mscale");
  c.rope_scaling.mscale_all_dim = g.number("parameters.rope_scaling.mscale_all_dim");
  return c;
}

MlaWeights golden_weights(const GoldenFile& g) {
  MlaWeights W;
  W.W_UQ = g.matrix("parameters.W_UQ");
  W.W_QR = g.matrix("parameters.W_QR");
  W.W_DKV = g.matrix("parameters.W_DKV");
  W.w_kv = g.vec("parameters.w_kv");
  W.W_KR = g.matrix("parameters.W_KR");
  W.W_UK = g.matrix("parameters.W_UK");
  W.W_UV = g.matrix("parameters.W_UV");
  W.W_O = g.matrix("parameters.W_O");
  return W;
}

// Compares two cubes element by element; masked entries must be -inf in both.
void check_cube(const arma::cube& got, const arma::cube& want, dsr1::test::Tol tol,
                const std::string& what) {
  REQUIRE(arma::size(got) == arma::size(want));
  for (arma::uword i = 0; i < got.n_slices; ++i) {
    arma::mat g = got.slice(i), w = want.slice(i);
    g.replace(-arma::datum::inf, -1e300);
    w.replace(-arma::datum::inf, -1e300);
    check_close(g, w, tol, fmt::format("{} head {}", what, i));
  }
}

}  // namespace

TEST_CASE("naive and absorbed MLA agree to 1e-12 at positions well past 0") {
  for (std::int64_t q_lora_rank : {9, 0}) {
    const Config c = test::small_mla_config(q_lora_rank);
    const MlaWeights W = test::random_mla_weights(c, 11);
    const arma::mat x = test::random_tokens(c, 6, 12);
    for (std::int64_t pos0 : {0, 37, 5000}) {
      CAPTURE(q_lora_rank);
      CAPTURE(pos0);
      const arma::mat u_naive = mla_forward(x, W, c, pos0, nullptr, form(AttnForm::Naive), nullptr);
      const arma::mat u_absorbed =
          mla_forward(x, W, c, pos0, nullptr, form(AttnForm::Absorbed), nullptr);
      check_close(u_absorbed, u_naive, same_math_reordered, "u absorbed vs naive");
    }
  }
}

TEST_CASE("naive and absorbed MLA record the same scores, probs and o") {
  const Config c = test::small_mla_config();
  const MlaWeights W = test::random_mla_weights(c, 21);
  const arma::mat x = test::random_tokens(c, 4, 22);
  RecordingTracer tr_naive, tr_absorbed;
  mla_forward(x, W, c, 37, nullptr, form(AttnForm::Naive), &tr_naive);
  mla_forward(x, W, c, 37, nullptr, form(AttnForm::Absorbed), &tr_absorbed);
  for (const char* name : {"attn.scores", "attn.probs"}) {
    const auto& a = tr_naive.get(name);
    const auto& b = tr_absorbed.get(name);
    REQUIRE(a.shape == b.shape);
    CHECK(a.shape == std::vector<std::uint64_t>{3, 4, 4});  // [n_h, T, T_k]
    // Masked entries are -inf in both; compare the finite ones.
    for (std::size_t k = 0; k < a.data.size(); ++k) {
      if (std::isinf(a.data[k])) {
        CHECK(std::isinf(b.data[k]));
        continue;
      }
      CHECK(std::fabs(a.data[k] - b.data[k]) <= 1e-14 + 1e-12 * std::fabs(a.data[k]));
    }
  }
  check_close(tr_absorbed.get_mat("attn.o"), tr_naive.get_mat("attn.o"), same_math_reordered,
              "attn.o");
  CHECK(tr_naive.has("attn.k_nope"));
  CHECK(tr_naive.has("attn.v"));
  CHECK_FALSE(tr_naive.has("attn.q_tilde"));
  CHECK(tr_absorbed.has("attn.q_tilde"));
  CHECK(tr_absorbed.has("attn.z"));
  CHECK_FALSE(tr_absorbed.has("attn.k_nope"));
  CHECK(tr_absorbed.get("attn.q_tilde").shape == std::vector<std::uint64_t>{3, 4, 7});
  CHECK(tr_absorbed.get("attn.z").shape == std::vector<std::uint64_t>{3, 4, 7});
}

TEST_CASE("every MLA trace name is recorded with its documented disk shape") {
  const Config c = test::small_mla_config();
  const MlaWeights W = test::random_mla_weights(c, 31);
  const arma::mat x = test::random_tokens(c, 2, 32);
  RecordingTracer tr;
  LatentKvCache cache;
  mla_forward(x, W, c, 0, &cache, form(AttnForm::Naive), nullptr);  // two cached tokens
  const arma::mat x_new = test::random_tokens(c, 3, 33);
  {
    TraceScope s(&tr, "layers.4");
    mla_forward(x_new, W, c, 2, &cache, form(AttnForm::Naive), &tr);
  }
  using S = std::vector<std::uint64_t>;
  const std::vector<std::pair<std::string, S>> want = {
      {"layers.4.attn.c_q", S{3, 9}},         {"layers.4.attn.c_q_hat", S{3, 9}},
      {"layers.4.attn.q_nope", S{3, 15}},     {"layers.4.attn.q_rope_pre", S{3, 24}},
      {"layers.4.attn.q_rope", S{3, 24}},     {"layers.4.attn.c_kv", S{3, 7}},
      {"layers.4.attn.c_kv_hat", S{3, 7}},    {"layers.4.attn.k_rope_pre", S{3, 8}},
      {"layers.4.attn.k_rope", S{3, 8}},      {"layers.4.attn.k_nope", S{5, 15}},
      {"layers.4.attn.v", S{5, 18}},          {"layers.4.attn.scores", S{3, 3, 5}},
      {"layers.4.attn.probs", S{3, 3, 5}},    {"layers.4.attn.o", S{3, 18}},
      {"layers.4.attn.u", S{3, 24}}};
  REQUIRE(tr.entries().size() == want.size());
  for (std::size_t k = 0; k < want.size(); ++k) {
    CAPTURE(k);
    CHECK(tr.entries()[k].name == want[k].first);  // forward order
    CHECK(tr.entries()[k].shape == want[k].second);
  }
}

TEST_CASE("decoding one token at a time through the latent cache equals the full forward") {
  for (AttnForm f : {AttnForm::Naive, AttnForm::Absorbed}) {
    CAPTURE(attn_form_name(f));
    const Config c = test::small_mla_config();
    const MlaWeights W = test::random_mla_weights(c, 41);
    const arma::uword T = 7;
    const arma::mat x = test::random_tokens(c, T, 42);
    const arma::mat u_full = mla_forward(x, W, c, 0, nullptr, form(f), nullptr);
    LatentKvCache cache;
    arma::mat u_step(c.hidden_size, T);
    for (arma::uword t = 0; t < T; ++t) {
      u_step.col(t) = mla_forward(x.col(t), W, c, static_cast<std::int64_t>(t), &cache, form(f),
                                  nullptr);
      CHECK(cache.length() == static_cast<std::int64_t>(t + 1));
    }
    check_close(u_step, u_full, same_math_reordered, "u one token at a time vs full");
  }
}

TEST_CASE("chunked prefill through the cache (chunks starting at p > 0) equals the full forward") {
  const Config c = test::small_mla_config(0);  // also covers the no-q-LoRA path
  const MlaWeights W = test::random_mla_weights(c, 51);
  const arma::uword T = 9;
  const arma::mat x = test::random_tokens(c, T, 52);
  const arma::mat u_full = mla_forward(x, W, c, 0, nullptr, form(AttnForm::Naive), nullptr);
  for (AttnForm f : {AttnForm::Naive, AttnForm::Absorbed}) {
    CAPTURE(attn_form_name(f));
    LatentKvCache cache;
    arma::mat u(c.hidden_size, T);
    // Chunks [0,4), [4,5), [5,9): the later ones start at p = 4 and 5 and need the general
    // causal rule (a T x T upper-triangular mask would let token 5 see token 6 wrongly, or
    // hide cached tokens).
    const std::vector<std::pair<arma::uword, arma::uword>> chunks = {{0, 4}, {4, 5}, {5, 9}};
    for (const auto& [a, b] : chunks)
      u.cols(a, b - 1) = mla_forward(x.cols(a, b - 1), W, c, static_cast<std::int64_t>(a), &cache,
                                     form(f), nullptr);
    check_close(u, u_full, same_math_reordered, "u chunked vs full");
  }
}

TEST_CASE("the cache holds exactly RMSNorm(c_kv) and the rotated k_rope of every token") {
  const Config c = test::small_mla_config();
  const MlaWeights W = test::random_mla_weights(c, 61);
  const arma::mat x = test::random_tokens(c, 5, 62);
  LatentKvCache cache;
  RecordingTracer tr;
  mla_forward(x, W, c, 0, &cache, form(AttnForm::Absorbed), &tr);
  CHECK(cache.length() == 5);
  CHECK(cache.elements_per_token() == c.kv_lora_rank + c.qk_rope_head_dim);
  // Recomputed independently of mla_forward: RMSNorm of W_DKV x, and RoPE of W_KR x.
  check_close(cache.c_kv_hat, rmsnorm(W.W_DKV * x, W.w_kv, c.rms_norm_eps), exact_vs_ref,
              "cache.c_kv_hat");
  check_close(cache.k_rope, rope(W.W_KR * x, yarn_theta_prime(c), 0, RopeLayout::Interleaved),
              exact_vs_ref, "cache.k_rope");
  check_close(cache.c_kv_hat, tr.get_mat("attn.c_kv_hat"), exact_vs_ref, "trace c_kv_hat");
}

TEST_CASE("the causal rule at pos0 > 0: a query never sees a later key, and sees every earlier one") {
  const Config c = test::small_mla_config();
  const MlaWeights W = test::random_mla_weights(c, 71);
  const arma::mat x = test::random_tokens(c, 5, 72);
  LatentKvCache cache;
  mla_forward(x.cols(0, 1), W, c, 0, &cache, form(AttnForm::Naive), nullptr);
  RecordingTracer tr;
  mla_forward(x.cols(2, 4), W, c, 2, &cache, form(AttnForm::Naive), &tr);
  const auto& probs = tr.get("attn.probs");  // [n_h, T=3, T_k=5], row-major
  REQUIRE(probs.shape == std::vector<std::uint64_t>{3, 3, 5});
  for (std::uint64_t i = 0; i < 3; ++i)
    for (std::uint64_t t = 0; t < 3; ++t) {
      double sum = 0;
      for (std::uint64_t j = 0; j < 5; ++j) {
        const double p = probs.data[(i * 3 + t) * 5 + j];
        sum += p;
        CAPTURE(i);
        CAPTURE(t);
        CAPTURE(j);
        if (j <= 2 + t)
          CHECK(p > 0.0);  // key position j <= query position 2 + t
        else
          CHECK(p == 0.0);
      }
      CHECK(std::fabs(sum - 1.0) < 1e-15);
    }
  // Changing a token after position 2 cannot change the output at position 2.
  arma::mat x2 = x;
  x2.col(4) += 1.0;
  LatentKvCache c1, c2;
  const arma::mat u1 = mla_forward(x.cols(1, 4), W, c, 1, nullptr, form(AttnForm::Naive), nullptr);
  const arma::mat u2 = mla_forward(x2.cols(1, 4), W, c, 1, nullptr, form(AttnForm::Naive), nullptr);
  check_close(arma::mat(u2.cols(0, 2)), arma::mat(u1.cols(0, 2)), exact_vs_ref, "u before change");
  CHECK(arma::abs(u2.col(3) - u1.col(3)).max() > 1e-3);
}

TEST_CASE("without a cache, tokens at pos0 attend only among themselves at their own positions") {
  // mla_forward(x, pos0, no cache) is attention over the T tokens placed at pos0.. : shifting
  // every position by the same amount changes only the rotation, and q·k after RoPE depends
  // on the position difference only, so the output is the same at pos0 = 0 and pos0 = 70
  // when cos/sin are not scaled.
  const Config c = test::small_mla_config();
  const MlaWeights W = test::random_mla_weights(c, 81);
  const arma::mat x = test::random_tokens(c, 4, 82);
  const arma::mat u0 = mla_forward(x, W, c, 0, nullptr, form(AttnForm::Naive), nullptr);
  const arma::mat u70 = mla_forward(x, W, c, 70, nullptr, form(AttnForm::Naive), nullptr);
  check_close(u70, u0, same_math_reordered, "u at pos0 70 vs 0");
}

TEST_CASE("mla_forward rejects a cache that does not end at pos0 and misshapen weights") {
  const Config c = test::small_mla_config();
  MlaWeights W = test::random_mla_weights(c, 91);
  const arma::mat x = test::random_tokens(c, 2, 92);
  LatentKvCache cache;
  CHECK_THROWS_WITH_AS(mla_forward(x, W, c, 3, &cache, {}, nullptr),
                       doctest::Contains("the KV cache holds 0 tokens but pos0 = 3"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(mla_forward(arma::mat(5, 2, arma::fill::ones), W, c, 0, nullptr, {}, nullptr),
                       doctest::Contains("x is [5 x 2], expected [d=24 x T]"),
                       std::invalid_argument);
  W.W_UK = arma::mat(15, 8, arma::fill::zeros);
  CHECK_THROWS_WITH_AS(mla_forward(x, W, c, 0, nullptr, {}, nullptr),
                       doctest::Contains("W_UK is [15 x 8], expected [n_h*d_nope x r_kv = 15 x 7]"),
                       std::invalid_argument);
  CHECK_THROWS_AS(mla_forward(x, W, c, -1, nullptr, {}, nullptr), std::invalid_argument);
}

TEST_CASE("conformance fault P16 (un-normalised latent cached) changes the output") {
  const Config c = test::small_mla_config();
  const MlaWeights W = test::random_mla_weights(c, 101);
  const arma::mat x = test::random_tokens(c, 3, 102);
  LatentKvCache good, bad;
  MlaOptions faulty;
  faulty.faults.cache_unnormalized_latent = true;
  const arma::mat u_good = mla_forward(x, W, c, 0, &good, {}, nullptr);
  const arma::mat u_bad = mla_forward(x, W, c, 0, &bad, faulty, nullptr);
  check_close(bad.c_kv_hat, W.W_DKV * x, exact_vs_ref, "faulty cache holds c_kv");
  CHECK(arma::abs(u_bad - u_good).max() > 1e-3);
}

TEST_CASE("softmax-scale faults change MLA's output at positions past 0") {
  const Config c = test::small_mla_config();
  const MlaWeights W = test::random_mla_weights(c, 111);
  const arma::mat x = test::random_tokens(c, 3, 112);
  const arma::mat u = mla_forward(x, W, c, 37, nullptr, {}, nullptr);
  MlaOptions no_mscale, not_squared;
  no_mscale.faults.no_mscale = true;
  not_squared.faults.mscale_not_squared = true;
  CHECK(arma::abs(mla_forward(x, W, c, 37, nullptr, no_mscale, nullptr) - u).max() > 1e-4);
  CHECK(arma::abs(mla_forward(x, W, c, 37, nullptr, not_squared, nullptr) - u).max() > 1e-4);
}

TEST_CASE("golden/mla/hand_case.json: every step of both forms matches the hand-sized case") {
  const GoldenFile g = GoldenFile::load("golden/mla/hand_case.json");
  const dsr1::test::Tol tol{g.tol_abs(), g.tol_rel()};
  const Config c = golden_config(g);
  const MlaWeights W = golden_weights(g);
  const arma::mat x = g.tokens("inputs.x");
  const auto pos0 = static_cast<std::int64_t>(g.number("inputs.pos0"));
  check_close(softmax_scale(c), g.number("expected.s_eff"), tol, "s_eff");
  // s_eff by hand: (d_nope + d_rope)^(-1/2) = 1/2, times (0.1 ln 40 + 1)^2.
  const double m = 0.1 * std::log(40.0) + 1.0;
  check_close(softmax_scale(c), 0.5 * m * m, exact_vs_ref, "s_eff by hand");
  for (AttnForm f : {AttnForm::Naive, AttnForm::Absorbed}) {
    CAPTURE(attn_form_name(f));
    RecordingTracer tr;
    const arma::mat u = mla_forward(x, W, c, pos0, nullptr, form(f), &tr);
    for (const char* step : {"q_nope", "q_rope_pre", "q_rope", "c_kv", "c_kv_hat", "k_rope_pre",
                             "k_rope", "o", "u"})
      check_close(tr.get_mat(std::string("attn.") + step), g.tokens(std::string("expected.") + step),
                  tol, step);
    if (f == AttnForm::Naive) {
      check_close(tr.get_mat("attn.k_nope"), g.tokens("expected.k_nope"), tol, "k_nope");
      check_close(tr.get_mat("attn.v"), g.tokens("expected.v"), tol, "v");
    }
    check_close(u, g.tokens("expected.u"), tol, "u");
    // The traced cubes, rebuilt as [T_k, T, n_h] from their row-major [n_h, T, T_k] records.
    for (const char* name : {"scores", "probs"}) {
      const auto& e = tr.get(std::string("attn.") + name);
      arma::cube got(e.shape[2], e.shape[1], e.shape[0]);
      std::copy(e.data.begin(), e.data.end(), got.begin());
      check_cube(got, g.cube(std::string("expected.") + name), tol, name);
    }
  }
  // Score(0, 0) by hand: the q and k rotations by the same angle cancel, leaving
  // s_eff (q_nope·k_nope + q_rope_pre·k_rope_pre) = s_eff (1 * 1/rms + 0) with rms = sqrt(1 + eps).
  const arma::cube scores = g.cube("expected.scores");
  check_close(scores(0, 0, 0), 0.5 * m * m / std::sqrt(1.0 + 1e-6), exact_vs_ref, "score(0,0) by hand");
  CHECK(std::isinf(scores(1, 0, 0)));  // key at position 4 is after the query at 3
}

TEST_CASE("golden/mla/kv_cache_decode.json: the cache grows token by token and decode = full") {
  const GoldenFile g = GoldenFile::load("golden/mla/kv_cache_decode.json");
  const dsr1::test::Tol tol{g.tol_abs(), g.tol_rel()};
  const Config c = golden_config(g);
  const MlaWeights W = golden_weights(g);
  const arma::mat x = g.tokens("inputs.x");
  CHECK(latent_cache_elements(c) == static_cast<std::int64_t>(g.number("expected.elements_per_token")));
  CHECK(naive_cache_elements(c) ==
        static_cast<std::int64_t>(g.number("expected.naive_elements_per_token")));
  for (AttnForm f : {AttnForm::Naive, AttnForm::Absorbed}) {
    CAPTURE(attn_form_name(f));
    LatentKvCache cache;
    for (arma::uword t = 0; t < x.n_cols; ++t) {
      const std::string step = fmt::format("expected.steps.{}", t);
      const arma::mat u = mla_forward(x.col(t), W, c, static_cast<std::int64_t>(t), &cache, form(f),
                                      nullptr);
      CHECK(cache.length() == static_cast<std::int64_t>(t + 1));
      check_close(cache.c_kv_hat, g.tokens(step + ".cache_c_kv_hat"), tol, "cache c_kv_hat");
      check_close(cache.k_rope, g.tokens(step + ".cache_k_rope"), tol, "cache k_rope");
      check_close(u, g.tokens(step + ".u"), tol, "u decoded");
      check_close(u, arma::mat(g.tokens("expected.full_u").col(t)), tol, "u decoded vs full");
    }
  }
  const arma::mat u_full = mla_forward(x, W, c, 0, nullptr, form(AttnForm::Naive), nullptr);
  check_close(u_full, g.tokens("expected.full_u"), tol, "full forward");
}

TEST_CASE("golden/mla/v3_cache_bytes.json: cache elements per token for the V3 preset") {
  const GoldenFile g = GoldenFile::load("golden/mla/v3_cache_bytes.json");
  const Config c = dsr1::preset("deepseek-v3");
  const auto n = [&](const char* f) { return static_cast<std::int64_t>(g.number(f)); };
  CHECK(latent_cache_elements(c) == n("expected.latent_elements_per_token_per_layer"));
  CHECK(naive_cache_elements(c) == n("expected.naive_elements_per_token_per_layer"));
  CHECK(mha_cache_elements(c) == n("expected.mha_elements_per_token_per_layer"));
  CHECK(latent_cache_elements(c) * c.num_hidden_layers * 2 == n("expected.latent_bytes_per_token"));
  CHECK(latent_cache_elements(c) * c.num_hidden_layers * 2 == n("doc_printed.latent_bytes_per_token"));
  CHECK(naive_cache_elements(c) * c.num_hidden_layers * 2 == n("doc_printed.naive_bytes_per_token"));
  CHECK(latent_cache_elements(c) * c.num_hidden_layers * 2 * n("inputs.context") ==
        n("doc_printed.latent_bytes_at_context"));
}

TEST_CASE("naive = absorbed and decode = full on generated tiny-v3 and tiny-v2-lite weights") {
  for (const char* name : {"tiny-v3", "tiny-v2-lite", "tiny-yarn"}) {
    CAPTURE(name);
    const Config c = dsr1::preset(name);
    const ModelWeights w = dsr1::generate_weights(c, 2024);
    const MlaWeights& W = w.layers.at(0).attn;
    arma::arma_rng::set_seed(3);
    const arma::mat x = arma::randn<arma::mat>(c.hidden_size, 5);
    const std::int64_t pos0 = c.rope_scaling.original_max_position_embeddings + 3;  // past L0
    const arma::mat u_naive = mla_forward(x, W, c, pos0, nullptr, form(AttnForm::Naive), nullptr);
    check_close(mla_forward(x, W, c, pos0, nullptr, form(AttnForm::Absorbed), nullptr), u_naive,
                same_math_reordered, "absorbed vs naive");
    LatentKvCache cache;
    const arma::mat u_full = mla_forward(x, W, c, 0, nullptr, form(AttnForm::Absorbed), nullptr);
    arma::mat u_step(c.hidden_size, 5);
    for (arma::uword t = 0; t < 5; ++t)
      u_step.col(t) = mla_forward(x.col(t), W, c, static_cast<std::int64_t>(t), &cache,
                                  form(AttnForm::Absorbed), nullptr);
    check_close(u_step, u_full, same_math_reordered, "decode vs full");
  }
}
