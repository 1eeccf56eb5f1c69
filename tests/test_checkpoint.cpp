// Checkpoints: safetensors hardening, FP8 block dequantization, sharded indexes, and the
// loader's split/re-fuse of HF tensors, each malformed input rejected with a precise message.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "reference/io/checkpoint.hpp"
#include "reference/deepseek/config.hpp"
#include "reference/io/generator.hpp"
#include "reference/deepseek/loader.hpp"
#include "reference/io/safetensors.hpp"
#include "tests/support/check.hpp"
#include "tests/support/errors.hpp"

namespace fs = std::filesystem;
namespace st = dsr1::safetensors;
using dsr1::test::check_close;
using dsr1::test::exact_vs_ref;

namespace {

// A fresh, empty directory for one test case.
fs::path scratch(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("dsr1_test_checkpoint_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// Writes a safetensors file byte by byte: 8-byte little-endian header length, the header text
// exactly as given, then `data` (so a test can say precisely what is wrong with the file).
void write_raw(const fs::path& path, const std::string& header, const std::string& data,
               std::uint64_t header_len_override = 0) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const std::uint64_t n = header_len_override ? header_len_override : header.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xFF);
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

using dsr1::test::contains;
using dsr1::test::error_of;

// Every matrix of two ModelWeights, compared element by element.
void check_weights_equal(const dsr1::ModelWeights& a, const dsr1::ModelWeights& b, dsr1::test::Tol tol) {
  check_close(a.E, b.E, tol, "E");
  check_close(a.W_head, b.W_head, tol, "W_head");
  check_close(a.w_final_norm, b.w_final_norm, tol, "w_final_norm");
  REQUIRE(a.layers.size() == b.layers.size());
  auto block = [&](const dsr1::BlockWeights& x, const dsr1::BlockWeights& y, const std::string& p) {
    check_close(x.w_attn_norm, y.w_attn_norm, tol, p + "w_attn_norm");
    check_close(x.w_ffn_norm, y.w_ffn_norm, tol, p + "w_ffn_norm");
    check_close(x.attn.W_DQ, y.attn.W_DQ, tol, p + "W_DQ");
    check_close(x.attn.w_q, y.attn.w_q, tol, p + "w_q");
    check_close(x.attn.W_UQ, y.attn.W_UQ, tol, p + "W_UQ");
    check_close(x.attn.W_QR, y.attn.W_QR, tol, p + "W_QR");
    check_close(x.attn.W_DKV, y.attn.W_DKV, tol, p + "W_DKV");
    check_close(x.attn.W_KR, y.attn.W_KR, tol, p + "W_KR");
    check_close(x.attn.w_kv, y.attn.w_kv, tol, p + "w_kv");
    check_close(x.attn.W_UK, y.attn.W_UK, tol, p + "W_UK");
    check_close(x.attn.W_UV, y.attn.W_UV, tol, p + "W_UV");
    check_close(x.attn.W_O, y.attn.W_O, tol, p + "W_O");
    REQUIRE(x.is_moe == y.is_moe);
    if (!x.is_moe) {
      check_close(x.dense.W_gate, y.dense.W_gate, tol, p + "W_gate");
      check_close(x.dense.W_up, y.dense.W_up, tol, p + "W_up");
      check_close(x.dense.W_down, y.dense.W_down, tol, p + "W_down");
      return;
    }
    check_close(x.moe.W_g, y.moe.W_g, tol, p + "W_g");
    check_close(x.moe.b, y.moe.b, tol, p + "b");
    REQUIRE(x.moe.experts.size() == y.moe.experts.size());
    for (std::size_t j = 0; j < x.moe.experts.size(); ++j) {
      check_close(x.moe.experts[j].W_gate, y.moe.experts[j].W_gate, tol, p + "expert.W_gate");
      check_close(x.moe.experts[j].W_down, y.moe.experts[j].W_down, tol, p + "expert.W_down");
    }
    REQUIRE(x.moe.shared.has_value() == y.moe.shared.has_value());
    if (x.moe.shared) check_close(x.moe.shared->W_up, y.moe.shared->W_up, tol, p + "shared.W_up");
  };
  for (std::size_t l = 0; l < a.layers.size(); ++l) block(a.layers[l], b.layers[l], fmt::format("layers.{}.", l));
  REQUIRE(a.mtp.has_value() == b.mtp.has_value());
  if (a.mtp) {
    check_close(a.mtp->W_eh, b.mtp->W_eh, tol, "mtp.W_eh");
    check_close(a.mtp->w_enorm, b.mtp->w_enorm, tol, "mtp.w_enorm");
    check_close(a.mtp->w_head_norm, b.mtp->w_head_norm, tol, "mtp.w_head_norm");
    block(a.mtp->block, b.mtp->block, "mtp.block.");
  }
}

}  // namespace

TEST_CASE("write_checkpoint then load_model_dir returns the same weights (F64, F32, single file and shards)") {
  for (const char* name : {"tiny-v3", "tiny-v2-lite", "tiny-v2"}) {
    CAPTURE(name);
    const dsr1::Config cfg = dsr1::preset(name);
    const dsr1::ModelWeights w = dsr1::generate_weights(cfg, 7);
    for (int shards : {1, 3}) {
      CAPTURE(shards);
      const fs::path dir = scratch(fmt::format("rt_{}_{}", name, shards));
      // The generator's values are float32 numbers, so F32 and F64 both store them exactly.
      dsr1::write_checkpoint(dir.string(), cfg, w, shards == 1 ? st::DType::F64 : st::DType::F32, shards);
      const auto loaded = dsr1::load_model_dir(dir.string(), cfg.num_nextn_predict_layers > 0);
      CHECK(loaded.config.num_hidden_layers == cfg.num_hidden_layers);
      check_weights_equal(loaded.weights, w, {0, 0});
      fs::remove_all(dir);
    }
  }
}

namespace {

// A model small enough that every dtype's encoder (F16's is a search) runs in milliseconds:
// one dense layer, one head.
dsr1::Config micro_config() {
  dsr1::Config c = dsr1::preset("tiny-v3");
  c.name = "micro";
  c.vocab_size = 16;
  c.hidden_size = 8;
  c.intermediate_size = 12;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 2;
  c.q_lora_rank = 6;
  c.kv_lora_rank = 4;
  c.qk_nope_head_dim = 2;
  c.qk_rope_head_dim = 2;
  c.v_head_dim = 3;
  c.n_routed_experts = 0;
  c.first_k_dense_replace = 1;
  c.num_nextn_predict_layers = 0;
  dsr1::validate(c);
  return c;
}

// The value a dtype stores for x (round to nearest even), decoded back.
double stored(double x, st::DType d) {
  switch (d) {
    case st::DType::F64: return x;
    case st::DType::F32: return static_cast<float>(x);
    case st::DType::BF16: return st::decode_bf16(st::encode_bf16(static_cast<float>(x)));
    case st::DType::F16: return st::decode_f16(st::encode_f16(static_cast<float>(x)));
    default: return std::nan("");
  }
}

arma::mat stored(const arma::mat& x, st::DType d) {
  arma::mat y = x;
  y.transform([d](double v) { return stored(v, d); });
  return y;
}

}  // namespace

TEST_CASE("checkpoint round trip for every dtype stores each value as the dtype rounds it") {
  const dsr1::Config cfg = micro_config();
  const dsr1::ModelWeights w = dsr1::generate_weights(cfg, 11);
  for (st::DType d : {st::DType::F64, st::DType::F32, st::DType::BF16, st::DType::F16}) {
    CAPTURE(st::to_string(d));
    const fs::path dir = scratch("dtype_" + st::to_string(d));
    dsr1::write_checkpoint(dir.string(), cfg, w, d);
    const dsr1::Checkpoint ck(dir.string());
    CHECK(ck.dtype("model.layers.0.self_attn.o_proj.weight") == d);
    const auto m = dsr1::load_model_dir(dir.string(), false);
    check_close(m.weights.E, stored(w.E, d), {0, 0}, "E");
    check_close(m.weights.layers[0].attn.W_UV, stored(w.layers[0].attn.W_UV, d), {0, 0}, "W_UV");
    check_close(m.weights.layers[0].dense.W_down, stored(w.layers[0].dense.W_down, d), {0, 0}, "W_down");
    check_close(m.weights.w_final_norm, stored(w.w_final_norm, d), {0, 0}, "w_final_norm");
    fs::remove_all(dir);
  }
}

TEST_CASE("FP8 checkpoint: e4m3 weights with block scales, the rest BF16, within e4m3's rounding") {
  const dsr1::Config cfg = dsr1::preset("tiny-v3");
  const dsr1::ModelWeights w = dsr1::generate_weights(cfg, 5);
  const fs::path dir = scratch("fp8");
  dsr1::write_checkpoint(dir.string(), cfg, w, st::DType::F8_E4M3, 2);
  const auto m = dsr1::load_model_dir(dir.string(), true);
  CHECK(m.config.fp8_weights);
  const dsr1::Checkpoint ck(dir.string());
  const std::string kv_a = "model.layers.1.self_attn.kv_a_proj_with_mqa.weight";
  CHECK(ck.dtype(kv_a) == st::DType::F8_E4M3);
  CHECK(ck.shape(kv_a + "_scale_inv") == std::vector<std::uint64_t>{1, 1});  // ceil(32/128), ceil(64/128)
  CHECK(ck.dtype("model.layers.1.mlp.gate.weight") == st::DType::BF16);
  CHECK(ck.dtype("model.layers.1.mlp.gate.e_score_correction_bias") == st::DType::F32);
  CHECK(ck.dtype("model.layers.3.eh_proj.weight") == st::DType::BF16);
  // e4m3 keeps 3 mantissa bits: a relative error of at most 2^-4 for normal values, and an
  // absolute error of at most half the subnormal step (2^-10 times the scale) below 2^-6.
  auto check_fp8 = [](const arma::mat& got, const arma::mat& want, const char* what) {
    const double s = arma::abs(want).max() / 448.0;
    CAPTURE(what);
    CHECK(arma::approx_equal(got, want, "absdiff", 0.0) == false);  // it is quantized
    const arma::mat bound = std::ldexp(1.0, -4) * arma::abs(want) + std::ldexp(1.0, -10) * s;
    CHECK(arma::all(arma::vectorise(arma::abs(got - want) <= bound)));
  };
  check_fp8(m.weights.layers[1].attn.W_DKV, w.layers[1].attn.W_DKV, "W_DKV");
  check_fp8(m.weights.layers[2].moe.experts[5].W_down, w.layers[2].moe.experts[5].W_down, "expert 5 W_down");
  check_fp8(m.weights.mtp->block.attn.W_UQ, w.mtp->block.attn.W_UQ, "mtp W_UQ");
  check_close(m.weights.layers[1].moe.W_g, stored(w.layers[1].moe.W_g, st::DType::BF16), {0, 0}, "W_g");
  check_close(m.weights.layers[1].moe.b, w.layers[1].moe.b, {0, 0}, "b (F32, exact)");
  fs::remove_all(dir);
}

TEST_CASE("load_weights splits the fused tensors per spec §4.2 (checked against the raw HF tensors)") {
  const dsr1::Config c = dsr1::preset("tiny-v3");
  const std::uint64_t seed = 3;
  const dsr1::ModelWeights w = dsr1::generate_weights(c, seed);
  const std::uint64_t n_h = 4, d_nope = 16, d_rope = 8, d_v = 16, r_q = 32, r_kv = 24, d = 64;
  // Element (row, col) of HF tensor `name` with `in` columns, straight from the generator.
  auto hf = [&](const std::string& name, std::uint64_t row, std::uint64_t col, std::uint64_t in) {
    return static_cast<double>(dsr1::generator_value(seed, name, row * in + col, in));
  };
  const std::string p = "model.layers.1.self_attn.";
  for (std::uint64_t i = 0; i < n_h; ++i)
    for (std::uint64_t col : {std::uint64_t{0}, r_q - 1}) {
      CHECK(w.layers[1].attn.W_UQ(i * d_nope + 3, col) == hf(p + "q_b_proj.weight", i * (d_nope + d_rope) + 3, col, r_q));
      CHECK(w.layers[1].attn.W_QR(i * d_rope + 5, col) ==
            hf(p + "q_b_proj.weight", i * (d_nope + d_rope) + d_nope + 5, col, r_q));
    }
  for (std::uint64_t i = 0; i < n_h; ++i) {
    CHECK(w.layers[1].attn.W_UK(i * d_nope + 15, 7) == hf(p + "kv_b_proj.weight", i * (d_nope + d_v) + 15, 7, r_kv));
    CHECK(w.layers[1].attn.W_UV(i * d_v + 0, 7) == hf(p + "kv_b_proj.weight", i * (d_nope + d_v) + d_nope, 7, r_kv));
  }
  CHECK(w.layers[1].attn.W_DKV(r_kv - 1, 9) == hf(p + "kv_a_proj_with_mqa.weight", r_kv - 1, 9, d));
  CHECK(w.layers[1].attn.W_KR(0, 9) == hf(p + "kv_a_proj_with_mqa.weight", r_kv, 9, d));
  CHECK(w.layers[1].attn.W_O(2, 33) == hf(p + "o_proj.weight", 2, 33, n_h * d_v));
  CHECK(w.E(10, 77) == hf("model.embed_tokens.weight", 77, 10, d));  // column v embeds token v
  CHECK(w.W_head(77, 10) == hf("lm_head.weight", 77, 10, d));
  CHECK(w.mtp->W_eh(1, 100) == hf("model.layers.3.eh_proj.weight", 1, 100, 2 * d));
  CHECK(w.layers[2].moe.experts[7].W_up(31, 63) == hf("model.layers.2.mlp.experts.7.up_proj.weight", 31, 63, d));
  // V2-Lite: one q_proj, same head-major layout.
  const dsr1::Config lite = dsr1::preset("tiny-v2-lite");
  const dsr1::ModelWeights wl = dsr1::generate_weights(lite, seed);
  CHECK(wl.layers[0].attn.W_DQ.is_empty());
  CHECK(wl.layers[0].attn.W_QR(2 * d_rope + 1, 40) ==
        hf("model.layers.0.self_attn.q_proj.weight", 2 * (d_nope + d_rope) + d_nope + 1, 40, d));
  CHECK(wl.layers[1].moe.b.is_empty());
}

TEST_CASE("e4m3 decodes every class and re-encodes every finite code to itself") {
  CHECK(st::decode_e4m3(0x07) == 7 * std::ldexp(1.0, -9));  // largest subnormal
  CHECK(st::decode_e4m3(0x09) == 1.125 * std::ldexp(1.0, -6));
  CHECK(st::decode_e4m3(0x80) == 0.0);
  CHECK(std::signbit(st::decode_e4m3(0x80)));
  CHECK(st::decode_e4m3(0xFE) == -448.0);
  double previous = -1;
  for (int b = 0; b < 0x7F; ++b) {  // 0x00 .. 0x7E: non-negative, strictly increasing
    CAPTURE(b);
    const double v = st::decode_e4m3(static_cast<std::uint8_t>(b));
    CHECK(v > previous);
    previous = v;
    CHECK(st::encode_e4m3(static_cast<float>(v)) == b);
    CHECK(st::decode_e4m3(static_cast<std::uint8_t>(b | 0x80)) == -v);
  }
}

TEST_CASE("FP8 block dequantization multiplies per 128x128 block, edge blocks included (hand values)") {
  // A 130 x 129 weight: blocks (0,0) full, (0,1) 128 x 1, (1,0) 2 x 128, (1,1) 2 x 1.
  // Every code is 0x38 (= 1.0) except [1][1] = 0x01 (2^-9) and [129][128] = 0xB8 (-1.0).
  const std::uint64_t rows = 130, cols = 129;
  std::string wq(rows * cols, static_cast<char>(0x38));
  wq[1 * cols + 1] = 0x01;
  wq[129 * cols + 128] = static_cast<char>(0xB8);
  const float scale[4] = {0.5f, 2.0f, 4.0f, 0.25f};  // S = [[0.5, 2], [4, 0.25]]
  std::string sbytes(16, '\0');
  std::memcpy(sbytes.data(), scale, 16);
  const std::string header = fmt::format(
      R"({{"w.weight":{{"dtype":"F8_E4M3","shape":[130,129],"data_offsets":[0,{}]}},)"
      R"("w.weight_scale_inv":{{"dtype":"F32","shape":[2,2],"data_offsets":[{},{}]}}}})",
      rows * cols, rows * cols, rows * cols + 16);
  const fs::path dir = scratch("fp8_hand");
  write_raw(dir / "model.safetensors", header, wq + sbytes);

  const auto W = dsr1::Checkpoint(dir.string()).read("w.weight").data;
  auto at = [&](const std::vector<double>& v, std::uint64_t r, std::uint64_t c) { return v[r * cols + c]; };
  CHECK(at(W, 0, 0) == 0.5);          // block (0,0)
  CHECK(at(W, 127, 127) == 0.5);      // last element of the full block
  CHECK(at(W, 1, 1) == std::ldexp(1.0, -10));  // subnormal 2^-9 * 0.5
  CHECK(at(W, 0, 128) == 2.0);        // column edge block (0,1)
  CHECK(at(W, 128, 0) == 4.0);        // row edge block (1,0)
  CHECK(at(W, 129, 127) == 4.0);
  CHECK(at(W, 128, 128) == 0.25);     // corner edge block (1,1)
  CHECK(at(W, 129, 128) == -0.25);

  // The two conformance faults of P13 give exactly the wrong values they describe.
  dsr1::CheckpointOptions divide;
  divide.faults.fp8_scale_divide = true;
  const auto Wd = dsr1::Checkpoint(dir.string(), divide).read("w.weight").data;
  CHECK(at(Wd, 0, 0) == 2.0);
  CHECK(at(Wd, 128, 128) == 4.0);
  dsr1::CheckpointOptions skip;
  skip.faults.fp8_skip_edge_blocks = true;
  const auto Ws = dsr1::Checkpoint(dir.string(), skip).read("w.weight").data;
  CHECK(at(Ws, 0, 0) == 0.5);   // full blocks still scaled
  CHECK(at(Ws, 0, 128) == 1.0); // edge blocks left unscaled
  CHECK(at(Ws, 128, 0) == 1.0);
  CHECK(at(Ws, 129, 128) == -1.0);

  // A scale grid of the wrong shape names the tensor and the ceil-sized expectation.
  const std::string bad_header = fmt::format(
      R"({{"w.weight":{{"dtype":"F8_E4M3","shape":[130,129],"data_offsets":[0,{}]}},)"
      R"("w.weight_scale_inv":{{"dtype":"F32","shape":[1,4],"data_offsets":[{},{}]}}}})",
      rows * cols, rows * cols, rows * cols + 16);
  write_raw(dir / "model.safetensors", bad_header, wq + sbytes);
  const std::string err = error_of([&] { dsr1::Checkpoint(dir.string()).read("w.weight"); });
  CHECK(contains(err, "w.weight_scale_inv"));
  CHECK(contains(err, "[ceil(130/128), ceil(129/128)] = [2, 2]"));

  // An FP8 weight without its scale.
  write_raw(dir / "model.safetensors",
            fmt::format(R"({{"w.weight":{{"dtype":"F8_E4M3","shape":[130,129],"data_offsets":[0,{}]}}}})", rows * cols),
            wq);
  const std::string missing = error_of([&] { dsr1::Checkpoint(dir.string()).read("w.weight"); });
  CHECK(contains(missing, "'w.weight'"));
  CHECK(contains(missing, "without its scale tensor 'w.weight_scale_inv'"));
  fs::remove_all(dir);
}

TEST_CASE("malformed safetensors files are rejected naming the file, the tensor and the expectation") {
  const fs::path dir = scratch("hostile");
  const fs::path f = dir / "x.safetensors";
  const std::string four(4, '\0'), sixteen(16, '\0');
  struct Case {
    const char* what;
    std::string header;
    std::string data;
    std::uint64_t len_override;
    std::vector<std::string> expect;
  };
  const std::vector<Case> cases = {
      {"header length past the file", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", four, 4096,
       {"header length 4096 runs past the end of the file"}},
      {"bad JSON", R"({"a":{"dtype":"F32","shape":[1],)", four, 0, {"not valid JSON"}},
      {"header not an object", "[1, 2, 3]", "", 0, {"not an object"}},
      {"offsets out of range", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", four, 0,
       {"tensor 'a'", "out of range", "data section is 4 bytes"}},
      {"offsets reversed", R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", four, 0,
       {"tensor 'a'", "out of range"}},
      {"span does not match shape", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", four, 0,
       {"tensor 'a'", "span 4 bytes", "needs 8"}},
      {"overlapping neighbours", R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       sixteen, 0, {"'a'", "'b'", "overlap"}},
      // A large tensor containing a later one, with an empty tensor sorted between them:
      // comparing neighbours only would see no overlap.
      {"nested overlap behind an empty tensor",
       R"({"big":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"empty":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"inner":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
       sixteen, 0, {"'big'", "'inner'", "overlap"}},
      {"unknown dtype", R"({"a":{"dtype":"F8_E5M2","shape":[1],"data_offsets":[0,1]}})", four, 0,
       {"tensor 'a'", "unknown dtype 'F8_E5M2'", "expected one of"}},
      {"shape product overflows", R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})",
       four, 0, {"tensor 'a'", "overflows 64 bits"}},
      {"byte size overflows", R"({"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,4]}})",
       four, 0, {"tensor 'a'", "overflows 64 bits"}},
      {"negative shape", R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", four, 0,
       {"tensor 'a'", "non-negative integers"}},
      {"missing data_offsets", R"({"a":{"dtype":"F32","shape":[1]}})", four, 0,
       {"tensor 'a'", "dtype, shape, data_offsets"}},
      {"tensor named twice",
       R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       sixteen, 0, {"'a' twice"}},
  };
  for (const auto& k : cases) {
    CAPTURE(k.what);
    write_raw(f, k.header, k.data, k.len_override);
    const std::string err = error_of([&] { st::File file(f.string()); });
    CHECK(contains(err, f.string()));
    for (const auto& e : k.expect) {
      CAPTURE(e);
      CHECK(contains(err, e));
    }
  }
  // Too short for the length field.
  {
    std::ofstream out(f, std::ios::binary | std::ios::trunc);
    out << "abc";
  }
  CHECK(contains(error_of([&] { st::File file(f.string()); }), "too short"));
  // A directory is not a safetensors file.
  CHECK(contains(error_of([&] { st::File file(dir.string()); }), "not a regular file"));

  // Holes in the data section are allowed (alignment padding); the values are where the
  // offsets say.
  const float vals[3] = {1.5f, -2.0f, 0.25f};
  std::string data(16, '\0');
  std::memcpy(data.data(), &vals[0], 4);
  std::memcpy(data.data() + 8, &vals[1], 8);
  write_raw(f, R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", data);
  st::File ok(f.string());
  CHECK(ok.read("a") == std::vector<double>{1.5});
  CHECK(ok.read("b") == std::vector<double>{-2.0, 0.25});
  CHECK(contains(error_of([&] { ok.read("c"); }), "no tensor named 'c'"));
  fs::remove_all(dir);
}

