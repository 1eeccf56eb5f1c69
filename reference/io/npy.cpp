#include "reference/io/npy.hpp"

#include <fmt/format.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <stdexcept>

#include "reference/io/safetensors.hpp"

namespace dsr1::npy {

namespace {

[[noreturn]] void fail(const std::string& origin, const std::string& what) {
  throw std::runtime_error(fmt::format("{}: {}", origin, what));
}

std::vector<std::uint8_t> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot open file", path));
  in.seekg(0, std::ios::end);
  const std::streamoff n = in.tellg();
  if (n < 0) throw std::runtime_error(fmt::format("{}: cannot determine the file size", path));
  in.seekg(0, std::ios::beg);
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(n));
  if (n > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), n))
    throw std::runtime_error(fmt::format("{}: read error", path));
  return bytes;
}

void spit(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error(fmt::format("{}: cannot create file", path));
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error(fmt::format("{}: write error", path));
}

std::uint64_t get_le(const std::uint8_t* p, int n) {
  std::uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void put_le(std::vector<std::uint8_t>& out, std::uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

std::size_t type_size(DType d) {
  switch (d) {
    case DType::F64: case DType::I64: return 8;
    case DType::F32: case DType::I32: return 4;
    case DType::F16: return 2;
  }
  return 0;
}

// ---- The header: a Python dict literal with string keys, parsed by a small recursive reader.

struct HeaderParser {
  const std::string& s;
  const std::string& origin;
  std::size_t i = 0;

  [[noreturn]] void error(const std::string& what) const {
    fail(origin, fmt::format("malformed .npy header ({} at character {}): {}", what, i, s));
  }
  void skip_space() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  }
  bool peek(char c) {
    skip_space();
    return i < s.size() && s[i] == c;
  }
  void expect(char c) {
    if (!peek(c)) error(fmt::format("expected '{}'", c));
    ++i;
  }
  std::string string_literal() {
    skip_space();
    if (i >= s.size() || (s[i] != '\'' && s[i] != '"')) error("expected a quoted string");
    const char q = s[i++];
    std::string out;
    while (i < s.size() && s[i] != q) out += s[i++];
    if (i >= s.size()) error("unterminated string");
    ++i;
    return out;
  }
  bool boolean() {
    skip_space();
    if (s.compare(i, 4, "True") == 0) { i += 4; return true; }
    if (s.compare(i, 5, "False") == 0) { i += 5; return false; }
    error("expected True or False");
  }
  std::vector<std::uint64_t> tuple_of_ints() {
    expect('(');
    std::vector<std::uint64_t> out;
    while (!peek(')')) {
      skip_space();
      if (i >= s.size() || s[i] < '0' || s[i] > '9') error("expected a non-negative dimension");
      std::uint64_t v = 0;
      while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        const std::uint64_t digit = static_cast<std::uint64_t>(s[i] - '0');
        if (v > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) error("dimension overflows");
        v = v * 10 + digit;
        ++i;
      }
      if (peek('L')) ++i;  // Python 2 long suffix, written by very old numpy
      out.push_back(v);
      if (peek(',')) ++i;
      else if (!peek(')')) error("expected ',' or ')' in the shape");
    }
    ++i;
    return out;
  }
};

struct Header {
  std::string descr;
  bool fortran_order = false;
  std::vector<std::uint64_t> shape;
};

Header parse_header(const std::string& text, const std::string& origin) {
  HeaderParser p{text, origin};
  Header h;
  bool have_descr = false, have_order = false, have_shape = false;
  p.expect('{');
  while (!p.peek('}')) {
    const std::string key = p.string_literal();
    p.expect(':');
    if (key == "descr") {
      if (p.peek('[')) p.error("structured dtypes are not supported; save a plain float array");
      h.descr = p.string_literal();
      have_descr = true;
    } else if (key == "fortran_order") {
      h.fortran_order = p.boolean();
      have_order = true;
    } else if (key == "shape") {
      h.shape = p.tuple_of_ints();
      have_shape = true;
    } else {
      p.error(fmt::format("unknown key '{}'", key));
    }
    if (p.peek(',')) ++p.i;
    else if (!p.peek('}')) p.error("expected ',' or '}'");
  }
  if (!have_descr || !have_order || !have_shape)
    fail(origin, fmt::format("the .npy header must have 'descr', 'fortran_order' and 'shape': {}", text));
  return h;
}

