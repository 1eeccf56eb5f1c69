// The explainer's KV cache (seed §2.4): each new token appends k_t = W^K h_t and v_t = W^V h_t,
// and its query attends over every cached key and value, Attn(q_t, [k_1..k_t], [v_1..v_t]).
// Leaves out: MLA's cache of the compressed latent c^KV and the RoPE key (spec §4.3, §5; see mla*).
#pragma once

#include <fmt/format.h>

#include <armadillo>
#include <stdexcept>

#include "reference/explainer/attention.hpp"
#include "reference/trace/trace.hpp"

namespace dsr1::ref {

// The cache holds one column per processed token.
struct SeedKvCache {
  arma::mat K;  // K: [D, T_cached], column j = k_j
  arma::mat V;  // V: [D, T_cached], column j = v_j
  arma::uword length() const { return K.n_cols; }
};

// Append one token's key and value.   k: [D];  v: [D]
inline void kv_cache_append(SeedKvCache& cache, const arma::vec& k, const arma::vec& v) {
  if (cache.length() > 0 && (k.n_elem != cache.K.n_rows || v.n_elem != cache.V.n_rows))
    throw std::invalid_argument(fmt::format(
        "kv_cache_append: the cache holds keys of {} and values of {} dims, got k [{}], v [{}]",
        cache.K.n_rows, cache.V.n_rows, k.n_elem, v.n_elem));
  cache.K.insert_cols(cache.K.n_cols, k);
  cache.V.insert_cols(cache.V.n_cols, v);
}

// One decode step at position t = cache.length(): project h_t, append k_t and v_t, and attend
// with q_t over all t+1 cached keys (the causal mask is automatic: nothing later is cached yet).
// h_t: [D];  returns o_t: [D], the concatenated head outputs before W^O (the document's Attn(...)).
// Traces kv.q, kv.k, kv.v, kv.K, kv.V (the cache after the append) and attn.* of the step.
inline arma::vec kv_cache_step(SeedKvCache& cache, const arma::vec& h_t, const MhaWeights& W,
                               Tracer* tr) {
  if (W.W_Q.n_cols != h_t.n_elem || W.W_K.n_cols != h_t.n_elem || W.W_V.n_cols != h_t.n_elem)
    throw std::invalid_argument(fmt::format(
        "kv_cache_step: h_t has {} dims but W_Q, W_K, W_V take {}, {}, {}", h_t.n_elem,
        W.W_Q.n_cols, W.W_K.n_cols, W.W_V.n_cols));
  const arma::vec q = W.W_Q * h_t;  // q_t = W^Q h_t: [D]
  const arma::vec k = W.W_K * h_t;  // k_t = W^K h_t: [D]
  const arma::vec v = W.W_V * h_t;  // v_t = W^V h_t: [D]
  kv_cache_append(cache, k, v);
  TRACE(tr, "kv.q", q);
  TRACE(tr, "kv.k", k);
  TRACE(tr, "kv.v", v);
  TRACE(tr, "kv.K", cache.K);
  TRACE(tr, "kv.V", cache.V);
  const arma::uword pos = cache.length() - 1;  // the new token's absolute position
  const arma::mat o = multi_head_attention(arma::mat(q), cache.K, cache.V, W.n_heads,
                                           AttentionMask::causal, pos, tr);
  return arma::vec(o.col(0));
}

}  // namespace dsr1::ref
