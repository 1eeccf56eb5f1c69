// Multi-head Latent Attention, naive and absorbed forms (see mla.hpp for the formulas).
#include "reference/deepseek/mla.hpp"

#include <fmt/format.h>

#include <limits>
#include <stdexcept>
#include <string>

#include "reference/deepseek/rmsnorm.hpp"
#include "reference/deepseek/softmax.hpp"

namespace dsr1::ref {

namespace {

using arma::uword;

// The spec's dimension names, read once from the config.
struct Dims {
  uword d, n_h, d_nope, d_rope, d_v, r_q, r_kv;
};

Dims dims_of(const Config& c) {
  auto positive = [&](std::int64_t v, const char* field) {
    if (v <= 0)
      throw std::invalid_argument(
          fmt::format("mla: config '{}' has {} = {}, expected > 0", c.name, field, v));
    return static_cast<uword>(v);
  };
  Dims n;
  n.d = positive(c.hidden_size, "hidden_size");
  n.n_h = positive(c.num_attention_heads, "num_attention_heads");
  n.d_nope = positive(c.qk_nope_head_dim, "qk_nope_head_dim");
  n.d_rope = positive(c.qk_rope_head_dim, "qk_rope_head_dim");
  n.d_v = positive(c.v_head_dim, "v_head_dim");
  n.r_kv = positive(c.kv_lora_rank, "kv_lora_rank");
  if (c.q_lora_rank < 0)
    throw std::invalid_argument(fmt::format(
        "mla: config '{}' has q_lora_rank = {}, expected 0 (no q-LoRA) or > 0", c.name,
        c.q_lora_rank));
  n.r_q = static_cast<uword>(c.q_lora_rank);
  if (n.d_rope % 2 != 0)
    throw std::invalid_argument(fmt::format(
        "mla: config '{}' has qk_rope_head_dim = {}, expected an even number", c.name, n.d_rope));
  return n;
}

void expect_shape(const arma::mat& M, uword rows, uword cols, const char* name,
                  const char* expected, const Config& c) {
  if (M.n_rows != rows || M.n_cols != cols)
    throw std::invalid_argument(fmt::format(
        "mla weights (config '{}'): {} is [{} x {}], expected [{} = {} x {}]", c.name, name,
        M.n_rows, M.n_cols, expected, rows, cols));
}

void expect_len(const arma::vec& v, uword n, const char* name, const char* expected,
                const Config& c) {
  if (v.n_elem != n)
    throw std::invalid_argument(fmt::format(
        "mla weights (config '{}'): {} has {} entries, expected {} = {}", c.name, name, v.n_elem,
        expected, n));
}

// Rows of head i in a head-stacked matrix whose heads are `width` rows each.
arma::span head_rows(uword i, uword width) { return arma::span(i * width, (i + 1) * width - 1); }

// The causal rule of spec §4.4, valid for any starting position: a query sees every key at
// its own absolute position or before.
bool visible(std::int64_t key_pos, std::int64_t query_pos) { return key_pos <= query_pos; }

struct Query {
  arma::mat q_nope;  // [n_h*d_nope, T]
  arma::mat q_rope;  // [n_h*d_rope, T]  RoPE applied
};

// Query path: q-LoRA (c_q -> RMSNorm -> up-projections) or, without it (V2-Lite, P9), the
// up-projections act on x directly.                                           spec §4.1, §4.2
Query mla_query(const arma::mat& x, const MlaWeights& W, const Config& c,
                const arma::vec& theta_prime, double cos_sin_scale, std::int64_t pos0,
                RopeLayout layout, Tracer* tr) {
  arma::mat q_in;  // [r_q or d, T]: what W_UQ and W_QR read
  if (c.has_q_lora()) {
    const arma::mat c_q = W.W_DQ * x;                                // [r_q, T]
    TRACE(tr, "attn.c_q", c_q);
    const arma::mat c_q_hat = rmsnorm(c_q, W.w_q, c.rms_norm_eps);    // [r_q, T]
    TRACE(tr, "attn.c_q_hat", c_q_hat);
    q_in = c_q_hat;
  } else {
    q_in = x;
  }
  Query q;
  q.q_nope = W.W_UQ * q_in;                                           // [n_h*d_nope, T]
  TRACE(tr, "attn.q_nope", q.q_nope);
  const arma::mat q_rope_pre = W.W_QR * q_in;                         // [n_h*d_rope, T]
  TRACE(tr, "attn.q_rope_pre", q_rope_pre);
  // Every head's rope block is rotated by the same angles (its token's position).
  q.q_rope = rope(q_rope_pre, theta_prime, pos0, layout, cos_sin_scale);
  TRACE(tr, "attn.q_rope", q.q_rope);
  return q;
}

struct KvLatent {
  arma::mat c_kv;      // [r_kv, T]   before RMSNorm_kv
  arma::mat c_kv_hat;  // [r_kv, T]   what the cache stores
  arma::mat k_rope;    // [d_rope, T] RoPE applied, shared by all heads
};

// Key/value latent: exactly what the cache stores.                        spec §4.1, §4.3, P16
KvLatent mla_kv_latent(const arma::mat& x, const MlaWeights& W, const Config& c,
                       const arma::vec& theta_prime, double cos_sin_scale, std::int64_t pos0,
                       RopeLayout layout, Tracer* tr) {
  KvLatent kv;
  kv.c_kv = W.W_DKV * x;                                              // [r_kv, T]
  TRACE(tr, "attn.c_kv", kv.c_kv);
  // RMSNorm_kv: absent from the paper's equations, present in every checkpoint.
  kv.c_kv_hat = rmsnorm(kv.c_kv, W.w_kv, c.rms_norm_eps);             // [r_kv, T]
  TRACE(tr, "attn.c_kv_hat", kv.c_kv_hat);
  const arma::mat k_rope_pre = W.W_KR * x;                            // [d_rope, T]
  TRACE(tr, "attn.k_rope_pre", k_rope_pre);
  // The RoPE key is never normalised: position lives only in its rotation.
  kv.k_rope = rope(k_rope_pre, theta_prime, pos0, layout, cos_sin_scale);
  TRACE(tr, "attn.k_rope", kv.k_rope);
  return kv;
}

// Softmax over the keys of every (query t, head i) column of a scores cube [T_k, T, n_h].
arma::cube softmax_over_keys(const arma::cube& scores) {
  arma::cube probs(arma::size(scores));
  for (uword i = 0; i < scores.n_slices; ++i)
    for (uword t = 0; t < scores.n_cols; ++t)
      probs.slice(i).col(t) = softmax(arma::vec(scores.slice(i).col(t)));
  return probs;
}

constexpr double kMasked = -std::numeric_limits<double>::infinity();

// Naive form: per-head keys k = [k_nope; k_rope] and values v materialised from the latent.
// C: [r_kv, T_k] the latents of all keys; K_R: [d_rope, T_k]; key j at position key_pos0 + j.
// returns o: [n_h*d_v, T]
arma::mat attention_naive(const Query& q, const arma::mat& C, const arma::mat& K_R,
                          std::int64_t key_pos0, std::int64_t pos0, const MlaWeights& W,
                          const Dims& n, double s_eff, Tracer* tr) {
  const uword T = q.q_nope.n_cols, T_k = C.n_cols;
  const arma::mat k_nope = W.W_UK * C;  // [n_h*d_nope, T_k]  k^C_{j,i} = W_UK_i ĉ_j^KV
  TRACE(tr, "attn.k_nope", k_nope);
  const arma::mat v = W.W_UV * C;       // [n_h*d_v, T_k]     v^C_{j,i} = W_UV_i ĉ_j^KV
  TRACE(tr, "attn.v", v);

  arma::cube scores(T_k, T, n.n_h);  // scores(j, t, i)
  for (uword i = 0; i < n.n_h; ++i)
    for (uword t = 0; t < T; ++t)
      for (uword j = 0; j < T_k; ++j) {
        if (!visible(key_pos0 + static_cast<std::int64_t>(j), pos0 + static_cast<std::int64_t>(t))) {
          scores(j, t, i) = kMasked;
          continue;
        }
        // q_{t,i}·k_{j,i} with q = [q_nope; q_rope] and k = [k_nope; k_rope] (nope first).
        double dot = 0.0;
        for (uword a = 0; a < n.d_nope; ++a)
          dot += q.q_nope(i * n.d_nope + a, t) * k_nope(i * n.d_nope + a, j);
        for (uword b = 0; b < n.d_rope; ++b)
          dot += q.q_rope(i * n.d_rope + b, t) * K_R(b, j);  // the one shared RoPE key
        scores(j, t, i) = s_eff * dot;
      }
  TRACE(tr, "attn.scores", scores);
  const arma::cube probs = softmax_over_keys(scores);
  TRACE(tr, "attn.probs", probs);

  arma::mat o(n.n_h * n.d_v, T, arma::fill::zeros);  // o_{t,i} = sum_j p(t,j,i) v_{j,i}
  for (uword i = 0; i < n.n_h; ++i)
    for (uword t = 0; t < T; ++t)
      for (uword c = 0; c < n.d_v; ++c) {
        double sum = 0.0;
        for (uword j = 0; j < T_k; ++j) sum += probs(j, t, i) * v(i * n.d_v + c, j);
        o(i * n.d_v + c, t) = sum;
      }
  return o;
}

// Absorbed form (spec §4.3): q_tilde_{t,i} = W_UK_i^T q_nope_{t,i} scores directly against
// the cached latents, and W_UV_i maps the attention-weighted latent z_{t,i} to o_{t,i}.
// Same arguments and result as attention_naive.
arma::mat attention_absorbed(const Query& q, const arma::mat& C, const arma::mat& K_R,
                             std::int64_t key_pos0, std::int64_t pos0, const MlaWeights& W,
                             const Dims& n, double s_eff, Tracer* tr) {
  const uword T = q.q_nope.n_cols, T_k = C.n_cols;
  // q_nope_{t,i}·(W_UK_i c_j) = (W_UK_i^T q_nope_{t,i})·c_j: fold W_UK into the query.
  arma::cube q_tilde(n.r_kv, T, n.n_h);  // q_tilde(:, t, i): [r_kv]
  for (uword i = 0; i < n.n_h; ++i) {
    const arma::mat W_UK_i = W.W_UK.rows(head_rows(i, n.d_nope));  // [d_nope, r_kv]
    q_tilde.slice(i) = W_UK_i.t() * q.q_nope.rows(head_rows(i, n.d_nope));
  }
  TRACE(tr, "attn.q_tilde", q_tilde);

  arma::cube scores(T_k, T, n.n_h);  // scores(j, t, i)
  for (uword i = 0; i < n.n_h; ++i)
    for (uword t = 0; t < T; ++t)
      for (uword j = 0; j < T_k; ++j) {
        if (!visible(key_pos0 + static_cast<std::int64_t>(j), pos0 + static_cast<std::int64_t>(t))) {
          scores(j, t, i) = kMasked;
          continue;
        }
        double dot = 0.0;
        for (uword r = 0; r < n.r_kv; ++r) dot += q_tilde(r, t, i) * C(r, j);
        for (uword b = 0; b < n.d_rope; ++b) dot += q.q_rope(i * n.d_rope + b, t) * K_R(b, j);
        scores(j, t, i) = s_eff * dot;
      }
  TRACE(tr, "attn.scores", scores);
  const arma::cube probs = softmax_over_keys(scores);
  TRACE(tr, "attn.probs", probs);

  // z_{t,i} = sum_j p(t,j,i) ĉ_j^KV: attention over the latents themselves.
  arma::cube z(n.r_kv, T, n.n_h, arma::fill::zeros);
  for (uword i = 0; i < n.n_h; ++i)
    for (uword t = 0; t < T; ++t)
      for (uword r = 0; r < n.r_kv; ++r) {
        double sum = 0.0;
        for (uword j = 0; j < T_k; ++j) sum += probs(j, t, i) * C(r, j);
        z(r, t, i) = sum;
      }
  TRACE(tr, "attn.z", z);

  // sum_j p W_UV_i c_j = W_UV_i z_{t,i}: W_UV applied once, after attention.
  arma::mat o(n.n_h * n.d_v, T);
  for (uword i = 0; i < n.n_h; ++i) {
    const arma::mat W_UV_i = W.W_UV.rows(head_rows(i, n.d_v));  // [d_v, r_kv]
    o.rows(head_rows(i, n.d_v)) = W_UV_i * z.slice(i);
  }
  return o;
}

}  // namespace

const char* attn_form_name(AttnForm form) {
  return form == AttnForm::Naive ? "naive" : "absorbed";
}

void check_mla_weights(const MlaWeights& W, const Config& c) {
  const Dims n = dims_of(c);
  const uword q_in = c.has_q_lora() ? n.r_q : n.d;
  const char* q_in_name = c.has_q_lora() ? "r_q" : "d (no q-LoRA)";
  if (c.has_q_lora()) {
    expect_shape(W.W_DQ, n.r_q, n.d, "W_DQ (q_a_proj)", "r_q x d", c);
    expect_len(W.w_q, n.r_q, "w_q (q_a_layernorm)", "r_q", c);
  } else if (!W.W_DQ.is_empty() || !W.w_q.is_empty()) {
    throw std::invalid_argument(fmt::format(
        "mla weights (config '{}'): q_lora_rank is 0 (no query compression) but W_DQ is "
        "[{} x {}] and w_q has {} entries; expected both empty",
        c.name, W.W_DQ.n_rows, W.W_DQ.n_cols, W.w_q.n_elem));
  }
  expect_shape(W.W_UQ, n.n_h * n.d_nope, q_in, "W_UQ", q_in_name, c);
  expect_shape(W.W_QR, n.n_h * n.d_rope, q_in, "W_QR", q_in_name, c);
  expect_shape(W.W_DKV, n.r_kv, n.d, "W_DKV", "r_kv x d", c);
  expect_shape(W.W_KR, n.d_rope, n.d, "W_KR", "d_rope x d", c);
  expect_len(W.w_kv, n.r_kv, "w_kv (kv_a_layernorm)", "r_kv", c);
  expect_shape(W.W_UK, n.n_h * n.d_nope, n.r_kv, "W_UK", "n_h*d_nope x r_kv", c);
  expect_shape(W.W_UV, n.n_h * n.d_v, n.r_kv, "W_UV", "n_h*d_v x r_kv", c);
  expect_shape(W.W_O, n.d, n.n_h * n.d_v, "W_O (o_proj)", "d x n_h*d_v", c);
}

arma::mat mla_forward(const arma::mat& x, const MlaWeights& W, const Config& c, std::int64_t pos0,
                      LatentKvCache* cache, const MlaOptions& opt, Tracer* tr) {
  const Dims n = dims_of(c);
  if (x.n_rows != n.d || x.n_cols == 0)
    throw std::invalid_argument(fmt::format(
        "mla_forward: x is [{} x {}], expected [d={} x T] with T >= 1", x.n_rows, x.n_cols, n.d));
  if (pos0 < 0)
    throw std::invalid_argument(fmt::format("mla_forward: pos0 = {}, expected >= 0", pos0));
  if (cache && cache->length() != pos0)
    throw std::invalid_argument(fmt::format(
        "mla_forward: the KV cache holds {} tokens but pos0 = {}; a cached call must continue "
        "exactly where the cache ends",
        cache->length(), pos0));
  check_mla_weights(W, c);

  const arma::vec theta_prime = yarn_theta_prime(c);          // [d_rope/2], spec §4.6
  const double cos_sin_scale = rope_cos_sin_scale(c);          // 1 for every official config
  const double s_eff = softmax_scale(c, opt.faults);           // spec §4.5

  const Query q = mla_query(x, W, c, theta_prime, cos_sin_scale, pos0, opt.rope_layout, tr);
  const KvLatent kv = mla_kv_latent(x, W, c, theta_prime, cos_sin_scale, pos0, opt.rope_layout, tr);

  // The latent the keys and values are built from. Conformance fault P16: the un-normalised
  // c_kv stored (and therefore used) in place of c_kv_hat.
  const arma::mat& latent = opt.faults.cache_unnormalized_latent ? kv.c_kv : kv.c_kv_hat;

  // Keys: with a cache, every cached token (positions 0 .. pos0-1) plus the T new ones;
  // without, the T new tokens at positions pos0 .. pos0+T-1.
  // (Referenced, not copied: at 128K tokens a layer's cache is hundreds of megabytes.)
  if (cache) cache->append(latent, kv.k_rope);
  const arma::mat& C = cache ? cache->c_kv_hat : latent;     // [r_kv, T_k]
  const arma::mat& K_R = cache ? cache->k_rope : kv.k_rope;  // [d_rope, T_k]
  const std::int64_t key_pos0 = cache ? 0 : pos0;

  const arma::mat o =                                           // [n_h*d_v, T]
      opt.form == AttnForm::Naive
          ? attention_naive(q, C, K_R, key_pos0, pos0, W, n, s_eff, tr)
          : attention_absorbed(q, C, K_R, key_pos0, pos0, W, n, s_eff, tr);
  TRACE(tr, "attn.o", o);
  const arma::mat u = W.W_O * o;                                // [d, T]
  TRACE(tr, "attn.u", u);
  return u;
}

}  // namespace dsr1::ref
