// The fast path's building blocks: the packed GEMM against Armadillo's double product on shapes
// off the block grid, its independence from the thread count, the float32 exp, and the latent
// cache's memory formula (linear in the context, under 4 GB at 128K on the benchmark's config).
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "reference/fast/bench.hpp"
#include "reference/fast/gemm.hpp"
#include "reference/fast/model.hpp"
#include "reference/fast/softmax.hpp"
#include "reference/io/safetensors.hpp"
#include "tests/support/check.hpp"

using namespace dsr1;
using dsr1::test::check_close;

namespace {

// Entries r / sqrt(K) with r uniform in [-1, 1): float32 values, like the generator's weights.
arma::fmat random_f32(arma::uword rows, arma::uword cols, unsigned seed) {
  arma::arma_rng::set_seed(seed);
  arma::fmat x = arma::randu<arma::fmat>(rows, cols) * 2.0f - 1.0f;
  return x;
}

}  // namespace

TEST_CASE("fast::gemm equals the double product to float32 rounding on odd shapes and blocks") {
  struct Shape {
    arma::uword M, K, N;
  };
  for (const Shape s : {Shape{1, 1, 1}, Shape{31, 7, 3}, Shape{33, 65, 9}, Shape{100, 300, 17},
                        Shape{64, 256, 64}, Shape{5, 1000, 1}}) {
    const arma::fmat W = random_f32(s.M, s.K, 1), X = random_f32(s.K, s.N, 2);
    const fast::PackedMatrix P = fast::pack_matrix(W);
    // Exact product of the float32 inputs (every product and partial sum of two float32 values
    // is exact in double to 2^-48 relative, far below float32 rounding).
    const arma::mat want = arma::conv_to<arma::mat>::from(W) * arma::conv_to<arma::mat>::from(X);
    // Error bound of a float32 dot product of K terms: K u sum_k |w_k x_k| with u = 2^-24; the
    // sum of |terms| is at most K here (|w|, |x| <= 1), so abs tol K * K * 6e-8 is rigorous;
    // the check uses the sum of magnitudes of each row-column pair through `bound`.
    const arma::mat bound = arma::abs(arma::conv_to<arma::mat>::from(W)) *
                            arma::abs(arma::conv_to<arma::mat>::from(X)) *
                            (static_cast<double>(s.K) * 0x1p-24);
    for (int variant = 0; variant < 2; ++variant) {
      fast::Options o;
      if (variant == 1) o.mc = 37, o.nc = 5, o.kc = 13;
      for (int threads : {1, 2, 7}) {
        o.threads = threads;
        CAPTURE(s.M);
        CAPTURE(s.K);
        CAPTURE(s.N);
        CAPTURE(threads);
        const arma::fmat Y = fast::gemm(P, X, o);
        const arma::mat err = arma::abs(arma::conv_to<arma::mat>::from(Y) - want);
        CHECK(arma::all(arma::vectorise(err <= bound + 1e-30)));
      }
    }
  }
}

TEST_CASE("fast::gemm gives the same bits for any thread count and accumulates in place") {
  const arma::fmat W = random_f32(77, 301, 3), X = random_f32(301, 45, 4);
  const fast::PackedMatrix P = fast::pack_matrix(W);
  fast::Options o;
  o.mc = 32, o.nc = 8, o.kc = 64;
  o.threads = 1;
  const arma::fmat one = fast::gemm(P, X, o);
  for (int threads : {2, 3, 7}) {
    o.threads = threads;
    const arma::fmat many = fast::gemm(P, X, o);
    CHECK(std::memcmp(one.memptr(), many.memptr(), one.n_elem * sizeof(float)) == 0);
  }
  // accumulate = true adds W X to what Y holds. With one kc slice (kc >= K) the product is
  // formed exactly as before and added once, so Y + W X = 2 W X holds bit for bit.
  o.kc = 512;
  const arma::fmat once = fast::gemm(P, X, o);
  arma::fmat Y = once;
  fast::gemm(P, X.memptr(), X.n_rows, X.n_cols, Y.memptr(), Y.n_rows, true, o);
  check_close(arma::conv_to<arma::mat>::from(Y), 2.0 * arma::conv_to<arma::mat>::from(once),
              {0.0, 0.0}, "Y + W X = 2 W X (doubling is exact)");
}

