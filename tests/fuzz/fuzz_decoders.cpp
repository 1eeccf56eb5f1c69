// Fuzz target: the narrow float decoders on random bytes (reference/io/safetensors.hpp): BF16,
// F16 and FP8 e4m3, and the FP8 block dequantization of reference/io/checkpoint.hpp on a
// random small matrix with a random block size.
// Properties: every non-NaN code decodes to a value its encoder maps back to the same code;
// the decoded ranges are the formats' own (|F16| <= 65504 or inf, |e4m3| <= 448, never inf);
// dequantization returns rows x cols values and leaves a block with scale 1 unchanged.
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
  // FP8 block dequantization: the first three bytes give rows, cols (1..16) and the block
  // size (1..8); the rest are the e4m3 codes, reused cyclically.
  if (size < 4) return 0;
  const std::uint64_t rows = 1 + data[0] % 16, cols = 1 + data[1] % 16, B = 1 + data[2] % 8;
  std::vector<double> wq(rows * cols);
  for (std::size_t k = 0; k < wq.size(); ++k) {
    wq[k] = st::decode_e4m3(data[3 + k % (size - 3)]);
    if (std::isnan(wq[k])) wq[k] = 0;
  }
  const std::uint64_t sr = (rows + B - 1) / B, sc = (cols + B - 1) / B;
  const std::vector<double> ones(sr * sc, 1.0);
  const std::vector<double> w =
      dsr1::dequantize_fp8_blocks(wq, rows, cols, ones, sr, sc, B, dsr1::Faults{}, "fuzz");
  FUZZ_CHECK(w.size() == rows * cols);
  FUZZ_CHECK(w == wq);
  return 0;
}
