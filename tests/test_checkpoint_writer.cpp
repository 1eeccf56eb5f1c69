// The streaming checkpoint writer: safetensors::StreamWriter, the fast F16/e4m3 encoders, and
// write_generated_checkpoint, which must write byte for byte what the in-memory path
// (write_checkpoint of generate_weights) writes, load as the generator's weights, refuse bad
// arguments clearly, and leave no complete-looking checkpoint when a write fails midway.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>

#include "reference/deepseek/checkpoint_writer.hpp"
#include "reference/deepseek/config.hpp"
#include "reference/deepseek/loader.hpp"
#include "reference/io/checkpoint.hpp"
#include "reference/io/generator.hpp"
#include "reference/io/safetensors.hpp"
#include "reference/io/safetensors_writer.hpp"
#include "tests/support/errors.hpp"

namespace fs = std::filesystem;
namespace st = dsr1::safetensors;
using dsr1::Config;

namespace {

// A fresh, empty directory for one test case.
fs::path scratch(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("dsr1_test_checkpoint_writer_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::string file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The file names in `dir`, sorted.
std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

using dsr1::test::contains;
using dsr1::test::error_of;

std::vector<Config> tiny_presets() {
  std::vector<Config> out;
  for (const auto& name : dsr1::preset_names())
    if (name.rfind("tiny-", 0) == 0) out.push_back(dsr1::preset(name));
  return out;
}

// tiny-v3 with dimensions past 128, so FP8 weights have several row and column blocks, full
// ones and partial edge ones (300 = 2 * 128 + 44, 136 = 128 + 8), and the embedding (3500 x
// 300 = 1050000 values) spans two row blocks of about 2^20 = 1048576 values.
Config wide_config(std::int64_t vocab = 3500) {
  Config c = dsr1::preset("tiny-v3");
  c.name = "tiny-v3-wide";
  c.vocab_size = vocab;
  c.num_nextn_predict_layers = 0;
  c.hidden_size = 300;
  c.intermediate_size = 260;
  c.moe_intermediate_size = 136;
  c.q_lora_rank = 136;
  c.kv_lora_rank = 130;
  c.num_hidden_layers = 2;
  return c;
}

// Every file of `got` equals the file of that name in `want`, and neither has more files.
void check_same_files(const fs::path& got, const fs::path& want) {
  REQUIRE(listing(got) == listing(want));
  for (const auto& name : listing(want)) {
    CAPTURE(name);
    const std::string g = file_bytes(got / name), w = file_bytes(want / name);
    CHECK(g.size() == w.size());
    CHECK_MESSAGE(g == w, name, " differs at byte ",
                  std::mismatch(g.begin(), g.end(), w.begin(), w.end()).first - g.begin());
  }
}

const st::DType kDTypes[] = {st::DType::F64, st::DType::F32, st::DType::BF16, st::DType::F16,
                             st::DType::F8_E4M3};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Encoders

// Every input where rounding can go either way: each code's value, the midpoints between
// neighbouring codes (exact in float32: e4m3 and F16 have fewer bits), and the floats just
// above and below both, with either sign; plus zeros, NaN, infinities and overflow.
std::vector<float> rounding_boundaries(const std::vector<double>& codes_values) {
  std::vector<float> xs = {0.0f, -0.0f, std::numeric_limits<float>::quiet_NaN(),
                           std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                           std::numeric_limits<float>::denorm_min(), 1e-30f, 1e30f, 3.4e38f};
  for (std::size_t i = 0; i < codes_values.size(); ++i) {
    std::vector<double> points = {codes_values[i]};
    if (i + 1 < codes_values.size()) points.push_back((codes_values[i] + codes_values[i + 1]) / 2);
    for (double p : points) {
      const float f = static_cast<float>(p);
      REQUIRE(static_cast<double>(f) == p);  // the midpoint itself must be a float
      for (float x : {f, std::nextafter(f, 0.0f), std::nextafter(f, 1e38f)}) {
        xs.push_back(x);
        xs.push_back(-x);
      }
    }
  }
  return xs;
}

TEST_CASE("encode_e4m3_fast equals encode_e4m3 at every rounding boundary and on random floats") {
  std::vector<double> values;  // every finite non-negative e4m3 value, in code order
  for (int b = 0; b < 0x7F; ++b) values.push_back(st::decode_e4m3(static_cast<std::uint8_t>(b)));
  values.push_back(480.0);  // where 0x7F would be without NaN: 464 is the last midpoint that matters
  std::vector<float> xs = rounding_boundaries(values);
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; ++i) {  // random bit patterns: every exponent, NaNs included
    const std::uint32_t bits = rng();
    float x;
    std::memcpy(&x, &bits, 4);
    xs.push_back(x);
  }
  int mismatches = 0;
  for (float x : xs)
    if (st::encode_e4m3_fast(x) != st::encode_e4m3(x)) {
      if (++mismatches <= 5) FAIL_CHECK("x = ", x, ": fast ", int(st::encode_e4m3_fast(x)), ", search ", int(st::encode_e4m3(x)));
    }
  CHECK(mismatches == 0);
  CHECK(xs.size() > 200000);
}

TEST_CASE("encode_f16_fast equals encode_f16 at the rounding boundaries of a spread of codes") {
  // encode_f16 searches all 31744 finite codes per call, so it checks the boundaries around
  // every 61st code (and the subnormal/normal and overflow edges) instead of all of them.
  std::vector<double> values;
  for (int b = 0; b < 0x7C00; ++b) values.push_back(st::decode_f16(static_cast<std::uint16_t>(b)));
  values.push_back(65536.0);  // the overflow threshold 65520 is the midpoint below it
  const std::vector<float> all = rounding_boundaries(values);
  std::vector<float> xs(all.begin(), all.begin() + 9);  // the special values
  for (std::size_t i = 9; i < all.size(); ++i) {
    const std::size_t code = (i - 9) / 12;  // 12 inputs per code: 2 points x 3 x 2 signs
    if (code % 61 == 0 || code < 8 || (code > 1016 && code < 1032) || code > 31736) xs.push_back(all[i]);
  }
  int mismatches = 0;
  for (float x : xs)
    if (st::encode_f16_fast(x) != st::encode_f16(x)) {
      if (++mismatches <= 5) FAIL_CHECK("x = ", x, ": fast ", st::encode_f16_fast(x), ", search ", st::encode_f16(x));
    }
  CHECK(mismatches == 0);
  CHECK(xs.size() > 6000);
}

// ---------------------------------------------------------------------------------------------
// StreamWriter

TEST_CASE("StreamWriter writes what safetensors::File reads, and checks order and byte counts") {
  const fs::path dir = scratch("stream");
  const std::string path = (dir / "a.safetensors").string();
  const std::vector<st::TensorHeader> headers = {{"x", st::DType::F32, {2, 3}}, {"y", st::DType::BF16, {4}}};
  {
    st::StreamWriter out(path, headers, {{"format", "pt"}});
    const double x[6] = {1, -2, 3.5, 0.25, 1e-3, 7};
    const double y[4] = {1, 2, 3, 4};
    std::uint8_t bytes[24];
    out.begin("x");
    st::encode_values(st::DType::F32, x, 3, bytes);  // x in two pieces
    out.append(bytes, 12);
    st::encode_values(st::DType::F32, x + 3, 3, bytes);
    out.append(bytes, 12);
    out.begin("y");
    st::encode_values(st::DType::BF16, y, 4, bytes);
    out.append(bytes, 8);
    out.finish();
    CHECK(out.file_size() == fs::file_size(path));
  }
  const st::File f(path);
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.read("x") == std::vector<double>{1, -2, 3.5, 0.25, static_cast<float>(1e-3), 7});
  CHECK(f.read("y") == std::vector<double>{1, 2, 3, 4});

  const std::uint8_t zeros[32] = {};
  {
    st::StreamWriter out(path + "2", headers);
    CHECK(contains(error_of([&] { out.begin("y"); }), "tensor 'y' begun where the header has 'x' next"));
    CHECK(contains(error_of([&] { out.append(zeros, 4); }), "before any tensor was begun"));
    out.begin("x");
    CHECK(contains(error_of([&] { out.append(zeros, 28); }), "tensor 'x' would get 28 bytes, its header says 24"));
    out.append(zeros, 20);
    CHECK(contains(error_of([&] { out.begin("y"); }), "tensor 'x' got 20 bytes, its header says 24"));
    out.append(zeros, 4);
    CHECK(contains(error_of([&] { out.finish(); }), "finished before tensor 'y' (1 of 2 tensors written)"));
    CHECK(fs::exists(path + "2"));
  }
  CHECK_FALSE(fs::exists(path + "2"));  // destroyed unfinished: the incomplete file is gone
  CHECK(contains(error_of([&] { st::StreamWriter out((dir / "no" / "such" / "dir.st").string(), headers); }),
                 "cannot open"));
}

// ---------------------------------------------------------------------------------------------
// write_generated_checkpoint

TEST_CASE("streamed checkpoints are byte-identical to write_checkpoint(generate_weights) for every tiny preset, dtype and shard count") {
  std::vector<Config> configs = tiny_presets();
  REQUIRE(configs.size() >= 4);
  configs.push_back(wide_config());
  const std::uint64_t seed = 42;
  int compared = 0;
  for (const Config& cfg : configs) {
    const dsr1::ModelWeights w = dsr1::generate_weights(cfg, seed);
    for (st::DType dtype : kDTypes)
      for (int shards : {1, 3}) {
        CAPTURE(cfg.name);
        CAPTURE(st::to_string(dtype));
        CAPTURE(shards);
        const fs::path want = scratch("want"), got = scratch("got");
        dsr1::write_checkpoint(want.string(), cfg, w, dtype, shards);
        dsr1::GeneratedCheckpointOptions opt;
        opt.threads = shards;  // 1 and 3 threads: the bytes must not depend on it
        const dsr1::WrittenCheckpoint written =
            dsr1::write_generated_checkpoint(got.string(), cfg, seed, dtype, shards, opt);
        check_same_files(got, want);
        CHECK(written.files.size() == static_cast<std::size_t>(shards == 1 ? 2 : shards + 2));
        std::uint64_t bytes = 0;
        for (const auto& name : listing(got)) bytes += fs::file_size(got / name);
        CHECK(written.bytes == bytes);
        ++compared;
      }
  }
  CHECK(compared == static_cast<int>(configs.size()) * 10);
}

TEST_CASE("a streamed checkpoint loads as the generator's weights rounded to its dtype") {
  const std::uint64_t seed = 3;
  for (const Config& cfg : tiny_presets()) {
    const bool mtp = cfg.num_nextn_predict_layers > 0;
    for (st::DType dtype : {st::DType::F64, st::DType::F32, st::DType::BF16}) {
      CAPTURE(cfg.name);
      CAPTURE(st::to_string(dtype));
      const fs::path dir = scratch("load");
      dsr1::write_generated_checkpoint(dir.string(), cfg, seed, dtype, 2);
      const dsr1::LoadedModel m = dsr1::load_model_dir(dir.string(), mtp);
      const dsr1::ModelWeights want = dsr1::generate_weights(cfg, seed, dtype);
      // Exact equality: F64 and F32 hold the generator's float32 values, BF16 rounds once.
      CHECK(arma::approx_equal(m.weights.E, want.E, "absdiff", 0.0));
      CHECK(arma::approx_equal(m.weights.W_head, want.W_head, "absdiff", 0.0));
      for (std::size_t l = 0; l < want.layers.size(); ++l) {
        CHECK(arma::approx_equal(m.weights.layers[l].attn.W_UQ, want.layers[l].attn.W_UQ, "absdiff", 0.0));
        CHECK(arma::approx_equal(m.weights.layers[l].attn.W_UV, want.layers[l].attn.W_UV, "absdiff", 0.0));
        CHECK(arma::approx_equal(m.weights.layers[l].w_ffn_norm, want.layers[l].w_ffn_norm, "absdiff", 0.0));
        if (want.layers[l].is_moe) {
          CHECK(arma::approx_equal(m.weights.layers[l].moe.experts.back().W_down,
                                   want.layers[l].moe.experts.back().W_down, "absdiff", 0.0));
          CHECK(arma::approx_equal(m.weights.layers[l].moe.b, want.layers[l].moe.b, "absdiff", 0.0));
        }
      }
      CHECK(m.weights.mtp.has_value() == mtp);
      if (mtp) CHECK(arma::approx_equal(m.weights.mtp->W_eh, want.mtp->W_eh, "absdiff", 0.0));
    }
  }
}

TEST_CASE("a streamed F16 and FP8 checkpoint holds each generator value as the dtype rounds it") {
  const Config cfg = wide_config();
  const std::uint64_t seed = 5;
  const fs::path f16 = scratch("f16"), fp8 = scratch("fp8");
  dsr1::write_generated_checkpoint(f16.string(), cfg, seed, st::DType::F16, 1);
  dsr1::write_generated_checkpoint(fp8.string(), cfg, seed, st::DType::F8_E4M3, 2);
  const dsr1::Checkpoint ck16(f16.string()), ck8(fp8.string());
  int checked = 0;
  for (const auto& e : dsr1::checkpoint_catalogue(dsr1::stored_config(cfg, st::DType::F8_E4M3, false))) {
    if (e.name.ends_with("_scale_inv")) continue;
    CAPTURE(e.name);
    const std::vector<double> got16 = ck16.read(e.name).data, got8 = ck8.read(e.name).data;
    std::vector<double> v(e.numel());
    dsr1::generator_fill(seed, e.name, e.shape.back(), 0, v.size(), v.data());
    const bool is_fp8 = ck8.dtype(e.name) == st::DType::F8_E4M3;
    const double scale_bound = 1.0 / std::sqrt(static_cast<double>(e.shape.back())) / 448.0;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (i % 997 == 0) {  // a sample: encode_f16 searches all 31744 codes per call
        const bool f16 = ck16.dtype(e.name) == st::DType::F16;  // the gate bias stays F32
        REQUIRE(got16[i] == (f16 ? st::decode_f16(st::encode_f16(static_cast<float>(v[i]))) : v[i]));
      }
      if (!is_fp8) {
        const double want = e.dtype == st::DType::F32 ? v[i] : st::decode_bf16(st::encode_bf16(static_cast<float>(v[i])));
        if (got8[i] != want) REQUIRE(got8[i] == want);
        continue;
      }
      // e4m3 keeps 3 mantissa bits: W / scale is rounded to float32 and then to within half an
      // e4m3 ulp, 2^-4 relative, or, below 2^-6, to within half the subnormal step 2^-10. The
      // scale is at most max|W| / 448 <= 1 / (sqrt(in) * 448) (generator bound |r| < 1).
      const double bound = std::max(std::fabs(v[i]) * (0x1p-4 + 0x1p-20), 0x1p-10 * scale_bound * (1 + 0x1p-20));
      if (std::fabs(got8[i] - v[i]) > bound) REQUIRE(std::fabs(got8[i] - v[i]) <= bound);
    }
    ++checked;
  }
  CHECK(checked > 20);
}