TEST_CASE("BF16 packing rounds to nearest even, and the BF16 kernel computes with exactly those weights") {
  // bfloat16 keeps 7 stored significand bits: the spacing at 1 is 2^-7. Ties go to even.
  const auto packed_value = [](float w) {
    const fast::PackedMatrix P = fast::pack_matrix(arma::fmat(1, 1, arma::fill::value(w)),
                                                   fast::WeightType::BF16);
    REQUIRE(P.panels_bf16.size() == static_cast<std::size_t>(fast::MR));
    return P.panels_bf16[0];
  };
  CHECK(packed_value(1.0f) == 0x3F80);
  CHECK(packed_value(1.0f + 0x1p-8f) == 0x3F80);         // halfway, to the even 1.0
  CHECK(packed_value(1.0f + 3 * 0x1p-8f) == 0x3F82);     // halfway, to the even 1 + 2^-6
  CHECK(packed_value(1.0f + 0x1p-8f + 0x1p-20f) == 0x3F81);  // just past halfway: up
  CHECK(packed_value(-2.5f) == 0xC020);                  // exactly representable
  CHECK(fast::pack_matrix(arma::fmat(3, 5, arma::fill::ones), fast::WeightType::BF16).bytes() == 30);
  CHECK(fast::pack_matrix(arma::fmat(3, 5, arma::fill::ones)).bytes() == 60);

  // The product with BF16 weights equals the double product of the rounded weights, within the
  // same float32 bound as the F32 kernel: widening a bfloat16 is exact, so only the sums round.
  for (const arma::uword N : {arma::uword{1}, arma::uword{19}}) {
    const arma::fmat W = random_f32(45, 133, 5), X = random_f32(133, N, 6);
    const fast::PackedMatrix P = fast::pack_matrix(W, fast::WeightType::BF16);
    arma::mat W_bf16(W.n_rows, W.n_cols);
    for (arma::uword i = 0; i < W.n_elem; ++i)
      W_bf16(i) = safetensors::decode_bf16(safetensors::encode_bf16(W(i)));
    CHECK(arma::abs(W_bf16 - arma::conv_to<arma::mat>::from(W)).max() > 0);  // rounding happened
    const arma::mat want = W_bf16 * arma::conv_to<arma::mat>::from(X);
    const arma::mat bound = arma::abs(W_bf16) * arma::abs(arma::conv_to<arma::mat>::from(X)) *
                            (133.0 * 0x1p-24);
    fast::Options o;
    o.mc = 37, o.nc = 5, o.kc = 13;
    for (int threads : {1, 3}) {
      o.threads = threads;
      const arma::mat err = arma::abs(arma::conv_to<arma::mat>::from(fast::gemm(P, X, o)) - want);
      CHECK(arma::all(arma::vectorise(err <= bound + 1e-30)));
    }
  }
  CHECK(fast::weight_type_from_string("bf16") == fast::WeightType::BF16);
  CHECK(fast::weight_type_from_string("fp8") == fast::WeightType::FP8);
  CHECK_THROWS_WITH_AS(fast::weight_type_from_string("fp4"), doctest::Contains("expected f32, bf16 or fp8"),
                       std::invalid_argument);
}

TEST_CASE("fast::exp_f32 is within 2 float32 ulps of exp over the range the softmax uses") {
  double worst = 0.0;
  for (int i = -87000; i <= 88000; i += 7) {
    const float x = static_cast<float>(i) / 1000.0f;
    const double want = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::fabs(fast::exp_f32(x) - want) / want);
  }
  CHECK(worst < 2.0 * 0x1p-23);
  CHECK(fast::exp_f32(0.0f) == 1.0f);
}

TEST_CASE("the fast latent cache takes (r_kv + d_rope) floats per token and layer: < 4 GB at 128K") {
  const Config c = fast::bench_config();
  const std::int64_t per_token = c.num_hidden_layers * (c.kv_lora_rank + c.qk_rope_head_dim) * 4;
  // Linear in the context: the same increment for every added token.
  CHECK(fast::cache_bytes(c, 2048) - fast::cache_bytes(c, 1024) == 1024 * per_token);
  CHECK(fast::cache_bytes(c, 131072) - fast::cache_bytes(c, 0) == 131072 * per_token);
  CHECK(fast::cache_bytes(c, 131072) < 4LL * 1000 * 1000 * 1000);
  // The allocation matches the formula: reserve, then fill.
  fast::ModelCache cache = fast::make_cache(c, 300);
  for (auto& layer : cache.layers) layer.append_rows(300);
  CHECK(cache.length() == 300);
  CHECK(cache.bytes_allocated() == fast::cache_bytes(c, 300));
}
