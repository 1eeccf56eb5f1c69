#include "reference/deepseek/model.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "reference/deepseek/ffn.hpp"
#include "reference/deepseek/moe.hpp"
#include "reference/deepseek/rmsnorm.hpp"

namespace dsr1::ref {

namespace {

MlaOptions mla_options(const ForwardOptions& opt) {
  MlaOptions m;
  m.form = opt.attn;
  m.rope_layout = opt.rope_layout;
  m.faults = opt.faults;
  return m;
}

// Bad input must give an error, never a wrong number: token ids outside the vocabulary and
// positions past the configured context are rejected before any arithmetic.
void check_inputs(const Config& c, const std::vector<std::int64_t>& tokens, std::int64_t pos0) {
  for (std::size_t t = 0; t < tokens.size(); ++t)
    if (tokens[t] < 0 || tokens[t] >= c.vocab_size)
      throw std::out_of_range(fmt::format(
          "token id {} at input position {} is out of range: vocab_size is {} (ids 0..{})",
          tokens[t], t, c.vocab_size, c.vocab_size - 1));
  const std::int64_t end = pos0 + static_cast<std::int64_t>(tokens.size());
  if (c.max_position_embeddings > 0 && end > c.max_position_embeddings)
    throw std::out_of_range(fmt::format(
        "positions {}..{} run past max_position_embeddings = {} of config '{}'", pos0, end - 1,
        c.max_position_embeddings, c.name));
}

// A NaN or infinity anywhere in the hidden state would silently poison every later number;
// stop at the first stage that produced one and name it.
void check_finite(const arma::mat& x, std::string_view stage, std::int64_t layer) {
  if (x.is_finite()) return;
  for (arma::uword t = 0; t < x.n_cols; ++t)
    for (arma::uword i = 0; i < x.n_rows; ++i)
      if (!std::isfinite(x(i, t)))
        throw std::runtime_error(fmt::format(
            "non-finite value {} in {}{} at token column {}, element {} (check the weights)",
            x(i, t), layer >= 0 ? fmt::format("layers.{}.", layer) : std::string(), stage, t, i));
}

// One decoder block, pre-norm with two residuals:                                 spec §2
//   h = h + MLA(RMSNorm_attn(h));  h = h + FFN(RMSNorm_ffn(h))
// h: [d, T];  returns [d, T]
// The routed experts of an MoE block are fetched from `weights` when the router picks them.
arma::mat decoder_block(const arma::mat& h_in, const BlockWeights& B, const WeightStore& weights,
                        const Config& c, std::int64_t pos0, LatentKvCache* cache,
                        const ForwardOptions& opt, Tracer* tr, std::int64_t layer) {
  const arma::mat attn_norm = rmsnorm(h_in, B.w_attn_norm, c.rms_norm_eps);
  TRACE(tr, "attn_norm", attn_norm);
  const arma::mat u = mla_forward(attn_norm, B.attn, c, pos0, cache, mla_options(opt), tr);
  const arma::mat h_attn = h_in + u;  // residual around attention
  TRACE(tr, "h_attn", h_attn);
  check_finite(h_attn, "h_attn", layer);

  const arma::mat ffn_norm = rmsnorm(h_attn, B.w_ffn_norm, c.rms_norm_eps);
  TRACE(tr, "ffn_norm", ffn_norm);
  // The first first_k_dense_replace layers keep a dense SwiGLU FFN; the rest are MoE.
  const ExpertFetch expert = [&](std::int64_t j) { return weights.expert(layer, j); };
  const arma::mat f = B.is_moe ? moe_forward(ffn_norm, B.moe, expert, c, opt.faults, tr)
                               : swiglu_ffn(ffn_norm, B.dense, tr, "ffn");
  const arma::mat h = h_attn + f;  // residual around the FFN / MoE
  TRACE(tr, "h", h);
  check_finite(h, "h", layer);
  return h;
}

// logits = W_head x, the head read kWeightStore::kHeadRowBlock rows at a time so that the
// [V, d] matrix (0.9 billion values in V3) is never whole in memory. Each row block is one
// product, the same whatever store the rows come from. x: [d, T];  returns [V, T].
arma::mat lm_head(const WeightStore& weights, const Config& c, const arma::mat& x, bool mtp) {
  const std::uint64_t V = static_cast<std::uint64_t>(c.vocab_size);
  arma::mat logits(V, x.n_cols);
  for (std::uint64_t first = 0; first < V; first += WeightStore::kHeadRowBlock) {
    const std::uint64_t n = std::min(WeightStore::kHeadRowBlock, V - first);
    const arma::mat W_rows = mtp ? weights.mtp_head_rows(first, n) : weights.head_rows(first, n);  // [n, d]
    logits.rows(first, first + n - 1) = W_rows * x;
  }
  return logits;
}

}  // namespace

std::int64_t ModelCache::length() const { return layers.empty() ? 0 : layers[0].length(); }

ModelCache make_cache(const Config& c) {
  ModelCache cache;
  cache.layers.resize(static_cast<std::size_t>(c.num_hidden_layers));
  return cache;
}

arma::mat forward_hidden(const WeightStore& weights, const Config& c,
                         const std::vector<std::int64_t>& tokens, std::int64_t pos0,
                         ModelCache* cache, const ForwardOptions& opt, Tracer* tr,
                         arma::mat* h_final) {
  if (tokens.empty()) throw std::invalid_argument("forward: no tokens given");
  if (cache == nullptr && pos0 != 0)
    throw std::invalid_argument(fmt::format(
        "forward: starting at position {} needs a cache holding the {} earlier tokens", pos0, pos0));
  if (cache != nullptr && cache->length() != pos0)
    throw std::invalid_argument(fmt::format(
        "forward: the cache holds {} tokens but the new tokens start at position {}",
        cache->length(), pos0));
  check_inputs(c, tokens, pos0);

  arma::mat h = weights.embedding(tokens);  // h: [d, T], the rows E[tokens] only
  TRACE(tr, "embed.h", h);
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) {
    TraceScope scope(tr, fmt::format("layers.{}", l));
    LatentKvCache* layer_cache = cache ? &cache->layers[static_cast<std::size_t>(l)] : nullptr;
    if (opt.on_layer_begin) opt.on_layer_begin(l, c.num_hidden_layers);
    const BlockWeights W = weights.block(l);  // fetched now, released at the end of the iteration
    h = decoder_block(h, W, weights, c, pos0, layer_cache, opt, tr, l);
    if (opt.on_layer_done) opt.on_layer_done(l, c.num_hidden_layers);
  }
  const arma::mat final_norm = rmsnorm(h, weights.final_norm(), c.rms_norm_eps);
  TRACE(tr, "final_norm", final_norm);
  const arma::mat logits = lm_head(weights, c, final_norm, false);  // logits: [V, T]
  TRACE(tr, "logits", logits);
  check_finite(logits, "logits", -1);
  if (h_final) *h_final = final_norm;
  return logits;
}

