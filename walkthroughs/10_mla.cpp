// Walkthrough 10: Multi-head Latent Attention on a hand-sized case, naive form then absorbed form.
// Leaves out: the surrounding block (RMSNorm, residual) and the cache (see 13_latent_kv_cache).
//
// The case is golden/mla/hand_case.json: d = 2, one head, d_nope = d_rope = d_v = r_kv = 2, no
// query compression, YaRN factor 40 (so the softmax scale carries mscale^2), three tokens at
// positions 3, 4, 5. The numbers printed here are pinned by tests/test_mla.cpp against the
// Python derivation in golden/mla/compute_goldens.py.
//
//   10_mla                     all steps
//   10_mla --step 3            only the absorbed form
//   10_mla --trace 'attn.q*'   print only the query tensors
//   10_mla --precision 8
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <string>

#include "reference/config.hpp"
#include "reference/golden_json.hpp"
#include "reference/mla.hpp"
#include "reference/trace_outputs.hpp"

using namespace dsr1;
using namespace dsr1::ref;

namespace {

void say(const std::string& text) { fmt::print("{}\n", text); }

void heading(int step, const std::string& title) {
  fmt::print("\n== Step {}: {} ==\n", step, title);
}

void show(const std::string& name, const arma::mat& m, int precision) {
  // Matrices print the way the trace files store them: one token per row.
  PrintOptions opt;
  opt.precision = precision;
  RecordingTracer rec;
  rec.record(name, m);
  const auto& e = rec.entries().back();
  fmt::print("{}\n", format_tensor(name, TensorView{e.shape, e.data.data()}, opt));
}

void show_weight(const std::string& name, const arma::mat& W, int precision) {
  // Weights print as the spec writes them, [out, in], one output row per line (show() prints
  // the transpose of what it is given, so give it W^T).
  show(name, arma::mat(W.t()), precision);
}

struct Case {
  Config c;
  MlaWeights W;
  arma::mat x;  // [d, T]
  std::int64_t pos0 = 0;
};

Case load_case() {
  const GoldenFile g = GoldenFile::load(std::string(DSR1_SOURCE_DIR) + "/golden/mla/hand_case.json");
  Case k;
  auto i64 = [&](const char* f) { return static_cast<std::int64_t>(g.number(f)); };
  k.c.name = "hand case";
  k.c.hidden_size = i64("parameters.hidden_size");
  k.c.num_attention_heads = i64("parameters.num_attention_heads");
  k.c.qk_nope_head_dim = i64("parameters.qk_nope_head_dim");
  k.c.qk_rope_head_dim = i64("parameters.qk_rope_head_dim");
  k.c.v_head_dim = i64("parameters.v_head_dim");
  k.c.kv_lora_rank = i64("parameters.kv_lora_rank");
  k.c.q_lora_rank = i64("parameters.q_lora_rank");
  k.c.rms_norm_eps = g.number("parameters.rms_norm_eps");
  k.c.rope_theta = g.number("parameters.rope_theta");
  k.c.rope_scaling.type = g.text("parameters.rope_scaling.type");
  k.c.rope_scaling.factor = g.number("parameters.rope_scaling.factor");
  k.c.rope_scaling.original_max_position_embeddings =
      i64("parameters.rope_scaling.original_max_position_embeddings");
  k.c.rope_scaling.mscale = g.number("parameters.rope_scaling.mscale");
  k.c.rope_scaling.mscale_all_dim = g.number("parameters.rope_scaling.mscale_all_dim");
  k.W.W_UQ = g.matrix("parameters.W_UQ");
  k.W.W_QR = g.matrix("parameters.W_QR");
  k.W.W_DKV = g.matrix("parameters.W_DKV");
  k.W.w_kv = g.vec("parameters.w_kv");
  k.W.W_KR = g.matrix("parameters.W_KR");
  k.W.W_UK = g.matrix("parameters.W_UK");
  k.W.W_UV = g.matrix("parameters.W_UV");
  k.W.W_O = g.matrix("parameters.W_O");
  k.x = g.tokens("inputs.x");
  k.pos0 = i64("inputs.pos0");
  return k;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Walkthrough 10: MLA, naive and absorbed, on a hand-sized case"};
  int step = 0, precision = 4;
  std::string trace = "*";
  app.add_option("--step", step, "run only this step (1-4; 0 = all)")->check(CLI::Range(0, 4));
  app.add_option("--precision", precision, "digits after the decimal point")->check(CLI::Range(0, 17));
  app.add_option("--trace", trace, "glob of the trace names to print (e.g. 'attn.*scores')");
  CLI11_PARSE(app, argc, argv);
  const auto want = [&](int s) { return step == 0 || step == s; };

  try {
    const Case k = load_case();
    const Config& c = k.c;
    const double s_eff = softmax_scale(c);

    if (want(1)) {
      heading(1, "the case");
      say("Three tokens x_t (d = 2), already RMSNorm_attn-ed, at absolute positions 3, 4, 5.");
      show("x", k.x, precision);
      say("One head: d_nope = 2, d_rope = 2 (one RoPE pair, θ_0 = 1: the angle is the position");
      say("in radians), d_v = 2, r_kv = 2. No query compression (as in V2-Lite), so W_UQ and W_QR");
      say("read x directly.");
      show_weight("W_UQ", k.W.W_UQ, precision);
      show_weight("W_QR", k.W.W_QR, precision);
      show_weight("W_DKV", k.W.W_DKV, precision);
      show_weight("W_KR", k.W.W_KR, precision);
      show_weight("W_UK", k.W.W_UK, precision);
      show_weight("W_UV", k.W.W_UV, precision);
      show_weight("W_O", k.W.W_O, precision);
      say(fmt::format("RMSNorm_kv gain w_kv = ({}, {}).", k.W.w_kv(0), k.W.w_kv(1)));
      say(fmt::format("Softmax scale s_eff = (d_nope + d_rope)^(-1/2) * mscale(40, 1)^2"
                      " = 0.5 * {:.{}f}^2 = {:.{}f}   (spec §4.5)",
                      yarn_mscale(40.0, 1.0), precision + 2, s_eff, precision + 2));
    }

    PrintOptions popt;
    popt.precision = precision;
    arma::mat u_naive, u_absorbed;
    RecordingTracer rec_naive, rec_absorbed;

    if (want(2) || want(4)) {
      MlaOptions opt;
      opt.form = AttnForm::Naive;
      if (want(2)) {
        heading(2, "naive form: rebuild per-head keys and values from the latent");
        say("q_nope = W_UQ x;  q_rope = RoPE(W_QR x);  c_kv = W_DKV x;  c_kv_hat = RMSNorm_kv(c_kv);");
        say("k_rope = RoPE(W_KR x) (one key shared by all heads);  k_nope = W_UK c_kv_hat;  v = W_UV c_kv_hat;");
        say("scores = s_eff (q_nope·k_nope + q_rope·k_rope), -inf where the key is after the query;");
        say("probs = softmax over keys;  o = probs · v;  u = W_O o.");
        PrintTracer pr({trace}, popt);
        TeeTracer tee({"*"}, {&pr, &rec_naive});
        u_naive = mla_forward(k.x, k.W, c, k.pos0, nullptr, opt, &tee);
        say("Token 0 (position 3) sees only itself: its probabilities are (1, 0, 0). Its score is");
        say("s_eff (q_nope·k_nope + q_rope·k_rope); q and k are rotated by the same 3 radians, so");
        say("the rotation cancels in q_rope·k_rope (relative position 0).");
      } else {
        u_naive = mla_forward(k.x, k.W, c, k.pos0, nullptr, opt, &rec_naive);
      }
    }

    if (want(3) || want(4)) {
      MlaOptions opt;
      opt.form = AttnForm::Absorbed;
      if (want(3)) {
        heading(3, "absorbed form: fold W_UK into the query, apply W_UV after attention");
        say("q_nope·(W_UK c_j) = (W_UK^T q_nope)·c_j, so q_tilde = W_UK^T q_nope scores directly");
        say("against the cached latents c_kv_hat: no per-head key is ever built. Likewise");
        say("sum_j p_j W_UV c_j = W_UV (sum_j p_j c_j) = W_UV z: attend over the latents, then map.");
        PrintTracer pr({trace}, popt);
        TeeTracer tee({"*"}, {&pr, &rec_absorbed});
        u_absorbed = mla_forward(k.x, k.W, c, k.pos0, nullptr, opt, &tee);
      } else {
        u_absorbed = mla_forward(k.x, k.W, c, k.pos0, nullptr, opt, &rec_absorbed);
      }
    }

    if (want(4)) {
      heading(4, "the two forms agree");
      const double du = arma::abs(u_naive - u_absorbed).max();
      const double d_o = arma::abs(rec_naive.get_mat("attn.o") - rec_absorbed.get_mat("attn.o")).max();
      show("u (naive)", u_naive, precision);
      show("u (absorbed)", u_absorbed, precision);
      say(fmt::format("max |u_naive - u_absorbed| = {:.3e};  max |o_naive - o_absorbed| = {:.3e}", du, d_o));
      say("Only the order of the products differs, so the two agree to rounding (the tests require");
      say("1e-12 relative on random weights at positions 0, 37 and 5000).");
      say("What each form keeps per past token: naive, k (d_nope + d_rope = 4) and v (d_v = 2) per head;");
      say("absorbed, c_kv_hat (r_kv = 2) and k_rope (d_rope = 2) for all heads together.");
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "10_mla: {}\n", e.what());
    return 1;
  }
  return 0;
}
