#include "reference/io/checkpoint.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace dsr1 {

namespace fs = std::filesystem;
namespace st = safetensors;

std::string scale_name(const std::string& weight_name) { return weight_name + "_scale_inv"; }

namespace {

std::uint64_t ceil_div(std::uint64_t a, std::uint64_t b) { return (a + b - 1) / b; }

bool is_float(st::DType d) {
  return d == st::DType::F64 || d == st::DType::F32 || d == st::DType::BF16 ||
         d == st::DType::F16 || d == st::DType::F8_E4M3;
}

std::string shape_str(const std::vector<std::uint64_t>& s) {
  return fmt::format("[{}]", fmt::join(s, ", "));
}

}  // namespace

std::vector<double> dequantize_fp8_rows(const std::vector<double>& wq, std::uint64_t rows,
                                        std::uint64_t cols, std::uint64_t first,
                                        std::uint64_t count, const std::vector<double>& scale,
                                        std::uint64_t scale_rows, std::uint64_t scale_cols,
                                        std::uint64_t block, const Faults& faults,
                                        const std::string& what) {
  if (block == 0) throw std::invalid_argument(fmt::format("{}: FP8 block size must be positive", what));
  const std::uint64_t want_rows = ceil_div(rows, block), want_cols = ceil_div(cols, block);
  if (scale_rows != want_rows || scale_cols != want_cols)
    throw std::runtime_error(fmt::format(
        "{}: scale grid is [{}, {}], expected [ceil({}/{}), ceil({}/{})] = [{}, {}]", what,
        scale_rows, scale_cols, rows, block, cols, block, want_rows, want_cols));
  if (first > rows || count > rows - first || wq.size() != count * cols ||
      scale.size() != scale_rows * scale_cols)
    throw std::runtime_error(fmt::format("{}: value count does not match the shape", what));
  std::vector<double> w(count * cols);
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::uint64_t r = first + i;  // row within the whole matrix
    const std::uint64_t br = r / block;
    for (std::uint64_t c = 0; c < cols; ++c) {
      const std::uint64_t bc = c / block;
      const double s = scale[br * scale_cols + bc];
      double v = wq[i * cols + c] * s;  // W = Wq * S: the "_inv" scale multiplies (P13)
      // conformance fault: weight_scale_inv used as a divisor (P13)
      if (faults.fp8_scale_divide) v = wq[i * cols + c] / s;
      // conformance fault: partial edge blocks left unscaled (P13)
      const bool edge = (rows % block != 0 && br == want_rows - 1) ||
                        (cols % block != 0 && bc == want_cols - 1);
      if (faults.fp8_skip_edge_blocks && edge) v = wq[i * cols + c];
      w[i * cols + c] = v;
    }
  }
  return w;
}

// ---------------------------------------------------------------------------------------------

namespace {

// Reads and validates model.safetensors.index.json; returns tensor -> shard file name.
std::map<std::string, std::string> read_index(const fs::path& index_path) {
  const std::string where = fmt::format("checkpoint index '{}'", index_path.string());
  std::ifstream in(index_path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot open", where));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_index(ss.str(), where);
}

}  // namespace

std::map<std::string, std::string> parse_index(const std::string& text, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(fmt::format("{}: not valid JSON: {}", where, e.what()));
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw std::runtime_error(fmt::format(
        "{}: expected an object with \"weight_map\": {{tensor name: shard file name}}", where));
  std::map<std::string, std::string> map;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    if (!it.value().is_string())
      throw std::runtime_error(fmt::format("{}: tensor '{}' maps to {}, expected a file name string",
                                           where, it.key(), it.value().dump()));
    const std::string file = it.value().get<std::string>();
    // Shards live next to the index: a path component could point anywhere on the disk.
    if (file.empty() || file == "." || file == ".." || file.find('/') != std::string::npos ||
        file.find('\\') != std::string::npos)
      throw std::runtime_error(fmt::format(
          "{}: tensor '{}' maps to '{}', expected a plain file name in the index's directory", where,
          it.key(), file));
    map[it.key()] = file;
  }
  if (map.empty()) throw std::runtime_error(fmt::format("{}: weight_map is empty", where));
  return map;
}

