#include "reference/tools/compare.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <stdexcept>

#include "reference/io/npy.hpp"
#include "reference/io/safetensors.hpp"
#include "reference/trace/trace.hpp"

namespace fs = std::filesystem;

namespace dsr1::compare {

// ---------------------------------------------------------------------------------------------
// Tolerances. rtol = atol = G u: u is the unit roundoff of the candidate's arithmetic, G a
// growth allowance for the rounding that accumulates through the stages before a tensor
// (docs/validating.md derives each G).

namespace {
struct PresetDef {
  const char* name;
  int log2_u;  // u = 2^log2_u
  int log2_G;  // G = 2^log2_G
};
constexpr PresetDef kPresets[] = {
    {"f64", -53, 13},  // 2^-40 = 9.1e-13: the same math reordered (naive vs absorbed, cached)
    {"f32", -24, 8},   // 2^-16 = 1.5e-5: float32 against the float64 reference
    {"f16", -11, 4},   // 2^-7  = 7.8e-3
    {"bf16", -8, 3},   // 2^-5  = 3.1e-2
    {"fp8", -4, 1},    // 2^-3  = 0.125: e4m3 weights (3 mantissa bits)
};
}  // namespace

Tolerance preset_tolerance(const std::string& name) {
  for (const auto& p : kPresets)
    if (name == p.name) {
      const double t = std::ldexp(1.0, p.log2_u + p.log2_G);
      return {t, t, p.name};
    }
  throw std::invalid_argument(fmt::format("unknown tolerance preset '{}' (known: {})", name,
                                          fmt::join(preset_names(), ", ")));
}

std::vector<std::string> preset_names() {
  std::vector<std::string> out;
  for (const auto& p : kPresets) out.push_back(p.name);
  return out;
}

Tolerance tolerance_for_dtype(const std::string& dtype) {
  if (dtype == "F32" || dtype == "<f4") return preset_tolerance("f32");
  if (dtype == "BF16") return preset_tolerance("bf16");
  if (dtype == "F16" || dtype == "<f2") return preset_tolerance("f16");
  if (dtype.rfind("F8", 0) == 0) return preset_tolerance("fp8");
  return preset_tolerance("f64");  // F64, <f8 and integers (token ids, exact in a double)
}

// ---------------------------------------------------------------------------------------------
// Tensor sets.

struct TensorSet::Backend {
  std::shared_ptr<safetensors::File> file;  // read by name when set
  std::vector<double> data;                 // otherwise the values themselves
};

struct SetBuilder {
  TensorSet s;
  void set_config(Config c) { s.config_ = std::move(c); }
  void set_manifest_order() { s.manifest_order_ = true; }
  void add(TensorInfo info, std::shared_ptr<const TensorSet::Backend> b) {
    if (s.index_.count(info.name))
      throw std::runtime_error(fmt::format("{}: tensor '{}' appears twice", s.description_, info.name));
    s.index_[info.name] = s.order_.size();
    s.backend_[info.name] = std::move(b);
    s.order_.push_back(std::move(info));
  }
  // Without a manifest: order by the forward pass where names follow the trace conventions,
  // keeping the given order among equals and for unknown names.
  void sort_by_computation() {
    std::vector<std::pair<std::vector<std::int64_t>, std::size_t>> keys;
    for (std::size_t i = 0; i < s.order_.size(); ++i) keys.push_back({computation_rank(s.order_[i].name), i});
    std::stable_sort(keys.begin(), keys.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<TensorInfo> sorted;
    for (const auto& k : keys) sorted.push_back(s.order_[k.second]);
    s.order_ = std::move(sorted);
    s.index_.clear();
    for (std::size_t i = 0; i < s.order_.size(); ++i) s.index_[s.order_[i].name] = i;
  }
};

namespace {

std::shared_ptr<const TensorSet::Backend> memory_backend(std::vector<double> data) {
  auto b = std::make_shared<TensorSet::Backend>();
  b->data = std::move(data);
  return b;
}

void add_safetensors(SetBuilder& sb, const std::string& path) {
  auto b = std::make_shared<TensorSet::Backend>();
  b->file = std::make_shared<safetensors::File>(path);
  for (const auto& t : b->file->tensors()) sb.add({t.name, t.shape, safetensors::to_string(t.dtype)}, b);
}

void add_npy(SetBuilder& sb, const std::string& name, npy::Array a) {
  sb.add({name, a.shape, npy::to_string(a.dtype)}, memory_backend(std::move(a.data)));
}

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot open file", path));
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A golden-set directory: manifest.json lists every tensor in computation order and the file
// that holds it (golden_set.hpp writes it).
void add_golden_set(SetBuilder& sb, const fs::path& dir) {
  const std::string mpath = (dir / "manifest.json").string();
  std::map<std::string, std::shared_ptr<TensorSet::Backend>> files;
  for (const ManifestEntry& t : parse_manifest(read_text(mpath), mpath)) {
    auto& b = files[t.file];
    if (!b) {
      b = std::make_shared<TensorSet::Backend>();
      b->file = std::make_shared<safetensors::File>((dir / t.file).string());
    }
    if (!b->file->has(t.name))
      throw std::runtime_error(fmt::format("{}: lists tensor '{}' but {} does not hold it", mpath, t.name,
                                           b->file->path()));
    const auto& info = b->file->info(t.name);
    if (t.shape && *t.shape != info.shape)
      throw std::runtime_error(fmt::format("{}: tensor '{}' has shape [{}] in the manifest but [{}] in {}", mpath,
                                           t.name, fmt::join(*t.shape, ", "), fmt::join(info.shape, ", "),
                                           b->file->path()));
    sb.add({t.name, info.shape, safetensors::to_string(info.dtype)}, b);
  }
  sb.set_manifest_order();
  if (fs::exists(dir / "config.json")) sb.set_config(load_config_json((dir / "config.json").string()));
}

}  // namespace

std::vector<ManifestEntry> parse_manifest(const std::string& text, const std::string& origin) {
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(fmt::format("{}: not valid JSON: {}", origin, e.what()));
  }
  if (!m.is_object() || !m.contains("tensors") || !m["tensors"].is_array())
    throw std::runtime_error(fmt::format("{}: expected an object with a \"tensors\" array", origin));
  std::vector<ManifestEntry> out;
  for (const auto& t : m["tensors"]) {
    if (!t.is_object() || !t.contains("name") || !t["name"].is_string() || !t.contains("file") ||
        !t["file"].is_string())
      throw std::runtime_error(fmt::format("{}: every tensor entry needs \"name\" and \"file\" strings", origin));
    ManifestEntry e;
    e.name = t["name"].get<std::string>();
    e.file = t["file"].get<std::string>();
    if (e.file.empty() || e.file.find("..") != std::string::npos || e.file[0] == '/')
      throw std::runtime_error(fmt::format("{}: tensor '{}': file '{}' must be inside the set", origin, e.name, e.file));
    if (t.contains("shape")) {
      // A list of non-negative integers; anything else would convert silently (-1 to 2^64 - 1).
      const auto& s = t["shape"];
      if (!s.is_array())
        throw std::runtime_error(fmt::format("{}: tensor '{}': shape {} is not a list of dimensions", origin,
                                             e.name, s.dump()));
      std::vector<std::uint64_t> shape;
      for (const auto& d : s) {
        if (!d.is_number_unsigned())
          throw std::runtime_error(fmt::format("{}: tensor '{}': shape {} holds {}, expected non-negative integers",
                                               origin, e.name, s.dump(), d.dump()));
        shape.push_back(d.get<std::uint64_t>());
      }
      e.shape = std::move(shape);
    }
    out.push_back(std::move(e));
  }
  return out;
}

TensorSet TensorSet::open(const std::string& path) {
  SetBuilder sb;
  sb.s.description_ = path;
  const fs::path p(path);
  if (!fs::exists(p)) throw std::runtime_error(fmt::format("{}: no such file or directory", path));
  if (fs::is_directory(p)) {
    if (fs::exists(p / "manifest.json")) {
      add_golden_set(sb, p);
      return sb.s;
    }
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(p))
      if (e.is_regular_file() && e.path().extension() == ".npy") files.push_back(e.path());
    if (files.empty())
      throw std::runtime_error(fmt::format(
          "{}: a directory must be a golden set (manifest.json) or hold .npy files named after trace names", path));
    std::sort(files.begin(), files.end());
    for (const auto& f : files) add_npy(sb, f.stem().string(), npy::read(f.string()));
  } else if (has_suffix(path, ".safetensors")) {
    add_safetensors(sb, path);
  } else if (has_suffix(path, ".npz")) {
    for (auto& [name, a] : npy::read_npz(path)) add_npy(sb, name, std::move(a));
  } else if (has_suffix(path, ".npy")) {
    add_npy(sb, p.stem().string(), npy::read(path));
  } else {
    throw std::runtime_error(fmt::format(
        "{}: unknown format (expected a golden-set directory, .safetensors, .npy or .npz)", path));
  }
  sb.sort_by_computation();
  return sb.s;
}

