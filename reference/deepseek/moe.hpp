// The DeepSeekMoE block: y = S(x) + sum_k g_k E_{i_k}(x), the shared expert plus the K routed ones.
// Leaves out: the residual (the block adds it), the router's rules (router.hpp) and training-time
// load balancing (balance.hpp).
#pragma once

#include <armadillo>
#include <cstdint>
#include <functional>

#include "reference/deepseek/config.hpp"
#include "reference/faults.hpp"
#include "reference/deepseek/router.hpp"
#include "reference/trace/trace.hpp"
#include "reference/deepseek/weights.hpp"

namespace dsr1::ref {

// MoE output without the residual:                                       spec §6, §7; V3P eq. 12
//   y_t = S(x_t) + sum_{k=1..K} g_{k,t} E_{i_{k,t}}(x_t)
// S is ONE SwiGLU MLP of width N_s*I_e (absent when N_s = 0); E_j is routed expert j (width I_e);
// i and g come from route(). x: [d, T];  returns [d, T].
// Traces the router's names (router.hpp), then moe.routed [T, d], moe.shared [T, d] (when
// N_s > 0) and moe.out [T, d]. The caller opens the "layers.{l}" scope.
// W holds every routed expert (W.experts.size() == N_r).
arma::mat moe_forward(const arma::mat& x, const MoeWeights& W, const Config& c, const Faults& f,
                      Tracer* tr);

// Where the routed experts come from when they are not all in memory: expert(j) returns routed
// expert j. moe_forward asks for each chosen expert exactly once per call, in ascending j, after
// routing, and drops it before asking for the next (the weight store fetches it from a checkpoint
// or the generator). W.experts is not read; W holds the router and the shared expert.
using ExpertFetch = std::function<FfnWeights(std::int64_t j)>;
arma::mat moe_forward(const arma::mat& x, const MoeWeights& W, const ExpertFetch& expert,
                      const Config& c, const Faults& f, Tracer* tr);

}  // namespace dsr1::ref
