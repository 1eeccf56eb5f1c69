// dsr1 compare: a golden set passes against itself, one perturbed element is found and named
// first, router sets and near ties are classified, and bad inputs are reported, not crashed on.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "reference/tools/compare.hpp"
#include "reference/io/npy.hpp"
#include "reference/io/safetensors.hpp"

namespace fs = std::filesystem;
using namespace dsr1;
using compare::TensorSet;

namespace {

const char* kSet = "golden/sets/v3";

std::vector<TensorSet::Entry> entries_of(const TensorSet& s) {
  std::vector<TensorSet::Entry> out;
  for (const auto& t : s.tensors()) out.push_back({t.name, t.shape, s.read(t.name), t.dtype});
  return out;
}

TensorSet::Entry& find(std::vector<TensorSet::Entry>& es, const std::string& name) {
  for (auto& e : es)
    if (e.name == name) return e;
  FAIL("no tensor ", name);
  throw;
}

int run_cli(const std::string& args) {
  const std::string cmd = fmt::format("{}/dsr1 {} > {}/compare_cli.out 2>&1", DSR1_BINARY_DIR, args, DSR1_BINARY_DIR);
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace

TEST_CASE("compare: a golden set against itself passes every tensor") {
  const auto ref = TensorSet::open(kSet);
  const auto rep = compare::compare(ref, ref, {});
  CHECK(rep.passed());
  CHECK(rep.compared() == ref.tensors().size());
  CHECK(rep.missing == 0);
  CHECK(format_text(rep).find("RESULT: PASS") != std::string::npos);
}

TEST_CASE("compare: one perturbed element of a mid-layer tensor fails and is named first, with position and element") {
  const auto ref = TensorSet::open(kSet);
  auto es = entries_of(ref);
  // layers.1.attn.c_kv_hat is [T=8, r_kv=24]: position 6, element 13, changed by 1e-6 relative.
  auto& e = find(es, "layers.1.attn.c_kv_hat");
  REQUIRE(e.shape == std::vector<std::uint64_t>{8, 24});
  e.data[6 * 24 + 13] *= 1.0 + 1e-6;
  const auto cand = TensorSet::from_entries("perturbed", es, ref.config());
  for (bool all : {false, true}) {
    compare::Options opt;
    opt.all = all;
    const auto rep = compare::compare(ref, cand, opt);
    CHECK_FALSE(rep.passed());
    REQUIRE(rep.first_divergence.has_value());
    const auto& r = rep.results[*rep.first_divergence];
    CHECK(r.name == "layers.1.attn.c_kv_hat");
    CHECK(r.failed == 1);
    CHECK(r.worst.layer == "1");
    CHECK(r.worst.position == 6);
    CHECK(r.worst.element == 13);
    // Every stage before it passed; without --all nothing after it is listed.
    for (std::size_t k = 0; k < *rep.first_divergence; ++k) CHECK(rep.results[k].status == compare::Status::Pass);
    if (!all) CHECK(rep.results.size() == *rep.first_divergence + 1);
    else CHECK(rep.results.size() == ref.tensors().size());
    const std::string text = format_text(rep);
    CHECK(text.find("FIRST DIVERGENCE: layers.1.attn.c_kv_hat at layer 1, position 6, element 13") != std::string::npos);
  }
}

TEST_CASE("compare CLI: exit 0 on a set against itself, non-zero on a perturbed safetensors copy") {
  CHECK(run_cli(fmt::format("compare {} {}", kSet, kSet)) == 0);
  const auto ref = TensorSet::open(kSet);
  std::vector<safetensors::NamedTensor> ts;
  for (const auto& t : ref.tensors()) ts.push_back({t.name, t.shape, ref.read(t.name), safetensors::DType::F64});
  for (auto& t : ts)
    if (t.name == "layers.2.attn.q_rope") t.data[3 * 32 + 9] += 1e-9;  // position 3, head 1, element 1
  const std::string path = fmt::format("{}/compare_perturbed.safetensors", DSR1_BINARY_DIR);
  safetensors::write(path, ts);
  CHECK(run_cli(fmt::format("compare {} {}", kSet, path)) == 1);
  const auto rep = compare::compare(ref, TensorSet::open(path), {});
  REQUIRE(rep.first_divergence.has_value());
  const auto& r = rep.results[*rep.first_divergence];
  CHECK(r.name == "layers.2.attn.q_rope");
  CHECK(r.worst.position == 3);
  CHECK(r.worst.head == 1);  // d_rope = 8: column 9 is head 1, element 1
  CHECK(r.worst.element == 1);
  // The same in float32: the f32 preset is chosen from the dtype and the perturbation is
  // below it, so an honest float32 rounding of the golden set passes.
  for (auto& t : ts) t.dtype = safetensors::DType::F32;
  const std::string p32 = fmt::format("{}/compare_f32.safetensors", DSR1_BINARY_DIR);
  safetensors::write(p32, ts);
  CHECK(run_cli(fmt::format("compare {} {}", kSet, p32)) == 0);
  CHECK(run_cli(fmt::format("compare {} {} --preset f64", kSet, p32)) == 1);
}

TEST_CASE("compare: router outputs are compared as sets, near ties are told apart from bugs") {
  const auto ref = TensorSet::open(kSet);
  const std::string E = "layers.1.moe.experts", G = "layers.1.moe.g";
  {
    // Same experts listed in another order (with their weights): passes.
    auto es = entries_of(ref);
    auto& ex = find(es, E);
    auto& g = find(es, G);
    const std::uint64_t K = ex.shape[1];
    std::swap(ex.data[0], ex.data[K - 1]);
    std::swap(g.data[0], g.data[K - 1]);
    const auto rep = compare::compare(ref, TensorSet::from_entries("reordered", es, ref.config()), {});
    CHECK(rep.passed());
  }
  {
    // A different expert at position 2: a semantic difference, the margin is far above tolerance.
    auto es = entries_of(ref);
    auto& ex = find(es, E);
    const std::uint64_t K = ex.shape[1];
    std::vector<bool> used(8, false);
    for (std::uint64_t k = 0; k < K; ++k) used[static_cast<std::size_t>(ex.data[2 * K + k])] = true;
    double other = 0;
    while (used[static_cast<std::size_t>(other)]) other += 1;
    ex.data[2 * K + 1] = other;
    const auto rep = compare::compare(ref, TensorSet::from_entries("wrong expert", es, ref.config()), {});
    REQUIRE(rep.first_divergence.has_value());
    const auto& r = rep.results[*rep.first_divergence];
    CHECK(r.name == E);
    CHECK(r.worst.position == 2);
    REQUIRE_FALSE(r.notes.empty());
    CHECK(r.notes[0].find("semantic") != std::string::npos);
  }
  {
    // A synthetic near tie: experts 1 and 2 differ by 1e-7 in s_tilde; a float32 candidate
    // choosing 2 instead of 1 is a legitimate flip, and its gate weights are not compared.
    const std::vector<std::uint64_t> sh = {2, 4}, sk = {2, 2};
    const std::vector<double> s_tilde = {0.9, 0.5, 0.5 - 1e-7, 0.1, 0.9, 0.5, 0.2, 0.1};
    std::vector<TensorSet::Entry> r = {{"layers.1.moe.s_tilde", sh, s_tilde, "F64"},
                                       {"layers.1.moe.experts", sk, {0, 1, 0, 1}, "F64"},
                                       {"layers.1.moe.g", sk, {0.6, 0.4, 0.7, 0.3}, "F64"}};
    auto c = r;
    c[0].dtype = c[1].dtype = c[2].dtype = "F32";
    c[1].data = {0, 2, 0, 1};
    c[2].data = {0.61, 0.39, 0.7, 0.3};
    const auto rep = compare::compare(TensorSet::from_entries("ref", r), TensorSet::from_entries("cand", c), {});
    CHECK(rep.passed());
    REQUIRE(rep.results.size() == 3);
    CHECK(rep.results[1].notes.at(0).find("near-tie flip") != std::string::npos);
    CHECK(rep.results[2].compared == 2);  // token 0 excluded from moe.g
    // The same flip with a wide margin (0.3) is a bug.
    r[0].data[2] = 0.2;
    c[0].data[2] = 0.2;
    const auto bad = compare::compare(TensorSet::from_entries("ref", r), TensorSet::from_entries("cand", c), {});
    CHECK_FALSE(bad.passed());
    CHECK(bad.results[*bad.first_divergence].name == "layers.1.moe.experts");
  }
}

TEST_CASE("compare: missing tensors, shape mismatches and transposed candidates are reported, not crashed on") {
  const auto ref = TensorSet::open(kSet);
  // An .npz with two tensors, one transposed.
  npy::Array h;
  h.shape = ref.info("embed.h").shape;
  h.data = ref.read("embed.h");
  npy::Array c_kv;
  const auto& ci = ref.info("layers.0.attn.c_kv");
  c_kv.shape = {ci.shape[1], ci.shape[0]};
  c_kv.data.assign(ci.shape[0] * ci.shape[1], 0.0);
  const std::string path = fmt::format("{}/compare_partial.npz", DSR1_BINARY_DIR);
  npy::write_npz(path, {{"embed.h", h}, {"layers.0.attn.c_kv", c_kv}, {"my.extra", h}});
  compare::Options opt;
  opt.all = true;
  const auto rep = compare::compare(ref, TensorSet::open(path), opt);
  CHECK_FALSE(rep.passed());
  CHECK(rep.missing == ref.tensors().size() - 2);
  CHECK(rep.only_in_candidate == std::vector<std::string>{"my.extra"});
  const auto& r = rep.results[*rep.first_divergence];
  CHECK(r.name == "layers.0.attn.c_kv");
  CHECK(r.status == compare::Status::ShapeMismatch);
  CHECK(r.notes.at(0).find("transposed") != std::string::npos);
  // --names narrows the walk: the embedding alone passes.
  compare::Options only;
  only.names = {"embed.*"};
  CHECK(compare::compare(ref, TensorSet::open(path), only).passed());
  // Unknown formats and missing paths are clear errors.
  CHECK_THROWS_WITH_AS(TensorSet::open("no/such/path.safetensors"), doctest::Contains("no such file"), std::runtime_error);
  CHECK_THROWS_WITH_AS(TensorSet::open("CMakeLists.txt"), doctest::Contains("unknown format"), std::runtime_error);
}

TEST_CASE("compare: worst elements are decoded into layer, head, query and key position") {
  Config c = preset("tiny-v3");
  // scores [n_h=4, T=6, T_k=6]: flat index of (head 2, query 5, key 3).
  auto L = compare::locate("layers.3.attn.scores", {4, 6, 6}, 2 * 36 + 5 * 6 + 3, &c);
  CHECK(L.layer == "3");
  CHECK(L.head == 2);
  CHECK(L.position == 5);
  CHECK(L.key_position == 3);
  CHECK(L.text().rfind("layer 3, head 2, query position 5, key position 3", 0) == 0);
  // A decode step carries its absolute position in the name.
  L = compare::locate("incremental.decode.7.layers.0.attn.q_nope", {1, 64}, 40, &c);
  CHECK(L.position == 7);
  CHECK(L.head == 2);  // d_nope = 16
  CHECK(L.element == 8);
  L = compare::locate("incremental.decode.7.layers.0.attn.k_nope", {8, 64}, 5 * 64 + 17, &c);
  CHECK(L.key_position == 5);
  CHECK(L.head == 1);
  L = compare::locate("mtp.block.moe.experts", {7, 3}, 4 * 3 + 2, &c);
  CHECK(L.layer == "mtp");
  CHECK(L.position == 4);
  CHECK(L.element_kind == "slot");
}

TEST_CASE("compare: tolerance presets are G times the unit roundoff, and follow the candidate's dtype") {
  CHECK(compare::preset_tolerance("f64").rtol == std::ldexp(1.0, -40));
  CHECK(compare::preset_tolerance("f32").rtol == std::ldexp(1.0, -16));
  CHECK(compare::preset_tolerance("bf16").rtol == std::ldexp(1.0, -5));
  CHECK(compare::preset_tolerance("fp8").rtol == std::ldexp(1.0, -3));
  CHECK(compare::tolerance_for_dtype("F32").name == "f32");
  CHECK(compare::tolerance_for_dtype("<f4").name == "f32");
  CHECK(compare::tolerance_for_dtype("BF16").name == "bf16");
  CHECK(compare::tolerance_for_dtype("F8_E4M3").name == "fp8");
  CHECK(compare::tolerance_for_dtype("F64").name == "f64");
  CHECK_THROWS_WITH_AS(compare::preset_tolerance("int4"), doctest::Contains("unknown tolerance preset"),
                       std::invalid_argument);
  // Masked scores: -inf matches -inf or a large finite negative mask value, nothing else.
  const std::vector<std::uint64_t> sh = {1, 3};
  const TensorSet r = TensorSet::from_entries("r", {{"layers.0.attn.scores", sh, {0.5, -INFINITY, -INFINITY}, "F64"}});
  CHECK(compare::compare(r, TensorSet::from_entries("c", {{"layers.0.attn.scores", sh, {0.5, -INFINITY, -1e30}, "F64"}}), {})
            .passed());
  CHECK_FALSE(
      compare::compare(r, TensorSet::from_entries("c", {{"layers.0.attn.scores", sh, {0.5, -INFINITY, 0.0}, "F64"}}), {})
          .passed());
}
