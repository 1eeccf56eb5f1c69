#include "reference/deepseek/loader.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "reference/deepseek/checkpoint_writer.hpp"
#include "reference/io/generator.hpp"
#include "reference/io/safetensors_writer.hpp"

namespace dsr1 {

namespace st = safetensors;
using u64 = std::uint64_t;

std::uint64_t CatalogueEntry::numel() const {
  u64 n = 1;
  for (auto s : shape) n *= s;
  return n;
}
std::uint64_t CatalogueEntry::bytes() const { return numel() * st::dtype_size(dtype); }

st::DType dtype_of_torch_dtype(const std::string& torch_dtype) {
  if (torch_dtype == "bfloat16") return st::DType::BF16;
  if (torch_dtype == "float16") return st::DType::F16;
  if (torch_dtype == "float32") return st::DType::F32;
  if (torch_dtype == "float64") return st::DType::F64;
  throw std::invalid_argument(fmt::format(
      "torch_dtype '{}': expected bfloat16, float16, float32 or float64", torch_dtype));
}

namespace {

// What a tensor is, which decides its released dtype (spec §10).
enum class Role {
  Fp8Linear,  // attention and FFN linear weights: F8_E4M3 + scale in FP8 releases
  Plain,      // embeddings, head, norms, router, MTP projections: torch_dtype (BF16)
  Bias,       // e_score_correction_bias: F32
};

std::string layer_prefix(std::int64_t l) { return fmt::format("model.layers.{}.", l); }

// Names of one decoder block's tensors relative to its layer prefix, with shapes.
struct Item {
  std::string name;
  std::vector<u64> shape;
  Role role;
};

std::vector<Item> block_items(const Config& c, bool is_moe) {
  const u64 d = c.hidden_size, n_h = c.num_attention_heads, d_nope = c.qk_nope_head_dim,
            d_rope = c.qk_rope_head_dim, d_v = c.v_head_dim, r_q = c.q_lora_rank,
            r_kv = c.kv_lora_rank;
  std::vector<Item> items;
  items.push_back({"input_layernorm.weight", {d}, Role::Plain});
  if (c.has_q_lora()) {
    items.push_back({"self_attn.q_a_proj.weight", {r_q, d}, Role::Fp8Linear});
    items.push_back({"self_attn.q_a_layernorm.weight", {r_q}, Role::Plain});
    items.push_back({"self_attn.q_b_proj.weight", {n_h * (d_nope + d_rope), r_q}, Role::Fp8Linear});
  } else {
    items.push_back({"self_attn.q_proj.weight", {n_h * (d_nope + d_rope), d}, Role::Fp8Linear});
  }
  items.push_back({"self_attn.kv_a_proj_with_mqa.weight", {r_kv + d_rope, d}, Role::Fp8Linear});
  items.push_back({"self_attn.kv_a_layernorm.weight", {r_kv}, Role::Plain});
  items.push_back({"self_attn.kv_b_proj.weight", {n_h * (d_nope + d_v), r_kv}, Role::Fp8Linear});
  items.push_back({"self_attn.o_proj.weight", {d, n_h * d_v}, Role::Fp8Linear});
  items.push_back({"post_attention_layernorm.weight", {d}, Role::Plain});
  auto ffn = [&](const std::string& p, u64 width) {
    items.push_back({p + "gate_proj.weight", {width, d}, Role::Fp8Linear});
    items.push_back({p + "up_proj.weight", {width, d}, Role::Fp8Linear});
    items.push_back({p + "down_proj.weight", {d, width}, Role::Fp8Linear});
  };
  if (!is_moe) {
    ffn("mlp.", static_cast<u64>(c.intermediate_size));
    return items;
  }
  const u64 N_r = c.n_routed_experts;
  items.push_back({"mlp.gate.weight", {N_r, d}, Role::Plain});
  if (c.has_gate_bias()) items.push_back({"mlp.gate.e_score_correction_bias", {N_r}, Role::Bias});
  for (u64 j = 0; j < N_r; ++j) ffn(fmt::format("mlp.experts.{}.", j), c.moe_intermediate_size);
  if (c.n_shared_experts > 0)
    ffn("mlp.shared_experts.", static_cast<u64>(c.n_shared_experts * c.moe_intermediate_size));
  return items;
}

// The whole model as (name, shape, role), with the MTP layer when asked.
std::vector<Item> model_items(const Config& c, bool with_mtp) {
  const u64 d = c.hidden_size, V = c.vocab_size;
  std::vector<Item> items;
  items.push_back({"model.embed_tokens.weight", {V, d}, Role::Plain});
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l)
    for (auto& it : block_items(c, c.is_moe_layer(l)))
      items.push_back({layer_prefix(l) + it.name, it.shape, it.role});
  items.push_back({"model.norm.weight", {d}, Role::Plain});
  if (!c.tie_word_embeddings) items.push_back({"lm_head.weight", {V, d}, Role::Plain});
  if (with_mtp && c.num_nextn_predict_layers > 0) {
    const std::string p = layer_prefix(c.num_hidden_layers);
    items.push_back({p + "embed_tokens.weight", {V, d}, Role::Plain});
    items.push_back({p + "enorm.weight", {d}, Role::Plain});
    items.push_back({p + "hnorm.weight", {d}, Role::Plain});
    items.push_back({p + "eh_proj.weight", {d, 2 * d}, Role::Plain});
    for (auto& it : block_items(c, c.is_moe_layer(c.num_hidden_layers)))
      items.push_back({p + it.name, it.shape, it.role});
    items.push_back({p + "shared_head.norm.weight", {d}, Role::Plain});
    items.push_back({p + "shared_head.head.weight", {V, d}, Role::Plain});
  }
  return items;
}

u64 ceil_div(u64 a, u64 b) { return (a + b - 1) / b; }

std::string shape_str(const std::vector<u64>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

}  // namespace

std::vector<CatalogueEntry> checkpoint_catalogue(const Config& cfg) {
  const st::DType plain = dtype_of_torch_dtype(cfg.torch_dtype);
  const st::DType bias = plain == st::DType::F64 ? st::DType::F64 : st::DType::F32;
  const u64 B = static_cast<u64>(cfg.weight_block_size);
  std::vector<CatalogueEntry> out;
  for (const auto& it : model_items(cfg, true)) {
    if (it.role == Role::Fp8Linear && cfg.fp8_weights) {
      out.push_back({it.name, it.shape, st::DType::F8_E4M3});
      out.push_back({scale_name(it.name), {ceil_div(it.shape[0], B), ceil_div(it.shape[1], B)},
                     st::DType::F32});
    } else {
      out.push_back({it.name, it.shape, it.role == Role::Bias ? bias : plain});
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Loading

namespace {

class Reader {
 public:
  explicit Reader(const TensorSource& src) : src_(src) {}

  // A tensor of exactly `shape`, values row-major.
  TensorData get(const std::string& name, const std::vector<u64>& shape) const {
    if (!src_.has(name))
      throw std::runtime_error(fmt::format("{}: missing tensor '{}' (expected shape {})",
                                           src_.describe(), name, shape_str(shape)));
    const auto got = src_.shape(name);
    if (got != shape)
      throw std::runtime_error(fmt::format("{}: tensor '{}' has shape {}, expected {} from the config",
                                           src_.describe(), name, shape_str(got), shape_str(shape)));
    TensorData t = src_.read(name);
    u64 n = 1;
    for (auto s : shape) n *= s;
    if (t.shape != shape || t.data.size() != n)
      throw std::runtime_error(fmt::format("{}: tensor '{}' read back with shape {} and {} values, "
                                           "expected {}",
                                           src_.describe(), name, shape_str(t.shape), t.data.size(),
                                           shape_str(shape)));
    return t;
  }

  // A linear map [out, in]: the row-major buffer read column-major is W^T, so transpose once.
  arma::mat matrix(const std::string& name, u64 out, u64 in) const { return rows(name, out, in, 0, out); }

  arma::vec vector(const std::string& name, u64 n) const {
    TensorData t = get(name, {n});
    return arma::vec(t.data);
  }

  // Rows first .. first+count-1 of a matrix [rows, cols] stored row-major (a linear map, the
  // embedding, the LM head) as an arma::mat [count, cols].
  arma::mat rows(const std::string& name, u64 rows, u64 cols, u64 first, u64 count) const {
    arma::mat W = fresh(count, cols);
    put(name, rows, cols, first, count, W, 0);
    return W;
  }

  // A matrix about to be filled by put(): left uninitialised, since every entry will be written
  // (Armadillo would otherwise zero it, a whole extra pass over a layer's weights).
  static arma::mat fresh(u64 rows, u64 cols) { return arma::mat(rows, cols, arma::fill::none); }

  // Rows first .. first+count-1 of the matrix `name` [rows, cols] into rows r0 .. r0+count-1 of
  // W: the source writes them in W's column-major order (TensorSource::read_rows_transposed).
  void put(const std::string& name, u64 rows, u64 cols, u64 first, u64 count, arma::mat& W,
           u64 r0) const {
    if (!src_.has(name))
      throw std::runtime_error(fmt::format("{}: missing tensor '{}' (expected shape {})",
                                           src_.describe(), name, shape_str({rows, cols})));
    const auto got = src_.shape(name);
    if (got != std::vector<u64>{rows, cols})
      throw std::runtime_error(fmt::format("{}: tensor '{}' has shape {}, expected {} from the config",
                                           src_.describe(), name, shape_str(got),
                                           shape_str({rows, cols})));
    if (W.n_cols != cols || r0 + count > W.n_rows)
      throw std::logic_error(fmt::format("rows {}..{} of '{}' do not fit rows {}.. of a [{}, {}] matrix",
                                         first, first + count - 1, name, r0, W.n_rows, W.n_cols));
    if (count > 0) src_.read_rows_transposed(name, first, count, W.memptr() + r0, W.n_rows);
  }

  bool has(const std::string& name) const { return src_.has(name); }

 private:
  const TensorSource& src_;
};

FfnWeights load_ffn(const Reader& rd, const std::string& p, u64 d, u64 width) {
  FfnWeights f;
  f.W_gate = rd.matrix(p + "gate_proj.weight", width, d);
  f.W_up = rd.matrix(p + "up_proj.weight", width, d);
  f.W_down = rd.matrix(p + "down_proj.weight", d, width);
  return f;
}

// Block weights under prefix p, without the routed experts (moe.experts stays empty): the
// experts are read one at a time, when the router chooses them (load_expert_weights).
BlockWeights load_block(const Config& c, const Reader& rd, const std::string& p, bool is_moe) {
  const u64 d = c.hidden_size, n_h = c.num_attention_heads, d_nope = c.qk_nope_head_dim,
            d_rope = c.qk_rope_head_dim, d_v = c.v_head_dim, r_kv = c.kv_lora_rank;
  BlockWeights b;
  b.w_attn_norm = rd.vector(p + "input_layernorm.weight", d);
  b.w_ffn_norm = rd.vector(p + "post_attention_layernorm.weight", d);
  MlaWeights& a = b.attn;

  // Query: q_b_proj (or q_proj) rows are head-major, [q_nope (d_nope) ; q_rope (d_rope)] per
  // head (spec §4.2). W_UQ takes the nope rows and W_QR the rope rows, heads stacked; each head's
  // rows go straight to their place, so the stacked matrix is never held whole.
  std::string q_name = p + "self_attn.q_proj.weight";
  u64 q_in = d;
  if (c.has_q_lora()) {
    const u64 r_q = c.q_lora_rank;
    a.W_DQ = rd.matrix(p + "self_attn.q_a_proj.weight", r_q, d);
    a.w_q = rd.vector(p + "self_attn.q_a_layernorm.weight", r_q);
    q_name = p + "self_attn.q_b_proj.weight";
    q_in = r_q;
  }
  const u64 q_rows = n_h * (d_nope + d_rope);
  a.W_UQ = Reader::fresh(n_h * d_nope, q_in);
  a.W_QR = Reader::fresh(n_h * d_rope, q_in);
  for (u64 i = 0; i < n_h; ++i) {
    const u64 head = i * (d_nope + d_rope);
    rd.put(q_name, q_rows, q_in, head, d_nope, a.W_UQ, i * d_nope);
    rd.put(q_name, q_rows, q_in, head + d_nope, d_rope, a.W_QR, i * d_rope);
  }

  // kv_a_proj_with_mqa rows: [c_kv (r_kv) ; k_rope (d_rope)].
  const std::string kv_a = p + "self_attn.kv_a_proj_with_mqa.weight";
  a.W_DKV = Reader::fresh(r_kv, d);
  a.W_KR = Reader::fresh(d_rope, d);
  rd.put(kv_a, r_kv + d_rope, d, 0, r_kv, a.W_DKV, 0);
  rd.put(kv_a, r_kv + d_rope, d, r_kv, d_rope, a.W_KR, 0);
  a.w_kv = rd.vector(p + "self_attn.kv_a_layernorm.weight", r_kv);

  // kv_b_proj rows: head-major, [k_nope (d_nope) ; v (d_v)] per head.
  const std::string kv_b = p + "self_attn.kv_b_proj.weight";
  const u64 kv_b_rows = n_h * (d_nope + d_v);
  a.W_UK = Reader::fresh(n_h * d_nope, r_kv);
  a.W_UV = Reader::fresh(n_h * d_v, r_kv);
  for (u64 i = 0; i < n_h; ++i) {
    const u64 head = i * (d_nope + d_v);
    rd.put(kv_b, kv_b_rows, r_kv, head, d_nope, a.W_UK, i * d_nope);
    rd.put(kv_b, kv_b_rows, r_kv, head + d_nope, d_v, a.W_UV, i * d_v);
  }
  a.W_O = rd.matrix(p + "self_attn.o_proj.weight", d, n_h * d_v);

  b.is_moe = is_moe;
  if (!is_moe) {
    b.dense = load_ffn(rd, p + "mlp.", d, c.intermediate_size);
    return b;
  }
  const u64 N_r = c.n_routed_experts;
  b.moe.W_g = rd.matrix(p + "mlp.gate.weight", N_r, d);
  if (c.has_gate_bias()) b.moe.b = rd.vector(p + "mlp.gate.e_score_correction_bias", N_r);
  if (c.n_shared_experts > 0)
    b.moe.shared = load_ffn(rd, p + "mlp.shared_experts.", d, c.n_shared_experts * c.moe_intermediate_size);
  return b;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Every tensor of the source must be one the config describes: a tensor of a layer past
// num_hidden_layers, or an expert past n_routed_experts, means the config and the weights
// belong to different models.
void check_no_unexpected(const Config& c, const TensorSource& src) {
  std::set<std::string> known;
  for (const auto& it : model_items(c, true)) known.insert(it.name);
  for (const auto& name : src.names()) {
    if (known.count(name)) continue;
    // FP8 scales belong to a known weight; rotary buffers are recomputed (spec §11).
    if (ends_with(name, "_scale_inv") && known.count(name.substr(0, name.size() - 10))) continue;
    if (ends_with(name, "rotary_emb.inv_freq")) continue;
    throw std::runtime_error(fmt::format(
        "{}: holds tensor '{}', which config '{}' does not describe (num_hidden_layers = {}, "
        "n_routed_experts = {}, q_lora_rank = {}, num_nextn_predict_layers = {})",
        src.describe(), name, c.name, c.num_hidden_layers, c.n_routed_experts, c.q_lora_rank,
        c.num_nextn_predict_layers));
  }
}

}  // namespace

void check_source(const Config& cfg, const TensorSource& src, bool with_mtp) {
  validate(cfg);
  if (with_mtp && cfg.num_nextn_predict_layers == 0)
    throw std::invalid_argument(fmt::format(
        "load_weights: MTP requested but config '{}' has num_nextn_predict_layers = 0", cfg.name));
  check_no_unexpected(cfg, src);
}

namespace {

void check_layer_index(const Config& cfg, std::int64_t l) {
  if (l < 0 || l > cfg.num_hidden_layers || (l == cfg.num_hidden_layers && cfg.num_nextn_predict_layers == 0))
    throw std::out_of_range(fmt::format(
        "layer {} of config '{}': expected 0..{} (num_hidden_layers = {}{})", l, cfg.name,
        cfg.num_nextn_predict_layers > 0 ? cfg.num_hidden_layers : cfg.num_hidden_layers - 1,
        cfg.num_hidden_layers, cfg.num_nextn_predict_layers > 0 ? ", the last is the MTP module" : ""));
}

}  // namespace

BlockWeights load_block_weights(const Config& cfg, const TensorSource& src, std::int64_t l) {
  check_layer_index(cfg, l);
  return load_block(cfg, Reader(src), layer_prefix(l), cfg.is_moe_layer(l));
}

FfnWeights load_expert_weights(const Config& cfg, const TensorSource& src, std::int64_t l,
                               std::int64_t j) {
  check_layer_index(cfg, l);
  if (!cfg.is_moe_layer(l) || j < 0 || j >= cfg.n_routed_experts)
    throw std::out_of_range(fmt::format(
        "routed expert {} of layer {}: config '{}' has {} (layers {}.. are MoE)", j, l, cfg.name,
        cfg.is_moe_layer(l) ? fmt::format("experts 0..{}", cfg.n_routed_experts - 1)
                            : std::string("no routed experts in this layer"),
        cfg.first_k_dense_replace));
  return load_ffn(Reader(src), fmt::format("{}mlp.experts.{}.", layer_prefix(l), j),
                  cfg.hidden_size, cfg.moe_intermediate_size);
}

std::string table_name(const Config& cfg, const TensorSource& src, Table table) {
  const std::string mtp = layer_prefix(cfg.num_hidden_layers);
  const std::string embed = "model.embed_tokens.weight";
  const std::string head = cfg.tie_word_embeddings ? embed : std::string("lm_head.weight");
  switch (table) {
    case Table::Embedding: return embed;
    case Table::Head: return head;
    // The release stores copies of the embedding and head in the MTP layer; use them when present.
    case Table::MtpEmbedding: return src.has(mtp + "embed_tokens.weight") ? mtp + "embed_tokens.weight" : embed;
    case Table::MtpHead: return src.has(mtp + "shared_head.head.weight") ? mtp + "shared_head.head.weight" : head;
  }
  return embed;
}

arma::mat load_table_rows(const Config& cfg, const TensorSource& src, Table table,
                          std::uint64_t first, std::uint64_t count) {
  return Reader(src).rows(table_name(cfg, src, table), cfg.vocab_size, cfg.hidden_size, first, count);
}

MtpWeights load_mtp_weights(const Config& cfg, const TensorSource& src) {
  check_layer_index(cfg, cfg.num_hidden_layers);
  const Reader rd(src);
  const u64 d = cfg.hidden_size;
  const std::string p = layer_prefix(cfg.num_hidden_layers);
  MtpWeights m;
  m.w_enorm = rd.vector(p + "enorm.weight", d);
  m.w_hnorm = rd.vector(p + "hnorm.weight", d);
  m.W_eh = rd.matrix(p + "eh_proj.weight", d, 2 * d);
  m.block = load_block(cfg, rd, p, cfg.is_moe_layer(cfg.num_hidden_layers));
  m.w_head_norm = rd.vector(p + "shared_head.norm.weight", d);
  return m;
}

arma::vec load_final_norm(const Config& cfg, const TensorSource& src) {
  return Reader(src).vector("model.norm.weight", cfg.hidden_size);
}

// The whole model in memory: every piece the weight store fetches on demand, fetched now.
ModelWeights load_weights(const Config& cfg, const TensorSource& src, bool with_mtp) {
  check_source(cfg, src, with_mtp);
  const u64 V = cfg.vocab_size;
  // Every routed expert of MoE layer l, in index order.
  auto all_experts = [&](std::int64_t l) {
    std::vector<FfnWeights> experts;
    if (cfg.is_moe_layer(l))
      for (std::int64_t j = 0; j < cfg.n_routed_experts; ++j)
        experts.push_back(load_expert_weights(cfg, src, l, j));
    return experts;
  };
  ModelWeights w;
  w.E = load_table_rows(cfg, src, Table::Embedding, 0, V).t();  // [d, V]: column v embeds token v
  w.layers.reserve(cfg.num_hidden_layers);
  for (std::int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    w.layers.push_back(load_block_weights(cfg, src, l));
    w.layers.back().moe.experts = all_experts(l);
  }
  w.w_final_norm = load_final_norm(cfg, src);
  w.W_head = load_table_rows(cfg, src, Table::Head, 0, V);
  if (with_mtp) {
    MtpWeights m = load_mtp_weights(cfg, src);
    m.block.moe.experts = all_experts(cfg.num_hidden_layers);
    const std::string p = layer_prefix(cfg.num_hidden_layers);
    if (src.has(p + "embed_tokens.weight")) m.E = load_table_rows(cfg, src, Table::MtpEmbedding, 0, V).t();
    if (src.has(p + "shared_head.head.weight")) m.W_head = load_table_rows(cfg, src, Table::MtpHead, 0, V);
    w.mtp = std::move(m);
  }
  return w;
}

GeneratorSource generator_source(const Config& cfg, std::uint64_t seed) {
  std::vector<GeneratorSource::Entry> entries;
  for (const auto& it : model_items(cfg, true)) entries.push_back({it.name, it.shape});
  return GeneratorSource(seed, std::move(entries));
}

namespace {

// Serves another source's tensors rounded to bfloat16 (nearest even), as a BF16 checkpoint
// holds them; the gate bias stays F32 as write_checkpoint keeps it.
class Bf16RoundingSource : public TensorSource {
 public:
  explicit Bf16RoundingSource(const TensorSource& inner) : inner_(inner) {}
  bool has(const std::string& name) const override { return inner_.has(name); }
  std::vector<std::uint64_t> shape(const std::string& name) const override { return inner_.shape(name); }
  std::vector<std::string> names() const override { return inner_.names(); }
  std::string describe() const override { return inner_.describe() + " rounded to BF16"; }
  const SourceCounters& counters() const override { return inner_.counters(); }
  TensorData read_rows(const std::string& name, std::uint64_t first,
                       std::uint64_t count) const override {
    TensorData t = inner_.read_rows(name, first, count);
    if (name.ends_with("e_score_correction_bias")) return t;
    for (double& v : t.data) v = st::decode_bf16(st::encode_bf16(static_cast<float>(v)));
    return t;
  }

 private:
  const TensorSource& inner_;
};

}  // namespace

ModelWeights generate_weights(const Config& cfg, std::uint64_t seed) {
  return load_weights(cfg, generator_source(cfg, seed), cfg.num_nextn_predict_layers > 0);
}

ModelWeights generate_weights(const Config& cfg, std::uint64_t seed, st::DType storage) {
  if (storage == st::DType::F32 || storage == st::DType::F64) return generate_weights(cfg, seed);
  if (storage != st::DType::BF16)
    throw std::invalid_argument(fmt::format(
        "generate_weights: storage {}, expected F64, F32 or BF16", st::to_string(storage)));
  return load_weights(cfg, Bf16RoundingSource(generator_source(cfg, seed)),
                      cfg.num_nextn_predict_layers > 0);
}

// ---------------------------------------------------------------------------------------------
// Writing

namespace {

std::vector<double> row_major(const arma::mat& W) {
  const arma::mat Wt = W.t();  // column-major W^T is row-major W
  return std::vector<double>(Wt.begin(), Wt.end());
}

// Rebuilds the HF tensors of one block (names relative to its prefix), fused as on disk.
std::map<std::string, std::vector<double>> block_tensors(const Config& c, const BlockWeights& b) {
  const u64 n_h = c.num_attention_heads, d_nope = c.qk_nope_head_dim, d_rope = c.qk_rope_head_dim,
            d_v = c.v_head_dim, r_kv = c.kv_lora_rank;
  std::map<std::string, std::vector<double>> t;
  const MlaWeights& a = b.attn;
  t["input_layernorm.weight"] = arma::conv_to<std::vector<double>>::from(b.w_attn_norm);
  t["post_attention_layernorm.weight"] = arma::conv_to<std::vector<double>>::from(b.w_ffn_norm);
  arma::mat Wq(n_h * (d_nope + d_rope), a.W_UQ.n_cols);
  for (u64 i = 0; i < n_h; ++i) {
    const u64 head = i * (d_nope + d_rope);
    Wq.rows(head, head + d_nope - 1) = a.W_UQ.rows(i * d_nope, (i + 1) * d_nope - 1);
    Wq.rows(head + d_nope, head + d_nope + d_rope - 1) = a.W_QR.rows(i * d_rope, (i + 1) * d_rope - 1);
  }
  if (c.has_q_lora()) {
    t["self_attn.q_a_proj.weight"] = row_major(a.W_DQ);
    t["self_attn.q_a_layernorm.weight"] = arma::conv_to<std::vector<double>>::from(a.w_q);
    t["self_attn.q_b_proj.weight"] = row_major(Wq);
  } else {
    t["self_attn.q_proj.weight"] = row_major(Wq);
  }
  t["self_attn.kv_a_proj_with_mqa.weight"] = row_major(arma::join_cols(a.W_DKV, a.W_KR));
  t["self_attn.kv_a_layernorm.weight"] = arma::conv_to<std::vector<double>>::from(a.w_kv);
  arma::mat Wkv_b(n_h * (d_nope + d_v), r_kv);
  for (u64 i = 0; i < n_h; ++i) {
    const u64 head = i * (d_nope + d_v);
    Wkv_b.rows(head, head + d_nope - 1) = a.W_UK.rows(i * d_nope, (i + 1) * d_nope - 1);
    Wkv_b.rows(head + d_nope, head + d_nope + d_v - 1) = a.W_UV.rows(i * d_v, (i + 1) * d_v - 1);
  }
  t["self_attn.kv_b_proj.weight"] = row_major(Wkv_b);
  t["self_attn.o_proj.weight"] = row_major(a.W_O);
  auto ffn = [&](const std::string& p, const FfnWeights& f) {
    t[p + "gate_proj.weight"] = row_major(f.W_gate);
    t[p + "up_proj.weight"] = row_major(f.W_up);
    t[p + "down_proj.weight"] = row_major(f.W_down);
  };
  if (!b.is_moe) {
    ffn("mlp.", b.dense);
    return t;
  }
  t["mlp.gate.weight"] = row_major(b.moe.W_g);
  if (c.has_gate_bias()) t["mlp.gate.e_score_correction_bias"] = arma::conv_to<std::vector<double>>::from(b.moe.b);
  for (std::size_t j = 0; j < b.moe.experts.size(); ++j)
    ffn(fmt::format("mlp.experts.{}.", j), b.moe.experts[j]);
  if (b.moe.shared) ffn("mlp.shared_experts.", *b.moe.shared);
  return t;
}

// FP8 block quantization as the release did it: per 128x128 block, scale_inv = max|W| / 448
// (rounded to F32, as stored) and Wq = e4m3(W / scale_inv), so that Wq * scale_inv ~ W.
void quantize_fp8(const std::vector<double>& W, u64 rows, u64 cols, u64 B, std::vector<double>& Wq,
                  std::vector<double>& scale) {
  const u64 sr = ceil_div(rows, B), sc = ceil_div(cols, B);
  scale.assign(sr * sc, 0.0);
  Wq.assign(rows * cols, 0.0);
  for (u64 br = 0; br < sr; ++br)
    for (u64 bc = 0; bc < sc; ++bc) {
      double amax = 0.0;
      for (u64 r = br * B; r < std::min(rows, (br + 1) * B); ++r)
        for (u64 c = bc * B; c < std::min(cols, (bc + 1) * B); ++c)
          amax = std::max(amax, std::fabs(W[r * cols + c]));
      const double s = amax > 0 ? static_cast<double>(static_cast<float>(amax / 448.0)) : 1.0;
      scale[br * sc + bc] = s;
      for (u64 r = br * B; r < std::min(rows, (br + 1) * B); ++r)
        for (u64 c = bc * B; c < std::min(cols, (bc + 1) * B); ++c)
          Wq[r * cols + c] = st::decode_e4m3(st::encode_e4m3(static_cast<float>(W[r * cols + c] / s)));
    }
}

}  // namespace

std::vector<st::NamedTensor> weights_to_tensors(const Config& cfg_in, const ModelWeights& w,
                                                st::DType dtype) {
  if (dtype != st::DType::F64 && dtype != st::DType::F32 && dtype != st::DType::BF16 &&
      dtype != st::DType::F16 && dtype != st::DType::F8_E4M3)
    throw std::invalid_argument(fmt::format("weights_to_tensors: dtype {} is not a float dtype",
                                            st::to_string(dtype)));
  const bool fp8 = dtype == st::DType::F8_E4M3;
  const st::DType plain = fp8 ? st::DType::BF16 : dtype;
  const st::DType bias = dtype == st::DType::F64 ? st::DType::F64 : st::DType::F32;
  const u64 B = cfg_in.weight_block_size;
  const bool with_mtp = w.mtp.has_value() && cfg_in.num_nextn_predict_layers > 0;

  if (static_cast<std::int64_t>(w.layers.size()) != cfg_in.num_hidden_layers)
    throw std::invalid_argument(fmt::format("weights_to_tensors: {} layers, config '{}' has {}",
                                            w.layers.size(), cfg_in.name, cfg_in.num_hidden_layers));
  std::map<std::string, std::vector<double>> values;
  values["model.embed_tokens.weight"] = row_major(w.E.t());
  for (std::int64_t l = 0; l < cfg_in.num_hidden_layers; ++l)
    for (auto& [name, v] : block_tensors(cfg_in, w.layers[l])) values[layer_prefix(l) + name] = std::move(v);
  values["model.norm.weight"] = arma::conv_to<std::vector<double>>::from(w.w_final_norm);
  if (!cfg_in.tie_word_embeddings) values["lm_head.weight"] = row_major(w.W_head);
  if (with_mtp) {
    const MtpWeights& m = *w.mtp;
    const std::string p = layer_prefix(cfg_in.num_hidden_layers);
    values[p + "embed_tokens.weight"] = row_major(m.E.is_empty() ? w.E.t() : m.E.t());
    values[p + "enorm.weight"] = arma::conv_to<std::vector<double>>::from(m.w_enorm);
    values[p + "hnorm.weight"] = arma::conv_to<std::vector<double>>::from(m.w_hnorm);
    values[p + "eh_proj.weight"] = row_major(m.W_eh);
    for (auto& [name, v] : block_tensors(cfg_in, m.block)) values[p + name] = std::move(v);
    values[p + "shared_head.norm.weight"] = arma::conv_to<std::vector<double>>::from(m.w_head_norm);
    values[p + "shared_head.head.weight"] = row_major(m.W_head.is_empty() ? w.W_head : m.W_head);
  }

  std::vector<st::NamedTensor> out;
  for (const auto& it : model_items(cfg_in, with_mtp)) {
    auto found = values.find(it.name);
    if (found == values.end())
      throw std::invalid_argument(fmt::format("weights_to_tensors: no values for tensor '{}'", it.name));
    u64 n = 1;
    for (auto s : it.shape) n *= s;
    if (found->second.size() != n)
      throw std::invalid_argument(fmt::format("weights_to_tensors: tensor '{}' has {} values, its shape {} holds {}",
                                              it.name, found->second.size(), shape_str(it.shape), n));
    if (fp8 && it.role == Role::Fp8Linear) {
      std::vector<double> Wq, scale;
      quantize_fp8(found->second, it.shape[0], it.shape[1], B, Wq, scale);
      out.push_back({it.name, it.shape, std::move(Wq), st::DType::F8_E4M3});
      out.push_back({scale_name(it.name), {ceil_div(it.shape[0], B), ceil_div(it.shape[1], B)},
                     std::move(scale), st::DType::F32});
    } else {
      out.push_back({it.name, it.shape, std::move(found->second), it.role == Role::Bias ? bias : plain});
    }
  }
  return out;
}

void write_checkpoint(const std::string& dir, const Config& cfg, const ModelWeights& w,
                      st::DType dtype, int shards) {
  if (shards < 1) throw std::invalid_argument(fmt::format("write_checkpoint: shards = {}, expected >= 1", shards));
  const Config stored = stored_config(cfg, dtype, w.mtp.has_value());
  const std::vector<st::NamedTensor> tensors = weights_to_tensors(stored, w, dtype);
  std::vector<CatalogueEntry> entries;
  for (const auto& t : tensors) entries.push_back({t.name, t.shape, t.dtype});
  std::vector<std::uint8_t> bytes;
  write_checkpoint_files(dir, stored, entries, shards,
                         [&](std::size_t i, const CatalogueEntry& e, const EmitBytes& emit) {
                           bytes.resize(e.bytes());
                           st::encode_values(e.dtype, tensors[i].data.data(), tensors[i].data.size(), bytes.data());
                           emit(bytes.data(), bytes.size());
                         });
}

LoadedModel load_model_dir(const std::string& dir, bool with_mtp, const Faults& faults) {
  LoadedModel m;
  m.config = load_config_json((std::filesystem::path(dir) / "config.json").string());
  CheckpointOptions opt;
  opt.weight_block_size = m.config.weight_block_size;
  opt.faults = faults;
  const Checkpoint ck(dir, opt);
  m.weights = load_weights(m.config, ck, with_mtp);
  return m;
}

}  // namespace dsr1
