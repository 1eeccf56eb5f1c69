// reference/text/chat.hpp: the chat format of DeepSeek-V3 and DeepSeek-R1: a conversation (system,
// user and assistant messages) written as the one string the model reads, special tokens included.
// Leaves out: tool calls and tool outputs (refused with a clear error), and turning the string into
// ids (tokenizer.hpp encodes it; the BOS token is part of the string).
//
// Both formats are the `chat_template` of the models' tokenizer_config.json, written out as code:
//
//   <BOS>{system prompts joined by "\n\n"}                      every system message, wherever it is
//   <｜User｜>{user content}                                    for each user message, in order
//   <｜Assistant｜>{assistant content}<｜end▁of▁sentence｜>      for each assistant message, in order
//   <｜Assistant｜>                                             the generation prompt (V3)
//   <｜Assistant｜><think>\n                                    the generation prompt (R1)
//
// R1 also drops the reasoning from earlier assistant turns: only the text after the last
// "</think>" of an assistant message is kept. tests/chat/check_chat_template.mjs proves this code
// equal, byte for byte, to both templates rendered by @huggingface/jinja (docs/chat-format.md).
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dsr1::text {

enum class ChatFormat { V3, R1 };

// "v3" | "r1"; chat_format_from_name refuses anything else, naming `option`.
std::string to_string(ChatFormat f);
ChatFormat chat_format_from_name(const std::string& name, const std::string& option = "--chat-format");

struct Message {
  std::string role;     // "system" | "user" | "assistant"
  std::string content;  // any text, special-token text included (it is not escaped: the
                        // tokenizer recognises it, as it does in the official template)
};

// DeepSeek's BOS token, as tokenizer_config.json names it.
inline constexpr std::string_view kDeepSeekBos = "<｜begin▁of▁sentence｜>";

// The conversation as the model reads it (the table above). Roles other than system, user and
// assistant -> std::invalid_argument naming the message.
std::string render_chat(const std::vector<Message>& messages, bool add_generation_prompt,
                        ChatFormat format, std::string_view bos_token = kDeepSeekBos);

// R1's rule for an earlier assistant turn: the text after the last "</think>", or all of it when
// there is none. "<think>\nplan\n</think>\n\nAnswer" -> "\n\nAnswer".
std::string drop_reasoning(std::string_view content);

// A conversation as a chat file (--chat FILE) or a JSON line holds it: a list of messages, or an
// object {"messages": [...], "add_generation_prompt": B}.
struct Conversation {
  std::vector<Message> messages;
  bool add_generation_prompt = true;
};

// A JSON list of {"role": R, "content": S} objects. Anything else (not a list, an element that
// is not an object, a missing or non-string role or content, an unknown role, a tool call, an
// unknown key) -> std::invalid_argument naming `where` and the message's index.
std::vector<Message> messages_from_json(const nlohmann::json& j, const std::string& where);

// A list of messages, or {"messages": [...], "add_generation_prompt": B} (B defaults to
// `default_generation_prompt`: true for a prompt the model is to answer, false for HF's
// apply_chat_template default). Errors as messages_from_json; an empty list of messages is
// refused (there is nothing to say).
Conversation conversation_from_json(const nlohmann::json& j, const std::string& where,
                                    bool default_generation_prompt);

// A chat file: its JSON as conversation_from_json reads it (default generation prompt: true).
// A missing file or malformed JSON -> std::runtime_error naming the file.
Conversation read_chat_file(const std::string& path);

// Which format a tokenizer_config.json's chat_template is: R1 when its generation prompt opens
// the reasoning ("<｜Assistant｜><think>"), V3 when it is a DeepSeek template without that
// (it speaks "<｜User｜>" and "<｜Assistant｜>"); nullopt for any other template.
std::optional<ChatFormat> identify_chat_template(std::string_view chat_template);

}  // namespace dsr1::text