TensorSet TensorSet::from_entries(std::string description, std::vector<Entry> entries,
                                  std::optional<Config> config) {
  SetBuilder sb;
  sb.s.description_ = std::move(description);
  for (auto& e : entries) {
    std::uint64_t n = 1;
    for (auto d : e.shape) n *= d;
    if (n != e.data.size())
      throw std::invalid_argument(fmt::format("{}: tensor '{}' has shape [{}] but {} values",
                                              sb.s.description_, e.name, fmt::join(e.shape, ", "), e.data.size()));
    sb.add({e.name, e.shape, e.dtype}, memory_backend(std::move(e.data)));
  }
  sb.set_manifest_order();
  if (config) sb.set_config(std::move(*config));
  return sb.s;
}

bool TensorSet::has(const std::string& name) const { return index_.count(name) > 0; }

const TensorInfo& TensorSet::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw std::out_of_range(fmt::format("{}: no tensor named '{}'", description_, name));
  return order_[it->second];
}

std::vector<double> TensorSet::read(const std::string& name) const {
  info(name);  // throws naming the set if absent
  const Backend& b = *backend_.at(name);
  return b.file ? b.file->read(name) : b.data;
}

// ---------------------------------------------------------------------------------------------
// Trace names: where a tensor sits in the forward pass, and what its axes mean.