// '<f8' -> F64 etc.; `swap` is set for big-endian data.
DType parse_descr(const std::string& descr, bool& swap, const std::string& origin) {
  if (descr.size() != 3)
    fail(origin, fmt::format("unsupported dtype '{}' (expected <f8, <f4, <f2, <i8 or <i4)", descr));
  const char order = descr[0];
  const std::string code = descr.substr(1);
  DType d;
  if (code == "f8") d = DType::F64;
  else if (code == "f4") d = DType::F32;
  else if (code == "f2") d = DType::F16;
  else if (code == "i8") d = DType::I64;
  else if (code == "i4") d = DType::I32;
  else fail(origin, fmt::format("unsupported dtype '{}' (expected <f8, <f4, <f2, <i8 or <i4)", descr));
  if (order == '<' || order == '|' || order == '=') swap = false;  // '=' is native: little endian here
  else if (order == '>') swap = true;
  else fail(origin, fmt::format("dtype '{}' has an unknown byte-order character", descr));
  return d;
}

double decode_element(const std::uint8_t* p, DType d, bool swap) {
  std::uint8_t b[8];
  const std::size_t n = type_size(d);
  for (std::size_t k = 0; k < n; ++k) b[k] = swap ? p[n - 1 - k] : p[k];
  switch (d) {
    case DType::F64: { double v; std::memcpy(&v, b, 8); return v; }
    case DType::F32: { float v; std::memcpy(&v, b, 4); return v; }
    case DType::F16: return safetensors::decode_f16(static_cast<std::uint16_t>(get_le(b, 2)));
    case DType::I64: { std::int64_t v; std::memcpy(&v, b, 8); return static_cast<double>(v); }
    case DType::I32: { std::int32_t v; std::memcpy(&v, b, 4); return v; }
  }
  return 0;
}

}  // namespace

std::string to_string(DType d) {
  switch (d) {
    case DType::F64: return "<f8";
    case DType::F32: return "<f4";
    case DType::F16: return "<f2";
    case DType::I64: return "<i8";
    case DType::I32: return "<i4";
  }
  return "?";
}

std::uint64_t Array::numel() const {
  std::uint64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

Array parse(const std::uint8_t* bytes, std::size_t size, const std::string& origin) {
  static const std::uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (size < 10 || std::memcmp(bytes, magic, 6) != 0)
    fail(origin, "not a .npy file (missing the \\x93NUMPY magic)");
  const int major = bytes[6];
  std::uint64_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_len = get_le(bytes + 8, 2);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (size < 12) fail(origin, "truncated .npy preamble");
    header_len = get_le(bytes + 8, 4);
    header_start = 12;
  } else {
    fail(origin, fmt::format(".npy format version {}.{} is not supported (1.0, 2.0, 3.0 are)", major,
                             static_cast<int>(bytes[7])));
  }
  if (header_len > size - header_start)
    fail(origin, fmt::format(".npy header length {} runs past the end of the file ({} bytes)",
                             header_len, size));
  const std::string text(reinterpret_cast<const char*>(bytes + header_start), header_len);
  const Header h = parse_header(text, origin);
  bool swap = false;
  Array a;
  a.dtype = parse_descr(h.descr, swap, origin);
  a.shape = h.shape;
  // Element count with overflow checks: a hostile header must not wrap around.
  std::uint64_t n = 1;
  for (auto s : a.shape) {
    if (s != 0 && n > std::numeric_limits<std::uint64_t>::max() / s)
      fail(origin, "the shape's element count overflows 64 bits");
    n *= s;
  }
  const std::uint64_t esize = type_size(a.dtype);
  const std::uint64_t data_start = header_start + header_len;
  const std::uint64_t available = size - data_start;
  if (n > std::numeric_limits<std::uint64_t>::max() / esize)
    fail(origin, fmt::format("shape {} of dtype {} needs more than 2^64 data bytes",
                             fmt::join(a.shape, "x"), h.descr));
  if (n * esize != available)
    fail(origin, fmt::format("shape {} of dtype {} needs {} data bytes but the file holds {}",
                             fmt::join(a.shape, "x"), h.descr, n * esize, available));
  a.data.resize(n);
  const std::uint8_t* p = bytes + data_start;
  if (!h.fortran_order || a.shape.size() < 2) {
    for (std::uint64_t k = 0; k < n; ++k) a.data[k] = decode_element(p + k * esize, a.dtype, swap);
  } else {
    // Fortran order: the first index varies fastest on disk. Walk the file in its order with
    // a column-major multi-index and scatter into the row-major position.
    const std::size_t r = a.shape.size();
    std::vector<std::uint64_t> stride(r, 1);  // row-major strides
    for (std::size_t k = r - 1; k-- > 0;) stride[k] = stride[k + 1] * a.shape[k + 1];
    std::vector<std::uint64_t> idx(r, 0);
    for (std::uint64_t k = 0; k < n; ++k) {
      std::uint64_t dst = 0;
      for (std::size_t j = 0; j < r; ++j) dst += idx[j] * stride[j];
      a.data[dst] = decode_element(p + k * esize, a.dtype, swap);
      for (std::size_t j = 0; j < r; ++j) {  // increment, first index fastest
        if (++idx[j] < a.shape[j]) break;
        idx[j] = 0;
      }
    }
  }
  return a;
}

