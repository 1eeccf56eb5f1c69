// FP8 weights on the fast path (reference/fast/gemm.hpp WeightType::FP8, reference/fast/pack.hpp):
// the exact widening of e4m3 codes, the block-scaled kernel against the same sum in double on
// shapes with partial 128-blocks, and the whole model packed from FP8 (and BF16) checkpoints
// against the reference on the same checkpoint, on every tiny preset, bit-identical for any
// thread count, and packed the same from the generator as from the checkpoint init-model writes.
//
// Tolerance of the model comparisons: tests/support/fast_check.hpp (1e-5 of the tensor's RMS).
// It applies unchanged because the reference dequantises the same codes and scales exactly
// (q * s in double), so the two sides compute with the same weights and differ by float32
// arithmetic only; the block-scaled sum is another association order of the same products.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <random>

#include "reference/deepseek/checkpoint_writer.hpp"
#include "reference/deepseek/loader.hpp"
#include "reference/fast/gemm.hpp"
#include "reference/fast/pack.hpp"
#include "reference/io/checkpoint.hpp"
#include "reference/io/safetensors.hpp"
#include "tests/support/fast_check.hpp"

using namespace dsr1;
using namespace dsr1::test;

namespace {

// A random [M, K] matrix quantised as `dsr1 init-model --dtype fp8` quantises (quantize_fp8_rows):
// its codes, each row's block scales, and the exact values W = q * s in double.
struct Fp8Matrix {
  std::int64_t M = 0, K = 0, B = 0, n_kb = 0;
  std::vector<std::uint8_t> codes;  // [M, K] row-major
  std::vector<float> row_scales;    // [M, n_kb] row-major
  arma::mat W;                      // [M, K]
};

Fp8Matrix random_fp8(std::int64_t M, std::int64_t K, std::int64_t B, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  Fp8Matrix F;
  F.M = M, F.K = K, F.B = B, F.n_kb = (K + B - 1) / B;
  std::vector<double> values(M * K);
  for (auto& v : values) v = u(rng) / std::sqrt(static_cast<double>(K));
  const std::int64_t n_rb = (M + B - 1) / B;
  std::vector<float> grid(n_rb * F.n_kb);
  F.codes.resize(M * K);
  quantize_fp8_rows(values.data(), M, K, B, F.codes.data(), grid.data());
  F.row_scales.resize(M * F.n_kb);
  F.W.set_size(M, K);
  for (std::int64_t i = 0; i < M; ++i) {
    for (std::int64_t b = 0; b < F.n_kb; ++b) F.row_scales[i * F.n_kb + b] = grid[(i / B) * F.n_kb + b];
    for (std::int64_t k = 0; k < K; ++k)
      F.W(i, k) = safetensors::decode_e4m3(F.codes[i * K + k]) * grid[(i / B) * F.n_kb + k / B];
  }
  return F;
}

fast::PackedMatrix pack(const Fp8Matrix& F) {
  fast::PackedMatrix P = fast::make_packed(F.M, F.K, fast::WeightType::FP8, F.B);
  fast::pack_rows_fp8(P, 0, F.M, F.codes.data(), F.row_scales.data(), "test matrix");
  return P;
}

// Writes the generator's model for `c` as a checkpoint in `dtype` (as `dsr1 init-model` does) and
// returns its directory.
std::string write_checkpoint_of(const Config& c, std::uint64_t seed, safetensors::DType dtype) {
  const std::string dir = fmt::format("{}/fast_fp8_{}_{}_{}", DSR1_BINARY_DIR, c.name,
                                      safetensors::to_string(dtype), seed);
  write_generated_checkpoint(dir, c, seed, dtype, 1);
  return dir;
}

Checkpoint open_checkpoint(const std::string& dir, const Config& c) {
  CheckpointOptions o;
  o.weight_block_size = c.weight_block_size;
  return Checkpoint(dir, o);
}

// tiny-v3 with V3's head dims halved to 64 + 64, so that each head's rows of kv_b_proj start on
// a 128-row block (W_UK_h^T packed as FP8), and widths just past one block (hidden 200, r_q 136,
// r_kv 144, FFN 300 and 130): every matrix has a partial edge block in both directions.
Config aligned_config() {
  Config c = preset("tiny-v3");
  c.name = "tiny-v3-fp8-aligned";
  c.hidden_size = 200;
  c.q_lora_rank = 136;
  c.kv_lora_rank = 144;
  c.qk_nope_head_dim = 64;
  c.v_head_dim = 64;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 2;
  c.intermediate_size = 300;
  c.moe_intermediate_size = 130;
  validate(c);
  return c;
}

}  // namespace