namespace {

// The stages of one decoder block, in the order block.cpp / model.cpp compute them.
const std::vector<std::string>& block_stages() {
  static const std::vector<std::string> s = {
      "attn_norm",       "attn.c_q",        "attn.c_q_hat",  "attn.q_nope",  "attn.q_rope_pre",
      "attn.q_rope",     "attn.c_kv",       "attn.c_kv_hat", "attn.k_rope_pre", "attn.k_rope",
      "attn.k_nope",     "attn.v",          "attn.q_tilde",  "attn.scores",  "attn.probs",
      "attn.z",          "attn.o",          "attn.u",        "h_attn",       "ffn_norm",
      "ffn.gate",        "ffn.up",          "ffn.act",       "ffn.out",      "moe.ell",
      "moe.s",           "moe.s_tilde",     "moe.group_scores", "moe.group_mask", "moe.experts",
      "moe.g",           "moe.routed",      "moe.shared",    "moe.out",      "h"};
  return s;
}

std::int64_t stage_index(const std::string& stage) {
  const auto& s = block_stages();
  auto it = std::find(s.begin(), s.end(), stage);
  return it == s.end() ? 1000 : it - s.begin();
}

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

bool parse_int(const std::string& s, std::int64_t& v) {
  if (s.empty() || s.size() > 18) return false;
  v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return false;
    v = v * 10 + (ch - '0');
  }
  return true;
}

// A trace name taken apart: "incremental.decode.7.layers.2.attn.scores" is the decode step at
// position 7, layer 2, stage "attn.scores".
struct ParsedName {
  int incremental = 0;      // under the golden set's "incremental." scope
  int phase = 0;            // 0 one pass, 1 prefill, 2 decode step, 3 assembled result
  std::int64_t pos0 = 0;    // absolute position of the first token of the call
  std::string layer;        // "3", "mtp" or ""
  std::int64_t block = 0;   // order among blocks
  std::string stage;        // "attn.scores", "logits", ...
  bool known = true;
};

ParsedName parse_name(std::string n) {
  ParsedName p;
  if (starts_with(n, "incremental.")) {
    p.incremental = 1;
    n = n.substr(12);
  }
  if (starts_with(n, "prefill.")) {
    p.phase = 1;
    n = n.substr(8);
  } else if (starts_with(n, "decode.")) {
    const std::size_t dot = n.find('.', 7);
    std::int64_t t = 0;
    if (dot != std::string::npos && parse_int(n.substr(7, dot - 7), t)) {
      p.phase = 2;
      p.pos0 = t;
      n = n.substr(dot + 1);
    }
  } else if (p.incremental) {
    p.phase = 3;
  }
  constexpr std::int64_t kTop = std::int64_t{1} << 32;
  if (n == "embed.h") {
    p.block = -1;
    p.stage = n;
  } else if (starts_with(n, "layers.")) {
    const std::size_t dot = n.find('.', 7);
    std::int64_t l = 0;
    if (dot == std::string::npos || !parse_int(n.substr(7, dot - 7), l)) {
      p.known = false;
      p.stage = n;
      return p;
    }
    p.layer = std::to_string(l);
    p.block = l;
    p.stage = n.substr(dot + 1);
    p.known = stage_index(p.stage) < 1000;
  } else if (n == "final_norm" || n == "logits") {
    p.block = kTop + (n == "logits");
    p.stage = n;
  } else if (starts_with(n, "mtp.")) {
    p.layer = "mtp";
    p.block = 2 * kTop;
    p.stage = n.substr(4);
    if (starts_with(p.stage, "block.")) p.stage = p.stage.substr(6);
  } else {
    p.known = false;
    p.stage = n;
  }
  return p;
}

}  // namespace

std::vector<std::int64_t> computation_rank(const std::string& name) {
  const ParsedName p = parse_name(name);
  if (!p.known) return {std::numeric_limits<std::int64_t>::max()};
  std::int64_t stage = stage_index(p.stage);
  if (p.layer == "mtp") {
    // mtp.emb_norm, h_norm, h_proj, the block's stages, head_norm, logits.
    const std::string full = name.substr(name.find("mtp.") + 4);
    if (full == "emb_norm") stage = -3;
    else if (full == "h_norm") stage = -2;
    else if (full == "h_proj") stage = -1;
    else if (full == "head_norm") stage = 2000;
    else if (full == "logits") stage = 2001;
  }
  return {p.incremental, p.phase, p.pos0, p.block, stage};
}

std::string Location::text() const {
  std::vector<std::string> parts;
  if (!layer.empty()) parts.push_back(layer == "mtp" ? "MTP block" : "layer " + layer);
  if (head >= 0) parts.push_back(fmt::format("head {}", head));
  if (position >= 0) parts.push_back(fmt::format("{} {}", element_kind == "key" ? "query position" : "position", position));
  if (key_position >= 0) parts.push_back(fmt::format("key position {}", key_position));
  if (element >= 0) parts.push_back(fmt::format("{} {}", element_kind, element));
  std::string idx = fmt::format("index [{}]", fmt::join(index, ", "));
  return parts.empty() ? idx : fmt::format("{} ({})", fmt::join(parts, ", "), idx);
}

