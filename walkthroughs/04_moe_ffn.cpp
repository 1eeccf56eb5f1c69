// Walkthrough of the explainer's §1.4: the conventional FFN with GELU, and the MoE feed-forward
// 0.7 * E1(h) + 0.3 * E2(h) with expert 3 dormant, then the residual h' = h + f.
// Numbers: golden/seed/moe_gating.json. Formulas: reference/explainer/ffn_gelu.hpp, aggregator.hpp.
#include "reference/explainer/aggregator.hpp"
#include "reference/explainer/ffn_gelu.hpp"
#include "reference/deepseek/residual.hpp"
#include "walkthroughs/walkthrough.hpp"

namespace dsr1::walk {

inline std::vector<ref::GeluFfnWeights> seed_experts(const GoldenFile& g) {
  std::vector<ref::GeluFfnWeights> experts;
  for (int r = 0; r < 3; ++r) {
    const std::string p = fmt::format("parameters.experts.{}.", r);
    experts.push_back({g.matrix(p + "W1"), g.vec(p + "b1"), g.matrix(p + "W2"), g.vec(p + "b2")});
  }
  return experts;
}

inline void walk_moe_ffn(Walkthrough& w) {
  const GoldenFile g = w.golden("moe_gating.json");
  const arma::mat h = g.tokens("inputs.h");  // h: [D=2, T=1]
  const std::vector<ref::GeluFfnWeights> experts = seed_experts(g);
  const arma::mat gates(g.vec("parameters.g"));  // g: [N_r=3, T=1]
  TraceScope scope(w.tr(), "moe_ffn");

  w.section("1.4", "Feed-forward network and Mixture of Experts");
  w.say("Conventional FFN: z_t = GELU(W1 h_t + b1), f_t = W2 z_t + b2. GELU is the exact erf form");
  w.say("0.5 x (1 + erf(x / sqrt 2)) (the definition; the tanh formula only approximates it).");
  w.say("The document gives the gates g_t = [0.7, 0.3, 0.0] but no experts; ours are three small");
  w.say("GELU FFNs with D = 2 and hidden width 3 (weights in golden/seed/moe_gating.json).");
  w.step("the token");
  w.show("h", h);
  for (arma::uword r = 0; r < 2; ++r) {
    TraceScope es(w.tr(), fmt::format("E{}", r + 1));
    w.step(fmt::format("expert E{}: pre-activation W1 h + b1, GELU, then W2 z + b2", r + 1));
    ref::ffn_gelu(h, experts[r], w.tr());
  }
  w.say("GELU(1) = Phi(1) = 0.8413, GELU(-1) = -0.1587, GELU(2) = 2 Phi(2) = 1.9545, GELU(0) = 0.");
  w.step("gates [0.7, 0.3, 0.0]: f = 0.7 * E1(h) + 0.3 * E2(h); E3 is dormant and never runs");
  const arma::mat f = ref::seed_moe_ffn(h, gates, experts, nullptr);
  w.show("g", gates);
  w.show("f", f);
  w.step("residual: h' = h^(after attn) + f (here the token h stands for h^(after attn))");
  w.show("h_prime", ref::residual_add(h, f));
}

}  // namespace dsr1::walk

#ifndef DSR1_WALKTHROUGH_NO_MAIN
int main(int argc, char** argv) {
  return dsr1::walk::run(argc, argv, "04_moe_ffn",
                         "Explainer §1.4: GELU FFN experts combined with gates 0.7 and 0.3",
                         {dsr1::walk::walk_moe_ffn});
}
#endif
