// The explainer document's worked examples (golden/seed/*.json) against the reference formulas.
// Each golden value was computed from a closed form by golden/seed/compute_goldens.py, never by
// this code; each file's "check" field holds the hand derivation.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "reference/explainer/aggregator.hpp"
#include "reference/explainer/attention.hpp"
#include "reference/explainer/ffn_gelu.hpp"
#include "reference/io/golden_json.hpp"
#include "reference/deepseek/residual.hpp"
#include "reference/deepseek/rmsnorm.hpp"
#include "reference/explainer/compression.hpp"
#include "reference/explainer/kv_cache.hpp"
#include "reference/explainer/router.hpp"
#include "tests/support/check.hpp"

using dsr1::GoldenFile;
using dsr1::test::check_close;
using dsr1::test::Tol;
namespace ref = dsr1::ref;

namespace {

GoldenFile golden(const std::string& name) { return GoldenFile::load(dsr1::seed_golden_path(name)); }

Tol tol_of(const GoldenFile& g) { return Tol{g.tol_abs(), g.tol_rel()}; }

// Masked entries must be -inf in both; the finite entries are compared with the tolerance.
void check_close_masked(const arma::mat& got, const arma::mat& want, Tol tol, const std::string& what) {
  REQUIRE(got.n_rows == want.n_rows);
  REQUIRE(got.n_cols == want.n_cols);
  arma::mat g = got, w = want;
  for (arma::uword i = 0; i < want.n_elem; ++i)
    if (std::isinf(want(i))) {
      CHECK_MESSAGE(got(i) == want(i), what, ": element ", i, " should be ", want(i), ", got ", got(i));
      g(i) = w(i) = 0.0;
    }
  check_close(g, w, tol, what);
}

void check_cube(const arma::cube& got, const arma::cube& want, Tol tol, const std::string& what) {
  REQUIRE(got.n_slices == want.n_slices);
  for (arma::uword s = 0; s < want.n_slices; ++s)
    check_close_masked(got.slice(s), want.slice(s), tol, what + " head " + std::to_string(s));
}

ref::GeluFfnWeights expert(const GoldenFile& g, int r) {
  const std::string p = fmt::format("parameters.experts.{}.", r);
  return {g.matrix(p + "W1"), g.vec(p + "b1"), g.matrix(p + "W2"), g.vec(p + "b2")};
}

}  // namespace

TEST_CASE("golden §1.1: RMSNorm of h = [2, -2, 1, 1] is h / sqrt(2.5)") {
  const GoldenFile g = golden("rmsnorm.json");
  const arma::mat h = g.tokens("inputs.h");  // [D, T=1]
  const arma::mat y = ref::rmsnorm(h, g.vec("parameters.gamma"), g.number("parameters.eps"));
  check_close(y, g.tokens("expected.y"), tol_of(g), "rmsnorm.y");
  // The document's printed numbers agree with the exact ones to the digits shown, except 1.27
  // (2/sqrt(2.5) = 1.2649 rounds to 1.26; see docs/errata.md). Pin both facts.
  CHECK(std::fabs(std::sqrt(2.5) - g.number("doc_printed.rms")) <= 0.005);
  CHECK(std::fabs(y(2, 0) - g.number("doc_printed.y.0.2")) <= 0.005);
  CHECK(std::fabs(y(0, 0) - g.number("doc_printed.y.0.0")) > 0.005);
}

TEST_CASE("golden §1.2/§1.3: two-head attention, causal and bidirectional, per-head scores, weights, outputs") {
  const GoldenFile g = golden("attention_two_head.json");
  const arma::mat h = g.tokens("inputs.h");  // [D=4, T=2]
  ref::MhaWeights W{g.matrix("parameters.W_Q"), g.matrix("parameters.W_K"),
                    g.matrix("parameters.W_V"), g.matrix("parameters.W_O"),
                    static_cast<arma::uword>(g.number("parameters.n_heads"))};
  for (const char* reading : {"causal", "bidirectional"}) {
    CAPTURE(reading);
    const auto mask = std::string(reading) == "causal" ? ref::AttentionMask::causal
                                                       : ref::AttentionMask::bidirectional;
    dsr1::RecordingTracer tr;
    const arma::mat u = ref::attention(h, W, mask, &tr);
    const std::string e = std::string("expected.") + reading + ".";
    // Recorded cubes are [heads, T, T_k] on disk; rebuild them in code layout [T_k, T, heads].
    auto cube_of = [&](const char* name) {
      const auto& rec = tr.get(name);
      return arma::cube(rec.data.data(), rec.shape[2], rec.shape[1], rec.shape[0]);
    };
    check_cube(cube_of("attn.scores"), g.cube(e + "scores"), tol_of(g), std::string(reading) + " scores");
    check_cube(cube_of("attn.probs"), g.cube(e + "probs"), tol_of(g), std::string(reading) + " probs");
    check_close(tr.get_mat("attn.o"), g.tokens(e + "o"), tol_of(g), std::string(reading) + " o");
    check_close(u, g.tokens(e + "u"), tol_of(g), std::string(reading) + " u");
    check_close(ref::residual_add(h, u), g.tokens(e + "h_after_attn"), tol_of(g),
                std::string(reading) + " h_after_attn");
  }
}

