#include "reference/io/safetensors.hpp"

#include "reference/io/safetensors_writer.hpp"

#include <fcntl.h>
#include <signal.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

namespace dsr1::safetensors {

namespace {

struct DTypeName {
  DType d;
  const char* name;
  std::size_t size;
};
constexpr DTypeName kDTypes[] = {
    {DType::F64, "F64", 8},    {DType::F32, "F32", 4},         {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},  {DType::F8_E4M3, "F8_E4M3", 1}, {DType::I64, "I64", 8},
    {DType::I32, "I32", 4},    {DType::I16, "I16", 2},         {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},      {DType::BOOL, "BOOL", 1},
};

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(fmt::format("safetensors file '{}': {}", path, what));
}

template <typename T>
T load_le(const std::uint8_t* p) {
  static_assert(std::endian::native == std::endian::little, "dsr1 assumes a little-endian host");
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Multiplies with overflow detection: shapes in a hostile header can be huge.
bool mul_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}

}  // namespace

DType dtype_from_string(const std::string& s) {
  for (const auto& d : kDTypes)
    if (s == d.name) return d.d;
  throw std::runtime_error(fmt::format(
      "unknown dtype '{}' (expected one of F64, F32, F16, BF16, F8_E4M3, I64, I32, I16, I8, U8, "
      "BOOL)",
      s));
}

std::string to_string(DType d) {
  for (const auto& e : kDTypes)
    if (e.d == d) return e.name;
  return "?";
}

std::size_t dtype_size(DType d) {
  for (const auto& e : kDTypes)
    if (e.d == d) return e.size;
  return 0;
}

double decode_bf16(std::uint16_t bits) {
  const std::uint32_t f = static_cast<std::uint32_t>(bits) << 16;
  return static_cast<double>(std::bit_cast<float>(f));
}

double decode_f16(std::uint16_t bits) {
  const int sign = (bits >> 15) & 1;
  const int exponent = (bits >> 10) & 0x1F;
  const int mantissa = bits & 0x3FF;
  double v;
  if (exponent == 0) {
    v = std::ldexp(static_cast<double>(mantissa), -24);  // subnormal: 2^-14 * m/1024
  } else if (exponent == 31) {
    v = mantissa ? std::numeric_limits<double>::quiet_NaN()
                 : std::numeric_limits<double>::infinity();
  } else {
    v = std::ldexp(1.0 + mantissa / 1024.0, exponent - 15);
  }
  return sign ? -v : v;
}

// float8_e4m3fn: 1 sign, 4 exponent (bias 7), 3 mantissa bits; exponent 15 with mantissa 7 is
// NaN; there are no infinities (spec §10).
double decode_e4m3(std::uint8_t bits) {
  const int sign = (bits >> 7) & 1;
  const int exponent = (bits >> 3) & 0xF;
  const int mantissa = bits & 0x7;
  double v;
  if (exponent == 0xF && mantissa == 0x7) {
    v = std::numeric_limits<double>::quiet_NaN();
  } else if (exponent == 0) {
    v = std::ldexp(mantissa / 8.0, -6);
  } else {
    v = std::ldexp(1.0 + mantissa / 8.0, exponent - 7);
  }
  return sign ? -v : v;
}

std::uint16_t encode_bf16(float x) {
  std::uint32_t f = std::bit_cast<std::uint32_t>(x);
  if (std::isnan(x)) return static_cast<std::uint16_t>((f >> 16) | 0x40);
  const std::uint32_t rounding = 0x7FFF + ((f >> 16) & 1);
  return static_cast<std::uint16_t>((f + rounding) >> 16);
}

// Chooses the nearest representable half by searching its decoded neighbours; slow but
// obviously right, and only used to write test checkpoints.
std::uint16_t encode_f16(float x) {
  if (std::isnan(x)) return 0x7E00;
  const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double a = std::fabs(static_cast<double>(x));
  if (a >= 65520.0) return sign | 0x7C00;  // rounds to infinity
  std::uint16_t best = 0;
  double best_err = std::numeric_limits<double>::infinity();
  for (std::uint16_t b = 0; b < 0x7C00; ++b) {
    const double err = std::fabs(decode_f16(b) - a);
    if (err < best_err || (err == best_err && (b & 1) == 0)) {
      best = b;
      best_err = err;
    }
  }
  return sign | best;
}

