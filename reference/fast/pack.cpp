// Packing the fast path's weights straight from a weight source (see pack.hpp).
#include "reference/fast/pack.hpp"
#include "reference/fast/source_model.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <stdexcept>

#include "reference/deepseek/checkpoint_writer.hpp"
#include "reference/deepseek/loader.hpp"
#include "reference/io/checkpoint.hpp"
#include "reference/io/safetensors.hpp"

namespace dsr1::fast {
namespace {

using u64 = std::uint64_t;
namespace st = safetensors;

u64 ceil_div(u64 a, u64 b) { return (a + b - 1) / b; }

// A matrix is read this many bytes' worth of rows at a time (at least one scale block of rows),
// so that packing never holds a second copy of a large matrix (the LM head of V3 is 1.9 GB).
constexpr u64 kChunkValues = u64{1} << 22;

// Rows of one tensor [count, cols], row-major, in the form the packed matrix stores.
struct Rows {
  WeightType form = WeightType::F32;
  std::int64_t count = 0, cols = 0, n_kb = 0;
  std::vector<std::uint8_t> codes;  // FP8: e4m3 codes
  std::vector<float> scales;        // FP8: [count, n_kb], each row's scale per block of B columns
  std::vector<std::uint16_t> bits;  // BF16: bfloat16 bit patterns
  std::vector<double> values;       // F32: values (float32 when stored)
};

class Packer {
 public:
  Packer(const TensorSource& src, const Config& c, WeightType type, const PackOptions& o)
      : src_(src), ckpt_(dynamic_cast<const Checkpoint*>(&src)), type_(type), opt_(o),
        B_(static_cast<u64>(c.weight_block_size)) {
    // The FP8 class: what the release quantises (every tensor with a scale in an FP8 catalogue).
    Config fp8 = c;
    fp8.fp8_weights = true;
    for (const CatalogueEntry& e : checkpoint_catalogue(fp8))
      if (e.dtype == st::DType::F8_E4M3) fp8_class_.insert(e.name);
  }

  // The storage of a matrix whose rows come from tensors of the FP8 class (or not).
  WeightType form(bool fp8_class) const {
    if (type_ == WeightType::FP8) return fp8_class ? WeightType::FP8 : WeightType::BF16;
    return type_;
  }
  bool fp8_class(const std::string& name) const { return fp8_class_.count(name) != 0; }
  u64 block() const { return B_; }

  // Throws unless the source holds `name` with exactly `shape` (named, with what was expected).
  void expect(const std::string& name, const std::vector<u64>& shape) const {
    auto str = [](const std::vector<u64>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); };
    if (!src_.has(name))
      throw std::runtime_error(fmt::format("{}: missing tensor '{}' (expected shape {})",
                                           src_.describe(), name, str(shape)));
    if (src_.shape(name) != shape)
      throw std::runtime_error(fmt::format("{}: tensor '{}' has shape {}, expected {} from the config",
                                           src_.describe(), name, str(src_.shape(name)), str(shape)));
  }

  // Rows first .. first+count-1 of the matrix `name` [rows, cols] in `form`.
  Rows read(const std::string& name, u64 rows, u64 cols, u64 first, u64 count, WeightType form) {
    Rows R;
    R.form = form;
    R.count = static_cast<std::int64_t>(count);
    R.cols = static_cast<std::int64_t>(cols);
    const std::string stored = ckpt_ ? st::to_string(ckpt_->dtype(name)) : std::string();
    if (form == WeightType::FP8) {
      R.n_kb = static_cast<std::int64_t>(ceil_div(cols, B_));
      if (stored == "F8_E4M3") read_fp8_stored(name, rows, cols, first, count, R);
      else quantise(name, rows, cols, first, count, R);
    } else if (form == WeightType::BF16 && stored == "BF16") {
      const std::vector<std::uint8_t> bytes = ckpt_->read_stored_rows(name, first, count);
      R.bits.resize(count * cols);
      std::memcpy(R.bits.data(), bytes.data(), bytes.size());  // little-endian host
    } else {
      R.values = values(name, cols, first, count);
      if (form == WeightType::BF16) {
        R.bits.resize(R.values.size());
        for (std::size_t i = 0; i < R.values.size(); ++i)
          R.bits[i] = st::encode_bf16(static_cast<float>(R.values[i]));
        R.values = {};
      }
    }
    return R;
  }

  // Rows i0 .. i0+n-1 of R into P at row r0.
  static void put(PackedMatrix& P, std::int64_t r0, const Rows& R, std::int64_t i0, std::int64_t n,
                  const std::string& what) {
    switch (R.form) {
      case WeightType::FP8:
        pack_rows_fp8(P, r0, n, R.codes.data() + i0 * R.cols, R.scales.data() + i0 * R.n_kb, what);
        break;
      case WeightType::BF16: pack_rows_bf16(P, r0, n, R.bits.data() + i0 * R.cols); break;
      case WeightType::F32: pack_rows(P, r0, n, R.values.data() + i0 * R.cols); break;
    }
  }

