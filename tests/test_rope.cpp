// RoPE and YaRN: frequencies against closed forms and the spec's tables (golden/rope/), the
// softmax scale, norm preservation, relative-position dependence, the two pair layouts.
#include <doctest/doctest.h>

#include <cmath>
#include <numbers>

#include "reference/deepseek/config.hpp"
#include "reference/io/golden_json.hpp"
#include "reference/deepseek/rope.hpp"
#include "tests/support/check.hpp"

using namespace dsr1;
using namespace dsr1::ref;
using dsr1::test::check_close;
using dsr1::test::exact_vs_ref;
using dsr1::test::Tol;

namespace {

// The MLA/RoPE fields of DeepSeek-V3/R1 (spec §1.2), written out here rather than taken from
// the preset so that this test checks rope.cpp against the spec, not against config.cpp.
Config v3_rope_config() {
  Config c;
  c.name = "v3-rope-fields";
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.rope_theta = 10000.0;
  c.rope_scaling.type = "yarn";
  c.rope_scaling.factor = 40.0;
  c.rope_scaling.original_max_position_embeddings = 4096;
  c.rope_scaling.beta_fast = 32.0;
  c.rope_scaling.beta_slow = 1.0;
  c.rope_scaling.mscale = 1.0;
  c.rope_scaling.mscale_all_dim = 1.0;
  return c;
}

Config v2_rope_config() {
  Config c = v3_rope_config();
  c.name = "v2-rope-fields";
  c.rope_scaling.mscale = 0.707;
  c.rope_scaling.mscale_all_dim = 0.707;
  return c;
}

Config plain_config(std::int64_t d_rope) {
  Config c = v3_rope_config();
  c.name = "plain-rope";
  c.qk_rope_head_dim = d_rope;
  c.rope_scaling.type = "none";
  return c;
}

// The printed tables of the spec carry 7 to 10 significant digits: compare at half a unit in
// the last printed digit.
void check_printed(double got, double printed, int sig_digits, const std::string& what) {
  const double half_ulp = 0.5 * std::pow(10.0, -(sig_digits - 1)) * std::fabs(printed);
  INFO(what, ": got ", got, ", printed ", printed);
  CHECK(std::fabs(got - printed) <= half_ulp);
}

}  // namespace

TEST_CASE("rope_theta is base^(-2i/d_rope) for the V3 dimensions") {
  const arma::vec theta = rope_theta(v3_rope_config());
  REQUIRE(theta.n_elem == 32);
  arma::vec want(32);
  for (arma::uword i = 0; i < 32; ++i) want(i) = std::exp(-(2.0 * i / 64.0) * std::log(10000.0));
  check_close(theta, want, exact_vs_ref, "theta");
  CHECK(theta(0) == 1.0);
}

TEST_CASE("YaRN theta' for V3 matches the closed form and the spec 4.6 table") {
  const Config c = v3_rope_config();
  const YarnRange range = yarn_range(c);
  CHECK(range.low == 10.0);
  CHECK(range.high == 23.0);
  const arma::vec theta = rope_theta(c);
  const arma::vec theta_prime = yarn_theta_prime(c);
  // Closed form with low = 10, high = 23: keep 1 up to pair 10, 0 from pair 23, linear between.
  arma::vec want(32);
  for (arma::uword i = 0; i < 32; ++i) {
    const double ramp = i <= 10 ? 0.0 : (i >= 23 ? 1.0 : (i - 10.0) / 13.0);
    want(i) = theta(i) * ((1.0 - ramp) + ramp / 40.0);
  }
  check_close(theta_prime, want, exact_vs_ref, "theta_prime closed form");
  check_printed(theta_prime(10), 5.623413252e-02, 10, "theta'_10");
  check_printed(theta_prime(11), 3.900692657e-02, 10, "theta'_11");
  check_printed(theta_prime(12), 2.687936011e-02, 10, "theta'_12");
  check_printed(theta_prime(16), 5.500000000e-03, 10, "theta'_16");
  check_printed(theta_prime(22), 1.778279410e-04, 10, "theta'_22");
  check_printed(theta_prime(23), 3.333803580e-05, 10, "theta'_23");
  check_printed(theta_prime(31), 3.333803580e-06, 10, "theta'_31");
}

TEST_CASE("theta' equals theta when rope_scaling is not yarn") {
  const Config c = plain_config(64);
  check_close(yarn_theta_prime(c), rope_theta(c), exact_vs_ref, "theta_prime without yarn");
}

