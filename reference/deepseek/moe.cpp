// The DeepSeekMoE block (spec §6, §7): routed experts weighted by the router, plus the shared expert.
// Leaves out: the residual and the router's rules (router.cpp).
#include "reference/deepseek/moe.hpp"

#include <fmt/format.h>

#include <stdexcept>

#include "reference/deepseek/ffn.hpp"

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

  // Routed part, token by token, in k order: routed_t = sum_k g_{k,t} E_{i_{k,t}}(x_t).
  // Each token runs through its experts on its own (a [d, 1] input), so its output never depends
  // on which other tokens share the batch: BLAS may round a matrix-matrix product differently
  // from a matrix-vector one, and a prefix of the sequence must give bit-identical results.
  // (fast/moe.cpp groups the tokens of each expert instead, as the official code does.)
  arma::mat routed(d, T, arma::fill::zeros);  // routed: [d, T]
  for (arma::uword t = 0; t < T; ++t) {
    const arma::mat x_t = x.col(t);  // x_t: [d, 1]
    for (arma::uword k = 0; k < K; ++k) {
      const arma::uword e = r.experts(k, t);
      const arma::mat y = swiglu_ffn(x_t, W.experts[e], nullptr, fmt::format("experts.{}", e));  // [d, 1]
      for (arma::uword row = 0; row < d; ++row) routed(row, t) += r.g(k, t) * y(row, 0);
    }
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
