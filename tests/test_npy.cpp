// NumPy .npy/.npz reading and writing: every header version, dtype, memory order, the zip
// container in both storage methods, and the rejection of damaged or hostile files.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "reference/io/npy.hpp"

namespace fs = std::filesystem;
using dsr1::npy::Array;
using dsr1::npy::DType;

namespace {

std::string tmp_path(const std::string& name) {
  const fs::path dir = fs::path(DSR1_BINARY_DIR) / "test_npy_tmp";
  fs::create_directories(dir);
  return (dir / name).string();
}

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A .npy image with a hand-written header; `version` 1, 2 or 3.
std::vector<std::uint8_t> npy_image(const std::string& header, const std::vector<std::uint8_t>& data,
                                    int version = 1) {
  std::vector<std::uint8_t> b = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<std::uint8_t>(version), 0};
  const std::size_t len = header.size();
  const int nlen = version == 1 ? 2 : 4;
  for (int i = 0; i < nlen; ++i) b.push_back(static_cast<std::uint8_t>(len >> (8 * i)));
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

template <class T>
std::vector<std::uint8_t> raw(const std::vector<T>& v, bool big_endian = false) {
  std::vector<std::uint8_t> b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  if (big_endian)
    for (std::size_t k = 0; k < v.size(); ++k)
      std::reverse(b.begin() + static_cast<std::ptrdiff_t>(k * sizeof(T)),
                   b.begin() + static_cast<std::ptrdiff_t>((k + 1) * sizeof(T)));
  return b;
}

Array parse(const std::vector<std::uint8_t>& b) { return dsr1::npy::parse(b.data(), b.size(), "test.npy"); }

void check_rejects(const std::vector<std::uint8_t>& b, const std::string& fragment) {
  CAPTURE(fragment);
  bool threw = false;
  try {
    parse(b);
  } catch (const std::runtime_error& e) {
    threw = true;
    const std::string msg = e.what();
    CAPTURE(msg);
    CHECK(msg.find("test.npy") != std::string::npos);
    CHECK(msg.find(fragment) != std::string::npos);
  }
  CHECK(threw);
}

}  // namespace

TEST_CASE("npy round trip keeps float64 bits and the shape, float32 and float16 round to nearest") {
  Array a;
  a.shape = {2, 3};
  a.data = {1.0, -2.5, 1.0 / 3.0, 1e-300, -0.0, 65504.0};
  const std::string p = tmp_path("rt.npy");
  dsr1::npy::write(p, a, DType::F64);
  const Array b = dsr1::npy::read(p);
  CHECK(b.shape == a.shape);
  CHECK(b.dtype == DType::F64);
  for (std::size_t k = 0; k < a.data.size(); ++k) CHECK(std::memcmp(&a.data[k], &b.data[k], 8) == 0);
  // The header is padded so the data starts on a 64-byte boundary, as numpy writes it.
  const auto bytes = read_bytes(p);
  CHECK((bytes.size() - 6 * 8) % 64 == 0);

  dsr1::npy::write(p, a, DType::F32);
  const Array c = dsr1::npy::read(p);
  CHECK(c.dtype == DType::F32);
  for (std::size_t k = 0; k < a.data.size(); ++k) CHECK(c.data[k] == static_cast<double>(static_cast<float>(a.data[k])));

  dsr1::npy::write(p, a, DType::F16);
  const Array h = dsr1::npy::read(p);
  CHECK(h.dtype == DType::F16);
  CHECK(h.data[0] == 1.0);
  CHECK(h.data[1] == -2.5);
  CHECK(h.data[2] == 0.333251953125);  // 1/3 to 11 significant bits: 0x3555
  CHECK(h.data[3] == 0.0);             // underflows to zero
  CHECK(h.data[5] == 65504.0);         // largest finite half
}

TEST_CASE("npy reads version 2 and 3 headers, big-endian data and integer token ids") {
  const std::string hdr = "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }\n";
  for (int v : {2, 3}) {
    const Array a = parse(npy_image(hdr, raw(std::vector<double>{1, 2, 3}), v));
    CHECK(a.shape == std::vector<std::uint64_t>{3});
    CHECK(a.data == std::vector<double>{1, 2, 3});
  }
  const Array be = parse(npy_image("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }\n",
                                   raw(std::vector<float>{1.5f, -4.0f}, true)));
  CHECK(be.data == std::vector<double>{1.5, -4.0});
  const Array ids = parse(npy_image("{'descr': '<i8', 'fortran_order': False, 'shape': (1, 2), }\n",
                                    raw(std::vector<std::int64_t>{7, 129279})));
  CHECK(ids.shape == std::vector<std::uint64_t>{1, 2});
  CHECK(ids.data == std::vector<double>{7, 129279});
  const Array scalar = parse(npy_image("{'descr': '<f8', 'fortran_order': False, 'shape': (), }\n",
                                       raw(std::vector<double>{42})));
  CHECK(scalar.shape.empty());
  CHECK(scalar.data == std::vector<double>{42});
}

