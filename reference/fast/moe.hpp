// The DeepSeekMoE block in float32 with tokens grouped per expert; mirrors reference/deepseek/moe.hpp.
// Leaves out: the residual (model.cpp) and the conformance faults.
//
// y_t = S(x_t) + sum_k g_{k,t} E_{i_{k,t}}(x_t)                              spec §6, §7
// Grouping: every routed expert e gathers the tokens that chose it into one matrix X_e [d, T_e]
// (in token order) and runs ONE SwiGLU product chain on it; each product is itself split into
// fixed blocks across threads (gemm.hpp). The routed sum of token t is then formed in
// increasing expert index, the order the reference uses, by one task per block of tokens.
#pragma once

#include <armadillo>

#include "reference/deepseek/config.hpp"
#include "reference/fast/options.hpp"
#include "reference/fast/weights.hpp"
#include "reference/trace/trace.hpp"

namespace dsr1::fast {

// x: [d, T];  returns [d, T]. Traces the router's names, moe.routed, moe.shared, moe.out.
arma::fmat moe_forward(const arma::fmat& x, const MoeWeightsF& W, const Config& c,
                       const Options& opt, Tracer* tr);

}  // namespace dsr1::fast
