// The DeepSeekMoE block (spec §6, §7): routed experts weighted by the router, plus the shared expert.
// Leaves out: the residual and the router's rules (router.cpp).
#include "reference/moe.hpp"

#include <fmt/format.h>

#include <stdexcept>
#include <vector>

#include "reference/ffn.hpp"

namespace dsr1::ref {

arma::mat moe_forward(const arma::mat& x, const MoeWeights& W, const Config& c, const Faults& f,
                      Tracer* tr) {
  const arma::uword d = x.n_rows, T = x.n_cols, N_r = c.n_routed_experts;
  if (W.experts.size() != N_r)
    throw std::invalid_argument(fmt::format("moe_forward: {} routed experts given, expected N_r={}",
                                            W.experts.size(), N_r));
  if ((c.n_shared_experts > 0) != W.shared.has_value())
    throw std::invalid_argument(fmt::format(
        "moe_forward: n_shared_experts={} but the shared expert weights are {}", c.n_shared_experts,
        W.shared ? "present" : "absent"));

  const Routing r = route(x, W, c, f, tr);  // experts, g: [K, T]
  const arma::uword K = r.experts.n_rows;

  // Routed part. Each expert runs once, on the tokens that chose it (as the official code
  // does), and its output is added into those tokens' columns with their gating weight.
  // For token t the terms are therefore summed in increasing expert index, not in k order.
  arma::mat routed(d, T, arma::fill::zeros);  // routed: [d, T]
  for (arma::uword e = 0; e < N_r; ++e) {
    std::vector<arma::uword> tokens;  // tokens routed to expert e
    std::vector<double> weights;      // their g for expert e
    for (arma::uword t = 0; t < T; ++t)
      for (arma::uword k = 0; k < K; ++k)
        if (r.experts(k, t) == e) {
          tokens.push_back(t);
          weights.push_back(r.g(k, t));
        }
    if (tokens.empty()) continue;
    const arma::mat x_e = x.cols(arma::uvec(tokens));  // x_e: [d, T_e]
    // No tracer: T_e differs per expert, so per-expert tensors would not line up by token.
    const arma::mat y_e =  // y_e: [d, T_e]
        swiglu_ffn(x_e, W.experts[e], nullptr, fmt::format("experts.{}", e));
    for (arma::uword j = 0; j < tokens.size(); ++j)
      for (arma::uword row = 0; row < d; ++row) routed(row, tokens[j]) += weights[j] * y_e(row, j);
  }
  TRACE(tr, "moe.routed", routed);

  // Shared part: every token, weight 1, added exactly once.
  arma::mat out = routed;  // out: [d, T]
  if (W.shared) {
    const arma::mat shared = swiglu_ffn(x, *W.shared, nullptr, "shared_experts");  // shared: [d, T]
    TRACE(tr, "moe.shared", shared);
    out += shared;
  }
  TRACE(tr, "moe.out", out);
  return out;
}

}  // namespace dsr1::ref
