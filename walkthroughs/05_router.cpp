// Walkthrough of the explainer's §2.1: the softmax top-k router on r_t = [3.4, 1.1, 2.2], k = 2.
// Numbers: golden/seed/router.json. Formulas: reference/explainer/router.hpp (ref::seed_router_gates).
#include "reference/explainer/router.hpp"
#include "walkthroughs/walkthrough.hpp"

namespace dsr1::walk {

inline void walk_router(Walkthrough& w) {
  const GoldenFile g = w.golden("router.json");
  const arma::mat r = g.tokens("inputs.r");  // r: [N_r=3, T=1]
  const auto k = static_cast<arma::uword>(g.number("parameters.k"));
  // No extra scope: the router's own names (router.r, router.p, ...) are the walkthrough's names.

  w.section("2.1", "Router network: softmax top-k gating");
  w.say("r_t = W^router h_t + b^router; 1) p_t = softmax(r_t); 2) sort p_t; 3) zero all but the top k.");
  w.say("No renormalisation: the kept gates sum to less than 1.");
  w.erratum("This is the document's router; DeepSeek-V3/R1 route differently (sigmoid scores, a "
            "selection-only bias, expert groups, renormalised and scaled gates; spec §7).");
  w.step("r_t = [3.4, 1.1, 2.2] (given by the document), p = softmax(r), the top-2, g");
  ref::seed_router_gates(r, k, w.tr());
  const arma::vec p = ref::softmax(arma::vec(r.col(0)));
  w.erratum(fmt::format("The document prints softmax(r_t) ~ [0.70, 0.06, 0.24]. The exact values "
                        "are [{}, {}, {}]: each printed number is off by more than its rounding.",
                        format_number(p(0), 4), format_number(p(1), 4), format_number(p(2), 4)));
  w.say("The choice is unchanged: experts 1 and 3 are active (indices 0 and 2");
  w.say(fmt::format("above), g_t = [{}, 0, {}] (the document: [0.70, 0, 0.24]).",
                    format_number(p(0), 4), format_number(p(2), 4)));
}

}  // namespace dsr1::walk

#ifndef DSR1_WALKTHROUGH_NO_MAIN
int main(int argc, char** argv) {
  return dsr1::walk::run(argc, argv, "05_router", "Explainer §2.1: the softmax top-k router",
                         {dsr1::walk::walk_router});
}
#endif
