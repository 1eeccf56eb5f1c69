// What the explorer's page shows, as JSON with the pictures of reference/html/ (views.hpp).
#include "reference/serve/views.hpp"

#include <fmt/format.h>

#include <cmath>

#include "reference/deepseek/rope.hpp"
#include "reference/html/html_tracer.hpp"
#include "reference/html/pictures.hpp"
#include "reference/text/chat.hpp"

namespace dsr1::serve {
namespace {

using json = nlohmann::json;

// A kept record as a matrix in its on-disk layout: [rows, cols] with row r = token r (a 1-D
// record is one row). Row-major data read column-major is the transpose.
arma::mat disk_matrix(const RecordingTracer::Entry& e) {
  if (e.shape.empty() || e.shape.size() > 2 || e.data.empty())
    throw std::logic_error(fmt::format("explorer: '{}' is not a kept vector or matrix", e.name));
  const arma::uword rows = e.shape.size() == 2 ? e.shape[0] : 1, cols = e.shape.back();
  return arma::mat(const_cast<double*>(e.data.data()), cols, rows, /*copy_aux_mem=*/false, true).t();
}

// Head h of a kept [n_h, T, T_k] record: [T, T_k].
arma::mat head_slice(const RecordingTracer::Entry& e, arma::uword h) {
  const arma::uword rows = e.shape[1], cols = e.shape[2];
  return arma::mat(const_cast<double*>(e.data.data()) + h * rows * cols, cols, rows, false, true).t();
}

json rows_of(const arma::mat& m) {  // [[row 0], [row 1], ...]
  json out = json::array();
  for (arma::uword r = 0; r < m.n_rows; ++r) {
    json row = json::array();
    for (arma::uword c = 0; c < m.n_cols; ++c) row.push_back(m(r, c));
    out.push_back(std::move(row));
  }
  return out;
}

json vector_of(const arma::vec& v) {
  json out = json::array();
  for (double x : v) out.push_back(x);
  return out;
}

json next_tokens_json(const std::vector<std::vector<NextToken>>& next,
                      const std::function<std::string(std::int64_t)>& label_of) {
  json out = json::array();
  for (const auto& position : next) {
    json list = json::array();
    for (const NextToken& n : position) {
      json one = {{"id", n.id}, {"logit", n.logit}, {"prob", n.prob}};
      if (label_of) one["label"] = label_of(n.id);
      list.push_back(std::move(one));
    }
    out.push_back(std::move(list));
  }
  return out;
}

// "layers.3." or "mtp.block." for block l (l == L: the MTP block).
std::string block_prefix(const Config& c, std::int64_t l) {
  return l == c.num_hidden_layers ? std::string("mtp.block.") : fmt::format("layers.{}.", l);
}

// The residual stream entering block l: the embedding, the previous block's output, or (MTP) the
// projection of [emb ; h].
std::string block_input(const Config& c, std::int64_t l) {
  if (l == c.num_hidden_layers) return "mtp.h_proj";
  return l == 0 ? std::string("embed.h") : fmt::format("layers.{}.h", l - 1);
}

// Row labels of a per-token picture: "t=3", or "t=3 ␣Paris" with a tokenizer.
std::vector<std::string> row_labels(const Exploration& run) {
  std::vector<std::string> labels;
  const std::vector<std::int64_t>& tokens = run.request.tokens;
  for (std::size_t t = 0; t < tokens.size(); ++t)
    labels.push_back(run.label_of ? fmt::format("t={} {}", t, html::short_label(run.label_of(tokens[t]), 8))
                                  : fmt::format("t={}", t));
  return labels;
}

// Each position's token as a label for the attention axes ("␣Paris"); empty without a tokenizer.
std::vector<std::string> position_labels(const Exploration& run) {
  std::vector<std::string> labels;
  if (run.label_of)
    for (const std::int64_t id : run.request.tokens) labels.push_back(run.label_of(id));
  return labels;
}

// " (␣Paris)" after a token's id in a title, "" without a tokenizer.
std::string token_note(const Exploration& run, std::int64_t id) {
  return run.label_of ? fmt::format(" ({})", run.label_of(id)) : std::string();
}

}  // namespace

json model_view(const Config& c, const std::string& source, const Limits& limits, int precision,
                const TextSupport* text) {
  json blocks = json::array();
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l)
    blocks.push_back({{"id", std::to_string(l)}, {"kind", c.is_moe_layer(l) ? "moe" : "dense"}});
  if (c.num_nextn_predict_layers > 0) blocks.push_back({{"id", "mtp"}, {"kind", "mtp"}});
  const arma::vec theta = ref::rope_theta(c), theta_prime = ref::yarn_theta_prime(c);
  const ref::YarnRange range = c.has_yarn() ? ref::yarn_range(c) : ref::YarnRange{};
  json j;
  j["name"] = c.name;
  j["source"] = source;
  j["conventions"] = describe_conventions(c);
  j["dims"] = {{"d", c.hidden_size},        {"L", c.num_hidden_layers},      {"n_h", c.num_attention_heads},
               {"d_nope", c.qk_nope_head_dim}, {"d_rope", c.qk_rope_head_dim}, {"d_v", c.v_head_dim},
               {"r_q", c.q_lora_rank},      {"r_kv", c.kv_lora_rank},        {"V", c.vocab_size},
               {"N_r", c.n_routed_experts}, {"N_s", c.n_shared_experts},     {"K", c.num_experts_per_tok},
               {"n_group", c.n_group},      {"topk_group", c.topk_group},
               {"first_k_dense_replace", c.first_k_dense_replace}, {"yarn", c.has_yarn()},
               {"scoring_func", c.scoring_func}};
  j["blocks"] = blocks;
  j["limits"] = {{"max_prompt_tokens", limits.max_prompt_tokens}, {"max_body_bytes", limits.max_body_bytes},
                 {"max_heads_per_view", limits.max_heads_per_view}};
  j["precision"] = precision;
  j["text"] = text != nullptr;  // the page offers text and chat prompts
  if (text) {
    j["tokenizer"] = text->tokenizer.origin();
    j["chat_format"] = text::to_string(text->format);
  }
  j["pictures"]["rope"] = html::rope_frequency_plot(
      fmt::format("Rotation frequency per pair, {} (d_rope = {})", c.name, c.qk_rope_head_dim), theta, theta_prime,
      c.has_yarn(), range, c.rope_scaling.factor, precision);
  j["pictures"]["kv_cache"] = html::kv_cache_curve(fmt::format("KV cache of {} (log scale)", c.name), c);
  return j;
}

