// Choosing the next token from the logits: greedy (the largest logit), or sampled with a
// temperature, top-k and top-p (nucleus) from a fixed, portable random number generator, so that
// one seed gives the same tokens on every machine and thread count.
// Leaves out: computing the logits (model.hpp, fast/model.hpp) and repetition penalties.
//
// With logits l over the vocabulary and temperature τ > 0:                     docs/generate.md
//   p_i   = exp((l_i - max_j l_j) / τ) / Σ_j exp((l_j - max_j l_j) / τ)        softmax at τ
//   order the ids by p_i, largest first (ties: lower id first); keep the first top_k of them
//   (top_k = 0: all), then the shortest prefix whose p_i sum to at least top_p (at least one id);
//   draw u uniform in [0, 1) and pick the first kept id whose running sum of p_i exceeds
//   u · (sum of the kept p_i).
// τ = 0 is greedy: argmax l_i, ties to the lower id, no random number drawn.
// Every sum runs in that fixed order in double precision; the generator is SplitMix64.
#pragma once

#include <armadillo>
#include <cstdint>
#include <vector>

namespace dsr1::ref {

// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators", 2014):
// a 64-bit state advanced by a constant and mixed; the same sequence on every platform.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next();
  // Uniform in [0, 1): the top 53 bits of next() times 2^-53.
  double uniform();

 private:
  std::uint64_t state_;
};

struct SamplingOptions {
  double temperature = 0.0;  // 0: greedy
  std::int64_t top_k = 0;    // 0: no limit
  double top_p = 1.0;        // 1: no limit
  std::uint64_t seed = 1;
};
// Refuses a negative temperature, a negative top_k and top_p outside (0, 1], naming the option.
void check_sampling_options(const SamplingOptions& o);

// argmax_i logits_i, ties to the lower id (the choice of greedy decoding).
std::int64_t argmax_lowest_id(const arma::vec& logits);

// Softmax of logits / temperature (temperature > 0), shifted by the maximum so exp never overflows.
arma::vec softmax_at(const arma::vec& logits, double temperature);

// The ids sampling may pick from probabilities p: largest first (ties: lower id first), the first
// top_k (0: all), then cut after the shortest prefix reaching top_p.
std::vector<std::int64_t> nucleus(const arma::vec& p, std::int64_t top_k, double top_p);

// The kept id whose running sum of p first exceeds u * (sum of p over kept); u in [0, 1).
std::int64_t pick(const arma::vec& p, const std::vector<std::int64_t>& kept, double u);

// One choice: the id, its probability under the model (softmax at temperature 1) and the
// probability with which it was drawn (1 for greedy: no randomness).
struct Choice {
  std::int64_t id = 0;
  double probability = 0;           // softmax(logits)_id
  double sampling_probability = 1;  // p_id / (sum of kept p), at the temperature
};

// Draws one token after another with its own generator (seeded once).
class Sampler {
 public:
  explicit Sampler(const SamplingOptions& o);
  Choice next(const arma::vec& logits);

 private:
  SamplingOptions o_;
  SplitMix64 rng_;
};

}  // namespace dsr1::ref
