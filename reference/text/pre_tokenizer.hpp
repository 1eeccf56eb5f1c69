// reference/text/pre_tokenizer.hpp: cutting text into words before BPE.
//
// The tokenizer.json's "pre_tokenizer" is a Sequence: each Split step cuts every current piece
// with a regex; with behaviour "Isolated" each match becomes a piece of its own and so does each
// stretch between matches. DeepSeek-V3's three Splits, in order:
//   \p{N}{1,3}                                  digits, in groups of at most three ("12345" -> 123|45)
//   [\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+  runs of CJK ideographs, hiragana, katakana
//   [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+   an ASCII punctuation mark glued to a word (".get")
//   |[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+        a word with at most one leading non-letter (" the")
//   | ?[\p{P}\p{S}]+[\r\n]*                     punctuation/symbols, optional space before, newlines after
//   |\s*[\r\n]+                                 whitespace ending in newlines
//   |\s+(?!\S)|\s+                              whitespace runs (all but the last space before a word)
// then ByteLevel (no prefix space, no regex of its own): each piece's bytes go to BPE.
// The regexes are matched by PCRE2 with UTF and Unicode properties (UCP), JIT-compiled. Where
// PCRE2 reads a construct differently from the official library's engine (Oniguruma), the pattern
// is rewritten first; docs/tokenizer.md lists the differences and the Unicode version question.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dsr1::text {

// One compiled regex. Throws std::runtime_error naming origin if PCRE2 refuses the pattern.
class Regex {
 public:
  Regex(const std::string& pattern, const std::string& origin);
  // The non-empty matches in s, left to right, as [begin, end) byte offsets into s. s must be
  // valid UTF-8 (the tokenizer checks the text once, so matching skips PCRE2's own check).
  std::vector<std::pair<std::size_t, std::size_t>> matches(std::string_view s) const;
  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_, origin_;
  std::shared_ptr<void> code_;  // pcre2_code_8, freed with pcre2_code_free_8
};

// Oniguruma's syntax as PCRE2 reads it: \s and \S spelled as Oniguruma defines them (Unicode
// White_Space; PCRE2 also counts U+180E). Exposed for the tests.
std::string oniguruma_to_pcre2(const std::string& pattern);

class PreTokenizer {
 public:
  enum class Behavior { Isolated, Removed };
  struct Split {
    Regex regex;
    Behavior behavior;
  };
  explicit PreTokenizer(std::vector<Split> splits) : splits_(std::move(splits)) {}
  // text -> the pieces BPE encodes one by one (views into text; empty pieces are dropped).
  std::vector<std::string_view> split(std::string_view text) const;
  // Appends the pieces of text to out (the same, without a new vector per call).
  void split_into(std::string_view text, std::vector<std::string_view>& out) const;

 private:
  std::vector<Split> splits_;
};

}  // namespace dsr1::text
