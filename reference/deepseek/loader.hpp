// HF checkpoint names <-> the model's matrices: the tensor catalogue a config implies, loading
// (splitting the fused tensors, spec §4.2), and writing (re-fusing them) as safetensors.
// Leaves out: reading the files themselves (checkpoint.hpp) and any arithmetic of the model.
//
// Names and shapes follow spec §11: prefix "model.layers.{l}." for layer l, the MTP module is
// layer index num_hidden_layers (spec §9, P12). Every linear weight is [out, in] row-major on
// disk and becomes an arma::mat [out, in] here: the transpose happens once, in this file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "reference/io/checkpoint.hpp"
#include "reference/io/generator.hpp"
#include "reference/deepseek/config.hpp"
#include "reference/io/safetensors.hpp"
#include "reference/io/tensor_source.hpp"
#include "reference/deepseek/weights.hpp"

namespace dsr1 {

struct CatalogueEntry {
  std::string name;
  std::vector<std::uint64_t> shape;  // [out, in] for linear maps, [n] for vectors
  safetensors::DType dtype;          // as released: spec §10 when fp8_weights, else torch_dtype
  std::uint64_t numel() const;
  std::uint64_t bytes() const;
};

// Every tensor a checkpoint of this config holds, in a fixed order: the embedding, layers
// 0..L-1, model.norm, lm_head (absent when tie_word_embeddings), then the MTP layer when
// num_nextn_predict_layers > 0. With fp8_weights each FP8 weight is followed by its
// `_scale_inv` [ceil(out/B), ceil(in/B)].
std::vector<CatalogueEntry> checkpoint_catalogue(const Config& cfg);

// The dtype of the released tensors of `torch_dtype` ("bfloat16" -> BF16, ...).
safetensors::DType dtype_of_torch_dtype(const std::string& torch_dtype);

// Pieces of the model read from `src` when asked: what the weight store (weight_store.hpp)
// fetches on demand, and what load_weights fetches all at once. Each checks every shape against
// the config and throws naming the source and the tensor.
//
// Block l (0 <= l < L; l = L is the MTP module's block) WITHOUT its routed experts: the norms,
// MLA (fused tensors split), and the dense FFN, or the router (W_g, b) and the shared expert.
BlockWeights load_block_weights(const Config& cfg, const TensorSource& src, std::int64_t l);
// Routed expert j of MoE layer l.
FfnWeights load_expert_weights(const Config& cfg, const TensorSource& src, std::int64_t l,
                               std::int64_t j);
// The [V, d] tables: the embedding (row v = token v), the LM head, and the MTP module's copies
// of both (the main ones when the checkpoint has no copies).
enum class Table { Embedding, Head, MtpEmbedding, MtpHead };
// Rows first .. first+count-1 of a table, as an arma::mat [count, d].
arma::mat load_table_rows(const Config& cfg, const TensorSource& src, Table table,
                          std::uint64_t first, std::uint64_t count);
// model.norm.weight [d].
arma::vec load_final_norm(const Config& cfg, const TensorSource& src);
// The MTP module without its tables and without its block's routed experts.
MtpWeights load_mtp_weights(const Config& cfg, const TensorSource& src);
// Checks, before anything is read, that the config is valid and that the source holds no tensor
// the config does not describe (with_mtp: the config must have an MTP module).
void check_source(const Config& cfg, const TensorSource& src, bool with_mtp);

// Loads every matrix of the model from `src`, checking each shape against the config.
// Throws naming the source and the tensor for a missing tensor, a shape other than the
// config implies (got and expected), or a tensor the config does not describe (for example
// a layer past num_hidden_layers). `with_mtp` loads the MTP layer too (requires
// num_nextn_predict_layers = 1); without it the MTP layer's tensors are ignored.
ModelWeights load_weights(const Config& cfg, const TensorSource& src, bool with_mtp);

// The portable generator (generator.hpp) under every tensor name and shape of the config's
// checkpoint catalogue (the MTP layer included): a TensorSource that makes values on demand.
GeneratorSource generator_source(const Config& cfg, std::uint64_t seed);

// The portable generator's model (generator.hpp): load_weights over GeneratorSource(seed,
// catalogue). Includes the MTP module when the config has one.
ModelWeights generate_weights(const Config& cfg, std::uint64_t seed);
// The same weights as a checkpoint stored in `storage` holds them: with BF16 every value is
// rounded to bfloat16 (nearest even) as write_checkpoint rounds it, the gate bias kept F32; F32
// and F64 change nothing (the generator's values are float32). Other dtypes are refused.
ModelWeights generate_weights(const Config& cfg, std::uint64_t seed, safetensors::DType storage);

// The inverse of load_weights: HF-named tensors with the fused layouts rebuilt, in catalogue
// order. dtype F64/F32/BF16/F16 stores every tensor in that dtype (the gate bias at least
// F32). dtype F8_E4M3 stores as the V3 release does (spec §10): the FP8 class quantized per
// 128x128 block with scale_inv = max|W_block| / 448 (F32), everything else BF16, the bias F32.
std::vector<safetensors::NamedTensor> weights_to_tensors(const Config& cfg, const ModelWeights& w,
                                                         safetensors::DType dtype);

// Writes dir/config.json and dir/model.safetensors (shards = 1) or dir/model-0000i-of-0000N
// .safetensors plus dir/model.safetensors.index.json (shards > 1). The written config.json
// says what the files hold: torch_dtype of `dtype`, quantization_config for F8_E4M3, and
// num_nextn_predict_layers 0 when `w` has no MTP module. The files are written as
// checkpoint_writer.hpp describes (write_checkpoint_files: same layout, no half-written
// checkpoint left on failure); for generator weights at any scale, write_generated_checkpoint
// there writes the same bytes without holding the model.
void write_checkpoint(const std::string& dir, const Config& cfg, const ModelWeights& w,
                      safetensors::DType dtype, int shards = 1);

// A checkpoint directory read whole: its config.json, validated, and its weights.
struct LoadedModel {
  Config config;
  ModelWeights weights;
};
LoadedModel load_model_dir(const std::string& dir, bool with_mtp, const Faults& faults = {});

}  // namespace dsr1
