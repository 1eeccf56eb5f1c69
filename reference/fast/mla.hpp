// Multi-head Latent Attention in float32, absorbed form with flash-style blocked attention;
// mirrors reference/deepseek/mla.hpp (ref::mla_forward with AttnForm::Absorbed) and must match it.
// Leaves out: the naive form, the half-split RoPE layout and the conformance faults.
//
// Per token (spec §4.3): q_tilde_{t,h} = W_UK_h^T q_nope_{t,h}; score(t,j,h) = s_eff (q_tilde ·
// c_kv_hat_j + q_rope_{t,h} · k_rope_j); z_{t,h} = sum_j softmax_j(score) c_kv_hat_j;
// o_{t,h} = W_UV_h z_{t,h}; u = W_O o. Key j is visible to query t iff pos(j) <= pos(t).
//
// Prefill (n_h*T > MR): one task per (block of attn_qb queries) x (group of attn_heads heads).
// The task packs its queries q = s_eff [q_tilde ; q_rope] (r_kv + d_rope floats, the same
// layout as a cache row) as the rows of a matrix and walks the keys in blocks of attn_kb:
// scores S = Q K^T for the block (the gemm micro-kernel reading the cache rows directly), then
// the online softmax (running max m, running sum l, rescale of z by exp(m_old - m_new)), then
// z += P C (C = the block's latents, read in place). Memory per task is O(rows x attn_kb):
// no T x T score matrix exists. Each (query, head) belongs to one task and its keys are
// visited in one fixed order, so the result does not depend on the thread count.
//
// Decode (n_h*T <= MR, e.g. one new token): the queries of all heads fit one micro-tile, so the
// parallel split is over keys instead. One task per block of decode_kb keys (the last full
// block and the remainder shared equally by the last two: 513 keys are 257 + 256) computes, while the
// block's cache rows are in cache (so the latent cache is streamed from memory once): the
// block's scores (up to 16 rows use the 16-row tile gemm_rows16, so 16 heads are not padded to
// 32; it prefetches the next 16 cache rows while it works), the block's own softmax (block max
// m_b, p = exp(s - m_b), l_b = sum p in key order) and its unnormalised z_b = P_b C_b. Then the
// blocks are merged in block order: m = max_b m_b, w_b = exp(m_b - m), z = sum_b w_b z_b /
// sum_b w_b l_b. The blocks are fixed by decode_kb and the key count, and merged in one order, so the result does
// not depend on the thread count. Memory: [n_h*T, decode_kb] scores per thread and r_kv + 2
// floats per row and block.
#pragma once

#include <armadillo>
#include <cstdint>

#include "reference/deepseek/config.hpp"
#include "reference/fast/kv_cache.hpp"
#include "reference/fast/options.hpp"
#include "reference/fast/weights.hpp"
#include "reference/trace/trace.hpp"

namespace dsr1::fast {

// x: [d, T] (already RMSNorm_attn-ed) at positions pos0 .. pos0+T-1. cache: null, or holding
// exactly pos0 tokens (the T new latents are appended). Returns u: [d, T].
// Traces attn.q_nope, attn.q_rope, attn.c_kv_hat, attn.k_rope, attn.o, attn.u.
arma::fmat mla_forward(const arma::fmat& x, const MlaWeightsF& W, const Config& c,
                       std::int64_t pos0, LatentKvCache* cache, const Options& opt, Tracer* tr);

}  // namespace dsr1::fast
