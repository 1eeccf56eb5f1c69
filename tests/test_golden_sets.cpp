// The checked-in golden sets (golden/sets/): regenerated from their manifests and compared with
// the files, so numerical drift fails CI; plus the independent checks the manifests name.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "reference/tools/compare.hpp"
#include "reference/tools/golden_set.hpp"
#include "reference/deepseek/loader.hpp"
#include "reference/io/safetensors.hpp"
#include "tests/support/check.hpp"
#include "tests/support/tolerances.hpp"

namespace fs = std::filesystem;
using namespace dsr1;

namespace {

const char* kSets[] = {"golden/sets/v3", "golden/sets/v2-lite", "golden/sets/yarn-long"};

nlohmann::json manifest(const std::string& dir) {
  std::ifstream in(fs::path(dir) / "manifest.json");
  REQUIRE_MESSAGE(in.good(), dir, "/manifest.json is missing");
  return nlohmann::json::parse(in);
}

GoldenSpec spec_of(const nlohmann::json& m) {
  GoldenSpec s;
  s.config = config_from_json_text(m["config"].dump(), "manifest");
  s.config.name = m["config_name"].get<std::string>();
  s.seed = m["seed"].get<std::uint64_t>();
  s.tokens = m["tokens"].get<std::vector<std::int64_t>>();
  s.decode_from = m["decode_from"].get<std::int64_t>();
  s.dtype = safetensors::dtype_from_string(m["dtype"].get<std::string>());
  return s;
}

arma::mat as_matrix(const compare::TensorSet& s, const std::string& name) {
  const auto& info = s.info(name);
  REQUIRE(info.shape.size() == 2);
  const std::vector<double> v = s.read(name);
  // [T, V] on disk is column-major [V, T]: one token per column.
  return arma::mat(v.data(), info.shape[1], info.shape[0]);
}

}  // namespace

TEST_CASE("each checked-in golden set regenerates to the same weights (bitwise) and tensors (1e-12)") {
  for (const char* dir : kSets) {
    CAPTURE(dir);
    const nlohmann::json m = manifest(dir);
    CHECK(m["format"] == "dsr1-golden");
    CHECK(m["format_version"] == kGoldenFormatVersion);
    const fs::path regen = fs::path(DSR1_BINARY_DIR) / "golden_regen" / fs::path(dir).filename();
    fs::remove_all(regen);
    write_golden_set(regen.string(), spec_of(m));
    // Weights: the generator is integer arithmetic and one rounding, so they match bit for bit.
    const safetensors::File a((fs::path(dir) / "model.safetensors").string());
    const safetensors::File b((regen / "model.safetensors").string());
    REQUIRE(a.tensors().size() == b.tensors().size());
    for (const auto& t : a.tensors()) {
      CAPTURE(t.name);
      REQUIRE(b.has(t.name));
      CHECK(b.info(t.name).shape == t.shape);
      CHECK(std::memcmp(a.raw(t.name), b.raw(t.name), t.end - t.begin) == 0);
    }
    // Traced tensors: the same names in the same order, equal within the f64 preset (9.1e-13;
    // a BLAS built for another CPU may reorder sums, so bitwise equality is not demanded).
    const auto ref = compare::TensorSet::open(dir);
    const auto now = compare::TensorSet::open(regen.string());
    REQUIRE(ref.tensors().size() == now.tensors().size());
    for (std::size_t k = 0; k < ref.tensors().size(); ++k) CHECK(ref.tensors()[k].name == now.tensors()[k].name);
    compare::Options opt;
    opt.tolerance = compare::preset_tolerance("f64");
    opt.all = true;
    const auto rep = compare::compare(ref, now, opt);
    INFO(compare::format_text(rep));
    CHECK(rep.passed());
    CHECK(rep.missing == 0);
    CHECK(rep.compared() == ref.tensors().size());
  }
}

TEST_CASE("checked-in golden sets stay under 2 MB each") {
  for (const char* dir : kSets) {
    std::uintmax_t total = 0;
    for (const auto& e : fs::directory_iterator(dir)) total += e.file_size();
    CAPTURE(dir);
    CHECK(total <= 2u * 1024u * 1024u);
  }
}

TEST_CASE("golden sets: cached absorbed decoding reproduces the one-pass naive logits (two routes)") {
  for (const char* dir : kSets) {
    CAPTURE(dir);
    const auto s = compare::TensorSet::open(dir);
    test::check_close(as_matrix(s, "incremental.logits"), as_matrix(s, "logits"), test::same_math_reordered,
                      std::string(dir) + ": incremental.logits vs logits");
  }
}

TEST_CASE("golden sets cover what they claim: V3 paths, V2-Lite paths, positions past the YaRN context") {
  {
    const auto m = manifest("golden/sets/v3");
    const Config c = spec_of(m).config;
    CHECK(c.scoring_func == "sigmoid");
    CHECK(c.n_group > 1);
    CHECK(c.q_lora_rank > 0);
    CHECK(c.first_k_dense_replace >= 1);
    CHECK(c.num_nextn_predict_layers == 1);
    // The generator's gate biases include negative values (f(r) = r/16, docs/generator.md).
    const safetensors::File w("golden/sets/v3/model.safetensors");
    const auto b = w.read("model.layers.1.mlp.gate.e_score_correction_bias");
    CHECK(*std::min_element(b.begin(), b.end()) < 0);
    const auto s = compare::TensorSet::open("golden/sets/v3");
    CHECK(s.has("mtp.logits"));
    CHECK(s.has("layers.1.moe.group_scores"));
    CHECK(s.has("layers.0.ffn.act"));
    CHECK(s.has("layers.0.attn.c_q_hat"));
    CHECK(s.has("incremental.decode.7.layers.2.attn.q_tilde"));
  }
  {
    const Config c = spec_of(manifest("golden/sets/v2-lite")).config;
    CHECK(c.scoring_func == "softmax");
    CHECK(c.q_lora_rank == 0);
    CHECK_FALSE(c.has_gate_bias());
    const auto s = compare::TensorSet::open("golden/sets/v2-lite");
    CHECK_FALSE(s.has("layers.0.attn.c_q"));
    CHECK_FALSE(s.has("layers.1.moe.s_tilde"));
  }
  {
    const auto m = manifest("golden/sets/yarn-long");
    const GoldenSpec g = spec_of(m);
    CHECK(g.config.rope_scaling.type == "yarn");
    CHECK(static_cast<std::int64_t>(g.tokens.size()) > g.config.rope_scaling.original_max_position_embeddings);
    CHECK(g.decode_from > g.config.rope_scaling.original_max_position_embeddings);
  }
}
