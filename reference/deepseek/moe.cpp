// The DeepSeekMoE block (spec §6, §7): routed experts weighted by the router, plus the shared expert.
// Leaves out: the residual and the router's rules (router.cpp).
#include "reference/deepseek/moe.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "reference/deepseek/ffn.hpp"

namespace dsr1::ref {

arma::mat moe_forward(const arma::mat& x, const MoeWeights& W, const Config& c, const Faults& f,
                      Tracer* tr) {
  if (W.experts.size() != static_cast<std::size_t>(c.n_routed_experts))
    throw std::invalid_argument(fmt::format("moe_forward: {} routed experts given, expected N_r={}",
                                            W.experts.size(), c.n_routed_experts));
  const ExpertFetch from_memory = [&W](std::int64_t j) { return W.experts[static_cast<std::size_t>(j)]; };
  return moe_forward(x, W, from_memory, c, f, tr);
}

arma::mat moe_forward(const arma::mat& x, const MoeWeights& W, const ExpertFetch& expert,
                      const Config& c, const Faults& f, Tracer* tr) {
  const arma::uword d = x.n_rows, T = x.n_cols;
  if ((c.n_shared_experts > 0) != W.shared.has_value())
    throw std::invalid_argument(fmt::format(
        "moe_forward: n_shared_experts={} but the shared expert weights are {}", c.n_shared_experts,
        W.shared ? "present" : "absent"));

  const Routing r = route(x, W, c, f, tr);  // experts, g: [K, T]
  const arma::uword K = r.experts.n_rows;

  // Each chosen expert once, in ascending index: y[t][k] = E_{i_{k,t}}(x_t), [d, 1].
  // Each token runs through its experts on its own (a [d, 1] input), so its output never depends
  // on which other tokens share the batch: BLAS may round a matrix-matrix product differently
  // from a matrix-vector one, and a prefix of the sequence must give bit-identical results.
  // (fast/moe.cpp groups the tokens of each expert instead, as the official code does.)
  std::vector<std::vector<arma::mat>> y(T, std::vector<arma::mat>(K));
  std::vector<arma::uword> chosen(r.experts.begin(), r.experts.end());
  std::sort(chosen.begin(), chosen.end());
  chosen.erase(std::unique(chosen.begin(), chosen.end()), chosen.end());
  for (const arma::uword e : chosen) {
    const FfnWeights E = expert(static_cast<std::int64_t>(e));  // fetched now, dropped below
    for (arma::uword t = 0; t < T; ++t)
      for (arma::uword k = 0; k < K; ++k)
        if (r.experts(k, t) == e) {
          const arma::mat x_t = x.col(t);  // x_t: [d, 1]
          y[t][k] = swiglu_ffn(x_t, E, nullptr, fmt::format("experts.{}", e));
        }
  }

  // Routed part, token by token, in k order: routed_t = sum_k g_{k,t} E_{i_{k,t}}(x_t).
  arma::mat routed(d, T, arma::fill::zeros);  // routed: [d, T]
  for (arma::uword t = 0; t < T; ++t)
    for (arma::uword k = 0; k < K; ++k)
      for (arma::uword row = 0; row < d; ++row) routed(row, t) += r.g(k, t) * y[t][k](row, 0);
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
