// Properties of the explainer's formulas that hold for any input, plus clear errors for bad
// golden files and for trace filters that match nothing.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "reference/explainer/aggregator.hpp"
#include "reference/explainer/attention.hpp"
#include "reference/io/golden_json.hpp"
#include "reference/deepseek/rmsnorm.hpp"
#include "reference/explainer/kv_cache.hpp"
#include "reference/explainer/router.hpp"
#include "reference/deepseek/softmax.hpp"
#include "reference/trace/trace_outputs.hpp"
#include "tests/support/check.hpp"

using dsr1::test::check_close;
using dsr1::test::exact_vs_ref;
using dsr1::test::same_math_reordered;
using dsr1::test::Tol;
namespace ref = dsr1::ref;

namespace {
// Deterministic O(1) data (no global RNG state): arma's generator seeded per call.
arma::mat data(arma::uword rows, arma::uword cols, int seed) {
  arma::arma_rng::set_seed(seed);
  return arma::randn<arma::mat>(rows, cols);
}
ref::MhaWeights random_mha(arma::uword D, arma::uword n_heads, int seed) {
  return {data(D, D, seed), data(D, D, seed + 1), data(D, D, seed + 2), data(D, D, seed + 3), n_heads};
}
}  // namespace

TEST_CASE("rmsnorm with eps = 0 is invariant to scaling its input") {
  const arma::mat x = data(8, 3, 1);
  const arma::vec w = arma::vec(data(8, 1, 2));
  const arma::mat y = ref::rmsnorm(x, w, 0.0);
  for (double c : {1e-3, 0.5, 3.0, 1e4})
    check_close(ref::rmsnorm(c * x, w, 0.0), y, exact_vs_ref, fmt::format("rmsnorm(c x), c={}", c));
  // With eps > 0 scaling changes the result exactly as the formula says: for c x the
  // denominator is sqrt(c^2 ms + eps) = c sqrt(ms + eps / c^2), i.e. eps is divided by c^2.
  const double eps = 1e-2, c = 10.0;
  check_close(ref::rmsnorm(c * x, w, eps), ref::rmsnorm(x, w, eps / (c * c)), exact_vs_ref,
              "rmsnorm(c x, eps) = rmsnorm(x, eps/c^2)");
  CHECK_THROWS_WITH_AS(ref::rmsnorm(x, arma::vec(7), 0.0), doctest::Contains("expected n=8"),
                       std::invalid_argument);
}

TEST_CASE("softmax sums to 1 and ignores a constant shift") {
  const arma::vec x = {3.4, 1.1, 2.2, -5.0, 0.0};
  const arma::vec p = ref::softmax(x);
  CHECK(std::fabs(arma::accu(p) - 1.0) <= 1e-15);
  for (double c : {-100.0, 1.0, 700.0})  // 700: exp(700+3.4) would overflow without the max shift
    check_close(arma::mat(ref::softmax(x + c)), arma::mat(p), exact_vs_ref, fmt::format("shift {}", c));
}

TEST_CASE("attention over identical keys averages the values") {
  // All keys equal -> all scores of a query equal -> uniform weights 1/T_k.
  const arma::uword d_k = 3, T = 4;
  const arma::mat q = data(d_k, 2, 3);
  const arma::mat k = arma::repmat(data(d_k, 1, 4), 1, T);
  const arma::mat v = data(5, T, 5);
  const arma::mat probs = ref::attention_probs(ref::attention_scores(q, k, ref::AttentionMask::bidirectional));
  check_close(probs, arma::mat(T, 2, arma::fill::value(1.0 / T)), exact_vs_ref, "uniform weights");
  const arma::mat o = ref::attention_output(probs, v);
  check_close(o, arma::repmat(arma::mean(v, 1), 1, 2), exact_vs_ref, "o = mean of values");
}

TEST_CASE("the causal mask hides the future: changing a later token leaves earlier outputs unchanged") {
  const arma::uword D = 6, T = 5;
  const ref::MhaWeights W = random_mha(D, 2, 10);
  arma::mat h = data(D, T, 20);
  const arma::mat u = ref::attention(h, W, ref::AttentionMask::causal, nullptr);
  h.col(3) += 5.0;  // change token 3
  const arma::mat u2 = ref::attention(h, W, ref::AttentionMask::causal, nullptr);
  check_close(u2.cols(0, 2), u.cols(0, 2), Tol{0, 0}, "tokens 0..2 (bitwise equal)");
  CHECK(arma::abs(u2.col(3) - u.col(3)).max() > 1e-3);  // the changed token itself does move
  // Bidirectional attention, by contrast, lets the change reach token 0.
  const arma::mat b = ref::attention(h, W, ref::AttentionMask::bidirectional, nullptr);
  h.col(3) -= 5.0;
  const arma::mat b0 = ref::attention(h, W, ref::AttentionMask::bidirectional, nullptr);
  CHECK(arma::abs(b.col(0) - b0.col(0)).max() > 1e-6);
}

