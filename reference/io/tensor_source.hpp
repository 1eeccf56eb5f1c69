// Where weights come from: anything that can list tensors by HF name and read them, whole or a
// block of rows at a time. Implementations: a safetensors checkpoint (checkpoint.hpp) and the
// portable generator (generator.hpp).
// Leaves out: what the tensors mean (deepseek/loader.hpp maps names onto the model's matrices).
//
// Reading by rows is what lets a full-scale model run in bounded memory: the embedding is read as
// the rows of the given tokens, the LM head a block of rows at a time (deepseek/weight_store.hpp).
// Every source counts what it did, so that a run can report it (docs/model.md, "Working set").
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace dsr1 {

struct TensorData {
  std::vector<std::uint64_t> shape;  // row-major, as in the checkpoint ([out, in] for linears)
  std::vector<double> data;          // values, exactly converted to double
};

// What a source has done so far. Counters only grow; they are safe to read from another thread.
struct SourceCounters {
  std::atomic<std::uint64_t> bytes_read{0};          // bytes of tensor data read from files
  std::atomic<std::uint64_t> values_dequantised{0};  // values decoded from a stored dtype to double
  std::atomic<std::uint64_t> values_generated{0};    // values produced by the generator
};

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual bool has(const std::string& name) const = 0;
  virtual std::vector<std::uint64_t> shape(const std::string& name) const = 0;
  // Rows first .. first+count-1 of the tensor's first dimension (of a 1-D tensor: elements),
  // dequantized (FP8 block scales applied), row-major, shape {count, rest of the shape}.
  // Throws naming source and tensor, also for a row range outside the tensor.
  virtual TensorData read_rows(const std::string& name, std::uint64_t first,
                               std::uint64_t count) const = 0;
  // Rows first .. first+count-1 of a 2-D tensor [rows, cols], written transposed into a
  // column-major destination: element (first + i, c) goes to dst[c * ld + i], ld >= count.
  // This is how the model's matrices (Armadillo stores them column-major) are filled from the
  // checkpoint's row-major layout without an intermediate copy of the whole matrix. The default
  // reads a block of rows at a time (at most kTransposeBlockValues values) and transposes it in
  // cache-sized tiles; a source that computes any element directly (the generator) writes in
  // place instead.
  virtual void read_rows_transposed(const std::string& name, std::uint64_t first,
                                    std::uint64_t count, double* dst, std::uint64_t ld) const;
  static constexpr std::uint64_t kTransposeBlockValues = std::uint64_t{1} << 23;  // 64 MB
  // The whole tensor: read_rows(name, 0, shape[0]).
  TensorData read(const std::string& name) const;
  virtual std::vector<std::string> names() const = 0;
  virtual std::string describe() const = 0;  // e.g. the checkpoint directory, for messages
  virtual const SourceCounters& counters() const = 0;
};

// Throws unless rows first .. first+count-1 lie inside a tensor of `shape` (named in the message).
void check_row_range(const std::string& where, const std::string& name,
                     const std::vector<std::uint64_t>& shape, std::uint64_t first,
                     std::uint64_t count);

}  // namespace dsr1
