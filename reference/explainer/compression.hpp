// The explainer's "latent vector compression" (seed §2.5): k~_t = W_k^compress k_t and
// v~_t = W_v^compress v_t, from D to D' dims, then attention over the compressed keys/values.
// Leaves out: how MLA really works. This is NOT MLA (spec §15.4): MLA never builds full keys to
// compress them; it caches c^KV = W^DKV h (shared by keys, values and heads) plus one RoPE key.
#pragma once

#include <fmt/format.h>

#include <armadillo>
#include <stdexcept>

#include "reference/explainer/attention.hpp"
#include "reference/trace/trace.hpp"

namespace dsr1::ref {

// W_Q, W_K, W_V: [D, D];  W_k_compress, W_v_compress: [D', D]
struct SeedCompressionWeights {
  arma::mat W_Q, W_K, W_V, W_k_compress, W_v_compress;
  arma::uword n_heads = 1;
};

// x~ = W^compress x, token by token.   W_compress: [D', D];  x: [D, T];  returns [D', T]
inline arma::mat compress(const arma::mat& W_compress, const arma::mat& x) {
  if (W_compress.n_cols != x.n_rows)
    throw std::invalid_argument(fmt::format(
        "compress: W_compress is [{} x {}] but the vectors have {} dims (expected [D' x D={}])",
        W_compress.n_rows, W_compress.n_cols, x.n_rows, x.n_rows));
  return W_compress * x;
}

// Attention in the compressed space. The document does not say how a D-dim query meets D'-dim
// keys; we compress the query with W_k^compress as well, so q~ . k~ = q^T Wc^T Wc k is the
// compressed counterpart of q . k, and the scale is 1/sqrt(D'/n_heads).
// h: [D, T];  returns o~: [D', T] (a D'-dim output; the document leaves the way back to D open)
// Traces compress.k_tilde, compress.v_tilde, compress.q_tilde [T, D'] and attn.* in D' dims.
inline arma::mat compressed_attention(const arma::mat& h, const SeedCompressionWeights& W,
                                      AttentionMask mask, Tracer* tr) {
  if (W.W_k_compress.n_rows != W.W_v_compress.n_rows)
    throw std::invalid_argument(fmt::format(
        "compressed_attention: W_k_compress has {} rows, W_v_compress {}; both must be D'",
        W.W_k_compress.n_rows, W.W_v_compress.n_rows));
  const arma::mat q = W.W_Q * h;  // q: [D, T]
  const arma::mat k = W.W_K * h;  // k: [D, T]
  const arma::mat v = W.W_V * h;  // v: [D, T]
  const arma::mat k_tilde = compress(W.W_k_compress, k);  // k~: [D', T], what the cache stores
  const arma::mat v_tilde = compress(W.W_v_compress, v);  // v~: [D', T], what the cache stores
  const arma::mat q_tilde = compress(W.W_k_compress, q);  // q~: [D', T], never cached
  TRACE(tr, "compress.k_tilde", k_tilde);
  TRACE(tr, "compress.v_tilde", v_tilde);
  TRACE(tr, "compress.q_tilde", q_tilde);
  return multi_head_attention(q_tilde, k_tilde, v_tilde, W.n_heads, mask, 0, tr);
}

}  // namespace dsr1::ref
