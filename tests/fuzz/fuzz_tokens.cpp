// Fuzz target: the --tokens list of dsr1 run / generate / golden (reference/io/token_list.hpp).
// Properties: an accepted list has one id per comma-separated item, and printing the ids back
// with commas and parsing again gives the same ids.
#include <algorithm>

#include <fmt/format.h>

#include "reference/io/token_list.hpp"
#include "tests/fuzz/fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string origin = "--tokens";
  const std::string text = dsr1::fuzz::as_text(data, size);
  dsr1::fuzz::expect_value_or_clear_error(origin, [&] {
    const std::vector<std::int64_t> ids = dsr1::parse_token_list(text, origin);
    FUZZ_CHECK(ids.size() == static_cast<std::size_t>(std::count(text.begin(), text.end(), ',')) + 1);
    FUZZ_CHECK(dsr1::parse_token_list(fmt::format("{}", fmt::join(ids, ",")), origin) == ids);
  });
  return 0;
}
