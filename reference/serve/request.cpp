// Validation of what a client sends the explorer (request.hpp).
#include "reference/serve/request.hpp"

#include <fmt/format.h>

#include <charconv>
#include <nlohmann/json.hpp>

#include "reference/io/token_list.hpp"

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

}  // namespace

RunRequest parse_run_request(std::string_view body, const Config& c, const Limits& limits) {
  if (body.size() > limits.max_body_bytes)
    throw RequestError(413, fmt::format("the request body has {} bytes, more than this server's limit of {}",
                                        body.size(), limits.max_body_bytes));
  // Parsed without exceptions so that the message can say where the JSON broke.
  const nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    throw bad("the request body is not valid JSON (expected an object such as {\"tokens\": \"3,17,5\"})");
  if (!j.is_object()) throw bad(fmt::format("the request body is a JSON {}, expected an object", j.type_name()));
  for (const auto& [key, value] : j.items())
    if (key != "tokens" && key != "attn" && key != "mtp")
      throw bad(fmt::format("unknown field '{}' (known: tokens, attn, mtp)", key));
  if (!j.contains("tokens")) throw bad("missing field 'tokens' (the prompt as token ids, e.g. \"3,17,5\")");

  RunRequest r;
  r.tokens = tokens_of(j.at("tokens"), limits);
  const auto T = static_cast<std::int64_t>(r.tokens.size());
  if (T == 0) throw bad("tokens: the prompt is empty (give at least one token id)");
  if (T > limits.max_prompt_tokens)
    throw bad(fmt::format("tokens: {} tokens, more than this server's limit of {} (dsr1 serve "
                          "--max-prompt-tokens)", T, limits.max_prompt_tokens));
  if (c.max_position_embeddings > 0 && T > c.max_position_embeddings)
    throw bad(fmt::format("tokens: {} tokens run past max_position_embeddings = {} of '{}'", T,
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
