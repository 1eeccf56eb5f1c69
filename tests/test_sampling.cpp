// Choosing the next token (reference/deepseek/sampling.hpp): the generator against SplitMix64's
// published outputs, softmax at a temperature against the formula by hand, top-k and top-p cuts,
// the pick's boundaries, and draws that follow the distribution.
#include <doctest/doctest.h>

#include <cmath>

#include "reference/deepseek/sampling.hpp"
#include "tests/support/errors.hpp"

using namespace dsr1::ref;
using dsr1::test::contains;
using dsr1::test::error_of;

TEST_CASE("SplitMix64 gives the reference implementation's sequence for seed 0") {
  // The first outputs of Vigna's splitmix64.c seeded with 0.
  SplitMix64 g(0);
  CHECK(g.next() == 0xE220A8397B1DCDAFull);
  CHECK(g.next() == 0x6E789E6AA1B965F4ull);
  CHECK(g.next() == 0x06C45D188009454Full);
  SplitMix64 u(7);
  for (int i = 0; i < 1000; ++i) {
    const double x = u.uniform();
    CHECK(x >= 0.0);
    CHECK(x < 1.0);
  }
}

TEST_CASE("softmax at a temperature: exp(l / tau) normalised, written out by hand") {
  const arma::vec l = {1.0, 2.0, 4.0};
  const double tau = 0.5;
  const double e0 = std::exp(2.0), e1 = std::exp(4.0), e2 = std::exp(8.0), z = e0 + e1 + e2;
  const arma::vec p = softmax_at(l, tau);
  CHECK(p(0) == doctest::Approx(e0 / z).epsilon(1e-14));
  CHECK(p(1) == doctest::Approx(e1 / z).epsilon(1e-14));
  CHECK(p(2) == doctest::Approx(e2 / z).epsilon(1e-14));
  // Huge logits do not overflow (shifted by the maximum).
  const arma::vec big = softmax_at(arma::vec{1000.0, 1000.0}, 1.0);
  CHECK(big(0) == 0.5);
  CHECK(big(1) == 0.5);
}

TEST_CASE("greedy picks the largest logit, ties to the lower id") {
  CHECK(argmax_lowest_id(arma::vec{0.1, 0.7, 0.7, 0.2}) == 1);
  Sampler greedy({});
  const Choice c = greedy.next(arma::vec{0.0, 3.0, 1.0});
  CHECK(c.id == 1);
  CHECK(c.sampling_probability == 1.0);
  CHECK(c.probability == doctest::Approx(std::exp(3.0) / (1 + std::exp(3.0) + std::exp(1.0))).epsilon(1e-14));
}

TEST_CASE("top-k keeps the k most likely ids, top-p the shortest prefix reaching p") {
  const arma::vec p = {0.1, 0.4, 0.1, 0.3, 0.1};
  CHECK(nucleus(p, 0, 1.0) == std::vector<std::int64_t>{1, 3, 0, 2, 4});  // ties: lower id first
  CHECK(nucleus(p, 2, 1.0) == std::vector<std::int64_t>{1, 3});
  CHECK(nucleus(p, 0, 0.7) == std::vector<std::int64_t>{1, 3});        // 0.4 + 0.3 reaches 0.7
  CHECK(nucleus(p, 0, 0.71) == std::vector<std::int64_t>{1, 3, 0});
  CHECK(nucleus(p, 0, 0.01) == std::vector<std::int64_t>{1});          // at least one
  CHECK(nucleus(p, 1, 0.9) == std::vector<std::int64_t>{1});
}

TEST_CASE("pick walks the kept ids' running sum") {
  const arma::vec p = {0.2, 0.5, 0.3};
  const std::vector<std::int64_t> kept = {1, 2, 0};
  CHECK(pick(p, kept, 0.0) == 1);
  CHECK(pick(p, kept, 0.49) == 1);
  CHECK(pick(p, kept, 0.51) == 2);
  CHECK(pick(p, kept, 0.81) == 0);
  CHECK(pick(p, kept, 0.999999) == 0);
  CHECK(pick(p, {1, 2}, 0.7) == 2);  // renormalised over the kept 0.8: 0.7 * 0.8 = 0.56 > 0.5
}

TEST_CASE("sampling follows the distribution and repeats with the seed") {
  const arma::vec logits = arma::log(arma::vec{0.5, 0.3, 0.2});
  Sampler a({1.0, 0, 1.0, 42}), b({1.0, 0, 1.0, 42});
  const int n = 20000;
  int counts[3] = {0, 0, 0};
  for (int i = 0; i < n; ++i) {
    const Choice x = a.next(logits);
    CHECK(x.id == b.next(logits).id);
    ++counts[x.id];
  }
  // Each frequency within 4 standard deviations sqrt(p(1-p)/n) <= 0.0036 of its probability.
  CHECK(std::abs(counts[0] / double(n) - 0.5) < 4 * 0.0036);
  CHECK(std::abs(counts[1] / double(n) - 0.3) < 4 * 0.0033);
  CHECK(std::abs(counts[2] / double(n) - 0.2) < 4 * 0.0029);
  Sampler c({1.0, 0, 1.0, 43});
  int same = 0;
  Sampler a2({1.0, 0, 1.0, 42});
  for (int i = 0; i < 100; ++i) same += a2.next(logits).id == c.next(logits).id;
  CHECK(same < 100);  // another seed, another sequence
}

TEST_CASE("bad sampling options are refused, naming the option") {
  CHECK(contains(error_of([] { check_sampling_options({-1.0, 0, 1.0, 1}); }), "--temperature"));
  CHECK(contains(error_of([] { check_sampling_options({1.0, -2, 1.0, 1}); }), "--top-k"));
  CHECK(contains(error_of([] { check_sampling_options({1.0, 0, 0.0, 1}); }), "--top-p"));
  CHECK(contains(error_of([] { check_sampling_options({1.0, 0, 1.5, 1}); }), "--top-p"));
  CHECK(error_of([] { check_sampling_options({0.7, 40, 0.9, 1}); }).empty());
}
