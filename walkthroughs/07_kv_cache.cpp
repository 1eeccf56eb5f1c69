// Walkthrough of the explainer's §2.4: the KV cache. Three tokens are decoded one at a time; each
// appends k_t = W^K h_t and v_t = W^V h_t and attends with q_t over everything cached so far.
// Numbers: golden/seed/kv_cache.json (our small numbers). Formulas: reference/explainer/kv_cache.hpp.
#include "reference/explainer/kv_cache.hpp"
#include "walkthroughs/walkthrough.hpp"

namespace dsr1::walk {

inline void walk_kv_cache(Walkthrough& w) {
  const GoldenFile g = w.golden("kv_cache.json");
  const ref::MhaWeights W{g.matrix("parameters.W_Q"), g.matrix("parameters.W_K"),
                          g.matrix("parameters.W_V"), arma::mat(),
                          static_cast<arma::uword>(g.number("parameters.n_heads"))};
  const arma::mat h = g.tokens("inputs.h");  // h: [D=2, T=3]
  TraceScope scope(w.tr(), "kv_cache");

  w.section("2.4", "KV cache");
  w.say("The document gives no numbers here; ours: D = 2, one head, three tokens,");
  w.say("W^Q = [[1,0],[1,1]], W^K = [[1,0],[0,2]], W^V = [[0,1],[1,0]] (golden/seed/kv_cache.json).");
  w.show_weight("W_Q", W.W_Q);
  w.show_weight("W_K", W.W_K);
  w.show_weight("W_V", W.W_V);
  ref::SeedKvCache cache;
  for (arma::uword t = 0; t < h.n_cols; ++t) {
    TraceScope st(w.tr(), fmt::format("step{}", t + 1));
    w.step(fmt::format("token {}: k_{} = W^K h_{}, v_{} = W^V h_{}, append; attend over {} cached "
                       "key{}", t + 1, t + 1, t + 1, t + 1, t + 1, t + 1, t == 0 ? "" : "s"));
    w.show("h", arma::vec(h.col(t)));
    ref::kv_cache_step(cache, h.col(t), W, w.tr());
  }
  w.say("Each step computed one new k and v; the earlier ones came from the cache. The outputs equal");
  w.say("causal attention over all three tokens at once (tests/test_seed_properties.cpp checks this).");
  w.say(fmt::format("The cache now holds {} keys and {} values of {} numbers each.", cache.length(),
                    cache.length(), cache.K.n_rows));
}

}  // namespace dsr1::walk

#ifndef DSR1_WALKTHROUGH_NO_MAIN
int main(int argc, char** argv) {
  return dsr1::walk::run(argc, argv, "07_kv_cache", "Explainer §2.4: decoding with a KV cache",
                         {dsr1::walk::walk_kv_cache});
}
#endif