Location locate(const std::string& name, const std::vector<std::uint64_t>& shape,
                std::uint64_t flat, const Config* c) {
  Location L;
  L.index.assign(shape.size(), 0);
  for (std::size_t k = shape.size(); k-- > 0;) {
    if (shape[k] == 0) break;
    L.index[k] = flat % shape[k];
    flat /= shape[k];
  }
  const ParsedName p = parse_name(name);
  L.layer = p.layer;
  const std::string& st = p.stage;
  const auto i = [&](std::size_t k) { return static_cast<std::int64_t>(L.index[k]); };
  if (shape.size() == 3) {
    // [n_h, T, T_k] for scores/probs; [n_h, T, r_kv] for q_tilde and z.
    L.head = i(0);
    L.position = p.pos0 + i(1);
    if (st == "attn.scores" || st == "attn.probs") {
      L.key_position = i(2);
      L.element_kind = "key";
    } else {
      L.element = i(2);
    }
    return L;
  }
  if (shape.size() == 1) {
    L.element = i(0);
    return L;
  }
  if (shape.size() != 2) return L;
  // [rows, cols]: one token per row. Per-key tensors run over every cached key from 0.
  const bool per_key = st == "attn.k_nope" || st == "attn.v";
  if (per_key) L.key_position = i(0);
  else L.position = p.pos0 + i(0);
  std::int64_t per_head = 0;
  if (c) {
    if (st == "attn.q_nope" || st == "attn.k_nope") per_head = c->qk_nope_head_dim;
    else if (st == "attn.q_rope_pre" || st == "attn.q_rope") per_head = c->qk_rope_head_dim;
    else if (st == "attn.v" || st == "attn.o") per_head = c->v_head_dim;
  }
  if (per_head > 0 && static_cast<std::uint64_t>(per_head * c->num_attention_heads) == shape[1]) {
    L.head = i(1) / per_head;
    L.element = i(1) % per_head;
  } else {
    L.element = i(1);
  }
  if (st == "moe.experts" || st == "moe.g") L.element_kind = "slot";
  else if (st == "moe.ell" || st == "moe.s" || st == "moe.s_tilde") L.element_kind = "expert";
  else if (st == "moe.group_scores" || st == "moe.group_mask") L.element_kind = "group";
  else if (st == "logits") L.element_kind = "token id";
  return L;
}

// ---------------------------------------------------------------------------------------------
// Comparison.

std::uint64_t Report::compared() const {
  std::uint64_t n = 0;
  for (const auto& r : results)
    if (r.status == Status::Pass || r.status == Status::Fail || r.status == Status::ShapeMismatch) ++n;
  return n;
}

