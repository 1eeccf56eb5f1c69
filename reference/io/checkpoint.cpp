#include "reference/io/checkpoint.hpp"

#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>

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
  const std::string sname = scale_name(name);
  if (!has(sname))
    throw std::runtime_error(fmt::format("{}: FP8 (F8_E4M3) weight without its scale tensor '{}'",
                                         what, sname));
  if (t.shape.size() != 2)
    throw std::runtime_error(fmt::format("{}: FP8 weight has shape {}, expected a 2-D [out, in] matrix",
                                         what, shape_str(t.shape)));
  const st::TensorInfo& s = info(sname);
  const std::string swhat =
      fmt::format("checkpoint '{}': tensor '{}' (file '{}')", root_, sname, file(sname).path());
  if (s.dtype == st::DType::F8_E4M3 || !is_float(s.dtype))
    throw std::runtime_error(fmt::format("{}: dtype {}, expected F32", swhat, st::to_string(s.dtype)));
  const std::uint64_t B = static_cast<std::uint64_t>(options_.weight_block_size);
  if (s.shape.size() != 2)
    throw std::runtime_error(fmt::format("{}: shape {}, expected [ceil({}/{}), ceil({}/{})] = [{}, {}]",
                                         swhat, shape_str(s.shape), t.shape[0], B, t.shape[1], B,
                                         ceil_div(t.shape[0], B), ceil_div(t.shape[1], B)));
  // The scale grid is small (one value per 128 x 128 block): read it whole.
  const std::vector<double> scale = file(sname).read(sname);
  counters_.bytes_read += scale.size() * st::dtype_size(s.dtype);
  for (std::size_t i = 0; i < scale.size(); ++i)
    if (!std::isfinite(scale[i]) || scale[i] < 0)
      throw std::runtime_error(fmt::format("{}: element {} is {}, expected a finite scale >= 0",
                                           swhat, i, scale[i]));
  out.data = dequantize_fp8_rows(out.data, t.shape[0], t.shape[1], first, count, scale, s.shape[0],
                                 s.shape[1], B, options_.faults, swhat);
  return out;
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
