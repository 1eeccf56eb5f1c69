// A HuggingFace safetensors checkpoint as a TensorSource: one file or shards with an index,
// memory-mapped, every tensor decoded lazily by name with FP8 block scales applied.
// Leaves out: the mapping of HF names onto the model's matrices (loader.hpp).
//
// Layout of a checkpoint directory (docs/checkpoints.md):
//   config.json                        the model's configuration (config.hpp)
//   model.safetensors                  all tensors, or
//   model.safetensors.index.json       {"metadata": {...}, "weight_map": {tensor: shard file}}
//   model-00001-of-000NN.safetensors   ... the shards the index names
//
// FP8 (spec §10, P13). A tensor stored as F8_E4M3 has a companion `<name>_scale_inv` (F32) of
// shape [ceil(out/B), ceil(in/B)] with B = weight_block_size = 128, and
//   W[r][c] = decode_e4m3(Wq[r][c]) * S[floor(r/B)][floor(c/B)]
// The factor multiplies despite the "_inv" in its name, and the partial edge blocks of a
// dimension that is not a multiple of B use the same rule.
#pragma once

#include <cstdint>
#include <memory>
#include <map>
#include <string>
#include <vector>

#include "reference/faults.hpp"
#include "reference/io/safetensors.hpp"
#include "reference/io/tensor_source.hpp"

namespace dsr1 {

struct CheckpointOptions {
  std::int64_t weight_block_size = 128;  // B of the FP8 scale grid (quantization_config)
  // Only fp8_scale_divide and fp8_skip_edge_blocks are read here (conformance faults, P13).
  Faults faults;
};

// Block dequantization of rows first .. first+count-1 of one FP8 weight [rows, cols].
// wq: [count, cols] row-major decoded e4m3 values of those rows; scale: the whole grid
// [ceil(rows/B), ceil(cols/B)] row-major. Returns W's rows, row-major:
//   W[r][c] = wq[r][c] * scale[floor(r/B)][floor(c/B)]
// `what` names the tensor in error messages. Throws if the scale grid has the wrong shape.
std::vector<double> dequantize_fp8_rows(const std::vector<double>& wq, std::uint64_t rows,
                                        std::uint64_t cols, std::uint64_t first,
                                        std::uint64_t count, const std::vector<double>& scale,
                                        std::uint64_t scale_rows, std::uint64_t scale_cols,
                                        std::uint64_t block, const Faults& faults,
                                        const std::string& what);

class Checkpoint : public TensorSource {
 public:
  // `path`: a checkpoint directory (index or model.safetensors inside), an index file, or a
  // single .safetensors file. Every file is opened and its header validated here; no tensor
  // data is read until read() asks for it.
  explicit Checkpoint(const std::string& path, CheckpointOptions options = {});

  bool has(const std::string& name) const override;
  std::vector<std::uint64_t> shape(const std::string& name) const override;
  // Values as doubles, FP8 dequantized; throws for non-float dtypes, non-finite values, an
  // FP8 weight without its scale, or a scale grid of the wrong shape. The file pages read are
  // released afterwards, so resident memory does not grow with the checkpoint.
  TensorData read_rows(const std::string& name, std::uint64_t first,
                       std::uint64_t count) const override;
  // Decoded, scaled and written in the destination's column-major order in one step.
  void read_rows_transposed(const std::string& name, std::uint64_t first, std::uint64_t count,
                            double* dst, std::uint64_t ld) const override;
  std::vector<std::string> names() const override;  // sorted; includes *_scale_inv tensors
  std::string describe() const override;
  const SourceCounters& counters() const override { return counters_; }

  safetensors::DType dtype(const std::string& name) const;
  const safetensors::TensorInfo& info(const std::string& name) const;
  const std::string& file_of(const std::string& name) const;  // the shard holding it
  std::size_t num_files() const { return files_.size(); }

  // Rows first .. first+count-1 exactly as stored (dtype(name); little-endian, row-major; no
  // conversion, no FP8 scales applied), for the fast path, which keeps FP8 and BF16 weights in
  // their stored form (fast/pack.hpp). The file pages are released as read_rows does.
  std::vector<std::uint8_t> read_stored_rows(const std::string& name, std::uint64_t first,
                                             std::uint64_t count) const;
  // The tensor's bytes as stored, where they lie in the mapped file (no copy; little-endian,
  // row-major, any alignment), for the fast path's views (fast/gemm.hpp). Valid while the
  // checkpoint lives; the pages are the page cache's, read when touched.
  const std::uint8_t* mapped_data(const std::string& name) const;

 private:
  // The block scales of FP8 weight `name` (validated: F32, 2-D, finite, >= 0), read whole.
  struct Fp8Scales {
    std::vector<double> scale;        // [rows, cols] row-major
    std::uint64_t rows = 0, cols = 0, block = 0;
    std::string what;                 // names the scale tensor in messages
  };
  Fp8Scales fp8_scales(const std::string& name, const safetensors::TensorInfo& t,
                       const std::string& what) const;
  const safetensors::File& file(const std::string& name) const;
  std::string root_;
  CheckpointOptions options_;
  std::vector<std::unique_ptr<safetensors::File>> files_;
  std::map<std::string, std::size_t> where_;  // tensor name -> index into files_
  mutable SourceCounters counters_;
};

// Parses the text of model.safetensors.index.json and returns tensor -> shard file name; throws,
// starting the message with `where`, unless the weight_map is a non-empty object of plain file
// names (no path component: a shard lives next to its index).
std::map<std::string, std::string> parse_index(const std::string& text, const std::string& where);

// The name of the FP8 scale of weight `name`: "<name>_scale_inv".
std::string scale_name(const std::string& weight_name);

}  // namespace dsr1