TEST_CASE("golden §1.4: MoE output 0.7 * E1(h) + 0.3 * E2(h) with three GELU experts") {
  const GoldenFile g = golden("moe_gating.json");
  const arma::mat h = g.tokens("inputs.h");  // [D=2, T=1]
  const arma::vec gates = g.vec("parameters.g");
  std::vector<ref::GeluFfnWeights> experts;
  for (int r = 0; r < 3; ++r) {
    experts.push_back(expert(g, r));
    dsr1::RecordingTracer tr;
    const arma::mat out = ref::ffn_gelu(h, experts.back(), &tr);
    const std::string i = std::to_string(r);
    check_close(tr.get_mat("ffn.pre"), arma::mat(g.vec("expected.pre_activation." + i)), tol_of(g), "pre " + i);
    check_close(tr.get_mat("ffn.z"), arma::mat(g.vec("expected.z." + i)), tol_of(g), "z " + i);
    check_close(out, arma::mat(g.vec("expected.expert_out." + i)), tol_of(g), "expert_out " + i);
  }
  dsr1::RecordingTracer tr;
  const arma::mat f = ref::seed_moe_ffn(h, arma::mat(gates), experts, &tr);
  check_close(f, g.tokens("expected.f"), tol_of(g), "f");
  CHECK_FALSE(tr.has("experts.2.ffn.f"));  // expert 3 is dormant: it never runs
  check_close(ref::residual_add(h, f), g.tokens("expected.h_prime"), tol_of(g), "h_prime");
  const arma::mat f_router = ref::seed_moe_ffn(h, g.tokens("expected.g_router"), experts, nullptr);
  check_close(f_router, g.tokens("expected.f_router"), tol_of(g), "f_router");
}

TEST_CASE("golden §2.1: router softmax([3.4, 1.1, 2.2]) top-2 keeps experts 1 and 3, no renormalisation") {
  const GoldenFile g = golden("router.json");
  dsr1::RecordingTracer tr;
  const arma::mat gates = ref::seed_router_gates(g.tokens("inputs.r"),
                                                 static_cast<arma::uword>(g.number("parameters.k")), &tr);
  check_close(tr.get_mat("router.p"), g.tokens("expected.p"), tol_of(g), "router.p");
  check_close(gates, g.tokens("expected.g"), tol_of(g), "router.g");
  check_close(tr.get_mat("router.experts"), arma::mat(g.vec("expected.experts")), Tol{0, 0}, "router.experts");
  // The document prints [0.70, 0.06, 0.24]; the exact values differ by more than the rounding
  // shown (docs/errata.md). The test checks the exact values above; here it pins the erratum.
  const arma::vec printed = g.vec("doc_printed.p.0");
  CHECK(arma::abs(arma::vec(tr.get_mat("router.p").col(0)) - printed).max() > 0.005);
}

TEST_CASE("golden §2.4: KV cache, three decode steps appending k_t, v_t and attending over the cache") {
  const GoldenFile g = golden("kv_cache.json");
  ref::MhaWeights W{g.matrix("parameters.W_Q"), g.matrix("parameters.W_K"), g.matrix("parameters.W_V"),
                    arma::mat(), static_cast<arma::uword>(g.number("parameters.n_heads"))};
  const arma::mat h = g.tokens("inputs.h");  // [D=2, T=3]
  ref::SeedKvCache cache;
  for (arma::uword t = 0; t < h.n_cols; ++t) {
    CAPTURE(t);
    const std::string s = "expected.steps." + std::to_string(t) + ".";
    dsr1::RecordingTracer tr;
    const arma::vec o = ref::kv_cache_step(cache, h.col(t), W, &tr);
    check_close(tr.get_mat("kv.q"), g.tokens(s + "q"), tol_of(g), "q");
    check_close(tr.get_mat("kv.k"), g.tokens(s + "k"), tol_of(g), "k");
    check_close(tr.get_mat("kv.v"), g.tokens(s + "v"), tol_of(g), "v");
    check_close(cache.K, g.tokens(s + "K_cache"), tol_of(g), "K cache");
    check_close(cache.V, g.tokens(s + "V_cache"), tol_of(g), "V cache");
    const auto& probs = tr.get("attn.probs");  // [heads=1, T=1, T_k] on disk
    check_close(arma::mat(probs.data.data(), 1, probs.data.size()), g.matrix(s + "probs"),
                tol_of(g), "probs");
    check_close(arma::mat(o), g.tokens(s + "o"), tol_of(g), "o");
  }
}

TEST_CASE("golden §2.5: the document's key/value compression D = 4 -> D' = 2 and attention over it") {
  const GoldenFile g = golden("compression.json");
  const arma::mat I4 = arma::eye(4, 4);
  ref::SeedCompressionWeights W{I4, I4, I4, g.matrix("parameters.W_k_compress"),
                                g.matrix("parameters.W_v_compress"),
                                static_cast<arma::uword>(g.number("parameters.n_heads"))};
  dsr1::RecordingTracer tr;
  const arma::mat o = ref::compressed_attention(g.tokens("inputs.h"), W, ref::AttentionMask::causal, &tr);
  check_close(tr.get_mat("compress.k_tilde"), g.tokens("expected.k_tilde"), tol_of(g), "k_tilde");
  check_close(tr.get_mat("compress.v_tilde"), g.tokens("expected.v_tilde"), tol_of(g), "v_tilde");
  check_close(tr.get_mat("compress.q_tilde"), g.tokens("expected.q_tilde"), tol_of(g), "q_tilde");
  const auto& rec = tr.get("attn.scores");
  check_cube(arma::cube(rec.data.data(), rec.shape[2], rec.shape[1], rec.shape[0]),
             g.cube("expected.scores"), tol_of(g), "scores");
  check_close(o, g.tokens("expected.o"), tol_of(g), "o");
  // What the cache holds per token: k and v of D each, against k~ and v~ of D' each.
  CHECK(2 * W.W_k_compress.n_cols == g.number("expected.cache_numbers_per_token.uncompressed"));
  CHECK(2 * W.W_k_compress.n_rows == g.number("expected.cache_numbers_per_token.compressed"));
}