  // Rows first .. first+count-1 of matrix `name` [rows, cols] into P at row r0, a chunk at a time.
  void copy(PackedMatrix& P, std::int64_t r0, const std::string& name, u64 rows, u64 cols,
            u64 first, u64 count) {
    const u64 chunk = std::max<u64>(B_, kChunkValues / std::max<u64>(cols, 1) / B_ * B_);
    for (u64 i = 0; i < count; i += chunk) {
      const u64 n = std::min(chunk, count - i);
      const Rows R = read(name, rows, cols, first + i, n, P.type);
      put(P, r0 + static_cast<std::int64_t>(i), R, 0, static_cast<std::int64_t>(n), what(name));
    }
  }

  // A matrix stacked from whole tensors [rows_i, cols], in order.
  PackedMatrix stack(const std::vector<std::pair<std::string, u64>>& parts, u64 cols) {
    u64 M = 0;
    bool fp8 = true;
    for (const auto& [name, rows] : parts) {
      expect(name, {rows, cols});
      M += rows;
      fp8 = fp8 && fp8_class(name);
    }
    PackedMatrix P = make_packed(static_cast<std::int64_t>(M), static_cast<std::int64_t>(cols),
                                 form(fp8), static_cast<std::int64_t>(B_));
    std::int64_t r0 = 0;
    for (const auto& [name, rows] : parts) {
      copy(P, r0, name, rows, cols, 0, rows);
      r0 += static_cast<std::int64_t>(rows);
    }
    return P;
  }

  std::vector<float> vector(const std::string& name, u64 n) {
    expect(name, {n});
    const std::vector<double> v = values(name, 1, 0, n);
    return std::vector<float>(v.begin(), v.end());
  }
  std::vector<double> vector_double(const std::string& name, u64 n) {
    expect(name, {n});
    return values(name, 1, 0, n);
  }

  std::string what(const std::string& name) const {
    return fmt::format("{}: tensor '{}'", src_.describe(), name);
  }

 private:
  std::vector<double> values(const std::string& name, u64 cols, u64 first, u64 count) {
    TensorData t = src_.read_rows(name, first, count);
    if (t.data.size() != count * cols)
      throw std::runtime_error(fmt::format("{}: rows {}..{} read back with {} values, expected {}",
                                           what(name), first, first + count - 1, t.data.size(),
                                           count * cols));
    return std::move(t.data);
  }

  // An FP8 checkpoint's own codes, and each row's scales from the tensor's scale grid.
  void read_fp8_stored(const std::string& name, u64 rows, u64 cols, u64 first, u64 count, Rows& R) {
    const std::vector<float>& grid = scale_grid(name, rows, cols);
    R.codes = ckpt_->read_stored_rows(name, first, count);
    R.scales.resize(count * R.n_kb);
    for (u64 i = 0; i < count; ++i)
      std::copy_n(grid.data() + ((first + i) / B_) * R.n_kb, R.n_kb, R.scales.data() + i * R.n_kb);
  }

  const Checkpoint* checkpoint() const { return ckpt_; }

 public:
  // The scale grid [ceil(rows/B), ceil(cols/B)] of an FP8 weight, read once (a few KB).
  const std::vector<float>& scale_grid(const std::string& name, u64 rows, u64 cols) {
    auto it = grids_.find(name);
    if (it != grids_.end()) return it->second;
    const std::string s = scale_name(name);
    if (!src_.has(s))
      throw std::runtime_error(fmt::format("{}: FP8 (F8_E4M3) weight without its scale tensor '{}'",
                                           what(name), s));
    expect(s, {ceil_div(rows, B_), ceil_div(cols, B_)});
    if (ckpt_->dtype(s) != st::DType::F32)
      throw std::runtime_error(fmt::format("{}: dtype {}, expected F32", what(s),
                                           st::to_string(ckpt_->dtype(s))));
    const std::vector<double> g = src_.read(s).data;  // F32, so exact in double and back
    for (std::size_t i = 0; i < g.size(); ++i)
      if (!std::isfinite(g[i]) || g[i] < 0)
        throw std::runtime_error(fmt::format("{}: element {} is {}, expected a finite scale >= 0",
                                             what(s), i, g[i]));
    if (grids_.size() > 16) grids_.clear();  // only the matrix being packed needs its grid
    return grids_[name] = std::vector<float>(g.begin(), g.end());
  }

 private:

  // Values quantised as `dsr1 init-model --dtype fp8` quantises them: whole B x B blocks
  // (quantize_fp8_rows), so rows from the block row containing `first` are read and quantised,
  // and the asked-for rows kept.
  void quantise(const std::string& name, u64 rows, u64 cols, u64 first, u64 count, Rows& R) {
    const u64 a0 = first / B_ * B_, a1 = std::min(rows, ceil_div(first + count, B_) * B_);
    const std::vector<double> v = values(name, cols, a0, a1 - a0);
    std::vector<std::uint8_t> codes((a1 - a0) * cols);
    std::vector<float> grid(ceil_div(a1 - a0, B_) * R.n_kb);
    quantize_fp8_rows(v.data(), a1 - a0, cols, B_, codes.data(), grid.data(), opt_.threads);
    R.codes.assign(codes.begin() + (first - a0) * cols, codes.begin() + (first - a0 + count) * cols);
    R.scales.resize(count * R.n_kb);
    for (u64 i = 0; i < count; ++i)
      std::copy_n(grid.data() + ((first + i - a0) / B_) * R.n_kb, R.n_kb, R.scales.data() + i * R.n_kb);
  }

