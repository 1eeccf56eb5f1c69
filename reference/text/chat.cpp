// The chat format of DeepSeek-V3 and R1 (chat.hpp), written as the templates read.
#include "reference/text/chat.hpp"

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace dsr1::text {

std::string to_string(ChatFormat f) { return f == ChatFormat::R1 ? "r1" : "v3"; }

ChatFormat chat_format_from_name(const std::string& name, const std::string& option) {
  if (name == "v3") return ChatFormat::V3;
  if (name == "r1") return ChatFormat::R1;
  throw std::invalid_argument(fmt::format("{}: '{}' is not a chat format (v3 or r1)", option, name));
}

std::string drop_reasoning(std::string_view content) {
  static constexpr std::string_view kEndOfThinking = "</think>";
  const std::size_t at = content.rfind(kEndOfThinking);
  if (at == std::string_view::npos) return std::string(content);
  return std::string(content.substr(at + kEndOfThinking.size()));
}

std::string render_chat(const std::vector<Message>& messages, bool add_generation_prompt,
                        ChatFormat format, std::string_view bos_token) {
  // 1. Every system message, wherever it stands, joins the system prompt right after BOS.
  std::string system_prompt;
  bool first_system = true;
  for (const Message& m : messages) {
    if (m.role != "system") continue;
    if (!first_system) system_prompt += "\n\n";
    system_prompt += m.content;
    first_system = false;
  }
  std::string out(bos_token);
  out += system_prompt;
  // 2. The turns in order: a user turn opens with <｜User｜>; an assistant turn is wrapped in
  //    <｜Assistant｜> ... <｜end▁of▁sentence｜>, its reasoning dropped in R1's format (the model
  //    saw its own earlier answers, not its earlier thinking).
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const Message& m = messages[i];
    if (m.role == "system") continue;
    if (m.role == "user") {
      out += "<｜User｜>" + m.content;
    } else if (m.role == "assistant") {
      const std::string content = format == ChatFormat::R1 ? drop_reasoning(m.content) : m.content;
      out += "<｜Assistant｜>" + content + "<｜end▁of▁sentence｜>";
    } else {
      throw std::invalid_argument(fmt::format(
          "render_chat: message {} has role '{}'; the chat format takes system, user and assistant", i, m.role));
    }
  }
  // 3. The generation prompt: the assistant's turn begins; R1 opens its reasoning at once.
  if (add_generation_prompt) out += format == ChatFormat::R1 ? "<｜Assistant｜><think>\n" : "<｜Assistant｜>";
  return out;
}

std::vector<Message> messages_from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_array())
    throw std::invalid_argument(fmt::format(
        "{}: expected a list of messages like [{{\"role\": \"user\", \"content\": \"Hi\"}}], got a JSON {}",
        where, j.type_name()));
  std::vector<Message> out;
  for (std::size_t i = 0; i < j.size(); ++i) {
    const nlohmann::json& m = j[i];
    if (!m.is_object())
      throw std::invalid_argument(fmt::format(
          "{}: message {} is a JSON {}, expected an object {{\"role\": ..., \"content\": ...}}", where, i,
          m.type_name()));
    for (const auto& [key, value] : m.items()) {
      if (key == "tool_calls")
        throw std::invalid_argument(fmt::format(
            "{}: message {} has tool_calls; tool calls are not part of this chat format (system, user, "
            "assistant messages only)", where, i));
      if (key != "role" && key != "content")
        throw std::invalid_argument(fmt::format(
            "{}: message {} has the key '{}'; a message has \"role\" and \"content\" only", where, i, key));
    }
    if (!m.contains("role") || !m["role"].is_string())
      throw std::invalid_argument(fmt::format("{}: message {} has no \"role\" string", where, i));
    if (!m.contains("content") || !m["content"].is_string())
      throw std::invalid_argument(fmt::format(
          "{}: message {} has no \"content\" string{}", where, i,
          m.contains("content") ? fmt::format(" (it is a JSON {})", m["content"].type_name()) : ""));
    Message msg{m["role"].get<std::string>(), m["content"].get<std::string>()};
    if (msg.role != "system" && msg.role != "user" && msg.role != "assistant")
      throw std::invalid_argument(fmt::format(
          "{}: message {} has role '{}'; expected system, user or assistant", where, i, msg.role));
    out.push_back(std::move(msg));
  }
  return out;
}

Conversation conversation_from_json(const nlohmann::json& j, const std::string& where,
                                    bool default_generation_prompt) {
  Conversation c;
  c.add_generation_prompt = default_generation_prompt;
  if (j.is_object()) {
    for (const auto& [key, value] : j.items())
      if (key != "messages" && key != "add_generation_prompt")
        throw std::invalid_argument(fmt::format(
            "{}: unexpected key '{}'; a conversation is {{\"messages\": [...], \"add_generation_prompt\": "
            "true|false}} or a list of messages", where, key));
    if (!j.contains("messages"))
      throw std::invalid_argument(fmt::format("{}: no \"messages\" list", where));
    if (j.contains("add_generation_prompt")) {
      if (!j["add_generation_prompt"].is_boolean())
        throw std::invalid_argument(fmt::format("{}: \"add_generation_prompt\" is a JSON {}, expected true or false",
                                                where, j["add_generation_prompt"].type_name()));
      c.add_generation_prompt = j["add_generation_prompt"].get<bool>();
    }
    c.messages = messages_from_json(j["messages"], where);
  } else {
    c.messages = messages_from_json(j, where);
  }
  if (c.messages.empty()) throw std::invalid_argument(fmt::format("{}: the conversation has no messages", where));
  return c;
}

Conversation read_chat_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("chat file {}: cannot be opened", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(buffer.str());
  } catch (const nlohmann::json::parse_error& e) {
    throw std::runtime_error(fmt::format("chat file {}: not valid JSON ({})", path, e.what()));
  }
  return conversation_from_json(j, fmt::format("chat file {}", path), true);
}

std::optional<ChatFormat> identify_chat_template(std::string_view chat_template) {
  const bool deepseek = chat_template.find("<｜User｜>") != std::string_view::npos &&
                        chat_template.find("<｜Assistant｜>") != std::string_view::npos;
  if (!deepseek) return std::nullopt;
  if (chat_template.find("<｜Assistant｜><think>") != std::string_view::npos) return ChatFormat::R1;
  return ChatFormat::V3;
}

}  // namespace dsr1::text
