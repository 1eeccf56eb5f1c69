// Golden files in JSON (golden/seed/*.json): loading, validation and typed access to fields.
// Leaves out: large golden sets (those are safetensors files, see safetensors.hpp).
//
// A golden file is an object with the fields section, title, inputs, parameters, expected,
// doc_printed, tolerance {abs, rel, why} and check (the independent derivation). Tensors are
// nested arrays in the on-disk layout of docs/tracer.md: a list of T tokens, each a list of d
// numbers, becomes the [d, T] matrix of the code; a 3-level list [heads][T][T_k] becomes the cube
// [T_k, T, heads]. Weight matrices are written as the document writes matrices, one row per list.
// The strings "inf", "-inf" and "nan" stand for the values JSON cannot spell.
// Every error names the file and the field ("golden/seed/x.json: field 'expected.y': ...").
#pragma once

#include <armadillo>
#include <nlohmann/json.hpp>
#include <string>

namespace dsr1 {

class GoldenFile {
 public:
  // Reads and validates a file; throws std::runtime_error naming the file (and field).
  static GoldenFile load(const std::string& path);
  // Parses and validates text; `path` is only used in messages.
  static GoldenFile parse(const std::string& text, const std::string& path);

  const std::string& path() const { return path_; }
  const nlohmann::json& json() const { return j_; }

  // A field by dotted path, array elements by index: "expected.steps.1.probs".
  const nlohmann::json& at(const std::string& field) const;
  bool has(const std::string& field) const;
  double number(const std::string& field) const;
  std::string text(const std::string& field) const;
  arma::vec vec(const std::string& field) const;          // [n] from a list of numbers
  arma::mat tokens(const std::string& field) const;       // [d, T] from T lists of d numbers
  arma::mat matrix(const std::string& field) const;       // [rows, cols] from a list of rows
  arma::cube cube(const std::string& field) const;        // [T_k, T, H] from [H][T][T_k]

  double tol_abs() const { return number("tolerance.abs"); }
  double tol_rel() const { return number("tolerance.rel"); }

 private:
  GoldenFile(nlohmann::json j, std::string path) : j_(std::move(j)), path_(std::move(path)) {}
  void validate() const;
  [[noreturn]] void fail(const std::string& field, const std::string& what) const;
  double element(const nlohmann::json& x, const std::string& field) const;
  nlohmann::json j_;
  std::string path_;
};

// DSR1_SOURCE_DIR/golden/seed/<name>: golden files resolve against the source tree, so programs
// find them whatever the working directory.
std::string seed_golden_path(const std::string& name);

}  // namespace dsr1