std::uint8_t encode_e4m3(float x) {
  if (std::isnan(x)) return 0x7F;
  const std::uint8_t sign = std::signbit(x) ? 0x80 : 0;
  const double a = std::min(std::fabs(static_cast<double>(x)), 448.0);
  std::uint8_t best = 0;
  double best_err = std::numeric_limits<double>::infinity();
  for (std::uint8_t b = 0; b < 0x7F; ++b) {
    const double err = std::fabs(decode_e4m3(b) - a);
    if (err < best_err || (err == best_err && (b & 1) == 0)) {
      best = b;
      best_err = err;
    }
  }
  return sign | best;
}

std::uint64_t TensorInfo::numel() const {
  std::uint64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

void write(const std::string& path, const std::vector<NamedTensor>& tensors,
           const std::map<std::string, std::string>& metadata) {
  std::vector<TensorHeader> headers;
  for (const auto& t : tensors) {
    headers.push_back({t.name, t.dtype, t.shape});
    if (headers.back().numel() != t.data.size())
      throw std::invalid_argument(fmt::format(
          "safetensors::write '{}': tensor '{}' has {} values but its shape holds {}", path,
          t.name, t.data.size(), headers.back().numel()));
  }
  StreamWriter out(path, std::move(headers), metadata);
  std::vector<std::uint8_t> bytes;
  for (const auto& t : tensors) {
    bytes.resize(t.data.size() * dtype_size(t.dtype));
    encode_values(t.dtype, t.data.data(), t.data.size(), bytes.data());
    out.begin(t.name);
    out.append(bytes.data(), bytes.size());
  }
  out.finish();
}

Header parse_header(const std::uint8_t* bytes, std::size_t size, const std::string& origin) {
  if (size < 8)
    fail(origin, fmt::format("file is {} bytes, too short for the 8-byte header length", size));
  Header h;
  const std::uint64_t n = load_le<std::uint64_t>(bytes);
  if (n > size - 8)
    fail(origin, fmt::format("header length {} runs past the end of the file ({} bytes)", n,
                             size));
  h.data_start = 8 + n;
  nlohmann::json header;
  // nlohmann::json keeps the last of two equal keys without a word; a header that names a
  // tensor twice is ambiguous, so the parser callback rejects it.
  std::string duplicate;
  std::set<std::string> top_keys;
  const nlohmann::json::parser_callback_t on_event =
      [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
        if (depth == 1 && event == nlohmann::json::parse_event_t::key) {
          const std::string k = parsed.get<std::string>();
          if (!top_keys.insert(k).second && duplicate.empty()) duplicate = k;
        }
        return true;
      };
  try {
    header = nlohmann::json::parse(bytes + 8, bytes + 8 + n, on_event);
  } catch (const nlohmann::json::exception& e) {
    fail(origin, fmt::format("header is not valid JSON: {}", e.what()));
  }
  if (!duplicate.empty()) fail(origin, fmt::format("header names tensor '{}' twice", duplicate));
  if (!header.is_object()) fail(origin, "header JSON is not an object");
  const std::uint64_t data_size = size - h.data_start;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(origin, "__metadata__ is not an object");
      for (auto m2 = v.begin(); m2 != v.end(); ++m2) {
        if (!m2.value().is_string())
          fail(origin, fmt::format("__metadata__ value of '{}' is not a string", m2.key()));
        h.metadata[m2.key()] = m2.value().get<std::string>();
      }
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets"))
      fail(origin, fmt::format("tensor '{}': expected an object with dtype, shape, data_offsets",
                               name));
    TensorInfo info;
    info.name = name;
    if (!v["dtype"].is_string()) fail(origin, fmt::format("tensor '{}': dtype is not a string", name));
    try {
      info.dtype = dtype_from_string(v["dtype"].get<std::string>());
    } catch (const std::runtime_error& e) {
      fail(origin, fmt::format("tensor '{}': {}", name, e.what()));
    }
    if (!v["shape"].is_array()) fail(origin, fmt::format("tensor '{}': shape is not an array", name));
    std::uint64_t numel = 1;
    for (const auto& s : v["shape"]) {
      if (!s.is_number_unsigned())
        fail(origin, fmt::format("tensor '{}': shape entries must be non-negative integers", name));
      const auto d = s.get<std::uint64_t>();
      info.shape.push_back(d);
      if (mul_overflows(numel, d, &numel))
        fail(origin, fmt::format("tensor '{}': shape overflows 64 bits", name));
    }
    const auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      fail(origin, fmt::format("tensor '{}': data_offsets must be two non-negative integers", name));
    info.begin = off[0].get<std::uint64_t>();
    info.end = off[1].get<std::uint64_t>();
    std::uint64_t bytes = 0;
    if (mul_overflows(numel, dtype_size(info.dtype), &bytes))
      fail(origin, fmt::format("tensor '{}': byte size overflows 64 bits", name));
    if (info.end < info.begin || info.end > data_size)
      fail(origin, fmt::format("tensor '{}': data_offsets [{}, {}] out of range (data section "
                               "is {} bytes)",
                               name, info.begin, info.end, data_size));
    if (info.end - info.begin != bytes)
      fail(origin, fmt::format("tensor '{}': data_offsets span {} bytes but {} {} needs {}", name,
                               info.end - info.begin, fmt::join(info.shape, "x"),
                               to_string(info.dtype), bytes));
    h.tensors.push_back(std::move(info));
  }
  // Tensors in data order (the order writers emit them); ties by name for determinism.
  // Overlap check. Sorted by begin, a tensor overlaps an earlier one iff it begins before the
  // largest end seen so far (comparing neighbours only would miss a small tensor nested in a
  // large one followed by another). Empty tensors occupy no bytes and overlap nothing. Holes
  // between tensors are allowed.
  std::vector<const TensorInfo*> order;
  for (const auto& t : h.tensors)
    if (t.end > t.begin) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->name < b->name;
  });
  const TensorInfo* furthest = nullptr;  // the tensor with the largest end so far
  for (const TensorInfo* t : order) {
    if (furthest && t->begin < furthest->end)
      fail(origin, fmt::format("tensors '{}' (bytes {}..{}) and '{}' (bytes {}..{}) overlap in the "
                               "data section",
                               furthest->name, furthest->begin, furthest->end, t->name, t->begin,
                               t->end));
    if (!furthest || t->end > furthest->end) furthest = t;
  }
  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorInfo& a, const TensorInfo& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.name < b.name;
  });
  return h;
}

