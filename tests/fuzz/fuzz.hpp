// What every fuzz target of tests/fuzz/ checks, besides the sanitizers (docs/reliability.md).
// Leaves out: the inputs themselves (libFuzzer mutates the seed corpus under corpus/<target>/).
//
// The contract of a dsr1 parser on hostile bytes: it returns a value, or it throws
// std::runtime_error or std::invalid_argument whose message names where the bytes came from.
// Anything else is a finding and aborts the run, so libFuzzer saves the input: another exception
// type (a json::type_error, std::out_of_range, std::bad_alloc escaping from deep inside), a
// message that does not say which file it is about, a property of the parsed value that does not
// hold (FUZZ_CHECK), or an AddressSanitizer / UndefinedBehaviorSanitizer report.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

namespace dsr1::fuzz {

[[noreturn]] inline void finding(const char* what, const std::string& detail) {
  std::fprintf(stderr, "dsr1 fuzz finding: %s: %s\n", what, detail.c_str());
  std::abort();
}

inline void require_names(const std::exception& e, const std::string& origin) {
  if (std::string_view(e.what()).find(origin) == std::string_view::npos)
    finding("error message does not name its origin", std::string(e.what()));
}

// Runs `parse`; a clear error (see above) is an accepted outcome, anything else escapes.
template <typename F>
void expect_value_or_clear_error(const std::string& origin, F&& parse) {
  try {
    parse();
  } catch (const std::runtime_error& e) {
    require_names(e, origin);
  } catch (const std::invalid_argument& e) {
    require_names(e, origin);
  }
}

inline std::string as_text(const std::uint8_t* data, std::size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

}  // namespace dsr1::fuzz

// A property of a successfully parsed value.
#define FUZZ_CHECK(cond)                                                              \
  do {                                                                                \
    if (!(cond)) ::dsr1::fuzz::finding("property does not hold", #cond);             \
  } while (0)
