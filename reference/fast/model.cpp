// The fast path's whole model (see model.hpp).
#include "reference/fast/model.hpp"

#include <fmt/format.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "reference/fast/ffn.hpp"
#include "reference/fast/mla.hpp"
#include "reference/fast/moe.hpp"
#include "reference/fast/rmsnorm.hpp"
#include "reference/fast/stage_times.hpp"

namespace dsr1::fast {
namespace {

// rmsnorm, its time counted as the "norms" stage (stage_times.hpp).
arma::fmat timed_rmsnorm(const arma::fmat& h, const std::vector<float>& w, double eps, const Options& opt) {
  StageTimer timer(opt.times, "norms");
  return rmsnorm(h, w, eps);
}

}  // namespace

std::int64_t ModelCache::bytes_allocated() const {
  std::int64_t b = 0;
  for (const auto& l : layers) b += l.bytes_allocated();
  return b;
}

ModelCache make_cache(const Config& c, std::int64_t reserve_tokens) {
  ModelCache m;
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) {
    m.layers.emplace_back(c.kv_lora_rank, c.qk_rope_head_dim);
    if (reserve_tokens > 0) m.layers.back().reserve(reserve_tokens);
  }
  return m;
}

std::int64_t cache_bytes(const Config& c, std::int64_t tokens) {
  return c.num_hidden_layers * LatentKvCache::bytes_for(tokens, c.kv_lora_rank, c.qk_rope_head_dim);
}

arma::fmat ResidentWeights::head(const arma::fmat& x, const Options& opt) const {
  return gemm(W_.W_head, x, opt);
}

arma::fmat forward(const ModelWeightsF& W, const Config& c, const std::vector<std::int64_t>& tokens,
                   std::int64_t pos0, ModelCache* cache, const Options& opt, Tracer* tr) {
  if (static_cast<std::int64_t>(W.layers.size()) != c.num_hidden_layers)
    throw std::invalid_argument(fmt::format("fast::forward: weights have {} layers, config '{}' has {}",
                                            W.layers.size(), c.name, c.num_hidden_layers));
  return forward(ResidentWeights(W), c, tokens, pos0, cache, opt, tr);
}

arma::fmat forward(const WeightsAccess& W, const Config& c, const std::vector<std::int64_t>& tokens,
                   std::int64_t pos0, ModelCache* cache, const Options& opt, Tracer* tr) {
  const std::int64_t T = static_cast<std::int64_t>(tokens.size()), d = c.d(), V = c.vocab_size;
  if (T == 0) throw std::invalid_argument("fast::forward: no tokens");
  if (pos0 < 0 || pos0 + T > c.max_position_embeddings)
    throw std::invalid_argument(fmt::format(
        "fast::forward: positions {} .. {} exceed max_position_embeddings = {} of config '{}'",
        pos0, pos0 + T - 1, c.max_position_embeddings, c.name));
  if (cache && static_cast<std::int64_t>(cache->layers.size()) != c.num_hidden_layers)
    throw std::invalid_argument(fmt::format("fast::forward: the cache has {} layers, expected {}",
                                            cache->layers.size(), c.num_hidden_layers));
  if (cache && cache->length() != pos0)
    throw std::invalid_argument(fmt::format(
        "fast::forward: the cache holds {} tokens but pos0 = {}", cache->length(), pos0));

  // h = E[token]: [d, T]
  arma::fmat h(static_cast<arma::uword>(d), static_cast<arma::uword>(T));
  for (std::int64_t t = 0; t < T; ++t) {
    if (tokens[t] < 0 || tokens[t] >= V)
      throw std::invalid_argument(fmt::format(
          "fast::forward: token {} at index {} is outside the vocabulary [0, {})", tokens[t], t, V));
    W.embed(tokens[t], h.colptr(t));
  }
  TRACE(tr, "embed.h", h);

  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) {
    W.with_layer(l, [&](const BlockWeightsF& B) {
      TraceScope scope(tr, fmt::format("layers.{}", l));
      const arma::fmat attn_norm = timed_rmsnorm(h, B.w_attn_norm, c.rms_norm_eps, opt);
      TRACE(tr, "attn_norm", attn_norm);
      const arma::fmat u = mla_forward(attn_norm, B.attn, c, pos0,
                                       cache ? &cache->layers[static_cast<std::size_t>(l)] : nullptr,
                                       opt, tr);
      h += u;  // h_attn = h + u
      TRACE(tr, "h_attn", h);
      const arma::fmat ffn_norm = timed_rmsnorm(h, B.w_ffn_norm, c.rms_norm_eps, opt);
      TRACE(tr, "ffn_norm", ffn_norm);
      if (B.is_moe) {
        h += moe_forward(ffn_norm, B.moe, c, opt, tr);
      } else {
        StageTimer timer(opt.times, "dense_ffn");
        h += swiglu_ffn(ffn_norm, B.dense, opt, tr);
      }
      TRACE(tr, "h", h);
      if (!h.is_finite())
        throw std::runtime_error(fmt::format(
            "fast::forward: the hidden state after layer {} holds inf or NaN (config '{}')", l, c.name));
    });
    if (W.on_layer_done) W.on_layer_done(l, c.num_hidden_layers);
  }
  const arma::fmat final_norm = timed_rmsnorm(h, W.final_norm(), c.rms_norm_eps, opt);
  TRACE(tr, "final_norm", final_norm);
  StageTimer head_timer(opt.times, "head");
  arma::fmat logits = W.head(final_norm, opt);  // logits: [V, T]
  head_timer.stop();
  TRACE(tr, "logits", logits);
  return logits;
}

