// The pictures of an HTML page (pictures.hpp): plain SVG written element by element.
#include "reference/html/pictures.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numbers>
#include <stdexcept>

#include "reference/tools/accounting.hpp"
#include "reference/trace/trace_outputs.hpp"

namespace dsr1::html {
namespace {

// ---- colours ------------------------------------------------------------------------------

struct Rgb {
  double r, g, b;
};

// Linear interpolation through colour stops spaced evenly over [0, 1].
template <std::size_t N>
std::string interpolate(const std::array<Rgb, N>& stops, double u) {
  u = std::clamp(u, 0.0, 1.0) * (N - 1);
  const std::size_t i = std::min<std::size_t>(static_cast<std::size_t>(u), N - 2);
  const double f = u - i;
  const Rgb& a = stops[i];
  const Rgb& b = stops[i + 1];
  return fmt::format("#{:02x}{:02x}{:02x}", static_cast<int>(std::lround(a.r + f * (b.r - a.r))),
                     static_cast<int>(std::lround(a.g + f * (b.g - a.g))),
                     static_cast<int>(std::lround(a.b + f * (b.b - a.b))));
}

// Probabilities: near-white for 0 to dark blue for 1 (prints well, readable on a projector).
std::string sequential_colour(double u) {
  static const std::array<Rgb, 4> stops{
      Rgb{247, 251, 255}, Rgb{158, 202, 225}, Rgb{49, 130, 189}, Rgb{8, 48, 107}};
  return interpolate(stops, u);
}

// Signed values: blue for negative, white for 0, red for positive; u in [-1, 1].
std::string diverging_colour(double u) {
  static const std::array<Rgb, 5> stops{
      Rgb{33, 102, 172}, Rgb{146, 197, 222}, Rgb{247, 247, 247}, Rgb{244, 165, 130}, Rgb{178, 24, 43}};
  return interpolate(stops, 0.5 * (u + 1.0));
}

// Text on a cell: white on dark fills, black on light ones.
std::string text_colour_on(double u_dark) { return u_dark > 0.55 ? "#ffffff" : "#000000"; }

const char* kMasked = "#c8c8c8";
const char* kChosen = "#e6550d";
const char* kPlain = "#6b8fb5";
const char* kBiased = "#b9cde3";

// ---- SVG elements -------------------------------------------------------------------------

std::string svg_open(double width, double height) {
  return fmt::format(
      "<svg viewBox=\"0 0 {0:.0f} {1:.0f}\" width=\"{0:.0f}\" height=\"{1:.0f}\" role=\"img\" "
      "font-family=\"sans-serif\">",
      width, height);
}

// A coordinate with one decimal, without a trailing ".0" (large heatmaps have many of them).
std::string coord(double v) {
  std::string s = fmt::format("{:.1f}", v);
  if (s.size() > 2 && s.compare(s.size() - 2, 2, ".0") == 0) s.resize(s.size() - 2);
  return s;
}

std::string rect(double x, double y, double w, double h, const std::string& fill,
                 const std::string& cls, const std::string& tooltip, const std::string& extra = "") {
  std::string s = fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"",
                              coord(x), coord(y), coord(w), coord(h), fill);
  if (!cls.empty()) s += fmt::format(" class=\"{}\"", cls);
  if (!extra.empty()) s += " " + extra;
  if (tooltip.empty()) return s + "/>";
  return s + fmt::format("><title>{}</title></rect>", escape(tooltip));
}

std::string text(double x, double y, const std::string& t, const std::string& anchor = "start",
                 double size = 13, const std::string& fill = "#000000", const std::string& extra = "") {
  return fmt::format(
      "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"{}\" font-size=\"{:.0f}\" fill=\"{}\"{}>{}</text>",
      x, y, anchor, size, fill, extra.empty() ? "" : " " + extra, escape(t));
}

std::string line(double x1, double y1, double x2, double y2, const std::string& stroke = "#444444",
                 double width = 1, const std::string& extra = "") {
  return fmt::format(
      "<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"{}\"{}/>",
      x1, y1, x2, y2, stroke, width, extra.empty() ? "" : " " + extra);
}

std::string figure(const std::string& kind, const std::string& title, const std::string& body,
                   const std::string& attributes = "") {
  return fmt::format("<figure class=\"picture\" data-picture=\"{}\"{}>\n<figcaption>{}</figcaption>\n{}\n</figure>\n",
                     kind, attributes.empty() ? "" : " " + attributes, escape(title), body);
}

// A colour legend: `steps` swatches from lo to hi with the end values (and the middle) printed.
std::string legend(double x, double y, double width, double lo, double hi, bool diverging,
                   int precision, const std::string& label) {
  const int steps = 20;
  std::string s = text(x, y - 4, label, "start", 14);
  for (int i = 0; i < steps; ++i) {
    const double u = (i + 0.5) / steps;
    const std::string fill = diverging ? diverging_colour(2 * u - 1) : sequential_colour(u);
    s += rect(x + i * width / steps, y, width / steps + 0.5, 12, fill, "legend-step", "");
  }
  s += text(x, y + 26, number(lo, precision), "start", 14);
  s += text(x + width, y + 26, number(hi, precision), "end", 14);
  if (diverging) s += text(x + width / 2, y + 26, number(0.5 * (lo + hi), precision), "middle", 14);
  return s;
}

// Bytes as people read them: 1.23 GB, 456.0 KB.
std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB", "PB"};
  int u = 0;
  while (b >= 1000 && u < 5) {
    b /= 1000;
    ++u;
  }
  return fmt::format("{:.{}f} {}", b, u == 0 ? 0 : 2, units[u]);
}

