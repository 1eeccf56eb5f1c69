// The full-scale golden set (golden/fullscale/v3-mla-moe): regenerated at the real DeepSeek-V3
// dimensions and compared with the checked-in file, plus the checks its manifest names: the
// generator's fill equals its per-element rule, weights by HF name equal load_weights, the lazy
// MoE equals ref::moe_forward, naive MLA equals absorbed MLA; and the fast path's MLA and MoE at
// that size against the set.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "reference/tools/compare.hpp"
#include "reference/fast/mla.hpp"
#include "reference/fast/moe.hpp"
#include "reference/fast/router.hpp"
#include "reference/fast/weights.hpp"
#include "reference/tools/fullscale.hpp"
#include "reference/io/generator.hpp"
#include "reference/deepseek/loader.hpp"
#include "reference/deepseek/moe.hpp"
#include "reference/io/safetensors.hpp"
#include "tests/support/check.hpp"
#include "tests/support/tolerances.hpp"

namespace fs = std::filesystem;
using namespace dsr1;

namespace {

const char* kSet = "golden/fullscale/v3-mla-moe";

nlohmann::json manifest() {
  std::ifstream in(fs::path(kSet) / "manifest.json");
  REQUIRE_MESSAGE(in.good(), kSet, "/manifest.json is missing");
  return nlohmann::json::parse(in);
}

FullscaleSpec spec_of(const nlohmann::json& m) {
  FullscaleSpec s;
  s.config = config_from_json_text(m["config"].dump(), "manifest");
  s.config.name = m["config_name"].get<std::string>();
  s.seed = m["seed"].get<std::uint64_t>();
  s.layer = m["layer"].get<std::int64_t>();
  s.pos0 = m["pos0"].get<std::int64_t>();
  s.T = m["T"].get<std::int64_t>();
  return s;
}

// A stored [T, rows] tensor back as the in-memory [rows, T] matrix.
arma::mat stored(const safetensors::File& f, const std::string& name) {
  const auto& info = f.info(name);
  REQUIRE(info.shape.size() == 2);
  const std::vector<double> v = f.read(name);
  return arma::mat(v.data(), info.shape[1], info.shape[0]);
}

}  // namespace

TEST_CASE("generator_fill gives generator_value's values for every role from any first index") {
  const std::uint64_t seed = 2024;
  for (const std::string name : {"model.layers.3.mlp.experts.17.down_proj.weight", "model.norm.weight",
                                 "model.layers.3.mlp.gate.e_score_correction_bias",
                                 "model.layers.3.mlp.experts.0.up_proj.weight_scale_inv", "fullscale.x_attn"}) {
    const std::uint64_t last = 7168, first = 123456789, count = 3000;
    std::vector<double> got(count);
    generator_fill(seed, name, last, first, count, got.data());
    for (std::uint64_t i = 0; i < count; ++i)
      REQUIRE_MESSAGE(got[i] == static_cast<double>(generator_value(seed, name, first + i, last)), name, " element ",
                      first + i);
  }
}

TEST_CASE("weights by HF name equal load_weights over the generator on tiny-v3, bit for bit") {
  const Config c = preset("tiny-v3");
  const std::uint64_t seed = 7;
  const ModelWeights all = generate_weights(c, seed);
  const std::int64_t l = c.first_k_dense_replace;  // the first MoE layer
  const MlaWeights a = generate_mla_weights(c, seed, l);
  const MlaWeights& b = all.layers[l].attn;
  CHECK(arma::approx_equal(a.W_DQ, b.W_DQ, "absdiff", 0.0));
  CHECK(arma::approx_equal(a.w_q, b.w_q, "absdiff", 0.0));
  CHECK(arma::approx_equal(a.W_UQ, b.W_UQ, "absdiff", 0.0));
  CHECK(arma::approx_equal(a.W_QR, b.W_QR, "absdiff", 0.0));
  CHECK(arma::approx_equal(a.W_DKV, b.W_DKV, "absdiff", 0.0));
  CHECK(arma::approx_equal(a.W_KR, b.W_KR, "absdiff", 0.0));
  CHECK(arma::approx_equal(a.w_kv, b.w_kv, "absdiff", 0.0));
  CHECK(arma::approx_equal(a.W_UK, b.W_UK, "absdiff", 0.0));
  CHECK(arma::approx_equal(a.W_UV, b.W_UV, "absdiff", 0.0));
  CHECK(arma::approx_equal(a.W_O, b.W_O, "absdiff", 0.0));
  const MoeWeights r = generate_router_weights(c, seed, l);
  CHECK(arma::approx_equal(r.W_g, all.layers[l].moe.W_g, "absdiff", 0.0));
  CHECK(arma::approx_equal(r.b, all.layers[l].moe.b, "absdiff", 0.0));
  CHECK_THROWS_WITH_AS(generate_router_weights(c, seed, 0), doctest::Contains("dense"), std::invalid_argument);
}

