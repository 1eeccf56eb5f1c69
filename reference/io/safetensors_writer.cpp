#include "reference/io/safetensors_writer.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace dsr1::safetensors {

std::uint64_t TensorHeader::numel() const {
  std::uint64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

std::uint64_t TensorHeader::bytes() const { return numel() * dtype_size(dtype); }

std::string header_text(const std::vector<TensorHeader>& tensors,
                        const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", to_string(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes()}}};
    offset += t.bytes();
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text += ' ';
  return text;
}

// ---------------------------------------------------------------------------------------------
// Encoding

namespace {

// A finite a >= 0, below the format's overflow threshold, rounded to nearest even in a binary
// format with `mant_bits` mantissa bits, exponent bias `bias` and smallest normal 2^emin;
// returns the code without its sign bit.
//   subnormal (a < 2^emin): a = m * 2^(emin - mant_bits), m = RNE(a * 2^(mant_bits - emin))
//   normal: the double's own bits, cut to mant_bits mantissa bits with round to nearest even;
//           a carry out of the mantissa correctly moves to the next exponent.
inline std::uint32_t round_to_code(double a, int mant_bits, int bias, int emin) {
  // 2^emin and 2^(mant_bits - emin) as integer shifts, folded to constants where inlined.
  const double min_normal = 1.0 / static_cast<double>(std::uint64_t{1} << -emin);
  if (a < min_normal) {
    const double y = a * static_cast<double>(std::uint64_t{1} << (mant_bits - emin));  // exact
    // Adding 2^52 leaves no fraction bits, so the addition itself rounds y to nearest even.
    return static_cast<std::uint32_t>((y + 0x1p52) - 0x1p52);
  }
  const std::uint64_t bits = std::bit_cast<std::uint64_t>(a);  // biased exponent | 52-bit mantissa
  const int shift = 52 - mant_bits;
  std::uint64_t q = bits >> shift;
  const std::uint64_t rest = bits & ((std::uint64_t{1} << shift) - 1);
  const std::uint64_t half = std::uint64_t{1} << (shift - 1);
  if (rest > half || (rest == half && (q & 1))) ++q;
  // q is (1023 + E) << mant_bits | m; the code is (bias + E) << mant_bits | m.
  return static_cast<std::uint32_t>(q - (static_cast<std::uint64_t>(1023 - bias) << mant_bits));
}

}  // namespace

std::uint16_t encode_f16_fast(float x) {
  if (std::isnan(x)) return 0x7E00;
  const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(x));
  if (a >= 65520.0) return sign | 0x7C00;  // rounds past 65504, the largest half: inf
  return sign | static_cast<std::uint16_t>(round_to_code(a, 10, 15, -14));
}

std::uint8_t encode_e4m3_fast(float x) {
  if (std::isnan(x)) return 0x7F;
  const std::uint8_t sign = std::signbit(x) ? 0x80 : 0;
  const double a = std::min(std::fabs(static_cast<double>(x)), 448.0);  // saturate, no inf in e4m3
  return sign | static_cast<std::uint8_t>(round_to_code(a, 3, 7, -6));
}

namespace {

// out[i] = the sizeof(T) little-endian bytes of convert(values[i]).
template <typename T, typename Convert>
void store_each(const double* values, std::size_t n, std::uint8_t* out, Convert convert) {
  for (std::size_t i = 0; i < n; ++i) {
    const T x = convert(values[i]);
    std::memcpy(out + sizeof(T) * i, &x, sizeof(T));
  }
}

}  // namespace

void encode_values(DType dtype, const double* values, std::size_t n, std::uint8_t* out) {
  using std::int16_t, std::int32_t, std::int64_t, std::int8_t, std::uint16_t, std::uint8_t;
  switch (dtype) {
    case DType::F64: std::memcpy(out, values, n * 8); return;
    case DType::F32: return store_each<float>(values, n, out, [](double v) { return static_cast<float>(v); });
    case DType::BF16:
      return store_each<uint16_t>(values, n, out, [](double v) { return encode_bf16(static_cast<float>(v)); });
    case DType::F16:
      return store_each<uint16_t>(values, n, out, [](double v) { return encode_f16_fast(static_cast<float>(v)); });
    case DType::F8_E4M3:
      return store_each<uint8_t>(values, n, out, [](double v) { return encode_e4m3_fast(static_cast<float>(v)); });
    case DType::I64: return store_each<int64_t>(values, n, out, [](double v) { return static_cast<int64_t>(v); });
    case DType::I32: return store_each<int32_t>(values, n, out, [](double v) { return static_cast<int32_t>(v); });
    case DType::I16: return store_each<int16_t>(values, n, out, [](double v) { return static_cast<int16_t>(v); });
    case DType::I8: return store_each<int8_t>(values, n, out, [](double v) { return static_cast<int8_t>(v); });
    case DType::U8:
    case DType::BOOL: return store_each<uint8_t>(values, n, out, [](double v) { return static_cast<uint8_t>(v); });
  }
}

