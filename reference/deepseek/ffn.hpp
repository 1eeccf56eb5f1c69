// The SwiGLU feed-forward network: FFN(x) = W_down (silu(W_gate x) ⊙ (W_up x)).
// Leaves out: routing (router.hpp) and the mixture of experts around it (moe.hpp).
//
// The same function serves the dense FFN of the first first_k_dense_replace layers (width I),
// every routed expert (width I_e) and the shared expert (ONE MLP of width N_s*I_e, not N_s
// experts summed: spec §6). The HF names are gate_proj = w1, up_proj = w3, down_proj = w2.
#pragma once

#include <armadillo>
#include <fmt/format.h>
#include <stdexcept>
#include <string>
#include <string_view>

#include "reference/deepseek/softmax.hpp"
#include "reference/trace/trace.hpp"
#include "reference/deepseek/weights.hpp"

namespace dsr1::ref {

// FFN(x) = W_down (silu(W_gate x) ⊙ (W_up x))                                         spec §6
// x: [d, T];  W_gate, W_up: [I, d];  W_down: [d, I];  returns [d, T]
// Traces "<prefix>.gate" [T, I], "<prefix>.up" [T, I], "<prefix>.act" [T, I], "<prefix>.out" [T, d];
// with a null tracer or an empty prefix nothing is recorded. The prefix also names the FFN in
// error messages, so moe_forward passes "experts.{j}" / "shared_experts" with a null tracer.
inline arma::mat swiglu_ffn(const arma::mat& x, const FfnWeights& W, Tracer* tr,
                            std::string_view prefix = "ffn") {
  const arma::uword d = x.n_rows, I = W.W_gate.n_rows;
  const std::string what = prefix.empty() ? std::string("ffn") : std::string(prefix);
  if (W.W_gate.n_cols != d || W.W_up.n_rows != I || W.W_up.n_cols != d || W.W_down.n_rows != d ||
      W.W_down.n_cols != I)
    throw std::invalid_argument(fmt::format(
        "swiglu_ffn ({}): x is [{} x {}], W_gate [{} x {}], W_up [{} x {}], W_down [{} x {}]; "
        "expected W_gate and W_up [I x d={}] with the same I, W_down [d={} x I={}]",
        what, x.n_rows, x.n_cols, W.W_gate.n_rows, W.W_gate.n_cols, W.W_up.n_rows, W.W_up.n_cols,
        W.W_down.n_rows, W.W_down.n_cols, d, d, I));

  const arma::mat gate = W.W_gate * x;  // gate: [I, T]
  const arma::mat up = W.W_up * x;      // up: [I, T]
  // act = silu(gate) ⊙ up: the gate decides, element by element, how much of `up` passes.
  arma::mat act(I, x.n_cols);  // act: [I, T]
  for (arma::uword t = 0; t < x.n_cols; ++t)
    for (arma::uword i = 0; i < I; ++i) act(i, t) = silu(gate(i, t)) * up(i, t);
  arma::mat out = W.W_down * act;  // out: [d, T]

  if (!prefix.empty()) {
    TRACE(tr, std::string(prefix) + ".gate", gate);
    TRACE(tr, std::string(prefix) + ".up", up);
    TRACE(tr, std::string(prefix) + ".act", act);
    TRACE(tr, std::string(prefix) + ".out", out);
  }
  return out;
}

}  // namespace dsr1::ref