// Label positions at least `gap` apart, moved down in the order of the wanted positions (labels
// at the ends of two curves that run close would otherwise overlap).
std::vector<double> spread(std::vector<double> y, double gap) {
  std::vector<std::size_t> order(y.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return y[a] < y[b]; });
  for (std::size_t k = 1; k < order.size(); ++k)
    y[order[k]] = std::max(y[order[k]], y[order[k - 1]] + gap);
  return y;
}

std::string shape_text(const std::vector<std::uint64_t>& shape) {
  return shape.empty() ? std::string("not traced") : format_shape(shape);
}

}  // namespace

std::string escape(std::string_view t) {
  std::string s;
  s.reserve(t.size());
  for (char ch : t) {
    switch (ch) {
      case '&': s += "&amp;"; break;
      case '<': s += "&lt;"; break;
      case '>': s += "&gt;"; break;
      case '"': s += "&quot;"; break;
      case '\'': s += "&#39;"; break;
      default: s += ch;
    }
  }
  return s;
}

std::string number(double v, int precision) { return format_number(v, precision); }

// ---- attention ------------------------------------------------------------------------------

std::string short_label(const std::string& label, std::size_t max_chars) {
  std::size_t chars = 0, i = 0;
  for (; i < label.size(); ++i)
    if ((static_cast<unsigned char>(label[i]) & 0xC0) != 0x80 && chars++ == max_chars) break;
  return i < label.size() ? label.substr(0, i) + "…" : label;
}

std::string attention_heatmap(const std::string& title, const arma::mat& probs,
                              const arma::umat& masked, int precision,
                              const std::vector<std::string>& query_labels,
                              const std::vector<std::string>& key_labels) {
  if (masked.n_rows != probs.n_rows || masked.n_cols != probs.n_cols)
    throw std::invalid_argument(fmt::format(
        "attention_heatmap '{}': mask is [{} x {}], expected the shape of probs [{} x {}]", title,
        masked.n_rows, masked.n_cols, probs.n_rows, probs.n_cols));
  const double T = probs.n_rows, T_k = probs.n_cols;
  const bool rows_labelled = query_labels.size() == probs.n_rows;
  const bool cols_labelled = key_labels.size() == probs.n_cols;
  // "3 ␣Paris": the index and the token, shortened for the axis.
  const auto axis_label = [](arma::uword i, const std::vector<std::string>& labels, bool labelled) {
    return labelled ? fmt::format("{} {}", i, short_label(labels[i])) : std::to_string(i);
  };
  const auto longest = [&](const std::vector<std::string>& labels, bool labelled, arma::uword n) {
    std::size_t m = 0;
    for (arma::uword i = 0; i < n; ++i) {
      const std::string l = axis_label(i, labels, labelled);
      std::size_t chars = 0;
      for (unsigned char c : l) chars += (c & 0xC0) != 0x80;
      m = std::max(m, chars);
    }
    return static_cast<double>(m);
  };
  // Cells as large as a projector needs, the grid at most ~560 px wide. Token labels need room:
  // ~8 px a character at 13 px, rows' labels on the left, keys' labels written upwards on top.
  const double cell = std::clamp(560.0 / std::max(T, T_k), 6.0, 56.0);
  const double left = std::max(70.0, 34 + 8 * longest(query_labels, rows_labelled, probs.n_rows));
  const double top = cols_labelled ? 30 + 8 * longest(key_labels, true, probs.n_cols) : 40.0;
  const bool numbers_inside = cell >= 44;
  // Wide enough for the grid and for the legend with its "masked" key (~150 px of text).
  const double legend_width = std::min(240.0, std::max(160.0, T_k * cell));
  std::string s = svg_open(std::max(left + T_k * cell + 20, left + legend_width + 36 + 150), top + T * cell + 70);
  s += text(left + T_k * cell / 2, 14, "key j (column)", "middle", 13);
  s += text(14, top + T * cell / 2, "query t (row)", "middle", 13, "#000000",
            fmt::format("transform=\"rotate(-90 14 {:.1f})\"", top + T * cell / 2));
  const arma::uword label_every = std::max<arma::uword>(1, static_cast<arma::uword>(std::ceil(14.0 / cell)));
  for (arma::uword j = 0; j < probs.n_cols; j += label_every) {
    if (cols_labelled) {  // upwards from just above the grid, so long tokens do not collide
      const double x = left + (j + 0.5) * cell + 4, y = top - 6;
      s += text(x, y, axis_label(j, key_labels, true), "start", 13, "#000000",
                fmt::format("transform=\"rotate(-90 {:.1f} {:.1f})\" class=\"token-label\"", x, y));
    } else {
      s += text(left + (j + 0.5) * cell, top - 6, std::to_string(j), "middle", 13);
    }
  }
  for (arma::uword t = 0; t < probs.n_rows; t += label_every)
    s += text(left - 6, top + (t + 0.5) * cell + 4, axis_label(t, query_labels, rows_labelled), "end", 13,
              "#000000", rows_labelled ? "class=\"token-label\"" : "");
  const auto named = [](arma::uword i, const std::vector<std::string>& labels, bool labelled) {
    return labelled ? fmt::format("{} '{}'", i, labels[i]) : std::to_string(i);
  };
  for (arma::uword t = 0; t < probs.n_rows; ++t) {
    for (arma::uword j = 0; j < probs.n_cols; ++j) {
      const double x = left + j * cell, y = top + t * cell;
      const std::string where = fmt::format("query {} key {}", named(t, query_labels, rows_labelled),
                                            named(j, key_labels, cols_labelled));
      if (masked(t, j)) {
        s += rect(x, y, cell, cell, kMasked, "cell masked",
                  fmt::format("{}: masked (score -inf, weight {})", where, number(probs(t, j), precision)));
        if (cell >= 12) s += line(x + 2, y + cell - 2, x + cell - 2, y + 2, "#8a8a8a", 1);
        continue;
      }
      const double p = probs(t, j);
      s += rect(x, y, cell, cell, sequential_colour(p), "cell", fmt::format("{}: weight {}", where, number(p, precision)));
      if (numbers_inside)
        s += text(x + cell / 2, y + cell / 2 + 4, number(p, std::min(precision, 3)), "middle", 13,
                  text_colour_on(p));
    }
  }
  s += legend(left, top + T * cell + 28, std::min(240.0, std::max(160.0, T_k * cell)), 0.0, 1.0,
              false, 1, "attention weight");
  s += rect(left + std::min(240.0, std::max(160.0, T_k * cell)) + 20, top + T * cell + 28, 12, 12,
            kMasked, "legend-step", "");
  s += text(left + std::min(240.0, std::max(160.0, T_k * cell)) + 36, top + T * cell + 38,
            "masked (future key)", "start", 14);
  s += "</svg>";
  return figure("attention", title, s,
                fmt::format("data-rows=\"{}\" data-cols=\"{}\"", probs.n_rows, probs.n_cols));
}

