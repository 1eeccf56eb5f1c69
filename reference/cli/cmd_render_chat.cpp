// dsr1 render-chat: a conversation written in DeepSeek-V3's or R1's chat format
// (reference/text/chat.hpp), the exact string the model reads before it is tokenized.
#include <fmt/format.h>

#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "reference/cli/command.hpp"
#include "reference/text/chat.hpp"

namespace dsr1::cli {
namespace {

struct RenderChatArgs {
  std::string chat;               // --chat FILE
  bool jsonl = false;             // --jsonl: conversations on stdin, one JSON line each
  std::string format = "r1";      // --chat-format
  bool no_generation_prompt = false;
};

int render_chat_command(const RenderChatArgs& a) {
  const text::ChatFormat format = text::chat_format_from_name(a.format);
  if (a.jsonl == !a.chat.empty())
    throw std::invalid_argument("render-chat: give exactly one of --chat FILE or --jsonl");
  if (!a.jsonl) {
    text::Conversation c = text::read_chat_file(a.chat);
    if (a.no_generation_prompt) c.add_generation_prompt = false;
    std::cout << text::render_chat(c.messages, c.add_generation_prompt, format) << std::flush;
    return 0;
  }
  // One line in, one line out: {"messages": [...], "add_generation_prompt": B} -> {"text": S}.
  // add_generation_prompt defaults to false, as Hugging Face's apply_chat_template has it.
  std::string line;
  for (std::size_t n = 1; std::getline(std::cin, line); ++n) {
    if (line.empty()) continue;
    const std::string where = fmt::format("stdin line {}", n);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw std::invalid_argument(fmt::format("{}: not valid JSON ({})", where, e.what()));
    }
    const text::Conversation c = text::conversation_from_json(j, where, false);
    const nlohmann::json out = {{"text", text::render_chat(c.messages, c.add_generation_prompt, format)}};
    std::cout << out.dump() << '\n';
  }
  std::cout << std::flush;
  return 0;
}

const Register reg{Command{
    "render-chat",
    "write a conversation in DeepSeek-V3's or R1's chat format (the text the model reads, before tokenizing)",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<RenderChatArgs>();
      sub.add_option("--chat", a->chat,
                     "chat file: a JSON list of {\"role\", \"content\"} messages (system, user, assistant), "
                     "or {\"messages\": [...], \"add_generation_prompt\": B}")
          ->check(CLI::ExistingFile);
      sub.add_flag("--jsonl", a->jsonl,
                   "read {\"messages\": [...], \"add_generation_prompt\": B} lines on stdin, write one "
                   "{\"text\": S} line each");
      sub.add_option("--chat-format", a->format, "v3 or r1 (R1 opens the reasoning with <think> and drops "
                                                 "earlier turns' reasoning)")
          ->check(CLI::IsMember({"v3", "r1"}))
          ->capture_default_str();
      sub.add_flag("--no-generation-prompt", a->no_generation_prompt,
                   "--chat: end after the last message instead of opening the assistant's turn");
      return [a] { return render_chat_command(*a); };
    }}};

}  // namespace
}  // namespace dsr1::cli