TEST_CASE("quantize_fp8_rows matches weights_to_tensors on zero blocks, edge blocks and any thread count") {
  // A weight with an all-zero 128x128 block, an all-zero edge block, a block with one nonzero
  // value and a block that saturates: written by write_checkpoint (F8_E4M3, the in-memory
  // path) and quantized by quantize_fp8_rows from the same values (read back from F64).
  Config cfg = wide_config(/*vocab=*/200);
  cfg.num_hidden_layers = 1;  // the dense layer 0 only
  dsr1::ModelWeights w = dsr1::generate_weights(cfg, 9);
  arma::mat& W = w.layers[0].dense.W_up;  // [260, 300]: 3 x 3 blocks, edges of 4 rows and 44 columns
  REQUIRE(W.n_rows == 260);
  W.submat(0, 0, 127, 127).zeros();
  W.submat(256, 256, 259, 299).zeros();
  W.submat(128, 0, 255, 127).zeros();
  W(200, 100) = -3e-3;
  W(5, 200) = 1e6;  // amax / 448 is the scale: this value becomes exactly 448
  const fs::path f64 = scratch("q64"), fp8 = scratch("q8");
  dsr1::write_checkpoint(f64.string(), cfg, w, st::DType::F64);
  dsr1::write_checkpoint(fp8.string(), cfg, w, st::DType::F8_E4M3);
  const std::string name = "model.layers.0.mlp.up_proj.weight";
  const std::vector<double> values = dsr1::Checkpoint(f64.string()).read(name).data;
  const st::File file((fp8 / "model.safetensors").string());
  const std::vector<double> want_scale = file.read(name + "_scale_inv");
  REQUIRE(want_scale.size() == 9);
  CHECK(want_scale[0] == 1.0);  // the zero block's scale
  CHECK(want_scale[3] * 448.0 == doctest::Approx(3e-3).epsilon(1e-6));
  for (int threads : {1, 2, 5}) {
    CAPTURE(threads);
    std::vector<std::uint8_t> codes(260 * 300);
    std::vector<float> scale(9);
    dsr1::quantize_fp8_rows(values.data(), 260, 300, 128, codes.data(), scale.data(), threads);
    CHECK(std::memcmp(codes.data(), file.raw(name), codes.size()) == 0);
    for (int b = 0; b < 9; ++b) CHECK(scale[b] == want_scale[b]);
    CHECK(codes[5 * 300 + 200] == 0x7E);  // 448
  }
}

