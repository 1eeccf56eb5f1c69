// Multi-head Latent Attention (MLA) of DeepSeek-V2/V3/R1, in the naive and the absorbed form.
// Leaves out: the residual and the RMSNorm before it (block), dropout, batching, float32 casts.
//
// Paper form (spec §4.1, with the latent RMSNorms of the checkpoints), x = RMSNorm_attn(h):
//   query:   c_q = W_DQ x, c_q_hat = RMSNorm_q(c_q)               (q-LoRA; else c_q_hat := x)
//            q_nope = W_UQ c_q_hat  [n_h*d_nope]   q_rope = RoPE(W_QR c_q_hat)  [n_h*d_rope]
//   latent:  c_kv = W_DKV x, c_kv_hat = RMSNorm_kv(c_kv)  [r_kv]   (cached)
//            k_rope = RoPE(W_KR x)  [d_rope], ONE key shared by all heads      (cached)
//   naive:   k_nope = W_UK c_kv_hat, v = W_UV c_kv_hat (per head i: rows i*d_nope.., i*d_v..)
//            score(t,j,i) = s_eff (q_nope_{t,i}·k_nope_{j,i} + q_rope_{t,i}·k_rope_j)
//   absorbed (spec §4.3): q_tilde_{t,i} = W_UK_i^T q_nope_{t,i}  [r_kv]
//            score(t,j,i) = s_eff (q_tilde_{t,i}·c_kv_hat_j + q_rope_{t,i}·k_rope_j)
//            z_{t,i} = sum_j p(t,j,i) c_kv_hat_j [r_kv];  o_{t,i} = W_UV_i z_{t,i}
//   both:    p = softmax_j over visible keys (key j visible to query t iff pos(j) <= pos(t)),
//            o_{t,i} = sum_j p(t,j,i) v_{j,i} [d_v];  u = W_O [o_0; ...; o_{n_h-1}]  [d]
// s_eff and θ' come from rope.hpp (spec §4.5, §4.6). The two forms are the same function of x;
// they differ only in the order of the products, so they agree to rounding (~1e-12 in double).
//
// Trace names (inside the caller's "layers.{l}" scope): attn.c_q, attn.c_q_hat (q-LoRA only),
// attn.q_nope, attn.q_rope_pre, attn.q_rope, attn.c_kv, attn.c_kv_hat, attn.k_rope_pre,
// attn.k_rope, attn.k_nope and attn.v (naive), attn.q_tilde (absorbed), attn.scores,
// attn.probs, attn.z (absorbed), attn.o, attn.u. See docs/mla.md.
#pragma once

#include <armadillo>
#include <cstdint>

#include "reference/deepseek/config.hpp"
#include "reference/faults.hpp"
#include "reference/deepseek/kv_cache.hpp"
#include "reference/deepseek/rope.hpp"
#include "reference/trace/trace.hpp"
#include "reference/deepseek/weights.hpp"

namespace dsr1::ref {

// Naive: per-head keys and values materialised from the latent (HF, model.py "naive").
// Absorbed: W_UK folded into the query, W_UV applied after attention (model.py "absorb").
enum class AttnForm { Naive, Absorbed };

const char* attn_form_name(AttnForm form);  // "naive" | "absorbed"

struct MlaOptions {
  AttnForm form = AttnForm::Naive;
  RopeLayout rope_layout = RopeLayout::Interleaved;
  Faults faults;
};

// Checks every matrix of W against the config's dimensions; throws std::invalid_argument
// naming the matrix, its shape and the expected shape.
void check_mla_weights(const MlaWeights& W, const Config& c);

// x: [d, T] (already RMSNorm_attn-ed), tokens at absolute positions pos0 .. pos0+T-1.
// cache: if non-null it must hold exactly pos0 tokens; the T new latents are appended and the
// queries attend over all cached + new keys (key j sits at position j). If null, the keys are
// the T new tokens only (key j at position pos0 + j). Either way key j is visible to query t
// iff pos(j) <= pos(t) (spec §4.4), which is right for a chunked prefill starting at pos0 > 0.
// Returns u: [d, T].
arma::mat mla_forward(const arma::mat& x, const MlaWeights& W, const Config& c, std::int64_t pos0,
                      LatentKvCache* cache, const MlaOptions& opt, Tracer* tr);

}  // namespace dsr1::ref
