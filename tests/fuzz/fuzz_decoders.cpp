// Fuzz target: the narrow float decoders on random bytes (reference/io/safetensors.hpp): BF16,
// F16 and FP8 e4m3, and the FP8 block dequantization of reference/io/checkpoint.hpp on a
// random small matrix with a random block size.
// Properties: every non-NaN code decodes to a value its encoder maps back to the same code;
// the decoded ranges are the formats' own (|F16| <= 65504 or inf, |e4m3| <= 448, never inf);
// scale 1 leaves every value unchanged, and a row range dequantized alone equals the same rows
// of the whole matrix.
#include <cmath>
#include <cstring>

#include "reference/io/checkpoint.hpp"
#include "reference/io/safetensors.hpp"
#include "tests/fuzz/fuzz.hpp"

namespace st = dsr1::safetensors;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  for (std::size_t i = 0; i + 1 < size; i += 2) {
    std::uint16_t bits;
    std::memcpy(&bits, data + i, 2);
    const double b = st::decode_bf16(bits);
    if (!std::isnan(b)) FUZZ_CHECK(st::encode_bf16(static_cast<float>(b)) == bits);
    const double h = st::decode_f16(bits);
    FUZZ_CHECK(std::isnan(h) || std::isinf(h) || std::fabs(h) <= 65504.0);
    // encode_f16 searches all 31,744 codes; one per input keeps the target fast.
    if (i == 0 && !std::isnan(h)) FUZZ_CHECK(st::encode_f16(static_cast<float>(h)) == bits);
  }
  for (std::size_t i = 0; i < size; ++i) {
    const double e = st::decode_e4m3(data[i]);
    FUZZ_CHECK(!std::isinf(e));
    if (!std::isnan(e)) {
      FUZZ_CHECK(std::fabs(e) <= 448.0);
      FUZZ_CHECK(st::encode_e4m3(static_cast<float>(e)) == data[i]);
    }
  }
  // FP8 block dequantization (the streamed checkpoint reads a weight in row blocks): the first
  // five bytes give rows, cols (1..16), the block size (1..8) and a row range; the rest are the
  // e4m3 codes of the weight and of its scales, reused cyclically.
  if (size < 6) return 0;
  const std::uint64_t rows = 1 + data[0] % 16, cols = 1 + data[1] % 16, B = 1 + data[2] % 8;
  const std::uint64_t first = data[3] % rows, count = 1 + data[4] % (rows - first);
  const auto code = [&](std::size_t k) {
    const double v = st::decode_e4m3(data[5 + k % (size - 5)]);
    return std::isnan(v) ? 0.0 : v;
  };
  std::vector<double> wq(rows * cols);
  for (std::size_t k = 0; k < wq.size(); ++k) wq[k] = code(k);
  const std::uint64_t sr = (rows + B - 1) / B, sc = (cols + B - 1) / B;
  std::vector<double> scale(sr * sc);
  for (std::size_t k = 0; k < scale.size(); ++k) scale[k] = std::fabs(code(wq.size() + k));
  const dsr1::Faults none;
  // Scale 1 everywhere: every value unchanged, edge blocks included.
  const std::vector<double> ones(sr * sc, 1.0);
  FUZZ_CHECK(dsr1::dequantize_fp8_rows(wq, rows, cols, 0, rows, ones, sr, sc, B, none, "fuzz") == wq);
  // Rows first .. first+count-1 alone equal the same rows of the whole matrix, bit for bit.
  const std::vector<double> whole = dsr1::dequantize_fp8_rows(wq, rows, cols, 0, rows, scale, sr, sc, B, none, "fuzz");
  const std::vector<double> wq_rows(wq.begin() + first * cols, wq.begin() + (first + count) * cols);
  const std::vector<double> part =
      dsr1::dequantize_fp8_rows(wq_rows, rows, cols, first, count, scale, sr, sc, B, none, "fuzz");
  FUZZ_CHECK(part == std::vector<double>(whole.begin() + first * cols, whole.begin() + (first + count) * cols));
  // A scale grid of the wrong shape is a clear error naming the tensor.
  dsr1::fuzz::expect_value_or_clear_error("fuzz", [&] {
    dsr1::dequantize_fp8_rows(wq, rows, cols, 0, rows, scale, sr + 1, sc, B, none, "fuzz");
    dsr1::fuzz::finding("a wrong scale grid was accepted", "");
  });
  return 0;
}
