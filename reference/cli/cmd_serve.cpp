// dsr1 serve: the classroom explorer, a local web page where a prompt runs through the model and
// every layer, head and expert can be looked at afterwards (reference/serve/, docs/serve.md).
// Parsing and printing only: the server, the runs and the pictures live in reference/serve/.
#include <fmt/format.h>

#include <filesystem>
#include <memory>
#include <optional>

#include "reference/cli/command.hpp"
#include "reference/cli/model_source.hpp"
#include "reference/serve/exploration.hpp"
#include "reference/serve/server.hpp"
#include "reference/text/chat.hpp"
#include "reference/text/tokenizer.hpp"

namespace dsr1::cli {
namespace {

struct ServeArgs {
  ModelSource source;
  serve::ServeOptions options;
  std::string tokenizer;    // --tokenizer FILE
  std::string chat_format;  // --chat-format v3|r1
};

// The tokenizer that lets the page take text and chats: --tokenizer FILE, else --model DIR's
// tokenizer.json, else DeepSeek-V3's (as `dsr1 run --text` chooses, reference/cli/text_input.hpp).
// None when its ids do not fit the model (the tiny presets' 128): the page then takes token ids,
// and says why on stderr. A --tokenizer that does not fit is an error: it was asked for.
std::unique_ptr<serve::TextSupport> text_support(const ServeArgs& a, const Config& c) {
  namespace fs = std::filesystem;
  std::string path;
  try {
    if (a.tokenizer.empty() && !a.source.model_dir.empty() &&
        !fs::exists(fs::path(a.source.model_dir) / "tokenizer.json")) {
      fmt::print(stderr, "dsr1 serve: token ids only: {} has no tokenizer.json (give one with --tokenizer)\n",
                 a.source.model_dir);
      return nullptr;
    }
    path = text::resolve_tokenizer_path(a.tokenizer, a.source.model_dir);
  } catch (const std::exception& e) {  // the default tokenizer is not installed
    fmt::print(stderr, "dsr1 serve: token ids only: {}\n", e.what());
    return nullptr;
  }
  auto t = std::make_unique<serve::TextSupport>(serve::TextSupport{text::Tokenizer::from_file(path), {}, {}});
  if (t->tokenizer.vocab_size() > c.vocab_size) {
    const std::string why = fmt::format("tokenizer {} has {} ids but model '{}' has vocab_size {}", path,
                                        t->tokenizer.vocab_size(), c.name, c.vocab_size);
    if (!a.tokenizer.empty()) throw std::invalid_argument("--tokenizer: " + why);
    fmt::print(stderr, "dsr1 serve: token ids only: {} (text needs --preset mini-r1, deepseek-v3, deepseek-r1 "
                       "or a checkpoint with its tokenizer)\n", why);
    return nullptr;
  }
  const fs::path config = fs::path(path).parent_path() / "tokenizer_config.json";
  if (fs::exists(config)) t->config = text::read_tokenizer_config(config.string());
  // The chat format: --chat-format, else the checkpoint's template, else R1 for the R1 presets,
  // else what the tokenizer config's template is, else V3.
  if (!a.chat_format.empty())
    t->format = text::chat_format_from_name(a.chat_format);
  else if (a.source.preset_name == "deepseek-r1" || a.source.preset_name == "mini-r1")
    t->format = text::ChatFormat::R1;
  else if (const auto f = text::identify_chat_template(t->config.chat_template))
    t->format = *f;
  fmt::print(stderr, "dsr1 serve: text and chat prompts with {} ({} chat format)\n", path, text::to_string(t->format));
  return t;
}

int run_serve(const ServeArgs& a) {
  const Config c = a.source.config();
  serve::ServeOptions options = a.options;
  if (!serve::is_loopback(options.host))
    fmt::print(stderr,
               "dsr1 serve: WARNING: listening on {}, not on loopback: anyone who can reach this machine "
               "on port {} can start runs on it and read their results. The server has no authentication "
               "and no encryption; use it on a network you trust, or drop --host.\n",
               options.host, options.port);
  // What one run costs: the working set of `dsr1 run` while it computes (weights fetched a layer
  // at a time), and the traced tensors it keeps for the pictures afterwards.
  const std::int64_t T = options.limits.max_prompt_tokens;
  fmt::print(stderr,
             "dsr1 serve: {} ({}); prompts of up to {} tokens, one run at a time; a run of {} tokens needs a "
             "working set of about {:.2f} GB while it computes and keeps about {:.1f} MB for the page\n",
             c.name, a.source.describe(), T, T, working_set_bytes(c, T) / 1e9,
             serve::kept_bytes_estimate(c, T, c.num_nextn_predict_layers > 0) / 1e6);
  const std::unique_ptr<serve::TextSupport> text = text_support(a, c);
  const ModelSource source = a.source;
  return serve::serve(options, c, source.describe(), [source](std::int64_t tokens, bool mtp) {
    // Opened per run (the memory check of `dsr1 run` included) and closed when the run ends.
    ModelSource::Opened m = source.open(mtp, tokens);
    serve::OpenedModel opened;
    opened.source = std::move(m.source);
    opened.weights = std::move(m.weights);
    return opened;
  }, text.get());
}

const Register reg{Command{
    "serve", "the classroom explorer: a local web page to run a prompt and walk through every layer, head and expert",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<ServeArgs>();
      a->source.add_options(sub);
      sub.add_option("--host", a->options.host,
                     "address to listen on; anything but loopback (127.0.0.1, ::1) exposes the server to the network")
          ->capture_default_str();
      sub.add_option("--port", a->options.port, "TCP port; 0 picks a free one (printed on stdout)")
          ->check(CLI::Range(0, 65535))
          ->capture_default_str();
      sub.add_option("--max-prompt-tokens", a->options.limits.max_prompt_tokens,
                     "longest prompt a client may run (what a run keeps grows with T per layer, T^2 per head)")
          ->check(CLI::Range(1, 4096))
          ->capture_default_str();
      sub.add_option("--tokenizer", a->tokenizer,
                     "tokenizer.json for text and chat prompts (default: --model DIR's, else DeepSeek-V3's when its "
                     "ids fit the model)")
          ->check(CLI::ExistingFile);
      sub.add_option("--chat-format", a->chat_format,
                     "chat prompts: v3 or r1 (default: R1 for deepseek-r1 and mini-r1, else the tokenizer config's template)")
          ->check(CLI::IsMember({"v3", "r1"}));
      sub.add_option("--precision", a->options.precision, "digits the pictures print after the decimal point")
          ->check(CLI::Range(0, 17))
          ->capture_default_str();
      return [a] { return run_serve(*a); };
    }}};

}  // namespace
}  // namespace dsr1::cli
