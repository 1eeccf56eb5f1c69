// Conformance suite with sabotage proofs: each known pitfall (spec §14) is switched on in a
// deliberately broken run of the reference, and `dsr1 compare` against a checked-in golden set
// must fail and name the first stage the mistake touches (docs/conformance.md).
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "reference/tools/compare.hpp"
#include "reference/tools/golden_set.hpp"
#include "reference/deepseek/loader.hpp"

namespace fs = std::filesystem;
using namespace dsr1;
using compare::TensorSet;

namespace {

struct Golden {
  std::string dir;
  Config config;
  ModelWeights weights;
  std::vector<std::int64_t> tokens;
  std::int64_t decode_from = 0;
};

Golden load(const std::string& dir) {
  Golden g;
  g.dir = dir;
  const bool with_mtp = load_config_json((fs::path(dir) / "config.json").string()).num_nextn_predict_layers > 0;
  LoadedModel m = load_model_dir(dir, with_mtp);
  g.config = m.config;
  g.weights = std::move(m.weights);
  std::ifstream in(fs::path(dir) / "manifest.json");
  const auto j = nlohmann::json::parse(in);
  g.tokens = j["tokens"].get<std::vector<std::int64_t>>();
  g.decode_from = j["decode_from"].get<std::int64_t>();
  return g;
}

TensorSet run(const Golden& g, const ModelWeights& W, const ref::ForwardOptions& opt, const std::string& what,
              const std::vector<std::int64_t>* tokens = nullptr) {
  const auto& t = tokens ? *tokens : g.tokens;
  const std::int64_t P = tokens ? static_cast<std::int64_t>(t.size()) : g.decode_from;
  return TensorSet::from_entries(what, golden_tensors(W, g.config, t, P, opt), g.config);
}

// Runs the sabotaged reference and returns the report of compare(golden set, sabotaged run).
compare::Report sabotage(const Golden& g, const ref::ForwardOptions& opt, const std::string& what) {
  const auto ref = TensorSet::open(g.dir);
  const auto rep = compare::compare(ref, run(g, g.weights, opt, what), {});
  INFO(compare::format_text(rep));
  CHECK_FALSE(rep.passed());
  REQUIRE(rep.first_divergence.has_value());
  return rep;
}

std::string first(const compare::Report& rep) { return rep.results[*rep.first_divergence].name; }
const compare::TensorResult& first_result(const compare::Report& rep) { return rep.results[*rep.first_divergence]; }

}  // namespace

TEST_CASE("conformance: the unsabotaged reference passes against every golden set") {
  for (const char* dir : {"golden/sets/v3", "golden/sets/v2-lite", "golden/sets/yarn-long"}) {
    CAPTURE(dir);
    const Golden g = load(dir);
    const auto rep = compare::compare(TensorSet::open(dir), run(g, g.weights, {}, "clean"), {});
    CHECK(rep.passed());
  }
}

TEST_CASE("P1 RoPE half-split layout on interleaved weights: first divergence attn.q_rope") {
  const Golden g = load("golden/sets/v3");
  ref::ForwardOptions opt;
  opt.rope_layout = ref::RopeLayout::HalfSplit;
  const auto rep = sabotage(g, opt, "rope half-split");
  CHECK(first(rep) == "layers.0.attn.q_rope");
  CHECK(first_result(rep).worst.position > 0);  // position 0 rotates by angle 0: no difference there
}

TEST_CASE("P1 RoPE layout on the YaRN set, positions past original_max_position_embeddings") {
  const Golden g = load("golden/sets/yarn-long");
  ref::ForwardOptions opt;
  opt.rope_layout = ref::RopeLayout::HalfSplit;
  CHECK(first(sabotage(g, opt, "rope half-split")) == "layers.0.attn.q_rope");
}

TEST_CASE("P2 softmax scale without the YaRN mscale, or mscale not squared: first divergence attn.scores") {
  for (const char* dir : {"golden/sets/v3", "golden/sets/yarn-long", "golden/sets/v2-lite"}) {
    CAPTURE(dir);
    const Golden g = load(dir);
    ref::ForwardOptions a, b;
    a.faults.no_mscale = true;
    b.faults.mscale_not_squared = true;
    CHECK(first(sabotage(g, a, "no mscale")) == "layers.0.attn.scores");
    CHECK(first(sabotage(g, b, "mscale not squared")) == "layers.0.attn.scores");
  }
}

TEST_CASE("P2 a scale bug hidden at position 0: one token passes end to end, later positions fail") {
  const Golden g = load("golden/sets/v3");
  ref::ForwardOptions bad;
  bad.faults.no_mscale = true;
  // Position 0 alone: one key, softmax of one score is 1 whatever the scale, so every output
  // stage (probabilities, block outputs, logits) agrees; only the raw score shows it.
  const std::vector<std::int64_t> one = {g.tokens[0]};
  const auto ref0 = run(g, g.weights, {}, "clean, position 0", &one);
  const auto bad0 = run(g, g.weights, bad, "no mscale, position 0", &one);
  compare::Options outputs;
  outputs.names = {"logits", "layers.*.h", "layers.*.attn.probs", "layers.*.attn.o", "mtp.logits"};
  const auto at0 = compare::compare(ref0, bad0, outputs);
  CHECK(at0.passed());
  CHECK(at0.compared() > 0);
  // With positions 0..7 the same outputs fail, and the full walk names the scores first.
  const auto ref = TensorSet::open(g.dir);
  const auto later = compare::compare(ref, run(g, g.weights, bad, "no mscale"), outputs);
  CHECK_FALSE(later.passed());
  const auto rep = sabotage(g, bad, "no mscale");
  CHECK(first(rep) == "layers.0.attn.scores");
  CHECK(first_result(rep).worst.position > 0);
}

