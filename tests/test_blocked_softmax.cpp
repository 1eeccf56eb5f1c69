// The blocked and online softmax-weighted sums of reference/deepseek/blocked_softmax.hpp (the algebra
// behind the fast path's attention): the worked example of golden/fast/blocked_softmax.json,
// computed independently by golden/fast/compute_goldens.py, and properties on random scores.
//
// Tolerances: the golden file's own (abs 1e-15, rel 1e-13: float64, a few exp and additions).
// Properties compare two float64 association orders of the same sum of ~40 positive terms:
// test::same_math_reordered (rel 1e-12, tests/support/tolerances.hpp).
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <random>
#include <string>
#include <vector>

#include "reference/deepseek/blocked_softmax.hpp"
#include "reference/io/golden_json.hpp"
#include "tests/support/check.hpp"
#include "tests/support/tolerances.hpp"

using namespace dsr1;
using namespace dsr1::ref;
using dsr1::test::check_close;
using dsr1::test::Tol;

namespace {

std::vector<SoftmaxBlock> blocks_of(const arma::vec& s, const arma::mat& C, arma::uword size) {
  std::vector<SoftmaxBlock> out;
  for (arma::uword j0 = 0; j0 < s.n_elem; j0 += size)
    out.push_back(block_softmax(s, C, j0, std::min<arma::uword>(s.n_elem, j0 + size)));
  return out;
}

SoftmaxBlock online_of(const arma::vec& s, const arma::mat& C, arma::uword size) {
  SoftmaxBlock state;
  for (arma::uword j0 = 0; j0 < s.n_elem; j0 += size)
    state = online_softmax_step(state, s, C, j0, std::min<arma::uword>(s.n_elem, j0 + size));
  return state;
}

// The worked example with scores `s_field`, checked against the golden fields with `prefix`.
void check_example(const GoldenFile& g, const std::string& s_field, const std::string& suffix) {
  const Tol tol{g.tol_abs(), g.tol_rel()};
  const arma::vec s = g.vec("inputs." + s_field);
  const arma::mat C = g.tokens("inputs.latents");  // [2, 6]: column j is c_j
  const auto B = static_cast<arma::uword>(g.number("parameters.block"));
  const std::string e = "expected.";

  check_close(softmax_weighted_sum(s, C), g.vec(e + "direct" + suffix + ".z"), tol, "direct z");
  const std::vector<SoftmaxBlock> blocks = blocks_of(s, C, B);
  REQUIRE(blocks.size() == 3);
  for (std::size_t b = 0; b < blocks.size(); ++b) {
    const std::string f = fmt::format("{}blocks{}.{}.", e, suffix, b);
    CAPTURE(f);
    if (std::isinf(g.number(f + "m")))
      CHECK(std::isinf(blocks[b].m));  // all masked: m_b = -inf
    else
      check_close(blocks[b].m, g.number(f + "m"), tol, f + "m");
    check_close(blocks[b].l, g.number(f + "l"), tol, f + "l");
    check_close(blocks[b].z, g.vec(f + "z"), tol, f + "z");
  }
  std::vector<double> w;
  check_close(merge_blocks(blocks, &w), g.vec(e + "merged" + suffix + ".z"), tol, "merged z");
  check_close(arma::vec(w), g.vec(e + "merged" + suffix + ".w"), tol, "merge weights w_b");

  SoftmaxBlock state;
  for (arma::uword k = 0; k < 3; ++k) {
    const std::string f = fmt::format("{}online{}.steps.{}.", e, suffix, k);
    double alpha = -1;
    state = online_softmax_step(state, s, C, k * B, (k + 1) * B, &alpha);
    check_close(alpha, g.number(f + "alpha"), tol, f + "alpha");
    check_close(state.m, g.number(f + "m"), tol, f + "m");
    check_close(state.l, g.number(f + "l"), tol, f + "l");
    check_close(state.z, g.vec(f + "z"), tol, f + "z");
  }
  check_close(arma::vec(state.z / state.l), g.vec(e + "online" + suffix + ".z"), tol, "online z");
}

}  // namespace

