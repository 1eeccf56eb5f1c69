// Residual connection (seed §1.3): add the sublayer's input back to its output.
// Leaves out: any scaling of the branch (DeepSeek adds it unscaled, spec §2).
#pragma once

#include <fmt/format.h>

#include <armadillo>
#include <stdexcept>

namespace dsr1::ref {

// h_after = h + u, element by element. Keeping h unchanged on the side path is what lets the
// signal (and the gradient) pass through a deep stack of blocks.
// h: [D, T];  u: [D, T];  returns [D, T]
inline arma::mat residual_add(const arma::mat& h, const arma::mat& u) {
  if (h.n_rows != u.n_rows || h.n_cols != u.n_cols)
    throw std::invalid_argument(fmt::format(
        "residual_add: h is [{} x {}] but the branch output is [{} x {}]", h.n_rows, h.n_cols,
        u.n_rows, u.n_cols));
  arma::mat y(h.n_rows, h.n_cols);
  for (arma::uword t = 0; t < h.n_cols; ++t)
    for (arma::uword i = 0; i < h.n_rows; ++i) y(i, t) = h(i, t) + u(i, t);
  return y;
}

}  // namespace dsr1::ref
