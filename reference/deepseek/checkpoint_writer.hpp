// Writing checkpoint directories (config.json, safetensors shards, their index) a block of
// rows at a time, and the portable generator's checkpoint written that way straight from the
// catalogue, so that its size is bounded by the disk and not by memory.
// Leaves out: reading (checkpoint.hpp, loader.hpp) and the split of fused tensors: the generator
// is defined on the checkpoint's own (fused) tensor names and row-major element index
// (generator.hpp), so a generated checkpoint needs no ModelWeights and nothing is re-fused.
//
// Layout written (docs/checkpoints.md): dir/config.json and dir/model.safetensors (1 shard) or
// dir/model-0000i-of-0000N.safetensors plus dir/model.safetensors.index.json (N > 1). The split
// of tensors into shards, the index and config.json are the same for write_checkpoint (a
// ModelWeights in memory, loader.hpp) and write_generated_checkpoint (below).
//
// A write that fails midway leaves no checkpoint that looks complete: every file is written
// under "<name>.partial" and renamed only when all are written, the file a reader looks for
// first (the index, or model.safetensors for one shard) last; on failure the partial files are
// deleted. An old index or model.safetensors in `dir` is removed before writing begins.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "reference/deepseek/config.hpp"
#include "reference/deepseek/loader.hpp"
#include "reference/io/safetensors.hpp"

namespace dsr1 {

// Where a long write is, reported after each block of rows.
struct WriteProgress {
  std::string tensor;           // the tensor being written
  int shard = 1, shards = 1;    // its file, 1-based
  std::uint64_t bytes_done = 0, bytes_total = 0;  // tensor data, all files together
  double seconds = 0;           // since the write began
};
using ProgressFn = std::function<void(const WriteProgress&)>;

// What was written: every file of the checkpoint (paths, in writing order) and their sizes.
struct WrittenCheckpoint {
  std::vector<std::string> files;
  std::uint64_t bytes = 0;  // all files together, config.json and index included
  double seconds = 0;
};

// The config.json of a checkpoint stored in `dtype`: torch_dtype says the dtype (bfloat16 for
// F8_E4M3, whose non-FP8 tensors are BF16), fp8_weights (quantization_config) is set for
// F8_E4M3 only, and num_nextn_predict_layers is 0 without the MTP module. Throws for a dtype
// that is not F64, F32, BF16, F16 or F8_E4M3.
Config stored_config(const Config& cfg, safetensors::DType dtype, bool with_mtp);

// The shard (0-based) of each tensor: consecutive runs of about equal bytes, tensor i going to
// shard floor((bytes before i + half of its bytes) * shards / total bytes), at most shards - 1;
// an FP8 `_scale_inv` goes with its weight, which precedes it in the catalogue. Throws for
// shards < 1.
std::vector<int> shard_of_tensors(const std::vector<CatalogueEntry>& tensors, int shards);

// Receives the bytes of one tensor, in order, a block at a time.
using EmitBytes = std::function<void(const std::uint8_t* bytes, std::size_t n)>;
// Produces tensor `index` of the list: calls emit with exactly entry.bytes() bytes in all.
using ProduceTensor = std::function<void(std::size_t index, const CatalogueEntry& entry, const EmitBytes& emit)>;

// Writes dir/config.json (`stored`, as stored_config gives it) and `tensors` in their order,
// split into `shards` files as shard_of_tensors says, each tensor's bytes from `produce`.
WrittenCheckpoint write_checkpoint_files(const std::string& dir, const Config& stored,
                                         const std::vector<CatalogueEntry>& tensors, int shards,
                                         const ProduceTensor& produce, const ProgressFn& progress = {});

// FP8 quantization of W [rows, cols] (row-major) as the V3 release and weights_to_tensors do it
// (spec §10): per B x B block (partial at the bottom and right edges), scale_inv =
// max|W_block| / 448 rounded to F32, or 1 for an all-zero block, and codes = e4m3(float(W /
// scale_inv)), so that e4m3(code) * scale_inv ~ W. codes: rows * cols bytes; scales:
// [ceil(rows/B), ceil(cols/B)] row-major. Blocks are split among `threads`; the result does not
// depend on it.
void quantize_fp8_rows(const double* W, std::uint64_t rows, std::uint64_t cols, std::uint64_t B,
                       std::uint8_t* codes, float* scales, int threads = 1);

struct GeneratedCheckpointOptions {
  int threads = 1;      // generation and quantization of a row block are split among these;
                        // the bytes do not depend on it
  ProgressFn progress;  // called after each row block; may be empty
};

// The checkpoint write_checkpoint(dir, cfg, generate_weights(cfg, seed), dtype, shards) writes,
// byte for byte, produced without holding the model: tensors in checkpoint_catalogue order, each
// a block of rows at a time from generator_fill under its HF name, stored as weights_to_tensors
// stores it (F64/F32/BF16/F16 everywhere, the gate bias at least F32; F8_E4M3: the FP8 class in
// e4m3 per 128x128 block with scale_inv = max|W_block| / 448 as F32, 1 for an all-zero block,
// the rest BF16). Memory: one block of 128 rows (FP8) or about 2^20 values, never a tensor.
// The MTP module is written when cfg has one. Throws for shards < 1, a dtype other than F64,
// F32, BF16, F16, F8_E4M3, a directory that cannot be created, or a failed write (naming the
// file and the system's reason).
WrittenCheckpoint write_generated_checkpoint(const std::string& dir, const Config& cfg,
                                             std::uint64_t seed, safetensors::DType dtype,
                                             int shards, const GeneratedCheckpointOptions& options = {});

}  // namespace dsr1