arma::mat forward_hidden(const ModelWeights& W, const Config& c,
                         const std::vector<std::int64_t>& tokens, std::int64_t pos0,
                         ModelCache* cache, const ForwardOptions& opt, Tracer* tr,
                         arma::mat* h_final) {
  const InMemoryStore weights(W, c);
  return forward_hidden(weights, c, tokens, pos0, cache, opt, tr, h_final);
}

arma::mat forward(const WeightStore& W, const Config& c, const std::vector<std::int64_t>& tokens,
                  std::int64_t pos0, ModelCache* cache, const ForwardOptions& opt, Tracer* tr) {
  return forward_hidden(W, c, tokens, pos0, cache, opt, tr, nullptr);
}

arma::mat forward(const ModelWeights& W, const Config& c, const std::vector<std::int64_t>& tokens,
                  std::int64_t pos0, ModelCache* cache, const ForwardOptions& opt, Tracer* tr) {
  return forward_hidden(W, c, tokens, pos0, cache, opt, tr, nullptr);
}

arma::mat forward_incremental(const ModelWeights& W, const Config& c,
                              const std::vector<std::int64_t>& tokens, std::int64_t P,
                              const ForwardOptions& opt, Tracer* tr) {
  const InMemoryStore weights(W, c);
  return forward_incremental(weights, c, tokens, P, opt, tr);
}