std::string value_heatmap(const std::string& title, const arma::mat& x,
                          const std::vector<std::string>& row_labels,
                          const std::vector<std::string>& col_labels, int precision) {
  const double rows = x.n_rows, cols = x.n_cols;
  const double cell = std::clamp(640.0 / std::max(rows, cols), 4.0, 56.0);
  const double left = 80, top = 30;
  double extent = 0;
  for (double v : x)
    if (std::isfinite(v)) extent = std::max(extent, std::abs(v));
  if (extent == 0) extent = 1;
  std::string s = svg_open(left + cols * cell + 20, top + rows * cell + 70);
  const arma::uword every = std::max<arma::uword>(1, static_cast<arma::uword>(std::ceil(14.0 / cell)));
  for (arma::uword j = 0; j < x.n_cols; j += every)
    if (j < col_labels.size()) s += text(left + (j + 0.5) * cell, top - 6, col_labels[j], "middle", 13);
  for (arma::uword i = 0; i < x.n_rows; i += every)
    if (i < row_labels.size()) s += text(left - 6, top + (i + 0.5) * cell + 4, row_labels[i], "end", 13);
  for (arma::uword i = 0; i < x.n_rows; ++i)
    for (arma::uword j = 0; j < x.n_cols; ++j) {
      const double v = x(i, j);
      const std::string where = fmt::format("{} {}: {}", i < row_labels.size() ? row_labels[i] : "",
                                            j < col_labels.size() ? col_labels[j] : "", number(v, precision));
      const std::string fill = std::isfinite(v) ? diverging_colour(v / extent) : std::string(kMasked);
      s += rect(left + j * cell, top + i * cell, cell, cell, fill, "cell", where);
      if (cell >= 44)
        s += text(left + (j + 0.5) * cell, top + (i + 0.5) * cell + 4, number(v, std::min(precision, 2)),
                  "middle", 13, text_colour_on(std::abs(v) / extent));
    }
  s += legend(left, top + rows * cell + 28, 200, -extent, extent, true, precision, "value");
  s += "</svg>";
  return figure("heatmap", title, s, fmt::format("data-rows=\"{}\" data-cols=\"{}\"", x.n_rows, x.n_cols));
}

// ---- router ---------------------------------------------------------------------------------

