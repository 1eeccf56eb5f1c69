// Walkthrough of the explainer's §1.2: two-head attention on two tokens (D = 4, d_k = 2), finished
// with the same inputs for the causal and the bidirectional reading.
// Numbers: golden/seed/attention_two_head.json. Formulas: reference/explainer/attention.hpp.
#include "reference/explainer/attention.hpp"
#include "walkthroughs/walkthrough.hpp"

namespace dsr1::walk {

inline void walk_attention(Walkthrough& w) {
  const GoldenFile g = w.golden("attention_two_head.json");
  const arma::mat h = g.tokens("inputs.h");  // h: [D=4, T=2]
  const ref::MhaWeights W{g.matrix("parameters.W_Q"), g.matrix("parameters.W_K"),
                          g.matrix("parameters.W_V"), g.matrix("parameters.W_O"),
                          static_cast<arma::uword>(g.number("parameters.n_heads"))};
  const arma::uword d_k = h.n_rows / W.n_heads;
  TraceScope scope(w.tr(), "attention");

  w.section("1.2", "Multi-head attention: D = 4, H = 2 heads, d_k = 2, two tokens");
  w.say("Attn(q_t, {k_j}, {v_j}) = sum_j softmax_j( q_t . k_j / sqrt(d_k) ) v_j, per head;");
  w.say("o_t = [Attn^1; Attn^2] W^O. W^Q = W^K = W^V = I as in the document; the document gives");
  w.say("no W^O, so we take W^O = I (u_t is the concatenation of the two heads).");

  w.step("(1) project the inputs: q_t = W^Q h_t, k_t = W^K h_t, v_t = W^V h_t (one row per token)");
  w.show("h", h);
  const arma::mat q = W.W_Q * h, k = W.W_K * h, v = W.W_V * h;  // q, k, v: [D, T]
  w.show("q", q);
  w.show("k", k);
  w.show("v", v);
  w.say("Head 1 uses dims 1-2 (q_1^1 = [1, 2], k_2^1 = [2, 0]); head 2 uses dims 3-4.");

  for (const auto mask : {ref::AttentionMask::causal, ref::AttentionMask::bidirectional}) {
    const bool causal = mask == ref::AttentionMask::causal;
    TraceScope reading(w.tr(), causal ? "causal" : "bidirectional");
    w.say(causal ? "\n** Causal reading (a decoder such as DeepSeek): token t sees tokens 1..t only."
                 : "\n** Bidirectional reading (an encoder): every token sees both tokens.");
    arma::mat o(h.n_rows, h.n_cols);  // o: [D, T], heads concatenated
    for (arma::uword i = 0; i < W.n_heads; ++i) {
      TraceScope head(w.tr(), fmt::format("head{}", i + 1));
      const arma::mat q_i = ref::head_rows(q, i, d_k), k_i = ref::head_rows(k, i, d_k),
                      v_i = ref::head_rows(v, i, d_k);  // [d_k, T]
      w.step(fmt::format("(2) head {} scores q_t . k_j / sqrt(2); row t = query t, column j = key j{}",
                         i + 1, causal ? "; -inf hides the future" : ""));
      const arma::mat scores = ref::attention_scores(q_i, k_i, mask);  // [T_k, T]
      w.show("scores", scores);
      w.step(fmt::format("(3) head {} softmax over the keys (each row sums to 1)", i + 1));
      const arma::mat probs = ref::attention_probs(scores);  // [T_k, T]
      w.show("probs", probs);
      w.step(fmt::format("head {} output: o_t = sum_j p(t, j) v_j (dims {}-{})", i + 1, i * d_k + 1,
                         (i + 1) * d_k));
      const arma::mat o_i = ref::attention_output(probs, v_i);  // [d_k, T]
      w.show("o", o_i);
      o.rows(i * d_k, (i + 1) * d_k - 1) = o_i;
    }
    w.step("merge the heads and project: u_t = [o^1; o^2] W^O (= the concatenation, W^O = I)");
    const arma::mat u = W.W_O * o;  // u: [D, T]
    w.show("u", u);
    w.say(causal ? "Token 1 sees only itself, so u_1 = v_1; token 2 mixes both tokens."
                 : "Token 2 is as in the causal reading (it saw both tokens there too); token 1 "
                   "now also looks at token 2.");
  }
}

}  // namespace dsr1::walk

#ifndef DSR1_WALKTHROUGH_NO_MAIN
int main(int argc, char** argv) {
  return dsr1::walk::run(argc, argv, "02_attention",
                         "Explainer §1.2: two-head attention, causal and bidirectional, step by step",
                         {dsr1::walk::walk_attention});
}
#endif
