// The fast path without a load step (reference/fast/source_model.hpp): a checkpoint's matrices
// used where they lie in the mapped files (views, gemm.hpp), and any other source packed a
// layer and a chosen expert at a time.
//
// What is checked, and why it can fail:
//  * gemm on a view (rows where they lie, packed into panels as it goes, including the SSE2
//    transposes of FP8 and BF16 panels) gives exactly the bits of gemm on the packed matrix of
//    the same rows, for edge shapes (partial panels, partial 16-column slices, partial scale
//    blocks), stacked and permuted rows, 1 and 3 threads, decode (one column) and prefill;
//  * a model opened from an FP8, BF16 or F32 checkpoint is mapped, and its logits (forward,
//    prefill + decode through the cache) are bit-identical to pack_weights + forward on the
//    same checkpoint, for every tiny preset; and within the float32 tolerance of the reference
//    (tests/support/fast_check.hpp: 1e-5 of the RMS) on the same checkpoint;
//  * from the generator (not mapped: each layer packed when it runs, experts on demand), the
//    same bits as pack_weights from the generator, for f32, bf16 and fp8 storage;
//  * an e4m3 NaN code inside a mapped matrix is an error naming the tensor, not a NaN logit.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sys/wait.h>
#include <unistd.h>
#include <random>

#include "reference/deepseek/checkpoint_writer.hpp"
#include "reference/deepseek/loader.hpp"
#include "reference/fast/gemm.hpp"
#include "reference/fast/pack.hpp"
#include "reference/fast/source_model.hpp"
#include "reference/io/checkpoint.hpp"
#include "reference/io/generator.hpp"
#include "reference/io/safetensors.hpp"
#include "tests/support/fast_check.hpp"

using namespace dsr1;
using namespace dsr1::test;

namespace {

std::string write_checkpoint_of(const Config& c, std::uint64_t seed, safetensors::DType dtype) {
  const std::string dir = fmt::format("{}/fast_source_{}_{}_{}", DSR1_BINARY_DIR, c.name,
                                      safetensors::to_string(dtype), seed);
  write_generated_checkpoint(dir, c, seed, dtype, 1);
  return dir;
}

Checkpoint open_checkpoint(const std::string& dir, const Config& c) {
  CheckpointOptions o;
  o.weight_block_size = c.weight_block_size;
  return Checkpoint(dir, o);
}

bool same_bits(const arma::fmat& a, const arma::fmat& b) {
  return a.n_rows == b.n_rows && a.n_cols == b.n_cols &&
         std::memcmp(a.memptr(), b.memptr(), a.n_elem * sizeof(float)) == 0;
}

// Random rows [M, K] in each storage, row-major, and views of them in a shuffled row order.
struct RowMatrix {
  std::int64_t M = 0, K = 0, B = 128;
  std::vector<float> f32;
  std::vector<std::uint16_t> bf16;
  std::vector<std::uint8_t> fp8;
  std::vector<float> grid;  // [ceil(M/B), ceil(K/B)]
};

RowMatrix random_rows(std::int64_t M, std::int64_t K, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  RowMatrix R;
  R.M = M;
  R.K = K;
  std::vector<double> v(static_cast<std::size_t>(M * K));
  for (auto& x : v) x = u(rng);
  R.f32.assign(v.begin(), v.end());
  for (double x : v) R.bf16.push_back(safetensors::encode_bf16(static_cast<float>(x)));
  R.fp8.resize(v.size());
  R.grid.resize(static_cast<std::size_t>(((M + R.B - 1) / R.B) * ((K + R.B - 1) / R.B)));
  quantize_fp8_rows(v.data(), M, K, R.B, R.fp8.data(), R.grid.data());
  return R;
}

// The rows order[0], order[1], ... of R as a view and as a packed matrix.
std::pair<fast::PackedMatrix, fast::PackedMatrix> view_and_packed(const RowMatrix& R, fast::WeightType t,
                                                                  const std::vector<std::int64_t>& order) {
  const std::int64_t M = static_cast<std::int64_t>(order.size()), K = R.K, n_kb = (K + R.B - 1) / R.B;
  fast::PackedMatrix V;
  V.rows = M, V.cols = K, V.type = t, V.name = "test view";
  if (t == fast::WeightType::FP8) V.block = R.B;
  fast::PackedMatrix P = fast::make_packed(M, K, t, R.B);
  for (std::int64_t i = 0; i < M; ++i) {
    const std::int64_t r = order[static_cast<std::size_t>(i)];
    if (t == fast::WeightType::F32) {
      V.row_data.push_back(reinterpret_cast<const std::uint8_t*>(R.f32.data() + r * K));
      std::vector<double> row(R.f32.begin() + r * K, R.f32.begin() + (r + 1) * K);
      fast::pack_rows(P, i, 1, row.data());
    } else if (t == fast::WeightType::BF16) {
      V.row_data.push_back(reinterpret_cast<const std::uint8_t*>(R.bf16.data() + r * K));
      fast::pack_rows_bf16(P, i, 1, R.bf16.data() + r * K);
    } else {
      V.row_data.push_back(R.fp8.data() + r * K);
      const float* s = R.grid.data() + (r / R.B) * n_kb;
      V.row_scales.push_back(s);
      fast::pack_rows_fp8(P, i, 1, R.fp8.data() + r * K, s, "test");
    }
  }
  return {std::move(V), std::move(P)};
}

}  // namespace

