// A true-width DeepSeek-V3 checkpoint written by streaming: tests/configs/v3-width-2layer-32experts
// .json (hidden 7168, 128 heads, vocab 129280, 1 dense + 1 MoE layer with 32 experts) in FP8, 4
// shards, 5.9 GB, in a small fraction of that memory. Labelled "fullscale" (about a minute on 2
// cores and 6 GB of disk in the temp directory, deleted at the end).
#include <doctest/doctest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <thread>

#include "reference/deepseek/checkpoint_writer.hpp"
#include "reference/deepseek/config.hpp"
#include "reference/deepseek/loader.hpp"
#include "reference/io/checkpoint.hpp"
#include "reference/io/generator.hpp"
#include "reference/io/safetensors.hpp"

namespace fs = std::filesystem;
namespace st = dsr1::safetensors;

namespace {

// Deletes the checkpoint however the test ends: 6 GB must not stay in the temp directory.
struct ScratchDir {
  fs::path path;
  ScratchDir() : path(fs::temp_directory_path() / ("dsr1_fullscale_checkpoint_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
  }
  ~ScratchDir() { fs::remove_all(path); }
};

double peak_rss_bytes() {
  struct rusage u {};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) * 1024.0;  // Linux reports KiB
}

// Block (br, bc) of FP8 weight `name` [rows, cols] as stored, recomputed from the generator's
// definition element by element (generator_value, not the fill loop) and quantized with the
// searching encoder, against the raw bytes of the file.
void check_fp8_block(const dsr1::Checkpoint& ck, const std::string& name, std::uint64_t br, std::uint64_t bc) {
  CAPTURE(name);
  CAPTURE(br);
  CAPTURE(bc);
  const auto& info = ck.info(name);
  REQUIRE(info.dtype == st::DType::F8_E4M3);
  const std::uint64_t rows = info.shape[0], cols = info.shape[1], B = 128;
  const std::uint64_t r0 = br * B, r1 = std::min(rows, r0 + B), c0 = bc * B, c1 = std::min(cols, c0 + B);
  double amax = 0;
  for (std::uint64_t r = r0; r < r1; ++r)
    for (std::uint64_t c = c0; c < c1; ++c)
      amax = std::max(amax, std::fabs(static_cast<double>(dsr1::generator_value(1, name, r * cols + c, cols))));
  const float s = static_cast<float>(amax / 448.0);
  const st::File scales(ck.file_of(dsr1::scale_name(name)));
  const auto& sinfo = scales.info(dsr1::scale_name(name));
  float got_s;
  std::memcpy(&got_s, scales.raw(sinfo.name) + 4 * (br * sinfo.shape[1] + bc), 4);
  CHECK(got_s == s);
  const st::File weights(ck.file_of(name));
  const std::uint8_t* q = weights.raw(name);
  int wrong = 0;
  for (std::uint64_t r = r0; r < r1; ++r)
    for (std::uint64_t c = c0; c < c1; ++c) {
      const float v = dsr1::generator_value(1, name, r * cols + c, cols);
      if (q[r * cols + c] != st::encode_e4m3(static_cast<float>(v / static_cast<double>(s)))) ++wrong;
    }
  CHECK(wrong == 0);
}

}  // namespace

TEST_CASE("a true-width V3 FP8 checkpoint (5.9 GB, 4 shards) is written in bounded memory and holds the generator's values") {
  const dsr1::Config cfg = dsr1::load_config_json("tests/configs/v3-width-2layer-32experts.json");
  REQUIRE(cfg.hidden_size == 7168);
  REQUIRE(cfg.vocab_size == 129280);
  const ScratchDir dir;
  dsr1::GeneratedCheckpointOptions opt;
  opt.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const dsr1::WrittenCheckpoint w =
      dsr1::write_generated_checkpoint(dir.path.string(), cfg, 1, st::DType::F8_E4M3, 4, opt);
  MESSAGE("wrote ", w.bytes, " bytes in ", w.seconds, " s; peak RSS ", peak_rss_bytes() / 1e6, " MB");

  // Memory: one row block (128 x 18432 values as doubles and bytes, ~21 MB) per write, not a
  // tensor (the embedding alone is 1.85 GB in BF16).
  CHECK(peak_rss_bytes() < 256e6);

  // Size: what the catalogue implies, plus headers, config.json and the index.
  std::uint64_t data = 0;
  for (const auto& e : dsr1::checkpoint_catalogue(dsr1::stored_config(cfg, st::DType::F8_E4M3, false))) data += e.bytes();
  CHECK(data == 5931696704ULL);  // `dsr1 info --config` of this file
  CHECK(w.bytes > data);
  CHECK(w.bytes < data + 200000);
  REQUIRE(w.files.size() == 6);

  // Readable: every header and the index validated, the config as written.
  const dsr1::Checkpoint ck(dir.path.string());
  CHECK(ck.num_files() == 4);
  const dsr1::Config stored = dsr1::load_config_json((dir.path / "config.json").string());
  CHECK(stored.fp8_weights);
  CHECK(stored.n_routed_experts == 32);

  // Spot checks against the generator's definition: BF16 embedding rows, FP8 blocks (full,
  // row-edge of kv_a_proj_with_mqa's 576 rows, and the last expert of the last shard).
  const st::File emb(ck.file_of("model.embed_tokens.weight"));
  const std::uint8_t* e = emb.raw("model.embed_tokens.weight");
  for (std::uint64_t row : {0ULL, 77777ULL, 129279ULL})
    for (std::uint64_t c = 0; c < 7168; c += 331) {
      const std::uint64_t i = row * 7168 + c;
      const std::uint16_t want = st::encode_bf16(dsr1::generator_value(1, "model.embed_tokens.weight", i, 7168));
      std::uint16_t got;
      std::memcpy(&got, e + 2 * i, 2);
      REQUIRE(got == want);
    }
  check_fp8_block(ck, "model.layers.0.self_attn.kv_a_proj_with_mqa.weight", 4, 55);
  check_fp8_block(ck, "model.layers.0.mlp.down_proj.weight", 30, 100);
  check_fp8_block(ck, "model.layers.1.mlp.experts.31.down_proj.weight", 55, 15);
  check_fp8_block(ck, "model.layers.1.self_attn.q_b_proj.weight", 191, 11);
}