namespace {

std::vector<std::uint64_t> squeeze(const std::vector<std::uint64_t>& s) {
  std::vector<std::uint64_t> out;
  for (auto d : s)
    if (d != 1) out.push_back(d);
  return out;
}

// Masked attention scores: the reference writes -inf; engines often write a large finite
// negative number instead. Both mean "this key is invisible", and the probabilities (the next
// stage, compared separately) show whether the candidate really masked it.
constexpr double kMaskedLimit = -1e9;

// How far an element is outside its tolerance: |c - r| / (atol + rtol |r|); > 1 fails.
double excess_ratio(double r, double c, const Tolerance& tol) {
  if (std::isnan(r) || std::isnan(c)) return (std::isnan(r) && std::isnan(c)) ? 0.0 : INFINITY;
  if (std::isinf(r)) {
    if (c == r) return 0.0;
    return (r < 0 && c <= kMaskedLimit) ? 0.0 : INFINITY;
  }
  if (std::isinf(c)) return INFINITY;
  const double diff = std::fabs(c - r), allowed = tol.atol + tol.rtol * std::fabs(r);
  if (diff == 0) return 0.0;
  return allowed > 0 ? diff / allowed : INFINITY;
}

// Element-wise statistics over the rows (tokens) not excluded.
void compare_values(const std::vector<double>& r, const std::vector<double>& c, TensorResult& res,
                    const std::set<std::uint64_t>& excluded_rows, std::uint64_t row_size,
                    const std::string& name, const Config* cfg) {
  double sum_sq_err = 0, sum_sq_ref = 0, sum_rc = 0, sum_sq_cand = 0, worst_ratio = -1;
  std::uint64_t worst = 0;
  for (std::uint64_t k = 0; k < r.size(); ++k) {
    if (!excluded_rows.empty() && row_size > 0 && excluded_rows.count(k / row_size)) continue;
    ++res.compared;
    const double ratio = excess_ratio(r[k], c[k], res.tol);
    if (ratio > 1.0) ++res.failed;
    if (ratio > worst_ratio) {
      worst_ratio = ratio;
      worst = k;
    }
    if (std::isfinite(r[k]) && std::isfinite(c[k])) {
      const double d = c[k] - r[k];
      res.max_abs = std::max(res.max_abs, std::fabs(d));
      if (r[k] != 0) res.max_rel = std::max(res.max_rel, std::fabs(d) / std::fabs(r[k]));
      sum_sq_err += d * d;
      sum_sq_ref += r[k] * r[k];
      sum_sq_cand += c[k] * c[k];
      sum_rc += r[k] * c[k];
    } else if (!(std::isinf(r[k]) && excess_ratio(r[k], c[k], res.tol) == 0)) {
      res.max_abs = INFINITY;
    }
  }
  res.nmse = sum_sq_ref > 0 ? sum_sq_err / sum_sq_ref : (sum_sq_err > 0 ? INFINITY : 0.0);
  const double denom = std::sqrt(sum_sq_ref) * std::sqrt(sum_sq_cand);
  // Clamped at 0: for identical tensors rounding in the sums can leave -2e-16.
  res.cos_diff = denom > 0 ? std::max(0.0, 1.0 - sum_rc / denom) : (sum_sq_ref == sum_sq_cand ? 0.0 : 1.0);
  if (worst_ratio > 0) {  // identical tensors have no worst element
    res.has_worst = true;
    res.worst = locate(name, res.ref_shape, worst, cfg);
    res.worst_ref = r[worst];
    res.worst_cand = c[worst];
    res.worst_allowed = res.tol.atol + res.tol.rtol * std::fabs(r[worst]);
  }
  res.status = res.failed > 0 ? Status::Fail : Status::Pass;
}

std::vector<std::int64_t> row_ids(const std::vector<double>& v, std::uint64_t t, std::uint64_t K) {
  std::vector<std::int64_t> out;
  for (std::uint64_t k = 0; k < K; ++k) out.push_back(static_cast<std::int64_t>(std::llround(v[t * K + k])));
  return out;
}

struct Margin {
  double margin = INFINITY;  // how much the selection would have to move to change the set
  double scale = 0;          // |score| of the last chosen expert (or group), for the tolerance
  std::string source;        // which reference tensors it came from
};

// The reference's selection margin for token t: the gap between the K-th chosen and the best
// unchosen eligible selection score (s_tilde for V3, s for V2) and, with groups, between the
// weakest kept and the strongest dropped group score. A set flip within twice the tolerance of
// that gap is a near tie either side may legitimately break differently.
std::optional<Margin> selection_margin(const TensorSet& ref, const std::string& prefix, std::uint64_t t,
                                       const std::vector<std::int64_t>& chosen) {
  std::string sel_name = prefix + "s_tilde";
  if (!ref.has(sel_name)) sel_name = prefix + "s";
  if (!ref.has(sel_name)) return std::nullopt;
  const auto& si = ref.info(sel_name);
  if (si.shape.size() != 2 || t >= si.shape[0]) return std::nullopt;
  const std::uint64_t N = si.shape[1];
  const std::vector<double> sel = ref.read(sel_name);
  std::vector<bool> eligible(N, true), is_chosen(N, false);
  for (auto e : chosen)
    if (e >= 0 && static_cast<std::uint64_t>(e) < N) is_chosen[static_cast<std::size_t>(e)] = true;
  Margin m;
  m.source = sel_name;
  const std::string mask_name = prefix + "group_mask", gs_name = prefix + "group_scores";
  if (ref.has(mask_name) && ref.has(gs_name) && ref.info(mask_name).shape.size() == 2 &&
      ref.info(mask_name).shape == ref.info(gs_name).shape && ref.info(mask_name).shape[0] > t) {
    const std::uint64_t G = ref.info(mask_name).shape[1];
    if (G > 0 && N % G == 0) {
      const std::vector<double> mask = ref.read(mask_name), gs = ref.read(gs_name);
      double weakest_kept = INFINITY, strongest_dropped = -INFINITY;
      for (std::uint64_t g = 0; g < G; ++g) {
        const bool kept = mask[t * G + g] > 0.5;
        for (std::uint64_t e = g * (N / G); e < (g + 1) * (N / G); ++e) eligible[e] = kept;
        if (kept) weakest_kept = std::min(weakest_kept, gs[t * G + g]);
        else strongest_dropped = std::max(strongest_dropped, gs[t * G + g]);
      }
      if (std::isfinite(strongest_dropped)) {
        m.margin = weakest_kept - strongest_dropped;
        m.scale = std::fabs(weakest_kept);
      }
      m.source += ", " + gs_name;
    }
  }
  double kth = INFINITY, best_unchosen = -INFINITY;
  for (std::uint64_t e = 0; e < N; ++e) {
    if (is_chosen[e]) kth = std::min(kth, sel[t * N + e]);
    else if (eligible[e]) best_unchosen = std::max(best_unchosen, sel[t * N + e]);
  }
  if (std::isfinite(kth) && std::isfinite(best_unchosen) && kth - best_unchosen < m.margin) {
    m.margin = kth - best_unchosen;
    m.scale = std::fabs(kth);
  }
  return m;
}

struct RouterFlips {
  std::map<std::string, std::set<std::uint64_t>> tokens;  // moe prefix -> tokens that flipped
  std::string first;                                      // where the first legitimate flip was
};

// moe.experts: compare the chosen sets per token, not the slots.
void compare_router(const TensorSet& ref, const std::vector<double>& r, const std::vector<double>& c,
                    TensorResult& res, const std::string& prefix, RouterFlips& flips, const Config* cfg) {
  const std::uint64_t T = res.ref_shape[0], K = res.ref_shape[1];
  std::optional<std::uint64_t> first_bug;
  std::uint64_t bug_slot = 0, shown = 0;
  for (std::uint64_t t = 0; t < T; ++t) {
    ++res.compared;
    std::vector<std::int64_t> R = row_ids(r, t, K), C = row_ids(c, t, K);
    std::vector<std::int64_t> Rs = R, Cs = C;
    std::sort(Rs.begin(), Rs.end());
    std::sort(Cs.begin(), Cs.end());
    if (Rs == Cs) continue;
    const auto m = selection_margin(ref, prefix, t, R);
    const Location loc = locate(res.name, res.ref_shape, t * K, cfg);
    const std::string where = loc.position >= 0 ? fmt::format("position {}", loc.position) : fmt::format("token {}", t);
    if (m && m.has_value() && m->margin <= 2.0 * (res.tol.atol + res.tol.rtol * m->scale)) {
      flips.tokens[prefix].insert(t);
      if (flips.first.empty()) flips.first = fmt::format("{} {}", res.name, where);
      res.notes.push_back(fmt::format(
          "{}: experts {{{}}} vs candidate {{{}}}: near-tie flip, selection margin {:.3e} <= 2 x tolerance "
          "{:.3e} ({}); moe.g/moe.routed/moe.out/h of this token are not compared in this layer",
          where, fmt::join(R, ","), fmt::join(C, ","), m->margin, res.tol.atol + res.tol.rtol * m->scale, m->source));
      continue;
    }
    ++res.failed;
    if (!first_bug) {
      first_bug = t;
      for (std::uint64_t k = 0; k < K; ++k)
        if (std::find(C.begin(), C.end(), R[k]) == C.end()) {
          bug_slot = k;
          break;
        }
    }
    if (shown++ < 8)
      res.notes.push_back(
          m ? fmt::format("{}: experts {{{}}} vs candidate {{{}}}: selection margin {:.3e} is far above the "
                          "tolerance: a semantic difference in routing, not a near tie ({})",
                          where, fmt::join(R, ","), fmt::join(C, ","), m->margin, m->source)
            : fmt::format("{}: experts {{{}}} vs candidate {{{}}} (no reference scores to measure the margin)",
                          where, fmt::join(R, ","), fmt::join(C, ",")));
  }
  res.status = first_bug ? Status::Fail : Status::Pass;
  res.max_abs = res.failed ? 1.0 : 0.0;  // fraction-free summary: the table shows tokens instead
  res.nmse = T ? static_cast<double>(res.failed) / static_cast<double>(T) : 0.0;
  if (first_bug) {
    res.has_worst = true;
    res.worst = locate(res.name, res.ref_shape, *first_bug * K + bug_slot, cfg);
    res.worst_ref = r[*first_bug * K + bug_slot];
    res.worst_cand = c[*first_bug * K + bug_slot];
  }
}

// moe.g is a weight per chosen expert: line the candidate's slots up with the reference's
// expert order, so two implementations that list the same experts differently still agree.
void align_gates(const TensorSet& ref, const TensorSet& cand, const std::string& prefix,
                 std::vector<double>& c, const std::vector<std::uint64_t>& shape, TensorResult& res) {
  const std::string en = prefix + "experts";
  if (!ref.has(en) || !cand.has(en) || shape.size() != 2) return;
  if (squeeze(ref.info(en).shape) != squeeze(shape) || squeeze(cand.info(en).shape) != squeeze(shape)) return;
  const std::vector<double> re = ref.read(en), ce = cand.read(en);
  const std::uint64_t T = shape[0], K = shape[1];
  bool reordered = false;
  for (std::uint64_t t = 0; t < T; ++t) {
    const auto R = row_ids(re, t, K), C = row_ids(ce, t, K);
    std::vector<double> row(K);
    bool ok = true;
    for (std::uint64_t k = 0; k < K && ok; ++k) {
      auto it = std::find(C.begin(), C.end(), R[k]);
      if (it == C.end()) ok = false;
      else row[k] = c[t * K + static_cast<std::uint64_t>(it - C.begin())];
    }
    if (!ok) continue;  // different sets: compared as is (the experts stage already reported it)
    for (std::uint64_t k = 0; k < K; ++k) {
      if (c[t * K + k] != row[k]) reordered = true;
      c[t * K + k] = row[k];
    }
  }
  if (reordered) res.notes.push_back("candidate slots reordered to the reference's expert order before comparing");
}

std::string moe_prefix_of(const std::string& name, const std::string& stage) {
  return name.substr(0, name.size() - stage.size());
}

}  // namespace

