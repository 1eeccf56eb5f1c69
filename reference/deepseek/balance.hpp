// Training-time load balancing: V2's three auxiliary losses, V3's sequence-wise loss and bias update.
// Leaves out: gradients, token dropping and batching; none of this changes the forward pass.
//
// "Load balancing" measures how unevenly the router spreads tokens over experts and pushes
// it towards even. Two ingredients recur (spec §8):
//   f_i = N_r / (K T) * (number of tokens that chose expert i)   the load, scaled so that a
//         perfectly even spread gives f_i = 1 for every i (sum_i f_i = N_r always);
//   P_i = (1/T) * sum_t s_{i,t}                                   the mean affinity.
// A loss alpha * sum_i f_i P_i is smallest when the experts the router likes most (large P) are
// the least loaded (small f). With every f_i = 1 it equals alpha * sum_i P_i = alpha, because
// each token's affinities sum to 1 (softmax, or V3's normalised s').
#pragma once

#include <armadillo>

namespace dsr1::ref {

// load_i = number of (token, slot) pairs that chose expert i.  experts: [K, T];  returns [N_r]
arma::vec expert_load(const arma::umat& experts, arma::uword N_r);

// f_i = N_r / (K T) * load_i.  experts: [K, T];  returns [N_r]
arma::vec expert_fraction(const arma::umat& experts, arma::uword N_r);

// P_i = (1/T) sum_t s_{i,t}.  s: [N_r, T];  returns [N_r]
arma::vec mean_affinity(const arma::mat& s);

// V2 expert-level balance loss                                              spec §8.1
//   L_ExpBal = alpha1 * sum_i f_i P_i
// s: [N_r, T] softmax affinities over all experts;  experts: [K, T] the chosen experts.
double expert_balance_loss(const arma::mat& s, const arma::umat& experts, double alpha1);

// V2 device-level balance loss, experts split into D devices of N_r/D consecutive experts
//   L_DevBal = alpha2 * sum_{i=1..D} f'_i P'_i,  f'_i = mean of f_j on device i,  P'_i = sum of P_j on it
double device_balance_loss(const arma::mat& s, const arma::umat& experts, arma::uword D, double alpha2);

// V2 communication balance loss, M = per-token device limit (topk_group)
//   L_CommBal = alpha3 * sum_i f''_i P''_i,  f''_i = D/(M T) * #{tokens sent to device i},
//   P''_i = sum of P_j on device i
double communication_balance_loss(const arma::mat& s, const arma::umat& experts, arma::uword D,
                                  arma::uword M, double alpha3);

// V3 complementary sequence-wise balance loss over one sequence               spec §8.2
//   s'_{i,t} = s_{i,t} / sum_j s_{j,t};  P_i = (1/T) sum_t s'_{i,t}
//   f_i = N_r/(K T) * #{t : s_{i,t} among the top-K of s_{.,t}}  (ties to the lower index)
//   L_Bal = alpha * sum_i f_i P_i
// s: [N_r, T] sigmoid affinities (positive).
double sequence_balance_loss(const arma::mat& s, arma::uword K, double alpha);

// V3 auxiliary-loss-free bias update, once per training step                  spec §8.2
//   b_i <- b_i + gamma * sign(mean_load - load_i)
// An overloaded expert (load above the mean) loses gamma, an underloaded one gains gamma, an
// exactly average one keeps its bias. b, load: [N_r];  returns the new b.
arma::vec bias_update(const arma::vec& b, const arma::vec& load, double gamma);

}  // namespace dsr1::ref
