// Absorbed MLA with flash-style blocked attention (see mla.hpp for the algorithm).
#include "reference/fast/mla.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "reference/fast/rmsnorm.hpp"
#include "reference/fast/rope.hpp"
#include "reference/fast/softmax.hpp"
#include "reference/fast/stage_times.hpp"
#include "reference/fast/thread_pool.hpp"
#include "reference/deepseek/rope.hpp"

namespace dsr1::fast {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// The key blocks of decode attention, as start offsets (n_blocks + 1 of them, the last n_keys):
// blocks of kb keys, except that the last full block and the remainder are shared equally by
// the last two blocks. 513 keys with kb = 512 are 257 + 256, not 512 + 1 (which left one thread
// with all of the work); 8200 are 15 x 512 + 260 + 260. The count is that of kb-key blocks.
std::vector<std::int64_t> decode_blocks(std::int64_t n_keys, std::int64_t kb) {
  std::vector<std::int64_t> starts;
  const std::int64_t full = n_keys / kb, rem = n_keys % kb;
  const std::int64_t plain = rem == 0 || full == 0 ? full : full - 1;  // blocks of exactly kb keys
  for (std::int64_t b = 0; b < plain; ++b) starts.push_back(b * kb);
  const std::int64_t tail = n_keys - plain * kb;  // keys after them: 0, rem (< kb) or kb + rem
  if (tail > kb) {
    starts.push_back(plain * kb);
    starts.push_back(plain * kb + (tail + 1) / 2);
  } else if (tail > 0) {
    starts.push_back(plain * kb);
  }
  starts.push_back(n_keys);
  return starts;
}

// f(h, one) for every head h, the heads spread over the threads, each head's product on one
// thread (`one`: opt with threads = 1). The per-head products (W_UK_h^T q_nope, W_UV_h z) are
// small: dispatching each to the pool on its own cost a wake-up per head, 2 n_h per layer and
// token (256 for V3's 128 heads), which decode felt. gemm's bits do not depend on the thread
// count, so neither do these.
template <class F>
void for_each_head(std::int64_t n_h, const Options& opt, F&& f) {
  Options one = opt;
  one.threads = 1;
  parallel_for(opt.threads, n_h, [&](std::int64_t h) { f(h, one); });
}

// Sets S(r, j) = -inf where key j (at position key_pos0 + j) is later than query r's position.
// S: [ld, n_keys] column-major; q_pos[r] for r < R.
void mask_future(float* S, std::int64_t ld, std::int64_t R, std::int64_t n_keys,
                 std::int64_t key_pos0, const std::int64_t* q_pos) {
  for (std::int64_t j = 0; j < n_keys; ++j)
    for (std::int64_t r = 0; r < R; ++r)
      if (key_pos0 + j > q_pos[r]) S[r + j * ld] = kNegInf;
}

// The two passes of every softmax step over a key block. S: [ld, n] column-major, rows 0..R-1.
// row_max: m(r) = max(m(r), max_j S(r, j)).
[[gnu::always_inline]] inline void row_max(const float* S, std::int64_t ld, std::int64_t R,
                                           std::int64_t n, float* m) {
  for (std::int64_t j = 0; j < n; ++j)
    for (std::int64_t r = 0; r < R; ++r) {
      const float s = S[r + j * ld];
      m[r] = s > m[r] ? s : m[r];
    }
}
// exp_shifted: S(r, j) <- p = exp(S(r, j) - m(r)) (0 for a masked key), l(r) += sum_j p, in
// key order.
[[gnu::always_inline]] inline void exp_shifted(float* S, std::int64_t ld, std::int64_t R,
                                               std::int64_t n, const float* m, float* l) {
  for (std::int64_t j = 0; j < n; ++j)
    for (std::int64_t r = 0; r < R; ++r) {
      const float s = S[r + j * ld];
      const float p = s == kNegInf ? 0.0f : exp_f32(s - m[r]);
      S[r + j * ld] = p;
      l[r] += p;
    }
}

// One step of the online softmax over a key block (prefill): S [ld, kb] holds the block's
// scores of rows 0..R-1; on return it holds p = exp(S - m_new) (0 for masked keys), and m, l,
// alpha are updated: m_new = max(m, max_j S), alpha = exp(m - m_new), l = alpha l + sum_j p.
DSR1_FAST_CLONES
void online_softmax_block(float* S, std::int64_t ld, std::int64_t R, std::int64_t kb, float* m,
                          float* l, float* alpha, float* m_new) {
  for (std::int64_t r = 0; r < R; ++r) m_new[r] = m[r];
  row_max(S, ld, R, kb, m_new);
  for (std::int64_t r = 0; r < R; ++r) {
    alpha[r] = m[r] == kNegInf ? 0.0f : exp_f32(m[r] - m_new[r]);
    l[r] *= alpha[r];
    m[r] = m_new[r];
  }
  exp_shifted(S, ld, R, kb, m_new, l);
}

// The softmax of one key block on its own (decode): m_b(r) = max_j S(r, j), S(r, j) <- p =
// exp(S(r, j) - m_b(r)) (0 for masked keys), l_b(r) = sum_j p in key order. A row whose keys
// are all masked gets m_b = -inf, l_b = 0 and p = 0.
DSR1_FAST_CLONES
void block_softmax(float* S, std::int64_t ld, std::int64_t R, std::int64_t n, float* m_b,
                   float* l_b) {
  for (std::int64_t r = 0; r < R; ++r) m_b[r] = kNegInf, l_b[r] = 0.0f;
  row_max(S, ld, R, n, m_b);
  exp_shifted(S, ld, R, n, m_b, l_b);
}

// Merges the blocks' softmaxes, in block order, into z (row r at z + r * r_kv):
//   m = max_b m_b,  w_b = exp(m_b - m),  l = sum_b w_b l_b,  z = (sum_b w_b z_b) / l
// which is softmax over all keys, because every p of block b was exp(s - m_b) = exp(s - m) / w_b.
// block_m, block_l: [R] per block; block_z: [r_kv, R] per block.
DSR1_FAST_CLONES
void merge_blocks(std::int64_t R, std::int64_t r_kv, std::int64_t n_blocks, const float* block_m,
                  const float* block_l, const float* block_z, float* z) {
  for (std::int64_t r = 0; r < R; ++r) {
    float m = kNegInf, l = 0.0f;
    for (std::int64_t b = 0; b < n_blocks; ++b) m = std::max(m, block_m[b * R + r]);
    float* z_r = z + r * r_kv;
    std::fill(z_r, z_r + r_kv, 0.0f);
    for (std::int64_t b = 0; b < n_blocks; ++b) {
      const float m_b = block_m[b * R + r];
      if (m_b == kNegInf) continue;  // every key of the block is masked for this row: w_b = 0
      const float w = exp_f32(m_b - m);
      l += w * block_l[b * R + r];
      const float* z_b = block_z + b * r_kv * R + r * r_kv;
      for (std::int64_t i = 0; i < r_kv; ++i) z_r[i] += w * z_b[i];
    }
    for (std::int64_t i = 0; i < r_kv; ++i) z_r[i] /= l;
  }
}

// Packs rows r = 0..R-1 (row r = column cols[r] of Q [D, *]) into MR-row panels: A(r, c) at
// (r / MR) * D * MR + c * MR + r % MR; rows R..R_pad-1 are zero.
void pack_queries(const float* Q, std::int64_t D, const std::vector<std::int64_t>& cols,
                  std::vector<float>& A) {
  const std::int64_t R = static_cast<std::int64_t>(cols.size());
  const std::int64_t panels = (R + MR - 1) / MR;
  A.assign(static_cast<std::size_t>(panels * D * MR), 0.0f);
  for (std::int64_t r = 0; r < R; ++r) {
    const float* q = Q + cols[r] * D;
    float* dst = A.data() + (r / MR) * D * MR + r % MR;
    for (std::int64_t c = 0; c < D; ++c) dst[c * MR] = q[c];
  }
}

}  // namespace

