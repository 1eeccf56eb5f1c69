// SwiGLU FFN (reference/deepseek/ffn.hpp) and the MoE block (reference/deepseek/moe.hpp): hand arithmetic for the
// FFN, and the MoE output against sums of single experts computed separately.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "reference/deepseek/ffn.hpp"
#include "reference/deepseek/moe.hpp"
#include "tests/support/check.hpp"

using dsr1::Config;
using dsr1::Faults;
using dsr1::FfnWeights;
using dsr1::MoeWeights;
using dsr1::ref::moe_forward;
using dsr1::ref::swiglu_ffn;
using dsr1::test::check_close;
using dsr1::test::exact_vs_ref;

namespace {

// A deterministic [rows, cols] matrix with entries in [-scale, scale], different per `seed`.
arma::mat wave(arma::uword rows, arma::uword cols, double seed, double scale) {
  arma::mat m(rows, cols);
  for (arma::uword i = 0; i < rows; ++i)
    for (arma::uword j = 0; j < cols; ++j) m(i, j) = scale * std::sin(seed + 1.7 * i + 0.9 * j + 0.3 * i * j);
  return m;
}

FfnWeights expert(arma::uword d, arma::uword I, double seed) {
  return {wave(I, d, seed, 0.5), wave(I, d, seed + 10, 0.5), wave(d, I, seed + 20, 0.5)};
}

// A small V3-rules MoE: d = 4, N_r = 8 (4 groups of 2, keep 2), I_e = 3, shared width 6.
struct SmallMoe {
  Config c;
  MoeWeights W;
};

SmallMoe small_moe(std::int64_t K, bool shared) {
  SmallMoe m;
  Config& c = m.c;
  c.name = "moe-test";
  c.hidden_size = 4;
  c.n_routed_experts = 8;
  c.num_experts_per_tok = K;
  c.n_group = 4;
  c.topk_group = 2;
  c.scoring_func = "sigmoid";
  c.topk_method = "noaux_tc";
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5;
  c.moe_intermediate_size = 3;
  c.n_shared_experts = shared ? 2 : 0;
  m.W.W_g = wave(8, 4, 0.4, 1.0);
  m.W.b = arma::vec{0.05, -0.1, 0.02, -0.03, 0.0, 0.08, -0.06, 0.01};
  for (int e = 0; e < 8; ++e) m.W.experts.push_back(expert(4, 3, 100.0 + e));
  if (shared) m.W.shared = expert(4, 6, 7.0);
  return m;
}

}  // namespace

TEST_CASE("swiglu_ffn: hand-computed two-unit example, with its four trace names") {
  // x = (1, -1); W_gate = I, W_up = diag(2, 3)  ->  gate = (1, -1), up = (2, -3)
  // act = (silu(1) * 2, silu(-1) * -3) with silu(z) = z / (1 + e^-z)
  // W_down = [[1, 1], [1, -1]]  ->  out = (act0 + act1, act0 - act1)
  const FfnWeights W{arma::eye(2, 2), arma::mat{{2, 0}, {0, 3}}, arma::mat{{1, 1}, {1, -1}}};
  const arma::mat x = arma::mat(arma::vec{1.0, -1.0});
  const double act0 = 2.0 / (1.0 + std::exp(-1.0));
  const double act1 = -3.0 * (-1.0 / (1.0 + std::exp(1.0)));
  dsr1::RecordingTracer tr;
  const arma::mat out = swiglu_ffn(x, W, &tr, "ffn");
  check_close(out, arma::mat(arma::vec{act0 + act1, act0 - act1}), exact_vs_ref, "ffn.out");
  check_close(tr.get_mat("ffn.gate"), arma::mat(arma::vec{1.0, -1.0}), exact_vs_ref, "ffn.gate");
  check_close(tr.get_mat("ffn.up"), arma::mat(arma::vec{2.0, -3.0}), exact_vs_ref, "ffn.up");
  check_close(tr.get_mat("ffn.act"), arma::mat(arma::vec{act0, act1}), exact_vs_ref, "ffn.act");
  REQUIRE(tr.entries().size() == 4);
  CHECK(tr.entries()[3].name == "ffn.out");

  // Another prefix renames the records; an empty one records nothing.
  dsr1::RecordingTracer tr2;
  swiglu_ffn(x, W, &tr2, "mtp.block.ffn");
  CHECK(tr2.has("mtp.block.ffn.act"));
  dsr1::RecordingTracer tr3;
  swiglu_ffn(x, W, &tr3, "");
  CHECK(tr3.entries().empty());
}

TEST_CASE("swiglu_ffn rejects mismatched weight shapes, naming the FFN") {
  const FfnWeights W{arma::mat(3, 4, arma::fill::ones), arma::mat(3, 4, arma::fill::ones),
                     arma::mat(4, 2, arma::fill::ones)};  // W_down should be [4 x 3]
  bool threw = false;
  try {
    swiglu_ffn(arma::mat(4, 1, arma::fill::ones), W, nullptr, "experts.5");
  } catch (const std::invalid_argument& e) {
    threw = true;
    CHECK(std::string(e.what()).find("experts.5") != std::string::npos);
    CHECK(std::string(e.what()).find("W_down [4 x 2]") != std::string::npos);
  }
  CHECK(threw);
}

