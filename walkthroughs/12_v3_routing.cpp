// Walkthrough 12: DeepSeek-V3/R1 routing of one token, step by step (spec §7.2): logits, sigmoid
// scores, the selection-only bias, group scores, the kept groups, the experts and their weights;
// what each router pitfall would change; then the same token under the V2 rules (spec §7.1).
// Leaves out: running the experts (tests/test_moe.cpp) and load balancing (docs/load-balancing.md).
//
// Numbers: golden/router/v3_routing.json (derived with NumPy by golden/router/compute_goldens.py;
// tests/test_router.cpp checks reference/deepseek/router.cpp against it).
//
//   12_v3_routing                      all steps
//   12_v3_routing --step               pause for Enter between steps
//   12_v3_routing --trace 'v3.moe.g'   print only the V3 weights
#include <string>
#include <vector>

#include "reference/deepseek/router.hpp"
#include "walkthroughs/walkthrough.hpp"

namespace dsr1::walk {

namespace {

std::string golden_router_path() { return std::string(DSR1_SOURCE_DIR) + "/golden/router/v3_routing.json"; }

Config routing_config(const GoldenFile& g, bool v3) {
  Config c;
  c.name = v3 ? "walkthrough-12 (V3 rules)" : "walkthrough-12 (V2 rules)";
  c.hidden_size = static_cast<std::int64_t>(g.number("parameters.hidden_size"));
  c.n_routed_experts = static_cast<std::int64_t>(g.number("parameters.n_routed_experts"));
  c.n_group = static_cast<std::int64_t>(g.number("parameters.n_group"));
  c.topk_group = static_cast<std::int64_t>(g.number("parameters.topk_group"));
  c.num_experts_per_tok = static_cast<std::int64_t>(g.number("parameters.num_experts_per_tok"));
  c.scoring_func = v3 ? "sigmoid" : "softmax";
  c.topk_method = v3 ? "noaux_tc" : "group_limited_greedy";
  c.norm_topk_prob = v3;
  c.routed_scaling_factor = g.number(v3 ? "parameters.v3_routed_scaling_factor" : "parameters.v2_routed_scaling_factor");
  return c;
}

std::string list(const arma::mat& m, int precision) {
  std::string s;
  for (arma::uword i = 0; i < m.n_elem; ++i) s += (i ? ", " : "") + format_number(m(i), precision);
  return "(" + s + ")";
}

std::string list_ids(const arma::umat& m) {
  std::string s;
  for (arma::uword i = 0; i < m.n_elem; ++i) s += (i ? ", " : "") + std::to_string(m(i));
  return "(" + s + ")";
}

}  // namespace

inline void walk_v3_routing(Walkthrough& w) {
  const GoldenFile g = GoldenFile::load(golden_router_path());
  const arma::mat x = g.tokens("inputs.x");  // x: [d=4, T=1]
  MoeWeights W;
  W.W_g = g.matrix("inputs.W_g");  // W_g: [N_r=8, d=4]
  W.b = g.vec("inputs.b");         // b: [N_r=8]
  const Config c3 = routing_config(g, true);
  const int p = w.options().precision;

  // route() records every step; the walkthrough shows them one at a time with commentary.
  RecordingTracer rec;
  const ref::Routing r = ref::route(x, W, c3, Faults{}, &rec);
  {
    TraceScope scope(w.tr(), "v3");
    w.section("7.2", "DeepSeek-V3/R1 routing: sigmoid scores, selection-only bias, groups, top-K");
    w.say("One token x (d = 4), N_r = 8 routed experts in n_group = 4 groups of 2 consecutive experts,");
    w.say("topk_group = 2 groups kept, K = 2 experts chosen, routed_scaling_factor = 2.5.");
    w.show("x", x);
    w.show("W_g", arma::mat(W.W_g.t()));  // shown [N_r, d]: one expert per row
    w.show("b", W.b);

    w.step("logits ell = W_g x");
    w.say("W_g has entries in {-1, -0.5, 0, 0.5, 1}: e.g. ell_0 = 0*1 - 0.5*(-1) + 0.5*2 + 1*0.5 = 2.");
    w.show("moe.ell", rec.get_mat("moe.ell"));

    w.step("affinities s = sigmoid(ell): each expert on its own, not a softmax");
    w.say("These unbiased scores are what the gating weights will be made of (step 6).");
    w.show("moe.s", rec.get_mat("moe.s"));
    w.say(fmt::format("Without bias and groups the top-2 would be experts {} (the two largest s).",
                      list(g.tokens("expected.unbiased_top_k"), 0)));

    w.step("selection scores s_tilde = s + b (b = e_score_correction_bias)");
    w.say("The bias is the load-balancing knob of spec §8.2: an overloaded expert's b drifts down.");
    w.say("It is used ONLY to choose experts, never in the weights (pitfall P4). Here the biases are");
    w.say("negative, so several s_tilde are below 0 (the released V3 biases are all positive).");
    w.show("moe.s_tilde", rec.get_mat("moe.s_tilde"));

    w.step("group scores: the sum of the 2 largest s_tilde in each group");
    w.say("Why 2: V3 sends a token to at most M = 4 nodes and K = 8 experts, K/M = 2 per node.");
    w.say("(V2 takes the max of each group instead; for V3 that is pitfall P5.)");
    w.show("moe.group_scores", rec.get_mat("moe.group_scores"));

    w.step("keep the topk_group = 2 best groups; every expert outside them gets s_tilde = -inf");
    w.show("moe.group_mask", rec.get_mat("moe.group_mask"));
    w.say("-inf, not 0: s_tilde can be negative, and a masked expert at 0 would beat an eligible one");
    w.say(fmt::format("at {} (pitfall P6). Ties in any top-k go to the lower index.",
                      format_number(rec.get_mat("moe.s_tilde")(2), p)));

    w.step("the K = 2 largest remaining s_tilde: the chosen experts, best first");
    w.show("moe.experts", rec.get_mat("moe.experts"));
    w.say("Expert 5 has the second-largest s but sits in group 2, which was dropped; expert 2 wins");
    w.say(fmt::format("with s_tilde = {}, a negative score.", format_number(rec.get_mat("moe.s_tilde")(2), p)));

    w.step("weights g_k = 2.5 * s_{i_k} / sum_m s_{i_m}: unbiased s, renormalised, scaled once");
    w.show("moe.g", r.g);
    w.say(fmt::format("They sum to routed_scaling_factor = {}.", format_number(arma::accu(r.g), p)));
  }

  w.step("what each router pitfall would have produced for this token");
  const auto faulty = [&](auto set) {
    Faults f;
    set(f);
    return ref::route(x, W, c3, f, nullptr);
  };
  const ref::Routing p4 = faulty([](Faults& f) { f.bias_in_weights = true; });
  const ref::Routing p5 = faulty([](Faults& f) { f.group_score_max = true; });
  const ref::Routing p6 = faulty([](Faults& f) { f.group_mask_zero = true; });
  const ref::Routing p17 = faulty([](Faults& f) { f.double_routed_scaling = true; });
  w.say(fmt::format("  P4  weights from s_tilde:        experts {}, g = {} (a negative weight)",
                    list_ids(p4.experts), list(p4.g, p)));
  w.say(fmt::format("  P5  group score = max:           experts {}, g = {}", list_ids(p5.experts), list(p5.g, p)));
  w.say(fmt::format("  P6  dropped groups masked with 0: experts {}, g = {}", list_ids(p6.experts),
                    list(p6.g, p)));
  w.say(fmt::format("  P17 scaling applied twice:       experts {}, g = {}", list_ids(p17.experts),
                    list(p17.g, p)));

  {
    TraceScope scope(w.tr(), "v2");
    w.section("7.1", "The same token under DeepSeek-V2 rules: softmax, group max, x16, no renormalisation");
    w.step("V2: s = softmax(ell) over all 8 experts, no bias, group score = max, keep 2, K = 2, g = 16 s");
    const Config c2 = routing_config(g, false);
    MoeWeights W2 = W;
    W2.b.reset();  // V2 checkpoints have no e_score_correction_bias
    ref::route(x, W2, c2, Faults{}, w.tr());
    w.say("The softmax couples the experts (the 8 scores sum to 1), the group limit uses each group's best");
    w.say("expert, and the two chosen probabilities are multiplied by 16 without renormalisation (P8).");
    Faults f8;
    f8.renormalize_softmax = true;
    const ref::Routing p8 = ref::route(x, W2, c2, f8, nullptr);
    w.say(fmt::format("Renormalising first (pitfall P8) would give g = {} instead.", list(p8.g, p)));
  }
}

}  // namespace dsr1::walk

#ifndef DSR1_WALKTHROUGH_NO_MAIN
int main(int argc, char** argv) {
  return dsr1::walk::run(argc, argv, "12_v3_routing",
                         "DeepSeek-V3/R1 routing with bias and groups, then V2 rules (spec §7)",
                         {dsr1::walk::walk_v3_routing});
}
#endif
