#include "reference/io/token_list.hpp"

#include <fmt/format.h>

#include <charconv>
#include <stdexcept>

namespace dsr1 {

std::vector<std::int64_t> parse_token_list(const std::string& text, const std::string& option) {
  std::vector<std::int64_t> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = text.find(',', start);
    const std::string item =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    std::int64_t v = 0;
    // from_chars: no sign but '-', no spaces, no locale; out of range is an error, not a wrap.
    const auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || ptr != item.data() + item.size())
      throw std::invalid_argument(fmt::format(
          "{}: '{}' is not a token id (expected comma-separated integers like 1,2,3)", option,
          item));
    out.push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace dsr1