Checkpoint::Checkpoint(const std::string& path, CheckpointOptions options)
    : root_(path), options_(std::move(options)) {
  const fs::path p(path);
  std::error_code ec;
  fs::path index_path, single_path;
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "model.safetensors.index.json"))
      index_path = p / "model.safetensors.index.json";
    else if (fs::exists(p / "model.safetensors"))
      single_path = p / "model.safetensors";
    else
      throw std::runtime_error(fmt::format(
          "checkpoint '{}': expected model.safetensors or model.safetensors.index.json in the "
          "directory, found neither",
          path));
  } else if (!fs::exists(p, ec)) {
    throw std::runtime_error(fmt::format("checkpoint '{}': no such file or directory", path));
  } else if (p.extension() == ".json") {
    index_path = p;
  } else {
    single_path = p;
  }

  if (!single_path.empty()) {
    files_.push_back(std::make_unique<st::File>(single_path.string()));
    for (const auto& t : files_[0]->tensors()) where_[t.name] = 0;
    return;
  }

  const auto map = read_index(index_path);
  const fs::path dir = index_path.parent_path();
  const std::string where = fmt::format("checkpoint index '{}'", index_path.string());
  std::map<std::string, std::size_t> file_ids;  // shard file name -> index into files_
  for (const auto& [tensor, file] : map) {
    if (file_ids.count(file)) continue;
    const fs::path shard = dir / file;
    if (!fs::is_regular_file(shard, ec))
      throw std::runtime_error(fmt::format("{}: tensor '{}' is mapped to '{}', which does not exist",
                                           where, tensor, shard.string()));
    file_ids[file] = files_.size();
    files_.push_back(std::make_unique<st::File>(shard.string()));
  }
  for (const auto& [tensor, file] : map) {
    const std::size_t id = file_ids.at(file);
    if (!files_[id]->has(tensor))
      throw std::runtime_error(fmt::format("{}: tensor '{}' is mapped to '{}', which has no such tensor",
                                           where, tensor, files_[id]->path()));
    where_[tensor] = id;
  }
  // Every tensor of every shard must be listed exactly once: an unlisted or duplicated tensor
  // means the index and the shards disagree about what the checkpoint holds.
  for (std::size_t id = 0; id < files_.size(); ++id)
    for (const auto& t : files_[id]->tensors()) {
      auto it = where_.find(t.name);
      if (it == where_.end())
        throw std::runtime_error(fmt::format("{}: shard '{}' holds tensor '{}', which the index does not list",
                                             where, files_[id]->path(), t.name));
      if (it->second != id)
        throw std::runtime_error(fmt::format(
            "{}: tensor '{}' appears in shard '{}' and in '{}' (the index names the latter)", where,
            t.name, files_[id]->path(), files_[it->second]->path()));
    }
}

bool Checkpoint::has(const std::string& name) const { return where_.count(name) != 0; }

const std::uint8_t* Checkpoint::mapped_data(const std::string& name) const {
  return file(name).raw(name);
}

const st::File& Checkpoint::file(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end())
    throw std::runtime_error(fmt::format("checkpoint '{}': missing tensor '{}'", root_, name));
  return *files_[it->second];
}

const st::TensorInfo& Checkpoint::info(const std::string& name) const { return file(name).info(name); }
st::DType Checkpoint::dtype(const std::string& name) const { return info(name).dtype; }
const std::string& Checkpoint::file_of(const std::string& name) const { return file(name).path(); }

std::vector<std::uint64_t> Checkpoint::shape(const std::string& name) const {
  return info(name).shape;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& [name, id] : where_) out.push_back(name);
  return out;
}

std::string Checkpoint::describe() const { return fmt::format("checkpoint '{}'", root_); }

TensorData Checkpoint::read_rows(const std::string& name, std::uint64_t first,
                                 std::uint64_t count) const {
  const st::File& f = file(name);
  const st::TensorInfo& t = f.info(name);
  const std::string what = fmt::format("checkpoint '{}': tensor '{}' (file '{}')", root_, name, f.path());
  if (!is_float(t.dtype))
    throw std::runtime_error(fmt::format(
        "{}: dtype {}, expected a float dtype (F64, F32, BF16, F16 or F8_E4M3)", what,
        st::to_string(t.dtype)));
  check_row_range(describe(), name, t.shape, first, count);
  TensorData out{t.shape, f.read_rows(name, first, count)};
  if (!out.shape.empty()) out.shape[0] = count;
  counters_.bytes_read += out.data.size() * st::dtype_size(t.dtype);
  counters_.values_dequantised += out.data.size();
  const std::uint64_t row_len = count == 0 ? 0 : out.data.size() / count;
  for (std::size_t i = 0; i < out.data.size(); ++i)
    if (!std::isfinite(out.data[i]))
      throw std::runtime_error(fmt::format("{}: element {} is {}, expected a finite value", what,
                                           first * row_len + i, out.data[i]));
  if (t.dtype != st::DType::F8_E4M3) return out;

  // FP8: apply the block scales (spec §10).
  const Fp8Scales S = fp8_scales(name, t, what);
  out.data = dequantize_fp8_rows(out.data, t.shape[0], t.shape[1], first, count, S.scale, S.rows,
                                 S.cols, S.block, options_.faults, S.what);
  return out;
}

