// The tracer: every intermediate tensor of every formula has a named trace point.
// Leaves out: the output formats (text, JSON Lines, safetensors) live in trace_outputs.hpp.
//
// A reference function records its intermediates with one line at the call site:
//     TRACE(tr, "attn.scores", scores);
// `tr` is a Tracer* that is null when tracing is off, so nothing is formatted, copied or even
// evaluated then; with the CMake option DSR1_TRACE=OFF the hooks compile away entirely.
//
// Names are hierarchical: a caller opens a scope (TraceScope scope(tr, "layers.3");) and the
// names recorded inside it become "layers.3.attn.scores". A run selects tensors with a glob
// filter on the full name ("layers.*.attn.*", "router.probs", "*"), see glob_match().
//
// Shapes. Tensors are Armadillo matrices with one token per column (h is [d, T]); Armadillo
// stores them column-major, which is exactly the row-major layout of the transposed shape.
// Every file format therefore reports a [rows, cols] matrix as [cols, rows] (so h is [T, d] on
// disk, as PyTorch and NumPy users expect), and a cube [rows, cols, slices] as
// [slices, cols, rows]. `TensorView` carries that on-disk shape.
#pragma once

#include <armadillo>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dsr1 {

// A read-only view of a traced tensor: row-major shape as written to files, double data.
struct TensorView {
  std::vector<std::uint64_t> shape;  // row-major, outermost first
  const double* data = nullptr;      // nullptr in shape-only records
  std::uint64_t numel() const;
};

// Shape of an Armadillo object as it appears on disk (reversed, see the header comment).
std::vector<std::uint64_t> disk_shape(const arma::mat& x);
std::vector<std::uint64_t> disk_shape(const arma::vec& x);
std::vector<std::uint64_t> disk_shape(const arma::cube& x);

// Shell-style glob: '*' matches any run of characters (dots included), '?' one character.
bool glob_match(std::string_view pattern, std::string_view text);

// Cost of a stage, reported by shape-only (dry-run) records.
struct StageCost {
  double flops = 0;  // floating-point operations (a multiply-add counts as 2)
  double bytes = 0;  // bytes of weights and activations the stage reads (at the model's dtype)
  double weight_bytes = 0;  // the weights' share of `bytes` (as stored in the checkpoint)
};

class Tracer {
 public:
  // `filters`: glob patterns on full names; a tensor is recorded if any pattern matches.
  explicit Tracer(std::vector<std::string> filters = {"*"});
  virtual ~Tracer() = default;
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;

  // Record a tensor under `name`, prefixed by the open scopes. Vectors are [n], matrices
  // [cols, rows] on disk (tokens outermost), cubes [slices, cols, rows].
  void record(std::string_view name, const arma::mat& x);
  void record(std::string_view name, const arma::fmat& x);
  void record(std::string_view name, const arma::vec& x);   // [n]
  void record(std::string_view name, const arma::fvec& x);  // [n]
  void record(std::string_view name, const arma::cube& x);
  void record(std::string_view name, const arma::fcube& x);
  void record_scalar(std::string_view name, double x);

  // Shape-only record: a stage's output shape (row-major, as on disk) and its cost,
  // without any values. Used by dry runs, which never allocate the model's weights.
  void record_shape(std::string_view name, std::vector<std::uint64_t> shape, StageCost cost = {});

  // A line of commentary (walkthroughs use it to explain a step); printed by text outputs.
  virtual void note(std::string_view text) { (void)text; }

  // Scopes: push("layers.3") makes later names "layers.3.<name>". Prefer TraceScope.
  void push(std::string_view scope);
  void pop();
  std::string full_name(std::string_view name) const;

  // Does the filter select this full name?
  bool wants(std::string_view full) const;
  // How many records the filter let through / rejected so far (a filter that matched
  // nothing is reported to the user as an error, see check_filter_matched()).
  std::uint64_t matched() const { return matched_; }
  std::uint64_t seen() const { return seen_; }
  const std::vector<std::string>& filters() const { return filters_; }
  // Throws std::runtime_error naming the filter if no record matched it.
  void check_filter_matched() const;

  // Called once per selected tensor with its full name. Data is row-major as on disk.
  virtual void on_tensor(const std::string& full_name, const TensorView& x) = 0;
  // Called for shape-only records; by default forwarded to on_tensor with data == nullptr.
  virtual void on_shape(const std::string& full_name, const TensorView& x, const StageCost& cost);
  // Called at the end of a run so that outputs can flush or finish files.
  virtual void finish() {}

 private:
  bool select(const std::string& full);
  std::vector<std::string> filters_;
  std::vector<std::string> scopes_;
  std::uint64_t matched_ = 0;
  std::uint64_t seen_ = 0;
};

// RAII scope: TraceScope s(tr, "layers.3"); works with a null tracer.
class TraceScope {
 public:
  TraceScope(Tracer* tr, std::string_view scope) : tr_(tr) {
    if (tr_) tr_->push(scope);
  }
  ~TraceScope() {
    if (tr_) tr_->pop();
  }
  TraceScope(const TraceScope&) = delete;
  TraceScope& operator=(const TraceScope&) = delete;

 private:
  Tracer* tr_;
};

// Forwards every record to several outputs (for example text on stdout and a dump file).
class TeeTracer : public Tracer {
 public:
  TeeTracer(std::vector<std::string> filters, std::vector<Tracer*> outputs);
  void on_tensor(const std::string& full_name, const TensorView& x) override;
  void on_shape(const std::string& full_name, const TensorView& x, const StageCost& cost) override;
  void note(std::string_view text) override;
  void finish() override;

 private:
  std::vector<Tracer*> outputs_;
};

// Keeps every selected tensor in memory (tests, golden sets, comparisons).
class RecordingTracer : public Tracer {
 public:
  struct Entry {
    std::string name;
    std::vector<std::uint64_t> shape;
    std::vector<double> data;  // row-major; empty for shape-only records
    StageCost cost;
  };
  using Tracer::Tracer;
  void on_tensor(const std::string& full_name, const TensorView& x) override;
  void on_shape(const std::string& full_name, const TensorView& x, const StageCost& cost) override;

  const std::vector<Entry>& entries() const { return entries_; }
  bool has(std::string_view name) const;
  // The last record with this name; throws std::out_of_range naming it if absent.
  const Entry& get(std::string_view name) const;
  // The last record of this name as a [rows, cols] matrix in the code's convention
  // (the inverse of disk_shape for 1-D and 2-D records).
  arma::mat get_mat(std::string_view name) const;

 private:
  std::vector<Entry> entries_;
};

}  // namespace dsr1

#if DSR1_TRACE
#define TRACE(tr, name, x)          \
  do {                              \
    if (tr) (tr)->record((name), (x)); \
  } while (0)
#define TRACE_SCALAR(tr, name, x)   \
  do {                              \
    if (tr) (tr)->record_scalar((name), (x)); \
  } while (0)
#else
#define TRACE(tr, name, x) \
  do {                     \
  } while (0)
#define TRACE_SCALAR(tr, name, x) \
  do {                            \
  } while (0)
#endif
