// Load balancing (reference/deepseek/balance.hpp): hand-computed V2 losses, the V3 sequence-wise loss, the
// bias update, and the property that a perfectly even spread gives L = alpha.
//
// Why even routing gives L = alpha: sum_i load_i = K T, so f_i = N_r/(K T) * load_i has mean 1,
// and an even spread (load_i = K T / N_r) makes every f_i = 1. Then L = alpha * sum_i P_i =
// alpha * (1/T) sum_t sum_i s_{i,t} = alpha, since each token's affinities sum to 1. The same
// argument with devices (f'_i = mean of f = 1, sum_i P'_i = 1) and with the communication term
// (each token reaches M devices, D/(M T) * (M T / D) = 1) gives alpha2 and alpha3.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "reference/deepseek/balance.hpp"
#include "reference/deepseek/router.hpp"
#include "tests/support/check.hpp"

using namespace dsr1::ref;
using dsr1::test::check_close;
using dsr1::test::exact_vs_ref;

namespace {

// Softmax-like columns: positive, each summing to 1, otherwise arbitrary. [N_r, T]
arma::mat affinities(arma::uword N_r, arma::uword T) {
  arma::mat s(N_r, T);
  for (arma::uword t = 0; t < T; ++t) {
    for (arma::uword i = 0; i < N_r; ++i) s(i, t) = 1.5 + std::sin(0.7 * i + 1.9 * t + 0.3);
    s.col(t) /= arma::accu(s.col(t));
  }
  return s;
}

}  // namespace

TEST_CASE("perfectly even routing gives L = alpha for the expert, device and communication losses") {
  // N_r = 4, K = 2, T = 4, D = 2 devices {0,1} {2,3}, M = 1... and M = 2.
  // Tokens choose {0,1}, {2,3}, {1,0}, {3,2}: every expert twice (load = K T / N_r = 2).
  const arma::umat experts = {{0, 2, 1, 3}, {1, 3, 0, 2}};  // [K, T]
  const arma::mat s = affinities(4, 4);
  check_close(expert_fraction(experts, 4), arma::mat(arma::ones(4)), exact_vs_ref, "f");
  check_close(expert_balance_loss(s, experts, 0.003), 0.003, exact_vs_ref, "L_ExpBal");
  check_close(device_balance_loss(s, experts, 2, 0.05), 0.05, exact_vs_ref, "L_DevBal");
  // Each token touches exactly one device here, and each device receives 2 of the 4 tokens.
  check_close(communication_balance_loss(s, experts, 2, 1, 0.02), 0.02, exact_vs_ref, "L_CommBal");

  // V3 sequence loss: sigmoid-like scores whose top-2 spread evenly also give alpha.
  // Token 0 prefers {0,1}, token 1 prefers {2,3}; s' normalises each column to sum 1.
  const arma::mat s3 = {{0.9, 0.2}, {0.8, 0.1}, {0.3, 0.7}, {0.1, 0.6}};
  check_close(sequence_balance_loss(s3, 2, 1e-4), 1e-4, exact_vs_ref, "L_Bal");
}

