// The tracer's outputs: text for people (PrintTracer), JSON Lines for machines (JsonlTracer) and
// a safetensors dump of the selected tensors (DumpTracer).
// Leaves out: choosing names and filters (trace.hpp) and comparing dumps (the comparison tool).
//
// All three receive tensors in the on-disk layout of trace.hpp: row-major, shape outermost first
// ([T, d] for a [d, T] activation). Non-finite values (masked scores are -inf) print as "-inf",
// "inf", "nan", and JSON Lines writes them as those strings because JSON has no spelling for them.
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "reference/io/safetensors.hpp"
#include "reference/trace/trace.hpp"

namespace dsr1 {

struct PrintOptions {
  int precision = 4;             // digits after the decimal point
  std::uint64_t max_full = 64;   // tensors with more elements print as statistics and corners
  std::uint64_t corner = 3;      // rows and columns shown at each corner of a large tensor
  bool shapes_only = false;      // print only name and shape (+ flops/bytes of shape records)
  // One label per position of the run ("3 ␣Paris": the position and its token), printed before
  // each row of a tensor whose rows are those positions ([T, ...], or [n_h, T, ...] per head).
  // Empty: rows are unlabelled.
  std::vector<std::string> position_labels;
};

// A traced tensor of indices rather than values (the chosen experts: names ending in "experts",
// such as layers.3.moe.experts and router.experts), printed as integers.
bool holds_indices(const std::string& name);

// Summary of a tensor's finite values (non-finite ones are counted apart).
struct TensorStats {
  double min = 0, max = 0, mean = 0, rms = 0;
  std::uint64_t finite = 0, non_finite = 0;
};
TensorStats tensor_stats(const TensorView& x);

// One number as the text output shows it: fixed point with `precision` digits, or inf/-inf/nan.
std::string format_number(double v, int precision);
// The text block PrintTracer prints for one tensor (no trailing newline).
std::string format_tensor(const std::string& name, const TensorView& x, const PrintOptions& opt);
// "[2, 2, 2]"
std::string format_shape(const std::vector<std::uint64_t>& shape);

// Text on a stdio stream (stdout by default), one block per tensor, notes as plain lines.
class PrintTracer : public Tracer {
 public:
  explicit PrintTracer(std::vector<std::string> filters = {"*"}, PrintOptions opt = {},
                       std::FILE* out = stdout);
  void on_tensor(const std::string& full_name, const TensorView& x) override;
  void on_shape(const std::string& full_name, const TensorView& x, const StageCost& cost) override;
  void note(std::string_view text) override;
  void finish() override;
  const PrintOptions& options() const { return opt_; }

 private:
  PrintOptions opt_;
  std::FILE* out_;
};

// One JSON object per line: {"name", "shape", "dtype": "F64", "data": [...]} for tensors up to
// max_data elements, {"name", "shape", "dtype", "stats": {min, max, mean, rms, finite,
// non_finite}} above; shape-only records carry "flops" and "bytes" instead of values.
class JsonlTracer : public Tracer {
 public:
  JsonlTracer(const std::string& path, std::vector<std::string> filters = {"*"},
              std::uint64_t max_data = 1u << 20);
  void on_tensor(const std::string& full_name, const TensorView& x) override;
  void on_shape(const std::string& full_name, const TensorView& x, const StageCost& cost) override;
  void finish() override;
  // The record for one tensor (exposed for tests).
  static nlohmann::json record_json(const std::string& name, const TensorView& x,
                                    std::uint64_t max_data);

 private:
  std::string path_;
  std::ofstream out_;
  std::uint64_t max_data_;
};

// Collects the selected tensors and writes them to one .safetensors file at finish(), as F64
// (the reference) or F32 (the fast path, whose values are float32, so F32 stores them exactly and
// `dsr1 compare` then applies its float32 tolerance). A name recorded again (a loop without a
// scope) is stored as "name#2", "name#3", ... Shape-only records have no values and are not stored.
class DumpTracer : public Tracer {
 public:
  explicit DumpTracer(std::string path, std::vector<std::string> filters = {"*"},
                      safetensors::DType dtype = safetensors::DType::F64);
  void on_tensor(const std::string& full_name, const TensorView& x) override;
  void on_shape(const std::string& full_name, const TensorView& x, const StageCost& cost) override;
  void finish() override;  // writes the file (once); an empty selection writes an empty file
  const std::vector<safetensors::NamedTensor>& tensors() const { return tensors_; }

 private:
  std::string path_;
  safetensors::DType dtype_;
  std::vector<safetensors::NamedTensor> tensors_;
  std::map<std::string, int> seen_;
  bool written_ = false;
};

}  // namespace dsr1
