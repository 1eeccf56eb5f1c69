// The portable weight generator: (seed, tensor name, element index) -> a float32 value.
// Leaves out: nothing; docs/generator.md restates the rule precisely enough to reimplement it.
//
// Every value is computed independently of every other, so any element of any tensor of a
// full-scale model can be produced without storing or computing the rest:
//
//   key   = FNV-1a-64(UTF-8 bytes of the tensor name)
//   state = seed * 0x9E3779B97F4A7C15 + key + index * 0xD1B54A32D192ED03      (mod 2^64)
//   z     = mix64(state)              (the SplitMix64 finalizer, below)
//   u     = (z >> 40) / 2^24          (24 random bits: 0 <= u < 1, exact in float32)
//   r     = 2u - 1                    (-1 <= r < 1, exact in float32)
//   value = float32(f(r))             with f chosen by the tensor's role:
//     RMSNorm weights (name ends in "norm.weight"):           f(r) = 1 + r / 4
//     e_score_correction_bias:                                 f(r) = r / 16
//     weight_scale_inv (FP8 block scales):                     f(r) = 2^-8 * (1 + (r + 1) / 2)
//     every other tensor of shape [..., n] (n = last dim):     f(r) = r / sqrt(n)
//   f is evaluated in IEEE double (one correctly rounded sqrt and division) and rounded to
//   float32 with round-to-nearest-even, so every language gets the same bits.
//
// The element index is the row-major position within the tensor's checkpoint shape.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "reference/io/tensor_source.hpp"

namespace dsr1 {

std::uint64_t fnv1a64(std::string_view bytes);
std::uint64_t mix64(std::uint64_t z);

enum class GeneratorRole { Linear, Norm, Bias, Scale };
GeneratorRole generator_role(std::string_view tensor_name);

// The value of element `index` of tensor `name`, whose last dimension is `last_dim`.
float generator_value(std::uint64_t seed, std::string_view name, std::uint64_t index,
                      std::uint64_t last_dim);

// Elements first .. first+count-1 of tensor `name` into out[0 .. count-1]: the same values as
// generator_value, element by element, but the name is hashed and the role decided once per call
// (a full-scale tensor has up to 10^9 elements). out must hold count doubles (each value is a
// float32, so double holds it exactly). Large requests are split over the machine's cores; every
// value is a function of its index alone, so the result does not depend on the thread count.
void generator_fill(std::uint64_t seed, std::string_view name, std::uint64_t last_dim,
                    std::uint64_t first, std::uint64_t count, double* out);

// Rows first_row .. first_row+count-1 of a matrix [rows, cols] into a column-major destination,
// element (first_row + i, c) at dst[c * ld + i]: the values of generator_fill, generated in the
// order the model's matrices store them, so no transpose is needed. Threaded like generator_fill.
void generator_fill_transposed(std::uint64_t seed, std::string_view name, std::uint64_t cols,
                               std::uint64_t first_row, std::uint64_t count, double* dst,
                               std::uint64_t ld);

// A TensorSource that produces every tensor of a given catalogue (name -> shape) lazily: only the
// rows asked for are generated, so a full-scale model costs what a forward pass touches.
class GeneratorSource : public TensorSource {
 public:
  struct Entry {
    std::string name;
    std::vector<std::uint64_t> shape;
  };
  GeneratorSource(std::uint64_t seed, std::vector<Entry> catalogue);
  bool has(const std::string& name) const override;
  std::vector<std::uint64_t> shape(const std::string& name) const override;
  TensorData read_rows(const std::string& name, std::uint64_t first,
                       std::uint64_t count) const override;
  // Straight into the destination, in its column-major order (generator_fill_transposed).
  void read_rows_transposed(const std::string& name, std::uint64_t first, std::uint64_t count,
                            double* dst, std::uint64_t ld) const override;
  std::vector<std::string> names() const override;
  std::string describe() const override;
  const SourceCounters& counters() const override { return counters_; }
  std::uint64_t seed() const { return seed_; }

 private:
  const Entry& find(const std::string& name) const;
  std::uint64_t seed_;
  std::vector<Entry> catalogue_;
  std::unordered_map<std::string, std::size_t> index_;  // name -> position in catalogue_
  mutable SourceCounters counters_;
};

}  // namespace dsr1