TEST_CASE("moe_forward with K = 1 and renormalisation (g = 1) equals the chosen expert's output") {
  // With norm_topk_prob and K = 1, g = scale * s_i / s_i; scale 1 makes it exactly 1.
  SmallMoe m = small_moe(1, false);
  m.c.routed_scaling_factor = 1.0;
  const arma::mat x = wave(4, 5, 2.0, 1.0);  // T = 5
  const dsr1::ref::Routing r = dsr1::ref::route(x, m.W, m.c, Faults{}, nullptr);
  check_close(r.g, arma::ones(1, 5), exact_vs_ref, "moe.g");
  const arma::mat y = moe_forward(x, m.W, m.c, Faults{}, nullptr);
  for (arma::uword t = 0; t < 5; ++t) {
    CAPTURE(t);
    const arma::mat want = swiglu_ffn(x.col(t), m.W.experts[r.experts(0, t)], nullptr, "");
    check_close(arma::mat(y.col(t)), want, exact_vs_ref, "moe.out column");
  }
}

TEST_CASE("moe_forward = shared expert once + sum of g_k times the chosen experts") {
  const SmallMoe m = small_moe(3, true);
  const arma::mat x = wave(4, 6, 3.0, 1.0);  // T = 6
  dsr1::RecordingTracer tr;
  const arma::mat y = moe_forward(x, m.W, m.c, Faults{}, &tr);
  const dsr1::ref::Routing r = dsr1::ref::route(x, m.W, m.c, Faults{}, nullptr);
  const arma::mat S = swiglu_ffn(x, *m.W.shared, nullptr, "");
  arma::mat want = S;
  for (arma::uword t = 0; t < x.n_cols; ++t)
    for (arma::uword k = 0; k < 3; ++k)
      want.col(t) += r.g(k, t) * swiglu_ffn(x.col(t), m.W.experts[r.experts(k, t)], nullptr, "");
  check_close(y, want, exact_vs_ref, "moe.out");
  check_close(tr.get_mat("moe.shared"), S, exact_vs_ref, "moe.shared");
  check_close(tr.get_mat("moe.out"), tr.get_mat("moe.routed") + tr.get_mat("moe.shared"), exact_vs_ref,
              "moe.out = routed + shared");

  // The same block without the shared expert differs by exactly S (added once, weight 1).
  SmallMoe no_shared = m;
  no_shared.W.shared.reset();
  no_shared.c.n_shared_experts = 0;
  dsr1::RecordingTracer tr2;
  const arma::mat y2 = moe_forward(x, no_shared.W, no_shared.c, Faults{}, &tr2);
  check_close(y - y2, S, {1e-14, 1e-12}, "shared contribution");
  CHECK_FALSE(tr2.has("moe.shared"));

  const std::vector<std::string> names = {"moe.ell", "moe.s", "moe.s_tilde", "moe.group_scores",
                                          "moe.group_mask", "moe.experts", "moe.g", "moe.routed",
                                          "moe.shared", "moe.out"};
  REQUIRE(tr.entries().size() == names.size());
  for (size_t i = 0; i < names.size(); ++i) CHECK(tr.entries()[i].name == names[i]);
}

TEST_CASE("moe_forward: a prefix of the tokens gives bit-identical outputs") {
  const SmallMoe m = small_moe(2, true);
  const arma::mat x = wave(4, 7, 5.0, 1.0);
  const arma::mat full = moe_forward(x, m.W, m.c, Faults{}, nullptr);
  const arma::mat part = moe_forward(x.cols(0, 2), m.W, m.c, Faults{}, nullptr);
  const arma::mat one = moe_forward(x.col(4), m.W, m.c, Faults{}, nullptr);
  CHECK(arma::approx_equal(part, full.cols(0, 2), "absdiff", 0.0));
  // The shared expert runs as a matrix-matrix product over all tokens; a lone column may round
  // differently in the last bit, so this comparison allows a few ulps.
  check_close(one, arma::mat(full.col(4)), {1e-15, 1e-13}, "single token");
}

TEST_CASE("router faults reach the MoE output, and double scaling scales the routed part only") {
  const SmallMoe m = small_moe(2, true);
  const arma::mat x = wave(4, 4, 6.0, 1.0);
  dsr1::RecordingTracer good_tr, bad_tr;
  moe_forward(x, m.W, m.c, Faults{}, &good_tr);
  Faults f;
  f.double_routed_scaling = true;
  moe_forward(x, m.W, m.c, f, &bad_tr);
  check_close(bad_tr.get_mat("moe.routed"), 2.5 * good_tr.get_mat("moe.routed"), {1e-14, 1e-12},
              "moe.routed (fault) = 2.5 x moe.routed");
  check_close(bad_tr.get_mat("moe.shared"), good_tr.get_mat("moe.shared"), exact_vs_ref, "moe.shared");
}

TEST_CASE("moe_forward rejects a wrong expert count or a missing shared expert") {
  SmallMoe m = small_moe(2, true);
  const arma::mat x = wave(4, 2, 1.0, 1.0);
  SmallMoe fewer = m;
  fewer.W.experts.pop_back();
  CHECK_THROWS_WITH_AS(moe_forward(x, fewer.W, fewer.c, Faults{}, nullptr),
                       "moe_forward: 7 routed experts given, expected N_r=8", std::invalid_argument);
  SmallMoe missing = m;
  missing.W.shared.reset();
  CHECK_THROWS_WITH_AS(moe_forward(x, missing.W, missing.c, Faults{}, nullptr),
                       "moe_forward: n_shared_experts=2 but the shared expert weights are absent",
                       std::invalid_argument);
}
