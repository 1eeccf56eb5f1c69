// Full-scale layer checks (fullscale.hpp): generator weights by HF name, MLA and lazily
// generated MoE at the real dimensions, and the golden set that stores only inputs and outputs.
// Leaves out: the formulas themselves (mla.cpp, router.cpp, moe.cpp, ffn.hpp).
#include "reference/tools/fullscale.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "reference/deepseek/ffn.hpp"
#include "reference/io/generator.hpp"
#include "reference/deepseek/loader.hpp"
#include "reference/deepseek/mla.hpp"
#include "reference/deepseek/moe.hpp"
#include "reference/deepseek/weight_store.hpp"
#include "reference/io/safetensors.hpp"

namespace dsr1 {

namespace fs = std::filesystem;
using u64 = std::uint64_t;

arma::mat fullscale_input(std::uint64_t seed, const std::string& name, std::int64_t d, std::int64_t T) {
  if (d < 1 || T < 1)
    throw std::invalid_argument(fmt::format("fullscale input '{}': d={} and T={} must be >= 1", name, d, T));
  // Checkpoint shape [T, d] row-major = column-major [d, T]: column t is token t.
  arma::mat x(static_cast<arma::uword>(d), static_cast<arma::uword>(T));
  generator_fill(seed, name, static_cast<u64>(d), 0, x.n_elem, x.memptr());
  x *= std::sqrt(static_cast<double>(d));
  return x;
}

arma::mat generate_matrix(std::uint64_t seed, const std::string& name, std::uint64_t out, std::uint64_t in) {
  // The row-major [out, in] values read column-major are W^T [in, out]: transpose once.
  arma::mat Wt(in, out);
  generator_fill(seed, name, in, 0, Wt.n_elem, Wt.memptr());
  return Wt.t();
}

static void check_layer(const Config& c, std::int64_t layer, bool need_moe) {
  validate(c);
  if (layer < 0 || layer >= c.num_hidden_layers)
    throw std::invalid_argument(fmt::format("fullscale ({}): layer {} is outside 0..{}", c.name, layer,
                                            c.num_hidden_layers - 1));
  if (need_moe && !c.is_moe_layer(layer))
    throw std::invalid_argument(fmt::format(
        "fullscale ({}): layer {} is dense (first_k_dense_replace={}), expected an MoE layer", c.name, layer,
        c.first_k_dense_replace));
}

MlaWeights generate_mla_weights(const Config& c, std::uint64_t seed, std::int64_t layer) {
  check_layer(c, layer, false);
  // The weight store's own fetch (fused tensors split as the loader splits them).
  return load_block_weights(c, generator_source(c, seed), layer).attn;
}

FfnWeights generate_ffn_weights(std::uint64_t seed, const std::string& prefix, std::uint64_t d, std::uint64_t I) {
  FfnWeights f;
  f.W_gate = generate_matrix(seed, prefix + "gate_proj.weight", I, d);
  f.W_up = generate_matrix(seed, prefix + "up_proj.weight", I, d);
  f.W_down = generate_matrix(seed, prefix + "down_proj.weight", d, I);
  return f;
}

MoeWeights generate_router_weights(const Config& c, std::uint64_t seed, std::int64_t layer) {
  check_layer(c, layer, true);
  MoeWeights W = load_block_weights(c, generator_source(c, seed), layer).moe;
  W.shared.reset();
  W.experts.resize(static_cast<std::size_t>(c.n_routed_experts));  // all empty
  return W;
}

LazyMoeResult moe_forward_lazy(const arma::mat& x, const Config& c, std::uint64_t seed, std::int64_t layer) {
  check_layer(c, layer, true);
  // The weight store over the generator: the router and shared expert now, each routed expert
  // when chosen (ref::moe_forward fetches it once, in ascending index).
  const GeneratorSource gen = generator_source(c, seed);
  const SourceStore weights(c, gen, false);
  const MoeWeights W = weights.block(layer).moe;
  LazyMoeResult res;
  res.routing = ref::route(x, W, c, {}, nullptr);  // experts, g: [K, T]
  const ref::ExpertFetch expert = [&](std::int64_t j) { return weights.expert(layer, j); };
  res.out = ref::moe_forward(x, W, expert, c, {}, nullptr);
  return res;
}

namespace {

// A matrix [rows, cols] (one token per column) as its disk form [cols, rows]: no copy of order.
compare::TensorSet::Entry entry(const std::string& name, const arma::mat& m) {
  return {name, {m.n_cols, m.n_rows}, std::vector<double>(m.begin(), m.end()), "F64"};
}

double max_rel_diff(const arma::mat& a, const arma::mat& b) {
  // |a - b| / max|b|: relative to the tensor's scale, so near-zero elements do not dominate.
  const double scale = arma::abs(b).max();
  return scale > 0 ? arma::abs(a - b).max() / scale : arma::abs(a - b).max();
}

}  // namespace

std::vector<compare::TensorSet::Entry> fullscale_tensors(const FullscaleSpec& s, double* max_rel_naive_absorbed) {
  check_layer(s.config, s.layer, true);
  if (s.T < 1) throw std::invalid_argument(fmt::format("fullscale: T={} tokens, expected >= 1", s.T));
  if (s.pos0 < 0 || s.pos0 + s.T > s.config.max_position_embeddings)
    throw std::invalid_argument(fmt::format("fullscale: positions {}..{} outside 0..max_position_embeddings-1={}",
                                            s.pos0, s.pos0 + s.T - 1, s.config.max_position_embeddings - 1));
  const Config& c = s.config;
  const std::string L = fmt::format("layers.{}.", s.layer);
  const arma::mat x_attn = fullscale_input(s.seed, kFullscaleXAttn, c.hidden_size, s.T);  // [d, T]
  const arma::mat x_moe = fullscale_input(s.seed, kFullscaleXMoe, c.hidden_size, s.T);    // [d, T]

  arma::mat u;  // [d, T]
  {
    const MlaWeights W = generate_mla_weights(c, s.seed, s.layer);  // ~1.5 GB at V3 size, freed below
    ref::MlaOptions naive, absorbed;
    naive.form = ref::AttnForm::Naive;
    absorbed.form = ref::AttnForm::Absorbed;
    u = ref::mla_forward(x_attn, W, c, s.pos0, nullptr, naive, nullptr);
    const arma::mat u_abs = ref::mla_forward(x_attn, W, c, s.pos0, nullptr, absorbed, nullptr);
    // Two routes to one result (spec §4.3): they differ only in the order of the products.
    const double rel = max_rel_diff(u_abs, u);
    if (max_rel_naive_absorbed) *max_rel_naive_absorbed = rel;
    if (!(rel <= 1e-12))
      throw std::runtime_error(fmt::format(
          "fullscale ({}): MLA naive and absorbed forms differ by {:.3e} rel (> 1e-12)", c.name, rel));
  }
  const LazyMoeResult moe = moe_forward_lazy(x_moe, c, s.seed, s.layer);

  const arma::mat experts = arma::conv_to<arma::mat>::from(moe.routing.experts);  // [K, T] as doubles
  return {entry(kFullscaleXAttn, x_attn),         entry(kFullscaleXMoe, x_moe),
          entry(L + "attn.u", u),                 entry(L + "moe.experts", experts),
          entry(L + "moe.g", moe.routing.g),      entry(L + "moe.out", moe.out)};
}

void write_fullscale_golden(const std::string& dir, const FullscaleSpec& s) {
  double rel = 0;
  const auto tensors = fullscale_tensors(s, &rel);
  fs::create_directories(dir);
  std::vector<safetensors::NamedTensor> named;
  nlohmann::json list = nlohmann::json::array();
  for (std::size_t k = 0; k < tensors.size(); ++k) {
    const auto& t = tensors[k];
    named.push_back({t.name, t.shape, t.data, safetensors::DType::F64});
    const bool input = t.name.rfind("fullscale.", 0) == 0;
    list.push_back({{"name", t.name},
                    {"file", "fullscale.safetensors"},
                    {"shape", t.shape},
                    {"dtype", "F64"},
                    {"role", input ? "input" : "output"},
                    {"order", k}});
  }
  safetensors::write((fs::path(dir) / "fullscale.safetensors").string(), named,
                     {{"format", "dsr1-fullscale-golden"}, {"dsr1_version", DSR1_VERSION}});

  const Config& c = s.config;
  const std::string p = fmt::format("model.layers.{}.", s.layer);
  nlohmann::json m;
  m["format"] = "dsr1-fullscale-golden";
  m["format_version"] = 1;
  m["dsr1_version"] = DSR1_VERSION;
  m["config_name"] = c.name;
  m["config"] = nlohmann::json::parse(config_to_json_text(c));
  m["seed"] = s.seed;
  m["layer"] = s.layer;
  m["pos0"] = s.pos0;
  m["T"] = s.T;
  m["positions"] = "pos0 .. pos0+T-1; the T tokens attend to each other causally, no earlier cache";
  m["rope_layout"] = "interleaved";
  m["inputs"] = {
      {kFullscaleXAttn, "input of MLA (already RMSNorm_attn-ed), [T, d]: sqrt(d) * generator value of tensor "
                        "'fullscale.x_attn' of shape [T, d]"},
      {kFullscaleXMoe, "input of MoE (already RMSNorm_ffn-ed), [T, d]: sqrt(d) * generator value of tensor "
                       "'fullscale.x_moe' of shape [T, d]"}};
  m["weights"] = {
      {"generator", "docs/generator.md (seed above, HF names and shapes of checkpoint_catalogue)"},
      {"mla", p + "self_attn.* (q_a_proj, q_a_layernorm, q_b_proj, kv_a_proj_with_mqa, kv_a_layernorm, "
                  "kv_b_proj, o_proj); the generator's values as they are, no FP8 scales applied"},
      {"moe", p + "mlp.gate.weight, " + p + "mlp.gate.e_score_correction_bias, " + p +
                  "mlp.experts.{e}.* for the chosen e only, " + p + "mlp.shared_experts.*"}};
  m["outputs"] = {
      {"attn.u", "ref::mla_forward, naive form: u = W_O o, without the residual"},
      {"moe.experts", "chosen expert indices per token, descending selection score, ties -> lower index"},
      {"moe.g", "gating weights incl. routed_scaling_factor"},
      {"moe.out", "ref::moe_forward: shared + routed, without the residual"}};
  m["independent_checks"] = nlohmann::json::array(
      {fmt::format("attn.u: the naive and the absorbed MLA forms agree at full scale to {:.2e} rel (<= 1e-12), "
                   "checked when the set is written and again in tests/test_fullscale_golden.cpp",
                   rel),
       "moe.*: equal to ref::moe_forward on a MoeWeights holding the materialised chosen experts and the shared "
       "expert (tests/test_fullscale_golden.cpp, at full scale per token, and bit for bit against all experts "
       "on tiny-v3)",
       "weights by name: generate_mla_weights / the router equal load_weights over the generator on tiny-v3, "
       "bit for bit (tests/test_fullscale_golden.cpp)"});
  m["tolerance"] = "float64: 1e-12 rel (tests/support/tolerances.hpp exact_vs_ref)";
  m["tensors"] = list;
  std::ofstream out(fs::path(dir) / "manifest.json", std::ios::trunc);
  if (!out) throw std::runtime_error(fmt::format("cannot write '{}/manifest.json'", dir));
  out << m.dump(1) << "\n";
}

}  // namespace dsr1
