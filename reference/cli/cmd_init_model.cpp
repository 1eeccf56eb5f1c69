// dsr1 init-model: write a HuggingFace-layout checkpoint whose weights come from the portable
// generator (docs/generator.md), for tests and for validating other implementations. The
// checkpoint is streamed (reference/deepseek/checkpoint_writer.hpp): a true-width DeepSeek-V3
// checkpoint of many GB is written in a few hundred MB of memory.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>

#include "reference/cli/command.hpp"
#include "reference/cli/model_source.hpp"
#include "reference/cli/progress.hpp"
#include "reference/deepseek/checkpoint_writer.hpp"
#include "reference/io/safetensors.hpp"

namespace dsr1::cli {
namespace {

struct InitArgs {
  ModelSource source;
  std::string out;
  std::string dtype = "f32";
  int shards = 1;
  int threads = 0;  // 0: all hardware threads
  bool progress = false, quiet = false;
};

safetensors::DType parse_dtype(const std::string& d) {
  if (d == "f64") return safetensors::DType::F64;
  if (d == "f32") return safetensors::DType::F32;
  if (d == "bf16") return safetensors::DType::BF16;
  if (d == "f16") return safetensors::DType::F16;
  return safetensors::DType::F8_E4M3;  // "fp8", the only other value CLI11 lets through
}

std::string gb(std::uint64_t bytes) {
  const double b = static_cast<double>(bytes);
  return b >= 1e9 ? fmt::format("{:.2f} GB", b / 1e9) : fmt::format("{:.1f} MB", b / 1e6);
}

// The progress line of a checkpoint write, in the style of progress.hpp's (one stderr line
// rewritten in place, at most five times a second):
//   [dsr1] shard 2/4  model.layers.1.mlp.experts.7.up_proj.weight  2.41 / 5.93 GB  14s  ETA 21s
class WriteProgressLine {
 public:
  void update(const WriteProgress& p) {
    const bool done = p.bytes_done == p.bytes_total;
    if (!done && p.seconds - last_ < 0.2) return;
    last_ = p.seconds;
    const double rate = p.seconds > 0 ? static_cast<double>(p.bytes_done) / p.seconds : 0;
    const std::string eta =
        rate > 0 ? format_duration(static_cast<double>(p.bytes_total - p.bytes_done) / rate) : "?";
    std::string line = fmt::format("[dsr1] shard {}/{}  {}  {} / {}  {}  ETA {}", p.shard, p.shards, p.tensor,
                                   gb(p.bytes_done), gb(p.bytes_total), format_duration(p.seconds), eta);
    const std::size_t width = line.size();
    if (line.size() < width_) line.append(width_ - line.size(), ' ');  // cover the longer line before
    width_ = width;
    fmt::print(stderr, "\r{}", line);
    std::fflush(stderr);
    shown_ = true;
  }
  void end() {
    if (shown_) fmt::print(stderr, "\n");
  }

 private:
  double last_ = -1;
  std::size_t width_ = 0;
  bool shown_ = false;
};

int init_model(const InitArgs& a) {
  if (!a.source.model_dir.empty())
    throw std::invalid_argument("init-model: give --preset or --config, not --model");
  if (a.progress && a.quiet) throw std::invalid_argument("init-model: give --progress or --quiet, not both");
  const Config cfg = a.source.config();
  GeneratedCheckpointOptions opt;
  opt.threads = a.threads > 0 ? a.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  WriteProgressLine line;
  if (!a.quiet && (a.progress || ProgressLine::stderr_is_terminal()))
    opt.progress = [&line](const WriteProgress& p) { line.update(p); };
  WrittenCheckpoint w;
  try {
    w = write_generated_checkpoint(a.out, cfg, a.source.seed, parse_dtype(a.dtype), a.shards, opt);
  } catch (...) {
    line.end();  // the error message on a line of its own
    throw;
  }
  line.end();
  fmt::print("wrote {} ({}, {} weights, {} shard{}) to {}: {} files, {} bytes ({}) in {:.1f} s\n",
             cfg.name, a.source.describe(), a.dtype, a.shards, a.shards == 1 ? "" : "s", a.out,
             w.files.size(), w.bytes, gb(w.bytes), w.seconds);
  for (const auto& f : w.files)
    fmt::print("  {}  {} bytes\n", f, std::filesystem::file_size(f));
  return 0;
}

const Register reg{Command{
    "init-model",
    "write a checkpoint directory (config.json + safetensors, HF names) with generator weights",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<InitArgs>();
      a->source.add_options(sub);
      sub.add_option("--out", a->out, "output directory")->required();
      sub.add_option("--dtype", a->dtype,
                     "storage dtype: f64, f32, bf16, f16, or fp8 (e4m3 with 128x128 block "
                     "scales, as the V3 release)")
          ->check(CLI::IsMember({"f64", "f32", "bf16", "f16", "fp8"}))
          ->capture_default_str();
      sub.add_option("--shards", a->shards, "number of safetensors shards (> 1 writes an index)")
          ->check(CLI::Range(1, 1000))
          ->capture_default_str();
      sub.add_option("--threads", a->threads,
                     "threads generating and quantizing (default: all hardware threads; the "
                     "files do not depend on it)")
          ->check(CLI::Range(0, 1024));
      sub.add_flag("--progress", a->progress,
                   "show one updating progress line on stderr (default: only when stderr is a terminal)");
      sub.add_flag("--quiet", a->quiet, "no progress line");
      return [a] { return init_model(*a); };
    }}};

}  // namespace
}  // namespace dsr1::cli
