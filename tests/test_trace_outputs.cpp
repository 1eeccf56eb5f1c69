// The tracer's outputs: text formatting, JSON Lines parse-back, safetensors dump read back.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <string>

#include "reference/io/safetensors.hpp"
#include "reference/trace/trace_outputs.hpp"

using dsr1::TensorView;

namespace {
std::string temp_path(const std::string& stem) {
  return std::string(DSR1_BINARY_DIR) + "/tests/" + stem;
}
// Everything a PrintTracer writes, captured through a temporary FILE*.
template <class F>
std::string capture(F&& body) {
  std::FILE* f = std::tmpfile();
  REQUIRE(f != nullptr);
  body(f);
  std::fflush(f);
  std::rewind(f);
  std::string s;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}
}  // namespace

TEST_CASE("text output prints a small tensor in full, with the chosen precision, tokens as rows") {
  dsr1::PrintOptions opt;
  opt.precision = 2;
  arma::mat h = {{1.2649, 0.5}, {-1.2649, -0.004}};  // [d=2, T=2], token t = column t
  const std::vector<std::uint64_t> shape = dsr1::disk_shape(h);
  const std::string s = dsr1::format_tensor("h", TensorView{shape, h.memptr()}, opt);
  CHECK(s == "h [2, 2]\n  [ 1.26, -1.26]\n  [ 0.50,  0.00]");  // -0.004 prints as 0.00, not -0.00
  arma::vec v = {2, -2, 1, 1};
  CHECK(dsr1::format_tensor("v", TensorView{{4}, v.memptr()}, opt) == "v [4] = [ 2.00, -2.00,  1.00,  1.00]");
  double x = 2.5;
  CHECK(dsr1::format_tensor("ms", TensorView{{}, &x}, opt) == "ms = 2.50");
  CHECK(dsr1::format_number(-std::numeric_limits<double>::infinity(), 3) == "-inf");
}

TEST_CASE("text output labels the heads of a 3-D tensor") {
  dsr1::PrintOptions opt;
  opt.precision = 1;
  arma::cube c(2, 1, 2);  // [T_k=2, T=1, heads=2] -> disk [2, 1, 2]
  c(0, 0, 0) = 1; c(1, 0, 0) = 0; c(0, 0, 1) = 0.5; c(1, 0, 1) = 0.5;
  const auto shape = dsr1::disk_shape(c);
  CHECK(dsr1::format_tensor("p", TensorView{shape, c.memptr()}, opt) ==
        "p [2, 1, 2]\n  [0] [1.0, 0.0]\n  [1] [0.5, 0.5]");
}

TEST_CASE("text output summarises a large tensor by statistics and corners") {
  dsr1::PrintOptions opt;
  opt.precision = 1;
  arma::mat m(10, 10);  // disk [10, 10]; value = 10*row + col in disk order
  for (arma::uword r = 0; r < 10; ++r)
    for (arma::uword c = 0; c < 10; ++c) m(c, r) = 10.0 * r + c;
  const auto shape = dsr1::disk_shape(m);
  const std::string s = dsr1::format_tensor("big", TensorView{shape, m.memptr()}, opt);
  CHECK(s.rfind("big [10, 10]  min 0.0  max 99.0  mean 49.5  rms 57.3", 0) == 0);  // rms = sqrt(3283.5)
  CHECK(s.find("[ 0.0,  1.0,  2.0, ...,  7.0,  8.0,  9.0]") != std::string::npos);
  CHECK(s.find("[90.0, 91.0, 92.0, ..., 97.0, 98.0, 99.0]") != std::string::npos);
  CHECK(s.find("33.0") == std::string::npos);  // the middle is elided
  CHECK(std::fabs(std::sqrt(3283.5) - 57.3) < 0.05);
}

TEST_CASE("shape-only mode prints names and shapes, and flops/bytes of shape records") {
  dsr1::PrintOptions opt;
  opt.shapes_only = true;
  const std::string out = capture([&](std::FILE* f) {
    dsr1::PrintTracer tr({"*"}, opt, f);
    TRACE(&tr, "attn.q", arma::mat(4, 2, arma::fill::ones));
    tr.record_shape("layers.0.attn.u", {2, 7168}, {1.5e9, 2e6});
  });
  CHECK(out == "attn.q [2, 4]\nlayers.0.attn.u [2, 7168]  flops 1.5e+09  bytes 2e+06\n");
}

TEST_CASE("JSON Lines records parse back to the traced names, shapes and values") {
  const std::string path = temp_path("trace_outputs_test.jsonl");
  {
    dsr1::JsonlTracer tr(path, {"*"}, /*max_data=*/8);
    arma::mat h = {{1, 2, 3}, {4, 5, 6}};  // [d=2, T=3]
    TRACE(&tr, "h", h);
    arma::vec s = {0.5, -std::numeric_limits<double>::infinity()};
    TRACE(&tr, "scores", s);
    TRACE(&tr, "big", arma::mat(3, 3, arma::fill::value(2.0)));  // 9 > max_data: stats only
    tr.finish();
  }
  std::ifstream in(path);
  std::string line;
  std::vector<nlohmann::json> recs;
  while (std::getline(in, line)) recs.push_back(nlohmann::json::parse(line));
  REQUIRE(recs.size() == 3);
  CHECK(recs[0]["name"] == "h");
  CHECK(recs[0]["shape"] == nlohmann::json::array({3, 2}));
  CHECK(recs[0]["dtype"] == "F64");
  CHECK(recs[0]["data"] == nlohmann::json::array({1, 4, 2, 5, 3, 6}));
  CHECK(recs[1]["data"][1] == "-inf");
  CHECK_FALSE(recs[2].contains("data"));
  CHECK(recs[2]["stats"]["mean"] == 2.0);
  CHECK(recs[2]["stats"]["rms"] == 2.0);
  std::remove(path.c_str());
}

TEST_CASE("the safetensors dump reads back with the traced names, disk shapes and F64 values") {
  const std::string path = temp_path("trace_outputs_test.safetensors");
  arma::mat h = {{1, 2, 3}, {4, 5, 6}};
  {
    dsr1::DumpTracer tr(path, {"layers.*"});
    dsr1::TraceScope s(&tr, "layers.0");
    TRACE(&tr, "h", h);
    const arma::mat h2 = h * 2.0;
    TRACE(&tr, "h", h2);  // the same name again is kept as "h#2"
    tr.finish();
  }
  dsr1::safetensors::File f(path);
  REQUIRE(f.tensors().size() == 2);
  CHECK(f.info("layers.0.h").dtype == dsr1::safetensors::DType::F64);
  CHECK(f.info("layers.0.h").shape == std::vector<std::uint64_t>{3, 2});
  CHECK(f.read("layers.0.h") == std::vector<double>{1, 4, 2, 5, 3, 6});
  CHECK(f.read("layers.0.h#2") == std::vector<double>{2, 8, 4, 10, 6, 12});
  std::remove(path.c_str());
}
