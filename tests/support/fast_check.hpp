// Comparing the fast path (reference/fast/) with the double-precision reference, shared by
// tests/test_fast_model.cpp and tests/test_fast_fp8.cpp.
//
// Tolerance: |fast - ref| <= 1e-5 (rms(ref) + |ref|) per element, rms(ref) the root mean square
// of the whole reference tensor. That is f32_vs_ref's relative 1e-5 (tolerances.hpp) with its
// absolute floor 1e-6, which assumes O(1) values, replaced by the tensor's own scale. Why the
// scale: fast and reference compute with the same weight values, so the only difference is
// float32 rounding of activations and sums (unit roundoff 6e-8, dot products of up to a few
// hundred terms, through up to 3 layers). That error is relative to the size of the terms, not
// of the result: an element that is small because terms cancelled (a 0.01 entry of an RMSNorm
// output whose typical entry is 1, after 1/rms amplified the hidden state ~14x in these
// configs) carries the absolute error of its neighbours. Observed: worst error / rms(ref) about
// 3e-6 (the tests print it), so the bound is tight to a factor ~3.
#pragma once

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "reference/deepseek/config.hpp"
#include "reference/deepseek/model.hpp"
#include "reference/fast/model.hpp"
#include "reference/fast/options.hpp"
#include "tests/support/check.hpp"

namespace dsr1::test {

// The worst |fast - ref| / rms(ref) seen by check_f32, reported at the end of a test case.
inline double worst_scaled_error = 0.0;

inline double rms(const arma::mat& x) {
  return x.n_elem ? std::sqrt(arma::accu(arma::square(x)) / x.n_elem) : 0.0;
}

// The tolerance of the fast path (see the header): abs 1e-5 * rms(want), rel 1e-5.
inline Tol f32_scaled(const arma::mat& want) { return {1e-5 * rms(want), 1e-5}; }

inline void check_f32(const arma::mat& got, const arma::mat& want, const std::string& what) {
  if (got.n_elem == want.n_elem && rms(want) > 0)
    worst_scaled_error = std::max(worst_scaled_error, arma::abs(got - want).max() / rms(want));
  check_close(got, want, f32_scaled(want), what);
}

inline std::vector<std::int64_t> some_tokens(const Config& c, std::int64_t T, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::int64_t> tokens(static_cast<std::size_t>(T));
  for (auto& t : tokens) t = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(c.vocab_size));
  return tokens;
}

// Block sizes that divide none of the test dimensions.
inline fast::Options odd_blocks(int threads) {
  fast::Options o;
  o.threads = threads;
  o.mc = 37;  // rounded up to 64 rows
  o.nc = 13;
  o.kc = 29;
  o.attn_qb = 5;
  o.attn_heads = 3;
  o.attn_kb = 11;
  o.decode_kb = 7;
  return o;
}

// Every tensor the fast path traced must match the reference's tensor of the same name.
inline void compare_traces(const RecordingTracer& fast_tr, const RecordingTracer& ref_tr,
                           const std::string& what) {
  std::size_t compared = 0;
  for (const auto& e : fast_tr.entries()) {
    REQUIRE_MESSAGE(ref_tr.has(e.name), fmt::format("{}: the reference traced no '{}'", what, e.name));
    const arma::mat got = fast_tr.get_mat(e.name), want = ref_tr.get_mat(e.name);
    if (e.name.ends_with("moe.experts"))
      check_close(got, want, {0.0, 0.0}, what + ": " + e.name);  // indices: exactly equal
    else
      check_f32(got, want, what + ": " + e.name);
    ++compared;
  }
  CHECK(compared >= 10);
}

// The fast path on weights F against the reference on weights W (the same values), one forward
// pass over `tokens`, every traced tensor.
inline void check_against_reference(const ModelWeights& W, const fast::ModelWeightsF& F,
                                    const Config& c, const std::vector<std::int64_t>& tokens,
                                    const fast::Options& opt) {
  const auto T = tokens.size();
  RecordingTracer ref_tr, fast_tr;
  const arma::mat want = ref::forward(W, c, tokens, 0, nullptr, ref::ForwardOptions{}, &ref_tr);
  const arma::fmat got = fast::forward(F, c, tokens, 0, nullptr, opt, &fast_tr);
  check_f32(arma::conv_to<arma::mat>::from(got), want, c.name + ": logits");
  compare_traces(fast_tr, ref_tr, fmt::format("{} (T={}, threads={}, weights {})", c.name, T,
                                              opt.threads, fast::to_string(F.type)));
}

// Calls f(a, b) for every pair of corresponding packed matrices of two converted models.
template <class F>
inline void for_each_matrix_pair(const fast::ModelWeightsF& A, const fast::ModelWeightsF& B, F f) {
  auto ffn = [&](const fast::FfnWeightsF& x, const fast::FfnWeightsF& y) {
    f(x.W_gate_up, y.W_gate_up);
    f(x.W_down, y.W_down);
  };
  f(A.W_head, B.W_head);
  REQUIRE(A.layers.size() == B.layers.size());
  for (std::size_t l = 0; l < A.layers.size(); ++l) {
    const auto &a = A.layers[l], &b = B.layers[l];
    f(a.attn.W_x, b.attn.W_x);
    f(a.attn.W_q, b.attn.W_q);
    f(a.attn.W_O, b.attn.W_O);
    for (std::size_t h = 0; h < a.attn.W_UK_T.size(); ++h) {
      f(a.attn.W_UK_T[h], b.attn.W_UK_T[h]);
      f(a.attn.W_UV[h], b.attn.W_UV[h]);
    }
    if (!a.is_moe) {
      ffn(a.dense, b.dense);
      continue;
    }
    f(a.moe.W_g, b.moe.W_g);
    for (std::size_t e = 0; e < a.moe.experts.size(); ++e) ffn(a.moe.experts[e], b.moe.experts[e]);
    if (a.moe.shared) ffn(*a.moe.shared, *b.moe.shared);
  }
}

}  // namespace dsr1::test
