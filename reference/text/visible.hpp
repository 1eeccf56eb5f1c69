// reference/text/visible.hpp: a token's bytes as a label a reader can see: spaces, newlines and
// tabs made visible, bytes that are not (yet) a whole UTF-8 character written as <0xE4>.
// Leaves out: escaping for HTML (html/pictures.hpp escape() does it after) and decoding ids
// (tokenizer.hpp token_bytes gives the bytes).
#pragma once

#include <string>
#include <string_view>

namespace dsr1::text {

// " Paris" -> "␣Paris", "\n\n" -> "↵↵", "\t" -> "⇥", "\r" -> "␍", other control characters as
// <0x07>, and every byte of an ill-formed or incomplete UTF-8 sequence as <0xE4> (a token of
// byte-level BPE may end in the middle of a character; the next token completes it).
// "" -> "∅" (an empty label would vanish from a table).
std::string visible_token(std::string_view bytes);

}  // namespace dsr1::text