std::string router_bars(const std::string& title, const RouterView& r, int precision) {
  const arma::uword N_r = r.s.n_elem;
  if (N_r == 0) throw std::invalid_argument(fmt::format("router_bars '{}': no scores", title));
  const bool biased = r.s_tilde.n_elem == N_r && N_r > 0;
  const arma::uword n_group = r.group_mask.n_elem;
  // The value axis spans 0 and every drawn score (s_tilde may be negative: the bias is).
  double top_value = std::max(1e-12, r.s.max()), low_value = std::min(0.0, r.s.min());
  if (biased) {
    top_value = std::max(top_value, r.s_tilde.max());
    low_value = std::min(low_value, r.s_tilde.min());
  }
  const double per_expert = std::clamp(760.0 / N_r, 3.0, 60.0);
  const double bar = biased ? per_expert * 0.42 : per_expert * 0.7;
  const double left = 60, top = 20, height = 200;
  const double zero_y = top + height * top_value / (top_value - low_value);
  const auto y_of = [&](double v) { return zero_y - height * v / (top_value - low_value); };
  const double width = left + N_r * per_expert + 20;
  std::string s = svg_open(std::max(width, 520.0), top + height + (n_group ? 100 : 64));
  std::vector<bool> chosen(N_r, false);
  for (arma::uword e : r.chosen)
    if (e < N_r) chosen[e] = true;
  // Groups first, behind the bars: dropped groups greyed out.
  if (n_group > 0 && N_r % n_group == 0) {
    const arma::uword per_group = N_r / n_group;
    for (arma::uword g = 0; g < n_group; ++g) {
      const bool kept = r.group_mask(g) != 0;
      const double x = left + g * per_group * per_expert;
      const std::string score = g < r.group_scores.n_elem ? number(r.group_scores(g), precision) : "";
      s += rect(x, top, per_group * per_expert, height, kept ? "#fff4e0" : "#eeeeee", "group",
                fmt::format("group {}: score {}, {}", g, score, kept ? "kept" : "dropped"),
                "stroke=\"#bbbbbb\"");
      s += text(x + per_group * per_expert / 2, top + height + 52,
                fmt::format("group {} {}", g, kept ? "kept" : "dropped"), "middle", 13,
                kept ? "#000000" : "#777777");
      if (!score.empty())
        s += text(x + per_group * per_expert / 2, top + height + 69, score, "middle", 13,
                  kept ? "#000000" : "#777777");
    }
  }
  // Expert numbers under the axis: every expert when there is room, else every 2nd, 4th, ...
  // expert, as many as fit without touching (about 30 px for a three-digit number).
  arma::uword tick_every = 1;
  while (per_expert * tick_every < (N_r > 100 ? 30.0 : 16.0)) tick_every *= 2;
  s += line(left, zero_y, left + N_r * per_expert, zero_y);
  s += text(left - 6, y_of(top_value) + 4, number(top_value, std::min(precision, 3)), "end", 13);
  s += text(left - 6, zero_y + 4, "0", "end", 13);
  for (arma::uword e = 0; e < N_r; ++e) {
    const double x = left + e * per_expert + (per_expert - (biased ? 2 * bar : bar)) / 2;
    std::string pick;
    for (std::size_t k = 0; k < r.chosen.size(); ++k)
      if (r.chosen[k] == e)
        pick = fmt::format(", chosen (rank {}{})", k + 1,
                           k < r.gates.n_elem ? ", gate " + number(r.gates(k), precision) : "");
    const double v = r.s(e);
    s += rect(x, std::min(y_of(v), zero_y), bar, std::abs(y_of(v) - zero_y), chosen[e] ? kChosen : kPlain,
              chosen[e] ? "bar chosen" : "bar", fmt::format("expert {}: s = {}{}", e, number(v, precision), pick));
    if (biased) {
      const double vt = r.s_tilde(e);
      s += rect(x + bar, std::min(y_of(vt), zero_y), bar, std::abs(y_of(vt) - zero_y), kBiased,
                chosen[e] ? "bar biased chosen" : "bar biased",
                fmt::format("expert {}: s_tilde = s + b = {}{}", e, number(vt, precision), pick),
                chosen[e] ? "stroke=\"#e6550d\" stroke-width=\"1.5\"" : "");
    }
    if (e % tick_every == 0)
      s += text(left + (e + 0.5) * per_expert, top + height + 16, std::to_string(e), "middle", 13);
    if (chosen[e] && per_expert >= 24)
      s += text(left + (e + 0.5) * per_expert, std::min(y_of(v), zero_y) - 4, number(v, std::min(precision, 3)),
                "middle", 13, kChosen);
  }
  s += text(left + N_r * per_expert / 2, top + height + 34, "expert", "middle", 14);
  // Key.
  const double kx = left, ky = top + height + (n_group ? 80 : 44);
  s += rect(kx, ky, 12, 12, kPlain, "legend-step", "") + text(kx + 16, ky + 11, "score s", "start", 14);
  s += rect(kx + 90, ky, 12, 12, kChosen, "legend-step", "") + text(kx + 106, ky + 11, "chosen", "start", 14);
  if (biased)
    s += rect(kx + 170, ky, 12, 12, kBiased, "legend-step", "") +
         text(kx + 186, ky + 11, "s_tilde = s + b (selection only)", "start", 14);
  s += "</svg>";
  std::vector<std::string> ids;
  for (arma::uword e : r.chosen) ids.push_back(std::to_string(e));
  return figure("router", title, s,
                fmt::format("data-experts=\"{}\" data-chosen=\"{}\"", N_r, fmt::join(ids, " ")));
}

std::string expert_load_histogram(const std::string& title, const std::vector<std::uint64_t>& load) {
  const std::size_t N_r = load.size();
  std::uint64_t most = 1, total = 0;
  for (auto n : load) most = std::max(most, n), total += n;
  const double per = std::clamp(760.0 / N_r, 3.0, 48.0), left = 50, top = 20, height = 160;
  std::string s = svg_open(std::max(left + N_r * per + 20, 400.0), top + height + 50);
  s += line(left, top + height, left + N_r * per, top + height);
  s += text(left - 6, top + 4, std::to_string(most), "end", 13);
  s += text(left - 6, top + height + 4, "0", "end", 13);
  for (std::size_t e = 0; e < N_r; ++e) {
    const double h = height * static_cast<double>(load[e]) / most;
    s += rect(left + e * per + per * 0.1, top + height - h, per * 0.8, h, load[e] ? kPlain : kMasked, "bar",
              fmt::format("expert {}: {} token{}", e, load[e], load[e] == 1 ? "" : "s"));
    if (per >= 16 || e % 8 == 0)
      s += text(left + (e + 0.5) * per, top + height + 16, std::to_string(e), "middle", 13);
  }
  s += text(left + N_r * per / 2, top + height + 34,
            fmt::format("expert (bars: tokens routed to it; {} routings in all)", total), "middle", 14);
  s += "</svg>";
  return figure("expert-load", title, s, fmt::format("data-experts=\"{}\"", N_r));
}

// ---- norms ----------------------------------------------------------------------------------

