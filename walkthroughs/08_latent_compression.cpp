// Walkthrough of the explainer's §2.5: compressing keys and values by a projection, as the document
// describes it (k~ = W_k^compress k, v~ = W_v^compress v), on the two tokens of §1.2.
// This is NOT how MLA works (docs/errata.md, spec §15.4); the real MLA is in reference/deepseek/mla.hpp.
// Numbers: golden/seed/compression.json. Formulas: reference/explainer/compression.hpp.
#include "reference/explainer/compression.hpp"
#include "walkthroughs/walkthrough.hpp"

namespace dsr1::walk {

inline void walk_latent_compression(Walkthrough& w) {
  const GoldenFile g = w.golden("compression.json");
  const arma::mat h = g.tokens("inputs.h");  // h: [D=4, T=2]
  const arma::mat I = arma::eye(h.n_rows, h.n_rows);
  const ref::SeedCompressionWeights W{I, I, I, g.matrix("parameters.W_k_compress"),
                                      g.matrix("parameters.W_v_compress"),
                                      static_cast<arma::uword>(g.number("parameters.n_heads"))};
  TraceScope scope(w.tr(), "compression");

  w.section("2.5", "Latent vector compression (as the document describes it)");
  w.say("k~_t = W_k^compress k_t, v~_t = W_v^compress v_t, from D = 4 to D' = 2. Our W^compress");
  w.say("averages neighbouring dims; q is compressed with W_k^compress too, so q~ . k~ stands in");
  w.say("for q . k (the document leaves this open). Tokens and W^Q = W^K = W^V = I from §1.2.");
  w.step("the compression matrix and the tokens");
  w.show_weight("W_k_compress", W.W_k_compress);
  w.show("h", h);
  w.step("compress k, v (what the cache stores) and q; causal attention in D' = 2 dims");
  ref::compressed_attention(h, W, ref::AttentionMask::causal, w.tr());
  w.say("The cache now stores 2 + 2 = 4 numbers per token instead of 4 + 4 = 8.");
  w.erratum("Not MLA: MLA never builds full keys to compress them. It caches one latent "
            "c^KV = W^DKV h (shared by keys, values and all heads, RMS-normalised) plus one RoPE "
            "key, and rebuilds per-head keys and values with W^UK and W^UV (spec §4).");
}

}  // namespace dsr1::walk

#ifndef DSR1_WALKTHROUGH_NO_MAIN
int main(int argc, char** argv) {
  return dsr1::walk::run(argc, argv, "08_latent_compression",
                         "Explainer §2.5: the document's key/value compression (not MLA)",
                         {dsr1::walk::walk_latent_compression});
}
#endif