TEST_CASE("V2 losses on a hand-computed collapsed routing") {
  // N_r = 4, K = 1, T = 2; both tokens choose expert 0.
  //   s = (0.7, 0.1, 0.1, 0.1) and (0.6, 0.2, 0.1, 0.1)   P = (0.65, 0.15, 0.1, 0.1)
  //   f = 4 / (1 * 2) * (2, 0, 0, 0) = (4, 0, 0, 0)        L_ExpBal = a1 * 4 * 0.65 = 2.6 a1
  // Devices {0,1}, {2,3}: f' = (2, 0), P' = (0.8, 0.2)    L_DevBal = a2 * 2 * 0.8 = 1.6 a2
  // M = 1: both tokens go to device 0: f'' = 2 / (1 * 2) * (2, 0) = (2, 0)
  //                                                        L_CommBal = a3 * 2 * 0.8 = 1.6 a3
  const arma::mat s = {{0.7, 0.6}, {0.1, 0.2}, {0.1, 0.1}, {0.1, 0.1}};
  const arma::umat experts = {{0, 0}};
  check_close(mean_affinity(s), arma::mat(arma::vec{0.65, 0.15, 0.1, 0.1}), exact_vs_ref, "P");
  check_close(expert_load(experts, 4), arma::mat(arma::vec{2, 0, 0, 0}), exact_vs_ref, "load");
  check_close(expert_balance_loss(s, experts, 1.0), 2.6, exact_vs_ref, "L_ExpBal");
  check_close(device_balance_loss(s, experts, 2, 1.0), 1.6, exact_vs_ref, "L_DevBal");
  check_close(communication_balance_loss(s, experts, 2, 1, 1.0), 1.6, exact_vs_ref, "L_CommBal");
  // The worst case of the expert loss: all tokens on one expert that takes all the affinity
  // (P = e_0) gives alpha * N_r; here P_0 = 0.65 gives 2.6 between alpha (even) and 4 alpha.
  const arma::mat s_all = {{1.0, 1.0}, {0.0, 0.0}, {0.0, 0.0}, {0.0, 0.0}};
  check_close(expert_balance_loss(s_all, experts, 1.0), 4.0, exact_vs_ref, "L_ExpBal worst case");
}

TEST_CASE("communication loss counts a token once per device, however many of its experts are there") {
  // N_r = 4, K = 2, T = 2, D = 2, M = 2. Token 0 -> {0, 1} (device 0 only); token 1 -> {1, 2}
  // (devices 0 and 1). received = (2, 1); f'' = 2 / (2 * 2) * (2, 1) = (1, 0.5).
  //   s = (0.4, 0.3, 0.2, 0.1) and (0.1, 0.4, 0.4, 0.1): P = (0.25, 0.35, 0.3, 0.1), P'' = (0.6, 0.4)
  //   L_CommBal = 1 * 0.6 + 0.5 * 0.4 = 0.8
  const arma::mat s = {{0.4, 0.1}, {0.3, 0.4}, {0.2, 0.4}, {0.1, 0.1}};
  const arma::umat experts = {{0, 1}, {1, 2}};
  check_close(communication_balance_loss(s, experts, 2, 2, 1.0), 0.8, exact_vs_ref, "L_CommBal");
}

TEST_CASE("V3 sequence-wise loss on a hand-computed example") {
  // N_r = 4, K = 2, T = 2.
  //   token 0: s = (0.9, 0.8, 0.2, 0.1), sum 2.0 -> s' = (0.45, 0.4, 0.1, 0.05), top-2 {0, 1}
  //   token 1: s = (0.1, 0.3, 0.5, 0.1), sum 1.0 -> s' = s,                      top-2 {2, 1}
  //   counts (1, 2, 1, 0) -> f = 4 / (2 * 2) * counts = (1, 2, 1, 0)
  //   P = ((0.45 + 0.1)/2, (0.4 + 0.3)/2, (0.1 + 0.5)/2, (0.05 + 0.1)/2) = (0.275, 0.35, 0.3, 0.075)
  //   L = alpha * (0.275 + 0.7 + 0.3 + 0) = 1.275 alpha
  const arma::mat s = {{0.9, 0.1}, {0.8, 0.3}, {0.2, 0.5}, {0.1, 0.1}};
  check_close(sequence_balance_loss(s, 2, 1.0), 1.275, exact_vs_ref, "L_Bal");
  check_close(sequence_balance_loss(s, 2, 1e-4), 1.275e-4, exact_vs_ref, "L_Bal (alpha = 1e-4)");
}