json run_view(const Exploration& run, int precision) {
  const Config& c = run.config;
  const std::vector<std::int64_t>& tokens = run.request.tokens;
  const auto T = static_cast<arma::uword>(tokens.size());
  const RecordingTracer& rec = *run.trace;
  json j;
  j["run"] = run.id;
  j["tokens"] = tokens;
  j["kind"] = run.request.kind;
  j["text"] = run.request.text;
  j["labels"] = position_labels(run);
  j["path"] = fmt::format("reference (float64), {} attention", ref::attn_form_name(run.request.attn));
  j["attn"] = ref::attn_form_name(run.request.attn);
  j["mtp"] = run.request.mtp;
  j["seconds"] = run.seconds;
  j["peak_rss_bytes"] = run.peak_rss_bytes;
  j["kept_bytes"] = 8.0 * static_cast<double>(run.trace->kept_values() + run.logits.n_elem + run.mtp_logits.n_elem);
  j["next"] = next_tokens_json(run.next, run.label_of);
  j["mtp_next"] = next_tokens_json(run.mtp_next, run.label_of);

  // The residual stream after the embedding and after each block: |h_t| per stage.
  std::vector<std::string> stages;
  arma::mat norms(static_cast<arma::uword>(c.num_hidden_layers) + 1, T);
  for (std::int64_t s = 0; s <= c.num_hidden_layers; ++s) {
    const std::string name = s == 0 ? std::string("embed.h") : fmt::format("layers.{}.h", s - 1);
    const arma::mat h = disk_matrix(rec.get(name));  // [T, d]
    norms.row(static_cast<arma::uword>(s)) = arma::sqrt(arma::sum(arma::square(h), 1)).t();
    stages.push_back(s == 0 ? std::string("emb") : std::to_string(s - 1));
  }
  j["residual_norms"] = rows_of(norms);
  j["pictures"]["residual"] = html::residual_norm_chart(
      fmt::format("Norm of the residual stream |h_t| after the embedding and after each of the {} layers",
                  c.num_hidden_layers),
      stages, norms, precision);
  j["pictures"]["logits"] =
      html::logits_table("Top 5 logits after each position (logits row t)", arma::mat(run.logits.t()), tokens, 5,
                         precision, run.label_of);
  if (run.request.mtp)
    j["pictures"]["mtp_logits"] = html::logits_table(
        "MTP: top 5 logits for token t+2 after each position t (mtp.logits row t)", arma::mat(run.mtp_logits.t()),
        tokens, 5, precision, run.label_of);

  // RoPE at the prompt's positions: the angle t·θ'_i that rotates pair i at position t, as its
  // cosine (1: not turned, -1: half a turn).
  const arma::vec theta_prime = ref::yarn_theta_prime(c);  // [d_rope/2]
  arma::mat cosines(T, theta_prime.n_elem);
  for (arma::uword t = 0; t < T; ++t)
    for (arma::uword i = 0; i < theta_prime.n_elem; ++i) cosines(t, i) = std::cos(static_cast<double>(t) * theta_prime(i));
  std::vector<std::string> pairs;
  for (arma::uword i = 0; i < theta_prime.n_elem; ++i) pairs.push_back(std::to_string(i));
  j["pictures"]["rope_positions"] = html::value_heatmap(
      fmt::format("cos(t·θ'_i): the rotation of pair i at each position t of the prompt ({})",
                  c.has_yarn() ? "YaRN-corrected θ'" : "plain RoPE"),
      cosines, row_labels(run), pairs, precision);
  return j;
}

