// Numerically stable softmax and the logistic sigmoid.
// Leaves out: masking (callers pass -inf for masked entries; exp(-inf) = 0).
#pragma once

#include <armadillo>
#include <cmath>
#include <limits>

namespace dsr1::ref {

// softmax(x)_i = exp(x_i - m) / sum_j exp(x_j - m), with m = max_j x_j.
// Subtracting the maximum changes nothing mathematically (it cancels) but keeps every exp()
// at most 1, so large scores cannot overflow. x: [n];  returns [n].
// Entries equal to -inf get probability 0; if every entry is -inf the result is all NaN,
// which callers never produce (a causal row always sees at least its own position).
inline arma::vec softmax(const arma::vec& x) {
  double m = -std::numeric_limits<double>::infinity();
  for (arma::uword i = 0; i < x.n_elem; ++i) m = std::max(m, x(i));
  arma::vec e(x.n_elem);
  double sum = 0.0;
  for (arma::uword i = 0; i < x.n_elem; ++i) {
    e(i) = std::exp(x(i) - m);
    sum += e(i);
  }
  for (arma::uword i = 0; i < x.n_elem; ++i) e(i) /= sum;
  return e;
}

// softmax of every column: x: [n, T];  returns [n, T]
inline arma::mat softmax_columns(const arma::mat& x) {
  arma::mat y(x.n_rows, x.n_cols);
  for (arma::uword t = 0; t < x.n_cols; ++t) y.col(t) = softmax(arma::vec(x.col(t)));
  return y;
}

// sigmoid(z) = 1 / (1 + exp(-z)), written so that neither branch overflows.
inline double sigmoid(double z) {
  if (z >= 0) return 1.0 / (1.0 + std::exp(-z));
  const double e = std::exp(z);
  return e / (1.0 + e);
}

// silu(z) = z * sigmoid(z) = z / (1 + exp(-z))      spec §6
inline double silu(double z) { return z * sigmoid(z); }

}  // namespace dsr1::ref