TEST_CASE("gemm on rows where they lie gives the bits of gemm on the packed rows") {
  const fast::WeightType types[] = {fast::WeightType::F32, fast::WeightType::BF16, fast::WeightType::FP8};
  // Shapes: partial panels and blocks; K a multiple of 16 (SSE2 FP8 path) and not (scalar path);
  // a long K (8322: 65 FP8 blocks, the last partial), as the model's widest inputs.
  const std::pair<std::int64_t, std::int64_t> shapes[] = {{70, 200}, {33, 256}, {5, 37}, {300, 130}, {64, 8}, {35, 8322}};
  for (const auto& shape : shapes) {
    const std::int64_t M = shape.first, K = shape.second;
    const RowMatrix R = random_rows(M + 40, K, static_cast<unsigned>(M * 1000 + K));
    std::vector<std::int64_t> order;  // permuted and repeated rows, as stacking and regrouping make
    for (std::int64_t i = 0; i < M; ++i) order.push_back((i * 7 + 3) % (M + 40));
    for (fast::WeightType t : types) {
      CAPTURE(M);
      CAPTURE(K);
      CAPTURE(fast::to_string(t));
      const auto [V, P] = view_and_packed(R, t, order);
      REQUIRE(V.is_view());
      for (std::int64_t N : {1, 3, 19}) {
        arma::fmat X(static_cast<arma::uword>(K), static_cast<arma::uword>(N), arma::fill::randn);
        for (int threads : {1, 3}) {
          fast::Options o = threads == 1 ? fast::Options{} : odd_blocks(threads);
          o.threads = threads;
          const arma::fmat want = fast::gemm(P, X, o), got = fast::gemm(V, X, o);
          CHECK(same_bits(got, want));
        }
      }
    }
  }
}

TEST_CASE("an e4m3 NaN code in a view is an error naming it") {
  RowMatrix R = random_rows(40, 128, 3);
  R.fp8[static_cast<std::size_t>(33 * 128 + 17)] = 0x7F;
  std::vector<std::int64_t> order(40);
  for (std::int64_t i = 0; i < 40; ++i) order[static_cast<std::size_t>(i)] = i;
  const auto [V, P] = view_and_packed(R, fast::WeightType::F32, order);  // F32: no check needed
  fast::PackedMatrix F = V;
  F.type = fast::WeightType::FP8;
  F.block = 128;
  F.row_data.clear();
  F.row_scales.clear();
  for (std::int64_t i = 0; i < 40; ++i) {
    F.row_data.push_back(R.fp8.data() + i * 128);
    F.row_scales.push_back(R.grid.data());
  }
  const arma::fmat X(128, 2, arma::fill::ones);
  CHECK_THROWS_WITH_AS(fast::gemm(F, X, fast::Options{}),
                       doctest::Contains("test view: element (33, 17) of the [40 x 128] matrix is the e4m3 NaN code 0x7F"),
                       std::runtime_error);
}

