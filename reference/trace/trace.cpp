#include "reference/trace/trace.hpp"

#include <fmt/format.h>

#include <stdexcept>

namespace dsr1 {

std::uint64_t TensorView::numel() const {
  std::uint64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

std::vector<std::uint64_t> disk_shape(const arma::mat& x) { return {x.n_cols, x.n_rows}; }
std::vector<std::uint64_t> disk_shape(const arma::vec& x) { return {x.n_elem}; }
std::vector<std::uint64_t> disk_shape(const arma::cube& x) {
  return {x.n_slices, x.n_cols, x.n_rows};
}

// Iterative glob with backtracking to the last '*': linear in practice, no recursion.
bool glob_match(std::string_view pattern, std::string_view text) {
  std::size_t p = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

Tracer::Tracer(std::vector<std::string> filters) : filters_(std::move(filters)) {
  if (filters_.empty()) filters_.push_back("*");
}

void Tracer::push(std::string_view scope) { scopes_.emplace_back(scope); }

void Tracer::pop() {
  if (scopes_.empty()) throw std::logic_error("Tracer::pop: no open scope");
  scopes_.pop_back();
}

std::string Tracer::full_name(std::string_view name) const {
  std::string full;
  for (const auto& s : scopes_) {
    full += s;
    full += '.';
  }
  full += name;
  return full;
}

bool Tracer::wants(std::string_view full) const {
  for (const auto& f : filters_)
    if (glob_match(f, full)) return true;
  return false;
}

bool Tracer::select(const std::string& full) {
  ++seen_;
  if (!wants(full)) return false;
  ++matched_;
  return true;
}

void Tracer::check_filter_matched() const {
  if (matched_ > 0) return;
  std::string joined;
  for (const auto& f : filters_) joined += (joined.empty() ? "'" : ", '") + f + "'";
  throw std::runtime_error(fmt::format(
      "trace filter {} matched none of the {} traced tensors of this run "
      "(names look like 'layers.0.attn.scores'; use --trace '*' to see them all)",
      joined, seen_));
}

void Tracer::record(std::string_view name, const arma::mat& x) {
  const std::string full = full_name(name);
  if (!select(full)) return;
  on_tensor(full, TensorView{disk_shape(x), x.memptr()});
}

void Tracer::record(std::string_view name, const arma::vec& x) {
  const std::string full = full_name(name);
  if (!select(full)) return;
  on_tensor(full, TensorView{disk_shape(x), x.memptr()});
}

void Tracer::record(std::string_view name, const arma::fmat& x) {
  const std::string full = full_name(name);
  if (!select(full)) return;
  const arma::mat xd = arma::conv_to<arma::mat>::from(x);
  on_tensor(full, TensorView{disk_shape(xd), xd.memptr()});
}

void Tracer::record(std::string_view name, const arma::fvec& x) {
  const std::string full = full_name(name);
  if (!select(full)) return;
  const arma::vec xd = arma::conv_to<arma::vec>::from(x);
  on_tensor(full, TensorView{disk_shape(xd), xd.memptr()});
}

void Tracer::record(std::string_view name, const arma::cube& x) {
  const std::string full = full_name(name);
  if (!select(full)) return;
  on_tensor(full, TensorView{disk_shape(x), x.memptr()});
}

void Tracer::record(std::string_view name, const arma::fcube& x) {
  const std::string full = full_name(name);
  if (!select(full)) return;
  const arma::cube xd = arma::conv_to<arma::cube>::from(x);
  on_tensor(full, TensorView{disk_shape(xd), xd.memptr()});
}

void Tracer::record_scalar(std::string_view name, double x) {
  const std::string full = full_name(name);
  if (!select(full)) return;
  on_tensor(full, TensorView{{}, &x});
}

void Tracer::record_shape(std::string_view name, std::vector<std::uint64_t> shape,
                          StageCost cost) {
  const std::string full = full_name(name);
  if (!select(full)) return;
  on_shape(full, TensorView{std::move(shape), nullptr}, cost);
}

void Tracer::on_shape(const std::string& full_name, const TensorView& x, const StageCost&) {
  on_tensor(full_name, x);
}

TeeTracer::TeeTracer(std::vector<std::string> filters, std::vector<Tracer*> outputs)
    : Tracer(std::move(filters)), outputs_(std::move(outputs)) {}

// Each output keeps its own filter: the tee's filter is the union, and a record reaches only
// the outputs whose filter selects it.
void TeeTracer::on_tensor(const std::string& full_name, const TensorView& x) {
  for (auto* o : outputs_)
    if (o->wants(full_name)) o->on_tensor(full_name, x);
}
void TeeTracer::on_shape(const std::string& full_name, const TensorView& x,
                         const StageCost& cost) {
  for (auto* o : outputs_)
    if (o->wants(full_name)) o->on_shape(full_name, x, cost);
}
void TeeTracer::note(std::string_view text) {
  for (auto* o : outputs_) o->note(text);
}
void TeeTracer::finish() {
  for (auto* o : outputs_) o->finish();
}

void RecordingTracer::on_tensor(const std::string& full_name, const TensorView& x) {
  Entry e{full_name, x.shape, {}, {}};
  if (x.data) e.data.assign(x.data, x.data + x.numel());
  entries_.push_back(std::move(e));
}

void RecordingTracer::on_shape(const std::string& full_name, const TensorView& x,
                               const StageCost& cost) {
  entries_.push_back(Entry{full_name, x.shape, {}, cost});
}

bool RecordingTracer::has(std::string_view name) const {
  for (const auto& e : entries_)
    if (e.name == name) return true;
  return false;
}

const RecordingTracer::Entry& RecordingTracer::get(std::string_view name) const {
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it)
    if (it->name == name) return *it;
  throw std::out_of_range(fmt::format("no traced tensor named '{}'", name));
}

arma::mat RecordingTracer::get_mat(std::string_view name) const {
  const Entry& e = get(name);
  if (e.shape.size() == 1) return arma::mat(e.data.data(), e.shape[0], 1);
  if (e.shape.size() == 2) return arma::mat(e.data.data(), e.shape[1], e.shape[0]);
  if (e.shape.empty() && e.data.size() == 1) return arma::mat(1, 1, arma::fill::value(e.data[0]));
  throw std::invalid_argument(
      fmt::format("traced tensor '{}' has {} dimensions, not a matrix", name, e.shape.size()));
}

}  // namespace dsr1
