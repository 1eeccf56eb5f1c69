// Fuzz target: model.safetensors.index.json (reference/io/checkpoint.hpp, parse_index).
// Property: every shard an accepted index names is a plain file name next to the index, so no
// index can point a reader outside the checkpoint directory.
#include "reference/io/checkpoint.hpp"
#include "tests/fuzz/fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string origin = "fuzz/model.safetensors.index.json";
  dsr1::fuzz::expect_value_or_clear_error(origin, [&] {
    const auto map = dsr1::parse_index(dsr1::fuzz::as_text(data, size), origin);
    FUZZ_CHECK(!map.empty());
    for (const auto& [tensor, file] : map) {
      FUZZ_CHECK(!file.empty() && file != "." && file != "..");
      FUZZ_CHECK(file.find('/') == std::string::npos && file.find('\\') == std::string::npos);
    }
  });
  return 0;
}
