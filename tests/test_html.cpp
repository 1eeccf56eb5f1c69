// The pictures and pages of reference/html/: what a reader sees is what was traced (cell counts,
// the masked triangle, the chosen experts, the labelled 128K point), the page is self-contained,
// and a page of one full-scale R1 layer stays under 5 MB. The pages as a browser shows them are
// checked by tests/html/check_page.py (CTest label "html").
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <string>

#include "reference/deepseek/config.hpp"
#include "reference/deepseek/rope.hpp"
#include "reference/html/html_tracer.hpp"
#include "reference/html/page.hpp"
#include "reference/html/pictures.hpp"

namespace {

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

}  // namespace

TEST_CASE("html: escape makes text safe inside elements and attributes") {
  CHECK(dsr1::html::escape("a<b & \"c\" > 'd'") == "a&lt;b &amp; &quot;c&quot; &gt; &#39;d&#39;");
}

TEST_CASE("html: an attention heatmap has T x T_k cells, the causal triangle masked, values in tooltips") {
  const arma::uword T = 4;
  arma::mat probs(T, T, arma::fill::zeros);  // row t = query t: uniform over keys 0..t
  arma::umat masked(T, T, arma::fill::zeros);
  for (arma::uword t = 0; t < T; ++t)
    for (arma::uword j = 0; j < T; ++j) {
      if (j <= t) probs(t, j) = 1.0 / static_cast<double>(t + 1);
      else masked(t, j) = 1;
    }
  const std::string svg = dsr1::html::attention_heatmap("head 0", probs, masked, 4);
  CHECK(count(svg, "class=\"cell\"") == T * (T + 1) / 2);     // visible cells
  CHECK(count(svg, "class=\"cell masked\"") == T * (T - 1) / 2);  // the future, above the diagonal
  CHECK(svg.find("query 3 key 1: weight 0.2500") != std::string::npos);
  CHECK(svg.find("query 2 key 0: weight 0.3333") != std::string::npos);
  CHECK(count(svg, "legend-step") >= 10);  // the colour legend
  CHECK_THROWS_WITH(dsr1::html::attention_heatmap("bad", probs, arma::umat(3, 4), 4),
                    doctest::Contains("mask is [3 x 4], expected the shape of probs [4 x 4]"));
}

TEST_CASE("html: without traced scores, only future keys of weight exactly 0 are drawn masked") {
  dsr1::RecordingTracer rec;
  const arma::mat causal = {{1.0, 0.4}, {0.0, 0.6}};         // [T_k, T] in code: key 1 hidden from query 0
  const arma::mat bidirectional = {{0.7, 0.4}, {0.3, 0.6}};  // every key seen
  rec.record("causal.probs", causal);
  rec.record("bidirectional.probs", bidirectional);
  const auto masked_cells = [&](const std::string& name) {
    return count(dsr1::html::attention_heatmaps(rec, name, 4, name).at(0), "class=\"cell masked\"");
  };
  CHECK(masked_cells("causal.probs") == 1);
  CHECK(masked_cells("bidirectional.probs") == 0);
}

TEST_CASE("html: router bars show every expert, the chosen ones and V3's kept and dropped groups") {
  dsr1::html::RouterView r;
  r.s = {0.1, 0.9, 0.4, 0.3, 0.8, 0.2, 0.7, 0.6};  // N_r = 8
  r.s_tilde = r.s + 0.05;
  r.chosen = {1, 4};
  r.gates = {1.3235, 1.1765};
  r.group_scores = {1.1, 0.8, 1.1, 1.4};
  r.group_mask = {1, 0, 0, 1};
  const std::string svg = dsr1::html::router_bars("token 0", r, 4);
  CHECK(count(svg, "class=\"bar\"") == 6);                // plain score bars
  CHECK(count(svg, "class=\"bar chosen\"") == 2);         // the chosen experts' score bars
  CHECK(count(svg, "class=\"bar biased") == 8);           // one s_tilde bar per expert
  CHECK(svg.find("expert 4: s = 0.8000, chosen (rank 2, gate 1.1765)") != std::string::npos);
  CHECK(count(svg, "kept</text>") == 2);
  CHECK(count(svg, "dropped</text>") == 2);
  CHECK(svg.find("data-chosen=\"1 4\"") != std::string::npos);
}

TEST_CASE("html: the KV-cache curve labels V3's 128K point with the bytes of spec §5") {
  const dsr1::Config v3 = dsr1::preset("deepseek-v3");
  const std::string svg = dsr1::html::kv_cache_curve("V3", v3);
  // MLA: (r_kv + d_rope) = 576 numbers per token and layer, 2 bytes, 61 layers, 131072 tokens.
  const std::uint64_t mla = std::uint64_t{576} * 2 * 61 * 131072;  // 9,210,691,584 bytes
  CHECK(svg.find(fmt::format("data-mla-bytes-128k=\"{}\"", mla)) != std::string::npos);
  CHECK(svg.find("9.21 GB at 128K") != std::string::npos);
  // MHA: 2 n_h d_h = 2 * 128 * 128 numbers per token and layer.
  const std::uint64_t mha = std::uint64_t{2} * 128 * 128 * 2 * 61 * 131072;
  CHECK(svg.find(fmt::format("data-mha-bytes-128k=\"{}\"", mha)) != std::string::npos);
}

