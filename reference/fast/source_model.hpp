// The fast path's model whose weights come from a source (a checkpoint or the generator) and
// are fetched when they are used, never all at once: the entry point of `dsr1 run --fast` and of
// anything that drives the fast path on a real model (prefill, then decode through the latent
// cache). Implemented in pack.cpp, beside the packing it shares with pack_weights.
// Leaves out: the arithmetic (model.hpp runs the forward pass through the WeightsAccess below).
//
// Two ways of holding the weights, chosen when the model is opened:
//  * mapped: a safetensors checkpoint whose matrices are stored as F8_E4M3 (with their F32
//    128 x 128 block scales), BF16 or F32, run with the storage it has (`--fast-weights auto`).
//    Every matrix is a view of its rows where they lie in the mapped file, in the checkpoint's
//    own [out, in] layout (PackedMatrix::is_view, gemm.hpp): no copy of the model is made, the
//    pages are the page cache's and the kernel may drop them under pressure. What is copied:
//    the RMSNorm weights and the gate bias, each FP8 tensor's scale grid (a few KB), and per
//    layer, while it runs, W_UK_h^T (absorbed attention needs it transposed: 1/4 of kv_b_proj).
//  * packed on demand: any other source or storage (the generator, an F64 checkpoint, a
//    --fast-weights other than what is stored). Each layer's matrices are packed from the
//    source into the run's storage type when the layer runs and released after it; each routed
//    expert only when a token chose it, and released after its product; the LM head a block of
//    rows at a time; the embedding one row per token. The generator's values are generated
//    straight into that storage (FP8: quantised as init-model --dtype fp8 does), a block of rows
//    at a time.
// Either way the bits equal those of pack_weights + forward on the same source and type
// (tests/test_fast_source.cpp): the same panels reach the same kernel in the same order.
#pragma once

#include <armadillo>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "reference/deepseek/config.hpp"
#include "reference/fast/model.hpp"
#include "reference/fast/pack.hpp"
#include "reference/io/tensor_source.hpp"

namespace dsr1::fast {

// True when `src` can be used in place for a run with storage `type`: a Checkpoint whose every
// matrix of the main model is F8_E4M3, BF16 or F32, and `type` is what it stores
// (stored_weight_type).
bool can_map(const TensorSource& src, const Config& c, WeightType type);

// What a SourceModel has fetched so far, for progress lines (read while a run goes on). A
// packed-on-demand model also counts in its TensorSource's counters (bytes read from files,
// values generated); a mapped one reads no file through the source, so its matrices' bytes
// are counted here when a product is handed them.
struct SourceModelCounters {
  std::atomic<std::uint64_t> layers_fetched{0};      // with_layer calls
  std::atomic<std::uint64_t> experts_fetched{0};     // routed experts fetched (chosen by a token)
  std::atomic<std::uint64_t> mapped_bytes_used{0};   // mapped: bytes of the views handed out
};

class SourceModel : public WeightsAccess {
 public:
  // Checks the source against the config (check_source: every tensor present, shapes) up front;
  // nothing is read yet but the final norm. `src` must outlive the model.
  SourceModel(const TensorSource& src, const Config& c, WeightType type,
              const PackOptions& options = {});
  ~SourceModel() override;
  SourceModel(const SourceModel&) = delete;
  SourceModel& operator=(const SourceModel&) = delete;

  const Config& config() const;
  WeightType type() const;
  bool mapped() const;  // weights used where they lie in the mapped checkpoint
  const SourceModelCounters& counters() const;

  // A latent cache for this model, room for reserve_tokens (0: grows as needed).
  ModelCache make_cache(std::int64_t reserve_tokens = 0) const;
  // tokens at positions cache.length() .. through the cache (a prompt, or the next chunk of
  // one); logits [V, T].
  arma::fmat prefill(const std::vector<std::int64_t>& tokens, ModelCache& cache,
                     const Options& opt, Tracer* tr = nullptr) const;
  // One new token at position cache.length(); its logits [V].
  arma::fvec decode(std::int64_t token, ModelCache& cache, const Options& opt,
                    Tracer* tr = nullptr) const;
  // As fast::forward (no cache: the T tokens at positions 0..T-1) and forward_incremental.
  arma::fmat forward(const std::vector<std::int64_t>& tokens, const Options& opt,
                     Tracer* tr = nullptr) const;
  arma::fmat forward_incremental(const std::vector<std::int64_t>& tokens, std::int64_t P,
                                 const Options& opt, Tracer* tr = nullptr) const;

  // WeightsAccess (model.hpp)
  void embed(std::int64_t v, float* out) const override;
  void with_layer(std::int64_t l, const std::function<void(const BlockWeightsF&)>& use) const override;
  const std::vector<float>& final_norm() const override;
  arma::fmat head(const arma::fmat& x, const Options& opt) const override;

  // Layer l's weights (its routed experts through MoeWeightsF::fetch_expert), as with_layer
  // hands them out; for tests and tools.
  BlockWeightsF layer(std::int64_t l) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsr1::fast
