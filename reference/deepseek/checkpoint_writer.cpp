#include "reference/deepseek/checkpoint_writer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "reference/io/checkpoint.hpp"
#include "reference/io/generator.hpp"
#include "reference/io/safetensors_writer.hpp"

namespace dsr1 {

namespace fs = std::filesystem;
namespace st = safetensors;
using u64 = std::uint64_t;

Config stored_config(const Config& cfg_in, st::DType dtype, bool with_mtp) {
  Config cfg = cfg_in;
  switch (dtype) {
    case st::DType::F64: cfg.torch_dtype = "float64"; break;
    case st::DType::F32: cfg.torch_dtype = "float32"; break;
    case st::DType::F16: cfg.torch_dtype = "float16"; break;
    case st::DType::BF16:
    case st::DType::F8_E4M3: cfg.torch_dtype = "bfloat16"; break;
    default:
      throw std::invalid_argument(fmt::format(
          "checkpoint dtype {}: expected F64, F32, BF16, F16 or F8_E4M3", st::to_string(dtype)));
  }
  cfg.fp8_weights = dtype == st::DType::F8_E4M3;
  if (!with_mtp) cfg.num_nextn_predict_layers = 0;
  validate(cfg);
  return cfg;
}

std::vector<int> shard_of_tensors(const std::vector<CatalogueEntry>& tensors, int shards) {
  if (shards < 1) throw std::invalid_argument(fmt::format("checkpoint shards = {}, expected >= 1", shards));
  u64 total = 0;
  for (const auto& t : tensors) total += t.bytes();
  std::vector<int> shard(tensors.size());
  u64 before = 0;  // bytes of the tensors before tensor i
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    // By the tensor's middle byte: a large last tensor (lm_head, 31% of a 2-layer V3) goes to
    // the last shard instead of leaving it empty.
    const u64 middle = before + tensors[i].bytes() / 2;
    shard[i] = static_cast<int>(std::min<u64>(shards - 1, middle * shards / std::max<u64>(total, 1)));
    if (i > 0 && tensors[i].name == scale_name(tensors[i - 1].name)) shard[i] = shard[i - 1];
    before += tensors[i].bytes();
  }
  return shard;
}

namespace {

const std::map<std::string, std::string> kMetadata = {{"format", "pt"}};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// A small text file written whole under `path`, checked.
void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error(fmt::format("cannot open '{}' for writing", path.string()));
  out << text;
  out.close();
  if (!out) throw std::runtime_error(fmt::format("error while writing '{}'", path.string()));
}

fs::path partial(const fs::path& p) { return p.string() + ".partial"; }

}  // namespace

