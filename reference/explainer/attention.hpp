// Multi-head attention as the explainer document writes it (seed §1.2): q, k, v projections,
// per-head scaled dot-product softmax over the tokens, concatenation, output projection W^O.
// Leaves out: RoPE, the latent (MLA) projections and the YaRN softmax scale (see mla.hpp).
//
// Head split (the document's): head i uses dimensions i*d_k .. (i+1)*d_k - 1 of q, k and v,
// with d_k = D / n_heads. Tokens are columns: h is [D, T], h.col(t) is h_t.
#pragma once

#include <fmt/format.h>

#include <armadillo>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "reference/deepseek/softmax.hpp"
#include "reference/trace/trace.hpp"

namespace dsr1::ref {

// Causal: query t sees keys j <= t (the future is hidden). Bidirectional: every key.
enum class AttentionMask { causal, bidirectional };

// W_Q, W_K, W_V: [D, D];  W_O: [D, D];  D must be divisible by n_heads.
struct MhaWeights {
  arma::mat W_Q, W_K, W_V, W_O;
  arma::uword n_heads = 1;
};

// Rows i*d_k .. (i+1)*d_k - 1 of a head-stacked matrix x: [n_heads*d_k, T];  returns [d_k, T]
inline arma::mat head_rows(const arma::mat& x, arma::uword i, arma::uword d_k) {
  if ((i + 1) * d_k > x.n_rows)
    throw std::invalid_argument(fmt::format(
        "head_rows: head {} of width d_k={} needs rows up to {}, but x has {} rows", i, d_k,
        (i + 1) * d_k, x.n_rows));
  return x.rows(i * d_k, (i + 1) * d_k - 1);
}

// scores(j, t) = q_t . k_j / sqrt(d_k), and -inf where the mask hides key j from query t.
// q: [d_k, T] (queries at absolute positions pos0 .. pos0+T-1);  k: [d_k, T_k] (keys at 0..T_k-1)
// returns scores: [T_k, T] (column t holds query t's scores over all keys)
// Causal rule: key j is visible to query t iff j <= pos0 + t (spec §4.4, the general form that
// also covers a decode step, where one query at position T_k-1 sees every cached key).
inline arma::mat attention_scores(const arma::mat& q, const arma::mat& k, AttentionMask mask,
                                  arma::uword pos0 = 0) {
  if (q.n_rows != k.n_rows)
    throw std::invalid_argument(fmt::format(
        "attention_scores: q is [{} x {}] and k is [{} x {}]; they need the same d_k (rows)",
        q.n_rows, q.n_cols, k.n_rows, k.n_cols));
  const arma::uword d_k = q.n_rows, T = q.n_cols, T_k = k.n_cols;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d_k));
  const double minus_inf = -std::numeric_limits<double>::infinity();
  arma::mat scores(T_k, T);
  for (arma::uword t = 0; t < T; ++t)
    for (arma::uword j = 0; j < T_k; ++j) {
      if (mask == AttentionMask::causal && j > pos0 + t) {
        scores(j, t) = minus_inf;  // softmax turns -inf into weight 0
        continue;
      }
      double dot = 0.0;
      for (arma::uword c = 0; c < d_k; ++c) dot += q(c, t) * k(c, j);
      scores(j, t) = dot * scale;
    }
  return scores;
}

// probs(:, t) = softmax_j(scores(:, t)): each query's weights over the keys sum to 1.
// scores: [T_k, T];  returns probs: [T_k, T]
inline arma::mat attention_probs(const arma::mat& scores) { return softmax_columns(scores); }

// o_t = sum_j probs(j, t) * v_j:  the probability-weighted average of the values.
// probs: [T_k, T];  v: [d_v, T_k];  returns o: [d_v, T]
inline arma::mat attention_output(const arma::mat& probs, const arma::mat& v) {
  if (probs.n_rows != v.n_cols)
    throw std::invalid_argument(fmt::format(
        "attention_output: probs has {} keys (rows) but v has {} tokens (columns)", probs.n_rows,
        v.n_cols));
  arma::mat o(v.n_rows, probs.n_cols, arma::fill::zeros);
  for (arma::uword t = 0; t < probs.n_cols; ++t)
    for (arma::uword j = 0; j < probs.n_rows; ++j)
      for (arma::uword c = 0; c < v.n_rows; ++c) o(c, t) += probs(j, t) * v(c, j);
  return o;
}

