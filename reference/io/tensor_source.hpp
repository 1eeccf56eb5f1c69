// Where weights come from: anything that can list tensors by HF name and read them.
// Implementations: a safetensors checkpoint (checkpoint.hpp) and the portable generator.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsr1 {

struct TensorData {
  std::vector<std::uint64_t> shape;  // row-major, as in the checkpoint ([out, in] for linears)
  std::vector<double> data;          // values, exactly converted to double
};

class TensorSource {
 public:
  virtual ~TensorSource() = default;
  virtual bool has(const std::string& name) const = 0;
  virtual std::vector<std::uint64_t> shape(const std::string& name) const = 0;
  // Dequantized values (FP8 block scales already applied); throws naming source and tensor.
  virtual TensorData read(const std::string& name) const = 0;
  virtual std::vector<std::string> names() const = 0;
  virtual std::string describe() const = 0;  // e.g. the checkpoint directory, for messages
};

}  // namespace dsr1
