// The progress line of long runs: one line on stderr, rewritten in place, e.g.
//   [dsr1] pass 1/1  layer 12/61  experts 187  generated 9.41e+09 values  read 0.0 MB  2m13s  ETA 9m40s
// ("read": bytes read from checkpoint files, or used where they lie in the mapped files).
// Shown when stderr is a terminal or with --progress; never with --quiet or --json, so that
// machine-readable output stays clean.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "reference/deepseek/weight_store.hpp"
#include "reference/fast/source_model.hpp"
#include "reference/io/tensor_source.hpp"

namespace dsr1::cli {

class ProgressLine {
 public:
  // `passes`: how many forward passes the run makes (prefill, decode steps, MTP), each over
  // `layers` layers, for the ETA. `enabled` false makes every call a no-op.
  ProgressLine(bool enabled, std::int64_t passes, std::int64_t layers, const TensorSource& source,
               const WeightStore& weights);
  // After layer l of the current pass (called by the model through ForwardOptions).
  void layer_done(std::int64_t l, std::int64_t L);
  // A fast-path model that fetches its own weights (fast::SourceModel): its routed experts and
  // the mapped bytes it used are added to the source's and the store's counts (which it does
  // not go through). Null: none; set it back to null before the model goes.
  void count_also(const fast::SourceModelCounters* fast) { fast_ = fast; }
  // Ends the line (a newline), once.
  void finish();
  static bool stderr_is_terminal();

 private:
  void draw(std::int64_t l, std::int64_t L);
  bool enabled_;
  std::int64_t passes_, layers_, pass_ = 0, layers_done_ = 0;
  const TensorSource& source_;
  const WeightStore& weights_;
  const fast::SourceModelCounters* fast_ = nullptr;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool drawn_ = false;
};

// "2m13s", "1h04m", "17s"
std::string format_duration(double seconds);

}  // namespace dsr1::cli