Array read(const std::string& path) {
  const std::vector<std::uint8_t> bytes = slurp(path);
  return parse(bytes.data(), bytes.size(), path);
}

std::vector<std::uint8_t> encode(const Array& a, DType dtype) {
  if (dtype != DType::F64 && dtype != DType::F32 && dtype != DType::F16)
    throw std::invalid_argument("npy::encode: only <f8, <f4 and <f2 arrays are written");
  if (a.data.size() != a.numel())
    throw std::invalid_argument(fmt::format("npy::encode: shape {} needs {} values, got {}",
                                            fmt::join(a.shape, "x"), a.numel(), a.data.size()));
  std::string shape_text = "(";
  for (std::size_t k = 0; k < a.shape.size(); ++k) shape_text += fmt::format("{}, ", a.shape[k]);
  if (a.shape.size() > 1) shape_text.resize(shape_text.size() - 2);  // (3, 4) ; (3,) keeps its comma
  else if (a.shape.size() == 1) shape_text.resize(shape_text.size() - 1);
  shape_text += ")";
  std::string header = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
                                   to_string(dtype), shape_text);
  // Pad with spaces so that magic + version + length + header + '\n' is a multiple of 64.
  const bool v2 = header.size() + 1 + 10 > 65535;
  const std::size_t preamble = v2 ? 12 : 10;
  while ((preamble + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::vector<std::uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<std::uint8_t>(v2 ? 2 : 1), 0};
  put_le(out, header.size(), v2 ? 4 : 2);
  out.insert(out.end(), header.begin(), header.end());
  out.reserve(out.size() + a.data.size() * type_size(dtype));
  for (double x : a.data) {
    if (dtype == DType::F64) {
      std::uint64_t bits;
      std::memcpy(&bits, &x, 8);
      put_le(out, bits, 8);
    } else if (dtype == DType::F32) {
      const float f = static_cast<float>(x);
      std::uint32_t bits;
      std::memcpy(&bits, &f, 4);
      put_le(out, bits, 4);
    } else {
      put_le(out, safetensors::encode_f16(static_cast<float>(x)), 2);
    }
  }
  return out;
}

void write(const std::string& path, const Array& a, DType dtype) { spit(path, encode(a, dtype)); }

// ---- .npz: the zip container (PKWARE APPNOTE 6.3). Only what np.savez and savez_compressed
// produce is needed: stored (method 0) or deflated (method 8) entries, optional ZIP64 fields.