std::string norm_chart(const std::string& title, const arma::vec& before, const arma::vec& after,
                       int precision, arma::uword max_channels) {
  if (before.n_elem != after.n_elem)
    throw std::invalid_argument(fmt::format("norm_chart '{}': before has {} channels, after {}",
                                            title, before.n_elem, after.n_elem));
  const arma::uword n = std::min<arma::uword>(before.n_elem, max_channels);
  double extent = 1e-12;
  for (arma::uword i = 0; i < n; ++i) extent = std::max({extent, std::abs(before(i)), std::abs(after(i))});
  const double per = std::clamp(640.0 / n, 12.0, 80.0), left = 60, top = 20, half = 90;
  const double zero_y = top + half;
  std::string s = svg_open(std::max(left + n * per + 20, 460.0), top + 2 * half + 60);
  s += line(left, zero_y, left + n * per, zero_y);
  s += text(left - 6, top + 4, number(extent, std::min(precision, 3)), "end", 13);
  s += text(left - 6, top + 2 * half + 4, number(-extent, std::min(precision, 3)), "end", 13);
  for (arma::uword i = 0; i < n; ++i) {
    const double x = left + i * per;
    const double hb = half * before(i) / extent, ha = half * after(i) / extent;
    s += rect(x + per * 0.1, std::min(zero_y, zero_y - hb), per * 0.38, std::abs(hb), "#9e9e9e", "bar",
              fmt::format("channel {} before: {}", i, number(before(i), precision)));
    s += rect(x + per * 0.5, std::min(zero_y, zero_y - ha), per * 0.38, std::abs(ha), kPlain, "bar",
              fmt::format("channel {} after: {}", i, number(after(i), precision)));
    if (per >= 16 || i % 8 == 0) s += text(x + per / 2, top + 2 * half + 16, std::to_string(i), "middle", 13);
  }
  const double rms_before = std::sqrt(arma::mean(arma::square(before)));
  const double rms_after = std::sqrt(arma::mean(arma::square(after)));
  const double ky = top + 2 * half + 32;
  s += rect(left, ky, 12, 12, "#9e9e9e", "legend-step", "") +
       text(left + 16, ky + 11, "before, RMS " + number(rms_before, precision), "start", 14);
  s += rect(left + 200, ky, 12, 12, kPlain, "legend-step", "") +
       text(left + 216, ky + 11, "after, RMS " + number(rms_after, precision), "start", 14);
  s += "</svg>";
  std::string caption = title;
  if (n < before.n_elem) caption += fmt::format(" (channels 0..{} of {})", n - 1, before.n_elem);
  return figure("norm", caption, s, fmt::format("data-channels=\"{}\"", n));
}

std::string residual_norm_chart(const std::string& title, const std::vector<std::string>& stages,
                                const arma::mat& norms, int precision) {
  const arma::uword S = norms.n_rows, T = norms.n_cols;
  if (stages.size() != S)
    throw std::invalid_argument(fmt::format("residual_norm_chart: {} stage names for {} rows", stages.size(), S));
  const double most = std::max(1e-12, norms.max());
  const double per = std::clamp(640.0 / std::max<arma::uword>(S, 2), 30.0, 120.0), left = 70, top = 20,
               height = 200;
  std::string s = svg_open(std::max(left + S * per + 150, 420.0), top + height + 60);
  s += line(left, top + height, left + S * per, top + height) + line(left, top, left, top + height);
  s += text(left - 6, top + 4, number(most, std::min(precision, 2)), "end", 13);
  s += text(left - 6, top + height + 4, "0", "end", 13);
  for (arma::uword i = 0; i < S; ++i)
    s += text(left + (i + 0.5) * per, top + height + 16, stages[i], "middle", 13);
  s += text(left + S * per / 2, top + height + 36, "|h_t| after each stage of the residual stream", "middle", 14);
  const auto colour_of = [&](arma::uword t) {
    return interpolate(std::array<Rgb, 3>{Rgb{27, 158, 119}, Rgb{117, 112, 179}, Rgb{217, 95, 2}},
                       T > 1 ? static_cast<double>(t) / (T - 1) : 0.0);
  };
  for (arma::uword t = 0; t < T; ++t) {
    const std::string colour = colour_of(t);
    std::string points;
    for (arma::uword i = 0; i < S; ++i)
      points += fmt::format("{:.1f},{:.1f} ", left + (i + 0.5) * per, top + height - height * norms(i, t) / most);
    s += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>", points, colour);
    for (arma::uword i = 0; i < S; ++i)
      s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\" fill=\"{}\" class=\"point\"><title>{}</title></circle>",
                       left + (i + 0.5) * per, top + height - height * norms(i, t) / most, colour,
                       escape(fmt::format("token {} after {}: |h| = {}", t, stages[i], number(norms(i, t), precision))));
  }
  if (T <= 16) {  // token labels at the lines' ends
    std::vector<double> ends(T);
    for (arma::uword t = 0; t < T; ++t) ends[t] = top + height - height * norms(S - 1, t) / most + 4;
    ends = spread(ends, 15);
    for (arma::uword t = 0; t < T; ++t)
      s += text(left + S * per + 8, ends[t], fmt::format("t={}", t), "start", 13, colour_of(t));
  }
  s += "</svg>";
  return figure("residual-norm", title, s, fmt::format("data-stages=\"{}\" data-tokens=\"{}\"", S, T));
}

// ---- RoPE / YaRN ----------------------------------------------------------------------------

