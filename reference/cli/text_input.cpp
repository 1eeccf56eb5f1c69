// The prompt from --text, --chat or --tokens (text_input.hpp).
#include "reference/cli/text_input.hpp"

#include <fmt/format.h>

#include <filesystem>
#include <stdexcept>

#include "reference/io/token_list.hpp"
#include "reference/text/visible.hpp"

namespace dsr1::cli {
namespace {

namespace fs = std::filesystem;

struct TokenizerFiles {
  std::string tokenizer;  // tokenizer.json
  std::string config;     // tokenizer_config.json, "" when there is none
};

TokenizerFiles tokenizer_files(const PromptOptions& o, const ModelSource& source) {
  if (!o.tokenizer.empty()) {
    const fs::path beside = fs::path(o.tokenizer).parent_path() / "tokenizer_config.json";
    return {o.tokenizer, fs::exists(beside) ? beside.string() : ""};
  }
  if (!source.model_dir.empty()) {
    const fs::path dir(source.model_dir);
    if (!fs::exists(dir / "tokenizer.json"))
      throw std::runtime_error(fmt::format(
          "--model {}: no tokenizer.json in the checkpoint directory; give one with --tokenizer FILE",
          source.model_dir));
    const fs::path config = dir / "tokenizer_config.json";
    return {(dir / "tokenizer.json").string(), fs::exists(config) ? config.string() : ""};
  }
  return {text::default_tokenizer_path(), text::default_tokenizer_config_path()};
}

// The tokenizer's ids must be ids of the model: a larger tokenizer would produce ids past the
// embedding table (the V3 tokenizer's 128815 ids on a tiny preset's 128).
void check_fits(const text::Tokenizer& tok, const Config& c) {
  if (tok.vocab_size() > c.vocab_size)
    throw std::invalid_argument(fmt::format(
        "tokenizer {} has {} ids but model '{}' has vocab_size {}: its ids would not fit. Use a model with "
        "DeepSeek's vocabulary (--preset mini-r1, deepseek-v3 or deepseek-r1, or a checkpoint with its own "
        "tokenizer), or give token ids with --tokens",
        tok.origin(), tok.vocab_size(), c.name, c.vocab_size));
}

text::ChatFormat chat_format_of(const PromptOptions& o, const ModelSource& source,
                                const text::TokenizerConfig& config, const std::string& config_path) {
  if (!o.chat_format.empty()) return text::chat_format_from_name(o.chat_format);
  if (!source.model_dir.empty()) {
    if (const auto f = text::identify_chat_template(config.chat_template)) return *f;
    throw std::invalid_argument(fmt::format(
        "--chat: the chat_template of {} is not DeepSeek-V3's or R1's format; say which to use with "
        "--chat-format v3|r1", config_path.empty() ? source.model_dir + " (no tokenizer_config.json)" : config_path));
  }
  if (source.preset_name == "deepseek-r1" || source.preset_name == "mini-r1") return text::ChatFormat::R1;
  if (!o.tokenizer.empty())
    if (const auto f = text::identify_chat_template(config.chat_template)) return *f;
  return text::ChatFormat::V3;
}

}  // namespace

void PromptOptions::add_options(CLI::App& sub, const std::string& tokens_flag) {
  auto* t = sub.add_option("--text", text,
                           "the prompt as text, tokenized (BOS first, as the tokenizer config says)");
  auto* c = sub.add_option("--chat", chat,
                           "the prompt as a conversation: a JSON list of {\"role\", \"content\"} messages "
                           "(system, user, assistant), written in the model's chat format")
                ->check(CLI::ExistingFile);
  auto* k = sub.add_option(tokens_flag, tokens, "the prompt as token ids, comma-separated (e.g. 1,2,3)");
  t->excludes(c)->excludes(k);
  c->excludes(k);
  sub.add_option("--tokenizer", tokenizer,
                 "tokenizer.json (default: --model DIR's, else DeepSeek-V3's as .ci/install-deps installs it)")
      ->check(CLI::ExistingFile);
  sub.add_option("--chat-format", chat_format,
                 "--chat: v3 or r1 (default: --model DIR's template; R1 for deepseek-r1 and mini-r1; else V3)")
      ->check(CLI::IsMember({"v3", "r1"}));
}

std::string Prompt::label(std::int64_t id) const {
  if (!tokenizer || id < 0 || id >= tokenizer->vocab_size()) return fmt::format("#{}", id);
  return text::visible_token(tokenizer->token_bytes(id));
}

std::vector<std::string> Prompt::position_labels() const {
  std::vector<std::string> out;
  if (!tokenizer) return out;
  for (std::size_t t = 0; t < ids.size(); ++t) out.push_back(fmt::format("{} {}", t, label(ids[t])));
  return out;
}

Prompt read_prompt(const PromptOptions& o, const ModelSource& source, const Config& c) {
  Prompt p;
  const int given = !o.text.empty() + !o.chat.empty() + !o.tokens.empty();
  if (given == 0)
    throw std::invalid_argument(
        "give the prompt with --text STR, --chat FILE or --tokens IDS (an empty prompt has nothing to continue)");
  if (o.tokens.empty()) {  // text: the tokenizer is needed
    const TokenizerFiles files = tokenizer_files(o, source);
    p.tokenizer = text::Tokenizer::from_file(files.tokenizer);
    check_fits(*p.tokenizer, c);
    const text::TokenizerConfig config =
        files.config.empty() ? text::TokenizerConfig{} : text::read_tokenizer_config(files.config);
    if (!config.eos_token.empty()) p.eos_id = p.tokenizer->id_of(config.eos_token);
    if (!o.chat.empty()) {
      const text::Conversation conv = text::read_chat_file(o.chat);
      p.kind = "chat";
      p.format = chat_format_of(o, source, config, files.config);
      p.text = text::render_chat(conv.messages, conv.add_generation_prompt, *p.format,
                                 config.bos_token.empty() ? text::kDeepSeekBos : std::string_view(config.bos_token));
      p.ids = p.tokenizer->encode(p.text);
    } else {
      p.kind = "text";
      p.text = o.text;
      // BOS first, as the official tokenizer's encode(text) adds it (add_bos_token).
      if (config.add_bos_token && !config.bos_token.empty()) {
        const auto bos = p.tokenizer->id_of(config.bos_token);
        if (!bos)
          throw std::runtime_error(fmt::format("{}: bos_token '{}' is not a token of {}", files.config,
                                               config.bos_token, files.tokenizer));
        p.ids.push_back(*bos);
      }
      const std::vector<std::int64_t> body = p.tokenizer->encode(o.text);
      p.ids.insert(p.ids.end(), body.begin(), body.end());
    }
    return p;
  }
  p.kind = "token ids";
  p.ids = parse_token_list(o.tokens, "--tokens");
  // Labels when a tokenizer is at hand and fits: given, the checkpoint's own, or the default one
  // for a model with DeepSeek's vocabulary.
  try {
    if (!o.tokenizer.empty() || (!source.model_dir.empty() && fs::exists(fs::path(source.model_dir) / "tokenizer.json")) ||
        c.vocab_size == 129280) {
      const TokenizerFiles files = tokenizer_files(o, source);
      text::Tokenizer tok = text::Tokenizer::from_file(files.tokenizer);
      if (tok.vocab_size() <= c.vocab_size) {
        if (!files.config.empty()) {
          const text::TokenizerConfig config = text::read_tokenizer_config(files.config);
          if (!config.eos_token.empty()) p.eos_id = tok.id_of(config.eos_token);
        }
        p.tokenizer = std::move(tok);
      }
    }
  } catch (const std::exception&) {
    if (!o.tokenizer.empty()) throw;  // a tokenizer the user named must load
    // else: no labels (the default tokenizer is not installed)
  }
  return p;
}

}  // namespace dsr1::cli