json layer_view(const Exploration& run, std::int64_t l, std::int64_t head0, std::int64_t heads, std::int64_t t,
                int precision) {
  const Config& c = run.config;
  const RecordingTracer& rec = *run.trace;
  const bool mtp_block = l == c.num_hidden_layers;
  if (mtp_block && !run.request.mtp)
    throw RequestError(404, "this run did not compute the MTP block: run again with MTP ticked");
  const std::string b = block_prefix(c, l);
  const std::string where = mtp_block ? std::string("mtp.block") : fmt::format("layers.{}", l);
  const auto T = static_cast<std::int64_t>(run.request.tokens.size());
  const bool moe = mtp_block ? c.n_routed_experts > 0 : c.is_moe_layer(l);
  json j;
  j["layer"] = mtp_block ? json("mtp") : json(l);
  j["name"] = where;
  j["kind"] = mtp_block ? "mtp" : (moe ? "moe" : "dense");
  j["moe"] = moe;
  j["token"] = t;

  // Attention: heads head0 .. head0+heads-1 of probs [n_h, T, T_k].
  const RecordingTracer::Entry& probs = rec.get(b + "attn.probs");
  const auto n_h = static_cast<std::int64_t>(probs.shape[0]);
  const std::int64_t last = std::min(n_h, head0 + heads);
  j["heads"] = {{"from", head0}, {"to", last - 1}, {"n_h", n_h}};
  j["attention"] = json::array();
  const std::vector<std::string> labels = position_labels(run);
  for (std::int64_t h = head0; h < last; ++h) {
    const arma::mat p = head_slice(probs, static_cast<arma::uword>(h));  // [T, T_k]
    // Causal mask: without a cache T_k = T, and key j > t lies in query t's future; its weight is
    // exactly 0 after exp(-inf) (as html_tracer.cpp marks it when the scores are not traced).
    arma::umat masked(p.n_rows, p.n_cols, arma::fill::zeros);
    for (arma::uword q = 0; q < p.n_rows; ++q)
      for (arma::uword k = q + 1; k < p.n_cols; ++k) masked(q, k) = p(q, k) == 0.0;
    j["attention"].push_back(
        {{"head", h},
         {"probs", rows_of(p)},
         {"html", html::attention_heatmap(fmt::format("{}.attn.probs, head {}", where, h), p, masked, precision,
                                          labels, labels)}});
  }

  // The latent cache: what MLA keeps per token instead of per-head keys and values.
  const arma::mat c_kv_hat = disk_matrix(rec.get(b + "attn.c_kv_hat"));  // [T, r_kv]
  const arma::mat k_rope = disk_matrix(rec.get(b + "attn.k_rope"));      // [T, d_rope]
  const auto dims = [](arma::uword n) {
    std::vector<std::string> v;
    for (arma::uword i = 0; i < n; ++i) v.push_back(std::to_string(i));
    return v;
  };
  const std::vector<std::string> rows = row_labels(run);
  j["latent"]["html"] = html::value_heatmap(
      fmt::format("{}.attn.c_kv_hat [T, r_kv = {}]: the cached latent of each token", where, c_kv_hat.n_cols),
      c_kv_hat, rows, dims(c_kv_hat.n_cols), precision);
  j["latent"]["k_rope_html"] = html::value_heatmap(
      fmt::format("{}.attn.k_rope [T, d_rope = {}]: the cached rotated key, shared by all heads", where,
                  k_rope.n_cols),
      k_rope, rows, dims(k_rope.n_cols), precision);
  j["mla_flow"] = html::mla_flow_picture(rec, b);

  // The RMSNorms of token t: before attention (the residual stream entering the block) and
  // before the FFN (after the attention residual).
  const auto tt = static_cast<arma::uword>(t);
  const std::string which = fmt::format("token t = {}{}", t, token_note(run, run.request.tokens[tt]));
  const arma::mat h_in = disk_matrix(rec.get(block_input(c, l))), attn_norm = disk_matrix(rec.get(b + "attn_norm"));
  const arma::mat h_attn = disk_matrix(rec.get(b + "h_attn")), ffn_norm = disk_matrix(rec.get(b + "ffn_norm"));
  j["norms"]["attn"] = html::norm_chart(
      fmt::format("RMSNorm before attention, {}: {} (grey) and {}.attn_norm", which, block_input(c, l), where),
      h_in.row(tt).t(), attn_norm.row(tt).t(), precision);
  j["norms"]["ffn"] = html::norm_chart(
      fmt::format("RMSNorm before the FFN, {}: {}.h_attn (grey) and {}.ffn_norm", which, where, where),
      h_attn.row(tt).t(), ffn_norm.row(tt).t(), precision);

  if (moe) {
    // The router of token t, from the kept router tensors (one row each).
    html::RouterView r;
    const auto row = [&](const std::string& tail) -> arma::vec {
      return rec.has(b + tail) ? arma::vec(disk_matrix(rec.get(b + tail)).row(tt).t()) : arma::vec();
    };
    r.s = row("moe.s");
    r.s_tilde = row("moe.s_tilde");
    const arma::vec experts = row("moe.experts");
    for (double e : experts) r.chosen.push_back(static_cast<arma::uword>(e));
    r.gates = row("moe.g");  // [K], in the order of the chosen experts
    const arma::vec group_mask = row("moe.group_mask");
    if (group_mask.n_elem > 1) {
      r.group_mask = group_mask;
      r.group_scores = row("moe.group_scores");
    }
    json chosen = json::array();
    for (std::size_t k = 0; k < r.chosen.size(); ++k)
      chosen.push_back({{"expert", r.chosen[k]}, {"s", r.s(r.chosen[k])}, {"gate", k < r.gates.n_elem ? r.gates(k) : 0.0}});
    j["router"] = {{"token", t},
                   {"s", vector_of(r.s)},
                   {"s_tilde", vector_of(r.s_tilde)},
                   {"group_scores", vector_of(r.group_scores)},
                   {"group_mask", vector_of(r.group_mask)},
                   {"chosen", chosen},
                   {"html", html::router_bars(fmt::format("{}.moe, {}: {} of {} experts chosen", where, which,
                                                          r.chosen.size(), r.s.n_elem),
                                              r, precision)}};
    // How many of the prompt's tokens each expert received.
    std::vector<std::uint64_t> load(static_cast<std::size_t>(c.n_routed_experts), 0);
    for (double e : disk_matrix(rec.get(b + "moe.experts")))
      if (e >= 0 && e < static_cast<double>(load.size())) ++load[static_cast<std::size_t>(e)];
    j["expert_load"] = {{"load", load},
                        {"html", html::expert_load_histogram(
                                     fmt::format("{}.moe: expert load over the prompt's {} tokens", where, T), load)}};
  }
  return j;
}

}  // namespace dsr1::serve
