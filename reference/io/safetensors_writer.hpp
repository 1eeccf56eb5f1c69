// Writing safetensors files as a stream: the header first, then each tensor's bytes in header
// order, a block at a time, so that a file larger than memory can be written.
// Leaves out: reading (safetensors.hpp) and where the bytes come from (the caller produces them).
//
// The header is fully known before any data (every tensor's dtype and shape fix its
// data_offsets), so it is written at once; StreamWriter then checks that the bytes arrive for
// the tensors in that order and fill each exactly. safetensors::write (safetensors.hpp) is this
// writer fed from tensors held in memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "reference/io/safetensors.hpp"

namespace dsr1::safetensors {

// One tensor of a header: what data_offsets are computed from.
struct TensorHeader {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::uint64_t> shape;  // row-major
  std::uint64_t numel() const;
  std::uint64_t bytes() const;  // numel * dtype_size
};

// The header JSON of a file holding `tensors` in this order: "__metadata__" first (when not
// empty), then each tensor with data_offsets packed back to back from 0, padded with spaces to
// a multiple of 8 bytes as the reference implementation does.
std::string header_text(const std::vector<TensorHeader>& tensors,
                        const std::map<std::string, std::string>& metadata);

// values[0 .. n-1] as n little-endian elements of `dtype` at out (n * dtype_size bytes), bit for
// bit what encode_bf16 / encode_f16 / encode_e4m3 give for float(value) (round to nearest even;
// F16 overflows to inf at 65520, e4m3 saturates at 448), but with arithmetic on the exponent
// instead of their search over all codes. Integer dtypes truncate as static_cast does.
void encode_values(DType dtype, const double* values, std::size_t n, std::uint8_t* out);
std::uint16_t encode_f16_fast(float x);
std::uint8_t encode_e4m3_fast(float x);

// A safetensors file written front to back. The constructor creates `path` and writes the
// header; begin(name) starts the next tensor (it must be the next one of the header), append()
// adds its bytes, finish() checks that every tensor got exactly its bytes and closes the file.
// Any error (a write the disk refuses, a tensor out of order, too many or too few bytes) throws
// naming the file and the tensor, and a StreamWriter destroyed before finish() deletes its
// file, so an incomplete file never remains under the name.
class StreamWriter {
 public:
  StreamWriter(std::string path, std::vector<TensorHeader> tensors,
               const std::map<std::string, std::string>& metadata = {});
  ~StreamWriter();
  StreamWriter(const StreamWriter&) = delete;
  StreamWriter& operator=(const StreamWriter&) = delete;

  void begin(const std::string& name);
  void append(const std::uint8_t* bytes, std::size_t n);
  void finish();

  const std::string& path() const { return path_; }
  std::uint64_t file_size() const { return file_size_; }  // header + data, when finished
  std::uint64_t written() const { return written_; }      // bytes written so far, header included

 private:
  void write_all(const std::uint8_t* bytes, std::size_t n);
  [[noreturn]] void fail(const std::string& what) const;

  std::string path_;
  std::vector<TensorHeader> tensors_;
  int fd_ = -1;
  bool finished_ = false;
  std::size_t current_ = 0;       // index of the tensor being written, + 1 (0: none begun)
  std::uint64_t current_done_ = 0;  // bytes of the current tensor written so far
  std::uint64_t written_ = 0;
  std::uint64_t file_size_ = 0;
};

}  // namespace dsr1::safetensors
