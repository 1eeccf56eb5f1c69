// The model's parameters for the fast path: packed for gemm.hpp, straight from a checkpoint or
// the generator (pack.hpp), or converted from the double-precision reference weights
// (reference/deepseek/weights.hpp, below). Every packed matrix (each linear map, the router and
// the LM head: nearly all the bytes) is stored as float32, bfloat16 or FP8 with block scales
// (WeightType, gemm.hpp); the embedding table as float32 or bfloat16, the RMSNorm weights
// float32, the gate bias double (the reference's routing rules run in double).
// Leaves out: the MTP module (the fast path runs the main model only).
//
// Fusions (each saves one pass over the activations and one parallel region; the products are
// unchanged, every output row still has its own dot product):
//   W_x    q-LoRA: [W_DQ ; W_DKV ; W_KR]        [r_q + r_kv + d_rope, d], all applied to x
//          else:   [W_UQ ; W_QR ; W_DKV ; W_KR] [n_h*(d_nope+d_rope) + r_kv + d_rope, d]
//   W_q    q-LoRA only: [W_UQ ; W_QR]           [n_h*(d_nope+d_rope), r_q] on c_q_hat
//   W_gate_up = [W_gate ; W_up]                 [2I, d] per SwiGLU MLP
// Absorbed attention needs, per head h: W_UK_h^T [r_kv, d_nope] (q_tilde = W_UK_h^T q_nope_h)
// and W_UV_h [d_v, r_kv] (o_h = W_UV_h z_h).
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "reference/deepseek/config.hpp"
#include "reference/fast/gemm.hpp"
#include "reference/deepseek/weight_store.hpp"
#include "reference/deepseek/weights.hpp"

namespace dsr1::fast {

struct MlaWeightsF {
  PackedMatrix W_x;
  PackedMatrix W_q;                  // empty without q-LoRA
  std::vector<float> w_q;            // [r_q] (q-LoRA only)
  std::vector<float> w_kv;           // [r_kv]
  std::vector<PackedMatrix> W_UK_T;  // n_h x [r_kv, d_nope]
  std::vector<PackedMatrix> W_UV;    // n_h x [d_v, r_kv]
  PackedMatrix W_O;                  // [d, n_h*d_v]
};

struct FfnWeightsF {
  std::int64_t I = 0;     // hidden width
  PackedMatrix W_gate_up; // [2I, d]
  PackedMatrix W_down;    // [d, I]
};

struct MoeWeightsF {
  PackedMatrix W_g;                   // [N_r, d]
  std::vector<double> b;              // [N_r] e_score_correction_bias (empty when absent)
  std::vector<FfnWeightsF> experts;   // N_r, or empty when fetched on demand:
  // expert j's weights, fetched when a token chose it and released after its product
  // (a model whose weights come from a source: source_model.hpp).
  std::function<FfnWeightsF(std::int64_t j)> fetch_expert;
  std::optional<FfnWeightsF> shared;  // width N_s*I_e
};

struct BlockWeightsF {
  std::vector<float> w_attn_norm;  // [d]
  MlaWeightsF attn;
  std::vector<float> w_ffn_norm;   // [d]
  bool is_moe = false;
  FfnWeightsF dense;
  MoeWeightsF moe;
};

// The embedding table: token v's row of E^T [V, d], contiguous, as float32 or (with bf16 and
// fp8 weights, as the release stores it) bfloat16. A forward pass reads one row per token.
struct EmbeddingF {
  std::int64_t V = 0, d = 0;
  WeightType type = WeightType::F32;  // F32 or BF16
  std::vector<float> f32;             // [V, d] row-major (F32)
  std::vector<std::uint16_t> bf16;    // [V, d] row-major (BF16)
  // Or, when not null, the [V, d] rows where they lie (a mapped checkpoint), stored as `type`
  // (little-endian, any alignment); nothing is copied but the rows of the tokens used.
  const std::uint8_t* mapped = nullptr;
  void row(std::int64_t v, float* out) const;  // token v's embedding, widened to float32
  std::int64_t bytes() const { return V * d * (type == WeightType::BF16 ? 2 : 4); }
};

struct ModelWeightsF {
  WeightType type = WeightType::F32;  // what the run asked for (pack.hpp: which matrix gets what)
  EmbeddingF E;                       // [V, d]
  std::vector<BlockWeightsF> layers;  // L
  std::vector<float> w_final_norm;    // [d]
  PackedMatrix W_head;                // [V, d]
};

// Converts (and checks the shapes of) the reference weights; throws std::invalid_argument
// naming the matrix on a mismatch with the config. With WeightType::BF16 every matrix and the
// embedding are rounded to bfloat16 (nearest even): exact when the weights came from a BF16
// checkpoint, otherwise the fast path computes the model with its matrices so rounded.
// WeightType::FP8 is refused: FP8 codes and scales are packed from a source (pack.hpp).
ModelWeightsF convert_weights(const ModelWeights& W, const Config& c,
                              WeightType type = WeightType::F32);
// The same, packing straight from a weight store (a checkpoint or the generator), one layer and
// one expert at a time: the double-precision model is never whole in memory.
ModelWeightsF convert_weights(const WeightStore& W, const Config& c,
                              WeightType type = WeightType::F32);
FfnWeightsF convert_ffn(const FfnWeights& W, WeightType type = WeightType::F32);
// One layer's attention (checked with ref::check_mla_weights): for full-scale single layers.
MlaWeightsF convert_mla(const MlaWeights& A, const Config& c, WeightType type = WeightType::F32);

// Bytes of weights (as stored: 4, 2, or 1 plus the scales, per matrix entry) a single decode step reads (attention, router, shared and dense
// MLPs, the head, one embedding column, and K routed experts per MoE layer), for the benchmark.
std::int64_t decode_weight_bytes(const ModelWeightsF& W, const Config& c);

}  // namespace dsr1::fast
