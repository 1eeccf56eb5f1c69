#include "reference/deepseek/weight_store.hpp"

#include <fmt/format.h>

#include <stdexcept>

namespace dsr1 {

namespace {

std::uint64_t numel(const arma::mat& m) { return m.n_elem; }

std::uint64_t numel(const FfnWeights& f) { return f.W_gate.n_elem + f.W_up.n_elem + f.W_down.n_elem; }

// Values in one block's weights (routed experts excluded: they are fetched one at a time).
std::uint64_t numel(const BlockWeights& b) {
  const MlaWeights& a = b.attn;
  std::uint64_t n = b.w_attn_norm.n_elem + b.w_ffn_norm.n_elem + a.W_DQ.n_elem + a.w_q.n_elem +
                    a.W_UQ.n_elem + a.W_QR.n_elem + a.W_DKV.n_elem + a.W_KR.n_elem +
                    a.w_kv.n_elem + a.W_UK.n_elem + a.W_UV.n_elem + a.W_O.n_elem;
  if (!b.is_moe) return n + numel(b.dense);
  n += b.moe.W_g.n_elem + b.moe.b.n_elem;
  if (b.moe.shared) n += numel(*b.moe.shared);
  return n;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The interface's row helpers: one row per token, transposed into a column.

arma::mat WeightStore::token_columns(Table table, const std::vector<std::int64_t>& tokens) const {
  arma::mat h;  // h: [d, T]
  for (std::size_t t = 0; t < tokens.size(); ++t) {
    if (tokens[t] < 0)
      throw std::out_of_range(fmt::format("token id {} at input position {} is negative", tokens[t], t));
    const arma::mat row = table_rows(table, static_cast<std::uint64_t>(tokens[t]), 1);  // [1, d]
    if (t == 0) h.set_size(row.n_cols, tokens.size());
    h.col(t) = row.t();
  }
  counters_.values_fetched += h.n_elem;
  return h;
}

arma::mat WeightStore::embedding(const std::vector<std::int64_t>& tokens) const {
  return token_columns(Table::Embedding, tokens);
}

arma::mat WeightStore::mtp_embedding(const std::vector<std::int64_t>& tokens) const {
  return token_columns(Table::MtpEmbedding, tokens);
}

arma::mat WeightStore::head_rows(std::uint64_t first, std::uint64_t count) const {
  arma::mat rows = table_rows(Table::Head, first, count);
  counters_.values_fetched += rows.n_elem;
  return rows;
}

arma::mat WeightStore::embedding_rows(std::uint64_t first, std::uint64_t count) const {
  arma::mat rows = table_rows(Table::Embedding, first, count);
  counters_.values_fetched += rows.n_elem;
  return rows;
}

arma::mat WeightStore::mtp_head_rows(std::uint64_t first, std::uint64_t count) const {
  arma::mat rows = table_rows(Table::MtpHead, first, count);
  counters_.values_fetched += rows.n_elem;
  return rows;
}

// ---------------------------------------------------------------------------------------------
// SourceStore

SourceStore::SourceStore(const Config& cfg, const TensorSource& src, bool with_mtp)
    : cfg_(cfg), src_(src), with_mtp_(with_mtp) {
  check_source(cfg, src, with_mtp);
}

BlockWeights SourceStore::block(std::int64_t l) const {
  BlockWeights b = load_block_weights(cfg_, src_, l);
  ++counters_.blocks_fetched;
  counters_.values_fetched += numel(b);
  return b;
}

FfnWeights SourceStore::expert(std::int64_t l, std::int64_t j) const {
  FfnWeights e = load_expert_weights(cfg_, src_, l, j);
  ++counters_.experts_fetched;
  counters_.values_fetched += numel(e);
  return e;
}

arma::vec SourceStore::final_norm() const { return load_final_norm(cfg_, src_); }

MtpWeights SourceStore::mtp() const {
  if (!with_mtp_)
    throw std::invalid_argument(fmt::format("config '{}': the MTP module was not asked for", cfg_.name));
  MtpWeights m = load_mtp_weights(cfg_, src_);
  ++counters_.blocks_fetched;
  counters_.values_fetched += numel(m.block) + numel(m.W_eh);
  return m;
}

arma::mat SourceStore::table_rows(Table table, std::uint64_t first, std::uint64_t count) const {
  return load_table_rows(cfg_, src_, table, first, count);
}

// ---------------------------------------------------------------------------------------------
// InMemoryStore

InMemoryStore::InMemoryStore(const ModelWeights& W, const Config& cfg) : W_(W), cfg_(cfg) {
  if (static_cast<std::int64_t>(W.layers.size()) != cfg.num_hidden_layers)
    throw std::invalid_argument(fmt::format("weights have {} layers but config '{}' says "
                                            "num_hidden_layers = {}",
                                            W.layers.size(), cfg.name, cfg.num_hidden_layers));
  if (static_cast<std::int64_t>(W.E.n_rows) != cfg.hidden_size ||
      static_cast<std::int64_t>(W.E.n_cols) != cfg.vocab_size)
    throw std::invalid_argument(fmt::format(
        "embedding is [{} x {}], expected [d={} x V={}]", W.E.n_rows, W.E.n_cols, cfg.hidden_size,
        cfg.vocab_size));
}

const BlockWeights& InMemoryStore::block_ref(std::int64_t l) const {
  if (l >= 0 && l < static_cast<std::int64_t>(W_.layers.size()))
    return W_.layers[static_cast<std::size_t>(l)];
  if (l == cfg_.num_hidden_layers && W_.mtp) return W_.mtp->block;
  throw std::out_of_range(fmt::format("layer {}: the weights have layers 0..{}{}", l,
                                      W_.layers.size() - 1, W_.mtp ? " and the MTP block" : ""));
}

BlockWeights InMemoryStore::block(std::int64_t l) const {
  const BlockWeights& B = block_ref(l);
  BlockWeights b;  // everything but the routed experts
  b.w_attn_norm = B.w_attn_norm;
  b.attn = B.attn;
  b.w_ffn_norm = B.w_ffn_norm;
  b.is_moe = B.is_moe;
  b.dense = B.dense;
  b.moe.W_g = B.moe.W_g;
  b.moe.b = B.moe.b;
  b.moe.shared = B.moe.shared;
  ++counters_.blocks_fetched;
  counters_.values_fetched += numel(b);
  return b;
}

FfnWeights InMemoryStore::expert(std::int64_t l, std::int64_t j) const {
  const BlockWeights& B = block_ref(l);
  if (static_cast<std::int64_t>(B.moe.experts.size()) != cfg_.n_routed_experts)
    throw std::invalid_argument(fmt::format("layer {}: {} routed experts given, expected N_r={}", l,
                                            B.moe.experts.size(), cfg_.n_routed_experts));
  if (j < 0 || j >= cfg_.n_routed_experts)
    throw std::out_of_range(fmt::format("layer {}: routed expert {}, expected 0..{}", l, j,
                                        cfg_.n_routed_experts - 1));
  ++counters_.experts_fetched;
  const FfnWeights& e = B.moe.experts[static_cast<std::size_t>(j)];
  counters_.values_fetched += numel(e);
  return e;
}

MtpWeights InMemoryStore::mtp() const {
  if (!W_.mtp)
    throw std::invalid_argument(fmt::format(
        "config '{}' has no Multi-Token Prediction module (num_nextn_predict_layers = {})",
        cfg_.name, cfg_.num_nextn_predict_layers));
  MtpWeights m;
  m.w_enorm = W_.mtp->w_enorm;
  m.w_hnorm = W_.mtp->w_hnorm;
  m.W_eh = W_.mtp->W_eh;
  m.block = block(cfg_.num_hidden_layers);
  m.w_head_norm = W_.mtp->w_head_norm;
  return m;
}

arma::mat InMemoryStore::table_rows(Table table, std::uint64_t first, std::uint64_t count) const {
  const arma::uword V = static_cast<arma::uword>(cfg_.vocab_size);
  if (first > V || count > V - first)
    throw std::out_of_range(fmt::format("rows {}..{} of a table with {} rows", first,
                                        first + count - 1, V));
  if (count == 0) return arma::mat(0, static_cast<arma::uword>(cfg_.hidden_size));
  const arma::uword a = first, b = first + count - 1;
  const bool mtp_E = W_.mtp && !W_.mtp->E.is_empty();
  const bool mtp_head = W_.mtp && !W_.mtp->W_head.is_empty();
  switch (table) {
    case Table::Embedding: return W_.E.cols(a, b).t();  // E is [d, V]: token v is column v
    case Table::Head: return W_.W_head.rows(a, b);
    case Table::MtpEmbedding: return (mtp_E ? W_.mtp->E : W_.E).cols(a, b).t();
    case Table::MtpHead: return (mtp_head ? W_.mtp->W_head : W_.W_head).rows(a, b);
  }
  return {};
}

}  // namespace dsr1

namespace dsr1 {

double working_set_bytes(const Config& c, std::int64_t T) {
  const double d = static_cast<double>(c.hidden_size), n_h = static_cast<double>(c.num_attention_heads);
  const double d_nope = static_cast<double>(c.qk_nope_head_dim), d_rope = static_cast<double>(c.qk_rope_head_dim);
  const double d_v = static_cast<double>(c.v_head_dim), r_kv = static_cast<double>(c.kv_lora_rank);
  const double r_q = c.has_q_lora() ? static_cast<double>(c.q_lora_rank) : 0.0;
  const double q_in = c.has_q_lora() ? r_q : d;
  const double attn = r_q * d + n_h * (d_nope + d_rope) * q_in + (r_kv + d_rope) * d +
                      n_h * (d_nope + d_v) * r_kv + d * n_h * d_v;
  const double expert = 3.0 * d * static_cast<double>(c.moe_intermediate_size);
  const double moe_ffn = static_cast<double>(c.n_routed_experts) * d +
                         static_cast<double>(c.n_shared_experts) * expert;
  const double dense_ffn = 3.0 * d * static_cast<double>(c.intermediate_size);
  const double block = attn + std::max(moe_ffn, dense_ffn);
  const double head_block = static_cast<double>(std::min<std::int64_t>(
                                static_cast<std::int64_t>(WeightStore::kHeadRowBlock), c.vocab_size)) * d;
  const double t = static_cast<double>(T), L = static_cast<double>(c.num_hidden_layers + 1);
  const double kv_cache = L * t * (r_kv + d_rope);
  const double naive_kv = t * n_h * (d_nope + d_rope + d_v) + t * t * n_h;  // keys, values, scores
  const double activations = 16.0 * t * d + 2.0 * t * static_cast<double>(c.vocab_size);
  const double read_buffer = static_cast<double>(TensorSource::kTransposeBlockValues);
  return 8.0 * (block + read_buffer + expert + head_block + kv_cache + naive_kv + activations);
}

}  // namespace dsr1
