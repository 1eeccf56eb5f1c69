// NumPy's .npy and .npz files: read and write arrays of float64/float32/float16 values.
// Leaves out: object arrays, structured dtypes, and complex numbers (none of them hold tensors).
//
// .npy (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html): the magic
// "\x93NUMPY", a version byte pair (1.0, 2.0 or 3.0), a little-endian header length (2 bytes in
// version 1, 4 bytes in 2 and 3), then a Python dict literal such as
//     {'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }
// padded with spaces and a newline, then the raw data. 'descr' is the byte order ('<' little,
// '>' big, '|' not applicable) and the type code; 'fortran_order' True means column-major data.
// Arrays read here are always returned in C (row-major) order, the order safetensors and the
// tracer use, so a [T, d] array read from any file lists token 0's d values first.
//
// .npz is a zip archive of .npy files, one per array, named "<key>.npy". np.savez stores them
// uncompressed, np.savez_compressed deflates them; both are read (deflate through zlib). The
// zip central directory is parsed with every offset and size checked against the file, so a
// truncated or hostile archive gives an error naming the file and the entry, never a crash.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace dsr1::npy {

// The element types read and written. Integers are read (token ids are often saved as int64)
// and converted exactly to double when |x| < 2^53; they are never written.
enum class DType { F64, F32, F16, I64, I32 };

std::string to_string(DType d);  // "<f8", "<f4", "<f2", "<i8", "<i4"

struct Array {
  std::vector<std::uint64_t> shape;  // outermost first; {} is a scalar (one element)
  std::vector<double> data;          // C (row-major) order, exactly converted to double
  DType dtype = DType::F64;          // the type stored in the file it came from
  std::uint64_t numel() const;
};

// Parses one .npy image held in memory; `origin` names it in error messages.
Array parse(const std::uint8_t* bytes, std::size_t size, const std::string& origin);
Array read(const std::string& path);

// The bytes of a .npy file (version 1.0 header, or 2.0 if the header needs more than 64 KiB),
// C order, little endian. `dtype` must be F64, F32 or F16 (values are rounded to nearest even).
std::vector<std::uint8_t> encode(const Array& a, DType dtype);
void write(const std::string& path, const Array& a, DType dtype = DType::F64);

// .npz: entries in archive order, each named without its ".npy" suffix.
std::vector<std::pair<std::string, Array>> read_npz(const std::string& path);
// The same from an archive image in memory; `origin` names it in messages.
std::vector<std::pair<std::string, Array>> parse_npz(const std::vector<std::uint8_t>& bytes,
                                                     const std::string& origin);
// Writes an uncompressed archive, as np.savez does.
void write_npz(const std::string& path, const std::vector<std::pair<std::string, Array>>& entries,
               DType dtype = DType::F64);

}  // namespace dsr1::npy