  const TensorSource& src_;
  const Checkpoint* ckpt_;  // null for a source that stores no bytes (the generator)
  WeightType type_;
  PackOptions opt_;
  u64 B_;
  std::set<std::string> fp8_class_;
  std::map<std::string, std::vector<float>> grids_;
};

FfnWeightsF pack_ffn(Packer& pk, const std::string& p, u64 d, u64 width) {
  FfnWeightsF F;
  F.I = static_cast<std::int64_t>(width);
  F.W_gate_up = pk.stack({{p + "gate_proj.weight", width}, {p + "up_proj.weight", width}}, d);
  F.W_down = pk.stack({{p + "down_proj.weight", d}}, width);
  return F;
}

// W_UK_h^T [r_kv, d_nope] from rows i0 .. i0+d_nope-1 of kv_b_proj (R holds all its rows), in
// R's form, or (form F32 from FP8 rows, when the blocks do not align) as q * s rounded to float32.
PackedMatrix pack_uk_transposed(const Packer& pk, const Rows& R, std::int64_t i0, std::int64_t d_nope,
                                WeightType form, const std::string& what) {
  const std::int64_t r_kv = R.cols, B = static_cast<std::int64_t>(pk.block());
  Rows T;  // [r_kv, d_nope]
  T.form = form;
  T.count = r_kv;
  T.cols = d_nope;
  if (R.form == WeightType::FP8 && form == WeightType::F32) {
    // The codes' exact values q * s (in double, as the reference dequantises them), so that a
    // checkpoint and the generator's quantisation give the same float32 weights.
    T.values.resize(r_kv * d_nope);
    for (std::int64_t r = 0; r < r_kv; ++r)
      for (std::int64_t k = 0; k < d_nope; ++k)
        T.values[r * d_nope + k] = st::decode_e4m3(R.codes[(i0 + k) * r_kv + r]) *
                                   R.scales[(i0 + k) * R.n_kb + r / B];
  } else if (R.form == WeightType::FP8) {
    // Row r of W_UK_h^T is column r of the slice; its b-th block of B inner entries are the
    // slice's rows b*B .. (one checkpoint row block, as i0 % B == 0), scaled by that block's
    // scale in column block r / B.
    T.n_kb = (d_nope + B - 1) / B;
    T.codes.resize(r_kv * d_nope);
    T.scales.resize(r_kv * T.n_kb);
    for (std::int64_t r = 0; r < r_kv; ++r) {
      for (std::int64_t k = 0; k < d_nope; ++k) T.codes[r * d_nope + k] = R.codes[(i0 + k) * r_kv + r];
      for (std::int64_t b = 0; b < T.n_kb; ++b) T.scales[r * T.n_kb + b] = R.scales[(i0 + b * B) * R.n_kb + r / B];
    }
  } else if (R.form == WeightType::BF16) {
    T.bits.resize(r_kv * d_nope);
    for (std::int64_t r = 0; r < r_kv; ++r)
      for (std::int64_t k = 0; k < d_nope; ++k) T.bits[r * d_nope + k] = R.bits[(i0 + k) * r_kv + r];
  } else {
    T.values.resize(r_kv * d_nope);
    for (std::int64_t r = 0; r < r_kv; ++r)
      for (std::int64_t k = 0; k < d_nope; ++k) T.values[r * d_nope + k] = R.values[(i0 + k) * r_kv + r];
  }
  PackedMatrix P = make_packed(r_kv, d_nope, T.form, B);
  Packer::put(P, 0, T, 0, r_kv, what);
  return P;
}

MlaWeightsF pack_mla(Packer& pk, const Config& c, const std::string& p) {
  const u64 d = c.hidden_size, n_h = c.num_attention_heads, d_nope = c.qk_nope_head_dim,
            d_rope = c.qk_rope_head_dim, d_v = c.v_head_dim, r_kv = c.kv_lora_rank,
            r_q = c.q_lora_rank, B = pk.block();
  const std::string q_a = p + "self_attn.q_a_proj.weight", kv_a = p + "self_attn.kv_a_proj_with_mqa.weight",
                    kv_b = p + "self_attn.kv_b_proj.weight";
  MlaWeightsF F;
  // [W_UQ ; W_QR] from q_b_proj (or q_proj), whose rows are head-major [q_nope ; q_rope] per
  // head (spec §4.2, as the loader splits them): W_UQ takes every head's nope rows, then W_QR
  // every head's rope rows. Read whole (one matrix), then regrouped.
  const std::string q_name = c.has_q_lora() ? p + "self_attn.q_b_proj.weight" : p + "self_attn.q_proj.weight";
  const u64 q_in = c.has_q_lora() ? r_q : d, q_rows = n_h * (d_nope + d_rope);
  pk.expect(q_name, {q_rows, q_in});
  pk.expect(kv_a, {r_kv + d_rope, d});
  auto regroup_q = [&](PackedMatrix& P) {
    const Rows Q = pk.read(q_name, q_rows, q_in, 0, q_rows, P.type);
    for (u64 h = 0; h < n_h; ++h) {
      const auto head = static_cast<std::int64_t>(h * (d_nope + d_rope));
      Packer::put(P, static_cast<std::int64_t>(h * d_nope), Q, head, d_nope, pk.what(q_name));
      Packer::put(P, static_cast<std::int64_t>(n_h * d_nope + h * d_rope), Q, head + d_nope, d_rope,
                  pk.what(q_name));
    }
  };
  if (c.has_q_lora()) {
    F.W_x = pk.stack({{q_a, r_q}, {kv_a, r_kv + d_rope}}, d);  // [W_DQ ; W_DKV ; W_KR]
    F.W_q = make_packed(static_cast<std::int64_t>(q_rows), static_cast<std::int64_t>(r_q),
                        pk.form(pk.fp8_class(q_name)), static_cast<std::int64_t>(B));
    regroup_q(F.W_q);
    F.w_q = pk.vector(p + "self_attn.q_a_layernorm.weight", r_q);
  } else {  // [W_UQ ; W_QR ; W_DKV ; W_KR]
    F.W_x = make_packed(static_cast<std::int64_t>(q_rows + r_kv + d_rope), static_cast<std::int64_t>(d),
                        pk.form(pk.fp8_class(q_name) && pk.fp8_class(kv_a)), static_cast<std::int64_t>(B));
    regroup_q(F.W_x);
    pk.copy(F.W_x, static_cast<std::int64_t>(q_rows), kv_a, r_kv + d_rope, d, 0, r_kv + d_rope);
  }
  F.w_kv = pk.vector(p + "self_attn.kv_a_layernorm.weight", r_kv);

  // Per head h, rows h (d_nope + d_v) .. of kv_b_proj: [W_UK_h (d_nope rows) ; W_UV_h (d_v rows)].
  const u64 kv_rows = n_h * (d_nope + d_v);
  pk.expect(kv_b, {kv_rows, r_kv});
  const WeightType kv_form = pk.form(pk.fp8_class(kv_b));
  // W_UK_h^T's inner blocks are kv_b_proj's row blocks: FP8 only when every head starts on one.
  const WeightType uk_form =
      kv_form == WeightType::FP8 && (d_nope + d_v) % B != 0 ? WeightType::F32 : kv_form;
  const Rows KV = pk.read(kv_b, kv_rows, r_kv, 0, kv_rows, kv_form);
  for (u64 h = 0; h < n_h; ++h) {
    const auto head = static_cast<std::int64_t>(h * (d_nope + d_v));
    F.W_UK_T.push_back(pack_uk_transposed(pk, KV, head, static_cast<std::int64_t>(d_nope), uk_form,
                                          pk.what(kv_b)));
    PackedMatrix UV = make_packed(static_cast<std::int64_t>(d_v), static_cast<std::int64_t>(r_kv), kv_form,
                                  static_cast<std::int64_t>(B));
    Packer::put(UV, 0, KV, head + static_cast<std::int64_t>(d_nope), static_cast<std::int64_t>(d_v), pk.what(kv_b));
    F.W_UV.push_back(std::move(UV));
  }
  F.W_O = pk.stack({{p + "self_attn.o_proj.weight", d}}, n_h * d_v);
  return F;
}

// Layer l: norms, attention, and the dense MLP or the router, the shared expert and (with
// all_experts) every routed expert; without, the experts are left to MoeWeightsF::fetch_expert.
BlockWeightsF pack_block(Packer& pk, const Config& c, std::int64_t l, bool all_experts) {
  const u64 d = c.hidden_size;
  const std::string p = fmt::format("model.layers.{}.", l);
  BlockWeightsF b;
  b.w_attn_norm = pk.vector(p + "input_layernorm.weight", d);
  b.w_ffn_norm = pk.vector(p + "post_attention_layernorm.weight", d);
  b.attn = pack_mla(pk, c, p);
  b.is_moe = c.is_moe_layer(l);
  if (!b.is_moe) {
    b.dense = pack_ffn(pk, p + "mlp.", d, c.intermediate_size);
  } else {
    const u64 N_r = c.n_routed_experts, I_e = c.moe_intermediate_size;
    b.moe.W_g = pk.stack({{p + "mlp.gate.weight", N_r}}, d);
    if (c.has_gate_bias()) b.moe.b = pk.vector_double(p + "mlp.gate.e_score_correction_bias", N_r);
    if (all_experts)
      for (u64 j = 0; j < N_r; ++j)
        b.moe.experts.push_back(pack_ffn(pk, fmt::format("{}mlp.experts.{}.", p, j), d, I_e));
    if (c.n_shared_experts > 0)
      b.moe.shared = pack_ffn(pk, p + "mlp.shared_experts.", d, c.n_shared_experts * I_e);
  }
  return b;
}

}  // namespace

