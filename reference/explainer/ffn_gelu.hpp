// The conventional two-layer feed-forward network of the explainer (seed §1.4):
// z = GELU(W1 h + b1), f = W2 z + b2.
// Leaves out: DeepSeek's own FFN, which is SwiGLU without biases (spec §6, see moe.hpp).
//
// Which GELU: the exact form GELU(x) = x * Phi(x) = 0.5 * x * (1 + erf(x / sqrt(2))), Phi the
// standard normal CDF. It is the definition (Hendrycks & Gimpel) and PyTorch's default
// (nn.GELU(approximate='none')); the tanh formula is only an approximation of it, off by up to
// 4.7e-4 (near x = -2.7), which a float64 reference should not bake into its golden values.
#pragma once

#include <fmt/format.h>

#include <armadillo>
#include <cmath>
#include <stdexcept>

#include "reference/trace/trace.hpp"

namespace dsr1::ref {

// GELU(x) = 0.5 * x * (1 + erf(x / sqrt(2)))
inline double gelu(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

// W1: [I, D], b1: [I], W2: [D, I], b2: [D]  (I = hidden width)
struct GeluFfnWeights {
  arma::mat W1;
  arma::vec b1;
  arma::mat W2;
  arma::vec b2;
};

// f = W2 GELU(W1 h + b1) + b2, per token.
// h: [D, T];  returns f: [D, T].  Traces ffn.pre (W1 h + b1), ffn.z (after GELU), ffn.f.
inline arma::mat ffn_gelu(const arma::mat& h, const GeluFfnWeights& W, Tracer* tr) {
  const arma::uword D = h.n_rows, I = W.W1.n_rows;
  if (W.W1.n_cols != D || W.b1.n_elem != I || W.W2.n_rows != D || W.W2.n_cols != I ||
      W.b2.n_elem != D)
    throw std::invalid_argument(fmt::format(
        "ffn_gelu: h is [{} x {}]; W1 [{} x {}], b1 [{}], W2 [{} x {}], b2 [{}] do not fit "
        "(expected W1 [I x D], b1 [I], W2 [D x I], b2 [D] with D={})",
        h.n_rows, h.n_cols, W.W1.n_rows, W.W1.n_cols, W.b1.n_elem, W.W2.n_rows, W.W2.n_cols,
        W.b2.n_elem, D));
  arma::mat pre = W.W1 * h;  // pre: [I, T] = W1 h + b1
  for (arma::uword t = 0; t < h.n_cols; ++t)
    for (arma::uword i = 0; i < I; ++i) pre(i, t) += W.b1(i);
  arma::mat z(I, h.n_cols);  // z: [I, T] = GELU(pre), element by element
  for (arma::uword t = 0; t < h.n_cols; ++t)
    for (arma::uword i = 0; i < I; ++i) z(i, t) = gelu(pre(i, t));
  arma::mat f = W.W2 * z;  // f: [D, T] = W2 z + b2
  for (arma::uword t = 0; t < h.n_cols; ++t)
    for (arma::uword i = 0; i < D; ++i) f(i, t) += W.b2(i);
  TRACE(tr, "ffn.pre", pre);
  TRACE(tr, "ffn.z", z);
  TRACE(tr, "ffn.f", f);
  return f;
}

}  // namespace dsr1::ref
