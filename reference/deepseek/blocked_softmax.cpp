// Blocked and online softmax-weighted sums (see blocked_softmax.hpp for the formulas).
#include "reference/deepseek/blocked_softmax.hpp"

#include <fmt/format.h>

#include <cmath>
#include <stdexcept>

namespace dsr1::ref {
namespace {

void check_shapes(const arma::vec& s, const arma::mat& C, arma::uword j0, arma::uword j1,
                  const char* who) {
  if (C.n_cols != s.n_elem)
    throw std::invalid_argument(fmt::format("{}: s has {} scores but C has {} columns", who,
                                            s.n_elem, C.n_cols));
  if (j0 > j1 || j1 > s.n_elem)
    throw std::invalid_argument(
        fmt::format("{}: keys {} .. {} are not a run within 0 .. {}", who, j0, j1, s.n_elem));
}

// exp(s_j - m) for a key, 0 when it is masked (s_j = -inf), whatever m is.
double weight(double s_j, double m) { return std::isinf(s_j) && s_j < 0 ? 0.0 : std::exp(s_j - m); }

}  // namespace

arma::vec softmax_weighted_sum(const arma::vec& s, const arma::mat& C) {
  check_shapes(s, C, 0, s.n_elem, "softmax_weighted_sum");
  const double M = s.n_elem ? s.max() : -arma::datum::inf;
  double sum = 0.0;
  arma::vec z(C.n_rows, arma::fill::zeros);
  for (arma::uword j = 0; j < s.n_elem; ++j) {
    const double e = weight(s(j), M);
    sum += e;
    z += e * C.col(j);
  }
  if (sum == 0.0)
    throw std::invalid_argument("softmax_weighted_sum: every key is masked, the softmax is undefined");
  return z / sum;
}

SoftmaxBlock block_softmax(const arma::vec& s, const arma::mat& C, arma::uword j0, arma::uword j1) {
  check_shapes(s, C, j0, j1, "block_softmax");
  SoftmaxBlock b;
  b.z.zeros(C.n_rows);
  for (arma::uword j = j0; j < j1; ++j) b.m = std::max(b.m, s(j));  // m_b
  if (std::isinf(b.m)) return b;                                    // all masked: l_b = 0, z_b = 0
  for (arma::uword j = j0; j < j1; ++j) {
    const double e = weight(s(j), b.m);  // exp(s_j - m_b)
    b.l += e;
    b.z += e * C.col(j);
  }
  return b;
}

arma::vec merge_blocks(const std::vector<SoftmaxBlock>& blocks, std::vector<double>* w) {
  if (blocks.empty()) throw std::invalid_argument("merge_blocks: no blocks");
  double m = -arma::datum::inf;
  for (const SoftmaxBlock& b : blocks) m = std::max(m, b.m);
  if (std::isinf(m)) throw std::invalid_argument("merge_blocks: every key is masked");
  double l = 0.0;
  arma::vec z(blocks.front().z.n_elem, arma::fill::zeros);
  if (w) w->clear();
  for (const SoftmaxBlock& b : blocks) {
    const double w_b = std::isinf(b.m) ? 0.0 : std::exp(b.m - m);  // an all-masked block: 0
    if (w) w->push_back(w_b);
    l += w_b * b.l;
    z += w_b * b.z;
  }
  return z / l;
}

SoftmaxBlock online_softmax_step(const SoftmaxBlock& state, const arma::vec& s, const arma::mat& C,
                                 arma::uword j0, arma::uword j1, double* alpha) {
  check_shapes(s, C, j0, j1, "online_softmax_step");
  SoftmaxBlock next;
  next.m = state.m;
  for (arma::uword j = j0; j < j1; ++j) next.m = std::max(next.m, s(j));  // m' = max(m, m_b)
  // alpha = exp(m - m'): the old terms were exp(s - m), they must become exp(s - m').
  const double a = std::isinf(state.m) ? 0.0 : std::exp(state.m - next.m);
  if (alpha) *alpha = a;
  next.l = a * state.l;
  next.z = state.z.n_elem ? arma::vec(a * state.z) : arma::vec(C.n_rows, arma::fill::zeros);
  if (std::isinf(next.m)) return next;  // nothing visible yet
  for (arma::uword j = j0; j < j1; ++j) {
    const double e = weight(s(j), next.m);
    next.l += e;
    next.z += e * C.col(j);
  }
  return next;
}

}  // namespace dsr1::ref
