// The pictures of an HTML page, one function per picture, each returning a <figure> with an
// inline SVG (or a table) and its numbers at hand: every drawn value is also in a tooltip
// (<title>) or printed beside it, at the page's precision. Heatmaps carry a colour legend.
// Leaves out: the page around them (page.hpp) and choosing which tensors to draw (html_tracer.hpp).
//
// Conventions. Matrices arrive in the tracer's on-disk layout, one row per token: attention
// weights are [T, T_k] (row t = query t, column j = key j), logits [T, V]. Every figure carries
// data-picture="<kind>" and every drawn value one element of class "cell", "bar" or "point",
// so that tests/html/check_page.py can count what a reader sees (T x T_k cells per head, ...).
#pragma once

#include <armadillo>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "reference/deepseek/config.hpp"
#include "reference/deepseek/rope.hpp"
#include "reference/trace/trace.hpp"

namespace dsr1::html {

// Text made safe inside XML/HTML elements and attributes (& < > " ').
std::string escape(std::string_view text);

// A number as the terminal prints it (trace_outputs.hpp format_number), "-inf" for masked scores.
std::string number(double v, int precision);

// Attention weights of one head as a heatmap: probs [T, T_k], row t = query t, column j = key j;
// masked(t, j) != 0 where the score was -inf (the causal triangle), drawn hatched grey.
// Colours run over [0, 1], the range of a probability; the legend says so.
// query_labels[t] and key_labels[j] (optional, e.g. "␣Paris"; text/visible.hpp) label the axes
// and tooltips with the tokens; without them the axes show the indices alone.
std::string attention_heatmap(const std::string& title, const arma::mat& probs,
                              const arma::umat& masked, int precision,
                              const std::vector<std::string>& query_labels = {},
                              const std::vector<std::string>& key_labels = {});

// A token label shortened for an axis: at most max_chars characters (code points), "…" when cut.
std::string short_label(const std::string& label, std::size_t max_chars = 14);

// A matrix of any sign as a heatmap with a diverging legend (negative blue, positive red).
// x: [rows, cols] with row and column labels ("t=0", "dim 3", ...).
std::string value_heatmap(const std::string& title, const arma::mat& x,
                          const std::vector<std::string>& row_labels,
                          const std::vector<std::string>& col_labels, int precision);

// The router of one token: scores s (and V3's biased selection scores s_tilde = s + b, empty for
// V2) as bars over the N_r experts, the chosen experts highlighted; with expert groups, each
// group's score and whether it was kept (group_mask 1) or dropped (0).
struct RouterView {
  arma::vec s;                     // [N_r] scores: softmax (V2, explainer) or sigmoid (V3)
  arma::vec s_tilde;               // [N_r] s + b, selection only (V3); empty otherwise
  std::vector<arma::uword> chosen; // expert ids picked, best first
  arma::vec gates;                 // [K] gating weights of the chosen experts (may be empty)
  arma::vec group_scores;          // [n_group] (empty without groups)
  arma::vec group_mask;            // [n_group] 1 kept, 0 dropped (empty without groups)
};
std::string router_bars(const std::string& title, const RouterView& r, int precision);

// How many of the run's tokens each expert received in one layer: load[e] for e = 0..N_r-1.
std::string expert_load_histogram(const std::string& title, const std::vector<std::uint64_t>& load);

// One vector before and after RMSNorm as paired bars per channel (at most max_channels shown),
// with both RMS values printed beside.
std::string norm_chart(const std::string& title, const arma::vec& before, const arma::vec& after,
                       int precision, arma::uword max_channels = 32);

// The residual stream's norm |h_t| after each stage: norms [stages, T], one line per token.
std::string residual_norm_chart(const std::string& title, const std::vector<std::string>& stages,
                                const arma::mat& norms, int precision);

// RoPE/YaRN: rotation frequency per dimension pair, θ_i and θ'_i on a log axis, with the
// untouched (i <= low), blended and interpolated (i >= high, θ_i / factor) ranges shaded.
// theta, theta_prime: [d_rope/2]; range and factor as in rope.hpp (yarn = false: plain RoPE).
std::string rope_frequency_plot(const std::string& title, const arma::vec& theta,
                                const arma::vec& theta_prime, bool yarn, const ref::YarnRange& range,
                                double factor, int precision);

// KV-cache bytes of one sequence against context length, log-log: plain MHA, the naive per-head
// K/V cache and MLA's latent cache (c_kv_hat + k_rope), from tools/accounting.hpp; the config's
// 128K point labelled on each curve.
std::string kv_cache_curve(const std::string& title, const Config& c);

// The MLA data flow with the run's shapes: x -> c_q -> q_nope / q_rope, x -> c_kv -> c_kv_hat
// (cached) -> k_nope / v (naive form) or q_tilde / z (absorbed form), x -> k_rope (cached).
// shape_of(name) returns the traced on-disk shape of "attn.<name>" or an empty vector.
struct FlowShapes {
  std::vector<std::uint64_t> x, c_q, c_q_hat, q_nope, q_rope, c_kv, c_kv_hat, k_rope, k_nope, v,
      q_tilde, z, probs, o, u;
};
std::string mla_flow_diagram(const std::string& title, const FlowShapes& s);

// The top-k next-token logits after each position: logits [T, V]; tokens[t] is position t's id.
// label_of(id) (optional) gives a token's visible string, shown beside every id.
std::string logits_table(const std::string& title, const arma::mat& logits,
                         const std::vector<std::int64_t>& tokens, arma::uword k, int precision,
                         const std::function<std::string(std::int64_t)>& label_of = nullptr);

// A small traced tensor as a table of its numbers (row-major as on disk); larger ones as their
// statistics and shape (the terminal prints corners; a page shows a summary).
std::string tensor_table(const std::string& name, const TensorView& x, int precision);

}  // namespace dsr1::html
