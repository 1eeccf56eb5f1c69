#include "reference/trace/trace_outputs.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace dsr1 {

TensorStats tensor_stats(const TensorView& x) {
  TensorStats s;
  if (!x.data) return s;
  const std::uint64_t n = x.numel();
  double sum = 0, sum_sq = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    const double v = x.data[i];
    if (!std::isfinite(v)) {
      ++s.non_finite;
      continue;
    }
    if (s.finite == 0 || v < s.min) s.min = v;
    if (s.finite == 0 || v > s.max) s.max = v;
    sum += v;
    sum_sq += v * v;
    ++s.finite;
  }
  if (s.finite > 0) {
    s.mean = sum / static_cast<double>(s.finite);
    s.rms = std::sqrt(sum_sq / static_cast<double>(s.finite));
  }
  return s;
}

std::string format_number(double v, int precision) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{:.{}f}", v, precision);
  if (s.find_first_not_of("-0.") == std::string::npos && s[0] == '-') s.erase(0, 1);  // "-0.00"
  return s;
}

std::string format_shape(const std::vector<std::uint64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

namespace {

// A row of numbers, each right-aligned to `width`; `skip_from`..`skip_to` (exclusive) elided.
std::string format_row(const double* row, std::uint64_t n, int precision, std::size_t width,
                       std::uint64_t corner, bool elide) {
  std::string s = "[";
  for (std::uint64_t c = 0; c < n; ++c) {
    if (elide && c == corner) {
      s += "..., ";
      c = n - corner - 1;
      continue;
    }
    s += fmt::format("{:>{}}", format_number(row[c], precision), width);
    if (c + 1 < n) s += ", ";
  }
  return s + "]";
}

// Characters of a UTF-8 string (its code points: what a terminal shows for the labels' scripts,
// near enough for aligning columns).
std::size_t display_width(const std::string& s) {
  std::size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace

bool holds_indices(const std::string& name) {
  const std::string tail = "experts";
  return name.size() >= tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
}

std::string format_tensor(const std::string& name, const TensorView& x, const PrintOptions& opt) {
  // Indices print as integers; values at the chosen precision.
  const int precision = holds_indices(name) ? 0 : opt.precision;
  const std::string head = fmt::format("{} {}", name, format_shape(x.shape));
  if (opt.shapes_only || !x.data) return head;
  const std::uint64_t n = x.numel();
  if (x.shape.empty()) return fmt::format("{} = {}", name, format_number(x.data[0], precision));
  // View the tensor as [rows, cols] with cols = innermost dimension; outer dims become blocks.
  const std::uint64_t cols = x.shape.back();
  const std::uint64_t rows_per_block = x.shape.size() >= 2 ? x.shape[x.shape.size() - 2] : 1;
  const std::uint64_t blocks = cols == 0 || rows_per_block == 0 ? 0 : n / (cols * rows_per_block);
  const bool large = n > opt.max_full;
  std::string s = head;
  if (large) {
    const TensorStats st = tensor_stats(x);
    s += fmt::format("  min {}  max {}  mean {}  rms {}", format_number(st.min, opt.precision),
                     format_number(st.max, opt.precision), format_number(st.mean, opt.precision),
                     format_number(st.rms, opt.precision));
    if (st.non_finite) s += fmt::format("  ({} non-finite)", st.non_finite);
  }
  if (n == 0) return s;
  const bool elide_cols = large && cols > 2 * opt.corner;
  const bool elide_rows = large && rows_per_block > 2 * opt.corner;
  const bool elide_blocks = large && blocks > 2;
  std::size_t width = 0;  // align every column of the shown values
  for (std::uint64_t i = 0; i < n; ++i)
    width = std::max(width, format_number(x.data[i], precision).size());
  if (x.shape.size() == 1) return s + (large ? "\n  " : " = ") +
                                  format_row(x.data, cols, precision, width, opt.corner, elide_cols);
  // Rows that are the run's positions carry their token's label.
  const bool labelled = !opt.position_labels.empty() && rows_per_block == opt.position_labels.size();
  std::size_t label_width = 0;
  if (labelled)
    for (const std::string& l : opt.position_labels) label_width = std::max(label_width, display_width(l));
  for (std::uint64_t b = 0; b < blocks; ++b) {
    if (elide_blocks && b == 1) {
      s += fmt::format("\n  ... ({} more)", blocks - 2);
      b = blocks - 2;
      continue;
    }
    std::string label;
    if (x.shape.size() >= 3) {  // index of this block in the outer dimensions, e.g. "[1]"
      std::vector<std::uint64_t> idx;
      std::uint64_t rest = b;
      for (std::size_t d = x.shape.size() - 2; d-- > 0;) {
        idx.insert(idx.begin(), rest % x.shape[d]);
        rest /= x.shape[d];
      }
      label = fmt::format("[{}] ", fmt::join(idx, ", "));
      s += "\n  " + label;
    }
    for (std::uint64_t r = 0; r < rows_per_block; ++r) {
      if (elide_rows && r == opt.corner) {
        s += "\n  " + std::string(label.size(), ' ') + "...";
        r = rows_per_block - opt.corner - 1;
        continue;
      }
      const double* row = x.data + (b * rows_per_block + r) * cols;
      const bool first_of_label = (x.shape.size() >= 3 && r == 0);
      s += (first_of_label ? "" : "\n  " + std::string(label.size(), ' '));
      if (labelled) {
        const std::string& l = opt.position_labels[r];
        s += l + std::string(label_width - display_width(l) + 2, ' ');
      }
      s += format_row(row, cols, precision, width, opt.corner, elide_cols);
    }
  }
  return s;
}

PrintTracer::PrintTracer(std::vector<std::string> filters, PrintOptions opt, std::FILE* out)
    : Tracer(std::move(filters)), opt_(opt), out_(out) {}

void PrintTracer::on_tensor(const std::string& full_name, const TensorView& x) {
  fmt::print(out_, "{}\n", format_tensor(full_name, x, opt_));
}

void PrintTracer::on_shape(const std::string& full_name, const TensorView& x,
                           const StageCost& cost) {
  std::string line = fmt::format("{} {}", full_name, format_shape(x.shape));
  if (cost.flops > 0 || cost.bytes > 0)
    line += fmt::format("  flops {:.4g}  bytes {:.4g}", cost.flops, cost.bytes);
  fmt::print(out_, "{}\n", line);
}

void PrintTracer::note(std::string_view text) { fmt::print(out_, "{}\n", text); }

void PrintTracer::finish() { std::fflush(out_); }

namespace {
nlohmann::json json_number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return v;
}
}  // namespace

JsonlTracer::JsonlTracer(const std::string& path, std::vector<std::string> filters,
                         std::uint64_t max_data)
    : Tracer(std::move(filters)), path_(path), out_(path), max_data_(max_data) {
  if (!out_) throw std::runtime_error(fmt::format("{}: cannot open for writing (JSON Lines trace)", path));
}

nlohmann::json JsonlTracer::record_json(const std::string& name, const TensorView& x,
                                        std::uint64_t max_data) {
  nlohmann::json j;
  j["name"] = name;
  j["shape"] = x.shape;
  j["dtype"] = "F64";
  const std::uint64_t n = x.numel();
  if (n <= max_data) {
    nlohmann::json data = nlohmann::json::array();
    for (std::uint64_t i = 0; i < n; ++i) data.push_back(json_number(x.data[i]));
    j["data"] = std::move(data);
  } else {
    const TensorStats st = tensor_stats(x);
    j["stats"] = {{"min", json_number(st.min)}, {"max", json_number(st.max)},
                  {"mean", json_number(st.mean)}, {"rms", json_number(st.rms)},
                  {"finite", st.finite}, {"non_finite", st.non_finite}};
  }
  return j;
}

void JsonlTracer::on_tensor(const std::string& full_name, const TensorView& x) {
  if (!x.data) {
    on_shape(full_name, x, {});
    return;
  }
  out_ << record_json(full_name, x, max_data_).dump() << '\n';
  if (!out_) throw std::runtime_error(fmt::format("{}: write failed (JSON Lines trace)", path_));
}

void JsonlTracer::on_shape(const std::string& full_name, const TensorView& x,
                           const StageCost& cost) {
  nlohmann::json j{{"name", full_name}, {"shape", x.shape}, {"flops", cost.flops},
                   {"bytes", cost.bytes}};
  out_ << j.dump() << '\n';
}

void JsonlTracer::finish() {
  out_.flush();
  if (!out_) throw std::runtime_error(fmt::format("{}: write failed (JSON Lines trace)", path_));
}

DumpTracer::DumpTracer(std::string path, std::vector<std::string> filters, safetensors::DType dtype)
    : Tracer(std::move(filters)), path_(std::move(path)), dtype_(dtype) {
  if (dtype != safetensors::DType::F64 && dtype != safetensors::DType::F32)
    throw std::invalid_argument(fmt::format("DumpTracer({}): dtype {}, expected F64 or F32", path_,
                                            safetensors::to_string(dtype)));
}

void DumpTracer::on_tensor(const std::string& full_name, const TensorView& x) {
  if (!x.data) return;  // shape-only: nothing to store
  const int k = ++seen_[full_name];
  safetensors::NamedTensor t;
  t.name = k == 1 ? full_name : fmt::format("{}#{}", full_name, k);
  t.shape = x.shape;
  t.data.assign(x.data, x.data + x.numel());
  t.dtype = dtype_;
  tensors_.push_back(std::move(t));
}

void DumpTracer::on_shape(const std::string&, const TensorView&, const StageCost&) {}

void DumpTracer::finish() {
  if (written_) return;
  safetensors::write(path_, tensors_, {{"format", "dsr1 trace dump"}});
  written_ = true;
}

}  // namespace dsr1