TEST_CASE("a mapped checkpoint gives the bits of the packed model, and the reference's values") {
  const safetensors::DType dtypes[] = {safetensors::DType::F8_E4M3, safetensors::DType::BF16,
                                       safetensors::DType::F32};
  for (const char* name : {"tiny-v3", "tiny-v2-lite", "tiny-v2", "tiny-yarn"}) {
    for (safetensors::DType dt : dtypes) {
      CAPTURE(name);
      CAPTURE(safetensors::to_string(dt));
      const std::string dir = write_checkpoint_of(preset(name), 11, dt);
      const Config c = load_config_json(dir + "/config.json");
      const Checkpoint ck = open_checkpoint(dir, c);
      const fast::WeightType type = fast::stored_weight_type(c);
      const fast::SourceModel model(ck, c, type);
      CHECK(model.mapped());
      CHECK(fast::can_map(ck, c, type));
      if (type != fast::WeightType::F32) CHECK_FALSE(fast::can_map(ck, c, fast::WeightType::F32));
      const fast::ModelWeightsF F = fast::pack_weights(ck, c, type);
      const auto tokens = some_tokens(c, 21, 5);
      for (int threads : {1, 3}) {
        CAPTURE(threads);
        const fast::Options o = odd_blocks(threads);
        CHECK(same_bits(model.forward(tokens, o), fast::forward(F, c, tokens, 0, nullptr, o, nullptr)));
        CHECK(same_bits(model.forward_incremental(tokens, 8, o),
                        fast::forward_incremental(F, c, tokens, 8, o, nullptr)));
      }
      // prefill, then decode, through the model's own cache: the same as forward_incremental
      fast::ModelCache cache = model.make_cache();
      const std::vector<std::int64_t> prompt(tokens.begin(), tokens.begin() + 8);
      const arma::fmat p = model.prefill(prompt, cache, fast::Options{});
      const arma::fvec d = model.decode(tokens[8], cache, fast::Options{});
      const arma::fmat inc = model.forward_incremental(
          std::vector<std::int64_t>(tokens.begin(), tokens.begin() + 9), 8, fast::Options{});
      CHECK(same_bits(p, arma::fmat(inc.cols(0, 7))));
      CHECK(same_bits(arma::fmat(d), arma::fmat(inc.col(8))));
      // Against the reference on the same checkpoint (its values exactly, in double).
      const ModelWeights W = load_model_dir(dir, /*with_mtp=*/false).weights;
      const arma::mat want = ref::forward(W, c, tokens, 0, nullptr, ref::ForwardOptions{}, nullptr);
      check_f32(arma::conv_to<arma::mat>::from(model.forward(tokens, fast::Options{})), want,
                fmt::format("{} {} mapped: logits", name, safetensors::to_string(dt)));
    }
  }
}

TEST_CASE("from the generator, layer by layer and expert by expert: the bits of the packed model") {
  for (const char* name : {"tiny-v3", "tiny-v2-lite"}) {
    const Config c = preset(name);
    const GeneratorSource src = generator_source(c, 4);
    for (fast::WeightType type : {fast::WeightType::F32, fast::WeightType::BF16, fast::WeightType::FP8}) {
      CAPTURE(name);
      CAPTURE(fast::to_string(type));
      const fast::SourceModel model(src, c, type);
      CHECK_FALSE(model.mapped());
      const fast::ModelWeightsF F = fast::pack_weights(src, c, type);
      const auto tokens = some_tokens(c, 13, 2);
      const fast::Options o = odd_blocks(2);
      CHECK(same_bits(model.forward(tokens, o), fast::forward(F, c, tokens, 0, nullptr, o, nullptr)));
      CHECK(same_bits(model.forward_incremental(tokens, 5, o),
                      fast::forward_incremental(F, c, tokens, 5, o, nullptr)));
      // A MoE layer leaves its routed experts to be fetched when chosen.
      for (std::int64_t l = 0; l < c.num_hidden_layers; ++l)
        if (c.is_moe_layer(l)) {
          const fast::BlockWeightsF b = model.layer(l);
          CHECK(b.moe.experts.empty());
          CHECK(static_cast<bool>(b.moe.fetch_expert));
        }
    }
  }
}