// Attention of every head on already projected q, k, v; the head outputs are concatenated.
// q: [n_heads*d_k, T];  k: [n_heads*d_k, T_k];  v: [n_heads*d_v, T_k];  returns o: [n_heads*d_v, T]
// Traces attn.scores and attn.probs as cubes [T_k, T, n_heads] (on disk [n_heads, T, T_k], one
// T x T_k table per head) and attn.o, the concatenated per-head outputs.
inline arma::mat multi_head_attention(const arma::mat& q, const arma::mat& k, const arma::mat& v,
                                      arma::uword n_heads, AttentionMask mask, arma::uword pos0,
                                      Tracer* tr) {
  if (n_heads == 0 || q.n_rows % n_heads != 0 || v.n_rows % n_heads != 0)
    throw std::invalid_argument(fmt::format(
        "multi_head_attention: q has {} rows and v {} rows; both must be divisible by n_heads={}",
        q.n_rows, v.n_rows, n_heads));
  if (k.n_rows != q.n_rows || k.n_cols != v.n_cols)
    throw std::invalid_argument(fmt::format(
        "multi_head_attention: q [{} x {}], k [{} x {}], v [{} x {}]: k needs q's rows and v's "
        "columns", q.n_rows, q.n_cols, k.n_rows, k.n_cols, v.n_rows, v.n_cols));
  const arma::uword d_k = q.n_rows / n_heads, d_v = v.n_rows / n_heads;
  const arma::uword T = q.n_cols, T_k = k.n_cols;
  arma::cube scores(T_k, T, n_heads), probs(T_k, T, n_heads);  // slice i = head i
  arma::mat o(n_heads * d_v, T);
  for (arma::uword i = 0; i < n_heads; ++i) {
    scores.slice(i) = attention_scores(head_rows(q, i, d_k), head_rows(k, i, d_k), mask, pos0);
    probs.slice(i) = attention_probs(scores.slice(i));
    o.rows(i * d_v, (i + 1) * d_v - 1) = attention_output(probs.slice(i), head_rows(v, i, d_v));
  }
  TRACE(tr, "attn.scores", scores);
  TRACE(tr, "attn.probs", probs);
  TRACE(tr, "attn.o", o);
  return o;
}

// The whole sublayer: q = W^Q h, k = W^K h, v = W^V h, per-head attention, u = W^O [o^1; ...; o^H].
// h: [D, T];  returns u: [D, T]
inline arma::mat attention(const arma::mat& h, const MhaWeights& W, AttentionMask mask,
                           Tracer* tr) {
  const arma::uword D = h.n_rows;
  auto check = [&](const arma::mat& M, const char* name) {
    if (M.n_rows != D || M.n_cols != D)
      throw std::invalid_argument(fmt::format("attention: {} is [{} x {}], expected [D={} x D={}]",
                                              name, M.n_rows, M.n_cols, D, D));
  };
  check(W.W_Q, "W_Q");
  check(W.W_K, "W_K");
  check(W.W_V, "W_V");
  check(W.W_O, "W_O");
  const arma::mat q = W.W_Q * h;  // q: [D, T]
  const arma::mat k = W.W_K * h;  // k: [D, T]
  const arma::mat v = W.W_V * h;  // v: [D, T]
  TRACE(tr, "attn.q", q);
  TRACE(tr, "attn.k", k);
  TRACE(tr, "attn.v", v);
  const arma::mat o = multi_head_attention(q, k, v, W.n_heads, mask, 0, tr);  // o: [D, T]
  const arma::mat u = W.W_O * o;  // u: [D, T]
  TRACE(tr, "attn.u", u);
  return u;
}

}  // namespace dsr1::ref