TEST_CASE("e4m3 codes widen to float32 exactly (all 254 finite codes)") {
  int finite = 0;
  for (int q = 0; q < 256; ++q) {
    if ((q & 0x7F) == 0x7F) continue;  // NaN in e4m3fn: refused when packing
    CAPTURE(q);
    CHECK(static_cast<double>(fast::e4m3_to_float(static_cast<std::uint8_t>(q))) ==
          safetensors::decode_e4m3(static_cast<std::uint8_t>(q)));
    ++finite;
  }
  CHECK(finite == 254);
}

TEST_CASE("FP8 gemm equals the block-scaled sum in double on shapes with partial 128-blocks") {
  struct Shape {
    std::int64_t M, K, N, B;
  };
  for (const Shape s : {Shape{1, 1, 1, 128}, Shape{33, 130, 3, 128}, Shape{100, 300, 17, 128},
                        Shape{128, 256, 9, 128}, Shape{200, 129, 1, 128}, Shape{31, 384, 64, 128},
                        Shape{70, 200, 5, 64}}) {
    CAPTURE(s.M);
    CAPTURE(s.K);
    CAPTURE(s.N);
    CAPTURE(s.B);
    const Fp8Matrix F = random_fp8(s.M, s.K, s.B, 3);
    const fast::PackedMatrix P = pack(F);
    CHECK(P.bytes() == s.M * s.K + s.M * F.n_kb * 4);
    arma::arma_rng::set_seed(4);
    const arma::fmat X = arma::randu<arma::fmat>(s.K, s.N) * 2.0f - 1.0f;
    const arma::mat Xd = arma::conv_to<arma::mat>::from(X);
    // The same block-scaled sum in double: sum_b s(i, b) sum_{k in b} q(i, k) X(k, j) = W X
    // with W = q * s exactly.
    const arma::mat want = F.W * Xd;
    // Float32 error of that order of sums: each block sum of at most B products is off by at most
    // B u sum |q x| (u = 2^-24), the scale multiplication adds u |s S_b|, and adding the n_kb
    // scaled block sums n_kb u sum_b |s S_b|; all bounded by (B + n_kb + 1) u sum_k |W(i,k) X(k,j)|.
    const arma::mat bound = arma::abs(F.W) * arma::abs(Xd) *
                            (static_cast<double>(s.B + F.n_kb + 1) * 0x1p-24);
    arma::fmat first;
    for (int variant = 0; variant < 2; ++variant)
      for (int threads : {1, 2, 7}) {
        fast::Options o;
        if (variant == 1) o.mc = 37, o.nc = 5, o.kc = 13;  // kc is not used by FP8 (the slices are the blocks)
        o.threads = threads;
        CAPTURE(variant);
        CAPTURE(threads);
        const arma::fmat Y = fast::gemm(P, X, o);
        const arma::mat err = arma::abs(arma::conv_to<arma::mat>::from(Y) - want);
        CHECK(arma::all(arma::vectorise(err <= bound + 1e-30)));
        if (first.is_empty()) first = Y;
        // The order of the sums depends on the scale blocks only: every variant, the same bits.
        CHECK(std::memcmp(Y.memptr(), first.memptr(), Y.n_elem * sizeof(float)) == 0);
      }
    // Inputs of |x| >= 2^7 take the kernel's other way to the factor 2^120 (gemm.cpp, x_scale):
    // X 2^10 must give exactly 2^10 Y (a power of two commutes with every rounding).
    const arma::fmat Y_big = fast::gemm(P, arma::fmat(X * 1024.0f), fast::Options{});
    const arma::fmat want_big = first * 1024.0f;
    CHECK(std::memcmp(Y_big.memptr(), want_big.memptr(), Y_big.n_elem * sizeof(float)) == 0);
  }
}

