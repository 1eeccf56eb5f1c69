// The expert aggregator (seed §1.4, §2.2, §2.3): f_t = sum over chosen experts r of g_{t,r} FFN_r(h_t).
// Leaves out: shared experts and routed_scaling_factor (DeepSeek's MoE, spec §6-7, see moe.hpp).
#pragma once

#include <fmt/format.h>

#include <armadillo>
#include <stdexcept>
#include <string>
#include <vector>

#include "reference/explainer/ffn_gelu.hpp"
#include "reference/trace/trace.hpp"

namespace dsr1::ref {

// f_t = sum_r g(r, t) * expert_out[r].col(t), over the experts with a non-zero gate.
// g: [N_r, T];  expert_out: N_r matrices [D, T] (entries of unchosen experts are never read, so
// they may be empty);  returns f: [D, T]
inline arma::mat expert_aggregate(const arma::mat& g, const std::vector<arma::mat>& expert_out,
                                  arma::uword D) {
  if (expert_out.size() != g.n_rows)
    throw std::invalid_argument(fmt::format(
        "expert_aggregate: {} gates per token but {} expert outputs", g.n_rows, expert_out.size()));
  arma::mat f(D, g.n_cols, arma::fill::zeros);
  for (arma::uword t = 0; t < g.n_cols; ++t)
    for (arma::uword r = 0; r < g.n_rows; ++r) {
      if (g(r, t) == 0.0) continue;  // a dormant expert contributes nothing and is never run
      const arma::mat& y = expert_out[r];
      if (y.n_rows != D || y.n_cols != g.n_cols)
        throw std::invalid_argument(fmt::format(
            "expert_aggregate: expert {} is chosen but its output is [{} x {}], expected "
            "[D={} x T={}]", r, y.n_rows, y.n_cols, D, g.n_cols));
      for (arma::uword i = 0; i < D; ++i) f(i, t) += g(r, t) * y(i, t);
    }
  return f;
}

// The MoE feed-forward of the explainer: run only the experts some token chose, then aggregate.
// h: [D, T];  g: [N_r, T] gates (zero = not chosen);  experts: N_r GELU FFNs;  returns f: [D, T]
// Traces experts.{r}.ffn.* for each expert that runs (inside a scope) and moe.f.
inline arma::mat seed_moe_ffn(const arma::mat& h, const arma::mat& g,
                              const std::vector<GeluFfnWeights>& experts, Tracer* tr) {
  if (experts.size() != g.n_rows || g.n_cols != h.n_cols)
    throw std::invalid_argument(fmt::format(
        "seed_moe_ffn: g is [{} x {}] but there are {} experts and {} tokens", g.n_rows, g.n_cols,
        experts.size(), h.n_cols));
  std::vector<arma::mat> expert_out(experts.size());
  for (arma::uword r = 0; r < experts.size(); ++r) {
    if (!arma::any(g.row(r) != 0.0)) continue;  // no token chose expert r: skip its compute
    TraceScope scope(tr, "experts." + std::to_string(r));
    expert_out[r] = ffn_gelu(h, experts[r], tr);  // (tokens that did not choose r ignore it)
  }
  const arma::mat f = expert_aggregate(g, expert_out, h.n_rows);
  TRACE(tr, "moe.f", f);
  return f;
}

}  // namespace dsr1::ref