TEST_CASE("write_generated_checkpoint refuses bad arguments with a clear error") {
  const Config cfg = dsr1::preset("tiny-v3");
  const fs::path dir = scratch("bad");
  CHECK(contains(error_of([&] { dsr1::write_generated_checkpoint(dir.string(), cfg, 1, st::DType::F32, 0); }),
                 "shards = 0, expected >= 1"));
  CHECK(contains(error_of([&] { dsr1::write_generated_checkpoint(dir.string(), cfg, 1, st::DType::I32, 1); }),
                 "checkpoint dtype I32: expected F64, F32, BF16, F16 or F8_E4M3"));
  std::ofstream(dir / "a-file") << "x";
  const std::string under_file = (dir / "a-file" / "ckpt").string();
  const std::string e = error_of([&] { dsr1::write_generated_checkpoint(under_file, cfg, 1, st::DType::F32, 1); });
  CHECK(contains(e, "cannot create checkpoint directory '" + under_file + "'"));
  Config broken = cfg;
  broken.n_group = 3;  // 8 experts do not split into 3 groups
  CHECK_FALSE(error_of([&] { dsr1::write_generated_checkpoint(dir.string(), broken, 1, st::DType::F32, 1); }).empty());
  CHECK(listing(dir) == std::vector<std::string>{"a-file"});  // nothing written
}

