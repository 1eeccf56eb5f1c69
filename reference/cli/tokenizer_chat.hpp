// reference/cli/tokenizer_chat.hpp: the chat lines of `dsr1 tokenize --jsonl`.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

namespace dsr1::cli {

// A line {"messages": [...], "add_generation_prompt": B} as the one string the model reads (the
// chat format of the tokenizer's tokenizer_config.json, BOS included): tokenizer_file or model_dir
// say where that config is, as for the tokenizer itself. Bad lines -> std::invalid_argument.
std::string render_chat_line(const nlohmann::json& line, const std::string& tokenizer_file,
                             const std::string& model_dir);

}  // namespace dsr1::cli