arma::fmat mla_forward(const arma::fmat& x, const MlaWeightsF& W, const Config& c,
                       std::int64_t pos0, LatentKvCache* cache, const Options& opt, Tracer* tr) {
  const std::int64_t d = c.d(), n_h = c.n_h(), d_nope = c.qk_nope_head_dim,
                     d_rope = c.qk_rope_head_dim, d_v = c.v_head_dim, r_kv = c.kv_lora_rank,
                     r_q = c.q_lora_rank;
  const std::int64_t D = r_kv + d_rope, T = static_cast<std::int64_t>(x.n_cols);
  if (static_cast<std::int64_t>(x.n_rows) != d)
    throw std::invalid_argument(fmt::format("fast::mla_forward: x is [{} x {}], expected [d={} x T]",
                                            x.n_rows, x.n_cols, d));
  if (cache && cache->length() != pos0)
    throw std::invalid_argument(fmt::format(
        "fast::mla_forward: the cache holds {} tokens but pos0 = {}", cache->length(), pos0));
  if (opt.attn_qb < 1 || opt.attn_heads < 1 || opt.attn_kb < 1 || opt.decode_kb < 1)
    throw std::invalid_argument("fast::mla_forward: attention block sizes must be >= 1");
  // Timed (stage_times.hpp): everything here is attention_projections but step 5, attention_core.
  StageTimer projections_timer(opt.times, "attention_projections");
  const RopeTable tab = rope_table(c, pos0, T);

  // 1. Every product that reads x, in one: [c_q | c_kv | k_rope_pre] or
  //    [q_nope | q_rope_pre | c_kv | k_rope_pre].
  const arma::fmat proj = gemm(W.W_x, x, opt);  // proj: [rows of W_x, T]
  const std::int64_t ldp = W.W_x.rows;
  const float *q_nope, *q_rope_pre;
  std::int64_t ldq;
  arma::fmat qproj;
  std::int64_t kv_row0;  // first row of c_kv in proj
  if (c.has_q_lora()) {
    arma::fmat c_q_hat(static_cast<arma::uword>(r_q), x.n_cols, arma::fill::none);  // c_q_hat: [r_q, T]
    rmsnorm(proj.memptr(), ldp, W.w_q, c.rms_norm_eps, T, c_q_hat.memptr(), r_q);
    qproj = gemm(W.W_q, c_q_hat, opt);  // [q_nope ; q_rope_pre]: [n_h*(d_nope+d_rope), T]
    q_nope = qproj.memptr();
    ldq = W.W_q.rows;
    kv_row0 = r_q;
  } else {
    q_nope = proj.memptr();
    ldq = ldp;
    kv_row0 = n_h * (d_nope + d_rope);
  }
  q_rope_pre = q_nope + n_h * d_nope;

  // 2. The new latents: c_kv_hat = RMSNorm_kv(c_kv), k_rope = RoPE(k_rope_pre), appended to the
  //    cache as rows [c_kv_hat ; k_rope]. Without a cache a local one holds the T new keys.
  LatentKvCache local(r_kv, d_rope);
  LatentKvCache* kv = cache ? cache : &local;
  const std::int64_t key_pos0 = cache ? 0 : pos0;  // absolute position of key 0
  float* rows = kv->append_rows(T);
  rmsnorm(proj.memptr() + kv_row0, ldp, W.w_kv, c.rms_norm_eps, T, rows, D);
  for (std::int64_t t = 0; t < T; ++t)
    std::copy_n(proj.memptr() + kv_row0 + r_kv + t * ldp, d_rope, rows + t * D + r_kv);
  rope(rows + r_kv, D, 1, tab, T);
  const std::int64_t n_keys_total = kv->length();  // keys attended over: cached + new

  // 3. q_rope = RoPE(q_rope_pre) for all heads.
  arma::fmat q_rope(static_cast<arma::uword>(n_h * d_rope), x.n_cols, arma::fill::none);  // q_rope: [n_h*d_rope, T]
  for (std::int64_t t = 0; t < T; ++t)
    std::copy_n(q_rope_pre + t * ldq, n_h * d_rope, q_rope.colptr(t));
  rope(q_rope.memptr(), n_h * d_rope, n_h, tab, T);

  // 4. Queries in cache-row layout, scaled: Q column (h*T + t) = s_eff [q_tilde_{t,h} ; q_rope_{t,h}].
  const float s_eff = static_cast<float>(ref::softmax_scale(c));
  std::vector<float> Q(static_cast<std::size_t>(D * n_h * T));  // Q: [D, n_h*T]
  for_each_head(n_h, opt, [&](std::int64_t h, const Options& one) {
    gemm(W.W_UK_T[h], q_nope + h * d_nope, ldq, T, Q.data() + h * T * D, D, false, one);
  });
  for (std::int64_t h = 0; h < n_h; ++h)
    for (std::int64_t t = 0; t < T; ++t) {
      float* q = Q.data() + (h * T + t) * D;
      for (std::int64_t i = 0; i < r_kv; ++i) q[i] *= s_eff;
      const float* qr = q_rope.colptr(t) + h * d_rope;
      for (std::int64_t i = 0; i < d_rope; ++i) q[r_kv + i] = s_eff * qr[i];
    }

  // 5. Attention: Zall column (h*T + t) = z_{t,h} = sum_j p(t,j,h) c_kv_hat_j.
  StageTimer core_timer(opt.times, "attention_core");
  std::vector<float> Zall(static_cast<std::size_t>(r_kv * n_h * T));  // [r_kv, n_h*T]
  const std::int64_t R_all = n_h * T;
  if (R_all <= MR) {
    // Decode: key blocks in parallel, then a merge in block order; see mla.hpp.
    // Up to 16 rows (16 heads, one token) use the 16-row tile, so no multiply-add is padding.
    const std::int64_t R = R_all, R_pad = R <= MR16 ? MR16 : MR, n_keys = n_keys_total;
    std::vector<std::int64_t> cols(R), q_pos(R);
    for (std::int64_t r = 0; r < R; ++r) cols[r] = r, q_pos[r] = pos0 + r % T;
    std::vector<float> A;
    if (R_pad == MR) {
      pack_queries(Q.data(), D, cols, A);
    } else {  // one 16-row panel: A(r, c) at c * 16 + r, rows R..15 zero
      A.assign(static_cast<std::size_t>(D * MR16), 0.0f);
      for (std::int64_t r = 0; r < R; ++r)
        for (std::int64_t i = 0; i < D; ++i) A[i * MR16 + r] = Q[r * D + i];
    }
    // One task per block of decode_kb keys: its scores, its own softmax (block max m_b, sum
    // l_b) and its unnormalised z_b = P_b C_b, all while the block's cache rows are in cache,
    // so the latent cache is streamed from memory once. Then the blocks are merged in block
    // order (merge_blocks). The blocks depend on decode_kb and the number of keys only, never on
    // the thread count (decode_blocks: blocks of decode_kb keys, the last full one and the
    // remainder shared by two blocks of half their keys each).
    const std::int64_t kb = opt.decode_kb;
    const std::vector<std::int64_t> starts = decode_blocks(n_keys, kb);
    const std::int64_t n_blocks = static_cast<std::int64_t>(starts.size()) - 1;
    std::vector<float> block_m(static_cast<std::size_t>(n_blocks * R)),  // [R, n_blocks]
        block_l(static_cast<std::size_t>(n_blocks * R)),                 // [R, n_blocks]
        block_z(static_cast<std::size_t>(n_blocks * r_kv * R));          // [r_kv, R] per block
    parallel_for(opt.threads, n_blocks, [&](std::int64_t b) {
      const std::int64_t j0 = starts[static_cast<std::size_t>(b)],
                         n = starts[static_cast<std::size_t>(b) + 1] - j0;  // n <= kb
      thread_local std::vector<float> S;  // S: [R_pad, kb], the block's scores, then p
      S.resize(static_cast<std::size_t>(R_pad * kb));
      if (R_pad == MR)
        gemm_panels(R, n, D, A.data(), D * MR, MR, kv->row(j0), NR * D, 1, D, S.data(), R_pad, false);
      else
        gemm_rows16(R, n, D, A.data(), MR16, kv->row(j0), 1, D, S.data(), R_pad, false);
      if (T > 1) mask_future(S.data(), R_pad, R, n, key_pos0 + j0, q_pos.data());
      block_softmax(S.data(), R_pad, R, n, block_m.data() + b * R, block_l.data() + b * R);
      gemm_panels(r_kv, R, n, kv->row(j0), MR, D, S.data(), NR, R_pad, 1,
                  block_z.data() + b * r_kv * R, r_kv, false);
    });
    merge_blocks(R, r_kv, n_blocks, block_m.data(), block_l.data(), block_z.data(), Zall.data());
  } else {
    // Prefill: flash attention, one task per (query block, head group).
    const std::int64_t qb = opt.attn_qb, hg = opt.attn_heads, kbs = opt.attn_kb;
    const std::int64_t q_blocks = (T + qb - 1) / qb, h_groups = (n_h + hg - 1) / hg;
    parallel_for(opt.threads, q_blocks * h_groups, [&](std::int64_t task) {
      const std::int64_t t0 = (task % q_blocks) * qb, h0 = (task / q_blocks) * hg;
      const std::int64_t nt = std::min(qb, T - t0), nh = std::min(hg, n_h - h0);
      const std::int64_t R = nt * nh, R_pad = (R + MR - 1) / MR * MR;
      std::vector<std::int64_t> cols(R), q_pos(R);
      for (std::int64_t hh = 0; hh < nh; ++hh)
        for (std::int64_t tt = 0; tt < nt; ++tt) {
          cols[hh * nt + tt] = (h0 + hh) * T + t0 + tt;
          q_pos[hh * nt + tt] = pos0 + t0 + tt;
        }
      thread_local std::vector<float> A, S, Z, state;
      pack_queries(Q.data(), D, cols, A);
      S.resize(static_cast<std::size_t>(R_pad * kbs));
      Z.assign(static_cast<std::size_t>(r_kv * R_pad), 0.0f);  // Z: [r_kv, R_pad]
      state.assign(static_cast<std::size_t>(4 * R_pad), 0.0f);
      float *m = state.data(), *l = m + R_pad, *alpha = l + R_pad, *m_new = alpha + R_pad;
      std::fill(m, m + R_pad, kNegInf);
      // Keys up to the block's last query position: key j (at key_pos0 + j) <= pos0 + t0 + nt - 1.
      const std::int64_t n_keys = pos0 + t0 + nt - key_pos0;
      for (std::int64_t j0 = 0; j0 < n_keys; j0 += kbs) {
        const std::int64_t n = std::min(kbs, n_keys - j0);
        gemm_panels(R, n, D, A.data(), D * MR, MR, kv->row(j0), NR * D, 1, D, S.data(), R_pad, false);
        if (key_pos0 + j0 + n - 1 > pos0 + t0)  // the block reaches past the first query
          mask_future(S.data(), R_pad, R, n, key_pos0 + j0, q_pos.data());
        online_softmax_block(S.data(), R_pad, R, n, m, l, alpha, m_new);
        for (std::int64_t r = 0; r < R; ++r)
          for (std::int64_t i = 0; i < r_kv; ++i) Z[r * r_kv + i] *= alpha[r];
        gemm_panels(r_kv, R, n, kv->row(j0), MR, D, S.data(), NR, R_pad, 1, Z.data(), r_kv, true);
      }
      for (std::int64_t r = 0; r < R; ++r) {
        float* z = Zall.data() + cols[r] * r_kv;
        for (std::int64_t i = 0; i < r_kv; ++i) z[i] = Z[r * r_kv + i] / l[r];
      }
    });
  }

  const double core_seconds = core_timer.stop();
  if (opt.times) opt.times->seconds["attention_projections"] -= core_seconds;

  // 6. o_h = W_UV_h z_h into rows h*d_v .. of o: [n_h*d_v, T];  7. u = W_O o: [d, T].
  arma::fmat o(static_cast<arma::uword>(n_h * d_v), x.n_cols, arma::fill::none);  // every row written per head
  for_each_head(n_h, opt, [&](std::int64_t h, const Options& one) {
    gemm(W.W_UV[h], Zall.data() + h * T * r_kv, r_kv, T, o.memptr() + h * d_v, n_h * d_v, false, one);
  });
  arma::fmat u = gemm(W.W_O, o, opt);

  if (tr) {
    arma::fmat qn(static_cast<arma::uword>(n_h * d_nope), x.n_cols), ckv(r_kv, x.n_cols),
        kr(d_rope, x.n_cols);
    for (std::int64_t t = 0; t < T; ++t) {
      std::copy_n(q_nope + t * ldq, n_h * d_nope, qn.colptr(t));
      const float* row = kv->row(kv->length() - T + t);
      std::copy_n(row, r_kv, ckv.colptr(t));
      std::copy_n(row + r_kv, d_rope, kr.colptr(t));
    }
    TRACE(tr, "attn.q_nope", qn);
    TRACE(tr, "attn.q_rope", q_rope);
    TRACE(tr, "attn.c_kv_hat", ckv);
    TRACE(tr, "attn.k_rope", kr);
    TRACE(tr, "attn.o", o);
  }
  TRACE(tr, "attn.u", u);
  return u;
}

}  // namespace dsr1::fast
