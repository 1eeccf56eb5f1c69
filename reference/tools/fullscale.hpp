// Full-scale layer checks: one MLA layer and one MoE layer at the real model dimensions, with
// weights produced on demand by the portable generator (generator.hpp) under their HF names.
// Leaves out: the rest of the model (embedding, other layers, head) and the residual stream.
//
// The MoE layer of DeepSeek-V3 holds 256 experts of 3 x 2048 x 7168 weights (~90 GB in double);
// a token uses 8 of them. The router gate is generated, the router runs, and only the chosen
// experts and the shared expert are generated, one at a time, so the output is computed with
// ~0.4 GB of expert weights in memory. The arithmetic is that of ref::moe_forward, in the same
// order, so the result is the same bits (tests/test_fullscale_golden.cpp checks both claims).
//
// A full-scale golden set is a directory:
//   fullscale.safetensors   inputs and outputs only, float64:
//                             fullscale.x_attn [T, d]  input of MLA (already RMSNorm_attn-ed)
//                             fullscale.x_moe  [T, d]  input of MoE (already RMSNorm_ffn-ed)
//                             layers.{l}.attn.u [T, d], layers.{l}.moe.experts [T, K],
//                             layers.{l}.moe.g [T, K], layers.{l}.moe.out [T, d]
//   manifest.json           config, seed, layer, positions, the weight names, the checks
#pragma once

#include <armadillo>
#include <cstdint>
#include <string>
#include <vector>

#include "reference/tools/compare.hpp"
#include "reference/deepseek/config.hpp"
#include "reference/deepseek/router.hpp"
#include "reference/deepseek/weights.hpp"

namespace dsr1 {

// What a full-scale golden set is computed from. Tokens sit at positions pos0 .. pos0+T-1 and
// attend to each other causally (no earlier cache), as in a chunked prefill starting at pos0.
struct FullscaleSpec {
  Config config;
  std::uint64_t seed = 0;
  std::int64_t layer = 3;  // an MoE layer (layer >= first_k_dense_replace)
  std::int64_t pos0 = 0;
  std::int64_t T = 4;
};

// The generator tensor names of the two layer inputs, each of checkpoint shape [T, d].
inline constexpr const char* kFullscaleXAttn = "fullscale.x_attn";
inline constexpr const char* kFullscaleXMoe = "fullscale.x_moe";

// A layer input x: [d, T] with x(j, t) = sqrt(d) * generator_value(seed, name, t*d + j, d).
// The generator gives r / sqrt(d) (|r| < 1); the factor sqrt(d) makes the RMS O(1) (~1/sqrt(3)),
// the scale of a normalised hidden state. The golden set stores x itself, so nobody has to
// recompute it.
arma::mat fullscale_input(std::uint64_t seed, const std::string& name, std::int64_t d, std::int64_t T);

// A linear map [out, in] of HF tensor `name` (checkpoint shape [out, in]) from the generator.
arma::mat generate_matrix(std::uint64_t seed, const std::string& name, std::uint64_t out, std::uint64_t in);

// The MLA weights of layer `layer` from the generator under their HF names, the fused tensors
// (q_b_proj, kv_a_proj_with_mqa, kv_b_proj) split exactly as load_weights splits them.
MlaWeights generate_mla_weights(const Config& c, std::uint64_t seed, std::int64_t layer);

// The SwiGLU expert with HF prefix `prefix` ("model.layers.3.mlp.experts.17."), width I.
FfnWeights generate_ffn_weights(std::uint64_t seed, const std::string& prefix, std::uint64_t d, std::uint64_t I);

// The router of MoE layer `layer`: W_g, the bias (when the config has one), N_r EMPTY experts and
// no shared expert. ref::route accepts it as is; ref::moe_forward accepts it once the chosen
// experts (and the shared one) are filled in, since it touches no other expert.
MoeWeights generate_router_weights(const Config& c, std::uint64_t seed, std::int64_t layer);

struct LazyMoeResult {
  ref::Routing routing;  // experts, g: [K, T]
  arma::mat out;         // [d, T]: shared + sum_k g_k E_{i_k}(x)
};

// ref::moe_forward(x, W, c, {}, nullptr) for the generator's layer `layer`, generating each
// chosen expert once (in ascending index) and the shared expert, one at a time.
// x: [d, T]. Throws what ref::route throws for a bad config or input.
LazyMoeResult moe_forward_lazy(const arma::mat& x, const Config& c, std::uint64_t seed, std::int64_t layer);

// The stored tensors of a full-scale golden set, in computation order: the two inputs, MLA u
// (naive form), then the router's experts and weights and the MoE output. Also computes MLA in
// the absorbed form and throws if it differs from the naive one by more than 1e-12 rel
// (returned in `max_rel_naive_absorbed` when non-null).
std::vector<compare::TensorSet::Entry> fullscale_tensors(const FullscaleSpec& spec,
                                                         double* max_rel_naive_absorbed = nullptr);

// Computes and writes a full-scale golden set into `dir` (created if needed). Throws naming the
// problem for an invalid config, a dense layer, or T < 1.
void write_fullscale_golden(const std::string& dir, const FullscaleSpec& spec);

}  // namespace dsr1