TEST_CASE("Every compiled copy of the FP8 kernel (AVX-512, AVX2, baseline) computes the block-scaled sum") {
  // One scale block of one panel through each copy this CPU runs, with and without the factor
  // 2^120 on B, against the double sum; rows 0..31 (and 0..20: a partial panel) so that the
  // widening's row order (gemm.hpp, fp8_slot) is checked row by row.
  const Fp8Matrix F = random_fp8(32, 128, 128, 5);
  const fast::PackedMatrix P = pack(F);
  arma::arma_rng::set_seed(6);
  const arma::fmat X = arma::randu<arma::fmat>(128, 9) * 2.0f - 1.0f;  // [K, N]: panels of 8 + 1 column
  std::vector<float> B(2 * 128 * fast::NR, 0.0f), B_scaled(B.size());  // packed as gemm packs X
  for (std::int64_t j = 0; j < 9; ++j)
    for (std::int64_t k = 0; k < 128; ++k) B[(j / 8) * 128 * 8 + k * 8 + j % 8] = X(k, j);
  for (std::size_t i = 0; i < B.size(); ++i) B_scaled[i] = B[i] * 0x1p120f;
  const arma::mat want = F.W * arma::conv_to<arma::mat>::from(X);
  const arma::mat bound = arma::abs(F.W) * arma::abs(arma::conv_to<arma::mat>::from(X)) * (130.0 * 0x1p-24);
  const auto isas = fast::fp8_kernel_isas();
  CHECK(isas.back() == "x86-64");
  for (const std::string& isa : isas)
    for (bool scaled : {false, true})
      for (std::int64_t m : {32, 21}) {
        CAPTURE(isa);
        CAPTURE(scaled);
        CAPTURE(m);
        arma::fmat Y(32, 9, arma::fill::zeros);
        fast::gemm_panels_fp8_isa(isa, m, 9, 128, P.panel_fp8(0), 128 * fast::MR, fast::MR,
                                  P.panel_scales(0), fast::MR, scaled ? B_scaled.data() : B.data(),
                                  128 * 8, 8, 1, Y.memptr(), 32, false, scaled);
        const arma::mat got = arma::conv_to<arma::mat>::from(Y);
        const arma::mat err = arma::abs(got.rows(0, m - 1) - want.rows(0, m - 1));
        CHECK(arma::all(arma::vectorise(err <= bound.rows(0, m - 1) + 1e-30)));
        if (m < 32) CHECK(arma::all(arma::vectorise(Y.rows(m, 31) == 0.0f)));  // rows past m untouched
      }
  CHECK_THROWS_WITH_AS(fast::gemm_panels_fp8_isa("riscv", 1, 1, 1, nullptr, 0, 0, nullptr, 0, nullptr,
                                                 0, 0, 0, nullptr, 0, false, false),
                       doctest::Contains("no FP8 kernel for 'riscv'"), std::invalid_argument);
}

