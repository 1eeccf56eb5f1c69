#include "reference/text/utf8.hpp"

#include <fmt/format.h>

#include <stdexcept>

namespace dsr1::text {

namespace {
// How many bytes of a sequence starting at s[i] are a valid prefix of some well-formed sequence,
// and the full length that lead byte announces. Table 3-7: the second byte's range depends on the
// lead byte (E0: A0..BF, ED: 80..9F, F0: 90..BF, F4: 80..8F), which rules out overlong forms,
// surrogates and code points beyond U+10FFFF.
struct Prefix {
  std::size_t valid;   // bytes that fit so far (0: the lead byte itself is invalid)
  std::size_t needed;  // bytes a complete sequence has
};

Prefix valid_prefix(std::string_view s, std::size_t i) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned b0 = byte(i);
  if (b0 < 0x80) return {1, 1};
  std::size_t needed = 0;
  unsigned lo = 0x80, hi = 0xBF;  // range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) needed = 2;
  else if (b0 == 0xE0) needed = 3, lo = 0xA0;
  else if (b0 >= 0xE1 && b0 <= 0xEC) needed = 3;
  else if (b0 == 0xED) needed = 3, hi = 0x9F;
  else if (b0 >= 0xEE && b0 <= 0xEF) needed = 3;
  else if (b0 == 0xF0) needed = 4, lo = 0x90;
  else if (b0 >= 0xF1 && b0 <= 0xF3) needed = 4;
  else if (b0 == 0xF4) needed = 4, hi = 0x8F;
  else return {0, 1};
  std::size_t valid = 1;
  for (std::size_t k = 1; k < needed && i + k < s.size(); ++k) {
    const unsigned b = byte(i + k);
    const bool ok = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
    ++valid;
  }
  return {valid, needed};
}
}  // namespace

std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const Prefix p = valid_prefix(s, i);
  return p.valid == p.needed ? p.needed : 0;
}

void check_utf8(std::string_view s, std::string_view what) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_sequence_length(s, i);
    if (n == 0)
      throw std::invalid_argument(fmt::format(
          "{}: invalid UTF-8 at byte offset {} (byte 0x{:02X})", what, i, static_cast<unsigned char>(s[i])));
    i += n;
  }
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const Prefix p = valid_prefix(s, i);
    if (p.valid == p.needed) {
      out.append(s.substr(i, p.needed));
      i += p.needed;
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD for the maximal subpart s[i, i + valid)
      i += p.valid == 0 ? 1 : p.valid;
    }
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

char32_t decode_utf8(std::string_view s, std::size_t i, std::size_t n) {
  auto byte = [&](std::size_t k) { return static_cast<char32_t>(static_cast<unsigned char>(s[i + k])); };
  switch (n) {
    case 1: return byte(0);
    case 2: return ((byte(0) & 0x1F) << 6) | (byte(1) & 0x3F);
    case 3: return ((byte(0) & 0x0F) << 12) | ((byte(1) & 0x3F) << 6) | (byte(2) & 0x3F);
    default: return ((byte(0) & 0x07) << 18) | ((byte(1) & 0x3F) << 12) | ((byte(2) & 0x3F) << 6) | (byte(3) & 0x3F);
  }
}

}  // namespace dsr1::text