WeightType stored_weight_type(const Config& c) {
  if (c.fp8_weights) return WeightType::FP8;
  if (c.torch_dtype == "bfloat16") return WeightType::BF16;
  return WeightType::F32;
}

ModelWeightsF pack_weights(const TensorSource& src, const Config& c, WeightType type,
                           const PackOptions& options) {
  check_source(c, src, /*with_mtp=*/false);
  if (type == WeightType::FP8 && c.weight_block_size < 1)
    throw std::invalid_argument(fmt::format("config '{}': weight_block_size = {}, expected >= 1",
                                            c.name, c.weight_block_size));
  Packer pk(src, c, type, options);
  const u64 d = c.hidden_size, V = c.vocab_size;
  ModelWeightsF F;
  F.type = type;

  // The embedding: float32, or bfloat16 as the release stores it, a chunk of rows at a time.
  const std::string embed = "model.embed_tokens.weight";
  pk.expect(embed, {V, d});
  F.E.V = static_cast<std::int64_t>(V);
  F.E.d = static_cast<std::int64_t>(d);
  F.E.type = type == WeightType::F32 ? WeightType::F32 : WeightType::BF16;
  if (F.E.type == WeightType::BF16) F.E.bf16.resize(V * d);
  else F.E.f32.resize(V * d);
  const u64 chunk = std::max<u64>(1, kChunkValues / d);
  for (u64 v0 = 0; v0 < V; v0 += chunk) {
    const u64 n = std::min(chunk, V - v0);
    const Rows R = pk.read(embed, V, d, v0, n, F.E.type);
    if (F.E.type == WeightType::BF16) std::copy(R.bits.begin(), R.bits.end(), F.E.bf16.begin() + v0 * d);
    else std::copy(R.values.begin(), R.values.end(), F.E.f32.begin() + v0 * d);
  }
  F.w_final_norm = pk.vector("model.norm.weight", d);
  F.W_head = pk.stack({{c.tie_word_embeddings ? embed : std::string("lm_head.weight"), V}}, d);

  // The fast path routes at run time, so every expert is packed.
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) F.layers.push_back(pack_block(pk, c, l, true));
  return F;
}