arma::mat forward_incremental(const WeightStore& W, const Config& c,
                              const std::vector<std::int64_t>& tokens, std::int64_t P,
                              const ForwardOptions& opt, Tracer* tr) {
  const auto T = static_cast<std::int64_t>(tokens.size());
  if (P < 0 || P > T)
    throw std::invalid_argument(fmt::format(
        "decode-from position {} is outside the {} given tokens (expected 0..{})", P, T, T));
  check_inputs(c, tokens, 0);
  ModelCache cache = make_cache(c);
  arma::mat logits(static_cast<arma::uword>(c.vocab_size), static_cast<arma::uword>(T));
  if (P > 0) {
    // Prefill: the first P tokens in one pass, filling the cache.
    TraceScope scope(tr, "prefill");
    const std::vector<std::int64_t> prompt(tokens.begin(), tokens.begin() + P);
    logits.cols(0, static_cast<arma::uword>(P - 1)) = forward(W, c, prompt, 0, &cache, opt, tr);
  }
  for (std::int64_t t = P; t < T; ++t) {
    // Decode: one token at a time; attention reads every earlier token from the cache.
    TraceScope scope(tr, fmt::format("decode.{}", t));
    logits.col(static_cast<arma::uword>(t)) =
        forward(W, c, {tokens[static_cast<std::size_t>(t)]}, t, &cache, opt, tr);
  }
  TRACE(tr, "logits", logits);
  return logits;
}

// argmax with ties broken towards the lower token id, so generation is deterministic.
static std::int64_t argmax_lowest(const arma::vec& x) {
  arma::uword best = 0;
  for (arma::uword i = 1; i < x.n_elem; ++i)
    if (x(i) > x(best)) best = i;
  return static_cast<std::int64_t>(best);
}

std::vector<std::int64_t> generate_greedy(const ModelWeights& W, const Config& c,
                                          const std::vector<std::int64_t>& prompt,
                                          std::int64_t n_new, const ForwardOptions& opt,
                                          Tracer* tr) {
  const InMemoryStore weights(W, c);
  return generate_greedy(weights, c, prompt, n_new, opt, tr);
}

std::vector<std::int64_t> generate_greedy(const WeightStore& W, const Config& c,
                                          const std::vector<std::int64_t>& prompt,
                                          std::int64_t n_new, const ForwardOptions& opt,
                                          Tracer* tr) {
  if (prompt.empty()) throw std::invalid_argument("generate: the prompt is empty");
  if (n_new < 0) throw std::invalid_argument("generate: the number of new tokens is negative");
  check_inputs(c, prompt, 0);
  if (c.max_position_embeddings > 0 &&
      static_cast<std::int64_t>(prompt.size()) + n_new > c.max_position_embeddings)
    throw std::out_of_range(fmt::format(
        "generate: {} prompt + {} new tokens exceed max_position_embeddings = {}", prompt.size(),
        n_new, c.max_position_embeddings));
  std::vector<std::int64_t> out = prompt;
  if (n_new == 0) return out;
  ModelCache cache = make_cache(c);
  arma::mat logits;
  {
    TraceScope scope(tr, "prefill");
    logits = forward(W, c, prompt, 0, &cache, opt, tr);
  }
  for (std::int64_t i = 0; i < n_new; ++i) {
    const std::int64_t next = argmax_lowest(logits.col(logits.n_cols - 1));
    out.push_back(next);
    if (i + 1 == n_new) break;
    const auto pos = static_cast<std::int64_t>(out.size()) - 1;
    TraceScope scope(tr, fmt::format("decode.{}", pos));
    logits = forward(W, c, {next}, pos, &cache, opt, tr);
  }
  return out;
}