TEST_CASE("npy Fortran-order arrays come back in C order") {
  // The 2x3 matrix [[0,1,2],[3,4,5]] stored column-major is 0,3,1,4,2,5.
  const Array a = parse(npy_image("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }\n",
                                  raw(std::vector<double>{0, 3, 1, 4, 2, 5})));
  CHECK(a.data == std::vector<double>{0, 1, 2, 3, 4, 5});
  // A 2x2x2 cube: element (i,j,k) = 100i + 10j + k, written with i fastest.
  std::vector<double> f;
  for (int k = 0; k < 2; ++k)
    for (int j = 0; j < 2; ++j)
      for (int i = 0; i < 2; ++i) f.push_back(100 * i + 10 * j + k);
  const Array c = parse(npy_image("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2, 2), }\n", raw(f)));
  CHECK(c.data == std::vector<double>{0, 1, 10, 11, 100, 101, 110, 111});
}

TEST_CASE("npy rejects damaged and hostile files with a message naming the file") {
  const std::vector<std::uint8_t> two = raw(std::vector<double>{1, 2});
  check_rejects({'N', 'U', 'M', 'P', 'Y'}, "magic");
  std::vector<std::uint8_t> long_header = npy_image("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n", two);
  long_header[8] = 0xFF;
  long_header[9] = 0xFF;
  check_rejects(long_header, "past the end");
  check_rejects(npy_image("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }\n", two), "needs 24 data bytes");
  check_rejects(npy_image("{'descr': '<c16', 'fortran_order': False, 'shape': (1,), }\n", two), "unsupported dtype");
  check_rejects(npy_image("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }\n", two), "unsupported dtype");
  check_rejects(npy_image("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }\n", two), "structured");
  check_rejects(npy_image("{'descr': '<f8', 'shape': (2,), }\n", two), "must have");
  check_rejects(npy_image("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }\n", two),
                "overflows");
  check_rejects(npy_image("{'descr': '<f8', 'fortran_order': False, 'shape': (2", two), "malformed");
  check_rejects(npy_image("{'descr': '<f8', 'fortran_order': Maybe, 'shape': (2,), }\n", two), "True or False");
  std::vector<std::uint8_t> v9 = npy_image("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n", two);
  v9[6] = 9;
  check_rejects(v9, "version 9");
  CHECK_THROWS_WITH_AS(dsr1::npy::read(tmp_path("does-not-exist.npy")), doctest::Contains("cannot open"),
                       std::runtime_error);
}

TEST_CASE("npz round trip keeps entry order and names, stored entries are readable by zip tools") {
  Array a, b;
  a.shape = {2, 2};
  a.data = {1, 2, 3, 4};
  b.shape = {3};
  b.data = {0.5, 0.25, 0.125};
  const std::string p = tmp_path("rt.npz");
  dsr1::npy::write_npz(p, {{"layers.0.attn.c_kv", a}, {"logits", b}});
  const auto entries = dsr1::npy::read_npz(p);
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].first == "layers.0.attn.c_kv");
  CHECK(entries[0].second.data == a.data);
  CHECK(entries[1].first == "logits");
  CHECK(entries[1].second.shape == b.shape);
}