TEST_CASE("FP8 packing refuses a NaN code and a negative scale, naming the tensor") {
  Fp8Matrix F = random_fp8(3, 5, 128, 1);
  F.codes[7] = 0xFF;
  fast::PackedMatrix P = fast::make_packed(3, 5, fast::WeightType::FP8, 128);
  CHECK_THROWS_WITH_AS(fast::pack_rows_fp8(P, 0, 3, F.codes.data(), F.row_scales.data(), "tensor 'w'"),
                       doctest::Contains("tensor 'w': element (1, 2) is the e4m3 NaN code 0xFF"),
                       std::invalid_argument);
  F.codes[7] = 0;
  F.row_scales[2] = -1.0f;
  CHECK_THROWS_WITH_AS(fast::pack_rows_fp8(P, 0, 3, F.codes.data(), F.row_scales.data(), "tensor 'w'"),
                       doctest::Contains("expected a finite scale >= 0"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(fast::pack_matrix(arma::mat(3, 5, arma::fill::zeros), fast::WeightType::FP8),
                       doctest::Contains("pack_rows_fp8"), std::invalid_argument);
}

TEST_CASE("FP8 fast path matches the reference on every tiny preset written as an FP8 checkpoint") {
  worst_scaled_error = 0.0;
  std::vector<Config> configs;
  for (const char* name : {"tiny-v3", "tiny-v2-lite", "tiny-v2", "tiny-yarn"}) configs.push_back(preset(name));
  configs.push_back(aligned_config());
  for (const Config& c0 : configs) {
    CAPTURE(c0.name);
    const std::uint64_t seed = 6;
    const std::string dir = write_checkpoint_of(c0, seed, safetensors::DType::F8_E4M3);
    const Config c = load_config_json(dir + "/config.json");
    REQUIRE(c.fp8_weights);
    CHECK(fast::stored_weight_type(c) == fast::WeightType::FP8);
    const ModelWeights W = load_model_dir(dir, /*with_mtp=*/false).weights;  // q * s, in double
    const Checkpoint ck = open_checkpoint(dir, c);
    const fast::ModelWeightsF F = fast::pack_weights(ck, c, fast::WeightType::FP8);
    // What is FP8 and what keeps the release's bfloat16.
    CHECK(F.type == fast::WeightType::FP8);
    CHECK(F.layers[0].attn.W_x.type == fast::WeightType::FP8);
    CHECK(F.layers[0].attn.W_O.type == fast::WeightType::FP8);
    CHECK(F.layers[0].dense.W_gate_up.type == fast::WeightType::FP8);
    CHECK(F.layers[1].moe.experts[0].W_down.type == fast::WeightType::FP8);
    CHECK(F.layers[1].moe.W_g.type == fast::WeightType::BF16);
    CHECK(F.W_head.type == fast::WeightType::BF16);
    CHECK(F.E.type == fast::WeightType::BF16);
    const bool aligned = (c.qk_nope_head_dim + c.v_head_dim) % c.weight_block_size == 0;
    CHECK(F.layers[0].attn.W_UK_T[0].type == (aligned ? fast::WeightType::FP8 : fast::WeightType::F32));
    CHECK(F.layers[0].attn.W_UV[0].type == fast::WeightType::FP8);

    // Every traced tensor, both attention paths (37 tokens: flash prefill; 5: key-parallel
    // decode), default and odd block sizes; then prefill + token-by-token decode.
    for (std::int64_t T : {37, 5}) {
      CAPTURE(T);
      check_against_reference(W, F, c, some_tokens(c, T, 8), fast::Options{});
      check_against_reference(W, F, c, some_tokens(c, T, 8), odd_blocks(2));
    }
    const auto tokens = some_tokens(c, 23, 4);
    const arma::mat want = ref::forward(W, c, tokens, 0, nullptr, ref::ForwardOptions{}, nullptr);
    const arma::fmat inc1 = fast::forward_incremental(F, c, tokens, 9, odd_blocks(1), nullptr);
    check_f32(arma::conv_to<arma::mat>::from(inc1), want, c.name + ": prefill 9 + decode (fp8)");

    // Bit-identical for 1, 2 and 3 threads, prefill and incremental decode.
    const arma::fmat one = fast::forward(F, c, tokens, 0, nullptr, odd_blocks(1), nullptr);
    for (int threads : {2, 3}) {
      CAPTURE(threads);
      const arma::fmat many = fast::forward(F, c, tokens, 0, nullptr, odd_blocks(threads), nullptr);
      CHECK(std::memcmp(many.memptr(), one.memptr(), one.n_elem * sizeof(float)) == 0);
      const arma::fmat inc = fast::forward_incremental(F, c, tokens, 9, odd_blocks(threads), nullptr);
      CHECK(std::memcmp(inc.memptr(), inc1.memptr(), inc1.n_elem * sizeof(float)) == 0);
    }

    // The generator's weights packed as FP8 are quantised as init-model quantised the checkpoint:
    // the same codes, scales and bfloat16 bits, matrix by matrix.
    fast::PackOptions two_threads;
    two_threads.threads = 2;
    const fast::ModelWeightsF G = fast::pack_weights(generator_source(c, seed), c, fast::WeightType::FP8, two_threads);
    std::size_t matrices = 0;
    for_each_matrix_pair(F, G, [&](const fast::PackedMatrix& x, const fast::PackedMatrix& y) {
      CHECK(x.type == y.type);
      CHECK(x.panels_fp8 == y.panels_fp8);
      CHECK(x.scales == y.scales);
      CHECK(x.panels_bf16 == y.panels_bf16);
      CHECK(x.panels == y.panels);
      ++matrices;
    });
    CHECK(matrices >= 10);
    CHECK(F.E.bf16 == G.E.bf16);
  }
  MESSAGE(fmt::format("worst |fast - ref| / rms(ref) over all traced tensors (FP8 weights): {:.2e}",
                      worst_scaled_error));
}

TEST_CASE("Packing from a BF16 checkpoint keeps its bits, and an f32 run on an FP8 checkpoint matches the reference") {
  worst_scaled_error = 0.0;
  for (const char* name : {"tiny-v3", "tiny-v2-lite"}) {
    CAPTURE(name);
    const Config c0 = preset(name);
    // BF16 checkpoint, bf16 weights: exact, so the float32 tolerance.
    const std::string dir = write_checkpoint_of(c0, 9, safetensors::DType::BF16);
    const Config c = load_config_json(dir + "/config.json");
    CHECK(fast::stored_weight_type(c) == fast::WeightType::BF16);
    const ModelWeights W = load_model_dir(dir, false).weights;
    const Checkpoint ck = open_checkpoint(dir, c);
    const fast::ModelWeightsF F = fast::pack_weights(ck, c, fast::WeightType::BF16);
    CHECK(F.layers[0].attn.W_UK_T[0].type == fast::WeightType::BF16);
    for (std::int64_t T : {37, 5}) check_against_reference(W, F, c, some_tokens(c, T, 2), odd_blocks(3));
    // ... packed from the checkpoint's bytes, or from the values the loader read: the same bits.
    const fast::ModelWeightsF F_values = fast::convert_weights(W, c, fast::WeightType::BF16);
    for_each_matrix_pair(F, F_values, [&](const fast::PackedMatrix& x, const fast::PackedMatrix& y) {
      CHECK(x.panels_bf16 == y.panels_bf16);
    });
    CHECK(F.E.bf16 == F_values.E.bf16);

    // FP8 checkpoint, f32 weights: every weight q * s rounded to float32 (relative 2^-24 each),
    // far inside the float32 tolerance.
    const std::string dir8 = write_checkpoint_of(c0, 9, safetensors::DType::F8_E4M3);
    const Config c8 = load_config_json(dir8 + "/config.json");
    const ModelWeights W8 = load_model_dir(dir8, false).weights;
    const fast::ModelWeightsF F32 = fast::pack_weights(open_checkpoint(dir8, c8), c8, fast::WeightType::F32);
    CHECK(F32.W_head.type == fast::WeightType::F32);
    CHECK(F32.E.type == fast::WeightType::F32);
    check_against_reference(W8, F32, c8, some_tokens(c8, 37, 3), fast::Options{});
  }
  Config s = preset("tiny-v3");
  s.fp8_weights = false;
  s.torch_dtype = "bfloat16";
  CHECK(fast::stored_weight_type(s) == fast::WeightType::BF16);
  s.torch_dtype = "float32";
  CHECK(fast::stored_weight_type(s) == fast::WeightType::F32);
  s.fp8_weights = true;
  s.torch_dtype = "bfloat16";
  CHECK(fast::stored_weight_type(s) == fast::WeightType::FP8);
  MESSAGE(fmt::format("worst |fast - ref| / rms(ref) (BF16 checkpoint, FP8 checkpoint as f32): {:.2e}",
                      worst_scaled_error));
}

TEST_CASE("Packing from a checkpoint names the tensor that does not fit the config") {
  const Config c0 = preset("tiny-v3");
  const std::string dir = write_checkpoint_of(c0, 10, safetensors::DType::F8_E4M3);
  Config c = load_config_json(dir + "/config.json");
  c.weight_block_size = 16;  // the scale grids were written for blocks of 128
  CHECK_THROWS_WITH_AS(fast::pack_weights(open_checkpoint(dir, c), c, fast::WeightType::FP8),
                       doctest::Contains("tensor 'model.layers.0.self_attn.q_a_proj.weight_scale_inv' "
                                         "has shape [1, 1], expected [2, 4]"),
                       std::runtime_error);
}
