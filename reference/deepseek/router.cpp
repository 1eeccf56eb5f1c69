// The MoE router (spec §7): logits, scores, biased scores, group limit, top-K, weights.
// Leaves out: the experts themselves (moe.cpp).
#include "reference/deepseek/router.hpp"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "reference/deepseek/softmax.hpp"

namespace dsr1::ref {

std::vector<arma::uword> top_k_indices(const arma::vec& v, arma::uword k) {
  const arma::uword n = v.n_elem;
  if (k > n)
    throw std::invalid_argument(fmt::format("top_k_indices: asked for k={} of only n={} entries", k, n));
  std::vector<bool> taken(n, false);
  std::vector<arma::uword> chosen;
  chosen.reserve(k);
  // k passes of "largest not yet taken". Scanning upward and replacing the best only on a
  // strictly larger value is what makes the lower index win an exact tie.
  for (arma::uword j = 0; j < k; ++j) {
    arma::uword best = n;
    for (arma::uword i = 0; i < n; ++i) {
      if (taken[i]) continue;
      if (std::isnan(v(i)))
        throw std::invalid_argument(fmt::format("top_k_indices: entry {} is NaN", i));
      if (best == n || v(i) > v(best)) best = i;
    }
    taken[best] = true;
    chosen.push_back(best);
  }
  return chosen;
}

arma::vec group_scores(const arma::vec& s_select, arma::uword n_group, GroupScoreRule rule) {
  const arma::uword N_r = s_select.n_elem;
  if (n_group == 0 || N_r % n_group != 0)
    throw std::invalid_argument(fmt::format(
        "group_scores: {} experts cannot be split into n_group={} equal groups", N_r, n_group));
  const arma::uword per_group = N_r / n_group;
  if (rule == GroupScoreRule::top2_sum && per_group < 2)
    throw std::invalid_argument(fmt::format(
        "group_scores: the top-2 sum needs at least 2 experts per group, got {} ({} experts, "
        "n_group={})", per_group, N_r, n_group));
  arma::vec G(n_group);  // G: [n_group]
  for (arma::uword grp = 0; grp < n_group; ++grp) {
    // Group grp holds the consecutive experts grp*per_group .. (grp+1)*per_group - 1.
    const arma::vec members = s_select.subvec(grp * per_group, (grp + 1) * per_group - 1);
    if (rule == GroupScoreRule::max) {
      double best = members(0);
      for (arma::uword j = 1; j < per_group; ++j) best = std::max(best, members(j));
      G(grp) = best;
    } else {
      const std::vector<arma::uword> two = top_k_indices(members, 2);
      G(grp) = members(two[0]) + members(two[1]);
    }
  }
  return G;
}

namespace {

bool is_one_of(const std::string& v, std::initializer_list<const char*> options) {
  for (const char* o : options)
    if (v == o) return true;
  return false;
}

// Does this configuration limit each token to topk_group of n_group groups?
// greedy never does (V2-Lite; the HF greedy branch ignores groups); with one group the limit
// keeps everything and is skipped.
bool uses_groups(const Config& c) { return c.topk_method != "greedy" && c.n_group > 1; }

}  // namespace

void check_router_inputs(const arma::mat& x, const MoeWeights& W, const Config& c) {
  const auto fail = [&](const std::string& msg) {
    throw std::invalid_argument(fmt::format("route ({}): {}", c.name.empty() ? "config" : c.name, msg));
  };
  if (!is_one_of(c.scoring_func, {"softmax", "sigmoid"}))
    fail(fmt::format("scoring_func is \"{}\", expected \"softmax\" or \"sigmoid\"", c.scoring_func));
  if (!is_one_of(c.topk_method, {"greedy", "group_limited_greedy", "noaux_tc"}))
    fail(fmt::format("topk_method is \"{}\", expected greedy, group_limited_greedy or noaux_tc",
                     c.topk_method));
  const std::int64_t N_r = c.n_routed_experts, K = c.num_experts_per_tok;
  if (N_r <= 0) fail(fmt::format("n_routed_experts is {}, expected > 0 in an MoE layer", N_r));
  if (K <= 0 || K > N_r)
    fail(fmt::format("num_experts_per_tok is {}, expected 1..n_routed_experts={}", K, N_r));
  if (x.n_rows != static_cast<arma::uword>(c.hidden_size))
    fail(fmt::format("x is [{} x {}], expected [d={} x T]", x.n_rows, x.n_cols, c.hidden_size));
  if (W.W_g.n_rows != static_cast<arma::uword>(N_r) || W.W_g.n_cols != x.n_rows)
    fail(fmt::format("W_g (mlp.gate.weight) is [{} x {}], expected [N_r={} x d={}]", W.W_g.n_rows,
                     W.W_g.n_cols, N_r, x.n_rows));
  if (c.topk_method == "noaux_tc") {
    if (W.b.n_elem != static_cast<arma::uword>(N_r))
      fail(fmt::format("topk_method noaux_tc needs e_score_correction_bias b with N_r={} entries, got {}",
                       N_r, W.b.n_elem));
    if (!W.b.is_finite()) fail("e_score_correction_bias b has a non-finite entry");
  } else if (W.b.n_elem != 0) {
    fail(fmt::format("e_score_correction_bias b has {} entries but topk_method {} uses no bias",
                     W.b.n_elem, c.topk_method));
  }
  if (uses_groups(c)) {
    if (N_r % c.n_group != 0)
      fail(fmt::format("n_routed_experts={} is not divisible by n_group={}", N_r, c.n_group));
    if (c.topk_group < 1 || c.topk_group > c.n_group)
      fail(fmt::format("topk_group is {}, expected 1..n_group={}", c.topk_group, c.n_group));
    const std::int64_t eligible = c.topk_group * (N_r / c.n_group);
    if (K > eligible)
      fail(fmt::format("num_experts_per_tok={} exceeds the {} experts in topk_group={} groups", K,
                       eligible, c.topk_group));
    if (c.topk_method == "noaux_tc" && N_r / c.n_group < 2)
      fail(fmt::format("noaux_tc scores a group by its top-2 sum, but n_group={} leaves {} expert(s) "
                       "per group", c.n_group, N_r / c.n_group));
  }
}

Routing route(const arma::mat& x, const MoeWeights& W, const Config& c, const Faults& f, Tracer* tr) {
  check_router_inputs(x, W, c);
  const arma::uword N_r = c.n_routed_experts, K = c.num_experts_per_tok, T = x.n_cols;
  const bool biased = c.topk_method == "noaux_tc";  // V3: the gate carries e_score_correction_bias
  const bool grouped = uses_groups(c);
  const double inf = std::numeric_limits<double>::infinity();

  for (arma::uword t = 0; t < T; ++t)
    for (arma::uword j = 0; j < x.n_rows; ++j)
      if (!std::isfinite(x(j, t)))
        throw std::invalid_argument(fmt::format("route: x[{}] of token {} is {}", j, t, x(j, t)));

  // 1. Router logits ell = W_g x.
  const arma::mat ell = W.W_g * x;  // ell: [N_r, T]
  for (arma::uword t = 0; t < T; ++t)
    for (arma::uword i = 0; i < N_r; ++i)
      if (!std::isfinite(ell(i, t)))
        throw std::invalid_argument(fmt::format(
            "route: router logit ell[{}] of token {} is {} (W_g holds inf/NaN or overflows)", i, t, ell(i, t)));

  // 2. Affinity scores s: softmax over all N_r experts (V2) or an independent sigmoid per
  //    expert (V3). These, not the biased ones, become the gating weights.
  arma::mat s(N_r, T);  // s: [N_r, T]
  if (c.scoring_func == "softmax") {
    s = softmax_columns(ell);
  } else {
    for (arma::uword t = 0; t < T; ++t)
      for (arma::uword i = 0; i < N_r; ++i) s(i, t) = sigmoid(ell(i, t));
  }

  // 3. Selection scores s_tilde = s + b (V3). The bias is a load-balancing knob learned outside
  //    the gradient (spec §8.2): it shifts which experts win, never how much they contribute.
  arma::mat s_tilde = s;  // s_tilde: [N_r, T]
  if (biased)
    for (arma::uword t = 0; t < T; ++t)
      for (arma::uword i = 0; i < N_r; ++i) s_tilde(i, t) = s(i, t) + W.b(i);

  TRACE(tr, "moe.ell", ell);
  TRACE(tr, "moe.s", s);
  if (biased) TRACE(tr, "moe.s_tilde", s_tilde);

  // 4. Group limit (V2 "devices", V3 "nodes"): score each group, keep the topk_group best, and
  //    make every expert of a dropped group ineligible. The masked copy is only for selection.
  arma::mat s_select = s_tilde;  // s_select: [N_r, T]
  if (grouped) {
    const arma::uword n_group = c.n_group, per_group = N_r / n_group;
    GroupScoreRule rule = biased ? GroupScoreRule::top2_sum : GroupScoreRule::max;
    if (biased && f.group_score_max) rule = GroupScoreRule::max;  // conformance fault (P5)
    // An ineligible expert must lose against every eligible one. s_tilde can be negative when
    // b < 0, so 0 is not low enough: a masked expert at 0 would beat an eligible one at -0.1.
    double masked_value = -inf;
    if (f.group_mask_zero) masked_value = 0.0;  // conformance fault (P6)

    arma::mat G(n_group, T);                         // G: [n_group, T]
    arma::mat group_mask(n_group, T, arma::fill::zeros);  // group_mask: [n_group, T], 1 = kept
    for (arma::uword t = 0; t < T; ++t) {
      G.col(t) = group_scores(s_tilde.col(t), n_group, rule);
      for (arma::uword grp : top_k_indices(G.col(t), c.topk_group)) group_mask(grp, t) = 1.0;
      for (arma::uword grp = 0; grp < n_group; ++grp)
        if (group_mask(grp, t) == 0.0)
          for (arma::uword j = 0; j < per_group; ++j) s_select(grp * per_group + j, t) = masked_value;
    }
    TRACE(tr, "moe.group_scores", G);
    TRACE(tr, "moe.group_mask", group_mask);
  }

  // 5. Top-K experts by selection score, largest first, ties to the lower index.
  Routing r;
  r.experts.set_size(K, T);  // experts: [K, T]
  for (arma::uword t = 0; t < T; ++t) {
    const std::vector<arma::uword> chosen = top_k_indices(s_select.col(t), K);
    for (arma::uword k = 0; k < K; ++k) r.experts(k, t) = chosen[k];
  }

  // 6. Gating weights from the UNBIASED scores s (P4), renormalised over the K chosen when
  //    norm_topk_prob (V3), then multiplied by routed_scaling_factor exactly once (P8, P17).
  bool normalise = c.norm_topk_prob;
  if (f.renormalize_softmax) normalise = true;  // conformance fault (P8): V2 must not renormalise
  double scale = c.routed_scaling_factor;
  if (f.double_routed_scaling) scale *= c.routed_scaling_factor;  // conformance fault (P17)
  r.g.set_size(K, T);  // g: [K, T]
  for (arma::uword t = 0; t < T; ++t) {
    for (arma::uword k = 0; k < K; ++k) {
      const arma::uword i = r.experts(k, t);
      r.g(k, t) = s(i, t);
      if (f.bias_in_weights) r.g(k, t) = s_tilde(i, t);  // conformance fault (P4)
    }
    if (normalise) {
      double sum = 0.0;
      for (arma::uword k = 0; k < K; ++k) sum += r.g(k, t);
      if (!(sum > 0.0))
        throw std::runtime_error(fmt::format(
            "route: the {} chosen scores of token {} sum to {}; cannot normalise them", K, t, sum));
      for (arma::uword k = 0; k < K; ++k) r.g(k, t) /= sum;
    }
    for (arma::uword k = 0; k < K; ++k) r.g(k, t) *= scale;
  }

  if (tr) {
    const arma::mat experts_as_double = arma::conv_to<arma::mat>::from(r.experts);  // [K, T]
    TRACE(tr, "moe.experts", experts_as_double);
  }
  TRACE(tr, "moe.g", r.g);
  return r;
}

}  // namespace dsr1::ref