TEST_CASE("golden/rope/v3_yarn.json: theta, theta', mscale and s_eff from the Python closed forms") {
  const GoldenFile g = GoldenFile::load("golden/rope/v3_yarn.json");
  const Tol tol{g.tol_abs(), g.tol_rel()};
  const Config c = v3_rope_config();
  check_close(rope_theta(c), g.vec("expected.theta"), tol, "theta");
  check_close(yarn_theta_prime(c), g.vec("expected.theta_prime"), tol, "theta_prime");
  CHECK(yarn_range(c).low == g.number("expected.low"));
  CHECK(yarn_range(c).high == g.number("expected.high"));
  check_close(yarn_mscale(40.0, 1.0), g.number("expected.mscale_v3"), tol, "mscale V3");
  check_close(yarn_mscale(40.0, 0.707), g.number("expected.mscale_v2"), tol, "mscale V2");
  check_close(softmax_scale(c), g.number("expected.s_eff_v3"), tol, "s_eff V3");
  check_close(softmax_scale(v2_rope_config()), g.number("expected.s_eff_v2"), tol, "s_eff V2");
  check_close(softmax_scale(plain_config(64)), g.number("expected.s_eff_plain"), tol, "s_eff plain");
  // The rotation of unit pairs at position 5000: angle 5000 θ'_i is rounded to ~5000 ulp(1),
  // about 1e-12 absolute in the angle and hence in cos/sin, in both programs independently.
  const Tol angle_tol{2e-12, 0.0};
  const arma::mat x = g.tokens("inputs.x");
  const auto pos = static_cast<std::int64_t>(g.number("inputs.position"));
  check_close(rope(x, yarn_theta_prime(c), pos, RopeLayout::Interleaved), g.tokens("expected.rotated"),
              angle_tol, "unit pairs rotated at 5000");
}

TEST_CASE("yarn_mscale and s_eff reproduce the spec 4.5 table") {
  check_printed(yarn_mscale(40.0, 1.0), 1.368888, 7, "mscale V3");
  check_printed(yarn_mscale(40.0, 0.707), 1.260804, 7, "mscale V2");
  check_printed(std::pow(yarn_mscale(40.0, 1.0), 2), 1.873854, 7, "mscale^2 V3");
  check_printed(std::pow(yarn_mscale(40.0, 0.707), 2), 1.589626, 7, "mscale^2 V2");
  check_printed(softmax_scale(v3_rope_config()), 0.13523378, 8, "s_eff V3");
  check_printed(softmax_scale(v2_rope_config()), 0.11472139, 8, "s_eff V2");
  check_printed(softmax_scale(plain_config(64)), 0.07216878, 7, "s_eff plain");
  // Closed form, independent of the printed digits.
  const double m = 0.1 * std::log(40.0) + 1.0;
  check_close(softmax_scale(v3_rope_config()), m * m / std::sqrt(192.0), exact_vs_ref, "s_eff V3");
  CHECK(yarn_mscale(1.0, 1.0) == 1.0);
  CHECK(yarn_mscale(0.5, 0.707) == 1.0);
}

TEST_CASE("softmax_scale with the P2 faults differs from the correct scale") {
  const Config c = v3_rope_config();
  const double base = 1.0 / std::sqrt(192.0), m = yarn_mscale(40.0, 1.0);
  Faults no_mscale, not_squared;
  no_mscale.no_mscale = true;
  not_squared.mscale_not_squared = true;
  check_close(softmax_scale(c, no_mscale), base, exact_vs_ref, "no_mscale");
  check_close(softmax_scale(c, not_squared), base * m, exact_vs_ref, "mscale_not_squared");
  CHECK(softmax_scale(c, no_mscale) < softmax_scale(c, not_squared));
  CHECK(softmax_scale(c, not_squared) < softmax_scale(c));
}

TEST_CASE("the cos/sin factor is 1 when mscale equals mscale_all_dim and HF's ratio otherwise") {
  CHECK(rope_cos_sin_scale(v3_rope_config()) == 1.0);
  CHECK(rope_cos_sin_scale(v2_rope_config()) == 1.0);
  CHECK(rope_cos_sin_scale(plain_config(64)) == 1.0);
  Config c = v3_rope_config();
  c.rope_scaling.mscale_all_dim = 0.707;
  check_close(rope_cos_sin_scale(c), (0.1 * std::log(40.0) + 1) / (0.0707 * std::log(40.0) + 1),
              exact_vs_ref, "ratio");
}

TEST_CASE("RoPE preserves the norm of every pair, at positions up to 163839") {
  const Config c = v3_rope_config();
  const arma::vec theta_prime = yarn_theta_prime(c);
  arma::arma_rng::set_seed(5);
  const arma::mat x = arma::randn<arma::mat>(3 * 64, 4);  // three heads, four tokens
  for (std::int64_t pos0 : {0, 37, 5000, 163836}) {
    CAPTURE(pos0);
    for (RopeLayout layout : {RopeLayout::Interleaved, RopeLayout::HalfSplit}) {
      const arma::mat y = rope(x, theta_prime, pos0, layout);
      arma::mat nx(1, 4), ny(1, 4);
      for (arma::uword t = 0; t < 4; ++t) {
        nx(0, t) = arma::norm(x.col(t));
        ny(0, t) = arma::norm(y.col(t));
      }
      check_close(ny, nx, exact_vs_ref, "column norms");
    }
  }
}