arma::mat mtp_forward(const ModelWeights& W, const Config& c, const arma::mat& h_final,
                      const std::vector<std::int64_t>& tokens, const ForwardOptions& opt,
                      Tracer* tr) {
  if (!W.mtp) throw std::invalid_argument(fmt::format(
      "config '{}' has no Multi-Token Prediction module (num_nextn_predict_layers = {})", c.name,
      c.num_nextn_predict_layers));
  const InMemoryStore weights(W, c);
  return mtp_forward(weights, c, h_final, tokens, opt, tr);
}

arma::mat mtp_forward(const WeightStore& weights, const Config& c, const arma::mat& h_final,
                      const std::vector<std::int64_t>& tokens, const ForwardOptions& opt,
                      Tracer* tr) {
  if (!weights.has_mtp()) throw std::invalid_argument(fmt::format(
      "config '{}' has no Multi-Token Prediction module (num_nextn_predict_layers = {})", c.name,
      c.num_nextn_predict_layers));
  const auto T = static_cast<std::int64_t>(tokens.size());
  if (T < 2) throw std::invalid_argument("mtp: needs at least 2 tokens (it predicts token i+2)");
  if (static_cast<std::int64_t>(h_final.n_cols) != T ||
      static_cast<std::int64_t>(h_final.n_rows) != c.hidden_size)
    throw std::invalid_argument(fmt::format("mtp: h_final is [{} x {}], expected [d={} x T={}]",
                                            h_final.n_rows, h_final.n_cols, c.hidden_size, T));
  check_inputs(c, tokens, 0);
  const MtpWeights M = weights.mtp();  // norms, W_eh, the block (its experts fetched when chosen)
  TraceScope scope(tr, "mtp");

  // Position i combines the main model's state after token i with the embedding of token
  // i+1, and predicts token i+2 (depth 1).                                        spec §9
  const std::vector<std::int64_t> next(tokens.begin() + 1, tokens.end());
  const arma::mat emb = weights.mtp_embedding(next);                     // [d, T-1]
  const arma::mat emb_norm = rmsnorm(emb, M.w_enorm, c.rms_norm_eps);    // RMSNorm_e
  const arma::mat h_norm = rmsnorm(h_final.cols(0, T - 2), M.w_hnorm, c.rms_norm_eps);  // RMSNorm_h
  TRACE(tr, "emb_norm", emb_norm);
  TRACE(tr, "h_norm", h_norm);
  // eh_proj's input is [enorm(emb) ; hnorm(h)]: the released weights use this order, not the
  // paper's (pitfall P10).
  const arma::mat concat = opt.faults.mtp_concat_hidden_first
                               ? arma::join_cols(h_norm, emb_norm)  // conformance fault
                               : arma::join_cols(emb_norm, h_norm); // [2d, T-1]
  const arma::mat h_proj = M.W_eh * concat;                             // [d, T-1]
  TRACE(tr, "h_proj", h_proj);
  arma::mat h;
  {
    TraceScope block_scope(tr, "block");
    h = decoder_block(h_proj, M.block, weights, c, 0, nullptr, opt, tr, c.num_hidden_layers);
  }
  // shared_head.norm is a separate RMSNorm applied before the head (pitfall P11).
  const arma::mat head_norm = rmsnorm(h, M.w_head_norm, c.rms_norm_eps);
  TRACE(tr, "head_norm", head_norm);
  const arma::mat logits = lm_head(weights, c, head_norm, true);  // [V, T-1]
  TRACE(tr, "logits", logits);
  return logits;
}

}  // namespace dsr1::ref