TEST_CASE("a sharded index is validated: missing shards, wrong mapping, unlisted tensors, paths") {
  const dsr1::Config cfg = micro_config();
  const dsr1::ModelWeights w = dsr1::generate_weights(cfg, 2);
  const fs::path dir = scratch("index");
  dsr1::write_checkpoint(dir.string(), cfg, w, st::DType::F32, 2);
  REQUIRE(fs::exists(dir / "model-00001-of-00002.safetensors"));
  REQUIRE(fs::exists(dir / "model-00002-of-00002.safetensors"));
  const dsr1::Checkpoint good(dir.string());
  CHECK(good.num_files() == 2);
  CHECK(good.file_of("model.embed_tokens.weight") != good.file_of("lm_head.weight"));

  const fs::path index = dir / "model.safetensors.index.json";
  std::string text;
  {
    std::ifstream in(index);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto with_index = [&](const std::string& t) {
    {
      std::ofstream out(index, std::ios::trunc);
      out << t;
    }
    return error_of([&] { dsr1::Checkpoint ck(dir.string()); });
  };
  auto replaced = [&](const std::string& from, const std::string& to) {
    std::string t = text;
    const auto at = t.find(from);
    REQUIRE(at != std::string::npos);
    t.replace(at, from.size(), to);
    return t;
  };
  std::string e = with_index("{\"weight_map\": ");
  CHECK(contains(e, index.string()));
  CHECK(contains(e, "not valid JSON"));
  e = with_index("{\"metadata\": {}}");
  CHECK(contains(e, "weight_map"));
  // The embedding mapped to a shard that does not exist.
  e = with_index(replaced("\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"",
                          "\"model.embed_tokens.weight\": \"model-00009-of-00009.safetensors\""));
  CHECK(contains(e, "'model.embed_tokens.weight'"));
  CHECK(contains(e, "does not exist"));
  // Mapped to the other shard, which does not hold it.
  e = with_index(replaced("\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"",
                          "\"model.embed_tokens.weight\": \"model-00002-of-00002.safetensors\""));
  CHECK(contains(e, "'model.embed_tokens.weight'"));
  CHECK(contains(e, "has no such tensor"));
  // A path outside the directory.
  e = with_index(replaced("\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"",
                          "\"model.embed_tokens.weight\": \"../model-00001-of-00002.safetensors\""));
  CHECK(contains(e, "plain file name"));
  // A tensor of a shard that the index does not list.
  e = with_index(replaced("\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\",", ""));
  CHECK(contains(e, "'model.embed_tokens.weight'"));
  CHECK(contains(e, "does not list"));
  // The loader then reports what is missing.
  with_index(text);
  fs::remove(dir / "model.safetensors.index.json");
  CHECK(contains(error_of([&] { dsr1::Checkpoint ck(dir.string()); }), "model.safetensors.index.json"));
  fs::remove_all(dir);
}

TEST_CASE("load_weights rejects missing tensors, wrong shapes, foreign tensors and bad values") {
  const dsr1::Config cfg = micro_config();
  const dsr1::ModelWeights w = dsr1::generate_weights(cfg, 4);
  const fs::path dir = scratch("loader_errors");
  dsr1::write_checkpoint(dir.string(), cfg, w, st::DType::F32);
  const dsr1::Checkpoint ck(dir.string());

  // A config with a wider KV latent: kv_a_proj is [r_kv + d_rope, d] = [6, 8], expected [7, 8].
  dsr1::Config wide = cfg;
  wide.kv_lora_rank = 5;
  std::string e = error_of([&] { dsr1::load_weights(wide, ck, false); });
  CHECK(contains(e, dir.string()));
  CHECK(contains(e, "'model.layers.0.self_attn.kv_a_proj_with_mqa.weight'"));
  CHECK(contains(e, "has shape [6, 8], expected [7, 8]"));

  // A config with more layers than the checkpoint holds.
  dsr1::Config more = cfg;
  more.num_hidden_layers = 2;
  more.first_k_dense_replace = 2;
  e = error_of([&] { dsr1::load_weights(more, ck, false); });
  CHECK(contains(e, "missing tensor 'model.layers.1.input_layernorm.weight'"));
  CHECK(contains(e, "expected shape [8]"));

  // MTP asked of a config without it.
  CHECK(contains(error_of([&] { dsr1::load_weights(cfg, ck, true); }), "num_nextn_predict_layers = 0"));

  // Rewrite the file with an extra layer's tensor, an I32 weight, and a NaN.
  auto tensors = dsr1::weights_to_tensors(cfg, w, st::DType::F32);
  auto rewrite = [&](std::vector<st::NamedTensor> t) {
    st::write((dir / "model.safetensors").string(), t);
    return dsr1::Checkpoint(dir.string());
  };
  {
    auto t = tensors;
    t.push_back({"model.layers.7.input_layernorm.weight", {8}, std::vector<double>(8, 1.0), st::DType::F32});
    const auto extra = rewrite(t);
    e = error_of([&] { dsr1::load_weights(cfg, extra, false); });
    CHECK(contains(e, "'model.layers.7.input_layernorm.weight'"));
    CHECK(contains(e, "does not describe"));
  }
  {
    auto t = tensors;
    for (auto& x : t)
      if (x.name == "model.norm.weight") x.dtype = st::DType::I32;
    const auto ints = rewrite(t);
    e = error_of([&] { dsr1::load_weights(cfg, ints, false); });
    CHECK(contains(e, "'model.norm.weight'"));
    CHECK(contains(e, "dtype I32, expected a float dtype"));
  }
  {
    auto t = tensors;
    for (auto& x : t)
      if (x.name == "model.layers.0.self_attn.o_proj.weight") x.data[5] = std::nan("");
    const auto nan = rewrite(t);
    e = error_of([&] { dsr1::load_weights(cfg, nan, false); });
    CHECK(contains(e, "'model.layers.0.self_attn.o_proj.weight'"));
    CHECK(contains(e, "element 5 is nan"));
  }
  {
    auto t = tensors;
    t.erase(std::remove_if(t.begin(), t.end(), [](const st::NamedTensor& x) { return x.name == "lm_head.weight"; }),
            t.end());
    const auto missing = rewrite(t);
    e = error_of([&] { dsr1::load_weights(cfg, missing, false); });
    CHECK(contains(e, "missing tensor 'lm_head.weight' (expected shape [16, 8])"));
  }
  fs::remove_all(dir);
}
