// Reliability (docs/reliability.md): the config size limits are checked before any work and sit
// exactly where config.hpp says; and every input that once broke a parser -- found by the fuzzers
// of tests/fuzz/ or by reading the code -- is replayed from tests/fuzz/corpus/*/regression-* and
// must give a clear error naming the file and the field.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "reference/deepseek/config.hpp"
#include "reference/io/checkpoint.hpp"
#include "reference/io/npy.hpp"
#include "reference/io/safetensors.hpp"
#include "reference/io/token_list.hpp"
#include "reference/tools/accounting.hpp"
#include "reference/tools/compare.hpp"
#include "tests/support/errors.hpp"

using dsr1::Config;

namespace {

using dsr1::test::contains;
using dsr1::test::error_of;

std::vector<std::uint8_t> corpus_file(const std::string& target, const std::string& name) {
  const std::string path = std::string(DSR1_SOURCE_DIR) + "/tests/fuzz/corpus/" + target + "/" + name;
  std::ifstream in(path, std::ios::binary);
  REQUIRE_MESSAGE(in, "missing corpus file " << path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string corpus_text(const std::string& target, const std::string& name) {
  const auto b = corpus_file(target, name);
  return std::string(b.begin(), b.end());
}

// tiny-v3 as config.json text with one field replaced by a raw JSON value.
std::string tiny_json_with(const std::string& field, const std::string& value) {
  Config c = dsr1::preset("tiny-v3");
  std::string text = dsr1::config_to_json_text(c);
  const std::string key = "\"" + field + "\": ";
  const std::size_t at = text.find(key);
  REQUIRE(at != std::string::npos);
  const std::size_t begin = at + key.size(), end = text.find_first_of(",\n", begin);
  return text.replace(begin, end - begin, value);
}

// One size limit: the field, a setter, and the limit config.hpp declares.
struct Limit {
  const char* field;
  std::function<void(Config&, std::int64_t)> set;
  std::int64_t limit;
};

}  // namespace

TEST_CASE("config: 2^31 layers and a vocabulary of 2^40 are refused at once, naming field, value and limit") {
  const struct {
    const char* field;
    const char* value;
    std::int64_t limit;
  } cases[] = {{"num_hidden_layers", "2147483648", dsr1::limits::num_hidden_layers},
               {"vocab_size", "1099511627776", dsr1::limits::vocab_size}};
  for (const auto& k : cases) {
    CAPTURE(k.field);
    const std::string text = tiny_json_with(k.field, k.value);
    const auto t0 = std::chrono::steady_clock::now();
    const std::string e = error_of([&] { dsr1::config_from_json_text(text, "huge.json"); });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(contains(e, "config 'huge.json'"));
    CHECK(contains(e, fmt::format("{}: {} exceeds the limit of {}", k.field, k.value, k.limit)));
    // Microseconds in practice; 0.1 s leaves room for a loaded machine and the sanitizers, and
    // is still three orders of magnitude below the tens of seconds a loop over 2^31 layers takes.
    CHECK(seconds < 0.1);
  }
}

TEST_CASE("config: each size limit sits exactly where config.hpp declares it") {
  using L = std::int64_t;
  const Limit limits[] = {
      {"vocab_size", [](Config& c, L v) { c.vocab_size = v; }, dsr1::limits::vocab_size},
      {"hidden_size", [](Config& c, L v) { c.hidden_size = v; }, dsr1::limits::hidden_size},
      {"intermediate_size", [](Config& c, L v) { c.intermediate_size = v; }, dsr1::limits::intermediate_size},
      {"moe_intermediate_size", [](Config& c, L v) { c.moe_intermediate_size = v; }, dsr1::limits::intermediate_size},
      {"num_hidden_layers", [](Config& c, L v) { c.num_hidden_layers = v; }, dsr1::limits::num_hidden_layers},
      {"num_attention_heads", [](Config& c, L v) { c.num_attention_heads = c.num_key_value_heads = v; },
       dsr1::limits::num_attention_heads},
      {"qk_nope_head_dim", [](Config& c, L v) { c.qk_nope_head_dim = v; }, dsr1::limits::head_dim},
      {"qk_rope_head_dim", [](Config& c, L v) { c.qk_rope_head_dim = v; }, dsr1::limits::head_dim},
      {"v_head_dim", [](Config& c, L v) { c.v_head_dim = v; }, dsr1::limits::head_dim},
      {"q_lora_rank", [](Config& c, L v) { c.q_lora_rank = v; }, dsr1::limits::lora_rank},
      {"kv_lora_rank", [](Config& c, L v) { c.kv_lora_rank = v; }, dsr1::limits::lora_rank},
      {"n_routed_experts", [](Config& c, L v) { c.n_routed_experts = v; }, dsr1::limits::experts},
      {"n_shared_experts", [](Config& c, L v) { c.n_shared_experts = v; }, dsr1::limits::experts},
      {"max_position_embeddings", [](Config& c, L v) { c.max_position_embeddings = v; }, dsr1::limits::positions},
      {"rope_scaling.original_max_position_embeddings",
       [](Config& c, L v) { c.rope_scaling.original_max_position_embeddings = v; }, dsr1::limits::positions},
      {"quantization_config.weight_block_size", [](Config& c, L v) { c.fp8_weights = true; c.weight_block_size = v; },
       dsr1::limits::weight_block_size},
  };
  for (const Limit& k : limits) {
    CAPTURE(k.field);
    Config at = dsr1::preset("tiny-v3");
    k.set(at, k.limit);
    CHECK_NOTHROW(dsr1::validate(at));  // the limit itself is served
    Config past = dsr1::preset("tiny-v3");
    k.set(past, k.limit + 1);
    CHECK(contains(error_of([&] { dsr1::validate(past); }),
                   fmt::format("{}: {} exceeds the limit of {}", k.field, k.limit + 1, k.limit)));
  }
}

TEST_CASE("config: products of sizes within their limits are checked too") {
  SUBCASE("routed experts over the whole model") {
    Config c = dsr1::preset("tiny-v3");
    c.num_hidden_layers = dsr1::limits::num_hidden_layers;  // 1023 MoE layers
    c.n_routed_experts = dsr1::limits::experts;
    CHECK(contains(error_of([&] { dsr1::validate(c); }),
                   fmt::format("num_moe_layers x n_routed_experts: {} exceeds the limit of {}",
                               1023 * dsr1::limits::experts, dsr1::limits::routed_experts_in_model)));
  }
  SUBCASE("parameters") {
    Config c = dsr1::preset("tiny-v3");
    c.hidden_size = dsr1::limits::hidden_size;
    c.intermediate_size = dsr1::limits::intermediate_size;
    c.num_hidden_layers = dsr1::limits::num_hidden_layers;
    // 64 experts of I_e = 2^18: a MoE block of 65 * 3 * 2^16 * 2^18 = 2^41.6 parameters, which
    // the bound counts for each of the 1,025 layers (2^51.6 in all) though none is a MoE layer.
    c.first_k_dense_replace = c.num_hidden_layers;
    c.moe_intermediate_size = dsr1::limits::intermediate_size;
    c.n_routed_experts = 64;
    const std::string e = error_of([&] { dsr1::validate(c); });
    CHECK(contains(e, "parameters: the config describes about"));
    CHECK(contains(e, fmt::format("beyond the limit of {:.3g}", static_cast<double>(dsr1::limits::parameters))));
  }
  SUBCASE("a product past 64 bits is named, not wrapped") {
    Config c = dsr1::preset("tiny-v3");  // parameter_bound on an unvalidated config
    c.vocab_size = std::int64_t{1} << 40;
    c.hidden_size = std::int64_t{1} << 40;
    CHECK(contains(error_of([&] { dsr1::parameter_bound(c); }),
                   "vocab_size x hidden_size: 1099511627776 x 1099511627776 overflows 64 bits"));
  }
}

TEST_CASE("config: an integer past 2^63 - 1 is refused, not wrapped to a negative size") {
  const std::string e = error_of(
      [&] { dsr1::config_from_json_text(tiny_json_with("num_hidden_layers", "18446744073709551615"), "c.json"); });
  CHECK(contains(e, "config 'c.json': field 'num_hidden_layers': 18446744073709551615 does not fit in a signed 64-bit integer"));
}

TEST_CASE("config: the real models stay within every limit, and the parameter bound holds") {
  for (const std::string& name : dsr1::preset_names()) {
    CAPTURE(name);
    const Config c = dsr1::preset(name);  // preset() validates
    const dsr1::ParamReport p = dsr1::count_params(c);
    // parameter_bound counts every layer's larger FFN and one MTP layer on top: an upper bound
    // on what reference/tools/ counts exactly.
    CHECK(p.total_params + p.mtp_params <= dsr1::parameter_bound(c));
    CHECK(dsr1::parameter_bound(c) < 2 * (p.total_params + p.mtp_params) + 4 * c.vocab_size * c.hidden_size);
  }
}

TEST_CASE("config: num_moe_layers() counts without a loop and agrees with is_moe_layer()") {
  Config c = dsr1::preset("tiny-v3");
  for (std::int64_t L : {1, 2, 3, 7, 61})
    for (std::int64_t k = 0; k <= L; ++k)
      for (std::int64_t f : {1, 2, 3, 5, 100})
        for (std::int64_t N_r : {0, 8}) {
          c.num_hidden_layers = L;
          c.first_k_dense_replace = k;
          c.moe_layer_freq = f;
          c.n_routed_experts = N_r;
          std::int64_t loop = 0;
          for (std::int64_t l = 0; l < L; ++l) loop += c.is_moe_layer(l) ? 1 : 0;
          CAPTURE(L); CAPTURE(k); CAPTURE(f); CAPTURE(N_r);
          CHECK(c.num_moe_layers() == loop);
        }
  CHECK(dsr1::preset("deepseek-v3").num_moe_layers() == 58);
  CHECK(dsr1::preset("deepseek-v2").num_moe_layers() == 59);
}

TEST_CASE("npz regression: a 97-byte deflated entry claiming 4 GB is refused before allocating") {
  const std::vector<std::uint8_t> b = corpus_file("npz", "regression-deflate-size-claim.npz");
  const std::string e = error_of([&] { dsr1::npy::parse_npz(b, "bomb.npz"); });
  CHECK(contains(e, "bomb.npz["));
  CHECK(contains(e, "is impossible for"));
  CHECK(contains(e, "bytes of deflate data (at most 1032:1)"));
}

TEST_CASE("golden manifest regression: a shape that is not a list of non-negative integers is a clear error") {
  // Before: a string shape escaped as nlohmann::json::type_error, and -1 was read as 2^64 - 1.
  const std::string e1 = error_of([&] {
    dsr1::compare::parse_manifest(corpus_text("golden_manifest", "regression-shape-string.json"), "m.json");
  });
  CHECK(contains(e1, "m.json: tensor 'logits': shape \"2x3\" is not a list of dimensions"));
  const std::string e2 = error_of([&] {
    dsr1::compare::parse_manifest(corpus_text("golden_manifest", "regression-shape-negative.json"), "m.json");
  });
  CHECK(contains(e2, "m.json: tensor 'logits': shape [2,-1] holds -1, expected non-negative integers"));
}

TEST_CASE("safetensors: parse_header on an image in memory gives File's checks") {
  // A header length past the end: the image is 16 bytes.
  std::vector<std::uint8_t> b(16, 0);
  b[0] = 200;
  CHECK(contains(error_of([&] { dsr1::safetensors::parse_header(b.data(), b.size(), "mem.safetensors"); }),
                 "safetensors file 'mem.safetensors': header length 200 runs past the end of the file (16 bytes)"));
  CHECK(contains(error_of([&] { dsr1::safetensors::parse_header(b.data(), 7, "mem.safetensors"); }),
                 "file is 7 bytes, too short for the 8-byte header length"));
}

TEST_CASE("tokens: the shared --tokens parser refuses empty items, spaces and ids past int64") {
  CHECK(dsr1::parse_token_list("3,17,5", "--tokens") == std::vector<std::int64_t>{3, 17, 5});
  CHECK(dsr1::parse_token_list("-1", "--tokens") == std::vector<std::int64_t>{-1});  // the model range-checks ids
  for (const char* bad : {"", "1,,2", "1,", " 1", "1 ", "+1", "9223372036854775808", "0x10"}) {
    CAPTURE(bad);
    CHECK(contains(error_of([&] { dsr1::parse_token_list(bad, "--tokens"); }), "--tokens: '"));
  }
}

TEST_CASE("index: parse_index refuses path components in shard names") {
  for (const char* file : {"../model.safetensors", "/etc/passwd", "sub/model.safetensors", "..", "."}) {
    CAPTURE(file);
    const std::string text = fmt::format(R"({{"weight_map": {{"w": "{}"}}}})", file);
    CHECK(contains(error_of([&] { dsr1::parse_index(text, "idx.json"); }),
                   "idx.json: tensor 'w' maps to"));
  }
}