TEST_CASE("golden/fast/blocked_softmax.json: direct, merged blocks and online agree, by hand") {
  const GoldenFile g = GoldenFile::load("golden/fast/blocked_softmax.json");
  check_example(g, "scores", "");
  // Hand arithmetic of the file's check: the merge weights are (e^-1, e^-2, 1), and the merged
  // denominator is the direct one, sum_j exp(s_j - 4).
  const arma::vec s = g.vec("inputs.scores");
  const arma::mat C = g.tokens("inputs.latents");
  std::vector<double> w;
  merge_blocks(blocks_of(s, C, 2), &w);
  check_close(arma::vec(w), arma::vec{std::exp(-1.0), std::exp(-2.0), 1.0}, test::exact_vs_ref, "w by hand");
  CHECK(online_of(s, C, 2).l == doctest::Approx(arma::accu(arma::exp(s - 4.0))).epsilon(1e-15));
}

TEST_CASE("golden/fast/blocked_softmax.json: a block of masked keys gets weight 0") {
  const GoldenFile g = GoldenFile::load("golden/fast/blocked_softmax.json");
  check_example(g, "scores_masked", "_masked");
  // The masked result is the softmax over the visible keys 0..3 alone.
  const arma::vec s = g.vec("inputs.scores");
  const arma::mat C = g.tokens("inputs.latents");
  check_close(merge_blocks(blocks_of(g.vec("inputs.scores_masked"), C, 2)),
              softmax_weighted_sum(s.head(4), C.head_cols(4)), test::same_math_reordered,
              "masked = the first four keys alone");
}

TEST_CASE("merged blocks and the online walk equal the direct softmax for any block size") {
  std::mt19937 rng(7);
  std::normal_distribution<double> N(0.0, 3.0);
  const arma::uword n = 37, r = 3;
  arma::vec s(n);
  arma::mat C(r, n);
  for (auto& x : s) x = N(rng);
  for (auto& x : C) x = N(rng);
  const arma::vec want = softmax_weighted_sum(s, C);
  for (arma::uword size : {1u, 2u, 5u, 7u, 36u, 37u, 100u}) {
    CAPTURE(size);
    check_close(merge_blocks(blocks_of(s, C, size)), want, test::same_math_reordered, "merged");
    const SoftmaxBlock o = online_of(s, C, size);
    check_close(arma::vec(o.z / o.l), want, test::same_math_reordered, "online");
  }
  // Softmax ignores a common shift of the scores; with scores near 1000, exp(s) alone would
  // overflow, but every form subtracts a maximum first and stays finite.
  const arma::vec shifted = s + 1000.0;
  check_close(merge_blocks(blocks_of(shifted, C, 5)), want, test::same_math_reordered, "shifted, merged");
  const SoftmaxBlock o = online_of(shifted, C, 5);
  check_close(arma::vec(o.z / o.l), want, test::same_math_reordered, "shifted, online");
  // Masked keys (-inf) anywhere, including whole blocks, weigh nothing.
  arma::vec masked = s;
  arma::uvec visible(n, arma::fill::ones);
  for (arma::uword j : {0u, 5u, 6u, 7u, 8u, 9u, 30u}) masked(j) = -arma::datum::inf, visible(j) = 0;
  const arma::uvec keep = arma::find(visible);
  const arma::vec want_masked = softmax_weighted_sum(arma::vec(s(keep)), arma::mat(C.cols(keep)));
  check_close(merge_blocks(blocks_of(masked, C, 5)), want_masked, test::same_math_reordered, "masked, merged");
  const SoftmaxBlock om = online_of(masked, C, 5);
  check_close(arma::vec(om.z / om.l), want_masked, test::same_math_reordered, "masked, online");
}

TEST_CASE("the blocked softmax functions reject bad shapes and an all-masked row with a message") {
  const arma::vec s = {1.0, 2.0};
  CHECK_THROWS_WITH_AS(block_softmax(s, arma::mat(2, 3), 0, 2),
                       doctest::Contains("s has 2 scores but C has 3 columns"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(block_softmax(s, arma::mat(2, 2), 1, 3),
                       doctest::Contains("keys 1 .. 3 are not a run within 0 .. 2"), std::invalid_argument);
  const arma::vec none = {-arma::datum::inf, -arma::datum::inf};
  CHECK_THROWS_WITH_AS(softmax_weighted_sum(none, arma::mat(2, 2)), doctest::Contains("every key is masked"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(merge_blocks({block_softmax(none, arma::mat(2, 2), 0, 2)}),
                       doctest::Contains("every key is masked"), std::invalid_argument);
  CHECK_THROWS_AS(merge_blocks({}), std::invalid_argument);
}