// ---------------------------------------------------------------------------------------------
// StreamWriter

StreamWriter::StreamWriter(std::string path, std::vector<TensorHeader> tensors,
                           const std::map<std::string, std::string>& metadata)
    : path_(std::move(path)), tensors_(std::move(tensors)) {
  const std::string text = header_text(tensors_, metadata);
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0)
    throw std::runtime_error(fmt::format("cannot open '{}' for writing: {}", path_, std::strerror(errno)));
  file_size_ = 8 + text.size();
  for (const auto& t : tensors_) file_size_ += t.bytes();
  const std::uint64_t n = text.size();  // the 8-byte little-endian header length
  std::uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<std::uint8_t>(n >> (8 * i));
  try {
    write_all(len, 8);
    write_all(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  } catch (...) {
    ::close(fd_);
    ::unlink(path_.c_str());
    throw;
  }
}

StreamWriter::~StreamWriter() {
  if (finished_) return;
  if (fd_ >= 0) ::close(fd_);
  ::unlink(path_.c_str());  // never leave a file whose header promises bytes it lacks
}

void StreamWriter::fail(const std::string& what) const {
  throw std::runtime_error(fmt::format("safetensors writer '{}': {}", path_, what));
}

void StreamWriter::write_all(const std::uint8_t* bytes, std::size_t n) {
  while (n > 0) {
    const ssize_t k = ::write(fd_, bytes, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0)
      fail(fmt::format("write failed after {} bytes: {}", written_,
                       k < 0 ? std::strerror(errno) : "no progress"));
    bytes += k;
    n -= static_cast<std::size_t>(k);
    written_ += static_cast<std::uint64_t>(k);
  }
}

void StreamWriter::begin(const std::string& name) {
  if (finished_) fail(fmt::format("tensor '{}' begun after finish()", name));
  if (current_ > 0 && current_done_ != tensors_[current_ - 1].bytes())
    fail(fmt::format("tensor '{}' got {} bytes, its header says {}", tensors_[current_ - 1].name,
                     current_done_, tensors_[current_ - 1].bytes()));
  if (current_ == tensors_.size())
    fail(fmt::format("tensor '{}' begun, but the header's {} tensors are all written", name,
                     tensors_.size()));
  if (tensors_[current_].name != name)
    fail(fmt::format("tensor '{}' begun where the header has '{}' next", name, tensors_[current_].name));
  ++current_;
  current_done_ = 0;
}

void StreamWriter::append(const std::uint8_t* bytes, std::size_t n) {
  if (current_ == 0) fail("bytes appended before any tensor was begun");
  const TensorHeader& t = tensors_[current_ - 1];
  if (current_done_ + n > t.bytes())
    fail(fmt::format("tensor '{}' would get {} bytes, its header says {}", t.name, current_done_ + n,
                     t.bytes()));
  write_all(bytes, n);
  current_done_ += n;
}

void StreamWriter::finish() {
  if (finished_) return;
  if (current_ > 0 && current_done_ != tensors_[current_ - 1].bytes())
    fail(fmt::format("tensor '{}' got {} bytes, its header says {}", tensors_[current_ - 1].name,
                     current_done_, tensors_[current_ - 1].bytes()));
  if (current_ < tensors_.size())
    fail(fmt::format("finished before tensor '{}' ({} of {} tensors written)", tensors_[current_].name,
                     current_, tensors_.size()));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail(fmt::format("close failed: {}", std::strerror(errno)));
  finished_ = true;
}

}  // namespace dsr1::safetensors
