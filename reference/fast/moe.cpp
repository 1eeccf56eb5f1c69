// MoE with tokens grouped per expert (see moe.hpp).
#include "reference/fast/moe.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "reference/fast/ffn.hpp"
#include "reference/fast/router.hpp"
#include "reference/fast/stage_times.hpp"
#include "reference/fast/thread_pool.hpp"

namespace dsr1::fast {

arma::fmat moe_forward(const arma::fmat& x, const MoeWeightsF& W, const Config& c,
                       const Options& opt, Tracer* tr) {
  const arma::uword d = x.n_rows, T = x.n_cols, N_r = c.n_routed_experts;
  if (W.experts.size() != N_r && !(W.experts.empty() && W.fetch_expert))
    throw std::invalid_argument(fmt::format("fast::moe_forward: {} routed experts, expected N_r={}",
                                            W.experts.size(), N_r));
  StageTimer router_timer(opt.times, "router");
  const Routing r = route(x, W, c, opt, tr);
  router_timer.stop();
  const arma::uword K = r.experts.n_rows;

  // Group: tokens[e] lists the tokens that chose expert e, in increasing token order;
  // slot(k, t) is token t's column in its k-th expert's output.
  std::vector<std::vector<arma::uword>> tokens(N_r);
  arma::umat slot(K, T);
  for (arma::uword t = 0; t < T; ++t)
    for (arma::uword k = 0; k < K; ++k) {
      auto& list = tokens[r.experts(k, t)];
      slot(k, t) = list.size();
      list.push_back(t);
    }
  // One product chain per expert on its gathered tokens: y_e = E_e(X_e), [d, T_e].
  StageTimer experts_timer(opt.times, "experts");
  std::vector<arma::fmat> y(N_r);
  std::vector<arma::uword> chosen;  // the experts some token chose, ascending
  for (arma::uword e = 0; e < N_r; ++e)
    if (!tokens[e].empty()) chosen.push_back(e);
  auto gather = [&](arma::uword e) {
    arma::fmat x_e(d, tokens[e].size());  // x_e: [d, T_e]
    for (arma::uword j = 0; j < tokens[e].size(); ++j)
      std::copy_n(x.colptr(tokens[e][j]), d, x_e.colptr(j));
    return x_e;
  };
  if (!W.experts.empty() && static_cast<std::int64_t>(chosen.size()) >= 2 * opt.threads) {
    // Resident experts, at least two per thread: one expert per task, its two products on one
    // thread. Each expert's products are small (a decode token's are matrix-vector products);
    // handing each to the whole pool cost two dispatches per expert, and the threads then
    // shared every small product instead of each keeping its own expert's weights in its own
    // cache. gemm's bits do not depend on the thread count, so y is the same either way.
    Options one = opt;
    one.threads = 1;
    parallel_for(opt.threads, static_cast<std::int64_t>(chosen.size()), [&](std::int64_t i) {
      const arma::uword e = chosen[static_cast<std::size_t>(i)];
      y[e] = swiglu_ffn(gather(e), W.experts[e], one, nullptr, "");
    });
  } else {
    for (arma::uword e : chosen) {
      if (!W.experts.empty()) {
        y[e] = swiglu_ffn(gather(e), W.experts[e], opt, nullptr, "");
      } else {  // fetched now (ascending e), released at the end of this iteration
        const FfnWeightsF E = W.fetch_expert(static_cast<std::int64_t>(e));
        y[e] = swiglu_ffn(gather(e), E, opt, nullptr, "");
      }
    }
  }
  experts_timer.stop();
  // Combine: routed_t = sum_k g_{k,t} y_{i_k}[:, slot], in increasing expert index (as the
  // reference), one task per block of nc tokens.
  StageTimer combine_timer(opt.times, "combine");
  arma::fmat routed(d, T, arma::fill::zeros);  // routed: [d, T]
  const std::int64_t blocks = (static_cast<std::int64_t>(T) + opt.nc - 1) / opt.nc;
  parallel_for(opt.threads, blocks, [&](std::int64_t blk) {
    const arma::uword t0 = blk * opt.nc, t1 = std::min<arma::uword>(T, t0 + opt.nc);
    std::vector<arma::uword> order(K);
    for (arma::uword t = t0; t < t1; ++t) {
      for (arma::uword k = 0; k < K; ++k) order[k] = k;
      std::sort(order.begin(), order.end(),
                [&](arma::uword a, arma::uword b) { return r.experts(a, t) < r.experts(b, t); });
      float* out = routed.colptr(t);
      for (arma::uword k : order) {
        const float g = static_cast<float>(r.g(k, t));
        const float* ye = y[r.experts(k, t)].colptr(slot(k, t));
        for (arma::uword i = 0; i < d; ++i) out[i] += g * ye[i];
      }
    }
  });
  combine_timer.stop();
  TRACE(tr, "moe.routed", routed);
  arma::fmat out = routed;
  if (W.shared) {
    StageTimer shared_timer(opt.times, "experts");
    const arma::fmat shared = swiglu_ffn(x, *W.shared, opt, nullptr, "");
    shared_timer.stop();
    TRACE(tr, "moe.shared", shared);
    out += shared;
  }
  TRACE(tr, "moe.out", out);
  return out;
}

}  // namespace dsr1::fast