TEST_CASE("a write that fails midway (file size limit, as a full disk) leaves no checkpoint that looks complete") {
  const Config cfg = dsr1::preset("tiny-v3");
  // RLIMIT_FSIZE makes write() fail with EFBIG past the limit, as ENOSPC would on a full disk;
  // SIGXFSZ, which would end the process, is ignored for the test's duration.
  struct rlimit old_limit {};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
  const auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  for (int shards : {1, 3}) {
    CAPTURE(shards);
    const fs::path dir = scratch("midway");
    dsr1::write_generated_checkpoint(dir.string(), cfg, 1, st::DType::F64, shards);  // an old, complete one
    REQUIRE_NOTHROW(dsr1::Checkpoint(dir.string()));
    struct rlimit limit = old_limit;
    limit.rlim_cur = 200000;  // the F64 tiny-v3 shards are larger; the first write past it fails
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &limit) == 0);
    const std::string e = error_of([&] { dsr1::write_generated_checkpoint(dir.string(), cfg, 2, st::DType::F64, shards); });
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    CHECK(contains(e, ".safetensors.partial"));
    CHECK(contains(e, "File too large"));
    for (const auto& name : listing(dir)) {
      CAPTURE(name);
      CHECK_FALSE(name.ends_with(".partial"));
      CHECK(name != "model.safetensors");
      CHECK(name != "model.safetensors.index.json");
    }
    CHECK(contains(error_of([&] { dsr1::Checkpoint ck(dir.string()); }), "model.safetensors"));
  }
  ::signal(SIGXFSZ, old_handler);
}