TEST_CASE("bias update: overloaded experts move down by gamma, underloaded up, average unchanged") {
  // loads (3, 1, 2, 2), mean 2: signs (-1, +1, 0, 0).
  const arma::vec b = {0.5, -0.25, 0.0, 1.0};
  const arma::vec load = {3, 1, 2, 2};
  check_close(bias_update(b, load, 0.001), arma::mat(arma::vec{0.499, -0.249, 0.0, 1.0}), exact_vs_ref,
              "b after one step");
  // Property on a longer vector: b moves down exactly where load exceeds the mean.
  arma::vec load2(16), b2(16, arma::fill::zeros);
  for (arma::uword i = 0; i < 16; ++i) load2(i) = std::floor(10 + 9 * std::sin(1.3 * i));
  const double mean_load = arma::mean(load2);
  const arma::vec b2_new = bias_update(b2, load2, 0.01);
  for (arma::uword i = 0; i < 16; ++i) {
    CAPTURE(i);
    if (load2(i) > mean_load) CHECK(b2_new(i) == -0.01);
    if (load2(i) < mean_load) CHECK(b2_new(i) == 0.01);
  }
}

TEST_CASE("one bias update moves tokens off the overloaded expert (route with the new b)") {
  // N_r = 4, K = 1, no groups, noaux_tc. Four tokens all prefer expert 0 over expert 1 by margins
  // m = 0.01, 0.03, 0.05, 0.07 (s0 = 0.6, s1 = 0.6 - m; s2 = s3 = 0.1): load (4, 0, 0, 0), mean 1.
  // gamma = 0.02: b = (-0.02, +0.02, +0.02, +0.02), so expert 1 now wins where m < 0.04:
  // tokens 0 and 1 move, load (2, 2, 0, 0).
  dsr1::Config c;
  c.name = "balance-test";
  c.hidden_size = 4;
  c.n_routed_experts = 4;
  c.num_experts_per_tok = 1;
  c.n_group = 1;
  c.topk_group = 1;
  c.scoring_func = "sigmoid";
  c.topk_method = "noaux_tc";
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 1.0;
  dsr1::MoeWeights W;
  W.W_g = arma::eye(4, 4);
  W.b = arma::zeros(4);
  const auto logit = [](double p) { return std::log(p / (1.0 - p)); };
  arma::mat x(4, 4);
  const double m[4] = {0.01, 0.03, 0.05, 0.07};
  for (int t = 0; t < 4; ++t) {
    x(0, t) = logit(0.6);
    x(1, t) = logit(0.6 - m[t]);
    x(2, t) = logit(0.1);
    x(3, t) = logit(0.1);
  }
  const Routing before = route(x, W, c, dsr1::Faults{}, nullptr);
  const arma::vec load_before = expert_load(before.experts, 4);
  check_close(load_before, arma::mat(arma::vec{4, 0, 0, 0}), exact_vs_ref, "load before");
  W.b = bias_update(W.b, load_before, 0.02);
  check_close(W.b, arma::mat(arma::vec{-0.02, 0.02, 0.02, 0.02}), exact_vs_ref, "b");
  const Routing after = route(x, W, c, dsr1::Faults{}, nullptr);
  check_close(expert_load(after.experts, 4), arma::mat(arma::vec{2, 2, 0, 0}), exact_vs_ref, "load after");
  // The weights still come from the unbiased s: with K = 1 and renormalisation, g = 1.
  check_close(after.g, arma::ones(1, 4), exact_vs_ref, "g");
}

TEST_CASE("balance functions reject bad shapes with a clear message") {
  const arma::mat s = affinities(4, 2);
  CHECK_THROWS_WITH_AS(expert_load(arma::umat{{0, 4}}, 4), "expert_load: experts(0, 1) = 4 is not below N_r=4",
                       std::invalid_argument);
  CHECK_THROWS_AS(expert_balance_loss(s, arma::umat{{0, 1, 2}}, 1.0), std::invalid_argument);
  CHECK_THROWS_WITH_AS(device_balance_loss(s, arma::umat{{0, 1}}, 3, 1.0),
                       "device_balance_loss: N_r=4 experts cannot be split over D=3 devices",
                       std::invalid_argument);
  CHECK_THROWS_AS(communication_balance_loss(s, arma::umat{{0, 1}}, 2, 3, 1.0), std::invalid_argument);
  CHECK_THROWS_AS(sequence_balance_loss(s, 5, 1.0), std::invalid_argument);
  CHECK_THROWS_AS(bias_update(arma::zeros(3), arma::zeros(4), 0.1), std::invalid_argument);
}