std::string rope_frequency_plot(const std::string& title, const arma::vec& theta,
                                const arma::vec& theta_prime, bool yarn, const ref::YarnRange& range,
                                double factor, int precision) {
  if (theta.n_elem != theta_prime.n_elem || theta.n_elem == 0)
    throw std::invalid_argument(fmt::format("rope_frequency_plot: theta has {} pairs, theta_prime {}",
                                            theta.n_elem, theta_prime.n_elem));
  const arma::uword n = theta.n_elem;
  const double lo = std::floor(std::log10(std::min(theta.min(), theta_prime.min())));
  const double hi = std::ceil(std::log10(std::max(theta.max(), theta_prime.max())));
  const double per = std::clamp(720.0 / n, 8.0, 60.0), left = 70, top = 30, height = 260;
  const auto x_of = [&](double i) { return left + (i + 0.5) * per; };
  const auto y_of = [&](double v) { return top + height * (hi - std::log10(v)) / std::max(hi - lo, 1.0); };
  std::string s = svg_open(std::max(left + n * per + 30, 720.0), top + height + 80);
  if (yarn) {
    // keep_i = 1 for i <= low (untouched), 0 for i >= high (divided by factor), blended between.
    const double a = std::clamp(range.low, 0.0, n - 1.0), b = std::clamp(range.high, 0.0, n - 1.0);
    s += rect(left, top, x_of(a) - left, height, "#eaf5ea", "range", "untouched: θ'_i = θ_i");
    s += rect(x_of(a), top, x_of(b) - x_of(a), height, "#fff4e0", "range", "blended between θ_i and θ_i / factor");
    s += rect(x_of(b), top, left + n * per - x_of(b), height, "#fde0dd", "range",
              fmt::format("interpolated: θ'_i = θ_i / {}", factor));
    s += text((left + x_of(a)) / 2, top - 8, "untouched", "middle", 14);
    s += text((x_of(a) + x_of(b)) / 2, top - 8, "blended", "middle", 14);
    s += text((x_of(b) + left + n * per) / 2, top - 8, fmt::format("interpolated (÷{})", factor), "middle", 14);
  }
  for (double e = lo; e <= hi; e += 1) {
    s += line(left, y_of(std::pow(10.0, e)), left + n * per, y_of(std::pow(10.0, e)), "#dddddd");
    s += text(left - 6, y_of(std::pow(10.0, e)) + 4, fmt::format("1e{}", static_cast<int>(e)), "end", 13);
  }
  s += line(left, top + height, left + n * per, top + height);
  for (arma::uword i = 0; i < n; ++i) {
    if (per >= 16 || i % 4 == 0) s += text(x_of(i), top + height + 16, std::to_string(i), "middle", 13);
    const double keep = yarn ? 1.0 - std::clamp((i - range.low) / (range.high - range.low), 0.0, 1.0) : 1.0;
    s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"5\" fill=\"none\" stroke=\"#555555\" stroke-width=\"1.5\" class=\"point\"><title>{}</title></circle>",
                     x_of(i), y_of(theta(i)),
                     escape(fmt::format("pair {}: θ = {} rad per position", i, fmt::format("{:.{}e}", theta(i), precision))));
    s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" fill=\"{}\" class=\"point\"><title>{}</title></circle>",
                     x_of(i), y_of(theta_prime(i)), kChosen,
                     escape(fmt::format("pair {}: θ' = {} rad per position (keep = {}, wavelength {} positions)", i,
                                        fmt::format("{:.{}e}", theta_prime(i), precision), number(keep, precision),
                                        number(2 * std::numbers::pi / theta_prime(i), 1))));
  }
  s += text(left + n * per / 2, top + height + 34, "dimension pair i", "middle", 14);
  const double ky = top + height + 50;
  s += "<circle cx=\"" + fmt::format("{:.1f}", left + 6) + "\" cy=\"" + fmt::format("{:.1f}", ky + 6) +
       "\" r=\"5\" fill=\"none\" stroke=\"#555555\" stroke-width=\"1.5\"/>";
  s += text(left + 16, ky + 11, "θ_i = base^(-2i/d_rope), original", "start", 14);
  s += "<circle cx=\"" + fmt::format("{:.1f}", left + 276) + "\" cy=\"" + fmt::format("{:.1f}", ky + 6) +
       "\" r=\"3.5\" fill=\"" + kChosen + "\"/>";
  s += text(left + 286, ky + 11, yarn ? "θ'_i, YaRN-corrected (radians per position)" : "θ'_i = θ_i (no YaRN)",
            "start", 14);
  s += "</svg>";
  return figure("rope", title, s, fmt::format("data-pairs=\"{}\"", n));
}

// ---- KV cache -------------------------------------------------------------------------------

std::string kv_cache_curve(const std::string& title, const Config& c) {
  const KvCacheReport r = kv_cache_size(c);
  const double n_lo = 1024, n_hi = std::max<double>(262144, static_cast<double>(r.max_context));
  const double b_lo = std::pow(10.0, std::floor(std::log10(r.mla_bytes_per_token * n_lo)));
  const double b_hi = std::pow(10.0, std::ceil(std::log10(r.mha_bytes_per_token * n_hi)));
  const double left = 80, top = 20, width = 600, height = 300;
  const auto x_of = [&](double n) { return left + width * std::log2(n / n_lo) / std::log2(n_hi / n_lo); };
  const auto y_of = [&](double b) { return top + height * std::log10(b_hi / b) / std::log10(b_hi / b_lo); };
  std::string s = svg_open(left + width + 240, top + height + 60);
  for (double b = b_lo; b <= b_hi * 1.001; b *= 10) {
    s += line(left, y_of(b), left + width, y_of(b), "#dddddd");
    s += text(left - 6, y_of(b) + 4, human_bytes(b), "end", 13);
  }
  for (double n = n_lo; n <= n_hi * 1.001; n *= 4) {
    s += line(x_of(n), top, x_of(n), top + height, "#eeeeee");
    s += text(x_of(n), top + height + 16, fmt::format("{}K", static_cast<long>(n / 1024)), "middle", 13);
  }
  s += text(left + width / 2, top + height + 36, "context length (tokens, log scale)", "middle", 14);
  struct Curve {
    const char* name;
    double per_token;
    const char* colour;
  };
  const Curve curves[] = {{"MHA (2 n_h d_h)", static_cast<double>(r.mha_bytes_per_token), "#d95f02"},
                          {"naive per-head K/V", static_cast<double>(r.naive_bytes_per_token), "#7570b3"},
                          {"MLA latent (r_kv + d_rope)", static_cast<double>(r.mla_bytes_per_token), "#1b9e77"}};
  const double n_128k = static_cast<double>(r.context_128k);
  std::vector<double> point_labels, end_labels;
  for (const Curve& k : curves) {
    point_labels.push_back(y_of(k.per_token * n_128k) - 8);
    end_labels.push_back(y_of(k.per_token * n_hi) + 4);
  }
  point_labels = spread(point_labels, 16);
  end_labels = spread(end_labels, 16);
  for (std::size_t i = 0; i < 3; ++i) {
    const Curve& k = curves[i];
    s += line(x_of(n_lo), y_of(k.per_token * n_lo), x_of(n_hi), y_of(k.per_token * n_hi), k.colour, 2.5);
    const double b = k.per_token * n_128k;
    s += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"5\" fill=\"{}\" class=\"point\"><title>{}</title></circle>",
                     x_of(n_128k), y_of(b), k.colour,
                     escape(fmt::format("{} at 128K tokens: {} bytes ({} per token, all {} layers)", k.name,
                                        static_cast<std::uint64_t>(b), human_bytes(k.per_token),
                                        c.num_hidden_layers)));
    s += text(x_of(n_128k) - 8, point_labels[i], human_bytes(b) + " at 128K", "end", 14, k.colour);
    s += text(left + width + 8, end_labels[i], k.name, "start", 14, k.colour);
  }
  s += "</svg>";
  return figure("kv-cache", title, s,
                fmt::format("data-mla-bytes-128k=\"{}\" data-mha-bytes-128k=\"{}\"", r.mla_bytes_128k,
                            r.mha_bytes_128k));
}

