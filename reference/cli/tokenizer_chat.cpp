#include "reference/cli/tokenizer_chat.hpp"

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace dsr1::cli {

std::string render_chat_line(const nlohmann::json&, const std::string&, const std::string&) {
  throw std::invalid_argument(
      "chat lines ({\"messages\": ...}) are not supported by this build: the chat format "
      "(reference/text/chat.hpp) is not part of it; give {\"text\": ...} lines");
}

}  // namespace dsr1::cli
