// The prompt of the commands that run a model (run, golden, generate): --text STR, --chat FILE or
// --tokens IDS, and the tokenizer that turns text into ids and ids back into labels.
//   --tokenizer FILE   a tokenizer.json (tokenizer_config.json beside it, when there is one)
//   else --model DIR   DIR/tokenizer.json and DIR/tokenizer_config.json
//   else               DeepSeek-V3's tokenizer as .ci/install-deps installs it (text/tokenizer.hpp)
// The chat format (docs/chat-format.md): --chat-format v3|r1, else what --model DIR's
// chat_template is, else R1 for the R1 presets (deepseek-r1, mini-r1), else what the
// tokenizer_config.json beside --tokenizer says, else V3.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "reference/cli/model_source.hpp"
#include "reference/text/chat.hpp"
#include "reference/text/tokenizer.hpp"

namespace dsr1::cli {

struct PromptOptions {
  std::string text;         // --text
  std::string chat;         // --chat FILE
  std::string tokens;       // --tokens (or --prompt for generate)
  std::string tokenizer;    // --tokenizer FILE
  std::string chat_format;  // --chat-format v3|r1 ("" = decided from the model)
  // Adds --text, --chat, --tokenizer, --chat-format and the token-id option `tokens_flag`
  // (e.g. "--tokens"), the three prompt options excluding one another.
  void add_options(CLI::App& sub, const std::string& tokens_flag);
};

struct Prompt {
  std::vector<std::int64_t> ids;
  std::string kind;                        // "text", "chat" or "token ids"
  std::string text;                        // what the ids encode: the text, or the rendered chat
  std::optional<text::ChatFormat> format;  // --chat: the format it was rendered in
  std::optional<text::Tokenizer> tokenizer;  // absent for --tokens when none fits the model
  std::optional<std::int64_t> eos_id;      // the tokenizer config's EOS token, where known
  // The visible string of one id ("␣Paris", "<0xE4>"; text/visible.hpp), or "#id" without a tokenizer.
  std::string label(std::int64_t id) const;
  // "position id label" per position, for tables and traces; empty without a tokenizer.
  std::vector<std::string> position_labels() const;
};

// The prompt as ids. --text: BOS (when the tokenizer config adds it) and the encoded text; --chat:
// the conversation rendered in its chat format (BOS included) and encoded; --tokens: the ids, with
// a tokenizer for labels only when one is given or the model has DeepSeek's vocabulary (129280).
// Refuses an empty prompt, and a tokenizer with more ids than the model's vocab_size (the V3
// tokenizer on a V2 or tiny preset), naming both.
Prompt read_prompt(const PromptOptions& o, const ModelSource& source, const Config& c);

}  // namespace dsr1::cli
