// Dry run: the full-scale stage walk has the trace names and shapes of TEAM.md, costs that
// agree with the accounting formulas, and runs in well under a second without weights.
#include <doctest/doctest.h>

#include <chrono>
#include <set>

#include "reference/tools/accounting.hpp"
#include "reference/deepseek/config.hpp"
#include "reference/tools/dry_run.hpp"
#include "reference/trace/trace.hpp"

using dsr1::DryRunOptions;
using dsr1::RecordingTracer;

namespace {

std::vector<std::uint64_t> S(std::initializer_list<std::uint64_t> x) { return x; }

}  // namespace

TEST_CASE("dry run of deepseek-r1 walks 61 layers with the real shapes, in well under a second") {
  const auto c = dsr1::preset("deepseek-r1");
  RecordingTracer rec;
  DryRunOptions opt;
  opt.tokens = 5;
  const auto start = std::chrono::steady_clock::now();
  const auto totals = dsr1::dry_run(c, opt, rec);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // Not a benchmark: it takes milliseconds. The bound only catches a dry run that touches weights
  // (generating R1's 44 G active values takes a minute even at full speed), with room for a
  // sanitized build on a loaded machine, where a 2-second bound once failed.
  CHECK(seconds < 30.0);
  CHECK(totals.stages == rec.entries().size());

  CHECK(rec.get("embed.h").shape == S({5, 7168}));
  CHECK(rec.get("layers.0.attn.c_q").shape == S({5, 1536}));
  CHECK(rec.get("layers.0.attn.q_nope").shape == S({5, 128 * 128}));
  CHECK(rec.get("layers.0.attn.q_rope").shape == S({5, 128 * 64}));
  CHECK(rec.get("layers.0.attn.c_kv_hat").shape == S({5, 512}));
  CHECK(rec.get("layers.0.attn.k_rope").shape == S({5, 64}));
  CHECK(rec.get("layers.0.attn.k_nope").shape == S({5, 128 * 128}));
  CHECK(rec.get("layers.0.attn.scores").shape == S({128, 5, 5}));
  CHECK(rec.get("layers.0.attn.o").shape == S({5, 128 * 128}));
  CHECK(rec.get("layers.2.ffn.gate").shape == S({5, 18432}));  // dense for l < 3
  CHECK_FALSE(rec.has("layers.3.ffn.gate"));
  CHECK(rec.get("layers.3.moe.ell").shape == S({5, 256}));     // MoE from l = 3
  CHECK(rec.get("layers.3.moe.group_scores").shape == S({5, 8}));
  CHECK(rec.get("layers.3.moe.s_tilde").shape == S({5, 256}));
  CHECK(rec.get("layers.3.moe.experts").shape == S({5, 8}));
  CHECK(rec.get("layers.60.h").shape == S({5, 7168}));
  CHECK_FALSE(rec.has("layers.61.h"));  // layer 61 is the MTP module (P12)
  CHECK(rec.get("final_norm").shape == S({5, 7168}));
  CHECK(rec.get("logits").shape == S({5, 129280}));
  // MTP position i predicts token i+2 from the state after token i and the embedding of token
  // i+1: T-1 = 4 positions, as mtp_forward computes them (spec §9).
  CHECK(rec.get("mtp.h_proj").shape == S({4, 7168}));
  CHECK(rec.get("mtp.block.moe.routed").shape == S({4, 7168}));
  CHECK(rec.get("mtp.logits").shape == S({4, 129280}));

  // Every layer has its output, once.
  std::set<std::string> outputs;
  for (const auto& e : rec.entries())
    if (e.name.size() > 2 && e.name.compare(e.name.size() - 2, 2, ".h") == 0 && e.name.rfind("layers.", 0) == 0)
      outputs.insert(e.name);
  CHECK(outputs.size() == 61);
}

