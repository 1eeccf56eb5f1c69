#include "reference/io/tensor_source.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

namespace dsr1 {

TensorData TensorSource::read(const std::string& name) const {
  const std::vector<std::uint64_t> s = shape(name);
  return read_rows(name, 0, s.empty() ? 1 : s[0]);
}

namespace {

// dst[c * ld + i] = block[i * cols + c] for i < n, c < cols. It walks 32 x 32 tiles so that the
// reads and the writes of a tile both stay in cache: an element-by-element transpose of a
// 7168 x 18432 matrix misses the cache on every write and costs ten times more.
void transpose_into(const double* block, std::uint64_t n, std::uint64_t cols, double* dst,
                    std::uint64_t ld) {
  constexpr std::uint64_t tile = 32;
  for (std::uint64_t i0 = 0; i0 < n; i0 += tile)
    for (std::uint64_t c0 = 0; c0 < cols; c0 += tile) {
      const std::uint64_t i1 = std::min(n, i0 + tile), c1 = std::min(cols, c0 + tile);
      for (std::uint64_t c = c0; c < c1; ++c)
        for (std::uint64_t i = i0; i < i1; ++i) dst[c * ld + i] = block[i * cols + c];
    }
}

}  // namespace

void TensorSource::read_rows_transposed(const std::string& name, std::uint64_t first,
                                        std::uint64_t count, double* dst, std::uint64_t ld) const {
  const std::vector<std::uint64_t> s = shape(name);
  if (s.size() != 2)
    throw std::invalid_argument(fmt::format("{}: tensor '{}' has {} dimensions; a matrix has 2",
                                            describe(), name, s.size()));
  check_row_range(describe(), name, s, first, count);
  const std::uint64_t cols = s[1];
  // A block of rows at a time, so that the row-major copy never holds the whole matrix.
  const std::uint64_t block = std::max<std::uint64_t>(1, kTransposeBlockValues / std::max<std::uint64_t>(1, cols));
  for (std::uint64_t i0 = 0; i0 < count; i0 += block) {
    const std::uint64_t n = std::min(block, count - i0);
    const TensorData t = read_rows(name, first + i0, n);
    if (t.data.size() != n * cols)
      throw std::runtime_error(fmt::format("{}: tensor '{}' rows {}..{} read back with {} values, "
                                           "expected {}", describe(), name, first + i0,
                                           first + i0 + n - 1, t.data.size(), n * cols));
    transpose_into(t.data.data(), n, cols, dst + i0, ld);
  }
}

void check_row_range(const std::string& where, const std::string& name,
                     const std::vector<std::uint64_t>& shape, std::uint64_t first,
                     std::uint64_t count) {
  const std::uint64_t rows = shape.empty() ? 1 : shape[0];
  if (first > rows || count > rows - first)
    throw std::out_of_range(fmt::format("{}: tensor '{}' has {} rows; rows {}..{} were asked for",
                                        where, name, rows, first, first + count - 1));
}

}  // namespace dsr1
