// The SwiGLU feed-forward network in float32; mirrors reference/deepseek/ffn.hpp (ref::swiglu_ffn).
// Leaves out: routing (router.hpp, moe.hpp).
#pragma once

#include <armadillo>
#include <string_view>

#include "reference/fast/options.hpp"
#include "reference/fast/weights.hpp"
#include "reference/trace/trace.hpp"

namespace dsr1::fast {

// FFN(x) = W_down (silu(W_gate x) ⊙ (W_up x))                                     spec §6
// x: [d, T];  returns [d, T]. [W_gate ; W_up] is one product (weights.hpp), then one pass
// forms act = silu(gate) ⊙ up, then W_down. Traces "<prefix>.out" (empty prefix: nothing).
arma::fmat swiglu_ffn(const arma::fmat& x, const FfnWeightsF& W, const Options& opt, Tracer* tr,
                      std::string_view prefix = "ffn");

}  // namespace dsr1::fast