TEST_CASE("q·k after RoPE depends only on the relative position") {
  const Config c = v3_rope_config();
  const arma::vec theta_prime = yarn_theta_prime(c);
  arma::arma_rng::set_seed(6);
  const arma::vec q = arma::randn<arma::vec>(64), k = arma::randn<arma::vec>(64);
  for (std::int64_t delta : {0, 1, 17}) {
    CAPTURE(delta);
    const double at0 = arma::dot(rope(q, theta_prime, delta, RopeLayout::Interleaved),
                                 rope(k, theta_prime, 0, RopeLayout::Interleaved));
    for (std::int64_t p : {37, 5000, 100000}) {
      CAPTURE(p);
      const double at_p = arma::dot(rope(q, theta_prime, p + delta, RopeLayout::Interleaved),
                                    rope(k, theta_prime, p, RopeLayout::Interleaved));
      // Angles p θ'_i are rounded to ~p ulp(1) (2e-11 at p = 1e5) in each of 32 pairs with
      // |q_pair||k_pair| ~ 2: abs 1e-9 bounds that with margin; relative tolerances are
      // meaningless for a dot product near 0.
      check_close(at_p, at0, Tol{1e-9, 0.0}, "q·k at p vs 0");
    }
  }
  // And it does depend on the distance.
  CHECK(std::fabs(arma::dot(rope(q, theta_prime, 5, RopeLayout::Interleaved),
                            rope(k, theta_prime, 0, RopeLayout::Interleaved)) -
                  arma::dot(q, k)) > 1e-3);
}

TEST_CASE("half-split RoPE of the de-interleaved vector is the de-interleaved interleaved result") {
  const Config c = v3_rope_config();
  const arma::vec theta_prime = yarn_theta_prime(c);
  arma::arma_rng::set_seed(7);
  const arma::mat x = arma::randn<arma::mat>(2 * 64, 3);
  const arma::mat a = deinterleave(rope(x, theta_prime, 5000, RopeLayout::Interleaved), 64);
  const arma::mat b = rope(deinterleave(x, 64), theta_prime, 5000, RopeLayout::HalfSplit);
  check_close(b, a, exact_vs_ref, "half-split of deinterleaved vs deinterleaved interleaved");
  // Pitfall P1: half-split applied to the raw interleaved vector rotates the wrong pairs.
  const arma::mat wrong = rope(x, theta_prime, 5000, RopeLayout::HalfSplit);
  CHECK(arma::abs(wrong - rope(x, theta_prime, 5000, RopeLayout::Interleaved)).max() > 1e-2);
}

TEST_CASE("golden/rope/small_rotation.json: (1,2,3,4) at position 1, both layouts, by hand") {
  const GoldenFile g = GoldenFile::load("golden/rope/small_rotation.json");
  const Tol tol{g.tol_abs(), g.tol_rel()};
  const Config c = plain_config(4);
  const arma::vec theta_prime = yarn_theta_prime(c);
  check_close(theta_prime, g.vec("expected.theta"), tol, "theta");
  const arma::mat x = g.tokens("inputs.x");
  const auto pos = static_cast<std::int64_t>(g.number("inputs.position"));
  const arma::mat y = rope(x, theta_prime, pos, RopeLayout::Interleaved);
  check_close(y, g.tokens("expected.interleaved"), tol, "interleaved");
  check_close(deinterleave(x, 4), g.tokens("expected.deinterleaved_input"), tol, "deinterleave");
  check_close(rope(deinterleave(x, 4), theta_prime, pos, RopeLayout::HalfSplit),
              g.tokens("expected.half_split_of_deinterleaved"), tol, "half-split of deinterleaved");
  check_close(rope(x, theta_prime, pos, RopeLayout::HalfSplit), g.tokens("expected.half_split_of_raw"),
              tol, "half-split of raw");
  // Hand arithmetic: pair 0 = (1, 2) turned by 1 radian.
  check_close(y(0, 0), std::cos(1.0) - 2.0 * std::sin(1.0), exact_vs_ref, "y0 by hand");
  check_close(y(1, 0), std::sin(1.0) + 2.0 * std::cos(1.0), exact_vs_ref, "y1 by hand");
  check_close(arma::norm(y.col(0)), std::sqrt(30.0), exact_vs_ref, "norm sqrt(30)");
}

TEST_CASE("rope and the frequency functions reject bad shapes and configs with a message") {
  const arma::vec theta_prime = {1.0, 0.01};
  CHECK_THROWS_WITH_AS(rope(arma::mat(6, 1, arma::fill::ones), theta_prime, 0, RopeLayout::Interleaved),
                       doctest::Contains("x is [6 x 1], expected [m*d_rope x T] with d_rope = 2 * "
                                         "theta_prime.n_elem = 4"),
                       std::invalid_argument);
  CHECK_THROWS_AS(rope(arma::mat(4, 1, arma::fill::ones), theta_prime, -1, RopeLayout::Interleaved),
                  std::invalid_argument);
  Config c = plain_config(7);
  CHECK_THROWS_WITH_AS(rope_theta(c), doctest::Contains("qk_rope_head_dim = 7"), std::invalid_argument);
  c = v3_rope_config();
  c.rope_scaling.factor = 0.0;
  CHECK_THROWS_WITH_AS(yarn_theta_prime(c), doctest::Contains("rope_scaling.factor = 0"),
                       std::invalid_argument);
}
