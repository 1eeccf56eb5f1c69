// Conversion of the reference weights to the fast path's packed form (see weights.hpp).
#include "reference/fast/weights.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <stdexcept>

#include "reference/deepseek/mla.hpp"
#include "reference/io/safetensors.hpp"

namespace dsr1::fast {
namespace {

std::vector<float> to_floats(const arma::vec& v) {
  std::vector<float> out(v.n_elem);
  for (arma::uword i = 0; i < v.n_elem; ++i) out[i] = static_cast<float>(v(i));
  return out;
}

void expect(const arma::mat& M, std::int64_t rows, std::int64_t cols, const std::string& what) {
  if (static_cast<std::int64_t>(M.n_rows) != rows || static_cast<std::int64_t>(M.n_cols) != cols)
    throw std::invalid_argument(fmt::format("fast::convert_weights: {} is [{} x {}], expected [{} x {}]",
                                            what, M.n_rows, M.n_cols, rows, cols));
}

}  // namespace

FfnWeightsF convert_ffn(const FfnWeights& W, WeightType type) {
  const std::int64_t I = static_cast<std::int64_t>(W.W_gate.n_rows);
  const std::int64_t d = static_cast<std::int64_t>(W.W_gate.n_cols);
  expect(W.W_up, I, d, "W_up");
  expect(W.W_down, d, I, "W_down");
  FfnWeightsF F;
  F.I = I;
  F.W_gate_up = pack_matrix(arma::mat(arma::join_cols(W.W_gate, W.W_up)), type);
  F.W_down = pack_matrix(W.W_down, type);
  return F;
}

MlaWeightsF convert_mla(const MlaWeights& A, const Config& c, WeightType type) {
  ref::check_mla_weights(A, c);
  const std::int64_t n_h = c.n_h(), d_nope = c.qk_nope_head_dim, d_v = c.v_head_dim;
  MlaWeightsF F;
  if (c.has_q_lora()) {
    F.W_x = pack_matrix(arma::mat(arma::join_cols(A.W_DQ, A.W_DKV, A.W_KR)), type);
    F.W_q = pack_matrix(arma::mat(arma::join_cols(A.W_UQ, A.W_QR)), type);
    F.w_q = to_floats(A.w_q);
  } else {
    F.W_x = pack_matrix(
        arma::mat(arma::join_cols(arma::join_cols(A.W_UQ, A.W_QR), A.W_DKV, A.W_KR)), type);
  }
  F.w_kv = to_floats(A.w_kv);
  for (std::int64_t h = 0; h < n_h; ++h) {
    const arma::mat W_UK_h = A.W_UK.rows(h * d_nope, (h + 1) * d_nope - 1);  // [d_nope, r_kv]
    F.W_UK_T.push_back(pack_matrix(arma::mat(W_UK_h.t()), type));           // [r_kv, d_nope]
    F.W_UV.push_back(pack_matrix(arma::mat(A.W_UV.rows(h * d_v, (h + 1) * d_v - 1)), type));
  }
  F.W_O = pack_matrix(A.W_O, type);
  return F;
}

ModelWeightsF convert_weights(const ModelWeights& W, const Config& c, WeightType type) {
  return convert_weights(InMemoryStore(W, c), c, type);
}

void EmbeddingF::row(std::int64_t v, float* out) const {
  if (mapped && type == WeightType::BF16) {
    std::vector<std::uint16_t> r(static_cast<std::size_t>(d));
    std::memcpy(r.data(), mapped + v * d * 2, static_cast<std::size_t>(d) * 2);
    for (std::int64_t i = 0; i < d; ++i)
      out[i] = std::bit_cast<float>(static_cast<std::uint32_t>(r[i]) << 16);
  } else if (mapped) {
    std::memcpy(out, mapped + v * d * 4, static_cast<std::size_t>(d) * 4);
  } else if (type == WeightType::BF16) {
    const std::uint16_t* r = bf16.data() + v * d;
    for (std::int64_t i = 0; i < d; ++i)
      out[i] = std::bit_cast<float>(static_cast<std::uint32_t>(r[i]) << 16);
  } else {
    std::copy_n(f32.data() + v * d, d, out);
  }
}

ModelWeightsF convert_weights(const WeightStore& W, const Config& c, WeightType type) {
  if (type == WeightType::FP8)
    throw std::invalid_argument(
        "fast::convert_weights: FP8 codes and block scales are packed from a checkpoint or the "
        "generator (fast::pack_weights), not from double-precision weights");
  const std::int64_t d = c.d(), L = c.num_hidden_layers;
  const auto V = static_cast<std::uint64_t>(c.vocab_size);
  ModelWeightsF F;
  F.type = type;
  F.E.V = c.vocab_size;
  F.E.d = d;
  F.E.type = type;
  if (type == WeightType::BF16) F.E.bf16.resize(V * d);
  else F.E.f32.resize(V * d);
  for (std::uint64_t first = 0; first < V; first += WeightStore::kHeadRowBlock) {
    const std::uint64_t n = std::min(WeightStore::kHeadRowBlock, V - first);
    const arma::mat rows = W.embedding_rows(first, n);  // [n, d]
    for (std::uint64_t v = 0; v < n; ++v)
      for (std::int64_t i = 0; i < d; ++i) {
        const float x = static_cast<float>(rows(v, i));
        const std::size_t at = (first + v) * d + i;
        if (type == WeightType::BF16) F.E.bf16[at] = safetensors::encode_bf16(x);
        else F.E.f32[at] = x;
      }
  }
  F.w_final_norm = to_floats(W.final_norm());
  {
    const arma::mat W_head = W.head_rows(0, V);  // [V, d], one matrix at a time
    expect(W_head, c.vocab_size, d, "W_head");
    F.W_head = pack_matrix(W_head, type);
  }
  for (std::int64_t l = 0; l < L; ++l) {
    const BlockWeights B = W.block(l);  // this layer only, in double, released after packing
    BlockWeightsF b;
    b.w_attn_norm = to_floats(B.w_attn_norm);
    b.w_ffn_norm = to_floats(B.w_ffn_norm);
    b.attn = convert_mla(B.attn, c, type);
    b.is_moe = B.is_moe;
    if (B.is_moe) {
      const MoeWeights& M = B.moe;
      expect(M.W_g, c.n_routed_experts, d, fmt::format("layers.{}.moe.W_g", l));
      b.moe.W_g = pack_matrix(M.W_g, type);
      for (arma::uword i = 0; i < M.b.n_elem; ++i) b.moe.b.push_back(M.b(i));
      // The fast path routes at run time, so every expert is packed, one fetched at a time.
      for (std::int64_t j = 0; j < c.n_routed_experts; ++j)
        b.moe.experts.push_back(convert_ffn(W.expert(l, j), type));
      if (M.shared) b.moe.shared = convert_ffn(*M.shared, type);
    } else {
      b.dense = convert_ffn(B.dense, type);
    }
    F.layers.push_back(std::move(b));
  }
  return F;
}

std::int64_t decode_weight_bytes(const ModelWeightsF& W, const Config& c) {
  auto ffn_bytes = [](const FfnWeightsF& f) { return f.W_gate_up.bytes() + f.W_down.bytes(); };
  // the head, one embedding row, the final norm
  std::int64_t bytes = W.W_head.bytes() + W.E.bytes() / std::max<std::int64_t>(1, W.E.V) + c.d() * 4;
  for (const BlockWeightsF& b : W.layers) {
    bytes += b.attn.W_x.bytes() + b.attn.W_q.bytes() + b.attn.W_O.bytes() + c.d() * 4 * 2;
    for (const auto& p : b.attn.W_UK_T) bytes += p.bytes();
    for (const auto& p : b.attn.W_UV) bytes += p.bytes();
    if (b.is_moe) {
      bytes += b.moe.W_g.bytes() + c.num_experts_per_tok * ffn_bytes(b.moe.experts.at(0));
      if (b.moe.shared) bytes += ffn_bytes(*b.moe.shared);
    } else {
      bytes += ffn_bytes(b.dense);
    }
  }
  return bytes;
}

}  // namespace dsr1::fast
