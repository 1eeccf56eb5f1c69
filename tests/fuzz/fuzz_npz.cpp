// Fuzz target: a .npz archive (reference/io/npy.hpp, parse_npz): the zip central directory,
// ZIP64 fields, stored and deflated entries, the CRC-32, then each entry as a .npy image.
// Kept apart from fuzz_npy so that the mutations of one format do not starve the other: an
// archive's entries are compressed, so .npy header mutations rarely survive inside one.
// Property: every accepted entry holds exactly numel values.
#include "reference/io/npy.hpp"
#include "tests/fuzz/fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string origin = "fuzz.npz";
  dsr1::fuzz::expect_value_or_clear_error(origin, [&] {
    const std::vector<std::uint8_t> bytes(data, data + size);
    for (const auto& [key, a] : dsr1::npy::parse_npz(bytes, origin)) FUZZ_CHECK(a.data.size() == a.numel());
  });
  return 0;
}