Report compare(const TensorSet& ref, const TensorSet& cand, const Options& opt) {
  Report rep;
  rep.reference = ref.description();
  rep.candidate = cand.description();
  const Config* cfg = ref.config() ? &*ref.config() : (cand.config() ? &*cand.config() : nullptr);
  RouterFlips flips;
  auto selected = [&](const std::string& name) {
    if (opt.names.empty()) return true;
    for (const auto& g : opt.names)
      if (glob_match(g, name)) return true;
    return false;
  };
  for (const auto& t : cand.tensors())
    if (!ref.has(t.name) && selected(t.name)) rep.only_in_candidate.push_back(t.name);

  for (const auto& ri : ref.tensors()) {
    if (!selected(ri.name)) continue;
    TensorResult res;
    res.name = ri.name;
    res.ref_shape = ri.shape;
    res.ref_dtype = ri.dtype;
    if (!cand.has(ri.name)) {
      res.status = Status::Missing;
      ++rep.missing;
      rep.results.push_back(std::move(res));
      continue;
    }
    const TensorInfo& ci = cand.info(ri.name);
    res.cand_shape = ci.shape;
    res.cand_dtype = ci.dtype;
    res.tol = opt.tolerance ? *opt.tolerance : tolerance_for_dtype(ci.dtype);
    if (squeeze(ri.shape) != squeeze(ci.shape)) {
      res.status = Status::ShapeMismatch;
      std::vector<std::uint64_t> rev(ri.shape.rbegin(), ri.shape.rend());
      res.notes.push_back(fmt::format("shape [{}] in the reference, [{}] in the candidate{}", fmt::join(ri.shape, ", "),
                                      fmt::join(ci.shape, ", "),
                                      ci.shape == rev ? ": the candidate looks transposed (files store one token per "
                                                        "row, [T, d], see docs/trace-names.md)"
                                                      : ""));
    } else {
      const std::vector<double> r = ref.read(ri.name);
      std::vector<double> c = cand.read(ri.name);
      const ParsedName pn = parse_name(ri.name);
      const std::string& st = pn.stage;
      const bool two_d = ri.shape.size() == 2;
      if (st == "moe.experts" && two_d) {
        compare_router(ref, r, c, res, moe_prefix_of(ri.name, "experts"), flips, cfg);
      } else {
        std::set<std::uint64_t> excluded;
        if (two_d && (st == "moe.g" || st == "moe.routed" || st == "moe.out" || st == "h")) {
          // The tokens whose routing legitimately flipped in this layer.
          const std::string prefix = st == "h" ? ri.name.substr(0, ri.name.size() - 1) + "moe."
                                               : moe_prefix_of(ri.name, st.substr(4));
          auto it = flips.tokens.find(prefix);
          if (it != flips.tokens.end()) {
            excluded = it->second;
            res.notes.push_back(fmt::format("{} token(s) excluded after a near-tie routing flip in {}experts",
                                            excluded.size(), prefix));
          }
          if (st == "moe.g") align_gates(ref, cand, prefix, c, ri.shape, res);
        }
        compare_values(r, c, res, excluded, two_d ? ri.shape[1] : 0, ri.name, cfg);
      }
    }
    if (res.status == Status::Fail || res.status == Status::ShapeMismatch) {
      if (!flips.first.empty())
        res.notes.push_back(fmt::format("follows a legitimate near-tie routing flip at {}: downstream values of that "
                                        "token, and of later tokens through attention, may differ for that reason",
                                        flips.first));
      if (!rep.first_divergence) {
        res.first_divergence = true;
        rep.first_divergence = rep.results.size();
      }
    }
    const bool stop = res.first_divergence && !opt.all;
    rep.results.push_back(std::move(res));
    if (stop) {
      rep.stopped_early = true;
      break;
    }
  }
  return rep;
}