arma::fvec decode(const ModelWeightsF& W, const Config& c, std::int64_t token, ModelCache& cache,
                  const Options& opt, Tracer* tr) {
  const arma::fmat logits = forward(W, c, {token}, cache.length(), &cache, opt, tr);
  return logits.col(0);
}

arma::fmat forward_incremental(const ModelWeightsF& W, const Config& c,
                               const std::vector<std::int64_t>& tokens, std::int64_t P,
                               const Options& opt, Tracer* tr) {
  if (static_cast<std::int64_t>(W.layers.size()) != c.num_hidden_layers)
    throw std::invalid_argument(fmt::format("fast::forward: weights have {} layers, config '{}' has {}",
                                            W.layers.size(), c.name, c.num_hidden_layers));
  return forward_incremental(ResidentWeights(W), c, tokens, P, opt, tr);
}

arma::fvec decode(const WeightsAccess& W, const Config& c, std::int64_t token, ModelCache& cache,
                  const Options& opt, Tracer* tr) {
  const arma::fmat logits = forward(W, c, {token}, cache.length(), &cache, opt, tr);
  return logits.col(0);
}

arma::fmat forward_incremental(const WeightsAccess& W, const Config& c,
                               const std::vector<std::int64_t>& tokens, std::int64_t P,
                               const Options& opt, Tracer* tr) {
  const std::int64_t T = static_cast<std::int64_t>(tokens.size());
  if (P < 0 || P > T)
    throw std::invalid_argument(fmt::format(
        "fast::forward_incremental: decode-from position {} is outside the {} given tokens "
        "(expected 0..{})", P, T, T));
  ModelCache cache = make_cache(c, T);
  arma::fmat logits(static_cast<arma::uword>(c.vocab_size), static_cast<arma::uword>(T));
  if (P > 0) {  // P = 0: no prefill, every token is decoded from an empty cache
    TraceScope scope(tr, "prefill");
    const std::vector<std::int64_t> prompt(tokens.begin(), tokens.begin() + P);
    logits.cols(0, P - 1) = forward(W, c, prompt, 0, &cache, opt, tr);
  }
  for (std::int64_t t = P; t < T; ++t) {
    TraceScope scope(tr, fmt::format("decode.{}", t));
    logits.col(t) = decode(W, c, tokens[t], cache, opt, tr);
  }
  TRACE(tr, "logits", logits);
  return logits;
}

}  // namespace dsr1::fast
