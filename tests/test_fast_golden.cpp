// The fast path against every checked-in golden set, with the comparator of `dsr1 compare`.
//
// For each set under golden/sets/ the test loads the set's own config, weights, tokens and
// decode_from, runs the fast path twice (one full forward; a prefill of decode_from tokens then
// one token at a time through the latent cache, traced under "incremental." as the golden set
// stores it), and hands every tensor the fast path traced to compare::compare against the set,
// exactly as `dsr1 compare golden/sets/v3 fast-dump.safetensors` would.
//
// Tolerance: the comparator's "f32" preset, which it picks itself for float32 candidates:
// |c - r| <= 2^-16 (1 + |r|), i.e. rtol = atol = 1.5e-5 (derivation: docs/validating.md,
// "Tolerance policy"). The candidate tensors are recorded as F32, what the fast path computes.
// The golden sets hold tensors the fast path does not compute (naive-form keys and values,
// scores and probabilities, MTP); those are reported missing and are not failures, so the
// test also checks that every tensor the fast path traced was found in the set and compared.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "reference/tools/compare.hpp"
#include "reference/fast/model.hpp"
#include "reference/fast/weights.hpp"
#include "reference/deepseek/loader.hpp"
#include "reference/trace/trace.hpp"

namespace fs = std::filesystem;
using namespace dsr1;
using compare::TensorSet;

namespace {

struct GoldenInputs {
  std::vector<std::int64_t> tokens;
  std::int64_t decode_from = 0;
};

GoldenInputs read_manifest(const std::string& dir) {
  std::ifstream in(fs::path(dir) / "manifest.json");
  REQUIRE_MESSAGE(in.good(), fmt::format("{}/manifest.json cannot be read", dir));
  const auto j = nlohmann::json::parse(in);
  return {j["tokens"].get<std::vector<std::int64_t>>(), j["decode_from"].get<std::int64_t>()};
}

// Every golden set checked in (each directory holding a manifest.json).
std::vector<std::string> golden_sets() {
  std::vector<std::string> dirs;
  for (const auto& e : fs::directory_iterator("golden/sets"))
    if (fs::exists(e.path() / "manifest.json")) dirs.push_back(e.path().string());
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

// The fast path's tensors for a golden set's inputs, named as the golden set names them.
TensorSet fast_run(const std::string& dir, const fast::Options& opt) {
  const LoadedModel m = load_model_dir(dir, /*with_mtp=*/false);
  const fast::ModelWeightsF F = fast::convert_weights(m.weights, m.config);
  const GoldenInputs in = read_manifest(dir);
  RecordingTracer tr({"*"});
  fast::forward(F, m.config, in.tokens, 0, nullptr, opt, &tr);
  {
    TraceScope scope(&tr, "incremental");
    fast::forward_incremental(F, m.config, in.tokens, in.decode_from, opt, &tr);
  }
  std::vector<TensorSet::Entry> entries;
  for (const auto& e : tr.entries()) entries.push_back({e.name, e.shape, e.data, "F32"});
  return TensorSet::from_entries(fmt::format("fast path on {} ({} threads)", dir, opt.threads),
                                 std::move(entries), m.config);
}

void check_against_golden(const std::string& dir, const fast::Options& opt) {
  CAPTURE(dir);
  CAPTURE(opt.threads);
  const TensorSet golden = TensorSet::open(dir);
  const TensorSet candidate = fast_run(dir, opt);
  compare::Options copt;
  copt.all = true;  // report every tensor, not only up to the first divergence
  const compare::Report rep = compare::compare(golden, candidate, copt);
  INFO(compare::format_text(rep));
  CHECK(rep.passed());
  CHECK(rep.only_in_candidate.empty());  // every traced name exists in the golden set
  std::size_t compared = 0;
  for (const auto& r : rep.results) {
    if (r.status == compare::Status::Missing) continue;
    CHECK_MESSAGE(r.status == compare::Status::Pass, r.name);
    CHECK_MESSAGE(r.tol.name == "f32", r.name);  // the comparator chose the float32 preset
    ++compared;
  }
  CHECK(compared == candidate.tensors().size());
  // Both forms are in: the full pass and every decode step of the incremental one.
  CHECK(golden.has("logits"));
  CHECK(candidate.has("logits"));
  CHECK(candidate.has("incremental.logits"));
}

}  // namespace

TEST_CASE("the fast path passes dsr1 compare (f32 preset) against every golden set") {
  const auto dirs = golden_sets();
  REQUIRE(dirs.size() >= 3);  // v3, v2-lite, yarn-long
  for (const auto& dir : dirs) {
    fast::Options opt;
    opt.threads = 2;
    check_against_golden(dir, opt);
  }
}

TEST_CASE("the fast path passes against every golden set with block sizes off every dimension") {
  // Block sizes that divide none of the tiny dimensions, so every kernel takes its edge cases;
  // decode_kb = 3 cuts the cached keys into several blocks that the decode merge combines.
  fast::Options opt;
  opt.threads = 3;
  opt.mc = 37;
  opt.nc = 13;
  opt.kc = 29;
  opt.attn_qb = 5;
  opt.attn_heads = 3;
  opt.attn_kb = 11;
  opt.decode_kb = 3;
  for (const auto& dir : golden_sets()) check_against_golden(dir, opt);
}
