// safetensors: round trip of every float dtype, and exact narrow-float decoding.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>

#include "reference/io/safetensors.hpp"

namespace st = dsr1::safetensors;

TEST_CASE("safetensors round trip keeps names, shapes and exactly representable values") {
  const auto path = std::filesystem::temp_directory_path() / "dsr1_roundtrip.safetensors";
  std::vector<st::NamedTensor> in = {
      {"a.f64", {2, 3}, {1, -2, 3.25, 0.1, 1e-300, -7}, st::DType::F64},
      {"b.f32", {3}, {0.5, -1.5, 1024}, st::DType::F32},
      {"c.bf16", {2}, {1.0, -0.0078125}, st::DType::BF16},
      {"d.f16", {2}, {65504.0, 5.9604644775390625e-08}, st::DType::F16},
      {"e.e4m3", {3}, {448.0, -0.001953125, 1.125}, st::DType::F8_E4M3},
  };
  st::write(path.string(), in, {{"format", "pt"}});
  st::File f(path.string());
  CHECK(f.metadata().at("format") == "pt");
  REQUIRE(f.tensors().size() == in.size());
  for (const auto& t : in) {
    CAPTURE(t.name);
    CHECK(f.info(t.name).shape == t.shape);
    CHECK(f.read(t.name) == t.data);
  }
  std::filesystem::remove(path);
}

TEST_CASE("e4m3 decodes normals, subnormals, the largest value and NaN") {
  CHECK(st::decode_e4m3(0x38) == 1.0);                    // exponent 7, mantissa 0
  CHECK(st::decode_e4m3(0x7E) == 448.0);                  // largest finite: 2^8 * 1.75
  CHECK(st::decode_e4m3(0x01) == std::ldexp(1.0, -9));    // smallest subnormal: 2^-6 / 8
  CHECK(st::decode_e4m3(0x08) == std::ldexp(1.0, -6));    // smallest normal
  CHECK(st::decode_e4m3(0xB8) == -1.0);
  CHECK(std::isnan(st::decode_e4m3(0x7F)));
  CHECK(std::isnan(st::decode_e4m3(0xFF)));
}