namespace {

// Mapped files and the SIGBUS handler that names them. Reading a page of a mapping that lies
// past the end of its file (the file shrank after it was mapped, e.g. truncated or rewritten
// in place while a run uses it) raises SIGBUS. Without a handler the process dies with no word
// of why; with this one it prints which file and at which offset, and exits with status 135
// (128 + SIGBUS, as a shell reports a death by that signal). Only async-signal-safe calls in
// the handler: the table is fixed-size, written before a slot's start is published.
struct MappedRange {
  std::atomic<std::uintptr_t> start{0};
  std::size_t size = 0;
  char path[480] = {};
};
constexpr std::size_t kMaxMapped = 1024;
MappedRange g_mapped[kMaxMapped];
std::mutex g_mapped_mutex;
std::atomic<bool> g_handler_installed{false};

void write_all(const char* s, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(2, s, n);
    if (w <= 0) return;
    s += w;
    n -= static_cast<std::size_t>(w);
  }
}
void write_str(const char* s) { write_all(s, std::strlen(s)); }
void write_u64(std::uint64_t v) {
  char buf[24];
  int i = 23;
  buf[i] = 0;
  do {
    buf[--i] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v > 0 && i > 0);
  write_str(buf + i);
}

void on_sigbus(int sig, siginfo_t* info, void*) {
  const auto addr = reinterpret_cast<std::uintptr_t>(info ? info->si_addr : nullptr);
  for (const MappedRange& r : g_mapped) {
    const std::uintptr_t start = r.start.load(std::memory_order_acquire);
    if (start != 0 && addr >= start && addr < start + r.size) {
      write_str("dsr1: bus error (SIGBUS) reading the mapped file '");
      write_str(r.path);
      write_str("' at byte offset ");
      write_u64(addr - start);
      write_str(" of the ");
      write_u64(r.size);
      write_str(" it had when it was opened: the file shrank or became unreadable while in use "
                "(truncated, or rewritten in place?). Stopping.\n");
      ::_exit(128 + sig);
    }
  }
  // Not one of ours: the default action (the process dies by the signal).
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void register_mapping(const void* start, std::size_t size, const std::string& path) {
  if (!g_handler_installed.exchange(true)) {
    struct sigaction sa {};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGBUS, &sa, nullptr);
  }
  std::lock_guard<std::mutex> lock(g_mapped_mutex);
  for (MappedRange& r : g_mapped)
    if (r.start.load() == 0) {
      r.size = size;
      const std::size_t n = std::min(path.size(), sizeof r.path - 1);
      std::memcpy(r.path, path.data(), n);
      r.path[n] = 0;
      r.start.store(reinterpret_cast<std::uintptr_t>(start), std::memory_order_release);
      return;
    }
  // A full table only loses the file's name in the message (the default action then applies).
}

