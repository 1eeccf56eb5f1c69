// Weights on demand: the model asks for each group of weights when a formula needs it and lets it
// go after, so that memory follows the working set of one layer, not the size of the model.
// Leaves out: how tensors are read or generated (io/), how HF names map onto matrices (loader.hpp).
//
// What the forward pass fetches, and when (docs/model.md, "Working set"):
//   embedding(tokens)      the rows of the given tokens only                      [d, T]
//   block(l)               layer l's norms, MLA, and dense FFN or router + shared expert,
//                          held while layer l runs                                 BlockWeights
//   expert(l, j)           routed expert j of layer l, only when the router chose it, once per
//                          forward call, in ascending j                            FfnWeights
//   final_norm()           model.norm                                              [d]
//   head_rows(first, n)    the LM head, a block of rows at a time                  [n, d]
//   mtp(), mtp_*           the Multi-Token Prediction module (V3), likewise
//
// Two stores, one interface:
//   SourceStore    fetches from a TensorSource: a checkpoint (memory-mapped, pages released
//                  after each read) or the portable generator (only the values asked for);
//   InMemoryStore  hands out pieces of a ModelWeights already in memory (tests, small models).
// Both give the same numbers, so the model's arithmetic cannot tell them apart (a test checks
// bit for bit that forward() over either gives the same logits).
#pragma once

#include <armadillo>
#include <atomic>
#include <cstdint>
#include <vector>

#include "reference/deepseek/config.hpp"
#include "reference/deepseek/loader.hpp"
#include "reference/deepseek/weights.hpp"
#include "reference/io/tensor_source.hpp"

namespace dsr1 {

// What a store has handed out so far (read by the progress line and the run's report).
struct StoreCounters {
  std::atomic<std::uint64_t> blocks_fetched{0};
  std::atomic<std::uint64_t> experts_fetched{0};
  std::atomic<std::uint64_t> values_fetched{0};  // every value handed out, as a double
};

class WeightStore {
 public:
  virtual ~WeightStore() = default;

  // The LM head is applied this many rows (vocabulary entries) at a time.
  static constexpr std::uint64_t kHeadRowBlock = 8192;

  // h = E[tokens]: column t is the embedding of tokens[t]. [d, T]
  arma::mat embedding(const std::vector<std::int64_t>& tokens) const;
  // The MTP module's embedding of tokens (its own copy when the checkpoint has one). [d, T]
  arma::mat mtp_embedding(const std::vector<std::int64_t>& tokens) const;
  // Rows first .. first+count-1 of the LM head W_head [V, d] (of the MTP head). [count, d]
  arma::mat head_rows(std::uint64_t first, std::uint64_t count) const;
  arma::mat mtp_head_rows(std::uint64_t first, std::uint64_t count) const;
  // Rows first .. first+count-1 of the embedding table E^T [V, d] (row v = token v). [count, d]
  arma::mat embedding_rows(std::uint64_t first, std::uint64_t count) const;

  // Block l without its routed experts (moe.experts is empty).
  virtual BlockWeights block(std::int64_t l) const = 0;
  // Routed expert j of MoE layer l (l = L: the MTP block).
  virtual FfnWeights expert(std::int64_t l, std::int64_t j) const = 0;
  virtual arma::vec final_norm() const = 0;
  virtual bool has_mtp() const = 0;
  // The MTP module: norms, W_eh, its block without routed experts; E and W_head left empty
  // (use mtp_embedding / mtp_head_rows).
  virtual MtpWeights mtp() const = 0;

  const StoreCounters& counters() const { return counters_; }

 protected:
  // Rows of a [V, d] table as [count, d].
  virtual arma::mat table_rows(Table table, std::uint64_t first, std::uint64_t count) const = 0;
  // The rows of the given tokens, as columns: [d, T].
  arma::mat token_columns(Table table, const std::vector<std::int64_t>& tokens) const;
  mutable StoreCounters counters_;
};

// Fetches from a TensorSource (checkpoint or generator) on every call; nothing is cached.
class SourceStore : public WeightStore {
 public:
  // Checks the config and that the source holds nothing the config does not describe.
  SourceStore(const Config& cfg, const TensorSource& src, bool with_mtp);
  BlockWeights block(std::int64_t l) const override;
  FfnWeights expert(std::int64_t l, std::int64_t j) const override;
  arma::vec final_norm() const override;
  bool has_mtp() const override { return with_mtp_; }
  MtpWeights mtp() const override;
  const TensorSource& source() const { return src_; }

 protected:
  arma::mat table_rows(Table table, std::uint64_t first, std::uint64_t count) const override;

 private:
  Config cfg_;
  const TensorSource& src_;
  bool with_mtp_;
};

// Hands out copies of the pieces of a model already in memory.
class InMemoryStore : public WeightStore {
 public:
  // Checks that W matches the config (layer count, embedding shape).
  InMemoryStore(const ModelWeights& W, const Config& cfg);
  BlockWeights block(std::int64_t l) const override;
  FfnWeights expert(std::int64_t l, std::int64_t j) const override;
  arma::vec final_norm() const override { return W_.w_final_norm; }
  bool has_mtp() const override { return W_.mtp.has_value(); }
  MtpWeights mtp() const override;

 protected:
  arma::mat table_rows(Table table, std::uint64_t first, std::uint64_t count) const override;

 private:
  const BlockWeights& block_ref(std::int64_t l) const;
  const ModelWeights& W_;
  Config cfg_;
};

}  // namespace dsr1

namespace dsr1 {

// The memory a reference forward pass over T tokens needs when weights come from a store, in
// bytes (docs/model.md, "Working set"): the largest block (attention and FFN or router and shared
// expert, in double; fused tensors are split as they are read, never copied whole), the row
// block a checkpoint read decodes before transposing it, one routed expert,
// one block of LM-head rows, the latent KV cache of every layer, the naive form's per-head keys
// and values of one layer, and a few [d, T] activations. An estimate for refusing what cannot
// fit, not an accounting to the byte.
double working_set_bytes(const Config& c, std::int64_t T);

}  // namespace dsr1