TEST_CASE("lazy MoE equals ref::moe_forward with every expert materialised on tiny-v3, bit for bit") {
  const Config c = preset("tiny-v3");
  const std::uint64_t seed = 11;
  const std::int64_t l = c.first_k_dense_replace;
  const arma::mat x = fullscale_input(seed, kFullscaleXMoe, c.hidden_size, 6);  // [d, 6]
  const ModelWeights all = generate_weights(c, seed);
  const arma::mat want = ref::moe_forward(x, all.layers[l].moe, c, {}, nullptr);
  const ref::Routing r = ref::route(x, all.layers[l].moe, c, {}, nullptr);
  const LazyMoeResult got = moe_forward_lazy(x, c, seed, l);
  CHECK(arma::all(arma::vectorise(got.routing.experts == r.experts)));
  CHECK(arma::approx_equal(got.routing.g, r.g, "absdiff", 0.0));
  CHECK(arma::approx_equal(got.out, want, "absdiff", 0.0));
}

TEST_CASE("full-scale golden set regenerated at DeepSeek-V3 size equals the file and its MoE output equals moe_forward") {
  const nlohmann::json m = manifest();
  const FullscaleSpec s = spec_of(m);
  REQUIRE(s.config.hidden_size == 7168);
  REQUIRE(s.config.n_routed_experts == 256);
  REQUIRE(s.pos0 > s.config.rope_scaling.original_max_position_embeddings);

  // Regenerate: MLA naive and absorbed (fullscale_tensors throws if they differ by > 1e-12 rel),
  // the router, the chosen experts and the shared expert.
  double rel = 1;
  const auto tensors = fullscale_tensors(s, &rel);
  MESSAGE(fmt::format("MLA naive vs absorbed at full scale: {:.3e} rel", rel));
  CHECK(rel <= test::same_math_reordered.rel);

  const safetensors::File f((fs::path(kSet) / "fullscale.safetensors").string());
  REQUIRE(m["tensors"].size() == tensors.size());
  for (std::size_t k = 0; k < tensors.size(); ++k) {
    const auto& t = tensors[k];
    INFO("tensor ", t.name);
    CHECK(m["tensors"][k]["name"].get<std::string>() == t.name);
    REQUIRE(f.has(t.name));
    REQUIRE(f.info(t.name).shape == t.shape);
    const arma::mat got(t.data.data(), t.shape[1], t.shape[0]);
    test::check_close(got, stored(f, t.name), test::exact_vs_ref, t.name);
  }

  // The independent check of moe.*: ref::moe_forward itself, on a MoeWeights whose chosen experts
  // (and the shared one) are materialised, one token at a time so at most K+1 experts are held.
  const std::string L = fmt::format("layers.{}.", s.layer);
  const arma::mat x = stored(f, kFullscaleXMoe);          // [d, T]
  const arma::mat experts = stored(f, L + "moe.experts");  // [K, T]
  const arma::mat g = stored(f, L + "moe.g");              // [K, T]
  const arma::mat out = stored(f, L + "moe.out");          // [d, T]
  const Config& c = s.config;
  const std::string p = fmt::format("model.layers.{}.mlp.", s.layer);
  for (arma::uword t = 0; t < x.n_cols; ++t) {
    MoeWeights W = generate_router_weights(c, s.seed, s.layer);
    for (arma::uword k = 0; k < experts.n_rows; ++k) {
      const auto e = static_cast<std::uint64_t>(experts(k, t));
      W.experts[e] = generate_ffn_weights(s.seed, fmt::format("{}experts.{}.", p, e), c.hidden_size,
                                          c.moe_intermediate_size);
    }
    W.shared = generate_ffn_weights(s.seed, p + "shared_experts.", c.hidden_size,
                                    c.n_shared_experts * c.moe_intermediate_size);
    const arma::mat x_t = x.col(t);
    const ref::Routing r = ref::route(x_t, W, c, {}, nullptr);
    CHECK(arma::all(arma::vectorise(arma::conv_to<arma::mat>::from(r.experts) == experts.col(t))));
    test::check_close(r.g, arma::mat(g.col(t)), test::exact_vs_ref, fmt::format("moe.g token {}", t));
    const arma::mat want = ref::moe_forward(x_t, W, c, {}, nullptr);  // [d, 1]
    // Tolerance relative to the token's output scale, not per element: the stored set ran the
    // shared expert on all T tokens at once (a matrix-matrix product) and this check on one
    // (matrix-vector), which BLAS may sum in another order; an output element that is a
    // cancelling sum of 2048 products then has a large relative error of its own while its
    // absolute error stays at the rounding of the sum's terms.
    const double scale = arma::abs(want).max();
    const double normwise = arma::abs(arma::mat(out.col(t)) - want).max() / scale;
    MESSAGE(fmt::format("moe.out token {}: max|out| {:.3e}, max abs diff / max|out| = {:.3e}", t, scale, normwise));
    CHECK(normwise <= test::same_math_reordered.rel);
  }
}

