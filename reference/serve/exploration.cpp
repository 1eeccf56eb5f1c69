// One run of the classroom explorer (exploration.hpp).
#include "reference/serve/exploration.hpp"

#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include "reference/io/memory_reuse.hpp"

namespace dsr1::serve {
namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

bool ExplorerTracer::keeps_values(const std::string& name) {
  // The residual stream and the norms around it (norm pictures, the residual-norm chart):
  // embed.h, layers.{l}.attn_norm, .h_attn, .ffn_norm, .h; the MTP block's input mtp.h_proj.
  // Attention weights, the latent cache and the router of every token.
  static const char* const tails[] = {".h", ".attn_norm", ".h_attn", ".ffn_norm", "mtp.h_proj",
                                      ".attn.probs", ".attn.c_kv_hat", ".attn.k_rope", ".moe.s",
                                      ".moe.s_tilde", ".moe.group_scores", ".moe.group_mask",
                                      ".moe.experts", ".moe.g"};
  for (const char* tail : tails)
    if (ends_with(name, tail)) return true;
  return false;
}

void ExplorerTracer::on_tensor(const std::string& full_name, const TensorView& x) {
  if (keeps_values(full_name)) {
    RecordingTracer::on_tensor(full_name, x);
    kept_values_ += x.numel();
  } else {
    // The MLA data-flow picture needs only the shape.
    RecordingTracer::on_shape(full_name, TensorView{x.shape, nullptr}, {});
  }
}

std::vector<NextToken> top_next_tokens(const arma::vec& logits, std::size_t k) {
  if (logits.is_empty()) throw std::invalid_argument("top_next_tokens: no logits");
  const double top = logits.max();
  double sum = 0;
  for (double l : logits) sum += std::exp(l - top);  // every term <= 1, the largest exactly 1
  const arma::uvec order = arma::stable_sort_index(logits, "descend");  // ties: lower id first
  std::vector<NextToken> out;
  for (std::size_t r = 0; r < std::min<std::size_t>(k, logits.n_elem); ++r) {
    const arma::uword v = order(r);
    out.push_back({static_cast<std::int64_t>(v), logits(v), std::exp(logits(v) - top) / sum});
  }
  return out;
}

double kept_bytes_estimate(const Config& c, std::int64_t T, bool mtp) {
  const double d = static_cast<double>(c.hidden_size), t = static_cast<double>(T);
  const double blocks = static_cast<double>(c.num_hidden_layers) + (mtp ? 1.0 : 0.0);
  const double per_block = 4 * t * d                                                   // attn_norm, h_attn, ffn_norm, h
                           + static_cast<double>(c.num_attention_heads) * t * t         // probs
                           + t * static_cast<double>(c.kv_lora_rank + c.qk_rope_head_dim)  // latent cache
                           + 3 * t * static_cast<double>(c.n_routed_experts)            // s, s_tilde, (ell not kept)
                           + 2 * t * static_cast<double>(c.n_group)                     // group scores and mask
                           + 2 * t * static_cast<double>(c.num_experts_per_tok);        // experts, g
  const double logits = static_cast<double>(c.vocab_size) * t * (mtp ? 2.0 : 1.0);
  return 8.0 * (blocks * per_block + 2 * t * d + logits);  // + embed.h, mtp.h_proj
}

double peak_rss_bytes() {
  struct rusage u {};
  if (::getrusage(RUSAGE_SELF, &u) != 0) return 0;
  return static_cast<double>(u.ru_maxrss) * 1024.0;  // Linux reports kilobytes
}

std::unique_ptr<Exploration> explore(const WeightStore& weights, const Config& c, const RunRequest& request,
                                     std::size_t top_k, const LayerProgress& progress) {
  const auto started = std::chrono::steady_clock::now();
  auto run = std::make_unique<Exploration>();
  run->config = c;
  run->request = request;
  run->trace = std::make_unique<ExplorerTracer>();

  ref::ForwardOptions opt;
  opt.attn = request.attn;
  std::string pass = "main";
  opt.on_layer_begin = [&](std::int64_t l, std::int64_t L) {
    if (l == 0) release_freed_memory();  // a new pass: hand back what the last one left free
    if (progress) progress(pass, l, L);
  };
  opt.on_layer_done = [&](std::int64_t l, std::int64_t L) {
    if (progress) progress(pass, l + 1, L);
  };

  // The main model, then (with MTP) its module on the final hidden states.
  arma::mat h_final;
  run->logits = ref::forward_hidden(weights, c, request.tokens, 0, nullptr, opt, run->trace.get(), &h_final);
  for (arma::uword t = 0; t < run->logits.n_cols; ++t)
    run->next.push_back(top_next_tokens(run->logits.col(t), top_k));
  if (request.mtp) {
    pass = "mtp";
    if (progress) progress(pass, 0, 1);
    run->mtp_logits = ref::mtp_forward(weights, c, h_final, request.tokens, opt, run->trace.get());
    for (arma::uword t = 0; t < run->mtp_logits.n_cols; ++t)
      run->mtp_next.push_back(top_next_tokens(run->mtp_logits.col(t), top_k));
    if (progress) progress(pass, 1, 1);
  }
  run->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  run->peak_rss_bytes = peak_rss_bytes();
  return run;
}

}  // namespace dsr1::serve