// ---- MLA data flow --------------------------------------------------------------------------

std::string mla_flow_diagram(const std::string& title, const FlowShapes& f) {
  const bool absorbed = !f.q_tilde.empty() || !f.z.empty();
  const bool q_lora = !f.c_q.empty();
  // A grid of seven columns (col * 188 px) and five rows; every edge label sits where no box is
  // (tests/html/check_labels.mjs measures it in Chromium: whole, inside the picture, over no box).
  const double w = 122, h = 46;
  const auto col = [](int c) { return 10.0 + 188.0 * c; };
  const double row_a = 20, row_b = 90, row_c = 160, row_d = 230, row_e = 300;
  struct Node {
    const char* name;
    const std::vector<std::uint64_t>* shape;
    double x, y;
    bool cached;
  };
  std::vector<Node> nodes = {
      {"x (attn_norm)", &f.x, col(0), row_c, false},
      {"q_nope", &f.q_nope, col(3), row_a, false},
      {"q_rope", &f.q_rope, col(3), row_b, false},
      {"c_kv", &f.c_kv, col(1), row_c, false},
      {"c_kv_hat", &f.c_kv_hat, col(2), row_c, true},
      {"k_rope", &f.k_rope, col(3), row_e, true},
  };
  if (q_lora) {  // V2-Lite projects the query straight from x: no c_q
    nodes.push_back({"c_q", &f.c_q, col(1), row_a, false});
    nodes.push_back({"c_q_hat", &f.c_q_hat, col(2), row_a, false});
  }
  if (absorbed) {
    nodes.push_back({"q_tilde", &f.q_tilde, col(4), row_a, false});
    nodes.push_back({"probs", &f.probs, col(4), row_c, false});
    nodes.push_back({"z", &f.z, col(5), row_d, false});
    nodes.push_back({"o", &f.o, col(6), row_c, false});
    nodes.push_back({"u", &f.u, col(6), row_e, false});
  } else {
    nodes.push_back({"k_nope", &f.k_nope, col(3), row_c, false});
    nodes.push_back({"v", &f.v, col(3), row_d, false});
    nodes.push_back({"probs", &f.probs, col(4), row_c, false});
    nodes.push_back({"o", &f.o, col(5), row_c, false});
    nodes.push_back({"u", &f.u, col(6), row_c, false});
  }
  const auto find = [&](const std::string& name) -> const Node& {
    for (const Node& n : nodes)
      if (name == n.name) return n;
    throw std::logic_error("mla_flow_diagram: no node " + name);
  };
  std::string s = svg_open(1280, 390);
  // Arrow from the right edge of `a` to the left edge of `b` (or, within one column, from the
  // bottom of `a` to the top of `b`), its head a triangle. The label sits at the fraction `along`
  // of the edge, centred above it (or, with beside, starting just right of it; always so for a
  // vertical edge), on a white halo so that lines under it do not blur it.
  const auto arrow = [&](const std::string& a, const std::string& b, const std::string& label, double along = 0.5,
                         bool beside = false) {
    const Node& p = find(a);
    const Node& q = find(b);
    const bool down = p.x == q.x;
    const double x1 = down ? p.x + w / 2 : p.x + w, y1 = down ? p.y + h : p.y + h / 2;
    const double x2 = down ? q.x + w / 2 : q.x, y2 = down ? q.y : q.y + h / 2;
    const double len = std::hypot(x2 - x1, y2 - y1), ux = (x2 - x1) / len, uy = (y2 - y1) / len;
    std::string a_s = line(x1, y1, x2 - 8 * ux, y2 - 8 * uy, "#555555", 1.5);
    a_s += fmt::format("<polygon points=\"{:.1f},{:.1f} {:.1f},{:.1f} {:.1f},{:.1f}\" fill=\"#555555\"/>", x2, y2,
                       x2 - 9 * ux - 4 * uy, y2 - 9 * uy + 4 * ux, x2 - 9 * ux + 4 * uy, y2 - 9 * uy - 4 * ux);
    if (!label.empty()) {
      const double lx = x1 + along * (x2 - x1), ly = y1 + along * (y2 - y1);
      const std::string halo = "class=\"edge-label\" paint-order=\"stroke\" stroke=\"#ffffff\" stroke-width=\"3\"";
      a_s += down || beside ? text(lx + 6, ly + 4, label, "start", 11, "#333333", halo)
                            : text(lx, ly - 5, label, "middle", 11, "#333333", halo);
    }
    return a_s;
  };
  if (q_lora) {
    s += arrow("x (attn_norm)", "c_q", "W_DQ");
    s += arrow("c_q", "c_q_hat", "RMSNorm");
    s += arrow("c_q_hat", "q_nope", "W_UQ");
    s += arrow("c_q_hat", "q_rope", "W_QR, RoPE", 0.45, true);
  } else {
    s += arrow("x (attn_norm)", "q_nope", "W_UQ");
    s += arrow("x (attn_norm)", "q_rope", "W_QR, RoPE");
  }
  s += arrow("x (attn_norm)", "c_kv", "W_DKV");
  s += arrow("c_kv", "c_kv_hat", "RMSNorm");
  s += arrow("x (attn_norm)", "k_rope", "W_KR, RoPE");
  if (absorbed) {
    s += arrow("q_nope", "q_tilde", "W_UK^T");
    s += arrow("q_tilde", "probs", "· c_kv_hat");
    s += arrow("c_kv_hat", "z", "Σ p c_kv_hat", 0.3);
    s += arrow("probs", "z", "");
    s += arrow("z", "o", "W_UV");
    s += arrow("o", "u", "W_O");
  } else {
    s += arrow("c_kv_hat", "k_nope", "W_UK");
    s += arrow("c_kv_hat", "v", "W_UV");
    s += arrow("k_nope", "probs", "q·k");
    s += arrow("v", "o", "Σ p v", 0.2);
    s += arrow("probs", "o", "");
    s += arrow("o", "u", "W_O");
  }
  s += arrow("q_rope", "probs", "");
  s += arrow("k_rope", "probs", "q_rope·k_rope", 0.5, true);
  for (const Node& n : nodes) {
    const bool shown = !n.shape->empty();
    const std::string fill = n.cached ? "#fff4e0" : (shown ? "#eef3f9" : "#f4f4f4");
    s += rect(n.x, n.y, w, h, fill, "node",
              fmt::format("{}: {}{}", n.name, shape_text(*n.shape), n.cached ? " (stored in the KV cache)" : ""),
              fmt::format("stroke=\"{}\" stroke-width=\"{}\" rx=\"6\"", n.cached ? "#e6550d" : "#6b8fb5",
                          n.cached ? 2 : 1));
    s += text(n.x + w / 2, n.y + 18, std::string(n.name) + (n.cached ? " (cached)" : ""), "middle", 13);
    s += text(n.x + w / 2, n.y + 37, shape_text(*n.shape), "middle", 13, shown ? "#000000" : "#888888");
  }
  s += text(10, 378, absorbed ? "absorbed form: W_UK folded into the query, W_UV applied after the sum over keys (spec §4.3)"
                              : "naive form: per-head keys and values rebuilt from the cached latent (spec §4.2)",
            "start", 14, "#333333");
  s += "</svg>";
  return figure("mla-flow", title, s, fmt::format("data-form=\"{}\"", absorbed ? "absorbed" : "naive"));
}

