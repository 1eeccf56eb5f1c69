// What a client may send the explorer, validated before any work: the JSON body of POST /api/run
// and the query of GET /api/layer/<l>. Leaves out: HTTP itself (server.hpp).
//
// Everything from the client is untrusted (docs/reliability.md, "The explorer's server"): the
// body's size is bounded before it is parsed, the JSON must be one object with known fields of
// the expected types, the prompt's length is bounded and every token id is checked against the
// model's vocabulary. A client never names a file or a path: it names layers, heads and tokens
// by number. Each refusal is a RequestError carrying the HTTP status and a sentence that says
// what was expected.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "reference/deepseek/config.hpp"
#include "reference/serve/exploration.hpp"
#include "reference/text/chat.hpp"
#include "reference/text/tokenizer.hpp"

namespace dsr1::serve {

struct Limits {
  std::size_t max_body_bytes = 16 * 1024;  // a request body; 16 KB holds thousands of token ids
  std::int64_t max_prompt_tokens = 32;     // tokens per run (what a run keeps grows with T^2 per head)
  std::int64_t max_heads_per_view = 16;    // attention maps per layer view
};

class RequestError : public std::runtime_error {
 public:
  RequestError(int status, const std::string& what) : std::runtime_error(what), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

// What a server needs to take text: a tokenizer whose ids fit the model, its config (BOS), and the
// chat format of the model (docs/chat-format.md).
struct TextSupport {
  text::Tokenizer tokenizer;
  text::TokenizerConfig config;
  text::ChatFormat format = text::ChatFormat::V3;
  // The visible string of one id ("␣Paris", "<0xE4>"; text/visible.hpp).
  std::string label(std::int64_t id) const;
};

// POST /api/run: the prompt as exactly one of
//   {"tokens": "3,17,5" | [3, 17, 5]}
//   {"text": "The capital of France is"}                       BOS (as the tokenizer config says) + text
//   {"messages": [{"role": "user", "content": "..."}], "add_generation_prompt": true}   the chat format
// with "attn": "naive" | "absorbed" and "mtp": false optional. Text and messages need `text`
// (null: the server takes token ids only). Throws RequestError (400, or 413 for a body over the
// limit) naming the field.
RunRequest parse_run_request(std::string_view body, const Config& c, const Limits& limits,
                             const TextSupport* text = nullptr);

// A block of the model as the API names it: "0".."L-1" or "mtp". Returns the layer index
// (L for the MTP block); throws RequestError 404 naming the layers that exist.
std::int64_t parse_block(const std::string& text, const Config& c);

// A non-negative integer query parameter below `end` (a head, a token); `fallback` if absent.
// Throws RequestError 400 naming the parameter and the range.
std::int64_t parse_index(const std::optional<std::string>& text, const std::string& name, std::int64_t end,
                         std::int64_t fallback);

}  // namespace dsr1::serve
