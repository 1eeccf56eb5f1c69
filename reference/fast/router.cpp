// The MoE router (see router.hpp): float32 logits, the reference's selection rules in double.
#include "reference/fast/router.hpp"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <stdexcept>

#include "reference/deepseek/router.hpp"
#include "reference/deepseek/softmax.hpp"

namespace dsr1::fast {

Routing route(const arma::fmat& x, const MoeWeightsF& W, const Config& c, const Options& opt,
              Tracer* tr) {
  const arma::uword N_r = c.n_routed_experts, K = c.num_experts_per_tok, T = x.n_cols;
  const bool biased = c.topk_method == "noaux_tc";
  const bool grouped = c.topk_method != "greedy" && c.n_group > 1;
  if (biased && W.b.size() != N_r)
    throw std::invalid_argument(fmt::format(
        "fast::route: noaux_tc needs e_score_correction_bias of {} entries, got {}", N_r, W.b.size()));
  const arma::mat ell = arma::conv_to<arma::mat>::from(gemm(W.W_g, x, opt));  // ell: [N_r, T]
  for (arma::uword t = 0; t < T; ++t)
    for (arma::uword i = 0; i < N_r; ++i)
      if (!std::isfinite(ell(i, t)))
        throw std::invalid_argument(
            fmt::format("fast::route: router logit ell[{}] of token {} is {}", i, t, ell(i, t)));
  arma::mat s(N_r, T);  // s: [N_r, T]
  if (c.scoring_func == "softmax")
    s = ref::softmax_columns(ell);
  else
    for (arma::uword t = 0; t < T; ++t)
      for (arma::uword i = 0; i < N_r; ++i) s(i, t) = ref::sigmoid(ell(i, t));
  TRACE(tr, "moe.ell", ell);
  TRACE(tr, "moe.s", s);

  Routing r;
  r.experts.set_size(K, T);
  r.g.set_size(K, T);
  for (arma::uword t = 0; t < T; ++t) {
    arma::vec s_select = s.col(t);  // s_tilde = s + b for V3, masked by the group limit
    if (biased)
      for (arma::uword i = 0; i < N_r; ++i) s_select(i) += W.b[i];
    if (grouped) {
      const arma::uword n_group = c.n_group, per_group = N_r / n_group;
      const arma::vec G = ref::group_scores(
          s_select, n_group, biased ? ref::GroupScoreRule::top2_sum : ref::GroupScoreRule::max);
      std::vector<bool> kept(n_group, false);
      for (arma::uword grp : ref::top_k_indices(G, c.topk_group)) kept[grp] = true;
      for (arma::uword grp = 0; grp < n_group; ++grp)
        if (!kept[grp])
          for (arma::uword j = 0; j < per_group; ++j)
            s_select(grp * per_group + j) = -std::numeric_limits<double>::infinity();
    }
    const std::vector<arma::uword> chosen = ref::top_k_indices(s_select, K);
    double sum = 0.0;
    for (arma::uword k = 0; k < K; ++k) {
      r.experts(k, t) = chosen[k];
      r.g(k, t) = s(chosen[k], t);
      sum += r.g(k, t);
    }
    if (c.norm_topk_prob) {
      if (!(sum > 0.0))
        throw std::runtime_error(fmt::format("fast::route: chosen scores of token {} sum to {}", t, sum));
      for (arma::uword k = 0; k < K; ++k) r.g(k, t) /= sum;
    }
    for (arma::uword k = 0; k < K; ++k) r.g(k, t) *= c.routed_scaling_factor;
  }
  if (tr) {
    const arma::mat experts_as_double = arma::conv_to<arma::mat>::from(r.experts);
    TRACE(tr, "moe.experts", experts_as_double);
  }
  TRACE(tr, "moe.g", r.g);
  return r;
}

}  // namespace dsr1::fast
