#include "reference/text/byte_level.hpp"

#include "reference/text/utf8.hpp"

namespace dsr1::text {

namespace {
bool printable_latin1(unsigned b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct Alphabet {
  std::array<char32_t, 256> char_of{};       // byte -> character
  std::array<std::string, 256> utf8_of{};    // byte -> the character's UTF-8
  std::array<int, 0x144> byte_of{};          // character (< U+0144) -> byte, -1 if none
  Alphabet() {
    byte_of.fill(-1);
    char32_t next = 0x100;  // the non-printable bytes, in byte order, get U+0100, U+0101, ...
    for (unsigned b = 0; b < 256; ++b) {
      char_of[b] = printable_latin1(b) ? b : next++;
      append_utf8(utf8_of[b], char_of[b]);
      byte_of[char_of[b]] = static_cast<int>(b);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet a;
  return a;
}
}  // namespace

char32_t byte_to_char(unsigned char b) { return alphabet().char_of[b]; }

std::optional<unsigned char> char_to_byte(char32_t c) {
  if (c >= alphabet().byte_of.size() || alphabet().byte_of[c] < 0) return std::nullopt;
  return static_cast<unsigned char>(alphabet().byte_of[c]);
}

std::string to_byte_alphabet(std::string_view bytes) {
  const Alphabet& a = alphabet();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char b : bytes) out += a.utf8_of[static_cast<unsigned char>(b)];
  return out;
}

std::optional<std::string> from_byte_alphabet(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_sequence_length(s, i);
    if (n == 0) return std::nullopt;
    const auto b = char_to_byte(decode_utf8(s, i, n));
    if (!b) return std::nullopt;
    out += static_cast<char>(*b);
    i += n;
  }
  return out;
}

}  // namespace dsr1::text
