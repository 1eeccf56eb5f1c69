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

std::string rate_line(const std::string& who, double bytes, double tokens, const Stats& enc, const Stats& dec) {
  auto mbs = [&](double s) { return bytes / s / 1e6; };
  auto tps = [&](double s) { return tokens / s; };
  return fmt::format("{:<10} encode {:7.2f} MB/s {:10.0f} tokens/s ({:.2f}..{:.2f} MB/s)   "
                     "decode {:8.2f} MB/s {:11.0f} tokens/s ({:.2f}..{:.2f} MB/s)",
                     who, mbs(enc.median), tps(enc.median), mbs(enc.max), mbs(enc.min), mbs(dec.median),
                     tps(dec.median), mbs(dec.max), mbs(dec.min));
}

int bench_tokenizer(const BenchTokenizerArgs& a) {
  if (a.runs < 1) throw std::invalid_argument("--runs must be at least 1");
  const std::string path = text::resolve_tokenizer_path(a.tokenizer_file, a.model_dir);
  const text::Tokenizer tok = text::Tokenizer::from_file(path);
  const std::string text = bench_text(a);

  std::vector<double> encode_s, decode_s;
  std::vector<std::int64_t> ids;
  for (int r = 0; r < a.runs; ++r) {
    const auto t0 = Clock::now();
    ids = tok.encode(text);
    encode_s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  for (int r = 0; r < a.runs; ++r) {
    const auto t0 = Clock::now();
    const std::string back = tok.decode(ids);
    decode_s.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    if (back != text) throw std::runtime_error("decode(encode(text)) != text on the benchmark text");
  }
  const double bytes = static_cast<double>(text.size()), tokens = static_cast<double>(ids.size());
  const Stats enc = stats(encode_s), dec = stats(decode_s);

  // The official library on the same text, measured the same way (tests/text/official_tokenizer.mjs).
  std::optional<json> official;
  std::string official_note;
  const std::string script = std::string(DSR1_SOURCE_DIR) + "/tests/text/official_tokenizer.mjs";
  const std::filesystem::path text_file = std::filesystem::temp_directory_path() / fmt::format("dsr1-bench-tokenizer-{}.txt", getpid());
  {
    std::ofstream out(text_file, std::ios::binary);
    out << text;
  }
  const auto out = command_output(fmt::format("node {} {} bench {} {} 2>/dev/null", quoted(script), quoted(path),
                                              quoted(text_file.string()), a.runs));
  std::filesystem::remove(text_file);
  if (out) official = json::parse(*out);
  else official_note = "the official library did not run (node or tests/npm/node_modules/tokenizers missing: run .ci/install-deps)";

  if (a.json_output) {
    json j{{"tokenizer", path}, {"bytes", text.size()}, {"tokens", ids.size()}, {"runs", a.runs},
           {"dsr1", {{"encode_seconds", encode_s}, {"decode_seconds", decode_s}}}};
    if (official) j["official"] = *official;
    else j["official_note"] = official_note;
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  fmt::print("tokenizer {}\ntext: {:.2f} MB, {} tokens; one thread; median of {} runs (fastest..slowest)\n",
             path, bytes / 1e6, ids.size(), a.runs);
  fmt::print("{}\n", rate_line("dsr1", bytes, tokens, enc, dec));
  if (official) {
    const Stats oenc = stats((*official)["encode_seconds"].get<std::vector<double>>());
    const Stats odec = stats((*official)["decode_seconds"].get<std::vector<double>>());
    const auto otokens = (*official)["tokens"].get<double>();
    fmt::print("{}\n", rate_line("official", bytes, otokens, oenc, odec));
    fmt::print("dsr1 / official: encode {:.2f}x, decode {:.2f}x{}\n", oenc.median / enc.median, odec.median / dec.median,
               otokens == tokens ? "" : fmt::format("  (token counts differ: {} vs {})", tokens, otokens));
  } else {
    fmt::print("{}\n", official_note);
  }
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
