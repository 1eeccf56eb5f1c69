// reference/text/utf8.hpp: UTF-8 checks and conversions the tokenizer needs.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace dsr1::text {

// Length of the well-formed UTF-8 sequence starting at s[i] (1 to 4), or 0 if the bytes there do
// not start one (stray continuation byte, overlong form, surrogate, beyond U+10FFFF, cut short).
// The table is Unicode's "well-formed UTF-8 byte sequences" (Unicode 16.0, table 3-7).
std::size_t utf8_sequence_length(std::string_view s, std::size_t i);

// Throws std::invalid_argument naming the byte offset of the first byte that is not valid UTF-8
// ("what" names the text in the message).
void check_utf8(std::string_view s, std::string_view what);

// s with every ill-formed part replaced by U+FFFD, one per maximal subpart (the Unicode
// recommendation, which Rust's String::from_utf8_lossy follows: the official library decodes so).
std::string utf8_lossy(std::string_view s);

// Appends the UTF-8 encoding of code point cp (cp <= U+10FFFF, not a surrogate).
void append_utf8(std::string& out, char32_t cp);

// The code point of the well-formed sequence of length n at s[i].
char32_t decode_utf8(std::string_view s, std::size_t i, std::size_t n);

}  // namespace dsr1::text
