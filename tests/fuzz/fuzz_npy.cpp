// Fuzz target: one .npy image (reference/io/npy.hpp, parse).
// Properties: an accepted array holds exactly numel values, and writing it as float64 and
// reading that back gives the same values bit for bit.
#include <cstring>

#include "reference/io/npy.hpp"
#include "tests/fuzz/fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string origin = "fuzz.npy";
  dsr1::fuzz::expect_value_or_clear_error(origin, [&] {
    const dsr1::npy::Array a = dsr1::npy::parse(data, size, origin);
    FUZZ_CHECK(a.data.size() == a.numel());
    const std::vector<std::uint8_t> bytes = dsr1::npy::encode(a, dsr1::npy::DType::F64);
    const dsr1::npy::Array b = dsr1::npy::parse(bytes.data(), bytes.size(), "re-encoded");
    FUZZ_CHECK(b.shape == a.shape && b.data.size() == a.data.size());
    FUZZ_CHECK(a.data.empty() ||
               std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(double)) == 0);
  });
  return 0;
}
