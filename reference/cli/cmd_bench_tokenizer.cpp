// dsr1 bench-tokenizer: encode and decode speed of reference/text/ on a large mixed text, one
// thread, side by side with the official Hugging Face tokenizers library (npm `tokenizers`, its
// Rust core) on the same text in the same run. A benchmark: it reports, it asserts nothing.
// docs/tokenizer.md#speed.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "reference/cli/command.hpp"
#include "reference/text/tokenizer.hpp"

namespace dsr1::cli {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct BenchTokenizerArgs {
  std::string model_dir, tokenizer_file, file;
  double megabytes = 4.0;
  int runs = 3;
  bool json_output = false;
};

// Output of a shell command, or nullopt if it could not run or failed.
std::optional<std::string> command_output(const std::string& command) {
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return std::nullopt;
  std::string out;
  char buffer[4096];
  std::size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
  return pclose(pipe) == 0 ? std::optional(out) : std::nullopt;
}

std::string quoted(const std::string& s) {
  std::string out = "'";
  for (const char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// The benchmark text: --file, else the tokenizer corpus of tests/text/corpus.py (every script,
// code, digits, whitespace, emoji, special tokens, long words), joined by newlines and repeated
// up to the size asked for.
std::string bench_text(const BenchTokenizerArgs& a) {
  if (!a.file.empty()) {
    std::ifstream in(a.file, std::ios::binary);
    if (!in) throw std::runtime_error(fmt::format("--file {}: cannot open", a.file));
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  const std::string script = std::string(DSR1_SOURCE_DIR) + "/tests/text/corpus.py";
  const auto corpus = command_output("/usr/bin/python3 " + quoted(script));
  if (!corpus) throw std::runtime_error(fmt::format("{} did not run (it needs /usr/bin/python3); give --file F", script));
  std::string joined;
  std::istringstream lines(*corpus);
  for (std::string line; std::getline(lines, line);) joined += json::parse(line)["text"].get<std::string>() + "\n";
  std::string text;
  const auto want = static_cast<std::size_t>(a.megabytes * 1e6);
  while (text.size() < want) text += joined;
  return text;
}

struct Stats {
  double median, min, max;
};
Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

// The text cut into documents of about 4 KB, each ending at a newline (or the text's end): how
// a tokenizer is mostly called. Their concatenation is the text.
std::vector<std::string> documents_of(const std::string& text) {
  constexpr std::size_t kDocumentBytes = 4096;
  std::vector<std::string> docs;
  for (std::size_t begin = 0; begin < text.size();) {
    std::size_t end = text.find('\n', std::min(text.size(), begin + kDocumentBytes));
    end = end == std::string::npos ? text.size() : end + 1;
    docs.push_back(text.substr(begin, end - begin));
    begin = end;
  }
  return docs;
}

// Seconds of each of `runs` calls of f.
std::vector<double> timed(int runs, const std::function<void()>& f) {
  std::vector<double> s;
  for (int r = 0; r < runs; ++r) {
    const auto t0 = Clock::now();
    f();
    s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return s;
}

struct Measured {
  double tokens;
  std::vector<double> encode_s, decode_s;
};

std::string rate_line(const std::string& who, double bytes, const Measured& m) {
  const Stats enc = stats(m.encode_s), dec = stats(m.decode_s);
  return fmt::format("  {:<9} encode {:7.2f} MB/s {:9.0f} tokens/s ({:.2f}..{:.2f})   "
                     "decode {:7.2f} MB/s {:10.0f} tokens/s ({:.2f}..{:.2f})",
                     who, bytes / enc.median / 1e6, m.tokens / enc.median, bytes / enc.max / 1e6, bytes / enc.min / 1e6,
                     bytes / dec.median / 1e6, m.tokens / dec.median, bytes / dec.max / 1e6, bytes / dec.min / 1e6);
}

int bench_tokenizer(const BenchTokenizerArgs& a) {
  if (a.runs < 1) throw std::invalid_argument("--runs must be at least 1");
  const std::string path = text::resolve_tokenizer_path(a.tokenizer_file, a.model_dir);
  const text::Tokenizer tok = text::Tokenizer::from_file(path);
  const std::string text = bench_text(a);
  const std::vector<std::string> docs = documents_of(text);

  // dsr1: the whole text as one string, then document by document; one thread.
  std::vector<std::int64_t> ids;
  Measured whole, by_doc;
  whole.encode_s = timed(a.runs, [&] { ids = tok.encode(text); });
  whole.tokens = static_cast<double>(ids.size());
  whole.decode_s = timed(a.runs, [&] {
    if (tok.decode(ids) != text) throw std::runtime_error("decode(encode(text)) != text on the benchmark text");
  });
  std::vector<std::vector<std::int64_t>> doc_ids(docs.size());
  by_doc.encode_s = timed(a.runs, [&] {
    for (std::size_t i = 0; i < docs.size(); ++i) doc_ids[i] = tok.encode(docs[i]);
  });
  by_doc.tokens = 0;
  for (const auto& d : doc_ids) by_doc.tokens += static_cast<double>(d.size());
  by_doc.decode_s = timed(a.runs, [&] {
    for (const auto& d : doc_ids) (void)tok.decode(d);
  });

  // The official library on the same documents, measured the same way (tests/text/official_tokenizer.mjs).
  std::optional<json> official;
  std::string official_note;
  const std::string script = std::string(DSR1_SOURCE_DIR) + "/tests/text/official_tokenizer.mjs";
  const std::filesystem::path docs_file =
      std::filesystem::temp_directory_path() / fmt::format("dsr1-bench-tokenizer-{}.json", getpid());
  {
    std::ofstream out(docs_file, std::ios::binary);
    out << json(docs).dump();
  }
  const auto out = command_output(fmt::format("node {} {} bench {} {} 2>/dev/null", quoted(script), quoted(path),
                                              quoted(docs_file.string()), a.runs));
  std::filesystem::remove(docs_file);
  if (out) official = json::parse(*out);
  else official_note = "the official library did not run (node or tests/npm/node_modules/tokenizers missing: run .ci/install-deps)";

  const double bytes = static_cast<double>(text.size());
  if (a.json_output) {
    json j{{"tokenizer", path}, {"bytes", text.size()}, {"documents", docs.size()}, {"runs", a.runs},
           {"dsr1", {{"tokens", whole.tokens}, {"encode_seconds", whole.encode_s}, {"decode_seconds", whole.decode_s},
                     {"documents_tokens", by_doc.tokens}, {"documents_encode_seconds", by_doc.encode_s},
                     {"documents_decode_seconds", by_doc.decode_s}}}};
    if (official) j["official"] = *official;
    else j["official_note"] = official_note;
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  fmt::print("tokenizer {}\ntext: {:.2f} MB, {:.0f} tokens; one thread; MB/s and tokens/s of the median of {} runs "
             "(MB/s of the slowest..fastest)\n", path, bytes / 1e6, whole.tokens, a.runs);
  Measured o_whole, o_docs;
  if (official) {
    const json& o = *official;
    o_whole = {o["tokens"].get<double>(), o["encode_seconds"].get<std::vector<double>>(), o["decode_seconds"].get<std::vector<double>>()};
    o_docs = {o["documents_tokens"].get<double>(), o["documents_encode_seconds"].get<std::vector<double>>(),
              o["documents_decode_seconds"].get<std::vector<double>>()};
  }
  auto section = [&](const std::string& title, const Measured& ours, const Measured& theirs) {
    fmt::print("{}\n{}\n", title, rate_line("dsr1", bytes, ours));
    if (!official) return;
    fmt::print("{}\n", rate_line("official", bytes, theirs));
    fmt::print("  dsr1/official: encode {:.2f}x, decode {:.2f}x{}\n", stats(theirs.encode_s).median / stats(ours.encode_s).median,
               stats(theirs.decode_s).median / stats(ours.decode_s).median,
               theirs.tokens == ours.tokens ? ", same token count" : fmt::format(" (token counts differ: {} vs {})", ours.tokens, theirs.tokens));
  };
  section("the whole text as one string:", whole, o_whole);
  section(fmt::format("document by document ({} documents of about 4 KB):", docs.size()), by_doc, o_docs);
  if (!official) fmt::print("{}\n", official_note);
  return 0;
}

const Register bench_tokenizer_command{Command{
    "bench-tokenizer", "tokenizer speed (encode, decode; MB/s, tokens/s) beside the official library",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<BenchTokenizerArgs>();
      auto* m = sub.add_option("--model", a->model_dir, "checkpoint directory: uses DIR/tokenizer.json");
      sub.add_option("--tokenizer", a->tokenizer_file, "a tokenizer.json (default: the DeepSeek-V3 tokenizer)")->excludes(m);
      sub.add_option("--file", a->file, "benchmark on this file's text (default: the tokenizer corpus, repeated)");
      sub.add_option("--mb", a->megabytes, "size of the default text in MB")->capture_default_str();
      sub.add_option("--runs", a->runs, "runs of each side; the median is reported")->capture_default_str();
      sub.add_flag("--json", a->json_output, "every run's seconds as JSON");
      return [a] { return bench_tokenizer(*a); };
    }}};

}  // namespace
}  // namespace dsr1::cli
