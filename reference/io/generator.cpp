#include "reference/io/generator.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <thread>
#include <stdexcept>

namespace dsr1 {

std::uint64_t fnv1a64(std::string_view bytes) {
  std::uint64_t h = 0xCBF29CE484222325ULL;  // FNV offset basis
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001B3ULL;  // FNV prime
  }
  return h;
}

// SplitMix64's output function: a bijection of 64-bit integers that scrambles every bit.
std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

GeneratorRole generator_role(std::string_view name) {
  if (ends_with(name, "norm.weight")) return GeneratorRole::Norm;
  if (ends_with(name, "e_score_correction_bias")) return GeneratorRole::Bias;
  if (ends_with(name, "weight_scale_inv")) return GeneratorRole::Scale;
  return GeneratorRole::Linear;
}

float generator_value(std::uint64_t seed, std::string_view name, std::uint64_t index,
                      std::uint64_t last_dim) {
  const std::uint64_t state =
      seed * 0x9E3779B97F4A7C15ULL + fnv1a64(name) + index * 0xD1B54A32D192ED03ULL;
  const std::uint64_t z = mix64(state);
  const double u = static_cast<double>(z >> 40) / 16777216.0;  // / 2^24
  const double r = 2.0 * u - 1.0;
  double f = 0.0;
  switch (generator_role(name)) {
    case GeneratorRole::Norm: f = 1.0 + r / 4.0; break;
    case GeneratorRole::Bias: f = r / 16.0; break;
    case GeneratorRole::Scale: f = std::ldexp(1.0 + (r + 1.0) / 2.0, -8); break;
    case GeneratorRole::Linear:
      f = r / std::sqrt(static_cast<double>(last_dim == 0 ? 1 : last_dim));
      break;
  }
  return static_cast<float>(f);
}

namespace {

// The per-tensor parts of the rule, computed once per request: seed * C1 + key, the role and
// sqrt(n).
struct TensorRule {
  std::uint64_t base;
  GeneratorRole role;
  double sqrt_n;
};

TensorRule tensor_rule(std::uint64_t seed, std::string_view name, std::uint64_t last_dim) {
  return {seed * 0x9E3779B97F4A7C15ULL + fnv1a64(name), generator_role(name),
          std::sqrt(static_cast<double>(last_dim == 0 ? 1 : last_dim))};
}

// out[i] = float32(f(r_i)) for the element start + i * step, i < count. A step other than 1
// walks a column of a row-major tensor (step = the row length), which is how a column-major
// matrix is filled without a transpose. Inlined once per role, so the loop has no branch and
// the compiler vectorises it whole: with AVX-512 (x86-64-v4 has 64-bit vector multiplies) eight
// values are hashed, divided and rounded at once.
template <class F>
inline __attribute__((always_inline)) void fill_role(std::uint64_t state0, std::uint64_t dstate,
                                                     std::uint64_t count, double* out, F f) {
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::uint64_t z = mix64(state0 + i * dstate);
    const double u = static_cast<double>(z >> 40) / 16777216.0;  // / 2^24
    const double r = 2.0 * u - 1.0;
    out[i] = static_cast<double>(static_cast<float>(f(r)));
  }
}

// The rule on one thread. The clones compute the same bits: integer arithmetic, and IEEE
// operations that are each correctly rounded whatever the vector width.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void generator_fill_serial(const TensorRule& rule, std::uint64_t start, std::uint64_t step,
                           std::uint64_t count, double* out) {
  const std::uint64_t state0 = rule.base + start * 0xD1B54A32D192ED03ULL;
  const std::uint64_t dstate = step * 0xD1B54A32D192ED03ULL;  // the state advances by this per i
  const double sqrt_n = rule.sqrt_n;
  switch (rule.role) {
    case GeneratorRole::Norm:
      fill_role(state0, dstate, count, out, [](double r) { return 1.0 + r / 4.0; });
      break;
    case GeneratorRole::Bias:
      fill_role(state0, dstate, count, out, [](double r) { return r / 16.0; });
      break;
    case GeneratorRole::Scale:
      fill_role(state0, dstate, count, out,
                [](double r) { return std::ldexp(1.0 + (r + 1.0) / 2.0, -8); });
      break;
    case GeneratorRole::Linear:
      fill_role(state0, dstate, count, out, [sqrt_n](double r) { return r / sqrt_n; });
      break;
  }
}

