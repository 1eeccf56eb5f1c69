// Walkthrough 10: Multi-head Latent Attention on a hand-sized case, naive form then absorbed form.
// Leaves out: the surrounding block (RMSNorm, residual) and the cache (see 13_latent_kv_cache).
//
// The case is golden/mla/hand_case.json: d = 2, one head, d_nope = d_rope = d_v = r_kv = 2, no
// query compression, YaRN factor 40 (so the softmax scale carries mscale^2), three tokens at
// positions 3, 4, 5. The numbers printed here are pinned by tests/test_mla.cpp against the
// Python derivation in golden/mla/compute_goldens.py.
//
//   10_mla                     all steps, no pauses
//   10_mla --step              pause for Enter between steps (classroom use)
//   10_mla --trace 'attn.q*'   print only the query tensors
//   10_mla --precision 8
#include <fmt/format.h>

#include <string>

#include "reference/deepseek/config.hpp"
#include "reference/io/golden_json.hpp"
#include "reference/deepseek/mla.hpp"
#include "reference/trace/trace_outputs.hpp"
#include "walkthroughs/mla_hand_case.hpp"
#include "walkthroughs/walkthrough.hpp"

using namespace dsr1;
using namespace dsr1::ref;

namespace {

using Case = walk::MlaHandCase;
Case load_case() { return walk::load_mla_hand_case("hand_case.json"); }

void run_mla(walk::Walkthrough& w) {
  const Case k = load_case();
  const Config& c = k.c;
  const double s_eff = softmax_scale(c);
  const int precision = w.options().precision;

  w.section("10", "Multi-head Latent Attention, naive and absorbed (spec §4.1, §4.3)");
  w.step("the case");
  w.say("Three tokens x_t (d = 2), already RMSNorm_attn-ed, at absolute positions 3, 4, 5.");
  w.show("x", k.x);
  w.say("One head: d_nope = 2, d_rope = 2 (one RoPE pair, θ_0 = 1: the angle is the position");
  w.say("in radians), d_v = 2, r_kv = 2. No query compression (as in V2-Lite), so W_UQ and W_QR");
  w.say("read x directly.");
  w.show_weight("W_UQ", k.W.W_UQ);
  w.show_weight("W_QR", k.W.W_QR);
  w.show_weight("W_DKV", k.W.W_DKV);
  w.show_weight("W_KR", k.W.W_KR);
  w.show_weight("W_UK", k.W.W_UK);
  w.show_weight("W_UV", k.W.W_UV);
  w.show_weight("W_O", k.W.W_O);
  w.say(fmt::format("RMSNorm_kv gain w_kv = ({}, {}).", w.num(k.W.w_kv(0)), w.num(k.W.w_kv(1))));
  w.say(
      fmt::format("Softmax scale s_eff = (d_nope + d_rope)^(-1/2) * mscale(40, 1)^2"
                  " = 0.5 * {:.{}f}^2 = {:.{}f}   (spec §4.5)",
                  yarn_mscale(40.0, 1.0), precision + 2, s_eff, precision + 2));

  w.step("naive form: rebuild per-head keys and values from the latent");
  w.say("q_nope = W_UQ x;  q_rope = RoPE(W_QR x);  c_kv = W_DKV x;  c_kv_hat = RMSNorm_kv(c_kv);");
  w.say(
      "k_rope = RoPE(W_KR x) (one key shared by all heads);  k_nope = W_UK c_kv_hat;  v = W_UV "
      "c_kv_hat;");
  w.say("scores = s_eff (q_nope·k_nope + q_rope·k_rope), -inf where the key is after the query;");
  w.say("probs = softmax over keys;  o = probs · v;  u = W_O o.");
  MlaOptions naive;
  naive.form = AttnForm::Naive;
  arma::mat u_naive;
  {
    TraceScope scope(w.tr(), "naive");
    u_naive = mla_forward(k.x, k.W, c, k.pos0, nullptr, naive, w.tr());
  }
  w.say("Token 0 (position 3) sees only itself: its probabilities are (1, 0, 0). Its score is");
  w.say("s_eff (q_nope·k_nope + q_rope·k_rope); q and k are rotated by the same 3 radians, so");
  w.say("the rotation cancels in q_rope·k_rope (relative position 0).");

  w.step("absorbed form: fold W_UK into the query, apply W_UV after attention");
  w.say("q_nope·(W_UK c_j) = (W_UK^T q_nope)·c_j, so q_tilde = W_UK^T q_nope scores directly");
  w.say("against the cached latents c_kv_hat: no per-head key is ever built. Likewise");
  w.say("sum_j p_j W_UV c_j = W_UV (sum_j p_j c_j) = W_UV z: attend over the latents, then map.");
  MlaOptions absorbed;
  absorbed.form = AttnForm::Absorbed;
  arma::mat u_absorbed;
  {
    TraceScope scope(w.tr(), "absorbed");
    u_absorbed = mla_forward(k.x, k.W, c, k.pos0, nullptr, absorbed, w.tr());
  }

  w.step("the two forms agree");
  w.show("u_naive", u_naive);
  w.show("u_absorbed", u_absorbed);
  w.say(fmt::format("max |u_naive - u_absorbed| = {:.3e}", arma::abs(u_naive - u_absorbed).max()));
  w.say("Only the order of the products differs, so the two agree to rounding (the tests require");
  w.say("1e-12 relative on random weights at positions 0, 37 and 5000).");
  w.say(
      "What each form keeps per past token: naive, k (d_nope + d_rope = 4) and v (d_v = 2) per "
      "head;");
  w.say("absorbed, c_kv_hat (r_kv = 2) and k_rope (d_rope = 2) for all heads together.");
}

}  // namespace

#ifndef DSR1_WALKTHROUGH_NO_MAIN
int main(int argc, char** argv) {
  return walk::run(argc, argv, "10_mla",
                   "Walkthrough 10: MLA, naive and absorbed, on a hand-sized case", {run_mla});
}
#endif
