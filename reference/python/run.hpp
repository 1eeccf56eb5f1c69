// One model run for a front end: the reference forward pass (or the float32 fast path) on a token
// list, with the tensors a trace filter selects kept in memory. The Python module (module.cpp)
// calls it; it is the work `dsr1 run` does, without the printing.
// Leaves out: where the weights come from (reference/cli/model_source.hpp) and the output
// formats (the caller turns the result into arrays or files).
#pragma once

#include <armadillo>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "reference/cli/model_source.hpp"
#include "reference/trace/trace.hpp"

namespace dsr1::python {

struct RunRequest {
  std::vector<std::int64_t> tokens;
  std::vector<std::string> trace;  // globs on trace names; empty = keep no tensor
  bool fast = false;               // the float32 fast path (absorbed attention, no MTP)
  std::string attn;                // naive | absorbed; "" = naive (reference), absorbed (fast path)
  std::int64_t decode_from = -1;   // >= 0: prefill positions < P, then decode one at a time
  bool mtp = false;                // also run the MTP head (V3)
  int threads = 0;                 // fast path: 0 = every hardware thread
  bool progress = false;           // the progress line on stderr (reference/cli/progress.hpp)
  // Called after every decoder layer and before every read of weights (the reference path); may
  // throw to abort the run: the Python module checks for Ctrl-C there.
  std::function<void()> check_interrupt;
};

struct RunResult {
  bool fast = false;               // logits_f / tensors computed in float32
  arma::mat logits;                // [V, T] (reference); empty for the fast path
  arma::fmat logits_f;             // [V, T] (fast path)
  arma::mat mtp_logits;            // [V, T-1] with mtp
  std::vector<RecordingTracer::Entry> tensors;  // computation order; row-major on-disk shapes
  double seconds = 0;
};

// Thrown when ModelSource refuses a model that does not fit in this machine's memory (the same
// limits as `dsr1 run`).
struct DoesNotFit : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Runs the model. Throws std::invalid_argument for options the path cannot honour, token ids out
// of range, or a trace glob that matched nothing (naming the glob); DoesNotFit as above.
RunResult run_model(const cli::ModelSource& source, const RunRequest& req);

// The fast path's weight storage for a source: what a checkpoint stores (FP8 -> fp8, BF16 ->
// bf16, else f32), f32 for generated weights; as `dsr1 run --fast --fast-weights auto`.
std::string fast_weight_name(const cli::ModelSource& source, const Config& c);

}  // namespace dsr1::python
