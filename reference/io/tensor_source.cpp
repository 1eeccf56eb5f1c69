#include "reference/io/tensor_source.hpp"

#include <fmt/format.h>

#include <stdexcept>

namespace dsr1 {

TensorData TensorSource::read(const std::string& name) const {
  const std::vector<std::uint64_t> s = shape(name);
  return read_rows(name, 0, s.empty() ? 1 : s[0]);
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