// Runs work(lo, hi) over [0, n) split into one contiguous part per core, when the request holds
// enough values (n * values_per_item) to be worth a thread; below a few million values a thread
// costs more than it saves. Every value is a function of its index alone, so the split changes
// nothing in the result.
template <class Work>
void split_over_cores(std::uint64_t n, std::uint64_t values_per_item, Work work) {
  constexpr std::uint64_t kPerThread = std::uint64_t{1} << 21;
  const std::uint64_t hw = std::max(1u, std::thread::hardware_concurrency());
  const std::uint64_t n_threads = std::min({hw, n, n * values_per_item / kPerThread});
  if (n_threads <= 1) {
    work(0, n);
    return;
  }
  std::vector<std::thread> threads;
  const std::uint64_t chunk = (n + n_threads - 1) / n_threads;
  for (std::uint64_t k = 1; k < n_threads; ++k) {
    const std::uint64_t lo = k * chunk, hi = std::min(n, lo + chunk);
    if (lo < hi) threads.emplace_back(work, lo, hi);
  }
  work(0, std::min(n, chunk));  // the calling thread takes the first part
  for (auto& t : threads) t.join();
}

}  // namespace

void generator_fill(std::uint64_t seed, std::string_view name, std::uint64_t last_dim,
                    std::uint64_t first, std::uint64_t count, double* out) {
  const TensorRule rule = tensor_rule(seed, name, last_dim);
  split_over_cores(count, 1, [&](std::uint64_t lo, std::uint64_t hi) {
    generator_fill_serial(rule, first + lo, 1, hi - lo, out + lo);
  });
}

void generator_fill_transposed(std::uint64_t seed, std::string_view name, std::uint64_t cols,
                               std::uint64_t first_row, std::uint64_t count, double* dst,
                               std::uint64_t ld) {
  const TensorRule rule = tensor_rule(seed, name, cols);
  // Column c of the destination is elements (first_row + i) * cols + c of the tensor: one
  // strided walk per column, the columns shared out between the cores.
  split_over_cores(cols, count, [&](std::uint64_t c0, std::uint64_t c1) {
    for (std::uint64_t c = c0; c < c1; ++c)
      generator_fill_serial(rule, first_row * cols + c, cols, count, dst + c * ld);
  });
}

GeneratorSource::GeneratorSource(std::uint64_t seed, std::vector<Entry> catalogue)
    : seed_(seed), catalogue_(std::move(catalogue)) {
  for (std::size_t i = 0; i < catalogue_.size(); ++i) index_.emplace(catalogue_[i].name, i);
}

const GeneratorSource::Entry& GeneratorSource::find(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end())
    throw std::runtime_error(fmt::format("{}: no tensor named '{}'", describe(), name));
  return catalogue_[it->second];
}

bool GeneratorSource::has(const std::string& name) const { return index_.count(name) != 0; }

std::vector<std::uint64_t> GeneratorSource::shape(const std::string& name) const {
  return find(name).shape;
}

TensorData GeneratorSource::read_rows(const std::string& name, std::uint64_t first,
                                      std::uint64_t count) const {
  const Entry& e = find(name);
  check_row_range(describe(), name, e.shape, first, count);
  std::uint64_t row_len = 1;  // elements per row: the product of the dimensions after the first
  for (std::size_t i = 1; i < e.shape.size(); ++i) row_len *= e.shape[i];
  const std::uint64_t last = e.shape.empty() ? 1 : e.shape.back();
  TensorData t{e.shape, std::vector<double>(count * row_len)};
  if (!t.shape.empty()) t.shape[0] = count;
  generator_fill(seed_, e.name, last, first * row_len, count * row_len, t.data.data());
  counters_.values_generated += t.data.size();
  return t;
}

void GeneratorSource::read_rows_transposed(const std::string& name, std::uint64_t first,
                                           std::uint64_t count, double* dst,
                                           std::uint64_t ld) const {
  const Entry& e = find(name);
  if (e.shape.size() != 2)
    throw std::invalid_argument(fmt::format("{}: tensor '{}' has {} dimensions; a matrix has 2",
                                            describe(), name, e.shape.size()));
  check_row_range(describe(), name, e.shape, first, count);
  generator_fill_transposed(seed_, e.name, e.shape[1], first, count, dst, ld);
  counters_.values_generated += count * e.shape[1];
}

std::vector<std::string> GeneratorSource::names() const {
  std::vector<std::string> out;
  for (const auto& e : catalogue_) out.push_back(e.name);
  return out;
}

std::string GeneratorSource::describe() const {
  return fmt::format("weight generator (seed {})", seed_);
}

}  // namespace dsr1
