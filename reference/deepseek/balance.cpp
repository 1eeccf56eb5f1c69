// Training-time load balancing (spec §8): V2's auxiliary losses, V3's sequence loss and bias rule.
// Leaves out: gradients and token dropping.
#include "reference/deepseek/balance.hpp"

#include <fmt/format.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "reference/deepseek/router.hpp"

namespace dsr1::ref {

namespace {

void check_experts(const arma::umat& experts, arma::uword N_r, const char* who) {
  if (experts.n_rows == 0 || experts.n_cols == 0)
    throw std::invalid_argument(fmt::format("{}: experts is [{} x {}], expected [K x T] with K, T >= 1",
                                            who, experts.n_rows, experts.n_cols));
  for (arma::uword t = 0; t < experts.n_cols; ++t)
    for (arma::uword k = 0; k < experts.n_rows; ++k)
      if (experts(k, t) >= N_r)
        throw std::invalid_argument(fmt::format("{}: experts({}, {}) = {} is not below N_r={}", who, k, t,
                                                experts(k, t), N_r));
}

void check_scores(const arma::mat& s, const arma::umat& experts, const char* who) {
  if (s.n_cols != experts.n_cols)
    throw std::invalid_argument(fmt::format("{}: s is [{} x {}] but experts is [{} x {}]; expected the same T",
                                            who, s.n_rows, s.n_cols, experts.n_rows, experts.n_cols));
}

void check_devices(arma::uword N_r, arma::uword D, const char* who) {
  if (D == 0 || N_r % D != 0)
    throw std::invalid_argument(fmt::format("{}: N_r={} experts cannot be split over D={} devices", who, N_r, D));
}

// P'_i = sum of P_j over the experts j of device i (N_r/D consecutive experts).  returns [D]
arma::vec device_affinity(const arma::vec& P, arma::uword D) {
  const arma::uword per_device = P.n_elem / D;
  arma::vec P_dev(D, arma::fill::zeros);
  for (arma::uword i = 0; i < D; ++i)
    for (arma::uword j = i * per_device; j < (i + 1) * per_device; ++j) P_dev(i) += P(j);
  return P_dev;
}

}  // namespace

arma::vec expert_load(const arma::umat& experts, arma::uword N_r) {
  check_experts(experts, N_r, "expert_load");
  arma::vec load(N_r, arma::fill::zeros);  // load: [N_r]
  for (arma::uword t = 0; t < experts.n_cols; ++t)
    for (arma::uword k = 0; k < experts.n_rows; ++k) load(experts(k, t)) += 1.0;
  return load;
}

arma::vec expert_fraction(const arma::umat& experts, arma::uword N_r) {
  const arma::vec load = expert_load(experts, N_r);
  const double K = experts.n_rows, T = experts.n_cols;
  // Scaled by N_r / (K T): the K T choices spread evenly give load_i = K T / N_r, i.e. f_i = 1.
  return (static_cast<double>(N_r) / (K * T)) * load;
}

arma::vec mean_affinity(const arma::mat& s) {
  if (s.n_cols == 0) throw std::invalid_argument("mean_affinity: s has no tokens (T = 0)");
  arma::vec P(s.n_rows, arma::fill::zeros);  // P: [N_r]
  for (arma::uword t = 0; t < s.n_cols; ++t)
    for (arma::uword i = 0; i < s.n_rows; ++i) P(i) += s(i, t);
  return P / static_cast<double>(s.n_cols);
}

double expert_balance_loss(const arma::mat& s, const arma::umat& experts, double alpha1) {
  check_scores(s, experts, "expert_balance_loss");
  const arma::vec f = expert_fraction(experts, s.n_rows);
  const arma::vec P = mean_affinity(s);
  double sum = 0.0;
  for (arma::uword i = 0; i < s.n_rows; ++i) sum += f(i) * P(i);
  return alpha1 * sum;
}

double device_balance_loss(const arma::mat& s, const arma::umat& experts, arma::uword D, double alpha2) {
  check_scores(s, experts, "device_balance_loss");
  const arma::uword N_r = s.n_rows;
  check_devices(N_r, D, "device_balance_loss");
  const arma::uword per_device = N_r / D;
  const arma::vec f = expert_fraction(experts, N_r);
  const arma::vec P_dev = device_affinity(mean_affinity(s), D);
  double sum = 0.0;
  for (arma::uword i = 0; i < D; ++i) {
    double f_dev = 0.0;  // f'_i: the MEAN of f over the device (P'_i is the sum)
    for (arma::uword j = i * per_device; j < (i + 1) * per_device; ++j) f_dev += f(j);
    f_dev /= static_cast<double>(per_device);
    sum += f_dev * P_dev(i);
  }
  return alpha2 * sum;
}

double communication_balance_loss(const arma::mat& s, const arma::umat& experts, arma::uword D,
                                  arma::uword M, double alpha3) {
  check_scores(s, experts, "communication_balance_loss");
  const arma::uword N_r = s.n_rows, T = s.n_cols;
  check_devices(N_r, D, "communication_balance_loss");
  check_experts(experts, N_r, "communication_balance_loss");
  if (M == 0 || M > D)
    throw std::invalid_argument(fmt::format("communication_balance_loss: M={} devices per token, expected 1..D={}",
                                            M, D));
  const arma::uword per_device = N_r / D;
  // received_i = number of tokens with at least one chosen expert on device i (a token is sent
  // to a device once, however many of its experts live there).
  arma::vec received(D, arma::fill::zeros);
  for (arma::uword t = 0; t < T; ++t) {
    std::vector<bool> sent(D, false);
    for (arma::uword k = 0; k < experts.n_rows; ++k) sent[experts(k, t) / per_device] = true;
    for (arma::uword i = 0; i < D; ++i)
      if (sent[i]) received(i) += 1.0;
  }
  const arma::vec P_dev = device_affinity(mean_affinity(s), D);
  double sum = 0.0;
  for (arma::uword i = 0; i < D; ++i) {
    // Scaled by D / (M T): T tokens each sent to exactly M devices, evenly, give f''_i = 1.
    const double f_comm = static_cast<double>(D) / (static_cast<double>(M) * T) * received(i);
    sum += f_comm * P_dev(i);
  }
  return alpha3 * sum;
}

double sequence_balance_loss(const arma::mat& s, arma::uword K, double alpha) {
  const arma::uword N_r = s.n_rows, T = s.n_cols;
  if (T == 0 || K == 0 || K > N_r)
    throw std::invalid_argument(fmt::format("sequence_balance_loss: s is [{} x {}] and K={}; expected T >= 1 "
                                            "and 1 <= K <= N_r", N_r, T, K));
  // s'_{.,t} = s_{.,t} / sum_j s_{j,t}: sigmoid scores do not sum to 1, so normalise per token.
  arma::mat s_prime(N_r, T);  // s_prime: [N_r, T]
  for (arma::uword t = 0; t < T; ++t) {
    double sum = 0.0;
    for (arma::uword j = 0; j < N_r; ++j) sum += s(j, t);
    if (!(sum > 0.0))
      throw std::invalid_argument(fmt::format("sequence_balance_loss: scores of token {} sum to {}, expected > 0",
                                              t, sum));
    for (arma::uword i = 0; i < N_r; ++i) s_prime(i, t) = s(i, t) / sum;
  }
  // The top-K of the affinities s themselves (the paper's indicator), not of s + b.
  arma::umat experts(K, T);  // experts: [K, T]
  for (arma::uword t = 0; t < T; ++t) {
    const std::vector<arma::uword> chosen = top_k_indices(arma::vec(s.col(t)), K);
    for (arma::uword k = 0; k < K; ++k) experts(k, t) = chosen[k];
  }
  const arma::vec f = expert_fraction(experts, N_r);
  const arma::vec P = mean_affinity(s_prime);
  double sum = 0.0;
  for (arma::uword i = 0; i < N_r; ++i) sum += f(i) * P(i);
  return alpha * sum;
}

arma::vec bias_update(const arma::vec& b, const arma::vec& load, double gamma) {
  if (b.n_elem != load.n_elem || b.n_elem == 0)
    throw std::invalid_argument(fmt::format("bias_update: b has {} entries and load {}; expected the same N_r >= 1",
                                            b.n_elem, load.n_elem));
  const double mean_load = arma::mean(load);
  arma::vec b_new(b.n_elem);  // b_new: [N_r]
  for (arma::uword i = 0; i < b.n_elem; ++i) {
    const double diff = mean_load - load(i);
    const double sign = diff > 0 ? 1.0 : (diff < 0 ? -1.0 : 0.0);
    b_new(i) = b(i) + gamma * sign;
  }
  return b_new;
}

}  // namespace dsr1::ref
