// RMSNorm: rescale each token to unit root-mean-square, then multiply by a learned gain.
// Leaves out: mean subtraction and bias (RMSNorm has neither, unlike LayerNorm).
#pragma once

#include <armadillo>
#include <cmath>
#include <fmt/format.h>
#include <stdexcept>

namespace dsr1::ref {

// RMSNorm, per token: y[i] = w[i] * x[i] / sqrt((1/n) * sum_j x[j]^2 + eps)      spec §3, P14
// x: [n, T], one token per column;  w: [n];  returns [n, T]
inline arma::mat rmsnorm(const arma::mat& x, const arma::vec& w, double eps) {
  const arma::uword n = x.n_rows;
  if (w.n_elem != n)
    throw std::invalid_argument(
        fmt::format("rmsnorm: x is [{} x {}] but the weight w has {} entries (expected n={})",
                    x.n_rows, x.n_cols, w.n_elem, n));
  arma::mat y(n, x.n_cols);
  for (arma::uword t = 0; t < x.n_cols; ++t) {
    double sum_sq = 0.0;
    for (arma::uword j = 0; j < n; ++j) sum_sq += x(j, t) * x(j, t);
    const double inv_rms = 1.0 / std::sqrt(sum_sq / static_cast<double>(n) + eps);
    for (arma::uword i = 0; i < n; ++i) y(i, t) = w(i) * x(i, t) * inv_rms;
  }
  return y;
}

}  // namespace dsr1::ref
