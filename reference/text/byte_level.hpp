// reference/text/byte_level.hpp: the byte-level alphabet (GPT-2's bytes_to_unicode).
//
// BPE works on characters, but a byte-level tokenizer must be able to spell any byte string. So
// each of the 256 byte values gets one printable Unicode character: the 188 bytes that are already
// printable Latin-1 characters ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the other 68
// (controls, space, DEL, NBSP, soft hyphen) are moved to U+0100 + n in byte order, so space 0x20
// becomes 'Ġ' (U+0120) and newline 0x0A becomes 'Ċ' (U+010A). A word's bytes, spelled in this
// alphabet, is what the vocabulary and the merges are written in ("Ġthe" is " the").
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace dsr1::text {

// The character byte b stands for.
char32_t byte_to_char(unsigned char b);
// The byte a character of the alphabet stands for; nullopt for any other character.
std::optional<unsigned char> char_to_byte(char32_t c);

// bytes spelled in the alphabet (UTF-8 encoded): "hi there" -> "hiĠthere".
std::string to_byte_alphabet(std::string_view bytes);
// The inverse; nullopt if a character is not in the alphabet (or s is not valid UTF-8).
std::optional<std::string> from_byte_alphabet(std::string_view s);

}  // namespace dsr1::text
