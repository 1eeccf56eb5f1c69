// The explainer's router (seed §2.1): logits r = W^router h + b^router, p = softmax(r), keep the
// top-k probabilities and zero the rest, with NO renormalisation.
// Leaves out: what DeepSeek actually does (V2: routed_scaling_factor and group limits; V3/R1:
// sigmoid scores, selection bias, group limits, renormalisation, x2.5; spec §7, seed errata §15.3).
#pragma once

#include <fmt/format.h>

#include <armadillo>
#include <stdexcept>
#include <vector>

#include "reference/deepseek/softmax.hpp"
#include "reference/trace/trace.hpp"

namespace dsr1::ref {

// r = W^router h + b^router.   W_router: [N_r, D];  b_router: [N_r];  h: [D, T];  returns r: [N_r, T]
inline arma::mat router_logits(const arma::mat& W_router, const arma::vec& b_router,
                               const arma::mat& h) {
  if (W_router.n_cols != h.n_rows || b_router.n_elem != W_router.n_rows)
    throw std::invalid_argument(fmt::format(
        "router_logits: W_router [{} x {}], b_router [{}], h [{} x {}]: expected W_router "
        "[N_r x D], b_router [N_r], h [D x T]",
        W_router.n_rows, W_router.n_cols, b_router.n_elem, h.n_rows, h.n_cols));
  arma::mat r = W_router * h;  // r: [N_r, T]
  for (arma::uword t = 0; t < r.n_cols; ++t)
    for (arma::uword e = 0; e < r.n_rows; ++e) r(e, t) += b_router(e);
  return r;
}

// Indices of the k largest entries of p, largest first; equal values: the lower index first.
// p: [N_r];  returns k indices
inline std::vector<arma::uword> seed_top_k(const arma::vec& p, arma::uword k) {
  if (k > p.n_elem)
    throw std::invalid_argument(
        fmt::format("seed_top_k: k={} is larger than the number of experts N_r={}", k, p.n_elem));
  std::vector<arma::uword> chosen;
  std::vector<bool> taken(p.n_elem, false);
  for (arma::uword n = 0; n < k; ++n) {
    arma::uword best = p.n_elem;
    for (arma::uword e = 0; e < p.n_elem; ++e)  // strict '>' keeps the lower index on ties
      if (!taken[e] && (best == p.n_elem || p(e) > p(best))) best = e;
    taken[best] = true;
    chosen.push_back(best);
  }
  return chosen;
}

// g = p on the top-k experts, 0 elsewhere (no renormalisation: the kept gates sum to < 1).
// r: [N_r, T] logits;  returns g: [N_r, T].
// Traces router.r, router.p (softmax), router.experts [T, k] (chosen indices as doubles, largest
// first), router.g.
inline arma::mat seed_router_gates(const arma::mat& r, arma::uword k, Tracer* tr) {
  const arma::uword N_r = r.n_rows, T = r.n_cols;
  if (k == 0 || k > N_r)
    throw std::invalid_argument(
        fmt::format("seed_router_gates: k={} must be between 1 and N_r={}", k, N_r));
  arma::mat p(N_r, T), g(N_r, T, arma::fill::zeros), experts(k, T);
  for (arma::uword t = 0; t < T; ++t) {
    p.col(t) = softmax(arma::vec(r.col(t)));                        // 1) p_t = softmax(r_t)
    const std::vector<arma::uword> top = seed_top_k(p.col(t), k);   // 2) sort, find the top-k
    for (arma::uword n = 0; n < k; ++n) {
      g(top[n], t) = p(top[n], t);                                  // 3) keep them, zero the rest
      experts(n, t) = static_cast<double>(top[n]);
    }
  }
  TRACE(tr, "router.r", r);
  TRACE(tr, "router.p", p);
  TRACE(tr, "router.experts", experts);
  TRACE(tr, "router.g", g);
  return g;
}

}  // namespace dsr1::ref
