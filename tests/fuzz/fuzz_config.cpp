// Fuzz target: config.json with its validation (reference/deepseek/config.hpp), then what
// `dsr1 info` computes from an accepted config (reference/tools/accounting.hpp).
// Properties: an accepted config is within the size limits; writing it back as JSON and reading
// that again gives the same config; num_moe_layers() agrees with is_moe_layer() layer by layer.
#include "reference/deepseek/config.hpp"
#include "reference/tools/accounting.hpp"
#include "tests/fuzz/fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string origin = "fuzz/config.json";
  dsr1::fuzz::expect_value_or_clear_error(origin, [&] {
    const dsr1::Config c = dsr1::config_from_json_text(dsr1::fuzz::as_text(data, size), origin);
    FUZZ_CHECK(c.num_hidden_layers <= dsr1::limits::num_hidden_layers);
    FUZZ_CHECK(c.vocab_size <= dsr1::limits::vocab_size);
    FUZZ_CHECK(dsr1::parameter_bound(c) <= dsr1::limits::parameters);
    std::int64_t moe_layers = 0;
    for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) moe_layers += c.is_moe_layer(l);
    FUZZ_CHECK(moe_layers == c.num_moe_layers());
    // The round trip `dsr1 init-model` relies on: config.json written, then read back.
    const dsr1::Config again = dsr1::config_from_json_text(dsr1::config_to_json_text(c), origin);
    FUZZ_CHECK(again == c);
    // What dsr1 info prints, from the config alone.
    const dsr1::ParamReport p = dsr1::count_params(c);
    FUZZ_CHECK(p.total_params <= dsr1::parameter_bound(c));
    dsr1::kv_cache_size(c, 2);
    dsr1::flops_per_token(c);
    dsr1::describe_conventions(c);
  });
  return 0;
}