void unregister_mapping(const void* start) {
  std::lock_guard<std::mutex> lock(g_mapped_mutex);
  for (MappedRange& r : g_mapped)
    if (r.start.load() == reinterpret_cast<std::uintptr_t>(start)) r.start.store(0);
}

}  // namespace

File::File(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail(path, fmt::format("cannot open: {}", std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail(path, "cannot stat");
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(path, "not a regular file");
  }
  map_size_ = static_cast<std::size_t>(st.st_size);
  if (map_size_ < 8) {
    ::close(fd);
    fail(path, fmt::format("file is {} bytes, too short for the 8-byte header length", map_size_));
  }
  void* m = ::mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) fail(path, "mmap failed");
  map_ = static_cast<const std::uint8_t*>(m);
  register_mapping(map_, map_size_, path);

  try {
    Header h = parse_header(map_, map_size_, path);
    tensors_ = std::move(h.tensors);
    metadata_ = std::move(h.metadata);
    data_start_ = h.data_start;
    for (std::size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
  } catch (...) {
    unregister_mapping(map_);
    ::munmap(const_cast<std::uint8_t*>(map_), map_size_);
    map_ = nullptr;
    throw;
  }
}

File::~File() {
  if (map_) unregister_mapping(map_);
  if (map_) ::munmap(const_cast<std::uint8_t*>(map_), map_size_);
}

bool File::has(const std::string& name) const { return index_.count(name) != 0; }

const TensorInfo& File::info(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) fail(path_, fmt::format("no tensor named '{}'", name));
  return tensors_[it->second];
}

const std::uint8_t* File::raw(const std::string& name) const {
  return map_ + data_start_ + info(name).begin;
}

std::vector<double> File::read(const std::string& name) const {
  const TensorInfo& t = info(name);
  return read_rows(name, 0, t.shape.empty() ? 1 : t.shape[0]);
}