namespace {

// A one-entry zip archive with the given method and payload (deflated here when method 8).
std::vector<std::uint8_t> zip_one(const std::string& name, const std::vector<std::uint8_t>& payload, int method,
                                  bool zip64_local_extra) {
  std::vector<std::uint8_t> stored = payload;
  if (method == 8) {
    z_stream zs{};
    deflateInit2(&zs, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    stored.resize(deflateBound(&zs, payload.size()));
    zs.next_in = const_cast<Bytef*>(payload.data());
    zs.avail_in = static_cast<uInt>(payload.size());
    zs.next_out = stored.data();
    zs.avail_out = static_cast<uInt>(stored.size());
    deflate(&zs, Z_FINISH);
    stored.resize(zs.total_out);
    deflateEnd(&zs);
  }
  const std::uint32_t crc = static_cast<std::uint32_t>(crc32(crc32(0, Z_NULL, 0), payload.data(),
                                                             static_cast<uInt>(payload.size())));
  std::vector<std::uint8_t> out;
  auto put = [](std::vector<std::uint8_t>& v, std::uint64_t x, int n) {
    for (int i = 0; i < n; ++i) v.push_back(static_cast<std::uint8_t>(x >> (8 * i)));
  };
  // Local header; numpy's writer adds a 20-byte ZIP64 extra field here (force_zip64=True).
  put(out, 0x04034b50, 4); put(out, 45, 2); put(out, 0, 2); put(out, method, 2); put(out, 0, 4);
  put(out, crc, 4); put(out, stored.size(), 4); put(out, payload.size(), 4); put(out, name.size(), 2);
  put(out, zip64_local_extra ? 20 : 0, 2);
  out.insert(out.end(), name.begin(), name.end());
  if (zip64_local_extra) { put(out, 1, 2); put(out, 16, 2); put(out, payload.size(), 8); put(out, stored.size(), 8); }
  out.insert(out.end(), stored.begin(), stored.end());
  const std::size_t cd = out.size();
  put(out, 0x02014b50, 4); put(out, 45, 2); put(out, 45, 2); put(out, 0, 2); put(out, method, 2); put(out, 0, 4);
  put(out, crc, 4); put(out, stored.size(), 4); put(out, payload.size(), 4); put(out, name.size(), 2);
  put(out, 0, 2); put(out, 0, 2); put(out, 0, 2); put(out, 0, 2); put(out, 0, 4); put(out, 0, 4);
  out.insert(out.end(), name.begin(), name.end());
  const std::size_t cd_size = out.size() - cd;
  put(out, 0x06054b50, 4); put(out, 0, 4); put(out, 1, 2); put(out, 1, 2); put(out, cd_size, 4); put(out, cd, 4);
  put(out, 0, 2);
  return out;
}

void check_npz_rejects(const std::vector<std::uint8_t>& zip, const std::string& fragment) {
  CAPTURE(fragment);
  const std::string p = tmp_path("bad.npz");
  write_bytes(p, zip);
  bool threw = false;
  try {
    dsr1::npy::read_npz(p);
  } catch (const std::runtime_error& e) {
    threw = true;
    const std::string msg = e.what();
    CAPTURE(msg);
    CHECK(msg.find("bad.npz") != std::string::npos);
    CHECK(msg.find(fragment) != std::string::npos);
  }
  CHECK(threw);
}

}  // namespace

TEST_CASE("npz reads deflated entries (np.savez_compressed) and numpy's ZIP64 local headers") {
  Array a;
  a.shape = {4, 2};
  a.data = {1, 2, 3, 4, 5, 6, 7, 8};
  const auto npy = dsr1::npy::encode(a, DType::F32);
  for (int method : {0, 8}) {
    CAPTURE(method);
    const std::string p = tmp_path("one.npz");
    write_bytes(p, zip_one("x.npy", npy, method, true));
    const auto entries = dsr1::npy::read_npz(p);
    REQUIRE(entries.size() == 1);
    CHECK(entries[0].first == "x");
    CHECK(entries[0].second.data == a.data);
    CHECK(entries[0].second.dtype == DType::F32);
  }
}

TEST_CASE("npz rejects truncated, inconsistent and corrupted archives naming the file") {
  Array a;
  a.shape = {3};
  a.data = {1, 2, 3};
  const auto npy = dsr1::npy::encode(a, DType::F64);
  const auto good = zip_one("x.npy", npy, 0, false);
  check_npz_rejects(std::vector<std::uint8_t>(good.begin(), good.begin() + 10), "not a zip archive");
  // Cut the data: the end record no longer sits at the end, or the directory points past it.
  std::vector<std::uint8_t> cut(good.begin() + 40, good.end());
  check_npz_rejects(cut, "corrupt zip archive");
  // Central directory offset beyond the file.
  std::vector<std::uint8_t> bad_offset = good;
  bad_offset[bad_offset.size() - 6] = 0xFF;
  bad_offset[bad_offset.size() - 5] = 0xFF;
  check_npz_rejects(bad_offset, "outside the file");
  // An entry count that cannot fit in the directory.
  std::vector<std::uint8_t> bad_count = good;
  bad_count[bad_count.size() - 12] = 0xFF;
  bad_count[bad_count.size() - 14] = 0xFF;
  check_npz_rejects(bad_count, "cannot fit");
  // One flipped data byte: the CRC catches it.
  std::vector<std::uint8_t> flipped = good;
  flipped[30 + 5 + npy.size() - 1] ^= 0x40;
  check_npz_rejects(flipped, "CRC-32 mismatch");
  // Deflate data cut short.
  auto deflated = zip_one("x.npy", npy, 8, false);
  std::vector<std::uint8_t> short_deflate = deflated;
  short_deflate[30 + 5 + 3] ^= 0xFF;  // scramble the compressed stream
  check_npz_rejects(short_deflate, "x.npy");
  // An unknown compression method.
  auto bzip = good;
  bzip[8] = 12;  // local header method
  const std::size_t cd = good.size() - 22 - 46 - 5;
  bzip[cd + 10] = 12;  // central directory method
  check_npz_rejects(bzip, "method 12");
}