TEST_CASE("the fast path at DeepSeek-V3 size: its MLA and MoE layers pass dsr1 compare (f32) against the full-scale set") {
  // The same layer inputs through fast::mla_forward (128 heads, r_kv 512, the tokens at pos0,
  // past YaRN's original context) and fast::moe_forward (256 experts, top 8 in 4 of 8 groups),
  // compared by the comparator of `dsr1 compare` at the float32 preset it picks for F32 tensors
  // (rtol = atol = 2^-16, docs/validating.md: sized for dot products of length d = 7168).
  const nlohmann::json m = manifest();
  const FullscaleSpec s = spec_of(m);
  const Config& c = s.config;
  const std::string L = fmt::format("layers.{}.", s.layer);
  const safetensors::File f((fs::path(kSet) / "fullscale.safetensors").string());
  const arma::fmat x_attn = arma::conv_to<arma::fmat>::from(stored(f, kFullscaleXAttn));  // [d, T]
  const arma::fmat x_moe = arma::conv_to<arma::fmat>::from(stored(f, kFullscaleXMoe));    // [d, T]
  fast::Options opt;
  opt.threads = 2;

  const arma::fmat u = fast::mla_forward(
      x_attn, fast::convert_mla(generate_mla_weights(c, s.seed, s.layer), c), c, s.pos0, nullptr, opt, nullptr);

  // MoE one token at a time, so that at most K + 1 experts are in memory (as float32, ~1.6 GB):
  // the router first, then the experts it chose, generated under their HF names.
  const std::string p = fmt::format("model.layers.{}.mlp.", s.layer);
  const MoeWeights R = generate_router_weights(c, s.seed, s.layer);
  fast::MoeWeightsF M;
  M.W_g = fast::pack_matrix(R.W_g);
  M.b = arma::conv_to<std::vector<double>>::from(R.b);
  M.experts.resize(static_cast<std::size_t>(c.n_routed_experts));  // filled per token below
  M.shared = fast::convert_ffn(generate_ffn_weights(s.seed, p + "shared_experts.", c.hidden_size,
                                                    c.n_shared_experts * c.moe_intermediate_size));
  const arma::uword T = x_moe.n_cols, K = static_cast<arma::uword>(c.num_experts_per_tok);
  arma::fmat out(x_moe.n_rows, T);
  arma::mat experts(K, T), g(K, T);
  for (arma::uword t = 0; t < T; ++t) {
    const arma::fmat x_t = x_moe.col(t);
    const fast::Routing r = fast::route(x_t, M, c, opt, nullptr);
    for (arma::uword k = 0; k < K; ++k) {
      const auto e = r.experts(k, 0);
      M.experts[e] = fast::convert_ffn(generate_ffn_weights(
          s.seed, fmt::format("{}experts.{}.", p, e), c.hidden_size, c.moe_intermediate_size));
    }
    out.col(t) = fast::moe_forward(x_t, M, c, opt, nullptr);
    experts.col(t) = arma::conv_to<arma::vec>::from(r.experts.col(0));
    g.col(t) = r.g.col(0);
    for (arma::uword k = 0; k < K; ++k) M.experts[r.experts(k, 0)] = fast::FfnWeightsF{};
  }

  // [rows, T] in memory is [T, rows] row-major on disk, as every dsr1 file stores it.
  auto entry = [](const std::string& name, const arma::mat& x) {
    return compare::TensorSet::Entry{name, {x.n_cols, x.n_rows}, std::vector<double>(x.begin(), x.end()), "F32"};
  };
  const auto candidate = compare::TensorSet::from_entries(
      "fast path at full scale",
      {entry(L + "attn.u", arma::conv_to<arma::mat>::from(u)), entry(L + "moe.experts", experts),
       entry(L + "moe.g", g), entry(L + "moe.out", arma::conv_to<arma::mat>::from(out))},
      c);
  const auto golden = compare::TensorSet::open((fs::path(kSet) / "fullscale.safetensors").string());
  compare::Options all;
  all.all = true;  // report every tensor, not only up to the first divergence
  const compare::Report rep = compare::compare(golden, candidate, all);
  INFO(compare::format_text(rep));
  CHECK(rep.passed());
  CHECK(rep.compared() == 4);  // attn.u, moe.experts, moe.g, moe.out; the two inputs are not outputs
  for (const auto& r : rep.results)
    if (r.status != compare::Status::Missing) {
      CHECK_MESSAGE(r.tol.name == "f32", r.name);
      MESSAGE(fmt::format("{}: max abs {:.2e}, max rel {:.2e}", r.name, r.max_abs, r.max_rel));
    }
  // The preset's absolute floor (1.5e-5) assumes O(1) values; moe.out has an RMS of about 0.05.
  // So also hold both outputs to the fast path's own bound, |fast - ref| <= 1e-5 rms(ref)
  // (tests/test_fast_model.cpp; observed here: about 3e-6).
  for (const auto& [name, got] : {std::pair{L + "attn.u", arma::conv_to<arma::mat>::from(u)},
                                  std::pair{L + "moe.out", arma::conv_to<arma::mat>::from(out)}}) {
    const arma::mat want = stored(f, name);
    const double rms = std::sqrt(arma::mean(arma::vectorise(arma::square(want))));
    const double worst = arma::abs(got - want).max() / rms;
    MESSAGE(fmt::format("{}: max |fast - ref| / rms(ref) = {:.2e}", name, worst));
    CHECK(worst <= 1e-5);
  }
}