TEST_CASE("KV-cache decoding one token at a time equals causal attention over the whole sequence") {
  const arma::uword D = 4, T = 6;
  const ref::MhaWeights W = random_mha(D, 2, 30);
  const arma::mat h = data(D, T, 40);
  const arma::mat full_o = ref::multi_head_attention(W.W_Q * h, W.W_K * h, W.W_V * h, 2,
                                                     ref::AttentionMask::causal, 0, nullptr);
  ref::SeedKvCache cache;
  for (arma::uword t = 0; t < T; ++t)
    check_close(arma::mat(ref::kv_cache_step(cache, h.col(t), W, nullptr)), arma::mat(full_o.col(t)),
                same_math_reordered, fmt::format("token {}", t));
  CHECK(cache.length() == T);
}

TEST_CASE("router with k = N returns the plain softmax") {
  const arma::mat r = data(5, 3, 50);
  check_close(ref::seed_router_gates(r, 5, nullptr), ref::softmax_columns(r), Tol{0, 0}, "g = softmax(r)");
}

TEST_CASE("router top-k breaks ties toward the lower expert index") {
  const std::vector<arma::uword> top = ref::seed_top_k(arma::vec{0.2, 0.4, 0.4, 0.0}, 2);
  CHECK(top == std::vector<arma::uword>{1, 2});
  CHECK(ref::seed_top_k(arma::vec{0.25, 0.25, 0.25, 0.25}, 3) == std::vector<arma::uword>{0, 1, 2});
  CHECK_THROWS_WITH_AS(ref::seed_router_gates(arma::mat(3, 1, arma::fill::zeros), 4, nullptr),
                       doctest::Contains("k=4"), std::invalid_argument);
}

TEST_CASE("aggregator with one-hot gates returns that expert's output") {
  const arma::uword D = 3, T = 2;
  const std::vector<arma::mat> outs = {data(D, T, 60), data(D, T, 61), data(D, T, 62)};
  for (arma::uword r = 0; r < 3; ++r) {
    arma::mat g(3, T, arma::fill::zeros);
    g.row(r).fill(1.0);
    check_close(ref::expert_aggregate(g, outs, D), outs[r], Tol{0, 0}, fmt::format("expert {}", r));
  }
  // An unchosen expert is never read, so it may be absent (never computed).
  std::vector<arma::mat> partial = {outs[0], arma::mat(), outs[2]};
  arma::mat g = {{0.7, 0.7}, {0.0, 0.0}, {0.3, 0.3}};
  check_close(ref::expert_aggregate(g, partial, D), 0.7 * outs[0] + 0.3 * outs[2], exact_vs_ref, "0.7, 0, 0.3");
}

TEST_CASE("malformed golden JSON gives a message naming the file and the field") {
  const std::string good_rest =
      R"("title": "t", "check": "c", "inputs": {}, "parameters": {}, "expected": {"y": [[1, 2], [3]]},
         "doc_printed": {}, "tolerance": {"abs": 0, "rel": 1e-12, "why": "w"})";
  CHECK_THROWS_WITH_AS(dsr1::GoldenFile::parse("{ \"section\": ", "golden/seed/broken.json"),
                       doctest::Contains("golden/seed/broken.json: not valid JSON"), std::runtime_error);
  CHECK_THROWS_WITH_AS(dsr1::GoldenFile::parse("{" + good_rest + "}", "x.json"),
                       doctest::Contains("x.json: field 'section': missing"), std::runtime_error);
  CHECK_THROWS_WITH_AS(dsr1::GoldenFile::parse(R"({"section": 1.1, )" + good_rest + "}", "x.json"),
                       doctest::Contains("field 'section': expected a string"), std::runtime_error);
  const auto g = dsr1::GoldenFile::parse(R"({"section": "1.1", )" + good_rest + "}", "x.json");
  CHECK_THROWS_WITH_AS(g.tokens("expected.y"),
                       doctest::Contains("x.json: field 'expected.y.1': row has 1 entries, but row 0 has 2"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(g.number("expected.z"), doctest::Contains("field 'expected.z': missing"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(g.number("expected.y.5"), doctest::Contains("index 5 out of range"),
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(dsr1::GoldenFile::load("golden/seed/no_such_file.json"),
                       doctest::Contains("no_such_file.json: cannot open"), std::runtime_error);
}

TEST_CASE("a trace filter that matches nothing gives a message naming the filter") {
  dsr1::PrintTracer tr({"*.no_such_tensor"}, {}, stdout);
  ref::attention(data(4, 2, 70), random_mha(4, 2, 71), ref::AttentionMask::causal, &tr);
  CHECK(tr.seen() > 0);
  CHECK_THROWS_WITH_AS(tr.check_filter_matched(), doctest::Contains("'*.no_such_tensor' matched none"),
                       std::runtime_error);
}
