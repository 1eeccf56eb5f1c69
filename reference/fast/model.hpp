// The whole model on the fast path: embedding, L blocks, final norm, LM head, incremental decoding
// with a float32 latent cache; mirrors reference/deepseek/model.hpp (ref::forward, forward_incremental).
// Leaves out: MTP, sampling, the naive attention form and the conformance faults.
//
//   h = E[token];  for l: h = h + MLA_l(RMSNorm_attn_l(h));  h = h + FFN_l(RMSNorm_ffn_l(h))
//   logits = W_head RMSNorm_final(h)                                               spec §2
// Activations are float32, [rows, T] with one token per column. Trace names are the
// reference's at the block edges: embed.h, layers.{l}.attn_norm, layers.{l}.attn.{q_nope,
// q_rope, c_kv_hat, k_rope, o, u}, layers.{l}.h_attn, layers.{l}.ffn_norm, layers.{l}.ffn.out
// or layers.{l}.moe.{ell, s, experts, g, routed, shared, out}, layers.{l}.h, final_norm, logits.
#pragma once

#include <armadillo>
#include <cstdint>
#include <functional>
#include <vector>

#include "reference/deepseek/config.hpp"
#include "reference/fast/kv_cache.hpp"
#include "reference/fast/options.hpp"
#include "reference/fast/weights.hpp"
#include "reference/trace/trace.hpp"

namespace dsr1::fast {

// The latent cache of every layer; length() tokens processed so far.
struct ModelCache {
  std::vector<LatentKvCache> layers;
  std::int64_t length() const { return layers.empty() ? 0 : layers.front().length(); }
  std::int64_t bytes_allocated() const;
};
// reserve_tokens > 0 allocates room for that many tokens up front.
ModelCache make_cache(const Config& c, std::int64_t reserve_tokens = 0);
// Bytes of a model cache holding `tokens` tokens: L (tokens (r_kv + d_rope) + MR) * 4.
std::int64_t cache_bytes(const Config& c, std::int64_t tokens);

// What a forward pass needs from the weights, however they are held: all resident
// (ModelWeightsF), or fetched from a source layer by layer (source_model.hpp).
class WeightsAccess {
 public:
  virtual ~WeightsAccess() = default;
  // Token v's embedding row, float32, into out[0 .. d-1].
  virtual void embed(std::int64_t v, float* out) const = 0;
  // Calls use(B) with layer l's weights: they may be fetched for this call and released after
  // (a MoE layer's routed experts may come through MoeWeightsF::fetch_expert).
  virtual void with_layer(std::int64_t l, const std::function<void(const BlockWeightsF&)>& use) const = 0;
  virtual const std::vector<float>& final_norm() const = 0;  // [d]
  // logits = W_head x: [V, T] for x [d, T].
  virtual arma::fmat head(const arma::fmat& x, const Options& opt) const = 0;
  // Called after layer l of L has run (progress lines); may be empty.
  std::function<void(std::int64_t l, std::int64_t L)> on_layer_done;
};

// The resident model as a WeightsAccess (nothing fetched, nothing released).
class ResidentWeights : public WeightsAccess {
 public:
  explicit ResidentWeights(const ModelWeightsF& W) : W_(W) {}
  void embed(std::int64_t v, float* out) const override { W_.E.row(v, out); }
  void with_layer(std::int64_t l, const std::function<void(const BlockWeightsF&)>& use) const override {
    use(W_.layers.at(static_cast<std::size_t>(l)));
  }
  const std::vector<float>& final_norm() const override { return W_.w_final_norm; }
  arma::fmat head(const arma::fmat& x, const Options& opt) const override;
  std::int64_t layers() const { return static_cast<std::int64_t>(W_.layers.size()); }

 private:
  const ModelWeightsF& W_;
};

// The three entry points below, for any WeightsAccess.
arma::fmat forward(const WeightsAccess& W, const Config& c, const std::vector<std::int64_t>& tokens,
                   std::int64_t pos0, ModelCache* cache, const Options& opt, Tracer* tr);
arma::fvec decode(const WeightsAccess& W, const Config& c, std::int64_t token, ModelCache& cache,
                  const Options& opt, Tracer* tr);
arma::fmat forward_incremental(const WeightsAccess& W, const Config& c,
                               const std::vector<std::int64_t>& tokens, std::int64_t P,
                               const Options& opt, Tracer* tr);

// tokens at positions pos0 .. pos0+T-1. cache: null (the keys are then the T new tokens only,
// as in the reference) or holding exactly pos0 tokens. Returns logits [V, T].
// Throws on a token id outside [0, V), positions past max_position_embeddings, or a non-finite
// hidden state.
arma::fmat forward(const ModelWeightsF& W, const Config& c, const std::vector<std::int64_t>& tokens,
                   std::int64_t pos0, ModelCache* cache, const Options& opt, Tracer* tr);

// Prefill tokens[0..P-1] in one call (none when P = 0), then one decode() per remaining token;
// throws for P outside 0..T. Returns logits
// [V, T] for every position, comparable with forward(). Traces under "prefill." and
// "decode.{t}." as the reference does, and the assembled "logits".
arma::fmat forward_incremental(const ModelWeightsF& W, const Config& c,
                               const std::vector<std::int64_t>& tokens, std::int64_t P,
                               const Options& opt, Tracer* tr);

// One new token at position cache.length(); returns its logits [V].
arma::fvec decode(const ModelWeightsF& W, const Config& c, std::int64_t token, ModelCache& cache,
                  const Options& opt, Tracer* tr);

}  // namespace dsr1::fast
