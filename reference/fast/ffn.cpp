// SwiGLU FFN in float32 (see ffn.hpp).
#include "reference/fast/ffn.hpp"

#include <string>

#include "reference/fast/softmax.hpp"

namespace dsr1::fast {
namespace {

// act[i, t] = silu(gate_up[i, t]) * gate_up[I + i, t]; gate_up: [2I, T], act: [I, T]
DSR1_FAST_CLONES
void swiglu_act(const float* gate_up, std::int64_t I, std::int64_t T, float* act) {
  for (std::int64_t t = 0; t < T; ++t) {
    const float* gate = gate_up + t * 2 * I;
    const float* up = gate + I;
    float* a = act + t * I;
    for (std::int64_t i = 0; i < I; ++i) a[i] = silu_f32(gate[i]) * up[i];
  }
}

}  // namespace

arma::fmat swiglu_ffn(const arma::fmat& x, const FfnWeightsF& W, const Options& opt, Tracer* tr,
                      std::string_view prefix) {
  const std::int64_t I = W.I, T = static_cast<std::int64_t>(x.n_cols);
  const arma::fmat gate_up = gemm(W.W_gate_up, x, opt);  // gate_up: [2I, T]
  arma::fmat act(static_cast<arma::uword>(I), x.n_cols, arma::fill::none);  // act: [I, T], all written below
  swiglu_act(gate_up.memptr(), I, T, act.memptr());
  arma::fmat out = gemm(W.W_down, act, opt);  // out: [d, T]
  if (!prefix.empty()) TRACE(tr, std::string(prefix) + ".out", out);
  return out;
}

}  // namespace dsr1::fast