WrittenCheckpoint write_checkpoint_files(const std::string& dir, const Config& stored,
                                         const std::vector<CatalogueEntry>& tensors, int shards,
                                         const ProduceTensor& produce, const ProgressFn& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int> shard = shard_of_tensors(tensors, shards);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir))
    throw std::runtime_error(fmt::format("cannot create checkpoint directory '{}': {}", dir,
                                         ec ? ec.message() : "exists and is not a directory"));
  // The files a reader looks for first: an old one would make a half-written directory look
  // complete (or mix two checkpoints), so they go before anything is written.
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  const fs::path single_path = fs::path(dir) / "model.safetensors";
  for (const fs::path& old : {index_path, single_path}) {
    fs::remove(old, ec);
    if (ec) throw std::runtime_error(fmt::format("cannot remove the old '{}': {}", old.string(), ec.message()));
  }

  std::vector<fs::path> files(shards);  // final names
  for (int k = 0; k < shards; ++k)
    files[k] = shards == 1 ? single_path
                           : fs::path(dir) / fmt::format("model-{:05d}-of-{:05d}.safetensors", k + 1, shards);
  const fs::path config_path = fs::path(dir) / "config.json";
  std::vector<fs::path> pending;  // written under partial names, not yet renamed
  WrittenCheckpoint result;
  try {
    WriteProgress at;
    at.shards = shards;
    for (const auto& t : tensors) at.bytes_total += t.bytes();
    for (int k = 0; k < shards; ++k) {
      std::vector<st::TensorHeader> headers;
      for (std::size_t i = 0; i < tensors.size(); ++i)
        if (shard[i] == k) headers.push_back({tensors[i].name, tensors[i].dtype, tensors[i].shape});
      pending.push_back(partial(files[k]));
      st::StreamWriter out(pending.back().string(), std::move(headers), kMetadata);
      at.shard = k + 1;
      for (std::size_t i = 0; i < tensors.size(); ++i) {
        if (shard[i] != k) continue;
        at.tensor = tensors[i].name;
        out.begin(tensors[i].name);
        produce(i, tensors[i], [&](const std::uint8_t* bytes, std::size_t n) {
          out.append(bytes, n);
          at.bytes_done += n;
          at.seconds = seconds_since(t0);
          if (progress) progress(at);
        });
      }
      out.finish();
      result.bytes += out.file_size();
    }
    pending.push_back(partial(config_path));
    write_text(pending.back(), config_to_json_text(stored));
    if (shards > 1) {
      nlohmann::ordered_json index;
      index["metadata"] = {{"total_size", at.bytes_total}};
      index["weight_map"] = nlohmann::ordered_json::object();
      for (std::size_t i = 0; i < tensors.size(); ++i)
        index["weight_map"][tensors[i].name] = files[shard[i]].filename().string();
      pending.push_back(partial(index_path));
      write_text(pending.back(), index.dump(2) + "\n");
    }
    // Every file is complete: rename them, shards first, the file a reader opens first last.
    std::vector<fs::path> order = files;
    if (shards == 1) {
      order.insert(order.begin(), config_path);  // model.safetensors last
    } else {
      order.push_back(config_path);
      order.push_back(index_path);
    }
    for (const fs::path& f : order) {
      fs::rename(partial(f), f, ec);
      if (ec) throw std::runtime_error(fmt::format("cannot rename '{}' to '{}': {}", partial(f).string(),
                                                   f.string(), ec.message()));
      pending.erase(std::find(pending.begin(), pending.end(), partial(f)));
      result.files.push_back(f.string());
    }
    result.bytes += fs::file_size(config_path) + (shards > 1 ? fs::file_size(index_path) : 0);
  } catch (...) {
    for (const fs::path& p : pending) fs::remove(p, ec);
    throw;
  }
  result.seconds = seconds_since(t0);
  return result;
}

// ---------------------------------------------------------------------------------------------
// The generator's checkpoint

namespace {

// Runs f(begin, end) on `threads` threads over consecutive parts of [0, n). The parts are
// disjoint, so the result does not depend on the number of threads.
void parallel_ranges(u64 n, int threads, const std::function<void(u64, u64)>& f) {
  const u64 parts = std::min<u64>(std::max(threads, 1), std::max<u64>(n, 1));
  if (parts <= 1) {
    f(0, n);
    return;
  }
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(parts);
  for (u64 p = 0; p < parts; ++p)
    pool.emplace_back([&, p] {
      try {
        f(n * p / parts, n * (p + 1) / parts);
      } catch (...) {
        errors[p] = std::current_exception();
      }
    });
  for (auto& t : pool) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

u64 ceil_div(u64 a, u64 b) { return (a + b - 1) / b; }

}  // namespace

void quantize_fp8_rows(const double* W, u64 rows, u64 cols, u64 B, std::uint8_t* codes, float* scales,
                       int threads) {
  const u64 sc = ceil_div(cols, B);
  // One task per block (row block br, column block bc); blocks are disjoint, so any split of
  // them among threads gives the same bytes.
  parallel_ranges(ceil_div(rows, B) * sc, threads, [&](u64 first, u64 last) {
    for (u64 blk = first; blk < last; ++blk) {
      const u64 r0 = (blk / sc) * B, r1 = std::min(rows, r0 + B);
      const u64 c0 = (blk % sc) * B, c1 = std::min(cols, c0 + B);
      double amax = 0.0;
      for (u64 r = r0; r < r1; ++r)
        for (u64 c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(W[r * cols + c]));
      const double s = amax > 0 ? static_cast<double>(static_cast<float>(amax / 448.0)) : 1.0;
      scales[blk] = static_cast<float>(s);
      for (u64 r = r0; r < r1; ++r)
        for (u64 c = c0; c < c1; ++c)
          codes[r * cols + c] = st::encode_e4m3_fast(static_cast<float>(W[r * cols + c] / s));
    }
  });
}

namespace {

// Produces each tensor of a generated checkpoint, a block of rows at a time. Called in catalogue
// order; an FP8 weight leaves its scales (one F32 per 128x128 block, a few KB) for the
// `_scale_inv` tensor that follows it.
class GeneratedTensors {
 public:
  GeneratedTensors(std::uint64_t seed, u64 block, int threads) : seed_(seed), B_(block), threads_(threads) {}