namespace {

constexpr std::uint32_t kLocalSig = 0x04034b50;
constexpr std::uint32_t kCentralSig = 0x02014b50;
constexpr std::uint32_t kEndSig = 0x06054b50;
constexpr std::uint32_t kEnd64Sig = 0x06064b50;
constexpr std::uint32_t kEnd64LocatorSig = 0x07064b50;
constexpr std::uint64_t kMaxDeflateRatio = 1032;  // deflate's largest expansion (zlib FAQ: "1032:1")

struct ZipEntry {
  std::string name;
  std::uint16_t method = 0;
  std::uint16_t flags = 0;
  std::uint32_t crc = 0;
  std::uint64_t compressed = 0, uncompressed = 0, local_offset = 0;
};

// Bounds-checked little-endian reads from the archive image.
struct Reader {
  const std::vector<std::uint8_t>& b;
  const std::string& origin;
  std::uint64_t at(std::uint64_t off, int n, const char* what) const {
    if (off > b.size() || static_cast<std::uint64_t>(n) > b.size() - off)
      fail(origin, fmt::format("corrupt zip archive: {} at byte {} lies past the end of the file ({} bytes)",
                               what, off, b.size()));
    return get_le(b.data() + off, n);
  }
};

std::vector<ZipEntry> central_directory(const std::vector<std::uint8_t>& b, const std::string& origin) {
  const Reader r{b, origin};
  // The end-of-central-directory record is 22 bytes plus a comment of up to 65535 bytes.
  if (b.size() < 22) fail(origin, "not a zip archive (too short for an end-of-central-directory record)");
  std::uint64_t eocd = b.size();
  const std::uint64_t lowest = b.size() > 22 + 65535 ? b.size() - 22 - 65535 : 0;
  for (std::uint64_t off = b.size() - 22 + 1; off-- > lowest;) {
    if (get_le(b.data() + off, 4) == kEndSig && off + 22 + get_le(b.data() + off + 20, 2) == b.size()) {
      eocd = off;
      break;
    }
  }
  if (eocd == b.size()) fail(origin, "not a zip archive (no end-of-central-directory record); is it a .npz?");
  std::uint64_t count = r.at(eocd + 10, 2, "entry count");
  std::uint64_t cd_size = r.at(eocd + 12, 4, "central directory size");
  std::uint64_t cd_offset = r.at(eocd + 16, 4, "central directory offset");
  if (count == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
    // ZIP64: a locator right before the record points at the 64-bit end record.
    if (eocd < 20 || r.at(eocd - 20, 4, "ZIP64 locator") != kEnd64LocatorSig)
      fail(origin, "corrupt zip archive: ZIP64 sizes announced but no ZIP64 locator");
    const std::uint64_t end64 = r.at(eocd - 20 + 8, 8, "ZIP64 end record offset");
    if (r.at(end64, 4, "ZIP64 end record") != kEnd64Sig)
      fail(origin, "corrupt zip archive: bad ZIP64 end-of-central-directory signature");
    count = r.at(end64 + 32, 8, "ZIP64 entry count");
    cd_size = r.at(end64 + 40, 8, "ZIP64 central directory size");
    cd_offset = r.at(end64 + 48, 8, "ZIP64 central directory offset");
  }
  if (cd_offset > b.size() || cd_size > b.size() - cd_offset)
    fail(origin, fmt::format("corrupt zip archive: central directory [{}, +{}) lies outside the file ({} bytes)",
                             cd_offset, cd_size, b.size()));
  // Each entry takes at least 46 bytes: a count that cannot fit is a lie, not a reason to loop.
  if (count > cd_size / 46)
    fail(origin, fmt::format("corrupt zip archive: {} entries cannot fit in a {}-byte central directory",
                             count, cd_size));
  std::vector<ZipEntry> entries;
  std::uint64_t p = cd_offset;
  const std::uint64_t cd_end = cd_offset + cd_size;
  for (std::uint64_t k = 0; k < count; ++k) {
    if (p + 46 > cd_end) fail(origin, "corrupt zip archive: central directory entry runs past the directory");
    if (r.at(p, 4, "central directory entry") != kCentralSig)
      fail(origin, fmt::format("corrupt zip archive: bad central directory signature at byte {}", p));
    ZipEntry e;
    e.flags = static_cast<std::uint16_t>(r.at(p + 8, 2, "flags"));
    e.method = static_cast<std::uint16_t>(r.at(p + 10, 2, "method"));
    e.crc = static_cast<std::uint32_t>(r.at(p + 16, 4, "crc"));
    e.compressed = r.at(p + 20, 4, "compressed size");
    e.uncompressed = r.at(p + 24, 4, "uncompressed size");
    const std::uint64_t name_len = r.at(p + 28, 2, "name length");
    const std::uint64_t extra_len = r.at(p + 30, 2, "extra length");
    const std::uint64_t comment_len = r.at(p + 32, 2, "comment length");
    e.local_offset = r.at(p + 42, 4, "local header offset");
    const std::uint64_t next = p + 46 + name_len + extra_len + comment_len;
    if (next > cd_end) fail(origin, "corrupt zip archive: central directory entry runs past the directory");
    e.name.assign(reinterpret_cast<const char*>(b.data() + p + 46), name_len);
    // ZIP64 extended information: the 64-bit values of the fields set to 0xFFFFFFFF, in order.
    std::uint64_t x = p + 46 + name_len;
    const std::uint64_t x_end = x + extra_len;
    while (x + 4 <= x_end) {
      const std::uint64_t id = r.at(x, 2, "extra field id"), len = r.at(x + 2, 2, "extra field size");
      if (x + 4 + len > x_end) fail(origin, fmt::format("corrupt zip archive: extra field of '{}' overruns", e.name));
      if (id == 0x0001) {
        std::uint64_t q = x + 4;
        auto take = [&](std::uint64_t& field) {
          if (field != 0xFFFFFFFF) return;
          if (q + 8 > x + 4 + len) fail(origin, fmt::format("corrupt zip archive: short ZIP64 field in '{}'", e.name));
          field = r.at(q, 8, "ZIP64 field");
          q += 8;
        };
        take(e.uncompressed);
        take(e.compressed);
        take(e.local_offset);
      }
      x += 4 + len;
    }
    entries.push_back(e);
    p = next;
  }
  return entries;
}

std::vector<std::uint8_t> entry_bytes(const std::vector<std::uint8_t>& b, const ZipEntry& e,
                                      const std::string& origin) {
  const Reader r{b, origin};
  const std::string where = fmt::format("{}[{}]", origin, e.name);
  if (r.at(e.local_offset, 4, "local header") != kLocalSig)
    fail(where, fmt::format("corrupt zip archive: no local header at byte {}", e.local_offset));
  if (e.flags & 0x1) fail(where, "encrypted zip entries are not supported");
  const std::uint64_t name_len = r.at(e.local_offset + 26, 2, "local name length");
  const std::uint64_t extra_len = r.at(e.local_offset + 28, 2, "local extra length");
  const std::uint64_t start = e.local_offset + 30 + name_len + extra_len;
  if (start > b.size() || e.compressed > b.size() - start)
    fail(where, fmt::format("corrupt zip archive: entry data [{}, +{}) lies past the end of the file ({} bytes)",
                            start, e.compressed, b.size()));
  std::vector<std::uint8_t> out;
  if (e.method == 0) {
    if (e.compressed != e.uncompressed)
      fail(where, "corrupt zip archive: stored entry with different compressed and uncompressed sizes");
    out.assign(b.begin() + static_cast<std::ptrdiff_t>(start),
               b.begin() + static_cast<std::ptrdiff_t>(start + e.compressed));
  } else if (e.method == 8) {
    // Raw deflate (no zlib header): windowBits = -15. The declared size bounds the output, and
    // deflate cannot expand by more than 1032:1 (a 258-byte match costs at least two bits), so
    // a larger claim is refused before the output buffer is allocated: a 100-byte archive must
    // not make the reader zero-fill gigabytes.
    if (e.uncompressed > kMaxDeflateRatio * e.compressed + 1024)
      fail(where, fmt::format("declared uncompressed size {} is impossible for {} bytes of deflate data "
                              "(at most {}:1)", e.uncompressed, e.compressed, kMaxDeflateRatio));
    out.resize(e.uncompressed);
    z_stream zs{};
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) fail(where, "zlib initialisation failed");
    std::uint64_t in_left = e.compressed, out_done = 0;
    const std::uint8_t* in_ptr = b.data() + start;
    int rc = Z_OK;
    while (rc == Z_OK) {
      const uInt in_chunk = static_cast<uInt>(std::min<std::uint64_t>(in_left, 1u << 30));
      const uInt out_chunk = static_cast<uInt>(std::min<std::uint64_t>(out.size() - out_done, 1u << 30));
      zs.next_in = const_cast<Bytef*>(in_ptr);
      zs.avail_in = in_chunk;
      zs.next_out = out.data() + out_done;
      zs.avail_out = out_chunk;
      rc = inflate(&zs, Z_NO_FLUSH);
      const std::uint64_t used = in_chunk - zs.avail_in, made = out_chunk - zs.avail_out;
      in_ptr += used;
      in_left -= used;
      out_done += made;
      if (rc == Z_OK && used == 0 && made == 0) rc = Z_BUF_ERROR;  // no progress: truncated or oversized
    }
    inflateEnd(&zs);
    if (rc != Z_STREAM_END || out_done != e.uncompressed)
      fail(where, fmt::format("corrupt deflate data (zlib status {}, {} of {} bytes produced)", rc,
                              out_done, e.uncompressed));
  } else {
    fail(where, fmt::format("zip compression method {} is not supported (use np.savez or np.savez_compressed)",
                            e.method));
  }
  // The CRC-32 catches a damaged archive before its numbers are trusted.
  std::uint64_t crc = crc32(0L, Z_NULL, 0);
  for (std::uint64_t off = 0; off < out.size(); off += (1u << 30)) {
    const uInt n = static_cast<uInt>(std::min<std::uint64_t>(out.size() - off, 1u << 30));
    crc = crc32(crc, out.data() + off, n);
  }
  if (crc != e.crc) fail(where, fmt::format("CRC-32 mismatch (stored {:08x}, computed {:08x})", e.crc, crc));
  return out;
}

}  // namespace

