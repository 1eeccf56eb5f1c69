// RMSNorm in float32 for the fast path; mirrors reference/deepseek/rmsnorm.hpp (ref::rmsnorm).
// Leaves out: nothing; the sum of squares is accumulated in double (it is O(n) per token, cheap).
#pragma once

#include <armadillo>
#include <cmath>
#include <fmt/format.h>
#include <stdexcept>
#include <vector>

namespace dsr1::fast {

// y[i] = w[i] * x[i] / sqrt((1/n) sum_j x[j]^2 + eps), per token          spec §3
// x: [n, T] with column stride ldx;  y: [n, T] with stride ldy;  w: [n]
inline void rmsnorm(const float* x, std::int64_t ldx, const std::vector<float>& w, double eps,
                    std::int64_t T, float* y, std::int64_t ldy) {
  const std::int64_t n = static_cast<std::int64_t>(w.size());
  for (std::int64_t t = 0; t < T; ++t) {
    const float* xt = x + t * ldx;
    double sum_sq = 0.0;
    for (std::int64_t j = 0; j < n; ++j) sum_sq += static_cast<double>(xt[j]) * xt[j];
    const float inv_rms = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(n) + eps));
    float* yt = y + t * ldy;
    for (std::int64_t i = 0; i < n; ++i) yt[i] = w[i] * (xt[i] * inv_rms);
  }
}

// x: [n, T];  returns [n, T]
inline arma::fmat rmsnorm(const arma::fmat& x, const std::vector<float>& w, double eps) {
  if (x.n_rows != w.size())
    throw std::invalid_argument(fmt::format(
        "fast::rmsnorm: x is [{} x {}] but the weight w has {} entries", x.n_rows, x.n_cols, w.size()));
  arma::fmat y(x.n_rows, x.n_cols);
  rmsnorm(x.memptr(), x.n_rows, w, eps, x.n_cols, y.memptr(), y.n_rows);
  return y;
}

}  // namespace dsr1::fast
