// Walkthrough of the explainer's §1.3: the residual connection h_t^(after attn) = h_t + u_t, on the
// attention output of §1.2 (causal reading).
// Numbers: golden/seed/attention_two_head.json. Formulas: reference/deepseek/residual.hpp, reference/explainer/attention.hpp.
#include "reference/explainer/attention.hpp"
#include "reference/deepseek/residual.hpp"
#include "walkthroughs/walkthrough.hpp"

namespace dsr1::walk {

inline void walk_residual(Walkthrough& w) {
  const GoldenFile g = w.golden("attention_two_head.json");
  const arma::mat h = g.tokens("inputs.h");  // h: [D=4, T=2]
  const ref::MhaWeights W{g.matrix("parameters.W_Q"), g.matrix("parameters.W_K"),
                          g.matrix("parameters.W_V"), g.matrix("parameters.W_O"),
                          static_cast<arma::uword>(g.number("parameters.n_heads"))};
  TraceScope scope(w.tr(), "residual");

  w.section("1.3", "Residual connection");
  w.say("h_t^(after attn) = h_t + u_t: the attention sublayer's input is added back to its output.");
  w.step("the block input h (the two tokens of §1.2)");
  w.show("h", h);
  w.step("the attention output u of §1.2 (causal reading, W^O = I)");
  const arma::mat u = ref::attention(h, W, ref::AttentionMask::causal, nullptr);
  w.show("u", u);
  w.step("add: h_after_attn = h + u");
  const arma::mat h_attn = ref::residual_add(h, u);
  w.show("h_attn", h_attn);
  w.picture([&] {
    arma::mat norms(2, h.n_cols);  // norms: [stages, T], |h_t| before and after the addition
    for (arma::uword t = 0; t < h.n_cols; ++t) {
      norms(0, t) = arma::norm(h.col(t));
      norms(1, t) = arma::norm(h_attn.col(t));
    }
    return html::residual_norm_chart("The residual stream's norm |h_t| before and after adding u",
                                     {"h", "h + u"}, norms, w.options().precision);
  });
  w.say("Token 1: u_1 = v_1 = h_1 (identity projections, it sees only itself), so h + u = 2 h_1.");
}

}  // namespace dsr1::walk

#ifndef DSR1_WALKTHROUGH_NO_MAIN
int main(int argc, char** argv) {
  return dsr1::walk::run(argc, argv, "03_residual", "Explainer §1.3: the residual connection",
                         {dsr1::walk::walk_residual});
}
#endif