Checkpoint::Fp8Scales Checkpoint::fp8_scales(const std::string& name, const st::TensorInfo& t,
                                             const std::string& what) const {
  const std::string sname = scale_name(name);
  if (!has(sname))
    throw std::runtime_error(fmt::format("{}: FP8 (F8_E4M3) weight without its scale tensor '{}'",
                                         what, sname));
  if (t.shape.size() != 2)
    throw std::runtime_error(fmt::format("{}: FP8 weight has shape {}, expected a 2-D [out, in] matrix",
                                         what, shape_str(t.shape)));
  const st::TensorInfo& s = info(sname);
  Fp8Scales S;
  S.what = fmt::format("checkpoint '{}': tensor '{}' (file '{}')", root_, sname, file(sname).path());
  if (s.dtype == st::DType::F8_E4M3 || !is_float(s.dtype))
    throw std::runtime_error(fmt::format("{}: dtype {}, expected F32", S.what, st::to_string(s.dtype)));
  const std::uint64_t B = static_cast<std::uint64_t>(options_.weight_block_size);
  if (s.shape.size() != 2)
    throw std::runtime_error(fmt::format("{}: shape {}, expected [ceil({}/{}), ceil({}/{})] = [{}, {}]",
                                         S.what, shape_str(s.shape), t.shape[0], B, t.shape[1], B,
                                         ceil_div(t.shape[0], B), ceil_div(t.shape[1], B)));
  // The scale grid is small (one value per 128 x 128 block): read it whole.
  S.scale = file(sname).read(sname);
  counters_.bytes_read += S.scale.size() * st::dtype_size(s.dtype);
  for (std::size_t i = 0; i < S.scale.size(); ++i)
    if (!std::isfinite(S.scale[i]) || S.scale[i] < 0)
      throw std::runtime_error(fmt::format("{}: element {} is {}, expected a finite scale >= 0",
                                           S.what, i, S.scale[i]));
  S.rows = s.shape[0];
  S.cols = s.shape[1];
  S.block = B;
  return S;
}

