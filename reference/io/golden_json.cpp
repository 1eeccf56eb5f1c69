#include "reference/io/golden_json.hpp"

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace dsr1 {

namespace {
const char* type_name(const nlohmann::json& x) { return x.type_name(); }
}  // namespace

void GoldenFile::fail(const std::string& field, const std::string& what) const {
  throw std::runtime_error(fmt::format("{}: field '{}': {}", path_, field, what));
}

GoldenFile GoldenFile::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot open golden file", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

GoldenFile GoldenFile::parse(const std::string& text, const std::string& path) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::runtime_error(fmt::format("{}: not valid JSON: {}", path, e.what()));
  }
  if (!j.is_object())
    throw std::runtime_error(
        fmt::format("{}: a golden file must be a JSON object, got {}", path, j.type_name()));
  GoldenFile g(std::move(j), path);
  g.validate();
  return g;
}

void GoldenFile::validate() const {
  for (const char* f : {"section", "title", "check"}) {
    if (!j_.contains(f)) fail(f, "missing (every golden file needs it)");
    if (!j_[f].is_string()) fail(f, fmt::format("expected a string, got {}", type_name(j_[f])));
  }
  for (const char* f : {"inputs", "parameters", "expected", "doc_printed", "tolerance"}) {
    if (!j_.contains(f)) fail(f, "missing (every golden file needs it)");
    if (!j_[f].is_object()) fail(f, fmt::format("expected an object, got {}", type_name(j_[f])));
  }
  for (const char* f : {"tolerance.abs", "tolerance.rel"}) {
    const double v = number(f);
    if (!(v >= 0.0) || !std::isfinite(v)) fail(f, fmt::format("expected a number >= 0, got {}", v));
  }
  text("tolerance.why");
}

const nlohmann::json& GoldenFile::at(const std::string& field) const {
  const nlohmann::json* cur = &j_;
  std::string walked;
  std::size_t start = 0;
  while (start <= field.size()) {
    const std::size_t dot = field.find('.', start);
    const std::string key =
        field.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    walked += (walked.empty() ? "" : ".") + key;
    if (cur->is_object()) {
      auto it = cur->find(key);
      if (it == cur->end()) fail(walked, "missing");
      cur = &*it;
    } else if (cur->is_array()) {
      std::size_t idx = 0;
      try {
        std::size_t used = 0;
        idx = std::stoul(key, &used);
        if (used != key.size()) throw std::invalid_argument(key);
      } catch (const std::exception&) {
        fail(walked, "expected an array index");
      }
      if (idx >= cur->size())
        fail(walked, fmt::format("index {} out of range (array of {})", idx, cur->size()));
      cur = &(*cur)[idx];
    } else {
      fail(walked, fmt::format("cannot look inside a {}", type_name(*cur)));
    }
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return *cur;
}

bool GoldenFile::has(const std::string& field) const {
  try {
    at(field);
    return true;
  } catch (const std::runtime_error&) {
    return false;
  }
}

double GoldenFile::element(const nlohmann::json& x, const std::string& field) const {
  if (x.is_number()) return x.get<double>();
  if (x.is_string()) {
    const std::string s = x.get<std::string>();
    if (s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-inf") return -std::numeric_limits<double>::infinity();
    if (s == "nan") return std::numeric_limits<double>::quiet_NaN();
    fail(field, fmt::format("expected a number (or \"inf\", \"-inf\", \"nan\"), got \"{}\"", s));
  }
  fail(field, fmt::format("expected a number, got {}", type_name(x)));
}

double GoldenFile::number(const std::string& field) const { return element(at(field), field); }

std::string GoldenFile::text(const std::string& field) const {
  const auto& x = at(field);
  if (!x.is_string()) fail(field, fmt::format("expected a string, got {}", type_name(x)));
  return x.get<std::string>();
}

arma::vec GoldenFile::vec(const std::string& field) const {
  const auto& x = at(field);
  if (!x.is_array()) fail(field, fmt::format("expected a list of numbers, got {}", type_name(x)));
  arma::vec v(x.size());
  for (std::size_t i = 0; i < x.size(); ++i)
    v(i) = element(x[i], fmt::format("{}.{}", field, i));
  return v;
}

arma::mat GoldenFile::matrix(const std::string& field) const {
  const auto& x = at(field);
  if (!x.is_array() || x.empty())
    fail(field, fmt::format("expected a non-empty list of rows, got {}",
                            x.is_array() ? "an empty list" : type_name(x)));
  const std::size_t rows = x.size();
  if (!x[0].is_array()) fail(field + ".0", fmt::format("expected a row (list), got {}", type_name(x[0])));
  const std::size_t cols = x[0].size();
  arma::mat m(rows, cols);
  for (std::size_t r = 0; r < rows; ++r) {
    const std::string rf = fmt::format("{}.{}", field, r);
    if (!x[r].is_array()) fail(rf, fmt::format("expected a row (list), got {}", type_name(x[r])));
    if (x[r].size() != cols)
      fail(rf, fmt::format("row has {} entries, but row 0 has {} (rows must be equal)",
                           x[r].size(), cols));
    for (std::size_t c = 0; c < cols; ++c) m(r, c) = element(x[r][c], fmt::format("{}.{}", rf, c));
  }
  return m;
}

arma::mat GoldenFile::tokens(const std::string& field) const { return matrix(field).t(); }

arma::cube GoldenFile::cube(const std::string& field) const {
  const auto& x = at(field);
  if (!x.is_array() || x.empty())
    fail(field, "expected a non-empty list of tables ([heads][T][T_k])");
  const arma::mat first = matrix(field + ".0");  // [T, T_k]
  arma::cube c(first.n_cols, first.n_rows, x.size());
  for (std::size_t s = 0; s < x.size(); ++s) {
    const arma::mat m = matrix(fmt::format("{}.{}", field, s));
    if (m.n_rows != first.n_rows || m.n_cols != first.n_cols)
      fail(fmt::format("{}.{}", field, s),
           fmt::format("table is [{} x {}], but table 0 is [{} x {}]", m.n_rows, m.n_cols,
                       first.n_rows, first.n_cols));
    c.slice(s) = m.t();
  }
  return c;
}

std::string seed_golden_path(const std::string& name) {
  return std::string(DSR1_SOURCE_DIR) + "/golden/seed/" + name;
}

}  // namespace dsr1