double packed_model_bytes(const Config& c, WeightType type) {
  // Every catalogue tensor of the main model as stored in `type` (pack.hpp): an FP8 catalogue
  // has the FP8 class at one byte plus its scales and everything else at two, which is also
  // what the bf16 run holds per matrix; per-row FP8 scales take 4 bytes per row and block
  // instead of per block (at most 1/32 of the codes).
  Config s = c;
  s.fp8_weights = type == WeightType::FP8;
  s.torch_dtype = type == WeightType::F32 ? "float32" : "bfloat16";
  s.num_nextn_predict_layers = 0;
  double bytes = 0;
  for (const CatalogueEntry& e : checkpoint_catalogue(s)) {
    double n = static_cast<double>(e.bytes());
    if (e.dtype == st::DType::F8_E4M3) n *= 1.0 + 4.0 / static_cast<double>(c.weight_block_size);
    bytes += n;
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// SourceModel (source_model.hpp): the weights fetched from the source when they are used.

namespace {

// Views of rows of tensors where they lie in a mapped checkpoint (PackedMatrix::is_view),
// stacked in the order added.
class ViewBuilder {
 public:
  ViewBuilder(Packer& pk, const Checkpoint& ck, u64 B) : pk_(pk), ck_(ck), B_(B) {}

  // Appends rows first .. first+count-1 of the 2-D tensor `name`.
  void add(PackedMatrix& P, const std::string& name, u64 first, u64 count) {
    const st::TensorInfo& t = ck_.info(name);
    const u64 rows = t.shape.at(0), cols = t.shape.at(1);
    const WeightType form = form_of(t.dtype, name);
    if (P.row_data.empty() && P.rows == 0) {
      P.type = form;
      P.cols = static_cast<std::int64_t>(cols);
      P.block = form == WeightType::FP8 ? static_cast<std::int64_t>(B_) : 0;
      P.keep = std::make_shared<std::vector<std::shared_ptr<const std::vector<float>>>>();
    }
    if (form != P.type || static_cast<std::int64_t>(cols) != P.cols)
      throw std::runtime_error(fmt::format(
          "{}: stored as {} [{}, {}], but the matrix it is stacked into ({}) is {} with {} columns",
          pk_.what(name), st::to_string(t.dtype), rows, cols, P.name, to_string(P.type), P.cols));
    if (first + count > rows)
      throw std::runtime_error(fmt::format("{}: rows {}..{} of {}", pk_.what(name), first,
                                           first + count - 1, rows));
    const std::uint8_t* base = ck_.mapped_data(name);
    const u64 esize = st::dtype_size(t.dtype);
    const float* grid = nullptr;
    const u64 n_kb = ceil_div(cols, B_);
    if (form == WeightType::FP8) {
      auto g = std::make_shared<const std::vector<float>>(pk_.scale_grid(name, rows, cols));
      grid = g->data();
      auto* keep = static_cast<std::vector<std::shared_ptr<const std::vector<float>>>*>(
          const_cast<void*>(P.keep.get()));
      keep->push_back(std::move(g));
    }
    for (u64 i = first; i < first + count; ++i) {
      P.row_data.push_back(base + i * cols * esize);
      if (grid) P.row_scales.push_back(grid + (i / B_) * n_kb);
    }
    P.rows += static_cast<std::int64_t>(count);
    P.name = P.name.empty() ? pk_.what(name) : P.name + " + " + name;
  }

  PackedMatrix stack(const std::vector<std::pair<std::string, u64>>& parts, u64 cols) {
    PackedMatrix P;
    for (const auto& [name, rows] : parts) {
      pk_.expect(name, {rows, cols});
      add(P, name, 0, rows);
    }
    return P;
  }

  static bool mappable(st::DType t) {
    return t == st::DType::F8_E4M3 || t == st::DType::BF16 || t == st::DType::F32;
  }

 private:
  WeightType form_of(st::DType t, const std::string& name) const {
    switch (t) {
      case st::DType::F8_E4M3: return WeightType::FP8;
      case st::DType::BF16: return WeightType::BF16;
      case st::DType::F32: return WeightType::F32;
      default:
        throw std::runtime_error(fmt::format("{}: stored as {}, which the fast path cannot use in "
                                             "place (F8_E4M3, BF16 or F32)", pk_.what(name),
                                             st::to_string(t)));
    }
  }
  Packer& pk_;
  const Checkpoint& ck_;
  u64 B_;
};

FfnWeightsF view_ffn(ViewBuilder& vb, const std::string& p, u64 d, u64 width) {
  FfnWeightsF F;
  F.I = static_cast<std::int64_t>(width);
  F.W_gate_up = vb.stack({{p + "gate_proj.weight", width}, {p + "up_proj.weight", width}}, d);
  F.W_down = vb.stack({{p + "down_proj.weight", d}}, width);
  return F;
}

// Layer l's attention as views, but W_UK_h^T, which is packed (transposed) from kv_b_proj.
MlaWeightsF view_mla(Packer& pk, ViewBuilder& vb, const Config& c, const std::string& p) {
  const u64 d = c.hidden_size, n_h = c.num_attention_heads, d_nope = c.qk_nope_head_dim,
            d_rope = c.qk_rope_head_dim, d_v = c.v_head_dim, r_kv = c.kv_lora_rank,
            r_q = c.q_lora_rank, B = pk.block();
  const std::string q_a = p + "self_attn.q_a_proj.weight", kv_a = p + "self_attn.kv_a_proj_with_mqa.weight",
                    kv_b = p + "self_attn.kv_b_proj.weight";
  const std::string q_name = c.has_q_lora() ? p + "self_attn.q_b_proj.weight" : p + "self_attn.q_proj.weight";
  const u64 q_in = c.has_q_lora() ? r_q : d, q_rows = n_h * (d_nope + d_rope);
  pk.expect(q_name, {q_rows, q_in});
  pk.expect(kv_a, {r_kv + d_rope, d});
  // [W_UQ ; W_QR]: every head's nope rows, then every head's rope rows (as regroup_q).
  auto regroup_q = [&](PackedMatrix& P) {
    for (u64 h = 0; h < n_h; ++h) vb.add(P, q_name, h * (d_nope + d_rope), d_nope);
    for (u64 h = 0; h < n_h; ++h) vb.add(P, q_name, h * (d_nope + d_rope) + d_nope, d_rope);
  };
  MlaWeightsF F;
  if (c.has_q_lora()) {
    F.W_x = vb.stack({{q_a, r_q}, {kv_a, r_kv + d_rope}}, d);
    regroup_q(F.W_q);
    F.w_q = pk.vector(p + "self_attn.q_a_layernorm.weight", r_q);
  } else {
    regroup_q(F.W_x);
    vb.add(F.W_x, kv_a, 0, r_kv + d_rope);
  }
  F.w_kv = pk.vector(p + "self_attn.kv_a_layernorm.weight", r_kv);
  const u64 kv_rows = n_h * (d_nope + d_v);
  pk.expect(kv_b, {kv_rows, r_kv});
  PackedMatrix probe;
  vb.add(probe, kv_b, 0, 1);
  const WeightType kv_form = probe.type;
  const WeightType uk_form =
      kv_form == WeightType::FP8 && (d_nope + d_v) % B != 0 ? WeightType::F32 : kv_form;
  const Rows KV = pk.read(kv_b, kv_rows, r_kv, 0, kv_rows, kv_form);
  for (u64 h = 0; h < n_h; ++h) {
    const auto head = static_cast<std::int64_t>(h * (d_nope + d_v));
    F.W_UK_T.push_back(pack_uk_transposed(pk, KV, head, static_cast<std::int64_t>(d_nope), uk_form,
                                          pk.what(kv_b)));
    PackedMatrix UV;
    vb.add(UV, kv_b, h * (d_nope + d_v) + d_nope, d_v);
    F.W_UV.push_back(std::move(UV));
  }
  F.W_O = vb.stack({{p + "self_attn.o_proj.weight", d}}, n_h * d_v);
  return F;
}

BlockWeightsF view_block(Packer& pk, ViewBuilder& vb, const Config& c, std::int64_t l) {
  const u64 d = c.hidden_size;
  const std::string p = fmt::format("model.layers.{}.", l);
  BlockWeightsF b;
  b.w_attn_norm = pk.vector(p + "input_layernorm.weight", d);
  b.w_ffn_norm = pk.vector(p + "post_attention_layernorm.weight", d);
  b.attn = view_mla(pk, vb, c, p);
  b.is_moe = c.is_moe_layer(l);
  if (!b.is_moe) {
    b.dense = view_ffn(vb, p + "mlp.", d, c.intermediate_size);
  } else {
    const u64 N_r = c.n_routed_experts, I_e = c.moe_intermediate_size;
    b.moe.W_g = vb.stack({{p + "mlp.gate.weight", N_r}}, d);
    if (c.has_gate_bias()) b.moe.b = pk.vector_double(p + "mlp.gate.e_score_correction_bias", N_r);
    if (c.n_shared_experts > 0)
      b.moe.shared = view_ffn(vb, p + "mlp.shared_experts.", d, c.n_shared_experts * I_e);
  }
  return b;
}

std::string head_name(const Config& c) {
  return c.tie_word_embeddings ? std::string("model.embed_tokens.weight") : std::string("lm_head.weight");
}

}  // namespace

bool can_map(const TensorSource& src, const Config& c, WeightType type) {
  const auto* ck = dynamic_cast<const Checkpoint*>(&src);
  if (!ck || type != stored_weight_type(c)) return false;
  const std::string layer_prefix = "model.layers.";
  for (const std::string& name : ck->names()) {
    const st::TensorInfo& t = ck->info(name);
    if (t.shape.size() != 2 || name.size() < 7 || name.compare(name.size() - 7, 7, ".weight") != 0)
      continue;  // vectors, scale grids
    if (name.rfind(layer_prefix, 0) == 0) {
      const std::int64_t l = std::atoll(name.c_str() + layer_prefix.size());
      if (l >= c.num_hidden_layers) continue;  // MTP layers: not on the fast path
    }
    if (!ViewBuilder::mappable(t.dtype)) return false;
  }
  return true;
}

struct SourceModel::Impl {
  Impl(const TensorSource& s, const Config& cfg, WeightType t, const PackOptions& o)
      : src(s), c(cfg), type(t), pk(s, cfg, t, o), mapped(can_map(s, cfg, t)) {}
  const TensorSource& src;
  Config c;
  WeightType type;
  mutable Packer pk;
  bool mapped;
  std::unique_ptr<ViewBuilder> vb;  // mapped only
  EmbeddingF E;                     // mapped: the rows in place
  PackedMatrix head;                // mapped: a view
  std::vector<float> w_final_norm;
  mutable SourceModelCounters counters;
};

namespace {
// Bytes of a layer's matrices, without its routed experts (progress counters).
std::uint64_t matrix_bytes(const FfnWeightsF& f) {
  return static_cast<std::uint64_t>(f.W_gate_up.bytes() + f.W_down.bytes());
}
std::uint64_t matrix_bytes(const BlockWeightsF& b) {
  std::int64_t n = b.attn.W_x.bytes() + b.attn.W_q.bytes() + b.attn.W_O.bytes();
  for (const PackedMatrix& P : b.attn.W_UK_T) n += P.bytes();
  for (const PackedMatrix& P : b.attn.W_UV) n += P.bytes();
  std::uint64_t total = static_cast<std::uint64_t>(n);
  if (!b.is_moe) return total + matrix_bytes(b.dense);
  total += static_cast<std::uint64_t>(b.moe.W_g.bytes());
  if (b.moe.shared) total += matrix_bytes(*b.moe.shared);
  return total;
}
}  // namespace

SourceModel::SourceModel(const TensorSource& src, const Config& c, WeightType type,
                         const PackOptions& options)
    : impl_(std::make_unique<Impl>(src, c, type, options)) {
  check_source(c, src, /*with_mtp=*/false);
  if (type == WeightType::FP8 && c.weight_block_size < 1)
    throw std::invalid_argument(fmt::format("config '{}': weight_block_size = {}, expected >= 1",
                                            c.name, c.weight_block_size));
  Impl& m = *impl_;
  const u64 d = c.hidden_size, V = c.vocab_size;
  const std::string embed = "model.embed_tokens.weight";
  m.pk.expect(embed, {V, d});
  m.pk.expect(head_name(c), {V, d});
  m.w_final_norm = m.pk.vector("model.norm.weight", d);
  m.E.V = static_cast<std::int64_t>(V);
  m.E.d = static_cast<std::int64_t>(d);
  if (m.mapped) {
    const auto& ck = *dynamic_cast<const Checkpoint*>(&src);
    m.vb = std::make_unique<ViewBuilder>(m.pk, ck, static_cast<u64>(c.weight_block_size));
    const st::DType et = ck.dtype(embed);
    if (et != st::DType::BF16 && et != st::DType::F32)
      throw std::runtime_error(fmt::format("{}: stored as {}, expected BF16 or F32",
                                           m.pk.what(embed), st::to_string(et)));
    m.E.type = et == st::DType::BF16 ? WeightType::BF16 : WeightType::F32;
    m.E.mapped = ck.mapped_data(embed);
    m.head = m.vb->stack({{head_name(c), V}}, d);
  } else {
    m.E.type = type == WeightType::F32 ? WeightType::F32 : WeightType::BF16;
  }
}

SourceModel::~SourceModel() = default;
const Config& SourceModel::config() const { return impl_->c; }
WeightType SourceModel::type() const { return impl_->type; }
bool SourceModel::mapped() const { return impl_->mapped; }
const SourceModelCounters& SourceModel::counters() const { return impl_->counters; }
const std::vector<float>& SourceModel::final_norm() const { return impl_->w_final_norm; }

void SourceModel::embed(std::int64_t v, float* out) const {
  const Impl& m = *impl_;
  if (m.mapped) return m.E.row(v, out);
  // One row from the source, in the embedding's storage (as pack_weights fills the table).
  const Rows R = m.pk.read("model.embed_tokens.weight", static_cast<u64>(m.E.V), static_cast<u64>(m.E.d),
                           static_cast<u64>(v), 1, m.E.type);
  for (std::int64_t i = 0; i < m.E.d; ++i)
    out[i] = m.E.type == WeightType::BF16
                 ? std::bit_cast<float>(static_cast<std::uint32_t>(R.bits[i]) << 16)
                 : static_cast<float>(R.values[i]);
}

BlockWeightsF SourceModel::layer(std::int64_t l) const {
  const Impl& m = *impl_;
  const Config& c = m.c;
  const u64 d = c.hidden_size, I_e = c.moe_intermediate_size;
  ++m.counters.layers_fetched;
  if (m.mapped) {
    BlockWeightsF b = view_block(m.pk, *m.vb, c, l);
    m.counters.mapped_bytes_used += matrix_bytes(b);
    if (b.is_moe)
      b.moe.fetch_expert = [&m, l, d, I_e](std::int64_t j) {
        FfnWeightsF f = view_ffn(*m.vb, fmt::format("model.layers.{}.mlp.experts.{}.", l, j), d, I_e);
        ++m.counters.experts_fetched;
        m.counters.mapped_bytes_used += matrix_bytes(f);
        return f;
      };
    return b;
  }
  BlockWeightsF b = pack_block(m.pk, c, l, /*all_experts=*/false);
  if (b.is_moe)
    b.moe.fetch_expert = [&m, l, d, I_e](std::int64_t j) {
      ++m.counters.experts_fetched;
      return pack_ffn(m.pk, fmt::format("model.layers.{}.mlp.experts.{}.", l, j), d, I_e);
    };
  return b;
}

void SourceModel::with_layer(std::int64_t l,
                             const std::function<void(const BlockWeightsF&)>& use) const {
  const BlockWeightsF b = layer(l);  // released when this returns
  use(b);
}

arma::fmat SourceModel::head(const arma::fmat& x, const Options& opt) const {
  const Impl& m = *impl_;
  if (m.mapped) {
    m.counters.mapped_bytes_used += static_cast<std::uint64_t>(m.head.bytes());
    return gemm(m.head, x, opt);
  }
  // A block of rows at a time: packed, applied, released. Rows are independent sums, so the
  // bits are those of the whole head's product.
  const u64 V = m.c.vocab_size, d = m.c.hidden_size, B = m.pk.block();
  const u64 chunk = std::max<u64>(B, (kChunkValues * 8) / std::max<u64>(d, 1) / B * B);
  arma::fmat logits(static_cast<arma::uword>(V), x.n_cols, arma::fill::none);  // every row block written below
  const std::string name = head_name(m.c);
  const WeightType form = m.pk.form(m.pk.fp8_class(name));
  for (u64 v0 = 0; v0 < V; v0 += chunk) {
    const u64 n = std::min(chunk, V - v0);
    PackedMatrix P = make_packed(static_cast<std::int64_t>(n), static_cast<std::int64_t>(d), form,
                                 static_cast<std::int64_t>(B));
    m.pk.copy(P, 0, name, V, d, v0, n);
    gemm(P, x.memptr(), static_cast<std::int64_t>(d), static_cast<std::int64_t>(x.n_cols),
         logits.memptr() + v0, static_cast<std::int64_t>(V), false, opt);
  }
  return logits;
}

ModelCache SourceModel::make_cache(std::int64_t reserve_tokens) const {
  return fast::make_cache(impl_->c, reserve_tokens);
}

arma::fmat SourceModel::prefill(const std::vector<std::int64_t>& tokens, ModelCache& cache,
                                const Options& opt, Tracer* tr) const {
  return fast::forward(*this, impl_->c, tokens, cache.length(), &cache, opt, tr);
}

arma::fvec SourceModel::decode(std::int64_t token, ModelCache& cache, const Options& opt,
                               Tracer* tr) const {
  return fast::decode(*this, impl_->c, token, cache, opt, tr);
}

arma::fmat SourceModel::forward(const std::vector<std::int64_t>& tokens, const Options& opt,
                                Tracer* tr) const {
  return fast::forward(*this, impl_->c, tokens, 0, nullptr, opt, tr);
}

arma::fmat SourceModel::forward_incremental(const std::vector<std::int64_t>& tokens,
                                            std::int64_t P, const Options& opt, Tracer* tr) const {
  return fast::forward_incremental(*this, impl_->c, tokens, P, opt, tr);
}

}  // namespace dsr1::fast