TEST_CASE("P4 gate bias used in the weights: first divergence moe.g") {
  const Golden g = load("golden/sets/v3");
  ref::ForwardOptions opt;
  opt.faults.bias_in_weights = true;
  CHECK(first(sabotage(g, opt, "bias in weights")) == "layers.1.moe.g");
}

TEST_CASE("P5 V3 group score as max instead of top-2 sum: first divergence moe.group_scores") {
  const Golden g = load("golden/sets/v3");
  ref::ForwardOptions opt;
  opt.faults.group_score_max = true;
  CHECK(first(sabotage(g, opt, "group score max")) == "layers.1.moe.group_scores");
}

TEST_CASE("P6 dropped groups masked with 0 instead of -inf: first divergence moe.experts, a semantic flip") {
  // The generator's biases are small (|b| < 1/16) and sigmoid scores are positive, so 0-masking
  // cannot bite with them. Shifting every bias by -0.75 keeps the correct selection unchanged
  // (a uniform shift ranks experts and groups identically) but makes biased scores negative:
  // exactly the real-world situation of the pitfall.
  Golden g = load("golden/sets/v3");
  ModelWeights W = g.weights;
  for (auto& layer : W.layers)
    if (layer.is_moe) layer.moe.b -= 0.75;
  if (W.mtp) W.mtp->block.moe.b -= 0.75;
  const auto shifted = run(g, W, {}, "shifted biases");
  compare::Options routing;
  routing.names = {"*moe.experts", "*moe.g", "logits"};
  CHECK(compare::compare(TensorSet::open(g.dir), shifted, routing).passed());
  ref::ForwardOptions opt;
  opt.faults.group_mask_zero = true;
  const auto rep = compare::compare(shifted, run(g, W, opt, "group mask zero"), {});
  INFO(compare::format_text(rep));
  REQUIRE(rep.first_divergence.has_value());
  CHECK(first(rep) == "layers.1.moe.experts");
  REQUIRE_FALSE(first_result(rep).notes.empty());
  CHECK(first_result(rep).notes[0].find("semantic") != std::string::npos);
}

TEST_CASE("P8 V2 softmax weights renormalised: first divergence moe.g") {
  const Golden g = load("golden/sets/v2-lite");
  ref::ForwardOptions opt;
  opt.faults.renormalize_softmax = true;
  CHECK(first(sabotage(g, opt, "renormalised softmax")) == "layers.1.moe.g");
}

TEST_CASE("P17 routed_scaling_factor applied twice: first divergence moe.g") {
  const Golden g = load("golden/sets/v3");
  ref::ForwardOptions opt;
  opt.faults.double_routed_scaling = true;
  CHECK(first(sabotage(g, opt, "double scaling")) == "layers.1.moe.g");
}

TEST_CASE("P13 FP8 scale divided or edge blocks unscaled: first divergence at the first FP8 projection") {
  // The golden set's weights written as the V3 release stores them (FP8 e4m3 in 128x128
  // blocks, every block of these small matrices a partial edge block), then read back right
  // and wrong.
  const Golden g = load("golden/sets/v3");
  const fs::path dir = fs::path(DSR1_BINARY_DIR) / "conformance_fp8";
  fs::remove_all(dir);
  write_checkpoint(dir.string(), g.config, g.weights, safetensors::DType::F8_E4M3);
  const LoadedModel right = load_model_dir(dir.string(), true);
  const auto ref = run(g, right.weights, {}, "fp8 dequantized right");
  for (int k = 0; k < 2; ++k) {
    Faults f;
    (k == 0 ? f.fp8_scale_divide : f.fp8_skip_edge_blocks) = true;
    CAPTURE(k);
    const LoadedModel wrong = load_model_dir(dir.string(), true, f);
    const auto rep = compare::compare(ref, run(g, wrong.weights, {}, "fp8 dequantized wrong"), {});
    INFO(compare::format_text(rep));
    REQUIRE(rep.first_divergence.has_value());
    // Embedding and norms are BF16 in the release; q_a_proj is the first FP8 weight used.
    CHECK(first(rep) == "layers.0.attn.c_q");
  }
}

TEST_CASE("P16 un-normalised latent in the cache: first divergence in attention over the cached latents") {
  const Golden g = load("golden/sets/v3");
  ref::ForwardOptions opt;
  opt.faults.cache_unnormalized_latent = true;
  const auto rep = sabotage(g, opt, "unnormalised latent");
  // The keys and values are rebuilt from the latent: the naive pass shows it in k_nope.
  CHECK(first(rep) == "layers.0.attn.k_nope");
  // Restricted to the cached decoding path, the first stage is the absorbed scores, which
  // read the cached latents directly.
  compare::Options inc;
  inc.names = {"incremental.*"};
  const auto dec = compare::compare(TensorSet::open(g.dir), run(g, g.weights, opt, "unnormalised latent"), inc);
  REQUIRE(dec.first_divergence.has_value());
  CHECK(first(dec) == "incremental.prefill.layers.0.attn.scores");
}

TEST_CASE("P10 MTP concat order [hidden, embedding]: first divergence mtp.h_proj") {
  const Golden g = load("golden/sets/v3");
  ref::ForwardOptions opt;
  opt.faults.mtp_concat_hidden_first = true;
  CHECK(first(sabotage(g, opt, "mtp concat")) == "mtp.h_proj");
}