TEST_CASE("html: the RoPE plot draws theta and theta' for every pair and marks YaRN's three ranges") {
  const dsr1::Config v3 = dsr1::preset("deepseek-v3");
  const arma::vec theta = dsr1::ref::rope_theta(v3), theta_prime = dsr1::ref::yarn_theta_prime(v3);
  const std::string svg = dsr1::html::rope_frequency_plot("V3", theta, theta_prime, true,
                                                          dsr1::ref::yarn_range(v3), 40, 4);
  CHECK(count(svg, "class=\"point\"") == 2 * 32);  // d_rope / 2 = 32 pairs, θ and θ'
  CHECK(svg.find("untouched</text>") != std::string::npos);
  CHECK(svg.find("blended</text>") != std::string::npos);
  CHECK(svg.find("interpolated (÷40)</text>") != std::string::npos);
  // Pair 31 is divided by the factor 40 (spec §4.6): its θ' tooltip shows θ_31 / 40 (the
  // apostrophe escaped).
  CHECK(svg.find(fmt::format("pair 31: θ&#39; = {:.4e}", theta(31) / 40)) != std::string::npos);
}

TEST_CASE("html: a page is one self-contained file with step-mode sections and erratum call-outs") {
  dsr1::html::Page page("Title <1>");
  page.section("§1 first");
  page.note("a line");
  page.note("continued");
  page.note("  an indented table row");
  page.erratum("the document rounds");
  page.section("§2 second");
  const std::string html = page.render();
  CHECK(html.find("<title>Title &lt;1&gt;</title>") != std::string::npos);
  CHECK(count(html, "<section class=\"step\"") == 2);
  CHECK(html.find("<p class=\"note\">a line continued</p>") != std::string::npos);
  CHECK(html.find("<pre class=\"note\">  an indented table row</pre>") != std::string::npos);
  CHECK(count(html, "<aside class=\"erratum\">") == 1);
  CHECK(html.find("http") == std::string::npos);  // no external address anywhere
  CHECK(html.find("//<![CDATA[") != std::string::npos);
  CHECK_THROWS_WITH(page.write("/nonexistent-dir/page.html"), doctest::Contains("/nonexistent-dir/page.html"));
}

TEST_CASE("html: a dsr1 run page of one full-scale R1 layer (8 tokens, 128 heads, 256 experts) is under 5 MB") {
  const dsr1::Config c = dsr1::preset("deepseek-r1");
  const arma::uword T = 8, n_h = 128, N_r = 256, K = 8, d = 7168;
  dsr1::html::HtmlTracer h({"layers.3.*"}, "R1 layer 3", 4, false);
  {
    dsr1::TraceScope layer(&h, "layers.3");
    const arma::mat x = arma::randn(d, T);
    h.record("h_attn", x);
    h.record("ffn_norm", x);
    h.record("attn_norm", x);
    h.record("attn.c_kv_hat", arma::mat(512, T, arma::fill::randn));
    arma::cube probs(T, T, n_h, arma::fill::zeros), scores(T, T, n_h);  // [T_k, T, n_h] in code
    scores.fill(0.0);
    for (arma::uword i = 0; i < n_h; ++i)
      for (arma::uword t = 0; t < T; ++t)
        for (arma::uword j = 0; j < T; ++j) {
          if (j <= t) probs(j, t, i) = 1.0 / static_cast<double>(t + 1);
          else scores(j, t, i) = -arma::datum::inf;
        }
    h.record("attn.scores", scores);
    h.record("attn.probs", probs);
    h.record("moe.s", arma::mat(N_r, T, arma::fill::randu));
    h.record("moe.s_tilde", arma::mat(N_r, T, arma::fill::randu));
    arma::mat experts(K, T);
    for (arma::uword t = 0; t < T; ++t)
      for (arma::uword k = 0; k < K; ++k) experts(k, t) = static_cast<double>((t * 7 + k * 31) % N_r);
    h.record("moe.experts", experts);
    h.record("moe.g", arma::mat(K, T, arma::fill::randu));
    h.record("moe.group_mask", arma::mat(8, T, arma::fill::ones));
  }
  dsr1::html::build_run_page(h, c, {{1, 2, 3, 4, 5, 6, 7, 8}, "absorbed", {"layers.3.*"}, "", {}, nullptr},
                             arma::mat(64, T, arma::fill::randn));
  const std::string html = h.page().render();
  CHECK(count(html, "class=\"picture\" data-picture=\"attention\"") == n_h);
  CHECK(count(html, "class=\"cell\"><title>query") == n_h * T * (T + 1) / 2);
  CHECK(count(html, "class=\"cell masked\"><title>query") == n_h * T * (T - 1) / 2);
  CHECK(count(html, "class=\"picture\" data-picture=\"router\"") == T);
  CHECK(count(html, "class=\"picture\" data-picture=\"expert-load\"") == 1);
  MESSAGE("R1 one-layer page, 8 tokens: ", html.size(), " bytes");
  CHECK(html.size() < 5u * 1000 * 1000);
}