// ---------------------------------------------------------------------------------------------
// Output.

namespace {

const char* status_word(Status s) {
  switch (s) {
    case Status::Pass: return "PASS";
    case Status::Fail: return "FAIL";
    case Status::Missing: return "missing";
    case Status::ShapeMismatch: return "SHAPE";
  }
  return "?";
}

std::string num(double x) {
  if (x == 0) return "0";
  return fmt::format("{:.2e}", x);
}

std::string describe_failure(const TensorResult& r) {
  if (r.status == Status::ShapeMismatch) return fmt::format("{}: {}", r.name, r.notes.empty() ? "shape mismatch" : r.notes[0]);
  if (r.name.size() >= 11 && r.name.compare(r.name.size() - 11, 11, "moe.experts") == 0)
    return fmt::format("{} at {}: reference expert {}, candidate {} ({} of {} tokens route to a different set)", r.name,
                       r.worst.text(), r.worst_ref, r.worst_cand, r.failed, r.compared);
  return fmt::format("{} at {}: reference {:.17g}, candidate {:.17g} (|diff| {:.3e} > allowed {:.3e}); "
                     "{} of {} elements outside tolerance",
                     r.name, r.worst.text(), r.worst_ref, r.worst_cand, std::fabs(r.worst_cand - r.worst_ref),
                     r.worst_allowed, r.failed, r.compared);
}

}  // namespace