// ---- tables ---------------------------------------------------------------------------------

std::string logits_table(const std::string& title, const arma::mat& logits,
                         const std::vector<std::int64_t>& tokens, arma::uword k, int precision,
                         const std::function<std::string(std::int64_t)>& label_of) {
  k = std::min<arma::uword>(k, logits.n_cols);
  // "3 ␣Paris" with the token's string in its own element (class token), escaped.
  const auto token = [&](std::int64_t id) {
    if (!label_of) return std::to_string(id);
    return fmt::format("{} <span class=\"token\">{}</span>", id, escape(label_of(id)));
  };
  std::string s = "<table class=\"numbers logits\"><thead><tr><th>position</th><th>token</th>";
  for (arma::uword r = 0; r < k; ++r) s += fmt::format("<th>#{} next (logit)</th>", r + 1);
  s += "</tr></thead><tbody>\n";
  for (arma::uword t = 0; t < logits.n_rows; ++t) {
    const arma::rowvec row = logits.row(t);
    const arma::uvec order = arma::stable_sort_index(row, "descend");  // ties: lower id first
    s += fmt::format("<tr><td>{}</td><td>{}</td>", t, t < tokens.size() ? token(tokens[t]) : "");
    for (arma::uword r = 0; r < k; ++r) {
      const auto id = static_cast<std::int64_t>(order(r));
      s += fmt::format("<td class=\"cell\" title=\"token {}{} logit {}\"><b>{}</b> ({})</td>", id,
                       label_of ? escape(" '" + label_of(id) + "'") : "", escape(number(row(order(r)), precision)),
                       token(id), escape(number(row(order(r)), precision)));
    }
    s += "</tr>\n";
  }
  s += "</tbody></table>";
  return figure("logits", title, s, fmt::format("data-rows=\"{}\" data-top=\"{}\"", logits.n_rows, k));
}

std::string tensor_table(const std::string& name, const TensorView& x, int precision) {
  const std::string shape = format_shape(x.shape);
  if (x.data == nullptr)
    return fmt::format("<p class=\"tensor\"><code>{}</code> {}</p>\n", escape(name), shape);
  if (x.numel() > 64) {
    const TensorStats st = tensor_stats(x);
    return fmt::format(
        "<p class=\"tensor\"><code>{}</code> {}: min {}, max {}, mean {}, rms {}{}</p>\n", escape(name), shape,
        number(st.min, precision), number(st.max, precision), number(st.mean, precision), number(st.rms, precision),
        st.non_finite ? fmt::format(", {} non-finite", st.non_finite) : "");
  }
  // Rows of the innermost dimension; outer dimensions become labelled row groups.
  const std::uint64_t cols = x.shape.empty() ? 1 : x.shape.back();
  const std::uint64_t rows = cols ? x.numel() / cols : 0;
  std::string s = fmt::format("<div class=\"tensor\"><code>{}</code> {}\n<table class=\"numbers\">", escape(name), shape);
  for (std::uint64_t r = 0; r < rows; ++r) {
    s += "<tr>";
    if (x.shape.size() >= 2) s += fmt::format("<th>{}</th>", r);
    for (std::uint64_t j = 0; j < cols; ++j)
      s += fmt::format("<td>{}</td>", escape(number(x.data[r * cols + j], holds_indices(name) ? 0 : precision)));
    s += "</tr>";
  }
  return s + "</table></div>\n";
}

}  // namespace dsr1::html