TEST_CASE("an e4m3 NaN code in a mapped checkpoint stops the run naming the tensor") {
  const Config c0 = preset("tiny-v3");
  const std::string dir = write_checkpoint_of(c0, 12, safetensors::DType::F8_E4M3);
  const Config c = load_config_json(dir + "/config.json");
  // Overwrite one code of layer 0's o_proj in a copy of the checkpoint file.
  const std::string bad = fmt::format("{}/fast_source_nan", DSR1_BINARY_DIR);
  std::filesystem::create_directories(bad);
  for (const auto& e : std::filesystem::directory_iterator(dir))
    std::filesystem::copy_file(e.path(), bad + "/" + e.path().filename().string(),
                               std::filesystem::copy_options::overwrite_existing);
  std::uint64_t offset = 0;
  std::string file;
  {
    const Checkpoint ck = open_checkpoint(bad, c);
    const std::string t = "model.layers.0.self_attn.o_proj.weight";
    file = ck.file_of(t);
    safetensors::File f(file);
    std::uint64_t header = 0;
    std::FILE* fp = std::fopen(file.c_str(), "rb");
    REQUIRE(fp);
    REQUIRE(std::fread(&header, 8, 1, fp) == 1);
    std::fclose(fp);
    offset = 8 + header + f.info(t).begin + 5;  // element (0, 5)
  }
  std::FILE* fp = std::fopen(file.c_str(), "r+b");
  REQUIRE(fp);
  std::fseek(fp, static_cast<long>(offset), SEEK_SET);
  const unsigned char nan = 0xFF;
  std::fwrite(&nan, 1, 1, fp);
  std::fclose(fp);
  const Checkpoint ck = open_checkpoint(bad, c);
  const fast::SourceModel model(ck, c, fast::WeightType::FP8);
  REQUIRE(model.mapped());
  CHECK_THROWS_WITH_AS(model.forward(some_tokens(c, 3, 1), fast::Options{}),
                       doctest::Contains("o_proj.weight': element (0, 5) of the"), std::runtime_error);
}

TEST_CASE("a mapped file that shrinks while in use stops the program with a message naming it") {
  // A child process maps a file, the file is truncated under it, and the child reads past the
  // new end: SIGBUS. The handler (reference/io/safetensors.cpp) must name the file and exit 135.
  const std::string path = fmt::format("{}/fast_source_shrinks.safetensors", DSR1_BINARY_DIR);
  safetensors::write(path, {{"w", {256, 256}, std::vector<double>(65536, 1.5), safetensors::DType::F32}});
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(fds[1], 2);
    ::close(fds[0]);
    const safetensors::File f(path);
    if (::truncate(path.c_str(), 4096) != 0) ::_exit(2);
    const std::uint8_t* p = f.raw("w");
    unsigned sum = 0;
    for (std::size_t i = 0; i < 65536 * 4; i += 4096) sum += *static_cast<const volatile std::uint8_t*>(p + i);
    ::_exit(sum == 12345 ? 3 : 4);  // reached only if no signal came
  }
  ::close(fds[1]);
  std::string message;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) message.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  CAPTURE(message);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 135);
  CHECK(message.find("SIGBUS") != std::string::npos);
  CHECK(message.find(path) != std::string::npos);
  CHECK(message.find("shrank") != std::string::npos);
}