std::string format_text(const Report& rep) {
  std::string out = fmt::format("reference: {}\ncandidate: {}\n", rep.reference, rep.candidate);
  std::size_t w = 24;
  for (const auto& r : rep.results) w = std::max(w, r.name.size());
  out += fmt::format("{:>4}  {:<{}}  {:<16} {:<6} {:>9} {:>9} {:>9} {:>9} {:>9}  {:<6} {}\n", "#", "tensor", w, "shape",
                     "dtype", "max_abs", "max_rel", "nmse", "1-cos", "rtol", "result", "worst element");
  std::size_t k = 0;
  for (const auto& r : rep.results) {
    ++k;
    const std::string shape = fmt::format("[{}]", fmt::join(r.ref_shape, ","));
    if (r.status == Status::Missing) {
      out += fmt::format("{:>4}  {:<{}}  {:<16} {:<6} {:>9} {:>9} {:>9} {:>9} {:>9}  {:<6}\n", k, r.name, w, shape,
                         r.ref_dtype, "-", "-", "-", "-", "-", "missing");
      continue;
    }
    const bool router = r.name.size() >= 11 && r.name.compare(r.name.size() - 11, 11, "moe.experts") == 0;
    std::string worst = r.has_worst ? r.worst.text() : "";
    if (router) worst = fmt::format("{} of {} tokens differ as sets{}", r.failed, r.compared,
                                    r.has_worst ? "; first at " + r.worst.text() : "");
    out += fmt::format("{:>4}  {:<{}}  {:<16} {:<6} {:>9} {:>9} {:>9} {:>9} {:>9}  {:<6} {}{}\n", k, r.name, w, shape,
                       r.cand_dtype, router ? "sets" : num(r.max_abs), router ? "-" : num(r.max_rel),
                       router ? "-" : num(r.nmse), router ? "-" : num(r.cos_diff), num(r.tol.rtol),
                       status_word(r.status), worst, r.first_divergence ? "   <<< FIRST DIVERGENCE" : "");
    for (const auto& n : r.notes) out += fmt::format("{:>6}{}\n", "", n);
  }
  if (rep.first_divergence) {
    out += fmt::format("\nFIRST DIVERGENCE: {}\n", describe_failure(rep.results[*rep.first_divergence]));
    if (rep.stopped_early) out += "stopped at the first divergent stage (--all continues through every tensor)\n";
  }
  std::uint64_t pass = 0, fail = 0;
  for (const auto& r : rep.results) {
    if (r.status == Status::Pass) ++pass;
    if (r.status == Status::Fail || r.status == Status::ShapeMismatch) ++fail;
  }
  out += fmt::format("\n{} tensors compared: {} passed, {} failed; {} in the reference but missing from the candidate; "
                     "{} only in the candidate (not compared)\n",
                     rep.compared(), pass, fail, rep.missing, rep.only_in_candidate.size());
  if (rep.compared() == 0) out += "no tensor names in common: nothing was compared (see docs/trace-names.md)\n";
  out += rep.passed() ? "RESULT: PASS\n" : "RESULT: FAIL\n";
  return out;
}

nlohmann::json to_json(const Report& rep) {
  nlohmann::json j;
  j["reference"] = rep.reference;
  j["candidate"] = rep.candidate;
  j["passed"] = rep.passed();
  j["compared"] = rep.compared();
  j["missing"] = rep.missing;
  j["only_in_candidate"] = rep.only_in_candidate;
  j["stopped_early"] = rep.stopped_early;
  auto finite_or_null = [](double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); };
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& r : rep.results) {
    nlohmann::json t;
    t["name"] = r.name;
    t["status"] = status_word(r.status);
    t["reference_shape"] = r.ref_shape;
    t["candidate_shape"] = r.cand_shape;
    t["reference_dtype"] = r.ref_dtype;
    t["candidate_dtype"] = r.cand_dtype;
    if (r.status != Status::Missing) {
      t["rtol"] = r.tol.rtol;
      t["atol"] = r.tol.atol;
      t["tolerance_preset"] = r.tol.name;
      t["compared"] = r.compared;
      t["failed"] = r.failed;
      t["max_abs"] = finite_or_null(r.max_abs);
      t["max_rel"] = finite_or_null(r.max_rel);
      t["nmse"] = finite_or_null(r.nmse);
      t["cos_diff"] = finite_or_null(r.cos_diff);
    }
    if (r.has_worst) {
      nlohmann::json w;
      w["index"] = r.worst.index;
      w["text"] = r.worst.text();
      if (!r.worst.layer.empty()) w["layer"] = r.worst.layer;
      if (r.worst.position >= 0) w["position"] = r.worst.position;
      if (r.worst.key_position >= 0) w["key_position"] = r.worst.key_position;
      if (r.worst.head >= 0) w["head"] = r.worst.head;
      if (r.worst.element >= 0) w[r.worst.element_kind] = r.worst.element;
      w["reference"] = finite_or_null(r.worst_ref);
      w["candidate"] = finite_or_null(r.worst_cand);
      t["worst"] = w;
    }
    t["notes"] = r.notes;
    t["first_divergence"] = r.first_divergence;
    arr.push_back(t);
  }
  j["tensors"] = arr;
  j["first_divergence"] = rep.first_divergence ? nlohmann::json(rep.results[*rep.first_divergence].name)
                                               : nlohmann::json(nullptr);
  return j;
}

}  // namespace dsr1::compare
