// The tracer core: names, scopes, glob filters, shapes on disk.
#include <doctest/doctest.h>

#include "reference/trace/trace.hpp"

using dsr1::glob_match;

TEST_CASE("glob_match: stars cross dots, question marks match one character") {
  CHECK(glob_match("*", "layers.0.attn.scores"));
  CHECK(glob_match("layers.*.attn.scores", "layers.12.attn.scores"));
  CHECK(glob_match("layers.?.attn.*", "layers.3.attn.probs"));
  CHECK_FALSE(glob_match("layers.?.attn.*", "layers.12.attn.probs"));
  CHECK_FALSE(glob_match("router.probs", "router.probs.x"));
  CHECK(glob_match("*probs", "router.probs"));
  CHECK_FALSE(glob_match("", "x"));
}

TEST_CASE("tracer scopes prefix names and the filter selects by full name") {
  dsr1::RecordingTracer tr({"layers.1.*"});
  const arma::mat x(3, 2, arma::fill::ones);
  {
    dsr1::TraceScope s0(&tr, "layers.0");
    TRACE(&tr, "attn.scores", x);
  }
  {
    dsr1::TraceScope s1(&tr, "layers.1");
    TRACE(&tr, "attn.scores", x);
  }
  REQUIRE(tr.entries().size() == 1);
  CHECK(tr.entries()[0].name == "layers.1.attn.scores");
  CHECK(tr.matched() == 1);
  CHECK(tr.seen() == 2);
}

TEST_CASE("a [rows, cols] matrix is [cols, rows] on disk, with tokens outermost") {
  dsr1::RecordingTracer tr;
  arma::mat h = {{1, 2, 3}, {4, 5, 6}};  // d = 2, T = 3: token t is column t
  TRACE(&tr, "h", h);
  const auto& e = tr.get("h");
  CHECK(e.shape == std::vector<std::uint64_t>{3, 2});
  // Row-major [T, d]: token 0 = (1, 4), token 1 = (2, 5), token 2 = (3, 6).
  CHECK(e.data == std::vector<double>{1, 4, 2, 5, 3, 6});
  CHECK(arma::approx_equal(tr.get_mat("h"), h, "absdiff", 0.0));
}

TEST_CASE("a filter that matches nothing is reported with the filter's text") {
  dsr1::RecordingTracer tr({"no.such.*"});
  TRACE(&tr, "h", arma::mat(2, 2, arma::fill::zeros));
  CHECK_THROWS_WITH_AS(tr.check_filter_matched(), doctest::Contains("'no.such.*'"),
                       std::runtime_error);
}

TEST_CASE("a null tracer records nothing and evaluates nothing") {
  dsr1::Tracer* tr = nullptr;
  int evaluated = 0;
  auto expensive = [&]() {
    ++evaluated;
    return arma::mat(1, 1);
  };
  TRACE(tr, "x", expensive());
  CHECK(evaluated == 0);
}
