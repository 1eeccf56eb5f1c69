// Token labels a reader can see (visible.hpp).
#include "reference/text/visible.hpp"

#include <fmt/format.h>

#include "reference/text/utf8.hpp"

namespace dsr1::text {

std::string visible_token(std::string_view bytes) {
  if (bytes.empty()) return "∅";
  std::string out;
  for (std::size_t i = 0; i < bytes.size();) {
    const std::size_t n = utf8_sequence_length(bytes, i);
    if (n == 0) {  // not the start of a whole character: show the byte itself
      out += fmt::format("<0x{:02X}>", static_cast<unsigned char>(bytes[i]));
      ++i;
      continue;
    }
    const char c = bytes[i];
    if (n == 1 && c == ' ') out += "␣";
    else if (n == 1 && c == '\n') out += "↵";
    else if (n == 1 && c == '\t') out += "⇥";
    else if (n == 1 && c == '\r') out += "␍";
    else if (n == 1 && (static_cast<unsigned char>(c) < 0x20 || c == 0x7f))
      out += fmt::format("<0x{:02X}>", static_cast<unsigned char>(c));
    else out.append(bytes.substr(i, n));
    i += n;
  }
  return out;
}

}  // namespace dsr1::text
