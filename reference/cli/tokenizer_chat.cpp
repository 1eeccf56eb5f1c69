#include "reference/cli/tokenizer_chat.hpp"

#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "reference/text/chat.hpp"
#include "reference/text/tokenizer.hpp"

namespace dsr1::cli {

// The tokenizer_config.json that goes with the tokenizer: --model DIR's, the one beside
// --tokenizer FILE, else the default's; "" when there is none.
static std::string config_path_for(const std::string& tokenizer_file, const std::string& model_dir) {
  namespace fs = std::filesystem;
  if (!model_dir.empty()) return (fs::path(model_dir) / "tokenizer_config.json").string();
  if (!tokenizer_file.empty()) {
    const fs::path beside = fs::path(tokenizer_file).parent_path() / "tokenizer_config.json";
    return fs::exists(beside) ? beside.string() : "";
  }
  return text::default_tokenizer_config_path();
}

std::string render_chat_line(const nlohmann::json& line, const std::string& tokenizer_file,
                             const std::string& model_dir) {
  // {"messages": [...], "add_generation_prompt": B}; B defaults to false, as in Hugging Face's
  // apply_chat_template.
  const text::Conversation c = text::conversation_from_json(line, "chat line", false);
  const std::string config_path = config_path_for(tokenizer_file, model_dir);
  if (config_path.empty())
    throw std::invalid_argument(fmt::format(
        "chat line: no tokenizer_config.json beside {}, so its chat format (DeepSeek-V3's or R1's) is unknown",
        tokenizer_file));
  const text::TokenizerConfig config = text::read_tokenizer_config(config_path);
  const auto format = text::identify_chat_template(config.chat_template);
  if (!format)
    throw std::invalid_argument(fmt::format(
        "chat line: the chat_template of {} is not DeepSeek-V3's or R1's format", config_path));
  return text::render_chat(c.messages, c.add_generation_prompt, *format,
                           config.bos_token.empty() ? text::kDeepSeekBos : std::string_view(config.bos_token));
}

}  // namespace dsr1::cli