TEST_CASE("absorbed dry run has q_tilde and z instead of per-head keys and values") {
  const auto c = dsr1::preset("deepseek-v2-lite");
  RecordingTracer rec;
  DryRunOptions opt;
  opt.tokens = 3;
  opt.attn = "absorbed";
  dsr1::dry_run(c, opt, rec);
  CHECK(rec.get("layers.5.attn.q_tilde").shape == S({16, 3, 512}));
  CHECK(rec.get("layers.5.attn.z").shape == S({16, 3, 512}));
  CHECK_FALSE(rec.has("layers.5.attn.k_nope"));
  CHECK_FALSE(rec.has("layers.5.attn.c_q"));           // V2-Lite: no q-LoRA
  CHECK_FALSE(rec.has("layers.5.moe.group_scores"));   // greedy, one group
  CHECK_FALSE(rec.has("layers.5.moe.s_tilde"));        // no bias
  CHECK_FALSE(rec.has("mtp.logits"));
}

TEST_CASE("dry-run matrix FLOPs for one token equal the accounting formula (two routes)") {
  for (const char* name : {"deepseek-r1", "deepseek-v2", "deepseek-v2-lite", "tiny-v3"}) {
    for (const char* attn : {"naive", "absorbed"}) {
      CAPTURE(name);
      CAPTURE(attn);
      const auto c = dsr1::preset(name);
      RecordingTracer rec;
      DryRunOptions opt;
      opt.tokens = 1;
      opt.attn = attn;
      opt.mtp = false;
      dsr1::dry_run(c, opt, rec);
      // Sum the stages that are matrix products; the per-element stages are left out.
      const std::set<std::string> matmul = {"attn.c_q", "attn.q_nope", "attn.q_rope_pre", "attn.c_kv",
                                            "attn.k_rope_pre", "attn.k_nope", "attn.v", "attn.q_tilde",
                                            "attn.u", "ffn.gate", "ffn.up", "ffn.out", "moe.ell", "logits"};
      double sum = 0, routed = 0;
      for (const auto& e : rec.entries()) {
        const auto dot = e.name.rfind("attn.") != std::string::npos ? e.name.rfind("attn.")
                         : e.name.rfind("ffn.") != std::string::npos ? e.name.rfind("ffn.")
                         : e.name.rfind("moe.") != std::string::npos ? e.name.rfind("moe.")
                                                                      : 0;
        const std::string leaf = e.name.substr(dot);
        if (matmul.count(leaf)) sum += e.cost.flops;
        // absorbed attn.o applies W_UV to z: a projection too.
        if (std::string(attn) == "absorbed" && leaf == "attn.o") sum += e.cost.flops;
        if (leaf == "moe.routed" || leaf == "moe.shared") routed += e.cost.flops;
      }
      // moe.routed/shared include SwiGLU's 5 per element and the weighted sum 2 per d: remove.
      const double K = c.num_experts_per_tok, I_e = c.moe_intermediate_size, d = c.hidden_size,
                   W_s = c.n_shared_experts * c.moe_intermediate_size;
      routed -= c.num_moe_layers() * (K * (5 * I_e + 2 * d) + (c.n_shared_experts > 0 ? 5 * W_s : 0));
      // Naive attention with one token: k_nope and v are W_UK and W_UV applied once, the same
      // matrix entries the absorbed form applies to the query and to z.
      const double want = dsr1::flops_per_token(c).linear;
      CHECK(sum + routed == doctest::Approx(want).epsilon(1e-12));
    }
  }
}

TEST_CASE("dry run rejects bad options with a message") {
  const auto c = dsr1::preset("tiny-v3");
  RecordingTracer rec;
  DryRunOptions opt;
  opt.attn = "flash";
  CHECK_THROWS_WITH_AS(dsr1::dry_run(c, opt, rec), doctest::Contains("naive or absorbed"), std::invalid_argument);
  opt.attn = "naive";
  opt.tokens = 100000;
  CHECK_THROWS_WITH_AS(dsr1::dry_run(c, opt, rec), doctest::Contains("max_position_embeddings"), std::invalid_argument);
}