namespace {

// n values of type `dtype` at p, converted exactly to double. One loop per dtype, so the
// conversion is not re-decided for every element.
void decode_values(DType dtype, const std::uint8_t* p, std::size_t n, double* out) {
  switch (dtype) {
    case DType::F64: for (std::size_t i = 0; i < n; ++i) out[i] = load_le<double>(p + 8 * i); break;
    case DType::F32: for (std::size_t i = 0; i < n; ++i) out[i] = load_le<float>(p + 4 * i); break;
    case DType::F16: for (std::size_t i = 0; i < n; ++i) out[i] = decode_f16(load_le<std::uint16_t>(p + 2 * i)); break;
    case DType::BF16: for (std::size_t i = 0; i < n; ++i) out[i] = decode_bf16(load_le<std::uint16_t>(p + 2 * i)); break;
    case DType::F8_E4M3: {
      // 256 possible bytes: decode each once, then look the values up.
      static const std::array<double, 256> table = [] {
        std::array<double, 256> t{};
        for (int b = 0; b < 256; ++b) t[b] = decode_e4m3(static_cast<std::uint8_t>(b));
        return t;
      }();
      for (std::size_t i = 0; i < n; ++i) out[i] = table[p[i]];
      break;
    }
    case DType::I64: for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<double>(load_le<std::int64_t>(p + 8 * i)); break;
    case DType::I32: for (std::size_t i = 0; i < n; ++i) out[i] = load_le<std::int32_t>(p + 4 * i); break;
    case DType::I16: for (std::size_t i = 0; i < n; ++i) out[i] = load_le<std::int16_t>(p + 2 * i); break;
    case DType::I8: for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::int8_t>(p[i]); break;
    case DType::U8: case DType::BOOL: for (std::size_t i = 0; i < n; ++i) out[i] = p[i]; break;
  }
}

}  // namespace

namespace {

struct RowSpan {
  std::uint64_t begin, bytes;  // offset in the file, length
};

RowSpan row_span(const std::string& path, const TensorInfo& t, std::uint64_t data_start,
                 const std::string& name, std::uint64_t first, std::uint64_t count) {
  const std::uint64_t rows = t.shape.empty() ? 1 : t.shape[0];
  if (first > rows || count > rows - first)
    fail(path, fmt::format("tensor '{}' has {} rows; rows {}..{} were asked for", name, rows,
                           first, first + count - 1));
  const std::uint64_t row_len = rows == 0 ? 0 : t.numel() / rows;
  const std::size_t es = dtype_size(t.dtype);
  return {data_start + t.begin + first * row_len * es, count * row_len * es};
}

}  // namespace

const std::uint8_t* File::raw_rows(const std::string& name, std::uint64_t first,
                                   std::uint64_t count) const {
  return map_ + row_span(path_, info(name), data_start_, name, first, count).begin;
}

void File::release_rows(const std::string& name, std::uint64_t first, std::uint64_t count) const {
  const RowSpan span = row_span(path_, info(name), data_start_, name, first, count);
  bytes_read_ += span.bytes;
  // Hand the pages back: the mapping is read-only and private, so they are simply dropped and
  // would be read from the file again if asked for. A page shared with a neighbouring tensor is
  // dropped too; that costs a re-read, never a wrong value.
  if (span.bytes > 0) {
    const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGE_SIZE));
    const std::uint64_t lo = span.begin / page * page;
    const std::uint64_t hi =
        std::min<std::uint64_t>((span.begin + span.bytes + page - 1) / page * page, map_size_);
    ::madvise(const_cast<std::uint8_t*>(map_) + lo, hi - lo, MADV_DONTNEED);
  }
}

std::vector<double> File::read_rows(const std::string& name, std::uint64_t first,
                                    std::uint64_t count) const {
  const TensorInfo& t = info(name);
  const std::uint8_t* p = raw_rows(name, first, count);
  const std::uint64_t rows = t.shape.empty() ? 1 : t.shape[0];
  std::vector<double> out(count * (rows == 0 ? 0 : t.numel() / rows));
  decode_values(t.dtype, p, out.size(), out.data());
  release_rows(name, first, count);
  return out;
}

std::vector<std::uint8_t> File::read_raw_rows(const std::string& name, std::uint64_t first,
                                              std::uint64_t count) const {
  const TensorInfo& t = info(name);
  const std::uint8_t* p = raw_rows(name, first, count);
  const std::uint64_t rows = t.shape.empty() ? 1 : t.shape[0];
  const std::uint64_t bytes = count * (rows == 0 ? 0 : t.numel() / rows) * dtype_size(t.dtype);
  std::vector<std::uint8_t> out(p, p + bytes);
  release_rows(name, first, count);
  return out;
}

std::vector<double> decode(const TensorInfo& t, const std::uint8_t* data) {
  std::vector<double> out(t.numel());
  decode_values(t.dtype, data + t.begin, out.size(), out.data());
  return out;
}

}  // namespace dsr1::safetensors
