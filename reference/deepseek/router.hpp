// The MoE router: which K of the N_r routed experts each token uses, and with what weights.
// Leaves out: running the experts (moe.hpp) and the training-time balance terms (balance.hpp).
//
// Two rule sets, chosen by Config::scoring_func and Config::topk_method (spec §7):
//
//   V2 / V2-Lite (softmax; group_limited_greedy / greedy)     spec §7.1
//     ell = W_g x;  s = softmax(ell)
//     V2 only: group score G_g = max of s over group g; keep the topk_group best groups
//     i_1..i_K = the K largest s among eligible experts;  g_k = s_{i_k} * routed_scaling_factor
//     (norm_topk_prob is false for the real V2 configs: no renormalisation, P8)
//
//   V3 / R1 (sigmoid; noaux_tc)                                 spec §7.2
//     ell = W_g x;  s = sigmoid(ell);  s_tilde = s + b   (b = e_score_correction_bias)
//     G_g = sum of the 2 largest s_tilde in group g; keep the topk_group best groups;
//     experts of the other groups get s_tilde = -inf (not 0: s_tilde can be negative, P6)
//     i_1..i_K = the K largest s_tilde;  g_k = routed_scaling_factor * s_{i_k} / sum_m s_{i_m}
//     The bias decides WHICH experts run, never how much they count (P4).
//
// Ordering and ties. Every top-k in this file (groups and experts) lists the winners in
// descending score order and breaks exact ties in favour of the lower index, so a run is
// deterministic. torch.topk promises no order for ties (spec §7.2, last note); the official
// code computes the router in float32 (and model.py its logits in bf16, spec §13, P7), so its
// choices can differ from this double-precision reference when two scores are within float32
// rounding of each other.
#pragma once

#include <armadillo>
#include <string_view>
#include <vector>

#include "reference/deepseek/config.hpp"
#include "reference/faults.hpp"
#include "reference/trace/trace.hpp"
#include "reference/deepseek/weights.hpp"

namespace dsr1::ref {

struct Routing {
  arma::umat experts;  // [K, T]: column t = chosen expert indices of token t, in descending
                       // selection-score order, ties -> lower index
  arma::mat g;         // [K, T]: final gating weights (after normalisation and routed_scaling_factor)
};

// How a group of experts is scored when the router limits a token to topk_group groups.
enum class GroupScoreRule {
  max,       // V2 group_limited_greedy: the best expert of the group
  top2_sum,  // V3 noaux_tc: the sum of the group's two best biased scores
};

// The indices of the k largest entries of v, largest first; an exact tie goes to the lower
// index. v: [n], no NaN;  returns k indices.  Throws if k > n.
std::vector<arma::uword> top_k_indices(const arma::vec& v, arma::uword k);

// Score of each of the n_group groups of N_r / n_group consecutive experts.
// s_select: [N_r] selection scores of one token;  returns [n_group]
arma::vec group_scores(const arma::vec& s_select, arma::uword n_group, GroupScoreRule rule);

// Checks shapes and the routing fields of the config; throws std::invalid_argument naming the
// field or tensor and what was expected. route() calls it first.
void check_router_inputs(const arma::mat& x, const MoeWeights& W, const Config& c);

// x: [d, T] (post-attention normalised hidden state). Implements spec §7.
// Traces moe.ell [T, N_r], moe.s [T, N_r], moe.s_tilde [T, N_r] (noaux_tc only),
// moe.group_scores and moe.group_mask [T, n_group] (when groups limit the choice),
// moe.experts [T, K] (as doubles), moe.g [T, K].
// Honours Faults::bias_in_weights (P4), group_score_max (P5), group_mask_zero (P6),
// renormalize_softmax (P8) and double_routed_scaling (P17), each a marked "conformance fault".
Routing route(const arma::mat& x, const MoeWeights& W, const Config& c, const Faults& f, Tracer* tr);

}  // namespace dsr1::ref
