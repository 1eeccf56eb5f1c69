// The tracer behind --html and the page of `dsr1 run` (html_tracer.hpp).
#include "reference/html/html_tracer.hpp"

#include <fmt/format.h>

#include <cmath>
#include <map>
#include <regex>

#include "reference/trace/trace_outputs.hpp"

#include "reference/deepseek/rope.hpp"

namespace dsr1::html {
namespace {

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// A 1-D or 2-D record as a matrix in its on-disk layout: [rows, cols] with row r = token r.
arma::mat disk_matrix(const RecordingTracer::Entry& e) {
  if (e.shape.empty() || e.shape.size() > 2 || e.data.empty())
    throw std::invalid_argument(fmt::format("--html: '{}' is {}, expected a vector or a matrix with values",
                                            e.name, format_shape(e.shape)));
  const arma::uword rows = e.shape.size() == 2 ? e.shape[0] : 1;
  const arma::uword cols = e.shape.back();
  // Row-major data read column-major is the transpose.
  return arma::mat(e.data.data(), cols, rows).t();
}

// Slice h of a 3-D record [n, rows, cols] (or the whole of a 2-D record when n is absent).
arma::mat disk_slice(const RecordingTracer::Entry& e, arma::uword h) {
  if (e.shape.size() != 3) return disk_matrix(e);
  const arma::uword rows = e.shape[1], cols = e.shape[2];
  return arma::mat(e.data.data() + h * rows * cols, cols, rows).t();
}

std::vector<std::uint64_t> shape_or_empty(const RecordingTracer& rec, const std::string& name) {
  return rec.has(name) ? rec.get(name).shape : std::vector<std::uint64_t>{};
}

}  // namespace

HtmlTracer::HtmlTracer(std::vector<std::string> filters, std::string title, int precision,
                       bool lay_out_tensors)
    : RecordingTracer(std::move(filters)),
      page_(std::move(title)),
      precision_(precision),
      lay_out_tensors_(lay_out_tensors) {}

void HtmlTracer::on_tensor(const std::string& full_name, const TensorView& x) {
  RecordingTracer::on_tensor(full_name, x);
  if (!lay_out_tensors_) return;
  page_.add(tensor_table(full_name, x, precision_));
  draw_pictures_of(full_name);
}

void HtmlTracer::draw_pictures_of(const std::string& full_name) {
  if (ends_with(full_name, "probs") && get(full_name).shape.size() >= 2) {
    for (const std::string& fig : attention_heatmaps(*this, full_name, precision_, full_name)) page_.add(fig);
  }
  if (ends_with(full_name, "attn.u")) {
    page_.add(mla_flow_picture(*this, full_name.substr(0, full_name.size() - std::string("attn.u").size())));
  }
  if (ends_with(full_name, "moe.g") || ends_with(full_name, "router.g")) {
    const std::string prefix = full_name.substr(0, full_name.size() - std::string(ends_with(full_name, "moe.g") ? "moe.g" : "router.g").size());
    for (const std::string& fig : router_pictures(*this, prefix, precision_)) page_.add(fig);
  }
}

std::string mla_flow_picture(const RecordingTracer& rec, const std::string& block) {
  const auto at = [&](const std::string& name) { return shape_or_empty(rec, block + "attn." + name); };
  FlowShapes f;
  f.x = shape_or_empty(rec, block + "attn_norm");
  f.c_q = at("c_q");
  f.c_q_hat = at("c_q_hat");
  f.q_nope = at("q_nope");
  f.q_rope = at("q_rope");
  f.c_kv = at("c_kv");
  f.c_kv_hat = at("c_kv_hat");
  f.k_rope = at("k_rope");
  f.k_nope = at("k_nope");
  f.v = at("v");
  f.q_tilde = at("q_tilde");
  f.z = at("z");
  f.probs = at("probs");
  f.o = at("o");
  f.u = at("u");
  const std::string where = block.empty() ? std::string("attn") : block + "attn";
  return mla_flow_diagram(fmt::format("MLA data flow of {} with the traced shapes (as on disk, tokens first)", where), f);
}

std::vector<std::string> attention_heatmaps(const RecordingTracer& rec, const std::string& probs_name,
                                            int precision, const std::string& title,
                                            const std::vector<std::string>& position_labels) {
  const RecordingTracer::Entry& p = rec.get(probs_name);
  const std::string scores_name = probs_name.substr(0, probs_name.size() - std::string("probs").size()) + "scores";
  const bool have_scores = rec.has(scores_name) && rec.get(scores_name).shape == p.shape;
  const arma::uword n_h = p.shape.size() == 3 ? p.shape[0] : 1;
  std::vector<std::string> figures;
  for (arma::uword h = 0; h < n_h; ++h) {
    const arma::mat probs = disk_slice(p, h);  // [T, T_k]
    arma::umat masked(probs.n_rows, probs.n_cols, arma::fill::zeros);
    if (have_scores) {
      const arma::mat scores = disk_slice(rec.get(scores_name), h);
      for (arma::uword i = 0; i < scores.n_elem; ++i) masked(i) = std::isinf(scores(i)) && scores(i) < 0;
    } else {
      // Without traced scores: a future key (query t is the last T of T_k positions) whose weight
      // is exactly 0, as exp(-inf) gives; a bidirectional reading keeps its weights there.
      const arma::uword offset = probs.n_cols - probs.n_rows;
      for (arma::uword t = 0; t < probs.n_rows; ++t)
        for (arma::uword j = t + offset + 1; j < probs.n_cols; ++j) masked(t, j) = probs(t, j) == 0.0;
    }
    // Keys are positions 0..T_k-1; the queries the last T of them.
    std::vector<std::string> keys, queries;
    if (position_labels.size() >= probs.n_cols) {
      keys.assign(position_labels.begin(), position_labels.begin() + static_cast<std::ptrdiff_t>(probs.n_cols));
      queries.assign(keys.end() - static_cast<std::ptrdiff_t>(probs.n_rows), keys.end());
    }
    figures.push_back(attention_heatmap(n_h > 1 ? fmt::format("{}, head {}", title, h) : title, probs, masked,
                                        precision, queries, keys));
  }
  return figures;
}

std::vector<std::string> router_pictures(const RecordingTracer& rec, const std::string& prefix, int precision,
                                         const std::vector<std::string>& position_labels) {
  // DeepSeek's router ("moe.s", ...) or the explainer's ("router.p", ...; reference/explainer/router.hpp).
  const bool explainer = rec.has(prefix + "router.p");
  const std::string scope = explainer ? "router." : "moe.";
  const std::string s_name = prefix + scope + (explainer ? "p" : "s"), experts_name = prefix + scope + "experts";
  if (!rec.has(s_name) || !rec.has(experts_name)) return {};
  const arma::mat s = disk_matrix(rec.get(s_name));              // [T, N_r]
  const arma::mat experts = disk_matrix(rec.get(experts_name));  // [T, K]
  const auto optional = [&](const std::string& tail) {
    return rec.has(prefix + scope + tail) ? disk_matrix(rec.get(prefix + scope + tail)) : arma::mat();
  };
  const arma::mat s_tilde = optional("s_tilde"), g = optional("g");
  const arma::mat group_scores = optional("group_scores"), group_mask = optional("group_mask");
  // Row t is position t, or position p + t under "decode.{p}.".
  static const std::regex decode_re(R"(decode\.(\d+)\.)");
  std::smatch m;
  const arma::uword first = std::regex_search(prefix, m, decode_re) ? std::stoull(m[1].str()) : 0;
  std::vector<std::string> figures;
  for (arma::uword t = 0; t < s.n_rows; ++t) {
    RouterView r;
    r.s = s.row(t).t();
    if (s_tilde.n_rows == s.n_rows) r.s_tilde = s_tilde.row(t).t();
    for (arma::uword k = 0; k < experts.n_cols; ++k) r.chosen.push_back(static_cast<arma::uword>(experts(t, k)));
    if (g.n_rows == s.n_rows && g.n_cols == experts.n_cols) r.gates = g.row(t).t();  // [K], best first
    if (g.n_rows == s.n_rows && g.n_cols == s.n_cols && g.n_cols != experts.n_cols) {  // [N_r], zeros elsewhere
      r.gates.set_size(r.chosen.size());
      for (std::size_t k = 0; k < r.chosen.size(); ++k) r.gates(k) = g(t, r.chosen[k]);
    }
    if (group_mask.n_rows == s.n_rows && group_mask.n_cols > 1) {
      r.group_mask = group_mask.row(t).t();
      if (group_scores.n_rows == s.n_rows) r.group_scores = group_scores.row(t).t();
    }
    const arma::uword pos = first + t;
    const std::string token = pos < position_labels.size() ? fmt::format(" '{}'", position_labels[pos]) : "";
    figures.push_back(router_bars(fmt::format("{}{}, token {}{}: {} of {} experts chosen", prefix,
                                              scope.substr(0, scope.size() - 1), t, token,
                                              r.chosen.size(), r.s.n_elem),
                                  r, precision));
  }
  return figures;
}

void build_run_page(HtmlTracer& h, const Config& c, const RunFacts& facts, const arma::mat& logits) {
  Page& page = h.page();
  const int precision = h.precision();

  // Blocks in the order their tensors were traced: "layers.3.", "prefill.layers.0.", "mtp.block.".
  static const std::regex block_re(R"(^(.*?layers\.\d+\.|mtp\.block\.))");
  std::vector<std::string> blocks;
  for (const auto& e : h.entries()) {
    std::smatch m;
    if (std::regex_search(e.name, m, block_re) &&
        std::find(blocks.begin(), blocks.end(), m[1].str()) == blocks.end())
      blocks.push_back(m[1].str());
  }

  page.section("The run");
  page.note(fmt::format("Model {}: d = {}, L = {}, n_h = {}, r_kv = {}, d_rope = {}; {} routed experts, K = {}.",
                        c.name, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.kv_lora_rank,
                        c.qk_rope_head_dim, c.n_routed_experts, c.num_experts_per_tok));
  if (!facts.text.empty()) page.note(fmt::format("Prompt: {}", facts.text));
  if (facts.token_labels.size() == facts.tokens.size() && !facts.tokens.empty()) {
    std::vector<std::string> pairs;
    for (std::size_t t = 0; t < facts.tokens.size(); ++t)
      pairs.push_back(fmt::format("{} '{}'", facts.tokens[t], facts.token_labels[t]));
    page.note(fmt::format("Tokens: {} ({} positions; ␣ is a space, ↵ a newline, <0xE4> a byte of a character "
                          "the next token completes); attention form: {}.",
                          fmt::join(pairs, ", "), facts.tokens.size(), facts.attention_form));
  } else {
    page.note(fmt::format("Tokens: {} ({} positions); attention form: {}.", fmt::join(facts.tokens, ", "),
                          facts.tokens.size(), facts.attention_form));
  }
  page.note(fmt::format("Traced tensors drawn on this page: {} (--trace {}).", h.entries().size(),
                        facts.filters.empty() ? std::string("*") : fmt::format("{}", fmt::join(facts.filters, " "))));
  // The MLA data flow of the first block whose attention was traced.
  std::string flow_block;
  for (const std::string& b : blocks)
    if (h.has(b + "attn.probs") || h.has(b + "attn.c_kv_hat")) {
      flow_block = b;
      break;
    }
  if (!flow_block.empty()) {
    page.add(mla_flow_picture(h, flow_block));
  } else {
    page.note("No attention tensor was traced (--trace selects none), so the MLA data flow is not drawn.");
  }

  page.section("RoPE and YaRN frequencies");
  const arma::vec theta = ref::rope_theta(c), theta_prime = ref::yarn_theta_prime(c);
  const ref::YarnRange range = c.has_yarn() ? ref::yarn_range(c) : ref::YarnRange{};
  page.note(c.has_yarn()
                ? fmt::format("YaRN: factor {}, original context {}; pairs up to {} keep θ_i, pairs from {} on "
                              "turn {} times slower.",
                              c.rope_scaling.factor, c.rope_scaling.original_max_position_embeddings,
                              number(range.low, 0), number(range.high, 0), c.rope_scaling.factor)
                : std::string("This config uses plain RoPE (no YaRN): θ'_i = θ_i."));
  page.add(rope_frequency_plot(fmt::format("Rotation frequency per pair, {} (d_rope = {})", c.name, c.qk_rope_head_dim),
                               theta, theta_prime, c.has_yarn(), range, c.rope_scaling.factor, precision));

  for (const std::string& b : blocks) {
    page.section(b.substr(0, b.size() - 1));
    if (h.has(b + "attn.probs")) {
      for (const std::string& fig : attention_heatmaps(h, b + "attn.probs", precision, b + "attn.probs", facts.token_labels))
        page.add(fig);
    } else {
      page.note(fmt::format("{}attn.probs is not traced here, so no attention map is drawn (the fast path "
                            "never forms the weights; the reference traces them).", b));
    }
    if (h.has(b + "h_attn") && h.has(b + "ffn_norm")) {
      const arma::mat before = disk_matrix(h.get(b + "h_attn")), after = disk_matrix(h.get(b + "ffn_norm"));
      const arma::uword t = before.n_rows - 1;
      page.add(norm_chart(fmt::format("RMSNorm before the FFN, last position t = {}: {}h_attn (grey) and {}ffn_norm",
                                      t, b, b),
                          before.row(t).t(), after.row(t).t(), precision));
    }
    for (const std::string& fig : router_pictures(h, b, precision, facts.token_labels)) page.add(fig);
    if (h.has(b + "moe.experts") && c.n_routed_experts > 0) {
      std::vector<std::uint64_t> load(static_cast<std::size_t>(c.n_routed_experts), 0);
      const arma::mat experts = disk_matrix(h.get(b + "moe.experts"));
      for (double e : experts)
        if (e >= 0 && e < static_cast<double>(load.size())) ++load[static_cast<std::size_t>(e)];
      page.add(expert_load_histogram(fmt::format("{}moe: expert load over the run's {} tokens", b, experts.n_rows),
                                     load));
    }
  }

  // The residual stream after the embedding and after each block, as traced at the top level.
  std::vector<std::string> stages;
  std::vector<arma::vec> norms;
  const auto add_stage = [&](const std::string& label, const std::string& name) {
    if (!h.has(name)) return;
    const arma::mat x = disk_matrix(h.get(name));  // [T, d]
    stages.push_back(label);
    norms.push_back(arma::sqrt(arma::sum(arma::square(x), 1)));
  };
  add_stage("embed", "embed.h");
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) add_stage(fmt::format("layer {}", l), fmt::format("layers.{}.h", l));
  if (!stages.empty()) {
    page.section("The residual stream");
    arma::mat m(stages.size(), norms.front().n_elem);
    for (arma::uword i = 0; i < stages.size(); ++i) m.row(i) = norms[i].t();
    page.add(residual_norm_chart("Norm of the residual stream |h_t| per layer (embed.h, layers.{l}.h)", stages, m,
                                 precision));
  }

  page.section("KV cache against context length");
  page.note("Bytes of one sequence's cache over all layers at bf16 (2 bytes per number), from "
            "tools/accounting.hpp: MLA keeps c_kv_hat and k_rope per token, r_kv + d_rope numbers per layer.");
  page.add(kv_cache_curve(fmt::format("KV cache of {} (log scale)", c.name), c));

  page.section("Next-token logits");
  page.add(logits_table("Top 5 logits after each position (logits row t)", arma::mat(logits.t()), facts.tokens, 5,
                        precision, facts.label_of));
}

}  // namespace dsr1::html
