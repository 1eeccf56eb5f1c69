// Validation of what a client sends the explorer (request.hpp).
#include "reference/serve/request.hpp"

#include <fmt/format.h>

#include <charconv>
#include <nlohmann/json.hpp>

#include "reference/io/token_list.hpp"
#include "reference/text/visible.hpp"

namespace dsr1::serve {
namespace {

RequestError bad(const std::string& what) { return RequestError(400, what); }

std::vector<std::int64_t> tokens_of(const nlohmann::json& v, const Limits& limits) {
  std::vector<std::int64_t> tokens;
  if (v.is_string()) {
    const std::string text = v.get<std::string>();
    if (text.empty()) throw bad("tokens: the prompt is empty (give at least one token id, e.g. \"3,17,5\")");
    try {
      tokens = parse_token_list(text, "tokens");
    } catch (const std::invalid_argument& e) {
      throw bad(e.what());
    }
  } else if (v.is_array()) {
    if (static_cast<std::int64_t>(v.size()) > limits.max_prompt_tokens)
      throw bad(fmt::format("tokens: {} tokens, more than this server's limit of {} (dsr1 serve "
                            "--max-prompt-tokens)", v.size(), limits.max_prompt_tokens));
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_number_integer())
        throw bad(fmt::format("tokens[{}]: {} is not an integer token id", i, v[i].dump()));
      tokens.push_back(v[i].get<std::int64_t>());
    }
  } else {
    throw bad(fmt::format("tokens: expected a string of comma-separated ids (\"3,17,5\") or an array of "
                          "integers, got {}", v.type_name()));
  }
  return tokens;
}

// The prompt's ids: for text, BOS first when the tokenizer config adds it (as the official
// tokenizer's encode(text) does), then the encoded text; a rendered chat holds its BOS already.
std::vector<std::int64_t> encode_text(const TextSupport& t, const std::string& text, bool add_bos) {
  std::vector<std::int64_t> ids;
  if (add_bos && t.config.add_bos_token && !t.config.bos_token.empty()) {
    const auto bos = t.tokenizer.id_of(t.config.bos_token);
    if (!bos) throw RequestError(500, fmt::format("bos_token '{}' is not a token of {}", t.config.bos_token,
                                                  t.tokenizer.origin()));
    ids.push_back(*bos);
  }
  try {
    const std::vector<std::int64_t> body = t.tokenizer.encode(text);
    ids.insert(ids.end(), body.begin(), body.end());
  } catch (const std::invalid_argument& e) {  // invalid UTF-8, with its byte offset
    throw bad(fmt::format("text: {}", e.what()));
  }
  return ids;
}

}  // namespace

std::string TextSupport::label(std::int64_t id) const {
  if (id < 0 || id >= tokenizer.vocab_size()) return fmt::format("#{}", id);
  return text::visible_token(tokenizer.token_bytes(id));
}