namespace {

// dst[c * ld + i] = decode(row first + i, column c) * scale(first + i, c) for i < count, c <
// cols, one 32 x 32 tile at a time (reads and writes of a tile stay in cache). `decode` turns
// element k of the rows into a double; `scale` gives the factor of a (row, column); both exact.
// Throws `bad(element index, value)` for a value that is not finite. Large requests are split
// by columns over the machine's cores; each value is computed alone, so the split changes nothing.
template <class Decode, class Scale, class Bad>
void decode_transposed(std::uint64_t first, std::uint64_t count, std::uint64_t cols, Decode decode,
                       Scale scale, Bad bad, double* dst, std::uint64_t ld) {
  constexpr std::uint64_t tile = 32;
  auto columns = [&](std::uint64_t col0, std::uint64_t col1) {
    for (std::uint64_t i0 = 0; i0 < count; i0 += tile)
      for (std::uint64_t c0 = col0; c0 < col1; c0 += tile) {
        const std::uint64_t i1 = std::min(count, i0 + tile), c1 = std::min(col1, c0 + tile);
        for (std::uint64_t c = c0; c < c1; ++c)
          for (std::uint64_t i = i0; i < i1; ++i) {
            const double v = decode(i * cols + c) * scale(first + i, c);
            if (!std::isfinite(v)) bad((first + i) * cols + c, v);
            dst[c * ld + i] = v;
          }
      }
  };
  // Below a few million values a thread costs more than it saves.
  constexpr std::uint64_t kPerThread = std::uint64_t{1} << 21;
  const std::uint64_t hw = std::max(1u, std::thread::hardware_concurrency());
  const std::uint64_t n_threads = std::min({hw, cols / tile, count * cols / kPerThread});
  if (n_threads <= 1) {
    columns(0, cols);
    return;
  }
  // Whole tiles per thread; an error in any part is rethrown here, the lowest part's first.
  const std::uint64_t chunk = (cols / tile + n_threads - 1) / n_threads * tile;
  std::vector<std::exception_ptr> errors(n_threads);
  std::vector<std::thread> threads;
  for (std::uint64_t k = 0; k < n_threads; ++k) {
    const std::uint64_t lo = k * chunk, hi = std::min(cols, lo + chunk);
    if (lo >= hi) break;
    threads.emplace_back([&, k, lo, hi] {
      try {
        columns(lo, hi);
      } catch (...) {
        errors[k] = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace

// The checkpoint's own transposing read: each value is decoded, scaled and written to its place
// in one step, with no row-major copy in between (the default, TensorSource::read_rows_transposed,
// decodes into a buffer first). Same values, bit for bit: an e4m3 value (4 significant bits)
// times a float32 scale (24) is exact in double, as in dequantize_fp8_rows. The conformance
// faults of dequantize_fp8_rows and the rarer dtypes take the general way.
void Checkpoint::read_rows_transposed(const std::string& name, std::uint64_t first,
                                      std::uint64_t count, double* dst, std::uint64_t ld) const {
  const st::File& f = file(name);
  const st::TensorInfo& t = f.info(name);
  const bool faults = options_.faults.fp8_scale_divide || options_.faults.fp8_skip_edge_blocks;
  const bool fused = t.shape.size() == 2 && !faults &&
                     (t.dtype == st::DType::F8_E4M3 || t.dtype == st::DType::BF16 ||
                      t.dtype == st::DType::F32);
  if (!fused) return TensorSource::read_rows_transposed(name, first, count, dst, ld);
  check_row_range(describe(), name, t.shape, first, count);
  const std::string what = fmt::format("checkpoint '{}': tensor '{}' (file '{}')", root_, name, f.path());
  const std::uint64_t cols = t.shape[1];
  const std::uint8_t* p = f.raw_rows(name, first, count);
  auto bad = [&](std::uint64_t k, double v) {
    throw std::runtime_error(fmt::format("{}: element {} is {}, expected a finite value", what, k, v));
  };
  auto one = [](std::uint64_t, std::uint64_t) { return 1.0; };
  if (t.dtype == st::DType::F8_E4M3) {
    const Fp8Scales S = fp8_scales(name, t, what);
    if (S.rows != ceil_div(t.shape[0], S.block) || S.cols != ceil_div(cols, S.block))
      throw std::runtime_error(fmt::format(
          "{}: scale grid is [{}, {}], expected [ceil({}/{}), ceil({}/{})] = [{}, {}]", S.what,
          S.rows, S.cols, t.shape[0], S.block, cols, S.block, ceil_div(t.shape[0], S.block),
          ceil_div(cols, S.block)));
    std::array<double, 256> e4m3{};
    for (int b = 0; b < 256; ++b) e4m3[b] = st::decode_e4m3(static_cast<std::uint8_t>(b));
    // W = Wq * S: the "_inv" scale multiplies (P13).
    auto scale = [&](std::uint64_t r, std::uint64_t c) {
      return S.scale[(r / S.block) * S.cols + c / S.block];
    };
    decode_transposed(first, count, cols, [&](std::uint64_t k) { return e4m3[p[k]]; }, scale, bad,
                      dst, ld);
  } else if (t.dtype == st::DType::BF16) {
    decode_transposed(first, count, cols, [&](std::uint64_t k) {
      std::uint16_t b;
      std::memcpy(&b, p + 2 * k, 2);  // little-endian, as the file (and x86) stores it
      return st::decode_bf16(b);
    }, one, bad, dst, ld);
  } else {
    decode_transposed(first, count, cols, [&](std::uint64_t k) {
      float v;
      std::memcpy(&v, p + 4 * k, 4);
      return static_cast<double>(v);
    }, one, bad, dst, ld);
  }
  f.release_rows(name, first, count);
  counters_.bytes_read += count * cols * st::dtype_size(t.dtype);
  counters_.values_dequantised += count * cols;
}

std::vector<std::uint8_t> Checkpoint::read_stored_rows(const std::string& name, std::uint64_t first,
                                                       std::uint64_t count) const {
  const st::File& f = file(name);
  check_row_range(describe(), name, f.info(name).shape, first, count);
  std::vector<std::uint8_t> bytes = f.read_raw_rows(name, first, count);
  counters_.bytes_read += bytes.size();
  return bytes;
}

}  // namespace dsr1