std::vector<std::pair<std::string, Array>> read_npz(const std::string& path) {
  return parse_npz(slurp(path), path);
}

std::vector<std::pair<std::string, Array>> parse_npz(const std::vector<std::uint8_t>& b,
                                                     const std::string& origin) {
  std::vector<std::pair<std::string, Array>> out;
  for (const ZipEntry& e : central_directory(b, origin)) {
    if (e.name.empty() || e.name.back() == '/') continue;  // directories
    const std::vector<std::uint8_t> bytes = entry_bytes(b, e, origin);
    std::string key = e.name;
    if (key.size() > 4 && key.compare(key.size() - 4, 4, ".npy") == 0) key.resize(key.size() - 4);
    out.emplace_back(key, parse(bytes.data(), bytes.size(), fmt::format("{}[{}]", origin, e.name)));
  }
  return out;
}

void write_npz(const std::string& path, const std::vector<std::pair<std::string, Array>>& entries,
               DType dtype) {
  std::vector<std::uint8_t> out, central;
  for (const auto& [key, a] : entries) {
    const std::string name = key + ".npy";
    const std::vector<std::uint8_t> data = encode(a, dtype);
    if (data.size() >= 0xFFFFFFFFu || out.size() >= 0xFFFFFFFFu)
      throw std::invalid_argument(fmt::format("{}: entry '{}' is too large for a non-ZIP64 archive", path, key));
    const std::uint32_t crc = static_cast<std::uint32_t>(crc32(crc32(0L, Z_NULL, 0), data.data(), static_cast<uInt>(data.size())));
    const std::uint64_t local_offset = out.size();
    // Local file header: version 2.0, no flags, stored, no time stamp.
    put_le(out, kLocalSig, 4);
    put_le(out, 20, 2);
    put_le(out, 0, 2);
    put_le(out, 0, 2);
    put_le(out, 0, 4);  // time, date
    put_le(out, crc, 4);
    put_le(out, data.size(), 4);
    put_le(out, data.size(), 4);
    put_le(out, name.size(), 2);
    put_le(out, 0, 2);
    out.insert(out.end(), name.begin(), name.end());
    out.insert(out.end(), data.begin(), data.end());
    // Its central directory record.
    put_le(central, kCentralSig, 4);
    put_le(central, 20, 2);  // made by
    put_le(central, 20, 2);  // needed
    put_le(central, 0, 2);
    put_le(central, 0, 2);
    put_le(central, 0, 4);
    put_le(central, crc, 4);
    put_le(central, data.size(), 4);
    put_le(central, data.size(), 4);
    put_le(central, name.size(), 2);
    put_le(central, 0, 2);  // extra
    put_le(central, 0, 2);  // comment
    put_le(central, 0, 2);  // disk
    put_le(central, 0, 2);  // internal attributes
    put_le(central, 0, 4);  // external attributes
    put_le(central, local_offset, 4);
    central.insert(central.end(), name.begin(), name.end());
  }
  const std::uint64_t cd_offset = out.size();
  out.insert(out.end(), central.begin(), central.end());
  put_le(out, kEndSig, 4);
  put_le(out, 0, 2);
  put_le(out, 0, 2);
  put_le(out, entries.size(), 2);
  put_le(out, entries.size(), 2);
  put_le(out, central.size(), 4);
  put_le(out, cd_offset, 4);
  put_le(out, 0, 2);
  spit(path, out);
}

}  // namespace dsr1::npy
