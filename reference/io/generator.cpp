#include "reference/io/generator.hpp"

#include <fmt/format.h>

#include <cmath>
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

void generator_fill(std::uint64_t seed, std::string_view name, std::uint64_t last_dim,
                    std::uint64_t first, std::uint64_t count, double* out) {
  // The per-tensor parts of the rule, computed once: seed * C1 + key, the role, sqrt(n).
  const std::uint64_t base = seed * 0x9E3779B97F4A7C15ULL + fnv1a64(name);
  const GeneratorRole role = generator_role(name);
  const double sqrt_n = std::sqrt(static_cast<double>(last_dim == 0 ? 1 : last_dim));
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::uint64_t z = mix64(base + (first + i) * 0xD1B54A32D192ED03ULL);
    const double u = static_cast<double>(z >> 40) / 16777216.0;  // / 2^24
    const double r = 2.0 * u - 1.0;
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

GeneratorSource::GeneratorSource(std::uint64_t seed, std::vector<Entry> catalogue)
    : seed_(seed), catalogue_(std::move(catalogue)) {}

const GeneratorSource::Entry& GeneratorSource::find(const std::string& name) const {
  for (const auto& e : catalogue_)
    if (e.name == name) return e;
  throw std::runtime_error(fmt::format("{}: no tensor named '{}'", describe(), name));
}

bool GeneratorSource::has(const std::string& name) const {
  for (const auto& e : catalogue_)
    if (e.name == name) return true;
  return false;
}

std::vector<std::uint64_t> GeneratorSource::shape(const std::string& name) const {
  return find(name).shape;
}

TensorData GeneratorSource::read(const std::string& name) const {
  const Entry& e = find(name);
  std::uint64_t n = 1;
  for (auto s : e.shape) n *= s;
  const std::uint64_t last = e.shape.empty() ? 1 : e.shape.back();
  TensorData t{e.shape, std::vector<double>(n)};
  generator_fill(seed_, e.name, last, 0, n, t.data.data());
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
