// The safetensors file format: read and write, with every header field validated.
// Leaves out: sharded checkpoints and FP8 block dequantization (checkpoint.hpp builds on this).
//
// Format (https://huggingface.co/docs/safetensors): an 8-byte little-endian unsigned header
// length N, then N bytes of JSON, then the raw data. The JSON maps each tensor name to
// {"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end]}, offsets relative to
// the end of the header; the optional key "__metadata__" maps strings to strings. Data is
// little-endian and row-major (C order).
//
// Reading never trusts the file: the header length, the JSON, each dtype, shape and offset
// range, and the absence of overlaps are all checked before any byte of data is touched,
// and errors name the file, the tensor and what was expected.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace dsr1::safetensors {

enum class DType { F64, F32, F16, BF16, F8_E4M3, I64, I32, I16, I8, U8, BOOL };

// "F32" <-> DType::F32; throws std::runtime_error for names the format does not define here.
DType dtype_from_string(const std::string& s);
std::string to_string(DType d);
std::size_t dtype_size(DType d);

// Exact decoders for the narrow float formats (every value is exactly a double).
double decode_bf16(std::uint16_t bits);
double decode_f16(std::uint16_t bits);
double decode_e4m3(std::uint8_t bits);  // float8_e4m3fn: no infinities, 0x7F/0xFF are NaN
// Round-to-nearest-even encoders, used to write test checkpoints in narrow formats.
std::uint16_t encode_bf16(float x);
std::uint16_t encode_f16(float x);
std::uint8_t encode_e4m3(float x);  // saturates to +-448

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::uint64_t> shape;  // row-major
  std::uint64_t begin = 0, end = 0;  // byte offsets relative to the data section
  std::uint64_t numel() const;
};

// A tensor to be written: values are given as doubles (row-major) and stored as `dtype`.
struct NamedTensor {
  std::string name;
  std::vector<std::uint64_t> shape;
  std::vector<double> data;
  DType dtype = DType::F64;
};

// Writes a safetensors file. Tensors are stored in the order given; the header is padded
// with spaces to a multiple of 8 bytes as the reference implementation does. (A StreamWriter,
// safetensors_writer.hpp, fed from memory: a failed write leaves no file behind.)
void write(const std::string& path, const std::vector<NamedTensor>& tensors,
           const std::map<std::string, std::string>& metadata = {});

// A parsed and validated header: the tensors in data order and the metadata.
struct Header {
  std::vector<TensorInfo> tensors;            // sorted by begin, ties by name
  std::map<std::string, std::string> metadata;
  std::uint64_t data_start = 0;               // 8 + header length: where the data section begins
};

// Parses the header of a safetensors image of `size` bytes (the whole file, data included: the
// offsets are checked against it). `origin` names the file in messages. Every check File makes
// happens here, so the fuzzer (tests/fuzz/fuzz_safetensors.cpp) exercises exactly this code.
Header parse_header(const std::uint8_t* bytes, std::size_t size, const std::string& origin);

// The values of tensor `t` converted exactly to double, row-major; `data` points at the start
// of the data section, and the tensor's bytes must lie within it (parse_header checked that).
std::vector<double> decode(const TensorInfo& t, const std::uint8_t* data);

// A read-only, memory-mapped safetensors file. Tensors are decoded lazily, by name.
class File {
 public:
  explicit File(const std::string& path);
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // in file order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // throws, naming file and tensor

  // The tensor's values converted exactly to double, row-major.
  std::vector<double> read(const std::string& name) const;
  // Rows first .. first+count-1 of the tensor's first dimension (of a 1-D tensor: elements),
  // converted exactly to double, row-major. The file pages that held them are handed back to
  // the kernel afterwards (madvise), so reading a checkpoint does not keep it resident.
  std::vector<double> read_rows(const std::string& name, std::uint64_t first,
                                std::uint64_t count) const;
  // Bytes of tensor data read so far by read() and read_rows().
  std::uint64_t bytes_read() const { return bytes_read_; }
  // The raw little-endian bytes of a tensor (for byte-exact comparisons).
  const std::uint8_t* raw(const std::string& name) const;
  // For a caller that decodes rows itself: the raw bytes of rows first .. first+count-1 (range
  // checked), and afterwards release_rows, which hands their pages back and counts the bytes
  // as read_rows does.
  const std::uint8_t* raw_rows(const std::string& name, std::uint64_t first,
                               std::uint64_t count) const;
  void release_rows(const std::string& name, std::uint64_t first, std::uint64_t count) const;
  // Rows first .. first+count-1 as stored (little-endian bytes, row-major), copied out; the file
  // pages are handed back afterwards as read_rows does. For the fast path, which keeps FP8 and
  // BF16 weights in their stored form instead of widening them to double.
  std::vector<std::uint8_t> read_raw_rows(const std::string& name, std::uint64_t first,
                                          std::uint64_t count) const;

 private:
  std::string path_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
  const std::uint8_t* map_ = nullptr;
  std::size_t map_size_ = 0;
  std::uint64_t data_start_ = 0;
  mutable std::atomic<std::uint64_t> bytes_read_{0};
};

}  // namespace dsr1::safetensors
