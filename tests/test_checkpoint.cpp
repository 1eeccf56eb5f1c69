// Checkpoints: safetensors hardening, FP8 block dequantization, sharded indexes, and the
// loader's split/re-fuse of HF tensors, each malformed input rejected with a precise message.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "reference/checkpoint.hpp"
#include "reference/config.hpp"
#include "reference/generator.hpp"
#include "reference/loader.hpp"
#include "reference/safetensors.hpp"
#include "tests/support/check.hpp"

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

// The exception message of `f()`, or "" if it did not throw.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

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
