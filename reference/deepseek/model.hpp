// The whole DeepSeek-V2/V3/R1 model: embedding, L decoder blocks, final norm, LM head,
// incremental decoding with the latent KV cache, greedy generation and the MTP head.
// Leaves out: sampling other than greedy, batching several sequences.
//
//   h = E[token]                                                     spec §2
//   for l in 0..L-1:  h = h + MLA_l(RMSNorm_attn_l(h));  h = h + FFN_l(RMSNorm_ffn_l(h))
//   logits = W_head RMSNorm_final(h)
//
// Every function takes its weights from a WeightStore (weight_store.hpp), which fetches each
// layer's weights when the layer runs and each routed expert when the router picks it, so a
// full-scale model runs in the memory of one layer (docs/model.md, "Working set"). The overloads
// taking a ModelWeights run the same code over the weights already in memory.
#pragma once

#include <armadillo>
#include <cstdint>
#include <functional>
#include <vector>

#include "reference/deepseek/config.hpp"
#include "reference/faults.hpp"
#include "reference/deepseek/kv_cache.hpp"
#include "reference/deepseek/mla.hpp"
#include "reference/trace/trace.hpp"
#include "reference/deepseek/weight_store.hpp"
#include "reference/deepseek/weights.hpp"

namespace dsr1::ref {

struct ForwardOptions {
  AttnForm attn = AttnForm::Naive;
  RopeLayout rope_layout = RopeLayout::Interleaved;
  Faults faults;  // all false except in the conformance suite
  // Called before and after each decoder layer with (l, L): the progress line of long runs, and
  // the per-layer account of the weights fetched (dsr1 run --json).
  std::function<void(std::int64_t, std::int64_t)> on_layer_begin, on_layer_done;
};

// The latent KV cache of every layer; length() tokens have been processed so far.
struct ModelCache {
  std::vector<LatentKvCache> layers;
  std::int64_t length() const;
};
ModelCache make_cache(const Config& c);

// Runs tokens[0..T-1] at absolute positions pos0..pos0+T-1 and returns logits [V, T]
// (column t = logits after token t). With a cache, it must hold exactly pos0 tokens and is
// extended by T; without one, pos0 must be 0. Throws on out-of-range token ids, positions past
// max_position_embeddings, or non-finite values appearing in the hidden state.
arma::mat forward(const WeightStore& W, const Config& c, const std::vector<std::int64_t>& tokens,
                  std::int64_t pos0, ModelCache* cache, const ForwardOptions& opt, Tracer* tr);
arma::mat forward(const ModelWeights& W, const Config& c, const std::vector<std::int64_t>& tokens,
                  std::int64_t pos0, ModelCache* cache, const ForwardOptions& opt, Tracer* tr);

// The final hidden state (after model.norm) of the last forward() call is needed by MTP;
// this variant returns it as well: h_final [d, T].
arma::mat forward_hidden(const WeightStore& W, const Config& c,
                         const std::vector<std::int64_t>& tokens, std::int64_t pos0,
                         ModelCache* cache, const ForwardOptions& opt, Tracer* tr,
                         arma::mat* h_final);
arma::mat forward_hidden(const ModelWeights& W, const Config& c,
                         const std::vector<std::int64_t>& tokens, std::int64_t pos0,
                         ModelCache* cache, const ForwardOptions& opt, Tracer* tr,
                         arma::mat* h_final);

// Prefill tokens[0..P-1] in one pass, then decode tokens[P..] one at a time through the
// cache. Returns logits [V, T] for every position, comparable with forward().
arma::mat forward_incremental(const WeightStore& W, const Config& c,
                              const std::vector<std::int64_t>& tokens, std::int64_t P,
                              const ForwardOptions& opt, Tracer* tr);
arma::mat forward_incremental(const ModelWeights& W, const Config& c,
                              const std::vector<std::int64_t>& tokens, std::int64_t P,
                              const ForwardOptions& opt, Tracer* tr);

// Greedy continuation: appends n_new tokens (argmax, ties -> lower id) to `prompt`.
std::vector<std::int64_t> generate_greedy(const WeightStore& W, const Config& c,
                                          const std::vector<std::int64_t>& prompt,
                                          std::int64_t n_new, const ForwardOptions& opt,
                                          Tracer* tr);
std::vector<std::int64_t> generate_greedy(const ModelWeights& W, const Config& c,
                                          const std::vector<std::int64_t>& prompt,
                                          std::int64_t n_new, const ForwardOptions& opt,
                                          Tracer* tr);

// Multi-Token Prediction head (V3, spec §9): for positions i = 0..T-2 it predicts token i+2
// from the main model's post-norm hidden state h_final[:, i] and the embedding of token i+1.
// Returns logits [V, T-1]. Traced under "mtp.*".
arma::mat mtp_forward(const WeightStore& W, const Config& c, const arma::mat& h_final,
                      const std::vector<std::int64_t>& tokens, const ForwardOptions& opt,
                      Tracer* tr);
arma::mat mtp_forward(const ModelWeights& W, const Config& c, const arma::mat& h_final,
                      const std::vector<std::int64_t>& tokens, const ForwardOptions& opt,
                      Tracer* tr);

}  // namespace dsr1::ref
