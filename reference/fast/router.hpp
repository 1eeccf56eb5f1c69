// The MoE router for the fast path; mirrors reference/deepseek/router.hpp (ref::route).
// Leaves out: the conformance faults (the fast path runs the model as specified only).
//
// The logits ell = W_g x come from the float32 product; the rest (scores, bias, group limit,
// top-K, weights) is the reference's rule applied in double to those logits, with the
// reference's own top_k_indices and group_scores, so ties and ordering are decided identically.
// A choice can still differ from the double reference when two selection scores are closer
// than float32 rounding of the logits (~1e-7 relative); the tests would name moe.experts then.
#pragma once

#include <armadillo>

#include "reference/deepseek/config.hpp"
#include "reference/fast/options.hpp"
#include "reference/fast/weights.hpp"
#include "reference/trace/trace.hpp"

namespace dsr1::fast {

struct Routing {
  arma::umat experts;  // [K, T] chosen experts, descending selection score, ties -> lower index
  arma::mat g;         // [K, T] gating weights
};

// x: [d, T]. Traces moe.ell, moe.s, moe.experts, moe.g.
Routing route(const arma::fmat& x, const MoeWeightsF& W, const Config& c, const Options& opt,
              Tracer* tr);

}  // namespace dsr1::fast
