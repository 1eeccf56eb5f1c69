// check_close: element-wise comparison that reports like llm.c and gemma.cpp: the max abs and
// rel difference, the worst (row, col), got and want to 17 digits.
#pragma once

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <armadillo>
#include <cmath>
#include <string>

#include "tests/support/tolerances.hpp"

namespace dsr1::test {

inline void check_close(const arma::mat& got, const arma::mat& want, Tol tol,
                        const std::string& what) {
  INFO("comparing ", what);
  REQUIRE_MESSAGE(got.n_rows == want.n_rows, fmt::format("{}: got [{} x {}], want [{} x {}]", what,
                                                         got.n_rows, got.n_cols, want.n_rows, want.n_cols));
  REQUIRE_MESSAGE(got.n_cols == want.n_cols, fmt::format("{}: got [{} x {}], want [{} x {}]", what,
                                                         got.n_rows, got.n_cols, want.n_rows, want.n_cols));
  double worst_excess = -1, max_abs = 0, max_rel = 0;
  arma::uword wr = 0, wc = 0;
  bool all_ok = true;
  for (arma::uword c = 0; c < got.n_cols; ++c)
    for (arma::uword r = 0; r < got.n_rows; ++r) {
      const double g = got(r, c), w = want(r, c);
      const double diff = std::fabs(g - w);
      const bool ok = (diff <= tol.abs + tol.rel * std::fabs(w)) && std::isfinite(g) == std::isfinite(w);
      if (!ok) all_ok = false;
      max_abs = std::max(max_abs, diff);
      if (w != 0) max_rel = std::max(max_rel, diff / std::fabs(w));
      const double excess = diff - (tol.abs + tol.rel * std::fabs(w));
      if (excess > worst_excess || !std::isfinite(g)) {
        worst_excess = excess;
        wr = r;
        wc = c;
      }
    }
  CHECK_MESSAGE(all_ok, fmt::format("{}: max abs diff {:.3e}, max rel diff {:.3e}; worst at ({}, {}): "
                                    "got {:.17g}, want {:.17g} (tol abs {:.1e} + rel {:.1e})",
                                    what, max_abs, max_rel, wr, wc, got(wr, wc), want(wr, wc),
                                    tol.abs, tol.rel));
}

inline void check_close(double got, double want, Tol tol, const std::string& what) {
  check_close(arma::mat(1, 1, arma::fill::value(got)), arma::mat(1, 1, arma::fill::value(want)),
              tol, what);
}

}  // namespace dsr1::test
