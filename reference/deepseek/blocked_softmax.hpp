// Softmax-weighted sums over keys visited in blocks: the two rearrangements the fast path's
// attention uses (docs/fast-path.md), written plainly in double for one query row, so that a
// reader can check by hand that they equal the direct formula.
// Leaves out: several rows and heads, threads, float32 (reference/fast/mla.cpp has those).
//
// For scores s_j and values c_j (j = 0 .. n-1; in MLA s_j is a score and c_j = c_kv_hat_j):
//   direct   p_j = exp(s_j - M) / sum_k exp(s_k - M), M = max_k s_k;   z = sum_j p_j c_j
//   block b  (keys j0 .. j1-1): m_b = max_j s_j, l_b = sum_j exp(s_j - m_b),
//            z_b = sum_j exp(s_j - m_b) c_j                      (its own softmax, unnormalised)
//   merge    m = max_b m_b, w_b = exp(m_b - m), z = (sum_b w_b z_b) / (sum_b w_b l_b)   (decode)
//   online   after each block: m' = max(m, m_b), alpha = exp(m - m'),
//            l' = alpha l + sum_j exp(s_j - m'), z' = alpha z + sum_j exp(s_j - m') c_j;
//            at the end z / l                                                           (prefill)
// All three equal the direct formula in exact arithmetic, because exp(s_j - m_b) w_b =
// exp(s_j - m): every block's terms are rescaled to the same reference point before they meet.
// A masked key has s_j = -inf and weight 0; a block whose keys are all masked has m_b = -inf,
// l_b = 0, z_b = 0 and takes no part in the merge.
#pragma once

#include <armadillo>
#include <vector>

namespace dsr1::ref {

// The softmax state of a run of keys: max score m, sum l of exp(s_j - m), and the unnormalised
// weighted sum z = sum_j exp(s_j - m) c_j: [r].
struct SoftmaxBlock {
  double m = -arma::datum::inf;
  double l = 0.0;
  arma::vec z;
};

// z = sum_j softmax(s)_j c_j. s: [n], C: [r, n] (column j is c_j). Returns [r].
arma::vec softmax_weighted_sum(const arma::vec& s, const arma::mat& C);

// The block of keys j0 .. j1-1 on its own: m_b, l_b, z_b.
SoftmaxBlock block_softmax(const arma::vec& s, const arma::mat& C, arma::uword j0, arma::uword j1);

// (sum_b w_b z_b) / (sum_b w_b l_b) with w_b = exp(m_b - max_b m_b), blocks in the given order.
// w (if not null) receives the weights w_b. Returns [r].
arma::vec merge_blocks(const std::vector<SoftmaxBlock>& blocks, std::vector<double>* w = nullptr);

// One online step: the running state after keys j0 .. j1-1 are added to `state`. alpha (if not
// null) receives the rescaling factor exp(m_old - m_new) of the old l and z.
SoftmaxBlock online_softmax_step(const SoftmaxBlock& state, const arma::vec& s, const arma::mat& C,
                                 arma::uword j0, arma::uword j1, double* alpha = nullptr);

}  // namespace dsr1::ref