TEST_CASE("write_checkpoint_files reports progress per block, ending at the total") {
  const Config cfg = wide_config();
  const fs::path dir = scratch("progress");
  dsr1::GeneratedCheckpointOptions opt;
  std::vector<dsr1::WriteProgress> seen;
  opt.progress = [&](const dsr1::WriteProgress& p) { seen.push_back(p); };
  dsr1::write_generated_checkpoint(dir.string(), cfg, 1, st::DType::F8_E4M3, 3, opt);
  const auto tensors = dsr1::checkpoint_catalogue(dsr1::stored_config(cfg, st::DType::F8_E4M3, false));
  std::uint64_t total = 0;
  for (const auto& t : tensors) total += t.bytes();
  REQUIRE(seen.size() > tensors.size());  // the embedding alone comes in 2 blocks, FP8 weights per 128 rows
  CHECK(seen.back().bytes_done == total);
  CHECK(seen.back().bytes_total == total);
  CHECK(seen.front().shard == 1);
  CHECK(seen.back().shard == 3);
  CHECK(seen.front().tensor == "model.embed_tokens.weight");
  for (std::size_t i = 1; i < seen.size(); ++i) {
    CHECK(seen[i].bytes_done > seen[i - 1].bytes_done);
    CHECK(seen[i].seconds >= seen[i - 1].seconds);
  }
}
