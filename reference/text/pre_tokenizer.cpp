#include "reference/text/pre_tokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <fmt/format.h>
#include <pcre2.h>

#include <stdexcept>

#include "reference/text/utf8.hpp"

namespace dsr1::text {

namespace {
pcre2_code* code_of(const std::shared_ptr<void>& p) { return static_cast<pcre2_code*>(p.get()); }

// One match-data block per thread, grown to what a pattern needs (only the whole match is read).
pcre2_match_data* thread_match_data() {
  thread_local std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> data(
      pcre2_match_data_create(1, nullptr), pcre2_match_data_free);
  return data.get();
}

// Unicode White_Space, the set Oniguruma's \s is (U+0009..U+000D, U+0020, U+0085, U+00A0,
// U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000). PCRE2's \s with UCP is
// \p{Z} or \h or \v, which adds U+180E MONGOLIAN VOWEL SEPARATOR (White_Space until Unicode 6.3).
constexpr const char* kWhiteSpace =
    "\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";

// The code points each general-category class gained between Unicode 14.0 (PCRE2 10.42's tables)
// and Unicode 16.0 (Oniguruma's, the official library's): kUnicode16Added_L, _N, _P, _S, _M.
// Generated from the Unicode 16.0 data files; see the header of the file and docs/tokenizer.md.
#include "reference/text/unicode16_additions.inc"

// The added members of \p{X} for the one-letter classes, or nullptr for a class left as PCRE2 has it.
const char* unicode16_added(char x) {
  switch (x) {
    case 'L': return kUnicode16Added_L;
    case 'N': return kUnicode16Added_N;
    case 'P': return kUnicode16Added_P;
    case 'S': return kUnicode16Added_S;
    case 'M': return kUnicode16Added_M;
    default: return nullptr;
  }
}
}  // namespace

std::string oniguruma_to_pcre2(const std::string& pattern) {
  // A small scanner: it knows whether it is inside [...] so that \s becomes the right spelling
  // (a class of its own outside brackets, its members inside them).
  std::string out;
  bool in_class = false;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[i + 1];
      if (e == 's' || e == 'S') {
        if (in_class && e == 's') out += kWhiteSpace;
        else if (in_class) out += "\\S";  // [\S...]: not used by DeepSeek; see docs/tokenizer.md
        else out += fmt::format("[{}{}]", e == 'S' ? "^" : "", kWhiteSpace);
      } else if ((e == 'p' || e == 'P') && i + 4 < pattern.size() && pattern[i + 2] == '{' &&
                 pattern[i + 4] == '}' && unicode16_added(pattern[i + 3]) != nullptr) {
        // \p{X} as Unicode 16.0 has it: PCRE2's own \p{X} (Unicode 14.0) plus the code points
        // added since; inside [...] as members, outside as a class of its own; \P{X} negated.
        const std::string members = fmt::format("\\p{{{}}}{}", pattern[i + 3], unicode16_added(pattern[i + 3]));
        if (in_class && e == 'p') out += members;
        else if (in_class) throw std::runtime_error("[\\P{..}] inside a bracket class is not supported");
        else out += fmt::format("[{}{}]", e == 'P' ? "^" : "", members);
        i += 3;  // with the ++i below, past the '}'
      } else {
        out += c;
        out += e;
      }
      ++i;
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal member, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

Regex::Regex(const std::string& pattern, const std::string& origin) : pattern_(pattern), origin_(origin) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  const std::string translated = oniguruma_to_pcre2(pattern);
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                   PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof message);
    throw std::runtime_error(fmt::format("{}: pre_tokenizer regex {:?} does not compile (PCRE2: {} at offset {})",
                                         origin, pattern, reinterpret_cast<const char*>(message), offset));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
  code_ = std::shared_ptr<void>(code, [](void* p) { pcre2_code_free(static_cast<pcre2_code*>(p)); });
}

std::vector<std::pair<std::size_t, std::size_t>> Regex::matches(std::string_view s) const {
  std::vector<std::pair<std::size_t, std::size_t>> found;
  pcre2_match_data* data = thread_match_data();
  const auto subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  std::size_t start = 0;
  while (start < s.size()) {
    const int rc = pcre2_match(code_of(code_), subject, s.size(), start, PCRE2_NO_UTF_CHECK, data, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof message);
      throw std::runtime_error(fmt::format("{}: pre_tokenizer regex {:?}: PCRE2 match failed: {}", origin_, pattern_,
                                           reinterpret_cast<const char*>(message)));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data);
    const std::size_t begin = ovector[0], end = ovector[1];
    if (end > begin) {
      found.emplace_back(begin, end);
      start = end;
    } else {
      // An empty match produces no piece (the official library drops empty pieces); step over
      // one character and search on.
      const std::size_t n = begin < s.size() ? utf8_sequence_length(s, begin) : 1;
      start = begin + (n == 0 ? 1 : n);
    }
  }
  return found;
}

void PreTokenizer::split_into(std::string_view text, std::vector<std::string_view>& out) const {
  std::vector<std::string_view> pieces{text}, next;
  for (const Split& step : splits_) {
    next.clear();
    for (const std::string_view piece : pieces) {
      std::size_t previous = 0;
      for (const auto& [begin, end] : step.regex.matches(piece)) {
        if (begin > previous) next.push_back(piece.substr(previous, begin - previous));
        if (step.behavior == Behavior::Isolated) next.push_back(piece.substr(begin, end - begin));
        previous = end;
      }
      if (previous < piece.size()) next.push_back(piece.substr(previous));
    }
    pieces.swap(next);
  }
  for (const std::string_view piece : pieces)
    if (!piece.empty()) out.push_back(piece);
}

std::vector<std::string_view> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string_view> out;
  split_into(text, out);
  return out;
}

}  // namespace dsr1::text
