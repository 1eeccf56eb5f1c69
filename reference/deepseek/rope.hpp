// Rotary position embedding (RoPE) with the YaRN frequency correction, and MLA's softmax scale.
// Leaves out: the attention itself (mla.hpp); no NTK-by-parts variants other than DeepSeek's YaRN.
//
// RoPE rotates pairs of channels of a query or key by an angle proportional to the token's
// absolute position: for pair i at position pos the angle is pos * θ'_i.          spec §4.6
//
//   Interleaved (the official weights, model.py): pair i is channels (2i, 2i+1)
//       y[2i]   = x[2i] cos(pos θ'_i) - x[2i+1] sin(pos θ'_i)
//       y[2i+1] = x[2i] sin(pos θ'_i) + x[2i+1] cos(pos θ'_i)
//   HalfSplit (GPT-NeoX "rotate_half", HF after its de-interleaving permutation): pair i is
//       channels (i, i + d_rope/2). Applying it directly to the official weights rotates the
//       wrong pairs (pitfall P1); it exists here to compare with implementations that permute.
//
// Frequencies: θ_i = rope_theta^(-2i/d_rope), i = 0 .. d_rope/2-1. With rope_scaling.type ==
// "yarn" they are blended towards θ_i / factor (spec §4.6), and the softmax scale gains the
// factor mscale(factor, mscale_all_dim)^2 (spec §4.5). Both always apply when the config says
// "yarn", whatever the sequence length (P3).
#pragma once

#include <armadillo>
#include <cstdint>

#include "reference/deepseek/config.hpp"
#include "reference/faults.hpp"

namespace dsr1::ref {

// Which channels form a rotation pair (see the header comment).
enum class RopeLayout { Interleaved, HalfSplit };

const char* rope_layout_name(RopeLayout layout);  // "interleaved" | "half-split"

// θ_i = rope_theta^(-2i/d_rope) for i = 0 .. d_rope/2-1.                           spec §4.6
// returns [d_rope/2]
arma::vec rope_theta(const Config& c);

// YaRN's blend range: corr_dim(r) = D ln(L0 / (2π r)) / (2 ln base), D = d_rope,
// L0 = original_max_position_embeddings; low = max(floor(corr_dim(beta_fast)), 0),
// high = min(ceil(corr_dim(beta_slow)), D-1), and high += 0.001 if they coincide.   spec §4.6
struct YarnRange {
  double low = 0;
  double high = 0;
};
YarnRange yarn_range(const Config& c);

// θ'_i = (θ_i / factor)(1 - keep_i) + θ_i keep_i with
// keep_i = 1 - clamp((i - low) / (high - low), 0, 1); equals θ_i unless type == "yarn".
// returns [d_rope/2]                                                                spec §4.6
arma::vec yarn_theta_prime(const Config& c);

// mscale(f, m) = 1 if f <= 1, else 0.1 m ln(f) + 1.                                spec §4.5
double yarn_mscale(double factor, double m);

// s_eff = (d_nope + d_rope)^(-1/2) * mscale(factor, mscale_all_dim)^2 under YaRN, else
// (d_nope + d_rope)^(-1/2).                                                         spec §4.5, P2
// Conformance faults: f.no_mscale drops the YaRN factor, f.mscale_not_squared applies it once.
double softmax_scale(const Config& c, const Faults& f = {});

// HF multiplies cos and sin by mscale(factor, mscale) / mscale(factor, mscale_all_dim). That
// ratio is exactly 1 for every official config (mscale == mscale_all_dim), and model.py never
// scales cos/sin; for a config where the two differ the reference follows HF.      spec §4.5
// returns 1 unless rope_scaling.type == "yarn"
double rope_cos_sin_scale(const Config& c);

// Rotate every consecutive d_rope-block of x: x is [m*d_rope, T] (m heads stacked on rows, or
// m = 1 for the shared key), column t is the token at absolute position pos0 + t.
// theta_prime: [d_rope/2];  returns [m*d_rope, T]. cos_sin_scale multiplies both cos and sin
// (see rope_cos_sin_scale; 1 for every official model).
arma::mat rope(const arma::mat& x, const arma::vec& theta_prime, std::int64_t pos0,
               RopeLayout layout, double cos_sin_scale = 1.0);

// The permutation HF applies before rotate_half: [x0, x1, x2, x3, ...] ->
// [x0, x2, ..., x_{D-2}, x1, x3, ..., x_{D-1}] within every d_rope-block of the rows of x.
// Interleaved RoPE followed by this permutation equals this permutation followed by HalfSplit RoPE.
arma::mat deinterleave(const arma::mat& x, std::int64_t d_rope);

}  // namespace dsr1::ref