RunRequest parse_run_request(std::string_view body, const Config& c, const Limits& limits, const TextSupport* text) {
  if (body.size() > limits.max_body_bytes)
    throw RequestError(413, fmt::format("the request body has {} bytes, more than this server's limit of {}",
                                        body.size(), limits.max_body_bytes));
  // Parsed without exceptions so that the message can say where the JSON broke.
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    throw bad("the request body is not valid JSON (expected an object such as {\"tokens\": \"3,17,5\"})");
  if (!j.is_object()) throw bad(fmt::format("the request body is a JSON {}, expected an object", j.type_name()));
  for (const auto& [key, value] : j.items())
    if (key != "tokens" && key != "text" && key != "messages" && key != "add_generation_prompt" && key != "attn" &&
        key != "mtp")
      throw bad(fmt::format("unknown field '{}' (known: tokens, text, messages, add_generation_prompt, attn, mtp)", key));
  const int given = j.contains("tokens") + j.contains("text") + j.contains("messages");
  if (given == 0)
    throw bad("missing field 'tokens', 'text' or 'messages' (the prompt as token ids \"3,17,5\", as text, or as "
              "a chat)");
  if (given > 1) throw bad("give the prompt once: one of 'tokens', 'text' or 'messages'");
  if (j.contains("add_generation_prompt") && !j.contains("messages"))
    throw bad("add_generation_prompt goes with 'messages' (a chat)");

  RunRequest r;
  if (j.contains("tokens")) {
    r.tokens = tokens_of(j.at("tokens"), limits);
  } else {
    if (text == nullptr)
      throw bad(fmt::format("this server takes token ids only: no tokenizer fits model '{}' (vocab_size {}); send "
                            "{{\"tokens\": \"3,17,5\"}}", c.name, c.vocab_size));
    if (j.contains("text")) {
      if (!j.at("text").is_string()) throw bad(fmt::format("text: expected a string, got {}", j.at("text").type_name()));
      r.kind = "text";
      r.text = j.at("text").get<std::string>();
      if (r.text.empty()) throw bad("text: the prompt is empty (type something for the model to read)");
    } else {
      nlohmann::json conversation = {{"messages", j.at("messages")}};
      if (j.contains("add_generation_prompt")) conversation["add_generation_prompt"] = j.at("add_generation_prompt");
      text::Conversation conv;
      try {
        conv = text::conversation_from_json(conversation, "messages", /*default_generation_prompt=*/true);
      } catch (const std::invalid_argument& e) {
        throw bad(e.what());
      }
      r.kind = "chat";
      r.text = text::render_chat(conv.messages, conv.add_generation_prompt, text->format,
                                 text->config.bos_token.empty() ? text::kDeepSeekBos
                                                                : std::string_view(text->config.bos_token));
    }
    r.tokens = encode_text(*text, r.text, /*add_bos=*/r.kind == "text");
  }
  const auto T = static_cast<std::int64_t>(r.tokens.size());
  if (T == 0) throw bad("tokens: the prompt is empty (give at least one token id)");
  const std::string field = r.kind == "token ids" ? std::string("tokens") : r.kind == "text" ? "text" : "messages";
  if (T > limits.max_prompt_tokens)
    throw bad(fmt::format("{}: {} tokens, more than this server's limit of {} (dsr1 serve --max-prompt-tokens)",
                          field, T, limits.max_prompt_tokens));
  if (c.max_position_embeddings > 0 && T > c.max_position_embeddings)
    throw bad(fmt::format("{}: {} tokens run past max_position_embeddings = {} of '{}'", field, T,
                          c.max_position_embeddings, c.name));
  for (std::int64_t t = 0; t < T; ++t) {
    const std::int64_t id = r.tokens[static_cast<std::size_t>(t)];
    if (id < 0 || id >= c.vocab_size)
      throw bad(fmt::format("tokens: id {} at position {} is out of range: '{}' has vocab_size {} (ids 0..{})",
                            id, t, c.name, c.vocab_size, c.vocab_size - 1));
  }
  if (j.contains("attn")) {
    const auto& a = j.at("attn");
    if (!a.is_string() || (a.get<std::string>() != "naive" && a.get<std::string>() != "absorbed"))
      throw bad(fmt::format("attn: expected \"naive\" or \"absorbed\", got {}", a.dump()));
    r.attn = a.get<std::string>() == "absorbed" ? ref::AttnForm::Absorbed : ref::AttnForm::Naive;
  }
  if (j.contains("mtp")) {
    if (!j.at("mtp").is_boolean()) throw bad(fmt::format("mtp: expected true or false, got {}", j.at("mtp").dump()));
    r.mtp = j.at("mtp").get<bool>();
    if (r.mtp && c.num_nextn_predict_layers == 0)
      throw bad(fmt::format("mtp: '{}' has no Multi-Token Prediction module", c.name));
    if (r.mtp && T < 2) throw bad("mtp: the MTP module predicts token t+2 and needs at least 2 tokens");
  }
  return r;
}

std::int64_t parse_block(const std::string& text, const Config& c) {
  const std::string range = fmt::format("'{}' has layers 0..{}{}", c.name, c.num_hidden_layers - 1,
                                        c.num_nextn_predict_layers > 0 ? " and mtp" : "");
  if (text == "mtp") {
    if (c.num_nextn_predict_layers == 0) throw RequestError(404, fmt::format("no MTP block: {}", range));
    return c.num_hidden_layers;
  }
  std::int64_t l = -1;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), l);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || l < 0 || l >= c.num_hidden_layers)
    throw RequestError(404, fmt::format("layer '{}' does not exist: {}", text, range));
  return l;
}

std::int64_t parse_index(const std::optional<std::string>& text, const std::string& name, std::int64_t end,
                         std::int64_t fallback) {
  if (!text) return fallback;
  std::int64_t v = -1;
  const auto [ptr, ec] = std::from_chars(text->data(), text->data() + text->size(), v);
  if (text->empty() || ec != std::errc() || ptr != text->data() + text->size() || v < 0 || v >= end)
    throw RequestError(400, fmt::format("{}: '{}' is not a number in 0..{}", name, *text, end - 1));
  return v;
}

}  // namespace dsr1::serve