  void produce(const CatalogueEntry& e, const EmitBytes& emit) {
    if (e.name == scale_name(pending_weight_)) return emit_scales(e, emit);
    const u64 n = e.numel();
    const u64 cols = e.shape.empty() ? 1 : e.shape.back();  // the generator's last_dim
    const u64 rows = cols == 0 ? 0 : n / cols;
    const bool fp8 = e.dtype == st::DType::F8_E4M3;
    if (fp8 && e.shape.size() != 2)
      throw std::invalid_argument(fmt::format("FP8 tensor '{}' has {} dimensions, expected 2", e.name, e.shape.size()));
    // FP8: 128 rows give complete scale blocks; otherwise about 2^20 values per block.
    const u64 block_rows = fp8 ? B_ : std::max<u64>(1, (u64{1} << 20) / std::max<u64>(cols, 1));
    const std::size_t es = st::dtype_size(e.dtype);
    if (fp8) {
      pending_weight_ = e.name;
      scales_.assign(ceil_div(rows, B_) * ceil_div(cols, B_), 0.0f);
    }
    for (u64 r0 = 0; r0 < rows; r0 += block_rows) {
      const u64 r1 = std::min(rows, r0 + block_rows);
      const u64 count = (r1 - r0) * cols;
      W_.resize(count);    // W: [r1-r0, cols] row-major, elements r0*cols ..
      bytes_.resize(count * es);
      parallel_ranges(count, threads_, [&](u64 a, u64 b) {
        generator_fill(seed_, e.name, cols, r0 * cols + a, b - a, W_.data() + a);
      });
      if (fp8) {
        quantize_fp8_rows(W_.data(), r1 - r0, cols, B_, bytes_.data(),
                          scales_.data() + (r0 / B_) * ceil_div(cols, B_), threads_);
      } else {
        parallel_ranges(count, threads_, [&](u64 a, u64 b) {
          st::encode_values(e.dtype, W_.data() + a, b - a, bytes_.data() + a * es);
        });
      }
      emit(bytes_.data(), bytes_.size());
    }
  }

 private:
  void emit_scales(const CatalogueEntry& e, const EmitBytes& emit) {
    if (e.numel() != scales_.size())
      throw std::logic_error(fmt::format("'{}': {} scales computed, its shape holds {}", e.name,
                                         scales_.size(), e.numel()));
    std::vector<std::uint8_t> bytes(scales_.size() * 4);
    std::memcpy(bytes.data(), scales_.data(), bytes.size());  // F32, little-endian host
    pending_weight_.clear();
    emit(bytes.data(), bytes.size());
  }

  std::uint64_t seed_;
  u64 B_;
  int threads_;
  std::vector<double> W_;           // the current row block's values
  std::vector<std::uint8_t> bytes_;  // ... as stored
  std::string pending_weight_;      // the FP8 weight whose scales_ are not yet written
  std::vector<float> scales_;
};

}  // namespace

WrittenCheckpoint write_generated_checkpoint(const std::string& dir, const Config& cfg,
                                             std::uint64_t seed, st::DType dtype, int shards,
                                             const GeneratedCheckpointOptions& options) {
  if (shards < 1) throw std::invalid_argument(fmt::format("write_generated_checkpoint: shards = {}, expected >= 1", shards));
  const Config stored = stored_config(cfg, dtype, cfg.num_nextn_predict_layers > 0);
  const std::vector<CatalogueEntry> tensors = checkpoint_catalogue(stored);
  GeneratedTensors gen(seed, static_cast<u64>(stored.weight_block_size), options.threads);
  return write_checkpoint_files(
      dir, stored, tensors, shards,
      [&](std::size_t, const CatalogueEntry& e, const EmitBytes& emit) { gen.produce(e, emit); },
      options.progress);
}

}  // namespace dsr1
