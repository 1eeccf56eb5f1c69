// dsr1 tokenize / dsr1 detokenize: text <-> token ids with a tokenizer.json (reference/text/).
//
//   dsr1 tokenize [--model DIR | --tokenizer FILE] --text STR | --file F | --jsonl
//   dsr1 detokenize [--model DIR | --tokenizer FILE] --ids 1,2,3 | --jsonl
//
// --jsonl reads JSON Lines on stdin and writes exactly one JSON line per input line, in order:
//   tokenize:   {"text": S}                                  -> {"ids": [...], "tokens": [...]}
//               {"messages": [...], "add_generation_prompt": B} -> the same, of the chat prompt
//   detokenize: {"ids": [...]}                               -> {"text": S}
// A line that cannot be handled gives {"error": "line N: ..."} in its place (N counts from 1),
// the next lines are still handled, and the exit status is 1. docs/tokenizer.md.
#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "reference/cli/command.hpp"
#include "reference/cli/tokenizer_chat.hpp"
#include "reference/io/token_list.hpp"
#include "reference/text/tokenizer.hpp"

namespace dsr1::cli {
namespace {

using nlohmann::json;

struct TokenizerArgs {
  std::string model_dir, tokenizer_file;
  void add_options(CLI::App& sub) {
    auto* m = sub.add_option("--model", model_dir, "checkpoint directory: uses DIR/tokenizer.json");
    auto* t = sub.add_option("--tokenizer", tokenizer_file,
                             "a tokenizer.json (default: $DSR1_TOKENIZER, else the DeepSeek-V3 tokenizer "
                             ".ci/install-deps installs)");
    t->excludes(m);
  }
  text::Tokenizer load() const {
    return text::Tokenizer::from_file(text::resolve_tokenizer_path(tokenizer_file, model_dir));
  }
};

// Runs handle(line) on every line of stdin and prints its JSON answer, or {"error": ...}.
int each_json_line(const std::function<json(const json&)>& handle) {
  std::string line;
  std::size_t number = 0;
  int status = 0;
  while (std::getline(std::cin, line)) {
    ++number;
    json answer;
    try {
      const json in = json::parse(line);
      if (!in.is_object()) throw std::invalid_argument("a line must be a JSON object");
      answer = handle(in);
    } catch (const std::exception& e) {
      answer = json{{"error", fmt::format("line {}: {}", number, e.what())}};
      fmt::print(stderr, "dsr1: line {}: {}\n", number, e.what());
      status = 1;
    }
    std::cout << answer.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
    std::cout.flush();
  }
  return status;
}

json ids_answer(const text::Tokenizer& tok, const std::vector<std::int64_t>& ids) {
  json tokens = json::array();
  for (const std::int64_t id : ids) tokens.push_back(tok.token_string(id));
  return json{{"ids", ids}, {"tokens", tokens}};
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("--file {}: cannot open", path));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

struct TokenizeArgs {
  TokenizerArgs source;
  std::string text, file;
  bool jsonl = false, pieces = false;
};

int tokenize(const TokenizeArgs& a) {
  const text::Tokenizer tok = a.source.load();
  if (a.jsonl) {
    return each_json_line([&](const json& in) {
      if (in.contains("messages")) {
        const std::string prompt = render_chat_line(in, a.source.tokenizer_file, a.source.model_dir);
        return ids_answer(tok, tok.encode(prompt));
      }
      if (!in.contains("text") || !in["text"].is_string())
        throw std::invalid_argument(R"(expected {"text": "..."} or {"messages": [...], "add_generation_prompt": true|false})");
      const std::string t = in["text"].get<std::string>();
      json answer = ids_answer(tok, tok.encode(t));
      if (a.pieces) answer["pieces"] = tok.pre_tokenize(t);
      return answer;
    });
  }
  const std::string input = a.file.empty() ? a.text : read_file(a.file);
  const std::vector<std::int64_t> ids = tok.encode(input);
  fmt::print("{}: {} bytes -> {} tokens\n", tok.origin(), input.size(), ids.size());
  fmt::print("{:>6}  {:>7}  {}\n", "pos", "id", "token (its bytes, escaped)");
  for (std::size_t i = 0; i < ids.size(); ++i)
    fmt::print("{:>6}  {:>7}  \"{}\"{}\n", i, ids[i], text::printable(tok.token_bytes(ids[i])),
               tok.is_special(ids[i]) ? "  (special)" : "");
  fmt::print("ids: {}\n", fmt::join(ids, ","));
  if (a.pieces) {
    std::vector<std::string> pieces;
    for (const std::string& p : tok.pre_tokenize(input)) pieces.push_back("\"" + text::printable(p) + "\"");
    fmt::print("pieces: {}\n", fmt::join(pieces, " "));
  }
  return 0;
}

struct DetokenizeArgs {
  TokenizerArgs source;
  std::string ids;
  bool jsonl = false;
};

int detokenize(const DetokenizeArgs& a) {
  const text::Tokenizer tok = a.source.load();
  if (a.jsonl) {
    return each_json_line([&](const json& in) {
      if (!in.contains("ids") || !in["ids"].is_array()) throw std::invalid_argument(R"(expected {"ids": [...]})");
      std::vector<std::int64_t> ids;
      for (const json& v : in["ids"]) {
        if (!v.is_number_integer()) throw std::invalid_argument(fmt::format("ids: {} is not an integer", v.dump()));
        ids.push_back(v.get<std::int64_t>());
      }
      return json{{"text", tok.decode(ids)}};
    });
  }
  const std::vector<std::int64_t> ids = parse_token_list(a.ids, "--ids");
  fmt::print("{}\n", tok.decode(ids));
  return 0;
}

const Register tokenize_command{Command{
    "tokenize", "text -> token ids with a tokenizer.json (DeepSeek's byte-level BPE)",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<TokenizeArgs>();
      a->source.add_options(sub);
      auto* t = sub.add_option("--text", a->text, "the text to encode (no BOS is added)");
      auto* f = sub.add_option("--file", a->file, "encode this file's bytes");
      auto* j = sub.add_flag("--jsonl", a->jsonl,
                             "JSON Lines on stdin: {\"text\": S} or {\"messages\": [...], \"add_generation_prompt\": B} "
                             "-> one {\"ids\": [...], \"tokens\": [...]} line each");
      sub.add_flag("--pieces", a->pieces,
                   "also print the pre-tokenizer's pieces (the words BPE encodes one by one)");
      t->excludes(f)->excludes(j);
      f->excludes(j);
      sub.callback([t, f, j] {
        if (t->count() + f->count() + j->count() == 0) throw CLI::RequiredError("--text, --file or --jsonl");
      });
      return [a] { return tokenize(*a); };
    }}};

const Register detokenize_command{Command{
    "detokenize", "token ids -> text with a tokenizer.json",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<DetokenizeArgs>();
      a->source.add_options(sub);
      auto* i = sub.add_option("--ids", a->ids, "token ids, comma-separated (e.g. 1,2,3)");
      auto* j = sub.add_flag("--jsonl", a->jsonl, "JSON Lines on stdin: {\"ids\": [...]} -> one {\"text\": S} line each");
      i->excludes(j);
      sub.callback([i, j] {
        if (i->count() + j->count() == 0) throw CLI::RequiredError("--ids or --jsonl");
      });
      return [a] { return detokenize(*a); };
    }}};

}  // namespace
}  // namespace dsr1::cli
