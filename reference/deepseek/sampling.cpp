// Choosing the next token (sampling.hpp).
#include "reference/deepseek/sampling.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace dsr1::ref {

std::uint64_t SplitMix64::next() {
  std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

double SplitMix64::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

void check_sampling_options(const SamplingOptions& o) {
  if (!(o.temperature >= 0) || !std::isfinite(o.temperature))
    throw std::invalid_argument(fmt::format("--temperature: {} is not a finite number >= 0", o.temperature));
  if (o.top_k < 0) throw std::invalid_argument(fmt::format("--top-k: {} is negative (0 means no limit)", o.top_k));
  if (!(o.top_p > 0 && o.top_p <= 1))
    throw std::invalid_argument(fmt::format("--top-p: {} is outside (0, 1]", o.top_p));
}

std::int64_t argmax_lowest_id(const arma::vec& logits) {
  if (logits.n_elem == 0) throw std::invalid_argument("argmax: no logits");
  arma::uword best = 0;
  for (arma::uword i = 1; i < logits.n_elem; ++i)
    if (logits(i) > logits(best)) best = i;
  return static_cast<std::int64_t>(best);
}

arma::vec softmax_at(const arma::vec& logits, double temperature) {
  const double top = logits.max();
  arma::vec p(logits.n_elem);
  double sum = 0;
  for (arma::uword i = 0; i < logits.n_elem; ++i) {
    p(i) = std::exp((logits(i) - top) / temperature);
    sum += p(i);
  }
  for (arma::uword i = 0; i < p.n_elem; ++i) p(i) /= sum;
  return p;
}

std::vector<std::int64_t> nucleus(const arma::vec& p, std::int64_t top_k, double top_p) {
  std::vector<std::int64_t> order(p.n_elem);
  std::iota(order.begin(), order.end(), 0);
  // Largest first; equal probabilities keep the lower id first (a total order: no platform's
  // sort can order them differently).
  std::sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    const double pa = p(static_cast<arma::uword>(a)), pb = p(static_cast<arma::uword>(b));
    return pa != pb ? pa > pb : a < b;
  });
  if (top_k > 0 && static_cast<std::size_t>(top_k) < order.size()) order.resize(static_cast<std::size_t>(top_k));
  if (top_p < 1) {
    double mass = 0;
    std::size_t keep = 0;
    while (keep < order.size()) {
      mass += p(static_cast<arma::uword>(order[keep++]));
      if (mass >= top_p) break;
    }
    order.resize(std::max<std::size_t>(keep, 1));
  }
  return order;
}

std::int64_t pick(const arma::vec& p, const std::vector<std::int64_t>& kept, double u) {
  if (kept.empty()) throw std::invalid_argument("pick: no token to pick from");
  double total = 0;
  for (std::int64_t id : kept) total += p(static_cast<arma::uword>(id));
  const double target = u * total;
  double running = 0;
  for (std::int64_t id : kept) {
    running += p(static_cast<arma::uword>(id));
    if (running > target) return id;
  }
  return kept.back();  // u * total rounded up to the full sum
}

Sampler::Sampler(const SamplingOptions& o) : o_(o), rng_(o.seed) { check_sampling_options(o); }

Choice Sampler::next(const arma::vec& logits) {
  Choice c;
  const arma::vec p_model = softmax_at(logits, 1.0);
  if (o_.temperature == 0) {
    c.id = argmax_lowest_id(logits);
  } else {
    const arma::vec p = softmax_at(logits, o_.temperature);
    const std::vector<std::int64_t> kept = nucleus(p, o_.top_k, o_.top_p);
    c.id = pick(p, kept, rng_.uniform());
    double total = 0;
    for (std::int64_t id : kept) total += p(static_cast<arma::uword>(id));
    c.sampling_probability = p(static_cast<arma::uword>(c.id)) / total;
  }
  c.probability = p_model(static_cast<arma::uword>(c.id));
  return c;
}

}  // namespace dsr1::ref
