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

// Elements first .. first+count-1, on one thread. The role's formula is applied in a second
// pass over the block, so the hashing loop has no branch and the compiler can vectorise it; with
// AVX-512 (x86-64-v4: 64-bit vector multiplies) eight values are hashed at once. The clones
// compute the same bits: integer arithmetic, and one IEEE division and rounding per value.
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
void generator_fill_serial(std::uint64_t base, GeneratorRole role, double sqrt_n,
                           std::uint64_t first, std::uint64_t count, double* out) {
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::uint64_t z = mix64(base + (first + i) * 0xD1B54A32D192ED03ULL);
    const double u = static_cast<double>(z >> 40) / 16777216.0;  // / 2^24
    out[i] = 2.0 * u - 1.0;                                      // r
  }
  for (std::uint64_t i = 0; i < count; ++i) {
    const double r = out[i];
    double f = 0.0;
    switch (role) {
      case GeneratorRole::Norm: f = 1.0 + r / 4.0; break;
      case GeneratorRole::Bias: f = r / 16.0; break;
      case GeneratorRole::Scale: f = std::ldexp(1.0 + (r + 1.0) / 2.0, -8); break;
      case GeneratorRole::Linear: f = r / sqrt_n; break;
    }
    out[i] = static_cast<double>(static_cast<float>(f));
  }
}

}  // namespace

void generator_fill(std::uint64_t seed, std::string_view name, std::uint64_t last_dim,
                    std::uint64_t first, std::uint64_t count, double* out) {
  // The per-tensor parts of the rule, computed once: seed * C1 + key, the role, sqrt(n).
  const std::uint64_t base = seed * 0x9E3779B97F4A7C15ULL + fnv1a64(name);
  const GeneratorRole role = generator_role(name);
  const double sqrt_n = std::sqrt(static_cast<double>(last_dim == 0 ? 1 : last_dim));
  // Below a few million values a thread costs more than it saves.
  constexpr std::uint64_t kPerThread = std::uint64_t{1} << 21;
  const std::uint64_t hw = std::max(1u, std::thread::hardware_concurrency());
  const std::uint64_t n_threads = std::min<std::uint64_t>(hw, count / kPerThread);
  if (n_threads <= 1) {
    generator_fill_serial(base, role, sqrt_n, first, count, out);
    return;
  }
  std::vector<std::thread> threads;
  const std::uint64_t chunk = (count + n_threads - 1) / n_threads;
  for (std::uint64_t k = 0; k < n_threads; ++k) {
    const std::uint64_t lo = k * chunk, hi = std::min(count, lo + chunk);
    if (lo >= hi) break;
    threads.emplace_back(generator_fill_serial, base, role, sqrt_n, first + lo, hi - lo, out + lo);
  }
  for (auto& t : threads) t.join();
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

std::vector<std::string> GeneratorSource::names() const {
  std::vector<std::string> out;
  for (const auto& e : catalogue_) out.push_back(e.name);
  return out;
}

std::string GeneratorSource::describe() const {
  return fmt::format("weight generator (seed {})", seed_);
}

}  // namespace dsr1
