// The comparator: walks two sets of named tensors in computation order and names the first
// stage, position and element where a candidate implementation leaves the reference.
// Leaves out: producing the tensors (golden_set.hpp writes them; model.hpp computes them).
//
// A tensor set is a golden-set directory (manifest.json gives the order), a .safetensors file,
// a .npy file, a .npz archive, or a directory of .npy files (file stem = trace name). Every
// element is compared with the numpy.allclose rule |c - r| <= atol + rtol |r|, and per tensor the
// comparator reports the max abs error, max rel error, NMSE = sum (c-r)^2 / sum r^2, the cosine
// difference 1 - cos(c, r), and the worst element decoded with the trace-name conventions
// (docs/trace-names.md) into layer, position, head and element. Router choices (moe.experts)
// are compared as sets per token, and a difference is classified with the reference's
// selection margin: a near tie that the candidate's own rounding can flip, or a semantic bug.
// Tolerance presets and their derivation: docs/validating.md ("Tolerance policy").
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "reference/deepseek/config.hpp"

namespace dsr1::compare {

// An element passes iff |c - r| <= atol + rtol |r|.
struct Tolerance {
  double rtol = 0, atol = 0;
  std::string name;  // the preset it came from, or "custom"
};

// Presets: "f64", "f32", "bf16", "fp8". Each is rtol = atol = G u, with u the unit roundoff of
// the candidate's arithmetic and G a growth allowance (docs/validating.md).
Tolerance preset_tolerance(const std::string& name);
std::vector<std::string> preset_names();
// The preset matching a stored dtype ("F64", "F32", "<f4", "BF16", "F16", "F8_E4M3", ...).
Tolerance tolerance_for_dtype(const std::string& dtype);

struct TensorInfo {
  std::string name;
  std::vector<std::uint64_t> shape;  // row-major, as on disk
  std::string dtype;                 // as stored: "F64", "F32", "BF16", "<f8", ...
};

// A named, ordered collection of tensors, read lazily where the format allows.
class TensorSet {
 public:
  // Opens any of the formats listed above; throws naming the path and what is wrong.
  static TensorSet open(const std::string& path);
  // An in-memory set (tests, the conformance suite): entries in computation order.
  struct Entry {
    std::string name;
    std::vector<std::uint64_t> shape;
    std::vector<double> data;
    std::string dtype = "F64";
  };
  static TensorSet from_entries(std::string description, std::vector<Entry> entries,
                                std::optional<Config> config = std::nullopt);

  const std::string& description() const { return description_; }
  const std::vector<TensorInfo>& tensors() const { return order_; }  // computation order
  bool has(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  std::vector<double> read(const std::string& name) const;
  // The model configuration, when the set carries one (golden sets).
  const std::optional<Config>& config() const { return config_; }
  bool ordered_by_manifest() const { return manifest_order_; }

  struct Backend;  // implementation detail: where each tensor's bytes live

 private:
  std::string description_;
  std::vector<TensorInfo> order_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::shared_ptr<const Backend>> backend_;
  std::optional<Config> config_;
  bool manifest_order_ = false;
  friend struct SetBuilder;
};

// One tensor listed by a golden set's manifest.json: its trace name, the file of the set that
// holds it, and the shape the manifest claims (checked against the file when it is opened).
struct ManifestEntry {
  std::string name;
  std::string file;                                  // relative to the set, never outside it
  std::optional<std::vector<std::uint64_t>> shape;   // absent if the manifest gives none
};
// Parses and validates the text of a manifest.json (golden_set.hpp writes it); `origin` names it
// in messages. Touches no file, so the fuzzer (tests/fuzz/fuzz_golden_manifest.cpp) drives it.
std::vector<ManifestEntry> parse_manifest(const std::string& text, const std::string& origin);

// A rank in the forward pass for a trace name (docs/trace-names.md), used to order sets that
// carry no manifest. Unknown names rank after known ones.
std::vector<std::int64_t> computation_rank(const std::string& name);

// Where an element sits, decoded from the trace name and the shape.
struct Location {
  std::vector<std::uint64_t> index;  // multi-index into the disk shape
  std::string layer;                 // "3", "mtp", or "" (model level)
  std::int64_t position = -1;        // absolute token position (query position for scores)
  std::int64_t key_position = -1;    // for attention scores/probs and per-key tensors
  std::int64_t head = -1;
  std::int64_t element = -1;         // within the head (or the row when there are no heads)
  std::string element_kind = "element";  // "element", "expert", "slot", "group", "token id"
  std::string text() const;              // "layer 3, head 2, query position 5, key position 3"
};
Location locate(const std::string& name, const std::vector<std::uint64_t>& shape,
                std::uint64_t flat_index, const Config* config);

enum class Status { Pass, Fail, Missing, ShapeMismatch };

struct TensorResult {
  std::string name;
  Status status = Status::Pass;
  std::vector<std::uint64_t> ref_shape, cand_shape;
  std::string ref_dtype, cand_dtype;
  Tolerance tol;
  std::uint64_t compared = 0;  // elements compared
  std::uint64_t failed = 0;    // elements outside tolerance
  double max_abs = 0, max_rel = 0, nmse = 0, cos_diff = 0;
  bool has_worst = false;
  Location worst;
  double worst_ref = 0, worst_cand = 0, worst_allowed = 0;
  std::vector<std::string> notes;  // router margins, excluded tokens, shape hints
  bool first_divergence = false;
};

struct Options {
  std::optional<Tolerance> tolerance;  // fixed tolerance; otherwise chosen per candidate dtype
  std::vector<std::string> names;      // glob filters on names; empty = all
  bool all = false;                    // continue past the first divergence
};

struct Report {
  std::string reference, candidate;
  std::vector<TensorResult> results;  // in the reference's computation order
  std::optional<std::size_t> first_divergence;
  std::vector<std::string> only_in_candidate;
  std::uint64_t missing = 0;
  bool stopped_early = false;
  bool passed() const { return !first_divergence.has_value() && compared() > 0; }
  std::uint64_t compared() const;
};

Report compare(const TensorSet& reference, const TensorSet& candidate, const Options& opt);

// Human-readable table, and the same as JSON.
std::string format_text(const Report& r);
nlohmann::json to_json(const Report& r);

}  // namespace dsr1::compare
