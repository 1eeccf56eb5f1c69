// Fuzz target: a golden set's manifest.json (reference/tools/compare.hpp, parse_manifest).
// Property: every file an accepted manifest names stays inside the set's directory.
#include "reference/tools/compare.hpp"
#include "tests/fuzz/fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string origin = "fuzz/manifest.json";
  dsr1::fuzz::expect_value_or_clear_error(origin, [&] {
    for (const auto& e : dsr1::compare::parse_manifest(dsr1::fuzz::as_text(data, size), origin)) {
      FUZZ_CHECK(!e.file.empty() && e.file[0] != '/');
      FUZZ_CHECK(e.file.find("..") == std::string::npos);
    }
  });
  return 0;
}
