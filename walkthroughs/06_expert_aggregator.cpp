// Walkthrough of the explainer's §2.2 and §2.3: the router of §2.1 picks experts for a token, only
// those experts run, and the aggregator merges their outputs f_t = sum_{r in Top-k} g_{t,r} FFN_r(h_t).
// Numbers: golden/seed/router.json and moe_gating.json (f_router). Formulas: reference/explainer/router.hpp,
// reference/explainer/aggregator.hpp, reference/explainer/ffn_gelu.hpp.
#include "reference/explainer/aggregator.hpp"
#include "reference/explainer/router.hpp"
#include "walkthroughs/walkthrough.hpp"

namespace dsr1::walk {

inline void walk_expert_aggregator(Walkthrough& w) {
  const GoldenFile gr = w.golden("router.json");
  const GoldenFile gm = w.golden("moe_gating.json");
  const arma::mat h = gm.tokens("inputs.h");  // h: [D=2, T=1]
  std::vector<ref::GeluFfnWeights> experts;
  for (int r = 0; r < 3; ++r) {
    const std::string p = fmt::format("parameters.experts.{}.", r);
    experts.push_back({gm.matrix(p + "W1"), gm.vec(p + "b1"), gm.matrix(p + "W2"), gm.vec(p + "b2")});
  }
  TraceScope scope(w.tr(), "aggregator");

  w.section("2.2-2.3", "Mixture of Experts and the expert aggregator");
  w.say("The router of §2.1 (r_t = [3.4, 1.1, 2.2], k = 2) chooses for the token; the three GELU");
  w.say("experts of §1.4 are the experts. Only the chosen ones run, then f_t = sum g_{t,r} FFN_r(h_t).");
  w.step("router gates (§2.1)");
  const arma::mat g = ref::seed_router_gates(gr.tokens("inputs.r"),
                                             static_cast<arma::uword>(gr.number("parameters.k")), w.tr());
  w.step("run the chosen experts E1 and E3 on h (E2 is dormant for this token), and aggregate");
  w.show("h", h);
  ref::seed_moe_ffn(h, g, experts, w.tr());
  w.say("moe.f = 0.7135 * E1(h) + 0.2149 * E3(h). With the document's rounded gates [0.70, 0, 0.24]");
  w.say("it would be 0.70 * E1(h) + 0.24 * E3(h); the golden file keeps the exact gates.");
}

}  // namespace dsr1::walk

#ifndef DSR1_WALKTHROUGH_NO_MAIN
int main(int argc, char** argv) {
  return dsr1::walk::run(argc, argv, "06_expert_aggregator",
                         "Explainer §2.2-2.3: routed experts and the aggregator",
                         {dsr1::walk::walk_expert_aggregator});
}
#endif
