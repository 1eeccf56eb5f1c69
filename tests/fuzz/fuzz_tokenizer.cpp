// Fuzz target: tokenizer.json (reference/text/tokenizer.hpp) and the texts and ids it is given.
// The input is a tokenizer.json, then a NUL byte, then a text to encode; the text's bytes, two
// at a time, are also ids to decode. Properties: a file is read or refused with an error naming
// it; an accepted tokenizer encodes valid UTF-8 to ids inside [0, vocab_size) and does so the
// same way twice (the word cache must not change the answer), refuses invalid UTF-8 with
// std::invalid_argument, decodes any ids to valid UTF-8 or refuses an id out of range with
// std::out_of_range.
#include <cstring>

#include "reference/text/tokenizer.hpp"
#include "reference/text/utf8.hpp"
#include "tests/fuzz/fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input = dsr1::fuzz::as_text(data, size);
  const std::size_t nul = input.find('\0');
  const std::string file = input.substr(0, nul);
  const std::string text = nul == std::string::npos ? std::string() : input.substr(nul + 1);
  const std::string origin = "fuzz-tokenizer.json";
  dsr1::fuzz::expect_value_or_clear_error(origin, [&] {
    const dsr1::text::Tokenizer tok = dsr1::text::Tokenizer::from_json(file, origin);
    FUZZ_CHECK(tok.vocab_size() > 0);
    bool valid = true;
    try {
      dsr1::text::check_utf8(text, "text");
    } catch (const std::invalid_argument&) {
      valid = false;
    }
    if (valid) {
      const std::vector<std::int64_t> ids = tok.encode(text);
      for (const std::int64_t id : ids) FUZZ_CHECK(id >= 0 && id < tok.vocab_size());
      FUZZ_CHECK(tok.encode(text) == ids);
      dsr1::text::check_utf8(tok.decode(ids), "decoded");
    } else {
      bool refused = false;
      try {
        (void)tok.encode(text);
      } catch (const std::invalid_argument& e) {
        refused = std::strstr(e.what(), "byte offset") != nullptr;
      }
      FUZZ_CHECK(refused);
    }
    std::vector<std::int64_t> ids;
    for (std::size_t i = 0; i + 1 < text.size(); i += 2)
      ids.push_back(static_cast<std::uint8_t>(text[i]) | (static_cast<std::int64_t>(static_cast<std::uint8_t>(text[i + 1])) << 8));
    try {
      dsr1::text::check_utf8(tok.decode(ids), "decoded");
    } catch (const std::out_of_range&) {
      // an id outside the vocabulary: the documented refusal
    }
  });
  return 0;
}
